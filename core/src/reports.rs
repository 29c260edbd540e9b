//! The staff reports (revenue, trips) from rollups: one row per (UTC day, zone, currency)
//! of counters and money sums, kept by the history as trips are archived
//! (`history.rs` writes them in the checkpoint's transaction), and the grouping of those
//! rows into days, ISO weeks and calendar months.
//!
//! Owns what a trip adds to the rollups ([`contribution`], a pure function of the trip,
//! so a trip re-archived at a new revision — a refund after it was archived — replaces
//! its old contribution exactly: the writer subtracts the old row's and adds the new
//! one's), the key of a rollup row, the time-to-match histogram and the periods.
//!
//! Which day a trip counts in:
//! - the trips report (`requested`, `completed`, `cancelled_by_rider`,
//!   `cancelled_by_driver`, `expired`, time to match): the UTC day the trip was created
//!   (requested), so a period's counts are the fate of the trips requested in it;
//! - the revenue report (`trips_completed` and the money): the UTC day the trip ended
//!   (completed, or cancelled with a fee); a refund counts with its trip, in that day.
//!
//! The money, in the trip's currency (minor units): `gross` is the completed fare
//! before the coupon (final fare + discount, what the settlement splits); `commission`
//! the platform's share of it (`fare::commission` at the trip's locked rate, as the ledger
//! books it) plus its share of cancellation fees; `discount` the coupon's discount of the
//! final fare; `refunded` what was given back (confirmed refunds); `cancel_fees` the
//! cancellation fees charged. Time to match: seconds from the start of the search that
//! found the driver (creation; for a ride booked ahead, when its dispatch began; after a
//! driver gave it back, that moment) to the driver's accept, in [`MATCH_BOUNDS_S`]
//! buckets; a percentile is the upper bound of its bucket (`None` past an hour or with
//! no match). A trip cancelled by staff or the system counts in `requested` only.
//!
//! Guarantees: bounded work per query: at most [`MAX_RANGE_DAYS`] days of rows;
//! integer money only.

use serde::{Deserialize, Serialize};

use dispatch_storage::store::key;

use crate::clock::Timestamp;
use crate::id::ZoneId;
use crate::money::Currency;
use crate::trip::{Trip, TripStatus};
use dispatch_domain::cancellation::CancelledBy;

/// A day in ms.
pub const DAY_MS: i64 = 86_400_000;

/// The widest range a report may ask for: three years of days.
pub const MAX_RANGE_DAYS: i64 = 3 * 366;

/// The upper bounds (seconds, inclusive) of the time-to-match buckets: every second up
/// to a minute, then coarser up to an hour. One more bucket holds what is above.
pub const MATCH_BOUNDS_S: [u32; 72] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
    90, 120, 180, 240, 300, 420, 600, 900, 1200, 1800, 2700, 3600,
];

/// Buckets of the histogram: [`MATCH_BOUNDS_S`] and the one above an hour.
pub const MATCH_BUCKETS: usize = MATCH_BOUNDS_S.len() + 1;

/// The bucket of a time to match of `ms` milliseconds (rounded up to whole seconds).
pub fn match_bucket(ms: i64) -> usize {
    let s = (ms.max(0) + 999) / 1000;
    MATCH_BOUNDS_S.iter().position(|b| i64::from(*b) >= s).unwrap_or(MATCH_BOUNDS_S.len())
}

/// One rollup row: what the trips of a (day, zone, currency) add up to. Counters are
/// signed so a replaced contribution can be subtracted; stored rows are never negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// Trips created this day.
    pub requested: i64,
    /// Of those, completed.
    pub completed: i64,
    /// Of those, cancelled by their rider.
    pub cancelled_by_rider: i64,
    /// Of those, cancelled by their driver.
    pub cancelled_by_driver: i64,
    /// Of those, expired (no driver).
    pub expired: i64,
    /// Of those, the times to match, by bucket ([`MATCH_BUCKETS`]).
    pub match_hist: Vec<i64>,
    /// Trips completed this day.
    pub trips_completed: i64,
    /// Their fares before the coupon.
    pub gross_minor: i64,
    /// The platform's commission on them and on this day's cancellation fees.
    pub commission_minor: i64,
    /// Coupon discounts of those fares.
    pub discount_minor: i64,
    /// Refunded of the trips that ended this day.
    pub refunded_minor: i64,
    /// Cancellation fees of the trips cancelled this day.
    pub cancel_fees_minor: i64,
}

