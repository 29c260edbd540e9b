//! Durability of the engine over a data directory: what was acknowledged is there
//! after a restart, a torn or damaged tail is cut cleanly and recovery lands on an
//! exact prefix of the log, a disk that stops taking writes makes the engine
//! read-only instead of lying, and a backup taken while serving — even one that
//! raced a checkpoint and started again — is an exact prefix of the log.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dispatch::scenario::{self, near_center, ride_from};
use dispatch_core::clock::{ManualClock, Timestamp};
use dispatch_core::id::UserId;
use dispatch_core::{
    Actor, Command, DomainError, Engine, EngineConfig, Error, RandomIds, Record, Role, State, TripStatus, replay,
};
use dispatch_storage::{CommandLog, Lsn, MemLog, Records, StorageError};

const T0: i64 = 1_700_000_000_000;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig::default()
        .with_clock(ManualClock::new(Timestamp::from_millis(T0)))
        .with_ids(RandomIds::seeded(5))
        .with_data_dir(dir)
}

/// A small day: drivers online, trips created, accepted, completed, cancelled.
/// Every call returns only after its command is durable.
fn busy_day(engine: &Engine) {
    let rider = scenario::user(engine, Role::Rider, 1).unwrap();
    let drivers: Vec<_> = (0..3)
        .map(|i| scenario::online_driver(engine, 10 + i, near_center(200.0 * i as f64, 0.0).unwrap()).unwrap())
        .collect();
    let t1 = engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
    let t1 = engine.accept(drivers[0], t1.id).unwrap();
    engine.arrived(drivers[0], t1.id).unwrap();
    engine.start(drivers[0], t1.id, &t1.pickup_code.to_string()).unwrap();
    engine.complete(drivers[0], t1.id, Some(3_100)).unwrap();
    let t2 = engine.create_trip(rider, ride_from(near_center(50.0, 0.0).unwrap()).unwrap()).unwrap();
    engine.decline(drivers[0], t2.id).unwrap();
    engine.accept(drivers[1], t2.id).unwrap();
    engine.cancel(Actor::User(drivers[1]), t2.id, "flat tyre").unwrap();
    engine.cancel(Actor::User(rider), t2.id, "too slow").unwrap();
    engine.set_driver_status(drivers[2], false, None).unwrap();
}

fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("wal")).unwrap();
    for seg in wal_segments(from) {
        fs::copy(&seg, to.join("wal").join(seg.file_name().unwrap())).unwrap();
    }
}

/// Every record in the (cleanly closed) log of `dir`, decoded.
fn records(dir: &Path) -> Vec<Record> {
    let (wal, _) = dispatch_storage::Wal::open(dir.join("wal"), Default::default()).unwrap();
    let out = wal.read_from(1).unwrap().map(|r| Record::decode(&r.unwrap().payload).unwrap()).collect();
    drop(wal);
    out
}

/// What a state must be after the first `n` records: computed without the WAL.
fn expected(records: &[Record], n: usize) -> State {
    let mut state = State::default();
    replay(&mut state, &records[..n]).unwrap();
    state
}

fn recovered(dir: &Path) -> (State, u64) {
    let engine = Engine::open(config(dir)).unwrap();
    let replayed = engine.recovery().replayed;
    (engine.shutdown().unwrap(), replayed)
}

#[test]
fn a_restart_brings_back_exactly_the_acknowledged_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    busy_day(&engine);
    let before = engine.shutdown().unwrap();
    let (after, replayed) = recovered(dir.path());
    assert_eq!(after, before);
    assert!(replayed > 10, "{replayed}");
    assert_eq!(after.trips().filter(|t| t.status == TripStatus::Completed).count(), 1);
}

#[test]
fn one_process_per_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    match Engine::open(config(dir.path())) {
        Err(Error::Storage(msg)) => assert!(msg.contains("in use"), "{msg}"),
        other => panic!("a second open must fail, got {:?}", other.map(|_| ())),
    }
    engine.shutdown().unwrap();
    Engine::open(config(dir.path())).unwrap().shutdown().unwrap();
}

/// A crash during the sync of the last records may leave any prefix of their
/// bytes on disk. Cut there, at every byte: recovery must give exactly the state
/// after the records that are whole, never a half-applied one.
#[test]
fn a_torn_tail_cut_at_every_byte_recovers_an_exact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    busy_day(&engine);
    // The boundaries of the last records: file sizes after each acknowledged command.
    let seg = wal_segments(dir.path()).pop().unwrap();
    let rider = scenario::user(&engine, Role::Rider, 2).unwrap();
    let mut boundaries = vec![fs::metadata(&seg).unwrap().len()];
    for i in 0..3 {
        engine.create_trip(rider, ride_from(near_center(10.0 * i as f64, 0.0).unwrap()).unwrap()).ok();
        boundaries.push(fs::metadata(&seg).unwrap().len());
    }
    engine.shutdown().unwrap();
    let all = records(dir.path());
    let whole_before = all.len() - 3;
    let scratch = tempfile::tempdir().unwrap();
    for cut in boundaries[0]..=*boundaries.last().unwrap() {
        let d = scratch.path().join(format!("cut{cut}"));
        copy_dir(dir.path(), &d);
        let seg_copy = wal_segments(&d).pop().unwrap();
        fs::OpenOptions::new().write(true).open(&seg_copy).unwrap().set_len(cut).unwrap();
        let whole = whole_before + boundaries.iter().skip(1).filter(|b| **b <= cut).count();
        let (state, replayed) = recovered(&d);
        assert_eq!(replayed as usize, whole, "cut at byte {cut}");
        assert_eq!(state, expected(&all, whole), "cut at byte {cut}");
        fs::remove_dir_all(&d).unwrap();
    }
}

