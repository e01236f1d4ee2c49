//! What the hand-written token buckets in `gate::rate` cost, next to the
//! `governor` crate: one per-message check, one per-upgrade keyed check and
//! the per-connection state. docs/performance.md ("Rate limiting:
//! hand-written or a crate") has the figures and the decision.
//!
//! ```sh
//! cargo build --release -p switchboard-core --example rate_limit_cost
//! taskset -c 1 target/release/examples/rate_limit_cost
//! ```
//!
//! Each figure is the median of several runs (min–max in brackets), in ns
//! per check. Timings vary with the machine; compare rows of one run.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::nanos::Nanos;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use switchboard_core::gate::rate::{Bucket, IpRateLimiter, RateLimit};
use tokio::time::Instant;

/// Runs per figure.
const RUNS: usize = 9;
/// Checks per run on the per-message path.
const MESSAGE_CHECKS: u32 = 2_000_000;
/// Distinct client addresses on the per-upgrade path.
const ADDRESSES: u32 = 10_000;
/// Checks per run on the per-upgrade path (each address 100 times).
const UPGRADE_CHECKS: u32 = ADDRESSES * 100;

/// The clock the engine reads: `tokio::time::Instant::now()` is
/// `std::time::Instant::now()` in a build without tokio's `test-util`
/// (examples get it through the dev-dependencies; the server does not).
fn now() -> Instant {
    Instant::from_std(std::time::Instant::now())
}

/// Median, min and max of `RUNS` runs of `f`, each returning ns per check.
fn measure(mut f: impl FnMut() -> f64) -> (f64, f64, f64) {
    f(); // warm-up
    let mut v: Vec<f64> = (0..RUNS).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    (v[RUNS / 2], v[0], v[RUNS - 1])
}

fn report(what: &str, (median, min, max): (f64, f64, f64)) {
    println!("{what:<66} {median:>7.1} ns  [{min:.1}–{max:.1}]");
}

/// Times `n` calls of `f`, in ns per call.
fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let t = std::time::Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

/// A quota like `RateLimit`: `per_second` sustained, bursts of `burst`.
fn quota(limit: RateLimit) -> Quota {
    Quota::with_period(Duration::from_secs_f64(1.0 / limit.per_second))
        .expect("a rate above zero")
        .allow_burst(NonZeroU32::new(limit.burst).expect("a burst above zero"))
}

/// Tokio's clock for governor, so that paused test time (`tokio::time::pause`)
/// would reach the limiter as it reaches `Bucket`. Zero-sized.
#[derive(Clone, Copy, Debug, Default)]
struct TokioClock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(Instant);

impl std::ops::Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, d: Nanos) -> Self {
        TokioInstant(self.0 + Duration::from(d))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }
    fn saturating_sub(&self, d: Nanos) -> Self {
        TokioInstant(self.0.checked_sub(Duration::from(d)).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(now())
    }
}

/// `session::throttle::Throttle` as it is (the struct is private).
#[allow(dead_code)]
struct OurThrottle {
    bucket: Bucket,
    limit: RateLimit,
    strikes: u32,
    window_start: Instant,
}

/// The same with governor's default direct limiter in place of the bucket
/// and its limit (the quota lives in the limiter).
#[allow(dead_code)]
struct GovernorThrottle {
    limiter: DefaultDirectRateLimiter,
    strikes: u32,
    window_start: Instant,
}

/// The same on tokio's clock.
#[allow(dead_code)]
struct GovernorTokioThrottle {
    limiter: RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        TokioClock,
        governor::middleware::NoOpMiddleware<TokioInstant>,
    >,
    strikes: u32,
    window_start: Instant,
}

fn behaviour() {
    println!("\n# Behaviour (what clients see)");
    // The upgrade test's limit: 0.5/s, bursts of 2; the third upgrade waits 2 s.
    let limit = RateLimit {
        per_second: 0.5,
        burst: 2,
    };
    let t0 = now();
    let mut b = Bucket::full(&limit, t0);
    let _ = (b.take(&limit, t0), b.take(&limit, t0));
    let ours = b.take(&limit, t0).unwrap_err();
    let g = RateLimiter::direct(quota(limit));
    let _ = (g.check(), g.check());
    let clock = DefaultClock::default();
    let theirs = g.check().unwrap_err().wait_time_from(clock.now());
    println!("third check at 0.5/s, burst 2: wait ours {ours:?}, governor {theirs:?}");
    // Fractional rates and bursts of one.
    let slow = RateLimit {
        per_second: 0.01,
        burst: 1,
    };
    let g = RateLimiter::direct(quota(slow));
    let _ = g.check();
    let theirs = g.check().unwrap_err().wait_time_from(clock.now());
    println!("second check at 0.01/s, burst 1: governor wait {theirs:?} (ours 100 s)");
    println!(
        "burst 0 / rate 0: governor's Quota takes NonZeroU32 and a period > 0 \
         (the engine's Config refuses both anyway)"
    );
}

