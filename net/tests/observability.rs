//! Black-box tests of what operators watch `dispatchd` with: `/metrics` as
//! `promtool check metrics` judges it, the metrics-only token, the log level, and the
//! operators' kit in `ops/` (alerting rules checked by `promtool check rules`, a Grafana
//! dashboard) using only the series the server exports.
//!
//! `promtool` (Debian's `prometheus` package; `scripts/deps.sh` installs it) is required:
//! without it the promtool tests fail with an install hint, unless
//! `DISPATCH_SKIP_PROMTOOL=1` (then they say so and skip only the promtool step).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ADMIN, Reply, Server};
use hyper::Method;

/// A `200` answer's body as text.
trait TextOk {
    fn text_ok(self) -> String;
}

impl TextOk for Reply {
    #[track_caller]
    fn text_ok(self) -> String {
        assert_eq!(self.status, 200, "{}", self.text);
        self.text
    }
}

/// `promtool`, or `None` when it is missing and `DISPATCH_SKIP_PROMTOOL=1` says to skip.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var("DISPATCH_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("DISPATCH_SKIP_PROMTOOL=1 and no promtool: the promtool check is skipped");
        return None;
    }
    panic!(
        "promtool is not installed: install it (apt-get install prometheus, or bash scripts/deps.sh), \
         or set DISPATCH_SKIP_PROMTOOL=1 to skip these checks"
    );
}

/// The repository's root (net/ is one level down).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The metric families a `/metrics` text declares (`# TYPE name kind`), with their kind.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// Whether `name` is a series of one of `families`: a family itself, or a histogram's
/// `_bucket`, `_sum` or `_count`.
fn exported(name: &str, families: &[(String, String)]) -> bool {
    families.iter().any(|(f, kind)| {
        f == name
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(f.as_str())))
    })
}

