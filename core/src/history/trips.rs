//! The history's side of the staff trip list and the reports: writing a finished trip's
//! index rows and its contribution to the rollups (with the checkpoint, in its
//! transaction), and reading them back — the list by the index a query's plan names
//! (`trip_index.rs`), the rollups by day (`reports.rs`).
//!
//! Guarantees: a trip written again (re-archived at a new revision) leaves no stale index
//! row and counts once in the rollups: its old row is read first (only the checkpoint
//! thread writes, so nothing changes it before the commit), old index keys that differ are
//! deleted and its old contribution subtracted. A page of the list reads at most
//! `limit + 1` index rows when the plan is exact; a rider's or a driver's query at most
//! that user's rows.

use std::collections::HashMap;
use std::sync::Arc;

use dispatch_storage::store::{self, Checkpoint, Order, Scan, TableName, key};

use super::{History, REPORT_DAYS, TRIPS, decode, store_error};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{TripId, ZoneId};
use crate::reports::{Rollup, RollupKey, contribution};
use crate::trip::Trip;
use crate::trip_index::{TripQuery, created_of, index_rows, plan, range_start};

/// Most rows one archived trip changes: the trip, its six index rows, the six of an
/// older copy that differ, the two rollups of each copy.
pub(crate) const ROWS_PER_TRIP_MAX: usize = 17;

/// A page of the staff trip list from the history, and what it cost.
#[derive(Debug, Default)]
pub struct TripsPage {
    /// The trips, newest first.
    pub trips: Vec<Trip>,
    /// Index rows read to find them (the cost the indexes keep O(page)).
    pub rows_read: usize,
}

impl History {
    /// Adds to a checkpoint's changes the rows of finished `trips` (each trip once: the
    /// last copy wins): the trip, its index rows, and the rollups it changes.
    pub(super) fn trip_rows(
        &self,
        trips: &[Arc<Trip>],
        puts: &mut Vec<(TableName, Vec<u8>, Vec<u8>)>,
        deletes: &mut Vec<(TableName, Vec<u8>)>,
    ) -> Result<()> {
        let mut last: HashMap<TripId, &Trip> = HashMap::with_capacity(trips.len());
        for t in trips {
            last.insert(t.id, t);
        }
        let mut rollups: HashMap<RollupKey, Rollup> = HashMap::new();
        for t in trips {
            // Once per trip, in the order given.
            let Some(t) = last.remove(&t.id) else { continue };
            let id_key = key::u64_be(t.id.raw()).to_vec();
            let old = self.store.get(TRIPS, &id_key).map_err(|e| store_error("cannot read a trip", &e))?;
            let fresh = index_rows(t);
            if let Some(old) = old {
                let old = decode(&old)?;
                for row in index_rows(&old) {
                    if !fresh.contains(&row) {
                        deletes.push(row);
                    }
                }
                for (k, r) in contribution(&old) {
                    rollups.entry(k).or_default().add(&r, -1);
                }
            }
            for (k, r) in contribution(t) {
                rollups.entry(k).or_default().add(&r, 1);
            }
            let value = postcard::to_allocvec(t).map_err(|e| Error::internal(format!("cannot encode a trip: {e}")))?;
            puts.push((TRIPS, id_key, value));
            puts.extend(fresh.into_iter().map(|(table, k)| (table, k, Vec::new())));
        }
        for (k, delta) in rollups {
            if delta.is_zero() {
                continue;
            }
            let row = k.encode();
            let mut sum = self.rollup(&row)?.unwrap_or_default();
            sum.add(&delta, 1);
            if sum.is_zero() {
                deletes.push((REPORT_DAYS, row));
            } else {
                let value =
                    postcard::to_allocvec(&sum).map_err(|e| Error::internal(format!("cannot encode a rollup: {e}")))?;
                puts.push((REPORT_DAYS, row, value));
            }
        }
        Ok(())
    }

    fn rollup(&self, row: &[u8]) -> Result<Option<Rollup>> {
        let bytes = self.store.get(REPORT_DAYS, row).map_err(|e| store_error("cannot read a rollup", &e))?;
        bytes
            .map(|b| {
                postcard::from_bytes(&b).map_err(|e| Error::Storage(format!("a stored rollup does not decode: {e}")))
            })
            .transpose()
    }

