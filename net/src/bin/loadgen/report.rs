//! What the load generator measures and what it says about it: the figures gathered
//! during the run ([`Stats`]), their summary ([`Report`]) as a text table or one JSON
//! object, the progress line, and the thresholds (`--max-p99-ms`, `--max-error-rate`,
//! `--min-trips`) judged against the report.
//!
//! Guarantees:
//! - an answer ≥ 400 is counted once, either as a race loss (an accept or decline that lost
//!   a race every dispatcher has: `409 trip_already_assigned`, `409 driver_not_available`,
//!   `409 invalid_transition` for a trip that ended meanwhile, `410 offer_expired`) or as
//!   an error (every other status ≥ 400: 5xx, the client's own 599s, unexpected codes);
//! - the text and the JSON report carry the same figures; percentiles are nearest-rank on
//!   the sorted samples, and an empty series is reported as absent, never as a panic;
//! - a threshold on a series with no samples is broken (nothing measured proves nothing).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::usage::Usage;

/// `POST /v1/trips`: a rider books.
pub const BOOK: &str = "POST /v1/trips";
/// `GET /v1/trips`: a rider lists their trips.
pub const LIST: &str = "GET /v1/trips";
/// A driver accepts an offer.
pub const ACCEPT: &str = "POST /v1/trips/{id}/accept";
/// A driver declines an offer.
pub const DECLINE: &str = "POST /v1/trips/{id}/decline";
/// The winner arrives at the pickup.
pub const ARRIVED: &str = "POST /v1/trips/{id}/arrived";
/// The winner starts the ride with the rider's code.
pub const START: &str = "POST /v1/trips/{id}/start";
/// The winner completes the ride.
pub const COMPLETE: &str = "POST /v1/trips/{id}/complete";
/// A driver goes online.
pub const STATUS: &str = "POST /v1/driver/status";
/// A driver without a socket reports its position.
pub const LOCATION: &str = "POST /v1/driver/location";
/// A driver's WebSocket handshake (counted as a request).
pub const WS_CONNECT: &str = "ws connect";
/// A position sent over a driver's socket (the send alone).
pub const WS_LOCATION: &str = "ws location (send)";
/// A trip's offer frame, from the trip's `201`.
pub const WS_OFFER: &str = "ws trip_offer (since trip created)";

/// An answer that was not a success, by endpoint, status and `error.code`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    /// The endpoint (one of the constants above).
    pub endpoint: &'static str,
    /// The HTTP status (599: no answer; 0: a WebSocket that did not open).
    pub status: u16,
    /// `error.code`, or `?`.
    pub code: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.endpoint, self.status, self.code)
    }
}

/// Whether a failed answer is the expected outcome of a race rather than an error.
pub fn is_race_loss(endpoint: &str, status: u16, code: &str) -> bool {
    (endpoint == ACCEPT || endpoint == DECLINE)
        && matches!(
            (status, code),
            (409, "trip_already_assigned" | "driver_not_available" | "invalid_transition") | (410, "offer_expired")
        )
}

/// Everything measured during the load, shared by its tasks.
#[derive(Default)]
pub struct Stats {
    /// Latencies per endpoint or message kind.
    pub latency: BTreeMap<&'static str, Vec<Duration>>,
    /// Errors, by kind.
    pub errors: BTreeMap<Failure, u64>,
    /// Races lost, by kind.
    pub race_losses: BTreeMap<Failure, u64>,
    /// Every trip acknowledged with 201, with when.
    pub created: HashMap<String, Instant>,
    /// 200s to accepts, per trip.
    pub wins: HashMap<String, u32>,
    /// 200s to accepts.
    pub accepted: u64,
    /// 200s to completes.
    pub completed: u64,
    /// Offers received per trip.
    pub offers: HashMap<String, u32>,
    /// Creation → first accept won.
    pub time_to_match: Vec<Duration>,
    /// Pickup codes riders were given, for the winning driver to type.
    pub codes: HashMap<String, String>,
    /// Drivers online with their socket open, and drivers that could not get there.
    pub connected: (u64, u64),
}

impl Stats {
    /// Records one answer of `endpoint`: its latency, and its failure if it is one.
    pub fn record(&mut self, endpoint: &'static str, took: Duration, status: u16, body: &Value) {
        self.latency.entry(endpoint).or_default().push(took);
        if status >= 400 {
            self.fail(endpoint, status, body["error"]["code"].as_str().unwrap_or("?"));
        }
    }

