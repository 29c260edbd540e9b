//! The server's shared state: [`App`] (the engine handle, configuration, keys, rate
//! limits, metrics, the WebSocket hub and its caps, the connection admission, the trusted
//! proxies, idempotency keys in flight, the routes rides are priced on, the shutdown
//! signal), which every request handler and socket task is given. It knows nothing of
//! routes or of the socket protocol: the API (`crate::api`), the gateway (`crate::ws`) and
//! the serving loop (`crate::listener`) sit above it.
//!
//! Guarantees:
//! - no runtime thread ever blocks on the engine's writer: commands go through
//!   `Engine::submit_with` and a oneshot ([`App::submit`]); reads that may touch the
//!   history on disk run on the blocking pool ([`App::blocking`]);
//! - shutdown is one `watch` flag ([`App::shutdown`], [`until_shutdown`]) that every
//!   task waits on;
//! - an `Idempotency-Key` is processed by one request at a time ([`InFlight`]);
//! - every ride is routed through one `Arc<dyn RouteProvider>` chosen from `[route]`
//!   ([`Routes`]): the OSRM router (which falls back to the straight line by itself) when
//!   `router_url` is set, else the straight line; a provider that has no route is priced
//!   on the straight line too, so an estimate or a booking always has a route, marked
//!   `straight_line` whenever the router did not give it.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dispatch_core::clock::{Clock, SystemClock};
use dispatch_core::command::IdempotencyKey;
use dispatch_core::route::{Route, RouteProvider, RoutedPath, StraightLine};
use dispatch_core::templates::Live;
use dispatch_core::{Actor, Availability, Command, Engine, LatLng, Outcome, TripId, TripStatus};
use hyper::StatusCode;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use crate::admission::{Admission, FdLimit};
use crate::auth::{Keys, Principal};
use crate::config::{Config, Secrets};
use crate::http::{ApiError, Resp, json_response};
use crate::hub::Hub;
use crate::hub::caps::SocketCaps;
use crate::metrics::Metrics;
use crate::proxy::TrustedProxies;
use crate::ratelimit::{Class, Quota, RateLimiter, Subject};
use crate::sms::SmsSink;

/// The longest one frame may take to be written to a client before the socket is closed
/// as too slow (a client that stopped reading fills the TCP buffers, then every write waits).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Fsync samples kept for the stats' p99 (one a second: five minutes).
const FSYNC_SAMPLES: usize = 300;

/// Everything a request handler may touch. One per process, behind an `Arc`.
pub struct App {
    /// The engine: commands in, a view out.
    pub engine: Arc<Engine>,
    /// The configuration in force.
    pub config: Config,
    /// The console's `Content-Security-Policy`, made once from `[console]` on the first
    /// console answer (by `api`, which owns the policy; `server` stays below it).
    pub console_csp: std::sync::OnceLock<hyper::header::HeaderValue>,
    /// Token, admin-token and OTP keys.
    pub keys: Keys,
    /// Request rate limits.
    pub limiter: RateLimiter,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// WebSocket connections and their queues.
    pub hub: Arc<Hub>,
    /// How many WebSockets may be open, in all and per user (claimed at the upgrade).
    pub socket_caps: Arc<SocketCaps>,
    /// Which connections are served: the descriptor budget, the per-IP cap, the probe lane.
    pub admission: Arc<Admission>,
    /// The proxies whose forwarding header names the client (`[server] trusted_proxies`).
    pub proxies: TrustedProxies,
    /// Idempotency keys being processed now (the engine stores finished ones).
    pub inflight: InFlight,
    /// Where OTP codes go.
    pub sms: Arc<SmsSink>,
    /// The routes rides are priced on (`[route]`).
    pub routes: Routes,
    /// The ETAs of trips on the way, asked of `routes` at most every 10 s per trip.
    pub etas: crate::eta::Etas,
    /// WebSocket heartbeat intervals.
    pub ws_timing: WsTiming,
    /// Flips to `true` once shutdown begins (sockets close on it).
    pub shutdown: watch::Receiver<bool>,
    /// The gateways whose webhooks are taken (`sim` and `[gateways.*]`), with their secrets.
    pub gateways: crate::gateways::Gateways,
    /// Recent fsync durations (µs), sampled every second for the stats' p99.
    fsync_samples: Mutex<VecDeque<u64>>,
    /// `--dev`: webhook endpoints may be `http://` to loopback.
    pub dev: bool,
    // ----- issue 20: S -----
    /// `--clock-offset-s` (`--dev` only), milliseconds: tokens are issued and checked on
    /// the engine's clock, so tests can age them.
    clock_offset_ms: i64,
    // ----- issue 21 -----
    /// This node's place in a cluster (`None`: one node on its own WAL, always leads).
    pub node: Option<Arc<crate::cluster::Node>>,
}