/// A byte flipped in the last records (a torn sector, bit rot at the tail): the
/// checksum stops recovery before the damaged record.
#[test]
fn a_flipped_byte_in_the_tail_stops_recovery_before_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    busy_day(&engine);
    let seg = wal_segments(dir.path()).pop().unwrap();
    let rider = scenario::user(&engine, Role::Rider, 2).unwrap();
    let start = fs::metadata(&seg).unwrap().len();
    let mut boundaries = vec![start];
    for i in 0..2 {
        engine.create_trip(rider, ride_from(near_center(10.0 * i as f64, 0.0).unwrap()).unwrap()).ok();
        boundaries.push(fs::metadata(&seg).unwrap().len());
    }
    engine.shutdown().unwrap();
    let all = records(dir.path());
    let whole_before = all.len() - 2;
    let scratch = tempfile::tempdir().unwrap();
    for at in start..boundaries[2] {
        let d = scratch.path().join(format!("flip{at}"));
        copy_dir(dir.path(), &d);
        let seg_copy = wal_segments(&d).pop().unwrap();
        let mut bytes = fs::read(&seg_copy).unwrap();
        bytes[at as usize] ^= 0x20;
        fs::write(&seg_copy, &bytes).unwrap();
        let whole = whole_before + usize::from(at >= boundaries[1]);
        let (state, replayed) = recovered(&d);
        assert_eq!(replayed as usize, whole, "flip at byte {at}");
        assert_eq!(state, expected(&all, whole), "flip at byte {at}");
        fs::remove_dir_all(&d).unwrap();
    }
}

/// A log whose disk can be made to fail, for read-only mode.
struct FlakyLog {
    inner: MemLog,
    failing: Arc<AtomicBool>,
    /// Appends refused while failing.
    refused: Arc<AtomicU64>,
}

impl CommandLog for FlakyLog {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::Io {
                op: "write",
                path: "flaky".into(),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.inner.append(payloads)
    }
    fn sync(&mut self) -> Result<Lsn, StorageError> {
        self.inner.sync()
    }
    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        self.inner.read_from(from)
    }
    fn last_lsn(&self) -> Lsn {
        self.inner.last_lsn()
    }
    fn durable_lsn(&self) -> Lsn {
        self.inner.durable_lsn()
    }
    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        self.inner.release_below(lsn)
    }
    fn reopen(&mut self) -> Result<(), StorageError> {
        self.inner.crash();
        Ok(())
    }
}

#[test]
fn a_full_disk_makes_the_engine_read_only_until_space_returns() {
    let failing = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let log = FlakyLog { inner: MemLog::new(), failing: Arc::clone(&failing), refused: Arc::clone(&refused) };
    let mut config = EngineConfig::default().with_ids(RandomIds::seeded(3));
    config.read_only_retry = Duration::from_millis(10);
    config.idle_wakeup = Duration::from_millis(5);
    // In-memory checkpoints every few records: the rebuild below starts from a moved base.
    config.memory_checkpoint_every_records = 3;
    let engine = Engine::open_with_log(config, Box::new(log), State::default()).unwrap();
    let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
    let driver = scenario::online_driver(&engine, 2, near_center(100.0, 0.0).unwrap()).unwrap();
    let trip = engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
    assert!(engine.stats().checkpoints.written.load(Ordering::Relaxed) >= 1, "the in-memory log was checkpointed");

    failing.store(true, Ordering::SeqCst);
    match engine.accept(driver, trip.id) {
        Err(Error::ReadOnly(why)) => assert!(why.contains("disk full"), "{why}"),
        other => panic!("expected read_only, got {other:?}"),
    }
    assert!(engine.is_read_only());
    assert!(matches!(engine.cancel(Actor::User(rider), trip.id, "x"), Err(Error::ReadOnly(_))));
    // Reads keep working, and show nothing of the batch that failed.
    let seen = engine.trip(trip.id).unwrap();
    assert_eq!(seen.status, TripStatus::Searching);
    assert_eq!(seen.driver_id, None);
    // While the disk refuses, the engine keeps probing it with a real write and stays
    // read-only (regression: a probe with nothing due wrote nothing and cleared it).
    let probes_before = refused.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused.load(Ordering::SeqCst) < probes_before + 3 {
        assert!(Instant::now() < deadline, "the engine stopped probing the disk");
        assert!(engine.is_read_only(), "read-only cleared while every write still fails");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(engine.is_read_only());

    failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.is_read_only() {
        assert!(Instant::now() < deadline, "the engine did not leave read-only mode");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The failed accept left no trace: the driver is free and the offer still stands.
    let accepted = engine.accept(driver, trip.id).unwrap();
    assert_eq!(accepted.status, TripStatus::Accepted);
    let state = engine.shutdown().unwrap();
    state.check_invariants().unwrap();
}

#[test]
fn backup_then_restore_gives_the_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(&dir.path().join("data"))).unwrap();
    busy_day(&engine);
    let original = engine.shutdown().unwrap();
    let report = dispatch_core::backup(&dir.path().join("data"), &dir.path().join("backup")).unwrap();
    assert_eq!(report.records as usize, records(&dir.path().join("data")).len());
    dispatch_core::restore(&dir.path().join("backup"), &dir.path().join("restored")).unwrap();
    let (restored, _) = recovered(&dir.path().join("restored"));
    assert_eq!(restored, original);
    // Neither overwrites anything.
    assert!(dispatch_core::restore(&dir.path().join("backup"), &dir.path().join("data")).is_err());
    assert!(dispatch_core::backup(&dir.path().join("nothing"), &dir.path().join("b2")).is_err());
}

#[test]
fn a_backup_taken_while_serving_is_an_exact_prefix_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(config(&data)).unwrap();
    busy_day(&engine);
    let stop = Arc::new(AtomicBool::new(false));
    let report = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 100;
            while !stop.load(Ordering::SeqCst) {
                let rider = scenario::user(&engine, Role::Rider, n).unwrap();
                engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(50));
        let report = dispatch_core::backup(&data, &dir.path().join("backup")).unwrap();
        stop.store(true, Ordering::SeqCst);
        assert!(writer.join().unwrap() > 100, "the writer ran during the backup");
        report
    });
    engine.shutdown().unwrap();
    let all = records(&data);
    assert!((report.records as usize) < all.len(), "the backup is a point in time, not the end");
    let (state, replayed) = recovered(&dir.path().join("backup"));
    assert_eq!(replayed, report.records);
    assert_eq!(state, expected(&all, report.records as usize));
}

fn checkpointing(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.checkpoint_every_records = 25;
    c.wal_segment_bytes = 2048;
    c
}

/// Drives enough commands through `engine` for checkpoints to be taken and collected.
fn many_users(engine: &Engine, from: u64, n: u64) {
    for i in from..from + n {
        scenario::user(engine, Role::Rider, i).unwrap();
    }
}