    /// Counts a failure of `endpoint`, as a race loss or an error.
    pub fn fail(&mut self, endpoint: &'static str, status: u16, code: &str) {
        let failure = Failure { endpoint, status, code: code.to_owned() };
        let map = if is_race_loss(endpoint, status, code) { &mut self.race_losses } else { &mut self.errors };
        *map.entry(failure).or_default() += 1;
    }

    /// The progress line: how far the load is, from its start `elapsed` ago.
    pub fn progress(&self, elapsed: Duration) -> String {
        let mut http: Vec<Duration> = self.http_series().flat_map(|(_, v)| v.iter().copied()).collect();
        http.sort_unstable();
        let p99 = Summary::of(&http).map_or_else(|| "-".to_owned(), |s| format!("{} ms", ms(s.p99)));
        format!(
            "[{:>6.1} s] trips booked {}, accepted {}, completed {}, race losses {}, errors {}, HTTP p99 {p99}",
            elapsed.as_secs_f64(),
            self.created.len(),
            self.accepted,
            self.completed,
            self.race_losses.values().sum::<u64>(),
            self.errors.values().sum::<u64>(),
        )
    }

    /// The HTTP endpoints' series (not the WebSocket ones).
    fn http_series(&self) -> impl Iterator<Item = (&&'static str, &Vec<Duration>)> {
        self.latency.iter().filter(|(name, _)| !name.starts_with("ws "))
    }
}

/// Percentiles of one series.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Summary {
    /// The summary of `sorted` (increasing); `None` if empty.
    pub fn of(sorted: &[Duration]) -> Option<Summary> {
        let last = *sorted.last()?;
        let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        Some(Summary { count: sorted.len(), p50: pct(0.5), p95: pct(0.95), p99: pct(0.99), max: last })
    }

    /// The summary of `samples`, sorted here.
    pub fn of_unsorted(mut samples: Vec<Duration>) -> Option<Summary> {
        samples.sort_unstable();
        Summary::of(&samples)
    }

    fn row(&self, name: &str) -> String {
        format!(
            "{name:<40} {:>8} {:>9} {:>9} {:>9} {:>9}",
            self.count,
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max)
        )
    }

    fn json(&self) -> Value {
        json!({"count": self.count, "p50_ms": msf(self.p50), "p95_ms": msf(self.p95), "p99_ms": msf(self.p99),
            "max_ms": msf(self.max)})
    }
}

/// One endpoint's figures.
pub struct Endpoint {
    /// Its name.
    pub name: &'static str,
    /// Its latencies.
    pub summary: Summary,
    /// Its answers counted as errors.
    pub errors: u64,
    /// Its answers counted as race losses.
    pub race_losses: u64,
}

/// What the fan-out measured.
pub struct FanoutFigures {
    /// Staff sockets subscribed.
    pub sockets: usize,
    /// Per trip change, when the last socket had it.
    pub last: Option<Summary>,
    /// Every socket's frame.
    pub each: Option<Summary>,
}

/// What the run was asked to do.
pub struct Asked {
    /// The server.
    pub target: String,
    /// Drivers.
    pub drivers: usize,
    /// Riders.
    pub riders: usize,
    /// Trips a second.
    pub trip_rate: f64,
    /// Seconds of load.
    pub seconds: u64,
}

