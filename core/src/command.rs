//! Commands (every change the engine can make), who sends them, and what they yield.
//!
//! A [`Command`] is what goes into the log: the writer fills in fresh ids and random
//! values ([`Command::stamp`]) *before* applying it, so the logged command carries
//! everything `apply` needs and replay never draws a random number or reads a clock.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::driver::Driver;
use crate::geo::LatLng;
use crate::id::{IdSource, TripId, UserId};
use crate::money::Currency;
use crate::state::State;
use crate::trip::{Parcel, PaymentMethod, PickupCode, Place, Trip, TripKind, WithdrawReason};
use crate::user::{Category, Role, User, Vehicle};

/// Who is asking. The engine looks the role up itself; it never trusts a claimed role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// The engine itself (deadlines) or the embedding program's own logic.
    System,
    /// The bootstrap administrator (the `DISPATCH_ADMIN_TOKEN` holder); has no user record.
    Admin,
    /// A user, whose role is read from the engine's state.
    User(UserId),
}

/// The rules of dispatch. Part of the state (set by a logged command) so that a
/// replay applies the rules that were in force, not today's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRules {
    /// Drivers offered a trip at once, nearest first.
    pub offers_per_round: u16,
    /// An offer lapses after this.
    pub offer_ttl_s: u32,
    /// No driver by then: the trip expires.
    pub timeout_s: u32,
    /// Drivers further than this from the pickup are not offered the trip.
    pub search_radius_m: u32,
    /// Positions older than this are never offered trips.
    pub stale_location_s: u32,
    /// A driver on a trip whose socket dropped keeps the trip this long.
    pub disconnect_grace_s: u32,
    /// Open trips one rider may have at once.
    pub open_trips_per_rider: u16,
    /// When a round finds nobody, look again after this.
    pub redispatch_retry_s: u32,
}

impl Default for DispatchRules {
    fn default() -> Self {
        Self {
            offers_per_round: 5,
            offer_ttl_s: 20,
            timeout_s: 120,
            search_radius_m: 5_000,
            stale_location_s: 30,
            disconnect_grace_s: 300,
            open_trips_per_rider: 3,
            redispatch_retry_s: 2,
        }
    }
}

impl DispatchRules {
    /// Most drivers one round may offer a trip to.
    pub const MAX_OFFERS_PER_ROUND: u16 = 100;

    /// Refuses rules that would make dispatch meaningless or unbounded.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::Invalid(format!("dispatch rules: {what}")));
        if !(1..=Self::MAX_OFFERS_PER_ROUND).contains(&self.offers_per_round) {
            return bad("offers_per_round must be 1-100");
        }
        if self.offer_ttl_s == 0 || self.timeout_s == 0 || self.redispatch_retry_s == 0 {
            return bad("offer_ttl_s, timeout_s and redispatch_retry_s must be positive");
        }
        if self.search_radius_m == 0 || self.search_radius_m > 100_000 {
            return bad("search_radius_m must be 1-100000");
        }
        if self.open_trips_per_rider == 0 {
            return bad("open_trips_per_rider must be positive");
        }
        Ok(())
    }
}

/// A new user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    /// Filled by the writer.
    pub id: Option<UserId>,
    /// Rider, driver or staff.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// E.164 phone number; unique per role.
    pub phone: String,
    /// Required for drivers, refused for others.
    pub vehicle: Option<Vehicle>,
}

/// The price of a new trip, as quoted to the rider and locked into the trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// The currency of the pickup's zone.
    pub currency: Currency,
    /// The estimated fare.
    pub estimate_minor: i64,
    /// The surge multiplier in force (10000 = ×1.0).
    pub surge_bps: u32,
    /// A coupon's discount included in the estimate.
    pub discount_minor: i64,
}

/// A trip request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTrip {
    /// Filled by the writer.
    pub id: Option<TripId>,
    /// Filled by the writer.
    pub pickup_code: Option<PickupCode>,
    /// Ride or parcel.
    pub kind: TripKind,
    /// Pickup.
    pub pickup: Place,
    /// Drop-off.
    pub dropoff: Place,
    /// Vehicle category.
    pub category: Category,
    /// Parcel trips only.
    pub parcel: Option<Parcel>,
    /// How the rider pays.
    pub payment_method: PaymentMethod,
    /// The price shown to the rider.
    pub quote: Quote,
}

/// A driver's position report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocationReport {
    /// Where.
    pub point: LatLng,
    /// Degrees from north.
    pub heading_deg: Option<f32>,
    /// Metres per second.
    pub speed_mps: Option<f32>,
}