    /// Up to `limit` (1 to 1000) finished trips passing `query`, newest first, strictly
    /// after `cursor` (`(created ms, trip)` of the last trip of the previous page), read
    /// through the index [`plan`] picks.
    pub fn find_trips(&self, query: &TripQuery, cursor: Option<(i64, TripId)>, limit: usize) -> Result<TripsPage> {
        let limit = limit.clamp(1, store::SCAN_LIMIT_MAX);
        let mut page = TripsPage::default();
        if !query.may_be_archived() {
            return Ok(page);
        }
        let plan = plan(query);
        let from_ms = query.from.map(Timestamp::as_millis);
        let mut after = range_start(&plan, cursor, query.to);
        'pages: loop {
            // An exact plan needs a page of rows; a user's index filtered for the rest reads
            // on in the largest pages (bounded by that user's trips).
            let rows_per_scan = if plan.exact { limit } else { store::SCAN_LIMIT_MAX };
            let scan = Scan::new(plan.prefix.clone(), rows_per_scan).order(Order::Ascending).after(after.take());
            let rows = self.store.scan(plan.table, &scan).map_err(|e| store_error("cannot list trips", &e))?;
            for (k, _) in &rows.rows {
                page.rows_read += 1;
                let (created, id) = created_of(&plan, k)
                    .ok_or_else(|| Error::Storage("a history index row has a malformed key".into()))?;
                if from_ms.is_some_and(|f| created < f) {
                    break 'pages;
                }
                let trip = self
                    .trip(id)?
                    .ok_or_else(|| Error::Storage(format!("the history index names {id}, which is missing")))?;
                if query.matches(&trip) {
                    page.trips.push(trip);
                    if page.trips.len() == limit {
                        break 'pages;
                    }
                }
            }
            match rows.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(page)
    }

