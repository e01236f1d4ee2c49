//! [`Client`]: the cheap, cloneable handle. Each method sends a command to
//! the connection task and, where there is an answer, awaits it on a
//! oneshot channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use switchboard_protocol::server::PresenceMember;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{PublishError, RequestError, ServerError};
use crate::event::{ConnectionState, Event, Events, RoomMessages, StopReason};

/// What the task answers a join with.
pub(crate) type JoinReply = oneshot::Sender<Result<Joined, RequestError>>;
/// What the task answers a publish with.
pub(crate) type PublishReply = oneshot::Sender<Result<Ack, PublishError>>;
/// What the task answers an rpc with.
pub(crate) type RpcReply = oneshot::Sender<Result<Box<RawValue>, RequestError>>;

/// A request from a handle to the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        room: String,
        presence: bool,
        reply: JoinReply,
    },
    Leave {
        room: String,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    Presence {
        room: String,
        reply: oneshot::Sender<Result<Vec<PresenceMember>, RequestError>>,
    },
    Publish {
        room: String,
        data: Box<RawValue>,
        options: PublishOptions,
        reply: PublishReply,
    },
    Rpc {
        method: String,
        data: Box<RawValue>,
        /// `None`: the builder's `ack_timeout`.
        timeout: Option<Duration>,
        reply: RpcReply,
    },
    SetToken {
        token: String,
        /// `Some` for [`Client::refresh`], which waits for the server.
        reply: Option<oneshot::Sender<Result<Option<u64>, RequestError>>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// The server accepted a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The offset the room gave the message (absent only from servers that
    /// do not report it).
    pub offset: Option<u64>,
    /// The publish's idempotency key was already used within the server's
    /// window: nothing was delivered this time, and `offset` is the first
    /// publish's.
    pub duplicate: bool,
}

/// The client is in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: String,
    /// The room's offset when the join took effect: messages with larger
    /// offsets will be delivered.
    pub offset: u64,
    /// The room's offset sequence (see `docs/protocol.md`).
    pub epoch: String,
}

/// A handle to a Switchboard connection. Cheap to clone; every clone talks
/// to the same connection task. When the last handle is dropped, the
/// connection is closed as by [`Client::close`].
///
/// # Cancel safety
///
/// Dropping a [`publish`](Client::publish) future before the publish was
/// sent withdraws it (a buffered publish whose caller went away is skipped);
/// once sent it cannot be withdrawn. The same holds for an
/// [`rpc`](Client::rpc): its answer is then discarded. Dropping a
/// [`join`](Client::join) future does not undo the join: the room stays in
/// the set the client keeps joined until [`leave`](Client::leave).
#[derive(Clone, Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: broadcast::WeakSender<Event>,
    state: watch::Receiver<ConnectionState>,
    buffered: Arc<AtomicUsize>,
}

