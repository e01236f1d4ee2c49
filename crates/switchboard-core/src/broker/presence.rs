//! The presence seam: who is in which room, across every node.
//!
//! A node records each of its connections when it joins a room and forgets
//! it when it leaves; [`Presence::list`] reads the union of every live
//! node's entries. Presence is kept apart from [`Broker`](super::Broker) so
//! that each seam stays small and a backend that lacks one of them says so
//! in its type rather than in a defaulted method. The in-memory and Redis
//! brokers implement both.
//!
//! # Guarantees a presence backend must give
//!
//! - [`Presence::list`] is the union of every live node's entries: one
//!   [`PresenceEntry`] per user, counting that user's connections on all
//!   nodes, sorted by user id.
//! - Adding the same connection twice counts it once; removing an absent
//!   connection is harmless.
//! - A node that dies without cleaning up loses its entries after a bounded
//!   time.
//! - An `Err` means the change was not recorded (or the list not read);
//!   the engine treats presence as best effort and never fails a join or a
//!   leave because of it.

use std::sync::Arc;

use async_trait::async_trait;

use super::{BoxFuture, BrokerError};

/// One user present in a room, across every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user id.
    pub user: Arc<str>,
    /// How many of the user's connections are in the room, on all nodes.
    pub connections: u32,
}

/// Records and lists who is in each room. See the module docs for the
/// guarantees.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Records that connection `conn` (a cluster-unique id, `<node>-<n>`) of
    /// `user` is in `room`. Adding the same connection again is harmless.
    async fn add(&self, room: &str, conn: &str, user: &str) -> Result<(), BrokerError>;

    /// Forgets connection `conn` in `room`. Removing an absent connection is
    /// harmless.
    async fn remove(&self, room: &str, conn: &str) -> Result<(), BrokerError>;

    /// Who is in `room`, on every live node: one entry per user, sorted by
    /// user id.
    async fn list(&self, room: &str) -> Result<Vec<PresenceEntry>, BrokerError>;
}

/// A shared presence backend is one: each call goes to the backend itself,
/// returning its future as is (no allocation of its own).
impl<P: Presence + ?Sized> Presence for Arc<P> {
    fn add<'s, 'r, 'c, 'u, 'f>(
        &'s self,
        room: &'r str,
        conn: &'c str,
        user: &'u str,
    ) -> BoxFuture<'f, Result<(), BrokerError>>
    where
        's: 'f,
        'r: 'f,
        'c: 'f,
        'u: 'f,
        Self: 'f,
    {
        (**self).add(room, conn, user)
    }

    fn remove<'s, 'r, 'c, 'f>(
        &'s self,
        room: &'r str,
        conn: &'c str,
    ) -> BoxFuture<'f, Result<(), BrokerError>>
    where
        's: 'f,
        'r: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).remove(room, conn)
    }

    fn list<'s, 'r, 'f>(
        &'s self,
        room: &'r str,
    ) -> BoxFuture<'f, Result<Vec<PresenceEntry>, BrokerError>>
    where
        's: 'f,
        'r: 'f,
        Self: 'f,
    {
        (**self).list(room)
    }
}
