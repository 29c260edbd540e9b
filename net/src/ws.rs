//! The WebSocket gateway, `GET /v1/ws`: upgrade, per-socket tasks, and the fan-out of
//! engine events to sockets.
//!
//! One engine subscriber ([`spawn_fanout`], a thread of its own since the engine's
//! channel is blocking) turns each event batch into frames and pushes them into
//! per-socket bounded outboxes ([`Outbox`]); each socket's writer drains its outbox.
//!
//! Guarantees:
//! - no lock is held while writing to a socket (frames are popped, the lock released,
//!   then written);
//! - an outbox holds at most [`OUTBOX_CAP`] frames; location frames of the same trip
//!   coalesce (the newest wins) and are the first dropped when it is full; trip events
//!   are never dropped: a socket that cannot take one is closed (code 1008) instead, and
//!   the client resynchronises over HTTP;
//! - the server pings every [`WsTiming::ping_every`] and closes a socket it heard nothing
//!   from for [`WsTiming::idle_timeout`];
//! - a bad frame gets an `error` frame and the connection stays open;
//! - a driver's socket connecting and dropping is reported to the engine ([`presence`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dispatch_core::{Command, Event, Role, TripId, UserId};
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};

use crate::api::LocationIn;
use crate::auth::Principal;
use crate::http::{ApiError, Resp};
use crate::metrics::Metrics;
use crate::render;
use crate::server::App;

/// Most frames waiting in one socket's outbox.
pub const OUTBOX_CAP: usize = 256;
/// Most sockets open at once; one more upgrade is `503 overloaded`.
pub const MAX_SOCKETS: i64 = 100_000;
/// Largest client frame, bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// A socket's read buffer, bytes: client frames are a few hundred bytes; a larger frame
/// (up to `MAX_FRAME_BYTES`) still arrives, over several reads.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Event batches the fan-out may lag behind the engine before it is cut off (and resubscribes).
const SUBSCRIBER_CAPACITY: usize = 4096;

/// Heartbeat intervals (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct WsTiming {
    /// The server pings this often.
    pub ping_every: Duration,
    /// A socket silent this long is closed.
    pub idle_timeout: Duration,
}

impl Default for WsTiming {
    fn default() -> Self {
        WsTiming { ping_every: Duration::from_secs(20), idle_timeout: Duration::from_secs(60) }
    }
}

enum OutFrame {
    /// A frame that must arrive (trip events, replies).
    Event(String),
    /// A driver position for a trip: may coalesce or be dropped.
    Location(TripId, String),
}

/// One socket's bounded queue of frames to write.
pub struct Outbox {
    queue: Mutex<VecDeque<OutFrame>>,
    notify: Notify,
    /// Set when a frame that must arrive did not fit: the writer closes the socket.
    overflowed: AtomicBool,
}

impl Outbox {
    fn new() -> Self {
        Outbox { queue: Mutex::new(VecDeque::new()), notify: Notify::new(), overflowed: AtomicBool::new(false) }
    }

