//! Driver positions: validation, the per-driver minimum interval, suspected spoofing,
//! publication, the spatial index, and the distance driven on a trip.
//!
//! Guarantees:
//! - every position that reaches a driver's record — a `POST /v1/driver/location` or WS
//!   report, or the `location` of `POST /v1/driver/status` — passes the same checks: in
//!   range, and no implausible jump (implied speed above `max_speed_kmh` since the last
//!   fix taken since the driver went online; the first position after going online is
//!   free). A refused jump is [`Error::ImplausibleLocation`], which the writer counts as
//!   suspected spoofing;
//! - a report less than `location_min_interval_ms` after the driver's last *published*
//!   position changes nothing and answers [`Outcome::Coalesced`] with the instant it may be
//!   published: the writer keeps it (the newest wins) and applies it then, unless a newer
//!   report came first. So a driver reporting faster than the interval is published once
//!   per interval, and the newest position is never left behind. The writer logs no
//!   record for a coalesced report: it changed nothing;
//! - a published position moves the driver's fix and index entry and yields one
//!   `DriverMoved` event (the rider's map, the position history), and adds the step from
//!   the previous fix to the driver's odometer while the trip is in progress;
//! - a driver is in the spatial index, at its last fix, exactly while it is not offline
//!   ([`State::sync_index`]); on-trip drivers stay in it for staff views, and dispatch's
//!   eligibility filter passes over them.

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::{Event, LocationReport, Outcome};
use crate::driver::{Availability, Driver, Fix};
use crate::error::{Error, Result};
use crate::geo::{CategoryCode, LatLng, haversine_m};
use crate::id::UserId;
use crate::trip::TripStatus;

/// Moves shorter than this are GPS noise, never suspected spoofing, however fast.
const SPOOF_TOLERANCE_M: f64 = 100.0;

/// Most drivers [`State::drivers_near`] answers at once.
pub const MAX_NEARBY_LIMIT: usize = 1_000;

/// Widest radius [`State::drivers_near`] searches, metres.
pub const MAX_NEARBY_RADIUS_M: f64 = 100_000.0;

impl State {
    /// Refuses `point` as an implausible jump from the driver's last fix taken since it
    /// went online (a driver who is offline is checked against any fix it has).
    fn check_jump(&self, d: &Driver, point: LatLng, now: Timestamp) -> Result<()> {
        let reference = d.fix.filter(|f| d.online_since.is_none_or(|since| f.at >= since));
        let Some(prev) = reference else { return Ok(()) };
        let moved_m = haversine_m(prev.point, point);
        // Positions within GPS noise of each other never count as jumps.
        if moved_m > SPOOF_TOLERANCE_M {
            let dt_ms = now.millis_since(prev.at).max(1);
            let kmh = moved_m / 1000.0 / (dt_ms as f64 / 3_600_000.0);
            if kmh > f64::from(self.rules.max_speed_kmh) {
                return Err(Error::ImplausibleLocation { speed_kmh: kmh.min(1e9) as u64 });
            }
        }
        Ok(())
    }

    pub(super) fn update_location(
        &mut self,
        who: Who,
        report: &LocationReport,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = self.driver_of(who)?;
        if report.heading_deg.is_some_and(|h| !(0.0..360.0).contains(&h))
            || report.speed_mps.is_some_and(|v| !(0.0..=100.0).contains(&v))
        {
            return Err(Error::Invalid("heading_deg must be in [0, 360) and speed_mps in [0, 100]".into()));
        }
        let d = self.driver_ref(id)?;
        self.check_jump(d, report.point, now)?;
        if let Some(last) = d.fix {
            let publish_at = last.at.plus_millis(i64::from(self.rules.location_min_interval_ms));
            if now < publish_at {
                // The newest position waits with the writer; nothing changes here.
                return Ok(Outcome::Coalesced { publish_at });
            }
        }
        let fix = Fix { point: report.point, at: now, heading_deg: report.heading_deg, speed_mps: report.speed_mps };
        self.publish_position(id, fix, fx)?;
        Ok(Outcome::Done)
    }