impl Default for Rollup {
    fn default() -> Self {
        Rollup {
            requested: 0,
            completed: 0,
            cancelled_by_rider: 0,
            cancelled_by_driver: 0,
            expired: 0,
            match_hist: vec![0; MATCH_BUCKETS],
            trips_completed: 0,
            gross_minor: 0,
            commission_minor: 0,
            discount_minor: 0,
            refunded_minor: 0,
            cancel_fees_minor: 0,
        }
    }
}

impl Rollup {
    /// Adds `other` times `sign` (1 or -1), saturating.
    pub fn add(&mut self, other: &Rollup, sign: i64) {
        let f = |a: &mut i64, b: i64| *a = a.saturating_add(b.saturating_mul(sign));
        f(&mut self.requested, other.requested);
        f(&mut self.completed, other.completed);
        f(&mut self.cancelled_by_rider, other.cancelled_by_rider);
        f(&mut self.cancelled_by_driver, other.cancelled_by_driver);
        f(&mut self.expired, other.expired);
        self.match_hist.resize(MATCH_BUCKETS, 0);
        for (a, b) in self.match_hist.iter_mut().zip(&other.match_hist) {
            f(a, *b);
        }
        f(&mut self.trips_completed, other.trips_completed);
        f(&mut self.gross_minor, other.gross_minor);
        f(&mut self.commission_minor, other.commission_minor);
        f(&mut self.discount_minor, other.discount_minor);
        f(&mut self.refunded_minor, other.refunded_minor);
        f(&mut self.cancel_fees_minor, other.cancel_fees_minor);
    }

    /// Whether every counter and sum is zero.
    pub fn is_zero(&self) -> bool {
        *self == Rollup::default()
    }

    fn has_revenue(&self) -> bool {
        self.trips_completed != 0
            || self.gross_minor != 0
            || self.commission_minor != 0
            || self.discount_minor != 0
            || self.refunded_minor != 0
            || self.cancel_fees_minor != 0
    }

    fn has_trips(&self) -> bool {
        self.requested != 0
            || self.completed != 0
            || self.cancelled_by_rider != 0
            || self.cancelled_by_driver != 0
            || self.expired != 0
            || self.match_hist.iter().any(|n| *n != 0)
    }
}

/// Whose a rollup row is: a UTC day (days since 1970-01-01), a zone, a currency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    /// Days since the epoch.
    pub day: i64,
    /// The trips' zone.
    pub zone: ZoneId,
    /// The trips' currency.
    pub currency: Currency,
}

impl RollupKey {
    /// `day ‖ zone ‖ currency code`: ascending by day.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let day = u64::try_from(self.day).unwrap_or(0);
        key::concat(&[&key::u64_be(day), &key::u64_be(self.zone.raw()), self.currency.code().as_bytes()])
    }

    /// The key of a stored row, `None` when malformed.
    pub(crate) fn decode(k: &[u8]) -> Option<RollupKey> {
        let (day, rest) = key::take_u64_be(k)?;
        let (zone, rest) = key::take_u64_be(rest)?;
        let currency = Currency::new(std::str::from_utf8(rest).ok()?).ok()?;
        Some(RollupKey { day: i64::try_from(day).ok()?, zone: ZoneId::from_raw(zone)?, currency })
    }
}

/// The UTC day of an instant (days since the epoch).
pub fn day_of(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(DAY_MS)
}

