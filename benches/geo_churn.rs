//! Nearest drivers under churn: the k-NN latency a dispatcher sees while the city's
//! location reports are applied to the same index, on one thread (the engine's writer).
//!
//! - 100,000 drivers over a 40 × 40 km city, each on a random walk: ~30 m per report
//!   (3 s at 10 m/s), heading drifting a little at each report, turning back at the edge.
//! - Aged first: every driver reports for `GEO_CHURN_AGE_S` seconds of city time (default
//!   3,600: 1,200 reports each, 120 million moves) without queries, so the index's shape is
//!   the one a city has after an hour of in-place moves, not a fresh bulk load. The mean
//!   move cost of that phase is printed.
//! - Then `GEO_CHURN_QUERIES` queries (default 100,000) at `GEO_CHURN_QPS` a second
//!   (default 5,000) while moves are applied at 30,000 a second, interleaved on one thread
//!   by a schedule kept on the wall clock (spinning between events). A query is the 10
//!   nearest within 5 km with a filter refusing ~30 % of drivers. Each query is timed on its
//!   own; moves are timed in the batch due before each query.
//!
//! - Then the same schedule again without its waits (`back_to_back`): each query right after
//!   the moves due before it. The difference between the two lines is what the idle time
//!   between queries costs (on a shared VM, the caches forget an index not touched for
//!   tens of microseconds: `cargo bench --bench cache_decay`), not what the moves cost;
//!   `GEO_CHURN_MOVES=0` (moves a second while measured, default 30,000) shows the same.
//!
//! Printed: query p50 / p99 / max of each phase, the mean move cost in each, and how far
//! behind the schedule ran (if the moves could not keep up, the figures are not the
//! target's).
//!
//! Run: `cargo bench --bench geo_churn` (shorter: `GEO_CHURN_AGE_S=600 cargo bench --bench geo_churn`)
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

/// The allocator of `dispatchd`, whose writer runs these searches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use dispatch_core::UserId;
use dispatch_core::clock::Timestamp;
use dispatch_core::geo::{CategoryCode, DriverIndex, IndexedDriver, LatLng};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DRIVERS: usize = 100_000;
const CITY: (f64, f64) = (30.0444, 31.2357);
/// ~40 km across.
const SPAN_DEG: f64 = 0.36;
/// Moves a second while ageing, and by default while measured (`GEO_CHURN_MOVES`).
const MOVES_PER_S: f64 = 30_000.0;
/// Metres per degree of latitude (and of longitude, times cos(lat)).
const M_PER_DEG: f64 = 111_195.0;
const STEP_M: f64 = 30.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One driver on its walk.
#[derive(Clone, Copy)]
struct Walker {
    id: UserId,
    lat: f64,
    lng: f64,
    heading: f64,
    category: CategoryCode,
}

