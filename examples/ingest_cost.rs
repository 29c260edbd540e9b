//! The location-ingest path's cost in instructions, for callgrind (issue 26: "a batch of
//! positions as one command and one log record; position-only changes published to the view
//! in place"). Instruction counts do not depend on what else the machine runs, so builds
//! can be compared where wall time (`benches/location.rs`, the peers run) cannot.
//!
//! 10,000 drivers online at seeded random points of a 40 × 40 km city around the demo
//! zone's centre (an engine in memory, or on a WAL in a temporary directory with `WAL=1`);
//! with `report`, each reports 10 positions, each ~30 m from the last in a random
//! direction, sent as the peers run sends them (1,000 reports a message,
//! `Engine::submit_many_with`); with `skip`, nothing more happens. A report's cost is the
//! difference of the two runs' totals over 100,000:
//!
//! ```text
//! cargo build --profile profiling --example ingest_cost
//! for m in skip report; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$m target/profiling/examples/ingest_cost $m
//! done
//! callgrind_annotate cg.report | head -40   # where it goes
//! ```
#![forbid(unsafe_code)]

use std::time::Duration;

use dispatch::scenario::{grid_rules, online_driver};
use dispatch_core::{Actor, Command, DispatchRules, Engine, EngineConfig, LatLng, LocationReport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DRIVERS: u64 = 10_000;
const ROUNDS: u32 = 10;
const PER_MESSAGE: usize = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = match std::env::args().nth(1).as_deref() {
        Some("report") => true,
        Some("skip") => false,
        _ => return Err("usage: ingest_cost report|skip (WAL=1: on a write-ahead log)".into()),
    };
    let rules = DispatchRules { location_min_interval_ms: 0, ..grid_rules() };
    let mut config = EngineConfig::default().with_rules(rules);
    let dir = tempfile::tempdir()?;
    if std::env::var("WAL").as_deref() == Ok("1") {
        config = config.with_data_dir(dir.path());
        // No checkpoint during the run: it is the checkpoint thread's work, not a report's.
        config.checkpoint_every_records = u64::MAX;
    }
    let engine = Engine::open(config)?;
    let mut rng = StdRng::seed_from_u64(26);
    // The demo zone's centre, ± 20 km (0.18° of latitude, 0.21° of longitude at 30° N).
    let mut drivers = Vec::new();
    for n in 0..DRIVERS {
        let at = LatLng::new(30.0444 + rng.random_range(-0.18..0.18), 31.2357 + rng.random_range(-0.21..0.21))?;
        drivers.push((online_driver(&engine, n + 1, at)?, at));
    }
    let mut refused = 0;
    if report {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut messages = 0;
        for _ in 1..=ROUNDS {
            let reports: Vec<(Actor, Command)> = drivers
                .iter_mut()
                .map(|(driver, at)| {
                    let angle: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                    // ~30 m: 0.00027° of latitude.
                    *at = LatLng::new(at.lat() + 0.00027 * angle.sin(), at.lng() + 0.00031 * angle.cos())?;
                    let report = LocationReport { point: *at, heading_deg: Some(0.0), speed_mps: Some(10.0) };
                    Ok((Actor::User(*driver), Command::UpdateLocation(report)))
                })
                .collect::<Result<_, dispatch_core::Error>>()?;
            for chunk in reports.chunks(PER_MESSAGE) {
                let tx = tx.clone();
                engine.submit_many_with(chunk.to_vec(), move |answers| drop(tx.send(answers)))?;
                messages += 1;
            }
        }
        for _ in 0..messages {
            let answers = rx.recv_timeout(Duration::from_secs(600))?;
            refused += answers.iter().filter(|a| a.is_err()).count();
        }
    }
    println!("drivers {DRIVERS}, reports {}, refused {refused}", if report { DRIVERS * u64::from(ROUNDS) } else { 0 });
    engine.shutdown()?;
    if refused > 0 {
        return Err(format!("{refused} reports refused").into());
    }
    Ok(())
}
