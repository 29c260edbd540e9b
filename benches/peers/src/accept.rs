//! Figure 2: race-safe accepts, durably, with several drivers racing for every trip.
//!
//! The workload, the same on both sides: `cells` trips per round, each raced for by its
//! `racers` drivers; the accepts are issued trip by trip (a trip's racers back to back) by
//! `clients` concurrent clients, so a trip's racers are in flight together. After each round
//! every trip must have exactly one driver and no driver two trips; winners then finish
//! their trips (untimed) so every driver is free for the next round.
//!
//! - dispatch: the durable engine (WAL, one `fdatasync` per batch before any answer), the
//!   accepts submitted with `Engine::submit_with`, `clients` of them unanswered at a time;
//! - PostgreSQL: `clients` connections, each running the usual fix in one transaction
//!   (`BEGIN; UPDATE trips ... WHERE id=$2 AND driver_id IS NULL; UPDATE drivers ... WHERE
//!   id=$1 AND status='available'; COMMIT`, rolled back when either update finds no row),
//!   with `fsync=on` and `synchronous_commit=on`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dispatch::scenario::{pipeline, ride_from};
use dispatch_core::{
    Actor, Command, DispatchRules, DomainError, Engine, EngineConfig, Error, LatLng, Outcome, Role, Trip, TripId,
    UserId,
};

use crate::fleet;
use crate::report::Latencies;
use crate::window::windowed;

/// The shape of the race, shared by both sides.
#[derive(Debug, Clone, Copy)]
pub struct Race {
    /// Trips per round.
    pub cells: usize,
    /// Drivers racing for each trip.
    pub racers: usize,
    /// Rounds.
    pub rounds: usize,
    /// Concurrent clients (accepts in flight).
    pub clients: usize,
}

impl Race {
    /// Accept attempts in a whole run.
    pub fn attempts(&self) -> usize {
        self.cells * self.racers * self.rounds
    }
}

/// What one side's run gave.
pub struct Accepts {
    /// Accept attempts (winners and losers), all timed.
    pub attempts: usize,
    /// Attempts that won their trip.
    pub wins: usize,
    /// Attempts told the trip was taken.
    pub conflicts: usize,
    /// Any other answer (each one is a bug in the bench or the system).
    pub unexpected: usize,
    /// Trips with more than one winner, trips whose stored driver is not the one told it
    /// won, and drivers on two trips at once. Must be 0.
    pub double_assignments: usize,
    /// Per attempt, start → answer.
    pub latencies: Latencies,
    /// Timed wall time (the accepts only, summed over rounds).
    pub elapsed: Duration,
}

/// Cell `i` of the race grid: cells 2 km apart, so a trip is offered only to its own
/// cell's drivers (with a 500 m search radius).
fn cell(i: usize) -> LatLng {
    LatLng::new(29.0 + (i / 50) as f64 * 0.02, 31.0 + (i % 50) as f64 * 0.02).expect("a point in Egypt")
}

/// The engine side: a durable engine in `dir` with `race.racers` drivers at each cell.
pub struct DispatchRace {
    engine: Engine,
    drivers: Vec<UserId>,
    riders: Vec<UserId>,
}

impl DispatchRace {
    /// Opens the engine in `dir` and creates the drivers (online) and one rider per cell.
    pub fn open(dir: &Path, race: Race) -> Result<DispatchRace, Error> {
        let rules = DispatchRules {
            offers_per_round: u16::try_from(race.racers).expect("racers fit a round"),
            search_radius_m: 500,
            stale_location_s: 86_400,
            offer_ttl_s: 86_400,
            timeout_s: 86_400,
            open_trips_per_rider: 1,
            ..DispatchRules::default()
        };
        let engine = Engine::open(EngineConfig::default().with_rules(rules).with_data_dir(dir))?;
        let points: Vec<LatLng> = (0..race.cells).flat_map(|c| std::iter::repeat_n(cell(c), race.racers)).collect();
        let drivers = fleet::drivers_at(&engine, 1, &points)?;
        let riders = fleet::users(&engine, Role::Rider, 1 + points.len() as u64, race.cells)?;
        Ok(DispatchRace { engine, drivers, riders })
    }

