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
//! - every trip status change follows an edge of [`TripStatus::can_become`](crate::trip::TripStatus::can_become);
//! - a driver's pending offers and the trips' pending offers mirror each other;
//! - the spatial index holds exactly the drivers at work (not offline), each at its last
//!   fix (positions and the index: `location.rs`).
//!
//! ## Layout
//!
//! This file holds the types ([`State`], [`Deadline`]), [`apply`] and the
//! dispatch of each command to its handler, who the actor is, and the small helpers every
//! handler uses (copy-on-write access, releasing a driver, the open-trip count). The
//! handlers, each file with its guarantees:
//! - `users.rs`: the rules, accounts, a driver's status and suspension;
//! - `trips.rs`: booking, accept and decline, arrive, start, complete, cancel;
//! - `dispatch.rs`: offer rounds, lapses, withdrawals, expiry, the deadlines a `Tick` fires;
//!   `batch.rs`: the batch window of batched matching (issue 22);
//! - `archive.rs`: finished trips leaving for the history and coming back for a command;
//! - `money.rs` (transfer ids, holds, settlement) and `gateway.rs` (card payments, refunds);
//! - `shares.rs`: the trips' short references (their 30-day index) and share links;
//! - `catalog.rs` (zones, coupons, surge), `extras.rs` (bids, ratings, alerts, idempotency),
//!   `chat.rs` (a trip's chat messages),
//!   `account.rs` (OTP, tokens, presence), `location.rs` (positions and the index);
//! - `payouts.rs`: payouts (two-phase), wallet top-ups, cash debt and cash received, the
//!   earnings index;
//! - `notify.rs`: push devices and the notification outbox (items made from the events of
//!   the commands that cause them, the worker's reports, windows and pruning);
//! - `hooks.rs`: outbound webhook endpoints and deliveries (events made from what a
//!   command changed, ordered per subject; the worker's reports, resends, windows);
//! - `invariants.rs`: [`State::check_invariants`]; `stamp.rs`: fresh ids before apply;
//! - `applications.rs`: driver applications (details, documents, submission, staff's
//!   decision), the going-online checks they add, the licence reminders.
//! - `staff.rs`: staff users with a sign-in e-mail, their setups, sign-in failures and
//!   lockout, TOTP replay protection, and signing out;
//! - `users_admin.rs`: staff's edits, blocks and erasures of users, the erasure queue;
//!   `audit.rs`: the audit trail's entries (`Command::Audited`) and runtime settings.
//!
//! Why this file is long: it is the one place where every command meets its handler
//! (the `match` of `State::dispatch_command` has an arm per command, about 170 lines),
//! and where the state's every field is declared beside the twin its deserializer reads
//! (`Records`: postcard is positional, so the two lists must stay in one order) and the
//! copy a checkpoint takes. Splitting the arms or the fields across files would make a
//! new command or field easy to half-add; the handlers themselves live in the files above.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::application::Applications;
use crate::clock::Timestamp;
use crate::command::{Actor, Command, DispatchRules, Event, Outcome, Remembered};
use crate::driver::{Availability, Driver};
use crate::error::{Error, Result};
use crate::geo::{CategoryCode, DriverIndex, IndexedDriver};
use crate::hooks::Hooks;
use crate::id::{AlertId, ShareId, TripId, UserId, ZoneId};
use crate::ledger::Ledger;
use crate::otp::OtpRecord;
use crate::outbox::Outbox;
use crate::share::Share;
use crate::trip::{MAX_REASON_LEN, Trip};
use crate::trip_ref::TripRef;
use crate::user::{Role, User};
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
    /// A finished card trip its rider switched to cash, unconfirmed by the driver: the
    /// fare becomes the rider's debt.
    CashClaimExpiry(TripId),
    /// A ride booked ahead starts searching (`scheduled_at − schedule_lead_s`).
    ScheduledDispatch(TripId),
    /// A wallet top-up still waiting for the gateway's capture is `expired`.
    TopUpExpiry(crate::id::TopUpId),
    /// The batch window closes: its trips are assigned together (`batch.rs`, issue 22).
    BatchWindow,
    /// The window's assigned offer of a trip has been its only one for
    /// `batch_exclusive_s`: unless the trip moved on, a greedy round joins it (`batch.rs`).
    BatchExclusiveOver {
        /// Which trip.
        trip_id: TripId,
        /// The round of the window's offer (a later round means the trip moved on).
        round: u16,
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
/// So do the share links (a few per open trip); the trips' references of the last 30
/// days are persistent, like the trips.
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
    /// Rides booked ahead and not yet dispatched, per rider (they are not in
    /// `open_trips_by_rider` until dispatch starts).
    scheduled_by_rider: HashMap<UserId, u16>,
    refs: imbl::OrdMap<TripRef, (TripId, Timestamp)>,
    /// Derived from `refs` (rebuilt when a state is read back), so not serialized.
    #[serde(skip)]
    refs_by_age: imbl::OrdSet<(Timestamp, TripRef)>,
    shares: BTreeMap<ShareId, Share>,
    trip_shares: BTreeMap<TripId, Vec<ShareId>>,
    /// Push devices and the notification outbox (`notify.rs`).
    outbox: Outbox,
    /// Outbound webhook endpoints and deliveries (`hooks.rs`).
    hooks: Hooks,
    /// Driver applications and the licence reminders' queue (`applications.rs`).
    applications: Applications,
    /// Payouts, top-ups and the earnings index derived from the ledger (`payouts.rs`).
    book: crate::payout::Book,
    // ----- issue 20: A -----
    /// The audit trail's entries not yet in the history, by number (`audit.rs`):
    /// persistent, so the checkpoint's copy costs O(1).
    audit: imbl::OrdMap<u64, std::sync::Arc<crate::audit::AuditEntry>>,
    /// The number of the last audit entry made (the next is one more).
    audit_seq: u64,
    /// The dispatch keys staff set at runtime, which win over the configuration's.
    rule_overrides: crate::settings::RuleOverrides,
    #[serde(skip)]
    index: Positions,
    // ----- issue 20: S -----
    /// Staff sign-in credentials (`staff.rs`).
    staff: crate::staff::Staff,
    // ----- issue 20: U -----
    /// Erased users whose data outside the state is not gone yet (`users_admin.rs`).
    erasures: BTreeMap<UserId, crate::user::Erasure>,
    /// The staff's user indexes: derived from the users (rebuilt when a state is read
    /// back), so not serialized.
    #[serde(skip)]
    user_index: crate::user_index::UserIndex,
    // ----- issue 22 -----
    /// The trips waiting for the batch window to close, in arrival order (`batch.rs`).
    batch: Vec<TripId>,
}

