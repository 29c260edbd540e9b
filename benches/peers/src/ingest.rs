//! Figure 3: location update ingest, the same position reports on every side.
//!
//! - dispatch, index alone: [`DriverIndex::upsert`] in this process (validation, logging and
//!   the writer thread excluded: the floor of the engine's cost);
//! - dispatch, engine: `Command::UpdateLocation` through the engine (validated, the index
//!   moved, a `DriverMoved` event, journalled), pipelined in batches of [`PIPELINE`] (a Redis
//!   pipeline's shape: each batch one message to the writer, `Engine::submit_many_with`),
//!   and one caller waiting for each answer. Twice: in memory (no data dir), the counterpart of Redis
//!   as it ships; and durable (WAL + one fsync per batch: a location update is answered
//!   before the fsync, but the writer thread still performs it before taking the next
//!   batch), the counterpart of Redis with `appendfsync always`;
//! - Redis: `GEOADD drivers lng lat id`, pipelined in batches of [`PIPELINE`] over one
//!   connection, and one command per round trip.

use std::path::Path;
use std::time::{Duration, Instant};

use dispatch_core::clock::Timestamp;
use dispatch_core::geo::{CategoryCode, DriverIndex};
use dispatch_core::{Actor, Command, DispatchRules, Engine, EngineConfig, Error, LocationReport, UserId};

use crate::city::City;
use crate::report::Figure;
use crate::window::batched;

/// Reports per pipelined batch, on every side.
pub const PIPELINE: usize = 1_000;
/// Reports sent one round trip at a time (fewer: a Redis with `appendfsync always` pays an
/// fsync for each).
pub const UNPIPELINED: usize = 10_000;

fn report(at: dispatch_core::LatLng) -> LocationReport {
    LocationReport { point: at, heading_deg: Some(90.0), speed_mps: Some(8.0) }
}

/// Every move of `city` applied to `index` (built from the city's starting positions).
pub fn dispatch_index(city: &City, index: &mut DriverIndex) -> Figure {
    let ids: Vec<UserId> = city.drivers.iter().map(|d| UserId::from_raw(d.id).expect("ids start at 1")).collect();
    let start = Instant::now();
    for (k, (i, at)) in city.moves.iter().enumerate() {
        std::hint::black_box(index.upsert(ids[*i], *at, CategoryCode(0), Timestamp::from_millis(k as i64)));
    }
    Figure::rate(city.moves.len(), start.elapsed())
}

/// The engine side: an engine (durable in `dir`, or in memory) with every driver of the city
/// online.
pub struct DispatchIngest {
    engine: Engine,
    drivers: Vec<UserId>,
}

/// What the engine runs gave.
pub struct EngineIngest {
    /// Pipelined, in batches of [`PIPELINE`].
    pub pipelined: Figure,
    /// One caller, each report waiting for its answer.
    pub one_caller: Figure,
    /// Reports refused (must be 0: every move is a metre).
    pub refused: usize,
}

impl DispatchIngest {
    /// Opens the engine and brings every driver online at its starting position (untimed).
    /// Updates never coalesce (`location_min_interval_ms = 0`), so each is the full path:
    /// the costlier case, and the one of drivers reporting every few seconds.
    pub fn open(dir: Option<&Path>, city: &City) -> Result<DispatchIngest, Error> {
        let rules = DispatchRules { location_min_interval_ms: 0, stale_location_s: 86_400, ..DispatchRules::default() };
        let mut config = EngineConfig::default().with_rules(rules);
        if let Some(dir) = dir {
            config = config.with_data_dir(dir);
        }
        let engine = Engine::open(config)?;
        let points: Vec<_> = city.drivers.iter().map(|d| d.at).collect();
        let drivers = crate::fleet::drivers_at(&engine, 1, &points)?;
        Ok(DispatchIngest { engine, drivers })
    }

    /// Every move pipelined, then the first [`UNPIPELINED`] again one at a time.
    pub fn run(&self, city: &City) -> EngineIngest {
        let commands =
            city.moves.iter().map(|(i, at)| (Actor::User(self.drivers[*i]), Command::UpdateLocation(report(*at))));
        let (mut refused, elapsed) = batched(&self.engine, commands.collect(), PIPELINE);
        let pipelined = Figure::rate(city.moves.len(), elapsed);
        let start = Instant::now();
        for (i, at) in city.moves.iter().take(UNPIPELINED) {
            if self.engine.update_location(self.drivers[*i], report(*at)).is_err() {
                refused += 1;
            }
        }
        let one_caller = Figure::rate(UNPIPELINED.min(city.moves.len()), start.elapsed());
        EngineIngest { pipelined, one_caller, refused }
    }

    /// Shuts the engine down (flushes the WAL).
    pub fn close(self) -> Result<(), Error> {
        self.engine.shutdown().map(drop)
    }
}

/// Redis's figures: `(pipelined, one command per round trip)`.
pub fn redis(con: &mut redis::Connection, key: &str, city: &City) -> redis::RedisResult<(Figure, Figure)> {
    let id = |i: usize| city.drivers[i].id;
    let start = Instant::now();
    for chunk in city.moves.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for (i, at) in chunk {
            pipe.cmd("GEOADD").arg(key).arg(at.lng()).arg(at.lat()).arg(id(*i)).ignore();
        }
        pipe.query::<()>(con)?;
    }
    let pipelined = Figure::rate(city.moves.len(), start.elapsed());
    let start = Instant::now();
    let mut sent = 0usize;
    for (i, at) in city.moves.iter().take(UNPIPELINED) {
        redis::cmd("GEOADD").arg(key).arg(at.lng()).arg(at.lat()).arg(id(*i)).query::<i64>(con)?;
        sent += 1;
    }
    let elapsed: Duration = start.elapsed();
    Ok((pipelined, Figure::rate(sent, elapsed)))
}
