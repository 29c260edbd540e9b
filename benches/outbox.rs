#![allow(clippy::unwrap_used, missing_docs)]
//! The notification outbox's cost on the writer (issue 18): items are made by `apply`
//! itself from the commands that cause them, so the writer only appends — no I/O, no
//! provider is called on its thread.
//!
//! `outbox_enqueue/accept_5_devices`: 2,000 drivers each accept their own trip, pipelined
//! through the WAL with fsync; each trip's rider has 5 push devices, so each accept makes
//! 5 `trip_accepted` items. The throughput is in notifications enqueued per second.
//!
//! `outbox_accept/{without,with}_notifications`: the same pipelined accepts, through the
//! WAL with fsync, when riders have no device (no item) and one device (one item per
//! accept): the accept path's added cost. Throughput in accepts per second.
//!
//! `outbox_accept_one/{without_notifications,with_notifications,with_webhooks}`: the
//! accept path as a driver's request sees it — one accept at a time, each submitted and
//! waited for (applied, synced, published, answered) — when riders have no device and no
//! webhook endpoint exists; when each rider has one device (one item per accept); and
//! when besides one endpoint wants every event (one delivery more per accept, and one per
//! booking and per step of the trip). Time per accept.
//!
//! Items accumulate pending across iterations (nothing sends them here), as they would
//! behind a slow provider.
//!
//! `CHECKPOINTS=0` takes checkpoints out of the runs (none falls during them), to tell
//! the writer's share of a difference from the checkpoint's (which writes the items and
//! deliveries made since the last one, on the same disk as the WAL's syncs).
//!
//! Run: `cargo bench --bench outbox`

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatch::scenario::{finish_grid_trips, grid_fleet, grid_rules, grid_trips, pipeline};
use dispatch_core::outbox::Platform;
use dispatch_core::{Actor, Command, Engine, EngineConfig, LatLng, UserId};

const DRIVERS: usize = 2_000;

struct Fleet {
    engine: Engine,
    cells: Vec<(UserId, UserId, LatLng)>,
    _dir: tempfile::TempDir,
}

/// A fleet over a WAL with fsync whose riders have `devices` push devices each, and
/// `hooks` webhook endpoints wanting every event.
fn fleet(devices: usize, hooks: usize) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::default().with_data_dir(dir.path()).with_rules(grid_rules());
    if std::env::var("CHECKPOINTS").as_deref() == Ok("0") {
        config.checkpoint_every_records = u64::MAX;
    }
    let engine = Engine::open(config).unwrap();
    let cells = grid_fleet(&engine, DRIVERS as u64).unwrap();
    let register: Vec<(Actor, Command)> = cells
        .iter()
        .flat_map(|(_, rider, _)| {
            (0..devices).map(move |i| {
                let token = format!("token-{rider}-{i}");
                (Actor::User(*rider), Command::RegisterDevice { id: None, platform: Platform::Fcm, token })
            })
        })
        .collect();
    assert!(pipeline(&engine, register).iter().all(|r| r.is_ok()));
    for i in 0..hooks {
        let url = format!("https://hooks{i}.example.com/in");
        let endpoint =
            Command::CreateWebhookEndpoint { id: None, secret: None, url, events: vec!["*".into()], description: None };
        engine.submit(Actor::Admin, endpoint).unwrap();
    }
    Fleet { engine, cells, _dir: dir }
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

/// Times `iters` accepts made one at a time, each waited for (a round's accepts beyond
/// `iters` are made untimed, so its trips can be finished).
fn single_accepts(f: &Fleet, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let trips = grid_trips(&f.engine, &f.cells).unwrap();
        for (i, ((d, _, _), t)) in f.cells.iter().zip(&trips).enumerate() {
            let start = Instant::now();
            f.engine.submit(Actor::User(*d), Command::AcceptTrip { trip_id: t.id }).unwrap();
            if (i as u64) < left {
                total += start.elapsed();
            }
        }
        left = left.saturating_sub(trips.len() as u64);
        finish_grid_trips(&f.engine, &f.cells, &trips).unwrap();
    }
    total
}

fn outbox(c: &mut Criterion) {
    let five = fleet(5, 0);
    let mut group = c.benchmark_group("outbox_enqueue");
    group.throughput(Throughput::Elements((DRIVERS * 5) as u64));
    group.sample_size(10);
    group.bench_function("accept_5_devices", |b| b.iter_custom(|iters| pipelined_accepts(&five, iters)));
    group.finish();
    drop(five);

    let without = fleet(0, 0);
    let with = fleet(1, 0);
    let mut group = c.benchmark_group("outbox_accept");
    group.throughput(Throughput::Elements(DRIVERS as u64));
    group.sample_size(10);
    group.bench_function("without_notifications", |b| b.iter_custom(|iters| pipelined_accepts(&without, iters)));
    group.bench_function("with_notifications", |b| b.iter_custom(|iters| pipelined_accepts(&with, iters)));
    group.finish();
    drop((without, with));

    let without = fleet(0, 0);
    let with = fleet(1, 0);
    let hooks = fleet(1, 1);
    let mut group = c.benchmark_group("outbox_accept_one");
    group.sample_size(20);
    group.bench_function("without_notifications", |b| b.iter_custom(|iters| single_accepts(&without, iters)));
    group.bench_function("with_notifications", |b| b.iter_custom(|iters| single_accepts(&with, iters)));
    group.bench_function("with_webhooks", |b| b.iter_custom(|iters| single_accepts(&hooks, iters)));
    group.finish();
}

criterion_group!(benches, outbox);
criterion_main!(benches);