    fn push(&self, frame: OutFrame, metrics: &Metrics) {
        {
            let mut q = self.queue.lock();
            if let OutFrame::Location(trip, _) = &frame {
                let trip = *trip;
                if let Some(slot) = q.iter_mut().find(|f| matches!(f, OutFrame::Location(t, _) if *t == trip)) {
                    *slot = frame; // the newest position wins
                    drop(q);
                    self.notify.notify_one();
                    return;
                }
            }
            if q.len() >= OUTBOX_CAP {
                if let Some(i) = q.iter().position(|f| matches!(f, OutFrame::Location(..))) {
                    q.remove(i);
                    metrics.location_frames_dropped.fetch_add(1, Ordering::Relaxed);
                } else if matches!(frame, OutFrame::Location(..)) {
                    metrics.location_frames_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                } else {
                    self.overflowed.store(true, Ordering::Relaxed);
                    drop(q);
                    self.notify.notify_one();
                    return;
                }
            }
            q.push_back(frame);
        }
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<String> {
        self.queue.lock().pop_front().map(|f| match f {
            OutFrame::Event(s) | OutFrame::Location(_, s) => s,
        })
    }
}

struct Socket {
    user: Option<UserId>,
    staff: bool,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Arc<Socket>>,
    by_user: HashMap<UserId, Vec<u64>>,
    by_trip: HashMap<TripId, HashSet<u64>>,
    /// Staff sockets on the ops channel, with their box (`None`: everywhere).
    ops: HashMap<u64, Option<BBox>>,
}

/// Every open socket, by user and by subscribed trip.
pub struct Hub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub { registry: Mutex::new(Registry::default()), next_id: AtomicU64::new(1), metrics }
    }

    /// Adds a socket; `true` when it is its user's first open socket (`on_first` then runs
    /// under the registry lock, so presence reports keep the order of opens and closes).
    fn register(&self, who: Principal, on_first: impl FnOnce()) -> (u64, Arc<Outbox>, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new());
        let socket = Arc::new(Socket { user: who.user_id(), staff: who.is_staff(), outbox: Arc::clone(&outbox) });
        let mut r = self.registry.lock();
        let mut first = false;
        if let Some(u) = socket.user {
            let v = r.by_user.entry(u).or_default();
            first = v.is_empty();
            v.push(id);
        }
        r.sockets.insert(id, socket);
        if first {
            on_first();
        }
        (id, outbox, first)
    }

    /// Removes a socket; `true` when it was its user's last open socket (`on_last` then
    /// runs under the registry lock).
    fn unregister(&self, id: u64, on_last: impl FnOnce()) -> bool {
        let mut r = self.registry.lock();
        let Some(s) = r.sockets.remove(&id) else { return false };
        let mut last = false;
        if let Some(u) = s.user
            && let Some(v) = r.by_user.get_mut(&u)
        {
            v.retain(|x| *x != id);
            if v.is_empty() {
                r.by_user.remove(&u);
                last = true;
            }
        }
        r.by_trip.retain(|_, set| {
            set.remove(&id);
            !set.is_empty()
        });
        r.ops.remove(&id);
        if last {
            on_last();
        }
        last
    }

    fn subscribe_trip(&self, id: u64, trip: TripId) {
        self.registry.lock().by_trip.entry(trip).or_default().insert(id);
    }

    fn subscribe_ops(&self, id: u64, bbox: Option<BBox>) {
        self.registry.lock().ops.insert(id, bbox);
    }

    /// Sends each ops socket the snapshot of its box (at most once a second: the caller ticks).
    pub fn send_ops_snapshots(&self, engine: &dispatch_core::Engine) {
        let targets: Vec<(Arc<Outbox>, Option<BBox>)> = {
            let r = self.registry.lock();
            r.ops.iter().filter_map(|(id, b)| r.sockets.get(id).map(|s| (Arc::clone(&s.outbox), *b))).collect()
        };
        if targets.is_empty() {
            return;
        }
        let now = dispatch_core::clock::Clock::now(&dispatch_core::clock::SystemClock);
        for (outbox, bbox) in targets {
            let frame = engine.read(|v| ops_snapshot(v, bbox, now));
            // A snapshot is superseded by the next one: it may be dropped like a position.
            outbox.push(OutFrame::Location(OPS_SNAPSHOT_SLOT, frame), &self.metrics);
        }
    }

    /// The outboxes of `user`'s sockets.
    fn of_user(&self, r: &Registry, user: UserId) -> Vec<Arc<Outbox>> {
        r.by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| r.sockets.get(id).map(|s| Arc::clone(&s.outbox)))
            .collect()
    }

    /// Turns one batch of engine events into frames in the right outboxes.
    fn fan_out(&self, engine: &dispatch_core::Engine, events: &[Event]) {
        for e in events {
            match e {
                Event::TripOffered { trip, driver_id, expires_at, distance_to_pickup_m } => {
                    let frame =
                        json!({"type": "trip_offer", "offer": render::offer(trip, *expires_at, *distance_to_pickup_m)});
                    let n = self.send_user(*driver_id, &frame);
                    self.metrics.offers_sent.fetch_add(n, Ordering::Relaxed);
                }
                Event::OfferWithdrawn { trip_id, driver_id, reason } => {
                    let frame = json!({"type": "offer_withdrawn", "trip_id": trip_id.to_string(), "reason": reason_str(*reason)});
                    self.send_user(*driver_id, &frame);
                }
                Event::TripUpdated { trip } => {
                    let for_rider = json!({"type": "trip_updated", "trip": render::trip(trip, true)});
                    let others = json!({"type": "trip_updated", "trip": render::trip(trip, false)});
                    let r = self.registry.lock();
                    let mut sent = HashSet::new();
                    for id in r.by_user.get(&trip.rider_id).into_iter().flatten() {
                        if let Some(s) = r.sockets.get(id) {
                            sent.insert(*id);
                            s.outbox.push(OutFrame::Event(for_rider.to_string()), &self.metrics);
                        }
                    }
                    let driver_ids = trip.driver_id.and_then(|d| r.by_user.get(&d)).into_iter().flatten();
                    let subscribed = r.by_trip.get(&trip.id).into_iter().flatten();
                    let ops =
                        r.ops.iter().filter(|(_, b)| b.is_none_or(|b| b.contains(trip.pickup.point))).map(|(id, _)| id);
                    for id in driver_ids.chain(subscribed).chain(ops) {
                        if sent.insert(*id)
                            && let Some(s) = r.sockets.get(id)
                        {
                            s.outbox.push(OutFrame::Event(others.to_string()), &self.metrics);
                        }
                    }
                }
                Event::DriverMoved { driver_id, trip_id: Some(trip_id), point, heading_deg, at } => {
                    let Some(trip) = engine.read(|v| v.trip(*trip_id).cloned()) else { continue };
                    if trip.driver_id != Some(*driver_id) || !trip.status.has_driver() {
                        continue;
                    }
                    let frame = json!({
                        "type": "driver_location", "trip_id": trip_id.to_string(),
                        "lat": point.lat(), "lng": point.lng(), "heading_deg": heading_deg,
                        "at": crate::http::rfc3339(*at),
                    })
                    .to_string();
                    let r = self.registry.lock();
                    let rider = r.by_user.get(&trip.rider_id).into_iter().flatten();
                    let subscribed = r.by_trip.get(trip_id).into_iter().flatten();
                    let mut sent = HashSet::new();
                    for id in rider.chain(subscribed) {
                        if sent.insert(*id)
                            && let Some(s) = r.sockets.get(id)
                            && s.user != Some(*driver_id)
                        {
                            s.outbox.push(OutFrame::Location(*trip_id, frame.clone()), &self.metrics);
                        }
                    }
                }
                Event::DriverMoved { .. } => {}
                Event::DriverPresence { driver_id, trip_id, connected } => {
                    let Some(trip) = engine.read(|v| v.trip(*trip_id).cloned()) else { continue };
                    let frame = json!({"type": "driver_presence", "trip_id": trip_id.to_string(),
                        "driver_id": driver_id.to_string(), "connected": connected});
                    self.send_user(trip.rider_id, &frame);
                }
                Event::AlertRaised { alert } => {
                    let frame = json!({"type": "sos_alert", "alert": render::alert(alert)}).to_string();
                    let r = self.registry.lock();
                    // Every staff socket hears every alert: safety is not filtered by a map box.
                    for s in r.sockets.values().filter(|s| s.staff) {
                        s.outbox.push(OutFrame::Event(frame.clone()), &self.metrics);
                    }
                }
            }
        }
    }

    fn send_user(&self, user: UserId, frame: &Value) -> u64 {
        let text = frame.to_string();
        let r = self.registry.lock();
        let boxes = self.of_user(&r, user);
        for b in &boxes {
            b.push(OutFrame::Event(text.clone()), &self.metrics);
        }
        boxes.len() as u64
    }
}