/// The run's figures, once it is over.
pub struct Report {
    /// What was asked.
    pub asked: Asked,
    /// How long the load ran.
    pub elapsed: Duration,
    /// Per endpoint and message kind.
    pub endpoints: Vec<Endpoint>,
    /// Every HTTP request together.
    pub http: Option<Summary>,
    /// Requests: HTTP requests and WebSocket handshakes.
    pub requests: u64,
    /// Creation → first accept won.
    pub time_to_match: Option<Summary>,
    /// Trips acknowledged with 201.
    pub trips_booked: usize,
    /// Trips with an accept won.
    pub trips_won: usize,
    /// 200s to accepts.
    pub accepted: u64,
    /// 200s to completes.
    pub completed: u64,
    /// Trips offered at least once.
    pub trips_offered: usize,
    /// Offers received.
    pub offers: u64,
    /// Errors by kind.
    pub errors: BTreeMap<Failure, u64>,
    /// Race losses by kind.
    pub race_losses: BTreeMap<Failure, u64>,
    /// Acknowledged trips not found afterwards.
    pub lost: usize,
    /// Trips won by two drivers.
    pub double_wins: usize,
    /// Drivers holding two open trips.
    pub double_held: usize,
    /// The fan-out: `None` if skipped, `Some(Err(why))` if it failed.
    pub fanout: Option<Result<FanoutFigures, String>>,
    /// The ops channel: sockets and snapshots received (`None`: none asked).
    pub ops: Option<(usize, u64)>,
    /// Positions sent (over the sockets and over HTTP).
    pub positions: u64,
    /// Drivers online with their socket open, and drivers that could not get there.
    pub connected: (u64, u64),
    /// What the `--spawn`ed server spent (`None`: not spawned, or no `/proc`).
    pub server_usage: Option<Usage>,
    /// What the load generator itself spent.
    pub generator_usage: Option<Usage>,
}

/// One row of DESIGN.md's service levels: what is measured, the limits, and the figures.
pub struct SloRow {
    /// The endpoint or message, as DESIGN.md names it.
    pub name: &'static str,
    /// (percentile, limit in ms): the SLO's columns that are set.
    pub limits: &'static [(u8, u64)],
    /// The measured series (`None`: nothing measured, which does not meet the SLO).
    pub measured: Option<Summary>,
}

impl SloRow {
    /// The measured value at percentile `p` (50, 95 or 99).
    fn at(&self, p: u8) -> Option<Duration> {
        self.measured.map(|s| match p {
            50 => s.p50,
            95 => s.p95,
            _ => s.p99,
        })
    }

    /// Whether every limit is met (strictly under it).
    pub fn met(&self) -> bool {
        self.limits.iter().all(|&(p, limit)| self.at(p).is_some_and(|v| v < Duration::from_millis(limit)))
    }

    fn text(&self) -> String {
        let slo: Vec<String> = self.limits.iter().map(|(p, l)| format!("p{p} < {l}")).collect();
        let got: Vec<String> = self
            .limits
            .iter()
            .map(|&(p, _)| self.at(p).map_or_else(|| "-".to_owned(), |v| ms(v).to_string()))
            .collect();
        let count = self.measured.map_or(0, |s| s.count);
        format!(
            "{:<44} {:>36} {:>28} {:>9}  {}",
            self.name,
            slo.join(" / "),
            got.join(" / "),
            count,
            if self.met() { "yes" } else { "NO" }
        )
    }

    fn json(&self) -> Value {
        let limits: Vec<Value> = self
            .limits
            .iter()
            .map(|&(p, l)| json!({"percentile": p, "limit_ms": l, "measured_ms": self.at(p).map(msf)}))
            .collect();
        json!({"name": self.name, "limits": limits, "count": self.measured.map_or(0, |s| s.count), "met": self.met()})
    }
}

impl Report {
    /// The report of `stats` (taken) and of what the caller checked afterwards.
    pub fn new(stats: Stats, asked: Asked, elapsed: Duration) -> Self {
        let count = |map: &BTreeMap<Failure, u64>, name: &str| -> u64 {
            map.iter().filter(|(f, _)| f.endpoint == name).map(|(_, n)| n).sum()
        };
        let mut all_http = Vec::new();
        let mut requests = 0;
        let mut endpoints = Vec::new();
        for (name, v) in stats.latency {
            if !name.starts_with("ws ") || name == WS_CONNECT {
                requests += v.len() as u64;
            }
            if !name.starts_with("ws ") {
                all_http.extend_from_slice(&v);
            }
            if let Some(summary) = Summary::of_unsorted(v) {
                let (errors, race_losses) = (count(&stats.errors, name), count(&stats.race_losses, name));
                endpoints.push(Endpoint { name, summary, errors, race_losses });
            }
        }
        Report {
            asked,
            elapsed,
            endpoints,
            http: Summary::of_unsorted(all_http),
            requests,
            time_to_match: Summary::of_unsorted(stats.time_to_match),
            trips_booked: stats.created.len(),
            trips_won: stats.wins.len(),
            accepted: stats.accepted,
            completed: stats.completed,
            trips_offered: stats.offers.len(),
            offers: stats.offers.values().map(|&n| u64::from(n)).sum(),
            errors: stats.errors,
            race_losses: stats.race_losses,
            lost: 0,
            double_wins: 0,
            double_held: 0,
            fanout: None,
            ops: None,
            positions: 0,
            connected: stats.connected,
            server_usage: None,
            generator_usage: None,
        }
        .with_positions()
    }

