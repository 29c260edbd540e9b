//! The simulated city ([`dispatch_sim`]) as a program: builds an engine, runs
//! a [`Sim`] on it and prints its figures once a simulated minute (or as often as asked).
//!
//! Two clocks:
//! - **manual** (the default): a [`ManualClock`] moved in steps as fast as the engine
//!   goes; the run is reproducible from its seed (same figures every time) and its wall
//!   time and commands per second measure the engine under a city's mix of commands;
//! - **live**: the system clock, one step every `step_ms` of real time, for a person
//!   watching the figures move.
//!
//! Every report also audits the engine's view ([`audit`]): a double assignment or a
//! trip/driver mismatch makes [`CityReport::healthy`] false (and the example exit non-zero).

use std::io::Write;
use std::time::{Duration, Instant};

use dispatch_core::clock::{Clock, ManualClock, SystemClock, Timestamp};
use dispatch_core::{Engine, EngineConfig, Error, RandomIds};
use dispatch_sim::{Audit, Sim, SimConfig, SimStats, audit};

/// 2026-01-01 08:00 UTC: where a manual-clock city starts, so runs are comparable.
pub const MANUAL_START_MS: i64 = 1_767_254_400_000;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CityOptions {
    /// The simulation (drivers, riders, seed, behaviour).
    pub sim: SimConfig,
    /// How long to run, simulated (manual) or real (live) minutes.
    pub minutes: u32,
    /// The system clock instead of a manual one.
    pub live: bool,
    /// Simulated time per step, ms (manual), or real time between steps (live).
    pub step_ms: u32,
    /// Print a report this often, seconds of the run's clock.
    pub report_every_s: u32,
}

impl Default for CityOptions {
    fn default() -> Self {
        Self { sim: SimConfig::default(), minutes: 30, live: false, step_ms: 1_000, report_every_s: 60 }
    }
}

/// What a run ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct CityReport {
    /// The simulation's figures.
    pub stats: SimStats,
    /// The last audit of the engine's view.
    pub audit: Audit,
    /// Wall time of the run, setup excluded.
    pub wall: Duration,
    /// Wall time of the setup (zone, users).
    pub setup: Duration,
    /// The last answer the simulation did not expect, if any.
    pub last_error: Option<String>,
}

impl CityReport {
    /// No double assignment (in the view or in the answers), no mismatch between trips
    /// and drivers, no refused position, no answer the simulation did not expect.
    pub fn healthy(&self) -> bool {
        self.audit.double_assignments == 0
            && self.audit.mismatches == 0
            && self.stats.double_assignments == 0
            && self.stats.locations_refused == 0
            && self.stats.unexpected_errors == 0
    }

    /// Commands the simulation submitted per second of wall time.
    pub fn commands_per_s(&self) -> f64 {
        self.stats.commands as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The one-line report printed during and after a run.
    pub fn line(&self) -> String {
        let s = &self.stats;
        let secs = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), |ms| format!("{:.0}s", ms as f64 / 1000.0));
        format!(
            "[{:>3}:{:02}] trips requested={} matched={} completed={} cancelled={} expired={} open={} \
             scheduled={} dispatched_ahead={} | \
             match p50={} p95={} | offers/trip={:.2} declines={} lapses={} ignored={} lost_races={} driver_cancels={} | \
             double_assignments={} | drivers online={} on_trip={} | wall={:.1}s cmds={} cmds/s={:.0}",
            s.simulated_ms / 60_000,
            s.simulated_ms / 1000 % 60,
            s.trips_requested,
            s.trips_matched,
            s.trips_completed,
            s.trips_cancelled,
            s.trips_expired,
            s.riders_waiting,
            s.scheduled_booked,
            s.scheduled_dispatched,
            secs(s.match_p50_ms),
            secs(s.match_p95_ms),
            s.offers_per_trip(),
            s.declines,
            s.lapses,
            s.ignored,
            s.accepts_refused,
            s.driver_cancels,
            self.audit.double_assignments + self.stats.double_assignments,
            s.drivers_online,
            s.drivers_on_trip,
            self.wall.as_secs_f64(),
            s.commands,
            self.commands_per_s(),
        )
    }
}

