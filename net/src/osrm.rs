//! The OSRM route provider: road distances and durations from an OSRM-compatible
//! `/route/v1` service, with the straight line as the answer of last resort.
//!
//! Owns [`OsrmRouter`]: the HTTP request (`GET {base}/route/v1/driving/{lng},{lat};{lng},{lat}?overview=false`
//! for a route, `…/{lng},{lat};{lng},{lat};…?overview=full&geometries=polyline` for a
//! path through waypoints with its line), the per-request timeout, the circuit breaker,
//! the cache, and the fallback to [`StraightLine`]. It implements `dispatch_core::route::RouteProvider`, the seam the
//! server prices through: with `[route] router_url` set, the server's one
//! `Arc<dyn RouteProvider>` is an `OsrmRouter` (see `server::Routes`).
//!
//! Guarantees:
//! - [`OsrmRouter::route`] (and the [`RouteProvider`] impl, which never answers an error)
//!   always answers: a router route (`route_source` `router`), or the
//!   straight line (`straight_line`) whenever the router fails, answers `NoRoute`, times out,
//!   or the breaker is open. It never waits longer than the configured timeout (plus the
//!   time to compute a straight line);
//! - [`OsrmRouter::path`] sends every waypoint, in order, in one request and passes the
//!   router's geometry (`routes[0].geometry`, a Google polyline at precision 5) through
//!   after checking that it decodes to at least two valid points and is at most
//!   [`MAX_POLYLINE_BYTES`]; when it falls back, the line is straight segments through
//!   the waypoints (`StraightLine::path_through`), priced leg by leg. An answer whose
//!   numbers are good but whose geometry is missing or bad keeps the router's route and
//!   draws the straight segments (the line is for drawing; the price is the road's);
//! - the router's numbers are checked before use: NaN, infinite, negative, or beyond what
//!   the fare engine prices (`fare::MAX_DISTANCE_M`, `fare::MAX_DURATION_S`) is a failure,
//!   not a route; metres and seconds are rounded half up to integers;
//! - **breaker**: after `failures_to_open` consecutive failures it opens, and for
//!   `open_for` no request is sent; then one request (the half-open probe) is let through
//!   while the others fall back; its success closes the breaker, its failure opens it
//!   again for another `open_for`. Time comes from an injected [`Clock`];
//! - **cache**: at most `cache_capacity` routes (least recently used evicted), keyed by
//!   every point rounded to 1e-5 degrees (about a metre) and whether the line was asked
//!   for; only router answers are cached, so a fallback is retried on the next request;
//!   a line longer than [`CACHED_POLYLINE_BYTES`] is not cached, so the cache holds at
//!   most `cache_capacity` × that many bytes of lines (40 MB at the defaults; a city
//!   ride's line is well under 1 KiB);
//! - a response body is read up to [`MAX_BODY_BYTES`]; a larger one is a failure.
//!
//! `NoRoute` (OSRM's "no road joins these points") is a straight-line answer but not a
//! breaker failure: the service answered, correctly.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch_core::fare::{MAX_DISTANCE_M, MAX_DURATION_S};
use dispatch_core::geo::LatLng;
use dispatch_core::geo::polyline;
use dispatch_core::route::{
    PathFuture, Route, RouteError, RouteFuture, RouteProvider, RouteSource, RoutedPath, StraightLine,
};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lru::LruCache;
use serde::Deserialize;

/// The largest router answer read. An `overview=false` route answer is well under 4 KiB;
/// an `overview=full` one carries the line, a few bytes a point.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// The longest line passed on from the router (a longer one is a failed answer): tens of
/// thousands of points, far more than any ride's.
pub const MAX_POLYLINE_BYTES: usize = 256 * 1024;

/// The longest line kept in the cache (longer ones are passed on, not kept).
pub const CACHED_POLYLINE_BYTES: usize = 4 * 1024;

/// Where the breaker's time comes from: the system's monotonic clock, or a manual one
/// in tests.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How an [`OsrmRouter`] behaves.
#[derive(Debug, Clone)]
pub struct OsrmConfig {
    /// The service's base URL, e.g. `http://127.0.0.1:5000` (`[route] router_url`).
    pub base_url: String,
    /// The longest one request may take, connect to last byte.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker (at least 1).
    pub failures_to_open: u32,
    /// How long an open breaker sends nothing before its half-open probe.
    pub open_for: Duration,
    /// Routes kept in the cache.
    pub cache_capacity: NonZeroUsize,
    /// The fallback (`[route] detour_factor`, `city_speed_kmh`).
    pub fallback: StraightLine,
}