/// The collections of a [`State`] that a checkpoint keeps as rows of their own tables
/// (`checkpoint.rs`) rather than inside its state blob: those that grow with accounts
/// (users, the phone index — not stored: rebuilt from the users —, OTP records, the
/// ledger's accounts) and the trips' references of the last 30 days (a month of
/// bookings), the notification outbox and the push devices — a checkpoint writes only the
/// entries changed since the previous one — and the zones, which the API lists.
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
    /// The trips' references of the last 30 days: reference → (trip, booked at).
    pub refs: imbl::OrdMap<TripRef, (TripId, Timestamp)>,
    /// The notification outbox's items (kept 7 days after they finish).
    pub notifications: imbl::OrdMap<crate::outbox::ItemKey, Arc<crate::outbox::Notification>>,
    /// Each user's push devices.
    pub devices: imbl::OrdMap<UserId, Arc<Vec<crate::outbox::Device>>>,
    /// Outbound webhook deliveries (kept 7 days after they finish), by endpoint and event.
    pub webhook_deliveries: imbl::OrdMap<(crate::id::EndpointId, u64), Arc<crate::hooks::Delivery>>,
}

/// The by-age order of a reference index.
fn by_age(refs: &imbl::OrdMap<TripRef, (TripId, Timestamp)>) -> imbl::OrdSet<(Timestamp, TripRef)> {
    refs.iter().map(|(r, (_, at))| (*at, *r)).collect()
}

