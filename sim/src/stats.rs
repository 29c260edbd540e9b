//! The figures of a run: [`SimStats`], which [`Sim::stats`](crate::Sim::stats) returns;
//! [`Histogram`], where its percentiles (times to match, pickup distances and ETAs) come
//! from; and [`gini`], the inequality of the drivers' earnings.
//!
//! The counting itself is done where things happen (`city`): this module only defines the
//! figures and derives from them.
//!
//! Guarantees: *bounded* — a [`Histogram`] holds a fixed number of buckets (`max / bucket
//! + 1`) however long a live city runs; its percentiles are nearest-rank, exact to its
//! bucket, and its mean is exact (a running sum of the values recorded). *Reproducible* —
//! [`SimStats`] is plain data compared with `==`, which is how a rerun with the same seed
//! is checked; [`gini`] sorts its input, so it does not depend on the drivers' order.

/// Live figures of a simulation (see [`Sim::stats`]). Counts are since the start.
///
/// [`Sim::stats`]: crate::Sim::stats
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    /// Simulated time since the first step, ms.
    pub simulated_ms: i64,
    /// Drivers online now (available or on a trip).
    pub drivers_online: u32,
    /// Drivers with an assigned trip now.
    pub drivers_on_trip: u32,
    /// Riders with an open trip now.
    pub riders_waiting: u32,
    /// Trips the engine created.
    pub trips_requested: u64,
    /// Trip requests the engine refused.
    pub trips_refused: u64,
    /// Trips accepted by a driver at least once.
    pub trips_matched: u64,
    /// Trips completed.
    pub trips_completed: u64,
    /// Trips cancelled by their rider.
    pub trips_cancelled: u64,
    /// Trips that found no driver before the dispatch timeout.
    pub trips_expired: u64,
    /// Rides booked ahead (`scheduled`) the engine created.
    pub scheduled_booked: u64,
    /// Rides booked ahead seen dispatched (searching, or further, after their lead time).
    pub scheduled_dispatched: u64,
    /// Times an assigned driver gave a trip back (it searched again).
    pub driver_cancels: u64,
    /// Offers made, over the finished (completed, cancelled, expired) trips.
    pub offers_on_finished_trips: u64,
    /// Offers declined, over the finished trips.
    pub declines: u64,
    /// Offers that lapsed unanswered, over the finished trips.
    pub lapses: u64,
    /// Offers the drivers chose to ignore.
    pub ignored: u64,
    /// Accepts refused (the trip was taken, or the offer lapsed, meanwhile).
    pub accepts_refused: u64,
    /// Time from request to first accept, median, ms (engine time; 100 ms resolution).
    pub match_p50_ms: Option<i64>,
    /// Time from request to first accept, 95th percentile, ms.
    pub match_p95_ms: Option<i64>,
    /// Searches that ended without any driver accepting: the rider cancelled (gave up or
    /// changed their mind) or the trip expired before a first accept. A ride booked ahead
    /// and cancelled before its dispatch never searched and is not counted.
    pub trips_unmatched: u64,
    /// Riders who gave up: cancelled a ride still searching once their patience ran out
    /// (counted in `trips_cancelled` too, and in `trips_unmatched` if never matched).
    pub riders_gave_up: u64,
    /// Straight-line distance from the driver to the pickup when it won the trip, mean, m.
    pub pickup_mean_m: Option<f64>,
    /// The same, 95th percentile, m (10 m resolution).
    pub pickup_p95_m: Option<i64>,
    /// Pickup ETA when the driver won the trip (that distance at the driver's own speed:
    /// the leg the simulated driver then drives), mean, ms.
    pub pickup_eta_mean_ms: Option<f64>,
    /// The same, 95th percentile, ms (1 s resolution).
    pub pickup_eta_p95_ms: Option<i64>,
    /// Time a driver spent on a completed trip, from winning it to completing it, mean, ms.
    pub trip_engaged_mean_ms: Option<f64>,
    /// Driver time online, summed over drivers, ms (counted by steps).
    pub driver_online_ms: u64,
    /// Of that, time cruising with no trip, ms.
    pub driver_idle_ms: u64,
    /// Gini coefficient of the drivers' earnings (the final fares of the trips each
    /// completed, over every driver that went online, earners or not): 0 when all earned
    /// the same, towards 1 when a few earned everything. `None` before any fare.
    pub earnings_gini: Option<f64>,
    /// Position reports answered.
    pub location_reports: u64,
    /// Position reports refused (as implausible jumps, or otherwise). Must be 0.
    pub locations_refused: u64,
    /// Commands submitted.
    pub commands: u64,
    /// Commands not submitted because the engine's queue was full.
    pub overloaded: u64,
    /// Answers that a correct engine never gives to this simulation (see [`Sim::last_error`]).
    ///
    /// [`Sim::last_error`]: crate::Sim::last_error
    pub unexpected_errors: u64,
    /// Accepts the engine granted for a trip another driver still held, or to a driver
    /// already on a trip, as seen in the answers. Must be 0.
    pub double_assignments: u64,
}

