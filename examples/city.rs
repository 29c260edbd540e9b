//! A simulated city, from the command line:
//!
//! ```text
//! cargo run --release --example city -- --drivers 2000 --riders 500 --minutes 30 [--seed N]
//!     [--mode greedy|batched|learning]
//! [  1 min] trips requested=… matched=… completed=… … double_assignments=0 … cmds/s=…
//! …
//! mode=greedy seed=1 … match_rate=0.93 match_p50_s=4.0 match_p95_s=21.0 … double_assignments=0
//! ```
//!
//! The last line is the run's figures of dispatch quality as `key=value` pairs
//! (`dispatch::city::CityReport::summary`), for scripts (`scripts/matching-table.sh`).
//! `--mode` sets the engine's matching rules: `greedy` (the default), `batched`, or
//! `learning` (batched with the learning ranking). `--batch-window-ms`,
//! `--batch-exclusive-s`, `--batch-round-slack-s`, `--offers-per-round` and `--learning A/I` (the learning weights, per cent) set those
//! rules on top of the mode's, for sweeps (`scripts/matching-sweep.sh`).
//!
//! Riders are `dispatch_sim`'s: about a fifth of rides are booked with 1 to 3 stops on the
//! way (`sim/src/city/rider.rs`, `STOPS_SHARE`), priced leg by leg.
//!
//! Runs `dispatch::city` on a manual clock, as fast as the engine goes (the same seed
//! prints the same figures), or with `--live` on the system clock, for watching. Prints a
//! report every simulated minute (`--every S` to change). Exits non-zero if the audit
//! finds a double assignment or the simulation an unexpected answer. A tenth of the rides
//! are booked 15 to 17 minutes ahead: `scheduled=` counts them, `dispatched_ahead=` those
//! whose dispatch (10 minutes before) came within the run.

use std::process::ExitCode;

use dispatch::city::{self, CityMode, CityOptions};
use dispatch_core::command::LearningWeights;

const USAGE: &str = "usage: city [--drivers N] [--riders N] [--minutes N] [--seed N] [--live] \
                     [--step-ms MS] [--every S] [--radius-m M] [--mode greedy|batched|learning] \
                     [--rider-idle-s S] [--hotspots N] [--batch-window-ms MS] \
                     [--batch-exclusive-s S] [--offers-per-round N] [--batch-round-slack-s S] [--learning ACCEPTANCE_PCT/IDLE_PCT]";

fn parse() -> Option<CityOptions> {
    let mut o = CityOptions::default();
    o.sim.drivers = 2_000;
    o.sim.riders = 500;
    let mut live_every = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--live" {
            o.live = true;
            continue;
        }
        let value = args.next()?;
        match arg.as_str() {
            "--drivers" => o.sim.drivers = value.parse().ok()?,
            "--riders" => o.sim.riders = value.parse().ok()?,
            "--minutes" => o.minutes = value.parse().ok()?,
            "--seed" => o.sim.seed = value.parse().ok()?,
            "--step-ms" => o.step_ms = value.parse().ok()?,
            "--radius-m" => o.sim.radius_m = value.parse().ok()?,
            "--mode" => o.mode = CityMode::parse(&value)?,
            "--rider-idle-s" => o.sim.rider_idle_mean_s = value.parse().ok()?,
            "--hotspots" => o.sim.hotspots = value.parse().ok()?,
            "--batch-window-ms" => o.tweaks.batch_window_ms = Some(value.parse().ok()?),
            "--batch-round-slack-s" => o.tweaks.batch_round_slack_s = Some(value.parse().ok()?),
            "--offers-per-round" => o.tweaks.offers_per_round = Some(value.parse().ok()?),
            "--batch-exclusive-s" => o.tweaks.batch_exclusive_s = Some(value.parse().ok()?),
            "--learning" => {
                let (a, i) = value.split_once('/')?;
                o.tweaks.learning =
                    Some(LearningWeights { acceptance_pct: a.parse().ok()?, idle_pct: i.parse().ok()? });
            }
            "--every" => {
                o.report_every_s = value.parse().ok()?;
                live_every = false;
            }
            _ => return None,
        }
    }
    if o.live && live_every {
        // Someone is watching: a line every 10 s rather than every minute.
        o.report_every_s = 10;
    }
    Some(o)
}

fn main() -> ExitCode {
    let Some(options) = parse() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let s = &options.sim;
    println!(
        "city: {} drivers, {} riders, {} m around ({}, {}), seed {}, mode {}, {} {} min, steps of {} ms",
        s.drivers,
        s.riders,
        s.radius_m,
        s.center_lat_deg,
        s.center_lng_deg,
        s.seed,
        options.mode.as_str(),
        if options.live { "live for" } else { "simulating" },
        options.minutes,
        options.step_ms
    );
    let mut stdout = std::io::stdout();
    match city::run(&options, &mut stdout) {
        Ok(report) => {
            println!(
                "done: setup {:.1}s, run {:.1}s wall, {} commands ({:.0}/s), audit {:?}",
                report.setup.as_secs_f64(),
                report.wall.as_secs_f64(),
                report.stats.commands,
                report.commands_per_s(),
                report.audit
            );
            println!("{}", report.summary(&options));
            if report.healthy() {
                ExitCode::SUCCESS
            } else {
                eprintln!("city: unhealthy run (last unexpected answer: {:?})", report.last_error);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("city: {e}");
            ExitCode::FAILURE
        }
    }
}
