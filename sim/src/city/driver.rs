//! A simulated driver: its phases (offline, cruising, to the pickup, at the pickup, riding),
//! its path, its answers to offers (with its own acceptance probability), and what it does
//! at a step and when the engine answers a command about its trip; and what the figures
//! learn when it wins a trip (time to match, pickup distance and ETA).
//!
//! The pickup ETA is the sim's own leg timing: the straight-line distance from where the
//! driver is when it learns it won (the step that handles the accept's answer) to the
//! pickup, at the driver's own speed — exactly the leg it then drives.
//!
//! Guarantees upheld here:
//! - **Plausible movement** (with `leg`, which keeps each leg continuous and within its
//!   speed): every new leg starts where the driver is at that instant and is driven at the
//!   driver's own speed, drawn at setup within the validated range; a cruising waypoint is
//!   at most [`CRUISE_LEG_M`] away and inside the city area. A position is reported only
//!   once the previous report is answered and `report_interval_ms` after it was sent, so
//!   reports are never closer than [`MIN_REPORT_INTERVAL_MS`](crate::MIN_REPORT_INTERVAL_MS).
//! - **Bounded.** A driver sends a state-changing command only when not `busy`, and keeps
//!   a decision only for the offers the view shows it now (at most the engine's
//!   `MAX_PENDING_OFFERS`); an offer is answered at most once.

use rand::Rng;

use dispatch_core::clock::Timestamp;
use dispatch_core::command::{Actor, Command, LocationReport};
use dispatch_core::error::{DomainError, Error};
use dispatch_core::geo::{LatLng, haversine_m};
use dispatch_core::id::{TripId, UserId};
use dispatch_core::trip::Trip;

use super::{Seen, Sim, Tag};
use crate::geo::offset;
use crate::leg::Leg;

/// A cruising driver's next waypoint is at most this far away.
const CRUISE_LEG_M: f64 = 2_000.0;

