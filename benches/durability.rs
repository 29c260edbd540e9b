//! Durability figures that need percentiles or one long run, printed as a table:
//!
//! - the disk's raw `fdatasync` latency for a 4 KiB append (the floor under every
//!   acknowledged command);
//! - accepts through the writer with the WAL and one fsync per batch: throughput
//!   and per-accept latency (submit → answer) with 2,000 accepts in flight, with one
//!   caller at a time, and open-loop at a steady 20,000 a second (each accept sent at its
//!   scheduled instant, latency counted from that instant, so a stall is never hidden),
//!   100,000 of them in rounds of 2,000, across the checkpoints they cause;
//! - ledger transfers (wallet credits) through the writer with fsync, 10,000 in flight;
//! - recovery time of an engine whose WAL holds 1,000,000 records: position reports
//!   only, and a city's mix (a fifth trips created, accepted, driven and completed, the
//!   rest position reports).
//!
//! - checkpoints with 1,000,000 rider accounts: what one writes and how long it takes
//!   while accounts are created, and after 100,000 records that change none (only the
//!   changed rows are written), and a restart that reads the accounts back from the store.
//!
//! Run: `cargo bench --bench durability` (set `DISPATCH_BENCH_DIR` to measure
//! another disk than the system temp dir, `DISPATCH_BENCH_CHECKPOINT_EVERY` to change the
//! accepts' checkpoint interval, in records, or `off`; `-- NAME` runs only the parts whose name
//! holds NAME, e.g. `-- accounts`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch::scenario::{finish_grid_trips, grid_fleet, grid_rules, grid_trips};
use dispatch_core::{Actor, Command, Engine, EngineConfig, LatLng, LocationReport, Record};
use dispatch_storage::{CommandLog, Wal};

mod common;
use common::{bench_dir, summary};

const DRIVERS: u64 = 2_000;
const ROUNDS: usize = 10;
/// Rounds of the open loop: 100,000 accepts, which span several checkpoints at the
/// default interval (100,000 records; a round logs about 12,000), so its p99 holds
/// the checkpoints' share of a steady load rather than hinging on one of them.
const OPEN_LOOP_ROUNDS: usize = 50;
const RECOVERY_RECORDS: u64 = 1_000_000;
/// The open-loop accept rate (DESIGN.md's budget: ≥ 20,000/s with p99 ≤ 5 ms).
const OPEN_LOOP_PER_S: f64 = 20_000.0;

fn raw_fsync() {
    let dir = bench_dir();
    let mut f = File::create(dir.path().join("probe")).unwrap();
    let block = vec![0xA5u8; 4096];
    let samples = (0..500)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    summary("raw 4 KiB append + fdatasync", samples, None);
}