impl Walker {
    /// The next report: ~30 m on, the heading drifting by up to ±0.4 rad, turning back
    /// when it would leave the city.
    fn step(&mut self, rng: &mut StdRng) -> LatLng {
        self.heading += rng.random_range(-0.4..0.4);
        let step = STEP_M * rng.random_range(0.5..1.5);
        let (s, c) = self.heading.sin_cos();
        let mut lat = self.lat + step * c / M_PER_DEG;
        let mut lng = self.lng + step * s / (M_PER_DEG * CITY.0.to_radians().cos());
        if (lat - CITY.0).abs() > SPAN_DEG / 2.0 || (lng - CITY.1).abs() > SPAN_DEG / 2.0 {
            self.heading += std::f64::consts::PI;
            lat = self.lat;
            lng = self.lng;
        }
        self.lat = lat;
        self.lng = lng;
        LatLng::new(lat, lng).unwrap()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter that is not ours skips the run.
    let skip = std::env::args().skip(1).any(|a| !a.starts_with('-') && !"geo_churn".contains(a.as_str()));
    if skip {
        return;
    }
    let age_s = env_or("GEO_CHURN_AGE_S", 3_600);
    let queries = env_or("GEO_CHURN_QUERIES", 100_000) as usize;
    let qps = env_or("GEO_CHURN_QPS", 5_000) as f64;

    let mut rng = StdRng::seed_from_u64(26);
    let mut walkers: Vec<Walker> = (1..=DRIVERS as u64)
        .map(|i| Walker {
            id: UserId::from_raw(i).unwrap(),
            lat: CITY.0 + rng.random_range(-SPAN_DEG / 2.0..SPAN_DEG / 2.0),
            lng: CITY.1 + rng.random_range(-SPAN_DEG / 2.0..SPAN_DEG / 2.0),
            heading: rng.random_range(0.0..std::f64::consts::TAU),
            category: CategoryCode((i % 3) as u16),
        })
        .collect();
    let mut index = DriverIndex::from_drivers(walkers.iter().map(|w| IndexedDriver {
        id: w.id,
        position: LatLng::new(w.lat, w.lng).unwrap(),
        category: w.category,
        recorded_at: Timestamp::from_millis(0),
    }));

    // Ageing: every driver reports in turn (a random order per round), `age_s` seconds of
    // reports at 30,000 a second.
    let age_moves = (age_s as f64 * MOVES_PER_S) as u64;
    let mut order: Vec<usize> = (0..DRIVERS).collect();
    let mut moved = 0u64;
    let mut clock_ms = 0i64;
    let mut age_elapsed = Duration::ZERO;
    let mut batch: Vec<(UserId, LatLng, CategoryCode)> = Vec::with_capacity(DRIVERS);
    while moved < age_moves {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        batch.clear();
        for &i in order.iter().take((age_moves - moved).min(DRIVERS as u64) as usize) {
            let w = &mut walkers[i];
            batch.push((w.id, w.step(&mut rng), w.category));
        }
        let t = Instant::now();
        for &(id, p, category) in &batch {
            clock_ms += 1;
            black_box(index.upsert(id, p, category, Timestamp::from_millis(clock_ms)));
        }
        age_elapsed += t.elapsed();
        moved += batch.len() as u64;
    }
    println!(
        "geo_churn: aged with {moved} moves ({age_s} s of reports at 30,000/s): {:.0} ns per move",
        age_elapsed.as_nanos() as f64 / moved.max(1) as f64
    );

    let centers: Vec<LatLng> = (0..4096)
        .map(|_| {
            LatLng::new(
                CITY.0 + rng.random_range(-SPAN_DEG / 3.0..SPAN_DEG / 3.0),
                CITY.1 + rng.random_range(-SPAN_DEG / 3.0..SPAN_DEG / 3.0),
            )
            .unwrap()
        })
        .collect();

    let moves_per_s = env_or("GEO_CHURN_MOVES", 30_000) as f64;
    let mut city = City { index, walkers, rng, clock_ms };
    // The figure: on the wall clock, each query alone in its 1/qps of a second.
    let paced = city.run(&centers, queries, qps, moves_per_s, true);
    common::summary("geo_churn/nearest10_of_100k_under_30k_moves_s", paced, None);
    // The same schedule without the waits: the same moves before each query, the query
    // right after the last one. What the line above takes beyond this one is what the idle
    // time between queries costs (the machine's caches forget the index meanwhile), not
    // what the moves cost.
    let back_to_back = city.run(&centers, queries, qps, moves_per_s, false);
    common::summary("geo_churn/nearest10_of_100k_back_to_back", back_to_back, None);
}

/// The index and the drivers' walks, through the measured phases.
struct City {
    index: DriverIndex,
    walkers: Vec<Walker>,
    rng: StdRng,
    clock_ms: i64,
}

impl City {
    /// `queries` queries at `qps` a second of schedule with moves at `moves_per_s`: the moves
    /// due by each query's time applied just before it. `paced` keeps the schedule on the wall
    /// clock (spinning until each query is due); otherwise each query follows its moves at
    /// once. Returns each query's time, and prints the moves' mean cost.
    fn run(&mut self, centers: &[LatLng], queries: usize, qps: f64, moves_per_s: f64, paced: bool) -> Vec<Duration> {
        let mut samples: Vec<Duration> = Vec::with_capacity(queries);
        let mut batch: Vec<(UserId, LatLng, CategoryCode)> = Vec::new();
        let mut move_time = Duration::ZERO;
        let mut moves = 0u64;
        let mut found = 0usize;
        let mut late = Duration::ZERO;
        let start = Instant::now();
        for q in 0..queries {
            let due = Duration::from_secs_f64(q as f64 / qps);
            // The moves due by the time of this query.
            let moves_due = (due.as_secs_f64() * moves_per_s) as u64;
            batch.clear();
            while moves + (batch.len() as u64) < moves_due {
                let w = &mut self.walkers[self.rng.random_range(0..DRIVERS)];
                batch.push((w.id, w.step(&mut self.rng), w.category));
            }
            let t = Instant::now();
            for &(id, p, category) in &batch {
                self.clock_ms += 1;
                black_box(self.index.upsert(id, p, category, Timestamp::from_millis(self.clock_ms)));
            }
            move_time += t.elapsed();
            moves += batch.len() as u64;
            if paced {
                loop {
                    let now = start.elapsed();
                    if now >= due {
                        late = late.max(now - due);
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            let center = centers[q % centers.len()];
            let t = Instant::now();
            // Refuses ~30 %: one id in three and a bit.
            let near = self.index.nearest(center, 5_000.0, 10, |d| d.id.raw() % 10 >= 3);
            samples.push(t.elapsed());
            found += near.len();
            black_box(near);
        }
        let elapsed = start.elapsed();
        let how = if paced { format!("at {qps:.0}/s") } else { "back to back".to_owned() };
        println!(
            "geo_churn: {queries} queries {how} with {moves} moves in {elapsed:.1?} ({:.0} moves/s applied); \
             mean move {:.0} ns; {:.2} found per query; schedule at worst {late:.1?} behind",
            moves as f64 / elapsed.as_secs_f64(),
            move_time.as_nanos() as f64 / moves.max(1) as f64,
            found as f64 / queries.max(1) as f64
        );
        samples
    }
}
