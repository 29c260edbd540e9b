//! The engine against a plain reference model: random command sequences from
//! several riders and drivers (accepts, declines, cancels by everyone, going
//! offline, time passing so offers lapse and trips expire). After every step the
//! engine's answer must equal the model's, the engine's view must equal the
//! model's state, and the invariants must hold: no trip with two drivers, no
//! driver on two open trips, every status change a legal transition.

use std::collections::{BTreeSet, HashMap};

use dispatch_core::clock::{Clock, ManualClock, Timestamp};
use dispatch_core::route::{Route, RouteSource};
use dispatch_core::{
    Actor, Availability, Category, DispatchRules, Engine, EngineConfig, Error, LatLng, NewTrip, NewUser, OfferState,
    PaymentMethod, Place, RandomIds, Role, TripId, TripKind, TripStatus, UserId, Vehicle, WithdrawReason,
};
use proptest::prelude::*;

const RIDERS: usize = 3;
const DRIVERS: usize = 5;
const PICKUP: (f64, f64) = (30.0444, 31.2357);

pub(crate) fn rules() -> DispatchRules {
    DispatchRules {
        offers_per_round: 2,
        offer_ttl_s: 20,
        timeout_s: 60,
        search_radius_m: 50_000,
        stale_location_s: 1_000_000,
        disconnect_grace_s: 300,
        open_trips_per_rider: 2,
        redispatch_retry_s: 2,
        ..DispatchRules::default()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    CreateTrip { rider: usize },
    Accept { driver: usize, trip: usize },
    Decline { driver: usize, trip: usize },
    Arrived { driver: usize, trip: usize },
    Start { driver: usize, trip: usize, right_code: bool },
    Complete { driver: usize, trip: usize },
    CancelByRider { trip: usize },
    CancelByDriver { driver: usize, trip: usize },
    CancelByStaff { trip: usize },
    SetOnline { driver: usize, online: bool },
    Advance { secs: u8 },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let d = 0..DRIVERS;
    let t = 0..8usize;
    prop_oneof![
        3 => (0..RIDERS).prop_map(|rider| Op::CreateTrip { rider }),
        4 => (d.clone(), t.clone()).prop_map(|(driver, trip)| Op::Accept { driver, trip }),
        1 => (d.clone(), t.clone()).prop_map(|(driver, trip)| Op::Decline { driver, trip }),
        2 => (d.clone(), t.clone()).prop_map(|(driver, trip)| Op::Arrived { driver, trip }),
        2 => (d.clone(), t.clone(), any::<bool>()).prop_map(|(driver, trip, right_code)| Op::Start { driver, trip, right_code }),
        2 => (d.clone(), t.clone()).prop_map(|(driver, trip)| Op::Complete { driver, trip }),
        1 => t.clone().prop_map(|trip| Op::CancelByRider { trip }),
        1 => (d.clone(), t.clone()).prop_map(|(driver, trip)| Op::CancelByDriver { driver, trip }),
        1 => t.prop_map(|trip| Op::CancelByStaff { trip }),
        1 => (d, any::<bool>()).prop_map(|(driver, online)| Op::SetOnline { driver, online }),
        2 => (0u8..30).prop_map(|secs| Op::Advance { secs }),
    ]
}

// ----- the model -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    // Same order as the engine's deadlines at equal times.
    Lapse(u64, u64),
    Timeout(u64),
    Redispatch(u64),
}

#[derive(Debug, Clone)]
struct MOffer {
    driver: usize,
    state: OfferState,
    expires_ms: i64,
}

#[derive(Debug, Clone)]
struct MTrip {
    id: TripId,
    rider: usize,
    status: TripStatus,
    driver: Option<usize>,
    offers: Vec<MOffer>,
    searching_since_ms: i64,
    code: String,
}

#[derive(Debug, Clone)]
struct MDriver {
    id: UserId,
    online: bool,
    trip: Option<usize>,
    /// Distance to the (shared) pickup point: fixed and distinct per driver.
    distance_m: f64,
    pending: Vec<usize>,
}

