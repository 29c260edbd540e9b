//! Black-box tests of `dispatch-loadgen`, the built binary: its JSON report is one object
//! whose figures agree with each other, its thresholds set the exit code (0 held, 3
//! broken, 2 for a threshold it cannot parse), and it runs — without a panic — against a
//! `dispatchd --dev --demo` whose demo city already has people (it once panicked there:
//! its phone numbers collided with the demo's), twice in a row against the same server.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN, Server};
use serde_json::Value;

/// What one run of the load generator left.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON report on stdout.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// Runs `dispatch-loadgen` with `args`; kills it (and fails) past a minute.
/// `DISPATCH_LOADGEN_BIN` runs another build (`--spawn` starts the `dispatchd` beside it).
fn loadgen(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let bin =
        std::env::var("DISPATCH_LOADGEN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dispatch-loadgen").to_owned());
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dispatch-loadgen {args:?} did not end; stderr:\n{}", std::fs::read_to_string(&err).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "dispatch-loadgen panicked:\n{}", run.stderr);
    run
}

/// Checks that a JSON report's figures agree with each other.
fn assert_coherent(v: &Value) {
    let n =
        |path: &str| v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {path} in {v}"));
    let booked = n("/trips/booked");
    assert!(booked > 0.0, "no trip booked: {v}");
    assert!(n("/trips/won") <= booked, "more trips won than booked: {v}");
    assert!(n("/trips/accepted") >= n("/trips/won"), "a won trip without an accepted answer: {v}");
    assert!(n("/trips/completed") <= n("/trips/accepted"), "more completed than accepted: {v}");
    assert_eq!(n("/trips/accepted"), n("/trips/won"), "a trip accepted twice: {v}");
    let endpoints = v["endpoints"].as_array().expect("endpoints");
    let book = endpoints.iter().find(|e| e["name"] == "POST /v1/trips").expect("the booking endpoint");
    assert!(book["count"].as_f64().unwrap() >= booked, "fewer bookings sent than trips booked: {v}");
    let mut http = 0.0;
    for e in endpoints {
        let f = |k: &str| e[k].as_f64().unwrap_or_else(|| panic!("no {k} in {e}"));
        assert!(f("p50_ms") <= f("p95_ms") && f("p95_ms") <= f("p99_ms") && f("p99_ms") <= f("max_ms"), "{e}");
        assert!(f("errors") + f("race_losses") <= f("count"), "{e}");
        if !e["name"].as_str().unwrap().starts_with("ws ") {
            http += f("count");
        }
    }
    assert_eq!(n("/http/requests"), http, "HTTP requests are not the endpoints' sum: {v}");
    let errors: f64 = v["errors"]["by_code"].as_array().unwrap().iter().map(|e| e["count"].as_f64().unwrap()).sum();
    assert_eq!(n("/errors/count"), errors);
    let races: f64 = v["race_losses"]["by_code"].as_array().unwrap().iter().map(|e| e["count"].as_f64().unwrap()).sum();
    assert_eq!(n("/race_losses/count"), races);
    assert!((0.0..=1.0).contains(&n("/errors/rate")));
    assert_eq!(n("/correctness/lost_acknowledged_trips"), 0.0, "{v}");
    assert_eq!(n("/correctness/trips_won_twice"), 0.0, "{v}");
    assert_eq!(n("/correctness/drivers_holding_two_open_trips"), 0.0, "{v}");
}

const SPAWNED: &[&str] =
    &["--spawn", "--seconds", "3", "--drivers", "20", "--riders", "10", "--trip-rate", "5", "--fanout", "0", "--json"];

