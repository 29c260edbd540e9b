//! Tests of how the writer logs and publishes position reports (issue 26): a run of
//! published reports is one `Positions` record, logged in its place among the other
//! records; a replay of the log rebuilds the same drivers (fixes, odometers, index); the
//! view's copy of a moving driver equals the state's after every batch, and a snapshot
//! taken before a move keeps the old position.

use std::time::Duration;

use dispatch_storage::{CommandLog, SharedMemLog};

use crate::clock::{ManualClock, Timestamp};
use crate::command::{Actor, Command, DispatchRules, LocationReport, NewUser, Outcome};
use crate::driver::Driver;
use crate::engine::{Engine, EngineConfig};
use crate::error::{DomainError, Error};
use crate::geo::LatLng;
use crate::id::{RandomIds, UserId};
use crate::record::Record;
use crate::state::State;
use crate::user::{Category, Role, Vehicle};

const T0: i64 = 1_700_000_000_000;

fn config(clock: &ManualClock) -> EngineConfig {
    // Every report is published (no coalescing), so each one is a position to log.
    let rules = DispatchRules { location_min_interval_ms: 0, ..DispatchRules::default() };
    EngineConfig { idle_wakeup: Duration::from_secs(86_400), ..EngineConfig::default() }
        .with_clock(clock.clone())
        .with_ids(RandomIds::seeded(5))
        .with_rules(rules)
}

fn north(m: f64) -> LatLng {
    LatLng::new(30.0444 + m / 111_195.08, 31.2357).unwrap()
}

fn at(m: f64) -> Command {
    Command::UpdateLocation(LocationReport { point: north(m), heading_deg: Some(10.0), speed_mps: Some(9.0) })
}

fn submit(engine: &Engine, commands: Vec<(Actor, Command)>) -> Vec<crate::error::Result<Outcome>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    engine.submit_many_with(commands, move |answers| drop(tx.send(answers))).unwrap();
    let answers = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Position reports are answered before their batch is published; a query after it.
    engine.query(|_| ()).unwrap();
    answers
}

/// Every record of `log`, decoded.
fn records(log: &SharedMemLog) -> Vec<Record> {
    log.handle().read_from(1).unwrap().map(|item| Record::decode(&item.unwrap().payload).unwrap()).collect()
}

/// What a driver's record says about where it is and what it drove.
fn whereabouts(d: &Driver) -> (Option<crate::driver::Fix>, f64, crate::driver::Availability) {
    (d.fix, d.trip_odometer_m, d.availability)
}

