//! The audit trail and the runtime settings (API.md v1.1 "Back office"): `GET
//! /v1/admin/audit` lists the entries the engine made from the log (`Command::Audited`,
//! which `Ctx::submit` wraps around every staff command), and `GET`/`PATCH
//! /v1/admin/settings` read and change the dispatch rules and the zones' bidding and surge.
//!
//! Guarantees: the audit list is newest first, paged with a cursor (an entry's number),
//! from the hot state and the history, each filter answered from its index; a settings
//! change is strict JSON checked whole — an unknown key or zone, or a value the rules
//! refuse, is `400 invalid_request` naming it in `param`, and nothing changes — and is
//! applied through one logged command; both answer the settings as the engine has them
//! after the change.

use std::collections::BTreeMap;

use dispatch_core::audit::{AuditEntry, Detail};
use dispatch_core::engine::AuditFilter;
use dispatch_core::id::ZoneId;
use dispatch_core::rules::MatchingMode;
use dispatch_core::settings::{RuleOverrides, SettingsChange, ZoneSettings, zone_mode_name};
use dispatch_core::zone::{MAX_SURGE_BPS, NO_SURGE_BPS, SurgeSettings};
use dispatch_core::{Command, View};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::http::{self, ApiError, Cursor, Resp, json_response};

/// Longest filter value (`actor_id`, `target_id`, `action`) a query may give.
const MAX_FILTER_LEN: usize = 128;

/// An audit entry as the API shows it.
fn entry(e: &AuditEntry) -> Value {
    let details: Map<String, Value> = e
        .details
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Detail::Text(s) => json!(s),
                Detail::Int(n) => json!(n),
                Detail::Bool(b) => json!(b),
            };
            (k.clone(), v)
        })
        .collect();
    json!({
        "at": http::rfc3339(e.at),
        "actor_id": e.actor_id,
        "actor_role": e.actor_role,
        "action": e.action,
        "target_id": e.target_id,
        "request_id": e.request_id,
        "details": details,
    })
}

/// The settings in force, as the view has them.
fn settings(v: &View) -> Value {
    let r = v.rules();
    let zones: Map<String, Value> = v
        .catalog()
        .zones()
        .map(|z| {
            let s = &z.spec;
            let surge = json!({"enabled": s.surge.enabled, "max_bps": s.surge.max_bps});
            (z.id.to_string(), json!({"bidding": s.bidding, "surge": surge, "mode": zone_mode_name(z.matching)}))
        })
        .collect();
    json!({
        "dispatch": {
            "offers_per_round": r.offers_per_round,
            "offer_ttl_s": r.offer_ttl_s,
            "timeout_s": r.timeout_s,
            "search_radius_m": r.search_radius_m,
            "stale_location_s": r.stale_location_s,
            "schedule_lead_s": r.schedule_lead_s,
            "mode": r.matching,
            "batch_window_ms": r.batch_window_ms,
            "learning_acceptance_pct": r.learning.acceptance_pct,
            "learning_idle_pct": r.learning.idle_pct,
        },
        "zones": zones,
    })
}