/// Most items of each list in an `ops_snapshot` (API.md): a sample when more, with the true total.
pub const OPS_SNAPSHOT_MAX_ITEMS: usize = 2_000;

/// The outbox slot of ops snapshots: a newer one replaces one not yet written.
const OPS_SNAPSHOT_SLOT: TripId = match TripId::from_raw(u64::MAX) {
    Some(t) => t,
    None => panic!("u64::MAX is a valid id"),
};

/// A map box `[min_lng, min_lat, max_lng, max_lat]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox([f64; 4]);

impl BBox {
    /// A valid box (finite, in range, min ≤ max), or `invalid_coordinates`.
    pub fn new(b: [f64; 4]) -> Result<BBox, ApiError> {
        let [min_lng, min_lat, max_lng, max_lat] = b;
        crate::http::lat_lng(min_lat, min_lng)?;
        crate::http::lat_lng(max_lat, max_lng)?;
        if min_lng > max_lng || min_lat > max_lat {
            return Err(ApiError::new("invalid_coordinates", "bbox is [min_lng, min_lat, max_lng, max_lat]"));
        }
        Ok(BBox(b))
    }

    fn contains(&self, p: dispatch_core::LatLng) -> bool {
        let [min_lng, min_lat, max_lng, max_lat] = self.0;
        (min_lng..=max_lng).contains(&p.lng()) && (min_lat..=max_lat).contains(&p.lat())
    }
}

