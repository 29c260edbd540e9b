//! `dispatch-loadgen`: drives a running `dispatchd` over loopback the way a city does, and
//! reports latency per endpoint and per WebSocket message kind, and correctness.
//!
//! Drivers connect to `/v1/ws`, go online, send a position every few seconds (a random
//! walk at city speed), and answer the offers pushed to them: most accept (several race
//! for the same trip), some decline, some let the offer lapse. A winner drives the trip
//! through arrived → start (with the rider's pickup code) → complete. Riders book trips at
//! a given total rate. Everything is bounded in count and time and talks to loopback only.
//!
//! At the end it checks, through the staff API: every trip acknowledged with `201` is
//! still there (no acknowledged write lost), no trip was won by two drivers (every `200`
//! to an accept is counted per trip) and no driver holds two open trips. Every POST carries
//! an `Idempotency-Key`, so a request retried on a new connection is never applied twice.
//!
//! Then the fan-out (`--fanout N`, default 1,000): N staff sockets subscribe to one trip,
//! a driver takes it through accepted, arrived, started and completed, and each change
//! must reach all N; it reports, per change, when the last socket had it.
//!
//! `cargo run --release -p dispatch-server --bin dispatch-loadgen -- --spawn` starts a
//! `dispatchd --dev` of its own (the binary beside this one) on a temporary data dir with
//! rate limits opened up for the run; `--addr HOST:PORT --admin-token T` targets one
//! that runs already.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a load tool: a broken invariant should stop it loudly

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Cairo's Tahrir Square: inside the demo zone.
const CENTER: (f64, f64) = (30.0444, 31.2357);

#[derive(Debug, Parser)]
#[command(about = "Drive a dispatchd over loopback like a city, and measure it")]
struct Args {
    /// A running dispatchd.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Its admin token (default: the DISPATCH_ADMIN_TOKEN environment variable).
    #[arg(long)]
    admin_token: Option<String>,
    /// Start a dispatchd --dev of our own on a temporary data dir instead.
    #[arg(long)]
    spawn: bool,
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
}

/// Latencies per name, and errors per code.
#[derive(Default)]
struct Stats {
    latency: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
    /// Every trip acknowledged with 201, with when.
    created: HashMap<String, Instant>,
    /// 200s to accepts, per trip.
    wins: HashMap<String, u32>,
    /// Offers received per trip.
    offers: HashMap<String, u32>,
    /// Creation → first accept won.
    time_to_match: Vec<Duration>,
    /// Pickup codes riders were given, for the winning driver to type.
    codes: HashMap<String, String>,
}

type Shared = Arc<Mutex<Stats>>;

fn record(stats: &Shared, name: &'static str, took: Duration, status: u16, body: &Value) {
    let mut s = stats.lock();
    s.latency.entry(name).or_default().push(took);
    if status >= 400 {
        let code = body["error"]["code"].as_str().unwrap_or("?").to_owned();
        *s.errors.entry(format!("{name} {status} {code}")).or_default() += 1;
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Http {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Http { addr, sender: None }
    }

    async fn call(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        // A POST sent again after a broken connection may have been applied the first
        // time: the same key makes the retry answer the first outcome instead of, say,
        // booking a second trip (the double booking apps make when they retry without one).
        let key = (method == "POST").then(|| format!("lg-{:016x}", rand::random::<u64>()));
        for _ in 0..3 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                let Ok(stream) = tokio::net::TcpStream::connect(self.addr).await else { continue };
                let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                    continue;
                };
                tokio::spawn(conn);
                self.sender = Some(sender);
            }
            let Some(sender) = self.sender.as_mut() else { continue };
            if sender.ready().await.is_err() {
                self.sender = None;
                continue;
            }
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string())
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json");
            if let Some(key) = &key {
                req = req.header("idempotency-key", key);
            }
            let req = req
                .body(Full::new(Bytes::from(body.as_ref().map(Value::to_string).unwrap_or_default())))
                .expect("a valid request");
            match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    return (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                }
                Err(_) => self.sender = None,
            }
        }
        (599, json!({"error": {"code": "connection_failed"}}))
    }
}