#[derive(Clone)]
pub(crate) struct Model {
    now_ms: i64,
    trips: Vec<MTrip>,
    drivers: Vec<MDriver>,
    riders: Vec<UserId>,
    due: BTreeSet<(i64, Due)>,
    rules: DispatchRules,
}

pub(crate) type Answer = Result<(), &'static str>;

impl Model {
    fn trip_index(&self, id: u64) -> usize {
        self.trips.iter().position(|t| t.id.raw() == id).expect("known trip")
    }

    fn driver_index(&self, id: u64) -> usize {
        self.drivers.iter().position(|d| d.id.raw() == id).expect("known driver")
    }

    fn open_trips(&self, rider: usize) -> usize {
        self.trips.iter().filter(|t| t.rider == rider && t.status.is_open()).count()
    }

    fn fire_due(&mut self) {
        while let Some(&(at, due)) = self.due.first() {
            if at > self.now_ms {
                break;
            }
            self.due.pop_first();
            match due {
                Due::Lapse(t, d) => {
                    let (t, d) = (self.trip_index(t), self.driver_index(d));
                    let o = self.trips[t].offers.iter_mut().find(|o| o.driver == d).expect("offer");
                    if o.state == OfferState::Pending && o.expires_ms == at {
                        o.state = OfferState::Lapsed;
                        self.drivers[d].pending.retain(|x| *x != t);
                        self.dispatch(t);
                    }
                }
                Due::Timeout(t) => {
                    let t = self.trip_index(t);
                    let trip = &self.trips[t];
                    if trip.status == TripStatus::Searching
                        && trip.searching_since_ms + i64::from(self.rules.timeout_s) * 1000 <= at
                    {
                        self.trips[t].status = TripStatus::Expired;
                        self.withdraw_all(t, WithdrawReason::Expired);
                    }
                }
                Due::Redispatch(t) => {
                    let t = self.trip_index(t);
                    self.dispatch(t);
                }
            }
        }
    }

    fn dispatch(&mut self, t: usize) {
        let trip = &self.trips[t];
        if trip.status != TripStatus::Searching || trip.offers.iter().any(|o| o.state == OfferState::Pending) {
            return;
        }
        let mut candidates: Vec<usize> = (0..self.drivers.len())
            .filter(|&d| {
                let drv = &self.drivers[d];
                drv.online && drv.trip.is_none() && drv.pending.len() < 16 && !trip.offers.iter().any(|o| o.driver == d)
            })
            .collect();
        candidates.sort_by(|a, b| self.drivers[*a].distance_m.total_cmp(&self.drivers[*b].distance_m));
        candidates.truncate(usize::from(self.rules.offers_per_round));
        let id = trip.id.raw();
        if candidates.is_empty() {
            let retry = self.now_ms + i64::from(self.rules.redispatch_retry_s) * 1000;
            if retry < trip.searching_since_ms + i64::from(self.rules.timeout_s) * 1000 {
                self.due.insert((retry, Due::Redispatch(id)));
            }
            return;
        }
        let expires_ms = self.now_ms + i64::from(self.rules.offer_ttl_s) * 1000;
        for d in candidates {
            self.trips[t].offers.push(MOffer { driver: d, state: OfferState::Pending, expires_ms });
            self.drivers[d].pending.push(t);
            self.due.insert((expires_ms, Due::Lapse(id, self.drivers[d].id.raw())));
        }
    }

    fn withdraw_all(&mut self, t: usize, reason: WithdrawReason) {
        for o in self.trips[t].offers.iter_mut().filter(|o| o.state == OfferState::Pending) {
            o.state = OfferState::Withdrawn(reason);
            self.drivers[o.driver].pending.retain(|x| *x != t);
        }
    }

    fn free_driver(&mut self, d: usize) {
        self.drivers[d].trip = None;
    }

