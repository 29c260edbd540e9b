//! # dispatch-peers: dispatch against the usual stack, in one run
//!
//! Runs the same three workloads on dispatch and on the peers that the usual ride-hailing
//! backend is built from, and prints one table (figure, dispatch, peer, dispatch/peer):
//!
//! 1. [`nearest`]: the 10 nearest drivers among 100,000 — `DriverIndex::nearest` vs Redis
//!    `GEOSEARCH` vs a PostGIS KNN query;
//! 2. [`accept`]: race-safe accepts, durable, several drivers racing per trip — the engine
//!    (WAL + fsync) vs PostgreSQL running the usual conditional-UPDATE fix;
//! 3. [`ingest`]: location updates — the engine and the index alone vs Redis `GEOADD`.
//!
//! The servers are started by `benches/peers/run.sh`, which passes their addresses; a peer
//! not given is skipped (its cells print `—`). Exit status 1 if any side double-assigned.
//!
//! ```text
//! dispatch-peers [--redis URL] [--redis-aof URL] [--postgres CONNINFO]
//!                [--drivers N] [--queries N] [--data-dir DIR] [--out FILE]
//!                [--only nearest|accept|ingest]
//! ```
//!
//! Layout: [`city`] draws the workload from one seed; [`fleet`] and [`window`] drive the
//! engine; [`report`] holds the percentiles and the table.

mod accept;
mod city;
mod fleet;
mod ingest;
mod nearest;
mod report;
mod window;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use accept::{Accepts, DispatchRace, Race};
use city::City;
use report::{Figure, Table};

/// The engine allocates here as `dispatchd` does (its default feature `mimalloc`); Redis
/// uses jemalloc, PostgreSQL its own memory contexts.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// Where the peers are and how big the run is.
struct Args {
    /// Redis as it ships (in memory; RDB snapshots as configured by default, no AOF).
    redis: Option<String>,
    /// Redis with `appendonly yes`, `appendfsync always` (durable like dispatch's WAL).
    redis_aof: Option<String>,
    /// PostgreSQL with PostGIS, `fsync=on`, `synchronous_commit=on`.
    postgres: Option<String>,
    drivers: u64,
    queries: usize,
    /// Where dispatch's WALs go: the same disk as PostgreSQL's data, for a fair fsync.
    data_dir: PathBuf,
    /// The Markdown table is also written here.
    out: Option<PathBuf>,
    /// Run one phase only (`nearest`, `accept` or `ingest`), e.g. to profile it.
    only: Option<String>,
}

fn parse_args() -> Fallible<Args> {
    let mut args = Args {
        redis: None,
        redis_aof: None,
        postgres: None,
        drivers: 100_000,
        queries: 5_000,
        data_dir: std::env::temp_dir(),
        out: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--redis" => args.redis = Some(value()?),
            "--redis-aof" => args.redis_aof = Some(value()?),
            "--postgres" => args.postgres = Some(value()?),
            "--drivers" => args.drivers = value()?.parse()?,
            "--queries" => args.queries = value()?.parse()?,
            "--data-dir" => args.data_dir = value()?.into(),
            "--out" => args.out = Some(value()?.into()),
            "--only" => args.only = Some(value()?),
            other => return Err(format!("unknown argument {other} (see the crate docs)").into()),
        }
    }
    Ok(args)
}

fn redis_connection(url: &str) -> Fallible<redis::Connection> {
    Ok(redis::Client::open(url)?.get_connection()?)
}

fn redis_settings(con: &mut redis::Connection) -> Fallible<String> {
    let mut out = Vec::new();
    for key in ["appendonly", "appendfsync", "save"] {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(key).query(con)?;
        out.push(format!("{key}={:?}", pair.get(1).cloned().unwrap_or_default()));
    }
    let info: String = redis::cmd("INFO").arg("server").query(con)?;
    let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
    Ok(format!("Redis {version} ({})", out.join(", ")))
}

