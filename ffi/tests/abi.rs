//! The C ABI driven from Rust through its `extern "C"` functions, as C would call them:
//! the fare estimator against `dispatch_core::fare::estimate` (examples and a property),
//! the boundary rules (NULL, bad UTF-8, bad JSON, last error), and the engine handle.

// Tests may unwrap: a panic is a failing test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use dispatch_core::fare::{self, CouponDiscount, FareError, FareQuote, Pricing};
use dispatch_core::route::{Route, RouteSource, StraightLine};
use dispatch_core::{
    Actor, Category, Command, Currency, LatLng, NewTrip, NewUser, PaymentMethod, Place, Role, TripKind, Vehicle,
};
use dispatch_ffi::*;
use proptest::prelude::*;
use serde_json::{Value, json};

// ---- helpers --------------------------------------------------------------------------

fn last_error() -> Option<String> {
    let ptr = dispatch_last_error_message();
    // SAFETY: non-NULL answers are valid C strings until the next call on this thread;
    // copied at once.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned())
}

/// Takes ownership of a string the library handed out: copies it and frees it.
fn take(ptr: *mut c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL out-string is a valid C string owned by the caller until freed.
    let text = unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned();
    // SAFETY: freed once, by the library's own function.
    assert_eq!(unsafe { dispatch_string_free(ptr) }, DispatchStatus::Ok);
    Some(text)
}

type Point = (f64, f64);

/// `dispatch_fare_estimate` from Rust: the status, the answer and the values struct, both
/// ways checked to agree.
fn ffi_estimate(
    config: &str,
    pickup: Point,
    dropoff: Point,
    route: Option<DispatchRoute>,
) -> Result<Value, (DispatchStatus, String)> {
    let config = CString::new(config).unwrap();
    let route_ptr = route.as_ref().map_or(ptr::null(), |r| r as *const DispatchRoute);
    let mut out = ptr::null_mut();
    // SAFETY: valid C string, route pointer NULL or to a live struct, out pointer writable.
    let status = unsafe {
        dispatch_fare_estimate(config.as_ptr(), pickup.0, pickup.1, dropoff.0, dropoff.1, route_ptr, &mut out)
    };
    let answer = take(out);
    let error = last_error();
    let mut values = std::mem::MaybeUninit::<DispatchFareEstimate>::zeroed();
    // SAFETY: as above; `values` is writable.
    let values_status = unsafe {
        dispatch_fare_estimate_values(
            config.as_ptr(),
            pickup.0,
            pickup.1,
            dropoff.0,
            dropoff.1,
            route_ptr,
            values.as_mut_ptr(),
        )
    };
    assert_eq!(values_status, status, "both entry points agree");
    assert_eq!(last_error(), error, "both entry points fail alike");
    if status != DispatchStatus::Ok {
        assert!(answer.is_none(), "no answer on failure");
        return Err((status, error.expect("a failure has a message")));
    }
    assert_eq!(error, None, "success clears the last error");
    let json: Value = serde_json::from_str(&answer.expect("an answer on success")).unwrap();
    // SAFETY: zeroed is a valid bit pattern for this all-integer struct, and it was filled.
    let values = unsafe { values.assume_init() };
    assert_eq!(json, values_json(&values), "the struct carries the JSON's numbers");
    Ok(json)
}

fn values_json(v: &DispatchFareEstimate) -> Value {
    let currency: String = v.currency.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect();
    assert_eq!(v.currency[3], 0, "NUL-terminated");
    json!({
        "fare": {"amount_minor": v.fare_minor, "currency": currency, "currency_exponent": v.currency_exponent},
        "distance_m": v.distance_m, "duration_s": v.duration_s, "surge_bps": v.surge_bps,
        "discount_minor": v.discount_minor,
        "route_source": match v.route_source { DispatchRouteSource::Router => "router", DispatchRouteSource::StraightLine => "straight_line" },
        "breakdown": {
            "base_minor": v.base_minor, "distance_minor": v.distance_minor, "time_minor": v.time_minor,
            "surge_minor": v.surge_minor, "minimum_fill_minor": v.minimum_fill_minor,
            "booking_fee_minor": v.booking_fee_minor, "extra_fee_minor": v.extra_fee_minor,
            "discount_minor": v.discount_minor,
        }
    })
}

