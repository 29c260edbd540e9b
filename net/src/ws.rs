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
//! - a write that does not finish within [`WsTiming::send_timeout`] (a client that stopped
//!   reading) closes the socket (1008), as does an outbox overflow noticed mid-write: a
//!   writer never waits on a client for longer than that;
//! - a trip's frames (`trip_updated`, `driver_location`) reach only staff sockets and the
//!   sockets of the trip's *current* rider and driver, checked at fan-out, not only at
//!   subscription: a driver who gave a trip back stops hearing about it, and the
//!   subscriptions of a trip that ended, or of a socket no longer party to it, are dropped;
//! - the server pings every [`WsTiming::ping_every`] and closes a socket it heard nothing
//!   from for [`WsTiming::idle_timeout`];
//! - a bad frame gets an `error` frame and the connection stays open;
//! - a driver's socket connecting and dropping is reported to the engine (`presence`);
//!   a report the engine could not take (its queue full, read-only) is kept, one per
//!   driver, and sent again on every tick until it is taken ([`PendingPresence`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dispatch_core::{Actor, Command, Event, Role, TripId, UserId};
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

/// The longest one frame may take to be written to a client before the socket is closed
/// as too slow (a client that stopped reading fills the TCP buffers, then every write waits).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a close frame may take to be written to a socket being closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Heartbeat intervals and write deadlines (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct WsTiming {
    /// The server pings this often.
    pub ping_every: Duration,
    /// A socket silent this long is closed.
    pub idle_timeout: Duration,
    /// A frame not written within this closes the socket ([`SEND_TIMEOUT`]).
    pub send_timeout: Duration,
}

