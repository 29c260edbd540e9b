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
//!
//! A run uses one [`CityMode`], which sets the engine's dispatch rules (greedy, batched,
//! or batched with the learning ranking), and ends with [`CityReport::summary`], one line
//! of `key=value` figures of dispatch quality that a script can compare across modes and
//! seeds (`scripts/matching-table.sh`).

use std::io::Write;
use std::time::{Duration, Instant};

use dispatch_core::clock::{Clock, ManualClock, SystemClock, Timestamp};
use dispatch_core::command::{LearningWeights, MatchingMode};
use dispatch_core::{DispatchRules, Engine, EngineConfig, Error, RandomIds};
use dispatch_sim::{Audit, Sim, SimConfig, SimStats, audit};

/// 2026-01-01 08:00 UTC: where a manual-clock city starts, so runs are comparable.
pub const MANUAL_START_MS: i64 = 1_767_254_400_000;

/// How the engine matches trips to drivers in a run (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CityMode {
    /// Each trip offered at once to its nearest drivers (the default rules).
    #[default]
    Greedy,
    /// Trips collected over the batch window and assigned together.
    Batched,
    /// Batched, ranking drivers with the learning weights ([`tuned_learning`]).
    Learning,
}

impl CityMode {
    /// Every mode, in the order the comparison table shows them.
    pub const ALL: [CityMode; 3] = [CityMode::Greedy, CityMode::Batched, CityMode::Learning];

    /// `greedy`, `batched` or `learning`.
    pub fn as_str(self) -> &'static str {
        match self {
            CityMode::Greedy => "greedy",
            CityMode::Batched => "batched",
            CityMode::Learning => "learning",
        }
    }

    /// The mode named `name` (as [`CityMode::as_str`] spells it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The engine's rules in this mode: the default rules with the matching mode and the
    /// learning weights set.
    pub fn rules(self) -> DispatchRules {
        let (matching, learning) = match self {
            CityMode::Greedy => (MatchingMode::Greedy, LearningWeights::OFF),
            CityMode::Batched => (MatchingMode::Batched, LearningWeights::OFF),
            CityMode::Learning => (MatchingMode::Batched, tuned_learning()),
        };
        DispatchRules { matching, learning, ..DispatchRules::default() }
    }
}

/// The learning weights `--mode learning` runs with: the engine's tuned pair.
pub fn tuned_learning() -> LearningWeights {
    LearningWeights::TUNED
}

/// Rules a run sets on top of its [`CityMode`]'s (the sweeps of `scripts/matching-sweep.sh`);
/// `None`: the mode's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleTweaks {
    /// `batch_window_ms`.
    pub batch_window_ms: Option<u32>,
    /// `batch_exclusive_s`.
    pub batch_exclusive_s: Option<u32>,
    /// The learning weights (in `learning` mode; any mode runs them if set).
    pub learning: Option<LearningWeights>,
    /// `offers_per_round`.
    pub offers_per_round: Option<u16>,
    /// `batch_round_slack_s`.
    pub batch_round_slack_s: Option<u32>,
}

impl RuleTweaks {
    /// `rules` with the tweaks set.
    pub fn apply(&self, mut rules: DispatchRules) -> DispatchRules {
        if let Some(v) = self.batch_window_ms {
            rules.batch_window_ms = v;
        }
        if let Some(v) = self.batch_exclusive_s {
            rules.batch_exclusive_s = v;
        }
        if let Some(v) = self.learning {
            rules.learning = v;
        }
        if let Some(v) = self.offers_per_round {
            rules.offers_per_round = v;
        }
        if let Some(v) = self.batch_round_slack_s {
            rules.batch_round_slack_s = v;
        }
        rules
    }
}

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
    /// How the engine matches (its dispatch rules).
    pub mode: CityMode,
    /// Rules set on top of the mode's.
    pub tweaks: RuleTweaks,
}