/// Runs a city as `options` say, writing a line to `out` at every report.
pub fn run(options: &CityOptions, out: &mut impl Write) -> Result<CityReport, Error> {
    if options.step_ms == 0 || options.report_every_s == 0 {
        return Err(Error::invalid("step_ms and report_every_s must be positive"));
    }
    let ids = RandomIds::seeded(options.sim.seed);
    if options.live {
        let engine = Engine::open(EngineConfig::default().with_ids(ids))?;
        run_live(&engine, options, out)
    } else {
        let clock = ManualClock::new(Timestamp::from_millis(MANUAL_START_MS));
        let engine = Engine::open(EngineConfig::default().with_clock(clock.clone()).with_ids(ids))?;
        run_manual(&engine, &clock, options, out)
    }
}

fn run_manual(
    engine: &Engine,
    clock: &ManualClock,
    options: &CityOptions,
    out: &mut impl Write,
) -> Result<CityReport, Error> {
    let started = Instant::now();
    let mut sim = Sim::new(engine, options.sim.clone())?;
    let setup = started.elapsed();
    let started = Instant::now();
    let total_ms = i64::from(options.minutes) * 60_000;
    let every_ms = i64::from(options.report_every_s) * 1000;
    let mut done_ms = 0;
    let mut report = None;
    while done_ms < total_ms {
        let dt = every_ms.min(total_ms - done_ms);
        sim.advance(clock, dt, i64::from(options.step_ms))?;
        done_ms += dt;
        let r = report_now(&sim, engine, started, setup);
        print(out, &r.line());
        report = Some(r);
    }
    Ok(finish(sim, engine, report, setup, started))
}

fn run_live(engine: &Engine, options: &CityOptions, out: &mut impl Write) -> Result<CityReport, Error> {
    let started = Instant::now();
    let mut sim = Sim::new(engine, options.sim.clone())?;
    let setup = started.elapsed();
    let started = Instant::now();
    let total = Duration::from_secs(u64::from(options.minutes) * 60);
    let every = Duration::from_secs(u64::from(options.report_every_s));
    let step = Duration::from_millis(u64::from(options.step_ms));
    let mut next_report = every;
    let mut report = None;
    while started.elapsed() < total {
        sim.step(SystemClock.now());
        std::thread::sleep(step);
        if started.elapsed() >= next_report {
            next_report += every;
            let r = report_now(&sim, engine, started, setup);
            print(out, &r.line());
            report = Some(r);
        }
    }
    sim.settle()?;
    Ok(finish(sim, engine, report, setup, started))
}

fn report_now(sim: &Sim<'_>, engine: &Engine, started: Instant, setup: Duration) -> CityReport {
    CityReport {
        stats: sim.stats(),
        audit: audit(engine),
        wall: started.elapsed(),
        setup,
        last_error: sim.last_error().map(str::to_owned),
    }
}

fn finish(sim: Sim<'_>, engine: &Engine, report: Option<CityReport>, setup: Duration, started: Instant) -> CityReport {
    report.unwrap_or_else(|| report_now(&sim, engine, started, setup))
}

fn print(out: &mut impl Write, line: &str) {
    // Reports are for a person; a closed stdout must not stop the run.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_manual_run_prints_a_line_a_minute_and_is_healthy() {
        let sim = SimConfig { drivers: 40, riders: 10, radius_m: 3_000.0, ..SimConfig::default() };
        let options = CityOptions { sim, minutes: 3, ..CityOptions::default() };
        let mut out = Vec::new();
        let report = run(&options, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("double_assignments=0"), "{text}");
        assert!(report.healthy(), "{report:?}");
        assert_eq!(report.stats.simulated_ms, 3 * 60_000);
    }
}
