//! The location-ingest path's cost in instructions, for callgrind (issue 26: "a batch of
//! positions as one command and one log record; position-only changes published to the view
//! in place"). Instruction counts do not depend on what else the machine runs, so builds
//! can be compared where wall time (`benches/location.rs`, the peers run) cannot.
//!
//! 10,000 drivers online (an engine in memory, or on a WAL in a temporary directory with
//! `WAL=1`); with `report`, each reports 10 positions, 10 m apart, sent as the peers run
//! sends them (1,000 reports a message, `Engine::submit_many_with`); with `skip`, nothing
//! more happens. A report's cost is the difference of the two runs' totals over 100,000:
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

use dispatch::scenario::{grid_fleet, grid_rules};
use dispatch_core::{Actor, Command, DispatchRules, Engine, EngineConfig, LatLng, LocationReport};

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
    let cells = grid_fleet(&engine, DRIVERS)?;
    let mut refused = 0;
    if report {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut messages = 0;
        for round in 1..=ROUNDS {
            let reports: Vec<(Actor, Command)> = cells
                .iter()
                .map(|(driver, _, at)| {
                    let point = LatLng::new(at.lat() + f64::from(round) * 10.0 / 111_195.0, at.lng())?;
                    let report = LocationReport { point, heading_deg: Some(0.0), speed_mps: Some(10.0) };
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
