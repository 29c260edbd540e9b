//! History: finished trips, moved out of the hot state into the data directory's redb
//! file (`history.redb`), and read back from there.
//!
//! Owns the tables and their keys:
//! - `trips`: trip id → the trip (postcard), as it ended;
//! - `trips_by_rider`: rider ‖ created (newest first) ‖ trip (highest first) → ();
//! - `trips_by_driver`: driver ‖ created ‖ trip, the same way → ();
//! - `trips_by_time`: created ‖ trip, the same way → () — every trip, for staff;
//! - `transfers`: transfer id → the settled ledger transfer (postcard), archived with
//!   its trip (or on its own when it has none);
//! - `transfers_by_account`: account ‖ time (newest first) ‖ transfer → (): statements;
//! - `locations`: driver ‖ time → the position: every driver's track. Written by a
//!   thread that follows the engine's position events in batches, best effort, like
//!   positions themselves (they are not waited for fsync in the log either). Read back
//!   as a page from a time on ([`History::locations`]) or as a bounded, evenly sampled
//!   trail over a time range ([`History::trail`]).
//!
//! How trips get here (see `journal.rs`): each checkpoint writes the trips that were
//! terminal in the checkpointed state, in one redb transaction that also records the
//! checkpoint's LSN; only once that transaction is durable does the writer log an
//! `Archive` command that removes them from the hot state — each only at the revision
//! the row holds (`Trip::revision`): a trip changed in between (a rating, a refund)
//! stays hot, and the next checkpoint writes and archives its new revision. So a
//! finished trip is always readable from one place or the other — never from neither,
//! never an older copy than was acknowledged — and a crash at any point leaves at worst
//! a trip in both (the hot copy wins; the next checkpoint writes it again).
//!
//! A command about a trip that is only here (a late rating, a refund, a payment
//! event) is not refused as unknown: the writer reads the trip back and logs it with
//! the command (`Command::Restored`), which puts it back in the hot state first.
//!
//! Guarantees: rows are written only by the checkpoint thread; reads run in their own
//! redb read transaction and never wait for it; a corrupt or foreign file refuses to
//! open (the engine then refuses to start).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispatch_storage::store::{self, Checkpoint, Order, Scan, Store, TableName, key};

use crate::error::{Error, Result};
use crate::id::{TransferId, TripId, UserId};
use crate::ledger::{AccountKey, Transfer};
use crate::trip::Trip;

const TRIPS: TableName = TableName::new("trips");
const TRIPS_BY_RIDER: TableName = TableName::new("trips_by_rider");
const TRIPS_BY_DRIVER: TableName = TableName::new("trips_by_driver");
const TRIPS_BY_TIME: TableName = TableName::new("trips_by_time");
const LOCATIONS: TableName = TableName::new("locations");
const TRANSFERS: TableName = TableName::new("transfers");
const TRANSFERS_BY_ACCOUNT: TableName = TableName::new("transfers_by_account");

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

/// The file name of the history store inside a data directory.
pub const FILE: &str = "history.redb";

/// Whose trips a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripsOf {
    /// A rider's.
    Rider(UserId),
    /// A driver's.
    Driver(UserId),
    /// Everyone's (staff).
    All,
}

/// A position in a newest-first listing of trips: strictly older than this
/// `(created_at ms, trip)` pair. Opaque to callers outside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TripCursor {
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// The trip.
    pub trip: TripId,
}

impl TripCursor {
    /// The cursor just after `trip` in newest-first order.
    pub fn after(trip: &Trip) -> Self {
        TripCursor { created_ms: trip.created_at.as_millis(), trip: trip.id }
    }

    /// Whether `trip` comes after this cursor in newest-first order.
    pub fn precedes(&self, trip: &Trip) -> bool {
        (trip.created_at.as_millis(), trip.id) < (self.created_ms, self.trip)
    }
}