impl Default for WsTiming {
    fn default() -> Self {
        WsTiming {
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            send_timeout: SEND_TIMEOUT,
        }
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
    /// Presence reports the engine has not taken yet.
    pub presence: Arc<PendingPresence>,
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            metrics,
            presence: Arc::new(PendingPresence::default()),
        }
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
                    let for_rider = json!({"type": "trip_updated", "trip": render::trip(trip, true)}).to_string();
                    let others = json!({"type": "trip_updated", "trip": render::trip(trip, false)}).to_string();
                    let mut guard = self.registry.lock();
                    let Registry { sockets, by_user, by_trip, ops } = &mut *guard;
                    let party = |id: &u64| sockets.get(id).is_some_and(|s| party_to(s, trip.rider_id, trip.driver_id));
                    let mut sent = HashSet::new();
                    for id in by_user.get(&trip.rider_id).into_iter().flatten() {
                        if let Some(s) = sockets.get(id) {
                            sent.insert(*id);
                            s.outbox.push(OutFrame::Event(for_rider.clone()), &self.metrics);
                        }
                    }
                    let driver_ids = trip.driver_id.and_then(|d| by_user.get(&d)).into_iter().flatten();
                    // A subscription is honoured only while its socket is still party to
                    // the trip (a driver who gave the trip back is no longer).
                    let subscribed = by_trip.get(&trip.id).into_iter().flatten().filter(|id| party(id));
                    let in_box =
                        ops.iter().filter(|(_, b)| b.is_none_or(|b| b.contains(trip.pickup.point))).map(|(id, _)| id);
                    for id in driver_ids.chain(subscribed).chain(in_box) {
                        if sent.insert(*id)
                            && let Some(s) = sockets.get(id)
                        {
                            s.outbox.push(OutFrame::Event(others.clone()), &self.metrics);
                        }
                    }
                    // Drop what will never be delivered again: every subscription of a
                    // trip that ended (its last update just went out), and those of
                    // sockets no longer party to it.
                    if trip.status.is_terminal() {
                        by_trip.remove(&trip.id);
                    } else if let Some(set) = by_trip.get_mut(&trip.id) {
                        set.retain(|id| party(id));
                        if set.is_empty() {
                            by_trip.remove(&trip.id);
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
                        // The rider and staff see where the driver is; nobody else, even
                        // if they once subscribed (a driver who gave the trip back).
                        if sent.insert(*id)
                            && let Some(s) = r.sockets.get(id)
                            && (s.staff || s.user == Some(trip.rider_id))
                        {
                            s.outbox.push(OutFrame::Location(*trip_id, frame.clone()), &self.metrics);
                        }
                    }
                }
                Event::DriverMoved { .. } => {}
                Event::DriverPresence { driver_id, trip_id, connected } => {
                    let (trip, fix) =
                        engine.read(|v| (v.trip(*trip_id).cloned(), v.driver(*driver_id).and_then(|d| d.fix)));
                    let Some(trip) = trip else { continue };
                    let frame = presence_frame(*trip_id, *driver_id, *connected, fix, now());
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

/// Whether `s` may hear about a trip of `rider` driven by `driver`: staff, or its rider
/// or its current driver.
fn party_to(s: &Socket, rider: UserId, driver: Option<UserId>) -> bool {
    s.staff || s.user.is_some_and(|u| u == rider || Some(u) == driver)
}

fn now() -> dispatch_core::clock::Timestamp {
    dispatch_core::clock::Clock::now(&dispatch_core::clock::SystemClock)
}

/// `driver_presence`: the driver's socket dropped or came back, with the last known
/// position (API.md: the rider sees the driver "temporarily offline with the last
/// position"); `null` position fields when the driver never reported one.
fn presence_frame(
    trip_id: TripId,
    driver_id: UserId,
    connected: bool,
    fix: Option<dispatch_core::driver::Fix>,
    now: dispatch_core::clock::Timestamp,
) -> Value {
    json!({"type": "driver_presence", "trip_id": trip_id.to_string(),
        "driver_id": driver_id.to_string(), "connected": connected,
        "lat": fix.map(|f| f.point.lat()), "lng": fix.map(|f| f.point.lng()),
        "at": fix.map(|f| crate::http::rfc3339(f.at)),
        "location_age_s": fix.map(|f| now.millis_since(f.at).max(0) / 1000)})
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
/// so it may run under the hub's lock. A report the engine cannot take now is kept and
/// sent again by [`retry_presence`]: a lost disconnect would leave the engine offering
/// trips to a driver without a socket.
fn presence(app: &App, who: Principal, connected: bool) {
    if let (Role::Driver, Some(driver)) = (who.role(), who.user_id()) {
        let seq = app.hub.presence.record(driver, connected);
        submit_presence(&app.engine, &app.hub.presence, driver, connected, seq);
    }
}

fn submit_presence(
    engine: &dispatch_core::Engine,
    pending: &Arc<PendingPresence>,
    driver: UserId,
    connected: bool,
    seq: u64,
) {
    let marks = Arc::clone(pending);
    let sent = engine.submit_with(Actor::User(driver), Command::SetPresence { connected }, move |r| {
        marks.settle(driver, seq, r.map(|_| ()));
    });
    if let Err(e) = sent {
        // The reply closure was dropped unanswered: settle here.
        pending.settle(driver, seq, Err(e));
    }
}

/// Sends again every presence report the engine has not taken (called on the 1 s tick);
/// at most [`PRESENCE_RETRIES_PER_TICK`] a tick. Returns how many were sent.
pub fn retry_presence(engine: &dispatch_core::Engine, pending: &Arc<PendingPresence>) -> usize {
    let due = pending.due(PRESENCE_RETRIES_PER_TICK);
    for &(driver, connected, seq) in &due {
        submit_presence(engine, pending, driver, connected, seq);
    }
    due.len()
}

/// Most presence reports sent again on one tick (an overloaded engine is not flooded).
pub const PRESENCE_RETRIES_PER_TICK: usize = 4096;

/// Presence reports not yet taken by the engine: at most one per driver (the newest
/// report replaces an older one), so bounded by the drivers that have had a socket.
#[derive(Default)]
pub struct PendingPresence {
    marks: Mutex<HashMap<UserId, PresenceMark>>,
    seq: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PresenceMark {
    connected: bool,
    /// Which report this is (a reply for an older one settles nothing).
    seq: u64,
    /// Sent and not answered yet: not sent again until answered.
    in_flight: bool,
}

impl PendingPresence {
    /// Notes a report about to be sent; its sequence number.
    fn record(&self, driver: UserId, connected: bool) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.marks.lock().insert(driver, PresenceMark { connected, seq, in_flight: true });
        seq
    }

    /// The engine's answer to report `seq`: taken (applied, or refused for good: the
    /// driver is gone), or to be sent again (`Overloaded`, `ReadOnly`).
    fn settle(&self, driver: UserId, seq: u64, result: Result<(), dispatch_core::Error>) {
        let retry = matches!(result, Err(dispatch_core::Error::Overloaded | dispatch_core::Error::ReadOnly(_)));
        let mut marks = self.marks.lock();
        match marks.get_mut(&driver) {
            Some(m) if m.seq == seq && retry => m.in_flight = false,
            Some(m) if m.seq == seq => {
                marks.remove(&driver);
            }
            _ => {} // a newer report replaced this one
        }
    }

    /// Up to `max` reports to send again, marked in flight.
    fn due(&self, max: usize) -> Vec<(UserId, bool, u64)> {
        let mut marks = self.marks.lock();
        marks
            .iter_mut()
            .filter(|(_, m)| !m.in_flight)
            .take(max)
            .map(|(d, m)| {
                m.in_flight = true;
                (*d, m.connected, m.seq)
            })
            .collect()
    }

    /// Reports not yet taken.
    pub fn len(&self) -> usize {
        self.marks.lock().len()
    }

    /// Whether every report was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    // The writer: drains the outbox, pings, and closes (on overflow, a stuck write, idle
    // or shutdown).
    let writer_box = Arc::clone(&outbox);
    let writer_closing = Arc::clone(&closing);
    let metrics = Arc::clone(&app.metrics);
    let mut writer = tokio::spawn(async move {
        let why = write_loop(&mut sink, &writer_box, &writer_closing, timing, &mut shutdown).await;
        let (code, reason) = match why {
            WriterEnd::Failed => return,
            WriterEnd::TooSlow => {
                metrics.slow_sockets_closed.fetch_add(1, Ordering::Relaxed);
                (CloseCode::Policy, "too slow: resynchronise over HTTP")
            }
            WriterEnd::Idle => (CloseCode::Away, "idle"),
            WriterEnd::Shutdown => (CloseCode::Away, "server shutting down"),
        };
        // A client that stopped reading cannot take a close frame either: bounded too.
        let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
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

/// Why a socket's writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterEnd {
    /// The connection failed: nothing more can be written.
    Failed,
    /// The outbox overflowed, or a write did not finish within the send timeout: close 1008.
    TooSlow,
    /// The reader heard nothing for the idle timeout: close 1001.
    Idle,
    /// The server is shutting down: close 1001.
    Shutdown,
}

/// Writes the outbox's frames and the pings until the socket must close, and says why.
/// Every write is bounded by `timing.send_timeout` and cut short by an overflow of the
/// outbox, so a client that stops reading cannot hold the writer.
async fn write_loop<S>(
    sink: &mut S,
    outbox: &Outbox,
    closing: &Notify,
    timing: WsTiming,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> WriterEnd
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + timing.ping_every, timing.ping_every);
    loop {
        tokio::select! {
            _ = outbox.notify.notified() => {
                if outbox.overflowed.load(Ordering::Relaxed) {
                    return WriterEnd::TooSlow;
                }
                while let Some(text) = outbox.pop() {
                    if let Err(end) = send_bounded(sink, Message::text(text), outbox, timing.send_timeout).await {
                        return end;
                    }
                }
            }
            _ = ping.tick() => {
                if let Err(end) = send_bounded(sink, Message::Ping(Default::default()), outbox, timing.send_timeout).await {
                    return end;
                }
            }
            _ = closing.notified() => return WriterEnd::Idle,
            _ = crate::server::until_shutdown(shutdown) => return WriterEnd::Shutdown,
        }
    }
}

/// Writes one frame within `timeout`; gives up early when the outbox overflows meanwhile.
async fn send_bounded<S>(sink: &mut S, msg: Message, outbox: &Outbox, timeout: Duration) -> Result<(), WriterEnd>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let send = sink.send(msg);
    tokio::pin!(send);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = &mut send => return r.map_err(|_| WriterEnd::Failed),
            _ = &mut deadline => return Err(WriterEnd::TooSlow),
            // A frame pushed meanwhile is written after this one (it is in the queue);
            // only an overflow ends the wait.
            _ = outbox.notify.notified() => {
                if outbox.overflowed.load(Ordering::Relaxed) {
                    return Err(WriterEnd::TooSlow);
                }
            }
        }
    }
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
                        // A finished trip has nothing more to say: acknowledged, not registered.
                        if !t.status.is_terminal() {
                            app.hub.subscribe_trip(socket, t.id);
                        }
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

    fn timing(send_timeout: Duration) -> WsTiming {
        WsTiming { ping_every: Duration::from_secs(3600), idle_timeout: Duration::from_secs(3600), send_timeout }
    }

    /// A server socket over an in-memory pipe of `buffer` bytes whose client end never reads.
    async fn stuck_socket(
        buffer: usize,
    ) -> (futures_util::stream::SplitSink<WebSocketStream<tokio::io::DuplexStream>, Message>, tokio::io::DuplexStream)
    {
        let (server_io, client_io) = tokio::io::duplex(buffer);
        let ws = WebSocketStream::from_raw_socket(server_io, WsRole::Server, None).await;
        let (sink, _stream) = ws.split();
        (sink, client_io)
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_when_a_write_outlasts_the_send_timeout() {
        let (mut sink, _client) = stuck_socket(1024).await;
        let outbox = Outbox::new();
        outbox.push(OutFrame::Event("x".repeat(32 * 1024)), &Metrics::default());
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        let closing = Notify::new();
        let run = write_loop(&mut sink, &outbox, &closing, timing(Duration::from_millis(50)), &mut rx);
        let end = tokio::time::timeout(Duration::from_secs(30), run).await;
        assert_eq!(end, Ok(WriterEnd::TooSlow), "the stuck write was given up");
    }

    #[tokio::test]
    async fn an_outbox_overflowing_while_a_write_is_stuck_closes_at_once() {
        let (mut sink, _client) = stuck_socket(1024).await;
        let outbox = Arc::new(Outbox::new());
        let m = Metrics::default();
        outbox.push(OutFrame::Event("x".repeat(32 * 1024)), &m);
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        let closing = Notify::new();
        let filler = Arc::clone(&outbox);
        let fill = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let m = Metrics::default();
            for i in 0..=OUTBOX_CAP {
                filler.push(OutFrame::Event(format!("e{i}")), &m);
            }
        });
        // The send timeout is an hour: only the overflow can end this.
        let run = write_loop(&mut sink, &outbox, &closing, timing(Duration::from_secs(3600)), &mut rx);
        let end = tokio::time::timeout(Duration::from_secs(30), run).await;
        assert_eq!(end, Ok(WriterEnd::TooSlow));
        fill.await.unwrap();
    }

