//! Retention measured (issue 20): drivers' positions for several simulated days with
//! `positions_days = 1` leave the store's size bounded, and the accept latency is the same
//! while pruning runs as while it does not.
//!
//! An engine on a data directory and a [`ManualClock`] that starts at a UTC midnight.
//! `DRIVERS` drivers (default 10,000) report a position every `EVERY_S` simulated seconds
//! (default 120: 7.2 million positions a simulated day) for `DAYS` simulated days (default
//! 3: positions are pruned by whole UTC days, so with `positions_days = 1` day 0 goes at
//! the start of day 2, and day 2 reuses its pages). Each step's reports are submitted at
//! once (`submit_many_with`, as the gateway does) and waited for; at each simulated hour
//! the example waits for the tracker to have recorded the step, then samples the store
//! file's size, the positions it holds and those pruned.
//!
//! Meanwhile another thread books and accepts trips at a steady rate on `ACCEPT_CELLS`
//! (default 50) cells of a grid fleet: each accept is sent alone and timed from submit to
//! answer (the writer's accept latency: after the batch's fsync), filed under the simulated
//! hour it was answered in. At the end it prints the p50/p99 of the hours in which retention
//! pruned positions and of the other hours of the same days (day 1 on: the same store size).
//!
//! ```text
//! cargo run --release --example retention            # DRIVERS, EVERY_S, DAYS, ACCEPT_CELLS
//! ```
//!
//! The data directory is a temporary one (`TMPDIR`), removed at the end. BENCHMARKS.md
//! "Retention" has the figures.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch::scenario::{finish_grid_trips, grid_fleet, grid_rules, grid_trips, pipeline};
use dispatch_core::clock::{Clock, ManualClock, Timestamp};
use dispatch_core::{Actor, Category, Command, Engine, EngineConfig, LatLng, LocationReport, NewUser, Role, Vehicle};

const DAY_MS: i64 = 86_400_000;
/// The first simulated day (2024-10-04), from its midnight.
const DAY0: i64 = 20_000;