/// The history store of a data directory.
pub struct History {
    store: Store,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.store.path()).finish()
    }
}

fn store_error(context: &str, e: &store::StoreError) -> Error {
    Error::Storage(format!("{context}: {e}"))
}

fn time_part(ms: i64) -> [u8; 8] {
    // Times before the epoch do not occur; clamp rather than wrap if one did.
    key::rev_u64_be(u64::try_from(ms).unwrap_or(0))
}

/// `owner? ‖ rev(created) ‖ rev(trip)`: ascending key order is newest first, and among
/// trips created in the same millisecond the higher id first — the order of
/// `(created_at, id)` descending that the engine's listings use.
fn index_key(owner: Option<UserId>, created_ms: i64, trip: TripId) -> Vec<u8> {
    let t = time_part(created_ms);
    let id = key::rev_u64_be(trip.raw());
    match owner {
        Some(o) => key::concat(&[&key::u64_be(o.raw()), &t, &id]),
        None => key::concat(&[&t, &id]),
    }
}

impl History {
    /// Opens (creating) the history store in the data directory `dir`. Refuses a
    /// corrupt or foreign file.
    pub fn open(dir: &Path) -> Result<Arc<History>> {
        let store =
            Store::open(path(dir)).map_err(|e| store_error("the history store is unusable; refusing to start", &e))?;
        Ok(Arc::new(History { store }))
    }

    /// The LSN of the last checkpoint whose trips were written, if any.
    pub fn applied_lsn(&self) -> Result<Option<u64>> {
        self.store.checkpoint_lsn().map_err(|e| store_error("cannot read the history store", &e))
    }

    /// Writes `trips` (finished) as of the checkpoint at `lsn`, in one durable transaction.
    pub(crate) fn write(&self, lsn: u64, trips: &[Arc<Trip>], transfers: &[Transfer]) -> Result<()> {
        let mut puts = Vec::with_capacity(trips.len() * 4 + transfers.len() * 3);
        for t in transfers {
            let value =
                postcard::to_allocvec(t).map_err(|e| Error::Internal(format!("cannot encode a transfer: {e}")))?;
            puts.push((TRANSFERS, key::u64_be(t.id.raw()).to_vec(), value));
            for account in [t.debit, t.credit] {
                puts.push((TRANSFERS_BY_ACCOUNT, statement_key(&account, t.at.as_millis(), t.id), Vec::new()));
            }
        }
        for t in trips {
            let value =
                postcard::to_allocvec(&**t).map_err(|e| Error::Internal(format!("cannot encode a trip: {e}")))?;
            let created = t.created_at.as_millis();
            puts.push((TRIPS, key::u64_be(t.id.raw()).to_vec(), value));
            puts.push((TRIPS_BY_RIDER, index_key(Some(t.rider_id), created, t.id), Vec::new()));
            if let Some(d) = t.driver_id {
                puts.push((TRIPS_BY_DRIVER, index_key(Some(d), created, t.id), Vec::new()));
            }
            puts.push((TRIPS_BY_TIME, index_key(None, created, t.id), Vec::new()));
        }
        // The checkpoint's state lives in the snapshot files; this records only the
        // LSN the rows go with.
        let cp = Checkpoint { lsn, state: Vec::new(), puts, deletes: Vec::new(), delete_ranges: Vec::new() };
        self.store.commit(&cp).map_err(|e| store_error("cannot write the history", &e))
    }

    /// A finished trip.
    pub fn trip(&self, id: TripId) -> Result<Option<Trip>> {
        let bytes = self.store.get(TRIPS, &key::u64_be(id.raw())).map_err(|e| store_error("cannot read a trip", &e))?;
        bytes.map(|b| decode(&b)).transpose()
    }

