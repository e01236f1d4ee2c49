//! The node's two connections to Redis and the task that keeps them.
//!
//! - The command connection (multiplexed: concurrent commands share it)
//!   carries publishes, scripts and presence.
//! - The pub/sub connection carries `SUBSCRIBE`/`UNSUBSCRIBE` and every
//!   message for this node. One per node, whatever the number of topics.
//!
//! The supervisor task reads the pub/sub connection and hands each message
//! to the attached handler. When either connection fails (the pub/sub
//! stream ends, a `PING` or a command fails or times out), it marks the link
//! down, so every operation fails at once with `Unavailable` instead of
//! waiting, and reconnects with exponential backoff and jitter. Once both
//! connections are back it subscribes again to every channel the node had
//! and only then reports the link up.
//!
//! Lock order: the supervisor takes `sink` for writing while it swaps
//! connections and re-subscribes; `subscribe`/`unsubscribe` hold it for
//! reading while their command is in flight. So the channel set and what
//! Redis confirmed never drift apart across a reconnect.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, ServerErrorKind};
use switchboard_core::broker::{BrokerError, Topic};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout};

use crate::Shared;
use crate::codec;

/// The connections and what the node subscribes to.
pub(crate) struct Link {
    command_timeout: Duration,
    cmd: RwLock<Option<MultiplexedConnection>>,
    sink: tokio::sync::RwLock<Option<PubSubSink>>,
    /// Channel → topic, for every subscription Redis confirmed.
    channels: Mutex<HashMap<String, Topic>>,
    state: Mutex<(bool, Option<String>)>,
    /// A command failed: the supervisor checks the connections.
    wake: Notify,
    /// Connections lost (and reconnections begun) since start.
    reconnects: AtomicU64,
}

impl Link {
    pub(crate) fn new(command_timeout: Duration) -> Self {
        Link {
            command_timeout,
            cmd: RwLock::new(None),
            sink: tokio::sync::RwLock::new(None),
            channels: Mutex::new(HashMap::new()),
            state: Mutex::new((false, Some("not connected yet".into()))),
            wake: Notify::new(),
            reconnects: AtomicU64::new(0),
        }
    }

    /// `(connected, detail)`.
    pub(crate) fn state(&self) -> (bool, Option<String>) {
        self.state.lock().clone()
    }

    /// Connections lost (and reconnections begun) since start.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    fn set_state(&self, connected: bool, detail: Option<String>) {
        *self.state.lock() = (connected, detail);
    }

    /// The command connection, or `Unavailable` at once while down.
    pub(crate) fn cmd(&self) -> Result<MultiplexedConnection, BrokerError> {
        match &*self.cmd.read() {
            Some(c) => Ok(c.clone()),
            None => Err(self.down()),
        }
    }

    fn down(&self) -> BrokerError {
        let detail = self.state().1.unwrap_or_else(|| "not connected".into());
        BrokerError::Unavailable(format!("redis: {detail}"))
    }

    /// Runs one command with the command timeout and maps its failure.
    pub(crate) async fn run<T>(
        &self,
        what: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match timeout(self.command_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(what, &e)),
            Err(_) => {
                self.wake.notify_one();
                let t = self.command_timeout;
                Err(BrokerError::Unavailable(format!(
                    "{what}: redis did not answer within {t:?}"
                )))
            }
        }
    }

    fn failed(&self, what: &str, e: &RedisError) -> BrokerError {
        let busy = matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
            )
        );
        let refused = matches!(
            e.kind(),
            ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::Parse
        ) || e.kind() == ErrorKind::UnexpectedReturnType;
        if refused && !busy && e.code() != Some("BUSY") {
            return BrokerError::Refused(format!("{what}: {e}"));
        }
        self.wake.notify_one();
        BrokerError::Unavailable(format!("{what}: {e}"))
    }

    /// Subscribes the pub/sub connection to `channel`; returns once Redis
    /// confirmed.
    pub(crate) async fn subscribe(
        &self,
        channel: String,
        topic: &Topic,
    ) -> Result<(), BrokerError> {
        let t = self.command_timeout;
        let Ok(guard) = timeout(t, self.sink.read()).await else {
            return Err(BrokerError::Unavailable("redis: reconnecting".into()));
        };
        let Some(mut sink) = guard.clone() else {
            return Err(self.down());
        };
        self.channels.lock().insert(channel.clone(), topic.clone());
        let result = self.run("subscribe", sink.subscribe(&channel)).await;
        if result.is_err() {
            self.channels.lock().remove(&channel);
        }
        drop(guard);
        result
    }

    /// Unsubscribes the pub/sub connection from `channel`. While the link is
    /// down there is nothing to undo: the channel is simply not subscribed
    /// again on reconnection.
    pub(crate) async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let t = self.command_timeout;
        let Ok(guard) = timeout(t, self.sink.read()).await else {
            self.channels.lock().remove(channel);
            return Err(BrokerError::Unavailable("redis: reconnecting".into()));
        };
        self.channels.lock().remove(channel);
        let Some(mut sink) = guard.clone() else {
            return Ok(());
        };
        self.run("unsubscribe", sink.unsubscribe(channel)).await
    }

    /// The rooms whose presence events the node subscribes to.
    pub(crate) fn presence_rooms(&self) -> Vec<Arc<str>> {
        let channels = self.channels.lock();
        let rooms = channels.values().filter_map(|t| match t {
            Topic::Presence(room) => Some(room.clone()),
            _ => None,
        });
        rooms.collect()
    }

    /// The streams (rooms, users, broadcasts) the node subscribes to.
    pub(crate) fn streams(&self) -> Vec<Arc<str>> {
        let channels = self.channels.lock();
        let streams = channels.values().filter_map(|t| match t {
            Topic::Room(room) => Some(room.clone()),
            t => t.stream().map(|s| Arc::from(&*s)),
        });
        streams.collect()
    }
}