impl OsrmConfig {
    /// The defaults for `base_url`: a 1 s timeout, open after 5 failures for 30 s, 10,000
    /// cached routes, the default straight line.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(1),
            failures_to_open: 5,
            open_for: Duration::from_secs(30),
            cache_capacity: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            fallback: StraightLine::default(),
        }
    }
}

/// Why an [`OsrmRouter`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterConfigError {
    /// The base URL is not an absolute `http://` URL.
    #[error("route.router_url must be an absolute http:// URL, got `{0}`")]
    BaseUrl(String),
    /// `failures_to_open` is 0.
    #[error("the breaker needs at least one failure to open")]
    FailuresToOpen,
}

/// What the breaker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; the count of consecutive failures so far.
    Closed {
        /// Failures in a row, below the threshold.
        consecutive_failures: u32,
    },
    /// No request is sent until `until`.
    Open {
        /// When the half-open probe may go.
        until: Instant,
    },
    /// One probe is in flight; everyone else falls back.
    HalfOpen,
}

/// The circuit breaker. Pure: time is passed in.
#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    failures_to_open: u32,
    open_for: Duration,
}

impl Breaker {
    /// Whether a request may be sent now (`HalfOpen` after this means it is the probe).
    fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    fn succeeded(&mut self) {
        self.state = BreakerState::Closed { consecutive_failures: 0 };
    }

    fn failed(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { consecutive_failures } if consecutive_failures + 1 < self.failures_to_open => {
                BreakerState::Closed { consecutive_failures: consecutive_failures + 1 }
            }
            // The threshold reached, or the probe failed (or a request admitted while
            // closed came back after the breaker opened): open (again) from now.
            _ => BreakerState::Open { until: now + self.open_for },
        };
    }
}

/// Whether the line was asked for, and every point rounded to 1e-5 degrees, as integers
/// (exact, hashable).
type CacheKey = (bool, Vec<i32>);

fn cache_key(points: &[LatLng], with_line: bool) -> CacheKey {
    // |degrees| ≤ 180, so × 1e5 ≤ 1.8e7 fits an i32; LatLng is always finite.
    let q = |degrees: f64| (degrees * 1e5).round() as i32;
    (with_line, points.iter().flat_map(|p| [q(p.lat()), q(p.lng())]).collect())
}

/// A router answer: the route, and its line when it was asked for.
#[derive(Debug, Clone)]
struct Answer {
    route: Route,
    polyline: Option<Arc<str>>,
}

/// OSRM's answer, the parts used.
#[derive(Debug, Deserialize)]
struct OsrmAnswer {
    code: String,
    #[serde(default)]
    routes: Vec<OsrmRoute>,
}

#[derive(Debug, Deserialize)]
struct OsrmRoute {
    distance: f64,
    duration: f64,
    /// With `geometries=polyline`: the line, a Google polyline at precision 5.
    #[serde(default)]
    geometry: Option<serde_json::Value>,
}

/// The router's line, checked: a string of at most [`MAX_POLYLINE_BYTES`] that decodes to
/// at least two valid points.
fn checked_line(geometry: Option<serde_json::Value>) -> Result<Arc<str>, RouteError> {
    let bad = |why: String| RouteError::Unavailable(format!("the router answered a bad geometry: {why}"));
    let Some(serde_json::Value::String(line)) = geometry else {
        return Err(bad("not a polyline string".into()));
    };
    if line.len() > MAX_POLYLINE_BYTES {
        return Err(bad(format!("{} bytes, more than {MAX_POLYLINE_BYTES}", line.len())));
    }
    let points = polyline::decode(&line).map_err(|e| bad(e.to_string()))?;
    if points.len() < 2 {
        return Err(bad(format!("{} points", points.len())));
    }
    Ok(Arc::from(line))
}

/// Rounds a router quantity half up to an integer, refusing what no ride can be.
fn whole(value: f64, max: u64, what: &str) -> Result<u64, RouteError> {
    if !value.is_finite() || value < 0.0 || value > max as f64 {
        return Err(RouteError::Unavailable(format!("the router answered an impossible {what}: {value}")));
    }
    // Finite, non-negative and at most `max` (≤ 1e8): `round` is half up here, and the
    // conversion is exact.
    Ok(value.round() as u64)
}