    /// The rollup rows of days `[first_day, end_day)`, of `zone` or every zone, by day.
    /// At most (days × zones × currencies) rows: a caller bounds the days.
    pub fn rollups(&self, first_day: i64, end_day: i64, zone: Option<ZoneId>) -> Result<Vec<(RollupKey, Rollup)>> {
        let mut out = Vec::new();
        // Start just before `first_day`'s rows (the scan's cursor is exclusive).
        let mut after = first_day
            .checked_sub(1)
            .and_then(|d| u64::try_from(d).ok())
            .map(|d| key::concat(&[&key::u64_be(d), &[0xff; 11]]));
        'pages: loop {
            let scan = Scan::new(Vec::new(), store::SCAN_LIMIT_MAX).after(after.take());
            let page = self.store.scan(REPORT_DAYS, &scan).map_err(|e| store_error("cannot read the rollups", &e))?;
            for (k, v) in &page.rows {
                let key =
                    RollupKey::decode(k).ok_or_else(|| Error::Storage("a rollup row has a malformed key".into()))?;
                if key.day >= end_day {
                    break 'pages;
                }
                if key.day < first_day || zone.is_some_and(|z| key.zone != z) {
                    continue;
                }
                let r = postcard::from_bytes(v)
                    .map_err(|e| Error::Storage(format!("a stored rollup does not decode: {e}")))?;
                out.push((key, r));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    /// Writes finished `trips` straight into the history, as a checkpoint at `lsn` that
    /// carries no engine state: for benches and tools that build a large history without
    /// running an engine. A store written so cannot start an engine.
    #[doc(hidden)]
    pub fn import_trips(&self, lsn: u64, trips: &[Arc<Trip>]) -> Result<()> {
        let (mut puts, mut deletes) = (Vec::with_capacity(trips.len() * 8), Vec::new());
        self.trip_rows(trips, &mut puts, &mut deletes)?;
        let cp = Checkpoint { lsn, state: Vec::new(), puts, deletes, delete_ranges: Vec::new() };
        self.store.commit(&cp).map_err(|e| store_error("cannot write the checkpoint", &e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::History;
    use crate::clock::Timestamp;
    use crate::id::{TripId, UserId, ZoneId};
    use crate::reports::{DAY_MS, Rollup, RollupKey, contribution, day_of};
    use crate::trip::{CancelReason, Cancellation, CancelledBy, Trip, TripStatus};
    use crate::trip_index::TripQuery;

    const BASE_MS: i64 = 1_780_000_000_000;

    fn template() -> Trip {
        let mut w = dispatch_domain::testkit::World::new(crate::command::DispatchRules::default());
        let rider = w.rider();
        let id = w.trip(rider);
        (*w.get(id)).clone()
    }

    /// A finished trip: `status` 0 completed, 1 cancelled by its rider (with a fee),
    /// 2 expired, 3 cancelled by staff; created `created_ms`, matched after `match_s`.
    #[derive(Debug, Clone)]
    struct Spec {
        id: u64,
        status: u8,
        zone: u64,
        rider: u64,
        driver: Option<u64>,
        created_ms: i64,
        match_s: i64,
        fare: i64,
        discount: i64,
        refunded: i64,
    }

    fn make(template: &Trip, s: &Spec) -> Arc<Trip> {
        let mut t = template.clone();
        let at = |ms: i64| Timestamp::from_millis(ms);
        t.id = TripId::from_raw(s.id).unwrap();
        t.zone_id = ZoneId::from_raw(s.zone).unwrap();
        t.rider_id = UserId::from_raw(s.rider).unwrap();
        t.driver_id = s.driver.map(|d| UserId::from_raw(d).unwrap());
        t.created_at = at(s.created_ms);
        t.searching_since = at(s.created_ms);
        t.accepted_at = s.driver.map(|_| at(s.created_ms + s.match_s * 1000));
        let ended = at(s.created_ms + 5 * 3_600_000);
        t.ended_at = Some(ended);
        t.payment.refunded_minor = s.refunded;
        let cancel = |by| Cancellation { by, code: CancelReason::Other, reason: String::new(), at: ended };
        match s.status {
            0 => {
                t.status = TripStatus::Completed;
                t.fare.final_minor = Some(s.fare);
                let mut b = t.fare.estimate_breakdown;
                b.discount_minor = s.discount;
                t.fare.final_breakdown = Some(b);
            }
            1 => {
                t.status = TripStatus::Cancelled;
                t.cancellation = Some(cancel(CancelledBy::Rider));
                t.fare.cancel_fee_minor = Some(s.fare);
            }
            2 => t.status = TripStatus::Expired,
            _ => {
                t.status = TripStatus::Cancelled;
                t.cancellation = Some(cancel(CancelledBy::Staff));
            }
        }
        Arc::new(t)
    }

    fn spec(id: u64, status: u8, created_ms: i64) -> Spec {
        Spec {
            id,
            status,
            zone: 1 + id % 3,
            rider: 1 + id % 5,
            driver: Some(100 + id % 4),
            created_ms,
            match_s: 7,
            fare: 3000,
            discount: 200,
            refunded: 0,
        }
    }

    /// The point of the indexes: a status that is rare in the history is listed by
    /// reading the rows of the page, not the history.
    #[test]
    fn a_rare_status_reads_a_page_of_rows_whatever_the_history_holds() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let template = template();
        // 5,000 trips, one in 1,000 expired (the oldest of them first).
        let trips: Vec<Arc<Trip>> = (1..=5_000u64)
            .map(|i| make(&template, &spec(i, if i % 1000 == 0 { 2 } else { 0 }, BASE_MS + i as i64 * 60_000)))
            .collect();
        history.import_trips(1, &trips).unwrap();
        let expired = TripQuery { status: Some(TripStatus::Expired), ..TripQuery::default() };
        let page = history.find_trips(&expired, None, 2).unwrap();
        let ids: Vec<u64> = page.trips.iter().map(|t| t.id.raw()).collect();
        assert_eq!((ids, page.rows_read), (vec![5000, 4000], 2));
        let last = &page.trips[1];
        let next = history.find_trips(&expired, Some((last.created_at.as_millis(), last.id)), 2).unwrap();
        assert_eq!(next.trips.iter().map(|t| t.id.raw()).collect::<Vec<_>>(), vec![3000, 2000]);
        assert_eq!(next.rows_read, 2);
        // A time range is a range of the same index: [trip 1500, trip 3500) holds 3000 and 2000.
        let ranged = TripQuery {
            from: Some(Timestamp::from_millis(BASE_MS + 1500 * 60_000)),
            to: Some(Timestamp::from_millis(BASE_MS + 3000 * 60_000)),
            ..expired
        };
        let page = history.find_trips(&ranged, None, 10).unwrap();
        assert_eq!(page.trips.iter().map(|t| t.id.raw()).collect::<Vec<_>>(), vec![2000]);
        assert!(page.rows_read <= 2, "read {} rows", page.rows_read);
        // Zone and status together: an index of its own.
        let zone = TripQuery { zone: Some(ZoneId::from_raw(2).unwrap()), ..expired };
        let page = history.find_trips(&zone, None, 10).unwrap();
        // Expired trips 1000..=5000 step 1000 in zone 1 + id % 3 == 2: 1000 and 4000.
        assert_eq!(page.trips.iter().map(|t| t.id.raw()).collect::<Vec<_>>(), vec![4000, 1000]);
        assert_eq!(page.rows_read, 2);
        // An open status is never in the history: nothing is read.
        let open = TripQuery { status: Some(TripStatus::Searching), ..TripQuery::default() };
        assert_eq!(history.find_trips(&open, None, 10).unwrap().rows_read, 0);
    }

    #[test]
    fn a_trip_written_again_leaves_no_stale_index_row_and_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let template = template();
        let first = spec(7, 0, BASE_MS);
        history.import_trips(1, &[make(&template, &first)]).unwrap();
        // Re-archived after a refund; and (which a finished trip never does, but the
        // writer must not rely on it) in another zone.
        let again = Spec { refunded: 500, zone: 3, ..first.clone() };
        history.import_trips(2, &[make(&template, &again)]).unwrap();
        let in_zone = |z| TripQuery { zone: ZoneId::from_raw(z), ..TripQuery::default() };
        assert!(history.find_trips(&in_zone(first.zone), None, 10).unwrap().trips.is_empty());
        assert_eq!(history.find_trips(&in_zone(3), None, 10).unwrap().trips.len(), 1);
        let rows = history.rollups(0, i64::MAX, None).unwrap();
        let total = sum(&rows);
        assert_eq!((total.requested, total.trips_completed, total.refunded_minor), (1, 1, 500));
        assert!(rows.iter().all(|(k, _)| k.zone == ZoneId::from_raw(3).unwrap()), "{rows:?}");
    }

    #[test]
    fn a_completed_trip_adds_its_fare_on_its_end_day_and_its_request_on_its_creation_day() {
        let template = template();
        // Created 21:00 UTC, ended 5 hours later: the next day.
        let created = (BASE_MS / DAY_MS) * DAY_MS + 21 * 3_600_000;
        let t = make(&template, &Spec { fare: 3000, discount: 500, ..spec(1, 0, created) });
        let parts = contribution(&t);
        assert_eq!(parts.len(), 2);
        let (asked, money) = (&parts[0], &parts[1]);
        assert_eq!(
            (asked.0.day, asked.1.requested, asked.1.completed, asked.1.trips_completed),
            (day_of(t.created_at), 1, 1, 0)
        );
        assert_eq!(asked.1.match_hist[6], 1, "7 s");
        assert_eq!(money.0.day, day_of(t.created_at) + 1);
        let bps = t.fare.locked.pricing.commission_bps;
        let commission = crate::fare::commission(3500, bps).unwrap().0;
        assert_eq!(
            (money.1.trips_completed, money.1.gross_minor, money.1.discount_minor, money.1.commission_minor),
            (1, 3500, 500, commission)
        );
        // A rider's late cancellation: the fee and the platform's part of it.
        let c = make(&template, &spec(2, 1, created));
        let money = &contribution(&c)[1].1;
        assert_eq!((money.cancel_fees_minor, money.trips_completed), (3000, 0));
        assert_eq!(contribution(&c)[0].1.cancelled_by_rider, 1);
        // Staff's cancellation counts as requested only.
        let s = &contribution(&make(&template, &Spec { fare: 0, ..spec(3, 3, created) }))[0].1;
        assert_eq!((s.requested, s.cancelled_by_rider, s.cancelled_by_driver, s.expired, s.completed), (1, 0, 0, 0, 0));
    }

    fn sum(rows: &[(RollupKey, Rollup)]) -> Rollup {
        let mut total = Rollup::default();
        rows.iter().for_each(|(_, r)| total.add(r, 1));
        total
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        (
            1u64..40,
            0u8..4,
            1u64..4,
            1u64..5,
            proptest::option::of(1u64..4),
            0i64..(6 * 24),
            0i64..5000,
            (0i64..10_000, 0i64..500, 0i64..300),
        )
            .prop_map(|(id, status, zone, rider, driver, hour, match_s, (fare, discount, refunded))| Spec {
                id,
                status,
                zone,
                rider,
                driver: driver.map(|d| d + 100),
                // Some trips created in the same millisecond.
                created_ms: BASE_MS + (hour / 2) * 7_200_000,
                match_s,
                fare,
                discount,
                refunded,
            })
    }

    fn arb_query() -> impl Strategy<Value = TripQuery> {
        let at = |h: i64| Timestamp::from_millis(BASE_MS + h * 3_600_000);
        (
            proptest::option::of(prop_oneof![
                Just(TripStatus::Completed),
                Just(TripStatus::Cancelled),
                Just(TripStatus::Expired),
                Just(TripStatus::Searching)
            ]),
            proptest::option::of(1u64..4),
            proptest::option::of(1u64..5),
            proptest::option::of(101u64..104),
            proptest::option::of(0i64..150),
            proptest::option::of(0i64..150),
        )
            .prop_map(move |(status, zone, rider, driver, from, to)| TripQuery {
                status,
                zone: zone.and_then(ZoneId::from_raw),
                rider: rider.and_then(UserId::from_raw),
                driver: driver.and_then(UserId::from_raw),
                from: from.map(at),
                to: to.map(at),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The indexed list, paged, is the filtered scan of the trips as last written;
        /// the rollups are the sum of those trips' contributions, however often a trip
        /// was written (re-archived with a refund, or changed).
        #[test]
        fn the_indexes_and_the_rollups_match_a_recomputation(
            batches in proptest::collection::vec(proptest::collection::vec(arb_spec(), 0..25), 1..4),
            queries in proptest::collection::vec(arb_query(), 1..6),
            limit in 1usize..5,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let history = History::open(dir.path()).unwrap();
            let template = template();
            let mut last: std::collections::BTreeMap<u64, Arc<Trip>> = std::collections::BTreeMap::new();
            for (lsn, batch) in batches.iter().enumerate() {
                let trips: Vec<Arc<Trip>> = batch.iter().map(|s| make(&template, s)).collect();
                history.import_trips(lsn as u64 + 1, &trips).unwrap();
                for t in trips {
                    last.insert(t.id.raw(), t);
                }
            }
            for q in &queries {
                let mut want: Vec<&Arc<Trip>> = last.values().filter(|t| q.matches(t)).collect();
                want.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
                let mut got = Vec::new();
                let mut cursor = None;
                loop {
                    let page = history.find_trips(q, cursor, limit).unwrap();
                    prop_assert!(page.trips.len() <= limit);
                    if crate::trip_index::plan(q).exact {
                        prop_assert!(page.rows_read <= limit + 1, "{} rows for a page of {}", page.rows_read, limit);
                    }
                    let full = page.trips.len() == limit;
                    cursor = page.trips.last().map(|t| (t.created_at.as_millis(), t.id));
                    got.extend(page.trips.into_iter().map(|t| t.id.raw()));
                    if !full {
                        break;
                    }
                }
                prop_assert_eq!(got, want.iter().map(|t| t.id.raw()).collect::<Vec<_>>(), "{:?}", q);
            }
            let mut model: std::collections::BTreeMap<RollupKey, Rollup> = std::collections::BTreeMap::new();
            for t in last.values() {
                for (k, r) in contribution(t) {
                    model.entry(k).or_default().add(&r, 1);
                }
            }
            model.retain(|_, r| !r.is_zero());
            let stored = history.rollups(0, i64::MAX, None).unwrap();
            prop_assert_eq!(stored.clone(), model.into_iter().collect::<Vec<_>>());
            // And against the trips themselves, without `contribution`.
            let total = sum(&stored);
            let of = |s: TripStatus| last.values().filter(|t| t.status == s).count() as i64;
            prop_assert_eq!(total.requested, last.len() as i64);
            prop_assert_eq!(total.completed, of(TripStatus::Completed));
            prop_assert_eq!(total.trips_completed, of(TripStatus::Completed));
            prop_assert_eq!(total.expired, of(TripStatus::Expired));
            let completed = last.values().filter(|t| t.status == TripStatus::Completed);
            let gross: i64 = completed.clone().map(|t| t.fare.final_minor.unwrap() + t.fare.final_breakdown.unwrap().discount_minor).sum();
            prop_assert_eq!(total.gross_minor, gross);
            let refunded: i64 = last.values().map(|t| t.payment.refunded_minor).sum();
            prop_assert_eq!(total.refunded_minor, refunded);
            let matched = last.values().filter(|t| t.accepted_at.is_some()).count() as i64;
            prop_assert_eq!(total.match_hist.iter().sum::<i64>(), matched);
            // One zone's rows, and a day range.
            let zone = ZoneId::from_raw(2).unwrap();
            let first = BASE_MS / DAY_MS + 1;
            let some = history.rollups(first, first + 2, Some(zone)).unwrap();
            prop_assert!(some.iter().all(|(k, _)| k.zone == zone && (first..first + 2).contains(&k.day)));
            let want: Vec<_> = stored.into_iter().filter(|(k, _)| k.zone == zone && (first..first + 2).contains(&k.day)).collect();
            prop_assert_eq!(some, want);
        }
    }
}