#[test]
fn checkpoints_release_the_wal_and_a_restart_replays_only_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    busy_day(&engine);
    many_users(&engine, 1_000, 300);
    let written = engine.stats().checkpoints.written.load(Ordering::Relaxed);
    assert!(written >= 2, "checkpoints written: {written}");
    let before = engine.shutdown().unwrap();
    let first = wal_segments(dir.path()).into_iter().next().unwrap();
    assert!(
        !first.file_name().unwrap().to_string_lossy().starts_with("00000000000000000001"),
        "the WAL's first segment, below every checkpoint, was released"
    );

    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    let recovery = engine.recovery().clone();
    assert!(recovery.base_lsn > 0, "{recovery:?}");
    assert!(recovery.replayed * 2 < recovery.last_lsn, "replayed only what follows the checkpoint: {recovery:?}");
    assert_eq!(recovery.base_lsn + recovery.replayed, recovery.last_lsn);
    // The engine goes on from there.
    many_users(&engine, 5_000, 5);
    let after = engine.shutdown().unwrap();
    assert_eq!(after.users().count(), before.users().count() + 5);
    let (again, _) = {
        let e = Engine::open(checkpointing(dir.path())).unwrap();
        let r = e.recovery().replayed;
        (e.shutdown().unwrap(), r)
    };
    assert_eq!(again, after);
}

/// A data directory an older version wrote (its checkpoint a snapshot file of the whole
/// state, its store under the old name) opens on that snapshot and the log above it, and
/// its first checkpoint moves the state into the store and removes the snapshot files.
#[test]
fn a_data_dir_with_snapshot_files_moves_its_checkpoint_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    busy_day(&engine);
    many_users(&engine, 1_000, 40);
    let full = engine.shutdown().unwrap();
    let log = records(dir.path());
    let at = log.len() / 2;
    // What the older version left: a snapshot (format 5: the whole state) at `at`.
    let mut bytes = vec![5u8];
    bytes.extend(postcard::to_allocvec(&expected(&log, at)).unwrap());
    dispatch_storage::snapshot::write(&dir.path().join("snapshots"), at as Lsn, &bytes).unwrap();
    fs::rename(dir.path().join(dispatch_core::history::FILE), dir.path().join("history.redb")).unwrap();

    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    assert_eq!(engine.recovery().base_lsn, at as Lsn, "{:?}", engine.recovery());
    assert_eq!(engine.recovery().replayed as usize, log.len() - at);
    let before = engine.stats().checkpoints.written.load(Ordering::Relaxed);
    let mut n = 5_000;
    while engine.stats().checkpoints.written.load(Ordering::Relaxed) == before {
        many_users(&engine, n, 10);
        n += 10;
        assert!(n < 10_000, "no checkpoint was written");
    }
    // One more commit, for the writer to collect the checkpoint and clear the snapshots.
    many_users(&engine, n, 1);
    let after = engine.shutdown().unwrap();
    assert_eq!(after.users().count(), full.users().count() + (n + 1 - 5_000) as usize);
    assert!(!dir.path().join("snapshots").exists(), "the snapshot files are gone");
    assert!(!dir.path().join("history.redb").exists() && dir.path().join(dispatch_core::history::FILE).is_file());
    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    assert!(engine.recovery().base_lsn > at as Lsn, "{:?}", engine.recovery());
    assert_eq!(engine.shutdown().unwrap(), after);
}

#[test]
fn backup_and_restore_carry_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(checkpointing(&data)).unwrap();
    busy_day(&engine);
    many_users(&engine, 1_000, 120);
    let backup = dir.path().join("backup");
    let report = dispatch_core::backup(&data, &backup).unwrap();
    let original = engine.shutdown().unwrap();
    assert!(backup.join(dispatch_core::history::FILE).is_file(), "the checkpoint is in the backup");
    assert!(report.records > 100);
    dispatch_core::restore(&backup, &dir.path().join("restored")).unwrap();
    let restored = Engine::open(checkpointing(&dir.path().join("restored"))).unwrap();
    assert!(restored.recovery().base_lsn > 0);
    assert_eq!(restored.shutdown().unwrap(), original);
}

#[test]
fn finished_trips_move_to_the_history_and_stay_readable_through_restart_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(checkpointing(&data)).unwrap();
    let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
    let driver = scenario::online_driver(&engine, 2, near_center(0.0, 0.0).unwrap()).unwrap();
    let done = engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
    let done = engine.accept(driver, done.id).unwrap();
    engine.arrived(driver, done.id).unwrap();
    engine.start(driver, done.id, &done.pickup_code.to_string()).unwrap();
    let done = engine.complete(driver, done.id, Some(3_100)).unwrap();
    let cancelled = engine.create_trip(rider, ride_from(near_center(10.0, 0.0).unwrap()).unwrap()).unwrap();
    let cancelled = engine.cancel(Actor::User(rider), cancelled.id, "no need").unwrap();
    let open = engine.create_trip(rider, ride_from(near_center(20.0, 0.0).unwrap()).unwrap()).unwrap();
    // Enough commands for checkpoints to write the finished trips and the writer to archive them.
    let mut n = 1_000;
    while engine.read(|v| v.trip(done.id).is_some() || v.trip(cancelled.id).is_some()) {
        many_users(&engine, n, 25);
        n += 25;
        assert!(n < 10_000, "finished trips were never archived");
    }
    assert!(engine.read(|v| v.trip(open.id).is_some()), "open trips stay hot");
    let check = |engine: &Engine| {
        assert_eq!(engine.trip(done.id).unwrap().status, TripStatus::Completed);
        assert_eq!(engine.trip(done.id).unwrap().fare.final_minor, done.fare.final_minor);
        assert_eq!(engine.trip(cancelled.id).unwrap().status, TripStatus::Cancelled);
        let listed: Vec<_> = engine
            .trips(dispatch_core::TripsOf::Rider(rider), None, 10, true, |_| true)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        // Newest first by creation time, then id (the clock stands still here: ids decide).
        let mut all = [&open, &cancelled, &done].map(|t| (t.created_at, t.id));
        all.sort_by(|a, b| b.cmp(a));
        let expected: Vec<_> = all.iter().map(|(_, id)| *id).collect();
        assert_eq!(listed, expected, "hot and archived together, newest first");
        let page = engine.trips(dispatch_core::TripsOf::Rider(rider), None, 2, true, |_| true).unwrap();
        let cursor = dispatch_core::TripCursor::after(page.last().unwrap());
        let rest = engine.trips(dispatch_core::TripsOf::Rider(rider), Some(cursor), 2, true, |_| true).unwrap();
        assert_eq!(rest.iter().map(|t| t.id).collect::<Vec<_>>(), vec![expected[2]], "the cursor continues");
        let drivers = engine.trips(dispatch_core::TripsOf::Driver(driver), None, 10, true, |_| true).unwrap();
        assert_eq!(drivers.iter().map(|t| t.id).collect::<Vec<_>>(), vec![done.id]);
    };
    check(&engine);
    let backup = dir.path().join("backup");
    dispatch_core::backup(&data, &backup).unwrap();
    engine.shutdown().unwrap();
    let engine = Engine::open(checkpointing(&data)).unwrap();
    check(&engine);
    engine.shutdown().unwrap();
    let restored = dir.path().join("restored");
    dispatch_core::restore(&backup, &restored).unwrap();
    let engine = Engine::open(checkpointing(&restored)).unwrap();
    check(&engine);
    engine.shutdown().unwrap();
}