fn accepts() {
    let dir = bench_dir();
    let mut config = EngineConfig::default().with_rules(grid_rules()).with_data_dir(dir.path());
    // `DISPATCH_BENCH_CHECKPOINT_EVERY=N` (records; `off` for none) measures other intervals.
    match std::env::var("DISPATCH_BENCH_CHECKPOINT_EVERY").as_deref() {
        Ok("off") => config.checkpoint_every_records = u64::MAX,
        Ok(n) => config.checkpoint_every_records = n.parse().expect("DISPATCH_BENCH_CHECKPOINT_EVERY: records or off"),
        Err(_) => {}
    }
    let engine = Engine::open(config).unwrap();
    let cells = grid_fleet(&engine, DRIVERS).unwrap();

    // Pipelined: every accept of a round in flight at once.
    let mut latencies = Vec::new();
    let mut busy = Duration::ZERO;
    for _ in 0..ROUNDS {
        let trips = grid_trips(&engine, &cells).unwrap();
        let done = Arc::new(Mutex::new(Vec::with_capacity(cells.len())));
        let (tx, rx) = crossbeam_channel::unbounded();
        let start = Instant::now();
        for ((d, _, _), t) in cells.iter().zip(&trips) {
            let (done, tx, sent) = (Arc::clone(&done), tx.clone(), Instant::now());
            engine
                .submit_with(Actor::User(*d), Command::AcceptTrip { trip_id: t.id }, move |r| {
                    done.lock().unwrap().push(sent.elapsed());
                    let _ = tx.send(r.is_ok());
                })
                .unwrap();
        }
        assert!(rx.iter().take(cells.len()).all(|ok| ok));
        busy += start.elapsed();
        latencies.extend(done.lock().unwrap().drain(..));
        finish_grid_trips(&engine, &cells, &trips).unwrap();
    }
    let rate = latencies.len() as f64 / busy.as_secs_f64();
    let syncs = engine.stats().syncs.load(std::sync::atomic::Ordering::Relaxed);
    summary("accept, WAL + fsync, 2,000 in flight", latencies, Some(rate));

    // One caller: every accept waits for its own fsync.
    let trips = grid_trips(&engine, &cells).unwrap();
    let samples: Vec<Duration> = cells
        .iter()
        .zip(&trips)
        .map(|((d, _, _), t)| {
            let s = Instant::now();
            engine.accept(*d, t.id).unwrap();
            s.elapsed()
        })
        .collect();
    let rate = samples.len() as f64 / samples.iter().sum::<Duration>().as_secs_f64();
    summary("accept, WAL + fsync, one caller at a time", samples, Some(rate));
    finish_grid_trips(&engine, &cells, &trips).unwrap();
    println!("{:<44} {syncs} syncs so far", "");

    // Open loop: accepts arrive at a steady rate, whatever the engine is doing.
    let syncs_before = engine.stats().sync_us.snapshot();
    let checkpoints = || engine.stats().checkpoints.written.load(std::sync::atomic::Ordering::Relaxed);
    let checkpoints_before = checkpoints();
    let mut latencies = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / OPEN_LOOP_PER_S);
    for _ in 0..OPEN_LOOP_ROUNDS {
        let trips = grid_trips(&engine, &cells).unwrap();
        let done = Arc::new(Mutex::new(Vec::with_capacity(cells.len())));
        let (tx, rx) = crossbeam_channel::unbounded();
        let round = Instant::now();
        for (i, ((d, _, _), t)) in cells.iter().zip(&trips).enumerate() {
            // Sleep (never spin: the writer needs the other core) until the accept is
            // due; whatever came due while asleep goes at once, timed from its due instant.
            let due = round + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (done, tx) = (Arc::clone(&done), tx.clone());
            engine
                .submit_with(Actor::User(*d), Command::AcceptTrip { trip_id: t.id }, move |r| {
                    done.lock().unwrap().push(due.elapsed());
                    let _ = tx.send(r.is_ok());
                })
                .unwrap();
        }
        assert!(rx.iter().take(cells.len()).all(|ok| ok));
        latencies.extend(done.lock().unwrap().drain(..));
        finish_grid_trips(&engine, &cells, &trips).unwrap();
    }
    summary(&format!("accept, WAL + fsync, open loop {OPEN_LOOP_PER_S:.0}/s"), latencies, Some(OPEN_LOOP_PER_S));
    // The writer's own fsyncs meanwhile: how many took longer than the 5 ms budget.
    let syncs = engine.stats().sync_us.snapshot();
    let within = |s: &dispatch_core::histogram::HistogramSnapshot| {
        s.buckets.iter().find(|(bound, _)| *bound == 5_000).map_or(0, |(_, n)| *n)
    };
    println!(
        "{:<44} {} syncs, {} over 5 ms",
        "  the writer's fsyncs during the open loop",
        syncs.count - syncs_before.count,
        (syncs.count - syncs_before.count) - (within(&syncs) - within(&syncs_before))
    );
    println!("{:<44} {}", "  checkpoints written during the open loop", checkpoints() - checkpoints_before);
    engine.shutdown().unwrap();
}

/// Ledger transfers (wallet credits) through the writer, WAL + fsync, 10,000 in flight.
fn transfers() {
    let dir = bench_dir();
    let engine = Engine::open(EngineConfig::default().with_data_dir(dir.path())).unwrap();
    let riders: Vec<_> =
        (0..1_000).map(|n| dispatch::scenario::user(&engine, dispatch_core::Role::Rider, n + 1).unwrap()).collect();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let mut latencies = Vec::new();
    let mut busy = Duration::ZERO;
    for _ in 0..ROUNDS {
        let done = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
        let (tx, rx) = crossbeam_channel::unbounded();
        let start = Instant::now();
        for i in 0..10_000 {
            let (done, tx, sent) = (Arc::clone(&done), tx.clone(), Instant::now());
            let credit = Command::CreditWallet {
                id: None,
                user_id: riders[i % riders.len()],
                amount_minor: 100,
                currency: egp,
                reason: "bench".into(),
            };
            engine
                .submit_with(Actor::Admin, credit, move |r| {
                    done.lock().unwrap().push(sent.elapsed());
                    let _ = tx.send(r.is_ok());
                })
                .unwrap();
        }
        assert!(rx.iter().take(10_000).all(|ok| ok));
        busy += start.elapsed();
        latencies.extend(done.lock().unwrap().drain(..));
    }
    let rate = latencies.len() as f64 / busy.as_secs_f64();
    summary("ledger transfer, WAL + fsync, 10,000 in flight", latencies, Some(rate));
    assert!(engine.read(|v| v.ledger_verify()).balanced);
    engine.shutdown().unwrap();
}

