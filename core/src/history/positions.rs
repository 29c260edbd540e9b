//! Position tracks: every driver's recorded positions in the store's `locations` table,
//! how they are read back (a page from a time on, a sampled trail over a range) and how
//! retention removes old ones.
//!
//! Owns the table's layout: `day ‖ driver ‖ time → the position` (day: whole UTC days
//! since the epoch, 4 bytes; driver and time in ms: 8 bytes each, big-endian). Day first,
//! so that:
//! - retention deletes whole old days by key range, oldest first, in bounded batches
//!   ([`History::prune_positions`]: each batch its own short transaction, so the
//!   checkpoint's transaction never waits long for the file's one writer), without a
//!   walk per driver and without an index;
//! - one driver's track over a range reads one key prefix per day (`day ‖ driver`): at most
//!   the days the table holds, a few dozen under retention;
//! - erasing one driver's positions ([`History::erase_positions`]) deletes one key range
//!   per day held.
//!
//! Guarantees: rows are written by the position tracker only (best effort, like positions
//! themselves) and deleted by retention (on the same thread) or an erase; reads run in
//! their own read transactions; retention removes exactly the rows of the days before its
//! cutoff's day — a position is kept at least its retention and at most one day more.

use dispatch_storage::store::{self, Order, Scan, TableName, key};

use super::{History, store_error};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{TripId, UserId};

const LOCATIONS: TableName = TableName::new("locations");

/// A UTC day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Most rows one retention batch deletes: one short redb transaction each.
pub const PRUNE_BATCH_MAX: usize = 10_000;

/// One recorded position of a driver.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocationPoint {
    /// When (the engine's time of the report).
    pub at: crate::clock::Timestamp,
    /// Where.
    pub point: crate::geo::LatLng,
    /// Degrees from north.
    pub heading_deg: Option<f32>,
    /// The trip the driver was on.
    pub trip_id: Option<TripId>,
}

/// The day of a time (times before the epoch clamp to day 0).
fn day_of(at_ms: u64) -> u32 {
    u32::try_from(at_ms / DAY_MS.unsigned_abs()).unwrap_or(u32::MAX)
}

/// A time as an unsigned key part (times before the epoch clamp to it).
fn ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis()).unwrap_or(0)
}

/// `day ‖ driver`: the prefix of one driver's positions of one day.
fn day_driver(day: u32, driver: UserId) -> Vec<u8> {
    key::concat(&[&day.to_be_bytes(), &key::u64_be(driver.raw())])
}

/// `day ‖ driver ‖ time`.
fn row_key(driver: UserId, at_ms: u64) -> Vec<u8> {
    key::concat(&[&day_driver(day_of(at_ms), driver), &key::u64_be(at_ms)])
}

fn decode_point(v: &[u8]) -> Result<LocationPoint> {
    postcard::from_bytes(v).map_err(|e| Error::Storage(format!("a stored position does not decode: {e}")))
}

impl History {
    /// Records driver positions (best effort: positions are not waited for fsync in the
    /// log either). Keys are day ‖ driver ‖ time, so one driver's track of a day reads in
    /// order and old days go whole.
    pub(crate) fn write_locations(&self, points: &[(UserId, LocationPoint)]) -> Result<()> {
        let mut puts = Vec::with_capacity(points.len());
        for (driver, p) in points {
            let value =
                postcard::to_allocvec(p).map_err(|e| Error::internal(format!("cannot encode a position: {e}")))?;
            puts.push((LOCATIONS, row_key(*driver, ms(p.at)), value));
        }
        self.store.put_rows(&puts).map_err(|e| store_error("cannot write positions", &e))
    }

    /// The first and the last day the table holds positions of (anyone's), if any.
    fn position_days(&self) -> Result<Option<(u32, u32)>> {
        let end = |order| -> Result<Option<u32>> {
            let page = self
                .store
                .scan(LOCATIONS, &Scan::new(Vec::new(), 1).order(order))
                .map_err(|e| store_error("cannot read positions", &e))?;
            page.rows
                .first()
                .map(|(k, _)| {
                    k.get(..4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes)
                        .ok_or_else(|| Error::Storage("a stored position has a malformed key".into()))
                })
                .transpose()
        };
        Ok(end(Order::Ascending)?.zip(end(Order::Descending)?))
    }

