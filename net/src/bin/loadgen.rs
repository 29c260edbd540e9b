//! `dispatch-loadgen`: drives a running `dispatchd` over loopback the way a city does, and
//! reports latency per endpoint and per WebSocket message kind, and correctness.
//!
//! Drivers connect to `/v1/ws`, go online, send a position every few seconds (a random
//! walk at city speed), and answer the offers pushed to them: most accept (several race
//! for the same trip), some decline, some let the offer lapse. A winner drives the trip
//! through arrived → start (with the rider's pickup code) → complete. Riders book trips at
//! a given total rate. Everything is bounded in count and time and talks to loopback only.
//! Every few seconds (`--progress-s`) a progress line goes to stderr: elapsed, trips
//! booked, accepted, completed, race losses, errors, the p99 of every HTTP request so far.
//!
//! Its users are created through `POST /v1/admin/users` with phone numbers of a prefix
//! drawn per run (`+2019`, three random digits, the user's index in seven), so a server
//! that already has people — the demo city's `+2011…`/`+2012…`, or an earlier run's — is
//! no obstacle; a phone taken all the same is replaced by another drawn at random.
//!
//! At the end it checks, through the staff API: every trip acknowledged with `201` is
//! still there (no acknowledged write lost), no trip was won by two drivers (every `200`
//! to an accept is counted per trip) and no driver holds two open trips. Every POST carries
//! an `Idempotency-Key`, so a request retried on a new connection is never applied twice.
//! An accept or decline answered `409 trip_already_assigned`, `409 driver_not_available`,
//! `409 invalid_transition` or `410 offer_expired` lost a race: counted apart from the
//! errors (every other answer ≥ 400, and requests that got no answer).
//!
//! Then the fan-out (`--fanout N`, default 1,000): N staff sockets subscribe to one trip,
//! a driver takes it through accepted, arrived, started and completed, and each change
//! must reach all N; it reports, per change, when the last socket had it.
//!
//! The report goes to stdout: a table, or with `--json` one JSON object with the same
//! figures (everything else then goes to stderr). Exit codes: 0 when the run completed,
//! every correctness check passed and every threshold held; 1 when the run could not be
//! completed (no server, a refused admin token, a failed fan-out) or a correctness check
//! failed (with `--json`, stdout is then `{"error": …}` or the report); 2 for bad flags;
//! 3 when it completed correctly but a threshold (`--max-p99-ms`, `--max-error-rate`,
//! `--min-trips`) was broken, each broken one named on stderr.
//!
//! `cargo run --release -p dispatch-server --bin dispatch-loadgen -- --spawn` starts a
//! `dispatchd --dev --demo --demo-drivers 0` of its own (the binary beside this one) on a
//! temporary data dir (`--port` to choose its port) with rate limits opened up for the run;
//! `--addr HOST:PORT --admin-token T` targets one that runs already (it needs a zone that
//! prices `economy` around Cairo's Tahrir Square: `--dev --demo` has it).
//!
//! Big runs (`scripts/scale-100k.sh`): `--warmup` connects every driver (online, socket
//! open; `--connect-concurrency` at a time, so the listen backlog never overflows) before
//! the load's clock starts; `--source-ips N` spreads the drivers' and riders' connections
//! over 127.0.0.1 … 127.0.0.N (one per 10,000 drivers by default: one (source,
//! destination) pair has ~28,000 ports); users are created `--setup-concurrency` at a
//! time; the soft descriptor limit is raised to the hard one. The report ends with
//! DESIGN.md's service levels (met or not), the positions sent per second, and the CPU
//! time and resident memory of the generator and of a `--spawn`ed server (from `/proc`).
//!
//! Its modules live in `bin/loadgen/` (`#[path]`: a crate root's children would otherwise
//! sit beside it in `bin/`, where Cargo takes every file for a binary of its own):
//! `client` (the HTTP connection), `spawn` (`--spawn`'s server), `report` (figures,
//! report, thresholds), `usage` (a process's CPU and memory from `/proc`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// `println!` that never panics: a closed stdout (`| head`) loses the text, nothing else.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[path = "loadgen/client.rs"]
mod client;
#[path = "loadgen/fanout.rs"]
mod fanout;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/setup.rs"]
mod setup;
#[path = "loadgen/spawn.rs"]
mod spawn;
#[path = "loadgen/usage.rs"]
mod usage;

