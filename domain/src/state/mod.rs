//! The live state of a city and [`apply`], the one function that changes it.
//!
//! `apply(state, actor, command, now, effects)` is pure and deterministic: no clock
//! reads, no randomness, no I/O, and no dependence on hash-map iteration order.
//! The same commands at the same instants give the same state, bit for bit — which
//! is what makes the write-ahead log a complete description of the state.
//!
//! Guarantees upheld here (and checked by [`State::check_invariants`]):
//! - a refused command changes nothing: every handler checks all its conditions
//!   before its first write;
//! - a trip has at most one driver, and a driver is on at most one open trip: both
//!   sides change in the same command;
//! - every trip status change follows an edge of [`TripStatus::can_become`];
//! - a driver's pending offers and the trips' pending offers mirror each other;
//! - the spatial index holds exactly the drivers at work (not offline), each at its last
//!   fix (positions and the index: `location.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::clock::Timestamp;
use crate::command::{Actor, Command, DispatchRules, Event, NewTrip, NewUser, Outcome, Remembered};
use crate::driver::{Availability, Driver, MAX_PENDING_OFFERS};
use crate::error::{Error, Result};
use crate::geo::{CategoryCode, DriverIndex, IndexedDriver, LatLng};
use crate::id::{AlertId, TripId, UserId, ZoneId};
use crate::ledger::Ledger;
use crate::otp::OtpRecord;
use crate::trip::{
    Cancellation, CancelledBy, GatewayAction, LockedCoupon, LockedPrice, MAX_OFFERS_PER_TRIP, MAX_REASON_LEN, Offer,
    OfferState, PaymentMethod, PaymentStatus, PickupCode, Trip, TripFare, TripKind, TripPayment, TripStatus,
    WithdrawReason,
};
use crate::user::{self, Role, User};
use crate::zone::{Catalog, CouponRecord, SurgeReading};

/// A moment at which the engine must act, kept in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Deadline {
    /// An offer lapses unless answered.
    OfferLapse {
        /// Which trip.
        trip_id: TripId,
        /// Whose offer.
        driver_id: UserId,
    },
    /// A searching trip expires unless accepted.
    TripTimeout(TripId),
    /// A trip that found nobody looks again.
    Redispatch(TripId),
    /// Zone surges are recomputed.
    Surge,
    /// A driver whose socket dropped during a trip has not come back.
    DisconnectGrace(UserId),
    /// Forget OTP records nothing depends on any more.
    Housekeeping,
    /// A hold (a wallet's at booking, a card's authorisation) lapses unless settled by
    /// then: it is voided, and a card payment still authorised is `expired`.
    HoldExpiry {
        /// The trip it is for (it may have left the hot state since).
        trip_id: TripId,
        /// The pending transfer.
        hold: crate::id::TransferId,
    },
}

/// The live world: users, drivers, trips, the rules and the pending deadlines.
///
/// The spatial index of drivers is derived from the drivers' positions: it is
/// not serialized, it is rebuilt when a state is deserialized, and it takes no
/// part in equality.
///
/// The collections that grow with the number of *accounts* (users, the phone index,
/// OTP records, the ledger's accounts, a coupon's uses per rider) are persistent B-trees
/// ([`imbl::OrdMap`]): a clone shares them and costs O(1) in their size, which is what
/// lets the writer hand a checkpoint its own copy without stalling (a write after the
/// clone copies only the path to its entry). B-trees rather than `imbl::HashMap`: about
/// the heap of a std map (a HAMT took twice it), several times faster to iterate (to
/// encode), in key order. So are the trips, the deadlines and the hot idempotency window:
/// the writer copied them at every checkpoint, and at 24,000 trips and 48,000 deadlines
/// that copy was 2.7-4.3 ms in which no batch was committed, the largest part of the
/// accept p99 while checkpointing. Only the drivers (the location hot path, where a
/// std map's lookups are faster), the open-trip counts, surge, coupons, alerts and
/// gateway event ids stay std maps and are copied: they are small or sized by the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct State {
    rules: DispatchRules,
    users: imbl::OrdMap<UserId, Arc<User>>,
    phones: imbl::OrdMap<(Role, String), UserId>,
    drivers: HashMap<UserId, Arc<Driver>>,
    trips: imbl::OrdMap<TripId, Arc<Trip>>,
    open_trips_by_rider: HashMap<UserId, u16>,
    deadlines: imbl::OrdSet<(Timestamp, Deadline)>,
    catalog: Arc<Catalog>,
    surge: BTreeMap<ZoneId, SurgeReading>,
    coupons: BTreeMap<String, Arc<CouponRecord>>,
    alerts: BTreeMap<AlertId, Arc<Alert>>,
    otps: imbl::OrdMap<String, OtpRecord>,
    idempotency: imbl::OrdMap<(Actor, String), Arc<Remembered>>,
    idempotency_expiry: imbl::OrdSet<(Timestamp, Actor, String)>,
    ledger: Ledger,
    gateway_events: BTreeMap<(String, String), Timestamp>,
    #[serde(skip)]
    index: Positions,
}

/// The collections of a [`State`] that a checkpoint keeps as rows of their own tables
/// (`checkpoint.rs`) rather than inside its state blob: those that grow with accounts
/// (users, the phone index — not stored: rebuilt from the users —, OTP records, the
/// ledger's accounts) — a checkpoint writes only the entries changed since the previous
/// one — and the zones, which the API lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountRows {
    /// Every user, by id.
    pub users: imbl::OrdMap<UserId, Arc<User>>,
    /// The phone index: (role, phone) → user (derived from the users).
    pub phones: imbl::OrdMap<(Role, String), UserId>,
    /// Sign-in codes and attempts, by phone.
    pub otps: imbl::OrdMap<String, OtpRecord>,
    /// The ledger's accounts and their totals.
    pub ledger_accounts: imbl::OrdMap<crate::ledger::AccountKey, crate::ledger::Account>,
    /// The zones.
    pub zones: Arc<Catalog>,
}

/// Every driver at work (not offline) with a known position, in an R-tree (see
/// [`DriverIndex`] and `State::sync_index`).
/// Derived data: always equal, so `State`'s equality is that of its records.
#[derive(Debug, Clone, Default)]
struct Positions(DriverIndex);

impl PartialEq for Positions {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // The same fields in the same order as `Serialize` writes them (postcard is positional).
        #[derive(Deserialize)]
        struct Records {
            rules: DispatchRules,
            users: imbl::OrdMap<UserId, Arc<User>>,
            phones: imbl::OrdMap<(Role, String), UserId>,
            drivers: HashMap<UserId, Arc<Driver>>,
            trips: imbl::OrdMap<TripId, Arc<Trip>>,
            open_trips_by_rider: HashMap<UserId, u16>,
            deadlines: imbl::OrdSet<(Timestamp, Deadline)>,
            catalog: Arc<Catalog>,
            surge: BTreeMap<ZoneId, SurgeReading>,
            coupons: BTreeMap<String, Arc<CouponRecord>>,
            alerts: BTreeMap<AlertId, Arc<Alert>>,
            otps: imbl::OrdMap<String, OtpRecord>,
            idempotency: imbl::OrdMap<(Actor, String), Arc<Remembered>>,
            idempotency_expiry: imbl::OrdSet<(Timestamp, Actor, String)>,
            ledger: Ledger,
            gateway_events: BTreeMap<(String, String), Timestamp>,
        }
        let r = Records::deserialize(d)?;
        // Drivers at work, at their last fix (see `State::sync_index`).
        let index = DriverIndex::from_drivers(
            r.drivers.values().filter(|d| d.availability != Availability::Offline).filter_map(|d| {
                d.fix.map(|f| IndexedDriver {
                    id: d.id,
                    position: f.point,
                    category: CategoryCode(0),
                    recorded_at: f.at,
                })
            }),
        );
        Ok(State {
            rules: r.rules,
            users: r.users,
            phones: r.phones,
            drivers: r.drivers,
            trips: r.trips,
            open_trips_by_rider: r.open_trips_by_rider,
            deadlines: r.deadlines,
            catalog: r.catalog,
            surge: r.surge,
            coupons: r.coupons,
            alerts: r.alerts,
            otps: r.otps,
            idempotency: r.idempotency,
            idempotency_expiry: r.idempotency_expiry,
            ledger: r.ledger,
            gateway_events: r.gateway_events,
            index: Positions(index),
        })
    }
}

