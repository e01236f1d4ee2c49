//! The node-wide memory budget of the in-memory broker: what all rooms'
//! history and state are counted for, and the order in which retained
//! messages are evicted when that passes the budget (oldest first, whatever
//! the room).
//!
//! # Locking
//!
//! The order's mutex is taken before any room's lock, never after: a room's
//! lock is released before its new message is counted here.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::room::ROOM_OVERHEAD;
use crate::broker::HistoryUsage;

/// The budget. See the module docs.
pub(super) struct Budget {
    limit: usize,
    /// Bytes counted: every retained message and every room's state.
    used: AtomicUsize,
    /// Messages retained, in all rooms.
    messages: AtomicUsize,
    /// Messages evicted by the budget since start.
    evicted: AtomicU64,
    /// Retained messages in the order they were retained, oldest first.
    /// Entries of messages that their room trimmed meanwhile (by count, by
    /// bytes, by age) are stale: evicting them is a no-op, and the queue is
    /// compacted when they outnumber the live ones.
    order: Mutex<VecDeque<Entry>>,
}

struct Entry {
    room: Arc<str>,
    epoch: Arc<str>,
    offset: u64,
}

/// The outcome of evicting one entry: how many messages went, and whether
/// the room was left with nothing that keeps it.
pub(super) struct Evicted {
    pub(super) messages: usize,
    pub(super) bare: bool,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Self {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            order: Mutex::new(VecDeque::new()),
        }
    }

    pub(super) fn usage(&self) -> HistoryUsage {
        HistoryUsage {
            bytes: self.used.load(Ordering::Relaxed) as u64,
            budget: self.limit as u64,
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// A room's state was created.
    pub(super) fn add_room(&self, name: &str) {
        self.used
            .fetch_add(ROOM_OVERHEAD + name.len(), Ordering::Relaxed);
    }

    /// A room's state, holding `usage` (bytes, messages), was dropped.
    pub(super) fn remove_room(&self, name: &str, usage: (usize, usize)) {
        self.account(usage, (0, 0));
        self.used
            .fetch_sub(ROOM_OVERHEAD + name.len(), Ordering::Relaxed);
    }

    /// A room's history went from `before` to `after` (bytes, messages).
    pub(super) fn account(&self, before: (usize, usize), after: (usize, usize)) {
        shift(&self.used, before.0, after.0);
        shift(&self.messages, before.1, after.1);
    }

    /// Records a message just retained at `offset` of `room`'s `epoch`, then
    /// evicts the oldest messages while over the budget: `evict` drops a
    /// room's messages up to an offset (`None` when the room is gone).
    /// `first` tells a room's epoch and oldest retained offset, for
    /// compaction. Returns the rooms that evicting left bare.
    pub(super) fn retained(
        &self,
        room: &Arc<str>,
        epoch: &Arc<str>,
        offset: u64,
        mut evict: impl FnMut(&str, &str, u64) -> Option<Evicted>,
        first: impl Fn(&str) -> Option<(Arc<str>, u64)>,
    ) -> Vec<Arc<str>> {
        let mut order = self.order.lock();
        order.push_back(Entry {
            room: room.clone(),
            epoch: epoch.clone(),
            offset,
        });
        let mut bare = Vec::new();
        while self.used.load(Ordering::Relaxed) > self.limit {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            if let Some(e) = evict(&oldest.room, &oldest.epoch, oldest.offset) {
                self.evicted.fetch_add(e.messages as u64, Ordering::Relaxed);
                if e.bare {
                    bare.push(oldest.room);
                }
            }
        }
        if order.len() > 2 * self.messages.load(Ordering::Relaxed) + 1024 {
            compact(&mut order, first);
        }
        bare
    }
}

/// Adds `after - before` to `counter`.
fn shift(counter: &AtomicUsize, before: usize, after: usize) {
    if after >= before {
        counter.fetch_add(after - before, Ordering::Relaxed);
    } else {
        counter.fetch_sub(before - after, Ordering::Relaxed);
    }
}

/// Drops the stale entries: those whose room is gone, restarted its epoch,
/// or no longer retains the offset.
fn compact(order: &mut VecDeque<Entry>, first: impl Fn(&str) -> Option<(Arc<str>, u64)>) {
    let mut rooms: HashMap<Arc<str>, Option<(Arc<str>, u64)>> = HashMap::new();
    order.retain(|e| {
        let now = rooms
            .entry(e.room.clone())
            .or_insert_with(|| first(&e.room));
        matches!(now, Some((epoch, first)) if *epoch == e.epoch && e.offset >= *first)
    });
}
