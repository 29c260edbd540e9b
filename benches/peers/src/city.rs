//! The workload every side runs: one seeded city of drivers, the query points, the moves.
//!
//! Everything is drawn from [`SEED`] once, before any side runs, and handed to each side as
//! plain data, so dispatch, Redis and PostgreSQL see the same drivers at the same places and
//! answer the same questions in the same order.

use dispatch_core::LatLng;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed of the whole run.
pub const SEED: u64 = 8;
/// Cairo's Tahrir Square, the city's centre (as in `benches/geo.rs`).
pub const CENTER: (f64, f64) = (30.0444, 31.2357);
/// The city is this many degrees of latitude and longitude across (~40 × 35 km).
pub const SPAN_DEG: f64 = 0.36;

/// One driver of the city: `id` is 1-based (Redis members and SQL keys are these numbers).
#[derive(Debug, Clone, Copy)]
pub struct Driver {
    /// 1..=n.
    pub id: u64,
    /// Where the driver is.
    pub at: LatLng,
}

/// The drivers, the query points and the position reports of a run.
pub struct City {
    /// Drivers spread uniformly over the city.
    pub drivers: Vec<Driver>,
    /// Pickups to search around, in the middle two thirds of the city (as `benches/geo.rs`).
    pub queries: Vec<LatLng>,
    /// Position reports `(driver index, new position)`: every driver once per pass, each a
    /// move of about a metre (well under the engine's 100 m spoofing tolerance, so none is
    /// refused for an implied speed), in a shuffled order that is the same for every side.
    pub moves: Vec<(usize, LatLng)>,
}

fn point(lat: f64, lng: f64) -> LatLng {
    // The city lies far from the poles and the antimeridian: every point is valid.
    LatLng::new(lat, lng).expect("a point inside the city")
}

impl City {
    /// `drivers` drivers, `queries` query points and `passes` passes of position reports.
    pub fn new(drivers: u64, queries: usize, passes: usize) -> City {
        let mut rng = StdRng::seed_from_u64(SEED);
        let half = SPAN_DEG / 2.0;
        let drivers: Vec<Driver> = (1..=drivers)
            .map(|id| Driver {
                id,
                at: point(CENTER.0 + rng.random_range(-half..half), CENTER.1 + rng.random_range(-half..half)),
            })
            .collect();
        let third = SPAN_DEG / 3.0;
        let queries = (0..queries)
            .map(|_| point(CENTER.0 + rng.random_range(-third..third), CENTER.1 + rng.random_range(-third..third)))
            .collect();
        let mut moves = Vec::with_capacity(drivers.len() * passes);
        let mut order: Vec<usize> = (0..drivers.len()).collect();
        for pass in 0..passes {
            // Fisher-Yates with the run's generator: the same order on every side.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            // Alternate north and back, ~1.1 m each pass.
            let dlat = if pass % 2 == 0 { 1e-5 } else { 0.0 };
            moves.extend(order.iter().map(|&i| (i, point(drivers[i].at.lat() + dlat, drivers[i].at.lng()))));
        }
        City { drivers, queries, moves }
    }
}