/// What applying commands produced besides their outcomes: events to publish and
/// the entities that changed (for the writer to publish to readers). Owned by the
/// writer, cleared after each batch.
#[derive(Debug, Default)]
pub struct Effects {
    /// Events, in the order they happened.
    pub events: Vec<Event>,
    /// Zones, surge, coupons or alerts changed: readers need the new catalog.
    pub catalog: bool,
    /// Trips changed, added or removed (archived).
    pub trips: Vec<TripId>,
    /// Users changed or added.
    pub users: Vec<UserId>,
    /// Driver records changed, added or removed.
    pub drivers: Vec<UserId>,
    /// Ledger accounts whose totals changed.
    pub accounts: Vec<crate::ledger::AccountKey>,
    /// Transfers added, changed or removed (archived).
    pub transfers: Vec<crate::id::TransferId>,
}

impl Effects {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && !self.catalog
            && self.trips.is_empty()
            && self.users.is_empty()
            && self.drivers.is_empty()
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.events.clear();
        self.catalog = false;
        self.accounts.clear();
        self.transfers.clear();
        self.trips.clear();
        self.users.clear();
        self.drivers.clear();
    }
}

/// Who the actor of a command turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    System,
    Staff { admin: bool },
    Rider(UserId),
    Driver(UserId),
}

/// 410 `offer_expired` unless the offer still waits for an answer at `now`.
fn check_live(offer: &Offer, trip_id: TripId, now: Timestamp) -> Result<()> {
    if offer.state == OfferState::Pending && offer.expires_at > now {
        Ok(())
    } else {
        Err(Error::OfferExpired(trip_id))
    }
}

/// A free-text reason: bounded, no control characters but newlines.
fn validate_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > MAX_REASON_LEN || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::Invalid(format!(
            "reason must be at most {MAX_REASON_LEN} characters, without control characters"
        )));
    }
    Ok(())
}

/// Applies `command`, sent by `actor`, at `now`. On `Err` the state is unchanged
/// and nothing was added to `effects`.
pub fn apply(state: &mut State, actor: Actor, command: &Command, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
    let mark = fx.events.len();
    let result = state.dispatch_command(actor, command, now, fx);
    if result.is_err() {
        fx.events.truncate(mark);
    }
    result
}

impl State {
    /// An empty world with these rules.
    pub fn new(rules: DispatchRules) -> Self {
        Self { rules, ..Self::default() }
    }

    /// What a checkpoint encodes: a copy of everything but the spatial index, which a
    /// snapshot never holds (it is rebuilt from the drivers when read back). The writer
    /// pays this copy at every checkpoint, and the index was most of it: 10–11 ms of 15 at
    /// 100,000 drivers online. The copy is not for applying commands to (`nearest` on it
    /// finds nobody).
    pub fn copy_for_checkpoint(&self) -> State {
        State {
            rules: self.rules.clone(),
            users: self.users.clone(),
            phones: self.phones.clone(),
            drivers: self.drivers.clone(),
            trips: self.trips.clone(),
            open_trips_by_rider: self.open_trips_by_rider.clone(),
            deadlines: self.deadlines.clone(),
            catalog: Arc::clone(&self.catalog),
            surge: self.surge.clone(),
            coupons: self.coupons.clone(),
            alerts: self.alerts.clone(),
            otps: self.otps.clone(),
            idempotency: self.idempotency.clone(),
            idempotency_expiry: self.idempotency_expiry.clone(),
            ledger: self.ledger.clone(),
            gateway_events: self.gateway_events.clone(),
            index: Positions::default(),
        }
    }

    /// Takes out what a checkpoint stores as rows rather than in its state blob (see
    /// [`AccountRows`]), leaving those collections empty: O(1), the maps are persistent.
    pub fn take_rows(&mut self) -> AccountRows {
        let rows = self.rows();
        self.put_rows(AccountRows::default());
        rows
    }

    /// A copy of what [`State::take_rows`] would take, sharing it: O(1).
    pub fn rows(&self) -> AccountRows {
        AccountRows {
            users: self.users.clone(),
            phones: self.phones.clone(),
            otps: self.otps.clone(),
            ledger_accounts: self.ledger.account_map().clone(),
            zones: Arc::clone(&self.catalog),
        }
    }

    /// Puts back what [`State::take_rows`] took (a state read back from a checkpoint:
    /// its blob, then its rows).
    pub fn put_rows(&mut self, rows: AccountRows) {
        self.users = rows.users;
        self.phones = rows.phones;
        self.otps = rows.otps;
        self.ledger.set_accounts(rows.ledger_accounts);
        self.catalog = rows.zones;
    }

    /// The rules in force.
    pub fn rules(&self) -> &DispatchRules {
        &self.rules
    }

    /// A user.
    pub fn user(&self, id: UserId) -> Option<&Arc<User>> {
        self.users.get(&id)
    }

    /// A driver's live record.
    pub fn driver(&self, id: UserId) -> Option<&Arc<Driver>> {
        self.drivers.get(&id)
    }

    /// A trip.
    pub fn trip(&self, id: TripId) -> Option<&Arc<Trip>> {
        self.trips.get(&id)
    }

    /// Every trip, in no particular order.
    pub fn trips(&self) -> impl Iterator<Item = &Arc<Trip>> {
        self.trips.values()
    }

    /// Every user, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// Every driver, in no particular order.
    pub fn drivers(&self) -> impl Iterator<Item = &Arc<Driver>> {
        self.drivers.values()
    }

    /// The user with this phone number and role.
    pub fn user_by_phone(&self, role: Role, phone: &str) -> Option<&Arc<User>> {
        self.phones.get(&(role, phone.to_owned())).and_then(|id| self.users.get(id))
    }

