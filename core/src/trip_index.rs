//! The history's indexes of finished trips for the staff trip list, and how a query picks
//! one: what `GET /v1/admin/trips` filters by (status, zone, rider, driver, a creation-time
//! range) answered by reading O(page) index rows whatever the history holds.
//!
//! Owns the key layouts of the index tables `history.rs` writes with each trip (all
//! newest first: `rev(created) ‖ rev(trip)` after the owner part):
//! - `trips_by_status`: status ‖ …;
//! - `trips_by_zone`: zone ‖ …;
//! - `trips_by_zone_status`: zone ‖ status ‖ …;
//! - (older) `trips_by_rider`, `trips_by_driver`: user ‖ …; `trips_by_time`: … alone.
//!
//! Guarantees: [`plan`] picks, for any [`TripQuery`], an index whose prefix covers every
//! filter but rider/driver-with-others, so each row read under it matches (`exact`) and a
//! page reads at most `limit + 1` rows; `from`/`to` become the start and the stop of the
//! range inside it (`range_start`, `created_of`). A query naming a rider or a driver
//! reads that user's index and filters the rest in memory: bounded by that user's trips.
//! A trip's index keys are a function of fields a finished trip never changes (status,
//! zone, rider, driver, creation), but the writer compares them anyway when a trip is
//! re-archived (`index_rows`) and deletes the old ones that differ.

use dispatch_storage::store::{TableName, key};

use crate::clock::Timestamp;
use crate::id::{TripId, UserId, ZoneId};
use crate::trip::{Trip, TripStatus};

pub(crate) const TRIPS_BY_RIDER: TableName = TableName::new("trips_by_rider");
pub(crate) const TRIPS_BY_DRIVER: TableName = TableName::new("trips_by_driver");
pub(crate) const TRIPS_BY_TIME: TableName = TableName::new("trips_by_time");
// ----- issue 20: H -----
pub(crate) const TRIPS_BY_STATUS: TableName = TableName::new("trips_by_status");
pub(crate) const TRIPS_BY_ZONE: TableName = TableName::new("trips_by_zone");
pub(crate) const TRIPS_BY_ZONE_STATUS: TableName = TableName::new("trips_by_zone_status");

/// What the staff trip list filters by (every filter optional, combined with "and").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TripQuery {
    /// Only trips with this status.
    pub status: Option<TripStatus>,
    /// Only trips in this zone.
    pub zone: Option<ZoneId>,
    /// Only this rider's trips.
    pub rider: Option<UserId>,
    /// Only this driver's trips.
    pub driver: Option<UserId>,
    /// Created at or after this.
    pub from: Option<Timestamp>,
    /// Created before this.
    pub to: Option<Timestamp>,
}

impl TripQuery {
    /// Whether `t` passes every filter.
    pub fn matches(&self, t: &Trip) -> bool {
        self.status.is_none_or(|s| t.status == s)
            && self.zone.is_none_or(|z| t.zone_id == z)
            && self.rider.is_none_or(|r| t.rider_id == r)
            && self.driver.is_none_or(|d| t.driver_id == Some(d))
            && self.from.is_none_or(|f| t.created_at >= f)
            && self.to.is_none_or(|to| t.created_at < to)
    }

    /// Whether the history can hold a match: it holds finished trips only.
    pub fn may_be_archived(&self) -> bool {
        self.status.is_none_or(TripStatus::is_terminal)
    }
}

/// The index a query reads and the part of its keys every row of the query shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The table.
    pub table: TableName,
    /// The key prefix the query's rows share (the owner parts before the time).
    pub prefix: Vec<u8>,
    /// Every row under the prefix passes every filter but the time range: no row read
    /// is thrown away.
    pub exact: bool,
}

/// The one-byte code of a status in index keys (stable: it is on disk).
pub(crate) fn status_code(s: TripStatus) -> u8 {
    match s {
        TripStatus::Searching => 0,
        TripStatus::Accepted => 1,
        TripStatus::Arrived => 2,
        TripStatus::InProgress => 3,
        TripStatus::Completed => 4,
        TripStatus::Cancelled => 5,
        TripStatus::Expired => 6,
        TripStatus::Scheduled => 7,
    }
}

/// The most selective index that covers the query: a rider's or a driver's own index
/// (the rest filtered: bounded by that user's trips), else zone and status, zone, status,
/// or the time index, each exact.
pub fn plan(q: &TripQuery) -> Plan {
    let only_time = q.status.is_none() && q.zone.is_none();
    match (q.rider, q.driver, q.zone, q.status) {
        (Some(r), d, _, _) => {
            Plan { table: TRIPS_BY_RIDER, prefix: key::u64_be(r.raw()).to_vec(), exact: only_time && d.is_none() }
        }
        (None, Some(d), _, _) => {
            Plan { table: TRIPS_BY_DRIVER, prefix: key::u64_be(d.raw()).to_vec(), exact: only_time }
        }
        (None, None, Some(z), Some(s)) => Plan {
            table: TRIPS_BY_ZONE_STATUS,
            prefix: key::concat(&[&key::u64_be(z.raw()), &[status_code(s)]]),
            exact: true,
        },
        (None, None, Some(z), None) => {
            Plan { table: TRIPS_BY_ZONE, prefix: key::u64_be(z.raw()).to_vec(), exact: true }
        }
        (None, None, None, Some(s)) => Plan { table: TRIPS_BY_STATUS, prefix: vec![status_code(s)], exact: true },
        (None, None, None, None) => Plan { table: TRIPS_BY_TIME, prefix: Vec::new(), exact: true },
    }
}