    /// Up to `limit` (1 to 1000) finished trips of `of`, newest first, strictly after `cursor`.
    pub fn trips(&self, of: TripsOf, cursor: Option<TripCursor>, limit: usize) -> Result<Vec<Trip>> {
        let (table, prefix) = match of {
            TripsOf::Rider(u) => (TRIPS_BY_RIDER, key::u64_be(u.raw()).to_vec()),
            TripsOf::Driver(u) => (TRIPS_BY_DRIVER, key::u64_be(u.raw()).to_vec()),
            TripsOf::All => (TRIPS_BY_TIME, Vec::new()),
        };
        let owner = match of {
            TripsOf::Rider(u) | TripsOf::Driver(u) => Some(u),
            TripsOf::All => None,
        };
        let after = cursor.map(|c| index_key(owner, c.created_ms, c.trip));
        let scan = Scan::new(prefix, limit.clamp(1, store::SCAN_LIMIT_MAX)).order(Order::Ascending).after(after);
        let page = self.store.scan(table, &scan).map_err(|e| store_error("cannot list trips", &e))?;
        let mut out = Vec::with_capacity(page.rows.len());
        for (k, _) in page.rows {
            let id_bytes = k.get(k.len().saturating_sub(8)..).unwrap_or_default();
            let id = key::take_rev_u64_be(id_bytes)
                .and_then(|(raw, _)| TripId::from_raw(raw))
                .ok_or_else(|| Error::Storage("a history index row has a malformed key".into()))?;
            match self.trip(id)? {
                Some(t) => out.push(t),
                None => return Err(Error::Storage(format!("the history index names {id}, which is missing"))),
            }
        }
        Ok(out)
    }
}

fn decode(bytes: &[u8]) -> Result<Trip> {
    postcard::from_bytes(bytes).map_err(|e| Error::Storage(format!("a stored trip does not decode: {e}")))
}

impl History {
    /// Records driver positions (best effort: positions are not waited for fsync in the
    /// log either). Keys are driver ‖ time, so one driver's track reads in order.
    pub(crate) fn write_locations(&self, points: &[(UserId, LocationPoint)]) -> Result<()> {
        let mut puts = Vec::with_capacity(points.len());
        for (driver, p) in points {
            let at = u64::try_from(p.at.as_millis()).unwrap_or(0);
            let value =
                postcard::to_allocvec(p).map_err(|e| Error::Internal(format!("cannot encode a position: {e}")))?;
            puts.push((LOCATIONS, key::concat(&[&key::u64_be(driver.raw()), &key::u64_be(at)]), value));
        }
        self.store.put_rows(&puts).map_err(|e| store_error("cannot write positions", &e))
    }