/// Every `n`-th item so that at most [`OPS_SNAPSHOT_MAX_ITEMS`] remain.
fn sample(items: Vec<Value>) -> (usize, Vec<Value>) {
    let total = items.len();
    if total <= OPS_SNAPSHOT_MAX_ITEMS {
        return (total, items);
    }
    let step = total.div_ceil(OPS_SNAPSHOT_MAX_ITEMS);
    (total, items.into_iter().step_by(step).collect())
}

fn ops_snapshot(v: &dispatch_core::View, bbox: Option<BBox>, now: dispatch_core::clock::Timestamp) -> String {
    let inside = |p: dispatch_core::LatLng| bbox.is_none_or(|b| b.contains(p));
    let drivers: Vec<Value> = v
        .drivers()
        .filter_map(|d| {
            let f = d.fix?;
            inside(f.point).then(|| {
                json!({"id": d.id.to_string(), "lat": f.point.lat(), "lng": f.point.lng(),
                    "availability": d.availability.as_str(), "category": d.category.as_str()})
            })
        })
        .collect();
    let trips: Vec<Value> = v
        .trips()
        .filter(|t| t.status.is_open() && inside(t.pickup.point))
        .map(|t| {
            json!({"id": t.id.to_string(), "status": t.status.as_str(), "pickup": render::place(&t.pickup),
                "age_s": now.millis_since(t.created_at).max(0) / 1000})
        })
        .collect();
    let (dt, di) = sample(drivers);
    let (tt, ti) = sample(trips);
    json!({"type": "ops_snapshot", "at": crate::http::rfc3339(now),
        "drivers": {"total": dt, "items": di}, "trips": {"total": tt, "items": ti}})
    .to_string()
}

/// Sends ops snapshots once a second until shutdown.
pub async fn ops_snapshots(app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => app.hub.send_ops_snapshots(&app.engine),
            _ = crate::server::until_shutdown(&mut shutdown) => return,
        }
    }
}

fn reason_str(r: dispatch_core::WithdrawReason) -> &'static str {
    match r {
        dispatch_core::WithdrawReason::Taken => "taken",
        dispatch_core::WithdrawReason::Cancelled => "cancelled",
        dispatch_core::WithdrawReason::Expired => "expired",
    }
}