/// What a driver decided to do with an offer, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accept,
    Decline,
    Ignore,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Decision {
    trip: TripId,
    due: Timestamp,
    answer: Answer,
    sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DriverPhase {
    Offline,
    Cruising,
    ToPickup { trip: TripId, cancel_at: Option<Timestamp> },
    AtPickup { trip: TripId, start_at: Timestamp },
    Riding { trip: TripId },
}

impl DriverPhase {
    pub(super) fn trip(self) -> Option<TripId> {
        match self {
            DriverPhase::ToPickup { trip, .. } | DriverPhase::AtPickup { trip, .. } | DriverPhase::Riding { trip } => {
                Some(trip)
            }
            _ => None,
        }
    }
}

pub(super) struct DriverAgent {
    pub(super) id: UserId,
    pub(super) speed_mps: f64,
    /// This driver's chance to accept an offer, drawn at setup.
    pub(super) accept_p: f64,
    /// This driver's chance to decline one (the rest it ignores).
    pub(super) decline_p: f64,
    /// Final fares of the trips it completed, minor units.
    pub(super) earned_minor: i64,
    /// When it last won a trip.
    pub(super) engaged_at: Timestamp,
    /// Until the first step: an offset from it.
    pub(super) online_at: Timestamp,
    pub(super) phase: DriverPhase,
    pub(super) leg: Leg,
    /// A state-changing command is in flight.
    pub(super) busy: bool,
    pub(super) report_in_flight: bool,
    pub(super) next_report_at: Timestamp,
    /// Live offers seen, at most the engine's `MAX_PENDING_OFFERS`.
    pub(super) decisions: Vec<Decision>,
}

impl Sim<'_> {
    /// Driver `i` won trip `t`.
    pub(super) fn accepted(&mut self, i: usize, t: &Trip) {
        let now = self.now;
        if self.drivers[i].phase.trip().is_some() {
            self.stats.double_assignments += 1;
        }
        match self.notes.get_mut(&t.id) {
            Some(note) => {
                if note.holder.is_some_and(|h| h != i) {
                    self.stats.double_assignments += 1;
                }
                note.holder = Some(i);
                if !note.matched {
                    note.matched = true;
                    self.stats.trips_matched += 1;
                    let accepted_at = t.accepted_at.unwrap_or(now);
                    // A ride booked ahead is matched from its dispatch, when its search began.
                    let asked_at = if t.scheduled_at.is_some() { t.searching_since } else { t.created_at };
                    self.match_times.record(accepted_at.millis_since(asked_at));
                }
            }
            None => self.unexpected(&format!("won trip {}, which no simulated rider asked for", t.id)),
        }
        let cancel_at = self
            .rng
            .random_bool(self.config.driver_cancel_probability)
            .then(|| now.plus_millis(self.rng.random_range(5_000..=60_000)));
        let d = &mut self.drivers[i];
        d.decisions.clear();
        d.phase = DriverPhase::ToPickup { trip: t.id, cancel_at };
        let here = d.leg.position(now);
        d.leg = Leg::drive(here, t.pickup.point, now, d.speed_mps);
        d.engaged_at = now;
        let eta_ms = d.leg.end.millis_since(now);
        self.pickup_m.record(haversine_m(here, t.pickup.point).round() as i64);
        self.pickup_eta_ms.record(eta_ms);
    }

    /// An arrived/start/complete refused: the trip was taken away (the rider cancelled)
    /// and the next observation frees the driver; anything else is unexpected.
    pub(super) fn trip_command_refused(&mut self, i: usize, e: &Error) {
        if !matches!(
            e,
            Error::Domain(DomainError::InvalidTransition { .. })
                | Error::Domain(DomainError::NotFound { .. })
                | Error::Domain(DomainError::Forbidden(_))
        ) {
            self.unexpected(&format!("driver {}: {e}", self.drivers[i].id));
        }
    }

    pub(super) fn release(&mut self, trip: TripId, driver: usize) {
        if let Some(note) = self.notes.get_mut(&trip)
            && note.holder == Some(driver)
        {
            note.holder = None;
        }
    }

    /// Driver `i` is free: wanders from where it is.
    pub(super) fn cruise(&mut self, i: usize) {
        let now = self.now;
        let here = self.drivers[i].leg.position(now);
        self.drivers[i].phase = DriverPhase::Cruising;
        self.drivers[i].decisions.clear();
        self.drivers[i].leg = self.cruise_leg(here, self.drivers[i].speed_mps, now);
    }

    fn cruise_leg(&mut self, here: LatLng, speed_mps: f64, now: Timestamp) -> Leg {
        if self.rng.random_bool(0.3) {
            let ms = self.rng.random_range(20_000..=120_000);
            return Leg::stop(here, now, ms);
        }
        let r = CRUISE_LEG_M * self.rng.random::<f64>().sqrt();
        let theta = self.rng.random_range(0.0..std::f64::consts::TAU);
        let target = offset(here, r * theta.cos(), r * theta.sin())
            .filter(|p| haversine_m(*p, self.center) <= self.config.radius_m)
            .unwrap_or_else(|| self.random_point());
        Leg::drive(here, target, now, speed_mps)
    }

    pub(super) fn step_driver(&mut self, i: usize, seen: Seen) {
        let now = self.now;
        if !self.drivers[i].busy {
            match self.drivers[i].phase {
                DriverPhase::Offline => self.go_online(i),
                DriverPhase::Cruising => self.answer_offers(i, seen),
                phase => self.drive_trip(i, phase, seen),
            }
        }
        if self.drivers[i].phase == DriverPhase::Cruising && self.drivers[i].leg.done(now) {
            let (here, speed) = (self.drivers[i].leg.to, self.drivers[i].speed_mps);
            self.drivers[i].leg = self.cruise_leg(here, speed, now);
        }
        self.report_position(i);
    }

    fn go_online(&mut self, i: usize) {
        let d = &self.drivers[i];
        if self.now < d.online_at {
            return;
        }
        let (id, at) = (d.id, d.leg.to);
        if self.send(Actor::User(id), Command::SetDriverStatus { online: true, location: Some(at) }, Tag::Online(i)) {
            self.drivers[i].busy = true;
        }
    }

    fn answer_offers(&mut self, i: usize, seen: Seen) {
        let now = self.now;
        let Seen::Offers(offers) = seen else { return };
        self.drivers[i].decisions.retain(|d| offers.contains(&d.trip));
        for trip in offers {
            if self.drivers[i].decisions.iter().any(|d| d.trip == trip) {
                continue;
            }
            let roll = self.rng.random::<f64>();
            let (accept_p, decline_p) = (self.drivers[i].accept_p, self.drivers[i].decline_p);
            let answer = if roll < accept_p {
                Answer::Accept
            } else if roll < accept_p + decline_p {
                Answer::Decline
            } else {
                self.stats.ignored += 1;
                Answer::Ignore
            };
            let due = now.plus_millis(self.rng.random_range(1_000..=i64::from(self.config.reaction_max_s) * 1000));
            self.drivers[i].decisions.push(Decision { trip, due, answer, sent: false });
        }
        let next = self.drivers[i].decisions.iter_mut().find(|d| !d.sent && d.answer != Answer::Ignore && now >= d.due);
        let Some(decision) = next else { return };
        decision.sent = true;
        let (trip_id, answer) = (decision.trip, decision.answer);
        let driver = Actor::User(self.drivers[i].id);
        let sent = match answer {
            Answer::Accept => self.send(driver, Command::AcceptTrip { trip_id }, Tag::Accept(i, trip_id)),
            _ => self.send(driver, Command::DeclineTrip { trip_id }, Tag::Decline(i)),
        };
        if sent {
            self.drivers[i].busy = true;
        } else if let Some(d) = self.drivers[i].decisions.iter_mut().find(|d| d.trip == trip_id) {
            d.sent = false;
        }
    }

    fn drive_trip(&mut self, i: usize, phase: DriverPhase, seen: Seen) {
        let now = self.now;
        let (id, leg) = (self.drivers[i].id, self.drivers[i].leg);
        let Some(trip_id) = phase.trip() else { return };
        let ours = matches!(&seen, Seen::Trip(Some(t)) if t.driver_id == Some(id) && t.status.has_driver());
        if !ours {
            // The rider cancelled (or the trip is gone): back to the streets.
            self.release(trip_id, i);
            self.cruise(i);
            return;
        }
        let driver = Actor::User(id);
        let (command, tag) = match phase {
            DriverPhase::ToPickup { cancel_at: Some(at), .. } if now >= at => (
                Command::CancelTrip {
                    trip_id,
                    code: dispatch_core::trip::CancelReason::Other,
                    reason: "stuck in traffic".into(),
                },
                Tag::DriverCancel(i, trip_id),
            ),
            DriverPhase::ToPickup { .. } if leg.done(now) => (Command::DriverArrived { trip_id }, Tag::Arrived(i)),
            DriverPhase::AtPickup { start_at, .. } if now >= start_at => {
                // The rider tells the driver the code shown in the rider's app.
                let Some(code) = self.notes.get(&trip_id).map(|n| n.code.to_string()) else {
                    self.unexpected(&format!("no pickup code known for {trip_id}"));
                    return;
                };
                (Command::StartTrip { trip_id, pickup_code: code }, Tag::Start(i))
            }
            DriverPhase::Riding { .. } if leg.done(now) => {
                let driven_m = haversine_m(leg.from, leg.to).round() as u32;
                (
                    Command::CompleteTrip { trip_id, distance_m: Some(driven_m), dropoff: None },
                    Tag::Complete(i, trip_id),
                )
            }
            _ => return,
        };
        if self.send(driver, command, tag) {
            self.drivers[i].busy = true;
        }
    }

    fn report_position(&mut self, i: usize) {
        let now = self.now;
        let d = &self.drivers[i];
        if d.phase == DriverPhase::Offline || d.report_in_flight || now < d.next_report_at {
            return;
        }
        let moving = d.leg.moving(now);
        let report = LocationReport {
            point: d.leg.position(now),
            heading_deg: moving.then(|| d.leg.heading_deg()),
            speed_mps: Some(if moving { d.leg.speed_mps() } else { 0.0 }),
        };
        let id = d.id;
        if self.send(Actor::User(id), Command::UpdateLocation(report), Tag::Location(i)) {
            let d = &mut self.drivers[i];
            d.report_in_flight = true;
            d.next_report_at = now.plus_millis(i64::from(self.config.report_interval_ms));
        }
    }
}
