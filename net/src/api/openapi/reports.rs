//! The schemas of the staff reports (API.md v1.1 "Back office"), as `api::reports` writes
//! them, and the staff trip list's filters beyond the riders' and drivers' own.

use serde_json::{Value, json};

use super::schemas::*;

fn date() -> Value {
    json!({"type": "string", "description": "An RFC 3339 time or a YYYY-MM-DD date (00:00 UTC)."})
}

/// `GET /v1/admin/reports/*`.
pub(super) fn report_query() -> Vec<Value> {
    vec![
        q("from", date(), false, "Periods starting at or after this (inclusive). Default: 30 days before `to`."),
        q(
            "to",
            date(),
            false,
            "Periods starting before this (exclusive); each period listed is whole. Default: the end of today (UTC). \
             At most 1098 days after `from`.",
        ),
        q("zone_id", id("zon_"), false, "Only this zone's trips (a malformed id is `400 invalid_request`)."),
        q(
            "group",
            enumeration(&["day", "week", "month"]),
            false,
            "Periods: UTC days, ISO weeks from Monday, or calendar months (default day).",
        ),
    ]
}

/// `GET /v1/admin/reports/revenue`.
pub(super) fn revenue_report_out() -> Value {
    let money = |d: &str| json!({"type": "integer", "description": d});
    let item = obj(
        &[
            ("period_start", time()),
            ("currency", currency()),
            ("trips_completed", json!({"type": "integer", "description": "Trips completed in the period."})),
            ("gross_minor", money("Their fares before coupon discounts.")),
            ("commission_minor", money("The platform's commission on them and on the period's cancellation fees.")),
            ("discount_minor", money("Coupon discounts of those fares.")),
            ("refunded_minor", money("Refunded of the trips that ended in the period.")),
            ("cancel_fees_minor", money("Cancellation fees of the trips cancelled in the period.")),
        ],
        &crate::api::reports::REVENUE_COLUMNS,
    );
    obj(&[("items", array(item))], &["items"])
}

/// `GET /v1/admin/reports/trips`.
pub(super) fn trips_report_out() -> Value {
    let seconds = json!({"type": ["integer", "null"], "description":
        "Seconds from the search's start to the accept: the upper bound of the histogram bucket (1 s up to a minute, \
         then coarser up to an hour); null with no match or past an hour."});
    let item = obj(
        &[
            ("period_start", time()),
            ("requested", json!({"type": "integer", "description": "Trips requested (created) in the period."})),
            ("completed", json!({"type": "integer", "description": "Of those, completed."})),
            ("cancelled_by_rider", json!({"type": "integer", "description": "Of those, cancelled by their rider."})),
            ("cancelled_by_driver", json!({"type": "integer", "description": "Of those, cancelled by their driver."})),
            ("expired", json!({"type": "integer", "description": "Of those, expired with no driver."})),
            ("match_p50_s", seconds.clone()),
            ("match_p95_s", seconds),
        ],
        &crate::api::reports::TRIPS_COLUMNS,
    );
    obj(&[("items", array(item))], &["items"])
}

/// `GET /v1/admin/trips`: the riders' and drivers' filters, `ref`, and the staff's own.
pub(super) fn staff_trips_query() -> Vec<Value> {
    let mut v = admin_trips_query();
    v.extend([
        q("rider_id", id("usr_"), false, "Only this rider's trips (a malformed id is `400 invalid_request`)."),
        q("driver_id", id("usr_"), false, "Only this driver's trips (a malformed id is `400 invalid_request`)."),
        q("from", date(), false, "Created at or after this (inclusive)."),
        q("to", date(), false, "Created before this (exclusive)."),
    ]);
    v
}
