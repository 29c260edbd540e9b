//! A simulated rider: idle, then asks for a ride from a pickup around a demand hotspot (or
//! anywhere in the city area) to a random drop-off in it (priced on a straight-line route,
//! paid cash; about [`STOPS_SHARE`] of rides with 1 to `MAX_STOPS` stops on the way, priced
//! leg by leg) — now, or sometimes booked 15 to 17 minutes ahead —, waits, gives up
//! (cancels through the engine) once the ride has searched longer than its patience,
//! sometimes cancels before pickup anyway (a ride booked ahead, perhaps before its
//! dispatch, free), and once the trip has ended (completed, cancelled or expired) counts
//! how it went and is idle again.
//!
//! Guarantees upheld here (*bounded*): a rider has at most one open trip and at most one
//! command in flight (`busy`). Its idle time is exponential, with mean
//! [`SimConfig::rider_idle_mean_s`](crate::SimConfig::rider_idle_mean_s) and capped at a
//! day, so that riders ask independently of each other.

use rand::Rng;

use dispatch_core::clock::Timestamp;
use dispatch_core::command::{Actor, Command, NewTrip};
use dispatch_core::geo::{LatLng, haversine_m};
use dispatch_core::id::{TripId, UserId};
use dispatch_core::trip::{MAX_STOPS, OfferState, PaymentMethod, Place, Trip, TripKind, TripStatus};

use super::{Seen, Sim, Tag};

/// Riders ask for drop-offs at least this far from the pickup.
const MIN_RIDE_M: f64 = 500.0;

/// The share of rides booked with stops on the way.
pub(super) const STOPS_SHARE: f64 = 0.2;

/// How far off the pickup → drop-off line a stop may be, each way, north and east.
const STOP_OFFSET_M: f64 = 400.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum RiderPhase {
    /// Until the first step, `request_at` is an offset from it.
    Idle {
        request_at: Timestamp,
    },
    Waiting {
        trip: TripId,
        cancel_at: Option<Timestamp>,
    },
}

pub(super) struct RiderAgent {
    pub(super) id: UserId,
    /// How long this rider lets a ride search before giving up, ms; `None`: for ever.
    pub(super) patience_ms: Option<i64>,
    pub(super) phase: RiderPhase,
    pub(super) busy: bool,
}