impl App {
    /// Builds the shared state; `fds` is the process's descriptor limit, which bounds the
    /// connections served (`crate::admission`) and so the sockets.
    pub fn new(
        engine: Arc<Engine>,
        config: Config,
        secrets: &Secrets,
        sms: Arc<SmsSink>,
        ws_timing: WsTiming,
        shutdown: watch::Receiver<bool>,
        fds: FdLimit,
    ) -> Result<App, crate::Error> {
        let routes = Routes::from_config(&config.route)?;
        let metrics = Arc::new(Metrics::default());
        let budget = fds.connection_budget().map_err(crate::Error::Setting)?;
        metrics.transport.fd_limit.store(i64::try_from(fds.soft).unwrap_or(i64::MAX), Ordering::Relaxed);
        let proxies = TrustedProxies::new(config.server.trusted_proxies.clone(), config.server.proxy_header);
        let admission = Arc::new(Admission::new(
            budget,
            config.server.max_connections_per_ip,
            proxies.clone(),
            Arc::clone(&metrics.transport),
        ));
        // Every socket holds a connection's place: never more sockets than the budget.
        let max_sockets = crate::admission::MAX_WEBSOCKETS.min(budget);
        let socket_caps = Arc::new(SocketCaps::new(max_sockets, config.server.ws_per_user, config.server.ws_per_staff));
        Ok(App {
            console_csp: std::sync::OnceLock::new(),
            limiter: RateLimiter::new(&config.limits, RateLimiter::monotonic()),
            hub: Arc::new(Hub::new(Arc::clone(&metrics))),
            socket_caps,
            admission,
            proxies,
            metrics,
            keys: Keys::new(&secrets.token_secret, &secrets.admin_token)
                .with_metrics_token(secrets.metrics_token.as_deref()),
            gateways: crate::gateways::Gateways::new(&config, secrets)?,
            engine,
            config,
            inflight: InFlight::default(),
            sms,
            routes,
            etas: crate::eta::Etas::default(),
            ws_timing,
            shutdown,
            fsync_samples: Mutex::new(VecDeque::with_capacity(FSYNC_SAMPLES)),
            dev: secrets.dev,
            clock_offset_ms: 0,
            node: None,
        })
    }

    // ----- issue 20: S -----
    /// This app with its clock `offset_s` ahead of the system's, as the engine's is
    /// (`--clock-offset-s`, `--dev` only).
    pub fn with_clock_offset_s(mut self, offset_s: i64) -> App {
        self.clock_offset_ms = offset_s.saturating_mul(1000);
        self
    }

    /// This app with its rate limiter on `clock` (`--limiter-clock`, `--dev` only): the
    /// limits are the configuration's, every bucket new.
    pub fn with_limiter_clock(mut self, clock: Option<crate::ratelimit::Clock>) -> App {
        if let Some(clock) = clock {
            self.limiter = RateLimiter::new(&self.config.limits, clock);
        }
        self
    }

    // ----- issue 21 -----
    /// This app as a node of a cluster.
    pub fn with_node(mut self, node: Option<Arc<crate::cluster::Node>>) -> App {
        self.node = node;
        self
    }

    /// This node's cluster membership while it follows (`None`: it leads, or is standalone).
    pub fn follower(&self) -> Option<&Arc<crate::cluster::Node>> {
        self.node.as_ref().filter(|n| !n.is_leader())
    }

