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
        /// Longest write of one WebSocket frame before the socket is closed as too slow, ms (tests).
        #[arg(long, hide = true, default_value_t = 10_000)]
        ws_send_timeout_ms: u64,
        /// The engine's queue capacity (tests of 503 overloaded).
        #[arg(long, hide = true)]
        queue_capacity: Option<usize>,
        /// While this file exists, WAL writes fail as on a full disk (tests of 503 read_only).
        #[arg(long, hide = true)]
        fault_file: Option<PathBuf>,
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
    /// Compare the ledger's card captures with a gateway's settlement report (CSV:
    /// `trip_id,amount_minor,currency`) and list every difference. Reads the data
    /// directory of a stopped server (a serving one holds its lock).
    Reconcile {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The gateway the report comes from.
        #[arg(long, default_value = "sim")]
        gateway: String,
        /// The settlement report.
        #[arg(long)]
        settlement: PathBuf,
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
        Cmd::Serve {
            config,
            listen,
            data_dir,
            dev,
            demo,
            demo_drivers,
            ws_ping_ms,
            ws_idle_ms,
            ws_send_timeout_ms,
            queue_capacity,
            fault_file,
        } => {
            let opts = dispatch_server::ServeOptions {
                config,
                listen,
                data_dir,
                dev,
                demo_drivers: demo.then_some(demo_drivers),
                ws_timing: dispatch_server::ws::WsTiming {
                    ping_every: Duration::from_millis(ws_ping_ms.max(10)),
                    idle_timeout: Duration::from_millis(ws_idle_ms.max(10)),
                    send_timeout: Duration::from_millis(ws_send_timeout_ms.max(10)),
                },
                queue_capacity,
                fault_file,
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
        Cmd::Reconcile { data_dir, gateway, settlement } => {
            return match reconcile(&data_dir, &gateway, &settlement) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("dispatchd reconcile: {e}");
                    ExitCode::from(2)
                }
            };
        }
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

/// Prints every mismatch between the ledger and the report; returns how many.
fn reconcile(data_dir: &std::path::Path, gateway: &str, settlement: &std::path::Path) -> Result<usize, String> {
    use dispatch_core::payment::{Mismatch, parse_settlement, reconcile};
    if gateway != "sim" {
        return Err(format!("unknown gateway {gateway:?} (this build has: sim)"));
    }
    let text = std::fs::read_to_string(settlement).map_err(|e| format!("{}: {e}", settlement.display()))?;
    let rows = parse_settlement(&text).map_err(|e| format!("{}: {e}", settlement.display()))?;
    let config = dispatch_core::EngineConfig::default().with_data_dir(data_dir);
    let engine = dispatch_core::Engine::open(config).map_err(|e| e.to_string())?;
    // Every trip, hot and archived, a page at a time.
    let mut trips = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine
            .trips(dispatch_core::TripsOf::All, cursor, 1000, true, |t| {
                t.payment.method == dispatch_core::PaymentMethod::Card
            })
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        cursor = Some(dispatch_core::TripCursor::after(last));
        trips.extend(page);
    }
    let found = reconcile(trips.iter().map(|t| &**t), &rows);
    for m in &found {
        match m {
            Mismatch::MissingInLedger { trip_id, amount_minor } => {
                println!("{trip_id}: the gateway settled {amount_minor}, the ledger has no capture")
            }
            Mismatch::MissingAtGateway { trip_id, amount_minor } => {
                println!("{trip_id}: the ledger captured {amount_minor}, the gateway did not settle it")
            }
            Mismatch::AmountDiffers { trip_id, ledger_minor, gateway_minor } => {
                println!("{trip_id}: the ledger has {ledger_minor}, the gateway {gateway_minor}")
            }
        }
    }
    println!("{} card trip(s), {} settlement line(s), {} mismatch(es)", trips.len(), rows.len(), found.len());
    engine.shutdown().map_err(|e| e.to_string())?;
    Ok(found.len())
}