/// What `t` adds to the rollups, as it stands: to its creation day's row (the trips
/// report) and, once it ended, to its end day's row (the revenue report).
pub fn contribution(t: &Trip) -> Vec<(RollupKey, Rollup)> {
    let row = |at: Timestamp| RollupKey { day: day_of(at), zone: t.zone_id, currency: t.fare.currency };
    let mut asked = Rollup { requested: 1, ..Rollup::default() };
    match t.status {
        TripStatus::Completed => asked.completed = 1,
        TripStatus::Expired => asked.expired = 1,
        TripStatus::Cancelled => match t.cancellation.as_ref().map(|c| c.by) {
            Some(CancelledBy::Rider) => asked.cancelled_by_rider = 1,
            Some(CancelledBy::Driver) => asked.cancelled_by_driver = 1,
            _ => {}
        },
        _ => {}
    }
    if let Some(accepted) = t.accepted_at {
        let waited = accepted.as_millis().saturating_sub(t.searching_since.as_millis());
        if let Some(n) = asked.match_hist.get_mut(match_bucket(waited)) {
            *n = 1;
        }
    }
    let mut out = vec![(row(t.created_at), asked)];
    let Some(ended) = t.ended_at.filter(|_| t.status.is_terminal()) else { return out };
    let bps = t.fare.locked.pricing.commission_bps;
    let platform = |amount: i64| crate::fare::commission(amount, bps).map_or(0, |(platform, _)| platform);
    let mut money = Rollup { refunded_minor: t.payment.refunded_minor, ..Rollup::default() };
    match (t.status, t.fare.final_minor, t.fare.cancel_fee_minor) {
        (TripStatus::Completed, Some(fare), _) => {
            let discount = t.fare.final_breakdown.as_ref().map_or(0, |b| b.discount_minor);
            money.trips_completed = 1;
            money.discount_minor = discount;
            money.gross_minor = fare.saturating_add(discount);
            money.commission_minor = platform(money.gross_minor);
        }
        (TripStatus::Cancelled, _, Some(fee)) => {
            money.cancel_fees_minor = fee;
            money.commission_minor = platform(fee);
        }
        _ => {}
    }
    if !money.is_zero() {
        let end = row(ended);
        match out.iter_mut().find(|(k, _)| *k == end) {
            Some((_, r)) => r.add(&money, 1),
            None => out.push((end, money)),
        }
    }
    out
}

/// How a report groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Group {
    /// UTC days.
    #[default]
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    /// Calendar months.
    Month,
}

impl Group {
    /// `day`, `week` or `month`.
    pub fn parse(s: &str) -> Option<Group> {
        match s {
            "day" => Some(Group::Day),
            "week" => Some(Group::Week),
            "month" => Some(Group::Month),
            _ => None,
        }
    }
}

/// (year, month 1-12, day 1-31) of a day since the epoch (proleptic Gregorian).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

/// The day since the epoch of (year, month 1-12, day 1-31).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first day of the period of `group` holding `day`.
pub fn period_start(day: i64, group: Group) -> i64 {
    match group {
        Group::Day => day,
        // 1970-01-01 was a Thursday: Monday is 3 days before.
        Group::Week => day - (day + 3).rem_euclid(7),
        Group::Month => {
            let (y, m, _) = civil_from_days(day);
            days_from_civil(y, m, 1)
        }
    }
}

/// The first day of the period after the one starting at `start`.
pub fn next_period(start: i64, group: Group) -> i64 {
    match group {
        Group::Day => start + 1,
        Group::Week => start + 7,
        Group::Month => {
            let (y, m, _) = civil_from_days(start);
            if m == 12 { days_from_civil(y + 1, 1, 1) } else { days_from_civil(y, m + 1, 1) }
        }
    }
}

/// The days `[first, end)` a report reads: those of every period of `group` whose start
/// is in `[from, to)`. `None` when no period starts there.
pub fn days_to_read(from: Timestamp, to: Timestamp, group: Group) -> Option<(i64, i64)> {
    let (from_ms, to_ms) = (from.as_millis(), to.as_millis());
    if to_ms <= from_ms {
        return None;
    }
    let mut first = period_start(from_ms.div_euclid(DAY_MS), group);
    if first.saturating_mul(DAY_MS) < from_ms {
        first = next_period(first, group);
    }
    let end = next_period(period_start((to_ms - 1).div_euclid(DAY_MS), group), group);
    (first.saturating_mul(DAY_MS) < to_ms && first < end).then_some((first, end))
}

/// One line of the revenue report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueLine {
    /// The period's first day.
    pub period_start: i64,
    /// The currency.
    pub currency: Currency,
    /// The sums.
    pub rollup: Rollup,
}

/// One line of the trips report (every currency together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripsLine {
    /// The period's first day.
    pub period_start: i64,
    /// The counts.
    pub rollup: Rollup,
}

impl TripsLine {
    /// The `p`-th percentile (0-100) of the time to match, seconds: the upper bound of
    /// its bucket; `None` with no match or past the last bound.
    pub fn match_percentile_s(&self, p: i64) -> Option<u32> {
        let total: i64 = self.rollup.match_hist.iter().sum();
        if total <= 0 {
            return None;
        }
        let rank = ((total * p + 99) / 100).max(1);
        let mut seen = 0;
        for (i, n) in self.rollup.match_hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return MATCH_BOUNDS_S.get(i).copied();
            }
        }
        None
    }
}