/// Every driver at work (not offline) with a known position, in a grid index (see
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
            scheduled_by_rider: HashMap<UserId, u16>,
            refs: imbl::OrdMap<TripRef, (TripId, Timestamp)>,
            shares: BTreeMap<ShareId, Share>,
            trip_shares: BTreeMap<TripId, Vec<ShareId>>,
            outbox: Outbox,
            hooks: Hooks,
            applications: Applications,
            book: crate::payout::Book,
            audit: imbl::OrdMap<u64, std::sync::Arc<crate::audit::AuditEntry>>,
            audit_seq: u64,
            rule_overrides: crate::settings::RuleOverrides,
            // ----- issue 20: S -----
            staff: crate::staff::Staff,
            erasures: BTreeMap<UserId, crate::user::Erasure>,
            // ----- issue 22 -----
            batch: Vec<TripId>,
        }
        let r = Records::deserialize(d)?;
        let user_index = crate::user_index::UserIndex::of(r.users.values());
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
            scheduled_by_rider: r.scheduled_by_rider,
            refs_by_age: by_age(&r.refs),
            refs: r.refs,
            shares: r.shares,
            trip_shares: r.trip_shares,
            outbox: r.outbox,
            hooks: r.hooks,
            applications: r.applications,
            index: Positions(index),
            book: r.book,
            audit: r.audit,
            audit_seq: r.audit_seq,
            rule_overrides: r.rule_overrides,
            // ----- issue 20: S -----
            staff: r.staff,
            user_index,
            erasures: r.erasures,
            batch: r.batch,
        })
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
    // What the webhooks compare the command's results with (only while an endpoint exists).
    let before = state.hook_before(command);
    fx.trips_before = before.as_ref().map(|_| Vec::new());
    let result = state.dispatch_command(actor, command, now, fx);
    let trips_before = fx.trips_before.take();
    match &result {
        Err(_) => fx.events.truncate(mark),
        Ok(_) => {
            // `DriverMoved` notifies nobody and announces nothing: a run of positions
            // pays neither the copy of its events nor the look through them.
            let moves_only = fx.events[mark..].iter().all(|e| matches!(e, Event::DriverMoved { .. }));
            if (fx.events.len() > mark && !moves_only) || before.is_some() {
                // The outbox items and webhook deliveries this command causes, from its
                // events, lent out of `fx` meanwhile rather than copied.
                let all = std::mem::take(&mut fx.events);
                let events = &all[mark..];
                if !events.is_empty() {
                    state.notify_effects(actor, command, events, now, fx);
                }
                if let Some(before) = before {
                    let before = before.with_trips(trips_before.unwrap_or_default());
                    state.hook_effects(before, actor, command, events, now, fx);
                }
                let announced = std::mem::replace(&mut fx.events, all);
                debug_assert!(announced.is_empty(), "the outbox and the webhooks announce no events");
                fx.events.extend(announced);
            }
        }
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
            scheduled_by_rider: self.scheduled_by_rider.clone(),
            refs: self.refs.clone(),
            refs_by_age: self.refs_by_age.clone(),
            shares: self.shares.clone(),
            trip_shares: self.trip_shares.clone(),
            outbox: self.outbox.clone(),
            hooks: self.hooks.clone(),
            applications: self.applications.clone(),
            index: Positions::default(),
            book: self.book.clone(),
            audit: self.audit.clone(),
            audit_seq: self.audit_seq,
            rule_overrides: self.rule_overrides,
            // ----- issue 20: S -----
            staff: self.staff.clone(),
            erasures: self.erasures.clone(),
            user_index: self.user_index.clone(),
            batch: self.batch.clone(),
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
        let (notifications, devices) = self.outbox.rows();
        AccountRows {
            notifications,
            devices,
            webhook_deliveries: self.hooks.rows(),
            users: self.users.clone(),
            phones: self.phones.clone(),
            otps: self.otps.clone(),
            ledger_accounts: self.ledger.account_map().clone(),
            zones: Arc::clone(&self.catalog),
            refs: self.refs.clone(),
        }
    }

    /// Puts back what [`State::take_rows`] took (a state read back from a checkpoint:
    /// its blob, then its rows). The references' by-age order is rebuilt from them:
    /// O(n log n) in the references, at start only.
    pub fn put_rows(&mut self, rows: AccountRows) {
        // Derived from the users: rebuilt once when a state is read back (O(n log n)), and
        // left as it is when the rows go back after `take_rows` (the same users).
        if !rows.users.ptr_eq(&self.users) {
            self.user_index = crate::user_index::UserIndex::of(rows.users.values());
        }
        self.users = rows.users;
        self.phones = rows.phones;
        self.otps = rows.otps;
        self.ledger.set_accounts(rows.ledger_accounts);
        self.catalog = rows.zones;
        // Empty when taken out (O(1)); rebuilt once when a state is read back.
        self.refs_by_age = by_age(&rows.refs);
        self.refs = rows.refs;
        self.outbox.set_rows(rows.notifications, rows.devices);
        self.hooks.set_rows(rows.webhook_deliveries);
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
        let licences = self.applications.next_reminder().into_iter().chain(self.applications.next_expiry()).min();
        [deadline, expiry, self.outbox_deadline(), self.hooks_deadline(), licences].into_iter().flatten().min()
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
            Command::SetRules(rules) => {
                let o = self.set_rules(who, rules)?;
                fx.rules = true;
                Ok(o)
            }
            Command::CreateUser(new) => self.create_user(who, new, now, fx),
            Command::SetDriverStatus { online, location } => self.set_driver_status(who, *online, *location, now, fx),
            Command::SetDriverSuspended { driver_id, suspended, reason } => {
                self.set_suspended(who, *driver_id, *suspended, reason, now, fx)
            }
            Command::UpdateLocation(report) => self.update_location(who, report, now, fx),
            Command::Positions(fixes) => self.replay_positions(who, fixes, fx),
            Command::CreateTrip(new) => self.create_trip(who, new, now, fx),
            Command::AcceptTrip { trip_id } => self.accept(who, *trip_id, now, fx),
            Command::DeclineTrip { trip_id } => self.decline(who, *trip_id, now, fx),
            Command::DriverArrived { trip_id } => self.arrived(who, *trip_id, now, fx),
            Command::StartTrip { trip_id, pickup_code } => self.start(who, *trip_id, pickup_code, now, fx),
            Command::CompleteTrip { trip_id, distance_m, dropoff } => {
                self.complete(who, *trip_id, None, *distance_m, *dropoff, now, fx)
            }
            Command::CancelTrip { trip_id, code, reason } => self.cancel(who, *trip_id, *code, reason, now, fx),
            Command::Tick => {
                self.fire_deadlines(now, fx)?;
                self.purge_expired(now);
                self.outbox_tick(now, fx);
                self.hooks_tick(now, fx);
                self.licence_reminders(now, fx);
                self.licence_expiries(now, fx)?;
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
            Command::PostMessage { id, trip_id, text, .. } => {
                self.post_message(who, actor, *id, *trip_id, text, now, fx)
            }
            Command::AckAlert { alert_id } => self.ack_alert(who, actor, *alert_id, now, fx),
            Command::UnlockPickupCode { trip_id } => self.unlock_pickup_code(who, *trip_id, now, fx),
            Command::ConfirmCashReceived { trip_id } => self.confirm_cash_received(who, *trip_id, now, fx),
            Command::SetPresence { connected } => self.set_presence(who, *connected, now, fx),
            Command::RevokeTokens { user_id } => self.revoke_tokens(who, *user_id, fx),
            Command::IssueOtp { phone, role, code_hash } => self.issue_otp(who, phone, *role, code_hash, now),
            Command::VerifyOtp { phone, code_hash, new_user_id } => {
                self.verify_otp(who, phone, code_hash, *new_user_id, now, fx)
            }
            Command::Keyed { key, command, archived } => self.keyed(actor, key, command, archived.as_deref(), now, fx),
            Command::Restored { trip, command } => self.restored(actor, trip, command, now, fx),
            Command::Archive { trips, transfer_ids, keys, gateway_events, alerts, audit } => {
                self.archive(who, trips, transfer_ids, alerts, fx)?;
                self.archive_keys(keys, gateway_events);
                self.archive_audit(audit, fx);
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
            Command::CreateShare { id, trip_id } => self.create_share(who, *id, *trip_id, now),
            Command::RevokeShares { trip_id } => self.revoke_shares(who, *trip_id),
            Command::UpdateProfile(change) => self.update_profile(actor, change, fx),
            Command::RegisterDevice { id, platform, token } => {
                self.register_device(actor, *id, *platform, token, now, fx)
            }
            Command::RemoveDevice { device_id } => self.remove_device(actor, *device_id, fx),
            Command::NotificationAttempted { id, attempt, outcome } => {
                self.notification_attempted(who, *id, *attempt, outcome, now, fx)
            }
            Command::CreateWebhookEndpoint { .. } => self.create_webhook_endpoint(who, command, now, fx),
            Command::DeleteWebhookEndpoint { endpoint_id } => self.delete_webhook_endpoint(who, *endpoint_id, fx),
            Command::ResendWebhook { endpoint_id, event_id } => {
                self.resend_webhook(who, *endpoint_id, *event_id, now, fx)
            }
            Command::WebhookAttempted { endpoint_id, event_id, attempt, outcome } => {
                self.webhook_attempted(who, *endpoint_id, *event_id, *attempt, outcome, now, fx)
            }
            Command::PutApplication(details) => self.put_application(who, details, now, fx),
            Command::AddDocument { kind, sha256, media_type, size } => {
                self.add_document(who, *kind, *sha256, *media_type, *size, now, fx)
            }
            Command::SubmitApplication => self.submit_application(who, now, fx),
            Command::DecideApplication { driver_id, approve, reason } => {
                self.decide_application(who, *driver_id, *approve, reason.as_deref(), now, fx)
            }
            Command::CompleteDelivery { trip_id, delivery_code, distance_m, dropoff } => {
                self.complete(who, *trip_id, Some(delivery_code), *distance_m, *dropoff, now, fx)
            }
            Command::DisableCoupon { code } => self.disable_coupon(who, code, now, fx),
            Command::RecordGatewayRef { trip_id, gateway, reference } => {
                self.record_gateway_ref(who, *trip_id, gateway, reference, now, fx)
            }
            // ----- issue 20: U -----
            Command::PatchUser { user_id, change } => self.patch_user(who, *user_id, change, fx),
            Command::BlockUser { user_id, blocked, reason } => {
                self.block_user(who, *user_id, *blocked, reason, now, fx)
            }
            Command::EraseUser { user_id } => self.erase_user(who, *user_id, now, fx),
            Command::ErasureFinished { user_id } => self.erasure_finished(who, *user_id, fx),
            Command::RequestPayout { id, amount_minor, currency } => {
                self.request_payout(who, *id, *amount_minor, *currency, now, fx)
            }
            Command::ReviewPayout { payout_id, approve, reason } => {
                validate_reason(reason)?;
                self.review_payout(who, *payout_id, *approve, reason, now, fx)
            }
            Command::PayoutReport { gateway, event_id, payout_id, kind, amount_minor } => {
                self.payout_report(who, gateway, event_id, *payout_id, *kind, *amount_minor, now, fx)
            }
            Command::CreateTopUp { id, amount_minor, currency } => {
                self.create_top_up(who, *id, *amount_minor, *currency, now, fx)
            }
            Command::TopUpReport { gateway, event_id, top_up_id, kind, amount_minor, currency } => {
                self.top_up_report(who, gateway, event_id, *top_up_id, *kind, *amount_minor, *currency, now, fx)
            }
            Command::CashReceived { id, driver_id, amount_minor, currency, reason } => {
                validate_reason(reason)?;
                self.cash_received(who, *id, *driver_id, *amount_minor, *currency, now, fx)
            }
            // ----- issue 20: A -----
            Command::Audited { request_id, command } => self.audited(actor, request_id, command, now, fx),
            Command::UpdateSettings(change) => self.update_settings(who, change, now, fx),
            // ----- issue 20: S -----
            Command::CreateStaff { user, staff_role, email, setup_nonce } => {
                self.create_staff(who, user, staff_role.as_deref(), email.as_deref(), *setup_nonce, now, fx)
            }
            Command::IssueStaffSetup { user_id, email, nonce } => {
                self.issue_staff_setup(who, *user_id, email.as_deref(), *nonce, now, fx)
            }
            Command::SetupStaff { user_id, setup_nonce, password_hash, totp_nonce } => {
                self.setup_staff(who, *user_id, *setup_nonce, password_hash, *totp_nonce, now, fx)
            }
            Command::StaffLoginFailed { user_id } => self.staff_login_failed(who, *user_id, now, fx),
            Command::StaffLoginSucceeded { user_id, step } => self.staff_login_succeeded(who, *user_id, *step, now, fx),
            Command::SignOut => self.sign_out(actor, fx),
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

    // ----- helpers -----------------------------------------------------------

    fn driver_of(&self, who: Who) -> Result<UserId> {
        match who {
            Who::Driver(id) if self.drivers.contains_key(&id) => Ok(id),
            // An applicant: a driver user without a driver record until approved.
            Who::Driver(id) => Err(Error::NotApproved(id)),
            _ => Err(Error::Forbidden("only drivers do this".into())),
        }
    }

    /// The driver's trip ended: available again, or offline when suspended or its licence
    /// expired during the trip (it may not work: `application_blocks_online`).
    fn release_driver(&mut self, driver_id: UserId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let licence_expired = self.application_blocks_online(driver_id, now).is_err();
        let d = self.driver_mut(driver_id, fx)?;
        debug_assert!(
            d.availability == Availability::OnTrip && d.trip_id.is_some(),
            "release_driver: driver {driver_id} is not on a trip"
        );
        d.trip_id = None;
        d.trip_odometer_m = 0.0;
        if d.suspended || licence_expired {
            self.set_offline(driver_id, now, fx)
        } else {
            d.availability = Availability::Available;
            d.available_since = Some(now);
            Ok(())
        }
    }

    /// The driver stops working: offline, out of the spatial index (its last fix is
    /// kept: it is indexed there again when the driver comes back online).
    fn set_offline(&mut self, driver_id: UserId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let d = self.driver_mut(driver_id, fx)?;
        d.availability = Availability::Offline;
        d.available_since = None;
        // The stretch online ends: its time goes to the driver's days (issue 20: U).
        if let Some(since) = d.online_since.take() {
            d.stats.add_online(since, now);
        }
        self.sync_index(driver_id);
        Ok(())
    }

    /// A trip of `rider` that was `status` stops counting: a scheduled one against the
    /// rider's scheduled rides, any other open one against the open trips.
    fn close_trip_count(&mut self, rider: UserId, status: crate::trip::TripStatus) {
        if status == crate::trip::TripStatus::Scheduled {
            self.close_scheduled(rider);
        } else {
            self.close_open_trip(rider);
        }
    }

    /// A scheduled ride of `rider` left `scheduled` (dispatched or cancelled).
    fn close_scheduled(&mut self, rider: UserId) {
        debug_assert!(
            self.scheduled_by_rider.get(&rider).is_some_and(|n| *n > 0),
            "close_scheduled: rider {rider} has no scheduled trip counted"
        );
        if let Some(n) = self.scheduled_by_rider.get_mut(&rider) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.scheduled_by_rider.remove(&rider);
            }
        }
    }

    fn close_open_trip(&mut self, rider: UserId) {
        debug_assert!(
            self.open_trips_by_rider.get(&rider).is_some_and(|n| *n > 0),
            "close_open_trip: rider {rider} has no open trip counted"
        );
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
        if let Some(before) = &mut fx.trips_before
            && !before.iter().any(|b| b.id == id)
        {
            // The trip as it was (an `Arc`: readers hold one too, so the write below
            // copies the trip either way).
            before.push(Arc::clone(t));
        }
        let t = Arc::make_mut(t);
        t.revision = t.revision.wrapping_add(1);
        Ok(t)
    }

    fn driver_mut(&mut self, id: UserId, fx: &mut Effects) -> Result<&mut Driver> {
        let d = self.drivers.get_mut(&id).ok_or_else(|| Error::Internal(format!("driver {id} has no record")))?;
        fx.drivers.push(id);
        Ok(Arc::make_mut(d))
    }

    /// The driver's record, to change its position alone (`fix` and `trip_odometer_m`,
    /// nothing else): readers copy those two fields into their own record
    /// ([`Effects::moved`]) instead of sharing this one, so a report copies no record.
    fn driver_moved_mut(&mut self, id: UserId, fx: &mut Effects) -> Result<&mut Driver> {
        let d = self.drivers.get_mut(&id).ok_or_else(|| Error::Internal(format!("driver {id} has no record")))?;
        fx.moved.push(id);
        Ok(Arc::make_mut(d))
    }
}

/// The largest price a rider may name or a driver bid, minor units (10 million: far
/// above any ride, far below overflow).
pub const MAX_BID_MINOR: i64 = 10_000_000_000;

mod account;
mod applications;
mod archive;
mod audit;
mod batch;
mod catalog;
mod chat;
mod dispatch;
mod effects;
mod extras;
mod gateway;
mod hooks;
mod invariants;
mod location;
mod money;
mod notify;
mod payouts;
mod shares;
mod staff;
mod stamp;
mod trips;
mod users;
mod users_admin;

pub use account::GATEWAY_EVENT_TTL_S;
pub use account::gateway_event_kept;
pub use dispatch::UNFUNDED_REASON;
pub use effects::Effects;
pub use extras::ARCHIVED_ENTRY_BYTES;
pub use location::{MAX_NEARBY_LIMIT, MAX_NEARBY_RADIUS_M};
pub use users_admin::ERASED_TEXT;

#[cfg(test)]
mod tests;
