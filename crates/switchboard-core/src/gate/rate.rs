//! Token buckets: upgrades per client IP, and messages per connection.
//!
//! A bucket holds at most `burst` tokens and refills at `per_second`. Each
//! event takes one token; with none left the event is refused and the caller
//! learns how long until the next token.
//!
//! Hand-written rather than the `governor` crate, measured with
//! `taskset -c 1 target/release/examples/rate_limit_cost` (built by
//! `cargo build --release -p switchboard-core --example rate_limit_cost`;
//! medians of 3 runs, 2-core machine, docs/performance.md "Rate limiting:
//! hand-written or a crate"):
//!
//! - per-connection state: `session::throttle::Throttle` is 64 bytes; with
//!   governor's default direct limiter (72 bytes, its `quanta` clock inside)
//!   it would be 96. Only a hand-written zero-sized clock brings it to 64.
//! - per-message check, on the clock the engine reads (tokio's `Instant`,
//!   23 ns of each check): 33-35 ns here, 32-34 ns for governor. Governor's
//!   own TSC clock makes its check 10-14 ns, a clock the session's other
//!   timers and paused test time do not share.
//! - per-upgrade check, 10,000 addresses: 87-121 ns here, 27-35 ns for
//!   governor's keyed limiter (55-102 ns on tokio's clock): under 0.1 us
//!   against an upgrade's accept, HTTP request and handshake.
//! - governor expresses the burst, fractional rates and the wait
//!   (`NotUntil::wait_time_from`, the same `Retry-After` after rounding up),
//!   but only against its own clock: it cannot check at an instant the
//!   caller gives, which is how the session, the gate and the tests below
//!   use these buckets.

use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// A rate: `per_second` sustained, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held (and so the largest burst).
    pub burst: u32,
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(limit: &RateLimit, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / limit.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    fn is_full(&self, limit: &RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * limit.per_second >= f64::from(limit.burst)
    }
}

/// Most addresses tracked before idle (full) buckets are swept. A full
/// bucket carries no information, so dropping it changes no decision.
const SWEEP_AT: usize = 65_536;

/// Token buckets keyed by client IP.
///
/// Sweeping scans every bucket, so it runs at most once per refill time (the
/// time an emptied bucket takes to fill up, at least a second): a flood from
/// many addresses costs one scan per interval, not one per upgrade. Between
/// sweeps the map may grow past the threshold (65,536) by the addresses new within
/// that interval.
#[derive(Debug)]
pub struct IpRateLimiter {
    limit: RateLimit,
    buckets: DashMap<IpAddr, Bucket>,
    /// When the next sweep may run; `try_lock` keeps sweeps single.
    next_sweep: parking_lot::Mutex<Instant>,
    /// How long an emptied bucket takes to fill up again (at least 1 s).
    refill: Duration,
    sweeps: std::sync::atomic::AtomicU64,
}

impl IpRateLimiter {
    /// A limiter with this rate for every address.
    pub fn new(limit: RateLimit) -> Self {
        let refill = f64::from(limit.burst) / limit.per_second.max(f64::MIN_POSITIVE);
        IpRateLimiter {
            limit,
            buckets: DashMap::new(),
            next_sweep: parking_lot::Mutex::new(Instant::now()),
            refill: Duration::from_secs_f64(refill.clamp(1.0, 3600.0)),
            sweeps: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes a token for `ip`, or returns how long until one is available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() >= SWEEP_AT {
            self.maybe_sweep(now);
        }
        let limit = self.limit;
        self.buckets
            .entry(ip)
            .or_insert_with(|| Bucket::full(&limit, now))
            .take(&limit, now)
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Drops the full buckets, unless a sweep ran within the refill time.
    fn maybe_sweep(&self, now: Instant) {
        let Some(mut next) = self.next_sweep.try_lock() else {
            return;
        };
        if now < *next {
            return;
        }
        *next = now + self.refill;
        self.sweeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.buckets.retain(|_, b| !b.is_full(&self.limit, now));
    }

    /// How many sweeps ran (for tests).
    #[cfg(test)]
    fn sweeps(&self) -> u64 {
        self.sweeps.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(&limit, t0);
        for _ in 0..3 {
            assert_eq!(b.take(&limit, t0), Ok(()));
        }
        let wait = b.take(&limit, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(b.take(&limit, t0 + Duration::from_millis(500)), Ok(()));
        assert!(b.take(&limit, t0 + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn addresses_have_their_own_buckets() {
        let l = IpRateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check(a, now).is_ok());
        assert!(l.check(a, now).is_err());
        assert!(l.check(b, now).is_ok());
        assert_eq!(l.tracked(), 2);
    }

    /// A flood from more addresses than the sweep threshold scans the map
    /// once per refill time, not once per upgrade; full buckets go.
    #[test]
    fn a_flood_of_addresses_sweeps_once_per_refill_time() {
        let l = IpRateLimiter::new(RateLimit {
            per_second: 50.0,
            burst: 200,
        });
        let t0 = Instant::now();
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..(SWEEP_AT as u32 + 10_000) {
            assert!(l.check(ip(i), t0).is_ok());
        }
        assert_eq!(l.sweeps(), 1, "one sweep when the threshold was reached");
        assert_eq!(l.tracked(), SWEEP_AT + 10_000, "no bucket was full");
        // Within the refill time (200 / 50 = 4 s): no further scan.
        for i in 0..1000 {
            assert!(l.check(ip(i), t0 + Duration::from_secs(3)).is_ok());
        }
        assert_eq!(l.sweeps(), 1);
        // After it: one more, and the buckets that refilled are gone.
        assert!(l.check(ip(0), t0 + Duration::from_secs(5)).is_ok());
        assert_eq!(l.sweeps(), 2);
        assert!(l.tracked() < 2000, "{}", l.tracked());
    }
}
