//! Stops on the way and the estimate's route line, over loopback against the real binary
//! (API.md "The ride, as riders and drivers see it": `stops`, the estimate's `route`):
//! - an estimate with stops is priced on pickup → stops → drop-off, every leg summed, and
//!   costs more than the direct ride; its `route.polyline` decodes to a line through the
//!   points (straight segments when no router is configured);
//! - 4 stops → `400 invalid_request`, param `stops`; a bad stop → `invalid_coordinates`;
//!   nothing is booked;
//! - a booked trip shows its stops in order (`[]` when none) and locks the estimate's fare;
//! - with a router, the estimate sends every waypoint in order in one request and passes
//!   the router's geometry through.

mod common;

use common::*;
use serde_json::{Value, json};

/// Decodes a Google encoded polyline (precision 5), written here again so that the test
/// does not check the server's encoder against itself.
fn decode(line: &str) -> Vec<(f64, f64)> {
    let mut values = Vec::new();
    let (mut value, mut shift) = (0i64, 0);
    for byte in line.bytes() {
        let bits = i64::from(byte) - 63;
        value |= (bits & 0x1f) << shift;
        shift += 5;
        if bits < 0x20 {
            values.push(if value & 1 == 1 { !(value >> 1) } else { value >> 1 });
            (value, shift) = (0, 0);
        }
    }
    assert_eq!(values.len() % 2, 0, "{line}: a latitude without its longitude");
    let (mut lat, mut lng) = (0, 0);
    values
        .chunks(2)
        .map(|d| {
            (lat, lng) = (lat + d[0], lng + d[1]);
            (lat as f64 / 1e5, lng as f64 / 1e5)
        })
        .collect()
}

const DROPOFF: (f64, f64) = (30.06, 31.25);
const STOP_1: (f64, f64) = (30.0512, 31.2401);
const STOP_2: (f64, f64) = (30.0555, 31.2288);

fn place(p: (f64, f64)) -> Value {
    json!({"lat": p.0, "lng": p.1})
}

fn estimate_body(from: (f64, f64), stops: &[(f64, f64)], to: (f64, f64)) -> Value {
    json!({"pickup": place(from), "dropoff": place(to), "category": "economy",
           "stops": stops.iter().map(|&s| place(s)).collect::<Vec<_>>()})
}

/// A server with the Cairo zone and a rider's token (router: `config`).
async fn city(config: Option<&str>) -> (Server, String) {
    let s = Server::start(&[], config);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    (s, rider)
}

async fn estimate(s: &Server, rider: &str, body: Value) -> Value {
    s.post("/v1/fares/estimate", rider, body).await.expect(200)["estimates"][0].clone()
}