    /// The earliest pending deadline (an idempotency key's expiry counts as one).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let deadline = self.deadlines.get_min().map(|(t, _)| *t);
        let expiry = self.idempotency_expiry.get_min().map(|(t, _, _)| *t);
        match (deadline, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn dispatch_command(
        &mut self,
        actor: Actor,
        command: &Command,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let who = self.who(actor)?;
        match command {
            Command::SetRules(rules) => self.set_rules(who, rules),
            Command::CreateUser(new) => self.create_user(who, new, now, fx),
            Command::SetDriverStatus { online, location } => self.set_driver_status(who, *online, *location, now, fx),
            Command::SetDriverSuspended { driver_id, suspended, reason } => {
                self.set_suspended(who, *driver_id, *suspended, reason, now, fx)
            }
            Command::UpdateLocation(report) => self.update_location(who, report, now, fx),
            Command::CreateTrip(new) => self.create_trip(who, new, now, fx),
            Command::AcceptTrip { trip_id } => self.accept(who, *trip_id, now, fx),
            Command::DeclineTrip { trip_id } => self.decline(who, *trip_id, now, fx),
            Command::DriverArrived { trip_id } => self.arrived(who, *trip_id, now, fx),
            Command::StartTrip { trip_id, pickup_code } => self.start(who, *trip_id, pickup_code, now, fx),
            Command::CompleteTrip { trip_id, distance_m, dropoff } => {
                self.complete(who, *trip_id, *distance_m, *dropoff, now, fx)
            }
            Command::CancelTrip { trip_id, reason } => self.cancel(who, *trip_id, reason, now, fx),
            Command::Tick => {
                self.fire_deadlines(now, fx)?;
                self.purge_expired(now);
                Ok(Outcome::Done)
            }
            Command::CreateZone { id, zone } => self.create_zone(who, *id, zone, now, fx),
            Command::ReplaceZone { zone_id, zone } => self.replace_zone(who, *zone_id, zone, now, fx),
            Command::CreateCoupon { id, coupon } => self.create_coupon(who, *id, coupon, now, fx),
            Command::PlaceBid { id, trip_id, amount_minor } => {
                self.place_bid(who, *id, *trip_id, *amount_minor, now, fx)
            }
            Command::AcceptBid { trip_id, bid_id } => self.accept_bid(who, *trip_id, *bid_id, now, fx),
            Command::RateTrip { trip_id, stars, comment } => {
                self.rate_trip(who, *trip_id, *stars, comment.as_deref(), now, fx)
            }
            Command::RaiseSos { id, trip_id, location, note } => {
                self.raise_sos(who, *id, *trip_id, *location, note.as_deref(), now, fx)
            }
            Command::AckAlert { alert_id } => self.ack_alert(who, actor, *alert_id, now, fx),
            Command::SetPresence { connected } => self.set_presence(who, *connected, now, fx),
            Command::RevokeTokens { user_id } => self.revoke_tokens(who, *user_id, fx),
            Command::IssueOtp { phone, role, code_hash } => self.issue_otp(who, phone, *role, code_hash, now),
            Command::VerifyOtp { phone, code_hash, new_user_id } => {
                self.verify_otp(who, phone, code_hash, *new_user_id, now, fx)
            }
            Command::Keyed { key, command, archived } => self.keyed(actor, key, command, archived.as_deref(), now, fx),
            Command::Restored { trip, command } => self.restored(actor, trip, command, now, fx),
            Command::Archive { trips, transfer_ids, keys, gateway_events } => {
                self.archive(who, trips, transfer_ids, fx)?;
                self.archive_keys(keys, gateway_events);
                Ok(Outcome::Done)
            }
            Command::CreditWallet { id, user_id, amount_minor, currency, reason } => {
                validate_reason(reason)?;
                self.credit_wallet(who, *id, *user_id, *amount_minor, *currency, now, fx)
            }
            Command::Refund { id, trip_id, amount_minor, reason } => {
                validate_reason(reason)?;
                self.refund(who, *id, *trip_id, *amount_minor, now, fx)
            }
            Command::PaymentEvent { gateway, event_id, kind, trip_id, amount_minor, currency, archived } => {
                let (amount, currency) = (*amount_minor, *currency);
                self.payment_event(who, gateway, event_id, *kind, *trip_id, amount, currency, *archived, now, fx)
            }
            Command::RecordDeadLetter { trip_id, action, error, attempts } => {
                self.record_dead_letter(who, *trip_id, *action, error, *attempts, now, fx)
            }
            Command::SetPaymentMethod { trip_id, method } => self.set_payment_method(who, *trip_id, *method, now, fx),
        }
    }

    fn who(&self, actor: Actor) -> Result<Who> {
        match actor {
            Actor::System => Ok(Who::System),
            Actor::Admin => Ok(Who::Staff { admin: true }),
            // A driver record is a driver's (`check_invariants`): the drivers map, which
            // the driver's command reads next anyway, answers without a look-up in the
            // (persistent, deeper) users map — the location hot path never touches it.
            Actor::User(id) if self.drivers.contains_key(&id) => Ok(Who::Driver(id)),
            Actor::User(id) => {
                let user = self.users.get(&id).ok_or_else(|| Error::Forbidden(format!("unknown user {id}")))?;
                Ok(match user.role {
                    Role::Rider => Who::Rider(id),
                    Role::Driver => Who::Driver(id),
                    Role::Support => Who::Staff { admin: false },
                    Role::Admin => Who::Staff { admin: true },
                })
            }
        }
    }

    // ----- users and drivers -------------------------------------------------

    fn set_rules(&mut self, who: Who, rules: &DispatchRules) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the system sets dispatch rules".into()));
        }
        rules.validate()?;
        self.rules = rules.clone();
        Ok(Outcome::Done)
    }

    fn create_user(&mut self, who: Who, new: &NewUser, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        if !matches!(who, Who::System | Who::Staff { admin: true }) {
            return Err(Error::Forbidden("only an admin creates users".into()));
        }
        let id = new.id.ok_or_else(|| Error::Internal("user id not stamped".into()))?;
        if self.users.contains_key(&id) {
            return Err(Error::Invalid(format!("user {id} already exists")));
        }
        user::validate_name(&new.name)?;
        user::validate_phone(&new.phone)?;
        match (&new.vehicle, new.role) {
            (Some(v), Role::Driver) => {
                user::validate_vehicle(v)?;
                if !self.catalog.prices(&v.category) {
                    return Err(Error::Invalid(format!(
                        "no zone prices category {}: create the zone's pricing before its drivers",
                        v.category
                    )));
                }
            }
            (None, Role::Driver) => return Err(Error::Invalid("a driver needs a vehicle".into())),
            (Some(_), _) => return Err(Error::Invalid("only drivers have a vehicle".into())),
            (None, _) => {}
        }
        let phone_key = (new.role, new.phone.clone());
        if self.phones.contains_key(&phone_key) {
            return Err(Error::Invalid(format!("a {} with this phone number already exists", new.role.as_str())));
        }
        let user = Arc::new(User {
            id,
            role: new.role,
            name: new.name.clone(),
            phone: new.phone.clone(),
            vehicle: new.vehicle.clone(),
            token_generation: 0,
            suspended: false,
            created_at: now,
        });
        if let Some(v) = &new.vehicle {
            self.drivers.insert(id, Arc::new(Driver::new(id, v.category.clone())));
            fx.drivers.push(id);
        }
        self.phones.insert(phone_key, id);
        self.users.insert(id, Arc::clone(&user));
        fx.users.push(id);
        Ok(Outcome::User(user))
    }

    fn driver_of(&self, who: Who) -> Result<UserId> {
        match who {
            Who::Driver(id) => Ok(id),
            _ => Err(Error::Forbidden("only drivers do this".into())),
        }
    }

    fn set_driver_status(
        &mut self,
        who: Who,
        online: bool,
        location: Option<LatLng>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = self.driver_of(who)?;
        let driver = self.drivers.get(&id).ok_or_else(|| Error::Internal(format!("driver {id} has no record")))?;
        if online && driver.suspended {
            return Err(Error::Forbidden("this driver is suspended".into()));
        }
        if !online && driver.availability == Availability::OnTrip {
            return Err(Error::InvalidTransition {
                action: "go offline",
                entity: format!("driver {id}"),
                from: "on_trip",
            });
        }
        let coming_online = online && driver.availability == Availability::Offline;
        let going_offline = !online && driver.availability == Availability::Available;
        // The position first: it is checked like any report (free when coming online)
        // and may be refused as an implausible jump before anything changed.
        if let Some(point) = location {
            self.status_location(id, point, coming_online, now, fx)?;
        }
        if coming_online {
            let d = self.driver_mut(id, fx)?;
            d.availability = Availability::Available;
            d.online_since = Some(now);
            // Back in the index at the last fix (a stale one is never offered trips).
            self.sync_index(id);
        }
        if going_offline {
            self.set_offline(id, fx)?;
            // `expired`: API.md's offer_withdrawn reasons have none closer (see `WithdrawReason`).
            self.withdraw_driver_offers(id, None, WithdrawReason::Expired, now, fx)?;
        }
        Ok(Outcome::Driver(Arc::clone(self.driver_ref(id)?)))
    }

    fn set_suspended(
        &mut self,
        who: Who,
        driver_id: UserId,
        suspended: bool,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if !matches!(who, Who::System | Who::Staff { admin: true }) {
            return Err(Error::Forbidden("only an admin suspends drivers".into()));
        }
        validate_reason(reason)?;
        let driver = self.drivers.get(&driver_id).ok_or_else(|| Error::not_found("driver", driver_id))?;
        let going_offline = suspended && driver.availability == Availability::Available;
        let d = self.driver_mut(driver_id, fx)?;
        d.suspended = suspended;
        if going_offline {
            self.set_offline(driver_id, fx)?;
            self.withdraw_driver_offers(driver_id, None, WithdrawReason::Expired, now, fx)?;
        }
        if let Some(u) = self.users.get_mut(&driver_id) {
            Arc::make_mut(u).suspended = suspended;
            fx.users.push(driver_id);
        }
        Ok(Outcome::Driver(Arc::clone(self.driver_ref(driver_id)?)))
    }

    // ----- trips -------------------------------------------------------------

    fn create_trip(&mut self, who: Who, new: &NewTrip, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let Who::Rider(rider_id) = who else {
            return Err(Error::Forbidden("only riders ask for trips".into()));
        };
        let id = new.id.ok_or_else(|| Error::Internal("trip id not stamped".into()))?;
        let pickup_code = new.pickup_code.ok_or_else(|| Error::Internal("pickup code not stamped".into()))?;
        if self.trips.contains_key(&id) {
            return Err(Error::Invalid(format!("trip {id} already exists")));
        }
        new.pickup.validate()?;
        new.dropoff.validate()?;
        match (new.kind, &new.parcel) {
            (TripKind::Parcel, Some(p)) => p.validate()?,
            (TripKind::Parcel, None) => {
                return Err(Error::Invalid("a parcel trip needs parcel details".into()));
            }
            (TripKind::Ride, Some(_)) => {
                return Err(Error::Invalid("parcel details belong to parcel trips".into()));
            }
            (TripKind::Ride, None) => {}
        }
        let open = self.open_trips_by_rider.get(&rider_id).copied().unwrap_or(0);
        if open >= self.rules.open_trips_per_rider {
            return Err(Error::TooManyOpenTrips(self.rules.open_trips_per_rider));
        }
        let book = self.price_book();
        let zone = Arc::clone(book.catalog.lookup(new.pickup.point)?);
        let surge_bps = book.surge_bps(zone.id);
        let coupon = new.coupon.as_deref().map(|code| book.coupon(code)).transpose()?.map(Arc::clone);
        let quote = crate::zone::price(
            &zone,
            surge_bps,
            &new.category,
            &new.route,
            coupon.as_deref().map(|c| (c, rider_id)),
            now,
        )?;
        let pricing =
            *zone.spec.pricing.get(&new.category).ok_or_else(|| Error::NoPricing(new.category.to_string()))?;
        if let Some(bid) = new.bid_minor
            && !(1..=MAX_BID_MINOR).contains(&bid)
        {
            return Err(Error::Invalid(format!("bid amount_minor must be 1 to {MAX_BID_MINOR}")));
        }

        let mut trip = Trip {
            id,
            status: TripStatus::Searching,
            kind: new.kind,
            rider_id,
            driver_id: None,
            category: new.category.clone(),
            pickup: new.pickup.clone(),
            dropoff: new.dropoff.clone(),
            parcel: new.parcel.clone(),
            fare: TripFare {
                estimate_minor: new.bid_minor.unwrap_or(quote.fare.amount_minor),
                final_minor: None,
                currency: quote.fare.currency,
                surge_bps: quote.surge_bps,
                discount_minor: quote.discount_minor,
                locked: LockedPrice {
                    pricing,
                    extra_fee_minor: zone.spec.extra_fee_minor,
                    coupon: coupon.as_ref().map(|c| LockedCoupon {
                        id: c.coupon.id,
                        code: c.coupon.code.clone(),
                        discount: c.coupon.discount,
                    }),
                    route: new.route,
                    agreed_minor: None,
                },
                estimate_breakdown: quote.breakdown,
                final_breakdown: None,
                cancel_fee_minor: None,
            },
            payment: TripPayment::new(new.payment_method),
            pickup_code,
            offers: Vec::new(),
            round: 0,
            created_at: now,
            updated_at: now,
            revision: 0,
            searching_since: now,
            accepted_at: None,
            arrived_at: None,
            started_at: None,
            ended_at: None,
            distance_m: None,
            driven_m: None,
            cancellation: None,
            zone_id: zone.id,
            rider_offer_minor: new.bid_minor,
            bids: Vec::new(),
            rider_rating: None,
            driver_rating: None,
        };
        // The wallet hold is the last check (it can refuse) and the first write.
        if new.payment_method == PaymentMethod::Wallet {
            trip.payment.hold =
                self.hold_for_booking(id, rider_id, trip.fare.currency, trip.fare.estimate_minor, now, fx)?;
            if let Some(hold) = trip.payment.hold {
                let expires = now.plus_secs(self.rules.wallet_hold_ttl_s);
                self.deadlines.insert((expires, Deadline::HoldExpiry { trip_id: id, hold }));
            }
        }
        self.trips.insert(id, Arc::new(trip));
        self.open_trips_by_rider.insert(rider_id, open + 1);
        if let Some(code) = &new.coupon {
            self.count_coupon_use(code, rider_id, true, fx);
        }
        self.deadlines.insert((now.plus_secs(self.rules.timeout_s), Deadline::TripTimeout(id)));
        fx.trips.push(id);
        self.dispatch_round(id, now, fx)?;
        self.trip_updated(id, fx)
    }

    /// Accept, in the order of refusals the API fixes: 404, 403 `not_offered`,
    /// 409 `trip_already_assigned`, 409 `driver_not_available`, 410 `offer_expired`.
    fn accept(&mut self, who: Who, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (driver_id, offer) = self.offer_to_answer(who, trip_id, "accept")?;
        let driver = self.driver_ref(driver_id)?;
        if driver.availability != Availability::Available || driver.suspended {
            return Err(Error::DriverNotAvailable(driver_id));
        }
        check_live(&offer, trip_id, now)?;
        self.assign(trip_id, driver_id, now, fx)
    }

    /// Gives the searching `trip_id` to the available `driver_id`: every check has
    /// passed. The trip and the driver change together; the other offers of the trip,
    /// and the driver's offers of other trips, are withdrawn.
    fn assign(&mut self, trip_id: TripId, driver_id: UserId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::Accepted, now)?;
        t.driver_id = Some(driver_id);
        t.accepted_at = Some(now);
        if t.rider_offer_minor.is_some() && t.fare.locked.agreed_minor.is_none() {
            // A bidding trip accepted at the rider's price.
            t.fare.locked.agreed_minor = t.rider_offer_minor;
        }
        if t.payment.method == PaymentMethod::Card && t.payment.status == PaymentStatus::Pending {
            t.payment.set_due(Some(GatewayAction::Authorize { amount_minor: t.fare.estimate_minor }));
        }
        let mut others = Vec::new();
        for o in &mut t.offers {
            if o.driver_id == driver_id {
                o.state = OfferState::Accepted;
            } else if o.state == OfferState::Pending {
                o.state = OfferState::Withdrawn(WithdrawReason::Taken);
                others.push(o.driver_id);
            }
        }
        for other in others {
            self.driver_mut(other, fx)?.pending_offers.retain(|t| *t != trip_id);
            fx.events.push(Event::OfferWithdrawn { trip_id, driver_id: other, reason: WithdrawReason::Taken });
        }
        let d = self.driver_mut(driver_id, fx)?;
        d.availability = Availability::OnTrip;
        d.trip_id = Some(trip_id);
        d.pending_offers.retain(|t| *t != trip_id);
        // The driver's offers of other trips go back to those trips.
        self.withdraw_driver_offers(driver_id, Some(trip_id), WithdrawReason::Taken, now, fx)?;
        self.trip_updated(trip_id, fx)
    }

    fn decline(&mut self, who: Who, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (driver_id, offer) = self.offer_to_answer(who, trip_id, "decline")?;
        check_live(&offer, trip_id, now)?;
        let t = self.trip_mut(trip_id, fx)?;
        if let Some(o) = t.offer_to_mut(driver_id) {
            o.state = OfferState::Declined;
        }
        t.updated_at = now;
        self.driver_mut(driver_id, fx)?.pending_offers.retain(|t| *t != trip_id);
        self.dispatch_round(trip_id, now, fx)?;
        Ok(Outcome::Done)
    }

    /// The offer a driver answers (accept or decline), with the refusals that come
    /// before the driver's own availability, in the API's order: 404, 403
    /// `not_offered`, 409 (`invalid_transition` for a cancelled or expired trip, or
    /// one this driver already has; `trip_already_assigned` otherwise).
    fn offer_to_answer(&self, who: Who, trip_id: TripId, action: &'static str) -> Result<(UserId, Offer)> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let driver_id = self.driver_of(who)?;
        let offer = trip.offer_to(driver_id).ok_or(Error::NotOffered(trip_id))?;
        match trip.status {
            TripStatus::Searching => Ok((driver_id, offer.clone())),
            TripStatus::Cancelled | TripStatus::Expired => Err(trip.refuse(action)),
            _ if trip.driver_id == Some(driver_id) => Err(trip.refuse(action)),
            _ => Err(Error::TripAlreadyAssigned(trip_id)),
        }
    }

    /// The trip, if `who` is its assigned driver; otherwise the right refusal.
    fn assigned_trip(&self, who: Who, trip_id: TripId) -> Result<(&Arc<Trip>, UserId)> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        match who {
            Who::Driver(id) if trip.driver_id == Some(id) && trip.status != TripStatus::Searching => Ok((trip, id)),
            Who::Driver(id) if trip.offer_to(id).is_some() => {
                Err(Error::Forbidden(format!("trip {trip_id} is not assigned to this driver")))
            }
            Who::Rider(id) if trip.rider_id == id => Err(Error::Forbidden("only the trip's driver does this".into())),
            Who::Staff { .. } => Err(Error::Forbidden("only the trip's driver does this".into())),
            _ => Err(Error::not_found("trip", trip_id)),
        }
    }

    fn arrived(&mut self, who: Who, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (trip, _) = self.assigned_trip(who, trip_id)?;
        if trip.status != TripStatus::Accepted {
            return Err(trip.refuse("mark arrived"));
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::Arrived, now)?;
        t.arrived_at = Some(now);
        self.trip_updated(trip_id, fx)
    }

    fn start(&mut self, who: Who, trip_id: TripId, code: &str, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (trip, driver_id) = self.assigned_trip(who, trip_id)?;
        if trip.status != TripStatus::Arrived {
            return Err(trip.refuse("start"));
        }
        if PickupCode::parse(code) != Some(trip.pickup_code) {
            return Err(Error::WrongPickupCode(trip_id));
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::InProgress, now)?;
        t.started_at = Some(now);
        // The odometer counts the ride from here (see `State::publish_position`).
        self.driver_mut(driver_id, fx)?.trip_odometer_m = 0.0;
        self.trip_updated(trip_id, fx)
    }

    fn complete(
        &mut self,
        who: Who,
        trip_id: TripId,
        distance_m: Option<u32>,
        dropoff: Option<LatLng>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let (trip, driver_id) = self.assigned_trip(who, trip_id)?;
        if trip.status != TripStatus::InProgress {
            return Err(trip.refuse("complete"));
        }
        let rider_id = trip.rider_id;
        let driven_m = self.driver_ref(driver_id)?.trip_odometer_m;
        let priced = final_price(trip, distance_m, driven_m, now)?;
        let discount = priced.breakdown.map_or(0, |b| b.discount_minor);
        let ops = self.settlement(trip, driver_id, priced.fare_minor, discount, now)?;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        match t.payment.method {
            PaymentMethod::Card => {
                t.payment.set_due(Some(GatewayAction::Capture { amount_minor: priced.fare_minor }));
            }
            PaymentMethod::Cash | PaymentMethod::Wallet => {
                t.payment.set_status(PaymentStatus::Captured)?;
                t.payment.captured_minor = priced.fare_minor;
            }
        }
        t.set_status(TripStatus::Completed, now)?;
        t.ended_at = Some(now);
        t.distance_m = Some(priced.distance_m);
        t.driven_m = Some(priced.driven_m);
        if let Some(point) = dropoff {
            t.dropoff.point = point;
        }
        t.fare.final_minor = Some(priced.fare_minor);
        t.fare.final_breakdown = priced.breakdown;
        self.release_driver(driver_id, fx)?;
        self.close_open_trip(rider_id);
        self.trip_updated(trip_id, fx)
    }

    fn cancel(&mut self, who: Who, trip_id: TripId, reason: &str, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let by = match who {
            Who::Rider(id) if id == trip.rider_id => Some(CancelledBy::Rider),
            Who::Staff { .. } | Who::System => Some(CancelledBy::Staff),
            Who::Driver(id) if trip.driver_id == Some(id) && trip.status.has_driver() => None,
            Who::Driver(id) if trip.offer_to(id).is_some() => {
                return Err(Error::Forbidden("an offered driver declines; only the assigned driver cancels".into()));
            }
            _ => return Err(Error::not_found("trip", trip_id)),
        };
        validate_reason(reason)?;
        if !trip.status.is_open() {
            return Err(trip.refuse("cancel"));
        }
        match by {
            Some(by) => self.cancel_terminal(trip_id, by, reason, now, fx),
            None => {
                if trip.status == TripStatus::InProgress {
                    return Err(trip.refuse("cancel"));
                }
                self.driver_cancel(trip_id, now, fx)
            }
        }
    }

    fn cancel_terminal(
        &mut self,
        trip_id: TripId,
        by: CancelledBy,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trip_ref(trip_id)?;
        // A rider who cancels after the free window pays the fee; staff never charge one.
        let fee = match (by, trip.accepted_at, trip.status.has_driver()) {
            (CancelledBy::Rider, Some(accepted_at), true) => {
                Some(crate::fare::cancellation_fee(&trip.fare.locked.pricing, accepted_at, now).map_err(fare_error)?)
            }
            _ => None,
        };
        let fee = fee.filter(|&f| f > 0);
        let ops = self.cancellation_ops(trip, fee.unwrap_or(0), now)?;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        settle_cancelled_payment(t, fee)?;
        t.set_status(TripStatus::Cancelled, now)?;
        t.ended_at = Some(now);
        t.cancellation = Some(Cancellation { by, reason: reason.to_owned(), at: now });
        t.fare.cancel_fee_minor = fee;
        let (driver, rider) = (t.driver_id, t.rider_id);
        let coupon = t.fare.locked.coupon.as_ref().map(|c| c.code.clone());
        self.withdraw_trip_offers(trip_id, WithdrawReason::Cancelled, fx)?;
        if let Some(d) = driver {
            self.release_driver(d, fx)?;
        }
        self.close_open_trip(rider);
        if let Some(code) = coupon {
            self.count_coupon_use(&code, rider, false, fx);
        }
        self.trip_updated(trip_id, fx)
    }

    /// The assigned driver gives the trip back: it searches again, among drivers
    /// not yet offered it, with a fresh timeout.
    fn driver_cancel(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let t = self.trip_mut(trip_id, fx)?;
        let driver_id = t.driver_id.ok_or_else(|| Error::Internal(format!("trip {trip_id} has no driver")))?;
        t.set_status(TripStatus::Searching, now)?;
        t.driver_id = None;
        t.searching_since = now;
        if let Some(o) = t.offer_to_mut(driver_id) {
            o.state = OfferState::Released;
        }
        if let Some(rider_price) = t.rider_offer_minor {
            // A bidding trip searches again at the rider's price: the agreement with the
            // driver who gave it back is over, and so is that driver's bid.
            t.fare.locked.agreed_minor = None;
            t.fare.estimate_minor = rider_price;
            t.bids.retain(|b| b.driver_id != driver_id);
        }
        self.release_driver(driver_id, fx)?;
        self.deadlines.insert((now.plus_secs(self.rules.timeout_s), Deadline::TripTimeout(trip_id)));
        self.dispatch_round(trip_id, now, fx)?;
        self.trip_updated(trip_id, fx)
    }

    // ----- dispatch ----------------------------------------------------------

    /// Offers the trip to the nearest eligible drivers not offered it before, if it
    /// is searching and no offer of the current round is still pending.
    fn dispatch_round(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        // A deadline may outlive its trip (finished and archived): nothing to do.
        let Some(trip) = self.trips.get(&trip_id) else { return Ok(()) };
        if trip.status != TripStatus::Searching || trip.pending_offers().next().is_some() {
            return Ok(());
        }
        let room = MAX_OFFERS_PER_TRIP.saturating_sub(trip.offers.len());
        let limit = usize::from(self.rules.offers_per_round).min(room);
        let chosen = self.nearest_eligible(trip, now, limit);
        if chosen.is_empty() {
            let retry = now.plus_secs(self.rules.redispatch_retry_s);
            if retry < trip.searching_since.plus_secs(self.rules.timeout_s) {
                self.deadlines.insert((retry, Deadline::Redispatch(trip_id)));
            }
            return Ok(());
        }
        let expires_at = now.plus_secs(self.rules.offer_ttl_s);
        let t = self.trip_mut(trip_id, fx)?;
        t.round = t.round.saturating_add(1);
        t.updated_at = now;
        let round = t.round;
        for &(driver_id, distance_m) in &chosen {
            t.offers.push(Offer {
                driver_id,
                round,
                offered_at: now,
                expires_at,
                distance_to_pickup_m: distance_m,
                state: OfferState::Pending,
            });
        }
        let trip = Arc::clone(self.trip_ref(trip_id)?);
        for (driver_id, distance_m) in chosen {
            self.driver_mut(driver_id, fx)?.pending_offers.push(trip_id);
            self.deadlines.insert((expires_at, Deadline::OfferLapse { trip_id, driver_id }));
            fx.events.push(Event::TripOffered {
                trip: Arc::clone(&trip),
                driver_id,
                expires_at,
                distance_to_pickup_m: distance_m,
            });
        }
        Ok(())
    }

    /// The `limit` nearest drivers who may be offered `trip` now, nearest first
    /// (ties by id), with their great-circle distance to the pickup.
    ///
    /// Eligible: available, not suspended, in the trip's category, with a position
    /// no older than `stale_location_s`, not disconnected from the socket, within
    /// `search_radius_m`, with room for another offer, and never offered this trip.
    fn nearest_eligible(&self, trip: &Trip, now: Timestamp, limit: usize) -> Vec<(UserId, u32)> {
        let eligible = |d: &Driver| {
            d.availability == Availability::Available
                && !d.suspended
                && d.category == trip.category
                && d.has_fresh_fix(now, self.rules.stale_location_s)
                && !d.is_disconnected()
                && d.pending_offers.len() < MAX_PENDING_OFFERS
                && trip.offer_to(d.id).is_none()
        };
        let radius = f64::from(self.rules.search_radius_m);
        self.index
            .0
            .nearest(trip.pickup.point, radius, limit, |i| self.drivers.get(&i.id).is_some_and(|d| eligible(d)))
            .into_iter()
            .map(|n| (n.driver.id, n.distance_m.round() as u32))
            .collect()
    }

    /// Withdraws every pending offer of the trip (it was taken, cancelled or expired).
    fn withdraw_trip_offers(&mut self, trip_id: TripId, reason: WithdrawReason, fx: &mut Effects) -> Result<()> {
        let t = self.trip_mut(trip_id, fx)?;
        let mut withdrawn = Vec::new();
        for o in t.offers.iter_mut().filter(|o| o.state == OfferState::Pending) {
            o.state = OfferState::Withdrawn(reason);
            withdrawn.push(o.driver_id);
        }
        for driver_id in withdrawn {
            self.driver_mut(driver_id, fx)?.pending_offers.retain(|t| *t != trip_id);
            fx.events.push(Event::OfferWithdrawn { trip_id, driver_id, reason });
        }
        Ok(())
    }

    /// Withdraws a driver's pending offers of every trip but `except`; those trips
    /// move on to their next round.
    fn withdraw_driver_offers(
        &mut self,
        driver_id: UserId,
        except: Option<TripId>,
        reason: WithdrawReason,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let d = self.driver_mut(driver_id, fx)?;
        let trips: Vec<TripId> = std::mem::take(&mut d.pending_offers);
        d.pending_offers = trips.iter().copied().filter(|t| Some(*t) == except).collect();
        for trip_id in trips.into_iter().filter(|t| Some(*t) != except) {
            let t = self.trip_mut(trip_id, fx)?;
            if let Some(o) = t.offer_to_mut(driver_id).filter(|o| o.state == OfferState::Pending) {
                o.state = OfferState::Withdrawn(reason);
                fx.events.push(Event::OfferWithdrawn { trip_id, driver_id, reason });
            }
            self.dispatch_round(trip_id, now, fx)?;
        }
        Ok(())
    }

    fn fire_deadlines(&mut self, now: Timestamp, fx: &mut Effects) -> Result<()> {
        while let Some(&(at, deadline)) = self.deadlines.get_min() {
            if at > now {
                break;
            }
            self.deadlines.remove_min();
            match deadline {
                Deadline::OfferLapse { trip_id, driver_id } => self.lapse_offer(trip_id, driver_id, at, now, fx)?,
                Deadline::TripTimeout(trip_id) => self.expire_trip(trip_id, at, now, fx)?,
                Deadline::Redispatch(trip_id) => self.dispatch_round(trip_id, now, fx)?,
                Deadline::Surge => self.recompute_surge(now, fx),
                Deadline::DisconnectGrace(driver_id) => self.disconnect_grace_over(driver_id, at, now, fx)?,
                Deadline::Housekeeping => self.housekeeping(now),
                Deadline::HoldExpiry { trip_id, hold } => self.expire_hold(trip_id, hold, now, fx)?,
            }
        }
        Ok(())
    }

    fn lapse_offer(
        &mut self,
        trip_id: TripId,
        driver_id: UserId,
        at: Timestamp,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let still_pending = self
            .trips
            .get(&trip_id)
            .and_then(|t| t.offer_to(driver_id))
            .is_some_and(|o| o.state == OfferState::Pending && o.expires_at == at);
        if !still_pending {
            return Ok(());
        }
        let t = self.trip_mut(trip_id, fx)?;
        if let Some(o) = t.offer_to_mut(driver_id) {
            o.state = OfferState::Lapsed;
        }
        t.updated_at = now;
        self.driver_mut(driver_id, fx)?.pending_offers.retain(|t| *t != trip_id);
        fx.events.push(Event::OfferWithdrawn { trip_id, driver_id, reason: WithdrawReason::Expired });
        self.dispatch_round(trip_id, now, fx)
    }

    fn expire_trip(&mut self, trip_id: TripId, at: Timestamp, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let due = self.trips.get(&trip_id).is_some_and(|t| {
            t.status == TripStatus::Searching && t.searching_since.plus_secs(self.rules.timeout_s) <= at
        });
        if !due {
            return Ok(());
        }
        let ops = self.cancellation_ops(self.trip_ref(trip_id)?, 0, now)?;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        settle_cancelled_payment(t, None)?;
        t.set_status(TripStatus::Expired, now)?;
        t.ended_at = Some(now);
        let rider = t.rider_id;
        let coupon = t.fare.locked.coupon.as_ref().map(|c| c.code.clone());
        self.withdraw_trip_offers(trip_id, WithdrawReason::Expired, fx)?;
        self.close_open_trip(rider);
        if let Some(code) = coupon {
            self.count_coupon_use(&code, rider, false, fx);
        }
        self.trip_updated(trip_id, fx)?;
        Ok(())
    }

    /// Removes finished trips whose history rows are durable. All checks come first.
    fn archive(
        &mut self,
        who: Who,
        trips: &[(TripId, u32)],
        transfer_ids: &[crate::id::TransferId],
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the engine archives trips".into()));
        }
        // Only the revision the history holds may leave: a change applied between the
        // checkpoint's snapshot and this record (acknowledged, so durable in the log)
        // would otherwise be lost with the hot copy.
        let unchanged = |id: &TripId, revision: &u32| self.trips.get(id).filter(|t| t.revision == *revision);
        if let Some(open) = trips.iter().filter_map(|(id, rev)| unchanged(id, rev)).find(|t| t.status.is_open()) {
            return Err(Error::Internal(format!("trip {} is {} and cannot be archived", open.id, open.status)));
        }
        // Settled transfers never change again, so each can go whatever its trip does.
        self.ledger.forget(transfer_ids).map_err(|e| Error::Internal(format!("cannot archive transfers: {e}")))?;
        fx.transfers.extend_from_slice(transfer_ids);
        for (id, revision) in trips {
            if self.trips.get(id).is_some_and(|t| t.revision == *revision) {
                self.trips.remove(id);
                fx.trips.push(*id);
            }
        }
        Ok(Outcome::Done)
    }

    /// Puts a finished trip read back from the history into the state, then applies
    /// `command` (see `Command::Restored`). A trip that is hot already is not replaced:
    /// the hot copy is the newer.
    fn restored(
        &mut self,
        actor: Actor,
        trip: &Arc<Trip>,
        command: &Command,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if matches!(command, Command::Restored { .. }) || command.trip_id() != Some(trip.id) {
            return Err(Error::Internal("a restored trip must be the one its command acts on".into()));
        }
        if self.trips.contains_key(&trip.id) {
            return self.dispatch_command(actor, command, now, fx);
        }
        if !trip.status.is_terminal() {
            return Err(Error::Internal(format!("trip {} came back from the history {}", trip.id, trip.status)));
        }
        self.trips.insert(trip.id, Arc::clone(trip));
        let result = self.dispatch_command(actor, command, now, fx);
        match &result {
            // Back in the hot state: the view shows it, the next checkpoint archives it again.
            Ok(_) => fx.trips.push(trip.id),
            Err(_) => {
                self.trips.remove(&trip.id);
            }
        }
        result
    }

    /// The finished trips in the state that nothing waits on any more, for the next
    /// checkpoint to archive (a card payment the gateway still owes keeps its trip hot).
    pub fn finished_trips(&self) -> Vec<Arc<Trip>> {
        self.trips.values().filter(|t| t.status.is_terminal() && t.payment.due.is_none()).cloned().collect()
    }

    // ----- helpers -----------------------------------------------------------

    fn release_driver(&mut self, driver_id: UserId, fx: &mut Effects) -> Result<()> {
        let d = self.driver_mut(driver_id, fx)?;
        d.trip_id = None;
        d.trip_odometer_m = 0.0;
        if d.suspended {
            self.set_offline(driver_id, fx)
        } else {
            d.availability = Availability::Available;
            Ok(())
        }
    }

    /// The driver stops working: offline, out of the spatial index (its last fix is
    /// kept: it is indexed there again when the driver comes back online).
    fn set_offline(&mut self, driver_id: UserId, fx: &mut Effects) -> Result<()> {
        let d = self.driver_mut(driver_id, fx)?;
        d.availability = Availability::Offline;
        d.online_since = None;
        self.sync_index(driver_id);
        Ok(())
    }

    fn close_open_trip(&mut self, rider: UserId) {
        if let Some(n) = self.open_trips_by_rider.get_mut(&rider) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open_trips_by_rider.remove(&rider);
            }
        }
    }

    fn trip_updated(&mut self, trip_id: TripId, fx: &mut Effects) -> Result<Outcome> {
        let trip = Arc::clone(self.trip_ref(trip_id)?);
        fx.events.push(Event::TripUpdated { trip: Arc::clone(&trip) });
        Ok(Outcome::Trip(trip))
    }

    fn trip_ref(&self, id: TripId) -> Result<&Arc<Trip>> {
        self.trips.get(&id).ok_or_else(|| Error::Internal(format!("trip {id} vanished")))
    }

    fn driver_ref(&self, id: UserId) -> Result<&Arc<Driver>> {
        self.drivers.get(&id).ok_or_else(|| Error::Internal(format!("driver {id} has no record")))
    }

    /// Copy-on-write access: readers holding the published `Arc` keep their copy.
    fn trip_mut(&mut self, id: TripId, fx: &mut Effects) -> Result<&mut Trip> {
        let t = self.trips.get_mut(&id).ok_or_else(|| Error::Internal(format!("trip {id} vanished")))?;
        fx.trips.push(id);
        let t = Arc::make_mut(t);
        t.revision = t.revision.wrapping_add(1);
        Ok(t)
    }

    fn driver_mut(&mut self, id: UserId, fx: &mut Effects) -> Result<&mut Driver> {
        let d = self.drivers.get_mut(&id).ok_or_else(|| Error::Internal(format!("driver {id} has no record")))?;
        fx.drivers.push(id);
        Ok(Arc::make_mut(d))
    }

    /// Checks every cross-entity invariant; `Err` names the first one broken.
    /// Run after recovery and by the tests after every step.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        // The phone index names every user once, under the user's own role and phone
        // (users are never removed; a checkpoint stores both as rows of their own).
        if self.phones.len() != self.users.len() {
            return Err(format!("{} phone index entries for {} users", self.phones.len(), self.users.len()));
        }
        for ((role, phone), id) in &self.phones {
            match self.users.get(id) {
                Some(u) if u.role == *role && u.phone == *phone => {}
                _ => return Err(format!("the phone index names {id} for a {role:?} {phone:?} it is not")),
            }
        }
        let mut open_by_rider: HashMap<UserId, u16> = HashMap::new();
        for t in self.trips.values() {
            if t.status.is_open() {
                *open_by_rider.entry(t.rider_id).or_default() += 1;
            }
            match (t.status.has_driver(), t.driver_id) {
                (true, Some(d)) => {
                    let driver = self.drivers.get(&d).ok_or(format!("trip {} names unknown driver {d}", t.id))?;
                    if driver.trip_id != Some(t.id) || driver.availability != Availability::OnTrip {
                        return Err(format!("trip {} has driver {d}, who is not on it", t.id));
                    }
                }
                (true, None) => {
                    return Err(format!("trip {} is {} without a driver", t.id, t.status));
                }
                (false, Some(_)) if matches!(t.status, TripStatus::Searching | TripStatus::Expired) => {
                    return Err(format!("trip {} is {} with a driver", t.id, t.status));
                }
                _ => {}
            }
            if t.offers.iter().filter(|o| o.state == OfferState::Accepted).count() > 1 {
                return Err(format!("trip {} has two accepted offers", t.id));
            }
            for o in t.pending_offers() {
                if t.status != TripStatus::Searching {
                    return Err(format!("trip {} is {} with a pending offer", t.id, t.status));
                }
                let d = self.drivers.get(&o.driver_id).ok_or(format!("offer to unknown driver {}", o.driver_id))?;
                if !d.pending_offers.contains(&t.id) {
                    return Err(format!("driver {} does not know its offer of {}", d.id, t.id));
                }
            }
        }
        self.ledger.check()?;
        // Every remembered key has its expiry in the expiry order, and nothing else is there.
        let indexed = self
            .idempotency_expiry
            .iter()
            .all(|(at, actor, key)| self.idempotency.get(&(*actor, key.clone())).is_some_and(|r| r.expires_at == *at));
        if !indexed || self.idempotency_expiry.len() != self.idempotency.len() {
            return Err("idempotency keys and their expiry order disagree".into());
        }
        if open_by_rider != self.open_trips_by_rider {
            return Err("open trip counts per rider are off".into());
        }
        // `who` takes a driver record as proof of the driver role.
        if let Some(d) = self.drivers.keys().find(|id| self.users.get(*id).is_none_or(|u| u.role != Role::Driver)) {
            return Err(format!("driver record {d} is not a driver's"));
        }
        if self.index.0.len()
            != self.drivers.values().filter(|d| d.availability != Availability::Offline && d.fix.is_some()).count()
        {
            return Err("the spatial index holds a driver who is not at work".into());
        }
        for d in self.drivers.values() {
            match (d.availability, d.trip_id) {
                (Availability::OnTrip, Some(tid)) => {
                    let t = self.trips.get(&tid).ok_or(format!("driver {} on unknown trip {tid}", d.id))?;
                    if t.driver_id != Some(d.id) || !t.status.has_driver() {
                        return Err(format!("driver {} is on trip {tid}, which is not theirs", d.id));
                    }
                }
                (Availability::OnTrip, None) => {
                    return Err(format!("driver {} is on_trip without a trip", d.id));
                }
                (_, Some(tid)) => {
                    return Err(format!("driver {} is not on_trip but has trip {tid}", d.id));
                }
                _ => {}
            }
            let indexed = self.index.0.get(d.id).map(|i| i.position);
            let at_work = d.fix.filter(|_| d.availability != Availability::Offline).map(|f| f.point);
            if indexed != at_work {
                return Err(format!(
                    "driver {} ({}) is indexed at {indexed:?}, but is at {:?}",
                    d.id,
                    d.availability.as_str(),
                    d.fix
                ));
            }
            if (d.availability == Availability::Offline) != d.online_since.is_none() {
                return Err(format!(
                    "driver {} is {} with online_since {:?}",
                    d.id,
                    d.availability.as_str(),
                    d.online_since
                ));
            }
            for tid in &d.pending_offers {
                let pending =
                    self.trips.get(tid).and_then(|t| t.offer_to(d.id)).is_some_and(|o| o.state == OfferState::Pending);
                if !pending {
                    return Err(format!("driver {} lists an offer of {tid} that is not pending", d.id));
                }
            }
        }
        Ok(())
    }
}