    /// Now, on the engine's clock: what tokens are issued at and checked against.
    pub fn now(&self) -> dispatch_core::clock::Timestamp {
        SystemClock.now().plus_millis(self.clock_offset_ms)
    }

    /// Sends a command and awaits its outcome without blocking a runtime thread.
    pub async fn submit(&self, actor: Actor, command: Command) -> Result<Outcome, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.engine.submit_with(actor, command, move |r| {
            let _ = tx.send(r);
        })?;
        match rx.await {
            Ok(r) => r.map_err(ApiError::from),
            Err(_) => Err(ApiError::from_core(&dispatch_core::Error::ShutDown)),
        }
    }

    /// Runs an engine read that may touch the disk (the history of finished trips and
    /// settled transfers) on the blocking pool, never on a runtime thread.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> dispatch_core::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let engine = Arc::clone(&self.engine);
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => {
                tracing::error!(error = %e, "a blocking engine read failed");
                Err(ApiError::new("internal", "internal error"))
            }
        }
    }

    /// Resolves a bearer token.
    pub fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        crate::auth::authenticate(
            &self.keys,
            token,
            self.now().as_secs(),
            |id| self.engine.user(id),
            |role| self.config.role_permissions(role),
        )
    }

    /// Counts a request to the route named `route` against a bucket: what is left of
    /// its quota, or `429` with `Retry-After` and `RateLimit-*` when over (the message
    /// names the class and the route).
    pub fn limit(&self, route: &str, class: Class, subject: Subject) -> Result<Quota, ApiError> {
        self.limiter.check_quota(class, subject).map_err(|retry| {
            self.metrics.rate_limited(class.as_str());
            ApiError::rate_limited(retry, &format!("{} limit on {}", class.as_str(), route))
                .with_limit(self.limiter.limit_of(class))
        })
    }

    /// The command posting `text` to `trip_id`'s chat, with whether the trip's rider has an
    /// open socket here now (`None` when the trip is not in the view: the engine refuses
    /// it anyway). Riders' presence is not in the state: the command records what the
    /// server saw, and the engine pushes the message to a rider who had no socket.
    pub fn post_message(&self, trip_id: TripId, text: String) -> Command {
        let rider = self.engine.read(|v| v.trip(trip_id).map(|t| t.rider_id));
        let rider_connected = rider.map(|r| self.hub.is_connected(r));
        Command::PostMessage { id: None, trip_id, text, rider_connected }
    }

    /// What a notification says that the state does not know, at the time it is sent: the
    /// ETA of a `trip_accepted` push's driver to the pickup (from the ETA cache, which asks
    /// the route provider at most every 10 s per trip); none once the trip has moved on
    /// (the driver arrived, it ended), or when the driver has no position.
    pub async fn live(&self, kind: dispatch_core::outbox::Kind, trip_id: Option<TripId>) -> Live {
        let Some(trip_id) = trip_id.filter(|_| kind == dispatch_core::outbox::Kind::TripAccepted) else {
            return Live::default();
        };
        let Some((trip, fix)) = self.engine.read(|v| {
            let t = v.trip(trip_id)?;
            Some((Arc::clone(t), t.driver_id.and_then(|d| v.driver(d).and_then(|d| d.fix))))
        }) else {
            return Live::default();
        };
        if !matches!(crate::eta::Leg::of(&trip), Some((crate::eta::Leg::Pickup, _))) {
            return Live::default();
        }
        let eta = self.etas.get(&trip, fix, SystemClock.now(), |from, to| self.route(from, to)).await;
        Live { eta_s: eta.map(|e| e.seconds) }
    }

    /// The route of a ride, from the configured provider ([`Routes::route`]).
    pub async fn route(&self, from: LatLng, to: LatLng) -> Route {
        self.routes.route(from, to).await
    }

    /// The route through `waypoints` with its line, from the configured provider
    /// ([`Routes::path`]).
    pub async fn path(&self, waypoints: Vec<LatLng>) -> RoutedPath {
        self.routes.path(waypoints).await
    }

    /// The currency of wallet reads that name none (`Catalog::default_currency`, the
    /// domain's rule), else `400 invalid_request` asking for `?currency=`.
    pub fn default_currency(&self) -> Result<dispatch_core::Currency, ApiError> {
        self.engine
            .read(|v| v.catalog().default_currency())
            .ok_or_else(|| ApiError::invalid("no zone exists yet: pass ?currency="))
    }

    /// `GET /readyz`; `leader_only` (`?role=leader`): ready only while this node leads
    /// (always for a standalone node).
    pub fn readiness(&self, leader_only: bool) -> Resp {
        let writable = !self.engine.is_read_only();
        let (depth, cap) = (self.engine.queue_depth(), self.engine.queue_capacity());
        // Below 90 % of capacity (exact for small capacities: an empty queue of 1 is fine).
        let queue_ok = depth.saturating_mul(10) < cap.saturating_mul(9);
        let shutting_down = *self.shutdown.borrow();
        let mut checks = json!({
            "engine_writable": if writable { "ok" } else { "read_only" },
            "queue": if queue_ok { "ok" } else { "near_capacity" },
            "queue_depth": depth,
            "accepting": if shutting_down { "shutting_down" } else { "ok" },
        });
        let role_ok = !leader_only || self.engine.is_leader();
        if leader_only {
            checks["role"] = json!(if role_ok { "leader" } else { "follower" });
        }
        if writable && queue_ok && !shutting_down && role_ok {
            json_response(StatusCode::OK, &json!({"status": "ready", "checks": checks}))
        } else {
            let mut r =
                json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "not_ready", "checks": checks}));
            r.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
            r
        }
    }

    /// `GET /v1/admin/stats`.
    pub fn stats(&self) -> serde_json::Value {
        let now = SystemClock.now();
        let (drivers, trips) = self.engine.read_snapshot(|v| {
            let (mut available, mut on_trip, mut offline_recent) = (0u64, 0u64, 0u64);
            for d in v.drivers() {
                match d.availability {
                    Availability::Available => available += 1,
                    Availability::OnTrip => on_trip += 1,
                    Availability::Offline if d.fix.is_some_and(|f| now.millis_since(f.at) < 3_600_000) => {
                        offline_recent += 1
                    }
                    Availability::Offline => {}
                }
            }
            // One pass over the hot trips, counted by status (every status listed, 0 or not;
            // the match makes a new status a compile error here, not a trip left uncounted).
            const STATUSES: [TripStatus; 8] = [
                TripStatus::Scheduled,
                TripStatus::Searching,
                TripStatus::Accepted,
                TripStatus::Arrived,
                TripStatus::InProgress,
                TripStatus::Completed,
                TripStatus::Cancelled,
                TripStatus::Expired,
            ];
            let slot = |s: TripStatus| match s {
                TripStatus::Scheduled => 0,
                TripStatus::Searching => 1,
                TripStatus::Accepted => 2,
                TripStatus::Arrived => 3,
                TripStatus::InProgress => 4,
                TripStatus::Completed => 5,
                TripStatus::Cancelled => 6,
                TripStatus::Expired => 7,
            };
            let mut counts = [0u64; STATUSES.len()];
            for t in v.trips() {
                counts[slot(t.status)] += 1;
            }
            let trips: serde_json::Map<String, serde_json::Value> =
                STATUSES.iter().zip(counts).map(|(s, n)| (s.as_str().to_owned(), json!(n))).collect();
            (json!({"available": available, "on_trip": on_trip, "offline_recent": offline_recent}), trips)
        });
        let s = self.engine.stats();
        json!({
            "drivers": drivers,
            "trips": trips,
            "queue_depth": self.engine.queue_depth(),
            "queue_capacity": self.engine.queue_capacity(),
            "fsync_p99_us": self.fsync_p99_us(),
            "fsync_max_us": s.max_sync_us.load(Ordering::Relaxed),
            "last_batch": s.last_batch.load(Ordering::Relaxed),
            "read_only": self.engine.is_read_only(),
            "sockets_open": self.metrics.sockets_open.load(Ordering::Relaxed),
            // Cumulative since start (the console charts their rates): the `/metrics` series.
            "counters": {
                "offers_sent": self.metrics.offers_sent.load(Ordering::Relaxed),
                "accepts_won": self.metrics.accepts_won.load(Ordering::Relaxed),
                "accepts_lost": self.metrics.accepts_lost.load(Ordering::Relaxed),
                "rate_limited": self.metrics.rate_limited_total(),
            },
        })
    }

    /// Records the last fsync's latency for the stats' p99 (the ticker calls it once a second).
    pub(crate) fn sample_fsync(&self) {
        let us = self.engine.stats().last_sync_us.load(Ordering::Relaxed);
        let mut s = self.fsync_samples.lock();
        if s.len() == FSYNC_SAMPLES {
            s.pop_front();
        }
        s.push_back(us);
    }

    fn fsync_p99_us(&self) -> u64 {
        let mut v: Vec<u64> = self.fsync_samples.lock().iter().copied().collect();
        if v.is_empty() {
            return self.engine.stats().last_sync_us.load(Ordering::Relaxed);
        }
        v.sort_unstable();
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    }
}

