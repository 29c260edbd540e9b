//! A process for crash tests: opens an engine on `--data-dir`, then streams
//! commands (a rider, then a trip for that rider, again and again) and prints
//! one line per *acknowledged* command, flushed, before sending the next:
//!
//! ```text
//! ready replayed=<records recovered at open>
//! ack usr_… / ack trp_…
//! ```
//!
//! The kill -9 test (`tests/crash_process.rs`) kills it mid-stream and checks
//! every acknowledged id is there after a restart. It stops by itself after
//! `--max` commands or `--seconds` seconds, whichever comes first.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dispatch::scenario::{self, near_center, ride_from};
use dispatch_core::{Engine, EngineConfig, Error, Role};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let mut dir = None;
    let mut max = 100_000u64;
    let mut seconds = 60u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| Error::Invalid(format!("{arg} needs a value")))?;
        let bad = |_| Error::Invalid(format!("bad value for {arg}"));
        match arg.as_str() {
            "--data-dir" => dir = Some(value),
            "--max" => max = value.parse().map_err(bad)?,
            "--seconds" => seconds = value.parse().map_err(bad)?,
            _ => return Err(Error::Invalid(format!("unknown argument {arg}"))),
        }
    }
    let dir = dir.ok_or_else(|| Error::Invalid("usage: crash-writer --data-dir DIR [--max N] [--seconds S]".into()))?;
    let engine = Engine::open(EngineConfig::default().with_data_dir(dir))?;
    scenario::ensure_zone(&engine)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: String| {
        writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| Error::Internal(format!("stdout: {e}")))
    };
    say(&mut out, format!("ready replayed={}", engine.recovery().replayed))?;
    // Phone numbers must be unique: continue after whatever an earlier run created.
    let first = engine.read(|v| v.users().count()) as u64 + 1;
    let stop = Instant::now() + Duration::from_secs(seconds);
    for n in first..first + max {
        if Instant::now() >= stop {
            break;
        }
        let rider = scenario::user(&engine, Role::Rider, n)?;
        say(&mut out, format!("ack {rider}"))?;
        let trip = engine.create_trip(rider, ride_from(near_center((n % 1000) as f64, 0.0)?)?)?;
        say(&mut out, format!("ack {}", trip.id))?;
    }
    engine.shutdown()?;
    Ok(())
}
