//! Batched matching through the engine (issue 22): with `matching: Batched`, new trips get
//! no offer until the writer's logged `Tick` closes the window; then each trip the solve
//! assigned has one offer, no driver has two trips of the window, every driver offered
//! was eligible; and reopening the engine on its log replays the same offers.

use std::sync::Arc;
use std::time::Duration;

use dispatch_storage::SharedMemLog;

use crate::clock::{ManualClock, Timestamp};
use crate::command::{Actor, NewUser};
use crate::engine::{Engine, EngineConfig};
use crate::geo::LatLng;
use crate::id::{RandomIds, TripId, UserId};
use crate::rules::{DispatchRules, LearningWeights, MatchingMode};
use crate::state::State;
use crate::trip::{OfferState, TripStatus};
use crate::user::{Category, Role, Vehicle};

const T0: i64 = 1_700_000_000_000;

fn at(m: f64) -> LatLng {
    LatLng::new(30.0444 + m / 111_195.08, 31.2357).expect("a point in Cairo")
}

fn open(log: &SharedMemLog, clock: &ManualClock, rules: DispatchRules) -> Engine {
    let config = EngineConfig { idle_wakeup: Duration::from_secs(86_400), ..EngineConfig::default() }
        .with_clock(clock.clone())
        .with_ids(RandomIds::seeded(7))
        .with_rules(rules);
    Engine::open_with_log(config, Box::new(log.handle()), State::default()).expect("an in-memory engine opens")
}

fn user(engine: &Engine, role: Role, n: u64) -> UserId {
    let vehicle = (role == Role::Driver).then(|| Vehicle::new(Category::new("economy").expect("a category"), "X 1"));
    let new = NewUser { id: None, role, name: format!("{role:?} {n}"), phone: format!("+2010{n:08}"), vehicle };
    engine.create_user(Actor::Admin, new).expect("a user").id
}

#[test]
fn the_window_closes_on_the_logged_tick_and_assigns_each_driver_once() {
    let log = SharedMemLog::new();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let rules = DispatchRules {
        matching: MatchingMode::Batched,
        batch_window_ms: 2_000,
        learning: LearningWeights::TUNED,
        ..DispatchRules::default()
    };
    let engine = open(&log, &clock, rules.clone());
    engine.create_zone(Actor::Admin, crate::demo::cairo().expect("the demo zone")).expect("a zone");
    // 12 trips along a line, 8 drivers among them: more trips than drivers.
    let drivers: Vec<UserId> = (0..8)
        .map(|i| {
            let d = user(&engine, Role::Driver, 100 + i);
            engine.set_driver_status(d, true, Some(at(i as f64 * 700.0 + 150.0))).expect("online");
            d
        })
        .collect();
    let trips: Vec<TripId> = (0..12)
        .map(|i| {
            let rider = user(&engine, Role::Rider, 200 + i);
            let new = dispatch_domain::testkit::cash_ride(at(i as f64 * 450.0), at(9_000.0));
            engine.create_trip(rider, new).expect("a trip").id
        })
        .collect();
    let offers = |engine: &Engine| -> Vec<(TripId, UserId)> {
        engine
            .query({
                let trips = trips.clone();
                move |s: &State| {
                    trips
                        .iter()
                        .flat_map(|t| {
                            let trip = s.trip(*t).expect("a hot trip");
                            trip.offers.iter().map(|o| (trip.id, o.driver_id, o.state)).collect::<Vec<_>>()
                        })
                        .filter(|(_, _, st)| *st == OfferState::Pending)
                        .map(|(t, d, _)| (t, d))
                        .collect()
                }
            })
            .expect("the writer answers")
    };
    assert!(offers(&engine).is_empty(), "nothing is offered while the window is open");
    clock.advance_millis(1_000);
    engine.tick().expect("a tick");
    assert!(offers(&engine).is_empty(), "the window is not closed yet");
    clock.advance_millis(1_000);
    engine.tick().expect("a tick");
    let state = engine.query(|s| s.clone()).expect("the writer answers");
    assert!(state.batch_waiting().is_empty());
    // Round 1 of each trip is the solve's (one offer) or, for the trips it left, a greedy round.
    let mut solved_drivers = Vec::new();
    for t in &trips {
        let trip = state.trip(*t).expect("a hot trip");
        assert_eq!(trip.status, TripStatus::Searching);
        let first: Vec<_> = trip.offers.iter().filter(|o| o.round == 1).collect();
        if first.len() == 1 {
            solved_drivers.push(first[0].driver_id);
        }
        for o in &trip.offers {
            assert!(drivers.contains(&o.driver_id));
            assert!(o.distance_to_pickup_m <= rules.search_radius_m, "an offer beyond the radius");
        }
    }
    let mut distinct = solved_drivers.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), solved_drivers.len(), "a driver got two trips of the window");
    assert_eq!(solved_drivers.len(), drivers.len(), "every driver got one trip of the window");
    state.check_invariants().expect("the invariants hold");
    let before = engine.shutdown().expect("the engine stops");

    // The log replays to the same state: the same window, the same offers.
    let again = open(&log, &clock, rules);
    let after = again.query(|s| s.clone()).expect("the writer answers");
    assert_eq!(after, before, "the replay differs");
    assert_eq!(offers(&again).len(), offers_len(&before, &trips));
    again.shutdown().expect("the engine stops");
}

fn offers_len(state: &State, trips: &[TripId]) -> usize {
    trips.iter().filter_map(|t| state.trip(*t)).map(|t| Arc::clone(t).pending_offers().count()).sum()
}
