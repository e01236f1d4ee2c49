//! The broker: the only seam between nodes.
//!
//! A node subscribes to a [`Topic`] when its first local member of that topic
//! appears and unsubscribes when the last one leaves. Every publish goes
//! through the broker, which assigns room offsets and hands a [`Delivery`] to
//! every node subscribed to the topic (the publishing node included), through
//! the [`DeliveryHandler`] the node attached. Clients never talk to the
//! broker.
//!
//! Two small traits make the seam: [`Broker`] (publish, subscribe, room
//! positions and history) and [`Presence`] (who is in which room). A node
//! takes one value that implements both; `Arc<T>` implements each trait that
//! `T` does, so a broker shared with other code needs no wrapper.
//!
//! # Guarantees a broker must give
//!
//! - `publish` returns `Ok` only once the message was accepted for delivery
//!   (and, for rooms, given its offset and stored in the room's history). An
//!   `Err` means it was not delivered anywhere, and callers report it as
//!   failed.
//! - `subscribe` returns `Ok` only once the subscription is in force: every
//!   message published after it returned reaches this node.
//! - Each subscribed node receives each message once; a node that is not
//!   subscribed receives nothing.
//! - Offsets are assigned in one sequence per stream (room, user, or the
//!   broadcast stream), starting at 1, and a node receives one stream's
//!   deliveries in offset order. Messages of one
//!   publisher that awaits each publish arrive in the order published.
//! - The epoch returned with a position changes whenever a room's offset
//!   sequence restarts, so offsets from different epochs are never compared.
//! - Live delivery is at most once: a node that loses its connection to the
//!   broker misses what was published meanwhile. Rooms make up for it with a
//!   bounded history: [`Broker::recover`] returns what a client missed, or
//!   says plainly ([`Recovery::Gap`]) that it cannot.
//! - A publication with an idempotency key is delivered at most once per
//!   topic and key within the broker's idempotency window, across every
//!   node: the check and the publish are one atomic step, so two racing
//!   publishes with one key deliver one message.
//! - Presence ([`Presence::list`]) is the union of every live node's
//!   entries; a node that dies without cleaning up loses its entries after a
//!   bounded time (see [`Presence`]).
//!
//! Rooms, users and broadcasts get offsets and history: each has a
//! *stream*, one offset sequence with its epoch and bounded history, named
//! by [`Topic::stream`] (a room's stream is its name; a user's is
//! `/user/<id>`; broadcasts share `/broadcast`). [`Broker::position`] and
//! [`Broker::recover`] take stream names. Join/leave events go to
//! [`Topic::Presence`] of the room: no offsets, no history.
//!
//! Implementations: [`memory::MemoryBroker`] (the default; one process, or
//! several nodes linked in one process for tests) and, in the
//! `switchboard-redis` crate, a Redis broker. The checks every
//! implementation must pass, the broker conformance suite, live in the
//! dev-only `switchboard-testkit` crate (`switchboard_testkit::conformance`).

pub mod memory;
mod presence;

pub use presence::{Presence, PresenceEntry};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

/// What a message is addressed to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everyone in a room.
    Room(Arc<str>),
    /// Every connection of one user, on every node.
    User(Arc<str>),
    /// Every connection that accepts broadcasts, on every node.
    Broadcast,
    /// Join and leave events of one room. No offsets, no history.
    Presence(Arc<str>),
}

/// The stream name prefix of a user's stream. Room names cannot hold `/`,
/// so no room shares a user's stream.
const USER_STREAM: &str = "/user/";

/// The stream name of the broadcast stream.
pub const BROADCAST_STREAM: &str = "/broadcast";

impl Topic {
    /// The name of the topic's stream (offset sequence, epoch and history),
    /// as [`Broker::position`] and [`Broker::recover`] take it: a room's
    /// name, `/user/<id>` for a user, [`BROADCAST_STREAM`] for broadcasts.
    /// `None` for presence events, which have no stream.
    pub fn stream(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            Topic::Room(room) => Some(Cow::Borrowed(room)),
            Topic::User(user) => Some(Cow::Owned(user_stream(user))),
            Topic::Broadcast => Some(Cow::Borrowed(BROADCAST_STREAM)),
            Topic::Presence(_) => None,
        }
    }

    /// The topic whose stream is named `stream` (the inverse of
    /// [`Topic::stream`]).
    pub fn from_stream(stream: &str) -> Topic {
        if stream == BROADCAST_STREAM {
            Topic::Broadcast
        } else if let Some(user) = stream.strip_prefix(USER_STREAM) {
            Topic::User(Arc::from(user))
        } else {
            Topic::Room(Arc::from(stream))
        }
    }
}

/// The `from` of the control message that ends a user's connections
/// ([`Node::disconnect_user`](crate::Node::disconnect_user)): a control
/// character, which no user id can hold, so no publish can forge it. It
/// travels on the user's topic but has no place in the user's stream (no
/// offset, no history): see [`Publication::stream`].
pub const DISCONNECT_FROM: &str = "\u{0}disconnect";