    fn with_positions(mut self) -> Self {
        self.positions = self
            .endpoints
            .iter()
            .filter(|e| e.name == WS_LOCATION || e.name == LOCATION)
            .map(|e| e.summary.count as u64)
            .sum();
        self
    }

    /// DESIGN.md's service levels against this run. The WebSocket message latency is the
    /// fan-out's every frame (the offer frames' when there was no fan-out).
    pub fn slo(&self) -> Vec<SloRow> {
        let endpoint = |name: &str| self.endpoints.iter().find(|e| e.name == name).map(|e| e.summary);
        let fanout = self.fanout.as_ref().and_then(|f| f.as_ref().ok());
        vec![
            SloRow { name: "POST /v1/trips", limits: &[(50, 200), (95, 500), (99, 1000)], measured: endpoint(BOOK) },
            SloRow {
                name: "GET /v1/trips (the GET /v1/trips/{id} SLO)",
                limits: &[(50, 50), (95, 150), (99, 300)],
                measured: endpoint(LIST),
            },
            SloRow {
                name: "POST /v1/trips/{id}/accept",
                limits: &[(50, 300), (95, 700), (99, 1500)],
                measured: endpoint(ACCEPT),
            },
            SloRow {
                name: "POST /v1/driver/location",
                limits: &[(50, 50), (95, 100), (99, 200)],
                measured: endpoint(LOCATION),
            },
            SloRow {
                name: "WebSocket message",
                limits: &[(95, 100)],
                measured: fanout.and_then(|f| f.each).or_else(|| endpoint(WS_OFFER)),
            },
            SloRow {
                name: "fan-out to the sockets (the last one)",
                limits: &[(95, 500)],
                measured: fanout.and_then(|f| f.last),
            },
            SloRow {
                name: "time to find a driver (created → accepted)",
                limits: &[(50, 1000)],
                measured: self.time_to_match,
            },
        ]
    }

    /// Errors of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Race losses of every kind.
    pub fn race_loss_count(&self) -> u64 {
        self.race_losses.values().sum()
    }

