//! The schemas of the audit trail (`GET /v1/admin/audit`) and the runtime settings
//! (`GET`/`PATCH /v1/admin/settings`), API.md v1.1 "Back office", as `api::audit` writes
//! and reads them (the request body strict, like every one).

use serde_json::{Value, json};

use super::schemas::*;

pub(super) fn audit_query() -> Vec<Value> {
    let name = || json!({"type": "string", "minLength": 1, "maxLength": 128});
    vec![
        limit_q(),
        cursor_q(),
        q("actor_id", name(), false, "Only entries by this actor (`usr_…`, or `admin` for the bootstrap admin)."),
        q("target_id", name(), false, "Only entries about this id (`usr_…`, `trp_…`, `zon_…`, or `settings`)."),
        q("action", name(), false, "Only entries of this action (`trip.refund`, `settings.update`, …)."),
    ]
}

/// `GET /v1/admin/audit`: a page of entries, newest first.
pub(super) fn audit_page() -> Value {
    let detail = json!({"type": ["string", "integer", "boolean"]});
    page_of(obj(
        &[
            ("at", time()),
            ("actor_id", string()),
            ("actor_role", string()),
            ("action", string()),
            ("target_id", string()),
            ("request_id", string()),
            ("details", json!({"type": "object", "additionalProperties": detail})),
        ],
        &["at", "actor_id", "actor_role", "action", "target_id", "request_id", "details"],
    ))
}

fn surge() -> Value {
    strict(&[("enabled", boolean()), ("max_bps", uint())], &["enabled", "max_bps"])
}

const DISPATCH_KEYS: [&str; 10] = [
    "offers_per_round",
    "offer_ttl_s",
    "timeout_s",
    "search_radius_m",
    "stale_location_s",
    "schedule_lead_s",
    "mode",
    "batch_window_ms",
    "learning_acceptance_pct",
    "learning_idle_pct",
];

/// A dispatch key's schema: `mode` names a matching mode (issue 22), the rest are counts.
fn dispatch_key(k: &str) -> Value {
    if k == "mode" { enumeration(&["greedy", "batched"]) } else { uint() }
}

/// A zone's matching mode: its own, or "city" (the city's `dispatch.mode`).
fn zone_mode() -> Value {
    enumeration(&["city", "greedy", "batched"])
}

/// `GET`/`PATCH /v1/admin/settings`: the settings in force.
pub(super) fn settings_out() -> Value {
    let dispatch: Vec<(&str, Value)> = DISPATCH_KEYS.iter().map(|k| (*k, dispatch_key(k))).collect();
    let zone = obj(&[("bidding", boolean()), ("surge", surge()), ("mode", zone_mode())], &["bidding", "surge", "mode"]);
    obj(
        &[
            ("dispatch", obj(&dispatch, &DISPATCH_KEYS)),
            ("zones", json!({"type": "object", "additionalProperties": zone})),
        ],
        &["dispatch", "zones"],
    )
}

/// `PATCH /v1/admin/settings`: any subset.
pub(super) fn settings_in() -> Value {
    let dispatch: Vec<(&str, Value)> = DISPATCH_KEYS.iter().map(|k| (*k, dispatch_key(k))).collect();
    let zone = strict(&[("bidding", boolean()), ("surge", surge()), ("mode", zone_mode())], &[]);
    strict(
        &[
            ("dispatch", strict(&dispatch, &[])),
            ("zones", json!({"type": "object", "propertyNames": {"pattern": "^zon_"}, "additionalProperties": zone})),
        ],
        &[],
    )
}
pub(super) fn settings_ex() -> Value {
    json!({"dispatch": {"offers_per_round": 3, "offer_ttl_s": 15},
           "zones": {"zon_0000000000000001": {"bidding": false, "surge": {"enabled": true, "max_bps": 20000}, "mode": "batched"}}})
}