/// The routes rides are priced on: one provider chosen from `[route]`, and the straight
/// line of `[route]` for when that provider has no route.
#[derive(Clone)]
pub struct Routes {
    provider: Arc<dyn RouteProvider>,
    straight_line: StraightLine,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").field("straight_line", &self.straight_line).finish_non_exhaustive()
    }
}

impl Routes {
    /// `[route]`'s provider: with `router_url`, an [`OsrmRouter`](crate::osrm::OsrmRouter)
    /// (1 s timeout, breaker, cache; the straight line of `[route]` when it fails);
    /// without, that straight line itself.
    pub fn from_config(route: &crate::config::RouteSection) -> Result<Routes, crate::Error> {
        let straight_line = StraightLine::new(route.detour_factor, route.city_speed_kmh)
            .map_err(|e| crate::Error::Setting(e.to_string()))?;
        let provider: Arc<dyn RouteProvider> = match route.router_url.as_deref() {
            Some(url) => {
                let config = crate::osrm::OsrmConfig { fallback: straight_line, ..crate::osrm::OsrmConfig::new(url) };
                Arc::new(crate::osrm::OsrmRouter::new(config).map_err(|e| crate::Error::Setting(e.to_string()))?)
            }
            None => Arc::new(straight_line),
        };
        Ok(Routes { provider, straight_line })
    }

