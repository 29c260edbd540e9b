//! The fare estimator on its own: a pricing configuration in, an estimate out. No engine,
//! no storage, no clock.
//!
//! Owns the estimator's input shape (the configuration JSON, the coordinates, the stops on
//! the way, the optional router route) and its two answers: JSON in API.md's estimate
//! shape ([`dispatch_fare_estimate`], [`dispatch_fare_estimate_stops`]) and the same
//! numbers in a plain C struct ([`dispatch_fare_estimate_values`],
//! [`dispatch_fare_estimate_stops_values`]). The functions without stops keep their
//! signatures (apps link them); they are the stop functions with no stops.
//!
//! Guarantees:
//! - the numbers are `dispatch_core::fare::estimate`'s, called with the same arguments the
//!   server passes it, so an app shows the server's fare to the minor unit;
//! - without a router route the route is `dispatch_core::route::StraightLine`'s (marked
//!   `straight_line`) from pickup through the stops in order to drop-off, every leg
//!   summed, as the server prices a ride with stops; with one it is taken as given
//!   (marked `router`: the router's route through every point);
//! - stops are at most `dispatch_core::trip::MAX_STOPS` (more is
//!   `DISPATCH_STATUS_INVALID_ARGUMENT`, as the server's `400`); a NULL stop array with a
//!   count above 0 is `DISPATCH_STATUS_NULL_ARGUMENT`; the array is read only after the
//!   count is checked, and only during the call;
//! - a fare error is reported with `FareError`'s own message, so the C side and the Rust
//!   side refuse the same inputs with the same words;
//! - the currency is one of ISO 4217's in force (`dispatch_core::money::CURRENCIES`), or
//!   `DISPATCH_STATUS_INVALID_ARGUMENT` naming it; amounts stay integer minor units, and
//!   the answer carries the currency's exponent (`currency_exponent`) so an app shows
//!   `67.04 EGP`, `6704 JPY` or `6.704 KWD` without a table of its own;
//! - the configuration is strict JSON: unknown fields are refused, as the HTTP API does.
//!
//! # The configuration
//!
//! ```json
//! {"pricing": {"base_minor": 1500, "per_km_minor": 450, "per_min_minor": 75,
//!              "minimum_minor": 2500, "booking_fee_minor": 300, "cancel_fee_minor": 1000,
//!              "wait_per_min_minor": 50, "free_wait_s": 180, "commission_bps": 1500},
//!  "currency": "EGP", "extra_fee_minor": 0, "surge_bps": 10000,
//!  "coupon": {"percent_bps": 2000, "max_discount_minor": 1000},
//!  "route": {"detour_factor": 1.3, "city_speed_kmh": 30}}
//! ```
//!
//! `pricing` is one category's entry of a zone's `pricing` (API.md), as the server stores
//! it. `coupon` (optional) is `percent_bps` with an optional `max_discount_minor`, or
//! `amount_minor`, as in `POST /v1/admin/coupons`; its eligibility (dates, use counts,
//! minimum fare) is the server's business, this only applies the discount. `route`
//! (optional, and each of its fields) defaults to the `[route]` defaults, 1.3 and 30.

use std::ffi::c_char;

use dispatch_core::fare::{self, CouponDiscount, FareError, FareQuote, Pricing};
use dispatch_core::route::{Route, RouteSource, StraightLine};
use dispatch_core::trip::MAX_STOPS;
use dispatch_core::{Currency, LatLng, Money};
use serde::{Deserialize, Serialize};

use crate::boundary::{OutString, call, parse_json, str_arg};
use crate::error::{DispatchStatus, FfiError};

/// A route from a road router (OSRM or the app's own), in whole metres and seconds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchRoute {
    /// Length of the ride, whole metres.
    pub distance_m: u64,
    /// Expected duration, whole seconds.
    pub duration_s: u64,
}

/// A point on the way (a stop), WGS84 degrees.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchPoint {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lng: f64,
}

/// Where an estimate's distance and duration came from (JSON `route_source`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchRouteSource {
    /// The caller passed a router's route (`"router"`).
    Router = 0,
    /// The great-circle fallback (`"straight_line"`).
    StraightLine = 1,
}