fn postgres_settings(client: &mut postgres::Client) -> Fallible<String> {
    let mut out = Vec::new();
    for key in ["fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "commit_delay", "shared_buffers"]
    {
        let row = client.query_one(&format!("SHOW {key}"), &[])?;
        out.push(format!("{key}={}", row.get::<_, String>(0)));
    }
    let version: String = client.query_one("SELECT split_part(version(), ' ', 2)", &[])?.get(0);
    let postgis: String = client.query_one("SELECT postgis_lib_version()", &[])?.get(0);
    Ok(format!("PostgreSQL {version}, PostGIS {postgis} ({})", out.join(", ")))
}

fn micros(d: std::time::Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn nearest_phase(args: &Args, city: &City, table: &mut Table) -> Fallible<dispatch_core::geo::DriverIndex> {
    println!("\n==> nearest 10 of {} drivers, radius 5 km, {} queries", city.drivers.len(), city.queries.len());
    let index = nearest::dispatch_index(city);
    let ours = nearest::dispatch(city, &index);
    let short = city.queries.len() - ours.ids.iter().filter(|a| a.len() == nearest::LIMIT).count();
    table.note(format!(
        "nearest: dispatch answered {} queries in process; {short} found fewer than 10 drivers within 5 km",
        ours.latencies.len()
    ));
    let mut peers: Vec<(&str, nearest::Answers)> = Vec::new();
    if let Some(url) = &args.redis {
        let mut con = redis_connection(url)?;
        nearest::redis_load(&mut con, "drivers", city)?;
        let ping = nearest::round_trip(|| drop(redis::cmd("PING").query::<String>(&mut con)));
        table.note(format!("Redis loopback round trip (PING), median: {}", micros(ping)));
        peers.push(("Redis GEOSEARCH, 5 km radius", nearest::redis(&mut con, "drivers", city, nearest::RADIUS_M)?));
        // The usual stack's tuning: a radius just large enough for 10 drivers in a dense city.
        peers.push(("Redis GEOSEARCH, 1 km radius", nearest::redis(&mut con, "drivers", city, 1_000.0)?));
    }
    if let Some(url) = &args.postgres {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        nearest::postgis_load(&mut client, city)?;
        table.note(format!("PostGIS plan: {}", nearest::postgis_plan(&mut client, city.queries[0])?));
        let select1 = client.prepare("SELECT 1")?;
        let rt = nearest::round_trip(|| drop(client.query(&select1, &[])));
        table.note(format!("PostgreSQL loopback round trip (prepared SELECT 1), median: {}", micros(rt)));
        peers.push(("PostGIS KNN", nearest::postgis(&mut client, city)?));
    }
    for (q, label) in [(0.5, "median"), (0.99, "p99")] {
        let ours_q = Figure::latency(ours.latencies.quantile(q));
        let name =
            format!("nearest 10 of {}k, {label} (dispatch in process; peer over loopback)", city.drivers.len() / 1000);
        if peers.is_empty() {
            table.row(name.clone(), ours_q, None);
        }
        for (peer, answers) in &peers {
            table.row(name.clone(), ours_q, Some((peer, Figure::latency(answers.latencies.quantile(q)))));
        }
    }
    for (peer, answers) in &peers {
        let a = nearest::agreement(city, &ours, answers);
        table.note(format!(
            "{peer} vs dispatch: {} of {} queries differ ({} ids); the peer's extra drivers are at most {:.2} m \
             farther than dispatch's 10th",
            a.differing_queries, a.queries, a.differing_ids, a.worst_excess_m
        ));
    }
    Ok(index)
}

fn accept_note(side: &str, a: &Accepts) -> String {
    format!(
        "{side}: {} attempts, {} won, {} told the trip was taken, {} other answers, double assignments {}",
        a.attempts, a.wins, a.conflicts, a.unexpected, a.double_assignments
    )
}

/// Returns whether both sides were free of double assignments and unexpected answers.
fn accept_phase(args: &Args, table: &mut Table) -> Fallible<bool> {
    let race = Race { cells: 1_000, racers: 4, rounds: 5, clients: 32 };
    println!(
        "\n==> accepts: {} trips x {} rounds, {} drivers racing each, {} clients",
        race.cells, race.rounds, race.racers, race.clients
    );
    let dir = tempfile::tempdir_in(&args.data_dir)?;
    let engine = DispatchRace::open(dir.path(), race)?;
    let ours = engine.run(race)?;
    let all = Race { clients: race.cells * race.racers, ..race };
    let ours_all = engine.run(all)?;
    engine.close()?;
    let mut clean = ours.double_assignments == 0 && ours.unexpected == 0;
    clean &= ours_all.double_assignments == 0 && ours_all.unexpected == 0;
    table.note(accept_note("dispatch, 32 in flight", &ours));
    table.note(accept_note(&format!("dispatch, {} in flight", all.clients), &ours_all));
    let theirs = match &args.postgres {
        Some(url) => {
            let theirs = accept::postgres(url, race)?;
            table.note(accept_note("PostgreSQL, 32 connections", &theirs));
            clean &= theirs.double_assignments == 0 && theirs.unexpected == 0;
            Some(theirs)
        }
        None => None,
    };
    let peer = "PostgreSQL";
    let label = "accept, 32 clients, 4 racing per trip, durable";
    table.row(
        format!("{label}: attempts/s"),
        Figure::rate(ours.attempts, ours.elapsed),
        theirs.as_ref().map(|t| (peer, Figure::rate(t.attempts, t.elapsed))),
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        table.row(
            format!("{label}: latency {name}"),
            Figure::latency(ours.latencies.quantile(q)),
            theirs.as_ref().map(|t| (peer, Figure::latency(t.latencies.quantile(q)))),
        );
    }
    table.row(
        format!("accept, all {} of a round in flight (dispatch only): attempts/s", all.clients),
        Figure::rate(ours_all.attempts, ours_all.elapsed),
        None,
    );
    Ok(clean)
}

fn ingest_phase(
    args: &Args,
    city: &City,
    index: &mut dispatch_core::geo::DriverIndex,
    table: &mut Table,
) -> Fallible<()> {
    println!("\n==> location updates: {} reports", city.moves.len());
    let alone = ingest::dispatch_index(city, index);
    let memory = ingest::DispatchIngest::open(None, city)?;
    let ours_memory = memory.run(city);
    memory.close()?;
    let dir = tempfile::tempdir_in(&args.data_dir)?;
    let durable = ingest::DispatchIngest::open(Some(dir.path()), city)?;
    let ours_durable = durable.run(city);
    durable.close()?;
    table.note(format!(
        "dispatch engines refused {} location reports (must be 0)",
        ours_memory.refused + ours_durable.refused
    ));
    // Each engine against the Redis of the same durability.
    let mut pairs = Vec::new();
    let memory_peer = match &args.redis {
        Some(url) => Some(ingest::redis(&mut redis_connection(url)?, "drivers", city)?),
        None => None,
    };
    pairs.push(("in memory", &ours_memory, "Redis GEOADD (in memory)", memory_peer));
    let durable_peer = match &args.redis_aof {
        Some(url) => {
            let mut con = redis_connection(url)?;
            nearest::redis_load(&mut con, "drivers", city)?;
            Some(ingest::redis(&mut con, "drivers", city)?)
        }
        None => None,
    };
    pairs.push(("WAL + fsync", &ours_durable, "Redis GEOADD (AOF, fsync always)", durable_peer));
    for (kind, ours, peer, theirs) in &pairs {
        table.row(
            format!("location updates, batches of {}, engine {kind} vs GEOADD pipelined", ingest::PIPELINE),
            ours.pipelined,
            theirs.map(|(p, _)| (*peer, p)),
        );
    }
    for (kind, ours, peer, theirs) in &pairs {
        table.row(
            format!("location updates, one at a time, engine {kind} (in process) vs GEOADD (loopback)"),
            ours.one_caller,
            theirs.map(|(_, u)| (*peer, u)),
        );
    }
    table.row(
        "location updates: DriverIndex::upsert alone vs GEOADD pipelined (in memory)",
        alone,
        memory_peer.map(|(p, _)| ("Redis GEOADD (in memory)", p)),
    );
    Ok(())
}

/// The 1-minute load average (`/proc/loadavg`): other work sharing the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Median and p99 of a 4 KiB append + `fdatasync` in `dir`: the floor under every durable
/// commit of dispatch and PostgreSQL (both write there), measured in the same run.
fn raw_fsync(dir: &std::path::Path) -> Fallible<String> {
    use std::io::Write as _;
    let dir = tempfile::tempdir_in(dir)?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let block = [0xA5u8; 4096];
    let mut samples = Vec::with_capacity(300);
    for _ in 0..300 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(start.elapsed());
    }
    let l = report::Latencies::new(samples);
    Ok(format!("raw 4 KiB append + fdatasync there: p50 {}, p99 {}", micros(l.quantile(0.5)), micros(l.quantile(0.99))))
}

fn run() -> Fallible<bool> {
    let args = parse_args()?;
    let mut table = Table::default();
    let started = Instant::now();
    if let Some(url) = &args.redis {
        table.note(format!("in-memory Redis: {}", redis_settings(&mut redis_connection(url)?)?));
    }
    if let Some(url) = &args.redis_aof {
        table.note(format!("durable Redis: {}", redis_settings(&mut redis_connection(url)?)?));
    }
    if let Some(url) = &args.postgres {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        client.batch_execute("CREATE EXTENSION IF NOT EXISTS postgis")?;
        table.note(postgres_settings(&mut client)?);
    }
    table.note(format!("dispatch's WAL directory: {}; {}", args.data_dir.display(), raw_fsync(&args.data_dir)?));
    table.note(format!("load average (1 min) at the start: {}", load_average()));
    let city = City::new(args.drivers, args.queries, 2);
    let wants = |phase: &str| args.only.as_deref().is_none_or(|only| only == phase);
    let mut index =
        if wants("nearest") { nearest_phase(&args, &city, &mut table)? } else { nearest::dispatch_index(&city) };
    let clean = if wants("accept") { accept_phase(&args, &mut table)? } else { true };
    if wants("ingest") {
        ingest_phase(&args, &city, &mut index, &mut table)?;
    }
    table.note(format!(
        "whole run: {:.0} s; load average (1 min) at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    let markdown = table.markdown();
    println!("\n{markdown}");
    if let Some(out) = &args.out {
        std::fs::write(out, &markdown)?;
    }
    Ok(clean)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("dispatch-peers: a double assignment or an unexpected answer (see the notes)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("dispatch-peers: {e:?}");
            ExitCode::from(2)
        }
    }
}
