//! Latency histograms and small statistics helpers.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::util::round;

/// Highest latency recorded, in microseconds (one hour); larger values are
/// clamped to it.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits (values are
/// exact to 0.1 %).
#[derive(Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

/// Percentiles of a [`Latency`], in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        Latency {
            // Bounds are constants that hdrhistogram accepts.
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        }
    }

    /// Records a latency given in nanoseconds (clamped to 1 µs .. 1 h).
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record((ns / 1000).clamp(1, MAX_US));
    }

    /// Records a latency given in microseconds.
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, MAX_US));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.hist.reset();
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at quantile `q` (0..=1) in microseconds (0 when empty).
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    /// p50, p99, p99.9, max and mean in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| round(us as f64 / 1000.0, 3);
        LatencySummary {
            count: self.hist.len(),
            p50_ms: ms(self.quantile_us(0.50)),
            p99_ms: ms(self.quantile_us(0.99)),
            p999_ms: ms(self.quantile_us(0.999)),
            max_ms: ms(self.hist.max()),
            mean_ms: round(self.hist.mean() / 1000.0, 3),
        }
    }
}

/// The median of `v` (mean of the middle two for an even count); `None` when
/// empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The smallest and largest value of `v`.
pub fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let mut it = v.iter().copied();
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_samples() {
        let mut h = Latency::new();
        // 1..=10_000 ms, in ns.
        for ms in 1..=10_000u64 {
            h.record_ns(ms * 1_000_000);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.002;
        assert!(close(s.p50_ms, 5_000.0), "{s:?}");
        assert!(close(s.p99_ms, 9_900.0), "{s:?}");
        assert!(close(s.p999_ms, 9_990.0), "{s:?}");
        assert!(close(s.max_ms, 10_000.0), "{s:?}");
        assert!(close(s.mean_ms, 5_000.5), "{s:?}");
    }

    #[test]
    fn tail_is_visible() {
        let mut h = Latency::new();
        for _ in 0..990 {
            h.record_us(100);
        }
        for _ in 0..10 {
            h.record_us(50_000);
        }
        let s = h.summary();
        assert_eq!(s.p50_ms, 0.1);
        // 99 % of samples are <= 100 µs: p99 is the last fast one.
        assert_eq!(s.p99_ms, 0.1);
        let p999 = s.p999_ms;
        assert!((49.9..=50.1).contains(&p999), "{s:?}");
    }

    #[test]
    fn clamps_and_resets() {
        let mut h = Latency::new();
        h.record_ns(0);
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile_us(0.0), 1);
        assert!(h.quantile_us(1.0) >= MAX_US);
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.summary(), LatencySummary::default());
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(min_max(&[2.0, -1.0, 7.0]), Some((-1.0, 7.0)));
        assert_eq!(min_max(&[]), None);
    }
}