    fn create_trip(&mut self, rider: usize, id: Option<TripId>, code: String) -> Answer {
        if self.open_trips(rider) >= usize::from(self.rules.open_trips_per_rider) {
            return Err("too_many_open_trips");
        }
        let Some(id) = id else { return Err("the engine refused a trip the model accepts") };
        self.trips.push(MTrip {
            id,
            rider,
            status: TripStatus::Searching,
            driver: None,
            offers: Vec::new(),
            searching_since_ms: self.now_ms,
            code,
        });
        let t = self.trips.len() - 1;
        self.due.insert((self.now_ms + i64::from(self.rules.timeout_s) * 1000, Due::Timeout(id.raw())));
        self.dispatch(t);
        Ok(())
    }

    fn accept(&mut self, d: usize, t: usize) -> Answer {
        let trip = &self.trips[t];
        let offer = trip.offers.iter().find(|o| o.driver == d).ok_or("not_offered")?;
        match trip.status {
            TripStatus::Cancelled | TripStatus::Expired => return Err("invalid_transition"),
            TripStatus::Searching => {}
            _ if trip.driver == Some(d) => return Err("invalid_transition"),
            _ => return Err("trip_already_assigned"),
        }
        if !self.drivers[d].online || self.drivers[d].trip.is_some() {
            return Err("driver_not_available");
        }
        if offer.state != OfferState::Pending || offer.expires_ms <= self.now_ms {
            return Err("offer_expired");
        }
        let trip = &mut self.trips[t];
        trip.status = TripStatus::Accepted;
        trip.driver = Some(d);
        for o in &mut trip.offers {
            if o.driver == d {
                o.state = OfferState::Accepted;
            } else if o.state == OfferState::Pending {
                o.state = OfferState::Withdrawn(WithdrawReason::Taken);
                self.drivers[o.driver].pending.retain(|x| *x != t);
            }
        }
        self.drivers[d].trip = Some(t);
        let others: Vec<usize> = std::mem::take(&mut self.drivers[d].pending).into_iter().filter(|x| *x != t).collect();
        for other in others {
            if let Some(o) =
                self.trips[other].offers.iter_mut().find(|o| o.driver == d && o.state == OfferState::Pending)
            {
                o.state = OfferState::Withdrawn(WithdrawReason::Taken);
            }
            self.dispatch(other);
        }
        Ok(())
    }

    fn decline(&mut self, d: usize, t: usize) -> Answer {
        let trip = &self.trips[t];
        let offer = trip.offers.iter().find(|o| o.driver == d).ok_or("not_offered")?;
        match trip.status {
            TripStatus::Searching => {}
            TripStatus::Cancelled | TripStatus::Expired => return Err("invalid_transition"),
            _ if trip.driver == Some(d) => return Err("invalid_transition"),
            _ => return Err("trip_already_assigned"),
        }
        if offer.state != OfferState::Pending || offer.expires_ms <= self.now_ms {
            return Err("offer_expired");
        }
        if let Some(o) = self.trips[t].offers.iter_mut().find(|o| o.driver == d) {
            o.state = OfferState::Declined;
        }
        self.drivers[d].pending.retain(|x| *x != t);
        self.dispatch(t);
        Ok(())
    }

    /// Refusal for a step only the assigned driver may take.
    fn assigned(&self, d: usize, t: usize) -> Answer {
        let trip = &self.trips[t];
        if trip.driver == Some(d) && trip.status != TripStatus::Searching {
            Ok(())
        } else if trip.offers.iter().any(|o| o.driver == d) {
            Err("forbidden")
        } else {
            Err("not_found")
        }
    }

    fn step(&mut self, d: usize, t: usize, from: TripStatus, to: TripStatus) -> Answer {
        self.assigned(d, t)?;
        if self.trips[t].status != from {
            return Err("invalid_transition");
        }
        self.trips[t].status = to;
        if to == TripStatus::Completed {
            self.free_driver(d);
        }
        Ok(())
    }

    fn start(&mut self, d: usize, t: usize, code_ok: bool) -> Answer {
        self.assigned(d, t)?;
        if self.trips[t].status != TripStatus::Arrived {
            return Err("invalid_transition");
        }
        if !code_ok {
            return Err("forbidden");
        }
        self.trips[t].status = TripStatus::InProgress;
        Ok(())
    }