/// A route provider backed by an OSRM service. Cheap to share (`Arc` it); every method
/// takes `&self`.
pub struct OsrmRouter {
    /// `base_url` without a trailing `/`.
    base_url: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    fallback: StraightLine,
    /// Held for microseconds, never across an `.await`.
    breaker: Mutex<Breaker>,
    /// Held for microseconds, never across an `.await`.
    cache: Mutex<LruCache<CacheKey, Answer>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OsrmRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsrmRouter").field("base_url", &self.base_url).field("timeout", &self.timeout).finish()
    }
}

impl OsrmRouter {
    /// A router with the system clock.
    pub fn new(config: OsrmConfig) -> Result<Self, RouterConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A router whose breaker reads `clock` (a manual clock in tests).
    pub fn with_clock(config: OsrmConfig, clock: Arc<dyn Clock>) -> Result<Self, RouterConfigError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let valid =
            base_url.parse::<Uri>().is_ok_and(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some());
        if !valid {
            return Err(RouterConfigError::BaseUrl(config.base_url));
        }
        if config.failures_to_open == 0 {
            return Err(RouterConfigError::FailuresToOpen);
        }
        Ok(Self {
            base_url,
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout: config.timeout,
            fallback: config.fallback,
            breaker: Mutex::new(Breaker {
                state: BreakerState::Closed { consecutive_failures: 0 },
                failures_to_open: config.failures_to_open,
                open_for: config.open_for,
            }),
            cache: Mutex::new(LruCache::new(config.cache_capacity)),
            clock,
        })
    }

    /// The breaker's state now (for metrics and tests).
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).state
    }

    /// The route from `from` to `to`: the router's, or the straight line (see the module
    /// docs for when). Never fails.
    pub async fn route(&self, from: LatLng, to: LatLng) -> Route {
        self.route_or_reason(from, to).await.0
    }

    /// As [`route`](Self::route), with the reason when it fell back to the straight line
    /// (for logs and metrics).
    pub async fn route_or_reason(&self, from: LatLng, to: LatLng) -> (Route, Option<RouteError>) {
        match self.try_router(&[from, to], false).await {
            Ok(answer) => (answer.route, None),
            Err(why) => (self.fallback.between(from, to), Some(why)),
        }
    }

    /// The route from the first waypoint through each in order to the last, with its
    /// line: the router's (one request with every waypoint), or the straight line's (see
    /// the module docs for when). Never fails.
    pub async fn path(&self, waypoints: &[LatLng]) -> RoutedPath {
        self.path_or_reason(waypoints).await.0
    }

    /// As [`path`](Self::path), with the reason when it fell back to the straight line.
    /// Fewer than two waypoints are the straight line's zero route, asked of no one.
    pub async fn path_or_reason(&self, waypoints: &[LatLng]) -> (RoutedPath, Option<RouteError>) {
        if waypoints.len() < 2 {
            return (self.fallback.path_through(waypoints), None);
        }
        match self.try_router(waypoints, true).await {
            Ok(Answer { route, polyline: Some(line) }) => (RoutedPath { route, polyline: line.to_string() }, None),
            // The road's route, drawn straight: the geometry was missing or bad (logged).
            Ok(Answer { route, polyline: None }) => (RoutedPath { route, polyline: polyline::encode(waypoints) }, None),
            Err(why) => (self.fallback.path_through(waypoints), Some(why)),
        }
    }

    /// The router's answer: from the cache, or asked if the breaker allows.
    async fn try_router(&self, points: &[LatLng], with_line: bool) -> Result<Answer, RouteError> {
        let key = cache_key(points, with_line);
        if let Some(answer) = self.lock_cache().get(&key).cloned() {
            return Ok(answer);
        }
        if !self.lock_breaker().admit(self.clock.now()) {
            return Err(RouteError::Unavailable("the circuit breaker is open".into()));
        }
        // A dropped future (the caller gave up) must not leave a half-open probe in
        // flight forever: the guard counts it as a failure unless an answer came.
        let mut outcome = Outcome { router: self, settled: false };
        let answer = tokio::time::timeout(self.timeout, self.ask(points, with_line))
            .await
            .unwrap_or_else(|_| Err(RouteError::Unavailable(format!("no answer within {:?}", self.timeout))));
        match &answer {
            Ok(answer) => {
                outcome.settle(true);
                if answer.polyline.as_ref().is_none_or(|line| line.len() <= CACHED_POLYLINE_BYTES) {
                    self.lock_cache().put(key, answer.clone());
                }
            }
            // The service answered, and correctly: it is healthy.
            Err(RouteError::NoRoute) => outcome.settle(true),
            Err(RouteError::Unavailable(_)) => outcome.settle(false),
        }
        answer
    }

    /// One request to the service: every point in order, the line when `with_line`.
    async fn ask(&self, points: &[LatLng], with_line: bool) -> Result<Answer, RouteError> {
        let coordinates: Vec<String> = points.iter().map(|p| format!("{:.6},{:.6}", p.lng(), p.lat())).collect();
        let overview = if with_line { "overview=full&geometries=polyline" } else { "overview=false" };
        let url = format!("{}/route/v1/driving/{}?{overview}", self.base_url, coordinates.join(";"));
        let uri: Uri = url.parse().map_err(|e| RouteError::Unavailable(format!("bad request URL {url}: {e}")))?;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| RouteError::Unavailable(format!("{what}: {e}"));
        let response = self.client.get(uri).await.map_err(|e| unavailable("request failed", &e))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(RouteError::Unavailable(format!("the router answered HTTP {status}")));
        }
        // OSRM answers its errors (NoRoute among them) as 400 with a JSON body: read it.
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| unavailable("reading the answer failed", &e))?
            .to_bytes();
        let answer: OsrmAnswer =
            serde_json::from_slice(&body).map_err(|e| unavailable(&format!("malformed answer (HTTP {status})"), &e))?;
        match answer.code.as_str() {
            "Ok" => {}
            "NoRoute" => return Err(RouteError::NoRoute),
            other => return Err(RouteError::Unavailable(format!("the router answered code {other:?}"))),
        }
        let first = answer
            .routes
            .into_iter()
            .next()
            .ok_or_else(|| RouteError::Unavailable("an Ok answer with no route".into()))?;
        let route = Route {
            distance_m: whole(first.distance, MAX_DISTANCE_M, "distance")?,
            duration_s: whole(first.duration, MAX_DURATION_S, "duration")?,
            source: RouteSource::Router,
        };
        let polyline = match with_line.then(|| checked_line(first.geometry)) {
            Some(Ok(line)) => Some(line),
            Some(Err(why)) => {
                tracing::debug!(error = %why, "the router's route is used, drawn as straight segments");
                None
            }
            None => None,
        };
        Ok(Answer { route, polyline })
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The breaker is plain data updated in one assignment: a poisoned lock still
        // holds a consistent state.
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LruCache<CacheKey, Answer>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RouteProvider for OsrmRouter {
    /// [`OsrmRouter::route_or_reason`]: the router's route, or the straight line marked
    /// `straight_line` when it fails (the reason logged at debug level). Never an error.
    fn route(&self, from: LatLng, to: LatLng) -> RouteFuture<'_> {
        Box::pin(async move {
            let (route, why) = self.route_or_reason(from, to).await;
            if let Some(why) = why {
                tracing::debug!(error = %why, "router unavailable: priced on the straight line");
            }
            Ok(route)
        })
    }

    /// [`OsrmRouter::path_or_reason`]: never an error, as `route`.
    fn path(&self, waypoints: Vec<LatLng>) -> PathFuture<'_> {
        Box::pin(async move {
            let (path, why) = self.path_or_reason(&waypoints).await;
            if let Some(why) = why {
                tracing::debug!(error = %why, "router unavailable: a path priced on the straight line");
            }
            Ok(path)
        })
    }
}

