//! A fixed-bucket histogram that the writer thread records into and any thread reads,
//! without a lock (the engine's fsync latency and batch sizes, for `/metrics`).
//!
//! Guarantees: [`Histogram::record`] costs a short scan of at most [`MAX_BOUNDS`] bounds
//! and three relaxed atomic adds, so it may sit on the writer's hot path; a
//! [`Histogram::snapshot`] is cumulative (Prometheus `le` buckets), never decreasing
//! from one bucket to the next, and its `count` is at least its last bucket even while
//! values are being recorded (a snapshot taken meanwhile may miss the newest values).

use std::sync::atomic::{AtomicU64, Ordering};

/// Most bucket bounds a histogram has (plus the implicit `+Inf`).
pub const MAX_BOUNDS: usize = 16;

/// Upper bounds of the engine's fsync latency buckets, microseconds (50 µs to 1 s).
pub const FSYNC_BOUNDS_US: &[u64] =
    &[50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

/// Upper bounds of the engine's batch size buckets, commands (1 to 4,096: the default
/// `max_batch`).
pub const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096];

/// Counts of values at or below each bound, recorded lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// `buckets[i]`: values in `(bounds[i-1], bounds[i]]`; the last one, values above
    /// every bound. Not cumulative (one add per record); [`Histogram::snapshot`] sums.
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    count: AtomicU64,
    sum: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound, values at or below it)`, bounds increasing.
    pub buckets: Vec<(u64, u64)>,
    /// Values recorded (the `+Inf` bucket).
    pub count: u64,
    /// Their sum (saturating).
    pub sum: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (increasing, at most [`MAX_BOUNDS`]; extra
    /// bounds are ignored).
    pub fn new(bounds: &'static [u64]) -> Self {
        let bounds = &bounds[..bounds.len().min(MAX_BOUNDS)];
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must increase");
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        let i = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        // The sum saturates rather than wraps only in theory: u64 microseconds is 584,000 years.
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The cumulative counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                running = running.saturating_add(n.load(Ordering::Relaxed));
                (*b, running)
            })
            .collect();
        let over = self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed).max(running.saturating_add(over));
        HistogramSnapshot { buckets, count, sum: self.sum.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them_and_counts_are_cumulative() {
        let h = Histogram::new(&[1, 10, 100]);
        for v in [0, 1, 2, 10, 11, 100, 101, 5_000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1, 2), (10, 4), (100, 6)]);
        assert_eq!((s.count, s.sum), (8, 5_225));
    }

    #[test]
    fn recording_from_many_threads_loses_nothing() {
        let h = std::sync::Arc::new(Histogram::new(BATCH_BOUNDS));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..1_000u64 {
                        h.record((i + t) % 5_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4_000);
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(s.buckets.last().map(|b| b.1), Some(4_000), "every value is ≤ 4,096");
    }
}