/// The metric names in `expr` starting with one of `prefixes` (`dispatch_`, `process_`):
/// a crude scan, enough for PromQL, where a name is a run of `[a-z0-9_]` not preceded by
/// another identifier character.
fn metric_names(expr: &str, prefixes: &[&str]) -> Vec<String> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (i == 0 || !ident(b[i - 1])) && prefixes.iter().any(|p| expr[i..].starts_with(p));
        if starts {
            let end = (i..b.len()).find(|&j| !ident(b[j])).unwrap_or(b.len());
            out.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// A server that has answered a few requests: labelled request series (several routes
/// and statuses), latency observations, the engine's histograms.
async fn busy_server(env: &[(&str, &str)]) -> Server {
    let s = Server::start_env(tempfile::tempdir().unwrap(), &[], None, env);
    s.get("/healthz", ADMIN).await.expect(200);
    s.get("/v1/zones", ADMIN).await.expect(200);
    assert_eq!(s.get("/v1/nope", ADMIN).await.status, 404);
    assert_eq!(s.get("/v1/admin/stats", "not-a-token").await.status, 401);
    // A write: the WAL's fsync and batch histograms get observations.
    let user = serde_json::json!({"role": "rider", "name": "Amal", "phone": "+201001234567"});
    s.post("/v1/admin/users", ADMIN, user).await.expect(201);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_check_metrics() {
    let s = busy_server(&[]).await;
    let text = s.get("/metrics", ADMIN).await.text_ok();
    // What promtool would say, checked here too (so the test means something where
    // promtool is skipped): every family has HELP; no micro-units; `_total` on counters only.
    let fams = families(&text);
    for (name, kind) in &fams {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
        assert!(!name.contains("microseconds") && !name.contains("milliseconds"), "{name}: base units only");
    }
    for family in [
        "dispatch_http_requests_total",
        "dispatch_http_request_duration_seconds",
        "dispatch_engine_fsync_seconds",
        "dispatch_engine_fsync_last_seconds",
        "dispatch_checkpoint_last_duration_seconds",
        "dispatch_payment_dead_letters",
        "dispatch_alerts_open",
        "dispatch_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(fams.iter().any(|(f, _)| f == family), "no {family} in {text}");
    }
    assert!(text.contains("dispatch_http_requests_total{route=\"admin_create_user\",status=\"201\"} 1"), "{text}");
    assert!(text.contains("dispatch_http_request_duration_seconds_count{route=\"zones\"} 1"), "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!("dispatch_build_info{{version=\"{version}\"}} 1\n")), "{text}");
    assert!(s.metric("process_resident_memory_bytes").await > 1e6, "dispatchd holds more than 1 MB");
    let started = s.metric("process_start_time_seconds").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - 600.0..=now + 5.0).contains(&started), "started at {started}, now {now}");
    assert!(s.metric("dispatch_engine_fsync_seconds_count").await >= 1.0);

    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n---\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_token_reads_metrics_and_nothing_else() {
    let token = "metrics-token-0123456789abcdefXYZ";
    let s = busy_server(&[("DISPATCH_METRICS_TOKEN", token)]).await;
    let text = s.get("/metrics", token).await.text_ok();
    assert!(text.contains("# TYPE dispatch_http_requests_total counter"), "{text}");
    // The admin token still reads it.
    s.get("/metrics", ADMIN).await.text_ok();
    // Anywhere else it is an unknown token.
    s.get("/v1/admin/stats", token).await.expect_error(401, "unauthorized");
    s.get("/v1/zones", token).await.expect_error(401, "unauthorized");
    let user = serde_json::json!({"role": "rider", "name": "Eve", "phone": "+201001234599"});
    s.post("/v1/admin/users", token, user).await.expect_error(401, "unauthorized");
    // Neither a near miss nor no token reads the metrics.
    s.get("/metrics", "metrics-token-0123456789abcdefXY").await.expect_error(401, "unauthorized");
    s.call(Method::GET, "/metrics", None, None).await.expect_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_metrics_token_set_none_is_accepted() {
    let s = Server::start(&[], None);
    s.get("/metrics", "metrics-token-0123456789abcdefXYZ").await.expect_error(401, "unauthorized");
}

/// `dispatchd serve` that is expected to stop at start: its exit code and stderr.
fn refused_start(config: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatchd"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("data"));
    if let Some(c) = config {
        std::fs::write(dir.path().join("dispatch.toml"), c).unwrap();
        cmd.arg("--config").arg(dir.path().join("dispatch.toml"));
    }
    let out = cmd
        .env_remove("RUST_LOG")
        .env("DISPATCH_ADMIN_TOKEN", ADMIN)
        .env("DISPATCH_TOKEN_SECRET", "test-token-secret-0123456789abcdef0123456789")
        .env("DISPATCH_WEBHOOK_SECRET_SIM", "test-webhook-secret-0123456789")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_weak_metrics_token_or_a_bad_log_filter_stops_start_up_with_exit_2() {
    for weak in ["short", "metricsmetricsmetricsmetrics", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        let (code, stderr) = refused_start(None, &[("DISPATCH_METRICS_TOKEN", weak)]);
        assert_eq!(code, Some(2), "{weak}: {stderr}");
        assert!(stderr.contains("DISPATCH_METRICS_TOKEN"), "{stderr}");
        assert!(!stderr.contains(weak), "the error never quotes the secret: {stderr}");
    }
    let (code, stderr) = refused_start(Some("[log]\nlevel = \"loud\"\n"), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("log.level"), "{stderr}");
    let (code, stderr) = refused_start(None, &[("RUST_LOG", "x=verbose")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}

/// The JSON log lines of `s` on stderr whose message is `message`.
fn log_lines(s: &Server, message: &str) -> usize {
    s.stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_warn_hides_request_lines_and_rust_log_wins() {
    let warn = "[log]\nlevel = \"warn\"\n";
    let quiet = Server::start_env(tempfile::tempdir().unwrap(), &[], Some(warn), &[("RUST_LOG", "")]);
    quiet.get("/v1/zones", ADMIN).await.expect(200);
    // The request line is written before the answer is sent: it would be there by now.
    assert_eq!(log_lines(&quiet, "request"), 0, "{}", quiet.stderr());
    assert_eq!(log_lines(&quiet, "listening"), 0, "info lines are off: {}", quiet.stderr());
    // The default, info: one line per request.
    let default = Server::start_env(tempfile::tempdir().unwrap(), &[], None, &[("RUST_LOG", "")]);
    default.get("/v1/zones", ADMIN).await.expect(200);
    wait_for(|| log_lines(&default, "request") >= 1, &default);
    // RUST_LOG over the file's level.
    for level in ["info", "debug"] {
        let loud = Server::start_env(tempfile::tempdir().unwrap(), &[], Some(warn), &[("RUST_LOG", level)]);
        loud.get("/v1/zones", ADMIN).await.expect(200);
        wait_for(|| log_lines(&loud, "request") >= 1, &loud);
    }
}

/// Waits (generously) for `cond`: log lines are written by another process.
fn wait_for(cond: impl Fn() -> bool, s: &Server) {
    let deadline = std::time::Instant::now() + common::WAIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "never happened; stderr: {}", s.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The `expr:` lines of the alerting rules, one per rule.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let exprs: Vec<String> =
        yaml.lines().filter_map(|l| l.trim_start().strip_prefix("expr:")).map(|e| e.trim().to_owned()).collect();
    let rules = yaml.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    assert_eq!(exprs.len(), rules, "one single-line expr per rule");
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_pass_promtool_and_use_only_exported_metrics() {
    let path = repo().join("ops/prometheus/alerts.yml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let s = busy_server(&[]).await;
    let fams = families(&s.get("/metrics", ADMIN).await.text_ok());
    let exprs = rule_exprs(&yaml);
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e, &["dispatch_", "process_"]);
        assert!(!names.is_empty() || e.starts_with("up{"), "{e}: names no metric of dispatchd");
        for n in names {
            assert!(exported(&n, &fams), "{n} (in {e}) is not exported by dispatchd");
            used.insert(n);
        }
    }
    // What the issue asks to page on, each by its series.
    for needed in [
        "dispatch_engine_queue_depth",
        "dispatch_engine_queue_capacity",
        "dispatch_engine_fsync_seconds_bucket",
        "dispatch_engine_read_only",
        "dispatch_payment_dead_letters",
        "dispatch_alerts_open",
    ] {
        assert!(used.contains(needed), "no rule on {needed}");
    }
    for key in ["severity:", "summary:", "description:", "runbook:"] {
        assert_eq!(yaml.matches(key).count(), exprs.len(), "every rule has {key}");
    }

    let Some(promtool) = promtool() else { return };
    let out = Command::new(promtool).args(["check", "rules"]).arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules: {said}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_is_json_and_uses_only_exported_metrics() {
    let text = std::fs::read_to_string(repo().join("ops/grafana/dispatch.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 39);
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    let s = busy_server(&[]).await;
    let fams = families(&s.get("/metrics", ADMIN).await.text_ok());
    let mut used = BTreeSet::new();
    let panels = dash["panels"].as_array().unwrap();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().unwrap();
            for n in metric_names(e, &["dispatch_", "process_"]) {
                assert!(exported(&n, &fams), "{n} (panel {}) is not exported by dispatchd", p["title"]);
                used.insert(n);
            }
        }
    }
    for needed in [
        "dispatch_http_requests_total",
        "dispatch_http_request_duration_seconds_bucket",
        "dispatch_ws_sockets_open",
        "dispatch_accepts_won_total",
        "dispatch_accepts_lost_total",
        "dispatch_checkpoints_written_total",
        "dispatch_engine_fsync_seconds_bucket",
        "dispatch_engine_read_only",
        "dispatch_payment_dead_letters",
        "dispatch_alerts_open",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn the_name_scan_finds_names_and_histogram_series() {
    let e = "histogram_quantile(0.99, sum by (le) (rate(dispatch_engine_fsync_seconds_bucket[5m]))) > x_dispatch_no";
    assert_eq!(metric_names(e, &["dispatch_"]), ["dispatch_engine_fsync_seconds_bucket"]);
    let fams =
        vec![("dispatch_a_seconds".to_owned(), "histogram".to_owned()), ("dispatch_b".to_owned(), "gauge".into())];
    assert!(exported("dispatch_a_seconds_bucket", &fams) && exported("dispatch_b", &fams));
    assert!(!exported("dispatch_b_count", &fams) && !exported("dispatch_c", &fams));
}