impl Client {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        events: broadcast::WeakSender<Event>,
        state: watch::Receiver<ConnectionState>,
        buffered: Arc<AtomicUsize>,
    ) -> Self {
        Client {
            commands,
            events,
            state,
            buffered,
        }
    }

    /// Publishes `data` to `room` and waits for the server's `ack`.
    ///
    /// While the client is disconnected the publish waits in a bounded
    /// buffer and is sent after the next connection rejoined its rooms;
    /// the ack timeout starts when it is sent. See [`PublishError`] for
    /// each failure. The client does not need to be in the room.
    pub async fn publish(
        &self,
        room: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<Ack, PublishError> {
        self.publish_with(room, data, PublishOptions::new()).await
    }

    /// [`Client::publish`] with an idempotency key (1 to 128 visible ASCII
    /// characters): a publish of the same key to the same room within the
    /// server's window (5 minutes by default) is delivered once, and its
    /// repeat is acknowledged with the first offset and
    /// [`Ack::duplicate`]. After [`PublishError::ConnectionLost`] or
    /// [`PublishError::Timeout`] the message may or may not have been
    /// published: publishing it again with the same key makes sure it is
    /// delivered exactly once.
    pub async fn publish_with_key(
        &self,
        room: impl Into<String>,
        data: serde_json::Value,
        key: impl Into<String>,
    ) -> Result<Ack, PublishError> {
        self.publish_with(room, data, PublishOptions::new().key(key))
            .await
    }

    /// [`Client::publish`] with [`PublishOptions`]: an idempotency key
    /// and whether this connection hears its own message.
    pub async fn publish_with(
        &self,
        room: impl Into<String>,
        data: serde_json::Value,
        options: PublishOptions,
    ) -> Result<Ack, PublishError> {
        let room = room.into();
        // Serializing a `Value` cannot fail (its map keys are strings), but
        // say so plainly if it ever does.
        let raw = serde_json::value::to_raw_value(&data).map_err(|e| {
            PublishError::Rejected(ServerError {
                code: "bad_json".into(),
                message: format!("the payload could not be encoded: {e}"),
                reason: None,
            })
        })?;
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Publish {
            room,
            data: raw,
            options,
            reply,
        };
        if self.commands.send(cmd).await.is_err() {
            return Err(PublishError::Stopped(self.stop_reason()));
        }
        rx.await
            .unwrap_or_else(|_| Err(PublishError::Stopped(self.stop_reason())))
    }

    /// Joins `room` and keeps it joined across reconnects, recovering what
    /// it missed while disconnected. Resolves once the server confirmed the
    /// join; while disconnected, once the next connection joined it. A
    /// room already joined resolves at once.
    pub async fn join(&self, room: impl Into<String>) -> Result<Joined, RequestError> {
        self.join_inner(room.into(), false).await
    }

    /// Like [`join`](Client::join), and also delivers the room's
    /// [`Event::Presence`] events (members joining and leaving).
    pub async fn join_with_presence(
        &self,
        room: impl Into<String>,
    ) -> Result<Joined, RequestError> {
        self.join_inner(room.into(), true).await
    }

    async fn join_inner(&self, room: String, presence: bool) -> Result<Joined, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Join {
            room,
            presence,
            reply,
        })
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(RequestError::Stopped(self.stop_reason())))
    }

    /// Leaves `room`: it is no longer rejoined after reconnects, and its
    /// messages stop being delivered at once. Resolves when the server
    /// confirmed (at once while disconnected, or for a room the client is
    /// not in).
    pub async fn leave(&self, room: impl Into<String>) -> Result<(), RequestError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Leave {
            room: room.into(),
            reply,
        })
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(RequestError::Stopped(self.stop_reason())))
    }

    /// Who is in `room`, on every node, sorted by user. Needs a live
    /// connection ([`RequestError::NotConnected`] otherwise).
    pub async fn presence(
        &self,
        room: impl Into<String>,
    ) -> Result<Vec<PresenceMember>, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Presence {
            room: room.into(),
            reply,
        })
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(RequestError::Stopped(self.stop_reason())))
    }

    /// Calls `method` of the application with `data`, and returns its
    /// answer, the `data` of the server's `rpc_result`, as raw JSON (as the
    /// server sent it; `null` when the application gave none).
    ///
    /// The endpoint's rpc hook answers (see `docs/hooks.md`). Fails with
    /// [`RequestError::Rejected`] carrying the server's error:
    /// `refused` when the application said no (its message, and its own
    /// code in [`ServerError::reason`]), `unavailable` when it did not
    /// answer in time or could not be reached, `unknown_type` on an
    /// endpoint without an rpc hook, `invalid_field` for a method name
    /// outside 1 to 128 characters of `A-Z a-z 0-9 _ - . : /`.
    ///
    /// An rpc needs a live connection: while the client is disconnected it
    /// fails at once with [`RequestError::NotConnected`] and is not
    /// buffered. One sent when the connection drops fails with
    /// [`RequestError::ConnectionLost`], and one unanswered within the
    /// builder's `ack_timeout` with [`RequestError::Timeout`]: in both
    /// cases the application may or may not have carried it out, and the
    /// client does not send it again. Dropping the future withdraws an rpc
    /// not yet sent, but not one already sent.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use serde_json::json;
    ///
    /// let sum = client.rpc("add", &json!({"a": 2, "b": 3})).await?;
    /// assert_eq!(sum.get(), "5");
    /// match client.rpc("orders.cancel", &json!({"order": 7})).await {
    ///     Err(e) if e.reason() == Some("shipped") => println!("too late: {e}"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn rpc<D: Serialize + ?Sized>(
        &self,
        method: impl Into<String>,
        data: &D,
    ) -> Result<Box<RawValue>, RequestError> {
        self.send_rpc(method.into(), data, None).await
    }

    /// [`Client::rpc`] with its own reply timeout instead of the builder's
    /// `ack_timeout`: for methods the application takes long to answer
    /// (the server gives its rpc hook 3 seconds by default, up to 60).
    pub async fn rpc_with_timeout<D: Serialize + ?Sized>(
        &self,
        method: impl Into<String>,
        data: &D,
        timeout: Duration,
    ) -> Result<Box<RawValue>, RequestError> {
        self.send_rpc(method.into(), data, Some(timeout)).await
    }

    /// [`Client::rpc`], with the answer decoded as `T`.
    /// [`RequestError::Decode`] when it is not a `T` (the application did
    /// answer).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard_client::Client) -> Result<(), switchboard_client::RequestError> {
    /// let sum: i64 = client.rpc_json("add", &serde_json::json!({"a": 2, "b": 3})).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn rpc_json<T: DeserializeOwned, D: Serialize + ?Sized>(
        &self,
        method: impl Into<String>,
        data: &D,
    ) -> Result<T, RequestError> {
        let raw = self.send_rpc(method.into(), data, None).await?;
        serde_json::from_str(raw.get()).map_err(|e| RequestError::Decode(e.to_string()))
    }

    async fn send_rpc<D: Serialize + ?Sized>(
        &self,
        method: String,
        data: &D,
        timeout: Option<Duration>,
    ) -> Result<Box<RawValue>, RequestError> {
        let data = serde_json::value::to_raw_value(data)
            .map_err(|e| RequestError::Encode(e.to_string()))?;
        let (reply, rx) = oneshot::channel();
        self.request(Command::Rpc {
            method,
            data,
            timeout,
            reply,
        })
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(RequestError::Stopped(self.stop_reason())))
    }

    /// Replaces the credentials used by every later connection attempt. If
    /// the client is waiting after [`Event::TokenExpired`], it reconnects
    /// now; if it is connected, it also sends a `refresh` so the open
    /// connection keeps going (a refusal is reported as
    /// [`Event::ServerError`]). Use [`refresh`](Client::refresh) to wait for
    /// the server's answer.
    ///
    /// With a [token provider](crate::ClientBuilder::token_provider), the
    /// provider stays in charge: the token is sent in the `refresh`, and the
    /// next connection attempt asks the provider again.
    pub async fn set_token(&self, token: impl Into<String>) -> Result<(), RequestError> {
        let token = valid_token(token.into())?;
        self.request(Command::SetToken { token, reply: None }).await
    }

    /// Like [`set_token`](Client::set_token), and waits for the server to
    /// accept the new credentials on the open connection. Returns when they
    /// expire (Unix seconds, including the server's leeway), if they do.
    /// [`RequestError::NotConnected`] when there is no connection; the token
    /// is stored for the next one anyway (unless a
    /// [token provider](crate::ClientBuilder::token_provider) gives the
    /// tokens: the next attempt asks it).
    pub async fn refresh(&self, token: impl Into<String>) -> Result<Option<u64>, RequestError> {
        let token = valid_token(token.into())?;
        let (reply, rx) = oneshot::channel();
        self.request(Command::SetToken {
            token,
            reply: Some(reply),
        })
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(RequestError::Stopped(self.stop_reason())))
    }

    /// Closes the connection gracefully and stops the client: a close frame
    /// (1000) is sent, replies already on their way are still taken in for up
    /// to the close timeout, then every pending request and buffered publish
    /// fails with [`StopReason::ClientClosed`]. Returns when the task ended.
    /// Closing a stopped client does nothing.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A new receiver of the client's events, from now on.
    pub fn events(&self) -> Events {
        match self.events.upgrade() {
            Some(tx) => Events::new(tx.subscribe()),
            // The task is gone: a receiver that reports the end at once.
            None => Events::new(broadcast::channel(1).1),
        }
    }

    /// A new receiver of `room`'s messages only, from now on. It does not
    /// join the room.
    pub fn messages(&self, room: impl Into<String>) -> RoomMessages {
        RoomMessages::new(room.into(), self.events())
    }

    /// Where the connection stands now.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// A receiver of the connection state that can wait for changes
    /// ([`watch::Receiver::changed`], [`watch::Receiver::wait_for`]).
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// How many publishes wait in the buffer for the next connection.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    async fn request(&self, cmd: Command) -> Result<(), RequestError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| RequestError::Stopped(self.stop_reason()))
    }

    /// Why the task is gone, as it last said.
    fn stop_reason(&self) -> StopReason {
        match &*self.state.borrow() {
            ConnectionState::Stopped { reason } => reason.clone(),
            _ => StopReason::TaskEnded,
        }
    }
}

/// Checks that a token can travel in an `Authorization` header.
fn valid_token(token: String) -> Result<String, RequestError> {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map(|_| token)
        .map_err(|_| RequestError::InvalidToken)
}

/// Options of [`Client::publish_with`].
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    pub(crate) key: Option<String>,
    pub(crate) except_self: bool,
}

impl PublishOptions {
    /// No options: delivered to every member, this connection included.
    pub fn new() -> Self {
        Self::default()
    }

    /// An idempotency key (see [`Client::publish_with_key`]).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Every member of the room receives the message but this connection
    /// (the user's other connections do; the `ack` still comes). A
    /// publish held while disconnected leaves out the connection it is
    /// finally sent on. The message is in the room's history all the
    /// same: after a reconnect, recovery may bring it back, and its offset
    /// (in the [`Ack`]) tells it apart.
    pub fn except_self(mut self, except_self: bool) -> Self {
        self.except_self = except_self;
        self
    }
}
