//! The staff reports (API.md v1.1 "Back office"): `GET /v1/admin/reports/revenue` and
//! `GET /v1/admin/reports/trips`, in JSON or, with `Accept: text/csv`, CSV (a header row,
//! the same columns).
//!
//! Guarantees: a report is read from the engine's daily rollups (`dispatch_core::reports`:
//! the history's rows plus the hot trips), never by scanning trips; its work is bounded
//! by the range (at most three years of days); `from`/`to` (RFC 3339 times or
//! `YYYY-MM-DD` dates) bound the periods' first days, `from` inclusive, `to` exclusive,
//! and each period listed is whole; a bad parameter is `400 invalid_request` naming it.

use dispatch_core::clock::Timestamp;
use dispatch_core::id::ZoneId;
use dispatch_core::reports::{self, DAY_MS, Group, MAX_RANGE_DAYS, RevenueLine, TripsLine};
use hyper::StatusCode;
use hyper::header::{ACCEPT, HeaderValue};
use serde_json::{Value, json};

use super::payouts::parse_date_or_time;
use super::{Ctx, now};
use crate::http::{self, ApiError, Resp, json_response};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    /// Money per period and currency.
    Revenue,
    /// Trip counts and time to match per period.
    Trips,
}

/// The revenue report's columns (CSV header, JSON keys; the OpenAPI document requires them).
pub(crate) const REVENUE_COLUMNS: [&str; 8] = [
    "period_start",
    "currency",
    "trips_completed",
    "gross_minor",
    "commission_minor",
    "discount_minor",
    "refunded_minor",
    "cancel_fees_minor",
];

/// The trips report's columns (CSV header, JSON keys; the OpenAPI document requires them).
pub(crate) const TRIPS_COLUMNS: [&str; 8] = [
    "period_start",
    "requested",
    "completed",
    "cancelled_by_rider",
    "cancelled_by_driver",
    "expired",
    "match_p50_s",
    "match_p95_s",
];

/// A period's first day as the instant it starts (RFC 3339, 00:00 UTC).
fn period(day: i64) -> String {
    http::rfc3339(Timestamp::from_millis(day.saturating_mul(DAY_MS)))
}

fn revenue_json(l: &RevenueLine) -> Value {
    let r = &l.rollup;
    json!({
        "period_start": period(l.period_start),
        "currency": l.currency.code(),
        "trips_completed": r.trips_completed,
        "gross_minor": r.gross_minor,
        "commission_minor": r.commission_minor,
        "discount_minor": r.discount_minor,
        "refunded_minor": r.refunded_minor,
        "cancel_fees_minor": r.cancel_fees_minor,
    })
}

fn trips_json(l: &TripsLine) -> Value {
    let r = &l.rollup;
    json!({
        "period_start": period(l.period_start),
        "requested": r.requested,
        "completed": r.completed,
        "cancelled_by_rider": r.cancelled_by_rider,
        "cancelled_by_driver": r.cancelled_by_driver,
        "expired": r.expired,
        "match_p50_s": l.match_percentile_s(50),
        "match_p95_s": l.match_percentile_s(95),
    })
}

/// The items as CSV: `columns` as the header, then one row per item (a `null` is an
/// empty field; no value needs quoting: numbers, codes and times only).
fn csv(columns: &[&str], items: &[Value]) -> String {
    let mut out = columns.join(",");
    out.push_str("\r\n");
    for item in items {
        let row: Vec<String> = columns
            .iter()
            .map(|c| match &item[*c] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Whether the caller asked for CSV: `text/csv` among its `Accept` media types.
fn wants_csv(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv")))
}

impl Ctx<'_> {
    /// `GET /v1/admin/reports/revenue` and `.../trips`.
    pub(super) async fn report(&self, which: Report) -> Result<Resp, ApiError> {
        let date = |field: &'static str| {
            self.query.get(field).map(|s| parse_date_or_time(s, field).map_err(|e| e.with_param(field))).transpose()
        };
        // By default, the 30 UTC days up to the end of today.
        let to = match date("to")? {
            Some(t) => t,
            None => Timestamp::from_millis((reports::day_of(now()) + 1).saturating_mul(DAY_MS)),
        };
        let from = match date("from")? {
            Some(f) => f,
            None => Timestamp::from_millis(to.as_millis().saturating_sub(30 * DAY_MS)),
        };
        if to <= from {
            return Err(ApiError::invalid("to must be after from").with_param("to"));
        }
        if to.as_millis().saturating_sub(from.as_millis()) > MAX_RANGE_DAYS * DAY_MS {
            return Err(ApiError::invalid(format!("a report covers at most {MAX_RANGE_DAYS} days")).with_param("to"));
        }
        let group = match self.query.get("group") {
            None => Group::Day,
            Some(g) => Group::parse(g)
                .ok_or_else(|| ApiError::invalid("group must be day, week or month").with_param("group"))?,
        };
        let zone: Option<ZoneId> = self
            .query
            .get("zone_id")
            .map(|z| z.parse().map_err(|_| ApiError::invalid("zone_id is not a zone id").with_param("zone_id")))
            .transpose()?;
        let (revenue, trips) = match reports::days_to_read(from, to, group) {
            None => (Vec::new(), Vec::new()),
            Some((first, end)) => {
                let rows: Vec<(reports::RollupKey, reports::Rollup)> =
                    self.app.blocking(move |e| e.report_rows(first, end, zone)).await?;
                reports::group_rows(&rows, group)
            }
        };
        let (columns, items): (&[&str], Vec<Value>) = match which {
            Report::Revenue => (&REVENUE_COLUMNS, revenue.iter().map(revenue_json).collect()),
            Report::Trips => (&TRIPS_COLUMNS, trips.iter().map(trips_json).collect()),
        };
        if wants_csv(&self.headers) {
            let mut resp = http::text_response("text/csv; charset=utf-8", csv(columns, &items));
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut().insert(hyper::header::VARY, HeaderValue::from_static("Accept"));
            return Ok(resp);
        }
        Ok(json_response(StatusCode::OK, &json!({"items": items})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_empty_fields_for_null() {
        let items = vec![json!({"a": "2026-12-01T00:00:00.000Z", "b": 3, "c": null})];
        assert_eq!(csv(&["a", "b", "c"], &items), "a,b,c\r\n2026-12-01T00:00:00.000Z,3,\r\n");
    }

    #[test]
    fn csv_is_asked_for_by_accept() {
        let mut h = hyper::HeaderMap::new();
        assert!(!wants_csv(&h));
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/csv;q=0.9"));
        assert!(wants_csv(&h));
        h.insert(ACCEPT, HeaderValue::from_static("text/csvx"));
        assert!(!wants_csv(&h));
    }
}
