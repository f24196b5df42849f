//! A lock-free histogram of durations on the crate's latency buckets.
//!
//! prometheus-client's `Histogram` takes a lock per observation; a pipelined rpc connection
//! observes one duration per call on each side, so here an observation is three relaxed atomic
//! adds and a bucket found by arithmetic (the bounds double).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The first bucket's upper bound: 50 µs.
const FIRST_BOUND_NANOS: u64 = 50_000;
/// Finite bounds, doubling from the first: 50 µs to about 6.5 s.
const BOUNDS: usize = 18;

/// Durations counted by bucket (`le` 50 µs, 100 µs, … about 6.5 s, +Inf), their count and sum.
#[derive(Debug, Clone, Default)]
pub(crate) struct LatencyHistogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Observations per bucket (not cumulative), the last one for +Inf.
    counts: [AtomicU64; BOUNDS + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let b = &self.0;
        b.counts[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        b.count.fetch_add(1, Ordering::Relaxed);
        b.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The index of the smallest bound that `nanos` does not exceed (`BOUNDS` for +Inf): bound `i`
/// is 50 µs × 2^i, and `nanos` ≤ it exactly when ⌈nanos / 50 µs⌉ ≤ 2^i.
fn bucket(nanos: u64) -> usize {
    let units = nanos.div_ceil(FIRST_BOUND_NANOS);
    if units <= 1 {
        return 0;
    }
    let i = (u64::BITS - (units - 1).leading_zeros()) as usize;
    i.min(BOUNDS)
}

/// The finite upper bounds in seconds, as prometheus-client's `exponential_buckets` makes them.
fn bounds() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(
        FIRST_BOUND_NANOS as f64 / 1e9,
        2.0,
        BOUNDS as u16,
    )
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let b = &self.0;
        let buckets: Vec<(f64, u64)> = bounds()
            .chain(std::iter::once(f64::INFINITY))
            .zip(b.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so that a scrape between two adds stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = b.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_are_fifty_microseconds_doubling() {
        let b: Vec<f64> = bounds().collect();
        assert_eq!(b.len(), BOUNDS);
        assert!((b[0] - 0.000_05).abs() < 1e-12);
        assert!((b[1] - 0.000_1).abs() < 1e-12);
        assert!((b[17] - 0.000_05 * 131_072.0).abs() < 1e-9);
    }

    #[test]
    fn edges_fall_in_the_bucket_they_bound() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(50_000), 0);
        assert_eq!(bucket(50_001), 1);
        assert_eq!(bucket(100_000), 1);
        assert_eq!(bucket(100_001), 2);
        assert_eq!(bucket(FIRST_BOUND_NANOS << 17), 17);
        assert_eq!(bucket((FIRST_BOUND_NANOS << 17) + 1), BOUNDS);
        assert_eq!(bucket(u64::MAX), BOUNDS);
    }

    proptest! {
        /// The bucket is the first whose bound (in exact nanoseconds) the value does not exceed.
        #[test]
        fn bucket_is_the_first_bound_not_exceeded(nanos in any::<u64>()) {
            let expected = (0..BOUNDS)
                .find(|&i| u128::from(nanos) <= u128::from(FIRST_BOUND_NANOS) << i)
                .unwrap_or(BOUNDS);
            prop_assert_eq!(bucket(nanos), expected);
        }
    }

    #[test]
    fn encodes_cumulative_buckets_count_and_sum() {
        let mut registry = prometheus_client::registry::Registry::default();
        let h = LatencyHistogram::default();
        registry.register("t", "test", h.clone());
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_micros(70));
        h.observe(Duration::from_secs(60));
        let text = crate::metrics::encode(&registry);
        assert!(text.contains("t_bucket{le=\"0.00005\"} 1"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.0001\"} 2"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("t_count 3"), "{text}");
        assert!(text.contains("t_sum 60.0001"), "{text}");
    }
}
