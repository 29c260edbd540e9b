//! Cluster figures (issue 21), printed as a table, side by side in one run:
//!
//! - accepts through the writer on the local WAL (fsync per batch) and on a JetStream
//!   stream with 3 replicas on a 3-server NATS cluster on loopback (a batch is answered
//!   only after JetStream's ack, i.e. after a quorum stored it): throughput and
//!   per-accept latency with 2,000 accepts in flight, one caller at a time, and open loop
//!   at a steady 20,000 a second (each accept timed from its scheduled instant);
//! - a follower's lag: after each pipelined round is acknowledged on the leader, how long
//!   until a follower engine (its own data directory, replaying the stream) shows the
//!   round's last accept in its view;
//! - failover: the leader's lease keeper and engine stop as a crash would (the lease is
//!   not given up), and the time until the follower leads (it must first see the lease
//!   lapse: `lease_ms`, 1000 here), and until it takes a command.
//!
//! Run: `cargo bench --bench cluster` (needs `nats-server`: `bash scripts/deps.sh`
//! installs Debian's). `DISPATCH_BENCH_DIR` puts the data directories and the NATS stores
//! on another disk than the system temp dir.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch::scenario::{finish_grid_trips, grid_fleet, grid_rules, grid_trips};
use dispatch_cluster::{Cluster, ClusterConfig};
use dispatch_core::{Actor, Command, Engine, EngineConfig, Leadership, TripStatus};

mod common;
use common::{bench_dir, summary};

const DRIVERS: u64 = 2_000;
const ROUNDS: usize = 10;
const OPEN_LOOP_ROUNDS: usize = 10;
const OPEN_LOOP_PER_S: f64 = 20_000.0;
const LEASE_MS: u64 = 1_000;

/// A cluster node: its engine (a follower until the lease keeper grants it the lease and
/// it claims the stream), its cluster handle and its data directory.
struct Node {
    engine: Engine,
    cluster: Cluster,
    leadership: Arc<Leadership>,
    _dir: tempfile::TempDir,
}