    fn cancel_terminal(&mut self, t: usize) -> Answer {
        if !self.trips[t].status.is_open() {
            return Err("invalid_transition");
        }
        self.trips[t].status = TripStatus::Cancelled;
        self.withdraw_all(t, WithdrawReason::Cancelled);
        if let Some(d) = self.trips[t].driver {
            self.free_driver(d);
        }
        Ok(())
    }

    fn cancel_by_driver(&mut self, d: usize, t: usize) -> Answer {
        let trip = &self.trips[t];
        let assigned = trip.driver == Some(d) && trip.status.has_driver();
        if !assigned {
            return Err(if trip.offers.iter().any(|o| o.driver == d) { "forbidden" } else { "not_found" });
        }
        if trip.status == TripStatus::InProgress {
            return Err("invalid_transition");
        }
        let trip = &mut self.trips[t];
        trip.status = TripStatus::Searching;
        trip.driver = None;
        trip.searching_since_ms = self.now_ms;
        if let Some(o) = trip.offers.iter_mut().find(|o| o.driver == d) {
            o.state = OfferState::Released;
        }
        let id = trip.id.raw();
        self.free_driver(d);
        self.due.insert((self.now_ms + i64::from(self.rules.timeout_s) * 1000, Due::Timeout(id)));
        self.dispatch(t);
        Ok(())
    }

    fn set_online(&mut self, d: usize, online: bool) -> Answer {
        if online {
            self.drivers[d].online = true;
            return Ok(());
        }
        if self.drivers[d].trip.is_some() {
            return Err("invalid_transition");
        }
        if self.drivers[d].online {
            self.drivers[d].online = false;
            for t in std::mem::take(&mut self.drivers[d].pending) {
                if let Some(o) =
                    self.trips[t].offers.iter_mut().find(|o| o.driver == d && o.state == OfferState::Pending)
                {
                    o.state = OfferState::Withdrawn(WithdrawReason::Expired);
                }
                self.dispatch(t);
            }
        }
        Ok(())
    }
}

// ----- the run ---------------------------------------------------------------

fn trip_of(op: &Op) -> usize {
    match op {
        Op::Accept { trip, .. }
        | Op::Decline { trip, .. }
        | Op::Arrived { trip, .. }
        | Op::Start { trip, .. }
        | Op::Complete { trip, .. }
        | Op::CancelByRider { trip }
        | Op::CancelByDriver { trip, .. }
        | Op::CancelByStaff { trip } => *trip,
        Op::SetOnline { .. } | Op::Advance { .. } | Op::CreateTrip { .. } => 0,
    }
}

fn code_of(r: &Result<impl Sized, Error>) -> Answer {
    r.as_ref().map(|_| ()).map_err(|e| e.code())
}

/// Creates the zone, the riders and the drivers (online at their fixed distances from
/// the pickup) in `engine`, and the model of what it then holds.
pub(crate) fn setup(engine: &Engine, clock: &ManualClock) -> Model {
    engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().expect("valid")).expect("zone");
    let economy = Category::new("economy").expect("valid");
    let mut phone = 0u64;
    let mut new_user = |role: Role, vehicle: Option<Vehicle>| {
        phone += 1;
        let u = NewUser { id: None, role, name: format!("u{phone}"), phone: format!("+2010{phone:08}"), vehicle };
        engine.create_user(Actor::Admin, u).expect("user").id
    };
    let riders: Vec<UserId> = (0..RIDERS).map(|_| new_user(Role::Rider, None)).collect();
    let mut drivers = Vec::new();
    for i in 0..DRIVERS {
        let id = new_user(Role::Driver, Some(Vehicle::new(economy.clone(), format!("P{i}"))));
        let km = 0.3 + i as f64 * 0.7;
        let at = LatLng::new(PICKUP.0 + km / 111.195, PICKUP.1).expect("valid");
        engine.set_driver_status(id, true, Some(at)).expect("online");
        let distance_m = at.distance_m(&LatLng::new(PICKUP.0, PICKUP.1).expect("valid"));
        drivers.push(MDriver { id, online: true, trip: None, distance_m, pending: Vec::new() });
    }
    Model { now_ms: clock.now().as_millis(), trips: Vec::new(), drivers, riders, due: BTreeSet::new(), rules: rules() }
}