/// The fan-out thread; stopped by [`Fanout::stop`].
pub struct Fanout {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Fanout {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts the one engine-event subscriber that feeds every socket.
pub fn spawn_fanout(app: Arc<App>) -> Fanout {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("dispatch-ws-fanout".into())
        .spawn(move || {
            let mut rx = app.engine.subscribe(SUBSCRIBER_CAPACITY);
            while !flag.load(Ordering::Relaxed) {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(batch) => app.hub.fan_out(&app.engine, &batch),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        tracing::warn!("the WebSocket fan-out fell behind the engine and resubscribes");
                        rx = app.engine.subscribe(SUBSCRIBER_CAPACITY);
                    }
                }
            }
        })
        .ok();
    Fanout { stop, handle }
}

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A driver's position.
    Location(LocationIn),
    /// Follow a trip (or, staff, the ops channel).
    Subscribe(SubscribeIn),
    /// Keep-alive.
    Ping {},
}

/// `{"type":"subscribe", ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeIn {
    /// The trip to follow.
    #[serde(default)]
    pub trip_id: Option<String>,
    /// `ops` (staff).
    #[serde(default)]
    pub channel: Option<String>,
    /// The ops channel's box `[min_lng, min_lat, max_lng, max_lat]`.
    #[serde(default)]
    pub bbox: Option<[f64; 4]>,
}

/// Parses one client text frame: `invalid_json` for bad JSON, `invalid_request` for a
/// wrong shape or unknown type. Pure; fuzzed.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ApiError> {
    serde_json::from_str(text).map_err(|e| crate::http::json_error(&e))
}

fn error_frame(code: &str, message: &str) -> String {
    json!({"type": "error", "code": code, "message": message}).to_string()
}

