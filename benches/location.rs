//! Location updates, the engine's one high-rate command, at city scale (100,000 drivers
//! online over a 40 × 40 km city, each report ~30 m from the last: 3 s at 10 m/s):
//!
//! - `location/apply`: one report applied by the state machine on one core — the
//!   checks (range, heading, implied speed, minimum interval), the driver record, the
//!   R-tree move and the `DriverMoved` event. DESIGN.md's budget: ≥ 300,000 / s.
//! - `location/writer_pipelined`: reports through the whole writer of an in-memory
//!   engine, 1,000 in flight, each its own message (queue, batch, journal record, view,
//!   subscribers): what one process ingests from many callers.
//! - `location/writer_many`: the same, each 1,000 sent as one message
//!   (`Engine::submit_many_with`): a gateway relaying many drivers, or a pipelining client.
//!
//! Run: `cargo bench --bench location`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatch_core::clock::{ManualClock, Timestamp};
use dispatch_core::command::LocationReport;
use dispatch_core::state::Effects;
use dispatch_core::{
    Actor, Category, Command, DispatchRules, Engine, EngineConfig, LatLng, NewUser, Outcome, RandomIds, Role, State,
    UserId, Vehicle, apply,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DRIVERS: u64 = 100_000;
const CITY: (f64, f64) = (30.0444, 31.2357);
/// ~40 km across.
const SPAN_DEG: f64 = 0.36;
/// A report's step: ~30 m.
const STEP_DEG: f64 = 30.0 / 111_195.0;
const T0: i64 = 1_700_000_000_000;

fn positions(rng: &mut StdRng) -> Vec<LatLng> {
    (0..DRIVERS)
        .map(|_| {
            LatLng::new(
                CITY.0 + rng.random_range(-SPAN_DEG / 2.0..SPAN_DEG / 2.0),
                CITY.1 + rng.random_range(-SPAN_DEG / 2.0..SPAN_DEG / 2.0),
            )
            .unwrap()
        })
        .collect()
}

fn driver(i: u64) -> UserId {
    UserId::from_raw(i + 1).unwrap()
}

fn setup_commands(at: &[LatLng]) -> Vec<(Actor, Command)> {
    let economy = Category::new("economy").unwrap();
    let zone = dispatch_core::demo::cairo().unwrap();
    let mut out = vec![(Actor::Admin, Command::CreateZone { id: None, zone: Box::new(zone) })];
    for (i, p) in at.iter().enumerate() {
        let id = driver(i as u64);
        let new = NewUser {
            id: Some(id),
            role: Role::Driver,
            name: format!("Driver {i}"),
            phone: format!("+2010{i:08}"),
            vehicle: Some(Vehicle::new(economy.clone(), format!("ABC {i}"))),
        };
        out.push((Actor::Admin, Command::CreateUser(new)));
        out.push((Actor::User(id), Command::SetDriverStatus { online: true, location: Some(*p) }));
    }
    out
}

/// The next report of driver `k`: a step in a pseudo-random direction.
fn step(at: &mut [LatLng], k: usize, turn: u64) -> LocationReport {
    let angle = (turn % 360) as f64 * std::f64::consts::PI / 180.0;
    let p = at[k];
    let next = LatLng::new(p.lat() + STEP_DEG * angle.sin(), p.lng() + STEP_DEG * angle.cos()).unwrap_or(p);
    at[k] = next;
    LocationReport { point: next, heading_deg: Some((turn % 360) as f32), speed_mps: Some(10.0) }
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let start = positions(&mut rng);
    let rules = DispatchRules { location_min_interval_ms: 1_000, ..DispatchRules::default() };

    // The state machine alone.
    let mut state = State::new(rules.clone());
    let mut fx = Effects::default();
    let mut now = Timestamp::from_millis(T0);
    let mut ids = RandomIds::seeded(3);
    for (actor, mut command) in setup_commands(&start) {
        state.stamp(&mut command, &mut ids);
        apply(&mut state, actor, &command, now, &mut fx).unwrap();
        fx.clear();
    }
    let mut at = start.clone();
    let mut group = c.benchmark_group("location");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("apply", |b| {
        b.iter(|| {
            n += 1;
            // A stride through every driver: each is revisited 100 s of engine time later.
            let k = ((n * 7_919) % DRIVERS) as usize;
            now = now.plus_millis(1);
            let report = step(&mut at, k, n * 37);
            let r = apply(&mut state, Actor::User(driver(k as u64)), &Command::UpdateLocation(report), now, &mut fx);
            fx.clear();
            black_box(r)
        })
    });

    // The whole writer, in memory.
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(
        EngineConfig::default().with_clock(clock.clone()).with_ids(RandomIds::seeded(3)).with_rules(rules),
    )
    .unwrap();
    assert!(dispatch::scenario::pipeline(&engine, setup_commands(&start)).iter().all(Result::is_ok));
    let mut at = start;
    let mut turn = 0u64;
    // One round: every driver of the batch reports once, 2 s of engine time after the last.
    let mut round = |batch: u64| {
        clock.advance_secs(2);
        (0..batch)
            .map(|_| {
                turn += 1;
                let k = ((turn * 7_919) % DRIVERS) as usize;
                (Actor::User(driver(k as u64)), Command::UpdateLocation(step(&mut at, k, turn * 37)))
            })
            .collect::<Vec<_>>()
    };
    let mut measure = |iters: u64, send: &dyn Fn(Vec<(Actor, Command)>) -> Vec<dispatch_core::Result<Outcome>>| {
        let mut took = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let batch = left.min(1_000);
            left -= batch;
            let reports = round(batch);
            let t = Instant::now();
            let answers = send(reports);
            took += t.elapsed();
            assert!(answers.iter().all(Result::is_ok), "{:?}", answers.iter().find(|a| a.is_err()));
        }
        took
    };
    let one_by_one = |reports| dispatch::scenario::pipeline(&engine, reports);
    let as_one = |reports: Vec<(Actor, Command)>| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        engine.submit_many_with(reports, move |answers| drop(tx.send(answers))).unwrap();
        rx.recv().unwrap()
    };
    group.bench_function("writer_pipelined", |b| b.iter_custom(|iters| measure(iters, &one_by_one)));
    group.bench_function("writer_many", |b| b.iter_custom(|iters| measure(iters, &as_one)));
    group.finish();
    engine.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
