//! What the client tells the application: [`Event`]s on a broadcast stream
//! ([`Events`]), room-filtered message streams ([`RoomMessages`]), and the
//! connection state ([`ConnectionState`]).
//!
//! # Lagging
//!
//! Events go through a [`tokio::sync::broadcast`] channel of
//! `event_buffer` entries (1024 by default). The connection task never waits
//! for a slow reader: a receiver that falls more than `event_buffer` events
//! behind loses the oldest ones and is told so with [`Event::Lagged`] (or
//! [`Lagged`] on a [`RoomMessages`]) carrying how many it missed. The
//! client's own dedupe state counts them as delivered, so a lagging
//! application should reload what it shows, as after
//! [`Event::RecoveryFailed`].
//!
//! # Closing
//!
//! After [`Event::Stopped`] the stream ends: [`Events::recv`] returns the
//! events still buffered, then `None`.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use switchboard_protocol::CloseCode;
use tokio::sync::broadcast;

/// Something that happened to the client or arrived from the server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection attempt started. `attempt` is 0 for the very first
    /// connection, then the number of the reconnect attempt (see
    /// [`Event::Reconnecting`]).
    Connecting {
        /// The attempt number.
        attempt: u32,
    },
    /// The server welcomed the connection. Rooms are being rejoined and
    /// buffered publishes sent.
    Connected {
        /// The user id the server accepted the connection as.
        user: String,
        /// The server's id for this connection (for logs).
        conn: String,
    },
    /// The connection ended. What follows is [`Event::Reconnecting`],
    /// [`Event::TokenExpired`] or [`Event::Stopped`], as the close code's
    /// policy says.
    Disconnected {
        /// The close code the server sent; 1006 (`abnormal`) when the
        /// connection dropped without a close frame (network error, dead
        /// server, connect failure).
        code: CloseCode,
        /// The close reason, or a description of the failure.
        reason: String,
    },
    /// A connection attempt failed before the server's `welcome` (refused,
    /// timed out, refused at the upgrade with an HTTP status, or no token
    /// from the token provider). What follows is [`Event::Reconnecting`],
    /// [`Event::TokenExpired`] or [`Event::Stopped`].
    ConnectFailed {
        /// Why.
        error: crate::ConnectError,
    },
    /// The client will try to connect again after `delay`.
    Reconnecting {
        /// The number of this attempt since the last stable connection,
        /// starting at 1. With backoff, `delay` was drawn from
        /// `[0, min(cap, base · 2^(attempt−1))]`.
        attempt: u32,
        /// How long the client waits before the attempt.
        delay: Duration,
    },
    /// The client gave up for good; nothing more will happen. Every pending
    /// request and buffered publish fails with this reason.
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// A message arrived (a room message is delivered at most once per
    /// offset).
    Message(Message),
    /// A member joined or left a room joined with
    /// [`Client::join_with_presence`](crate::Client::join_with_presence).
    Presence(PresenceEvent),
    /// After a reconnect, the server could not replay what this room missed
    /// (its history no longer covers the gap, or the room's offsets
    /// restarted). The room is joined again and live messages flow, but some
    /// were lost: reload the room's state from the application's source of
    /// truth.
    ///
    /// When the offsets restarted (a new epoch: a server on the in-memory
    /// broker restarted, or the room sat unused for its history's age) and
    /// the new epoch already has messages, every one of them came after
    /// the client's last: the client then asks for the new epoch from its
    /// start (a `leave`, then a `join` with `since` offset 0; the room's
    /// presence watchers see this connection leave and join again) and
    /// delivers those messages after this event.
    RecoveryFailed {
        /// The room.
        room: String,
    },
    /// After a reconnect, the server could not replay every message sent to
    /// this client's user while it was away: the history no longer reached
    /// back to the last one delivered, or the user's stream restarted (a
    /// new epoch). Some were lost: reload what depends on them from the
    /// application's source of truth. When the stream restarted and the
    /// history holds the whole new epoch, its messages are delivered after
    /// this event (they were all sent after the client's last). Emitted
    /// before [`Event::Connected`].
    UserRecoveryFailed,
    /// The server closed the connection because the credentials expired
    /// (4004). With a
    /// [token provider](crate::ClientBuilder::token_provider), the client
    /// reconnects (with backoff) and asks the provider for a new token.
    /// Without one, it waits, without reconnecting, until the application
    /// calls [`Client::set_token`](crate::Client::set_token).
    TokenExpired,
    /// The server took this connection out of a room on its own (a `refresh`
    /// with narrower room claims). The client no longer rejoins it.
    Left {
        /// The room.
        room: String,
    },
    /// Rejoining a room after a reconnect failed (for example `forbidden`
    /// after the token changed, or `unavailable`). The client no longer
    /// rejoins it; call [`Client::join`](crate::Client::join) to try again.
    JoinFailed {
        /// The room.
        room: String,
        /// The server's refusal.
        error: crate::ServerError,
    },
    /// An `error` frame that answers no pending request (for example
    /// `rate_limited` for a frame without id).
    ServerError(crate::ServerError),
    /// This receiver fell behind and lost `missed` events (see
    /// [Lagging](self#lagging)). Produced by [`Events::recv`], never sent by
    /// the connection task.
    Lagged {
        /// How many events were lost.
        missed: u64,
    },
}