/// An estimate in plain integers: the JSON answer's numbers, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchFareEstimate {
    /// What the rider pays, minor units.
    pub fare_minor: i64,
    /// The ISO 4217 code, NUL-terminated (`"EGP"`).
    pub currency: [c_char; 4],
    /// The currency's ISO 4217 minor-unit exponent: digits after the decimal point when
    /// an amount is shown (2 for EGP, 0 for JPY, 3 for KWD). Amounts are never scaled.
    /// (It sits in what was padding before `distance_m`: no other field moved.)
    pub currency_exponent: u8,
    /// The distance priced, whole metres.
    pub distance_m: u64,
    /// The duration priced, whole seconds.
    pub duration_s: u64,
    /// The surge applied, basis points (10000 = x1.0).
    pub surge_bps: u32,
    /// Where the route came from.
    pub route_source: DispatchRouteSource,
    /// The coupon's discount (also `breakdown.discount_minor`).
    pub discount_minor: i64,
    /// Breakdown: the base fare.
    pub base_minor: i64,
    /// Breakdown: the distance part.
    pub distance_minor: i64,
    /// Breakdown: the time part.
    pub time_minor: i64,
    /// Breakdown: what the surge adds.
    pub surge_minor: i64,
    /// Breakdown: what lifts the fare to the minimum.
    pub minimum_fill_minor: i64,
    /// Breakdown: the booking fee.
    pub booking_fee_minor: i64,
    /// Breakdown: the zone's extra fee.
    pub extra_fee_minor: i64,
}

/// The configuration JSON (see the module docs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FareConfig {
    pricing: Pricing,
    currency: String,
    extra_fee_minor: i64,
    surge_bps: u32,
    #[serde(default)]
    coupon: Option<CouponConfig>,
    #[serde(default)]
    route: Option<RouteConfig>,
}

/// A coupon's discount as the API spells it: flat fields, one kind set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CouponConfig {
    #[serde(default)]
    percent_bps: Option<u32>,
    #[serde(default)]
    max_discount_minor: Option<i64>,
    #[serde(default)]
    amount_minor: Option<i64>,
}

impl CouponConfig {
    /// The discount, with the same rules (and words) as the core's coupon definition.
    fn discount(&self) -> Result<CouponDiscount, FareError> {
        match (self.percent_bps, self.amount_minor, self.max_discount_minor) {
            (Some(percent_bps), None, max_discount_minor) => {
                Ok(CouponDiscount::Percent { percent_bps, max_discount_minor })
            }
            (None, Some(amount_minor), None) => Ok(CouponDiscount::Amount { amount_minor }),
            (None, Some(_), Some(_)) => {
                Err(FareError::InvalidCoupon("max_discount_minor applies to percent_bps coupons only"))
            }
            _ => Err(FareError::InvalidCoupon("exactly one of percent_bps and amount_minor is required")),
        }
    }
}

/// The straight-line fallback's settings (`[route]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    #[serde(default = "default_detour_factor")]
    detour_factor: f64,
    #[serde(default = "default_city_speed_kmh")]
    city_speed_kmh: f64,
}

fn default_detour_factor() -> f64 {
    StraightLine::DEFAULT_DETOUR_FACTOR
}

fn default_city_speed_kmh() -> f64 {
    StraightLine::DEFAULT_CITY_SPEED_KMH
}

/// API.md's estimate, for one category (no `category` field: the caller chose the pricing).
#[derive(Serialize)]
struct EstimateJson {
    fare: FareJson,
    distance_m: u64,
    duration_s: u64,
    surge_bps: u32,
    discount_minor: i64,
    route_source: RouteSource,
    breakdown: BreakdownJson,
}

/// The estimate's `fare`, as the server writes it: minor units, the code, its exponent.
#[derive(Serialize)]
struct FareJson {
    amount_minor: i64,
    currency: Currency,
    currency_exponent: u8,
}

