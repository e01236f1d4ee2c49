//! The per-connection message rate limit: messages over the limit are
//! dropped (and the client told), and a client that keeps going over it is
//! closed.

use std::time::Duration;

use tokio::time::Instant;

use crate::gate::rate::{Bucket, RateLimit};

/// The per-connection message rate limit, with strikes for sustained abuse.
pub(super) struct Throttle {
    bucket: Bucket,
    limit: RateLimit,
    strikes: u32,
    window_start: Instant,
}

/// What to do with an inbound message.
pub(super) enum Verdict {
    Allow,
    Drop,
    Close,
}

/// Strikes are counted over this window.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

impl Throttle {
    pub(super) fn new(limit: RateLimit, now: Instant) -> Self {
        Throttle {
            bucket: Bucket::full(&limit, now),
            limit,
            strikes: 0,
            window_start: now,
        }
    }

    pub(super) fn check(&mut self, config: &crate::Config, now: Instant) -> Verdict {
        if self.bucket.take(&self.limit, now).is_ok() {
            return Verdict::Allow;
        }
        if now.duration_since(self.window_start) > STRIKE_WINDOW {
            self.window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes > config.message_rate_strikes {
            Verdict::Close
        } else {
            Verdict::Drop
        }
    }
}