/// Sends `op` to the engine and applies it to the model: the engine's answer and the
/// model's (`None`: the op names a trip and there is none yet).
pub(crate) fn step(engine: &Engine, clock: &ManualClock, model: &mut Model, op: &Op) -> Option<(Answer, Answer)> {
    let economy = Category::new("economy").expect("valid");
    let trip_at = |i: usize| (!model.trips.is_empty()).then(|| i % model.trips.len());
    Some(match *op {
        Op::Advance { secs } => {
            clock.advance_secs(i64::from(secs));
            model.now_ms = clock.now().as_millis();
            model.fire_due();
            (code_of(&engine.tick()), Ok(()))
        }
        Op::CreateTrip { rider } => {
            let new = NewTrip {
                id: None,
                pickup_code: None,
                reference: None,
                kind: TripKind::Ride,
                pickup: Place::at(LatLng::new(PICKUP.0, PICKUP.1).expect("valid")),
                dropoff: Place::at(LatLng::new(30.06, 31.25).expect("valid")),
                stops: Vec::new(),
                category: economy.clone(),
                parcel: None,
                payment_method: PaymentMethod::Cash,
                route: Route { distance_m: 3_000, duration_s: 360, source: RouteSource::StraightLine },
                coupon: None,
                bid_minor: None,
                scheduled_at: None,
            };
            model.fire_due();
            let r = engine.create_trip(model.riders[rider], new);
            let (id, code) = match &r {
                Ok(t) => (Some(t.id), t.pickup_code.to_string()),
                Err(_) => (None, String::new()),
            };
            (code_of(&r), model.create_trip(rider, id, code))
        }
        Op::SetOnline { driver, online } => {
            model.fire_due();
            (
                code_of(&engine.set_driver_status(model.drivers[driver].id, online, None)),
                model.set_online(driver, online),
            )
        }
        ref other => {
            let t = trip_at(trip_of(other))?;
            model.fire_due();
            let tid = model.trips.get(t).map(|t| t.id);
            match *other {
                Op::Accept { driver, .. } => {
                    (code_of(&engine.accept(model.drivers[driver].id, tid.expect("trip"))), model.accept(driver, t))
                }
                Op::Decline { driver, .. } => {
                    (code_of(&engine.decline(model.drivers[driver].id, tid.expect("trip"))), model.decline(driver, t))
                }
                Op::Arrived { driver, .. } => (
                    code_of(&engine.arrived(model.drivers[driver].id, tid.expect("trip"))),
                    model.step(driver, t, TripStatus::Accepted, TripStatus::Arrived),
                ),
                Op::Start { driver, right_code, .. } => {
                    let real = model.trips[t].code.clone();
                    let code = if right_code {
                        real
                    } else if real == "0000" {
                        "0001".into()
                    } else {
                        "0000".into()
                    };
                    (
                        code_of(&engine.start(model.drivers[driver].id, tid.expect("trip"), &code)),
                        model.start(driver, t, right_code),
                    )
                }
                Op::Complete { driver, .. } => (
                    code_of(&engine.complete(model.drivers[driver].id, tid.expect("trip"), Some(1000))),
                    model.step(driver, t, TripStatus::InProgress, TripStatus::Completed),
                ),
                Op::CancelByRider { .. } => {
                    let rider = model.riders[model.trips[t].rider];
                    (code_of(&engine.cancel(Actor::User(rider), tid.expect("trip"), "r")), model.cancel_terminal(t))
                }
                Op::CancelByStaff { .. } => {
                    (code_of(&engine.cancel(Actor::Admin, tid.expect("trip"), "s")), model.cancel_terminal(t))
                }
                Op::CancelByDriver { driver, .. } => (
                    code_of(&engine.cancel(Actor::User(model.drivers[driver].id), tid.expect("trip"), "d")),
                    model.cancel_by_driver(driver, t),
                ),
                Op::SetOnline { .. } | Op::Advance { .. } | Op::CreateTrip { .. } => unreachable!(),
            }
        }
    })
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let config = EngineConfig::default().with_clock(clock.clone()).with_ids(RandomIds::seeded(9)).with_rules(rules());
    let engine = Engine::open(config).expect("engine opens");
    let mut model = setup(&engine, &clock);
    let mut seen: HashMap<TripId, TripStatus> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let Some((engine_answer, model_answer)) = step(&engine, &clock, &mut model, op) else { continue };
        prop_assert_eq!(engine_answer, model_answer, "step {}: {:?}", i, op);
        compare(&engine, &model, Some(&mut seen), i)?;
    }
    let state = engine.shutdown().expect("shutdown");
    prop_assert_eq!(state.check_invariants(), Ok(()));
    Ok(())
}