impl Publication {
    /// The stream this publication goes into, if any: its topic's
    /// [`Topic::stream`], except for the control message that ends a
    /// user's connections, which is delivered live only.
    pub fn stream(&self) -> Option<std::borrow::Cow<'_, str>> {
        if self.from.as_deref() == Some(DISCONNECT_FROM) {
            return None;
        }
        self.topic.stream()
    }
}

/// The stream name of a user's messages: `/user/<id>`.
pub fn user_stream(user: &str) -> String {
    let mut name = String::with_capacity(USER_STREAM.len() + user.len());
    name.push_str(USER_STREAM);
    name.push_str(user);
    name
}

/// A message handed to [`Broker::publish`].
#[derive(Clone, Debug)]
pub struct Publication {
    /// Where it goes.
    pub topic: Topic,
    /// The payload as JSON text. It was validated where it entered the
    /// system; brokers carry it as opaque bytes.
    pub data: Bytes,
    /// The publishing user, when a client published it.
    pub from: Option<Arc<str>>,
    /// When set, a publication to the same topic with the same key within
    /// the broker's idempotency window is not delivered again: the broker
    /// answers with the first one's receipt, marked as a duplicate. The
    /// node scopes keys by publisher (the HTTP API, or one user).
    pub idempotency_key: Option<Arc<str>>,
    /// A connection id (as [`Conn::id`](crate::Conn::id) gives it:
    /// `<node>-<n>`) that this message is not delivered to live: the
    /// publisher's own connection, when it asked not to hear its message
    /// back. Brokers carry it to every node; the node that holds the
    /// connection skips it. It stays in the room's history: a connection
    /// that recovers is a new connection and receives it.
    pub except: Option<Arc<str>>,
}

/// A message a broker hands to a subscribed node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Where it goes.
    pub topic: Topic,
    /// The offset in the topic's stream (rooms, users, broadcasts; `None`
    /// for presence events, and for a message a node delivered locally
    /// during a broker outage).
    pub offset: Option<u64>,
    /// The payload as JSON text.
    pub data: Bytes,
    /// The publishing user, if any.
    pub from: Option<Arc<str>>,
    /// The connection this message is not delivered to (see
    /// [`Publication::except`]).
    pub except: Option<Arc<str>>,
}

/// What a successful publish reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The offset assigned (topics with a stream; see [`Topic::stream`]).
    pub offset: Option<u64>,
    /// The stream's epoch (topics with a stream).
    pub epoch: Option<Arc<str>>,
    /// The publication's idempotency key was seen within the window: this
    /// publish delivered nothing, and the offset and epoch are the first
    /// one's.
    pub duplicate: bool,
    /// How many of the publishing node's connections the message was queued
    /// for, when the broker delivered it before `publish` returned (the
    /// in-memory broker; 0 for a duplicate, which delivered nothing).
    /// `None` when delivery happens after `publish` returns, as through
    /// Redis pub/sub: the count is not known then.
    pub local_recipients: Option<usize>,
}

/// Where a room's offset sequence stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The offset of the last message published (0 when none was).
    pub offset: u64,
    /// The sequence's epoch.
    pub epoch: Arc<str>,
}

/// What [`Broker::recover`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Every message after the given position, in offset order, up to and
    /// including `position.offset`: nothing is missing.
    Recovered {
        /// The messages with offsets `since.offset + 1 ..= position.offset`.
        messages: Vec<Delivery>,
        /// The room's position when the history was read.
        position: Position,
    },
    /// The messages cannot all be returned: the epoch changed, or the history
    /// no longer reaches back that far (trimmed by count or by age). The
    /// client must resynchronise some other way.
    Gap {
        /// The room's current position, to continue from.
        position: Position,
    },
}

impl Recovery {
    /// The room's position reported with either outcome.
    pub fn position(&self) -> &Position {
        match self {
            Recovery::Recovered { position, .. } | Recovery::Gap { position } => position,
        }
    }
}

/// A broker's state, shown by `/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokerHealth {
    /// The implementation, e.g. `"memory"`.
    pub kind: &'static str,
    /// Whether the broker is reachable and accepting publishes.
    pub connected: bool,
    /// A short explanation when not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The memory the broker's room history and state take on this node,
    /// for a broker that keeps them in the node (the in-memory one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryUsage>,
    /// Times the connection to the broker was lost and reconnection began,
    /// since start (`0` for a broker without a connection).
    pub reconnects: u64,
}

/// What a broker's room history and state take in memory, against its
/// budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HistoryUsage {
    /// Bytes counted: retained payloads and publisher ids, plus a fixed
    /// overhead per message and per room.
    pub bytes: u64,
    /// The most bytes allowed.
    pub budget: u64,
    /// Messages evicted, oldest first, to stay within the budget, since
    /// start.
    pub evicted: u64,
}

/// A broker operation failed. Nothing was delivered.
///
/// More kinds of failure may be added: match with a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached right now.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the operation.
    #[error("broker refused: {0}")]
    Refused(String),
    /// No node is attached yet ([`Broker::attach`] was not called).
    #[error("broker not attached to a node")]
    NotAttached,
}

