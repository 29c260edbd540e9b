//! Routes: the distance and duration of a ride between two points, and who said so.
//!
//! Owns the [`RouteProvider`] seam, the [`Route`] value the fare engine prices, and the
//! default provider, [`StraightLine`]: the great-circle distance (haversine on a sphere of
//! [`EARTH_RADIUS_M`](crate::geo::EARTH_RADIUS_M)) times a detour factor, driven at a
//! configured city speed.
//!
//! [`RouteProvider`] is dyn-compatible and asynchronous without naming a runtime: its one
//! method returns a boxed `Send` future ([`RouteFuture`]), so the server can hold any
//! provider as an `Arc<dyn RouteProvider>` and await it on tokio, while this crate stays
//! free of sockets and executors. The HTTP router (OSRM's `/route/v1` API, with its
//! timeout, breaker and cache) is another implementation and lives in the server
//! (`dispatch_server::osrm`), which holds exactly one provider chosen from its `[route]`
//! configuration and prices every estimate and booking through it.
//!
//! Guarantees:
//! - a [`StraightLine`] that exists has a valid configuration (see [`StraightLine::new`]),
//!   so it always answers, for any two valid positions, with no panic and no error; as a
//!   [`RouteProvider`] its future is ready at once and equals [`StraightLine::between`]
//!   (core and FFI callers use `between` directly: no allocation, no future);
//! - geometry is done in `f64` and converted to integers exactly once per quantity,
//!   rounding half up (`f64::round`, which rounds ties away from zero, i.e. up, on the
//!   non-negative values it sees here): whole metres first, then whole seconds computed
//!   from those whole metres, so `duration_s` is a function of the `distance_m` shown;
//! - the straight-line route is symmetric (`a → b` equals `b → a`) and non-decreasing in
//!   the great-circle distance.
//!
//! Rides with stops go through [`RouteProvider::path`]: the route from the first waypoint
//! through each one in order to the last, with the line to draw ([`RoutedPath`], a Google
//! encoded polyline). Its default implementation routes each leg with
//! [`RouteProvider::route`] and sums them ([`Route::sum`]), drawing straight segments
//! through the waypoints; a router that knows the roads' shape (OSRM) overrides it. The
//! polyline is for drawing only: trips and the log keep the [`Route`] alone.
//!
//! The contract of every provider: a route's [`RouteSource`] says who computed it (a
//! provider that fell back to the straight line itself says
//! [`RouteSource::StraightLine`]); an error means it has no route, and a caller that must
//! price the ride anyway falls back to [`StraightLine`], whose routes say `straight_line`.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::geo::{LatLng, haversine_m, polyline};

/// Where a [`Route`]'s distance and duration came from (JSON `route_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// A road router answered (`"router"`).
    Router,
    /// The great-circle fallback (`"straight_line"`): the final fare may differ more.
    StraightLine,
}

/// A ride's length and expected duration, in whole metres and whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Length of the ride in whole metres.
    pub distance_m: u64,
    /// Expected (or, at completion, actual) duration in whole seconds.
    pub duration_s: u64,
    /// Who computed it.
    pub source: RouteSource,
}

impl Route {
    /// The legs of one ride joined: distances and durations summed (saturating, though
    /// legs a fare can price never come near `u64::MAX`). Its source is
    /// [`RouteSource::Router`] only when every leg's is (and there is at least one leg):
    /// a ride partly on the straight line may differ more, and says so.
    pub fn sum(legs: impl IntoIterator<Item = Route>) -> Route {
        let mut total = Route { distance_m: 0, duration_s: 0, source: RouteSource::Router };
        let mut any = false;
        for leg in legs {
            any = true;
            total.distance_m = total.distance_m.saturating_add(leg.distance_m);
            total.duration_s = total.duration_s.saturating_add(leg.duration_s);
            if leg.source == RouteSource::StraightLine {
                total.source = RouteSource::StraightLine;
            }
        }
        if !any {
            total.source = RouteSource::StraightLine;
        }
        total
    }
}

/// A route through waypoints with the line to draw: what an estimate shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedPath {
    /// The whole ride: every leg's distance and duration summed.
    pub route: Route,
    /// The line, as a Google encoded polyline at precision 5 (see [`polyline`]): the
    /// router's geometry, or straight segments through the waypoints.
    pub polyline: String,
}

