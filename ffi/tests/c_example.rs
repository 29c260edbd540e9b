//! `examples/fare_estimate.c` compiled with the system C compiler against the static
//! library, run, and checked against the Rust estimator; then run again under valgrind.
//!
//! The library is built by `cargo build -p dispatch-ffi --lib` from here, into this test's
//! own target directory and profile, so the program always links the code under test.
//! `CC` names the compiler (default `cc`). A missing compiler or valgrind FAILS the test
//! (CI installs both: a silent skip would hide a regression) unless
//! `DISPATCH_SKIP_C_TESTS=1` is set.

// Tests may unwrap: a panic is a failing test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use dispatch_core::fare::{self, CouponDiscount, FareQuote, Pricing};
use dispatch_core::route::{Route, RouteSource, StraightLine};
use dispatch_core::{Currency, LatLng};

// The inputs of examples/fare_estimate.c: keep the two in step.
const PICKUP: (f64, f64) = (30.0444, 31.2357);
const DROPOFF: (f64, f64) = (30.0600, 31.2500);
const ROUTER_ROUTE: (u64, u64) = (8230, 960);
const STOPS: [(f64, f64); 2] = [(30.0512, 31.2401), (30.0555, 31.2288)];

fn pricing() -> Pricing {
    dispatch_core::demo::ECONOMY
}

fn rust_estimate(route: Route) -> FareQuote {
    let coupon = CouponDiscount::Percent { percent_bps: 2000, max_discount_minor: Some(1000) };
    fare::estimate(&pricing(), Currency::new("EGP").unwrap(), 200, &route, 12_500, Some(&coupon)).unwrap()
}

fn straight_line_route() -> Route {
    let p = |(lat, lng)| LatLng::new(lat, lng).unwrap();
    StraightLine::new(1.3, 30.0).unwrap().between(p(PICKUP), p(DROPOFF))
}

/// Pickup → the two stops → drop-off, on the straight line leg by leg.
fn stops_route() -> Route {
    let p = |(lat, lng)| LatLng::new(lat, lng).unwrap();
    StraightLine::new(1.3, 30.0).unwrap().through(&[p(PICKUP), p(STOPS[0]), p(STOPS[1]), p(DROPOFF)])
}

fn router_route() -> Route {
    Route { distance_m: ROUTER_ROUTE.0, duration_s: ROUTER_ROUTE.1, source: RouteSource::Router }
}

fn skip_requested() -> bool {
    std::env::var_os("DISPATCH_SKIP_C_TESTS").is_some_and(|v| v == "1")
}

/// Whether `program --version` runs.
fn tool_runs(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `None` (skip) when the tool is missing and skipping was asked for; a panic with the fix
/// when it is missing otherwise.
fn require_tool(program: &str, package: &str) -> Option<()> {
    if tool_runs(program) {
        return Some(());
    }
    if skip_requested() {
        eprintln!("skipping: `{program}` is not installed and DISPATCH_SKIP_C_TESTS=1");
        return None;
    }
    panic!(
        "`{program}` is needed to test the C ABI but does not run. Install it \
         (`apt-get install -y --no-install-recommends {package}`; .ci/run does), \
         or set DISPATCH_SKIP_C_TESTS=1 to skip this test knowingly."
    );
}

fn c_compiler() -> String {
    std::env::var("CC").ok().filter(|cc| !cc.trim().is_empty()).unwrap_or_else(|| "cc".to_owned())
}

/// `target/<profile>`, the directory this test binary was built in (`.../deps/..`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary is in target/<profile>/deps");
    deps.parent().expect("target/<profile>").to_path_buf()
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("ffi/ is in the workspace").to_path_buf()
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Builds the static library and the C program once per test run; the program's path.
fn c_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("target/").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.current_dir(workspace_dir()).env("CARGO_TARGET_DIR", &target_dir).args([
            "build",
            "-p",
            "dispatch-ffi",
            "--lib",
        ]);
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        run(&mut build);
        let library = profile_dir.join("libdispatch_ffi.a");
        assert!(library.is_file(), "cargo build did not make {}", library.display());

        let out_dir = profile_dir.join("c-examples");
        std::fs::create_dir_all(&out_dir).expect("create target/<profile>/c-examples");
        let program = out_dir.join("fare_estimate");
        let workspace = workspace_dir();
        run(Command::new(c_compiler())
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
            .arg(workspace.join("ffi/include"))
            .arg(workspace.join("examples/fare_estimate.c"))
            .arg(&library)
            // What Rust's std needs from the system on Linux (`--print native-static-libs`).
            .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc", "-o"])
            .arg(&program));
        program
    })
}

