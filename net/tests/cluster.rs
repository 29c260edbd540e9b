//! Black-box tests of `dispatchd` as a cluster (issue 21; API.md "Cluster"): three nodes
//! on one command log on NATS JetStream, three NATS servers clustered on loopback.
//!
//! REQUIRED by issue 21, and run after the merge of the whole issue: the end-to-end
//! tests below (`three_nodes_*`, `a_stopped_leader_*`, `losing_one_nats_server_*`) need
//! `dispatch-cluster` (the stream, the lease) and the engine's follower/leader modes,
//! which other parts of the issue build; before those land, `dispatchd serve --cluster`
//! stops at start-up ("not built yet") and these tests fail saying so. They also need
//! `nats-server` (PATH or /usr/sbin/nats-server: scripts/deps.sh). The standalone tests
//! at the end run on their own.
//!
//! Nothing here depends on the machine's speed: waits are for a state, bounded by
//! generous deadlines; the failover time is recorded (printed), and only a generous bound
//! (15 s) is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::nats::{NatsCluster, free_port};
use common::*;
use hyper::Method;
use serde_json::{Value, json};

/// `[cluster] lease_ms` of the nodes under test.
const LEASE_MS: u64 = 1000;

/// One `dispatchd` of the cluster: its port (advertised), and the server while it runs.
struct Node {
    id: String,
    port: u16,
    server: Option<Server>,
    /// Its data directory, kept across a restart.
    dir: Option<tempfile::TempDir>,
}

struct TestCluster {
    nats: NatsCluster,
    nodes: Vec<Node>,
}

fn config() -> String {
    format!("[cluster]\nlease_ms = {LEASE_MS}\nreplicas = 3\n")
}

impl TestCluster {
    fn start(nats: NatsCluster, n: usize) -> TestCluster {
        let mut c = TestCluster { nats, nodes: Vec::new() };
        for i in 1..=n {
            let node = Node { id: format!("n{i}"), port: free_port(), server: None, dir: None };
            c.nodes.push(node);
            c.boot(i - 1, tempfile::tempdir().unwrap());
        }
        c
    }

    /// Starts node `i` on `dir`.
    fn boot(&mut self, i: usize, dir: tempfile::TempDir) {
        self.boot_with(i, dir, &[], &config());
    }

    /// Starts node `i` on `dir` with `extra` flags and the configuration file `toml`.
    fn boot_with(&mut self, i: usize, dir: tempfile::TempDir, extra: &[&str], toml: &str) {
        let urls = self.nats.urls();
        let node = &mut self.nodes[i];
        let listen = format!("127.0.0.1:{}", node.port);
        let advertise = format!("http://127.0.0.1:{}", node.port);
        let mut args = vec!["--cluster", &urls, "--node-id", &node.id, "--advertise", &advertise];
        args.extend_from_slice(extra);
        node.server = Some(Server::start_on(dir, &listen, &args, Some(toml), &[]));
    }