/// A trip ending without a ride: what its payment owes. A wallet hold was voided by
/// the ledger ops; a card is voided (or charged the fee) by the gateway. Every status
/// change goes through the payment state machine.
fn settle_cancelled_payment(t: &mut Trip, fee: Option<i64>) -> Result<()> {
    let p = &mut t.payment;
    match (p.method, fee) {
        (PaymentMethod::Card, Some(fee)) => p.set_due(Some(GatewayAction::Capture { amount_minor: fee })),
        (PaymentMethod::Card, None) if p.status == PaymentStatus::Authorized => p.set_due(Some(GatewayAction::Void)),
        (PaymentMethod::Card, None) => {
            // Nothing is held on the card: nothing to ask the gateway.
            p.set_due(None);
            if p.status.can_become(PaymentStatus::Voided) {
                p.set_status(PaymentStatus::Voided)?;
            }
        }
        (PaymentMethod::Wallet, Some(fee)) => {
            p.set_status(PaymentStatus::Captured)?;
            p.captured_minor = fee;
        }
        (PaymentMethod::Wallet | PaymentMethod::Cash, None) | (PaymentMethod::Cash, Some(_)) => {
            // An expired wallet hold stays `expired`: it was released already.
            if p.status.can_become(PaymentStatus::Voided) {
                p.set_status(PaymentStatus::Voided)?;
            }
        }
    }
    Ok(())
}

