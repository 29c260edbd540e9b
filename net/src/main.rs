//! `dispatchd`: the dispatch server binary — a thin wrapper that parses its
//! command line and calls the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// mimalloc, not the system's allocator: measured faster on the engine's hot paths and
/// without glibc's cross-thread frees under the writer's arena lock (BENCHMARKS.md, "The
/// allocator"). `--no-default-features` builds with the system's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The built-in sim gateway fails every call (tests of a gateway that is down).
        #[arg(long, hide = true, requires = "dev")]
        sim_gateway_down: bool,
        /// Failed calls before a payment is dead-lettered (tests).
        #[arg(long, hide = true, default_value_t = 10)]
        payment_max_attempts: u32,
        /// The payment worker's first retry wait, ms (tests).
        #[arg(long, hide = true, default_value_t = 1_000)]
        payment_backoff_ms: u64,
        /// Longest write of one WebSocket frame before the socket is closed as too slow, ms (tests).
        #[arg(long, hide = true, default_value_t = 10_000)]
        ws_send_timeout_ms: u64,
        /// The engine's queue capacity (tests of 503 overloaded).
        #[arg(long, hide = true)]
        queue_capacity: Option<usize>,
        /// While this file exists, WAL writes fail as on a full disk (tests of 503 read_only).
        #[arg(long, hide = true)]
        fault_file: Option<PathBuf>,
        /// The engine's clock runs this many seconds ahead of the system's (tests of what
        /// expires, e.g. a driver's licence; needs --dev).
        #[arg(long, hide = true, requires = "dev", default_value_t = 0, allow_negative_numbers = true)]
        clock_offset_s: i64,
        /// The rate limiter's clock advances by the nanoseconds written in this file at
        /// each reading, and not with time (tests of the limiter; needs --dev).
        #[arg(long, hide = true, requires = "dev")]
        limiter_clock: Option<PathBuf>,
        /// Join a cluster: the NATS servers of its shared command log, comma separated
        /// (overrides `[cluster] nats_urls`).
        #[arg(long, value_name = "NATS_URLS")]
        cluster: Option<String>,
        /// This node's name in the cluster (overrides `[cluster] node_id`).
        #[arg(long)]
        node_id: Option<String>,
        /// The URL other nodes reach this node at (overrides `[cluster] advertise_url`).
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
        /// Records the cluster's leader keeps in the stream below its checkpoint (tests of
        /// a node that catches up from a peer's checkpoint: 0 purges what it covers).
        #[arg(long, hide = true)]
        cluster_retain_records: Option<u64>,
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
    /// Compare the ledger's card payments with a gateway's settlement report (CSV:
    /// `trip_id,amount_minor,currency[,status]`) and list every difference. Reads the data
    /// directory of a stopped server (a serving one holds its lock; use
    /// `POST /v1/admin/reconcile` there).
    Reconcile {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The TOML configuration (for its `[gateways.*]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The gateway the report comes from.
        #[arg(long, default_value = "sim")]
        gateway: String,
        /// The settlement report.
        #[arg(long)]
        settlement: PathBuf,
    },
    /// Ask a running server's `/healthz` (a container's HEALTHCHECK: the image has no curl).
    /// Exits 0 when it answers 200, 1 otherwise.
    Healthcheck {
        /// The URL to GET (plain http://: the check runs beside the server).
        #[arg(long, default_value = dispatch_server::healthcheck::DEFAULT_URL)]
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout_s: u64,
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
    // Before anything is created: data, SMS codes and backups are the owner's only.
    dispatch_server::restrict_file_modes();
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
            sim_gateway_down,
            payment_max_attempts,
            payment_backoff_ms,
            ws_send_timeout_ms,
            queue_capacity,
            fault_file,
            clock_offset_s,
            limiter_clock,
            cluster,
            node_id,
            advertise,
            cluster_retain_records,
        } => {
            let opts = dispatch_server::ServeOptions {
                config,
                listen,
                data_dir,
                dev,
                demo_drivers: demo.then_some(demo_drivers),
                ws_timing: dispatch_server::server::WsTiming {
                    ping_every: Duration::from_millis(ws_ping_ms.max(10)),
                    idle_timeout: Duration::from_millis(ws_idle_ms.max(10)),
                    send_timeout: Duration::from_millis(ws_send_timeout_ms.max(10)),
                },
                sim_gateway_down,
                payments: dispatch_core::payment::WorkerConfig {
                    max_attempts: payment_max_attempts.max(1),
                    backoff: Duration::from_millis(payment_backoff_ms.max(1)),
                    ..dispatch_core::payment::WorkerConfig::default()
                },
                queue_capacity,
                fault_file,
                clock_offset_s,
                limiter_clock,
                cluster: dispatch_server::config::ClusterFlags { cluster, node_id, advertise },
                cluster_retain_records,
            };
            return match dispatch_server::serve(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dispatchd serve: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
        Cmd::Backup { data_dir, to } => dispatch_core::backup(&data_dir, &to).and_then(|r| {
            private(&to)?;
            println!(
                "backup of {} in {}: {} records, {} segment(s), {} bytes",
                data_dir.display(),
                to.display(),
                r.records,
                r.segments,
                r.bytes
            );
            Ok(())
        }),
        Cmd::Reconcile { data_dir, config, gateway, settlement } => {
            return match reconcile(&data_dir, config.as_deref(), &gateway, &settlement) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("dispatchd reconcile: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Cmd::Healthcheck { url, timeout_s } => {
            return match dispatch_server::healthcheck::check(&url, Duration::from_secs(timeout_s.max(1))) {
                Ok(()) => {
                    println!("healthy: {url} answered 200");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dispatchd healthcheck: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Restore { from, data_dir } => dispatch_core::restore(&from, &data_dir).and_then(|r| {
            private(&data_dir)?;
            println!("restored {} into {}: {} records", from.display(), data_dir.display(), r.records);
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatchd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Makes a backup or a restored data directory its owner's only (copies keep the mode of
/// what they copied, which an older version may have left open).
fn private(dir: &std::path::Path) -> Result<(), dispatch_core::Error> {
    dispatch_server::make_private(dir).map_err(|e| dispatch_core::Error::Storage(format!("{}: {e}", dir.display())))
}

/// Prints every mismatch between the ledger and the report; returns how many. The
/// comparison is `dispatch_core::payment::reconcile_report`, the function behind
/// `POST /v1/admin/reconcile` too.
fn reconcile(
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
    gateway: &str,
    settlement: &std::path::Path,
) -> Result<usize, String> {
    use dispatch_core::payment::{MismatchKind, reconcile_report};
    let config = dispatch_server::config::Config::load(config).map_err(|e| e.to_string())?;
    if gateway != "sim" && !config.gateways.contains_key(gateway) {
        let known: Vec<&str> = std::iter::once("sim").chain(config.gateways.keys().map(String::as_str)).collect();
        return Err(format!("unknown gateway {gateway:?} (configured: {})", known.join(", ")));
    }
    let text = std::fs::read_to_string(settlement).map_err(|e| format!("{}: {e}", settlement.display()))?;
    let engine = dispatch_core::Engine::open(dispatch_core::EngineConfig::default().with_data_dir(data_dir))
        .map_err(|e| e.to_string())?;
    let report = reconcile_report(&engine, &text);
    engine.shutdown().map_err(|e| e.to_string())?;
    let report = report.map_err(|e| format!("{}: {e}", settlement.display()))?;
    let amount = |s: Option<dispatch_core::payment::Side>| s.map_or(0, |s| s.amount_minor);
    let status = |s: Option<dispatch_core::payment::Side>| s.and_then(|s| s.status).map_or("-", |p| p.as_str());
    for m in &report.mismatches {
        let id = m.trip_id;
        match m.kind {
            MismatchKind::MissingInLedger => {
                println!("{id}: the gateway settled {}, the ledger has no capture", amount(m.gateway))
            }
            MismatchKind::MissingAtGateway => {
                println!("{id}: the ledger captured {}, the gateway did not settle it", amount(m.ledger))
            }
            MismatchKind::AmountDiffers => {
                println!("{id}: the ledger has {}, the gateway {}", amount(m.ledger), amount(m.gateway))
            }
            MismatchKind::StatusDiffers => {
                println!("{id}: the ledger's payment is {}, the gateway's {}", status(m.ledger), status(m.gateway))
            }
        }
    }
    let money = |s: Option<(i64, dispatch_core::Currency)>| s.map_or(0, |(a, _)| a);
    for m in &report.money_mismatches {
        let (what, id) = match m.subject {
            dispatch_core::payment::Settled::Payout(p) => ("paid out", p.to_string()),
            dispatch_core::payment::Settled::TopUp(t) => ("credited", t.to_string()),
        };
        match m.kind {
            MismatchKind::MissingInLedger => {
                println!("{id}: the gateway settled {}, the ledger has none", money(m.gateway))
            }
            MismatchKind::MissingAtGateway => {
                println!("{id}: the ledger {what} {}, the gateway did not settle it", money(m.ledger))
            }
            MismatchKind::AmountDiffers | MismatchKind::StatusDiffers => {
                println!("{id}: the ledger {what} {}, the gateway settled {}", money(m.ledger), money(m.gateway))
            }
        }
    }
    let mismatches = report.mismatches.len() + report.money_mismatches.len();
    println!(
        "{} card trip(s), {} payout(s) and top-up(s), {} settlement line(s), {} matched, {} mismatch(es)",
        report.trips, report.money, report.rows, report.matched, mismatches
    );
    Ok(mismatches)
}
