//! A histogram made of atomics only, for the hot paths.
//!
//! `prometheus-client`'s own histogram takes a lock per observation; this
//! one adds to three relaxed atomics (the bucket, the count and the sum)
//! after a short scan of its bounds, and is encoded by the same crate's
//! encoder. Values are whole numbers of a base unit (nanoseconds, frames)
//! scaled once, at scrape time, to the unit exposed (seconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram over whole numbers; clones share the same buckets.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, inclusive, ascending, in the base unit.
    bounds: &'static [u64],
    /// One more than `bounds`: the last counts what is above every bound.
    /// Not cumulative; the encoder sums them.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    /// What one base unit is in the exposed unit (1e-9 for nanoseconds
    /// exposed as seconds).
    scale: f64,
}

/// A point-in-time copy of a [`Histogram`], in base units.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations, total.
    pub count: u64,
    /// The sum of every observation, in base units.
    pub sum: u64,
    /// `(upper bound, observations at or below it and above the previous
    /// bound)`, the last bound being `u64::MAX`.
    pub buckets: Vec<(u64, u64)>,
}

impl Histogram {
    /// A histogram with the given bounds (in base units, ascending) and the
    /// factor that turns a base unit into the exposed unit.
    pub(crate) fn new(bounds: &'static [u64], scale: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0),
                scale,
            }),
        }
    }

    /// Records one value.
    #[inline]
    pub fn observe(&self, value: u64) {
        let i = self.inner.bounds.partition_point(|&b| b < value);
        self.inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        self.inner.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Records a duration, in nanoseconds (for histograms whose base unit
    /// is the nanosecond).
    #[inline]
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Reads the histogram.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let inner = &self.inner;
        let buckets = inner
            .bounds
            .iter()
            .copied()
            .chain([u64::MAX])
            .zip(inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: inner.count.load(Ordering::Relaxed),
            sum: inner.sum.load(Ordering::Relaxed),
            buckets,
        }
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot();
        let scale = self.inner.scale;
        let last = s.buckets.len() - 1;
        let buckets: Vec<(f64, u64)> = s
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &(bound, n))| {
                let le = if i == last {
                    f64::INFINITY
                } else {
                    bound as f64 * scale
                };
                (le, n)
            })
            .collect();
        // The count is the buckets' total, read above, so that `+Inf`
        // equals `_count` even while observations land during the scrape.
        let count = buckets.iter().map(|&(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(s.sum as f64 * scale, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them() {
        static BOUNDS: [u64; 3] = [1, 10, 100];
        let h = Histogram::new(&BOUNDS, 1.0);
        for v in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 5225);
        assert_eq!(
            s.buckets,
            vec![(1, 2), (10, 2), (100, 2), (u64::MAX, 2)],
            "bounds are inclusive; the last bucket is above every bound"
        );
    }

    #[test]
    fn encodes_cumulative_buckets_in_the_exposed_unit() {
        static BOUNDS: [u64; 2] = [1_000_000, 1_000_000_000];
        let h = Histogram::new(&BOUNDS, 1e-9);
        h.observe(500_000);
        h.observe(2_000_000_000);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("latency_seconds", "A latency", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("latency_seconds_bucket{le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("latency_seconds_bucket{le=\"1\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("latency_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("latency_seconds_sum 2.0005\n"), "{out}");
        assert!(out.contains("latency_seconds_count 2\n"), "{out}");
        assert!(out.contains("# TYPE latency_seconds histogram\n"), "{out}");
    }
}