impl From<Money> for FareJson {
    fn from(m: Money) -> Self {
        FareJson { amount_minor: m.amount_minor, currency: m.currency, currency_exponent: m.currency.exponent() }
    }
}

/// API.md's breakdown. `waiting_minor` is left out: it is always 0 in an estimate and the
/// API's estimate does not show it.
#[derive(Serialize)]
struct BreakdownJson {
    base_minor: i64,
    distance_minor: i64,
    time_minor: i64,
    surge_minor: i64,
    minimum_fill_minor: i64,
    booking_fee_minor: i64,
    extra_fee_minor: i64,
    discount_minor: i64,
}

impl From<&FareQuote> for EstimateJson {
    fn from(q: &FareQuote) -> Self {
        let b = &q.breakdown;
        EstimateJson {
            fare: FareJson::from(q.fare),
            distance_m: q.distance_m,
            duration_s: q.duration_s,
            surge_bps: q.surge_bps,
            discount_minor: q.discount_minor,
            route_source: q.route_source,
            breakdown: BreakdownJson {
                base_minor: b.base_minor,
                distance_minor: b.distance_minor,
                time_minor: b.time_minor,
                surge_minor: b.surge_minor,
                minimum_fill_minor: b.minimum_fill_minor,
                booking_fee_minor: b.booking_fee_minor,
                extra_fee_minor: b.extra_fee_minor,
                discount_minor: b.discount_minor,
            },
        }
    }
}

impl From<&FareQuote> for DispatchFareEstimate {
    fn from(q: &FareQuote) -> Self {
        let code = q.fare.currency.code().as_bytes();
        let mut currency = [0 as c_char; 4];
        for (slot, &byte) in currency.iter_mut().zip(code.iter().take(3)) {
            // ASCII uppercase letters (Currency's invariant): the cast keeps the value.
            *slot = byte as c_char;
        }
        let b = &q.breakdown;
        DispatchFareEstimate {
            fare_minor: q.fare.amount_minor,
            currency,
            currency_exponent: q.fare.currency.exponent(),
            distance_m: q.distance_m,
            duration_s: q.duration_s,
            surge_bps: q.surge_bps,
            route_source: match q.route_source {
                RouteSource::Router => DispatchRouteSource::Router,
                RouteSource::StraightLine => DispatchRouteSource::StraightLine,
            },
            discount_minor: q.discount_minor,
            base_minor: b.base_minor,
            distance_minor: b.distance_minor,
            time_minor: b.time_minor,
            surge_minor: b.surge_minor,
            minimum_fill_minor: b.minimum_fill_minor,
            booking_fee_minor: b.booking_fee_minor,
            extra_fee_minor: b.extra_fee_minor,
        }
    }
}

fn point(lat: f64, lng: f64, which: &str) -> Result<LatLng, FfiError> {
    LatLng::new(lat, lng).map_err(|e| FfiError::InvalidArgument(format!("{which}: {e}")))
}

/// The estimate, as the server computes it: pickup → `stops` in order → drop-off.
fn estimate(
    config_json: &str,
    pickup: (f64, f64),
    stops: &[DispatchPoint],
    dropoff: (f64, f64),
    router_route: Option<DispatchRoute>,
) -> Result<FareQuote, FfiError> {
    let config: FareConfig = parse_json(config_json, "config_json")?;
    let currency = Currency::new(&config.currency).map_err(|e| FfiError::InvalidArgument(format!("currency: {e}")))?;
    let mut waypoints = Vec::with_capacity(stops.len() + 2);
    waypoints.push(point(pickup.0, pickup.1, "pickup")?);
    for (i, stop) in stops.iter().enumerate() {
        waypoints.push(point(stop.lat, stop.lng, &format!("stops[{i}]"))?);
    }
    waypoints.push(point(dropoff.0, dropoff.1, "dropoff")?);
    let route = match router_route {
        Some(r) => Route { distance_m: r.distance_m, duration_s: r.duration_s, source: RouteSource::Router },
        None => {
            let straight_line = match &config.route {
                Some(r) => StraightLine::new(r.detour_factor, r.city_speed_kmh)
                    .map_err(|e| FfiError::InvalidArgument(e.to_string()))?,
                None => StraightLine::default(),
            };
            straight_line.through(&waypoints)
        }
    };
    let discount = config.coupon.as_ref().map(CouponConfig::discount).transpose()?;
    Ok(fare::estimate(&config.pricing, currency, config.extra_fee_minor, &route, config.surge_bps, discount.as_ref())?)
}

