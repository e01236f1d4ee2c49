//! [`Events`]: what happens to connections, told to the application as it
//! happens: connects and disconnects, joins and leaves, and a user's first
//! and last connection on this node. The `switchboard` crate's events hook
//! delivers them to an application over HTTP, in batches; a Rust
//! application can implement the trait in-process.
//!
//! Events are recorded from the connections' own tasks and must never make
//! them wait: an implementation queues and returns.

use std::sync::Arc;

use serde::Serialize;

/// One thing that happened. Serialized with its kind in `event`
/// (`"connect"`, `"disconnect"`, `"join"`, `"leave"`, `"online"`,
/// `"offline"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A connection opened (after the handshake).
    Connect {
        /// The connection's user.
        user: Arc<str>,
        /// The connection's id, unique in the cluster (as in `welcome`).
        conn: String,
        /// The endpoint's path.
        path: String,
    },
    /// A connection ended, whatever ended it.
    Disconnect {
        /// The connection's user.
        user: Arc<str>,
        /// The connection's id.
        conn: String,
        /// The close code, when there was a close frame.
        code: Option<u16>,
        /// Why it ended.
        reason: String,
    },
    /// A connection joined a room.
    Join {
        /// The connection's user.
        user: Arc<str>,
        /// The connection's id.
        conn: String,
        /// The room.
        room: Arc<str>,
    },
    /// A connection left a room (on its own, after a refresh narrowed its
    /// rooms, or because it ended).
    Leave {
        /// The connection's user.
        user: Arc<str>,
        /// The connection's id.
        conn: String,
        /// The room.
        room: Arc<str>,
    },
    /// The user's first connection on this node opened.
    Online {
        /// The user.
        user: Arc<str>,
        /// This node's id.
        node: Arc<str>,
    },
    /// The user's last connection on this node ended.
    Offline {
        /// The user.
        user: Arc<str>,
        /// This node's id.
        node: Arc<str>,
    },
}

/// Receives every [`Event`] of a node. `record` is called from connection
/// tasks: it must return at once (queue the event, never wait for I/O).
pub trait Events: Send + Sync + 'static {
    /// Takes one event.
    fn record(&self, event: Event);
}

impl<E: Events + ?Sized> Events for Arc<E> {
    fn record(&self, event: Event) {
        (**self).record(event)
    }
}
