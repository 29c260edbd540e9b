//! A process for crash tests: opens an engine on `--data-dir`, then has `--threads`
//! callers stream commands at it concurrently (so the writer commits them in groups),
//! and prints one line per *acknowledged* command, flushed, right after its answer:
//!
//! ```text
//! ready replayed=<records replayed at open> base=<LSN of the checkpoint it started from>
//! user <usr_…> rider|driver          a user was created
//! online <usr_…>                     a driver went online at its cell
//! trip <trp_…> <rider usr_…>         a trip was created (searching)
//! accepted <trp_…> <driver usr_…>    the driver accepted it
//! arrived|started|completed|cancelled <trp_…>
//! rated <trp_…> rider|driver <stars> a finished trip was rated (it may have been archived)
//! credit <txf_…> <rider usr_…> <minor units>   a rider's wallet was credited (EGP)
//! checkpoint written=<n> lsn=<lsn>   a checkpoint was written and collected (the WAL below
//!                                    it released, its finished trips about to be archived)
//! ```
//!
//! Each caller owns a cell of a grid ~2 km apart (`--run` moves the cells, so the
//! drivers of an earlier run never get this run's offers) with one driver and its
//! riders, and loops: maybe a new rider, a trip, maybe the rating of its last finished
//! trip, then the trip cancelled at once, or accepted and cancelled, or driven to the
//! end; now and then a wallet credit. With `--checkpoint-every` and `--segment-bytes`
//! small, checkpoints, WAL release and the archiving of finished trips go on all
//! through the run.
//!
//! The kill -9 test (`tests/crash_process.rs`) kills it mid-stream, at random moments
//! and right after a `checkpoint` line, and checks that every acknowledged effect is
//! there after a restart. It stops by itself after `--seconds` seconds or `--max`
//! trips per caller, whichever comes first.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dispatch::scenario::{self, ride_from};
use dispatch_core::{Actor, Command, Engine, EngineConfig, Error, LatLng, Outcome, Role, TripId, UserId};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: crash-writer --data-dir DIR [--threads N] [--run R] [--seed S] [--seconds S] \
                     [--max TRIPS] [--checkpoint-every RECORDS] [--segment-bytes BYTES]";

struct Args {
    dir: String,
    threads: u64,
    run: u64,
    seed: u64,
    seconds: u64,
    max: u64,
    checkpoint_every: Option<u64>,
    segment_bytes: Option<u64>,
}

fn args() -> Result<Args, Error> {
    let mut dir = None;
    let mut a = Args {
        dir: String::new(),
        threads: 1,
        run: 0,
        seed: 1,
        seconds: 60,
        max: 100_000,
        checkpoint_every: None,
        segment_bytes: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| Error::invalid(format!("{arg} needs a value; {USAGE}")))?;
        let number = || value.parse::<u64>().map_err(|_| Error::invalid(format!("bad value for {arg}; {USAGE}")));
        match arg.as_str() {
            "--data-dir" => dir = Some(value.clone()),
            "--threads" => a.threads = number()?.clamp(1, 256),
            "--run" => a.run = number()?,
            "--seed" => a.seed = number()?,
            "--seconds" => a.seconds = number()?,
            "--max" => a.max = number()?,
            "--checkpoint-every" => a.checkpoint_every = Some(number()?),
            "--segment-bytes" => a.segment_bytes = Some(number()?),
            _ => return Err(Error::invalid(format!("unknown argument {arg}; {USAGE}"))),
        }
    }
    a.dir = dir.ok_or_else(|| Error::invalid(USAGE))?;
    Ok(a)
}

/// Rules under which nothing lapses, expires or goes stale during a run, and a trip
/// at a cell is offered to that cell's driver only.
fn rules() -> dispatch_core::DispatchRules {
    scenario::grid_rules()
}

/// Where cell `cell` is: a grid of 50 columns, ~2 km apart (beyond the 500 m search
/// radius of [`rules`]).
fn cell_point(cell: u64) -> Result<LatLng, Error> {
    Ok(LatLng::new(29.0 + (cell / 50) as f64 * 0.02, 31.0 + (cell % 50) as f64 * 0.02)?)
}

/// stdout, one whole line per write, flushed: a line printed is a line the test sees,
/// even if the process is killed right after.
struct Out;

impl Out {
    fn say(&self, line: std::fmt::Arguments<'_>) -> Result<(), Error> {
        let text = format!("{line}\n");
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| Error::internal(format!("stdout: {e}")))
    }
}