    /// Calls `each` with `driver`'s positions from `from_ms` on (to `until_ms`'s day at
    /// most), oldest first, a page at a time, until it returns `false` or the positions run
    /// out: one prefix per day from `from_ms`'s day (or the first day held) to the last
    /// day held (or `until_ms`'s).
    fn walk_positions(
        &self,
        driver: UserId,
        from_ms: u64,
        until_ms: Option<u64>,
        mut each: impl FnMut(LocationPoint) -> Result<bool>,
    ) -> Result<()> {
        let Some((first, last)) = self.position_days()? else { return Ok(()) };
        let start_day = day_of(from_ms);
        let last = until_ms.map_or(last, |u| last.min(day_of(u)));
        for day in start_day.max(first)..=last {
            let prefix = day_driver(day, driver);
            // The scan's cursor is exclusive: start just before `from`.
            let mut after = (day == start_day)
                .then(|| from_ms.checked_sub(1).filter(|t| day_of(*t) == day))
                .flatten()
                .map(|t| key::concat(&[&prefix, &key::u64_be(t)]));
            loop {
                let scan = Scan::new(prefix.clone(), store::SCAN_LIMIT_MAX).after(after.take());
                let page = self.store.scan(LOCATIONS, &scan).map_err(|e| store_error("cannot read positions", &e))?;
                for (_, v) in &page.rows {
                    if !each(decode_point(v)?)? {
                        return Ok(());
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Up to `limit` (1 to 1000) positions of `driver` from `from` on, oldest first.
    pub fn locations(&self, driver: UserId, from: Timestamp, limit: usize) -> Result<Vec<LocationPoint>> {
        let limit = limit.clamp(1, store::SCAN_LIMIT_MAX);
        let mut out = Vec::new();
        self.walk_positions(driver, ms(from), None, |p| {
            out.push(p);
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Deletes at most `max` (up to [`PRUNE_BATCH_MAX`]) positions of the days before
    /// `before`'s day, oldest first, in one short transaction of its own; returns how many
    /// it deleted (fewer than `max`: none of those days is left). Retention calls it
    /// until then; a restart resumes where it stopped (the cutoff is all it needs).
    pub fn prune_positions(&self, before: Timestamp, max: usize) -> Result<u64> {
        let before_day = day_of(ms(before));
        // A cheap read first: most calls find nothing old enough and write nothing.
        match self.position_days()? {
            Some((first, _)) if first < before_day => {}
            _ => return Ok(0),
        }
        let end = before_day.to_be_bytes();
        let n = self
            .store
            .purge_range_max(LOCATIONS, &[], &end, max.min(PRUNE_BATCH_MAX))
            .map_err(|e| store_error("cannot prune positions", &e))?;
        self.pruned_positions.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    /// Deletes every recorded position of `driver` (an erasure of the driver's personal
    /// data): one key range per day held, each in its own bounded transaction. Returns
    /// how many it deleted. Positions the tracker records meanwhile are kept.
    pub fn erase_positions(&self, driver: UserId) -> Result<u64> {
        let Some((first, last)) = self.position_days()? else { return Ok(0) };
        let mut removed = 0;
        for day in first..=last {
            let start = day_driver(day, driver);
            let Some(end) = key::prefix_end(&start) else { continue };
            loop {
                let n = self
                    .store
                    .purge_range_max(LOCATIONS, &start, &end, PRUNE_BATCH_MAX)
                    .map_err(|e| store_error("cannot erase positions", &e))?;
                removed += n;
                if n < PRUNE_BATCH_MAX as u64 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// How many positions the table holds (redb keeps the count: no rows are read).
    pub fn positions_held(&self) -> Result<u64> {
        self.store.len(LOCATIONS).map_err(|e| store_error("cannot count positions", &e))
    }
}

/// Most positions [`History::trail`] reads for one trail (about 11 days at one report a
/// second): bounds the work of one answer whatever the range asked for.
pub const TRAIL_READ_MAX: usize = 1_000_000;

/// A driver's positions over a time range, as [`History::trail`] reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Trail {
    /// Oldest first: every recorded position of the range, or an even sample of them
    /// (every k-th, and the last) when there were more than asked for.
    pub points: Vec<LocationPoint>,
    /// How many positions were read (the range's count, up to [`TRAIL_READ_MAX`]).
    pub recorded: usize,
    /// The range held more than [`TRAIL_READ_MAX`] positions: the trail stops at the
    /// last one read.
    pub truncated: bool,
}

/// An even sample of a stream of unknown length in at most `max` items: the items at
/// every `stride`-th position (the stride doubling whenever the sample would outgrow
/// `max`), plus the last item. Memory is `max` items whatever the stream's length.
#[derive(Debug)]
pub(crate) struct EvenSample<T> {
    max: usize,
    stride: usize,
    seen: usize,
    kept: Vec<T>,
    /// The last item, unless it is the last of `kept`.
    last: Option<T>,
}

impl<T: Copy> EvenSample<T> {
    /// A sample of at most `max` items (at least 2: the first and the last).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(2);
        EvenSample { max, stride: 1, seen: 0, kept: Vec::with_capacity(max.min(4096)), last: None }
    }

    /// Keeps every other item of the sample, which doubles its stride.
    fn halve(&mut self) {
        let mut i = 0usize;
        self.kept.retain(|_| {
            i += 1;
            i % 2 == 1
        });
        self.stride *= 2;
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.seen.is_multiple_of(self.stride) && self.kept.len() == self.max {
            self.halve();
        }
        if self.seen.is_multiple_of(self.stride) {
            self.kept.push(item);
            self.last = None;
        } else {
            self.last = Some(item);
        }
        self.seen += 1;
    }

    /// How many items were pushed.
    pub(crate) fn seen(&self) -> usize {
        self.seen
    }

    /// The sample, in the order pushed.
    pub(crate) fn finish(mut self) -> Vec<T> {
        if let Some(last) = self.last {
            if self.kept.len() == self.max {
                self.halve();
            }
            self.kept.push(last);
        }
        self.kept
    }
}

impl History {
    /// `driver`'s positions recorded from `from` to `until` (both included), oldest
    /// first, at most `max_points` of them (an even sample when the range holds more;
    /// the first and the last are always in it). Reads at most [`TRAIL_READ_MAX`].
    pub fn trail(&self, driver: UserId, from: Timestamp, until: Timestamp, max_points: usize) -> Result<Trail> {
        let mut sample = EvenSample::new(max_points);
        let mut truncated = false;
        if from > until {
            return Ok(Trail { points: Vec::new(), recorded: 0, truncated });
        }
        self.walk_positions(driver, ms(from), Some(ms(until)), |p| {
            if p.at > until {
                return Ok(false);
            }
            if sample.seen() == TRAIL_READ_MAX {
                truncated = true;
                return Ok(false);
            }
            sample.push(p);
            Ok(true)
        })?;
        let recorded = sample.seen();
        Ok(Trail { points: sample.finish(), recorded, truncated })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const D0: i64 = 19_700 * DAY_MS;

    fn point(driver: u64, at_ms: i64) -> (UserId, LocationPoint) {
        let p = LocationPoint {
            at: Timestamp::from_millis(at_ms),
            point: crate::geo::LatLng::new(30.0, 31.0).unwrap(),
            heading_deg: None,
            trip_id: None,
        };
        (UserId::from_raw(driver).unwrap(), p)
    }

    fn times(points: &[LocationPoint]) -> Vec<i64> {
        points.iter().map(|p| p.at.as_millis()).collect()
    }

    /// Two drivers, a position every 6 hours over 4 days (the first of each day at
    /// midnight exactly). Retention with a cutoff inside day 2 removes exactly days 0 and
    /// 1, in batches of its bound (the last one short), resumes after a reopen, and the
    /// track and trail still answer for what is kept; an erase takes one driver's only.
    #[test]
    fn pruning_removes_exactly_the_days_before_the_cutoff_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let every = 6 * 3_600_000;
        let all: Vec<i64> = (0..16).map(|i| D0 + i * every).collect();
        let rows: Vec<_> = [1, 2].iter().flat_map(|d| all.iter().map(move |t| point(*d, *t))).collect();
        history.write_locations(&rows).unwrap();
        assert_eq!(history.positions_held().unwrap(), 32);
        let one = UserId::from_raw(1).unwrap();
        assert_eq!(times(&history.locations(one, Timestamp::from_millis(0), 1000).unwrap()), all);

        let cutoff = Timestamp::from_millis(D0 + 2 * DAY_MS + 5 * 3_600_000);
        assert_eq!(history.prune_positions(cutoff, 5).unwrap(), 5);
        drop(history);
        let history = History::open(dir.path()).unwrap();
        let mut batches = Vec::new();
        loop {
            let n = history.prune_positions(cutoff, 5).unwrap();
            batches.push(n);
            if n < 5 {
                break;
            }
        }
        assert_eq!(batches, vec![5, 5, 1], "16 rows of days 0 and 1: 5 before the reopen, then 5, 5, 1");
        assert_eq!(history.retention_pruned().0, 11);
        assert_eq!(history.prune_positions(cutoff, 5).unwrap(), 0);
        let kept: Vec<i64> = all.iter().copied().filter(|t| *t >= D0 + 2 * DAY_MS).collect();
        assert_eq!(kept.len(), 8);
        assert_eq!(history.positions_held().unwrap(), 16);
        assert_eq!(times(&history.locations(one, Timestamp::from_millis(0), 1000).unwrap()), kept);
        // A page from a time inside day 3, and pages that cross days.
        let from = Timestamp::from_millis(D0 + 3 * DAY_MS + 1);
        assert_eq!(times(&history.locations(one, from, 1000).unwrap()), kept[5..].to_vec());
        assert_eq!(times(&history.locations(one, Timestamp::from_millis(kept[2]), 3).unwrap()), kept[2..5].to_vec());
        let trail = history.trail(one, Timestamp::from_millis(D0), Timestamp::from_millis(kept[6]), 100).unwrap();
        assert_eq!((times(&trail.points), trail.recorded, trail.truncated), (kept[..7].to_vec(), 7, false));
        let sampled = history.trail(one, Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX), 2).unwrap();
        assert_eq!((times(&sampled.points), sampled.recorded), (vec![kept[0], kept[7]], 8));

        assert_eq!(history.erase_positions(UserId::from_raw(2).unwrap()).unwrap(), 8);
        assert!(history.locations(UserId::from_raw(2).unwrap(), Timestamp::from_millis(0), 10).unwrap().is_empty());
        assert_eq!(times(&history.locations(one, Timestamp::from_millis(0), 1000).unwrap()), kept);
    }

    fn sample(n: usize, max: usize) -> Vec<usize> {
        let mut s = EvenSample::new(max);
        (0..n).for_each(|i| s.push(i));
        s.finish()
    }

    #[test]
    fn a_short_stream_is_kept_whole() {
        assert_eq!(sample(0, 10), Vec::<usize>::new());
        assert_eq!(sample(1, 10), vec![0]);
        assert_eq!(sample(10, 10), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_stream_keeps_every_kth_and_the_last() {
        // 100 items in at most 10: a stride of 16 (0, 16, ..., 96) and the last.
        assert_eq!(sample(100, 10), vec![0, 16, 32, 48, 64, 80, 96, 99]);
        assert_eq!(sample(11, 10), vec![0, 2, 4, 6, 8, 10]);
        assert_eq!(sample(5, 2), vec![0, 4]);
    }

    proptest! {
        #[test]
        fn a_sample_is_bounded_ordered_even_and_keeps_both_ends(n in 0usize..5_000, max in 0usize..300) {
            let s = sample(n, max);
            prop_assert!(s.len() <= max.max(2));
            prop_assert_eq!(s.len() == n, n <= max.max(2));
            prop_assert!(s.windows(2).all(|w| w[0] < w[1]));
            if n > 0 {
                prop_assert_eq!(s[0], 0);
                prop_assert_eq!(*s.last().unwrap(), n - 1);
            }
            // Evenly spaced: one stride between the kept items (the last may be closer).
            if s.len() > 2 {
                let stride = s[1] - s[0];
                prop_assert!(s[..s.len() - 1].windows(2).all(|w| w[1] - w[0] == stride));
                prop_assert!(n - 1 - s[s.len() - 2] <= stride);
                // Not sparser than it has to be: half the stride (and the last) would not fit.
                if stride > 1 {
                    let half = stride / 2;
                    let at_half = (n - 1) / half + 1 + usize::from((n - 1) % half != 0);
                    prop_assert!(at_half > max.max(2), "{n} in {max}: stride {stride}");
                }
            }
        }
    }
}
