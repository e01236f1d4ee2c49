//! The idempotency keys the in-memory broker remembers: for each topic and
//! key published within the window, the receipt that answers a retry.
//!
//! The bus holds the lock across the whole publish of a keyed message, so
//! that checking the key and publishing are one step: two racing publishes
//! with one key deliver one message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::{Receipt, Topic};

/// The most keys remembered at once; past it the oldest is forgotten first
/// (a retry of it then publishes again).
pub(super) const MAX_KEYS: usize = 100_000;

/// Keys seen, oldest first. Always used under the bus's mutex.
#[derive(Default)]
pub(super) struct Seen {
    receipts: HashMap<Arc<str>, Receipt>,
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Seen {
    /// The receipt of `key` if it was published within `window` of `now`;
    /// forgets the keys older than that.
    pub(super) fn check(&mut self, key: &str, now: Instant, window: Duration) -> Option<Receipt> {
        while let Some((at, oldest)) = self.order.front() {
            if now.saturating_duration_since(*at) < window {
                break;
            }
            self.receipts.remove(oldest);
            self.order.pop_front();
        }
        self.receipts.get(key).map(|r| Receipt {
            duplicate: true,
            local_recipients: Some(0),
            ..r.clone()
        })
    }

    /// Remembers that `key` was published now with `receipt`.
    pub(super) fn insert(&mut self, key: Arc<str>, receipt: &Receipt, now: Instant) {
        if self.order.len() >= MAX_KEYS
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.receipts.remove(&oldest);
        }
        self.receipts.insert(key.clone(), receipt.clone());
        self.order.push_back((now, key));
    }
}

/// One key per topic: the same key sent to another room is another
/// publication. A newline cannot appear in a topic name or a key.
pub(super) fn scoped(topic: &Topic, key: &str) -> Arc<str> {
    let topic = match topic {
        Topic::Room(r) => format!("r:{r}"),
        Topic::User(u) => format!("u:{u}"),
        Topic::Broadcast => "b".to_string(),
        Topic::Presence(r) => format!("p:{r}"),
    };
    Arc::from(format!("{topic}\n{key}"))
}