    #[test]
    fn a_presence_report_the_engine_could_not_take_is_kept_until_it_is_taken() {
        let p = PendingPresence::default();
        let d = UserId::from_raw(7).unwrap();
        let first = p.record(d, false);
        assert!(p.due(10).is_empty(), "in flight: not sent twice");
        p.settle(d, first, Err(dispatch_core::Error::Overloaded));
        assert_eq!(p.due(10), vec![(d, false, first)]);
        assert!(p.due(10).is_empty(), "sent again: in flight");
        p.settle(d, first, Err(dispatch_core::Error::ReadOnly("disk full".into())));
        // The driver came back meanwhile: the newer report replaces the older one, and a
        // late answer to the older one changes nothing.
        let second = p.record(d, true);
        p.settle(d, first, Ok(()));
        assert_eq!(p.len(), 1);
        p.settle(d, second, Err(dispatch_core::Error::Overloaded));
        assert_eq!(p.due(10), vec![(d, true, second)]);
        p.settle(d, second, Ok(()));
        assert!(p.is_empty(), "taken");
        // A refusal for good (the driver is gone) is not retried.
        let third = p.record(d, false);
        p.settle(
            d,
            third,
            Err(dispatch_core::Error::Domain(dispatch_core::DomainError::NotFound {
                what: "driver",
                id: d.to_string(),
            })),
        );
        assert!(p.is_empty());
        // At most `max` a round.
        for i in 1..=5 {
            let u = UserId::from_raw(100 + i).unwrap();
            let seq = p.record(u, false);
            p.settle(u, seq, Err(dispatch_core::Error::Overloaded));
        }
        assert_eq!(p.due(3).len(), 3);
        assert_eq!(p.due(3).len(), 2);
    }