    /// Runs `race.rounds` rounds with `race.clients` accepts in flight.
    pub fn run(&self, race: Race) -> Result<Accepts, Error> {
        let mut latencies = Vec::with_capacity(race.attempts());
        let (mut wins, mut conflicts, mut unexpected, mut doubles) = (0, 0, 0, 0);
        let mut elapsed = Duration::ZERO;
        for _ in 0..race.rounds {
            let creates = self
                .riders
                .iter()
                .enumerate()
                .map(|(c, r)| Ok((Actor::User(*r), Command::CreateTrip(ride_from(cell(c))?))))
                .collect::<Result<Vec<_>, Error>>()?;
            let trips: Vec<std::sync::Arc<Trip>> = pipeline(&self.engine, creates)
                .into_iter()
                .map(|r| match r? {
                    Outcome::Trip(t) => Ok(t),
                    other => Err(Error::internal(format!("create_trip answered {other:?}"))),
                })
                .collect::<Result<_, Error>>()?;
            let accepts = trips
                .iter()
                .enumerate()
                .flat_map(|(c, t)| {
                    self.drivers[c * race.racers..(c + 1) * race.racers]
                        .iter()
                        .map(|d| (Actor::User(*d), Command::AcceptTrip { trip_id: t.id }))
                })
                .collect();
            let run = windowed(&self.engine, accepts, race.clients);
            elapsed += run.elapsed;
            latencies.extend(run.latencies);
            let mut winners: HashMap<TripId, Vec<UserId>> = HashMap::new();
            for (k, result) in run.results.into_iter().enumerate() {
                let (c, driver) = (k / race.racers, self.drivers[k]);
                match result {
                    Ok(_) => winners.entry(trips[c].id).or_default().push(driver),
                    Err(Error::Domain(DomainError::TripAlreadyAssigned(_))) => conflicts += 1,
                    Err(_) => unexpected += 1,
                }
            }
            // The engine's own word on each trip must be the one winner it told.
            for t in &trips {
                let won = winners.get(&t.id).map_or(&[][..], Vec::as_slice);
                let stored = self.engine.trip(t.id).and_then(|t| t.driver_id);
                if won.len() > 1 || (won.len() == 1 && stored != Some(won[0])) {
                    doubles += 1;
                }
            }
            wins += winners.values().map(Vec::len).sum::<usize>();
            self.finish(&trips, &winners)?;
        }
        Ok(Accepts {
            attempts: race.attempts(),
            wins,
            conflicts,
            unexpected,
            double_assignments: doubles,
            latencies: Latencies::new(latencies),
            elapsed,
        })
    }

    /// Takes every won trip through arrival, start and completion.
    fn finish(&self, trips: &[std::sync::Arc<Trip>], winners: &HashMap<TripId, Vec<UserId>>) -> Result<(), Error> {
        let won: Vec<(&Trip, UserId)> =
            trips.iter().filter_map(|t| winners.get(&t.id).and_then(|w| w.first()).map(|d| (&**t, *d))).collect();
        for step in 0..3 {
            let commands = won.iter().map(|(t, driver)| {
                let command = match step {
                    0 => Command::DriverArrived { trip_id: t.id },
                    1 => Command::StartTrip { trip_id: t.id, pickup_code: t.pickup_code.to_string() },
                    _ => Command::CompleteTrip { trip_id: t.id, distance_m: None, dropoff: None },
                };
                (Actor::User(*driver), command)
            });
            for r in pipeline(&self.engine, commands.collect()) {
                r?;
            }
        }
        Ok(())
    }

    /// Shuts the engine down (flushes the WAL).
    pub fn close(self) -> Result<(), Error> {
        self.engine.shutdown().map(drop)
    }
}

const ACCEPT_TRIP_SQL: &str =
    "UPDATE trips SET driver_id = $1, status = 'accepted' WHERE id = $2 AND driver_id IS NULL";
const TAKE_DRIVER_SQL: &str = "UPDATE drivers SET status = 'on_trip' WHERE id = $1 AND status = 'available'";

enum Attempt {
    Won,
    TripTaken,
    DriverBusy,
}

/// One accept as the usual stack runs it: 4 round trips for a winner (BEGIN, two UPDATEs,
/// COMMIT), 3 for a loser (its first UPDATE waits for the winner's commit, then finds no row).
fn pg_accept(
    client: &mut postgres::Client,
    statements: &(postgres::Statement, postgres::Statement),
    driver: i64,
    trip: i64,
) -> Result<Attempt, postgres::Error> {
    let mut tx = client.transaction()?;
    if tx.execute(&statements.0, &[&driver, &trip])? == 0 {
        tx.rollback()?;
        return Ok(Attempt::TripTaken);
    }
    if tx.execute(&statements.1, &[&driver])? == 0 {
        tx.rollback()?;
        return Ok(Attempt::DriverBusy);
    }
    tx.commit()?;
    Ok(Attempt::Won)
}