/// Regression: a finished trip that had moved to the history answered `404` to a rating
/// (and a refund, a late payment event), as if it had never existed.
#[test]
fn a_trip_in_the_history_can_still_be_rated_and_the_rating_survives_restart_and_archive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(checkpointing(&data)).unwrap();
    let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
    let driver = scenario::online_driver(&engine, 2, near_center(0.0, 0.0).unwrap()).unwrap();
    let trip = engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
    let trip = engine.accept(driver, trip.id).unwrap();
    engine.arrived(driver, trip.id).unwrap();
    engine.start(driver, trip.id, &trip.pickup_code.to_string()).unwrap();
    engine.complete(driver, trip.id, Some(3_100)).unwrap();
    let archive = |engine: &Engine, from: u64| {
        let mut n = from;
        while engine.read(|v| v.trip(trip.id).is_some()) {
            many_users(engine, n, 25);
            n += 25;
            assert!(n < from + 10_000, "the finished trip was never archived");
        }
        n
    };
    let n = archive(&engine, 1_000);
    let rate = |actor: UserId, stars: u8| {
        engine.submit(Actor::User(actor), Command::RateTrip { trip_id: trip.id, stars, comment: None })
    };
    // Refused on the archived trip: the same answer a hot trip gives, and it stays archived.
    assert!(matches!(rate(rider, 9), Err(Error::Domain(DomainError::Invalid(_)))));
    assert!(engine.read(|v| v.trip(trip.id).is_none()));
    assert!(matches!(engine.accept(driver, trip.id), Err(Error::Domain(DomainError::InvalidTransition { .. }))));
    rate(rider, 5).unwrap();
    assert!(
        matches!(rate(rider, 4), Err(Error::Domain(DomainError::InvalidTransition { .. }))),
        "rated once, archived or not"
    );
    // Back in the history with its rating, then read from there after a restart.
    archive(&engine, n);
    engine.submit(Actor::User(driver), Command::RateTrip { trip_id: trip.id, stars: 3, comment: None }).unwrap();
    engine.shutdown().unwrap();
    let engine = Engine::open(checkpointing(&data)).unwrap();
    let seen = engine.find_trip(trip.id).unwrap().unwrap();
    assert_eq!(seen.rider_rating.as_ref().map(|r| r.stars), Some(5));
    assert_eq!(seen.driver_rating.as_ref().map(|r| r.stars), Some(3));
    engine.shutdown().unwrap();
}

#[test]
fn a_damaged_store_stops_the_start_instead_of_serving_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    busy_day(&engine);
    many_users(&engine, 1_000, 100);
    engine.shutdown().unwrap();
    let path = dir.path().join(dispatch_core::history::FILE);
    let mut bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 8192, "the store holds pages");
    // A few bytes in every page but the header: whichever pages hold data are hit.
    for page in bytes[4096..].chunks_mut(4096) {
        for b in page.iter_mut().skip(64).take(32) {
            *b ^= 0x5A;
        }
    }
    fs::write(&path, &bytes).unwrap();
    match Engine::open(checkpointing(dir.path())) {
        Err(Error::Storage(msg)) => assert!(msg.contains("store") && msg.contains("refusing to start"), "{msg}"),
        other => panic!("must refuse to start, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn driver_positions_are_recorded_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let open = |clock: &ManualClock| {
        Engine::open(
            EngineConfig::default().with_clock(clock.clone()).with_ids(RandomIds::seeded(8)).with_data_dir(dir.path()),
        )
        .unwrap()
    };
    let engine = open(&clock);
    let driver = scenario::online_driver(&engine, 1, near_center(0.0, 0.0).unwrap()).unwrap();
    for i in 1..=5 {
        clock.advance_secs(5);
        let report = dispatch_core::LocationReport {
            point: near_center(50.0 * f64::from(i), 0.0).unwrap(),
            heading_deg: Some(0.0),
            speed_mps: Some(10.0),
        };
        engine.update_location(driver, report).unwrap();
    }
    engine.tick().unwrap(); // a durable batch after the last position
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.driver_track(driver, Timestamp::from_millis(T0), 100).unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "positions never reached the history");
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.shutdown().unwrap();
    let engine = open(&clock);
    let track = engine.driver_track(driver, Timestamp::from_millis(T0 + 10_000), 100).unwrap();
    assert_eq!(track.len(), 4, "from the second report on, oldest first");
    assert!(track.windows(2).all(|w| w[0].at < w[1].at));
    assert_eq!(track.last().unwrap().point, near_center(250.0, 0.0).unwrap());
    assert_eq!(engine.positions_lost(), 0);
    engine.shutdown().unwrap();
}