/// The largest price a rider may name or a driver bid, minor units (10 million: far
/// above any ride, far below overflow).
pub const MAX_BID_MINOR: i64 = 10_000_000_000;

/// A fare error on inputs the engine validated itself: a bug, or an absurd route.
fn fare_error(e: crate::fare::FareError) -> Error {
    Error::Invalid(format!("cannot price this ride: {e}"))
}

/// The final price of a trip.
struct FinalPrice {
    fare_minor: i64,
    /// The distance billed.
    distance_m: u32,
    /// The distance the engine saw driven, whole metres.
    driven_m: u32,
    breakdown: Option<crate::fare::Breakdown>,
}

/// The final fare of `trip` completed at `now`: the locked prices and surge on the billed
/// distance ([`crate::fare::billed_distance_m`] of the driver's report `reported_m`, the
/// `driven_m` the engine saw and the planned route) and the actual ride time, plus the
/// waiting fee; or exactly the agreed price of a bidding trip.
fn final_price(trip: &Trip, reported_m: Option<u32>, driven_m: f64, now: Timestamp) -> Result<FinalPrice> {
    let locked = &trip.fare.locked;
    // `as` saturates (and maps NaN to 0): the odometer is a sum of finite steps anyway.
    let driven = driven_m.round().max(0.0) as u64;
    let billed = crate::fare::billed_distance_m(reported_m.map(u64::from), driven, locked.route.distance_m);
    let distance_m = u32::try_from(billed).unwrap_or(u32::MAX);
    let driven_m = u32::try_from(driven).unwrap_or(u32::MAX);
    if let Some(agreed) = locked.agreed_minor {
        return Ok(FinalPrice { fare_minor: agreed, distance_m, driven_m, breakdown: None });
    }
    let started = trip.started_at.unwrap_or(now);
    let secs = |from: Timestamp, to: Timestamp| u64::try_from(to.millis_since(from) / 1000).unwrap_or(0);
    let waited_s = trip.arrived_at.map_or(0, |arrived| secs(arrived, started));
    let actual = crate::route::Route {
        distance_m: u64::from(distance_m),
        duration_s: secs(started, now),
        source: locked.route.source,
    };
    let quote = crate::fare::final_fare(
        &locked.pricing,
        trip.fare.currency,
        locked.extra_fee_minor,
        &actual,
        trip.fare.surge_bps,
        waited_s,
        locked.coupon.as_ref().map(|c| &c.discount),
    )
    .map_err(fare_error)?;
    Ok(FinalPrice { fare_minor: quote.fare.amount_minor, distance_m, driven_m, breakdown: Some(quote.breakdown) })
}

mod account;
mod catalog;
mod extras;
mod location;
mod money;
mod stamp;

pub use account::GATEWAY_EVENT_TTL_S;
pub use account::gateway_event_kept;
pub use extras::ARCHIVED_ENTRY_BYTES;
pub use location::{MAX_NEARBY_LIMIT, MAX_NEARBY_RADIUS_M};

#[cfg(test)]
mod tests;
