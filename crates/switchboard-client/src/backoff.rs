//! The reconnect delay policy, as pure functions of the attempt number and a
//! random number generator, so it can be tested without clocks or sockets.
//!
//! - **Backoff** (most close codes, refused connections, network errors):
//!   exponential backoff with *full jitter*. Attempt `n` (1 for the first
//!   reconnect after a stable connection) waits a uniformly random delay in
//!   `[0, min(cap, base · 2^(n−1))]`.
//! - **Going away** (close codes 1001 and 1012, a server restart or drain):
//!   reconnect at once, after a uniformly random delay in `[0, window]` so that
//!   every client of a restarting server does not arrive in the same
//!   millisecond.

use std::time::Duration;

use rand::{Rng, RngExt};

/// Exponential backoff with full jitter. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first attempt's delay.
    pub base: Duration,
    /// The largest ceiling, reached after enough failed attempts.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 500 ms base, 30 s cap.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The largest delay attempt `attempt` may wait: `min(cap, base ·
    /// 2^(attempt−1))`. Attempt 0 is treated like attempt 1. Never overflows:
    /// large attempt numbers give `cap`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << exponent;
        let nanos = u64::try_from(self.base.as_nanos()).unwrap_or(u64::MAX);
        let ceiling = Duration::from_nanos(nanos.saturating_mul(factor));
        ceiling.min(self.cap)
    }

    /// A delay for attempt `attempt`, uniformly random in
    /// `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        jitter(self.ceiling(attempt), rng)
    }
}

/// A uniformly random delay in `[0, window]`.
pub fn jitter(window: Duration, rng: &mut impl Rng) -> Duration {
    let max = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_from_base_up_to_cap() {
        let b = Backoff {
            base: 100 * MS,
            cap: 1000 * MS,
        };
        let ceilings: Vec<_> = (1..=6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.ceiling(0), 100 * MS);
        assert_eq!(b.ceiling(u32::MAX), 1000 * MS, "no overflow");
        let huge = Backoff {
            base: Duration::from_secs(u64::MAX / 4),
            cap: Duration::MAX,
        };
        assert!(huge.ceiling(200) > Duration::ZERO, "saturates, no panic");
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=20 {
            for _ in 0..200 {
                let d = b.delay(attempt, &mut rng);
                assert!(d <= b.ceiling(attempt), "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn delays_are_spread_over_the_whole_window_and_grow() {
        let b = Backoff {
            base: 100 * MS,
            cap: Duration::from_secs(30),
        };
        let mut rng = StdRng::seed_from_u64(42);
        let mean = |attempt: u32, rng: &mut StdRng| {
            let total: Duration = (0..1000).map(|_| b.delay(attempt, rng)).sum();
            total / 1000
        };
        let means: Vec<_> = (1..=6).map(|n| mean(n, &mut rng)).collect();
        for (n, m) in means.iter().enumerate() {
            // Full jitter: the mean is half the ceiling, give or take.
            let half = b.ceiling(n as u32 + 1) / 2;
            assert!(
                *m > half * 8 / 10 && *m < half * 12 / 10,
                "attempt {}: mean {m:?}, ceiling/2 {half:?}",
                n + 1
            );
        }
        assert!(means.windows(2).all(|w| w[0] < w[1]), "{means:?}");
        let samples: Vec<_> = (0..1000).map(|_| b.delay(1, &mut rng)).collect();
        assert!(samples.iter().any(|d| *d < 10 * MS), "low end reached");
        assert!(samples.iter().any(|d| *d > 90 * MS), "high end reached");
    }

    #[test]
    fn jitter_window_bounds_going_away_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            assert!(jitter(Duration::from_secs(1), &mut rng) <= Duration::from_secs(1));
        }
        assert_eq!(jitter(Duration::ZERO, &mut rng), Duration::ZERO);
    }
}