    /// Any provider, with `straight_line` for when it has no route (tests, embedders).
    pub fn new(provider: Arc<dyn RouteProvider>, straight_line: StraightLine) -> Routes {
        Routes { provider, straight_line }
    }

    /// The straight line of `[route]` (the fallback, and a driver's pickup ETA in an estimate).
    pub fn straight_line(&self) -> &StraightLine {
        &self.straight_line
    }

    /// The one provider every estimate and booking goes through.
    pub fn provider(&self) -> &Arc<dyn RouteProvider> {
        &self.provider
    }

    /// The provider's route; when it has none, the straight line (marked
    /// `straight_line`). Never fails.
    pub async fn route(&self, from: LatLng, to: LatLng) -> Route {
        match self.provider.route(from, to).await {
            Ok(route) => route,
            Err(why) => {
                tracing::debug!(error = %why, "no route from the provider: priced on the straight line");
                self.straight_line.between(from, to)
            }
        }
    }

    /// The provider's route through `waypoints` in order, with its line; when it has none,
    /// the straight line's, leg by leg, with straight segments (marked `straight_line`).
    /// Never fails.
    pub async fn path(&self, waypoints: Vec<LatLng>) -> RoutedPath {
        match self.provider.path(waypoints.clone()).await {
            Ok(path) => path,
            Err(why) => {
                tracing::debug!(error = %why, "no path from the provider: priced on the straight line");
                self.straight_line.path_through(&waypoints)
            }
        }
    }
}

/// Idempotency keys in flight: a second request with a key still being processed is
/// `409 idempotency_key_in_use`. Bounded by the requests in flight.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<(Actor, String)>>);