    /// Errors per request (0 when nothing was sent).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.error_count() as f64 / self.requests as f64 }
    }

    /// HTTP requests (every endpoint not a WebSocket's).
    fn http_requests(&self) -> usize {
        self.http.map_or(0, |s| s.count)
    }

    /// Whether a correctness check failed (acknowledged trips lost, double wins...).
    pub fn incorrect(&self) -> bool {
        self.lost + self.double_wins + self.double_held > 0
    }

    /// The report as text, the way a person reads it.
    pub fn text(&self) -> String {
        let mut out = vec![format!(
            "\n{:<40} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "endpoint / message", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
        )];
        out.extend(self.endpoints.iter().map(|e| e.summary.row(e.name)));
        if let Some(s) = &self.time_to_match {
            out.push(s.row("time to match (created → accepted)"));
        }
        out.push(format!(
            "\ntrips booked {}, won {}, accepted {}, completed {}, offers per offered trip {:.2}",
            self.trips_booked,
            self.trips_won,
            self.accepted,
            self.completed,
            self.offers as f64 / self.trips_offered.max(1) as f64
        ));
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        out.push(format!(
            "HTTP requests {} in {secs:.1} s: {:.0}/s",
            self.http_requests(),
            self.http_requests() as f64 / secs
        ));
        out.push(format!("positions sent {}: {:.0}/s", self.positions, self.positions as f64 / secs));
        if self.connected.1 > 0 {
            out.push(format!("drivers that could not go online with a socket: {}", self.connected.1));
        }
        out.push(format!("race losses {} (the expected outcome of a race):", self.race_loss_count()));
        out.extend(self.race_losses.iter().map(|(k, n)| format!("  {k}: {n}")));
        out.push(format!("errors {} ({:.4} of {} requests):", self.error_count(), self.error_rate(), self.requests));
        out.extend(self.errors.iter().map(|(k, n)| format!("  {k}: {n}")));
        if let Some((sockets, frames)) = self.ops {
            out.push(format!("ops channel: {sockets} staff sockets, {frames} snapshots received during the load"));
        }
        out.push(format!(
            "\ncorrectness: lost acknowledged trips {}, trips won twice {}, drivers holding two open trips {}",
            self.lost, self.double_wins, self.double_held
        ));
        match &self.fanout {
            None => {}
            Some(Err(why)) => out.push(format!("\nfan-out failed: {why}")),
            Some(Ok(f)) => {
                let changes = f.last.map_or(0, |s| s.count);
                out.push(format!("\nfan-out: {changes} trip changes, each to {} staff sockets", f.sockets));
                for (name, s) in [("last socket of each change", &f.last), ("every socket's frame", &f.each)] {
                    if let Some(s) = s {
                        out.push(s.row(name));
                    }
                }
            }
        }
        out.push(format!(
            "\n{:<44} {:>36} {:>28} {:>9}  met?",
            "service level (DESIGN.md)", "SLO ms", "measured ms", "count"
        ));
        out.extend(self.slo().iter().map(SloRow::text));
        let wall = self.elapsed;
        for (who, usage) in [("server (dispatchd)", self.server_usage), ("load generator", self.generator_usage)] {
            if let Some(u) = usage {
                out.push(format!(
                    "{who}: {} over the whole run ({:.2} cores over the load's {:.0} s)",
                    u.text(),
                    u.cores(wall),
                    wall.as_secs_f64()
                ));
            }
        }
        out.join("\n")
    }

    /// The report as one JSON object: the same figures as [`Report::text`].
    pub fn json(&self) -> Value {
        let failures = |map: &BTreeMap<Failure, u64>| -> Vec<Value> {
            map.iter()
                .map(|(f, n)| json!({"endpoint": f.endpoint, "status": f.status, "code": f.code, "count": n}))
                .collect()
        };
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|e| {
                let mut v = e.summary.json();
                v["name"] = json!(e.name);
                v["errors"] = json!(e.errors);
                v["race_losses"] = json!(e.race_losses);
                v
            })
            .collect();
        let fanout = match &self.fanout {
            None => Value::Null,
            Some(Err(why)) => json!({"ok": false, "error": why}),
            Some(Ok(f)) => json!({
                "ok": true,
                "sockets": f.sockets,
                "changes": f.last.map_or(0, |s| s.count),
                "last_socket": f.last.as_ref().map(Summary::json),
                "every_socket": f.each.as_ref().map(Summary::json),
            }),
        };
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        json!({
            "target": self.asked.target,
            "drivers": self.asked.drivers,
            "riders": self.asked.riders,
            "trip_rate": self.asked.trip_rate,
            "seconds": self.asked.seconds,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "endpoints": endpoints,
            "http": {
                "requests": self.http_requests(),
                "per_s": self.http_requests() as f64 / secs,
                "latency": self.http.as_ref().map(Summary::json),
            },
            "time_to_match": self.time_to_match.as_ref().map(Summary::json),
            "trips": {
                "booked": self.trips_booked,
                "won": self.trips_won,
                "accepted": self.accepted,
                "completed": self.completed,
                "offered": self.trips_offered,
                "offers": self.offers,
            },
            "requests": self.requests,
            "errors": {"count": self.error_count(), "rate": self.error_rate(), "by_code": failures(&self.errors)},
            "race_losses": {"count": self.race_loss_count(), "by_code": failures(&self.race_losses)},
            "correctness": {
                "lost_acknowledged_trips": self.lost,
                "trips_won_twice": self.double_wins,
                "drivers_holding_two_open_trips": self.double_held,
            },
            "fanout": fanout,
            "ops": self.ops.map(|(sockets, snapshots)| json!({"sockets": sockets, "snapshots": snapshots})),
            "positions": {"sent": self.positions, "per_s": self.positions as f64 / secs},
            "drivers_connected": {"ok": self.connected.0, "failed": self.connected.1},
            "slo": self.slo().iter().map(SloRow::json).collect::<Vec<_>>(),
            "usage": {
                "server": self.server_usage.map(usage_json),
                "generator": self.generator_usage.map(usage_json),
            },
        })
    }
}

