//! A test kit for rules: [`World`], a state driven one command at a time the way the
//! writer drives it, checking after every command the four things every rule test checks
//! (a refusal changes nothing, the invariants hold, a replay of the log gives the same
//! state, every record round-trips its encoding).
//!
//! Compiled for this crate's tests and, behind the `testkit` feature, for the tests of
//! the crates above it (a checkpoint's tests in `dispatch-core` use it). It panics on a
//! broken rule: it is for tests only.

#![allow(clippy::unwrap_used, reason = "a test kit: a step that fails is a failed test")]

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::command::{Actor, Command, DispatchRules, Event, LocationReport, NewTrip, NewUser, Outcome};
use crate::error::Result;
use crate::geo::LatLng;
use crate::id::{RandomIds, TripId, UserId, ZoneId};
use crate::record::{Record, replay};
use crate::route::StraightLine;
use crate::state::{Effects, State, apply};
use crate::trip::{PaymentMethod, Place, Trip, TripKind};
use crate::user::{Category, Role, Vehicle};

/// The instant every world starts at (2023-11-14).
pub const T0: i64 = 1_700_000_000_000;
/// The pickup point of [`World::new_trip`], in the demo zone: central Cairo.
pub const CAIRO: (f64, f64) = (30.0444, 31.2357);

/// A state, its clock, its id source and its log, driven one command at a time like the
/// writer drives it, checking the four things every rule test checks.
pub struct World {
    /// The state the commands change.
    pub state: State,
    /// The instant commands are applied at (moved by [`World::advance`]).
    pub now: Timestamp,
    /// Where fresh ids come from (seeded: every run is the same).
    pub ids: RandomIds,
    /// The effects of the commands since the last [`World::events`].
    pub fx: Effects,
    /// Every accepted command, stamped, as the log would record it.
    pub log: Vec<Record>,
    phones: u64,
    /// The state before the first command: what [`World::finish`] replays the log onto.
    pub initial: State,
}

impl World {
    /// A world with these rules and the demo city's zone (Cairo, economy and comfort).
    pub fn new(rules: DispatchRules) -> Self {
        let state = State::new(rules);
        let mut w = Self {
            initial: state.clone(),
            state,
            now: Timestamp::from_millis(T0),
            ids: RandomIds::seeded(42),
            fx: Effects::default(),
            log: Vec::new(),
            phones: 0,
        };
        let zone = crate::demo::cairo().unwrap();
        w.run(Actor::Admin, Command::CreateZone { id: None, zone: Box::new(zone) }).unwrap();
        w
    }

    /// Stamps and applies `command` from `actor` at `now`; a refusal must change nothing
    /// (state and events), and the invariants must hold after it either way.
    pub fn run(&mut self, actor: Actor, mut command: Command) -> Result<Outcome> {
        self.state.stamp(&mut command, &mut self.ids);
        let before = self.state.clone();
        let events_before = self.fx.events.len();
        let result = apply(&mut self.state, actor, &command, self.now, &mut self.fx);
        let name = command.name();
        match &result {
            Ok(_) => self.log.push(Record { at: self.now, actor, command }),
            Err(e) => {
                assert_eq!(self.state, before, "refused command {} ({e}) changed the state", command.name());
                assert_eq!(self.fx.events.len(), events_before, "refused command left events");
            }
        }
        if let Err(broken) = self.state.check_invariants() {
            panic!("invariant broken after {name}: {broken}");
        }
        result
    }

