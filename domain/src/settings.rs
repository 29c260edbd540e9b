//! Runtime settings (`PATCH /v1/admin/settings`): the dispatch rules staff may change
//! without a restart ([`RuleOverrides`]) and a zone's bidding and surge
//! ([`ZoneSettings`]), changed together by one logged command ([`SettingsChange`]).
//!
//! Guarantees: a change is checked whole before anything is applied (each dispatch key
//! against `DispatchRules::validate`, each zone against its surge bounds and existence);
//! the keys set at runtime are kept in the state as overrides, which win over the
//! configuration's rules at the next start (the writer's `adopt_rules` puts them on top)
//! until changed again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::ZoneId;
use crate::rules::{DispatchRules, MatchingMode};
use crate::zone::SurgeSettings;

/// A runtime setting's value, as an audit entry records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue {
    /// A count.
    Int(i64),
    /// A name (the matching mode).
    Text(&'static str),
}

/// The dispatch keys set at runtime; `None` leaves the configuration's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleOverrides {
    /// `offers_per_round`.
    pub offers_per_round: Option<u16>,
    /// `offer_ttl_s`.
    pub offer_ttl_s: Option<u32>,
    /// `timeout_s`.
    pub timeout_s: Option<u32>,
    /// `search_radius_m`.
    pub search_radius_m: Option<u32>,
    /// `stale_location_s`.
    pub stale_location_s: Option<u32>,
    /// `schedule_lead_s`.
    pub schedule_lead_s: Option<u32>,
    // ----- issue 22 -----
    /// `mode` (`matching`).
    pub mode: Option<MatchingMode>,
    /// `batch_window_ms`.
    pub batch_window_ms: Option<u32>,
    /// `learning_acceptance_pct` (`learning.acceptance_pct`).
    pub learning_acceptance_pct: Option<u16>,
    /// `learning_idle_pct` (`learning.idle_pct`).
    pub learning_idle_pct: Option<u16>,
}

impl RuleOverrides {
    /// `rules` with every key set here on top.
    pub fn apply_to(&self, rules: &DispatchRules) -> DispatchRules {
        let mut r = rules.clone();
        if let Some(v) = self.offers_per_round {
            r.offers_per_round = v;
        }
        if let Some(v) = self.offer_ttl_s {
            r.offer_ttl_s = v;
        }
        if let Some(v) = self.timeout_s {
            r.timeout_s = v;
        }
        if let Some(v) = self.search_radius_m {
            r.search_radius_m = v;
        }
        if let Some(v) = self.stale_location_s {
            r.stale_location_s = v;
        }
        if let Some(v) = self.schedule_lead_s {
            r.schedule_lead_s = v;
        }
        if let Some(v) = self.mode {
            r.matching = v;
        }
        if let Some(v) = self.batch_window_ms {
            r.batch_window_ms = v;
        }
        if let Some(v) = self.learning_acceptance_pct {
            r.learning.acceptance_pct = v;
        }
        if let Some(v) = self.learning_idle_pct {
            r.learning.idle_pct = v;
        }
        r
    }

    /// These overrides with every key `newer` sets replaced.
    pub fn merged(&self, newer: &RuleOverrides) -> RuleOverrides {
        RuleOverrides {
            offers_per_round: newer.offers_per_round.or(self.offers_per_round),
            offer_ttl_s: newer.offer_ttl_s.or(self.offer_ttl_s),
            timeout_s: newer.timeout_s.or(self.timeout_s),
            search_radius_m: newer.search_radius_m.or(self.search_radius_m),
            stale_location_s: newer.stale_location_s.or(self.stale_location_s),
            schedule_lead_s: newer.schedule_lead_s.or(self.schedule_lead_s),
            mode: newer.mode.or(self.mode),
            batch_window_ms: newer.batch_window_ms.or(self.batch_window_ms),
            learning_acceptance_pct: newer.learning_acceptance_pct.or(self.learning_acceptance_pct),
            learning_idle_pct: newer.learning_idle_pct.or(self.learning_idle_pct),
        }
    }