fn main() {
    println!("# Per-message check (one connection's limiter; ns per check)");
    // Allowed: a rate far above the check rate, so every check passes.
    let open = RateLimit {
        per_second: 1e9,
        burst: 1_000_000,
    };
    let open_quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000).unwrap());
    // Refused: an emptied bucket at 0.01/s.
    let shut = RateLimit {
        per_second: 0.01,
        burst: 2,
    };

    report(
        "clock read: tokio Instant::now (std)",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(now());
            })
        }),
    );
    let qc = DefaultClock::default();
    report(
        "clock read: governor's default clock (quanta)",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(qc.now());
            })
        }),
    );
    let mut bucket = Bucket::full(&open, now());
    report(
        "ours, allowed: Bucket::take(now())",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(bucket.take(black_box(&open), now())).ok();
            })
        }),
    );
    let g = RateLimiter::direct(open_quota);
    report(
        "governor, allowed: direct check()",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(g.check()).ok();
            })
        }),
    );
    let gt = RateLimiter::direct_with_clock(open_quota, TokioClock);
    report(
        "governor on tokio's clock, allowed: direct check()",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(gt.check()).ok();
            })
        }),
    );
    let mut bucket = Bucket::full(&shut, now());
    while bucket.take(&shut, now()).is_ok() {}
    report(
        "ours, refused: Bucket::take(now()) (with the wait)",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(bucket.take(black_box(&shut), now())).ok();
            })
        }),
    );
    let g = RateLimiter::direct(quota(shut));
    while g.check().is_ok() {}
    report(
        "governor, refused: direct check() (no wait computed)",
        measure(|| {
            per_call(MESSAGE_CHECKS, |_| {
                black_box(g.check()).ok();
            })
        }),
    );

    println!("\n# Per-upgrade keyed check ({ADDRESSES} addresses, round robin; ns per check)");
    // The default upgrade limit: 50/s, bursts of 200.
    let default = RateLimit {
        per_second: 50.0,
        burst: 200,
    };
    for (name, limit, q) in [
        ("allowed", open, open_quota),
        ("default 50/s burst 200", default, quota(default)),
        ("refused", shut, quota(shut)),
    ] {
        let ours = IpRateLimiter::new(limit);
        let theirs: DefaultKeyedRateLimiter<IpAddr> = RateLimiter::keyed(q);
        for i in 0..ADDRESSES {
            let _ = ours.check(ip(i), now());
            let _ = theirs.check_key(&ip(i));
        }
        if limit == shut {
            for i in 0..ADDRESSES {
                while ours.check(ip(i), now()).is_ok() {}
                while theirs.check_key(&ip(i)).is_ok() {}
            }
        }
        report(
            &format!("ours, {name}: IpRateLimiter::check"),
            measure(|| {
                per_call(UPGRADE_CHECKS, |i| {
                    black_box(ours.check(ip(i % ADDRESSES), now())).ok();
                })
            }),
        );
        let theirs_t = RateLimiter::dashmap_with_clock(q, TokioClock);
        for i in 0..ADDRESSES {
            let _ = theirs_t.check_key(&ip(i));
            if limit == shut {
                while theirs_t.check_key(&ip(i)).is_ok() {}
            }
        }
        report(
            &format!("governor on tokio's clock, {name}: check_key (+ wait)"),
            measure(|| {
                per_call(UPGRADE_CHECKS, |i| {
                    if let Err(e) = theirs_t.check_key(&ip(i % ADDRESSES)) {
                        black_box(e.wait_time_from(TokioClock.now()));
                    }
                })
            }),
        );
        let clock = theirs.clock().clone();
        report(
            &format!("governor, {name}: keyed check_key (+ wait)"),
            measure(|| {
                per_call(UPGRADE_CHECKS, |i| {
                    if let Err(e) = theirs.check_key(&ip(i % ADDRESSES)) {
                        black_box(e.wait_time_from(clock.now()));
                    }
                })
            }),
        );
    }

    println!("\n# Per-connection state (bytes, std::mem::size_of)");
    for (what, size) in [
        ("Bucket", size_of::<Bucket>()),
        ("RateLimit", size_of::<RateLimit>()),
        (
            "ours: Throttle (bucket, limit, strikes, window)",
            size_of::<OurThrottle>(),
        ),
        (
            "governor: DefaultDirectRateLimiter",
            size_of::<DefaultDirectRateLimiter>(),
        ),
        (
            "governor: Throttle with it (+ strikes, window)",
            size_of::<GovernorThrottle>(),
        ),
        (
            "governor on tokio's clock: Throttle with it",
            size_of::<GovernorTokioThrottle>(),
        ),
    ] {
        println!("{what:<66} {size:>4} B");
    }
    behaviour();
}