impl Default for CityOptions {
    fn default() -> Self {
        Self {
            sim: SimConfig::default(),
            minutes: 30,
            live: false,
            step_ms: 1_000,
            report_every_s: 60,
            mode: CityMode::Greedy,
            tweaks: RuleTweaks::default(),
        }
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

    /// The figures of dispatch quality, as one line of `key=value` pairs separated by
    /// spaces (`-` for a figure with no data yet), for scripts: the run (`mode`, the
    /// batching rules `batch_window_ms`, `batch_exclusive_s`, `learning` as `A/I`, `seed`,
    /// `drivers`, `riders`, `minutes`), the trips, `match_rate` (see
    /// [`SimStats::match_rate`]), `match_p50_s` and `match_p95_s` (request to first accept),
    /// pickup distance (`mean_pickup_m`, `p95_pickup_m`: straight line from the driver when it
    /// won) and ETA (`mean_pickup_eta_s`, `p95_pickup_eta_s`: that distance at the driver's
    /// speed), `declines_per_trip` (over finished trips), `idle_pct` (online driver time
    /// spent with no trip), `earnings_gini`, `mean_trip_s` (a driver's time from winning a
    /// trip to completing it) and `double_assignments` (the audit's and the answers').
    pub fn summary(&self, options: &CityOptions) -> String {
        let s = &self.stats;
        let rules = options.tweaks.apply(options.mode.rules());
        let f = |v: Option<f64>, digits: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"));
        let ms_to_s = |v: Option<i64>| v.map(|ms| ms as f64 / 1000.0);
        let fields: Vec<(&str, String)> = vec![
            ("mode", options.mode.as_str().to_string()),
            ("batch_window_ms", rules.batch_window_ms.to_string()),
            ("batch_exclusive_s", rules.batch_exclusive_s.to_string()),
            ("batch_round_slack_s", rules.batch_round_slack_s.to_string()),
            ("offers_per_round", rules.offers_per_round.to_string()),
            ("learning", format!("{}/{}", rules.learning.acceptance_pct, rules.learning.idle_pct)),
            ("seed", options.sim.seed.to_string()),
            ("drivers", options.sim.drivers.to_string()),
            ("riders", options.sim.riders.to_string()),
            ("minutes", options.minutes.to_string()),
            ("requested", s.trips_requested.to_string()),
            ("matched", s.trips_matched.to_string()),
            ("unmatched", s.trips_unmatched.to_string()),
            ("gave_up", s.riders_gave_up.to_string()),
            ("expired", s.trips_expired.to_string()),
            ("completed", s.trips_completed.to_string()),
            ("match_rate", f(s.match_rate(), 4)),
            ("match_p50_s", f(ms_to_s(s.match_p50_ms), 1)),
            ("match_p95_s", f(ms_to_s(s.match_p95_ms), 1)),
            ("mean_pickup_m", f(s.pickup_mean_m, 0)),
            ("p95_pickup_m", f(s.pickup_p95_m.map(|m| m as f64), 0)),
            ("mean_pickup_eta_s", f(s.pickup_eta_mean_ms.map(|ms| ms / 1000.0), 1)),
            ("p95_pickup_eta_s", f(ms_to_s(s.pickup_eta_p95_ms), 0)),
            ("declines_per_trip", format!("{:.3}", s.declines_per_trip())),
            ("idle_pct", f(s.idle_share().map(|x| x * 100.0), 1)),
            ("earnings_gini", f(s.earnings_gini, 4)),
            ("mean_trip_s", f(s.trip_engaged_mean_ms.map(|ms| ms / 1000.0), 0)),
            ("double_assignments", (self.audit.double_assignments + s.double_assignments).to_string()),
        ];
        fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Runs a city as `options` say, writing a line to `out` at every report.
pub fn run(options: &CityOptions, out: &mut impl Write) -> Result<CityReport, Error> {
    if options.step_ms == 0 || options.report_every_s == 0 {
        return Err(Error::invalid("step_ms and report_every_s must be positive"));
    }
    let ids = RandomIds::seeded(options.sim.seed);
    let config = EngineConfig::default().with_ids(ids).with_rules(options.tweaks.apply(options.mode.rules()));
    if options.live {
        let engine = Engine::open(config)?;
        run_live(&engine, options, out)
    } else {
        let clock = ManualClock::new(Timestamp::from_millis(MANUAL_START_MS));
        let engine = Engine::open(config.with_clock(clock.clone()))?;
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

    #[test]
    fn modes_set_the_rules_and_parse_back() {
        for mode in CityMode::ALL {
            assert_eq!(CityMode::parse(mode.as_str()), Some(mode));
            mode.rules().validate().unwrap();
        }
        assert_eq!(CityMode::parse("fastest"), None);
        assert_eq!(CityMode::Greedy.rules(), DispatchRules::default(), "greedy is today's behaviour");
        assert_eq!(CityMode::Batched.rules().matching, MatchingMode::Batched);
        assert!(!CityMode::Batched.rules().learning.is_on());
        let learning = CityMode::Learning.rules();
        assert_eq!((learning.matching, learning.learning), (MatchingMode::Batched, tuned_learning()));
        assert!(learning.learning.is_on());
    }

    #[test]
    fn the_summary_is_one_line_of_key_value_pairs_and_reproducible() {
        let sim =
            SimConfig { drivers: 40, riders: 30, radius_m: 3_000.0, rider_idle_mean_s: 60, ..SimConfig::default() };
        let options = CityOptions { sim, minutes: 6, mode: CityMode::Batched, ..CityOptions::default() };
        let first = run(&options, &mut Vec::new()).unwrap();
        let line = first.summary(&options);
        let pairs: Vec<(&str, &str)> = line.split(' ').map(|kv| kv.split_once('=').unwrap()).collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap();
        for key in ["match_rate", "match_p50_s", "match_p95_s", "mean_pickup_eta_s", "p95_pickup_m", "earnings_gini"] {
            let v: f64 = get(key).parse().unwrap_or_else(|_| panic!("{key} in {line}"));
            assert!(v >= 0.0, "{key} in {line}");
        }
        let rate: f64 = get("match_rate").parse().unwrap();
        assert!(rate > 0.0 && rate <= 1.0, "{line}");
        assert_eq!((get("mode"), get("double_assignments")), ("batched", "0"), "{line}");
        let again = run(&options, &mut Vec::new()).unwrap();
        assert_eq!(again.summary(&options), line, "the same seed, the same figures");
    }
}