    /// Up to `limit` (1 to 1000) positions of `driver` from `from` on, oldest first.
    pub fn locations(&self, driver: UserId, from: crate::clock::Timestamp, limit: usize) -> Result<Vec<LocationPoint>> {
        let prefix = key::u64_be(driver.raw()).to_vec();
        let start = u64::try_from(from.as_millis()).unwrap_or(0);
        // Continue just before `from`: the scan's cursor is exclusive.
        let after = start.checked_sub(1).map(|t| key::concat(&[&prefix, &key::u64_be(t)]));
        let scan = Scan::new(prefix, limit.clamp(1, store::SCAN_LIMIT_MAX)).after(after);
        let page = self.store.scan(LOCATIONS, &scan).map_err(|e| store_error("cannot read positions", &e))?;
        page.rows
            .iter()
            .map(|(_, v)| {
                postcard::from_bytes(v).map_err(|e| Error::Storage(format!("a stored position does not decode: {e}")))
            })
            .collect()
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
    pub fn trail(
        &self,
        driver: UserId,
        from: crate::clock::Timestamp,
        until: crate::clock::Timestamp,
        max_points: usize,
    ) -> Result<Trail> {
        let mut sample = EvenSample::new(max_points);
        let prefix = key::u64_be(driver.raw()).to_vec();
        let start = u64::try_from(from.as_millis()).unwrap_or(0);
        let end = u64::try_from(until.as_millis()).unwrap_or(0);
        // The scan's cursor is exclusive: start just before `from`.
        let mut after = start.checked_sub(1).map(|t| key::concat(&[&prefix, &key::u64_be(t)]));
        let mut truncated = false;
        if start > end {
            return Ok(Trail { points: Vec::new(), recorded: 0, truncated });
        }
        'pages: loop {
            let scan = Scan::new(prefix.clone(), store::SCAN_LIMIT_MAX).after(after.take());
            let page = self.store.scan(LOCATIONS, &scan).map_err(|e| store_error("cannot read positions", &e))?;
            for (_, v) in &page.rows {
                let p: LocationPoint = postcard::from_bytes(v)
                    .map_err(|e| Error::Storage(format!("a stored position does not decode: {e}")))?;
                if p.at > until {
                    break 'pages;
                }
                if sample.seen() == TRAIL_READ_MAX {
                    truncated = true;
                    break 'pages;
                }
                sample.push(p);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let recorded = sample.seen();
        Ok(Trail { points: sample.finish(), recorded, truncated })
    }
}

/// `account ‖ rev(at) ‖ rev(id)`: ascending is newest first, as `View::statement` reads.
fn statement_key(account: &AccountKey, at_ms: i64, id: TransferId) -> Vec<u8> {
    let mut k = account_prefix(account);
    k.extend_from_slice(&time_part(at_ms));
    k.extend_from_slice(&key::rev_u64_be(id.raw()));
    k
}

/// A fixed-width encoding of an account key: kind, owner (0 for the platform), currency.
fn account_prefix(account: &AccountKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 + 3);
    k.push(account.kind as u8);
    k.extend_from_slice(&key::u64_be(account.owner.map_or(0, |u| u.raw())));
    k.extend_from_slice(account.currency.code().as_bytes());
    k
}

impl History {
    /// Up to `limit` (1 to 1000) archived transfers of `account`, newest first, strictly
    /// after `after` (`(at, id)` of the last one of the previous page).
    pub fn transfers_of(
        &self,
        account: &AccountKey,
        after: Option<(crate::clock::Timestamp, TransferId)>,
        limit: usize,
    ) -> Result<Vec<Transfer>> {
        let prefix = account_prefix(account);
        let cursor = after.map(|(at, id)| statement_key(account, at.as_millis(), id));
        let scan = Scan::new(prefix, limit.clamp(1, store::SCAN_LIMIT_MAX)).after(cursor);
        let page =
            self.store.scan(TRANSFERS_BY_ACCOUNT, &scan).map_err(|e| store_error("cannot list transfers", &e))?;
        let mut out = Vec::with_capacity(page.rows.len());
        for (k, _) in page.rows {
            let id = k
                .get(k.len().saturating_sub(8)..)
                .and_then(key::take_rev_u64_be)
                .and_then(|(raw, _)| TransferId::from_raw(raw))
                .ok_or_else(|| Error::Storage("a transfer index row has a malformed key".into()))?;
            let bytes = self
                .store
                .get(TRANSFERS, &key::u64_be(id.raw()))
                .map_err(|e| store_error("cannot read a transfer", &e))?
                .ok_or_else(|| Error::Storage(format!("the transfer index names {id}, which is missing")))?;
            out.push(
                postcard::from_bytes(&bytes)
                    .map_err(|e| Error::Storage(format!("a stored transfer does not decode: {e}")))?,
            );
        }
        Ok(out)
    }
}

/// Where the history store of the data directory `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Copies the history store of `from` (which another process may be writing) to `to`.
pub(crate) fn backup_file(from: &Path, to: &Path) -> Result<()> {
    if !from.exists() {
        return Ok(());
    }
    let ro = Store::open_read_only(from).map_err(|e| store_error("cannot open the history for backup", &e))?;
    ro.backup_to(to).map(|_| ()).map_err(|e| store_error("cannot back up the history", &e))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::EvenSample;

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