/// Opens both connections and subscribes to every channel the node had.
pub(crate) async fn connect(sh: &Shared) -> Result<PubSubStream, String> {
    let cfg = &sh.config;
    let conn_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.command_timeout));
    let slow = || format!("no connection within {:?}", cfg.connect_timeout);
    let cmd = timeout(
        cfg.connect_timeout + cfg.command_timeout,
        sh.client
            .get_multiplexed_async_connection_with_config(&conn_config),
    )
    .await
    .map_err(|_| slow())?
    .map_err(|e| e.to_string())?;
    let pubsub = timeout(cfg.connect_timeout, sh.client.get_async_pubsub())
        .await
        .map_err(|_| slow())?
        .map_err(|e| e.to_string())?;
    let (mut sink, stream) = pubsub.split();
    let mut guard = timeout(cfg.command_timeout, sh.link.sink.write())
        .await
        .map_err(|_| "subscriptions busy".to_string())?;
    let channels: Vec<String> = sh.link.channels.lock().keys().cloned().collect();
    for chunk in channels.chunks(1000) {
        timeout(cfg.command_timeout, sink.subscribe(chunk))
            .await
            .map_err(|_| "re-subscribing timed out".to_string())?
            .map_err(|e| format!("re-subscribing: {e}"))?;
    }
    *guard = Some(sink);
    *sh.link.cmd.write() = Some(cmd);
    drop(guard);
    sh.link.set_state(true, None);
    Ok(stream)
}

/// The supervisor: delivers messages, watches the connections, reconnects.
pub(crate) async fn supervise(sh: Arc<Shared>, mut stream: PubSubStream) {
    loop {
        let why = watch(&sh, &mut stream).await;
        tracing::warn!(reason = %why, "redis connection lost, reconnecting");
        sh.link.reconnects.fetch_add(1, Ordering::Relaxed);
        sh.link
            .set_state(false, Some(format!("connection lost: {why}")));
        *sh.link.cmd.write() = None;
        *sh.link.sink.write().await = None;
        drop(stream);
        stream = reconnect(&sh).await;
        tracing::info!(
            channels = sh.link.channels.lock().len(),
            "redis connection restored"
        );
        sh.presence.resync.notify_one();
    }
}

/// Returns why the connections are no longer usable.
async fn watch(sh: &Shared, stream: &mut PubSubStream) -> String {
    let every = sh.config.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => deliver(sh, &msg),
                None => return "pub/sub connection closed".into(),
            },
            _ = ping.tick() => {
                if let Err(e) = check(sh).await {
                    return e;
                }
            }
            _ = sh.link.wake.notified() => {
                if let Err(e) = check(sh).await {
                    return e;
                }
            }
        }
    }
}

fn deliver(sh: &Shared, msg: &redis::Msg) {
    let Some(handler) = sh.handler.get() else {
        return;
    };
    let channel = msg.get_channel_name();
    let decoded = codec::decode(msg.get_payload_bytes());
    let topic = decoded
        .as_ref()
        .and_then(|d| sh.keys.topic(channel.as_bytes(), d.kind));
    match (decoded, topic) {
        // Delivered after the publish returned: the count has no one to
        // report to.
        (Some(d), Some(topic)) => {
            let _ = handler.deliver(&d.into_delivery(topic));
        }
        _ => tracing::warn!(channel, "dropped a malformed message"),
    }
}

/// Pings both connections.
async fn check(sh: &Shared) -> Result<(), String> {
    let t = sh.config.command_timeout;
    let cmd = sh.link.cmd.read().clone();
    if let Some(mut cmd) = cmd {
        let ping = redis::cmd("PING");
        match timeout(t, ping.query_async::<redis::Value>(&mut cmd)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("command connection: {e}")),
            Err(_) => return Err(format!("command connection: no PONG within {t:?}")),
        }
    }
    let sink = sh.link.sink.read().await.clone();
    if let Some(mut sink) = sink {
        match timeout(t, sink.ping::<redis::Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("pub/sub connection: {e}")),
            Err(_) => return Err(format!("pub/sub connection: no PONG within {t:?}")),
        }
    }
    Ok(())
}

/// Connects again, with exponential backoff and jitter, until it works.
async fn reconnect(sh: &Shared) -> PubSubStream {
    let (min, max) = (sh.config.reconnect_min, sh.config.reconnect_max);
    let mut delay = min;
    let mut attempt = 0u64;
    loop {
        // Half the delay, plus a random part of the other half: nodes that
        // lost Redis together do not all come back at the same instant.
        tokio::time::sleep(delay.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
        attempt += 1;
        match connect(sh).await {
            Ok(stream) => return stream,
            Err(e) => {
                tracing::debug!(attempt, error = %e, "redis reconnection failed");
                let detail = format!("reconnecting (attempt {attempt} failed: {e})");
                sh.link.set_state(false, Some(detail));
            }
        }
        delay = (delay * 2).min(max);
    }
}