/// The PostgreSQL side: `trips` and `drivers` tables, `race.clients` connections to `url`.
pub fn postgres(url: &str, race: Race) -> Result<Accepts, postgres::Error> {
    let mut admin = postgres::Client::connect(url, postgres::NoTls)?;
    let drivers = (race.cells * race.racers) as i64;
    admin.batch_execute(&format!(
        "DROP TABLE IF EXISTS trips; DROP TABLE IF EXISTS drivers;
         CREATE TABLE drivers (id bigint PRIMARY KEY, status text NOT NULL);
         CREATE TABLE trips (id bigint PRIMARY KEY, driver_id bigint REFERENCES drivers (id), status text NOT NULL);
         INSERT INTO drivers SELECT g, 'available' FROM generate_series(1, {drivers}) g;"
    ))?;
    admin.batch_execute("VACUUM ANALYZE drivers")?;
    let mut clients = Vec::with_capacity(race.clients);
    for _ in 0..race.clients {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        let statements = (client.prepare(ACCEPT_TRIP_SQL)?, client.prepare(TAKE_DRIVER_SQL)?);
        clients.push((client, statements));
    }
    let mut latencies = Vec::with_capacity(race.attempts());
    let (mut wins, mut conflicts, mut unexpected, mut doubles) = (0, 0, 0, 0);
    let mut elapsed = Duration::ZERO;
    for round in 0..race.rounds {
        let first = (round * race.cells) as i64 + 1;
        let last = first + race.cells as i64 - 1;
        admin.batch_execute(&format!(
            "UPDATE drivers SET status = 'available' WHERE status <> 'available';
             INSERT INTO trips SELECT g, NULL, 'searching' FROM generate_series({first}, {last}) g;
             ANALYZE trips;"
        ))?;
        // Trip by trip, its racers back to back: the cell's drivers are numbered together.
        let tasks: Vec<(i64, i64)> = (0..race.cells)
            .flat_map(|c| (0..race.racers).map(move |r| ((c * race.racers + r) as i64 + 1, first + c as i64)))
            .collect();
        let next = AtomicUsize::new(0);
        let outcomes = Mutex::new(Vec::with_capacity(tasks.len()));
        let start = Instant::now();
        let failures: Vec<postgres::Error> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter_mut()
                .map(|(client, statements)| {
                    let (tasks, next, outcomes) = (&tasks, &next, &outcomes);
                    s.spawn(move || -> Result<(), postgres::Error> {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(driver, trip)) = tasks.get(k) else { break };
                            let t = Instant::now();
                            let attempt = pg_accept(client, statements, driver, trip)?;
                            mine.push((t.elapsed(), driver, trip, attempt));
                        }
                        outcomes.lock().expect("no client panicked").extend(mine);
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().expect("no client panicked").err()).collect()
        });
        elapsed += start.elapsed();
        if let Some(e) = failures.into_iter().next() {
            return Err(e);
        }
        let mut winners: HashMap<i64, Vec<i64>> = HashMap::new();
        for (latency, driver, trip, attempt) in outcomes.into_inner().expect("no client panicked") {
            latencies.push(latency);
            match attempt {
                Attempt::Won => winners.entry(trip).or_default().push(driver),
                Attempt::TripTaken => conflicts += 1,
                Attempt::DriverBusy => unexpected += 1,
            }
        }
        // The database's word: one stored driver per trip, the one told it won; no driver
        // on two of this round's trips; as many drivers on a trip as trips won.
        let stored: HashMap<i64, Option<i64>> = admin
            .query("SELECT id, driver_id FROM trips WHERE id BETWEEN $1 AND $2", &[&first, &last])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for trip in first..=last {
            let won = winners.get(&trip).map_or(&[][..], Vec::as_slice);
            let held = stored.get(&trip).copied().flatten();
            if won.len() > 1 || (won.len() == 1 && held != Some(won[0])) || (won.is_empty() && held.is_some()) {
                doubles += 1;
            }
        }
        let twice: i64 = admin
            .query_one(
                "SELECT count(*) FROM (SELECT driver_id FROM trips WHERE id BETWEEN $1 AND $2 AND driver_id IS NOT NULL
                 GROUP BY driver_id HAVING count(*) > 1) d",
                &[&first, &last],
            )?
            .get(0);
        doubles += twice as usize;
        let round_wins: usize = winners.values().map(Vec::len).sum();
        let on_trip: i64 = admin.query_one("SELECT count(*) FROM drivers WHERE status = 'on_trip'", &[])?.get(0);
        if on_trip as usize != round_wins {
            doubles += on_trip.abs_diff(round_wins as i64) as usize;
        }
        wins += round_wins;
    }
    Ok(Accepts {
        attempts: race.attempts(),
        wins,
        conflicts,
        unexpected,
        double_assignments: doubles,
        latencies: Latencies::new(latencies),
        elapsed,
    })
}