/// The engine's view equals the model (its trips, with their statuses, drivers and
/// offers, and no others; its drivers, with their availability, trips and pending
/// offers), and the invariants hold. With `seen`, the statuses seen at earlier steps:
/// every change since must be a legal transition.
pub(crate) fn compare(
    engine: &Engine,
    model: &Model,
    mut seen: Option<&mut HashMap<TripId, TripStatus>>,
    step: usize,
) -> Result<(), TestCaseError> {
    let mut drivers_on_open_trips: HashMap<UserId, TripId> = HashMap::new();
    prop_assert_eq!(engine.read(|v| v.trips().count()), model.trips.len(), "step {}: trips in the view", step);
    for mt in &model.trips {
        let Some(t) = engine.trip(mt.id) else {
            return Err(TestCaseError::fail(format!("step {step}: trip {} is not in the view", mt.id)));
        };
        prop_assert_eq!(t.status, mt.status, "step {}: status of {}", step, mt.id);
        prop_assert_eq!(t.driver_id, mt.driver.map(|d| model.drivers[d].id), "step {}: driver of {}", step, mt.id);
        let offers: Vec<(UserId, OfferState)> = t.offers.iter().map(|o| (o.driver_id, o.state)).collect();
        let expected: Vec<(UserId, OfferState)> =
            mt.offers.iter().map(|o| (model.drivers[o.driver].id, o.state)).collect();
        prop_assert_eq!(offers, expected, "step {}: offers of {}", step, mt.id);
        // Invariants, from the engine's side alone.
        prop_assert!(t.offers.iter().filter(|o| o.state == OfferState::Accepted).count() <= 1);
        if t.status.has_driver() {
            let d = t.driver_id.expect("assigned trip has a driver");
            prop_assert!(drivers_on_open_trips.insert(d, t.id).is_none(), "driver {} on two open trips", d);
        }
        if let Some(seen) = seen.as_deref_mut() {
            if let Some(prev) = seen.insert(t.id, t.status) {
                prop_assert!(prev == t.status || prev.can_become(t.status), "illegal {:?} -> {:?}", prev, t.status);
            } else {
                prop_assert_eq!(t.status.is_open() || t.status == TripStatus::Expired, true);
            }
        }
    }
    for md in &model.drivers {
        let Some(d) = engine.driver(md.id) else {
            return Err(TestCaseError::fail(format!("step {step}: driver {} is not in the view", md.id)));
        };
        let availability = match (md.online, md.trip) {
            (_, Some(_)) => Availability::OnTrip,
            (true, None) => Availability::Available,
            (false, None) => Availability::Offline,
        };
        prop_assert_eq!(d.availability, availability, "step {}: availability of {}", step, md.id);
        prop_assert_eq!(d.trip_id, md.trip.map(|t| model.trips[t].id));
        let pending: BTreeSet<TripId> = d.pending_offers.iter().copied().collect();
        let expected: BTreeSet<TripId> = md.pending.iter().map(|t| model.trips[*t].id).collect();
        prop_assert_eq!(pending, expected, "step {}: pending offers of {}", step, md.id);
        if let Some(t) = d.trip_id {
            prop_assert_eq!(drivers_on_open_trips.get(&md.id), Some(&t));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }
}