use client::Http;
use fanout::{Fanout, UserSetup, fanout};
use report::{Asked, FanoutFigures, P99Limit, Report, Stats, Summary, Thresholds};
use setup::{Phones, await_zone, create_user, create_users, sources};

/// Cairo's Tahrir Square: inside the demo zone.
const CENTER: (f64, f64) = (30.0444, 31.2357);

/// Most users one run creates (the phone numbers' index has seven digits).
const MAX_USERS: usize = 9_999_000;

/// Longest wait for a WebSocket handshake, and for the demo zone to exist.
const WAIT: Duration = Duration::from_secs(30);

/// What stops a run (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that cannot work together.
    #[error("{0}")]
    Usage(String),
    /// `--spawn` could not start its server.
    #[error("cannot run dispatchd: {0}")]
    Spawn(String),
    /// The server refused or failed what the run cannot go on without.
    #[error("{0}")]
    Server(String),
}

#[derive(Debug, Parser)]
#[command(
    about = "Drive a dispatchd over loopback like a city, and measure it",
    after_help = "Exit codes: 0 all held; 1 the run could not be completed, or a correctness check failed \
(an acknowledged trip lost, a trip won twice, a driver holding two open trips); 2 bad flags; \
3 a threshold was broken (each broken one is named on stderr)."
)]
struct Args {
    /// A running dispatchd.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Its admin token (default: the DISPATCH_ADMIN_TOKEN environment variable).
    #[arg(long)]
    admin_token: Option<String>,
    /// Start a dispatchd --dev of our own on a temporary data dir instead.
    #[arg(long, conflicts_with = "addr")]
    spawn: bool,
    /// With --spawn: the port it listens on (127.0.0.1); a free one by default.
    #[arg(long, requires = "spawn")]
    port: Option<u16>,
    /// Drivers, each with a WebSocket.
    #[arg(long, default_value_t = 200)]
    drivers: usize,
    /// Riders.
    #[arg(long, default_value_t = 200)]
    riders: usize,
    /// Trips booked per second, all riders together.
    #[arg(long, default_value_t = 20.0)]
    trip_rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Milliseconds between a driver's position reports.
    #[arg(long, default_value_t = 3000)]
    location_ms: u64,
    /// Share of offers a driver accepts (the rest are declined or ignored, half each).
    #[arg(long, default_value_t = 0.8)]
    accept: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After the city: this many staff sockets subscribed to one trip, whose every change
    /// must reach all of them (0: skip). DESIGN.md: fan-out of one event to 1,000 sockets.
    #[arg(long, default_value_t = 1_000)]
    fanout: usize,
    /// Trips driven through the fan-out, 4 changes each (accepted, arrived, started, completed).
    #[arg(long, default_value_t = 10)]
    fanout_trips: usize,
    /// During the city's load: this many staff sockets subscribed to the `ops` channel (the
    /// console's live map: a snapshot of the whole city once a second each), to measure what
    /// readers walking the fleet cost everyone else (0: none).
    #[arg(long, default_value_t = 0)]
    ops_sockets: usize,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5)]
    progress_s: u64,
    /// The report as one JSON object on stdout (the same figures as the table).
    #[arg(long)]
    json: bool,
    /// Fail (exit 3) if a p99 is above this many milliseconds. `MS` alone is the accept's
    /// p99; `NAME=MS` names the series: accept, decline, book (POST /v1/trips), list
    /// (GET /v1/trips), arrived, start, complete, status, location, ws-connect, ws-location,
    /// offer (201 → trip_offer frame), http (every HTTP request together), match (created →
    /// accepted), fanout (the last socket of each change). Repeatable. A series with no
    /// samples breaks its limit.
    #[arg(long, value_name = "[NAME=]MS", value_parser = report::parse_p99_limit)]
    max_p99_ms: Vec<P99Limit>,
    /// Fail (exit 3) if more than this share (0 to 1) of requests (HTTP and WebSocket
    /// handshakes) ended in an error; races lost are not errors.
    #[arg(long, value_name = "SHARE", value_parser = report::parse_share)]
    max_error_rate: Option<f64>,
    /// Fail (exit 3) if fewer trips than this were booked (acknowledged with 201).
    #[arg(long, value_name = "N")]
    min_trips: Option<u64>,
    /// Loopback source addresses the drivers' and riders' connections leave from
    /// (127.0.0.1, 127.0.0.2, …; one (source, destination) pair has ~28,000 ports).
    /// 0: one per 10,000 drivers. Only for a target on 127.0.0.0/8.
    #[arg(long, default_value_t = 0)]
    source_ips: u8,
    /// Drivers going online and opening their socket at the same time.
    #[arg(long, default_value_t = 512)]
    connect_concurrency: usize,
    /// Users created at the same time before the run (each over its own connection).
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// Every driver online with its socket open before the load's clock starts (and the
    /// riders' first booking); without it, drivers connect during the load.
    #[arg(long)]
    warmup: bool,
}