/// Validates the upgrade request and answers `101`; the socket is served on a task.
pub fn upgrade(app: Arc<App>, who: Principal, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let h = req.headers();
    let has = |name, want: &str| {
        h.get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(want))))
    };
    if !has(UPGRADE, "websocket") || !has(CONNECTION, "upgrade") {
        return Err(ApiError::invalid("a WebSocket upgrade is required here"));
    }
    if h.get(SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(ApiError::invalid("Sec-WebSocket-Version must be 13"));
    }
    let key = h.get(SEC_WEBSOCKET_KEY).ok_or_else(|| ApiError::invalid("Sec-WebSocket-Key is missing"))?;
    if app.metrics.sockets_open.load(Ordering::Relaxed) >= MAX_SOCKETS {
        return Err(ApiError::new("overloaded", "too many open sockets; try again shortly"));
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => serve_socket(app, who, TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut resp = Resp::new(http_body_util::Full::new(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = resp.headers_mut();
    hs.insert(UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    hs.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).map_err(|_| ApiError::invalid("bad key"))?);
    Ok(resp)
}

/// The presence hook: a driver's socket connected or dropped. Never blocks (`submit_with`),
/// so it may run under the hub's lock.
fn presence(app: &App, who: Principal, connected: bool) {
    if who.role() == Role::Driver {
        let _ = app.engine.submit_with(who.actor(), Command::SetPresence { connected }, |_| {});
    }
}

async fn serve_socket<S>(app: Arc<App>, who: Principal, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // A city keeps tens of thousands of mostly idle sockets open, each receiving small
    // frames: tungstenite's default 128 KiB read buffer per socket (zeroed as it is
    // used) cost a profile's largest item and over a GiB for 10,000 drivers.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(config)).await;
    let (mut sink, mut stream) = ws.split();
    // A driver with two sockets (two devices, a reconnect racing the old one) is present
    // while either is open: only the first open and the last close are reported, in order.
    let (id, outbox, _) = app.hub.register(who, || presence(&app, who, true));
    app.metrics.sockets_open.fetch_add(1, Ordering::Relaxed);
    let user = who.user_id().map_or_else(|| "admin".to_owned(), |u| u.to_string());
    tracing::info!(socket = id, user_id = %user, role = who.role().as_str(), "websocket open");
    let timing = app.ws_timing;
    let mut shutdown = app.shutdown.clone();
    let closing = Arc::new(Notify::new());

    // The writer: drains the outbox, pings, and closes (on overflow, idle or shutdown).
    let writer_box = Arc::clone(&outbox);
    let writer_closing = Arc::clone(&closing);
    let metrics = Arc::clone(&app.metrics);
    let mut writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + timing.ping_every, timing.ping_every);
        let close = |code, reason: &'static str| Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        loop {
            tokio::select! {
                _ = writer_box.notify.notified() => {
                    if writer_box.overflowed.load(Ordering::Relaxed) {
                        metrics.slow_sockets_closed.fetch_add(1, Ordering::Relaxed);
                        let _ = sink.send(close(CloseCode::Policy, "too slow: resynchronise over HTTP")).await;
                        break;
                    }
                    while let Some(text) = writer_box.pop() {
                        if sink.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
                _ = writer_closing.notified() => {
                    let _ = sink.send(close(CloseCode::Away, "idle")).await;
                    break;
                }
                _ = crate::server::until_shutdown(&mut shutdown) => {
                    let _ = sink.send(close(CloseCode::Away, "server shutting down")).await;
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });

    // The reader: this task.
    let mut writer_done = false;
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(timing.idle_timeout, stream.next()) => n,
            _ = &mut writer => {
                writer_done = true;
                break;
            }
        };
        let msg = match next {
            Err(_) => {
                closing.notify_one();
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                if let Some(reply) = on_text(&app, who, id, t.as_str()).await {
                    outbox.push(OutFrame::Event(reply), &app.metrics);
                }
            }
            Message::Binary(_) => {
                outbox.push(OutFrame::Event(error_frame("invalid_request", "frames are JSON text")), &app.metrics)
            }
            Message::Close(_) => break,
            _ => {} // pings are answered by tungstenite; pongs just prove liveness
        }
    }
    if !writer_done {
        // Let the writer send its close frame (a JoinHandle must not be polled after it completed).
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    writer.abort();
    app.hub.unregister(id, || presence(&app, who, false));
    app.metrics.sockets_open.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(socket = id, user_id = %user, "websocket closed");
}

/// Handles one text frame; the reply frame, if any.
async fn on_text(app: &App, who: Principal, socket: u64, text: &str) -> Option<String> {
    let frame = match parse_client_frame(text) {
        Ok(f) => f,
        Err(e) => return Some(error_frame(e.code, &e.message)),
    };
    match frame {
        ClientFrame::Ping {} => Some(json!({"type": "pong"}).to_string()),
        ClientFrame::Location(l) => {
            if who.role() != Role::Driver {
                return Some(error_frame("forbidden", "only drivers send locations"));
            }
            let report = match l.report() {
                Ok(r) => r,
                Err(e) => return Some(error_frame(e.code, &e.message)),
            };
            match app.submit(who.actor(), Command::UpdateLocation(report)).await {
                Ok(_) => None,
                Err(e) => Some(error_frame(e.code, &e.message)),
            }
        }
        ClientFrame::Subscribe(s) => match (s.trip_id, s.channel.as_deref()) {
            (Some(trip), None) => {
                let found = match trip.parse::<TripId>() {
                    // A finished trip may be in the history on disk: read it off the runtime threads.
                    Ok(id) => app.blocking(move |e| e.find_trip(id)).await.ok().flatten(),
                    Err(_) => None,
                };
                let visible = found.filter(|t| {
                    who.is_staff() || who.user_id().is_some_and(|u| t.rider_id == u || t.driver_id == Some(u))
                });
                match visible {
                    Some(t) => {
                        app.hub.subscribe_trip(socket, t.id);
                        let for_rider = who.user_id() == Some(t.rider_id);
                        Some(json!({"type": "subscribed", "trip_id": t.id.to_string(), "trip": render::trip(&t, for_rider)}).to_string())
                    }
                    None => Some(error_frame("forbidden", "not your trip")),
                }
            }
            (None, Some("ops")) if who.is_staff() => match s.bbox.map(BBox::new).transpose() {
                Ok(bbox) => {
                    app.hub.subscribe_ops(socket, bbox);
                    Some(json!({"type": "subscribed", "channel": "ops"}).to_string())
                }
                Err(e) => Some(error_frame(e.code, &e.message)),
            },
            (None, Some("ops")) => Some(error_frame("forbidden", "the ops channel is for staff")),
            _ => Some(error_frame("invalid_request", "subscribe takes a trip_id, or channel \"ops\"")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_strictly() {
        assert!(matches!(parse_client_frame(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping {})));
        assert!(matches!(
            parse_client_frame(r#"{"type":"location","lat":30.0,"lng":31.2,"heading_deg":90}"#),
            Ok(ClientFrame::Location(_))
        ));
        assert!(matches!(
            parse_client_frame(r#"{"type":"subscribe","trip_id":"trp_1"}"#),
            Ok(ClientFrame::Subscribe(_))
        ));
        assert_eq!(parse_client_frame("{").unwrap_err().code, "invalid_json");
        assert_eq!(parse_client_frame(r#"{"type":"dance"}"#).unwrap_err().code, "invalid_request");
        assert_eq!(
            parse_client_frame(r#"{"type":"location","lat":1,"lng":2,"x":3}"#).unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(parse_client_frame(r#"{"lat":1}"#).unwrap_err().code, "invalid_request");
    }

    proptest::proptest! {
        /// The stable twin of `fuzz/fuzz_targets/server_input.rs`.
        #[test]
        fn fuzz_twin(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            crate::fuzz_input(&bytes);
        }

        #[test]
        fn fuzz_twin_near_valid_frames(lat in -200.0f64..200.0, lng in -400.0f64..400.0, ty in "[a-z_]{0,12}") {
            let frame = format!(r#"{{"type":"{ty}","lat":{lat},"lng":{lng}}}"#);
            crate::fuzz_input(frame.as_bytes());
        }
    }

    #[test]
    fn presence_is_reported_on_a_users_first_open_and_last_close_only() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let driver = Principal::User { id: UserId::from_raw(7).unwrap(), role: Role::Driver };
        let reports = parking_lot::Mutex::new(Vec::new());
        let (a, _, first_a) = hub.register(driver, || reports.lock().push(true));
        let (b, _, first_b) = hub.register(driver, || reports.lock().push(true));
        assert!(first_a && !first_b);
        assert!(!hub.unregister(a, || reports.lock().push(false)), "the other socket is still open");
        assert!(hub.unregister(b, || reports.lock().push(false)));
        assert!(!hub.unregister(b, || reports.lock().push(false)), "unknown sockets change nothing");
        assert_eq!(*reports.lock(), vec![true, false]);
    }

    #[test]
    fn a_full_outbox_drops_locations_first_and_never_trip_events() {
        let m = Metrics::default();
        let o = Outbox::new();
        let trip = TripId::from_raw(1).unwrap();
        o.push(OutFrame::Location(trip, "l1".into()), &m);
        o.push(OutFrame::Location(trip, "l2".into()), &m);
        assert_eq!(o.queue.lock().len(), 1, "positions of one trip coalesce");
        for i in 0..OUTBOX_CAP - 1 {
            o.push(OutFrame::Event(format!("e{i}")), &m);
        }
        o.push(OutFrame::Event("last".into()), &m);
        assert!(!o.overflowed.load(Ordering::Relaxed), "the location frame made room");
        assert_eq!(o.pop().as_deref(), Some("e0"));
        o.push(OutFrame::Event("a".into()), &m);
        o.push(OutFrame::Event("b".into()), &m);
        assert!(o.overflowed.load(Ordering::Relaxed), "a trip event that cannot fit closes the socket");
    }
}