fn assert_near(got: (f64, f64), want: (f64, f64)) {
    assert!((got.0 - want.0).abs() <= 0.6e-5 && (got.1 - want.1).abs() <= 0.6e-5, "{got:?} is not {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_with_stops_sums_its_legs_costs_more_and_draws_through_them() {
    let (s, rider) = city(None).await;
    let direct = estimate(&s, &rider, estimate_body(HERE, &[], DROPOFF)).await;
    let with_stops = estimate(&s, &rider, estimate_body(HERE, &[STOP_1, STOP_2], DROPOFF)).await;
    assert_eq!(with_stops["route_source"], "straight_line");
    let amount = |e: &Value| e["fare"]["amount_minor"].as_i64().unwrap();
    assert!(amount(&with_stops) > amount(&direct), "{with_stops} vs {direct}");

    // Distance and duration are the legs' summed: each leg estimated on its own.
    let mut legs = (0, 0);
    for (from, to) in [(HERE, STOP_1), (STOP_1, STOP_2), (STOP_2, DROPOFF)] {
        let leg = estimate(&s, &rider, estimate_body(from, &[], to)).await;
        legs.0 += leg["distance_m"].as_u64().unwrap();
        legs.1 += leg["duration_s"].as_u64().unwrap();
    }
    assert_eq!((with_stops["distance_m"].as_u64().unwrap(), with_stops["duration_s"].as_u64().unwrap()), legs);

    // The line: straight segments through pickup, the stops in order, and the drop-off.
    let line = decode(with_stops["route"]["polyline"].as_str().unwrap());
    assert_eq!(line.len(), 4, "{line:?}");
    for (got, want) in line.into_iter().zip([HERE, STOP_1, STOP_2, DROPOFF]) {
        assert_near(got, want);
    }
    let direct_line = decode(direct["route"]["polyline"].as_str().unwrap());
    assert_eq!(direct_line.len(), 2);
    assert_near(direct_line[0], HERE);
    assert_near(direct_line[1], DROPOFF);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stops_or_a_bad_stop_are_refused_and_nothing_is_booked() {
    let (s, rider) = city(None).await;
    let four = estimate_body(HERE, &[STOP_1, STOP_2, STOP_1, STOP_2], DROPOFF);
    let mut booking = four.clone();
    booking["payment_method"] = json!("cash");
    for (path, body) in [("/v1/fares/estimate", four), ("/v1/trips", booking.clone())] {
        let r = s.post(path, &rider, body).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], "stops", "{path}: {}", r.text);
    }
    // A stop off the Earth is invalid_coordinates, as a pickup would be.
    booking["stops"] = json!([place(STOP_1), {"lat": 91.0, "lng": 31.0}]);
    s.post("/v1/trips", &rider, booking.clone()).await.expect_error(400, "invalid_coordinates");
    let mut bad_estimate = booking.clone();
    bad_estimate.as_object_mut().unwrap().remove("payment_method");
    s.post("/v1/fares/estimate", &rider, bad_estimate).await.expect_error(400, "invalid_coordinates");
    // A stop with a field of its own is refused by the schema.
    booking["stops"] = json!([{"lat": STOP_1.0, "lng": STOP_1.1, "wait_s": 60}]);
    s.post("/v1/trips", &rider, booking).await.expect_error(400, "invalid_request");
    assert_eq!(s.get("/v1/trips", &rider).await.expect(200)["items"], json!([]), "nothing was booked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_trip_shows_its_stops_in_order_and_locks_the_estimate() {
    let (s, rider) = city(None).await;
    let mut body = estimate_body(HERE, &[STOP_2, STOP_1], DROPOFF);
    body["stops"][0]["address"] = json!("Bakery");
    let quoted = estimate(&s, &rider, body.clone()).await;
    body["payment_method"] = json!("cash");
    let trip = s.post("/v1/trips", &rider, body).await.expect(201);
    let stops = json!([{"lat": STOP_2.0, "lng": STOP_2.1, "address": "Bakery"}, {"lat": STOP_1.0, "lng": STOP_1.1}]);
    assert_eq!(trip["stops"], stops);
    assert_eq!(trip["fare"]["estimate_minor"], quoted["fare"]["amount_minor"]);
    let id = trip["id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/trips/{id}"), &rider).await.expect(200)["stops"], stops);
    // Staff see them too; a trip without stops shows [].
    assert_eq!(s.get(&format!("/v1/trips/{id}"), ADMIN).await.expect(200)["stops"], stops);
    let (_, other) = user(&s, "rider", 2).await;
    assert_eq!(create_trip(&s, &other).await["stops"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_line_is_passed_through_and_the_waypoints_go_in_order() {
    /// Google's documented example line: not the straight segments of any request here.
    const LINE: &str = "_p~iF~ps|U_ulLnnqC_mqNvxq`@";
    let (url, mut heads) = fake_router(format!(
        r#"{{"code":"Ok","routes":[{{"distance":12345.4,"duration":1500.2,"geometry":"{LINE}","legs":[]}}]}}"#
    ))
    .await;
    let (s, rider) = city(Some(&format!("[route]\nrouter_url = \"{url}\"\n"))).await;
    let e = estimate(&s, &rider, estimate_body(HERE, &[STOP_1, STOP_2], DROPOFF)).await;
    assert_eq!(
        (e["route_source"].as_str(), e["distance_m"].as_u64(), e["duration_s"].as_u64()),
        (Some("router"), Some(12345), Some(1500))
    );
    assert_eq!(e["route"]["polyline"], LINE);
    let head = heads.recv().await.unwrap();
    let request_line = head.lines().next().unwrap();
    assert_eq!(
        request_line,
        "GET /route/v1/driving/31.235700,30.044400;31.240100,30.051200;31.228800,30.055500;31.250000,30.060000\
         ?overview=full&geometries=polyline HTTP/1.1"
    );
    // The booking is priced on the same route (the router's cached answer).
    let mut body = estimate_body(HERE, &[STOP_1, STOP_2], DROPOFF);
    body["payment_method"] = json!("cash");
    let trip = s.post("/v1/trips", &rider, body).await.expect(201);
    assert_eq!(trip["fare"]["estimate_minor"], e["fare"]["amount_minor"]);
}