/// The rows of days `[first, end)` (of one zone, if asked) grouped into periods: the
/// revenue lines (by period, then currency) and the trips lines (by period), each only
/// where something counted.
pub fn group_rows(rows: &[(RollupKey, Rollup)], group: Group) -> (Vec<RevenueLine>, Vec<TripsLine>) {
    use std::collections::BTreeMap;
    let mut revenue: BTreeMap<(i64, String), Rollup> = BTreeMap::new();
    let mut trips: BTreeMap<i64, Rollup> = BTreeMap::new();
    for (k, r) in rows {
        let start = period_start(k.day, group);
        if r.has_revenue() {
            revenue.entry((start, k.currency.code().to_owned())).or_default().add(r, 1);
        }
        if r.has_trips() {
            trips.entry(start).or_default().add(r, 1);
        }
    }
    let revenue = revenue
        .into_iter()
        .filter_map(|((period_start, code), rollup)| {
            Currency::new(&code).ok().map(|currency| RevenueLine { period_start, currency, rollup })
        })
        .collect();
    let trips = trips.into_iter().map(|(period_start, rollup)| TripsLine { period_start, rollup }).collect();
    (revenue, trips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-12-06 is a Sunday.
        let day = days_from_civil(2026, 12, 6);
        assert_eq!(civil_from_days(day), (2026, 12, 6));
        assert_eq!(civil_from_days(period_start(day, Group::Week)), (2026, 11, 30));
        assert_eq!(civil_from_days(period_start(days_from_civil(2026, 11, 30), Group::Week)), (2026, 11, 30));
        assert_eq!(civil_from_days(period_start(day, Group::Month)), (2026, 12, 1));
        assert_eq!(civil_from_days(next_period(days_from_civil(2026, 12, 1), Group::Month)), (2027, 1, 1));
        assert_eq!(civil_from_days(next_period(days_from_civil(2024, 2, 1), Group::Month)), (2024, 3, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        for d in -1000..1000 {
            let (y, m, dd) = civil_from_days(d * 37);
            assert_eq!(days_from_civil(y, m, dd), d * 37);
        }
    }

    #[test]
    fn from_and_to_bound_the_period_starts() {
        let at = |y, m, d| Timestamp::from_millis(days_from_civil(y, m, d) * DAY_MS);
        let day = |y, m, d| days_from_civil(y, m, d);
        // Months starting in [Jan 15, Mar 1): February only, whole.
        assert_eq!(
            days_to_read(at(2026, 1, 15), at(2026, 3, 1), Group::Month),
            Some((day(2026, 2, 1), day(2026, 3, 1)))
        );
        // [Jan 1, Jan 2) by month: January, whole.
        assert_eq!(
            days_to_read(at(2026, 1, 1), at(2026, 1, 2), Group::Month),
            Some((day(2026, 1, 1), day(2026, 2, 1)))
        );
        assert_eq!(days_to_read(at(2026, 1, 2), at(2026, 1, 3), Group::Month), None);
        assert_eq!(days_to_read(at(2026, 1, 2), at(2026, 1, 2), Group::Day), None);
        let noon = Timestamp::from_millis(day(2026, 1, 2) * DAY_MS + DAY_MS / 2);
        assert_eq!(days_to_read(noon, at(2026, 1, 5), Group::Day), Some((day(2026, 1, 3), day(2026, 1, 5))));
    }

    #[test]
    fn match_buckets_are_fine_then_coarse() {
        assert_eq!(match_bucket(0), 0);
        assert_eq!(match_bucket(1000), 0);
        assert_eq!(match_bucket(1001), 1);
        assert_eq!(MATCH_BOUNDS_S[match_bucket(59_500)], 60);
        assert_eq!(MATCH_BOUNDS_S[match_bucket(61_000)], 90);
        assert_eq!(MATCH_BOUNDS_S[match_bucket(3_600_000)], 3600);
        assert_eq!(match_bucket(3_600_001), MATCH_BOUNDS_S.len());
        let mut line = TripsLine { period_start: 0, rollup: Rollup::default() };
        assert_eq!(line.match_percentile_s(50), None);
        line.rollup.match_hist[4] = 9; // 5 s
        line.rollup.match_hist[60] = 1; // 90 s
        assert_eq!((line.match_percentile_s(50), line.match_percentile_s(95)), (Some(5), Some(90)));
    }
}