/// Reports one admitted request's outcome to the breaker exactly once; dropped unsettled
/// (the caller's future was cancelled), it reports a failure.
struct Outcome<'a> {
    router: &'a OsrmRouter,
    settled: bool,
}

impl Outcome<'_> {
    fn settle(&mut self, success: bool) {
        self.settled = true;
        let mut breaker = self.router.lock_breaker();
        if success { breaker.succeeded() } else { breaker.failed(self.router.clock.now()) }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::Full;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A clock moved by hand.
    struct ManualClock {
        start: Instant,
        offset: Mutex<Duration>,
    }

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self { start: Instant::now(), offset: Mutex::new(Duration::ZERO) })
        }

        fn advance(&self, by: Duration) {
            *self.offset.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }
    }

    /// What the stub answers.
    #[derive(Debug, Clone, Copy)]
    enum Mode {
        Good {
            distance: f64,
            duration: f64,
        },
        /// A good answer with this geometry (raw JSON).
        Line {
            distance: f64,
            duration: f64,
            geometry: &'static str,
        },
        NoRoute,
        Garbage,
        Http500,
        /// Never answers.
        Stall,
        /// An Ok answer with these (bad) numbers, raw JSON.
        Raw(&'static str),
    }

    struct Stub {
        mode: Mutex<Mode>,
        requests: AtomicUsize,
        last_path: Mutex<String>,
    }

    impl Stub {
        fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    async fn answer(
        stub: Arc<Stub>,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        stub.requests.fetch_add(1, Ordering::SeqCst);
        *stub.last_path.lock().unwrap() = request.uri().to_string();
        let mode = *stub.mode.lock().unwrap();
        let (status, body) = match mode {
            Mode::Good { distance, duration } => (
                StatusCode::OK,
                format!(
                    r#"{{"code":"Ok","routes":[{{"distance":{distance},"duration":{duration},"legs":[]}}],"waypoints":[]}}"#
                ),
            ),
            Mode::Line { distance, duration, geometry } => (
                StatusCode::OK,
                format!(
                    r#"{{"code":"Ok","routes":[{{"distance":{distance},"duration":{duration},"geometry":{geometry},"legs":[]}}],"waypoints":[]}}"#
                ),
            ),
            Mode::NoRoute => {
                (StatusCode::BAD_REQUEST, r#"{"code":"NoRoute","message":"Impossible route between points"}"#.into())
            }
            Mode::Garbage => (StatusCode::OK, "<html>not json".into()),
            Mode::Http500 => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
            Mode::Stall => {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                (StatusCode::OK, String::new())
            }
            Mode::Raw(json) => (StatusCode::OK, json.into()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        Ok(response)
    }

    /// A stub OSRM on 127.0.0.1:0; its base URL.
    async fn stub(mode: Mode) -> (Arc<Stub>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stub =
            Arc::new(Stub { mode: Mutex::new(mode), requests: AtomicUsize::new(0), last_path: Mutex::default() });
        let shared = Arc::clone(&stub);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let stub = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(Arc::clone(&stub), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (stub, format!("http://{address}"))
    }

    fn config(base_url: &str) -> OsrmConfig {
        OsrmConfig {
            timeout: Duration::from_millis(200),
            failures_to_open: 3,
            open_for: Duration::from_secs(30),
            cache_capacity: NonZeroUsize::new(2).unwrap(),
            ..OsrmConfig::new(base_url)
        }
    }

    fn p(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    const A: (f64, f64) = (30.0444, 31.2357);
    const B: (f64, f64) = (30.06, 31.25);

    fn a() -> LatLng {
        p(A.0, A.1)
    }

    fn b() -> LatLng {
        p(B.0, B.1)
    }

    fn straight(from: LatLng, to: LatLng) -> Route {
        StraightLine::default().between(from, to)
    }

    #[tokio::test]
    async fn a_good_answer_is_rounded_half_up_and_marked_router() {
        let (stub, base) = stub(Mode::Good { distance: 8229.5, duration: 959.49 }).await;
        let router = OsrmRouter::new(config(&format!("{base}/"))).unwrap();
        let (route, why) = router.route_or_reason(a(), b()).await;
        assert_eq!(route, Route { distance_m: 8230, duration_s: 959, source: RouteSource::Router });
        assert!(why.is_none());
        assert_eq!(
            *stub.last_path.lock().unwrap(),
            "/route/v1/driving/31.235700,30.044400;31.250000,30.060000?overview=false"
        );
    }

    #[tokio::test]
    async fn no_route_falls_back_without_counting_against_the_router() {
        let (stub, base) = stub(Mode::NoRoute).await;
        let router = OsrmRouter::new(config(&base)).unwrap();
        for _ in 0..5 {
            let (route, why) = router.route_or_reason(a(), b()).await;
            assert_eq!(route, straight(a(), b()));
            assert_eq!(why, Some(RouteError::NoRoute));
        }
        assert_eq!(stub.requests(), 5, "not cached, and the breaker stays closed");
        assert_eq!(router.breaker_state(), BreakerState::Closed { consecutive_failures: 0 });
    }

    #[tokio::test]
    async fn failures_fall_back_to_the_straight_line() {
        for mode in [
            Mode::Garbage,
            Mode::Http500,
            Mode::Stall,
            Mode::Raw(r#"{"code":"Ok","routes":[]}"#),
            Mode::Raw(r#"{"code":"Ok","routes":[{"distance":-1,"duration":5}]}"#),
            Mode::Raw(r#"{"code":"Ok","routes":[{"distance":1e300,"duration":5}]}"#),
            Mode::Raw(r#"{"code":"Ok","routes":[{"distance":10,"duration":1e12}]}"#),
            Mode::Raw(r#"{"code":"Ok","routes":[{"distance":"NaN","duration":5}]}"#),
            Mode::Raw(r#"{"code":"InvalidQuery","message":"bad"}"#),
        ] {
            let (_stub, base) = stub(mode).await;
            let router = OsrmRouter::new(config(&base)).unwrap();
            let started = Instant::now();
            let (route, why) = router.route_or_reason(a(), b()).await;
            assert_eq!(route, straight(a(), b()), "{mode:?}");
            assert_eq!(route.source, RouteSource::StraightLine);
            assert!(matches!(why, Some(RouteError::Unavailable(_))), "{mode:?}: {why:?}");
            assert_eq!(router.breaker_state(), BreakerState::Closed { consecutive_failures: 1 }, "{mode:?}");
            // Generous: the timeout is 200 ms; a stall must not hold the caller for long.
            assert!(started.elapsed() < Duration::from_secs(10), "{mode:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_router_falls_back() {
        // Bind and drop: nothing listens on that port any more.
        let address = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let router = OsrmRouter::new(config(&format!("http://{address}"))).unwrap();
        let (route, why) = router.route_or_reason(a(), b()).await;
        assert_eq!(route.source, RouteSource::StraightLine);
        assert!(matches!(why, Some(RouteError::Unavailable(_))));
    }

    #[tokio::test]
    async fn the_breaker_opens_then_probes_once_then_closes() {
        let (stub, base) = stub(Mode::Http500).await;
        let clock = ManualClock::new();
        let router = OsrmRouter::with_clock(config(&base), clock.clone()).unwrap();
        for n in 1..=3 {
            assert_eq!(router.route(a(), b()).await.source, RouteSource::StraightLine);
            assert_eq!(stub.requests(), n);
        }
        let opened_at = clock.now();
        assert_eq!(router.breaker_state(), BreakerState::Open { until: opened_at + Duration::from_secs(30) });

        // Open: no request reaches the router, even once it is healthy again.
        stub.set(Mode::Good { distance: 8230.0, duration: 960.0 });
        clock.advance(Duration::from_secs(29));
        let (route, why) = router.route_or_reason(a(), b()).await;
        assert_eq!(route, straight(a(), b()));
        assert!(matches!(why, Some(RouteError::Unavailable(m)) if m.contains("breaker")));
        assert_eq!(stub.requests(), 3, "no request while open");

        // After the cool-down a failed probe opens it again for a whole cool-down.
        stub.set(Mode::Http500);
        clock.advance(Duration::from_secs(1));
        assert_eq!(router.route(a(), b()).await.source, RouteSource::StraightLine);
        assert_eq!(stub.requests(), 4, "one probe");
        assert_eq!(router.breaker_state(), BreakerState::Open { until: clock.now() + Duration::from_secs(30) });
        assert_eq!(router.route(a(), b()).await.source, RouteSource::StraightLine);
        assert_eq!(stub.requests(), 4);

        // A successful probe closes it.
        stub.set(Mode::Good { distance: 8230.0, duration: 960.0 });
        clock.advance(Duration::from_secs(30));
        assert_eq!(router.route(a(), b()).await.source, RouteSource::Router);
        assert_eq!(stub.requests(), 5);
        assert_eq!(router.breaker_state(), BreakerState::Closed { consecutive_failures: 0 });
    }

    #[tokio::test]
    async fn while_the_probe_is_in_flight_others_fall_back() {
        let (stub, base) = stub(Mode::Http500).await;
        let clock = ManualClock::new();
        // A long timeout: the probe stays in flight until the test cancels it, whatever
        // the machine's speed.
        let config = OsrmConfig { failures_to_open: 1, timeout: Duration::from_secs(3_600), ..config(&base) };
        let router = Arc::new(OsrmRouter::with_clock(config, clock.clone()).unwrap());
        assert_eq!(router.route(a(), b()).await.source, RouteSource::StraightLine);
        assert!(matches!(router.breaker_state(), BreakerState::Open { .. }));

        stub.set(Mode::Stall);
        clock.advance(Duration::from_secs(30));
        let probe = tokio::spawn({
            let router = Arc::clone(&router);
            async move { router.route(a(), b()).await }
        });
        // Wait (bounded, generously) until the probe has reached the stub.
        for _ in 0..1_000 {
            if stub.requests() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stub.requests(), 2, "the probe reached the router");
        assert_eq!(router.breaker_state(), BreakerState::HalfOpen);
        let (route, why) = router.route_or_reason(p(1.0, 1.0), p(1.1, 1.1)).await;
        assert_eq!(route.source, RouteSource::StraightLine);
        assert!(matches!(why, Some(RouteError::Unavailable(m)) if m.contains("breaker")));
        assert_eq!(stub.requests(), 2, "no second request while the probe is out");

        // The probe's caller gives up: that counts as a failed probe, not a wedged breaker.
        probe.abort();
        assert!(probe.await.unwrap_err().is_cancelled());
        assert_eq!(router.breaker_state(), BreakerState::Open { until: clock.now() + Duration::from_secs(30) });
    }

    #[tokio::test]
    async fn a_cancelled_request_counts_as_a_failure_so_no_probe_wedges_the_breaker() {
        let (_stub, base) = stub(Mode::Stall).await;
        let clock = ManualClock::new();
        let router = OsrmRouter::with_clock(
            OsrmConfig { failures_to_open: 1, timeout: Duration::from_secs(60), ..config(&base) },
            clock.clone(),
        )
        .unwrap();
        // The caller gives up long before the router's timeout.
        let gave_up = tokio::time::timeout(Duration::from_millis(100), router.route(a(), b())).await;
        assert!(gave_up.is_err());
        assert!(matches!(router.breaker_state(), BreakerState::Open { .. }), "counted as a failure");
    }

    #[tokio::test]
    async fn the_cache_answers_without_a_request_and_is_bounded() {
        let (stub, base) = stub(Mode::Good { distance: 1000.0, duration: 100.0 }).await;
        let router = OsrmRouter::new(config(&base)).unwrap();
        let first = router.route(a(), b()).await;
        assert_eq!(first.source, RouteSource::Router);
        assert_eq!(stub.requests(), 1);
        // The same points, and points within ~1e-6 degrees of them: one entry.
        assert_eq!(router.route(a(), b()).await, first);
        assert_eq!(router.route(p(A.0 + 1e-6, A.1), p(B.0, B.1 - 1e-6)).await, first);
        assert_eq!(stub.requests(), 1, "served from the cache");
        // The other direction is another key.
        router.route(b(), a()).await;
        assert_eq!(stub.requests(), 2);
        // Capacity 2: a third key evicts the least recently used one, a → b.
        router.route(a(), a()).await;
        assert_eq!(stub.requests(), 3);
        router.route(a(), b()).await;
        assert_eq!(stub.requests(), 4, "a → b was evicted");
        // Fallbacks are not cached: the next call asks again.
        stub.set(Mode::Http500);
        router.route(p(2.0, 2.0), p(2.1, 2.1)).await;
        stub.set(Mode::Good { distance: 1000.0, duration: 100.0 });
        assert_eq!(router.route(p(2.0, 2.0), p(2.1, 2.1)).await.source, RouteSource::Router);
        assert_eq!(stub.requests(), 6);
    }

    #[tokio::test]
    async fn through_the_route_provider_seam_it_never_fails() {
        let (stub, base) = stub(Mode::Good { distance: 8230.0, duration: 960.0 }).await;
        let provider: Arc<dyn RouteProvider> = Arc::new(OsrmRouter::new(config(&base)).unwrap());
        let routed = Route { distance_m: 8230, duration_s: 960, source: RouteSource::Router };
        assert_eq!(provider.route(a(), b()).await, Ok(routed));
        // A failing router is the straight line, marked so, and still not an error.
        stub.set(Mode::Garbage);
        assert_eq!(provider.route(b(), a()).await, Ok(straight(b(), a())));
        assert_eq!(stub.requests(), 2);
    }

    /// Google's documented example line.
    const GOOGLE: &str = r#""_p~iF~ps|U_ulLnnqC_mqNvxq`@""#;

    #[tokio::test]
    async fn a_path_sends_every_waypoint_in_order_and_passes_the_line_through() {
        let (stub, base) = stub(Mode::Line { distance: 12_000.4, duration: 1_500.5, geometry: GOOGLE }).await;
        let router = OsrmRouter::new(config(&base)).unwrap();
        let stop = p(30.05, 31.24);
        let (path, why) = router.path_or_reason(&[a(), stop, b()]).await;
        assert!(why.is_none(), "{why:?}");
        assert_eq!(path.route, Route { distance_m: 12_000, duration_s: 1_501, source: RouteSource::Router });
        assert_eq!(path.polyline, "_p~iF~ps|U_ulLnnqC_mqNvxq`@");
        assert_eq!(
            *stub.last_path.lock().unwrap(),
            "/route/v1/driving/31.235700,30.044400;31.240000,30.050000;31.250000,30.060000?overview=full&geometries=polyline"
        );
        // Cached: the same waypoints again ask nothing; the route alone is another key.
        assert_eq!(router.path(&[a(), stop, b()]).await, path);
        assert_eq!(stub.requests(), 1);
        // Through the provider seam, too.
        let provider: Arc<dyn RouteProvider> = Arc::new(router);
        assert_eq!(provider.path(vec![a(), stop, b()]).await, Ok(path));
    }

    #[tokio::test]
    async fn a_bad_line_keeps_the_routers_route_drawn_as_straight_segments() {
        let stop = p(30.05, 31.24);
        let routed = Route { distance_m: 12_000, duration_s: 1_500, source: RouteSource::Router };
        let drawn = RoutedPath { route: routed, polyline: polyline::encode(&[a(), stop, b()]) };
        let bad = [r#""_p~iF ps|U""#, r#""_p~iF~ps|U""#, "null", "42", r#"{"type":"LineString"}"#];
        for geometry in bad {
            let (_stub, base) = stub(Mode::Line { distance: 12_000.0, duration: 1_500.0, geometry }).await;
            let router = OsrmRouter::new(config(&base)).unwrap();
            let (path, why) = router.path_or_reason(&[a(), stop, b()]).await;
            assert_eq!(path, drawn, "{geometry}");
            assert!(why.is_none(), "{geometry}: the router's route is used");
            assert_eq!(router.breaker_state(), BreakerState::Closed { consecutive_failures: 0 });
        }
        // An answer with no geometry at all: the same.
        let (stub, base) = stub(Mode::Good { distance: 12_000.0, duration: 1_500.0 }).await;
        let router = OsrmRouter::new(config(&base)).unwrap();
        assert_eq!(router.path(&[a(), stop, b()]).await, drawn);
        // A failing router: the straight line's legs summed, drawn straight.
        stub.set(Mode::Http500);
        let (path, why) = router.path_or_reason(&[b(), stop, a()]).await;
        assert_eq!(path, StraightLine::default().path_through(&[b(), stop, a()]));
        assert_eq!(path.route.source, RouteSource::StraightLine);
        assert!(matches!(why, Some(RouteError::Unavailable(_))));
        // One waypoint asks no one.
        let asked = stub.requests();
        assert_eq!(router.path(&[a()]).await.route.distance_m, 0);
        assert_eq!(stub.requests(), asked);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(matches!(OsrmRouter::new(OsrmConfig::new("osrm:5000")), Err(RouterConfigError::BaseUrl(_))));
        assert!(matches!(OsrmRouter::new(OsrmConfig::new("https://x")), Err(RouterConfigError::BaseUrl(_))));
        let zero = OsrmConfig { failures_to_open: 0, ..OsrmConfig::new("http://127.0.0.1:5000") };
        assert!(matches!(OsrmRouter::new(zero), Err(RouterConfigError::FailuresToOpen)));
    }

    #[test]
    fn cache_keys_round_to_a_hundred_thousandth_of_a_degree() {
        assert_eq!(
            cache_key(&[p(30.044_404, 31.0), p(-90.0, 180.0)], false),
            (false, vec![3_004_440, 3_100_000, -9_000_000, 18_000_000])
        );
        assert_eq!(cache_key(&[p(30.044_406, 31.0), p(0.0, 0.0)], true).1[0], 3_004_441);
        assert_ne!(cache_key(&[a(), b()], true), cache_key(&[a(), b()], false));
    }
}
