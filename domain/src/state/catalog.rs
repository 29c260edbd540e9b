//! Zones, coupons and surge: the handlers that change what rides cost.
//!
//! Guarantees: only admins (or the system) change zones and coupons; a zone that exists
//! passed [`ZoneSpec::validate`]; coupon codes are unique; a disabled coupon prices
//! nothing again; a coupon's `uses` counts the trips booked with it, less those that
//! expired or were cancelled without a fee; surge is recomputed every
//! `surge_interval_s` while any zone has it enabled, from the zone's searching trips and
//! its available drivers with a fresh position, and a trip keeps the surge it was booked at.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Deadline, Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::driver::Availability;
use crate::error::{Error, Result};
use crate::fare::Coupon;
use crate::id::{CouponId, ZoneId};
use crate::trip::TripStatus;
use crate::zone::{CouponRecord, PriceBook, SurgeReading, Zone, ZoneSpec, surge_bps};

impl State {
    /// What prices rides now: zones, surges, coupons.
    pub fn price_book(&self) -> PriceBook<'_> {
        PriceBook { catalog: &self.catalog, surge: &self.surge, coupons: &self.coupons }
    }

    /// The parts of the state readers copy when zones, surges or coupons change.
    #[allow(clippy::type_complexity)]
    pub fn catalog_parts(
        &self,
    ) -> (&Arc<crate::zone::Catalog>, &BTreeMap<ZoneId, SurgeReading>, &BTreeMap<String, Arc<CouponRecord>>) {
        (&self.catalog, &self.surge, &self.coupons)
    }

    /// A zone.
    pub fn zone(&self, id: ZoneId) -> Option<&Arc<Zone>> {
        self.catalog.get(id)
    }

    /// Whether a coupon already has this id.
    pub fn coupon_id_taken(&self, id: CouponId) -> bool {
        self.coupons.values().any(|c| c.coupon.id == id)
    }

    /// For a staff command whose right is a permission (`zones.write`, `drivers.suspend`,
    /// `payouts.approve`, …): any staff. Which staff hold the permission — `admin`, a
    /// `support` granted it, a custom role from `[roles.<name>]` — is decided where routes
    /// are authorised, in one place (the server's `auth::authorize`); the engine knows
    /// staff, not their configured roles. What no permission grants (creating users,
    /// wallet credits, webhooks) stays [`State::require_admin`].
    pub(super) fn require_staff(who: Who, what: &str) -> Result<()> {
        if matches!(who, Who::System | Who::Staff { .. }) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("only staff {what}")))
        }
    }

    pub(super) fn require_admin(who: Who, what: &str) -> Result<()> {
        if matches!(who, Who::System | Who::Staff { admin: true }) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("only an admin {what}")))
        }
    }

    pub(super) fn create_zone(
        &mut self,
        who: Who,
        id: Option<ZoneId>,
        spec: &ZoneSpec,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "creates zones")?;
        let id = id.ok_or_else(|| Error::Internal("zone id not stamped".into()))?;
        if self.catalog.get(id).is_some() {
            return Err(Error::Invalid(format!("zone {id} already exists")));
        }
        spec.validate()?;
        let zone = Arc::new(Zone { id, spec: spec.clone(), created_at: now, updated_at: now, matching: None });
        self.put_zone(Arc::clone(&zone), now, fx);
        Ok(Outcome::Zone(zone))
    }

    pub(super) fn replace_zone(
        &mut self,
        who: Who,
        id: ZoneId,
        spec: &ZoneSpec,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "replaces zones")?;
        let old = self.catalog.get(id).ok_or_else(|| Error::not_found("zone", id))?;
        spec.validate()?;
        let zone = Arc::new(Zone {
            id,
            spec: spec.clone(),
            created_at: old.created_at,
            updated_at: now,
            matching: old.matching,
        });
        self.put_zone(Arc::clone(&zone), now, fx);
        Ok(Outcome::Zone(zone))
    }

    pub(super) fn put_zone(&mut self, zone: Arc<Zone>, now: Timestamp, fx: &mut Effects) {
        if !zone.spec.surge.enabled {
            self.surge.remove(&zone.id);
        }
        Arc::make_mut(&mut self.catalog).upsert(zone);
        self.schedule_surge(now);
        fx.catalog = true;
    }

    /// Makes sure a surge recomputation is pending while some zone has surge enabled.
    fn schedule_surge(&mut self, now: Timestamp) {
        let pending = self.deadlines.iter().any(|(_, d)| *d == Deadline::Surge);
        if self.catalog.any_surge() && !pending {
            self.deadlines.insert((now.plus_secs(self.rules.surge_interval_s), Deadline::Surge));
        }
    }

    pub(super) fn create_coupon(
        &mut self,
        who: Who,
        id: Option<CouponId>,
        coupon: &Coupon,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "creates coupons")?;
        let id = id.ok_or_else(|| Error::Internal("coupon id not stamped".into()))?;
        let coupon = Coupon { id, ..coupon.clone() };
        coupon.validate().map_err(|e| Error::Invalid(e.to_string()))?;
        if self.coupons.contains_key(&coupon.code) {
            return Err(Error::Invalid(format!("a coupon with code {:?} already exists", coupon.code)));
        }
        let record = Arc::new(CouponRecord {
            coupon,
            uses: 0,
            uses_by_rider: imbl::OrdMap::new(),
            created_at: now,
            disabled_at: None,
        });
        self.coupons.insert(record.coupon.code.clone(), Arc::clone(&record));
        fx.catalog = true;
        Ok(Outcome::Coupon(record))
    }

    /// An admin disables a coupon: later estimates and bookings with it are refused
    /// (`coupon_invalid`); trips already booked keep their discount. Disabling a disabled
    /// coupon answers it as it is (the first time stays recorded).
    pub(super) fn disable_coupon(&mut self, who: Who, code: &str, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        Self::require_staff(who, "disables coupons")?;
        let record = self.coupons.get_mut(code).ok_or_else(|| Error::not_found("coupon", code))?;
        if record.disabled_at.is_none() {
            Arc::make_mut(record).disabled_at = Some(now);
            fx.catalog = true;
        }
        Ok(Outcome::Coupon(Arc::clone(record)))
    }

    /// Counts (or, with `redeem == false`, gives back) one use of a coupon by `rider`.
    pub(super) fn count_coupon_use(&mut self, code: &str, rider: crate::id::UserId, redeem: bool, fx: &mut Effects) {
        if let Some(record) = self.coupons.get_mut(code) {
            let r = Arc::make_mut(record);
            let by = r.uses_by_rider.entry(rider).or_default();
            if redeem {
                r.uses += 1;
                *by += 1;
            } else {
                r.uses = r.uses.saturating_sub(1);
                *by = by.saturating_sub(1);
                if *by == 0 {
                    r.uses_by_rider.remove(&rider);
                }
            }
            fx.catalog = true;
        }
    }

    /// Recomputes every surge-enabled zone's surge (the `Surge` deadline).
    pub(super) fn recompute_surge(&mut self, now: Timestamp, fx: &mut Effects) {
        let surging: Vec<Arc<Zone>> = self.catalog.zones().filter(|z| z.spec.surge.enabled).cloned().collect();
        if surging.is_empty() {
            return;
        }
        let mut counts: BTreeMap<ZoneId, (u32, u32)> = surging.iter().map(|z| (z.id, (0, 0))).collect();
        for t in self.trips.values().filter(|t| t.status == TripStatus::Searching) {
            if let Some(c) = counts.get_mut(&t.zone_id) {
                c.0 = c.0.saturating_add(1);
            }
        }
        let stale_s = self.rules.stale_location_s;
        for d in self.drivers.values() {
            if d.availability != Availability::Available || d.suspended || !d.has_fresh_fix(now, stale_s) {
                continue;
            }
            let Some(fix) = d.fix else { continue };
            if let Ok(zone) = self.catalog.lookup(fix.point)
                && let Some(c) = counts.get_mut(&zone.id)
            {
                c.1 = c.1.saturating_add(1);
            }
        }
        for zone in surging {
            let (demand, supply) = counts.get(&zone.id).copied().unwrap_or_default();
            let bps = surge_bps(&zone.spec.surge, demand, supply);
            self.surge.insert(zone.id, SurgeReading { bps, demand, supply, at: now });
        }
        fx.catalog = true;
        self.schedule_surge(now);
    }
}