/// Reads the optional route argument.
///
/// # Safety
/// `route` is NULL or points to a readable `DispatchRoute` for the call.
unsafe fn route_arg(route: *const DispatchRoute) -> Option<DispatchRoute> {
    // SAFETY: by this function's contract, a non-NULL `route` is valid for one read;
    // `as_ref` is `None` for NULL. The struct is plain integers, so any bits are valid.
    unsafe { route.as_ref() }.copied()
}

/// Reads the stop array: at most [`MAX_STOPS`], checked before the pointer is touched.
///
/// # Safety
/// `stops` is NULL or points to `count` readable, aligned `DispatchPoint`s for the call.
unsafe fn stops_arg<'a>(stops: *const DispatchPoint, count: usize) -> Result<&'a [DispatchPoint], FfiError> {
    if count > MAX_STOPS {
        return Err(FfiError::InvalidArgument(format!("stop_count: at most {MAX_STOPS} stops, got {count}")));
    }
    if count == 0 {
        return Ok(&[]);
    }
    if stops.is_null() {
        return Err(FfiError::NullArgument("stops"));
    }
    // SAFETY: `stops` is not NULL and, by this function's contract, points to `count`
    // readable, aligned `DispatchPoint`s that stay valid for the call; `count` is at most
    // MAX_STOPS, so the slice's size is tiny. The struct is two f64s: any bits are a
    // valid value (NaN and infinities are refused later, by `point`).
    Ok(unsafe { std::slice::from_raw_parts(stops, count) })
}

/// Estimates a fare and answers JSON in API.md's estimate shape:
///
/// ```json
/// {"fare":{"amount_minor":6704,"currency":"EGP","currency_exponent":2},"distance_m":8230,"duration_s":960,
///  "surge_bps":10000,"discount_minor":0,"route_source":"router",
///  "breakdown":{"base_minor":1500,"distance_minor":3704,"time_minor":1200,"surge_minor":0,
///               "minimum_fill_minor":0,"booking_fee_minor":300,"extra_fee_minor":0,
///               "discount_minor":0}}
/// ```
///
/// - `config_json`: the pricing configuration (see `ffi/README.md`), UTF-8, NUL-terminated.
/// - `pickup_*`, `dropoff_*`: WGS84 degrees; refused unless finite and in range.
/// - `route`: a router's route, or NULL for the straight-line estimate.
/// - `out_json`: receives the answer (free it with `dispatch_string_free`), or NULL on
///   failure.
///
/// Returns `DISPATCH_STATUS_OK`, or `NULL_ARGUMENT`, `INVALID_UTF8`, `INVALID_JSON`,
/// `INVALID_ARGUMENT` (coordinates, a currency that is not ISO 4217's, route settings), `FARE_ERROR` (the fare engine
/// refused the pricing, surge, route or coupon), `PANIC`.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `route` is NULL or points to a
/// `DispatchRoute`; `out_json` is NULL or points to a writable `char *`. All stay valid for
/// the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_fare_estimate(
    config_json: *const c_char,
    pickup_lat: f64,
    pickup_lng: f64,
    dropoff_lat: f64,
    dropoff_lng: f64,
    route: *const DispatchRoute,
    out_json: *mut *mut c_char,
) -> DispatchStatus {
    // SAFETY: this function's contract is `dispatch_fare_estimate_stops`'s with no stops
    // (NULL and a count of 0, which it reads as none).
    unsafe {
        dispatch_fare_estimate_stops(
            config_json,
            pickup_lat,
            pickup_lng,
            std::ptr::null(),
            0,
            dropoff_lat,
            dropoff_lng,
            route,
            out_json,
        )
    }
}