    /// Each key set, as `(dotted name, value)`, in the API's order.
    pub fn set_keys(&self) -> Vec<(&'static str, KeyValue)> {
        let int = |v: Option<u32>| v.map(|v| KeyValue::Int(i64::from(v)));
        let mode = self.mode.map(|m| {
            KeyValue::Text(match m {
                MatchingMode::Greedy => "greedy",
                MatchingMode::Batched => "batched",
            })
        });
        [
            ("dispatch.offers_per_round", int(self.offers_per_round.map(u32::from))),
            ("dispatch.offer_ttl_s", int(self.offer_ttl_s)),
            ("dispatch.timeout_s", int(self.timeout_s)),
            ("dispatch.search_radius_m", int(self.search_radius_m)),
            ("dispatch.stale_location_s", int(self.stale_location_s)),
            ("dispatch.schedule_lead_s", int(self.schedule_lead_s)),
            ("dispatch.mode", mode),
            ("dispatch.batch_window_ms", int(self.batch_window_ms)),
            ("dispatch.learning_acceptance_pct", int(self.learning_acceptance_pct.map(u32::from))),
            ("dispatch.learning_idle_pct", int(self.learning_idle_pct.map(u32::from))),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// Only the key named `key` (a name of [`RuleOverrides::set_keys`]) of these.
    fn only(&self, key: &str) -> RuleOverrides {
        let mut one = RuleOverrides::default();
        match key {
            "dispatch.offers_per_round" => one.offers_per_round = self.offers_per_round,
            "dispatch.offer_ttl_s" => one.offer_ttl_s = self.offer_ttl_s,
            "dispatch.timeout_s" => one.timeout_s = self.timeout_s,
            "dispatch.search_radius_m" => one.search_radius_m = self.search_radius_m,
            "dispatch.stale_location_s" => one.stale_location_s = self.stale_location_s,
            "dispatch.mode" => one.mode = self.mode,
            "dispatch.batch_window_ms" => one.batch_window_ms = self.batch_window_ms,
            "dispatch.learning_acceptance_pct" => one.learning_acceptance_pct = self.learning_acceptance_pct,
            "dispatch.learning_idle_pct" => one.learning_idle_pct = self.learning_idle_pct,
            _ => one.schedule_lead_s = self.schedule_lead_s,
        }
        one
    }

    /// The rules these give on top of `rules`, refused naming the first key whose value
    /// breaks [`DispatchRules::validate`] (as `param`).
    pub fn checked_on(&self, rules: &DispatchRules) -> crate::Result<DispatchRules> {
        for (key, _) in self.set_keys() {
            if let Err(e) = self.only(key).apply_to(rules).validate() {
                return Err(crate::Error::InvalidParam { param: key, message: e.to_string() });
            }
        }
        let all = self.apply_to(rules);
        all.validate()?;
        Ok(all)
    }
}

/// A zone's runtime settings; `None` leaves what the zone has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSettings {
    /// Whether riders may name their price (a bidding trip) in the zone.
    pub bidding: Option<bool>,
    /// The zone's surge settings, replaced whole.
    pub surge: Option<SurgeSettings>,
    /// How the zone's trips find their first drivers: `Some(Some(mode))` its own mode,
    /// `Some(None)` the city's again (`zones.<id>.mode`: "greedy", "batched", "city").
    pub mode: Option<Option<MatchingMode>>,
}

/// A zone's matching mode as the API and the audit trail name it ("city": none of its own).
pub fn zone_mode_name(mode: Option<MatchingMode>) -> &'static str {
    match mode {
        None => "city",
        Some(MatchingMode::Greedy) => "greedy",
        Some(MatchingMode::Batched) => "batched",
    }
}

/// One `PATCH /v1/admin/settings`: any subset of the dispatch keys and of the zones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsChange {
    /// The dispatch keys set.
    pub dispatch: RuleOverrides,
    /// Zones changed, by id.
    pub zones: BTreeMap<ZoneId, ZoneSettings>,
}