fn recovery() {
    let dir = bench_dir();
    // Drivers exist, then a million position reports follow them in the log.
    let engine = Engine::open(EngineConfig::default().with_rules(grid_rules()).with_data_dir(dir.path())).unwrap();
    let cells = grid_fleet(&engine, 1_000).unwrap();
    let state_before = engine.shutdown().unwrap();
    let (mut wal, _) = Wal::open(dir.path().join("wal"), Default::default()).unwrap();
    let mut t = 1_700_000_000_000i64;
    let mut written = 0u64;
    while written < RECOVERY_RECORDS {
        let batch: Vec<Vec<u8>> = (0..4_096.min(RECOVERY_RECORDS - written))
            .map(|i| {
                let (d, _, at) = cells[((written + i) % cells.len() as u64) as usize];
                t += 1;
                let point = LatLng::new(at.lat() + (i % 7) as f64 * 1e-5, at.lng()).unwrap();
                let command =
                    Command::UpdateLocation(LocationReport { point, heading_deg: Some(90.0), speed_mps: Some(8.0) });
                Record { at: dispatch_core::clock::Timestamp::from_millis(t), actor: Actor::User(d), command }
                    .encode()
                    .unwrap()
            })
            .collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        wal.append(&refs).unwrap();
        wal.sync().unwrap();
        written += batch.len() as u64;
    }
    drop(wal);
    let bytes: u64 =
        std::fs::read_dir(dir.path().join("wal")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let start = Instant::now();
    let engine = Engine::open(EngineConfig::default().with_rules(grid_rules()).with_data_dir(dir.path())).unwrap();
    let took = start.elapsed();
    let replayed = engine.recovery().replayed;
    println!(
        "{:<44} {took:>9.1?} for {replayed} records ({:.0} MiB of WAL, {:.1} M records/s)",
        "recovery: open + replay",
        bytes as f64 / (1024.0 * 1024.0),
        replayed as f64 / took.as_secs_f64() / 1e6
    );
    assert!(replayed >= RECOVERY_RECORDS);
    assert_eq!(engine.read(|v| v.users().count()), state_before.users().count());
    engine.shutdown().unwrap();
}

/// Recovery of a city's log: rounds of 2,000 trips each created, accepted, arrived,
/// started and completed (10,000 records), with 40,000 position reports between them,
/// until 1,000,000 records; no checkpoint, so recovery replays every one.
fn recovery_of_a_mix() {
    let dir = bench_dir();
    let config = || {
        // Every report is logged (none coalesced), and no checkpoint shortens the replay.
        let rules = dispatch_core::DispatchRules { location_min_interval_ms: 0, ..grid_rules() };
        let mut config = EngineConfig::default().with_rules(rules).with_data_dir(dir.path());
        config.checkpoint_every_records = u64::MAX;
        config
    };
    let engine = Engine::open(config()).unwrap();
    let cells = grid_fleet(&engine, DRIVERS).unwrap();
    let mut turn = 0u64;
    while engine.stats().applied.load(std::sync::atomic::Ordering::Relaxed) < RECOVERY_RECORDS {
        let trips = grid_trips(&engine, &cells).unwrap();
        let accepts =
            cells.iter().zip(&trips).map(|((d, _, _), t)| (Actor::User(*d), Command::AcceptTrip { trip_id: t.id }));
        assert!(dispatch::scenario::pipeline(&engine, accepts.collect()).iter().all(Result::is_ok));
        for _ in 0..20 {
            turn += 1;
            let moves = cells.iter().map(|(d, _, at)| {
                let point = LatLng::new(at.lat() + (turn % 7) as f64 * 1e-5, at.lng()).unwrap();
                (Actor::User(*d), Command::UpdateLocation(LocationReport { point, heading_deg: None, speed_mps: None }))
            });
            assert!(dispatch::scenario::pipeline(&engine, moves.collect()).iter().all(Result::is_ok));
        }
        finish_grid_trips(&engine, &cells, &trips).unwrap();
    }
    engine.shutdown().unwrap();
    let start = Instant::now();
    let engine = Engine::open(config()).unwrap();
    let took = start.elapsed();
    let replayed = engine.recovery().replayed;
    println!(
        "{:<44} {took:>9.1?} for {replayed} records ({:.1} M records/s)",
        "recovery of a city's mix: open + replay",
        replayed as f64 / took.as_secs_f64() / 1e6
    );
    assert!(replayed >= RECOVERY_RECORDS);
    engine.shutdown().unwrap();
}

/// Checkpoints at the scale of a country's accounts, through an engine on a data
/// directory: 1,000,000 riders signed up (the checkpoints along the way write each
/// interval's new accounts), then a checkpoint after 100,000 records that change no
/// account (position reports), then a restart that reads the million accounts back.
fn checkpoint_of_a_million_accounts() {
    use dispatch_core::{NewUser, Role};
    use std::sync::atomic::Ordering::Relaxed;
    const ACCOUNTS: u64 = 1_000_000;
    let dir = bench_dir();
    let config = || {
        let rules = dispatch_core::DispatchRules { location_min_interval_ms: 0, ..grid_rules() };
        EngineConfig::default().with_rules(rules).with_data_dir(dir.path())
    };
    let engine = Engine::open(config()).unwrap();
    let cells = grid_fleet(&engine, 100).unwrap();
    let started = Instant::now();
    for chunk in (1..=ACCOUNTS).collect::<Vec<_>>().chunks(50_000) {
        let sign_ups = chunk.iter().map(|i| {
            let new = NewUser {
                id: Some(dispatch_core::UserId::from_raw(1_000_000 + i).unwrap()),
                role: Role::Rider,
                name: format!("Rider {i}"),
                phone: format!("+2012{i:08}"),
                vehicle: None,
            };
            (Actor::Admin, Command::CreateUser(new))
        });
        assert!(dispatch::scenario::pipeline(&engine, sign_ups.collect()).iter().all(Result::is_ok));
    }
    let signed_up = started.elapsed();
    let stats = &engine.stats().checkpoints;
    let during = (stats.last_rows.load(Relaxed), stats.last_micros.load(Relaxed));
    // Position reports until a checkpoint has been taken after the last sign-up.
    let before = stats.written.load(Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut turn = 0u64;
    while stats.written.load(Relaxed) < before + 3 {
        assert!(Instant::now() < deadline, "no checkpoint");
        turn += 1;
        let moves = cells.iter().map(|(d, _, at)| {
            let point = LatLng::new(at.lat() + (turn % 7) as f64 * 1e-5, at.lng()).unwrap();
            (Actor::User(*d), Command::UpdateLocation(LocationReport { point, heading_deg: None, speed_mps: None }))
        });
        assert!(dispatch::scenario::pipeline(&engine, moves.collect()).iter().all(Result::is_ok));
    }
    let quiet = (stats.last_rows.load(Relaxed), stats.last_micros.load(Relaxed));
    let users = engine.read(|v| v.users().count());
    let state = engine.shutdown().unwrap();
    let store = std::fs::metadata(dir.path().join(dispatch_core::history::FILE)).unwrap().len();
    let t = Instant::now();
    let engine = Engine::open(config()).unwrap();
    let reopened = t.elapsed();
    let replayed = engine.recovery().replayed;
    assert_eq!(engine.shutdown().unwrap(), state);
    println!(
        "{:<44} {users} users signed up in {signed_up:.1?}; a checkpoint while they came: {} rows in {:.1?}",
        "checkpoints with 1,000,000 accounts",
        during.0,
        Duration::from_micros(during.1)
    );
    println!(
        "{:<44} {} rows in {:.1?} (the accounts are not rewritten)",
        "  a checkpoint after 100k position reports",
        quiet.0,
        Duration::from_micros(quiet.1)
    );
    println!(
        "{:<44} {reopened:.1?} (store {:.0} MiB, {replayed} records replayed)",
        "  restart: load the checkpoint + replay",
        store as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: do nothing then.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    // `cargo bench --bench durability -- recovery` runs only the parts whose name holds it.
    let filter = args.iter().find(|a| !a.starts_with('-'));
    println!("dispatch durability bench (temp dir: {})", std::env::temp_dir().display());
    let parts: [(&str, fn()); 6] = [
        ("raw_fsync", raw_fsync),
        ("accepts", accepts),
        ("transfers", transfers),
        ("recovery", recovery),
        ("recovery_of_a_mix", recovery_of_a_mix),
        ("checkpoint_of_a_million_accounts", checkpoint_of_a_million_accounts),
    ];
    for (name, run) in parts {
        if filter.is_none_or(|f| name.contains(f.as_str())) {
            run();
        }
    }
}