/// Releases an in-flight key when dropped.
pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    key: (Actor, String),
}

impl InFlight {
    /// Claims `key` for this request.
    pub fn claim(&self, key: &IdempotencyKey) -> Result<InFlightGuard<'_>, ApiError> {
        let k = (key.principal, key.key.clone());
        if !self.0.lock().insert(k.clone()) {
            return Err(ApiError::new("idempotency_key_in_use", "a request with this Idempotency-Key is in progress"));
        }
        Ok(InFlightGuard { set: self, key: k })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.set.0.lock().remove(&self.key);
    }
}

/// Resolves once `rx` says shutdown has begun (or its sender is gone).
pub async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_core::route::{RouteError, RouteFuture, RouteSource};

    fn p(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    fn route_section(router_url: Option<String>) -> crate::config::RouteSection {
        crate::config::RouteSection { detour_factor: 1.4, city_speed_kmh: 25.0, router_url }
    }

    #[tokio::test]
    async fn no_router_and_a_dead_router_both_answer_straight_line_through_the_provider() {
        // Bind and drop: nothing listens on that port any more.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let (from, to) = (p(30.0444, 31.2357), p(30.06, 31.25));
        let expected = StraightLine::new(1.4, 25.0).unwrap().between(from, to);
        assert_eq!(expected.source, RouteSource::StraightLine);
        for section in [route_section(None), route_section(Some(format!("http://{dead}")))] {
            let routes = Routes::from_config(&section).unwrap();
            // The one trait object every estimate and booking goes through.
            let provider: Arc<dyn RouteProvider> = Arc::clone(routes.provider());
            assert_eq!(provider.route(from, to).await, Ok(expected), "{:?}", section.router_url);
            assert_eq!(routes.route(from, to).await, expected, "{:?}", section.router_url);
        }
    }

    /// A provider that never has a route.
    struct NoRoutes;

    impl RouteProvider for NoRoutes {
        fn route(&self, _: LatLng, _: LatLng) -> RouteFuture<'_> {
            Box::pin(std::future::ready(Err(RouteError::Unavailable("down".into()))))
        }
    }

    #[tokio::test]
    async fn a_provider_without_a_route_is_priced_on_the_straight_line() {
        let straight_line = StraightLine::new(1.2, 40.0).unwrap();
        let routes = Routes::new(Arc::new(NoRoutes), straight_line);
        let (from, to) = (p(30.0444, 31.2357), p(30.06, 31.25));
        let route = routes.route(from, to).await;
        assert_eq!(route, straight_line.between(from, to));
        assert_eq!(route.source, RouteSource::StraightLine);
        // A path through a stop: the straight line's legs summed, straight segments drawn.
        let stop = p(30.05, 31.24);
        let path = routes.path(vec![from, stop, to]).await;
        assert_eq!(path, straight_line.path_through(&[from, stop, to]));
        assert_eq!(
            path.route.distance_m,
            straight_line.between(from, stop).distance_m + straight_line.between(stop, to).distance_m
        );
    }

    #[test]
    fn a_bad_router_url_stops_start_up() {
        let err = Routes::from_config(&route_section(Some("https://osrm.example".into()))).unwrap_err();
        assert!(err.to_string().contains("router_url"), "{err}");
    }

    #[test]
    fn an_idempotency_key_in_flight_is_refused_until_its_request_ends() {
        let set = InFlight::default();
        let key = |principal, k: &str| IdempotencyKey { principal, key: k.into(), request_hash: [0; 32] };
        let first = set.claim(&key(Actor::Admin, "k1")).unwrap();
        let again = set.claim(&key(Actor::Admin, "k1")).err().unwrap();
        assert_eq!((again.status.as_u16(), again.code), (409, "idempotency_key_in_use"));
        // Keys are scoped to their principal.
        let other = dispatch_core::UserId::from_raw(5).unwrap();
        let _theirs = set.claim(&key(Actor::User(other), "k1")).unwrap();
        drop(first);
        assert!(set.claim(&key(Actor::Admin, "k1")).is_ok());
    }
}
