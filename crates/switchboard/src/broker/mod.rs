//! The broker: the only seam between nodes.
//!
//! A node subscribes to a [`Topic`] when its first local member of that topic
//! appears and unsubscribes when the last one leaves. Every publish goes
//! through the broker, which assigns room offsets and hands a [`Delivery`] to
//! every node subscribed to the topic (the publishing node included), through
//! the [`DeliveryHandler`] the node attached. Clients never talk to the
//! broker.
//!
//! # Guarantees a broker must give
//!
//! - `publish` returns `Ok` only once the message was accepted for delivery
//!   (and, for rooms, given its offset). An `Err` means it was not delivered
//!   anywhere, and callers report it as failed.
//! - Room offsets are assigned in one sequence per room, starting at 1, and a
//!   node receives one room's deliveries in offset order.
//! - The epoch returned with a position changes whenever a room's offset
//!   sequence restarts, so offsets from different epochs are never compared.
//!
//! Implementations: [`memory::MemoryBroker`] (the default; one process, or
//! several nodes linked in one process for tests).

pub mod memory;

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
}

/// A message a broker hands to a subscribed node.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Where it goes.
    pub topic: Topic,
    /// The room offset (room topics only).
    pub offset: Option<u64>,
    /// The payload as JSON text.
    pub data: Bytes,
    /// The publishing user, if any.
    pub from: Option<Arc<str>>,
}

/// What a successful publish reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The offset assigned (room topics only).
    pub offset: Option<u64>,
    /// The room's epoch (room topics only).
    pub epoch: Option<Arc<str>>,
}

/// Where a room's offset sequence stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The offset of the last message published (0 when none was).
    pub offset: u64,
    /// The sequence's epoch.
    pub epoch: Arc<str>,
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
}

/// A broker operation failed. Nothing was delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
    /// One message for a topic this node subscribed to.
    fn deliver(&self, delivery: &Delivery);
}

/// The seam between nodes. Small on purpose: see the module docs for the
/// guarantees.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Connects the broker to the node's hub. Called once, by the node,
    /// before any other method.
    fn attach(&self, handler: Arc<dyn DeliveryHandler>);

    /// Publishes a message: assigns a room offset, delivers to every
    /// subscribed node, and only then returns `Ok`.
    async fn publish(&self, publication: Publication) -> Result<Receipt, BrokerError>;

    /// Starts delivering `topic` to this node.
    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError>;

    /// Stops delivering `topic` to this node.
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError>;

    /// Where a room's offset sequence stands.
    async fn position(&self, room: &str) -> Result<Position, BrokerError>;

    /// The broker's state.
    fn health(&self) -> BrokerHealth;
}
