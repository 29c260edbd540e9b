//! Tests of how the writer logs and publishes position reports (issue 26): a run of
//! published reports is one `Positions` record, logged in its place among the other
//! records; a replay of the log rebuilds the same drivers (fixes, odometers, index); the
//! view's copy of a moving driver equals the state's after every batch, and a snapshot
//! taken before a move keeps the old position.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use dispatch_storage::{CommandLog, SharedMemLog, StorageError};

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
    assert!(
        logged[logged_before..]
            .iter()
            .all(|r| matches!(r.command, Command::SetDriverStatus { .. }) || r.actor == Actor::System)
    );

    // The view equals the state, driver by driver.
    let state_drivers = engine
        .query(move |s| drivers.iter().map(|id| whereabouts(s.driver(*id).unwrap())).collect::<Vec<_>>())
        .unwrap();
    let view_drivers: Vec<_> = [d0, d1, d2].iter().map(|id| whereabouts(&engine.driver(*id).unwrap())).collect();
    assert_eq!(view_drivers, state_drivers);
    assert!(state_drivers[0].1 > 80.0, "the rider's steps are on the odometer: {}", state_drivers[0].1);

    // A replay of the log (another engine over it) rebuilds the same drivers and index.
    let replica = Engine::open_with_log(config(&clock), Box::new(log.handle()), State::default()).unwrap();
    let replayed: Vec<_> = [d0, d1, d2].iter().map(|id| whereabouts(&replica.driver(*id).unwrap())).collect();
    assert_eq!(replayed, state_drivers);
    let indexed = |e: &Engine| {
        e.query(move |s| {
            [d0, d1, d2].map(|id| s.drivers_near(north(0.0), 1_000.0, 10).unwrap().iter().any(|(d, _)| d.id == id))
        })
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

/// A log in memory whose syncs are counted and can be made to fail; a reopen after a
/// failure loses what was not synced, as a disk does.
struct SyncLog {
    inner: dispatch_storage::MemLog,
    syncs: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    /// (last LSN, durable LSN), for the test to look at.
    lsns: Arc<Mutex<(u64, u64)>>,
}

impl CommandLog for SyncLog {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<u64, StorageError> {
        let first = self.inner.append(payloads)?;
        self.lsns.lock().0 = self.inner.last_lsn();
        Ok(first)
    }
    fn sync(&mut self) -> Result<u64, StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Io {
                op: "fdatasync",
                path: "sync-log".into(),
                source: std::io::Error::from_raw_os_error(5),
            });
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let durable = self.inner.sync()?;
        self.lsns.lock().1 = durable;
        Ok(durable)
    }
    fn read_from(&self, from: u64) -> Result<dispatch_storage::Records<'_>, StorageError> {
        self.inner.read_from(from)
    }
    fn last_lsn(&self) -> u64 {
        self.inner.last_lsn()
    }
    fn durable_lsn(&self) -> u64 {
        self.inner.durable_lsn()
    }
    fn release_below(&mut self, lsn: u64) -> Result<(), StorageError> {
        self.inner.release_below(lsn)
    }
    fn reopen(&mut self) -> Result<(), StorageError> {
        self.inner.crash();
        *self.lsns.lock() = (self.inner.last_lsn(), self.inner.durable_lsn());
        Ok(())
    }
}

struct Rig {
    engine: Engine,
    syncs: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    lsns: Arc<Mutex<(u64, u64)>>,
    driver: UserId,
}

fn rig(clock: &ManualClock) -> Rig {
    let (syncs, failing, lsns) = (Arc::default(), Arc::<AtomicBool>::default(), Arc::default());
    let log = SyncLog {
        inner: dispatch_storage::MemLog::new(),
        syncs: Arc::clone(&syncs),
        failing: Arc::clone(&failing),
        lsns: Arc::clone(&lsns),
    };
    let mut config = config(clock);
    config.read_only_retry = Duration::from_millis(10);
    config.idle_wakeup = Duration::from_millis(5);
    let engine = Engine::open_with_log(config, Box::new(log), State::default()).unwrap();
    engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap();
    let vehicle = Some(Vehicle::new(Category::new("economy").unwrap(), "Q 1".to_owned()));
    let new = NewUser { id: None, role: Role::Driver, name: "q".into(), phone: "+201100000077".into(), vehicle };
    let driver = engine.create_user(Actor::Admin, new).unwrap().id;
    engine.set_driver_status(driver, true, Some(north(0.0))).unwrap();
    Rig { engine, syncs, failing, lsns, driver }
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A batch of positions only is published when written, and becomes durable without
/// any further command (the writer's delay); a batch with any other record is durable
/// before its callers hear of it, with every position written before it.
#[test]
fn positions_are_published_when_written_and_synced_soon_after() {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let r = rig(&clock);
    for step in 1..=5 {
        clock.advance_millis(500);
        assert!(submit(&r.engine, vec![(Actor::User(r.driver), at(f64::from(step) * 10.0))])[0].is_ok());
        assert_eq!(r.engine.driver(r.driver).unwrap().fix.unwrap().point, north(f64::from(step) * 10.0));
        until("the positions are durable", || {
            let (last, durable) = *r.lsns.lock();
            last == durable
        });
    }
    // Positions written, then a command that needs a sync: when it is answered, the log is
    // durable to its end.
    let syncs = r.syncs.load(Ordering::SeqCst);
    clock.advance_millis(500);
    let answers = submit(
        &r.engine,
        vec![(Actor::User(r.driver), at(70.0)), (Actor::User(r.driver), Command::SetPresence { connected: true })],
    );
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let (last, durable) = *r.lsns.lock();
    assert_eq!(last, durable, "answered only once durable, the positions before it too");
    assert!(r.syncs.load(Ordering::SeqCst) > syncs);
    r.engine.shutdown().unwrap();
}

/// A sync of published positions that fails: the engine goes read-only, rebuilds from
/// what is durable, and readers see the drivers as the durable state has them (not the
/// positions the disk lost); once the disk writes again, so does the engine.
#[test]
fn a_failed_sync_of_published_positions_takes_them_back_from_readers() {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let r = rig(&clock);
    r.failing.store(true, Ordering::SeqCst);
    clock.advance_millis(500);
    assert!(submit(&r.engine, vec![(Actor::User(r.driver), at(40.0))])[0].is_ok());
    until("the failed sync makes the engine read-only", || r.engine.is_read_only());
    // The writer rebuilds after it says read-only: readers then see what is durable.
    until("readers see the durable position", || r.engine.driver(r.driver).unwrap().fix.unwrap().point == north(0.0));
    let driver = r.driver;
    let in_state = r.engine.query(move |s| s.driver(driver).and_then(|d| d.fix).map(|f| f.point)).unwrap();
    assert_eq!(in_state, Some(north(0.0)), "the state was rebuilt from what is durable");
    r.failing.store(false, Ordering::SeqCst);
    until("the engine writes again", || !r.engine.is_read_only());
    clock.advance_millis(500);
    assert!(submit(&r.engine, vec![(Actor::User(r.driver), at(45.0))])[0].is_ok());
    assert_eq!(r.engine.driver(r.driver).unwrap().fix.unwrap().point, north(45.0));
    r.engine.shutdown().unwrap();
}