/// API.md's estimate shape for a core quote.
fn quote_json(q: &FareQuote) -> Value {
    let b = &q.breakdown;
    json!({
        "fare": {"amount_minor": q.fare.amount_minor, "currency": q.fare.currency.code(),
                 "currency_exponent": q.fare.currency.exponent()},
        "distance_m": q.distance_m, "duration_s": q.duration_s, "surge_bps": q.surge_bps,
        "discount_minor": q.discount_minor, "route_source": q.route_source,
        "breakdown": {
            "base_minor": b.base_minor, "distance_minor": b.distance_minor, "time_minor": b.time_minor,
            "surge_minor": b.surge_minor, "minimum_fill_minor": b.minimum_fill_minor,
            "booking_fee_minor": b.booking_fee_minor, "extra_fee_minor": b.extra_fee_minor,
            "discount_minor": b.discount_minor,
        }
    })
}

fn economy() -> Pricing {
    dispatch_core::demo::ECONOMY
}

fn config_json(pricing: &Pricing, surge_bps: u32, extra: Value) -> String {
    let mut config = json!({
        "pricing": pricing, "currency": "EGP", "extra_fee_minor": 0, "surge_bps": surge_bps,
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config.to_string()
}

const CAIRO: Point = (30.0444, 31.2357);
const ZAMALEK: Point = (30.0600, 31.2500);

fn egp() -> Currency {
    Currency::new("EGP").unwrap()
}

// ---- the fare estimator ---------------------------------------------------------------

#[test]
fn api_md_example_ride_through_the_abi() {
    // API.md's example: 8230 m, 960 s, no surge → 6704 EGP minor units.
    let route = DispatchRoute { distance_m: 8230, duration_s: 960 };
    let json = ffi_estimate(&config_json(&economy(), 10_000, json!({})), CAIRO, ZAMALEK, Some(route)).unwrap();
    assert_eq!(
        json,
        json!({"fare": {"amount_minor": 6704, "currency": "EGP", "currency_exponent": 2}, "distance_m": 8230, "duration_s": 960,
               "surge_bps": 10000, "discount_minor": 0, "route_source": "router",
               "breakdown": {"base_minor": 1500, "distance_minor": 3704, "time_minor": 1200, "surge_minor": 0,
                             "minimum_fill_minor": 0, "booking_fee_minor": 300, "extra_fee_minor": 0,
                             "discount_minor": 0}})
    );
}

#[test]
fn an_unknown_currency_is_invalid_argument_naming_it() {
    let route = DispatchRoute { distance_m: 8230, duration_s: 960 };
    for code in ["XYZ", "ABC", "XAU"] {
        let config = config_json(&economy(), 10_000, json!({ "currency": code }));
        let (status, message) = ffi_estimate(&config, CAIRO, ZAMALEK, Some(route)).unwrap_err();
        assert_eq!(status, DispatchStatus::InvalidArgument, "{message}");
        assert_eq!(status as i32, 4, "DISPATCH_STATUS_INVALID_ARGUMENT");
        assert_eq!(message, format!("currency: `{code}` is not an ISO 4217 currency in use"));
    }
}

#[test]
fn the_currency_exponent_comes_with_the_estimate_and_amounts_stay_minor_units() {
    // The same pricing in three currencies: the same integers, each with its exponent.
    let route = DispatchRoute { distance_m: 8230, duration_s: 960 };
    for (code, exponent) in [("EGP", 2), ("JPY", 0), ("KWD", 3)] {
        let config = config_json(&economy(), 10_000, json!({ "currency": code }));
        let json = ffi_estimate(&config, CAIRO, ZAMALEK, Some(route)).unwrap();
        assert_eq!(json["fare"], json!({"amount_minor": 6704, "currency": code, "currency_exponent": exponent}));
        assert_eq!(json["breakdown"]["distance_minor"], 3704, "{code}: never scaled by the exponent");
    }
}

#[test]
fn the_currency_exponent_took_padding_so_no_field_moved() {
    use std::mem::{offset_of, size_of};
    assert_eq!(offset_of!(DispatchFareEstimate, currency), 8);
    assert_eq!(offset_of!(DispatchFareEstimate, currency_exponent), 12);
    assert_eq!(offset_of!(DispatchFareEstimate, distance_m), 16, "as before the exponent was added");
    assert_eq!(size_of::<DispatchFareEstimate>(), 104, "as before the exponent was added");
}

#[test]
fn without_a_route_the_straight_line_is_priced_and_marked() {
    let json =
        ffi_estimate(&config_json(&economy(), 10_000, json!({"route": {"detour_factor": 1.5}})), CAIRO, ZAMALEK, None)
            .unwrap();
    let p = |(lat, lng)| LatLng::new(lat, lng).unwrap();
    let route = StraightLine::new(1.5, StraightLine::DEFAULT_CITY_SPEED_KMH).unwrap().between(p(CAIRO), p(ZAMALEK));
    let quote = fare::estimate(&economy(), egp(), 0, &route, 10_000, None).unwrap();
    assert_eq!(json, quote_json(&quote));
    assert_eq!(json["route_source"], "straight_line");
}

#[test]
fn coupons_of_both_kinds_are_applied() {
    let route = DispatchRoute { distance_m: 8230, duration_s: 960 };
    let r = Route { distance_m: 8230, duration_s: 960, source: RouteSource::Router };
    for (coupon, discount) in [
        (
            json!({"percent_bps": 2000, "max_discount_minor": 1000}),
            CouponDiscount::Percent { percent_bps: 2000, max_discount_minor: Some(1000) },
        ),
        (json!({"percent_bps": 500}), CouponDiscount::Percent { percent_bps: 500, max_discount_minor: None }),
        (json!({"amount_minor": 700}), CouponDiscount::Amount { amount_minor: 700 }),
    ] {
        let json =
            ffi_estimate(&config_json(&economy(), 12_000, json!({ "coupon": coupon })), CAIRO, ZAMALEK, Some(route))
                .unwrap();
        let quote = fare::estimate(&economy(), egp(), 0, &r, 12_000, Some(&discount)).unwrap();
        assert!(quote.discount_minor > 0);
        assert_eq!(json, quote_json(&quote), "{coupon}");
    }
}

#[test]
fn refusals_have_a_status_and_a_reason() {
    let ok = config_json(&economy(), 10_000, json!({}));
    let cases: Vec<(String, Point, DispatchStatus, &str)> = vec![
        ("{".into(), CAIRO, DispatchStatus::InvalidJson, "not valid JSON"),
        (config_json(&economy(), 10_000, json!({"tip": 1})), CAIRO, DispatchStatus::InvalidJson, "unknown field `tip`"),
        (
            r#"{"currency":"EGP","extra_fee_minor":0,"surge_bps":10000}"#.into(),
            CAIRO,
            DispatchStatus::InvalidJson,
            "missing field `pricing`",
        ),
        (ok.replace("EGP", "egp"), CAIRO, DispatchStatus::InvalidArgument, "currency"),
        (ok.clone(), (91.0, 0.0), DispatchStatus::InvalidArgument, "pickup"),
        (ok.clone(), (f64::NAN, 0.0), DispatchStatus::InvalidArgument, "pickup"),
        (
            config_json(&economy(), 10_000, json!({"route": {"city_speed_kmh": 0.5}})),
            CAIRO,
            DispatchStatus::InvalidArgument,
            "city_speed_kmh",
        ),
        (config_json(&economy(), 9_999, json!({})), CAIRO, DispatchStatus::FareError, "surge_bps is below 10000"),
        (
            config_json(&Pricing { base_minor: -1, ..economy() }, 10_000, json!({})),
            CAIRO,
            DispatchStatus::FareError,
            "base_minor is negative",
        ),
        (
            config_json(&economy(), 10_000, json!({"coupon": {"percent_bps": 10, "amount_minor": 10}})),
            CAIRO,
            DispatchStatus::FareError,
            "exactly one of",
        ),
        (
            config_json(&economy(), 10_000, json!({"coupon": {"amount_minor": 0}})),
            CAIRO,
            DispatchStatus::FareError,
            "amount_minor must be above zero",
        ),
    ];
    for (config, pickup, status, why) in cases {
        let (got, message) = ffi_estimate(&config, pickup, ZAMALEK, None).unwrap_err();
        assert_eq!(got, status, "{config}: {message}");
        assert!(message.contains(why), "{config}: {message}");
    }
    // A route beyond any ride is the fare engine's refusal, word for word.
    let huge = DispatchRoute { distance_m: fare::MAX_DISTANCE_M + 1, duration_s: 1 };
    let (status, message) = ffi_estimate(&ok, CAIRO, ZAMALEK, Some(huge)).unwrap_err();
    assert_eq!(status, DispatchStatus::FareError);
    assert_eq!(message, FareError::InvalidRoute("distance_m is above 100,000 km").to_string());
}

#[test]
fn null_pointers_and_bad_utf8_are_statuses() {
    let config = CString::new(config_json(&economy(), 10_000, json!({}))).unwrap();
    let mut out = ptr::null_mut();
    // SAFETY: NULL and valid pointers only; the bad string is NUL-terminated.
    unsafe {
        let s = dispatch_fare_estimate(ptr::null(), 0.0, 0.0, 0.0, 0.0, ptr::null(), &mut out);
        assert_eq!(s, DispatchStatus::NullArgument);
        assert_eq!(last_error().as_deref(), Some("argument `config_json` is NULL"));
        let s = dispatch_fare_estimate(config.as_ptr(), 0.0, 0.0, 0.0, 0.0, ptr::null(), ptr::null_mut());
        assert_eq!(s, DispatchStatus::NullArgument);
        assert_eq!(last_error().as_deref(), Some("argument `out_json` is NULL"));
        let s = dispatch_fare_estimate_values(config.as_ptr(), 0.0, 0.0, 0.0, 0.0, ptr::null(), ptr::null_mut());
        assert_eq!(s, DispatchStatus::NullArgument);
        let bad = b"{\"currency\":\"\xff\"}\0";
        let s = dispatch_fare_estimate(bad.as_ptr().cast(), 0.0, 0.0, 0.0, 0.0, ptr::null(), &mut out);
        assert_eq!(s, DispatchStatus::InvalidUtf8);
        assert!(out.is_null());
        assert!(last_error().unwrap().contains("not valid UTF-8"));
        assert_eq!(dispatch_string_free(ptr::null_mut()), DispatchStatus::Ok);
    }
}

// ---- the fare estimator with stops -----------------------------------------------------

/// `dispatch_fare_estimate_stops` (and its `_values` twin, checked to agree) from Rust,
/// with the stop pointer and count given as C would give them.
fn ffi_estimate_stops(
    config: &str,
    pickup: Point,
    stops: *const DispatchPoint,
    stop_count: usize,
    dropoff: Point,
    route: Option<DispatchRoute>,
) -> Result<Value, (DispatchStatus, String)> {
    let config = CString::new(config).unwrap();
    let route_ptr = route.as_ref().map_or(ptr::null(), |r| r as *const DispatchRoute);
    let mut out = ptr::null_mut();
    // SAFETY: valid C string; `stops` is NULL or points to `stop_count` live points (or the
    // count is refused before it is read); route NULL or live; out writable.
    let status = unsafe {
        dispatch_fare_estimate_stops(
            config.as_ptr(),
            pickup.0,
            pickup.1,
            stops,
            stop_count,
            dropoff.0,
            dropoff.1,
            route_ptr,
            &mut out,
        )
    };
    let answer = take(out);
    let error = last_error();
    let mut values = std::mem::MaybeUninit::<DispatchFareEstimate>::zeroed();
    // SAFETY: as above; `values` is writable.
    let values_status = unsafe {
        dispatch_fare_estimate_stops_values(
            config.as_ptr(),
            pickup.0,
            pickup.1,
            stops,
            stop_count,
            dropoff.0,
            dropoff.1,
            route_ptr,
            values.as_mut_ptr(),
        )
    };
    assert_eq!(values_status, status, "both entry points agree");
    assert_eq!(last_error(), error, "both entry points fail alike");
    if status != DispatchStatus::Ok {
        assert!(answer.is_none(), "no answer on failure");
        return Err((status, error.expect("a failure has a message")));
    }
    let json: Value = serde_json::from_str(&answer.expect("an answer on success")).unwrap();
    // SAFETY: zeroed is a valid bit pattern for this all-integer struct, and it was filled.
    assert_eq!(json, values_json(&unsafe { values.assume_init() }));
    Ok(json)
}

const STOPS: [DispatchPoint; 3] = [
    DispatchPoint { lat: 30.0512, lng: 31.2401 },
    DispatchPoint { lat: 30.0555, lng: 31.2288 },
    DispatchPoint { lat: 30.0480, lng: 31.2450 },
];

#[test]
fn with_stops_the_straight_line_is_priced_leg_by_leg_as_the_server_does() {
    let config = config_json(&economy(), 10_000, json!({}));
    let p = |(lat, lng)| LatLng::new(lat, lng).unwrap();
    for n in 0..=STOPS.len() {
        let json = ffi_estimate_stops(&config, CAIRO, STOPS.as_ptr(), n, ZAMALEK, None).unwrap();
        let mut waypoints = vec![p(CAIRO)];
        waypoints.extend(STOPS[..n].iter().map(|s| p((s.lat, s.lng))));
        waypoints.push(p(ZAMALEK));
        let route = StraightLine::default().through(&waypoints);
        let quote = fare::estimate(&economy(), egp(), 0, &route, 10_000, None).unwrap();
        assert_eq!(json, quote_json(&quote), "{n} stops");
    }
    // No stops (NULL, 0) is exactly the estimate without stops.
    let none = ffi_estimate_stops(&config, CAIRO, ptr::null(), 0, ZAMALEK, None).unwrap();
    assert_eq!(none, ffi_estimate(&config, CAIRO, ZAMALEK, None).unwrap());
    let two = ffi_estimate_stops(&config, CAIRO, STOPS.as_ptr(), 2, ZAMALEK, None).unwrap();
    assert!(two["fare"]["amount_minor"].as_i64() > none["fare"]["amount_minor"].as_i64(), "{two} {none}");
    // A router's route is the whole ride's, taken as given.
    let routed = DispatchRoute { distance_m: 8230, duration_s: 960 };
    let json = ffi_estimate_stops(&config, CAIRO, STOPS.as_ptr(), 3, ZAMALEK, Some(routed)).unwrap();
    assert_eq!((json["distance_m"].as_u64(), json["route_source"].as_str()), (Some(8230), Some("router")));
}

#[test]
fn too_many_stops_a_null_array_or_a_bad_stop_are_refused() {
    let config = config_json(&economy(), 10_000, json!({}));
    let four = [STOPS[0], STOPS[1], STOPS[2], STOPS[0]];
    let (status, message) = ffi_estimate_stops(&config, CAIRO, four.as_ptr(), 4, ZAMALEK, None).unwrap_err();
    assert_eq!(status, DispatchStatus::InvalidArgument);
    assert!(message.contains("at most 3 stops"), "{message}");
    // A count far beyond the array is refused before the pointer is read.
    let (status, _) = ffi_estimate_stops(&config, CAIRO, STOPS.as_ptr(), usize::MAX, ZAMALEK, None).unwrap_err();
    assert_eq!(status, DispatchStatus::InvalidArgument);
    let (status, message) = ffi_estimate_stops(&config, CAIRO, ptr::null(), 2, ZAMALEK, None).unwrap_err();
    assert_eq!((status, message.as_str()), (DispatchStatus::NullArgument, "argument `stops` is NULL"));
    for bad in [f64::NAN, f64::INFINITY, 91.0] {
        let stops = [STOPS[0], DispatchPoint { lat: bad, lng: 31.0 }];
        let (status, message) = ffi_estimate_stops(&config, CAIRO, stops.as_ptr(), 2, ZAMALEK, None).unwrap_err();
        assert_eq!(status, DispatchStatus::InvalidArgument, "{bad}");
        assert!(message.contains("stops[1]"), "{bad}: {message}");
    }
}

#[test]
fn the_last_error_is_per_thread() {
    let (status, _) = ffi_estimate("{", CAIRO, ZAMALEK, None).unwrap_err();
    assert_eq!(status, DispatchStatus::InvalidJson);
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, None, "another thread has its own last error");
    assert!(last_error().is_some());
}

// ---- the property: the ABI is the core's estimator ------------------------------------

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 0..=100_000i64, 1 => -10..=-1i64, 1 => (i64::MAX - 10)..=i64::MAX]
}