/// A trip's trail (`Engine::driver_trail`): a range longer than one history page is
/// read whole, bounded by its ends, and sampled evenly (first and last kept) when it
/// holds more positions than asked for.
#[test]
fn a_long_trail_is_read_across_pages_and_sampled_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(
        EngineConfig::default().with_clock(clock.clone()).with_ids(RandomIds::seeded(9)).with_data_dir(dir.path()),
    )
    .unwrap();
    let driver = scenario::online_driver(&engine, 1, near_center(0.0, 0.0).unwrap()).unwrap();
    let start = T0 + 2_000;
    const N: i64 = 2_500; // two and a half pages of history
    for i in 0..N {
        clock.set(Timestamp::from_millis(start + i * 2_000));
        // Back and forth along 10 m, slowly: never an implausible jump.
        let report = dispatch_core::LocationReport {
            point: near_center(if i % 2 == 0 { 0.0 } else { 10.0 }, 0.0).unwrap(),
            heading_deg: Some(0.0),
            speed_mps: Some(5.0),
        };
        engine.update_location(driver, report).unwrap();
    }
    engine.tick().unwrap();
    let (from, until) = (Timestamp::from_millis(start), Timestamp::from_millis(start + (N - 1) * 2_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.driver_trail(driver, from, until, 5_000).unwrap().recorded < N as usize {
        assert!(Instant::now() < deadline, "positions never reached the history");
        std::thread::sleep(Duration::from_millis(10));
    }
    let whole = engine.driver_trail(driver, from, until, 5_000).unwrap();
    assert_eq!((whole.points.len(), whole.recorded, whole.truncated), (N as usize, N as usize, false));
    assert!(whole.points.windows(2).all(|w| w[1].at.millis_since(w[0].at) == 2_000), "every one, oldest first");
    // Both ends are included; positions outside the range are not.
    let inner = engine.driver_trail(driver, from.plus_millis(2_000), until.plus_millis(-2_000), 5_000).unwrap().points;
    assert_eq!(inner.len(), N as usize - 2);
    assert_eq!(inner[0].at, from.plus_millis(2_000));
    // More than asked for: an even sample, the first and the last kept.
    let sampled = engine.driver_trail(driver, from, until, 1_000).unwrap();
    assert!(sampled.points.len() <= 1_000 && sampled.points.len() >= 500, "{}", sampled.points.len());
    assert_eq!(sampled.recorded, N as usize);
    assert_eq!((sampled.points[0].at, sampled.points.last().unwrap().at), (from, until));
    let gaps: Vec<i64> =
        sampled.points[..sampled.points.len() - 1].windows(2).map(|w| w[1].at.millis_since(w[0].at)).collect();
    assert!(gaps.iter().all(|g| *g == gaps[0]), "evenly spaced: {gaps:?}");
    // A range after the last position is empty.
    assert!(
        engine.driver_trail(driver, until.plus_millis(1), until.plus_millis(10_000), 10).unwrap().points.is_empty()
    );
    engine.shutdown().unwrap();
}

#[test]
fn settled_transfers_move_to_the_history_and_statements_still_list_them() {
    use dispatch_core::ledger::{AccountKey, AccountKind};
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
    let driver = scenario::online_driver(&engine, 2, near_center(0.0, 0.0).unwrap()).unwrap();
    let credit = dispatch_core::Command::CreditWallet {
        id: None,
        user_id: rider,
        amount_minor: 50_000,
        currency: egp,
        reason: "welcome".into(),
    };
    engine.submit(Actor::Admin, credit).unwrap();
    let mut new = ride_from(near_center(0.0, 0.0).unwrap()).unwrap();
    new.payment_method = dispatch_core::PaymentMethod::Wallet;
    let trip = engine.create_trip(rider, new).unwrap();
    let t = engine.accept(driver, trip.id).unwrap();
    engine.arrived(driver, trip.id).unwrap();
    engine.start(driver, trip.id, &t.pickup_code.to_string()).unwrap();
    engine.complete(driver, trip.id, Some(3_000)).unwrap();
    let wallet = AccountKey::of(AccountKind::RiderWallet, rider, egp);
    let earnings = AccountKey::of(AccountKind::DriverEarnings, driver, egp);
    let before_wallet = engine.statement(&wallet, None, 100).unwrap();
    let before_earnings = engine.statement(&earnings, None, 100).unwrap();
    assert!(before_wallet.len() >= 3, "credit, hold, posting: {before_wallet:?}");
    let mut n = 1_000;
    while engine.read(|v| !v.statement(&wallet, None, 100).is_empty()) {
        many_users(&engine, n, 25);
        n += 25;
        assert!(n < 10_000, "settled transfers were never archived");
    }
    let ids = |v: &[std::sync::Arc<dispatch_core::ledger::Transfer>]| v.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(&engine.statement(&wallet, None, 100).unwrap()), ids(&before_wallet), "read from the history");
    assert_eq!(ids(&engine.statement(&earnings, None, 100).unwrap()), ids(&before_earnings));
    // Paging through the history continues where the last page ended.
    let first = engine.statement(&wallet, None, 1).unwrap();
    let rest = engine.statement(&wallet, Some((first[0].at, first[0].id)), 100).unwrap();
    assert_eq!(ids(&first).into_iter().chain(ids(&rest)).collect::<Vec<_>>(), ids(&before_wallet));
    let balance = engine.read(|v| v.account(&wallet).balance());
    assert!(engine.read(|v| v.ledger_verify()).balanced);
    engine.shutdown().unwrap();
    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    assert_eq!(engine.read(|v| v.account(&wallet).balance()), balance, "balances stay in the hot state");
    assert_eq!(ids(&engine.statement(&wallet, None, 100).unwrap()), ids(&before_wallet));
    engine.shutdown().unwrap();
}

/// Passes everything to the data dir's WAL and keeps a copy of every record appended:
/// the whole log, which the WAL itself no longer holds once checkpoints released it.
struct TeeLog {
    inner: Box<dyn CommandLog>,
    all: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl CommandLog for TeeLog {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        let first = self.inner.append(payloads)?;
        let mut all = self.all.lock().unwrap();
        assert_eq!(all.len() as u64 + 1, first, "the copy continues the log");
        all.extend(payloads.iter().map(|p| p.to_vec()));
        Ok(first)
    }
    fn sync(&mut self) -> Result<Lsn, StorageError> {
        self.inner.sync()
    }
    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        self.inner.read_from(from)
    }
    fn last_lsn(&self) -> Lsn {
        self.inner.last_lsn()
    }
    fn durable_lsn(&self) -> Lsn {
        self.inner.durable_lsn()
    }
    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        self.inner.release_below(lsn)
    }
    fn reopen(&mut self) -> Result<(), StorageError> {
        self.inner.reopen()?;
        self.all.lock().unwrap().truncate(self.inner.last_lsn() as usize);
        Ok(())
    }
}