/// A process's usage as JSON.
fn usage_json(u: Usage) -> Value {
    json!({"cpu_s": u.cpu.as_secs_f64(), "rss_bytes": u.rss, "peak_rss_bytes": u.peak_rss})
}

/// What a `--max-p99-ms` limit is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// One endpoint or message kind (a name of the report).
    Endpoint(&'static str),
    /// Every HTTP request together.
    Http,
    /// Time to match (created → accepted).
    Match,
    /// The fan-out's last socket of each change.
    Fanout,
}

/// The names `--max-p99-ms NAME=MS` knows, and what each measures.
pub const MEASURES: &[(&str, Measure)] = &[
    ("accept", Measure::Endpoint(ACCEPT)),
    ("decline", Measure::Endpoint(DECLINE)),
    ("book", Measure::Endpoint(BOOK)),
    ("list", Measure::Endpoint(LIST)),
    ("arrived", Measure::Endpoint(ARRIVED)),
    ("start", Measure::Endpoint(START)),
    ("complete", Measure::Endpoint(COMPLETE)),
    ("status", Measure::Endpoint(STATUS)),
    ("location", Measure::Endpoint(LOCATION)),
    ("ws-connect", Measure::Endpoint(WS_CONNECT)),
    ("ws-location", Measure::Endpoint(WS_LOCATION)),
    ("offer", Measure::Endpoint(WS_OFFER)),
    ("http", Measure::Http),
    ("match", Measure::Match),
    ("fanout", Measure::Fanout),
];

/// A limit on a p99: `MS` alone is the accept's, `NAME=MS` the named series'.
#[derive(Debug, Clone, PartialEq)]
pub struct P99Limit {
    /// The series' name, as given (`accept` when none was).
    pub name: String,
    /// What it measures.
    pub measure: Measure,
    /// The limit, milliseconds.
    pub ms: f64,
}

/// Parses `MS` or `NAME=MS` (clap's value parser for `--max-p99-ms`).
pub fn parse_p99_limit(s: &str) -> Result<P99Limit, String> {
    let (name, value) = s.split_once('=').unwrap_or(("accept", s));
    let name = name.trim();
    let measure = MEASURES.iter().find(|(n, _)| *n == name).map(|&(_, m)| m).ok_or_else(|| {
        let known: Vec<&str> = MEASURES.iter().map(|(n, _)| *n).collect();
        format!("unknown series `{name}`: one of {}", known.join(", "))
    })?;
    let ms: f64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number of milliseconds"))?;
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!("{ms} is not a limit: give milliseconds ≥ 0"));
    }
    Ok(P99Limit { name: name.to_owned(), measure, ms })
}

/// Parses a share between 0 and 1 (clap's value parser for `--max-error-rate`).
pub fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}

/// The thresholds a run is judged by.
#[derive(Debug, Default)]
pub struct Thresholds {
    /// `--max-p99-ms`.
    pub p99: Vec<P99Limit>,
    /// `--max-error-rate`.
    pub error_rate: Option<f64>,
    /// `--min-trips`.
    pub min_trips: Option<u64>,
}

/// One threshold judged.
pub struct Verdict {
    /// The threshold, as a flag would say it.
    pub threshold: String,
    /// The limit.
    pub limit: f64,
    /// The measured value (`None`: nothing measured).
    pub value: Option<f64>,
    /// Whether it held.
    pub ok: bool,
}

impl Verdict {
    /// The verdict as JSON.
    pub fn json(&self) -> Value {
        json!({"threshold": self.threshold, "limit": self.limit, "value": self.value, "ok": self.ok})
    }

    /// The verdict in words.
    pub fn text(&self) -> String {
        let value = self.value.map_or_else(|| "nothing measured".to_owned(), |v| format!("measured {v}"));
        format!("{} {}: {value}", if self.ok { "held" } else { "BROKEN" }, self.threshold)
    }
}