/// `PATCH /v1/admin/settings`'s body (its schema refused anything else already).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsIn {
    #[serde(default)]
    dispatch: Option<DispatchIn>,
    #[serde(default)]
    zones: BTreeMap<String, ZoneIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchIn {
    #[serde(default)]
    offers_per_round: Option<u16>,
    #[serde(default)]
    offer_ttl_s: Option<u32>,
    #[serde(default)]
    timeout_s: Option<u32>,
    #[serde(default)]
    search_radius_m: Option<u32>,
    #[serde(default)]
    stale_location_s: Option<u32>,
    #[serde(default)]
    schedule_lead_s: Option<u32>,
    #[serde(default)]
    mode: Option<MatchingMode>,
    #[serde(default)]
    batch_window_ms: Option<u32>,
    #[serde(default)]
    learning_acceptance_pct: Option<u16>,
    #[serde(default)]
    learning_idle_pct: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneIn {
    #[serde(default)]
    bidding: Option<bool>,
    #[serde(default)]
    surge: Option<SurgeSettings>,
    /// "city", "greedy" or "batched" (the schema refused anything else already).
    #[serde(default)]
    mode: Option<String>,
}

impl Ctx<'_> {
    /// `GET /v1/admin/audit?actor_id=&target_id=&action=&limit=&cursor=`.
    pub(super) async fn list_audit(&self) -> Result<Resp, ApiError> {
        let filter_of = |name: &str| -> Result<Option<String>, ApiError> {
            match self.query.get(name) {
                None => Ok(None),
                Some(v) if (1..=MAX_FILTER_LEN).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) => {
                    Ok(Some(v.to_owned()))
                }
                Some(_) => {
                    Err(ApiError::invalid(format!("{name} must be 1-{MAX_FILTER_LEN} printable ASCII characters"))
                        .with_param(name))
                }
            }
        };
        let filter = AuditFilter {
            actor_id: filter_of("actor_id")?,
            target_id: filter_of("target_id")?,
            action: filter_of("action")?,
        };
        let limit = http::limit(&self.query)?;
        // The cursor is the number of the last entry seen (its `at_ms` part unused).
        let before = Cursor::from_query(&self.query)?.map(|c| c.id);
        let page = self.app.blocking(move |e| e.audit(&filter, before, limit)).await?;
        let next = match page.scanned_to {
            Some(seq) => Some(seq),
            None if page.items.len() >= limit => page.items.last().map(|e| e.seq),
            None => None,
        };
        let items: Vec<Value> = page.items.iter().map(entry).collect();
        let next_cursor = next.map(|id| Cursor { at_ms: 0, id }.encode());
        Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": next_cursor})))
    }

    /// `GET /v1/admin/settings`.
    pub(super) fn get_settings(&self) -> Result<Resp, ApiError> {
        Ok(json_response(StatusCode::OK, &self.app.engine.read(settings)))
    }

    /// `PATCH /v1/admin/settings`: any subset, checked whole, applied at once.
    pub(super) async fn patch_settings(&mut self) -> Result<Resp, ApiError> {
        let b: SettingsIn = self.json(false)?;
        let d = b.dispatch.unwrap_or(DispatchIn {
            offers_per_round: None,
            offer_ttl_s: None,
            timeout_s: None,
            search_radius_m: None,
            stale_location_s: None,
            schedule_lead_s: None,
            mode: None,
            batch_window_ms: None,
            learning_acceptance_pct: None,
            learning_idle_pct: None,
        });
        let dispatch = RuleOverrides {
            offers_per_round: d.offers_per_round,
            offer_ttl_s: d.offer_ttl_s,
            timeout_s: d.timeout_s,
            search_radius_m: d.search_radius_m,
            stale_location_s: d.stale_location_s,
            schedule_lead_s: d.schedule_lead_s,
            mode: d.mode,
            batch_window_ms: d.batch_window_ms,
            learning_acceptance_pct: d.learning_acceptance_pct,
            learning_idle_pct: d.learning_idle_pct,
        };
        let mut zones = BTreeMap::new();
        for (key, z) in b.zones {
            let param = format!("zones.{key}");
            let known =
                key.parse::<ZoneId>().ok().filter(|id| self.app.engine.read(|v| v.catalog().get(*id).is_some()));
            let Some(id) = known else {
                return Err(ApiError::invalid(format!("no zone {key}")).with_param(&param));
            };
            if let Some(s) = z.surge
                && !(NO_SURGE_BPS..=MAX_SURGE_BPS).contains(&s.max_bps)
            {
                return Err(ApiError::invalid(format!("surge.max_bps must be from {NO_SURGE_BPS} to {MAX_SURGE_BPS}"))
                    .with_param(&format!("{param}.surge.max_bps")));
            }
            let mode = match z.mode.as_deref() {
                None => None,
                Some("city") => Some(None),
                Some("greedy") => Some(Some(MatchingMode::Greedy)),
                Some("batched") => Some(Some(MatchingMode::Batched)),
                Some(other) => {
                    return Err(ApiError::invalid(format!("mode must be city, greedy or batched, not {other:?}"))
                        .with_param(&format!("{param}.mode")));
                }
            };
            zones.insert(id, ZoneSettings { bidding: z.bidding, surge: z.surge, mode });
        }
        let change = SettingsChange { dispatch, zones };
        if change != SettingsChange::default() {
            // The engine checks each dispatch key against the rules (`param`: its name).
            self.submit(Command::UpdateSettings(Box::new(change))).await?;
        }
        Ok(json_response(StatusCode::OK, &self.app.engine.read(settings)))
    }
}
