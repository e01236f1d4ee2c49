//! The Redis broker for Switchboard: several nodes behind a load balancer
//! act as one server. Each node holds a [`RedisBroker`], which is both of
//! the node's seams to the others, [`Broker`] and [`Presence`]; a message
//! published on any node reaches the members of its room or user on every
//! node.
//!
//! ```no_run
//! use switchboard_core::Node;
//! use switchboard_redis::{RedisBroker, RedisConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = RedisBroker::connect("redis://127.0.0.1:6379", RedisConfig::default()).await?;
//! let node = Node::builder().broker(broker).default_endpoints().build()?;
//! # let _ = node; Ok(())
//! # }
//! ```
//!
//! Guarantees, key names and sizing are in `docs/scaling.md`.
//!
//! To call [`RedisBroker::close`] on shutdown, hand the node an
//! `Arc<RedisBroker>` and keep a clone: `Arc<T>` implements both traits
//! whenever `T` does.
//!
//! # Layout
//!
//! - [`config`]: [`RedisConfig`] (every default stated) and the names of
//!   every key and channel.
//! - `codec`: the compact encoding of a delivery on a channel and in history.
//! - `scripts`: the Lua scripts (room publish, position, recovery,
//!   presence), each atomic in Redis.
//! - `link`: the two connections (commands, pub/sub) and the supervisor task
//!   that delivers messages and reconnects.
//! - `presence`: presence entries with TTLs, and the refresher task.
//!
//! # Outages
//!
//! While Redis is unreachable every operation fails at once with
//! [`BrokerError::Unavailable`] (none waits longer than
//! [`RedisConfig::command_timeout`]), [`Broker::health`] says so, and the
//! supervisor reconnects with backoff, subscribes again to every topic the
//! node had, and rewrites the node's presence entries.
//!
//! # Cancel safety
//!
//! Every method may be dropped midway. A dropped `publish` may or may not
//! have been published; a dropped `subscribe` leaves the topic unsubscribed
//! or subscribed, as the hub's next call for that topic finds it.

#![forbid(unsafe_code)]

pub mod config;

mod codec;
mod link;
mod presence;
mod scripts;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::broker::{
    Broker, BrokerError, BrokerHealth, Delivery, DeliveryHandler, Position, Presence,
    PresenceEntry, Publication, Receipt, Recovery, Topic,
};
use tokio::task::JoinHandle;

use crate::config::Keys;
pub use crate::config::RedisConfig;
use crate::link::Link;
use crate::scripts::Scripts;

/// [`RedisBroker::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A setting is out of range.
    #[error("invalid redis broker config: {0}")]
    Config(String),
    /// The URL is not a Redis URL.
    #[error("invalid redis url: {0}")]
    Url(String),
    /// Redis did not accept the connections.
    #[error("cannot reach redis: {0}")]
    Unreachable(String),
}

/// State shared by the broker and its two tasks.
pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    /// This broker's random id, naming its presence entries.
    pub(crate) instance: String,
    pub(crate) client: redis::Client,
    pub(crate) handler: OnceLock<Arc<dyn DeliveryHandler>>,
    pub(crate) link: Link,
    pub(crate) presence: presence::Local,
}

