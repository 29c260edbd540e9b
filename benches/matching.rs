#![allow(clippy::unwrap_used, missing_docs)]
//! Batched matching (issue 22): what the window's solve costs, and what it does to the
//! writer's accept latency while windows fire.
//!
//! `solve 300 trips x 1000 drivers`: [`dispatch_core::matching::solve`] alone on the edges
//! the engine would give it — each of 300 pickups' 12 nearest of 1,000 drivers spread
//! over 4 × 4 km (within 1.5 km), costs the pickup ETA — over 40 random cities.
//!
//! `window close (tick)`: the round trip of the `Tick` that closes a window of 300 trips
//! with 1,000 drivers around them, through the writer (in memory): the candidates from the
//! R-tree, the solve, the 300 offers — the writer's stall.
//!
//! `accept round trip`: one caller accepting, one at a time, offers held by 2,000 other
//! drivers (a grid far from the window's city), while the main thread runs window rounds
//! (300 trips booked pipelined, the clock moved 2 s, the closing `Tick`, the 300 trips
//! cancelled); then the same load with `matching = greedy` (the trips offered as they are
//! booked, no window) for comparison.
//!
//! Run: `cargo bench --bench matching` (prints its figures; no criterion statistics:
//! the tails are the point).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::summary;
use dispatch::scenario::{
    finish_grid_trips, grid_fleet, grid_rules, grid_trips, near_center, pipeline, ride_from, user,
};
use dispatch_core::clock::{ManualClock, Timestamp};
use dispatch_core::matching::{BATCH_CANDIDATES, Edge, pickup_eta_ds, solve};
use dispatch_core::rules::{LearningWeights, MatchingMode};
use dispatch_core::{Actor, Command, DispatchRules, Engine, EngineConfig, LatLng, Outcome, Role, TripId, UserId};

const TRIPS: usize = 300;
const DRIVERS: usize = 1_000;
const SIDE_M: f64 = 4_000.0;
const RADIUS_M: u32 = 1_500;

/// A small deterministic generator (xorshift64*), so every run measures the same cities.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn point(&mut self) -> LatLng {
        near_center(self.unit() * SIDE_M - SIDE_M / 2.0, self.unit() * SIDE_M - SIDE_M / 2.0).unwrap()
    }
}

/// The edges the engine builds for a window: each trip's nearest drivers within the radius.
fn edges(rng: &mut Rng) -> Vec<Edge> {
    let drivers: Vec<LatLng> = (0..DRIVERS).map(|_| rng.point()).collect();
    let mut out = Vec::with_capacity(TRIPS * BATCH_CANDIDATES);
    for t in 0..TRIPS {
        let pickup = rng.point();
        let mut near: Vec<(u32, u32)> = drivers
            .iter()
            .enumerate()
            .map(|(i, d)| (pickup.distance_m(d).round() as u32, i as u32))
            .filter(|(m, _)| *m <= RADIUS_M)
            .collect();
        near.sort_unstable();
        for (m, d) in near.into_iter().take(BATCH_CANDIDATES) {
            out.push(Edge { trip: t as u32, driver: d, cost: pickup_eta_ds(m) });
        }
    }
    out
}

fn bench_solve() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut samples = Vec::new();
    let mut matched = 0;
    for _ in 0..40 {
        let e = edges(&mut rng);
        let start = Instant::now();
        let m = solve(TRIPS, DRIVERS, &e);
        samples.push(start.elapsed());
        matched += m.len();
    }
    summary("solve 300 trips x 1000 drivers (12 edges/trip)", samples, None);
    println!("    matched {:.1} trips of 300 on average", matched as f64 / 40.0);
}

fn rules(mode: MatchingMode) -> DispatchRules {
    DispatchRules {
        matching: mode,
        batch_window_ms: 2_000,
        learning: LearningWeights::OFF,
        search_radius_m: RADIUS_M,
        open_trips_per_rider: 1,
        ..grid_rules()
    }
}

struct City {
    engine: Engine,
    clock: ManualClock,
    riders: Vec<UserId>,
}