/// Receives the deliveries for the topics a node subscribed to. The node's
/// hub implements it. `deliver` must not block: it only queues frames.
pub trait DeliveryHandler: Send + Sync + 'static {
    /// One message for a topic this node subscribed to. Returns how many of
    /// the node's connections it was queued for (a broker that delivers
    /// before `publish` returns reports it in [`Receipt::local_recipients`];
    /// others may ignore it).
    fn deliver(&self, delivery: &Delivery) -> usize;
}

/// The future a seam method returns: what `#[async_trait]` makes of an
/// `async fn` in [`Broker`] and [`Presence`], named so that `Arc<T>` can
/// hand on `T`'s future without boxing it again.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The seam between nodes. Small on purpose: see the module docs for the
/// guarantees. Every method is required; a broker without history says so
/// in [`Broker::recover`]. Presence is the separate [`Presence`] trait.
///
/// The methods return boxed futures (`#[async_trait]`, called through
/// `Arc<dyn Broker>`): one allocation per publish, not per recipient. Kept
/// because it is a small fraction of a publish: allocating, awaiting and
/// freeing a boxed ready future the size of the in-memory broker's publish
/// future (104 bytes) takes 10-12 ns, against 400-422 ns for a whole
/// `Node::publish_room` on the in-memory broker with no subscribers (about
/// 3 %; medians of 3 runs of `taskset -c 1
/// target/release/examples/broker_publish_cost`, with jemalloc as in the
/// server binary; docs/performance.md, "Boxed broker futures").
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Connects the broker to the node's hub. Called once, by the node,
    /// before any other method.
    fn attach(&self, handler: Arc<dyn DeliveryHandler>);

    /// Publishes a message. Returns `Ok` once the broker accepted it: a room
    /// message has its offset and is in the room's history, and the message
    /// is on its way to every node subscribed at that moment. The in-memory
    /// broker has handed it to every handler before it returns; across a
    /// network (Redis) a node's handler, the publisher's own included, may
    /// see it just after `publish` returned.
    async fn publish(&self, publication: Publication) -> Result<Receipt, BrokerError>;

    /// Starts delivering `topic` to this node. Returns once the subscription
    /// is in force: everything published after that reaches this node.
    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError>;

    /// Stops delivering `topic` to this node.
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError>;

    /// Where a stream's offset sequence stands (`room` is a stream name:
    /// a room's name, or another topic's [`Topic::stream`]). A stream
    /// nobody published to has offset 0 and an epoch that its first
    /// message will carry.
    async fn position(&self, room: &str) -> Result<Position, BrokerError>;

    /// The retained messages of stream `room` (a room's name, or another
    /// topic's [`Topic::stream`]) after `since`. The deliveries carry the
    /// stream's topic ([`Topic::from_stream`]).
    ///
    /// Returns [`Recovery::Recovered`] with every message whose offset is
    /// greater than `since.offset`, in offset order, when `since.epoch` is
    /// the room's current epoch and the history still holds offset
    /// `since.offset + 1` (or nothing was published since:
    /// `since.offset` is the current offset). Otherwise [`Recovery::Gap`]:
    /// the epoch changed, `since.offset` is ahead of the room, or the
    /// history was trimmed (by count or by age) past it.
    ///
    /// The returned position is the room's position when the history was
    /// read, and the messages reach at least up to it. A caller that
    /// subscribes first and recovers second therefore misses nothing: it
    /// drops live deliveries with offsets at or below `position.offset`.
    ///
    /// A broker without history always reports a gap with the room's
    /// current [`position`](Broker::position).
    async fn recover(&self, room: &str, since: &Position) -> Result<Recovery, BrokerError>;

    /// The broker's state.
    fn health(&self) -> BrokerHealth;
}

/// A shared broker is one: each call goes to the broker itself, returning
/// its future as is (no allocation of its own on the publish path).
impl<B: Broker + ?Sized> Broker for Arc<B> {
    fn attach(&self, handler: Arc<dyn DeliveryHandler>) {
        (**self).attach(handler)
    }

    fn publish<'s, 'f>(
        &'s self,
        publication: Publication,
    ) -> BoxFuture<'f, Result<Receipt, BrokerError>>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).publish(publication)
    }

    fn subscribe<'s, 't, 'f>(&'s self, topic: &'t Topic) -> BoxFuture<'f, Result<(), BrokerError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        (**self).subscribe(topic)
    }

    fn unsubscribe<'s, 't, 'f>(&'s self, topic: &'t Topic) -> BoxFuture<'f, Result<(), BrokerError>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        (**self).unsubscribe(topic)
    }

    fn position<'s, 'r, 'f>(&'s self, room: &'r str) -> BoxFuture<'f, Result<Position, BrokerError>>
    where
        's: 'f,
        'r: 'f,
        Self: 'f,
    {
        (**self).position(room)
    }

    fn recover<'s, 'r, 'p, 'f>(
        &'s self,
        room: &'r str,
        since: &'p Position,
    ) -> BoxFuture<'f, Result<Recovery, BrokerError>>
    where
        's: 'f,
        'r: 'f,
        'p: 'f,
        Self: 'f,
    {
        (**self).recover(room, since)
    }

    fn health(&self) -> BrokerHealth {
        (**self).health()
    }
}