fn node(urls: &[String], id: &str) -> Node {
    let cluster = Cluster::connect(ClusterConfig {
        nats_urls: urls.to_vec(),
        node_id: id.into(),
        advertise_url: format!("http://127.0.0.1:1/{id}"),
        stream: "BENCH".into(),
        replicas: 3,
        lease_ms: LEASE_MS,
        retain_records: dispatch_cluster::RETAIN_RECORDS,
    })
    .unwrap();
    let leadership = Arc::new(Leadership::new());
    let dir = bench_dir();
    let mut config = EngineConfig::default().with_rules(grid_rules()).with_data_dir(dir.path());
    config.log = Some(cluster.log_opener());
    config.leadership = Some(Arc::clone(&leadership));
    let engine = Engine::open(config).unwrap();
    cluster.start(Arc::clone(&leadership)).unwrap();
    Node { engine, cluster, leadership, _dir: dir }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

/// Accepts through `engine`, pipelined, one at a time and open loop; with `follower`, the
/// time until it shows each pipelined round's last accept.
fn accepts(label: &str, engine: &Engine, follower: Option<&Engine>) {
    let cells = grid_fleet(engine, DRIVERS).unwrap();
    if let Some(f) = follower {
        let last = cells.last().map(|c| c.0).unwrap();
        wait_for("the follower sees the fleet", Duration::from_secs(60), || f.driver(last).is_some());
    }
    let mut latencies = Vec::new();
    let mut lags = Vec::new();
    let mut busy = Duration::ZERO;
    for _ in 0..ROUNDS {
        let trips = grid_trips(engine, &cells).unwrap();
        let done = Arc::new(Mutex::new(Vec::with_capacity(cells.len())));
        let (tx, rx) = crossbeam_channel::unbounded();
        let start = Instant::now();
        for ((d, _, _), t) in cells.iter().zip(&trips) {
            let (done, tx, sent) = (Arc::clone(&done), tx.clone(), Instant::now());
            engine
                .submit_with(Actor::User(*d), Command::AcceptTrip { trip_id: t.id }, move |r| {
                    done.lock().unwrap().push(sent.elapsed());
                    let _ = tx.send(r.is_ok());
                })
                .unwrap();
        }
        assert!(rx.iter().take(cells.len()).all(|ok| ok));
        busy += start.elapsed();
        if let (Some(f), Some(last)) = (follower, trips.last()) {
            let id = last.id;
            lags.push(wait_for("the follower sees the round", Duration::from_secs(60), || {
                f.read(|v| v.trip(id).is_some_and(|t| t.status == TripStatus::Accepted))
            }));
        }
        latencies.extend(done.lock().unwrap().drain(..));
        finish_grid_trips(engine, &cells, &trips).unwrap();
    }
    let rate = latencies.len() as f64 / busy.as_secs_f64();
    summary(&format!("accept, {label}, 2,000 in flight"), latencies, Some(rate));
    if !lags.is_empty() {
        summary("  a follower's lag behind each round's last ack", lags, None);
    }

    let trips = grid_trips(engine, &cells).unwrap();
    let samples: Vec<Duration> = cells
        .iter()
        .zip(&trips)
        .take(500)
        .map(|((d, _, _), t)| {
            let s = Instant::now();
            engine.accept(*d, t.id).unwrap();
            s.elapsed()
        })
        .collect();
    let rate = samples.len() as f64 / samples.iter().sum::<Duration>().as_secs_f64();
    summary(&format!("accept, {label}, one caller at a time"), samples, Some(rate));
    // The rest of the round, so every trip can be finished.
    for ((d, _, _), t) in cells.iter().zip(&trips).skip(500) {
        engine.accept(*d, t.id).unwrap();
    }
    finish_grid_trips(engine, &cells, &trips).unwrap();

    let mut latencies = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / OPEN_LOOP_PER_S);
    for _ in 0..OPEN_LOOP_ROUNDS {
        let trips = grid_trips(engine, &cells).unwrap();
        let done = Arc::new(Mutex::new(Vec::with_capacity(cells.len())));
        let (tx, rx) = crossbeam_channel::unbounded();
        let round = Instant::now();
        for (i, ((d, _, _), t)) in cells.iter().zip(&trips).enumerate() {
            let due = round + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (done, tx) = (Arc::clone(&done), tx.clone());
            engine
                .submit_with(Actor::User(*d), Command::AcceptTrip { trip_id: t.id }, move |r| {
                    done.lock().unwrap().push(due.elapsed());
                    let _ = tx.send(r.is_ok());
                })
                .unwrap();
        }
        assert!(rx.iter().take(cells.len()).all(|ok| ok));
        latencies.extend(done.lock().unwrap().drain(..));
        finish_grid_trips(engine, &cells, &trips).unwrap();
    }
    summary(&format!("accept, {label}, open loop {OPEN_LOOP_PER_S:.0}/s"), latencies, Some(OPEN_LOOP_PER_S));
}

fn main() {
    println!("{:<48} {}", "machine", std::env::consts::ARCH);
    {
        let dir = bench_dir();
        let engine = Engine::open(EngineConfig::default().with_rules(grid_rules()).with_data_dir(dir.path())).unwrap();
        accepts("local WAL + fsync", &engine, None);
        engine.shutdown().unwrap();
    }

    let nats = dispatch_cluster::testing::nats_cluster(3);
    let urls = nats.urls();
    let n1 = node(&urls, "n1");
    wait_for("n1 leads", Duration::from_secs(30), || n1.leadership.is_leader());
    let n2 = node(&urls, "n2");
    accepts("JetStream R3", &n1.engine, Some(&n2.engine));

    // Failover: n1 stops as a crash would (its lease is not given up).
    wait_for("n2 is caught up", Duration::from_secs(60), || {
        n2.leadership.applied_lsn() >= n1.leadership.applied_lsn() && n2.leadership.is_caught_up()
    });
    let Node { engine, cluster, .. } = n1;
    let crashed = Instant::now();
    cluster.crash();
    drop(engine);
    let led = wait_for("n2 leads", Duration::from_secs(30), || n2.leadership.is_leader());
    let took = wait_for("n2 takes a command", Duration::from_secs(30), || n2.engine.tick().is_ok());
    println!(
        "{:<48} {:>9.1?} after the crash (lease {LEASE_MS} ms); first command {:>9.1?} later",
        "failover: the follower leads", led, took
    );
    let _ = crashed;
    n2.cluster.shutdown();
    n2.engine.shutdown().unwrap();
}