fn point(rng: &mut StdRng, spread_deg: f64) -> (f64, f64) {
    (CENTER.0 + rng.random_range(-spread_deg..spread_deg), CENTER.1 + rng.random_range(-spread_deg..spread_deg))
}

async fn create_user(http: &mut Http, admin: &str, role: &str, n: usize) -> (String, String) {
    let mut body = json!({"role": role, "name": format!("{role} {n}"), "phone": format!("+2011{n:08}")});
    if role == "driver" {
        body["vehicle"] = json!({"category": "economy", "plate": format!("LG {n}")});
    }
    let (status, v) = http.call("POST", "/v1/admin/users", admin, Some(body)).await;
    assert_eq!(status, 201, "creating a {role}: {v}");
    (v["user"]["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

async fn driver(addr: SocketAddr, token: String, args: Arc<Args>, seed: u64, stats: Shared, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    // One driver in ten reports its position over HTTP (an app without a socket open),
    // so `POST /v1/driver/location` is measured too; the others over the socket.
    let mut positions_over_http = seed.is_multiple_of(10).then(|| Http::new(addr));
    let mut at = point(&mut rng, 0.03);
    // A driver keeps its WebSocket open and opens HTTP connections only to act (going
    // online, an offer and the ride that follows): 10,000 drivers then hold 10,000
    // sockets, not 20,000 (a process may have 20,000 files here).
    let (status, body) = Http::new(addr)
        .call(
            "POST",
            "/v1/driver/status",
            &token,
            Some(json!({"status": "online", "location": {"lat": at.0, "lng": at.1}})),
        )
        .await;
    assert_eq!(status, 200, "going online: {body}");
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    // 10,000 sockets in one process: a small read buffer each (tungstenite's default is
    // 128 KiB, zeroed as it fills), as dispatchd's own sockets have.
    let config = WebSocketConfig::default().read_buffer_size(dispatch_server::ws::READ_BUFFER_BYTES);
    let Ok((ws, _)) = tokio_tungstenite::connect_async_with_config(req, Some(config), true).await else {
        stats.lock().errors.entry("ws connect failed".into()).and_modify(|n| *n += 1).or_insert(1);
        return;
    };
    let (mut tx, mut rx) = ws.split();
    // Real drivers' reports are spread over the interval, not phase-locked: start each
    // driver's clock at a random offset (10,000 drivers reporting in the same millisecond
    // every few seconds would measure the burst, not the city).
    let phase = Duration::from_millis(rng.random_range(0..args.location_ms.max(1)));
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_millis(args.location_ms));
    loop {
        if Instant::now() >= until {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {
                // ~10 m/s in a random direction.
                let step = 10.0 * args.location_ms as f64 / 1000.0 / 111_195.0;
                at = (at.0 + rng.random_range(-step..step), at.1 + rng.random_range(-step..step));
                if let Some(http) = positions_over_http.as_mut() {
                    let sent = Instant::now();
                    let body = json!({"lat": at.0, "lng": at.1});
                    let (status, reply) = http.call("POST", "/v1/driver/location", &token, Some(body)).await;
                    record(&stats, "POST /v1/driver/location", sent.elapsed(), status, &reply);
                    continue;
                }
                let frame = json!({"type": "location", "lat": at.0, "lng": at.1}).to_string();
                let sent = Instant::now();
                if tx.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                stats.lock().latency.entry("ws location (send)").or_default().push(sent.elapsed());
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
                let trip = v["offer"]["trip_id"].as_str().unwrap_or_default().to_owned();
                let offered_after = {
                    let mut s = stats.lock();
                    *s.offers.entry(trip.clone()).or_default() += 1;
                    s.created.get(&trip).map(Instant::elapsed)
                };
                if let Some(d) = offered_after {
                    stats.lock().latency.entry("ws trip_offer (since trip created)").or_default().push(d);
                }
                let roll: f64 = rng.random();
                let mut http = Http::new(addr);
                if roll < args.accept {
                    let sent = Instant::now();
                    let (status, body) = http.call("POST", &format!("/v1/trips/{trip}/accept"), &token, None).await;
                    record(&stats, "POST /v1/trips/{id}/accept", sent.elapsed(), status, &body);
                    if status == 200 {
                        {
                            let mut s = stats.lock();
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
                    record(&stats, "POST /v1/trips/{id}/decline", sent.elapsed(), status, &body);
                }
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// The winner's ride: arrived, start with the rider's code, complete.
async fn drive(http: &mut Http, token: &str, trip: &str, stats: &Shared) {
    for (name, path, body) in [
        ("POST /v1/trips/{id}/arrived", format!("/v1/trips/{trip}/arrived"), None),
        ("POST /v1/trips/{id}/start", format!("/v1/trips/{trip}/start"), Some(())),
        ("POST /v1/trips/{id}/complete", format!("/v1/trips/{trip}/complete"), None),
    ] {
        let body = match body {
            Some(()) => {
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
            None if name.ends_with("complete") => Some(json!({"distance_m": 3200})),
            None => None,
        };
        let sent = Instant::now();
        let (status, reply) = http.call("POST", &path, token, body).await;
        record(stats, name, sent.elapsed(), status, &reply);
        if status != 200 {
            return; // cancelled meanwhile, or a bug: counted in the errors
        }
    }
}

async fn rider(addr: SocketAddr, token: String, gap: Duration, seed: u64, stats: Shared, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut http = Http::new(addr);
    // Spread the riders' first bookings over one gap.
    tokio::time::sleep(gap.mul_f64(rng.random_range(0.0..1.0))).await;
    while Instant::now() < until {
        let (p, d) = (point(&mut rng, 0.02), point(&mut rng, 0.03));
        let body = json!({
            "pickup": {"lat": p.0, "lng": p.1}, "dropoff": {"lat": d.0, "lng": d.1},
            "category": "economy", "payment_method": "cash",
        });
        let sent = Instant::now();
        let (status, reply) = http.call("POST", "/v1/trips", &token, Some(body)).await;
        record(&stats, "POST /v1/trips", sent.elapsed(), status, &reply);
        if status == 201 {
            let id = reply["id"].as_str().unwrap_or_default().to_owned();
            let code = reply["pickup_code"].as_str().unwrap_or_default().to_owned();
            let mut s = stats.lock();
            s.created.insert(id.clone(), sent);
            s.codes.insert(id, code);
        }
        let sent = Instant::now();
        let (status, reply) = http.call("GET", "/v1/trips?limit=5", &token, None).await;
        record(&stats, "GET /v1/trips", sent.elapsed(), status, &reply);
        tokio::time::sleep(gap.mul_f64(rng.random_range(0.5..1.5))).await;
    }
}

/// What one fan-out measured: for each trip change, when the last of the sockets had it
/// (from just before the HTTP request that made the change), and every socket's delay.
struct Fanout {
    last: Vec<Duration>,
    each: Vec<Duration>,
}

/// `n` staff sockets subscribed to one trip at a time; a driver drives `trips` trips through
/// accept, arrived, start and complete; each change must reach every socket. Returns `None`
/// (and says why) if a socket or a step fails.
async fn fanout(addr: SocketAddr, admin: &str, n: usize, trips: usize) -> Option<Fanout> {
    let mut http = Http::new(addr);
    let (_, rider) = create_user(&mut http, admin, "rider", 9_000_000).await;
    let (_, driver) = create_user(&mut http, admin, "driver", 9_000_001).await;
    let (status, body) = http
        .call(
            "POST",
            "/v1/driver/status",
            &driver,
            Some(json!({"status": "online", "location": {"lat": CENTER.0, "lng": CENTER.1}})),
        )
        .await;
    if status != 200 {
        eprintln!("fan-out: the driver could not go online: {body}");
        return None;
    }
    // Every socket forwards what it reads: (socket, when, the trip's status).
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant, String)>();
    let mut sinks = Vec::with_capacity(n);
    for i in 0..n {
        let url = format!("ws://{addr}/v1/ws?token={admin}");
        let config = WebSocketConfig::default().read_buffer_size(dispatch_server::ws::READ_BUFFER_BYTES);
        let Ok((ws, _)) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await else {
            eprintln!("fan-out: socket {i} could not connect");
            return None;
        };
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let seen_tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                let at = Instant::now();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let status = match v["type"].as_str() {
                    Some("trip_updated") => v["trip"]["status"].as_str().unwrap_or_default().to_owned(),
                    Some("subscribed") => "subscribed".to_owned(),
                    _ => continue,
                };
                if seen_tx.send((i, at, status)).is_err() {
                    return;
                }
            }
        });
    }
    // Waits until every socket has said `status` (other frames are skipped).
    async fn all_of(
        seen: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, Instant, String)>,
        n: usize,
        status: &str,
    ) -> Option<Vec<Instant>> {
        let mut at: Vec<Option<Instant>> = vec![None; n];
        let mut missing = n;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while missing > 0 {
            let (i, when, s) = tokio::time::timeout_at(deadline, seen.recv()).await.ok()??;
            if s == status && at[i].is_none() {
                at[i] = Some(when);
                missing -= 1;
            }
        }
        Some(at.into_iter().flatten().collect())
    }
    let mut out = Fanout { last: Vec::new(), each: Vec::new() };
    for _ in 0..trips {
        let body = json!({"pickup": {"lat": CENTER.0, "lng": CENTER.1}, "dropoff": {"lat": CENTER.0 + 0.02, "lng": CENTER.1},
            "category": "economy", "payment_method": "cash"});
        let (status, trip) = http.call("POST", "/v1/trips", &rider, Some(body)).await;
        if status != 201 {
            eprintln!("fan-out: booking failed: {trip}");
            return None;
        }
        let id = trip["id"].as_str().unwrap_or_default().to_owned();
        let code = trip["pickup_code"].as_str().unwrap_or_default().to_owned();
        let subscribe = json!({"type": "subscribe", "trip_id": id}).to_string();
        for sink in &mut sinks {
            if sink.send(Message::Text(subscribe.clone().into())).await.is_err() {
                eprintln!("fan-out: a socket closed");
                return None;
            }
        }
        all_of(&mut seen, n, "subscribed").await?;
        for (step, status, body) in [
            ("accept", "accepted", None),
            ("arrived", "arrived", None),
            ("start", "in_progress", Some(json!({"pickup_code": code}))),
            ("complete", "completed", Some(json!({"distance_m": 2_300}))),
        ] {
            let sent = Instant::now();
            let (code, reply) = http.call("POST", &format!("/v1/trips/{id}/{step}"), &driver, body).await;
            if code != 200 {
                eprintln!("fan-out: {step} failed: {reply}");
                return None;
            }
            let at = all_of(&mut seen, n, status).await?;
            out.each.extend(at.iter().map(|t| t.duration_since(sent)));
            out.last.push(at.iter().max().map_or(Duration::ZERO, |t| t.duration_since(sent)));
        }
    }
    for mut sink in sinks {
        let _ = sink.send(Message::Close(None)).await;
    }
    Some(out)
}

/// A staff socket subscribed to the `ops` channel until `until`, counting the snapshots it
/// reads into `frames`. `None` if it cannot connect or subscribe.
async fn ops_watcher(
    addr: SocketAddr,
    admin: &str,
    frames: Arc<std::sync::atomic::AtomicU64>,
    until: Instant,
) -> Option<tokio::task::JoinHandle<()>> {
    let url = format!("ws://{addr}/v1/ws?token={admin}");
    let config = WebSocketConfig::default().read_buffer_size(dispatch_server::ws::READ_BUFFER_BYTES);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.ok()?;
    ws.send(Message::Text(json!({"type": "subscribe", "channel": "ops"}).to_string().into())).await.ok()?;
    Some(tokio::spawn(async move {
        let deadline = tokio::time::Instant::from_std(until);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
            if let Message::Text(text) = msg
                && text.contains("\"ops_snapshot\"")
            {
                frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _ = ws.send(Message::Close(None)).await;
    }))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn spawn_server(dir: &std::path::Path, admin: &str) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    let exe = std::env::current_exe().expect("own path");
    let dispatchd = exe.with_file_name("dispatchd");
    let config = dir.join("dispatch.toml");
    // Open the per-user limits up: the run measures the engine and the server, not the
    // rate limiter (which answers 429 in microseconds). Every connection comes from
    // 127.0.0.1 and the fan-out's staff sockets all use the admin token: the per-address
    // connection cap and the staff socket cap are opened up too (a server started
    // without `--spawn` needs the same `[server]` keys for a large run).
    std::fs::write(
        &config,
        "[server]\nmax_connections_per_ip = 1000000\nws_per_staff = 1000000\n\
         [limits]\ntrip_create_per_min = 100000\naccept_per_min = 100000\nuser_per_min = 1000000\n\
         ip_per_min = 100000\nopen_trips_per_rider = 100\nlocation_min_interval_ms = 500\n",
    )
    .expect("write config");
    let mut child = std::process::Command::new(&dispatchd)
        .args(["serve", "--dev", "--demo", "--demo-drivers", "0", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .env("DISPATCH_ADMIN_TOKEN", admin)
        .env("DISPATCH_TOKEN_SECRET", "loadgen-token-secret-0123456789abcdef0123")
        .env("DISPATCH_WEBHOOK_SECRET_SIM", "loadgen-webhook-secret-0123456789")
        .env("DISPATCH_SMS_SINK", format!("file:{}", dir.join("sms.jsonl").display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("dispatchd.log")).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {}: {e} (build it: cargo build --release -p dispatch-server)", dispatchd.display())
        });
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(addr) = line.strip_prefix("listening on ") {
            return (child, addr.trim().parse().expect("an address"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("dispatchd exited without listening; see {}", dir.join("dispatchd.log").display());
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let tmp = tempfile_dir();
    let (mut child, addr, admin) = if args.spawn {
        let admin = "loadgen-admin-token-0123456789abcdef".to_owned();
        let (child, addr) = spawn_server(&tmp, &admin);
        (Some(child), addr, admin)
    } else {
        let addr = args.addr.expect("--addr HOST:PORT (or --spawn)");
        let admin = args.admin_token.clone().or_else(|| std::env::var("DISPATCH_ADMIN_TOKEN").ok());
        (None, addr, admin.expect("--admin-token (or DISPATCH_ADMIN_TOKEN)"))
    };
    println!(
        "dispatch-loadgen → {addr}: {} drivers, {} riders, {} trips/s, {} s",
        args.drivers, args.riders, args.trip_rate, args.seconds
    );

    let mut http = Http::new(addr);
    let mut drivers = Vec::new();
    for n in 0..args.drivers {
        drivers.push(create_user(&mut http, &admin, "driver", n).await);
    }
    let mut riders = Vec::new();
    for n in 0..args.riders {
        riders.push(create_user(&mut http, &admin, "rider", args.drivers + n).await);
    }

    let stats: Shared = Arc::new(Mutex::new(Stats::default()));
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (i, (_, token)) in drivers.iter().enumerate() {
        tasks.push(tokio::spawn(driver(
            addr,
            token.clone(),
            Arc::clone(&args),
            args.seed * 1_000_003 + i as u64,
            Arc::clone(&stats),
            until,
        )));
    }
    // Staff watching the live map: each socket gets the whole city once a second.
    let ops_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut watchers = Vec::new();
    for i in 0..args.ops_sockets {
        match ops_watcher(addr, &admin, Arc::clone(&ops_frames), until).await {
            Some(task) => watchers.push(task),
            None => {
                eprintln!("ops socket {i} could not subscribe");
                break;
            }
        }
    }
    // Each rider books every `gap`, so all together make `trip_rate` a second.
    let gap = Duration::from_secs_f64(args.riders as f64 / args.trip_rate.max(0.001));
    for (i, (_, token)) in riders.iter().enumerate() {
        tasks.push(tokio::spawn(rider(
            addr,
            token.clone(),
            gap,
            args.seed * 7_919 + i as u64,
            Arc::clone(&stats),
            until,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    for w in watchers.drain(..) {
        let _ = w.await;
    }
    if args.ops_sockets > 0 {
        let frames = ops_frames.load(std::sync::atomic::Ordering::Relaxed);
        println!("ops channel: {} staff sockets, {frames} snapshots received during the load", args.ops_sockets);
    }

    // Correctness, through the staff API.
    let stats = Arc::try_unwrap(stats).ok().expect("every task ended").into_inner();
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
    let double_held = holders.values().filter(|&&n| n > 1).count();

    let http_requests: usize =
        stats.latency.iter().filter(|(name, _)| !name.starts_with("ws ")).map(|(_, v)| v.len()).sum();
    println!(
        "\n{:<40} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "endpoint / message", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (name, mut v) in stats.latency {
        v.sort();
        println!(
            "{name:<40} {:>8} {:>9} {:>9} {:>9} {:>9}",
            v.len(),
            ms(pct(&v, 0.5)),
            ms(pct(&v, 0.95)),
            ms(pct(&v, 0.99)),
            ms(v[v.len() - 1])
        );
    }
    let mut ttm = stats.time_to_match;
    ttm.sort();
    if !ttm.is_empty() {
        println!(
            "{:<40} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "time to match (created → accepted)",
            ttm.len(),
            ms(pct(&ttm, 0.5)),
            ms(pct(&ttm, 0.95)),
            ms(pct(&ttm, 0.99)),
            ms(ttm[ttm.len() - 1])
        );
    }
    let offered = stats.offers.len().max(1);
    println!(
        "\ntrips created {}, won {}, offers per offered trip {:.2}",
        stats.created.len(),
        stats.wins.len(),
        stats.offers.values().sum::<u32>() as f64 / offered as f64
    );
    println!(
        "HTTP requests {http_requests} in {:.1} s: {:.0}/s",
        elapsed.as_secs_f64(),
        http_requests as f64 / elapsed.as_secs_f64()
    );
    println!("errors by code:");
    for (k, n) in &stats.errors {
        println!("  {k}: {n}");
    }
    println!(
        "\ncorrectness: lost acknowledged trips {lost}, trips won twice {double_wins}, drivers holding two open trips {double_held}"
    );
    let mut fanout_failed = false;
    if args.fanout > 0 {
        match fanout(addr, &admin, args.fanout, args.fanout_trips).await {
            Some(Fanout { mut last, mut each }) => {
                last.sort();
                each.sort();
                println!("\nfan-out: {} trip changes, each to {} staff sockets", last.len(), args.fanout);
                for (name, v) in [("last socket of each change", &last), ("every socket's frame", &each)] {
                    println!(
                        "{name:<40} {:>8} {:>9} {:>9} {:>9} {:>9}",
                        v.len(),
                        ms(pct(v, 0.5)),
                        ms(pct(v, 0.95)),
                        ms(pct(v, 0.99)),
                        ms(v[v.len() - 1])
                    );
                }
            }
            None => fanout_failed = true,
        }
    }
    if let Some(c) = child.as_mut() {
        let _ = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if lost + double_wins + double_held > 0 || fanout_failed {
        std::process::exit(1);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dispatch-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