fn city(mode: MatchingMode) -> City {
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let config = EngineConfig { idle_wakeup: Duration::from_secs(86_400), ..EngineConfig::default() }
        .with_clock(clock.clone())
        .with_rules(rules(mode));
    let engine = Engine::open(config).unwrap();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for i in 0..DRIVERS as u64 {
        let d = user(&engine, Role::Driver, 1_000_000 + i).unwrap();
        engine.set_driver_status(d, true, Some(rng.point())).unwrap();
    }
    let riders = (0..TRIPS as u64).map(|i| user(&engine, Role::Rider, 2_000_000 + i).unwrap()).collect();
    City { engine, clock, riders }
}

/// One window: `TRIPS` trips booked at random pickups (pipelined), the clock moved past
/// the window, the closing tick (timed), every trip cancelled.
fn window_round(c: &City, rng: &mut Rng) -> Duration {
    let creates =
        c.riders.iter().map(|r| (Actor::User(*r), Command::CreateTrip(ride_from(rng.point()).unwrap()))).collect();
    let trips: Vec<TripId> = pipeline(&c.engine, creates)
        .into_iter()
        .map(|r| match r.unwrap() {
            Outcome::Trip(t) => t.id,
            other => panic!("{other:?}"),
        })
        .collect();
    c.clock.advance_millis(2_000);
    let start = Instant::now();
    c.engine.tick().unwrap();
    let took = start.elapsed();
    let cancels = c
        .riders
        .iter()
        .zip(&trips)
        .map(|(r, t)| {
            let cancel = Command::CancelTrip {
                trip_id: *t,
                code: dispatch_core::trip::CancelReason::Other,
                reason: String::new(),
            };
            (Actor::User(*r), cancel)
        })
        .collect();
    for r in pipeline(&c.engine, cancels) {
        r.unwrap();
    }
    took
}

fn bench_window_close() {
    let c = city(MatchingMode::Batched);
    let mut rng = Rng(42);
    window_round(&c, &mut rng); // warm up
    let samples: Vec<Duration> = (0..30).map(|_| window_round(&c, &mut rng)).collect();
    summary("window close: tick of 300 trips x 1000 drivers", samples, None);
    c.engine.shutdown().unwrap();
}

/// Accept round trips on a grid of 2,000 drivers holding offers, while window rounds run.
fn accepts_under_windows(mode: MatchingMode) -> (Vec<Duration>, usize) {
    let c = city(mode);
    let cells = grid_fleet(&c.engine, 2_000).unwrap();
    let trips = grid_trips(&c.engine, &cells).unwrap();
    // In batched mode the grid's trips wait for a window too: close it.
    c.clock.advance_millis(2_000);
    c.engine.tick().unwrap();
    let engine = Arc::new(c);
    let done = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
        let work: Vec<(UserId, TripId)> = cells.iter().zip(&trips).map(|((d, _, _), t)| (*d, t.id)).collect();
        std::thread::spawn(move || {
            let mut samples = Vec::with_capacity(work.len());
            // Let the first window round start.
            std::thread::sleep(Duration::from_millis(20));
            for (d, t) in work {
                let start = Instant::now();
                engine.engine.accept(d, t).unwrap();
                samples.push(start.elapsed());
                std::thread::sleep(Duration::from_micros(500));
            }
            done.store(true, Ordering::Relaxed);
            samples
        })
    };
    let mut rng = Rng(7);
    let mut rounds = 0;
    while !done.load(Ordering::Relaxed) {
        window_round(&engine, &mut rng);
        rounds += 1;
    }
    let samples = acceptor.join().unwrap();
    let c = Arc::try_unwrap(engine).ok().unwrap();
    finish_grid_trips(&c.engine, &cells, &trips).unwrap();
    c.engine.shutdown().unwrap();
    (samples, rounds)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored (three figures only).
    bench_solve();
    bench_window_close();
    for mode in [MatchingMode::Batched, MatchingMode::Greedy] {
        let (samples, rounds) = accepts_under_windows(mode);
        let name = format!("accept round trip, {mode:?} rounds of 300 trips");
        summary(&name, samples, None);
        println!("    during {rounds} rounds of 300 bookings, a tick (the close, when batched), 300 cancels");
    }
}
