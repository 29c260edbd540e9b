//! `dispatchd`: the dispatch server binary — a thin wrapper that parses its
//! command line and calls the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Serve the HTTP API and the WebSocket gateway.
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to listen (overrides `[server] listen`); port 0 picks a free port.
        #[arg(long)]
        listen: Option<String>,
        /// The data directory (overrides `[store] data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Development mode: throwaway secrets, printed admin token. Not for production.
        #[arg(long)]
        dev: bool,
        /// Seed a demo city on first start (needs --dev).
        #[arg(long, requires = "dev")]
        demo: bool,
        /// Simulated drivers of the demo city.
        #[arg(long, requires = "demo", default_value_t = 200)]
        demo_drivers: u32,
        /// WebSocket ping interval, ms (tests).
        #[arg(long, hide = true, default_value_t = 20_000)]
        ws_ping_ms: u64,
        /// WebSocket idle timeout, ms (tests).
        #[arg(long, hide = true, default_value_t = 60_000)]
        ws_idle_ms: u64,
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
        Cmd::Serve { config, listen, data_dir, dev, demo, demo_drivers, ws_ping_ms, ws_idle_ms } => {
            let opts = dispatch_server::ServeOptions {
                config,
                listen,
                data_dir,
                dev,
                demo_drivers: demo.then_some(demo_drivers),
                ws_timing: dispatch_server::ws::WsTiming {
                    ping_every: Duration::from_millis(ws_ping_ms.max(10)),
                    idle_timeout: Duration::from_millis(ws_idle_ms.max(10)),
                },
            };
            return match dispatch_server::serve(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dispatchd serve: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
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