#[test]
fn a_spawned_run_reports_coherent_json_and_exits_0_when_its_thresholds_hold() {
    let mut args = SPAWNED.to_vec();
    args.extend(["--max-p99-ms", "accept=60000", "--max-error-rate", "0.2", "--min-trips", "1"]);
    let run = loadgen(&args);
    assert_eq!(run.code, Some(0), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_coherent(&v);
    assert_eq!(v["exit_code"], 0);
    assert!(v["fanout"].is_null() && v["ops"].is_null(), "{v}");
    let verdicts = v["thresholds"].as_array().unwrap();
    assert_eq!(verdicts.len(), 3, "{v}");
    assert!(verdicts.iter().all(|t| t["ok"] == true), "{v}");
    // A held accept threshold means accepts were measured: trips were won.
    assert!(v["trips"]["won"].as_u64().unwrap() > 0, "{v}");
}

/// The 100,000-driver run's ways, small: drivers connect before the clock starts
/// (`--warmup`), a few at a time, their connections leaving from three loopback addresses
/// (each bound before it connects: a failed bind would fail the driver), users are created
/// four at a time, and the report has the SLO table, the positions sent and both
/// processes' CPU and memory.
#[test]
fn a_warmed_up_run_from_several_addresses_reports_slos_positions_and_usage() {
    let args = [
        "--spawn",
        "--seconds",
        "3",
        "--drivers",
        "24",
        "--riders",
        "6",
        "--trip-rate",
        "4",
        "--fanout",
        "20",
        "--fanout-trips",
        "1",
        "--location-ms",
        "500",
        "--warmup",
        "--source-ips",
        "3",
        "--connect-concurrency",
        "5",
        "--setup-concurrency",
        "4",
        "--json",
    ];
    let run = loadgen(&args);
    assert_eq!(run.code, Some(0), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_coherent(&v);
    assert_eq!(v["drivers_connected"]["ok"], 24, "every driver online with a socket: {v}");
    assert_eq!(v["drivers_connected"]["failed"], 0, "{v}");
    // 24 drivers every 0.5 s for 3 s: about 140 positions; the clock started after the
    // warm-up, so nearly all of them are in.
    let positions = v["positions"]["sent"].as_u64().unwrap();
    assert!((100..=200).contains(&positions), "positions sent {positions}: {v}");
    let ws_location = v["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == "ws location (send)").unwrap();
    let location = v["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == "POST /v1/driver/location");
    let over_http = location.map_or(0, |e| e["count"].as_u64().unwrap());
    assert_eq!(ws_location["count"].as_u64().unwrap() + over_http, positions, "{v}");
    let slo = v["slo"].as_array().unwrap();
    let names: Vec<&str> = slo.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"POST /v1/trips") && names.contains(&"fan-out to the sockets (the last one)"), "{v}");
    for row in slo {
        let measured: Vec<Option<f64>> =
            row["limits"].as_array().unwrap().iter().map(|l| l["measured_ms"].as_f64()).collect();
        let under = row["limits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["measured_ms"].as_f64().is_some_and(|m| m < l["limit_ms"].as_f64().unwrap()));
        assert_eq!(row["met"].as_bool().unwrap(), under, "met? disagrees with its figures {measured:?}: {row}");
    }
    let fanout = slo.iter().find(|r| r["name"] == "fan-out to the sockets (the last one)").unwrap();
    assert_eq!(fanout["count"], 4, "one trip's four changes: {fanout}");
    for who in ["server", "generator"] {
        let u = &v["usage"][who];
        assert!(u["cpu_s"].as_f64().unwrap() > 0.0, "{who}: {v}");
        let (rss, peak) = (u["rss_bytes"].as_u64().unwrap(), u["peak_rss_bytes"].as_u64().unwrap());
        assert!(rss > 1 << 20 && peak >= rss, "{who}: {u}");
    }
}

#[test]
fn an_impossible_threshold_exits_3_and_names_itself() {
    let mut args = SPAWNED.to_vec();
    args.extend(["--max-p99-ms", "0.000001"]);
    let run = loadgen(&args);
    assert_eq!(run.code, Some(3), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["thresholds"][0]["ok"], false, "{v}");
    assert!(run.stderr.contains("--max-p99-ms accept="), "the broken threshold is not named:\n{}", run.stderr);
}

#[test]
fn a_threshold_it_cannot_read_is_a_usage_error() {
    let run = loadgen(&["--spawn", "--max-p99-ms", "nonsense=5"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("unknown series `nonsense`"), "{}", run.stderr);
}

#[test]
fn a_demo_city_with_people_of_its_own_is_no_obstacle_twice_in_a_row() {
    let server = Server::start(&["--demo"], None);
    let addr = server.addr.to_string();
    for seconds in ["3", "1"] {
        let run = loadgen(&[
            "--addr",
            &addr,
            "--admin-token",
            ADMIN,
            "--seconds",
            seconds,
            "--drivers",
            "5",
            "--riders",
            "3",
            "--trip-rate",
            "2",
            "--fanout",
            "0",
            "--json",
        ]);
        assert_eq!(run.code, Some(0), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        let v = run.json();
        assert!(v["trips"]["booked"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["correctness"]["lost_acknowledged_trips"], 0, "{v}");
    }
}

#[test]
fn a_refused_admin_token_is_a_clear_error_not_a_panic() {
    let server = Server::start(&["--demo"], None);
    let run = loadgen(&["--addr", &server.addr.to_string(), "--admin-token", "wrong", "--seconds", "1", "--json"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("the admin token was refused"), "{}", run.stderr);
    assert!(run.json()["error"].is_string());
}
