#![allow(clippy::unwrap_used, missing_docs)]
//! Accept throughput through the writer thread, in memory (no WAL yet).
//!
//! `writer/accept_pipelined`: N drivers each hold the offer of their own trip;
//! N accepts are submitted without waiting (as a server with many connections
//! does) and the clock stops when the last answer arrives. Only the accepts are
//! timed: creating the trips before and completing them after are not.
//!
//! `writer/accept_round_trip`: one caller, one accept at a time: the latency of
//! a command through the queue, the writer and back.
//!
//! Run: `cargo bench --bench engine`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatch_core::{
    Actor, Category, Command, DispatchRules, Engine, EngineConfig, LatLng, NewTrip, NewUser, PaymentMethod, Place,
    Quote, Role, Trip, TripKind, UserId, Vehicle,
};

const DRIVERS: usize = 2_000;

struct Fleet {
    engine: Engine,
    drivers: Vec<(UserId, LatLng)>,
    riders: Vec<UserId>,
}

fn fleet() -> Fleet {
    let rules = DispatchRules {
        offers_per_round: 1,
        stale_location_s: 86_400,
        offer_ttl_s: 86_400,
        timeout_s: 86_400,
        open_trips_per_rider: 1,
        search_radius_m: 500,
        ..DispatchRules::default()
    };
    let engine = Engine::open(EngineConfig::default().with_rules(rules)).unwrap();
    let mut drivers = Vec::new();
    let mut riders = Vec::new();
    for i in 0..DRIVERS {
        let v = Vehicle { category: Category::new("economy").unwrap(), plate: format!("B{i}") };
        let new = |role, vehicle, n: usize| NewUser {
            id: None,
            role,
            name: format!("b{n}"),
            phone: format!("+2012{n:08}"),
            vehicle,
        };
        let d = engine.create_user(Actor::Admin, new(Role::Driver, Some(v), i)).unwrap().id;
        let r = engine.create_user(Actor::Admin, new(Role::Rider, None, DRIVERS + i)).unwrap().id;
        // A grid ~2 km apart: each trip's nearest (and only) driver is its own.
        let at = LatLng::new(29.0 + (i / 50) as f64 * 0.02, 31.0 + (i % 50) as f64 * 0.02).unwrap();
        engine.set_driver_status(d, true, Some(at)).unwrap();
        drivers.push((d, at));
        riders.push(r);
    }
    Fleet { engine, drivers, riders }
}

fn trip_at(at: LatLng) -> NewTrip {
    NewTrip {
        id: None,
        pickup_code: None,
        kind: TripKind::Ride,
        pickup: Place::at(at),
        dropoff: Place::at(at),
        category: Category::new("economy").unwrap(),
        parcel: None,
        payment_method: PaymentMethod::Cash,
        quote: Quote { currency: "EGP".parse().unwrap(), estimate_minor: 5_000, surge_bps: 10_000, discount_minor: 0 },
    }
}

/// Submits every command without waiting, then waits for all answers.
fn pipeline(engine: &Engine, commands: Vec<(Actor, Command)>) -> Vec<dispatch_core::Result<dispatch_core::Outcome>> {
    let n = commands.len();
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, (actor, command)) in commands.into_iter().enumerate() {
        let tx = tx.clone();
        engine.submit_with(actor, command, move |r| drop(tx.send((i, r)))).unwrap();
    }
    let mut out: Vec<_> = rx.iter().take(n).collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn create_trips(f: &Fleet) -> Vec<std::sync::Arc<Trip>> {
    let commands =
        f.drivers.iter().zip(&f.riders).map(|((_, at), r)| (Actor::User(*r), Command::CreateTrip(trip_at(*at))));
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

fn accept(c: &mut Criterion) {
    let f = fleet();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(DRIVERS as u64));
    group.sample_size(20);
    group.bench_function("accept_pipelined", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let trips = create_trips(&f);
                let accepts = f
                    .drivers
                    .iter()
                    .zip(&trips)
                    .map(|((d, _), t)| (Actor::User(*d), Command::AcceptTrip { trip_id: t.id }))
                    .collect();
                let start = Instant::now();
                let results = pipeline(&f.engine, accepts);
                total += start.elapsed();
                assert!(results.iter().all(|r| r.is_ok()));
                finish_trips(&f, &trips);
            }
            total
        })
    });
    group.finish();

    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("accept_round_trip", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let trips = create_trips(&f);
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
                finish_trips(&f, &trips);
                left -= n as u64;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, accept);
criterion_main!(benches);