/// Every change the engine can make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replaces the dispatch rules (system only).
    SetRules(DispatchRules),
    /// Creates a user (admin, or system for OTP sign-up).
    CreateUser(NewUser),
    /// A driver goes online (optionally with a position) or offline.
    SetDriverStatus {
        /// Online or offline.
        online: bool,
        /// A position to start from.
        location: Option<LatLng>,
    },
    /// Staff (admin) suspend or reinstate a driver. A suspended driver goes offline
    /// (at once, or when the current trip ends) and may not go online.
    SetDriverSuspended {
        /// Which driver.
        driver_id: UserId,
        /// Suspend (`true`) or reinstate (`false`).
        suspended: bool,
        /// Why (plain text, kept for the audit trail).
        reason: String,
    },
    /// A driver's position (not waited for fsync: see [`crate::Engine::update_location`]).
    UpdateLocation(LocationReport),
    /// A rider asks for a trip; the first dispatch round starts at once.
    CreateTrip(NewTrip),
    /// An offered driver takes the trip.
    AcceptTrip {
        /// Which.
        trip_id: TripId,
    },
    /// An offered driver says no; the trip moves on to the next drivers.
    DeclineTrip {
        /// Which.
        trip_id: TripId,
    },
    /// The assigned driver is at the pickup.
    DriverArrived {
        /// Which.
        trip_id: TripId,
    },
    /// The assigned driver starts the ride with the rider's pickup code.
    StartTrip {
        /// Which.
        trip_id: TripId,
        /// As typed by the driver.
        pickup_code: String,
    },
    /// The assigned driver ends the ride.
    CompleteTrip {
        /// Which.
        trip_id: TripId,
        /// Distance actually driven, if the app measured it.
        distance_m: Option<u32>,
        /// Where the ride actually ended, if not at the planned drop-off.
        dropoff: Option<LatLng>,
    },
    /// The rider (terminal), staff (terminal, no fee) or the assigned driver (back to searching) cancels.
    CancelTrip {
        /// Which.
        trip_id: TripId,
        /// Why (plain text).
        reason: String,
    },
    /// Fires every deadline due at the command's time (offer lapses, timeouts, re-dispatch).
    Tick,
}

impl Command {
    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::SetRules(_) => "set_rules",
            Command::CreateUser(_) => "create_user",
            Command::SetDriverStatus { .. } => "set_driver_status",
            Command::SetDriverSuspended { .. } => "set_driver_suspended",
            Command::UpdateLocation(_) => "update_location",
            Command::CreateTrip(_) => "create_trip",
            Command::AcceptTrip { .. } => "accept_trip",
            Command::DeclineTrip { .. } => "decline_trip",
            Command::DriverArrived { .. } => "driver_arrived",
            Command::StartTrip { .. } => "start_trip",
            Command::CompleteTrip { .. } => "complete_trip",
            Command::CancelTrip { .. } => "cancel_trip",
            Command::Tick => "tick",
        }
    }

    /// Whether the caller is answered before the command is durable. Only location
    /// updates: a position is re-sent every few seconds, and making drivers wait
    /// for an fsync per position would cost more than losing the last one in a crash.
    pub fn is_durability_exempt(&self) -> bool {
        matches!(self, Command::UpdateLocation(_))
    }

    /// Fills in fresh ids and random values left empty by the caller, drawing from
    /// `ids` and skipping ids already taken in `state`. Called by the writer only.
    pub fn stamp(&mut self, ids: &mut dyn IdSource, state: &State) {
        match self {
            Command::CreateUser(u) if u.id.is_none() => loop {
                let id = UserId::generate(ids);
                if state.user(id).is_none() {
                    u.id = Some(id);
                    break;
                }
            },
            Command::CreateTrip(t) => {
                if t.id.is_none() {
                    t.id = Some(loop {
                        let id = TripId::generate(ids);
                        if state.trip(id).is_none() {
                            break id;
                        }
                    });
                }
                if t.pickup_code.is_none() {
                    t.pickup_code = Some(PickupCode::from_random(ids.next_u64()));
                }
            }
            _ => {}
        }
    }
}

/// What a command produced, for its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to return.
    Done,
    /// The user created.
    User(Arc<User>),
    /// The driver's record after the change.
    Driver(Arc<Driver>),
    /// The trip after the change.
    Trip(Arc<Trip>),
}

/// What happened, for the gateway to push and the outbox to deliver. Events are
/// published only after the commands that caused them are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A trip was offered to a driver.
    TripOffered {
        /// The trip as it is now.
        trip: Arc<Trip>,
        /// To whom.
        driver_id: UserId,
        /// When the offer lapses.
        expires_at: Timestamp,
        /// How far the driver is from the pickup.
        distance_to_pickup_m: u32,
    },
    /// An offer was taken back before the driver answered.
    OfferWithdrawn {
        /// Which trip.
        trip_id: TripId,
        /// From whom.
        driver_id: UserId,
        /// Why.
        reason: WithdrawReason,
    },
    /// A trip changed (status, driver, fare…): pushed to its rider and driver.
    TripUpdated {
        /// The trip as it is now.
        trip: Arc<Trip>,
    },
    /// A driver's position changed.
    DriverMoved {
        /// Who.
        driver_id: UserId,
        /// The trip the driver is on, if any (its rider sees the position).
        trip_id: Option<TripId>,
        /// Where.
        point: LatLng,
        /// Degrees from north.
        heading_deg: Option<f32>,
        /// When.
        at: Timestamp,
    },
}