/// Why a provider gave no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The provider answered that no road connects the two points.
    #[error("no route between the points")]
    NoRoute,
    /// The provider could not answer (down, too slow, malformed answer); callers fall back
    /// to [`StraightLine`] and say so with [`RouteSource::StraightLine`].
    #[error("route provider unavailable: {0}")]
    Unavailable(String),
}

/// What [`RouteProvider::route`] returns: a boxed future, so that the trait stays
/// dyn-compatible and names no runtime. `Send`, so a server may await it on any thread.
pub type RouteFuture<'a> = Pin<Box<dyn Future<Output = Result<Route, RouteError>> + Send + 'a>>;

/// What [`RouteProvider::path`] returns: a boxed `Send` future, as [`RouteFuture`].
pub type PathFuture<'a> = Pin<Box<dyn Future<Output = Result<RoutedPath, RouteError>> + Send + 'a>>;

/// A source of routes between two positions.
///
/// Dyn-compatible: hold one as `Arc<dyn RouteProvider>`. An implementation marks each
/// route's [`source`](Route::source) truthfully, and answers an error only when it has no
/// route to give (see the module docs for what callers do then).
pub trait RouteProvider: Send + Sync {
    /// The route from `from` to `to`. The future borrows the provider, not the points.
    fn route(&self, from: LatLng, to: LatLng) -> RouteFuture<'_>;

    /// The route from `waypoints[0]` through each waypoint in order to the last, with its
    /// line. By default each leg is asked of [`route`](Self::route) in turn and the legs
    /// are summed ([`Route::sum`]), the line being straight segments through the
    /// waypoints; the first leg without a route makes the path an error. Fewer than two
    /// waypoints make a zero route (marked `straight_line`).
    fn path(&self, waypoints: Vec<LatLng>) -> PathFuture<'_> {
        Box::pin(async move {
            let mut legs = Vec::with_capacity(waypoints.len().saturating_sub(1));
            for pair in waypoints.windows(2) {
                legs.push(self.route(pair[0], pair[1]).await?);
            }
            Ok(RoutedPath { route: Route::sum(legs), polyline: polyline::encode(&waypoints) })
        })
    }
}

/// Why a straight-line configuration was refused (`[route]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum RouteConfigError {
    /// The detour factor is not finite or outside [`StraightLine::DETOUR_FACTOR_RANGE`].
    #[error(
        "route.detour_factor must be a finite number from 1 to 10 (roads are never shorter than the great circle), got {0}"
    )]
    DetourFactor(f64),
    /// The city speed is not finite or outside [`StraightLine::CITY_SPEED_KMH_RANGE`].
    #[error("route.city_speed_kmh must be a finite number from 1 to 200, got {0}")]
    CitySpeed(f64),
}

/// The default route provider: great-circle distance × detour factor at a city speed.
///
/// Fields are private so that only a validated configuration exists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StraightLine {
    detour_factor: f64,
    city_speed_kmh: f64,
}

impl StraightLine {
    /// `route.detour_factor` when the config file does not say.
    pub const DEFAULT_DETOUR_FACTOR: f64 = 1.3;
    /// `route.city_speed_kmh` when the config file does not say.
    pub const DEFAULT_CITY_SPEED_KMH: f64 = 30.0;
    /// Accepted detour factors. Below 1 a road would be shorter than the great circle;
    /// above 10 the value is a typo. The bound also keeps every distance (at most half the
    /// Earth's circumference × 10, about 2·10⁸ m) exactly representable.
    pub const DETOUR_FACTOR_RANGE: std::ops::RangeInclusive<f64> = 1.0..=10.0;
    /// Accepted city speeds in km/h: slower than walking or faster than a motorway is a
    /// typo (a speed in m/s, say); the lower bound keeps every duration finite and small.
    pub const CITY_SPEED_KMH_RANGE: std::ops::RangeInclusive<f64> = 1.0..=200.0;

