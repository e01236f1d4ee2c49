//! One room's offset sequence and bounded history, as the in-memory broker
//! keeps it. Always used under the room's mutex.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::MemoryConfig;
use crate::broker::{Delivery, Position, Recovery};

/// What one retained message costs in memory beyond its payload and
/// publisher id: its slot in the ring buffer (the instant and the
/// [`Delivery`]), the payload's own allocation, and its place in the bus's
/// eviction order. Rounded up.
pub(super) const MESSAGE_OVERHEAD: usize = 160;

/// What a room's state costs beyond its history: the map entry, the mutex
/// and the state itself, the epoch. Rounded up; the name is added.
pub(super) const ROOM_OVERHEAD: usize = 256;

/// The memory a retained message is counted for.
pub(super) fn cost(d: &Delivery) -> usize {
    d.data.len() + d.from.as_deref().map_or(0, str::len) + MESSAGE_OVERHEAD
}

/// A room's state.
///
/// Invariant: `history` holds the messages with offsets
/// `last - history.len() + 1 ..= last`, oldest first (every publish appends
/// one, trimming only ever drops the oldest), so an offset's index is
/// arithmetic; `bytes` is the sum of their [`cost`].
pub(super) struct RoomState {
    /// The offset of the last message (0 before the first).
    pub(super) last: u64,
    pub(super) epoch: Arc<str>,
    /// Retained messages with the instant each was published.
    history: VecDeque<(Instant, Delivery)>,
    /// What `history` is counted for: the sum of [`cost`] of its messages.
    bytes: usize,
    /// How many nodes subscribe to the room. A room with subscribers is never
    /// evicted, so live offsets never restart under a subscriber's feet.
    pub(super) subscribers: usize,
    /// When the room was last used: created, published to, read.
    touched: Instant,
    /// Set when the state was removed from the bus: whoever locked it too
    /// late looks the room up again.
    pub(super) evicted: bool,
}

impl RoomState {
    pub(super) fn new(now: Instant) -> Self {
        RoomState {
            last: 0,
            epoch: new_epoch(),
            history: VecDeque::new(),
            bytes: 0,
            subscribers: 0,
            touched: now,
            evicted: false,
        }
    }

    /// Marks the room as used now.
    pub(super) fn touch(&mut self, now: Instant) {
        self.touched = now;
    }

    pub(super) fn position(&self) -> Position {
        Position {
            offset: self.last,
            epoch: self.epoch.clone(),
        }
    }

    /// What the history is counted for, in bytes and in messages.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.bytes, self.history.len())
    }

    /// Assigns the next offset to `delivery` and retains it, trimming the
    /// history by count, by bytes and by age. Returns whether the message
    /// was retained. The retained copy owns its bytes: a payload sliced out
    /// of a larger buffer (a client's frame) would otherwise keep all of
    /// that buffer alive uncounted.
    pub(super) fn append(
        &mut self,
        delivery: &mut Delivery,
        now: Instant,
        cfg: &MemoryConfig,
    ) -> bool {
        self.last += 1;
        self.touched = now;
        delivery.offset = Some(self.last);
        let kept = cfg.history_count > 0 && cost(delivery) <= cfg.history_bytes;
        if kept {
            let mut copy = delivery.clone();
            copy.data = bytes::Bytes::copy_from_slice(&delivery.data);
            self.bytes += cost(&copy);
            self.history.push_back((now, copy));
        } else {
            // Not retained: the history must not skip an offset, so what it
            // held no longer leads up to the current one.
            self.clear_history();
        }
        while self.history.len() > cfg.history_count || self.bytes > cfg.history_bytes {
            self.pop_oldest();
        }
        self.trim_age(now, cfg.history_age);
        kept
    }

    fn pop_oldest(&mut self) -> Option<(Instant, Delivery)> {
        let oldest = self.history.pop_front()?;
        self.bytes -= cost(&oldest.1);
        Some(oldest)
    }

    fn clear_history(&mut self) {
        self.history.clear();
        self.bytes = 0;
    }

    /// Drops the retained messages up to and including `offset` of `epoch`
    /// (the node-wide budget evicting the oldest). Returns how many.
    pub(super) fn evict_through(&mut self, epoch: &str, offset: u64) -> usize {
        if *self.epoch != *epoch {
            return 0;
        }
        let mut n = 0;
        while let Some((_, d)) = self.history.front() {
            if d.offset.is_some_and(|o| o > offset) {
                break;
            }
            self.pop_oldest();
            n += 1;
        }
        n
    }

    /// The offset of the oldest retained message, if any.
    pub(super) fn first_retained(&self) -> Option<u64> {
        self.history.front().and_then(|(_, d)| d.offset)
    }

    /// Whether nothing keeps the state: no subscriber and no history.
    pub(super) fn is_bare(&self) -> bool {
        self.subscribers == 0 && self.history.is_empty()
    }

    /// Drops the messages older than `age`.
    fn trim_age(&mut self, now: Instant, age: Duration) {
        while let Some((at, _)) = self.history.front() {
            if now.saturating_duration_since(*at) <= age {
                break;
            }
            self.pop_oldest();
        }
    }

    /// See [`Broker::recover`](crate::broker::Broker::recover).
    pub(super) fn recover(&mut self, since: &Position, now: Instant, age: Duration) -> Recovery {
        self.touch(now);
        self.trim_age(now, age);
        let position = self.position();
        if since.epoch != self.epoch || since.offset > self.last {
            return Recovery::Gap { position };
        }
        // Offset of the oldest retained message (last + 1 when none is).
        let first = self.last + 1 - self.history.len() as u64;
        if since.offset + 1 < first {
            return Recovery::Gap { position };
        }
        let skip = (since.offset + 1 - first) as usize;
        let messages = self.history.iter().skip(skip).map(|(_, d)| d.clone());
        Recovery::Recovered {
            messages: messages.collect(),
            position,
        }
    }

    /// Whether the room can be forgotten: nobody subscribes, and it was not
    /// used (so nothing in its history is younger) for longer than `age`.
    pub(super) fn idle(&self, now: Instant, age: Duration) -> bool {
        self.subscribers == 0 && now.saturating_duration_since(self.touched) > age
    }

    /// Starts a new epoch, as a broker restart would.
    pub(super) fn restart(&mut self) {
        self.last = 0;
        self.epoch = new_epoch();
        self.clear_history();
    }
}

fn new_epoch() -> Arc<str> {
    Arc::from(format!("{:016x}", rand::random::<u64>()))
}
