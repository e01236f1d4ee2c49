//! The local members of one topic, and the phases a member that joins a
//! stream with a position goes through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;

use super::ConnId;
use crate::outbox::Outbox;

/// The local connections of one topic. Most users have one connection and
/// most presence watchers are alone, so one member is held inline; the hash
/// map (boxed, so the inline form stays small in the index's table) is only
/// built for the second.
#[derive(Default)]
pub(super) enum Members {
    #[default]
    Empty,
    One(ConnId, Arc<Outbox>),
    #[allow(
        clippy::box_collection,
        reason = "boxed to keep every index entry small; the map is rare"
    )]
    Many(Box<HashMap<ConnId, Arc<Outbox>>>),
}

impl Members {
    pub(super) fn len(&self) -> usize {
        match self {
            Members::Empty => 0,
            Members::One(..) => 1,
            Members::Many(m) => m.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn insert(&mut self, conn: ConnId, outbox: Arc<Outbox>) {
        match self {
            Members::Empty => *self = Members::One(conn, outbox),
            Members::One(id, existing) if *id == conn => *existing = outbox,
            Members::One(..) => {
                let Members::One(id, existing) = std::mem::take(self) else {
                    unreachable!("matched One above");
                };
                let mut m = HashMap::with_capacity(2);
                m.insert(id, existing);
                m.insert(conn, outbox);
                *self = Members::Many(Box::new(m));
            }
            Members::Many(m) => {
                m.insert(conn, outbox);
            }
        }
    }

    pub(super) fn remove(&mut self, conn: &ConnId) -> Option<Arc<Outbox>> {
        match self {
            Members::One(id, _) if id == conn => {
                let Members::One(_, outbox) = std::mem::take(self) else {
                    unreachable!("matched One above");
                };
                Some(outbox)
            }
            Members::Many(m) => {
                let removed = m.remove(conn);
                if m.is_empty() {
                    *self = Members::Empty;
                }
                removed
            }
            _ => None,
        }
    }

    /// The outboxes of every member but `skip`.
    pub(super) fn values_except(&self, skip: Option<ConnId>) -> impl Iterator<Item = &Arc<Outbox>> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(id, outbox) => (Some(outbox).filter(|_| Some(*id) != skip), None),
            Members::Many(m) => (None, Some(m.iter())),
        };
        let many = many
            .into_iter()
            .flatten()
            .filter(move |(id, _)| Some(**id) != skip)
            .map(|(_, outbox)| outbox);
        one.into_iter().chain(many)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Outbox>> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(_, outbox) => (Some(outbox), None),
            Members::Many(m) => (None, Some(m.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// A stream's local members: a room's, or a user's connections. A member
/// that joins with a position goes through [`Seam`] phases before it is
/// live, so that the client sees replay, then live, with no gap and no
/// duplicate where they meet.
#[derive(Default)]
pub(super) struct StreamMembers {
    pub(super) live: Members,
    pub(super) joining: parking_lot::Mutex<HashMap<ConnId, Joining>>,
    /// The offset of the last delivery of the room or user this node
    /// received since it subscribed (0: none yet). The broker delivers one
    /// stream's messages to a node in offset order, one after another, so the next
    /// one must carry `last + 1`; any other offset means this node missed
    /// messages (its broker link was cut) or the sequence restarted (a new
    /// epoch), and its members are sent to recover (see `Hub::resync`).
    pub(super) last: AtomicU64,
}

/// A member on its way in: see [`Seam`].
pub(super) struct Joining {
    pub(super) outbox: Arc<Outbox>,
    pub(super) seam: Seam,
}

/// Where a joining member stands.
///
/// The room's position is read from the broker after the node subscribed,
/// and through a broker across a network (Redis) that read and the live
/// stream travel on different connections: a message at or below the
/// position read may reach this node before the read completes, or after
/// it. Both are handled.
pub(super) enum Seam {
    /// The position (and the replay) is being read: live deliveries are
    /// held, with their offsets.
    Reading(Vec<(u64, Bytes)>),
    /// The replay and the reply are queued, up to `after`: deliveries at or
    /// below it are late copies of what the replay held and are dropped;
    /// the first one above it is queued and makes the member live.
    Seaming { after: u64 },
    /// Caught up: receives every delivery, until `Hub::promote` moves it
    /// to the live members.
    CaughtUp,
}

impl StreamMembers {
    pub(super) fn len(&self) -> usize {
        self.live.len() + self.joining.lock().len()
    }
}
