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
use dispatch::scenario::{finish_grid_trips, grid_fleet, grid_rules, grid_trips, pipeline};
use dispatch_core::{Actor, Command, Engine, EngineConfig, LatLng, UserId};

const DRIVERS: usize = 2_000;

struct Fleet {
    engine: Engine,
    cells: Vec<(UserId, UserId, LatLng)>,
}

fn fleet(config: EngineConfig) -> Fleet {
    let engine = Engine::open(config.with_rules(grid_rules())).unwrap();
    let cells = grid_fleet(&engine, DRIVERS as u64).unwrap();
    Fleet { engine, cells }
}

/// Times pipelined accepts (only the accepts) over `f`.
fn pipelined_accepts(f: &Fleet, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let trips = grid_trips(&f.engine, &f.cells).unwrap();
        let accepts =
            f.cells.iter().zip(&trips).map(|((d, _, _), t)| (Actor::User(*d), Command::AcceptTrip { trip_id: t.id }));
        let start = Instant::now();
        let results = pipeline(&f.engine, accepts.collect());
        total += start.elapsed();
        assert!(results.iter().all(|r| r.is_ok()));
        finish_grid_trips(&f.engine, &f.cells, &trips).unwrap();
    }
    total
}

/// Times single accepts, one at a time, over `f`.
fn sequential_accepts(f: &Fleet, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let trips = grid_trips(&f.engine, &f.cells).unwrap();
        let n = (left as usize).min(trips.len());
        let start = Instant::now();
        for ((d, _, _), t) in f.cells.iter().zip(&trips).take(n) {
            black_box(f.engine.accept(*d, t.id).unwrap());
        }
        total += start.elapsed();
        // Accept the rest untimed so every trip can be finished.
        for ((d, _, _), t) in f.cells.iter().zip(&trips).skip(n) {
            f.engine.accept(*d, t.id).unwrap();
        }
        finish_grid_trips(&f.engine, &f.cells, &trips).unwrap();
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