/// Why the client stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StopReason {
    /// The server closed with a code whose policy is never to reconnect:
    /// 4401 unauthorized, 4403 forbidden, 1000 normal, or 1002, 1003, 1007
    /// (a client bug).
    #[error("closed by the server with {code}: {reason}")]
    Closed {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// The server refused the upgrade with an HTTP status that will not
    /// change on retry: 400, 404, 405, 426 and other 4xx except 401, 403,
    /// 408 and 429. Also the first attempt of
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect) refused
    /// with any of those or with 401 or 403.
    #[error("upgrade refused with HTTP {status}: {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The server refused the same credentials at the upgrade (HTTP 401 or
    /// 403) `attempts` times in a row, the builder's
    /// [`max_refusals`](crate::ClientBuilder::max_refusals): they will not
    /// be accepted. A token provider that hands out a different token starts
    /// the count again.
    #[error("credentials refused {attempts} times in a row with HTTP {status}: {body}")]
    CredentialsRefused {
        /// The HTTP status of the last refusal (401 or 403).
        status: u16,
        /// The last refusal's response body.
        body: String,
        /// How many attempts in a row were refused with these credentials.
        attempts: u32,
    },
    /// The application called [`Client::close`](crate::Client::close) or
    /// dropped every [`Client`](crate::Client) handle.
    #[error("closed by the application")]
    ClientClosed,
    /// The connection task ended without saying why (its runtime shut down).
    #[error("the connection task ended")]
    TaskEnded,
}

/// Where a delivered message was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A room this client joined.
    Room(String),
    /// This connection's user (every connection of the user receives it).
    User(String),
    /// Everyone.
    Broadcast,
}

/// A delivered message.
#[derive(Clone, Debug)]
pub struct Message {
    /// Where it was sent.
    pub target: Target,
    /// The room offset, for room messages.
    pub offset: Option<u64>,
    /// The publishing user, for messages that a client published; `None`
    /// when a backend published it.
    pub from: Option<String>,
    /// The payload, byte for byte as published.
    pub data: Arc<RawValue>,
}

impl Message {
    /// The room, for room messages.
    pub fn room(&self) -> Option<&str> {
        match &self.target {
            Target::Room(r) => Some(r),
            _ => None,
        }
    }

    /// Decodes the payload.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }
}

/// A member joined or left a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The room.
    pub room: String,
    /// Whether the member joined or left.
    pub change: PresenceChange,
    /// The member's user id.
    pub user: String,
    /// The member's connection id.
    pub conn: String,
}

/// What a [`PresenceEvent`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceChange {
    /// A connection joined the room.
    Join,
    /// A connection left the room.
    Leave,
    /// An event kind this version does not know, as sent.
    Other(String),
}

/// Where the connection stands; see [`Client::state`](crate::Client::state).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting, or waiting to reconnect.
    Connecting,
    /// Welcomed by the server.
    Connected {
        /// The user id the server accepted.
        user: String,
    },
    /// Waiting for [`Client::set_token`](crate::Client::set_token) after
    /// the credentials expired (only without a token provider).
    WaitingForToken,
    /// Stopped for good.
    Stopped {
        /// Why.
        reason: StopReason,
    },
}

/// The client's events, from the moment the client was built (the receiver
/// returned by the builder) or from the moment of
/// [`Client::events`](crate::Client::events). See the [module docs](self).
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Event>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Events { rx }
    }

    /// The next event; `None` once the client stopped and every event was
    /// read. A receiver that fell behind gets [`Event::Lagged`] first.
    ///
    /// Cancel safe: dropping the future loses no event.
    pub async fn recv(&mut self) -> Option<Event> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Event::Lagged { missed }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The events as a [`Stream`](futures_util::Stream).
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Event> + Send + 'static {
        futures_util::stream::unfold(self, |mut events| async move {
            events.recv().await.map(|e| (e, events))
        })
    }
}

/// A receiver fell behind and lost this many events (see
/// [Lagging](self#lagging)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("lagged behind: {0} events lost")]
pub struct Lagged(pub u64);

/// The messages of one room; see
/// [`Client::messages`](crate::Client::messages).
#[derive(Debug)]
pub struct RoomMessages {
    room: String,
    events: Events,
}

impl RoomMessages {
    pub(crate) fn new(room: String, events: Events) -> Self {
        RoomMessages { room, events }
    }

    /// The room.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The room's next message; `Err(Lagged)` if this receiver fell behind
    /// (the lost events may or may not have been this room's); `None` once
    /// the client stopped.
    ///
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Lagged>> {
        loop {
            match self.events.recv().await? {
                Event::Message(m) if m.room() == Some(self.room.as_str()) => return Some(Ok(m)),
                Event::Lagged { missed } => return Some(Err(Lagged(missed))),
                _ => {}
            }
        }
    }
}