    #[test]
    fn a_disconnect_lost_to_a_read_only_engine_reaches_it_once_it_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let fault = dir.path().join("disk-full");
        let log = crate::fault::FaultFileLog::new(Box::new(dispatch_storage::MemLog::new()), fault.clone());
        let config = dispatch_core::EngineConfig { read_only_retry: Duration::from_millis(10), ..Default::default() };
        let engine =
            dispatch_core::Engine::open_with_log(config, Box::new(log), dispatch_core::State::default()).unwrap();
        engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
        let car =
            dispatch_core::Vehicle { category: dispatch_core::Category::new("economy").unwrap(), plate: "A 1".into() };
        let new = dispatch_core::NewUser {
            id: None,
            role: Role::Driver,
            name: "Omar".into(),
            phone: "+201000000001".into(),
            vehicle: Some(car),
        };
        let driver = engine.create_user(Actor::Admin, new).unwrap().id;
        let pending = Arc::new(PendingPresence::default());
        std::fs::write(&fault, b"").unwrap();
        let seq = pending.record(driver, false);
        submit_presence(&engine, &pending, driver, false, seq);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The write fails: the report is kept, not lost.
        while !(engine.is_read_only() && pending.due(1).len() == 1) {
            assert!(std::time::Instant::now() < deadline, "the report was never refused");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pending.len(), 1);
        pending.settle(driver, seq, Err(dispatch_core::Error::Overloaded)); // `due` marked it in flight
        std::fs::remove_file(&fault).unwrap();
        // The 1 s tick sends it again until the engine takes it.
        loop {
            retry_presence(&engine, &pending);
            let connected = engine.read(|v| v.driver(driver).and_then(|d| d.connected).map(|(c, _)| c));
            if pending.is_empty() && connected == Some(false) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the disconnect never reached the engine");
            std::thread::sleep(Duration::from_millis(10));
        }
        engine.shutdown().unwrap();
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
