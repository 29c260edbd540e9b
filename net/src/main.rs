//! `dispatchd`: the dispatch server binary — a thin wrapper that parses its
//! command line and calls the library.
//!
//! Today it carries the operators' storage commands; `serve` (the HTTP API and
//! the WebSocket gateway) arrives with issue 6 and says so when asked.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// dispatch: a ride-hailing dispatch engine.
#[derive(Debug, Parser)]
#[command(name = "dispatchd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the HTTP API and the WebSocket gateway (not built yet).
    Serve {
        /// The data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Take a consistent copy of a data directory, while it is being served or not.
    Backup {
        /// The data directory to copy.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where to put the copy (must not exist, or be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into a new data directory.
    Restore {
        /// The backup.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to create (must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve { .. } => {
            eprintln!("dispatchd serve: the HTTP API is not built yet (issue 6); the engine runs as a library");
            return ExitCode::from(2);
        }
        Cmd::Backup { data_dir, to } => dispatch_core::backup(&data_dir, &to).map(|r| {
            println!(
                "backup of {} in {}: {} records, {} segment(s), {} bytes",
                data_dir.display(),
                to.display(),
                r.records,
                r.segments,
                r.bytes
            )
        }),
        Cmd::Restore { from, data_dir } => dispatch_core::restore(&from, &data_dir)
            .map(|r| println!("restored {} into {}: {} records", from.display(), data_dir.display(), r.records)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatchd: {e}");
            ExitCode::FAILURE
        }
    }
}