    /// A straight-line provider, if both numbers are finite and within their ranges.
    pub fn new(detour_factor: f64, city_speed_kmh: f64) -> Result<Self, RouteConfigError> {
        // `contains` is false for NaN, and the ranges are finite, so this also refuses
        // NaN and infinities.
        if !Self::DETOUR_FACTOR_RANGE.contains(&detour_factor) {
            return Err(RouteConfigError::DetourFactor(detour_factor));
        }
        if !Self::CITY_SPEED_KMH_RANGE.contains(&city_speed_kmh) {
            return Err(RouteConfigError::CitySpeed(city_speed_kmh));
        }
        Ok(Self { detour_factor, city_speed_kmh })
    }

    /// The detour factor applied to the great-circle distance.
    pub fn detour_factor(&self) -> f64 {
        self.detour_factor
    }

    /// The average speed assumed in the city, km/h.
    pub fn city_speed_kmh(&self) -> f64 {
        self.city_speed_kmh
    }

    /// The straight-line route from `from` to `to`. Infallible, so that a failing router
    /// can always fall back to it.
    pub fn between(&self, from: LatLng, to: LatLng) -> Route {
        let distance_m = round_half_up(haversine_m(from, to) * self.detour_factor);
        // Seconds = metres × 3.6 / (km/h), from the whole metres shown to the rider.
        // `distance_m` is at most ~2·10⁸ (see DETOUR_FACTOR_RANGE), exact in an f64.
        let duration_s = round_half_up(distance_m as f64 * 3.6 / self.city_speed_kmh);
        Route { distance_m, duration_s, source: RouteSource::StraightLine }
    }
}

impl StraightLine {
    /// The straight-line route from the first waypoint through each in order to the last:
    /// [`between`](Self::between) on each leg, summed ([`Route::sum`]), so a ride with
    /// stops costs what its legs booked one by one would. Fewer than two waypoints: a zero
    /// route.
    pub fn through(&self, waypoints: &[LatLng]) -> Route {
        Route::sum(waypoints.windows(2).map(|pair| self.between(pair[0], pair[1])))
    }

    /// [`through`](Self::through), with straight segments through the waypoints as its line.
    pub fn path_through(&self, waypoints: &[LatLng]) -> RoutedPath {
        RoutedPath { route: self.through(waypoints), polyline: polyline::encode(waypoints) }
    }
}

impl Default for StraightLine {
    /// Detour factor 1.3 at 30 km/h, the documented defaults of the `[route]` section.
    fn default() -> Self {
        Self { detour_factor: Self::DEFAULT_DETOUR_FACTOR, city_speed_kmh: Self::DEFAULT_CITY_SPEED_KMH }
    }
}

impl RouteProvider for StraightLine {
    /// [`StraightLine::between`], as a future that is ready at once. Never an error.
    fn route(&self, from: LatLng, to: LatLng) -> RouteFuture<'_> {
        Box::pin(std::future::ready(Ok(self.between(from, to))))
    }

    /// [`StraightLine::path_through`], as a future that is ready at once. Never an error.
    fn path(&self, waypoints: Vec<LatLng>) -> PathFuture<'_> {
        Box::pin(std::future::ready(Ok(self.path_through(&waypoints))))
    }
}

