//! The figures of a run: [`SimStats`], which [`Sim::stats`](crate::Sim::stats) returns,
//! and [`MatchTimes`], the histogram its match-time percentiles come from.
//!
//! The counting itself is done where things happen (`city`): this module only defines the
//! figures and derives from them.
//!
//! Guarantees: *bounded* — [`MatchTimes`] holds a fixed number of buckets
//! (`MATCH_MAX_MS / MATCH_BUCKET_MS + 1`) however long a live city runs; its percentiles
//! are nearest-rank, exact to [`MATCH_BUCKET_MS`]. *Reproducible* — [`SimStats`] is plain
//! data compared with `==`, which is how a rerun with the same seed is checked.

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
}

/// Resolution of [`MatchTimes`], ms.
const MATCH_BUCKET_MS: i64 = 100;

/// Times to match longer than this share the last bucket (a trip expires long before).
const MATCH_MAX_MS: i64 = 600_000;

/// A histogram of times to match: bounded memory however long a live city runs, exact to
/// [`MATCH_BUCKET_MS`] (and exact outright on a manual clock stepped in whole multiples of it).
#[derive(Debug, Clone)]
pub(crate) struct MatchTimes {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for MatchTimes {
    fn default() -> Self {
        Self { buckets: vec![0; (MATCH_MAX_MS / MATCH_BUCKET_MS) as usize + 1], count: 0 }
    }
}

impl MatchTimes {
    pub(crate) fn record(&mut self, ms: i64) {
        let i = (ms.clamp(0, MATCH_MAX_MS) / MATCH_BUCKET_MS) as usize;
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
            self.count += 1;
        }
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
                return Some(i as i64 * MATCH_BUCKET_MS);
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
        let mut m = MatchTimes::default();
        assert_eq!(m.percentile(50), None);
        m.record(7_000);
        assert_eq!(m.percentile(95), Some(7_000));
        let mut m = MatchTimes::default();
        for s in 1..=100 {
            m.record(s * 1_000 + 50);
        }
        assert_eq!((m.percentile(50), m.percentile(95)), (Some(50_000), Some(95_000)));
        m.record(-5);
        m.record(10 * MATCH_MAX_MS);
        assert_eq!((m.percentile(0), m.percentile(100)), (Some(0), Some(MATCH_MAX_MS)));
    }
}