/// The program's `key=value` lines.
fn parse(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn expected_json(q: &FareQuote) -> serde_json::Value {
    let b = &q.breakdown;
    serde_json::json!({
        "fare": {"amount_minor": q.fare.amount_minor, "currency": q.fare.currency.code(),
                 "currency_exponent": q.fare.currency.exponent()},
        "distance_m": q.distance_m, "duration_s": q.duration_s, "surge_bps": q.surge_bps,
        "discount_minor": q.discount_minor, "route_source": q.route_source,
        "breakdown": {
            "base_minor": b.base_minor, "distance_minor": b.distance_minor, "time_minor": b.time_minor,
            "surge_minor": b.surge_minor, "minimum_fill_minor": b.minimum_fill_minor,
            "booking_fee_minor": b.booking_fee_minor, "extra_fee_minor": b.extra_fee_minor,
            "discount_minor": b.discount_minor,
        }
    })
}

fn check_values(values: &BTreeMap<String, String>, label: &str, q: &FareQuote) {
    let b = &q.breakdown;
    let source = match q.route_source {
        RouteSource::Router => "router",
        RouteSource::StraightLine => "straight_line",
    };
    let expected = [
        ("fare_minor", q.fare.amount_minor.to_string()),
        ("currency", q.fare.currency.code().to_owned()),
        ("currency_exponent", q.fare.currency.exponent().to_string()),
        // The C side places the decimal point with the exponent as `Money`'s Display does.
        ("fare_shown", q.fare.to_string()),
        ("distance_m", q.distance_m.to_string()),
        ("duration_s", q.duration_s.to_string()),
        ("surge_bps", q.surge_bps.to_string()),
        ("route_source", source.to_owned()),
        ("discount_minor", q.discount_minor.to_string()),
        ("base_minor", b.base_minor.to_string()),
        ("distance_minor", b.distance_minor.to_string()),
        ("time_minor", b.time_minor.to_string()),
        ("surge_minor", b.surge_minor.to_string()),
        ("minimum_fill_minor", b.minimum_fill_minor.to_string()),
        ("booking_fee_minor", b.booking_fee_minor.to_string()),
        ("extra_fee_minor", b.extra_fee_minor.to_string()),
    ];
    for (key, want) in expected {
        let key = format!("{label}.{key}");
        assert_eq!(values.get(&key), Some(&want), "{key}");
    }
}

#[test]
fn the_c_program_prints_the_rust_estimates() {
    if require_tool(&c_compiler(), "gcc libc6-dev").is_none() {
        return;
    }
    let output = run(&mut Command::new(c_program()));
    let values = parse(&output.stdout);

    let straight = rust_estimate(straight_line_route());
    let router = rust_estimate(router_route());
    let stops = rust_estimate(stops_route());
    assert!(stops.fare.amount_minor > straight.fare.amount_minor, "the stops cost something");
    // The example must exercise the coupon and the surge, or it proves less than it says.
    assert!(straight.discount_minor > 0 && straight.breakdown.surge_minor > 0, "{straight:?}");

    for (label, quote) in [("straight_line", &straight), ("router", &router), ("stops", &stops)] {
        let json: serde_json::Value = serde_json::from_str(&values[&format!("{label}.json")]).expect("JSON answer");
        assert_eq!(json, expected_json(quote), "{label}.json");
        check_values(&values, label, quote);
    }

    assert_eq!(values["four_stops.status"], "4", "DISPATCH_STATUS_INVALID_ARGUMENT");
    assert_eq!(values["four_stops.answer_is_null"], "1");
    assert_eq!(values["bad_json.status"], "3", "DISPATCH_STATUS_INVALID_JSON");
    assert_eq!(values["bad_json.answer_is_null"], "1");
    assert!(values["bad_json.error"].starts_with("argument `config_json` is not valid JSON"), "{values:?}");

    let user: serde_json::Value = serde_json::from_str(&values["engine.create_user"]).unwrap();
    assert_eq!(user["outcome"], "user");
    assert_eq!(user["user"]["name"], "Amal");
    let unknown: serde_json::Value = serde_json::from_str(&values["engine.unknown_trip"]).unwrap();
    assert_eq!(unknown["error"]["code"], "not_found");
    assert_eq!(values["failures"], "0");
}

#[test]
fn the_c_program_is_clean_under_valgrind() {
    if require_tool(&c_compiler(), "gcc libc6-dev").is_none() || require_tool("valgrind", "valgrind").is_none() {
        return;
    }
    let output = Command::new("valgrind")
        .args(["--leak-check=full", "--error-exitcode=1", "--errors-for-leak-kinds=definite,possible"])
        .arg(format!("--suppressions={}/tests/valgrind.supp", env!("CARGO_MANIFEST_DIR")))
        .arg(c_program())
        .output()
        .expect("run valgrind");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "valgrind found errors or leaks ({}):\n{stderr}", output.status);
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(!stderr.contains("definitely lost: ") || stderr.contains("definitely lost: 0 bytes"), "{stderr}");
    assert_eq!(parse(&output.stdout).get("failures").map(String::as_str), Some("0"));
}