impl SimStats {
    /// Finished trips: completed, cancelled or expired.
    pub fn finished_trips(&self) -> u64 {
        self.trips_completed + self.trips_cancelled + self.trips_expired
    }

    /// Mean offers per finished trip (0 before any finished).
    pub fn offers_per_trip(&self) -> f64 {
        match self.finished_trips() {
            0 => 0.0,
            n => self.offers_on_finished_trips as f64 / n as f64,
        }
    }

    /// Mean declined offers per finished trip (0 before any finished).
    pub fn declines_per_trip(&self) -> f64 {
        match self.finished_trips() {
            0 => 0.0,
            n => self.declines as f64 / n as f64,
        }
    }

    /// Of the searches that ended, the share that ended with a driver: `trips_matched /
    /// (trips_matched + trips_unmatched)`. A rider who gave up (or cancelled) before any
    /// accept, and a trip that expired, count against it; searches still running, and
    /// rides booked ahead not yet dispatched, are left out. `None` before any ended.
    pub fn match_rate(&self) -> Option<f64> {
        match self.trips_matched + self.trips_unmatched {
            0 => None,
            n => Some(self.trips_matched as f64 / n as f64),
        }
    }

    /// The share of online driver time spent cruising with no trip, 0 to 1 (`None`
    /// before any driver was online).
    pub fn idle_share(&self) -> Option<f64> {
        (self.driver_online_ms > 0).then(|| self.driver_idle_ms as f64 / self.driver_online_ms as f64)
    }
}

/// Gini coefficient of `values` (all at least 0): the mean absolute difference between
/// two of them over twice their mean. 0 when all are equal, `(n - 1) / n` when one holds
/// everything. `None` for no values or a zero total.
pub(crate) fn gini(values: &[i64]) -> Option<f64> {
    let mut v: Vec<i64> = values.iter().map(|x| (*x).max(0)).collect();
    v.sort_unstable();
    let n = v.len() as f64;
    let total: f64 = v.iter().map(|x| *x as f64).sum();
    if v.is_empty() || total <= 0.0 {
        return None;
    }
    // Sorted ascending, with ranks 1..=n: G = 2 Σ i·x_i / (n Σ x) − (n + 1) / n.
    let weighted: f64 = v.iter().enumerate().map(|(i, x)| (i as f64 + 1.0) * *x as f64).sum();
    Some((2.0 * weighted / (n * total) - (n + 1.0) / n).max(0.0))
}

/// Resolution of the times to match, ms.
pub(crate) const MATCH_BUCKET_MS: i64 = 100;

/// Times to match longer than this share the last bucket (a trip expires long before).
pub(crate) const MATCH_MAX_MS: i64 = 600_000;

/// A histogram of non-negative values (times to match, pickup distances, ETAs): bounded
/// memory however long a live city runs, percentiles exact to `bucket` (and exact outright
/// for values that are whole multiples of it), the mean exact.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    bucket: i64,
    max: i64,
    buckets: Vec<u64>,
    count: u64,
    sum: i128,
}

