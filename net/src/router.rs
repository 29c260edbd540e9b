//! Routes for pricing: an OSRM-compatible `/route/v1` service when `[route] router_url`
//! is set, behind a circuit breaker, else (and whenever it fails) the straight line.
//!
//! Guarantees:
//! - a route is always returned: a failed, slow (over [`TIMEOUT`]) or malformed answer
//!   falls back to the straight-line estimate, marked `straight_line` (DESIGN.md "When
//!   things fail");
//! - after [`FAILURES_TO_OPEN`] failures in a row the breaker opens for [`OPEN_FOR`]: no
//!   call is made while it is open, so a dead router costs nothing per request; the first
//!   call after that is the probe that closes it again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dispatch_core::LatLng;
use dispatch_core::route::{Route, RouteSource, StraightLine};

/// Longest wait for the router.
pub const TIMEOUT: Duration = Duration::from_millis(1500);
/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker stays open.
pub const OPEN_FOR: Duration = Duration::from_secs(30);

/// The route source of the server.
pub struct Router {
    straight: StraightLine,
    /// `(authority, base path)` of the OSRM service.
    osrm: Option<(String, String)>,
    failures: AtomicU32,
    /// When the breaker opened, ms since `epoch` (0: closed).
    opened_ms: AtomicU64,
    epoch: Instant,
}

impl Router {
    /// A router over `router_url` (`http://host:port[/base]`), if any.
    pub fn new(straight: StraightLine, router_url: Option<&str>) -> Result<Router, crate::Error> {
        let osrm = router_url
            .map(|u| {
                let uri: hyper::Uri = u.parse().map_err(|e| crate::Error::Setting(format!("route.router_url: {e}")))?;
                if uri.scheme_str() != Some("http") {
                    return Err(crate::Error::Setting("route.router_url must be an http:// URL".into()));
                }
                let host = uri.host().ok_or_else(|| crate::Error::Setting("route.router_url has no host".into()))?;
                let base = uri.path().trim_end_matches('/').to_owned();
                Ok((format!("{host}:{}", uri.port_u16().unwrap_or(80)), base))
            })
            .transpose()?;
        Ok(Router { straight, osrm, failures: AtomicU32::new(0), opened_ms: AtomicU64::new(0), epoch: Instant::now() })
    }

    /// The route from `from` to `to`: the router's, or the straight line.
    pub async fn route(&self, from: LatLng, to: LatLng) -> Route {
        let Some((authority, base)) = &self.osrm else { return self.straight.between(from, to) };
        if self.is_open() {
            return self.straight.between(from, to);
        }
        let path =
            format!("{base}/route/v1/driving/{},{};{},{}?overview=false", from.lng(), from.lat(), to.lng(), to.lat());
        match tokio::time::timeout(TIMEOUT, fetch(authority, &path)).await {
            Ok(Ok(route)) => {
                self.failures.store(0, Ordering::Relaxed);
                self.opened_ms.store(0, Ordering::Relaxed);
                route
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e,
                    _ => "timed out".into(),
                };
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= FAILURES_TO_OPEN {
                    let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
                    self.opened_ms.store(now, Ordering::Relaxed);
                    tracing::warn!(error = %why, "router failing: circuit breaker open, straight-line routes");
                }
                self.straight.between(from, to)
            }
        }
    }

    fn is_open(&self) -> bool {
        let opened = self.opened_ms.load(Ordering::Relaxed);
        if opened == 0 {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(opened) < u64::try_from(OPEN_FOR.as_millis()).unwrap_or(u64::MAX)
    }
}

async fn fetch(authority: &str, path: &str) -> Result<Route, String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("router answered {}", resp.status()));
    }
    // A route answer is small; anything larger is not one.
    let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    parse_osrm(&body)
}

/// The first route of an OSRM `/route/v1` answer, in whole metres and seconds.
pub fn parse_osrm(body: &[u8]) -> Result<Route, String> {
    #[derive(serde::Deserialize)]
    struct R {
        distance: f64,
        duration: f64,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        code: String,
        #[serde(default)]
        routes: Vec<R>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| format!("malformed router answer: {e}"))?;
    let r = match (a.code.as_str(), a.routes.first()) {
        ("Ok", Some(r)) => r,
        _ => return Err(format!("router found no route ({})", a.code)),
    };
    let whole = |v: f64| (v.is_finite() && (0.0..1e9).contains(&v)).then(|| v.round() as u64);
    match (whole(r.distance), whole(r.duration)) {
        (Some(distance_m), Some(duration_s)) => Ok(Route { distance_m, duration_s, source: RouteSource::Router }),
        _ => Err("router answered an impossible route".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osrm_answers_are_read_strictly() {
        let r = parse_osrm(br#"{"code":"Ok","routes":[{"distance":8230.4,"duration":959.6,"legs":[]}]}"#).unwrap();
        assert_eq!((r.distance_m, r.duration_s, r.source), (8230, 960, RouteSource::Router));
        assert!(parse_osrm(br#"{"code":"NoRoute","routes":[]}"#).is_err());
        assert!(parse_osrm(br#"{"code":"Ok","routes":[{"distance":-1,"duration":5}]}"#).is_err());
        assert!(parse_osrm(b"<html>").is_err());
    }

    #[tokio::test]
    async fn a_dead_router_opens_the_breaker_and_routes_stay_straight_lines() {
        // Nothing listens on port 9 of localhost: every call fails fast.
        let router = Router::new(StraightLine::default(), Some("http://127.0.0.1:9")).unwrap();
        let (a, b) = (LatLng::new(30.0444, 31.2357).unwrap(), LatLng::new(30.06, 31.25).unwrap());
        for _ in 0..FAILURES_TO_OPEN {
            assert_eq!(router.route(a, b).await.source, RouteSource::StraightLine);
        }
        assert!(router.is_open());
        assert_eq!(router.route(a, b).await, StraightLine::default().between(a, b));
        assert!(Router::new(StraightLine::default(), Some("https://x")).is_err());
    }
}