/// `backup` copies the newest snapshot, then the WAL segments, then the history; a
/// checkpoint collected meanwhile prunes the snapshot and releases segments it was
/// about to copy, and the copy starts again. Here six callers stream commands,
/// checkpoints come every 100 records and segments are 1 KiB, so each collected
/// checkpoint releases several segments at once, and that happens during copies:
/// every backup must still be an exact prefix of the log, and the first — paused
/// between its two copies until checkpoints were collected — must have taken the retry.
#[test]
fn backups_racing_checkpoints_retry_and_each_is_an_exact_prefix_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let all = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut c = config(&data);
    c.checkpoint_every_records = 100;
    c.wal_segment_bytes = 1024;
    let tee = Arc::clone(&all);
    c.wrap_log = Some(Box::new(move |inner| Box::new(TeeLog { inner, all: tee })));
    let engine = Engine::open(c).unwrap();
    busy_day(&engine);
    let stop = AtomicBool::new(false);
    let mut backups = Vec::new();
    std::thread::scope(|s| {
        // Several callers, so that many records (and segments) pile up while a
        // checkpoint is being written: each one collected then releases several
        // segments at once, and a copy that is under way loses some of them.
        let writers: Vec<_> = (0..6u64)
            .map(|w| {
                let (engine, stop) = (&engine, &stop);
                s.spawn(move || {
                    // Each caller far from the others (a trip is offered to its driver only).
                    let at = near_center(-5_000.0 - 5_000.0 * w as f64, 0.0).unwrap();
                    let driver = scenario::online_driver(engine, 10_000 * (w + 1), at).unwrap();
                    let mut n = 10_000 * (w + 1) + 1;
                    while !stop.load(Ordering::SeqCst) {
                        // Riders, and trips finished (cancelled or completed): every
                        // checkpoint has trips to archive as well as segments to release.
                        let rider = scenario::user(engine, Role::Rider, n).unwrap();
                        let trip = engine.create_trip(rider, ride_from(at).unwrap()).unwrap();
                        if n % 2 == 0 {
                            engine.cancel(Actor::User(rider), trip.id, "no need").unwrap();
                        } else {
                            engine.accept(driver, trip.id).unwrap();
                            engine.arrived(driver, trip.id).unwrap();
                            engine.start(driver, trip.id, &trip.pickup_code.to_string()).unwrap();
                            engine.complete(driver, trip.id, Some(3_000)).unwrap();
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        // The callers stop however this thread leaves the scope (a failed backup panics).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        // The first backup is made to race: between its copy of the log and its copy of
        // the store, two checkpoints are collected (the second took its state after the
        // log was copied, so the store is ahead of the copied log) and the copy must start
        // again. The others race as it happens (about one in ten does).
        let checkpoints = || engine.stats().checkpoints.written.load(Ordering::Relaxed);
        let mut raced = false;
        let mut race = || {
            if std::mem::replace(&mut raced, true) {
                return;
            }
            let (before, started) = (checkpoints(), Instant::now());
            while checkpoints() < before + 2 {
                // Generous: this waits on the writers' records, not on the machine's speed.
                assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint in 2 minutes");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        for i in 0..8 {
            let to = dir.path().join(format!("backup{i}"));
            let report = dispatch_core::journal::backup_pausing(&data, &to, &mut race).unwrap();
            backups.push((to, report));
        }
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
    });
    let written = engine.stats().checkpoints.written.load(Ordering::Relaxed);
    engine.shutdown().unwrap();
    let retried: Vec<u32> = backups.iter().map(|(_, r)| r.retries).filter(|r| *r > 0).collect();
    eprintln!("{} backups, retries {retried:?}, {written} checkpoints", backups.len());
    assert!(backups[0].1.retries > 0, "the first backup raced two checkpoints and held: {:?}", backups[0].1);
    let all: Vec<Record> = all.lock().unwrap().iter().map(|p| Record::decode(p).unwrap()).collect();
    // Each backup against the log replayed to its point, in order of the points.
    backups.sort_by_key(|(_, r)| r.records);
    let mut state = State::default();
    let mut at = 0;
    for (path, report) in &backups {
        let n = report.records as usize;
        replay(&mut state, &all[at..n]).unwrap();
        at = n;
        let engine = Engine::open(config(path)).unwrap();
        assert_eq!(engine.recovery().last_lsn, report.records, "{}", path.display());
        let restored = engine.shutdown().unwrap();
        assert!(restored == state, "{} ({report:?}) is not the log's first {n} records", path.display());
    }
    assert!(at < all.len(), "the backups are points in time, not the end");
    // One that retried, restored: the same state again.
    let (path, report) = backups.iter().find(|(_, r)| r.retries > 0).unwrap();
    let restored_dir = dir.path().join("restored");
    let restored = dispatch_core::restore(path, &restored_dir).unwrap();
    assert_eq!(restored.records, report.records);
    let (restored, _) = recovered(&restored_dir);
    let mut expected_state = State::default();
    replay(&mut expected_state, &all[..report.records as usize]).unwrap();
    assert!(restored == expected_state, "the restored copy of a retried backup");
}

// ----- idempotency keys and gateway event ids in the history --------------------------------

/// [`checkpointing`] on `clock`, which the test moves.
fn checkpointing_on(dir: &Path, clock: &ManualClock) -> EngineConfig {
    checkpointing(dir).with_clock(clock.clone())
}

/// An admin creates rider `n` under the idempotency key `key-{n}`; `hash` stands for the
/// request (the server hashes method, path and body).
fn keyed_rider(engine: &Engine, n: u64, hash: u8) -> Result<dispatch_core::Outcome, Error> {
    let key =
        dispatch_core::IdempotencyKey { principal: Actor::Admin, key: format!("key-{n}"), request_hash: [hash; 32] };
    let user = dispatch_core::NewUser {
        id: None,
        role: Role::Rider,
        name: format!("keyed {n}"),
        phone: format!("+2011{hash:03}{n:05}"),
        vehicle: None,
    };
    engine.submit(Actor::Admin, Command::Keyed { key, command: Box::new(Command::CreateUser(user)), archived: None })
}

fn keys(engine: &Engine) -> (u64, u64) {
    let c = &engine.stats().checkpoints;
    (c.keys_hot.load(Ordering::Relaxed), c.keys_archived.load(Ordering::Relaxed))
}

fn events(engine: &Engine) -> (u64, u64) {
    let c = &engine.stats().checkpoints;
    (c.gateway_events_hot.load(Ordering::Relaxed), c.gateway_events_archived.load(Ordering::Relaxed))
}

/// Drives commands through `engine` (users from `n` on) until `done` holds.
fn until(engine: &Engine, mut n: u64, done: impl Fn(&Engine) -> bool) -> u64 {
    let from = n;
    while !done(engine) {
        many_users(engine, n, 25);
        n += 25;
        assert!(n < from + 10_000, "never happened");
    }
    n
}

#[test]
fn an_archived_idempotency_key_answers_the_same_through_restart_backup_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(checkpointing_on(&data, &clock)).unwrap();
    let first = keyed_rider(&engine, 1, 7).unwrap();
    assert!(matches!(first, dispatch_core::Outcome::User(_)));
    // Within the hot window the key stays hot, however many checkpoints pass.
    let n = until(&engine, 1_000, |e| e.stats().checkpoints.written.load(Ordering::Relaxed) >= 3);
    assert_eq!(keys(&engine).0, 1, "still hot");
    clock.advance_secs(11 * 60);
    let n = until(&engine, n, |e| keys(e) == (0, 1));
    let users = engine.read(|v| v.users().count());
    let check = |engine: &Engine| {
        assert_eq!(keyed_rider(engine, 1, 7).unwrap(), dispatch_core::Outcome::Replayed(Box::new(first.clone())));
        assert!(matches!(keyed_rider(engine, 1, 8), Err(Error::Domain(DomainError::IdempotencyKeyReused))));
        assert_eq!(engine.read(|v| v.users().count()), users, "the retry created no second user");
    };
    check(&engine);
    let backup = dir.path().join("backup");
    dispatch_core::backup(&data, &backup).unwrap();
    engine.shutdown().unwrap();

    let engine = Engine::open(checkpointing_on(&data, &clock)).unwrap();
    assert_eq!(keys(&engine), (0, 1), "counted from the history at start");
    check(&engine);
    // Expired: purged from the history by a checkpoint, and the key takes a new request.
    clock.advance_secs(24 * 3600);
    until(&engine, n, |e| keys(e).1 == 0);
    assert!(matches!(keyed_rider(&engine, 1, 8).unwrap(), dispatch_core::Outcome::User(_)));
    engine.shutdown().unwrap();

    let restored = dir.path().join("restored");
    dispatch_core::restore(&backup, &restored).unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0).plus_secs(11 * 60));
    let engine = Engine::open(checkpointing_on(&restored, &clock)).unwrap();
    check(&engine);
    engine.shutdown().unwrap();
}

#[test]
fn an_archived_webhook_event_id_is_a_duplicate_through_restart_and_backup_and_moves_no_money() {
    use dispatch_core::ledger::{AccountKey, AccountKind};
    use dispatch_core::payment::PaymentEventKind;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(checkpointing_on(&data, &clock)).unwrap();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
    let driver = scenario::online_driver(&engine, 2, near_center(0.0, 0.0).unwrap()).unwrap();
    let mut new = ride_from(near_center(0.0, 0.0).unwrap()).unwrap();
    new.payment_method = dispatch_core::PaymentMethod::Card;
    let trip = engine.create_trip(rider, new).unwrap();
    let trip = engine.accept(driver, trip.id).unwrap();
    engine.arrived(driver, trip.id).unwrap();
    engine.start(driver, trip.id, &trip.pickup_code.to_string()).unwrap();
    let fare = engine.complete(driver, trip.id, Some(3_000)).unwrap().fare.final_minor.unwrap();
    let captured = Command::PaymentEvent {
        gateway: "sim".into(),
        event_id: "evt_1".into(),
        kind: PaymentEventKind::Captured,
        trip_id: trip.id,
        amount_minor: fare,
        currency: egp,
        archived: None,
    };
    let applied = dispatch_core::Outcome::PaymentEvent { duplicate: false, ignored: None };
    assert_eq!(engine.submit(Actor::System, captured.clone()).unwrap(), applied);
    let clearing = AccountKey::platform(AccountKind::GatewayClearing, egp);
    assert_eq!(engine.read(|v| v.account(&clearing).balance()), -fare);
    clock.advance_secs(11 * 60);
    until(&engine, 1_000, |e| events(e) == (0, 1));
    let check = |engine: &Engine| {
        let duplicate = dispatch_core::Outcome::PaymentEvent { duplicate: true, ignored: None };
        assert_eq!(engine.submit(Actor::System, captured.clone()).unwrap(), duplicate);
        assert_eq!(engine.read(|v| v.account(&clearing).balance()), -fare, "no money moved");
        assert_eq!(events(engine).0, 0, "the id did not come back into the hot state");
    };
    check(&engine);
    let backup = dir.path().join("backup");
    dispatch_core::backup(&data, &backup).unwrap();
    engine.shutdown().unwrap();
    let engine = Engine::open(checkpointing_on(&data, &clock)).unwrap();
    check(&engine);
    engine.shutdown().unwrap();
    let restored = dir.path().join("restored");
    dispatch_core::restore(&backup, &restored).unwrap();
    let engine = Engine::open(checkpointing_on(&restored, &clock)).unwrap();
    check(&engine);
    engine.shutdown().unwrap();
}

/// The hot state keeps only the keys of the last `KEYS_HOT_WINDOW_S` while keyed requests
/// stream; a backup taken meanwhile holds every key acknowledged before it (its history is
/// copied after its log, so a key its log archived is in its history).
#[test]
fn the_hot_state_holds_a_bounded_number_of_keys_while_keyed_requests_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(checkpointing_on(&data, &clock)).unwrap();
    let window = u64::from(dispatch_core::journal::KEYS_HOT_WINDOW_S);
    // One keyed request every 3 s: a window holds 200 of them.
    let total = 1_000u64;
    let sent = AtomicU64::new(0);
    let backup = dir.path().join("backup");
    let (before_backup, most_hot) = std::thread::scope(|s| {
        let streamer = s.spawn(|| {
            let mut most_hot = 0;
            let collected = || engine.stats().checkpoints.written.load(Ordering::Relaxed);
            let mut paced = collected();
            for n in 0..total {
                keyed_rider(&engine, n, 1).unwrap();
                clock.advance_secs(3);
                sent.store(n + 1, Ordering::SeqCst);
                if n * 3 > window {
                    most_hot = most_hot.max(keys(&engine).0);
                }
                if n % 25 == 24 {
                    // Paced by the checkpoints (not by how fast this machine is): the next
                    // 25 requests go once a checkpoint was collected since the last 25
                    // began. (One is then due or on its way: 25 records were logged since
                    // the one collected before.)
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while collected() == paced {
                        let c = &engine.stats().checkpoints;
                        assert!(
                            Instant::now() < deadline,
                            "no checkpoint was collected: {} failed ({:?})",
                            c.failed.load(Ordering::Relaxed),
                            c.last_error.lock()
                        );
                        engine.tick().unwrap(); // a commit, after which a finished one is collected
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    paced = collected();
                }
            }
            most_hot
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while sent.load(Ordering::SeqCst) < total / 2 {
            assert!(Instant::now() < deadline, "the stream stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = sent.load(Ordering::SeqCst);
        dispatch_core::backup(&data, &backup).unwrap();
        (before, streamer.join().unwrap())
    });
    // A window's keys (200), plus those that came while a checkpoint was on its way (at
    // most two checkpoints' worth of records): not the 1,000 sent.
    assert!(most_hot <= window / 3 + 75, "the hot state held {most_hot} keys");
    // The counts are taken after each commit, just after its callers are answered: one
    // more round through the writer and they include the last request.
    engine.tick().unwrap();
    let (hot, archived) = keys(&engine);
    assert!(hot <= window / 3 + 75 && archived >= total - hot, "hot {hot}, archived {archived}");
    for n in [0, total / 2, total - 1] {
        assert!(matches!(keyed_rider(&engine, n, 1).unwrap(), dispatch_core::Outcome::Replayed(_)), "key {n}");
    }
    engine.shutdown().unwrap();

    let restored = dir.path().join("restored");
    dispatch_core::restore(&backup, &restored).unwrap();
    let engine = Engine::open(checkpointing_on(&restored, &clock)).unwrap();
    for n in 0..before_backup {
        let again = keyed_rider(&engine, n, 1).unwrap();
        assert!(matches!(again, dispatch_core::Outcome::Replayed(_)), "key {n}: {again:?}");
    }
    engine.shutdown().unwrap();
}

/// A store whose checkpoint is beyond the end of the log beside it (a store copied after
/// its log, by hand, with checkpoints in between) cannot be this log's: the start is
/// refused rather than served from a state the log does not reach.
#[test]
fn a_store_ahead_of_its_log_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (data, behind) = (dir.path().join("data"), dir.path().join("behind"));
    let engine = Engine::open(checkpointing(&data)).unwrap();
    busy_day(&engine);
    many_users(&engine, 1_000, 60);
    engine.shutdown().unwrap();
    // The log as it is now...
    copy_dir(&data, &behind);
    // ...and the store as it is after many more checkpoints.
    let engine = Engine::open(checkpointing(&data)).unwrap();
    many_users(&engine, 2_000, 300);
    engine.shutdown().unwrap();
    fs::copy(data.join(dispatch_core::history::FILE), behind.join(dispatch_core::history::FILE)).unwrap();
    match Engine::open(checkpointing(&behind)) {
        Err(Error::Storage(msg)) => {
            assert!(msg.contains("the WAL ends at") && msg.contains("refusing to start"), "{msg}")
        }
        other => panic!("must refuse to start, got {:?}", other.map(|_| ())),
    }
}

/// Payouts, top-ups and the earnings index are part of the state: after checkpoints took
/// them (the log below released) and a restart, they read back exactly, holds included.
#[test]
fn payouts_top_ups_and_earnings_survive_checkpoints_and_a_restart() {
    use dispatch_core::ledger::{AccountKey, AccountKind};
    use dispatch_core::payout::{PayoutStatus, TopUpStatus};
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
    let driver = scenario::online_driver(&engine, 2, near_center(0.0, 0.0).unwrap()).unwrap();
    // A cash ride: an earnings day with one trip, and cash debt.
    let trip = engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
    let t = engine.accept(driver, trip.id).unwrap();
    engine.arrived(driver, trip.id).unwrap();
    engine.start(driver, trip.id, &t.pickup_code.to_string()).unwrap();
    engine.complete(driver, trip.id, Some(3_000)).unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: driver, amount_minor: 20_000, currency: egp, reason: "b".into() };
    engine.submit(Actor::Admin, credit).unwrap();
    let payout = |amount_minor| Command::RequestPayout { id: None, amount_minor, currency: egp };
    let paid = match engine.submit(Actor::User(driver), payout(5_000)).unwrap() {
        dispatch_core::Outcome::Payout(p) => p.id,
        o => panic!("{o:?}"),
    };
    let held = match engine.submit(Actor::User(driver), payout(3_000)).unwrap() {
        dispatch_core::Outcome::Payout(p) => p.id,
        o => panic!("{o:?}"),
    };
    engine
        .submit(Actor::Admin, Command::ReviewPayout { payout_id: paid, approve: true, reason: String::new() })
        .unwrap();
    let report = Command::PayoutReport {
        gateway: "sim".into(),
        event_id: "evt_paid".into(),
        payout_id: paid,
        kind: dispatch_core::payout::PayoutReportKind::Paid,
        amount_minor: None,
    };
    engine.submit(Actor::System, report).unwrap();
    let top_up = match engine
        .submit(Actor::User(rider), Command::CreateTopUp { id: None, amount_minor: 700, currency: egp })
        .unwrap()
    {
        dispatch_core::Outcome::TopUp(t) => t.id,
        o => panic!("{o:?}"),
    };
    many_users(&engine, 1_000, 200);
    assert!(engine.stats().checkpoints.written.load(Ordering::Relaxed) >= 2);
    let book = engine.read(|v| v.book().clone());
    let position = engine.read(|v| v.driver_position(driver, egp));
    assert_eq!(position.held_minor, 3_000);
    let before = engine.shutdown().unwrap();

    let engine = Engine::open(checkpointing(dir.path())).unwrap();
    assert!(engine.recovery().base_lsn > 0, "read from a checkpoint: {:?}", engine.recovery());
    assert_eq!(engine.read(|v| v.book().clone()), book);
    assert_eq!(engine.read(|v| v.driver_position(driver, egp)), position);
    let statuses = engine.read(|v| {
        let b = v.book();
        (b.payouts[&paid].status, b.payouts[&held].status, b.top_ups[&top_up].status)
    });
    assert_eq!(statuses, (PayoutStatus::Paid, PayoutStatus::Requested, TopUpStatus::Pending));
    let earned = engine.read(|v| v.book().earnings.values().map(|d| d.trips).sum::<u32>());
    assert_eq!(earned, 1);
    let pending = engine.read(|v| v.account(&AccountKey::of(AccountKind::DriverEarnings, driver, egp)).debits_pending);
    assert_eq!(pending, 3_000, "the open hold is still held");
    assert!(engine.read(|v| v.ledger_verify()).balanced);
    assert_eq!(engine.shutdown().unwrap(), before);
}