/// The one float-to-integer conversion of this module: round half up.
///
/// `x` is finite and non-negative here (a haversine distance times a validated factor, or
/// such a distance over a validated speed), and far below `u64::MAX`; `f64::round` rounds
/// ties away from zero, which for non-negative `x` is half up. The `as` conversion
/// saturates rather than wraps, should that reasoning ever break.
fn round_half_up(x: f64) -> u64 {
    x.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    #[test]
    fn one_degree_of_latitude_at_the_defaults() {
        // 2πR/360 = 111_195.08 m; × 1.3 = 144_553.60 → 144_554 m;
        // 144_554 m × 3.6 / 30 km/h = 17_346.48 → 17_346 s.
        let route = StraightLine::default().between(p(0.0, 0.0), p(1.0, 0.0));
        assert_eq!(route, Route { distance_m: 144_554, duration_s: 17_346, source: RouteSource::StraightLine });
    }

    /// Polls a future once, with a waker that does nothing: enough for a ready future,
    /// and no runtime in this crate.
    fn poll_once<F: Future>(future: F) -> std::task::Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn the_straight_line_as_a_route_provider_is_ready_at_once_and_equals_between() {
        let (from, to) = (p(30.0444, 31.2357), p(30.06, 31.25));
        for sl in [StraightLine::default(), StraightLine::new(1.5, 20.0).unwrap()] {
            // Through the trait object, as the server holds it.
            let provider: std::sync::Arc<dyn RouteProvider> = std::sync::Arc::new(sl);
            let answer = poll_once(provider.route(from, to));
            assert_eq!(answer, std::task::Poll::Ready(Ok(sl.between(from, to))));
            let std::task::Poll::Ready(Ok(route)) = answer else { unreachable!() };
            assert_eq!(route.source, RouteSource::StraightLine);
        }
        // 1° of latitude at the defaults, worked out in `one_degree_of_latitude_at_the_defaults`.
        let provider: &dyn RouteProvider = &StraightLine::default();
        assert_eq!(
            poll_once(provider.route(p(0.0, 0.0), p(1.0, 0.0))),
            std::task::Poll::Ready(Ok(Route {
                distance_m: 144_554,
                duration_s: 17_346,
                source: RouteSource::StraightLine
            }))
        );
    }

    #[test]
    fn a_path_is_its_legs_summed_and_drawn_through_its_waypoints() {
        let sl = StraightLine::default();
        let (a, b, c) = (p(30.0444, 31.2357), p(30.05, 31.24), p(30.0626, 31.2497));
        let (ab, bc) = (sl.between(a, b), sl.between(b, c));
        let through = sl.through(&[a, b, c]);
        assert_eq!(through.distance_m, ab.distance_m + bc.distance_m);
        assert_eq!(through.duration_s, ab.duration_s + bc.duration_s);
        assert_eq!(through.source, RouteSource::StraightLine);
        assert_eq!(sl.through(&[a, c]), sl.between(a, c));
        // A detour through b is never shorter than the direct leg.
        assert!(through.distance_m >= sl.between(a, c).distance_m);
        // The provider's path equals `path_through`, and its line decodes to the waypoints.
        let provider: &dyn RouteProvider = &sl;
        let std::task::Poll::Ready(Ok(path)) = poll_once(provider.path(vec![a, b, c])) else {
            panic!("the straight line's path is ready at once")
        };
        assert_eq!(path, sl.path_through(&[a, b, c]));
        assert_eq!(path.route, through);
        let drawn = polyline::decode(&path.polyline).unwrap();
        assert_eq!(drawn.len(), 3);
        for (drawn, given) in drawn.iter().zip([a, b, c]) {
            assert!(haversine_m(*drawn, given) < 1.0, "{drawn:?} {given:?}");
        }
        // Degenerate paths are zero routes.
        assert_eq!((sl.through(&[a]).distance_m, sl.through(&[]).duration_s), (0, 0));
    }

    /// A provider with only `route`: router legs, one leg failing on demand.
    struct Legs {
        fail_at: Option<LatLng>,
    }

    impl RouteProvider for Legs {
        fn route(&self, from: LatLng, _to: LatLng) -> RouteFuture<'_> {
            let answer = if Some(from) == self.fail_at {
                Err(RouteError::NoRoute)
            } else {
                Ok(Route { distance_m: 1000, duration_s: 100, source: RouteSource::Router })
            };
            Box::pin(std::future::ready(answer))
        }
    }

    #[test]
    fn the_default_path_sums_the_providers_legs() {
        let (a, b, c) = (p(1.0, 1.0), p(1.1, 1.1), p(1.2, 1.2));
        let path = poll_once(Legs { fail_at: None }.path(vec![a, b, c]));
        let std::task::Poll::Ready(Ok(path)) = path else { panic!("ready at once") };
        assert_eq!(path.route, Route { distance_m: 2000, duration_s: 200, source: RouteSource::Router });
        assert_eq!(path.polyline, polyline::encode(&[a, b, c]));
        let failed = poll_once(Legs { fail_at: Some(b) }.path(vec![a, b, c]));
        assert_eq!(failed, std::task::Poll::Ready(Err(RouteError::NoRoute)));
    }

    #[test]
    fn a_sum_is_a_router_route_only_when_every_leg_is() {
        let leg = |source| Route { distance_m: 10, duration_s: 2, source };
        let all = Route::sum([leg(RouteSource::Router), leg(RouteSource::Router)]);
        assert_eq!(all, Route { distance_m: 20, duration_s: 4, source: RouteSource::Router });
        assert_eq!(
            Route::sum([leg(RouteSource::Router), leg(RouteSource::StraightLine)]).source,
            RouteSource::StraightLine
        );
        assert_eq!(Route::sum([]).source, RouteSource::StraightLine);
    }

    #[test]
    fn same_point_is_a_zero_route() {
        let route = StraightLine::default().between(p(30.0444, 31.2357), p(30.0444, 31.2357));
        assert_eq!((route.distance_m, route.duration_s), (0, 0));
    }

    #[test]
    fn configuration_is_validated() {
        assert_eq!(StraightLine::new(1.3, 30.0).unwrap(), StraightLine::default());
        assert!(StraightLine::new(1.0, 1.0).is_ok());
        assert!(StraightLine::new(10.0, 200.0).is_ok());
        for detour in [0.0, -1.3, 0.99, 10.01, f64::NAN, f64::INFINITY] {
            assert!(matches!(StraightLine::new(detour, 30.0), Err(RouteConfigError::DetourFactor(_))), "{detour}");
        }
        for speed in [0.0, -30.0, 0.5, 200.5, f64::NAN, f64::NEG_INFINITY] {
            assert!(matches!(StraightLine::new(1.3, speed), Err(RouteConfigError::CitySpeed(_))), "{speed}");
        }
    }

    #[test]
    fn source_serializes_as_the_api_says() {
        let route = Route { distance_m: 8230, duration_s: 960, source: RouteSource::StraightLine };
        assert_eq!(
            serde_json::to_string(&route).unwrap(),
            r#"{"distance_m":8230,"duration_s":960,"source":"straight_line"}"#
        );
        assert_eq!(serde_json::to_string(&RouteSource::Router).unwrap(), r#""router""#);
        assert!(serde_json::from_str::<Route>(r#"{"distance_m":1,"duration_s":1,"source":"router","x":0}"#).is_err());
    }

    #[test]
    fn the_worst_case_stays_in_range() {
        // Antipodes at the largest detour and the slowest speed: finite, exact integers.
        // (The fare engine refuses to price such a route: see `fare::MAX_DISTANCE_M`.)
        let longest = StraightLine::new(10.0, 1.0).unwrap().between(p(0.0, 0.0), p(0.0, 180.0));
        // πR × 10 = 200_151_144.4 m → 200_151_144 m; × 3.6 / 1 = 720_544_118.4 → 720_544_118 s.
        assert_eq!(longest.distance_m, 200_151_144);
        assert_eq!(longest.duration_s, 720_544_118);
    }

    /// Anywhere on Earth, or (half the time) within a few kilometres of central Cairo, so
    /// that near-equal city distances and their rounding are exercised too.
    fn lat_lng() -> impl Strategy<Value = LatLng> {
        prop_oneof![
            (-90.0..=90.0f64, -180.0..=180.0f64).prop_map(|(lat, lng)| p(lat, lng)),
            (30.00..=30.10f64, 31.20..=31.30f64).prop_map(|(lat, lng)| p(lat, lng)),
        ]
    }

    fn provider() -> impl Strategy<Value = StraightLine> {
        (1.0..=10.0f64, 1.0..=200.0f64).prop_map(|(d, s)| StraightLine::new(d, s).unwrap())
    }

    proptest! {
        #[test]
        fn straight_line_is_symmetric(sl in provider(), a in lat_lng(), b in lat_lng()) {
            prop_assert_eq!(sl.between(a, b), sl.between(b, a));
        }

        #[test]
        fn straight_line_is_monotonic_in_distance(
            sl in provider(),
            pair_1 in (lat_lng(), lat_lng()),
            pair_2 in (lat_lng(), lat_lng()),
        ) {
            // Whatever the two pairs, the one further apart on the great circle never gets
            // the shorter or quicker route.
            let (d_1, d_2) = (haversine_m(pair_1.0, pair_1.1), haversine_m(pair_2.0, pair_2.1));
            let (near, far) = if d_1 <= d_2 {
                (pair_1, pair_2)
            } else {
                (pair_2, pair_1)
            };
            let (r_near, r_far) = (sl.between(near.0, near.1), sl.between(far.0, far.1));
            prop_assert!(r_near.distance_m <= r_far.distance_m, "{r_near:?} {r_far:?}");
            prop_assert!(r_near.duration_s <= r_far.duration_s, "{r_near:?} {r_far:?}");
        }
    }
}