    /// The `location` of `POST /v1/driver/status`: checked like a report (free when the
    /// driver is coming online from offline) and published at once — a status change is
    /// a logged command anyway, so it is never coalesced.
    pub(super) fn status_location(
        &mut self,
        id: UserId,
        point: LatLng,
        coming_online: bool,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        if !coming_online {
            self.check_jump(self.driver_ref(id)?, point, now)?;
        }
        self.publish_position(id, Fix { point, at: now, heading_deg: None, speed_mps: None }, fx)
    }

    /// Makes `fix` the driver's position: the odometer of an in-progress trip, the index,
    /// and the `DriverMoved` event. Every check has passed.
    fn publish_position(&mut self, id: UserId, fix: Fix, fx: &mut Effects) -> Result<()> {
        let d = self.driver_ref(id)?;
        let trip_id = d.trip_id;
        let riding = trip_id.and_then(|t| self.trips.get(&t)).is_some_and(|t| t.status == TripStatus::InProgress);
        let step_m = match (riding, d.fix) {
            (true, Some(prev)) => haversine_m(prev.point, fix.point),
            _ => 0.0,
        };
        let d = self.driver_moved_mut(id, fx)?;
        d.fix = Some(fix);
        d.trip_odometer_m += step_m;
        self.sync_index(id);
        fx.events.push(Event::DriverMoved {
            driver_id: id,
            trip_id,
            point: fix.point,
            heading_deg: fix.heading_deg,
            at: fix.at,
        });
        Ok(())
    }

    /// A `Positions` record: the fixes the writer published, published again in order.
    /// The system's only; every driver is checked to exist before anything changes.
    pub(super) fn replay_positions(&mut self, who: Who, fixes: &[(UserId, Fix)], fx: &mut Effects) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("positions are recorded by the engine".into()));
        }
        if let Some((id, _)) = fixes.iter().find(|(id, _)| !self.drivers.contains_key(id)) {
            return Err(Error::Internal(format!("a recorded position of driver {id}, who has no record")));
        }
        for (id, fix) in fixes {
            self.publish_position(*id, *fix, fx)?;
        }
        Ok(Outcome::Done)
    }

    /// Puts the driver in the index at its last fix while it is not offline, and takes
    /// it out otherwise. Call after any change of a driver's availability or fix.
    pub(super) fn sync_index(&mut self, id: UserId) {
        let at_work = self.drivers.get(&id).filter(|d| d.availability != Availability::Offline).and_then(|d| d.fix);
        match at_work {
            Some(f) => {
                self.index.0.upsert(id, f.point, CategoryCode(0), f.at);
            }
            None => {
                self.index.0.remove(id);
            }
        }
    }

    /// Drivers at work (available or on a trip; offline and suspended drivers are not
    /// indexed) within `radius_m` of `point`, nearest first (ties by id), at most `limit`,
    /// with their great-circle distance: an index query, for staff views. The radius
    /// must be finite and in `0..=MAX_NEARBY_RADIUS_M`; `limit` is capped at
    /// [`MAX_NEARBY_LIMIT`].
    pub fn drivers_near(&self, point: LatLng, radius_m: f64, limit: usize) -> Result<Vec<(Arc<Driver>, f64)>> {
        if !(radius_m.is_finite() && (0.0..=MAX_NEARBY_RADIUS_M).contains(&radius_m)) {
            return Err(Error::Invalid(format!("radius_m must be 0-{MAX_NEARBY_RADIUS_M}")));
        }
        let limit = limit.min(MAX_NEARBY_LIMIT);
        Ok(self
            .index
            .0
            .nearest(point, radius_m, limit, |_| true)
            .into_iter()
            .filter_map(|n| self.drivers.get(&n.driver.id).map(|d| (Arc::clone(d), n.distance_m)))
            .collect())
    }
}