/// Estimates a fare and fills `*out` with the numbers of [`dispatch_fare_estimate`]'s
/// answer. Arguments and statuses are the same; on failure `*out` is left unchanged.
///
/// # Safety
/// As [`dispatch_fare_estimate`], with `out` NULL or pointing to a writable
/// `DispatchFareEstimate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_fare_estimate_values(
    config_json: *const c_char,
    pickup_lat: f64,
    pickup_lng: f64,
    dropoff_lat: f64,
    dropoff_lng: f64,
    route: *const DispatchRoute,
    out: *mut DispatchFareEstimate,
) -> DispatchStatus {
    // SAFETY: this function's contract is `dispatch_fare_estimate_stops_values`'s with no
    // stops (NULL and a count of 0, which it reads as none).
    unsafe {
        dispatch_fare_estimate_stops_values(
            config_json,
            pickup_lat,
            pickup_lng,
            std::ptr::null(),
            0,
            dropoff_lat,
            dropoff_lng,
            route,
            out,
        )
    }
}

/// [`dispatch_fare_estimate`] for a ride with stops: pickup → `stops[0..stop_count]` in
/// order → drop-off. Without a router route the straight line is priced leg by leg and
/// summed, as the server does; `route`, when given, is the router's route through every
/// point.
///
/// - `stops`, `stop_count`: up to 3 points (`DISPATCH_STATUS_INVALID_ARGUMENT` for more);
///   NULL with `stop_count` 0 is no stops; NULL with a count above 0 is
///   `DISPATCH_STATUS_NULL_ARGUMENT`; a stop not finite or out of range is
///   `DISPATCH_STATUS_INVALID_ARGUMENT` naming it (`stops[1]`).
/// - Everything else, and the statuses, as [`dispatch_fare_estimate`].
///
/// # Safety
/// As [`dispatch_fare_estimate`], with `stops` NULL or pointing to `stop_count` readable
/// `DispatchPoint`s for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_fare_estimate_stops(
    config_json: *const c_char,
    pickup_lat: f64,
    pickup_lng: f64,
    stops: *const DispatchPoint,
    stop_count: usize,
    dropoff_lat: f64,
    dropoff_lng: f64,
    route: *const DispatchRoute,
    out_json: *mut *mut c_char,
) -> DispatchStatus {
    call(|| {
        // SAFETY: the pointers are valid for the call by this function's contract.
        let (out, config, route) =
            unsafe { (OutString::new(out_json, "out_json")?, str_arg(config_json, "config_json")?, route_arg(route)) };
        // SAFETY: `stops` points to `stop_count` points (or is NULL) by this function's contract.
        let stops = unsafe { stops_arg(stops, stop_count)? };
        let quote = estimate(config, (pickup_lat, pickup_lng), stops, (dropoff_lat, dropoff_lng), route)?;
        out.set_json(&EstimateJson::from(&quote))
    })
}

/// [`dispatch_fare_estimate_values`] for a ride with stops: the arguments of
/// [`dispatch_fare_estimate_stops`], the answer in `*out` (left unchanged on failure).
///
/// # Safety
/// As [`dispatch_fare_estimate_stops`], with `out` NULL or pointing to a writable
/// `DispatchFareEstimate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_fare_estimate_stops_values(
    config_json: *const c_char,
    pickup_lat: f64,
    pickup_lng: f64,
    stops: *const DispatchPoint,
    stop_count: usize,
    dropoff_lat: f64,
    dropoff_lng: f64,
    route: *const DispatchRoute,
    out: *mut DispatchFareEstimate,
) -> DispatchStatus {
    call(|| {
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        // SAFETY: the pointers are valid for the call by this function's contract.
        let (config, route, stops) =
            unsafe { (str_arg(config_json, "config_json")?, route_arg(route), stops_arg(stops, stop_count)?) };
        let quote = estimate(config, (pickup_lat, pickup_lng), stops, (dropoff_lat, dropoff_lng), route)?;
        // SAFETY: `out` is not NULL and, by this function's contract, writable.
        unsafe { out.write(DispatchFareEstimate::from(&quote)) };
        Ok(())
    })
}