fn time_part(ms: i64) -> [u8; 8] {
    // Times before the epoch do not occur; clamp rather than wrap if one did.
    key::rev_u64_be(u64::try_from(ms).unwrap_or(0))
}

/// `prefix ‖ rev(created) ‖ rev(trip)`: ascending key order is newest first, and among
/// trips created in the same millisecond the higher id first.
pub(crate) fn entry_key(prefix: &[u8], created_ms: i64, trip: TripId) -> Vec<u8> {
    key::concat(&[prefix, &time_part(created_ms), &key::rev_u64_be(trip.raw())])
}

/// Every index row of `t`: (table, key).
pub(crate) fn index_rows(t: &Trip) -> Vec<(TableName, Vec<u8>)> {
    let created = t.created_at.as_millis();
    let zone = key::u64_be(t.zone_id.raw());
    let status = status_code(t.status);
    let mut rows = vec![
        (TRIPS_BY_RIDER, entry_key(&key::u64_be(t.rider_id.raw()), created, t.id)),
        (TRIPS_BY_TIME, entry_key(&[], created, t.id)),
        (TRIPS_BY_STATUS, entry_key(&[status], created, t.id)),
        (TRIPS_BY_ZONE, entry_key(&zone, created, t.id)),
        (TRIPS_BY_ZONE_STATUS, entry_key(&key::concat(&[&zone, &[status]]), created, t.id)),
    ];
    if let Some(d) = t.driver_id {
        rows.push((TRIPS_BY_DRIVER, entry_key(&key::u64_be(d.raw()), created, t.id)));
    }
    rows
}

/// Where a newest-first scan of `plan` starts (exclusive), given the page `cursor`
/// (`(created ms, trip)` of the last trip of the previous page) and the query's `to`
/// (exclusive): the later key of the two in scan order, or `None` from the newest.
pub(crate) fn range_start(plan: &Plan, cursor: Option<(i64, TripId)>, to: Option<Timestamp>) -> Option<Vec<u8>> {
    let from_cursor = cursor.map(|(ms, trip)| entry_key(&plan.prefix, ms, trip));
    // Every key created at `to` or later sorts at or before `prefix ‖ rev(to) ‖ FF…`.
    let from_to = to.map(|to| key::concat(&[&plan.prefix, &time_part(to.as_millis()), &[0xff; 8]]));
    match (from_cursor, from_to) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The creation time (ms) and the trip of an index row of `plan`, or `None` when the key
/// is malformed.
pub(crate) fn created_of(plan: &Plan, k: &[u8]) -> Option<(i64, TripId)> {
    let rest = k.get(plan.prefix.len()..)?;
    let (rev_created, rest) = key::take_rev_u64_be(rest)?;
    let (rev_id, rest) = key::take_rev_u64_be(rest)?;
    if !rest.is_empty() {
        return None;
    }
    Some((i64::try_from(rev_created).ok()?, TripId::from_raw(rev_id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u64) -> UserId {
        UserId::from_raw(n).unwrap()
    }

    #[test]
    fn the_most_selective_covering_index_is_picked() {
        let zone = ZoneId::from_raw(7).unwrap();
        let q = |status, zone, rider, driver| TripQuery { status, zone, rider, driver, from: None, to: None };
        let p = plan(&q(Some(TripStatus::Expired), None, None, None));
        assert_eq!((p.table, p.prefix, p.exact), (TRIPS_BY_STATUS, vec![6], true));
        let p = plan(&q(None, Some(zone), None, None));
        assert_eq!((p.table, p.exact), (TRIPS_BY_ZONE, true));
        let p = plan(&q(Some(TripStatus::Completed), Some(zone), None, None));
        assert_eq!((p.table, p.prefix.len(), p.exact), (TRIPS_BY_ZONE_STATUS, 9, true));
        assert_eq!(plan(&q(None, None, None, None)).table, TRIPS_BY_TIME);
        // A user's own index, filtered for the rest.
        let p = plan(&q(Some(TripStatus::Completed), None, Some(user(1)), None));
        assert_eq!((p.table, p.exact), (TRIPS_BY_RIDER, false));
        assert!(plan(&q(None, None, Some(user(1)), None)).exact);
        let p = plan(&q(None, Some(zone), None, Some(user(2))));
        assert_eq!((p.table, p.exact), (TRIPS_BY_DRIVER, false));
        assert!(!plan(&q(None, None, Some(user(1)), Some(user(2)))).exact);
    }

    #[test]
    fn the_range_starts_after_to_and_after_the_cursor_whichever_is_later() {
        let p = plan(&TripQuery { status: Some(TripStatus::Completed), ..TripQuery::default() });
        let id = |n| TripId::from_raw(n).unwrap();
        let to = Timestamp::from_millis(1_000);
        let start = range_start(&p, None, Some(to)).unwrap();
        // A trip created at `to` is excluded, one created a millisecond before is not.
        assert!(entry_key(&p.prefix, 1_000, id(u64::MAX)) <= start);
        assert!(entry_key(&p.prefix, 1_000, id(1)) <= start);
        assert!(entry_key(&p.prefix, 999, id(u64::MAX)) > start);
        // A cursor older than `to` wins; a newer one does not.
        assert_eq!(range_start(&p, Some((500, id(3))), Some(to)), Some(entry_key(&p.prefix, 500, id(3))));
        assert_eq!(range_start(&p, Some((2_000, id(3))), Some(to)), Some(start));
        assert_eq!(range_start(&p, None, None), None);
        assert_eq!(created_of(&p, &entry_key(&p.prefix, 500, id(3))), Some((500, id(3))));
        assert_eq!(created_of(&p, &p.prefix), None);
    }
}
