//! The local connections of one topic, as the hub indexes them.

use std::collections::HashMap;
use std::sync::Arc;

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
