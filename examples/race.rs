#![allow(clippy::unwrap_used)]
//! The accept race, from the command line:
//!
//! ```text
//! cargo run --release --example race -- --drivers 64 --trips 1000
//! trips=1000 winners=1000 conflicts=63000 double_assignments=0 elapsed_ms=…
//! ```
//!
//! `drivers` threads accept the same trip at the same instant, `trips` times.
//! Exits non-zero if any trip had more or fewer than one winner.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut drivers = 64usize;
    let mut trips = 1_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref()) {
            ("--drivers", Some(v)) => v.parse().map(|v| drivers = v).is_ok(),
            ("--trips", Some(v)) => v.parse().map(|v| trips = v).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("usage: race [--drivers N (2-100)] [--trips N]");
            return ExitCode::from(2);
        }
    }
    match dispatch::race::run(drivers, trips) {
        Ok(report) => {
            println!("{}", report.line());
            if report.double_assignments == 0 && report.unexpected == 0 && report.winners == report.trips {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("race: {e}");
            ExitCode::FAILURE
        }
    }
}