impl Thresholds {
    /// Each threshold judged against `report`.
    pub fn judge(&self, report: &Report) -> Vec<Verdict> {
        let mut out = Vec::new();
        for limit in &self.p99 {
            let summary = match limit.measure {
                Measure::Endpoint(name) => report.endpoints.iter().find(|e| e.name == name).map(|e| e.summary),
                Measure::Http => report.http,
                Measure::Match => report.time_to_match,
                Measure::Fanout => report.fanout.as_ref().and_then(|f| f.as_ref().ok()).and_then(|f| f.last),
            };
            let value = summary.map(|s| msf(s.p99));
            out.push(Verdict {
                threshold: format!("--max-p99-ms {}={}", limit.name, limit.ms),
                limit: limit.ms,
                value,
                ok: value.is_some_and(|v| v <= limit.ms),
            });
        }
        if let Some(max) = self.error_rate {
            let rate = report.error_rate();
            out.push(Verdict {
                threshold: format!("--max-error-rate {max}"),
                limit: max,
                value: Some(rate),
                ok: rate <= max,
            });
        }
        if let Some(min) = self.min_trips {
            let booked = report.trips_booked as u64;
            out.push(Verdict {
                threshold: format!("--min-trips {min}"),
                limit: min as f64,
                value: Some(booked as f64),
                ok: booked >= min,
            });
        }
        out
    }
}

/// Milliseconds with two decimals, for the table.
fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Milliseconds, for JSON and thresholds.
fn msf(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked {
        Asked { target: "127.0.0.1:1".into(), drivers: 1, riders: 1, trip_rate: 1.0, seconds: 1 }
    }

    #[test]
    fn a_bare_limit_is_the_accepts_and_a_named_one_its_series() {
        assert_eq!(parse_p99_limit("50").map(|l| (l.measure, l.ms)), Ok((Measure::Endpoint(ACCEPT), 50.0)));
        assert_eq!(parse_p99_limit("book=2.5").map(|l| (l.measure, l.ms)), Ok((Measure::Endpoint(BOOK), 2.5)));
        assert_eq!(parse_p99_limit("http=1").map(|l| l.measure), Ok(Measure::Http));
        assert!(parse_p99_limit("nonsense=5").is_err());
        assert!(parse_p99_limit("accept=-1").is_err());
        assert!(parse_p99_limit("accept=NaN").is_err());
        assert!(parse_share("1.5").is_err());
        assert_eq!(parse_share("0.01"), Ok(0.01));
    }

    #[test]
    fn lost_races_are_not_errors() {
        let mut s = Stats::default();
        let refused = |code: &str| json!({"error": {"code": code}});
        s.record(ACCEPT, Duration::from_millis(1), 409, &refused("trip_already_assigned"));
        s.record(ACCEPT, Duration::from_millis(1), 410, &refused("offer_expired"));
        s.record(DECLINE, Duration::from_millis(1), 409, &refused("driver_not_available"));
        s.record(ACCEPT, Duration::from_millis(1), 500, &refused("internal"));
        s.record(ACCEPT, Duration::from_millis(1), 403, &refused("not_offered"));
        s.record(BOOK, Duration::from_millis(1), 409, &refused("trip_already_assigned"));
        s.record(ACCEPT, Duration::from_millis(1), 200, &json!({}));
        let r = Report::new(s, asked(), Duration::from_secs(1));
        assert_eq!((r.race_loss_count(), r.error_count(), r.requests), (3, 3, 7));
        let accept = r.endpoints.iter().find(|e| e.name == ACCEPT).map(|e| (e.errors, e.race_losses));
        assert_eq!(accept, Some((2, 2)));
    }

    #[test]
    fn a_threshold_on_nothing_measured_is_broken_and_one_met_holds() {
        let mut s = Stats::default();
        for ms in 1..=100 {
            s.record(BOOK, Duration::from_millis(ms), 201, &json!({}));
        }
        let r = Report::new(s, asked(), Duration::from_secs(1));
        let t = Thresholds {
            p99: vec![
                P99Limit { name: "book".into(), measure: Measure::Endpoint(BOOK), ms: 99.0 },
                P99Limit { name: "book".into(), measure: Measure::Endpoint(BOOK), ms: 98.9 },
                P99Limit { name: "accept".into(), measure: Measure::Endpoint(ACCEPT), ms: 1e9 },
            ],
            error_rate: Some(0.0),
            min_trips: Some(1),
        };
        let ok: Vec<bool> = t.judge(&r).iter().map(|v| v.ok).collect();
        assert_eq!(ok, [true, false, false, true, false]);
    }
}