impl Sim<'_> {
    pub(super) fn step_rider(&mut self, i: usize, seen: Seen) {
        let now = self.now;
        if self.riders[i].busy {
            return;
        }
        match self.riders[i].phase {
            RiderPhase::Idle { request_at } if now >= request_at => {
                let (pickup, dropoff) = self.random_ride();
                let stops = self.random_stops(pickup, dropoff);
                let mut waypoints = vec![pickup];
                waypoints.extend(stops.iter().map(|s| s.point));
                waypoints.push(dropoff);
                // Some book ahead: 15 minutes (and a margin for the engine's clock) to 17.
                let scheduled_at = self
                    .rng
                    .random_bool(self.config.scheduled_probability)
                    .then(|| now.plus_millis(905_000 + self.rng.random_range(0..=115_000)));
                let new = NewTrip {
                    id: None,
                    pickup_code: None,
                    reference: None,
                    kind: TripKind::Ride,
                    pickup: Place::at(pickup),
                    dropoff: Place::at(dropoff),
                    stops,
                    category: self.category.clone(),
                    parcel: None,
                    payment_method: PaymentMethod::Cash,
                    route: self.route.through(&waypoints),
                    coupon: None,
                    bid_minor: None,
                    scheduled_at,
                };
                let rider = self.riders[i].id;
                if self.send(Actor::User(rider), Command::CreateTrip(new), Tag::CreateTrip(i)) {
                    self.riders[i].busy = true;
                }
            }
            RiderPhase::Idle { .. } => {}
            RiderPhase::Waiting { trip, cancel_at } => {
                let t = match seen {
                    Seen::Trip(Some(t)) => t,
                    // Gone from the view between two steps: it finished and a checkpoint
                    // archived it (data directories only). The history has it: one read,
                    // on this rare path only, or the rider would wait for ever.
                    Seen::Trip(None) => match self.engine.find_trip(trip) {
                        Ok(Some(t)) => t,
                        Ok(None) => {
                            self.unexpected(&format!("trip {trip} is neither live nor in the history"));
                            let request_at = self.next_request(now);
                            self.riders[i].phase = RiderPhase::Idle { request_at };
                            return;
                        }
                        Err(e) => {
                            self.unexpected(&e);
                            return;
                        }
                    },
                    Seen::Nothing | Seen::Offers(_) => return,
                };
                // A ride booked ahead searches from its dispatch on: its search began after
                // its booking (a ride cancelled while still scheduled never searched).
                if let Some(note) = self.notes.get_mut(&trip)
                    && note.scheduled
                    && t.status != TripStatus::Scheduled
                {
                    note.scheduled = false;
                    if t.searching_since > t.created_at {
                        self.stats.scheduled_dispatched += 1;
                    }
                }
                // A ride booked ahead is waited for from its dispatch on.
                let asked_at = if t.scheduled_at.is_some() { t.searching_since } else { t.created_at };
                let gives_up = t.status == TripStatus::Searching
                    && self.riders[i].patience_ms.is_some_and(|p| now.millis_since(asked_at) >= p);
                let changes_mind = cancel_at.is_some_and(|at| now >= at)
                    && matches!(t.status, TripStatus::Scheduled | TripStatus::Searching | TripStatus::Accepted);
                if t.status.is_terminal() {
                    self.trip_ended(&t);
                    let request_at = self.next_request(now);
                    self.riders[i].phase = RiderPhase::Idle { request_at };
                } else if gives_up || changes_mind {
                    let rider = self.riders[i].id;
                    let (code, reason) = if gives_up {
                        (dispatch_core::trip::CancelReason::Other, "waited too long")
                    } else {
                        (dispatch_core::trip::CancelReason::ChangedMind, "changed my mind")
                    };
                    let cancel = Command::CancelTrip { trip_id: trip, code, reason: reason.into() };
                    if self.send(Actor::User(rider), cancel, Tag::RiderCancel(i, gives_up)) {
                        self.riders[i].busy = true;
                        self.riders[i].phase = RiderPhase::Waiting { trip, cancel_at: None };
                    }
                }
            }
        }
    }

    fn trip_ended(&mut self, t: &Trip) {
        match t.status {
            TripStatus::Completed => self.stats.trips_completed += 1,
            TripStatus::Cancelled => self.stats.trips_cancelled += 1,
            TripStatus::Expired => self.stats.trips_expired += 1,
            _ => return,
        }
        // Ended without a first accept, after searching (not cancelled while booked ahead).
        let searched = t.scheduled_at.is_none() || t.searching_since > t.created_at;
        let matched = self.notes.get(&t.id).is_some_and(|n| n.matched);
        if !matched && searched {
            self.stats.trips_unmatched += 1;
        }
        self.stats.offers_on_finished_trips += t.offers.len() as u64;
        for o in &t.offers {
            match o.state {
                OfferState::Declined => self.stats.declines += 1,
                OfferState::Lapsed => self.stats.lapses += 1,
                _ => {}
            }
        }
        self.notes.remove(&t.id);
    }

    // ----- randomness --------------------------------------------------------------

    pub(super) fn next_request(&mut self, now: Timestamp) -> Timestamp {
        // Exponential idle time: riders ask independently of each other.
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let ms = -u.ln() * f64::from(self.config.rider_idle_mean_s) * 1000.0;
        now.plus_millis(ms.min(24.0 * 3_600_000.0) as i64)
    }

    /// A pickup and a drop-off at least [`MIN_RIDE_M`] apart (when the area allows).
    fn random_ride(&mut self) -> (LatLng, LatLng) {
        let pickup = self.random_pickup();
        let mut dropoff = self.random_point();
        for _ in 0..10 {
            if haversine_m(pickup, dropoff) >= MIN_RIDE_M {
                break;
            }
            dropoff = self.random_point();
        }
        (pickup, dropoff)
    }

    /// Around a hotspot (a share [`SimConfig::hotspot_share`](crate::SimConfig) of the time,
    /// one chosen uniformly), else — or if that would leave the area — anywhere in it.
    fn random_pickup(&mut self) -> LatLng {
        let n = self.hotspots.len();
        if n == 0 || !self.rng.random_bool(self.config.hotspot_share) {
            return self.random_point();
        }
        let k = self.rng.random_range(0..n);
        let r = self.config.hotspot_radius_m * self.rng.random::<f64>().sqrt();
        let theta = self.rng.random_range(0.0..std::f64::consts::TAU);
        self.hotspots
            .centre(k, self.now)
            .and_then(|c| crate::geo::offset(c, r * theta.cos(), r * theta.sin()))
            .filter(|p| haversine_m(*p, self.center) <= self.config.radius_m)
            .unwrap_or_else(|| self.random_point())
    }

    /// For about [`STOPS_SHARE`] of rides, 1 to `MAX_STOPS` stops spread along the line
    /// from `pickup` to `dropoff`, in order, each up to [`STOP_OFFSET_M`] off it; else none.
    fn random_stops(&mut self, pickup: LatLng, dropoff: LatLng) -> Vec<Place> {
        if !self.rng.random_bool(STOPS_SHARE) {
            return Vec::new();
        }
        let n = self.rng.random_range(1..=MAX_STOPS);
        (1..=n)
            .map(|k| {
                let t = k as f64 / (n + 1) as f64;
                let lerp = |a: f64, b: f64| a + (b - a) * t;
                // Between two valid points, so valid; the pickup should that ever fail.
                let along =
                    LatLng::new(lerp(pickup.lat(), dropoff.lat()), lerp(pickup.lng(), dropoff.lng())).unwrap_or(pickup);
                let north = self.rng.random_range(-STOP_OFFSET_M..=STOP_OFFSET_M);
                let east = self.rng.random_range(-STOP_OFFSET_M..=STOP_OFFSET_M);
                Place::at(crate::geo::offset(along, north, east).unwrap_or(along))
            })
            .collect()
    }
}