fn env(name: &str, default: u64) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(std::env::var(name).ok().map(|v| v.parse()).transpose()?.unwrap_or(default))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let drivers = env("DRIVERS", 10_000)?;
    let every_s = env("EVERY_S", 120)?;
    let days = env("DAYS", 3)?;
    let cells_n = env("ACCEPT_CELLS", 50)?;
    if every_s == 0 || 3_600 % every_s != 0 {
        return Err("EVERY_S must divide an hour".into());
    }
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(Timestamp::from_millis(DAY0 * DAY_MS));
    let mut config =
        EngineConfig::default().with_data_dir(dir.path()).with_rules(grid_rules()).with_clock(clock.clone());
    config.positions_days = Some(1);
    let engine = Arc::new(Engine::open(config)?);
    let cells = grid_fleet(&engine, cells_n)?;

    // The reporting drivers, on a grid of their own far from the accept cells.
    let started = Instant::now();
    let homes: Vec<LatLng> = (0..drivers)
        .map(|i| LatLng::new(45.0 + (i / 100) as f64 * 0.01, 31.0 + (i % 100) as f64 * 0.01))
        .collect::<Result<_, _>>()?;
    let creates = (0..drivers)
        .map(|i| {
            let vehicle = Some(Vehicle::new(Category::new("economy")?, format!("R {i}")));
            let new = NewUser {
                id: None,
                role: Role::Driver,
                name: format!("reporter {i}"),
                phone: format!("+2012{i:08}"),
                vehicle,
            };
            Ok((Actor::Admin, Command::CreateUser(new)))
        })
        .collect::<Result<Vec<_>, dispatch_core::Error>>()?;
    let mut ids = Vec::with_capacity(drivers as usize);
    for r in pipeline(&engine, creates) {
        match r? {
            dispatch_core::Outcome::User(u) => ids.push(u.id),
            other => return Err(format!("create_user answered {other:?}").into()),
        }
    }
    let online = ids
        .iter()
        .zip(&homes)
        .map(|(d, at)| (Actor::User(*d), Command::SetDriverStatus { online: true, location: Some(*at) }))
        .collect();
    for r in pipeline(&engine, online) {
        r?;
    }
    // The accept cells' drivers report too (their positions keep them fresh for offers).
    let reporters: Vec<(dispatch_core::UserId, LatLng)> =
        ids.iter().copied().zip(homes.iter().copied()).chain(cells.iter().map(|(d, _, at)| (*d, *at))).collect();
    eprintln!(
        "{} drivers online in {:.1} s; data in {}",
        reporters.len(),
        started.elapsed().as_secs_f64(),
        dir.path().display()
    );

    // Accepts at a steady rate, filed under the simulated hour they were answered in.
    let latencies: Arc<Mutex<BTreeMap<u64, Vec<Duration>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (engine, clock, latencies, stop) =
            (Arc::clone(&engine), clock.clone(), Arc::clone(&latencies), Arc::clone(&stop));
        std::thread::spawn(move || -> Result<u64, dispatch_core::Error> {
            let mut refused = 0;
            while !stop.load(Ordering::Relaxed) {
                let trips = grid_trips(&engine, &cells)?;
                for ((driver, _, _), trip) in cells.iter().zip(&trips) {
                    let t = Instant::now();
                    let r = engine.accept(*driver, trip.id);
                    let took = t.elapsed();
                    match r {
                        Ok(_) => {
                            let hour = ((clock.now().as_millis() - DAY0 * DAY_MS) / 3_600_000) as u64;
                            latencies.lock().unwrap_or_else(|e| e.into_inner()).entry(hour).or_default().push(took);
                        }
                        Err(_) => refused += 1,
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                finish_grid_trips(&engine, &cells, &trips)?;
            }
            Ok(refused)
        })
    };

    let store = dir.path().join(dispatch_core::history::FILE);
    let steps_per_hour = 3_600 / every_s;
    let mut hours: Vec<(u64, u64, u64, u64, u64)> = Vec::new(); // hour, store, dir, held, pruned
    let mut refused_positions = 0u64;
    let run = Instant::now();
    for hour in 0..days * 24 {
        for step in 0..steps_per_hour {
            clock.advance_secs(every_s as i64);
            let n = hour * steps_per_hour + step;
            let reports: Vec<(Actor, Command)> = reporters
                .iter()
                .map(|(d, home)| {
                    let north = (n % 20) as f64 * 0.000_05;
                    let point = LatLng::new(home.lat() + north, home.lng()).unwrap_or(*home);
                    (
                        Actor::User(*d),
                        Command::UpdateLocation(LocationReport { point, heading_deg: None, speed_mps: None }),
                    )
                })
                .collect();
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut sent = 0;
            for chunk in reports.chunks(dispatch_core::engine::MAX_SUBMIT_MANY) {
                let tx = tx.clone();
                loop {
                    let answer = tx.clone();
                    match engine.submit_many_with(chunk.to_vec(), move |r| drop(answer.send(r))) {
                        Ok(()) => break,
                        Err(dispatch_core::Error::Overloaded) => std::thread::sleep(Duration::from_micros(200)),
                        Err(e) => return Err(e.into()),
                    }
                }
                sent += 1;
            }
            for answers in rx.iter().take(sent) {
                refused_positions += answers.iter().filter(|r| r.is_err()).count() as u64;
            }
        }
        // Wait for the tracker to have written this hour's last step.
        let last = reporters[reporters.len() - 1].0;
        let waited = Instant::now();
        while engine.driver_track(last, clock.now(), 1)?.is_empty() && waited.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let size = std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0);
        let pruned = engine.retention_pruned().0;
        hours.push((hour + 1, size, dir_bytes(dir.path()), engine.positions_held()?, pruned));
        eprintln!(
            "day {} {:02}:00  store {:8.1} MiB  dir {:8.1} MiB  positions {:>10}  pruned {:>10}  ({:.0} s)",
            (hour + 1) / 24,
            (hour + 1) % 24,
            mib(size),
            mib(dir_bytes(dir.path())),
            engine.positions_held()?,
            pruned,
            run.elapsed().as_secs_f64()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let refused_accepts = acceptor.join().map_err(|_| "the accept thread panicked")??;

    // Hours in which retention pruned positions vs the other hours from day 1 on.
    let latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut pruning = Vec::new();
    let mut quiet = Vec::new();
    let mut before = 0;
    for &(hour, _, _, _, pruned) in &hours {
        let during = latencies.get(&(hour - 1)).cloned().unwrap_or_default();
        if pruned > before {
            pruning.extend(during);
        } else if hour > 24 {
            quiet.extend(during);
        }
        before = pruned;
    }
    pruning.sort_unstable();
    quiet.sort_unstable();
    let peak = hours.iter().map(|h| h.1).max().unwrap_or(0);
    let last_day_max = hours.iter().filter(|h| h.0 > (days - 1) * 24).map(|h| h.1).max().unwrap_or(0);
    println!("\n| simulated hour | store.redb MiB | data dir MiB | positions held | pruned so far |");
    println!("|---|---|---|---|---|");
    for &(hour, size, all, held, pruned) in hours.iter().filter(|h| h.0 % 6 == 0) {
        println!("| day {} {:02}:00 | {:.0} | {:.0} | {held} | {pruned} |", hour / 24, hour % 24, mib(size), mib(all));
    }
    println!(
        "\nstore peak {:.0} MiB; last day's max {:.0} MiB; {} positions reported, {} refused, {} tracker batches lost; \
         {:.0} s",
        mib(peak),
        mib(last_day_max),
        hours.len() as u64 * steps_per_hour * reporters.len() as u64,
        refused_positions,
        engine.positions_lost(),
        run.elapsed().as_secs_f64()
    );
    for (name, l) in [("hours with pruning", &pruning), ("hours without (day 1 on)", &quiet)] {
        println!(
            "accepts, {name}: n = {}, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            percentile(l, 0.50).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    println!("accepts refused: {refused_accepts}");
    drop(engine);
    Ok(())
}