/// One node's broker on a Redis server. See the crate docs.
///
/// Dropping it stops its tasks and closes its connections without any
/// cleanup, like a crash: its presence entries expire after
/// [`RedisConfig::presence_ttl`]. Call [`RedisBroker::close`] first on a
/// graceful shutdown.
pub struct RedisBroker {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`)
    /// and starts the broker's tasks. Fails if Redis cannot be reached now;
    /// later outages are survived (see the crate docs). Must be called
    /// within a Tokio runtime.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<RedisBroker, ConnectError> {
        config.validate().map_err(ConnectError::Config)?;
        let client = redis::Client::open(url).map_err(|e| ConnectError::Url(e.to_string()))?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.key_prefix),
            scripts: Scripts::new(),
            instance: format!("{:016x}", rand::random::<u64>()),
            client,
            handler: OnceLock::new(),
            link: Link::new(config.command_timeout),
            presence: presence::Local::new(),
            config,
        });
        let stream = link::connect(&shared)
            .await
            .map_err(ConnectError::Unreachable)?;
        let supervisor = tokio::spawn(link::supervise(shared.clone(), stream));
        let refresher = tokio::spawn(presence::refresher(shared.clone()));
        Ok(RedisBroker {
            shared,
            tasks: [supervisor, refresher],
        })
    }

    /// This broker's random instance id, as it appears in presence keys.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Removes this node's presence entries from Redis now instead of
    /// letting them expire. For a graceful shutdown, before dropping.
    pub async fn close(&self) -> Result<(), BrokerError> {
        presence::clear(&self.shared).await
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Milliseconds, as Redis arguments take them.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[async_trait]
impl Broker for RedisBroker {
    fn attach(&self, handler: Arc<dyn DeliveryHandler>) {
        // A second attach is ignored: the first node keeps the broker.
        let _ = self.shared.handler.set(handler);
    }

    async fn publish(&self, p: Publication) -> Result<Receipt, BrokerError> {
        let sh = &*self.shared;
        if sh.handler.get().is_none() {
            return Err(BrokerError::NotAttached);
        }
        let channel = sh.keys.channel(&p.topic);
        let idem = p
            .idempotency_key
            .as_ref()
            .map(|k| sh.keys.idem(&p.topic, k));
        let window = ms(sh.config.idempotency_window);
        let mut c = sh.link.cmd()?;
        let stream = p.stream();
        let Some(room) = stream.as_deref() else {
            let payload = codec::payload(
                codec::kind(&p.topic),
                p.from.as_deref(),
                p.except.as_deref(),
                &p.data,
            );
            let duplicate = match idem {
                None => {
                    let mut cmd = redis::cmd("PUBLISH");
                    cmd.arg(channel).arg(payload);
                    sh.link
                        .run("publish", cmd.query_async::<i64>(&mut c))
                        .await?;
                    false
                }
                Some(idem) => {
                    let mut inv = sh.scripts.publish_once.key(idem);
                    inv.arg(channel).arg(payload).arg(window);
                    let dup: i64 = sh.link.run("publish", inv.invoke_async(&mut c)).await?;
                    dup == 1
                }
            };
            return Ok(Receipt {
                offset: None,
                epoch: None,
                duplicate,
                local_recipients: None,
            });
        };
        let mut inv = sh.scripts.publish_room.key(sh.keys.seq(room));
        inv.key(sh.keys.hist(room));
        if let Some(idem) = idem {
            inv.key(idem);
        }
        inv.arg(channel)
            .arg(codec::tail(p.from.as_deref(), p.except.as_deref(), &p.data))
            .arg(new_epoch())
            .arg(sh.config.history_count)
            .arg(ms(sh.config.history_age))
            .arg(ms(sh.config.room_ttl))
            .arg(sh.config.history_bytes)
            .arg(window)
            .arg(&[codec::version(p.except.as_deref())][..])
            .arg(&[codec::kind(&p.topic)][..]);
        let (offset, epoch, duplicate): (u64, String, i64) =
            sh.link.run("publish", inv.invoke_async(&mut c)).await?;
        Ok(Receipt {
            offset: Some(offset),
            epoch: Some(Arc::from(epoch)),
            duplicate: duplicate == 1,
            local_recipients: None,
        })
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        let channel = self.shared.keys.channel(topic);
        self.shared.link.subscribe(channel, topic).await
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        let channel = self.shared.keys.channel(topic);
        self.shared.link.unsubscribe(&channel).await
    }

    async fn position(&self, room: &str) -> Result<Position, BrokerError> {
        let sh = &*self.shared;
        let mut c = sh.link.cmd()?;
        let mut inv = sh.scripts.position.key(sh.keys.seq(room));
        inv.key(sh.keys.hist(room))
            .arg(new_epoch())
            .arg(ms(sh.config.room_ttl));
        let (offset, epoch): (u64, String) =
            sh.link.run("position", inv.invoke_async(&mut c)).await?;
        Ok(Position {
            offset,
            epoch: Arc::from(epoch),
        })
    }

    fn health(&self) -> BrokerHealth {
        let (connected, detail) = self.shared.link.state();
        BrokerHealth {
            kind: "redis",
            connected,
            detail,
            history: None,
            reconnects: self.shared.link.reconnects(),
        }
    }

    async fn recover(&self, room: &str, since: &Position) -> Result<Recovery, BrokerError> {
        let sh = &*self.shared;
        let mut c = sh.link.cmd()?;
        let mut inv = sh.scripts.recover.key(sh.keys.seq(room));
        inv.key(sh.keys.hist(room))
            .arg(&*since.epoch)
            .arg(since.offset)
            .arg(new_epoch())
            .arg(ms(sh.config.history_age))
            .arg(ms(sh.config.room_ttl));
        let reply: redis::Value = sh.link.run("recover", inv.invoke_async(&mut c)).await?;
        parse_recovery(room, since, reply)
    }
}

#[async_trait]
impl Presence for RedisBroker {
    async fn add(&self, room: &str, conn: &str, user: &str) -> Result<(), BrokerError> {
        presence::add(&self.shared, room, conn, user).await
    }

    async fn remove(&self, room: &str, conn: &str) -> Result<(), BrokerError> {
        presence::remove(&self.shared, room, conn).await
    }

    async fn list(&self, room: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        let mut users: BTreeMap<String, u32> = BTreeMap::new();
        for user in presence::read(&self.shared, room).await? {
            *users.entry(user).or_default() += 1;
        }
        Ok(users
            .into_iter()
            .map(|(user, connections)| PresenceEntry {
                user: Arc::from(user),
                connections,
            })
            .collect())
    }
}

/// Turns the recovery script's reply into a [`Recovery`], checking that
/// the entries are exactly the offsets after `since`.
fn parse_recovery(
    room: &str,
    since: &Position,
    reply: redis::Value,
) -> Result<Recovery, BrokerError> {
    let bad = || BrokerError::Refused("recover: unexpected reply from redis".into());
    let redis::Value::Array(mut items) = reply else {
        return Err(bad());
    };
    let entries = if items.len() == 4 { items.pop() } else { None };
    let (found, offset, epoch): (i64, u64, String) =
        redis::from_redis_value(redis::Value::Array(items)).map_err(|_| bad())?;
    let position = Position {
        offset,
        epoch: Arc::from(epoch),
    };
    if found == 0 {
        return Ok(Recovery::Gap { position });
    }
    let entries: Vec<Vec<u8>> = match entries {
        Some(v) => redis::from_redis_value(v).map_err(|_| bad())?,
        None => Vec::new(),
    };
    let topic = Topic::from_stream(room);
    let kind = codec::kind(&topic);
    let mut messages: Vec<Delivery> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let expected = since.offset + 1 + i as u64;
        match codec::decode_entry(entry) {
            Some(d) if d.kind == kind && d.offset == Some(expected) => {
                messages.push(d.into_delivery(topic.clone()))
            }
            // Not the contiguous history the scripts keep: say so rather
            // than hand out a wrong sequence.
            _ => return Ok(Recovery::Gap { position }),
        }
    }
    if since.offset + messages.len() as u64 != position.offset {
        return Ok(Recovery::Gap { position });
    }
    Ok(Recovery::Recovered { messages, position })
}
