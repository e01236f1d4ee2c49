//! One room's offset sequence and bounded history, as the in-memory broker
//! keeps it. Always used under the room's mutex.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::MemoryConfig;
use crate::broker::{Delivery, Position, Recovery};

/// A room's state.
///
/// Invariant: `history` holds the messages with offsets
/// `last - history.len() + 1 ..= last`, oldest first (every publish appends
/// one, trimming only ever drops the oldest), so an offset's index is
/// arithmetic.
pub(super) struct RoomState {
    /// The offset of the last message (0 before the first).
    pub(super) last: u64,
    pub(super) epoch: Arc<str>,
    /// Retained messages with the instant each was published.
    history: VecDeque<(Instant, Delivery)>,
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

    /// Assigns the next offset to `delivery` and retains it, trimming the
    /// history by count and by age.
    pub(super) fn append(&mut self, delivery: &mut Delivery, now: Instant, cfg: &MemoryConfig) {
        self.last += 1;
        self.touched = now;
        delivery.offset = Some(self.last);
        if cfg.history_count > 0 {
            self.history.push_back((now, delivery.clone()));
        }
        while self.history.len() > cfg.history_count {
            self.history.pop_front();
        }
        self.trim_age(now, cfg.history_age);
    }

    /// Drops the messages older than `age`.
    fn trim_age(&mut self, now: Instant, age: Duration) {
        while let Some((at, _)) = self.history.front() {
            if now.saturating_duration_since(*at) <= age {
                break;
            }
            self.history.pop_front();
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
        self.history.clear();
    }
}

fn new_epoch() -> Arc<str> {
    Arc::from(format!("{:016x}", rand::random::<u64>()))
}