impl Histogram {
    /// Buckets `bucket` wide (> 0); values above `max` share the last one.
    pub(crate) fn new(bucket: i64, max: i64) -> Self {
        let bucket = bucket.max(1);
        let max = max.max(bucket);
        Self { bucket, max, buckets: vec![0; (max / bucket) as usize + 1], count: 0, sum: 0 }
    }

    /// Times to match: 100 ms buckets up to 10 minutes.
    pub(crate) fn match_times() -> Self {
        Self::new(MATCH_BUCKET_MS, MATCH_MAX_MS)
    }

    pub(crate) fn record(&mut self, value: i64) {
        let value = value.clamp(0, self.max);
        let i = (value / self.bucket) as usize;
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
            self.count += 1;
            self.sum += i128::from(value);
        }
    }

    /// Mean of the values recorded (each clamped to `0..=max`).
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// Nearest-rank percentile `p`, as the lower edge of its bucket.
    pub(crate) fn percentile(&self, p: u64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let rank = (p * self.count).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(i as i64 * self.bucket);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_time_percentiles_are_nearest_rank_to_100_ms() {
        let mut m = Histogram::match_times();
        assert_eq!(m.percentile(50), None);
        assert_eq!(m.mean(), None);
        m.record(7_000);
        assert_eq!(m.percentile(95), Some(7_000));
        assert_eq!(m.mean(), Some(7_000.0));
        let mut m = Histogram::match_times();
        for s in 1..=100 {
            m.record(s * 1_000 + 50);
        }
        assert_eq!((m.percentile(50), m.percentile(95)), (Some(50_000), Some(95_000)));
        m.record(-5);
        m.record(10 * MATCH_MAX_MS);
        assert_eq!((m.percentile(0), m.percentile(100)), (Some(0), Some(MATCH_MAX_MS)));
    }

    #[test]
    fn the_mean_is_exact_and_percentiles_are_bucket_edges() {
        let mut h = Histogram::new(10, 1_000);
        for v in [5, 15, 25, 1_000_000] {
            h.record(v);
        }
        // The last value is clamped to the histogram's max.
        assert_eq!(h.mean(), Some((5.0 + 15.0 + 25.0 + 1_000.0) / 4.0));
        assert_eq!((h.percentile(50), h.percentile(75), h.percentile(100)), (Some(10), Some(20), Some(1_000)));
    }

    #[test]
    fn gini_of_equal_and_of_concentrated_earnings() {
        assert_eq!(gini(&[]), None);
        assert_eq!(gini(&[0, 0]), None);
        assert_eq!(gini(&[500, 500, 500]), Some(0.0));
        let one_has_all = gini(&[0, 0, 0, 900]).unwrap();
        assert!((one_has_all - 0.75).abs() < 1e-12, "{one_has_all}");
    }

    /// The model: the mean absolute difference over all ordered pairs, over twice the mean.
    fn gini_by_pairs(v: &[i64]) -> f64 {
        let n = v.len() as f64;
        let mean = v.iter().sum::<i64>() as f64 / n;
        let pairs: f64 = v.iter().flat_map(|a| v.iter().map(move |b| (a - b).abs() as f64)).sum();
        pairs / (2.0 * n * n * mean)
    }

    proptest::proptest! {
        #[test]
        fn gini_matches_the_pairwise_definition(v in proptest::collection::vec(0i64..1_000_000, 1..60)) {
            let g = gini(&v);
            if v.iter().sum::<i64>() == 0 {
                proptest::prop_assert_eq!(g, None);
            } else {
                let g = g.unwrap();
                proptest::prop_assert!((g - gini_by_pairs(&v)).abs() < 1e-9, "{} vs {}", g, gini_by_pairs(&v));
                proptest::prop_assert!((0.0..1.0).contains(&g));
            }
        }
    }
}