type Shared = Arc<Mutex<Stats>>;

fn point(rng: &mut StdRng, spread_deg: f64) -> (f64, f64) {
    (CENTER.0 + rng.random_range(-spread_deg..spread_deg), CENTER.1 + rng.random_range(-spread_deg..spread_deg))
}

/// A WebSocket to `/v1/ws` with `token` in the header, from `source` when given, or why not.
async fn open_ws(
    addr: SocketAddr,
    source: Option<IpAddr>,
    token: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, String> {
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().map_err(|e| e.to_string())?;
    let auth = format!("Bearer {token}").parse().map_err(|_| "the token is not a header value".to_owned())?;
    req.headers_mut().insert("authorization", auth);
    // 10,000 sockets in one process: a small read buffer each (tungstenite's default is
    // 128 KiB, zeroed as it fills), as dispatchd's own sockets have.
    let config = WebSocketConfig::default().read_buffer_size(dispatch_server::ws::READ_BUFFER_BYTES);
    let handshake = async {
        let stream = client::connect(addr, source).await.map_err(|e| e.to_string())?;
        tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(WAIT, handshake).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timeout".to_owned()),
    }
}

/// Where a driver's or rider's connections go and leave from.
#[derive(Clone, Copy)]
struct Route {
    addr: SocketAddr,
    source: Option<IpAddr>,
}

impl Route {
    /// A connection kept open (a rider's, a driver's that reports over HTTP): it leaves from
    /// the route's source address, as the driver's socket does.
    fn http(self) -> Http {
        Http::from_source(self.addr, self.source)
    }

    /// A connection for one act (going online, an offer and its ride), closed after it by
    /// us, so its port waits in TIME_WAIT for a minute. It is not bound to a source:
    /// `bind` never takes a port in TIME_WAIT, and 500 acts a second would hold ~30,000 of
    /// an address's ~28,000 ports; `connect` picks the port itself and takes TIME_WAIT ones
    /// back on loopback (`net.ipv4.tcp_tw_reuse`, 2 by default).
    fn act(self) -> Http {
        Http::new(self.addr)
    }
}

/// When the load runs: the driver tasks wait for `Some(until)` after connecting.
type Go = tokio::sync::watch::Receiver<Option<Instant>>;

/// Waits for the load's end to be set (it is once every driver connected, with `--warmup`).
async fn load_until(go: &mut Go) -> Option<Instant> {
    go.wait_for(Option::is_some).await.ok().and_then(|until| *until)
}

async fn driver(
    route: Route,
    token: String,
    args: Arc<Args>,
    seed: u64,
    stats: Shared,
    connecting: Arc<tokio::sync::Semaphore>,
    mut go: Go,
) {
    let addr = route.addr;
    let mut rng = StdRng::seed_from_u64(seed);
    // One driver in ten reports its position over HTTP (an app without a socket open),
    // so `POST /v1/driver/location` is measured too; the others over the socket.
    let mut positions_over_http = seed.is_multiple_of(10).then(|| route.http());
    let mut at = point(&mut rng, 0.03);
    // A driver keeps its WebSocket open and opens HTTP connections only to act (going
    // online, an offer and the ride that follows): 10,000 drivers then hold 10,000
    // sockets, not 20,000 (a process may have 20,000 files here). At most
    // `--connect-concurrency` drivers connect at once: a storm of 100,000 SYNs overflows
    // any listen backlog, and a dropped SYN is retried only after 1 s.
    let ws = {
        let _permit = connecting.acquire().await.ok();
        let sent = Instant::now();
        let online = json!({"status": "online", "location": {"lat": at.0, "lng": at.1}});
        let (status, body) = route.act().call("POST", "/v1/driver/status", &token, Some(online)).await;
        stats.lock().record(report::STATUS, sent.elapsed(), status, &body);
        if status != 200 {
            stats.lock().connected.1 += 1;
            return; // counted in the errors
        }
        let sent = Instant::now();
        let ws = open_ws(addr, route.source, &token).await;
        let mut s = stats.lock();
        s.latency.entry(report::WS_CONNECT).or_default().push(sent.elapsed());
        match ws {
            Ok(ws) => {
                s.connected.0 += 1;
                ws
            }
            Err(why) => {
                s.connected.1 += 1;
                s.fail(report::WS_CONNECT, 0, &why);
                return;
            }
        }
    };
    let Some(until) = load_until(&mut go).await else { return };
    let (mut tx, mut rx) = ws.split();
    // Real drivers' reports are spread over the interval, not phase-locked: start each
    // driver's clock at a random offset (10,000 drivers reporting in the same millisecond
    // every few seconds would measure the burst, not the city).
    let every = Duration::from_millis(args.location_ms.max(1));
    let phase = Duration::from_millis(rng.random_range(0..args.location_ms.max(1)));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    let end = tokio::time::sleep_until(tokio::time::Instant::from_std(until));
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = tick.tick() => {
                // ~10 m/s in a random direction.
                let step = 10.0 * every.as_secs_f64() / 111_195.0;
                at = (at.0 + rng.random_range(-step..step), at.1 + rng.random_range(-step..step));
                if let Some(http) = positions_over_http.as_mut() {
                    let sent = Instant::now();
                    let body = json!({"lat": at.0, "lng": at.1});
                    let (status, reply) = http.call("POST", "/v1/driver/location", &token, Some(body)).await;
                    stats.lock().record(report::LOCATION, sent.elapsed(), status, &reply);
                    continue;
                }
                let frame = location_frame(at);
                let sent = Instant::now();
                if tx.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                stats.lock().latency.entry(report::WS_LOCATION).or_default().push(sent.elapsed());
            }
            msg = rx.next() => {
                let Some(Ok(Message::Text(text))) = msg else {
                    if matches!(msg, None | Some(Err(_))) { break }
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                // A driver on a ride drives it to the end before reading the next offer
                // (`drive` below), as the app does: offers pushed meanwhile are stale.
                if v["type"] != "trip_offer" {
                    continue;
                }
                let Some(trip) = v["offer"]["trip_id"].as_str().map(str::to_owned) else { continue };
                {
                    let mut s = stats.lock();
                    *s.offers.entry(trip.clone()).or_default() += 1;
                    if let Some(d) = s.created.get(&trip).map(Instant::elapsed) {
                        s.latency.entry(report::WS_OFFER).or_default().push(d);
                    }
                }
                let roll: f64 = rng.random();
                let mut http = route.act();
                if roll < args.accept {
                    let sent = Instant::now();
                    let (status, body) = http.call("POST", &format!("/v1/trips/{trip}/accept"), &token, None).await;
                    stats.lock().record(report::ACCEPT, sent.elapsed(), status, &body);
                    if status == 200 {
                        {
                            let mut s = stats.lock();
                            s.accepted += 1;
                            *s.wins.entry(trip.clone()).or_default() += 1;
                            if let Some(created) = s.created.get(&trip).copied() {
                                s.time_to_match.push(created.elapsed());
                            }
                        }
                        drive(&mut http, &token, &trip, &stats).await;
                    }
                } else if roll < args.accept + (1.0 - args.accept) / 2.0 {
                    let sent = Instant::now();
                    let (status, body) = http.call("POST", &format!("/v1/trips/{trip}/decline"), &token, None).await;
                    stats.lock().record(report::DECLINE, sent.elapsed(), status, &body);
                }
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// The winner's ride: arrived, start with the rider's code, complete.
async fn drive(http: &mut Http, token: &str, trip: &str, stats: &Shared) {
    for name in [report::ARRIVED, report::START, report::COMPLETE] {
        let step = name.rsplit('/').next().unwrap_or_default();
        let body = match step {
            "start" => {
                // The offer can reach the driver before the rider's own 201 is read: the
                // rider tells the code once their app has it (as a person would).
                let mut code = None;
                for _ in 0..200 {
                    code = stats.lock().codes.get(trip).cloned();
                    if code.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Some(json!({"pickup_code": code.unwrap_or_default()}))
            }
            "complete" => Some(json!({"distance_m": 3200})),
            _ => None,
        };
        let sent = Instant::now();
        let (status, reply) = http.call("POST", &format!("/v1/trips/{trip}/{step}"), token, body).await;
        let mut s = stats.lock();
        s.record(name, sent.elapsed(), status, &reply);
        if status != 200 {
            return; // cancelled meanwhile, or a bug: counted in the errors
        }
        if step == "complete" {
            s.completed += 1;
        }
    }
}

async fn rider(route: Route, token: String, gap: Duration, seed: u64, stats: Shared, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut http = route.http();
    // Sleeps `d`, or until the load ends if that is sooner.
    let nap = |d: Duration| tokio::time::sleep_until(tokio::time::Instant::from_std((Instant::now() + d).min(until)));
    // Spread the riders' first bookings over one gap.
    nap(gap.mul_f64(rng.random_range(0.0..1.0))).await;
    while Instant::now() < until {
        let (p, d) = (point(&mut rng, 0.02), point(&mut rng, 0.03));
        let body = json!({
            "pickup": {"lat": p.0, "lng": p.1}, "dropoff": {"lat": d.0, "lng": d.1},
            "category": "economy", "payment_method": "cash",
        });
        let sent = Instant::now();
        let (status, reply) = http.call("POST", "/v1/trips", &token, Some(body)).await;
        {
            let mut s = stats.lock();
            s.record(report::BOOK, sent.elapsed(), status, &reply);
            if status == 201
                && let Some(id) = reply["id"].as_str()
            {
                let code = reply["pickup_code"].as_str().unwrap_or_default().to_owned();
                s.created.insert(id.to_owned(), sent);
                s.codes.insert(id.to_owned(), code);
            }
        }
        let sent = Instant::now();
        let (status, reply) = http.call("GET", "/v1/trips?limit=5", &token, None).await;
        stats.lock().record(report::LIST, sent.elapsed(), status, &reply);
        nap(gap.mul_f64(rng.random_range(0.5..1.5))).await;
    }
}

/// A driver's position frame. Formatted directly, not through a `Value`: a
/// 100,000-driver run sends 33,000 of these a second from the cores the server runs on.
fn location_frame(at: (f64, f64)) -> String {
    format!(r#"{{"type":"location","lat":{},"lng":{}}}"#, at.0, at.1)
}

/// A staff socket subscribed to the `ops` channel until `until`, counting the snapshots it
/// reads into `frames`. `None` if it cannot connect or subscribe.
async fn ops_watcher(
    addr: SocketAddr,
    admin: &str,
    frames: Arc<AtomicU64>,
    until: Instant,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut ws = open_ws(addr, None, admin).await.ok()?;
    ws.send(Message::Text(json!({"type": "subscribe", "channel": "ops"}).to_string().into())).await.ok()?;
    Some(tokio::spawn(async move {
        let deadline = tokio::time::Instant::from_std(until);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
            if let Message::Text(text) = msg
                && text.contains("\"ops_snapshot\"")
            {
                frames.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = ws.send(Message::Close(None)).await;
    }))
}

/// Prints a progress line to stderr every `every` until the load ends: while drivers
/// connect before the load (`--warmup`), how many have; then the load's progress.
async fn progress(stats: Shared, warmup: Instant, go: Go, load: Duration, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let until = *go.borrow();
        let line = match until {
            None => {
                let (ok, failed) = stats.lock().connected;
                format!("[{:>6.1} s] warm-up: {ok} drivers connected, {failed} failed", warmup.elapsed().as_secs_f64())
            }
            Some(until) if Instant::now() < until => {
                let elapsed = load.saturating_sub(until.saturating_duration_since(Instant::now()));
                stats.lock().progress(elapsed)
            }
            Some(_) => return,
        };
        err!("{line}");
    }
}

/// Raises this process's soft descriptor limit to the hard one (every driver holds a
/// socket; a 100,000-driver run needs the hard limit raised first: `ulimit -Hn`). A
/// spawned server inherits the limits and raises its own soft limit itself.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current != maximum
        && let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum })
    {
        err!("dispatch-loadgen: could not raise the descriptor limit ({current:?} of {maximum:?}): {e}");
    }
}

/// Says something that is not the report: on stdout for the text report, on stderr with `--json`.
fn say(json: bool, text: &str) {
    if json {
        err!("{text}");
    } else {
        out!("{text}");
    }
}

/// The run: setup, load, correctness checks, fan-out. Answers the report, or what stopped it.
async fn run(args: Arc<Args>) -> Result<Report, Error> {
    if args.drivers + args.riders > MAX_USERS {
        return Err(Error::Usage(format!("at most {MAX_USERS} drivers and riders together")));
    }
    let spawned = if args.spawn { Some(spawn::Spawned::start(args.port.unwrap_or(0))?) } else { None };
    let (addr, admin) = match &spawned {
        Some(s) => (s.addr, spawn::ADMIN_TOKEN.to_owned()),
        None => {
            let addr = args.addr.ok_or_else(|| Error::Usage("give --addr HOST:PORT or --spawn".into()))?;
            let admin = args.admin_token.clone().or_else(|| std::env::var("DISPATCH_ADMIN_TOKEN").ok());
            (addr, admin.ok_or_else(|| Error::Usage("give --admin-token (or set DISPATCH_ADMIN_TOKEN)".into()))?)
        }
    };
    say(
        args.json,
        &format!(
            "dispatch-loadgen → {addr}: {} drivers, {} riders, {} trips/s, {} s",
            args.drivers, args.riders, args.trip_rate, args.seconds
        ),
    );

    let mut http = Http::new(addr);
    await_zone(&mut http, &admin).await?;
    let sources = sources(addr, args.source_ips, args.drivers)?;
    let route = |i: usize| Route { addr, source: sources.get(i % sources.len().max(1)).copied() };
    if sources.len() > 1 {
        say(
            args.json,
            &format!(
                "connections leave from {} addresses, {:?} to {:?}",
                sources.len(),
                sources[0],
                sources[sources.len() - 1]
            ),
        );
    }
    let phones = Arc::new(Phones { run: rand::random_range(0..1000) });
    let setup = Instant::now();
    let people = args.drivers + args.riders;
    let mut tokens = create_users(addr, &admin, 0..people, args.drivers, &phones, args.setup_concurrency).await?;
    let riders = tokens.split_off(args.drivers);
    let drivers = tokens;
    say(args.json, &format!("{people} users created in {:.1} s", setup.elapsed().as_secs_f64()));

    let stats: Shared = Arc::new(Mutex::new(Stats::default()));
    let connecting = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let (go_tx, go) = tokio::sync::watch::channel(None);
    let mut tasks = Vec::new();
    let warmup = Instant::now();
    let ticker = (args.progress_s > 0).then(|| {
        let load = Duration::from_secs(args.seconds);
        tokio::spawn(progress(Arc::clone(&stats), warmup, go.clone(), load, Duration::from_secs(args.progress_s)))
    });
    let go_now = |go_tx: &tokio::sync::watch::Sender<Option<Instant>>| {
        let start = Instant::now();
        go_tx.send_replace(Some(start + Duration::from_secs(args.seconds)));
        start
    };
    // Without `--warmup` the load's clock starts now, drivers connecting meanwhile.
    let mut start = (!args.warmup).then(|| go_now(&go_tx));
    for (i, token) in drivers.into_iter().enumerate() {
        let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let (args, stats, connecting) = (Arc::clone(&args), Arc::clone(&stats), Arc::clone(&connecting));
        tasks.push(tokio::spawn(driver(route(i), token, args, seed, stats, connecting, go.clone())));
    }
    let start = match start.take() {
        Some(start) => start,
        None => {
            // `--warmup`: every driver online with its socket open before the clock starts.
            loop {
                let (ok, failed) = stats.lock().connected;
                if ok + failed >= args.drivers as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (ok, failed) = stats.lock().connected;
            say(
                args.json,
                &format!(
                    "warm-up: {ok} drivers online with a socket ({failed} failed) in {:.1} s",
                    warmup.elapsed().as_secs_f64()
                ),
            );
            go_now(&go_tx)
        }
    };
    let until = start + Duration::from_secs(args.seconds);
    // Staff watching the live map: each socket gets the whole city once a second.
    let ops_frames = Arc::new(AtomicU64::new(0));
    let mut watchers = Vec::new();
    for i in 0..args.ops_sockets {
        match ops_watcher(addr, &admin, Arc::clone(&ops_frames), until).await {
            Some(task) => watchers.push(task),
            None => {
                err!("ops socket {i} could not subscribe");
                break;
            }
        }
    }
    // Each rider books every `gap`, so all together make `trip_rate` a second.
    let gap = Duration::from_secs_f64((args.riders as f64 / args.trip_rate.max(0.001)).min(3600.0));
    for (i, token) in riders.into_iter().enumerate() {
        let seed = args.seed.wrapping_mul(7_919).wrapping_add(i as u64);
        tasks.push(tokio::spawn(rider(route(i), token, gap, seed, Arc::clone(&stats), until)));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
    }
    for w in watchers.drain(..) {
        let _ = w.await;
    }

    // Correctness, through the staff API.
    let stats = std::mem::take(&mut *stats.lock());
    let mut lost = 0;
    let mut holders: HashMap<String, u32> = HashMap::new();
    for id in stats.created.keys() {
        let (status, trip) = http.call("GET", &format!("/v1/trips/{id}"), &admin, None).await;
        if status != 200 {
            lost += 1;
            continue;
        }
        if matches!(trip["status"].as_str(), Some("accepted" | "arrived" | "in_progress"))
            && let Some(d) = trip["driver_id"].as_str()
        {
            *holders.entry(d.to_owned()).or_default() += 1;
        }
    }
    let double_wins = stats.wins.values().filter(|&&n| n > 1).count();
    let asked = Asked {
        target: addr.to_string(),
        drivers: args.drivers,
        riders: args.riders,
        trip_rate: args.trip_rate,
        seconds: args.seconds,
    };
    let mut report = Report::new(stats, asked, elapsed);
    report.lost = lost;
    report.double_wins = double_wins;
    report.double_held = holders.values().filter(|&&n| n > 1).count();
    report.ops = (args.ops_sockets > 0).then(|| (args.ops_sockets, ops_frames.load(Ordering::Relaxed)));
    if args.fanout > 0 {
        let users = UserSetup { first: args.drivers + args.riders, phones: &phones };
        let figures = fanout(addr, &admin, args.fanout, args.fanout_trips, users).await.map(|Fanout { last, each }| {
            FanoutFigures { sockets: args.fanout, last: Summary::of_unsorted(last), each: Summary::of_unsorted(each) }
        });
        report.fanout = Some(figures);
    }
    report.server_usage = spawned.as_ref().and_then(|s| usage::Usage::of(Some(s.pid())));
    report.generator_usage = usage::Usage::of(None);
    drop(spawned);
    Ok(report)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    raise_fd_limit();
    let thresholds =
        Thresholds { p99: args.max_p99_ms.clone(), error_rate: args.max_error_rate, min_trips: args.min_trips };
    let report = match run(Arc::clone(&args)).await {
        Ok(report) => report,
        Err(e) => {
            err!("dispatch-loadgen: {e}");
            if args.json {
                out!("{}", json!({"error": e.to_string()}));
            }
            return ExitCode::from(1);
        }
    };
    let verdicts = thresholds.judge(&report);
    for v in verdicts.iter().filter(|v| !v.ok) {
        err!("dispatch-loadgen: threshold {}", v.text());
    }
    let failed = report.incorrect() || matches!(report.fanout, Some(Err(_)));
    let code = if failed {
        1
    } else if verdicts.iter().any(|v| !v.ok) {
        3
    } else {
        0
    };
    if args.json {
        let mut v = report.json();
        v["thresholds"] = verdicts.iter().map(report::Verdict::json).collect();
        v["exit_code"] = json!(code);
        out!("{v}");
    } else {
        out!("{}", report.text());
        if !verdicts.is_empty() {
            out!("\nthresholds:");
            for v in &verdicts {
                out!("  {}", v.text());
            }
        }
    }
    if let Some(Err(why)) = &report.fanout {
        err!("dispatch-loadgen: the fan-out failed: {why}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_frame_is_the_json_the_server_reads() {
        let at = (30.044_412_5_f64, -31.235_7_f64);
        let frame = location_frame(at);
        let v: Value = serde_json::from_str(&frame).unwrap_or(Value::Null);
        assert_eq!(v, json!({"type": "location", "lat": at.0, "lng": at.1}));
    }
}
