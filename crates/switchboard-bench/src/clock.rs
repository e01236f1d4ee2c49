//! One monotonic clock for the whole process: nanoseconds since the tool
//! started. Publishers stamp payloads with it and subscribers in the same
//! process subtract, so latencies need no clock synchronisation.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// The instant the clock counts from (fixed on first use).
pub fn start() -> Instant {
    *START.get_or_init(Instant::now)
}

/// Nanoseconds since [`start`].
pub fn now_ns() -> u64 {
    to_ns(Instant::now())
}

/// Nanoseconds from [`start`] to `t` (0 if `t` is earlier).
pub fn to_ns(t: Instant) -> u64 {
    let d = t.saturating_duration_since(start());
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `ns` nanoseconds after [`start`].
pub fn from_ns(ns: u64) -> Instant {
    start() + Duration::from_nanos(ns)
}