fn pricing() -> impl Strategy<Value = Pricing> {
    ((amount(), amount(), amount(), amount(), amount()), (0..=3_600u32, prop_oneof![0..=10_000u32, 10_001..=20_000u32]))
        .prop_map(|((base, km, min, minimum, booking), (free_wait_s, commission_bps))| Pricing {
            base_minor: base,
            per_km_minor: km,
            per_min_minor: min,
            minimum_minor: minimum,
            booking_fee_minor: booking,
            cancel_fee_minor: 1000,
            wait_per_min_minor: 50,
            free_wait_s,
            commission_bps,
            free_cancel_s: fare::DEFAULT_FREE_CANCEL_S,
            parcel: None,
        })
}

/// A coupon as JSON, and the discount the core would be given (or the refusal).
fn coupon() -> impl Strategy<Value = Option<(Value, Result<CouponDiscount, FareError>)>> {
    prop_oneof![
        Just(None),
        (0..=10_001u32, proptest::option::of(-5..=5_000i64)).prop_map(|(bps, cap)| {
            let json = match cap {
                Some(cap) => json!({"percent_bps": bps, "max_discount_minor": cap}),
                None => json!({"percent_bps": bps}),
            };
            Some((json, Ok(CouponDiscount::Percent { percent_bps: bps, max_discount_minor: cap })))
        }),
        (-5..=5_000i64)
            .prop_map(|a| Some((json!({"amount_minor": a}), Ok(CouponDiscount::Amount { amount_minor: a })))),
        Just(Some((
            json!({"percent_bps": 100, "amount_minor": 100}),
            Err(FareError::InvalidCoupon("exactly one of percent_bps and amount_minor is required"))
        ))),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    prop_oneof![(29.9..=30.3f64, 31.0..=31.5f64), (-90.0..=90.0f64, -180.0..=180.0f64)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_abi_estimate_is_the_core_estimate(
        p in pricing(),
        extra in amount(),
        surge in prop_oneof![1 => 0..10_000u32, 9 => 10_000..=40_000u32],
        c in coupon(),
        (pickup, dropoff) in (point(), point()),
        // Two decimals: parsed back from JSON exactly, whatever serde_json's float parser.
        (detour, speed) in (100..=1_000u32, 100..=20_000u32),
        router in proptest::option::of((0..=fare::MAX_DISTANCE_M + 10, 0..=fare::MAX_DURATION_S + 10)),
    ) {
        let (detour, speed) = (f64::from(detour) / 100.0, f64::from(speed) / 100.0);
        let mut extra_fields = json!({"route": {"detour_factor": detour, "city_speed_kmh": speed}});
        if let Some((coupon_json, _)) = &c {
            extra_fields["coupon"] = coupon_json.clone();
        }
        let mut config: Value = serde_json::from_str(&config_json(&p, surge, extra_fields)).unwrap();
        config["extra_fee_minor"] = json!(extra);

        let route = match router {
            Some((distance_m, duration_s)) => Route { distance_m, duration_s, source: RouteSource::Router },
            None => {
                let pt = |(lat, lng)| LatLng::new(lat, lng).unwrap();
                StraightLine::new(detour, speed).unwrap().between(pt(pickup), pt(dropoff))
            }
        };
        let expected = match &c {
            None => fare::estimate(&p, egp(), extra, &route, surge, None),
            Some((_, Ok(discount))) => fare::estimate(&p, egp(), extra, &route, surge, Some(discount)),
            Some((_, Err(refusal))) => Err(refusal.clone()),
        };
        let got = ffi_estimate(
            &config.to_string(),
            pickup,
            dropoff,
            router.map(|(distance_m, duration_s)| DispatchRoute { distance_m, duration_s }),
        );
        match expected {
            Ok(quote) => prop_assert_eq!(got, Ok(quote_json(&quote))),
            Err(error) => prop_assert_eq!(got, Err((DispatchStatus::FareError, error.to_string()))),
        }
    }
}

// ---- the engine handle ----------------------------------------------------------------

struct Handle(*mut DispatchEngine);

impl Handle {
    fn open(data_dir: Option<&std::path::Path>, config: Option<&str>) -> Result<Handle, (DispatchStatus, String)> {
        let dir = data_dir.map(|d| CString::new(d.to_str().unwrap()).unwrap());
        let config = config.map(|c| CString::new(c).unwrap());
        let mut handle = ptr::null_mut();
        // SAFETY: NULL or valid C strings; `handle` is writable.
        let status = unsafe {
            dispatch_engine_open(
                dir.as_ref().map_or(ptr::null(), |d| d.as_ptr()),
                config.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                &mut handle,
            )
        };
        if status == DispatchStatus::Ok {
            assert!(!handle.is_null());
            Ok(Handle(handle))
        } else {
            assert!(handle.is_null());
            Err((status, last_error().unwrap()))
        }
    }

    fn submit(&self, actor: &Actor, command: &Command) -> (DispatchStatus, Value) {
        self.submit_raw(&serde_json::to_string(actor).unwrap(), &serde_json::to_string(command).unwrap())
    }

    fn submit_raw(&self, actor: &str, command: &str) -> (DispatchStatus, Value) {
        let (actor, command) = (CString::new(actor).unwrap(), CString::new(command).unwrap());
        let mut out = ptr::null_mut();
        // SAFETY: live handle, valid C strings, writable out.
        let status = unsafe { dispatch_engine_submit(self.0, actor.as_ptr(), command.as_ptr(), &mut out) };
        (status, take(out).map_or(Value::Null, |s| serde_json::from_str(&s).unwrap()))
    }

    fn query(&self, query: Value) -> (DispatchStatus, Value) {
        let query = CString::new(query.to_string()).unwrap();
        let mut out = ptr::null_mut();
        // SAFETY: live handle, valid C string, writable out.
        let status = unsafe { dispatch_engine_query(self.0, query.as_ptr(), &mut out) };
        (status, take(out).map_or(Value::Null, |s| serde_json::from_str(&s).unwrap()))
    }

    fn close(self) -> DispatchStatus {
        let handle = self.0;
        std::mem::forget(self);
        // SAFETY: the handle is live and closed once (Drop is skipped).
        unsafe { dispatch_engine_close(handle) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed once.
        unsafe { dispatch_engine_close(self.0) };
    }
}

fn new_user(role: Role, name: &str, phone: &str) -> Command {
    let vehicle = (role == Role::Driver).then(|| Vehicle::new(Category::new("economy").unwrap(), "ABC 123"));
    Command::CreateUser(NewUser { id: None, role, name: name.into(), phone: phone.into(), vehicle })
}

fn id_of(answer: &Value, kind: &str) -> String {
    answer[kind]["id"].as_str().unwrap_or_else(|| panic!("no {kind} id in {answer}")).to_owned()
}

#[test]
fn a_trip_through_the_engine_handle() {
    let engine = Handle::open(None, None).unwrap();
    // The zone that prices economy rides, created through the ABI like every command.
    let zone = Command::CreateZone { id: None, zone: Box::new(dispatch_core::demo::cairo().unwrap()) };
    let (status, created_zone) = engine.submit(&Actor::Admin, &zone);
    assert_eq!(status, DispatchStatus::Ok, "{created_zone}");
    assert_eq!(created_zone["outcome"], "zone");
    let (status, driver) = engine.submit(&Actor::Admin, &new_user(Role::Driver, "Omar", "+201000000001"));
    assert_eq!(status, DispatchStatus::Ok, "{driver}");
    assert_eq!(driver["outcome"], "user");
    let driver_id = id_of(&driver, "user");
    let (_, rider) = engine.submit(&Actor::Admin, &new_user(Role::Rider, "Amal", "+201000000002"));
    let rider_id = id_of(&rider, "user");

    let driver_actor: Actor = serde_json::from_value(json!({ "User": driver_id })).unwrap();
    let rider_actor: Actor = serde_json::from_value(json!({ "User": rider_id })).unwrap();
    let here = LatLng::new(CAIRO.0, CAIRO.1).unwrap();
    let (status, online) =
        engine.submit(&driver_actor, &Command::SetDriverStatus { online: true, location: Some(here) });
    assert_eq!(status, DispatchStatus::Ok, "{online}");
    assert_eq!(online["outcome"], "driver");

    let trip = Command::CreateTrip(NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(here),
        dropoff: Place::at(LatLng::new(ZAMALEK.0, ZAMALEK.1).unwrap()),
        stops: Vec::new(),
        category: Category::new("economy").unwrap(),
        parcel: None,
        payment_method: PaymentMethod::Cash,
        route: dispatch_core::route::StraightLine::default().between(here, LatLng::new(ZAMALEK.0, ZAMALEK.1).unwrap()),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    });
    let (status, created) = engine.submit(&rider_actor, &trip);
    assert_eq!(status, DispatchStatus::Ok, "{created}");
    let trip_id = id_of(&created, "trip");

    let (status, offers) = engine.query(json!({ "offers_for": driver_id }));
    assert_eq!(status, DispatchStatus::Ok);
    assert_eq!(offers.as_array().map(Vec::len), Some(1), "{offers}");
    assert_eq!(offers[0]["id"], trip_id.as_str());

    let accept = format!(r#"{{"AcceptTrip":{{"trip_id":"{trip_id}"}}}}"#);
    let (status, accepted) = engine.submit_raw(&serde_json::to_string(&driver_actor).unwrap(), &accept);
    assert_eq!(status, DispatchStatus::Ok, "{accepted}");
    assert_eq!(accepted["trip"]["status"], "accepted");
    // The second accept is the engine's refusal, with the API's code.
    let (status, again) = engine.submit_raw(&serde_json::to_string(&driver_actor).unwrap(), &accept);
    assert_eq!(status, DispatchStatus::EngineError);
    assert!(again["error"]["code"].is_string(), "{again}");
    assert_eq!(last_error().as_deref(), again["error"]["message"].as_str());

    let (status, read) = engine.query(json!({ "trip": trip_id }));
    assert_eq!(status, DispatchStatus::Ok);
    assert_eq!(read["status"], "accepted");
    let (status, user) = engine.query(json!({ "user": rider_id }));
    assert_eq!((status, user["name"].as_str()), (DispatchStatus::Ok, Some("Amal")));
    let (status, driver) = engine.query(json!({ "driver": driver_id }));
    assert_eq!(status, DispatchStatus::Ok, "{driver}");
    assert_eq!(engine.close(), DispatchStatus::Ok);
}

/// A C caller cannot send the writer's own commands: an `Archive` would drop a live trip,
/// a `Restored` would put a trip the caller built into the state. Both decode (they are
/// commands), and both are refused with the API's `invalid_request`; the trip is as it was.
#[test]
fn a_caller_cannot_archive_a_live_trip_or_insert_a_trip_it_built() {
    let engine = Handle::open(None, None).unwrap();
    let zone = Command::CreateZone { id: None, zone: Box::new(dispatch_core::demo::cairo().unwrap()) };
    assert_eq!(engine.submit(&Actor::Admin, &zone).0, DispatchStatus::Ok);
    let (_, rider) = engine.submit(&Actor::Admin, &new_user(Role::Rider, "Amal", "+201000000002"));
    let rider_actor: Actor = serde_json::from_value(json!({ "User": id_of(&rider, "user") })).unwrap();
    let here = LatLng::new(CAIRO.0, CAIRO.1).unwrap();
    let there = LatLng::new(ZAMALEK.0, ZAMALEK.1).unwrap();
    let trip = Command::CreateTrip(NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(here),
        dropoff: Place::at(there),
        stops: Vec::new(),
        category: Category::new("economy").unwrap(),
        parcel: None,
        payment_method: PaymentMethod::Cash,
        route: dispatch_core::route::StraightLine::default().between(here, there),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    });
    let (status, created) = engine.submit(&rider_actor, &trip);
    assert_eq!(status, DispatchStatus::Ok, "{created}");
    let trip_id = id_of(&created, "trip");
    let mut forged = created["trip"].clone();
    forged["status"] = json!("cancelled");
    let revision = created["trip"]["revision"].clone();
    let restored = json!({ "Restored": { "trip": forged, "command": { "RateTrip": { "trip_id": trip_id, "stars": 5, "comment": null } } } });
    let archive = json!({ "Archive": { "trips": [[trip_id, revision]], "transfer_ids": [] } });
    for command in [restored, archive] {
        let (status, answer) = engine.submit_raw(r#""Admin""#, &command.to_string());
        assert_eq!(status, DispatchStatus::EngineError, "{command}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
    }
    let (status, read) = engine.query(json!({ "trip": trip_id }));
    assert_eq!((status, read["status"].as_str()), (DispatchStatus::Ok, Some("searching")));
    assert_eq!(engine.close(), DispatchStatus::Ok);
}

#[test]
fn engine_refusals_and_bad_input() {
    let engine = Handle::open(None, None).unwrap();
    let (status, answer) = engine.query(json!({ "user": "usr_0000000000000001" }));
    assert_eq!(status, DispatchStatus::EngineError);
    assert_eq!(answer["error"]["code"], "not_found");
    let (status, answer) = engine.submit_raw(r#"{"User":"usr_0000000000000001"}"#, r#""Tick""#);
    assert_eq!(status, DispatchStatus::EngineError, "{answer}");
    assert!(answer["error"]["code"].is_string());

    for (actor, command) in [("nobody", r#""Tick""#), (r#""Admin""#, r#"{"Teleport":{}}"#)] {
        let (status, answer) = engine.submit_raw(actor, command);
        assert_eq!((status, answer), (DispatchStatus::InvalidJson, Value::Null));
    }
    let (status, answer) = engine.query(json!({ "zone": "zon_0000000000000001" }));
    assert_eq!((status, answer), (DispatchStatus::InvalidJson, Value::Null));

    let mut out = ptr::null_mut();
    // SAFETY: NULL handle (refused), valid strings, writable out.
    let status = unsafe { dispatch_engine_submit(ptr::null(), c"\"Admin\"".as_ptr(), c"\"Tick\"".as_ptr(), &mut out) };
    assert_eq!(status, DispatchStatus::NullArgument);
    // SAFETY: NULL is a no-op.
    assert_eq!(unsafe { dispatch_engine_close(ptr::null_mut()) }, DispatchStatus::Ok);
    // SAFETY: NULL out-handle is refused before anything is written.
    let status = unsafe { dispatch_engine_open(ptr::null(), ptr::null(), ptr::null_mut()) };
    assert_eq!(status, DispatchStatus::NullArgument);

    assert_eq!(Handle::open(None, Some("{\"rule\":{}}")).err().map(|e| e.0), Some(DispatchStatus::InvalidJson));
    let mut rules = serde_json::to_value(dispatch_core::DispatchRules::default()).unwrap();
    rules["offers_per_round"] = json!(0);
    let refused = Handle::open(None, Some(&json!({ "rules": rules }).to_string())).err().unwrap();
    assert_eq!(refused.0, DispatchStatus::InvalidArgument);
    assert!(refused.1.contains("offers_per_round"), "{}", refused.1);
    rules["offers_per_round"] = json!(2);
    assert!(Handle::open(None, Some(&json!({ "rules": rules }).to_string())).is_ok());
}

#[test]
fn an_engine_on_disk_keeps_its_state_across_close() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Handle::open(Some(dir.path()), None).unwrap();
    let (status, user) = engine.submit(&Actor::Admin, &new_user(Role::Rider, "Amal", "+201000000002"));
    assert_eq!(status, DispatchStatus::Ok);
    let user_id = id_of(&user, "user");
    // A second engine on the same directory is refused while the first holds it.
    let (status, message) = Handle::open(Some(dir.path()), None).err().unwrap();
    assert_eq!(status, DispatchStatus::EngineError, "{message}");
    assert_eq!(engine.close(), DispatchStatus::Ok);

    let reopened = Handle::open(Some(dir.path()), None).unwrap();
    let (status, read) = reopened.query(json!({ "user": user_id }));
    assert_eq!((status, read["name"].as_str()), (DispatchStatus::Ok, Some("Amal")));
    assert_eq!(reopened.close(), DispatchStatus::Ok);
}