    /// SIGKILLs node `i`, keeping its data directory.
    fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut s = node.server.take().unwrap();
        let _ = s.child.kill();
        let _ = s.child.wait();
        node.dir = Some(std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap()));
    }

    /// Starts node `i` again on the data directory it had.
    fn restart(&mut self, i: usize) {
        let dir = self.nodes[i].dir.take().unwrap();
        self.boot(i, dir);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].server.is_some()).collect()
    }

    fn server(&self, i: usize) -> &Server {
        self.nodes[i].server.as_ref().unwrap()
    }

    /// `GET /v1/cluster` of node `i` (`None`: it did not answer).
    async fn status(&self, i: usize) -> Option<Value> {
        let s = self.nodes[i].server.as_ref()?;
        let r = tokio::time::timeout(Duration::from_secs(3), s.get("/v1/cluster", ADMIN)).await.ok()?;
        (r.status == 200).then_some(r.json)
    }

    /// Waits until exactly one of `among` says it leads and every other one names it as
    /// its leader; the leader's index.
    async fn one_leader(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut statuses = Vec::new();
            for &i in among {
                statuses.push((i, self.status(i).await));
            }
            let leaders: Vec<usize> = statuses
                .iter()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s["role"] == "leader"))
                .map(|(i, _)| *i)
                .collect();
            if let [leader] = leaders[..] {
                let id = &self.nodes[leader].id;
                let agreed = statuses.iter().all(|(_, s)| s.as_ref().is_some_and(|s| s["leader"]["node_id"] == **id));
                if agreed {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no single leader among {among:?}: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A write through node `first` (then the others, in turn) with one
    /// `Idempotency-Key`, retried on 503 and on a node that does not answer, until it is
    /// answered otherwise.
    async fn write(&self, first: usize, path: &str, token: &str, body: &Value, key: &str) -> Reply {
        let deadline = Instant::now() + WAIT;
        let n = self.nodes.len();
        let mut k = first;
        let text = body.to_string();
        let headers = [("Idempotency-Key", key)];
        loop {
            if let Some(s) = self.nodes[k % n].server.as_ref() {
                let call = s.call_with(Method::POST, path, Some(token), Some(&text), &headers);
                if let Ok(r) = tokio::time::timeout(Duration::from_secs(10), call).await {
                    // A 401 for a user made a moment ago through another node: this node has
                    // not applied it yet (nodes converge; read-your-writes holds per node).
                    if r.status != 503 && r.status != 401 {
                        return r;
                    }
                    if r.status == 503 {
                        assert!(r.header("retry-after").is_some(), "a 503 says when to retry: {}", r.text);
                    }
                }
            }
            assert!(Instant::now() < deadline, "{path}: no node took the write");
            k += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `i` shows trip `id` (`GET /v1/trips/{id}` as the admin).
    async fn trip_on(&self, i: usize, id: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.server(i).get(&format!("/v1/trips/{id}"), ADMIN).await;
            if r.status == 200 {
                return r.json;
            }
            if Instant::now() >= deadline {
                let mut statuses = Vec::new();
                for k in self.live() {
                    statuses.push((k, self.status(k).await));
                }
                let log = self.server(i).stderr();
                let tail: Vec<&str> =
                    log.lines().filter(|l| !l.contains("\"message\":\"request\"")).rev().take(15).collect();
                panic!("node {i} never showed trip {id}: {}; /v1/cluster: {statuses:?}; log tail: {tail:#?}", r.text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small city through random nodes: the zone, `drivers` online drivers; (driver ids
/// and tokens).
async fn city(c: &TestCluster, drivers: u32) -> Vec<(String, String)> {
    let r = c.write(0, "/v1/admin/zones", ADMIN, &cairo_zone(), "zone-1").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut out = Vec::new();
    for n in 0..drivers {
        let body = json!({"role": "driver", "name": format!("driver {n}"), "phone": format!("+2010{:08}", 500 + n),
            "vehicle": {"category": "economy", "plate": format!("CAI {n}")}});
        let r = c.write(n as usize, "/v1/admin/users", ADMIN, &body, &format!("driver-{n}")).await;
        assert!(matches!(r.status, 200 | 201), "{}", r.text);
        let (id, token) =
            (r.json["user"]["id"].as_str().unwrap().to_owned(), r.json["token"].as_str().unwrap().to_owned());
        let online = json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}});
        let r = c.write(n as usize + 1, "/v1/driver/status", &token, &online, &format!("online-{n}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.push((id, token));
    }
    out
}

/// Books a trip for a new rider `n` through node `via` (retried with one key), and has
/// the first free driver that was offered it accept it. (trip id, driver id if accepted).
async fn book(
    c: &TestCluster,
    n: u32,
    via: usize,
    drivers: &[(String, String)],
    busy: &mut BTreeSet<String>,
) -> (String, Option<String>) {
    let body = json!({"role": "rider", "name": format!("rider {n}"), "phone": format!("+2011{:08}", n)});
    let r = c.write(via, "/v1/admin/users", ADMIN, &body, &format!("rider-{n}")).await;
    assert!(matches!(r.status, 200 | 201), "{}", r.text);
    let rider = r.json["token"].as_str().unwrap().to_owned();
    let trip = json!({"pickup": {"lat": HERE.0, "lng": HERE.1, "address": "Tahrir"},
        "dropoff": {"lat": 30.06, "lng": 31.25}, "category": "economy", "payment_method": "cash"});
    let r = c.write(via + 1, "/v1/trips", &rider, &trip, &format!("trip-{n}")).await;
    assert!(matches!(r.status, 200 | 201), "a booking was told {}: {}", r.status, r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    for (k, (driver_id, token)) in drivers.iter().enumerate() {
        if busy.contains(driver_id) {
            continue;
        }
        let r =
            c.write(via + k, &format!("/v1/trips/{id}/accept"), token, &json!({}), &format!("accept-{n}-{k}")).await;
        if r.status == 200 {
            busy.insert(driver_id.clone());
            return (id, Some(driver_id.clone()));
        }
    }
    (id, None)
}

/// Every trip in `told` is on node `i`, and no driver holds two open trips there.
async fn check_node(c: &TestCluster, i: usize, told: &BTreeMap<String, Option<String>>) {
    let mut open_by_driver: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, accepted_by) in told {
        let t = c.trip_on(i, id).await;
        if let Some(d) = accepted_by {
            // The driver the client was told got it, and no one else.
            let deadline = Instant::now() + WAIT;
            let mut t = t.clone();
            while t["driver_id"] != json!(d) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                t = c.trip_on(i, id).await;
            }
            assert_eq!(t["driver_id"], json!(d), "node {i}: trip {id}: {t}");
        }
        let status = t["status"].as_str().unwrap_or_default();
        let open = !matches!(status, "completed" | "cancelled" | "expired" | "no_driver");
        if let (true, Some(d)) = (open, t["driver_id"].as_str()) {
            open_by_driver.entry(d.to_owned()).or_default().push(id.clone());
        }
    }
    for (d, trips) in open_by_driver {
        assert!(trips.len() <= 1, "node {i}: driver {d} is on several open trips: {trips:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_survive_its_kill_and_lose_no_acknowledged_trip() {
    let mut c = TestCluster::start(NatsCluster::start(3), 3);
    let leader = c.one_leader(&[0, 1, 2]).await;
    let drivers = city(&c, 8).await;
    let mut busy = BTreeSet::new();
    let mut told: BTreeMap<String, Option<String>> = BTreeMap::new();
    for n in 0..4 {
        let (id, d) = book(&c, n, n as usize, &drivers, &mut busy).await;
        told.insert(id, d);
    }
    // A follower's write is forwarded, and says by whom.
    let follower = (leader + 1) % 3;
    let body = json!({"role": "rider", "name": "via a follower", "phone": "+201188888888"});
    let r =
        c.server(follower).call_with(Method::POST, "/v1/admin/users", Some(ADMIN), Some(&body.to_string()), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("x-dispatch-forwarded-by"), Some(c.nodes[leader].id.as_str()));
    // Read-your-writes through the same follower.
    let id = r.json["user"]["id"].as_str().unwrap();
    c.server(follower).get(&format!("/v1/admin/users/{id}"), ADMIN).await.expect(200);
    // The leader dies mid-way.
    c.kill(leader);
    let killed_at = Instant::now();
    let survivors = c.live();
    let new_leader = c.one_leader(&survivors).await;
    let failover = killed_at.elapsed();
    println!("failover: a new leader ({}) answered {failover:?} after the kill", c.nodes[new_leader].id);
    assert_ne!(new_leader, leader);
    assert!(failover < Duration::from_secs(15), "failover took {failover:?}");
    for n in 4..8 {
        let (id, d) = book(&c, n, n as usize, &drivers, &mut busy).await;
        told.insert(id, d);
    }
    for &i in &survivors {
        check_node(&c, i, &told).await;
    }
    // The killed node comes back, on its data directory, as a follower with every trip.
    c.restart(leader);
    let all = [0, 1, 2];
    let now_leader = c.one_leader(&all).await;
    assert_ne!(now_leader, leader, "the restarted node follows: the lease is held");
    check_node(&c, leader, &told).await;
    let s = c.status(leader).await.unwrap();
    assert_eq!(s["role"], "follower");
    // Readiness of the leader's pool.
    let r = c.server(leader).call(Method::GET, "/readyz?role=leader", None, None).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["checks"]["role"], "follower");
    c.server(now_leader).call(Method::GET, "/readyz?role=leader", None, None).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_and_commits_nothing_after_it_wakes() {
    let c = TestCluster::start(NatsCluster::start(3), 3);
    let leader = c.one_leader(&[0, 1, 2]).await;
    let drivers = city(&c, 4).await;
    let mut busy = BTreeSet::new();
    let mut told: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (id, d) = book(&c, 0, 0, &drivers, &mut busy).await;
    told.insert(id, d);
    // SIGSTOP the leader past its lease.
    let pid = c.server(leader).child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c.one_leader(&others).await;
    assert_ne!(new_leader, leader);
    for n in 1..3 {
        let (id, d) = book(&c, n, new_leader, &drivers, &mut busy).await;
        told.insert(id, d);
    }
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    // The old leader commits nothing: a write sent to it is refused (503) or forwarded to
    // the new leader, never applied by itself.
    let body = json!({"role": "rider", "name": "late rider", "phone": "+201199999999"});
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c
            .server(leader)
            .call_with(
                Method::POST,
                "/v1/admin/users",
                Some(ADMIN),
                Some(&body.to_string()),
                &[("Idempotency-Key", "late-1")],
            )
            .await;
        match r.status {
            503 => assert_eq!(r.json["error"]["code"], "not_leader", "{}", r.text),
            200 | 201 => {
                assert_eq!(r.header("x-dispatch-forwarded-by"), Some(c.nodes[new_leader].id.as_str()), "{}", r.text);
                break;
            }
            other => panic!("the woken old leader answered {other}: {}", r.text),
        }
        assert!(Instant::now() < deadline, "the old leader never forwarded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.one_leader(&[0, 1, 2]).await, new_leader, "the woken node follows");
    // Every acknowledged trip is on the new leader, and the old one's state converges to it.
    check_node(&c, new_leader, &told).await;
    check_node(&c, leader, &told).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_nats_server_keeps_writes_acknowledged() {
    let mut c = TestCluster::start(NatsCluster::start(3), 3);
    c.one_leader(&[0, 1, 2]).await;
    let drivers = city(&c, 2).await;
    let mut busy = BTreeSet::new();
    let mut told: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (id, d) = book(&c, 0, 0, &drivers, &mut busy).await;
    told.insert(id, d);
    c.nats.servers[0].kill();
    for n in 1..4 {
        let (id, d) = book(&c, n, n as usize, &drivers, &mut busy).await;
        told.insert(id, d);
    }
    for i in c.live() {
        check_node(&c, i, &told).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_empty_data_dir_catches_up_from_the_leaders_checkpoint_once_the_stream_was_purged() {
    // Checkpoints every 10 records, and the leader purges the stream up to each one.
    let toml = format!("{}[store]\ncheckpoint_every_records = 10\n", config());
    let purging = ["--cluster-retain-records", "0"];
    let nodes = (1..=2).map(|i| Node { id: format!("n{i}"), port: free_port(), server: None, dir: None }).collect();
    let mut c = TestCluster { nats: NatsCluster::start(3), nodes };
    c.boot_with(0, tempfile::tempdir().unwrap(), &purging, &toml);
    assert_eq!(c.one_leader(&[0]).await, 0);
    // The checkpoint is cluster-internal: unsigned, or signed with a made-up signature, 403.
    let forged = [("X-Dispatch-Forwarded", "n9"), ("X-Dispatch-Forwarded-Auth", "1.00")];
    for headers in [&[][..], &forged[..]] {
        let r = c.server(0).call_with(Method::GET, "/v1/cluster/checkpoint", Some(ADMIN), None, headers).await;
        r.expect_error(403, "forbidden");
    }
    // 60 users: several checkpoints, each followed by a purge.
    let mut users = Vec::new();
    for n in 0..60 {
        let body = json!({"role": "rider", "name": format!("rider {n}"), "phone": format!("+2012{:08}", n)});
        let r = c.write(0, "/v1/admin/users", ADMIN, &body, &format!("user-{n}")).await;
        assert_eq!(r.status, 201, "{}", r.text);
        users.push(r.json["user"]["id"].as_str().unwrap().to_owned());
    }
    // n2 starts on an empty data directory: LSN 1 is gone from the stream, so it fetches
    // the leader's checkpoint and follows from there.
    c.boot_with(1, tempfile::tempdir().unwrap(), &purging, &toml);
    assert_eq!(c.one_leader(&[0, 1]).await, 0, "n2 follows");
    for id in &users {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = c.server(1).get(&format!("/v1/admin/users/{id}"), ADMIN).await;
            if r.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "n2 never showed user {id}: {} {}", r.status, r.text);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(c.status(1).await.unwrap()["role"], "follower");
    // It caught up from the checkpoint, not by replaying the stream: the stream no longer
    // held the first record (the engine's first open failed for it).
    let log = c.server(1).stderr();
    let says = |what: &str| log.lines().any(|l| l.contains(what));
    assert!(says("the stream was purged below this node's checkpoint"), "{log}");
    assert!(says("fetched a checkpoint from the leader"), "{log}");
    assert!(says("caught up from the leader's checkpoint"), "{log}");
    assert!(c.server(0).stderr().lines().any(|l| l.contains("sending a checkpoint to a peer")));
    // Nothing is left of the transfer in either data directory.
    for i in 0..2 {
        let data = c.server(i).dir.path().join("data");
        let names: Vec<String> =
            std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.contains(".fetch") || n.contains(".serve-")), "node {i}: {names:?}");
    }
}

// ----- Standalone: what a node without a cluster answers -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_has_no_cluster_status_and_always_leads() {
    let s = Server::start(&[], None);
    s.get("/v1/cluster", ADMIN).await.expect_error(404, "not_found");
    let r = s.call(Method::GET, "/readyz?role=leader", None, None).await;
    assert_eq!((r.status, &r.json["checks"]["role"]), (200, &json!("leader")), "{}", r.text);
    assert!(s.call(Method::GET, "/readyz", None, None).await.expect(200)["checks"].get("role").is_none());
    // The internal endpoint takes nothing unsigned.
    let forged = json!({"actor": "System", "command": "Tick"}).to_string();
    let r =
        s.call_with(Method::POST, "/v1/cluster/commands", None, Some(&forged), &[("X-Dispatch-Forwarded", "n9")]).await;
    r.expect_error(403, "forbidden");
    let r = s.call_with(Method::GET, "/v1/cluster/checkpoint", None, None, &[("X-Dispatch-Forwarded", "n9")]).await;
    r.expect_error(403, "forbidden");
    let metrics = s.get("/metrics", ADMIN).await.text;
    assert!(!metrics.contains("dispatch_cluster_role"), "a standalone node has no cluster metrics");
}

#[test]
fn bad_cluster_settings_stop_start_up_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--cluster", "nats://127.0.0.1:4222", "--advertise", "http://127.0.0.1:8081"], "node_id"),
        (vec!["--cluster", "nats://127.0.0.1:4222", "--node-id", "n 1", "--advertise", "http://x:1"], "node_id"),
        (vec!["--cluster", "nats://127.0.0.1:4222", "--node-id", "n1", "--advertise", "ftp://x"], "advertise_url"),
        (vec!["--cluster", "http://127.0.0.1:4222", "--node-id", "n1", "--advertise", "http://x:1"], "NATS URL"),
        (vec!["--node-id", "n1"], "nats_urls"),
    ] {
        let out = std::process::Command::new(dispatchd_bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let path = dir.path().join("bad.toml");
    for (toml, says) in [
        ("[cluster]\nreplicas = 6\n", "replicas"),
        ("[cluster]\nlease_ms = 100\n", "lease_ms"),
        ("[cluster]\nnope = 1\n", "unknown field"),
    ] {
        std::fs::write(&path, toml).unwrap();
        let out = std::process::Command::new(dispatchd_bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        assert!(stderr.contains(says), "{toml}: {stderr}");
    }
}