/// splitmix64: the callers' choices, seeded, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn run() -> Result<(), Error> {
    let a = args()?;
    let mut config = EngineConfig::default().with_data_dir(&a.dir).with_rules(rules());
    if let Some(n) = a.checkpoint_every {
        config.checkpoint_every_records = n;
    }
    if let Some(n) = a.segment_bytes {
        config.wal_segment_bytes = n;
    }
    let engine = Engine::open(config)?;
    scenario::ensure_zone(&engine)?;
    let out = Out;
    out.say(format_args!("ready replayed={} base={}", engine.recovery().replayed, engine.recovery().base_lsn))?;
    let stop_at = Instant::now() + Duration::from_secs(a.seconds);
    let stopping = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let (engine, out, stopping) = (&engine, &out, &stopping);
        // Reports each checkpoint as soon as the writer collected it.
        let monitor = s.spawn(move || {
            let stats = &engine.stats().checkpoints;
            let mut seen = stats.written.load(Ordering::Relaxed);
            while !stopping.load(Ordering::Relaxed) {
                let written = stats.written.load(Ordering::Relaxed);
                if written != seen {
                    seen = written;
                    let lsn = stats.last_lsn.load(Ordering::Relaxed);
                    out.say(format_args!("checkpoint written={written} lsn={lsn}"))?;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            Ok::<(), Error>(())
        });
        let callers: Vec<_> = (0..a.threads)
            .map(|i| {
                let cell = a.run * a.threads + i;
                let rng = Rng(a.seed ^ cell.wrapping_mul(0xA076_1D64_78BD_642F));
                let caller = Caller { engine, out, cell, rng, users: 0 };
                s.spawn(move || caller.run(stop_at, a.max))
            })
            .collect();
        let mut result = Ok(());
        for c in callers {
            let r = c.join().map_err(|_| Error::internal("a caller panicked")).and_then(|r| r);
            result = result.and(r);
        }
        stopping.store(true, Ordering::Relaxed);
        let m = monitor.join().map_err(|_| Error::internal("the monitor panicked")).and_then(|r| r);
        result.and(m)
    });
    engine.shutdown()?;
    result
}

/// One caller: a cell, its driver, its current rider.
struct Caller<'a> {
    engine: &'a Engine,
    out: &'a Out,
    cell: u64,
    rng: Rng,
    users: u64,
}

impl Caller<'_> {
    fn user(&mut self, role: Role) -> Result<UserId, Error> {
        self.users += 1;
        // Phone numbers are unique per role: 100,000 per cell.
        let id = scenario::user(self.engine, role, self.cell * 100_000 + self.users)?;
        self.out.say(format_args!("user {id} {}", role.as_str()))?;
        Ok(id)
    }

    fn run(mut self, stop_at: Instant, max: u64) -> Result<(), Error> {
        let engine = self.engine;
        let at = cell_point(self.cell)?;
        let mut rider = self.user(Role::Rider)?;
        let driver = self.user(Role::Driver)?;
        engine.set_driver_status(driver, true, Some(at))?;
        self.out.say(format_args!("online {driver}"))?;
        let mut to_rate: Option<(TripId, UserId)> = None;
        let egp: dispatch_core::Currency = "EGP".parse().map_err(|_| Error::internal("EGP"))?;
        for _ in 0..max {
            if Instant::now() >= stop_at {
                break;
            }
            if self.rng.chance(10) {
                rider = self.user(Role::Rider)?;
            }
            let trip = engine.create_trip(rider, ride_from(at)?)?;
            self.out.say(format_args!("trip {} {rider}", trip.id))?;
            // The last finished trip, rated now: a checkpoint may have archived it since.
            if let Some((done, its_rider)) = to_rate.take() {
                let (actor, by) = if self.rng.chance(70) { (its_rider, "rider") } else { (driver, "driver") };
                let stars = (self.rng.next() % 5 + 1) as u8;
                engine.submit(Actor::User(actor), Command::RateTrip { trip_id: done, stars, comment: None })?;
                self.out.say(format_args!("rated {done} {by} {stars}"))?;
            }
            if self.rng.chance(15) {
                engine.cancel(Actor::User(rider), trip.id, "changed my mind")?;
                self.out.say(format_args!("cancelled {}", trip.id))?;
            } else {
                engine.accept(driver, trip.id)?;
                self.out.say(format_args!("accepted {} {driver}", trip.id))?;
                if self.rng.chance(10) {
                    engine.cancel(Actor::User(rider), trip.id, "too slow")?;
                    self.out.say(format_args!("cancelled {}", trip.id))?;
                } else {
                    engine.arrived(driver, trip.id)?;
                    self.out.say(format_args!("arrived {}", trip.id))?;
                    engine.start(driver, trip.id, &trip.pickup_code.to_string())?;
                    self.out.say(format_args!("started {}", trip.id))?;
                    engine.complete(driver, trip.id, Some(3_000))?;
                    self.out.say(format_args!("completed {}", trip.id))?;
                    to_rate = Some((trip.id, rider));
                }
            }
            if self.rng.chance(20) {
                let amount_minor = (self.rng.next() % 10_000 + 1) as i64;
                let credit = Command::CreditWallet {
                    id: None,
                    user_id: rider,
                    amount_minor,
                    currency: egp,
                    reason: "top-up".into(),
                };
                match engine.submit(Actor::Admin, credit)? {
                    Outcome::Transfer(t) => self.out.say(format_args!("credit {} {rider} {amount_minor}", t.id))?,
                    other => return Err(Error::internal(format!("a credit answered {other:?}"))),
                }
            }
        }
        Ok(())
    }
}
