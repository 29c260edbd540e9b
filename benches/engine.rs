#![allow(clippy::unwrap_used, missing_docs)]
//! Accept throughput through the writer thread: in memory, and over a data dir
//! where every batch is appended to the WAL and fdatasync'd before any answer.
//!
//! `writer_{memory,wal_fsync}/accept_pipelined`: N drivers each hold the offer of their own trip;
//! N accepts are submitted without waiting (as a server with many connections
//! does) and the clock stops when the last answer arrives. Only the accepts are
//! timed: creating the trips before and completing them after are not.
//!
//! `writer_{memory,wal_fsync}/accept_round_trip`: one caller, one accept at a time: the latency of
//! a command through the queue, the writer and back.
//!
//! Run: `cargo bench --bench engine`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatch::scenario::{grid_fleet, pipeline, ride_from};
use dispatch_core::{Actor, Command, DispatchRules, Engine, EngineConfig, LatLng, Trip, UserId};

const DRIVERS: usize = 2_000;

struct Fleet {
    engine: Engine,
    drivers: Vec<(UserId, LatLng)>,
    riders: Vec<UserId>,
}

fn rules() -> DispatchRules {
    DispatchRules {
        offers_per_round: 1,
        stale_location_s: 86_400,
        offer_ttl_s: 86_400,
        timeout_s: 86_400,
        open_trips_per_rider: 1,
        search_radius_m: 500,
        ..DispatchRules::default()
    }
}

fn fleet(config: EngineConfig) -> Fleet {
    let engine = Engine::open(config.with_rules(rules())).unwrap();
    let cells = grid_fleet(&engine, DRIVERS as u64).unwrap();
    Fleet {
        drivers: cells.iter().map(|(d, _, at)| (*d, *at)).collect(),
        riders: cells.iter().map(|(_, r, _)| *r).collect(),
        engine,
    }
}

fn create_trips(f: &Fleet) -> Vec<std::sync::Arc<Trip>> {
    let commands = f
        .drivers
        .iter()
        .zip(&f.riders)
        .map(|((_, at), r)| (Actor::User(*r), Command::CreateTrip(ride_from(*at).unwrap())));
    pipeline(&f.engine, commands.collect())
        .into_iter()
        .map(|r| match r.unwrap() {
            dispatch_core::Outcome::Trip(t) => t,
            o => panic!("{o:?}"),
        })
        .collect()
}

fn finish_trips(f: &Fleet, trips: &[std::sync::Arc<Trip>]) {
    for step in 0..3 {
        let commands = f.drivers.iter().zip(trips).map(|((d, _), t)| {
            let c = match step {
                0 => Command::DriverArrived { trip_id: t.id },
                1 => Command::StartTrip { trip_id: t.id, pickup_code: t.pickup_code.to_string() },
                _ => Command::CompleteTrip { trip_id: t.id, distance_m: None, dropoff: None },
            };
            (Actor::User(*d), c)
        });
        for r in pipeline(&f.engine, commands.collect()) {
            r.unwrap();
        }
    }
}

/// Times pipelined accepts (only the accepts) over `f`.
fn pipelined_accepts(f: &Fleet, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let trips = create_trips(f);
        let accepts =
            f.drivers.iter().zip(&trips).map(|((d, _), t)| (Actor::User(*d), Command::AcceptTrip { trip_id: t.id }));
        let start = Instant::now();
        let results = pipeline(&f.engine, accepts.collect());
        total += start.elapsed();
        assert!(results.iter().all(|r| r.is_ok()));
        finish_trips(f, &trips);
    }
    total
}

/// Times single accepts, one at a time, over `f`.
fn sequential_accepts(f: &Fleet, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let trips = create_trips(f);
        let n = (left as usize).min(trips.len());
        let start = Instant::now();
        for ((d, _), t) in f.drivers.iter().zip(&trips).take(n) {
            black_box(f.engine.accept(*d, t.id).unwrap());
        }
        total += start.elapsed();
        // Accept the rest untimed so every trip can be finished.
        for ((d, _), t) in f.drivers.iter().zip(&trips).skip(n) {
            f.engine.accept(*d, t.id).unwrap();
        }
        finish_trips(f, &trips);
        left -= n as u64;
    }
    total
}

fn accept(c: &mut Criterion) {
    let memory = fleet(EngineConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let durable = fleet(EngineConfig::default().with_data_dir(dir.path()));
    for (label, f) in [("memory", &memory), ("wal_fsync", &durable)] {
        let mut group = c.benchmark_group(format!("writer_{label}"));
        group.throughput(Throughput::Elements(DRIVERS as u64));
        group.sample_size(10);
        group.bench_function("accept_pipelined", |b| b.iter_custom(|iters| pipelined_accepts(f, iters)));
        group.finish();
        let mut group = c.benchmark_group(format!("writer_{label}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("accept_round_trip", |b| b.iter_custom(|iters| sequential_accepts(f, iters)));
        group.finish();
    }
}

criterion_group!(benches, accept);
criterion_main!(benches);