    /// The events since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.fx.events)
    }

    /// Moves time on by `secs` and fires what is due (a `Tick`).
    pub fn advance(&mut self, secs: i64) {
        self.now = self.now.plus_millis(secs * 1000);
        self.run(Actor::System, Command::Tick).unwrap();
    }

    /// A new user of `role` with a fresh phone number.
    pub fn user(&mut self, role: Role, vehicle: Option<Vehicle>) -> UserId {
        self.phones += 1;
        let new = NewUser {
            id: None,
            role,
            name: format!("{role:?} {}", self.phones),
            phone: format!("+2010{:08}", self.phones),
            vehicle,
        };
        match self.run(Actor::Admin, Command::CreateUser(new)).unwrap() {
            Outcome::User(u) => u.id,
            o => panic!("{o:?}"),
        }
    }

    /// A new rider.
    pub fn rider(&mut self) -> UserId {
        self.user(Role::Rider, None)
    }

    /// An online driver `km_north` kilometres north of the pickup point.
    pub fn driver_at(&mut self, km_north: f64, category: &str) -> UserId {
        let v = Vehicle::new(Category::new(category).unwrap(), "X 1");
        let id = self.user(Role::Driver, Some(v));
        let at = LatLng::new(CAIRO.0 + km_north / 111.195, CAIRO.1).unwrap();
        self.run(Actor::User(id), Command::SetDriverStatus { online: true, location: Some(at) }).unwrap();
        id
    }

    /// An online economy driver `km_north` kilometres north of the pickup point.
    pub fn driver(&mut self, km_north: f64) -> UserId {
        self.driver_at(km_north, "economy")
    }

    /// A cash economy ride from central Cairo, straight-line route.
    pub fn new_trip(&self) -> NewTrip {
        cash_ride(LatLng::new(CAIRO.0, CAIRO.1).unwrap(), LatLng::new(30.06, 31.25).unwrap())
    }

    /// `rider` books [`World::new_trip`]; its id.
    pub fn trip(&mut self, rider: UserId) -> TripId {
        let new = self.new_trip();
        match self.run(Actor::User(rider), Command::CreateTrip(new)).unwrap() {
            Outcome::Trip(t) => t.id,
            o => panic!("{o:?}"),
        }
    }

    /// The trip `id`, which must be in the hot state.
    pub fn get(&self, id: TripId) -> Arc<Trip> {
        Arc::clone(self.state.trip(id).unwrap())
    }

    /// The drivers with a pending offer of trip `id`.
    pub fn offered(&self, id: TripId) -> Vec<UserId> {
        self.get(id).pending_offers().map(|o| o.driver_id).collect()
    }

    /// The driver drives `metres` due north in `secs` seconds (a whole number of
    /// minutes), reporting a position every minute: a ride as the engine's odometer sees it.
    pub fn drive(&mut self, d: UserId, metres: f64, secs: i64) {
        assert!(secs > 0 && secs % 60 == 0, "whole minutes");
        let steps = secs / 60;
        let start = self.state.driver(d).unwrap().fix.unwrap().point;
        // Metres of meridian per degree for haversine's Earth (radius 6,371,008.8 m).
        let per_degree = crate::geo::EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        for i in 1..=steps {
            self.advance(60);
            let lat = start.lat() + metres * i as f64 / steps as f64 / per_degree;
            let point = LatLng::new(lat, start.lng()).unwrap();
            let report = LocationReport { point, heading_deg: Some(0.0), speed_mps: None };
            assert_eq!(self.run(Actor::User(d), Command::UpdateLocation(report)), Ok(Outcome::Done));
        }
    }

    /// The id of the first zone of the catalog (the demo city's, in a new world).
    pub fn zone_id(&self) -> ZoneId {
        self.state.price_book().catalog.zones().next().unwrap().id
    }

    /// An admin creates the coupon `c`.
    pub fn add_coupon(&mut self, c: crate::fare::Coupon) {
        self.run(Actor::Admin, Command::CreateCoupon { id: None, coupon: Box::new(c) }).unwrap();
    }

    /// `driver` accepts `trip`.
    pub fn accept(&mut self, driver: UserId, trip: TripId) -> Result<Outcome> {
        self.run(Actor::User(driver), Command::AcceptTrip { trip_id: trip })
    }

    /// The end-of-test checks: replaying the log from the initial state gives this state,
    /// the state and every record survive their binary encodings.
    pub fn finish(mut self) {
        let mut replayed = self.initial.clone();
        replay(&mut replayed, &self.log).unwrap();
        assert_eq!(replayed, self.state, "replaying the log gave a different state");
        // A state survives the binary round trip a checkpoint puts it through, index included.
        let back: State = postcard::from_bytes(&postcard::to_allocvec(&self.state).unwrap()).unwrap();
        assert_eq!(back, self.state);
        back.check_invariants().unwrap();
        // Every record survives the binary round trip the WAL puts it through.
        for r in &self.log {
            assert_eq!(&Record::decode(&r.encode().unwrap()).unwrap(), r);
        }
        self.fx.clear();
    }
}

/// A cash economy ride from `from` to `to` on the straight line, nothing else asked for:
/// the booking most tests need.
pub fn cash_ride(from: LatLng, to: LatLng) -> NewTrip {
    NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(from),
        dropoff: Place::at(to),
        stops: Vec::new(),
        category: Category::new("economy").unwrap(),
        parcel: None,
        payment_method: PaymentMethod::Cash,
        route: StraightLine::default().between(from, to),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    }
}