#[test]
fn a_run_of_reports_is_one_record_in_its_place_and_replays_to_the_same_drivers() {
    let log = SharedMemLog::new();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open_with_log(config(&clock), Box::new(log.handle()), State::default()).unwrap();
    engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap();
    let drivers: Vec<UserId> = (0..3u64)
        .map(|n| {
            let vehicle = Some(Vehicle::new(Category::new("economy").unwrap(), format!("P {n}")));
            let new =
                NewUser { id: None, role: Role::Driver, name: format!("d{n}"), phone: format!("+2011{n:08}"), vehicle };
            let id = engine.create_user(Actor::Admin, new).unwrap().id;
            engine.set_driver_status(id, true, Some(north(0.0))).unwrap();
            id
        })
        .collect();
    // Driver 0 carries a rider, so its published steps count on its odometer.
    let rider = NewUser { id: None, role: Role::Rider, name: "r".into(), phone: "+201199999999".into(), vehicle: None };
    let rider = engine.create_user(Actor::Admin, rider).unwrap().id;
    let trip = engine.create_trip(rider, dispatch_domain::testkit::cash_ride(north(0.0), north(5_000.0))).unwrap();
    engine.accept(drivers[0], trip.id).unwrap();
    engine.arrived(drivers[0], trip.id).unwrap();
    let trip_id = trip.id;
    let code = engine.query(move |s| s.trip(trip_id).unwrap().pickup_code.to_string()).unwrap();
    engine.start(drivers[0], trip_id, &code).unwrap();
    let logged_before = records(&log).len();

    clock.advance_secs(5);
    let [d0, d1, d2] = [drivers[0], drivers[1], drivers[2]];
    let answers = submit(
        &engine,
        vec![
            (Actor::User(d0), at(40.0)),
            (Actor::User(d1), at(30.0)),
            (Actor::User(d2), at(20.0)),
            // Another record in the middle of the run: the run is cut around it.
            (Actor::User(d1), Command::SetDriverStatus { online: false, location: None }),
            (Actor::User(d0), at(90.0)),
            (Actor::User(d2), at(25.0)),
        ],
    );
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    let logged = records(&log);
    let new: Vec<&Command> = logged[logged_before..].iter().map(|r| &r.command).collect();
    let moved = |c: &Command| match c {
        Command::Positions(fixes) => fixes.iter().map(|(id, f)| (*id, f.point)).collect::<Vec<_>>(),
        other => panic!("expected a Positions record, found {}", other.name()),
    };
    assert_eq!(new.len(), 3, "two runs of positions around the status change: {:?}", new.iter().map(|c| c.name()));
    assert_eq!(moved(new[0]), vec![(d0, north(40.0)), (d1, north(30.0)), (d2, north(20.0))]);
    assert!(matches!(new[1], Command::SetDriverStatus { online: false, .. }));
    assert_eq!(moved(new[2]), vec![(d0, north(90.0)), (d2, north(25.0))]);
    assert!(logged[logged_before..].iter().all(|r| matches!(r.command, Command::SetDriverStatus { .. }) || r.actor == Actor::System));

    // The view equals the state, driver by driver.
    let state_drivers =
        engine.query(move |s| drivers.iter().map(|id| whereabouts(s.driver(*id).unwrap())).collect::<Vec<_>>()).unwrap();
    let view_drivers: Vec<_> = [d0, d1, d2].iter().map(|id| whereabouts(&engine.driver(*id).unwrap())).collect();
    assert_eq!(view_drivers, state_drivers);
    assert!(state_drivers[0].1 > 80.0, "the rider's steps are on the odometer: {}", state_drivers[0].1);

    // A replay of the log (another engine over it) rebuilds the same drivers and index.
    let replica = Engine::open_with_log(config(&clock), Box::new(log.handle()), State::default()).unwrap();
    let replayed: Vec<_> = [d0, d1, d2].iter().map(|id| whereabouts(&replica.driver(*id).unwrap())).collect();
    assert_eq!(replayed, state_drivers);
    let indexed = |e: &Engine| {
        e.query(move |s| [d0, d1, d2].map(|id| s.drivers_near(north(0.0), 1_000.0, 10).unwrap().iter().any(|(d, _)| d.id == id)))
            .unwrap()
    };
    assert_eq!(indexed(&replica), indexed(&engine));
    assert_eq!(indexed(&engine), [true, false, true], "the driver who went offline left the index");
    replica.shutdown().unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn the_views_copy_of_a_moving_driver_follows_the_state_and_snapshots_keep_theirs() {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(config(&clock)).unwrap();
    engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap();
    let vehicle = Some(Vehicle::new(Category::new("economy").unwrap(), "S 1".to_owned()));
    let new = NewUser { id: None, role: Role::Driver, name: "s".into(), phone: "+201100000042".into(), vehicle };
    let d = engine.create_user(Actor::Admin, new).unwrap().id;
    engine.set_driver_status(d, true, Some(north(0.0))).unwrap();
    let mut snapshots = Vec::new();
    for step in 1..=20 {
        clock.advance_millis(500);
        if step % 5 == 0 {
            snapshots.push((engine.snapshot(), north(f64::from(step - 1) * 10.0)));
        }
        if step == 12 {
            // A change of the record itself between moves: shared with the view again.
            assert!(submit(&engine, vec![(Actor::User(d), Command::SetPresence { connected: true })])[0].is_ok());
        }
        assert!(submit(&engine, vec![(Actor::User(d), at(f64::from(step) * 10.0))])[0].is_ok());
        let state = engine.query(move |s| (**s.driver(d).unwrap()).clone()).unwrap();
        assert_eq!(*engine.driver(d).unwrap(), state, "step {step}: the view's record equals the state's");
    }
    for (snapshot, point) in snapshots {
        assert_eq!(snapshot.driver(d).unwrap().fix.unwrap().point, point, "a snapshot never changes");
    }
    engine.shutdown().unwrap();
}

#[test]
fn nobody_but_the_writer_records_positions() {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(config(&clock)).unwrap();
    let forged = Command::Positions(Vec::new());
    for actor in [Actor::System, Actor::Admin] {
        let refused = engine.submit(actor, forged.clone());
        assert!(matches!(refused, Err(Error::Domain(DomainError::Invalid(_)))), "{refused:?}");
    }
    // And `apply` refuses it from anyone but the system, whatever reaches it.
    let mut state = State::new(DispatchRules::default());
    let mut fx = crate::state::Effects::default();
    let applied = crate::state::apply(&mut state, Actor::Admin, &forged, Timestamp::from_millis(T0), &mut fx);
    assert!(matches!(applied, Err(DomainError::Forbidden(_))), "{applied:?}");
    engine.shutdown().unwrap();
}
