//! Black-box tests of rides booked ahead and of a search with no driver near (API.md "The
//! ride, as riders and drivers see it"): `scheduled_at` 15 minutes to 7 days ahead, the
//! `scheduled` status, the free cancel, the dispatch at `scheduled_at − schedule_lead_s`
//! across a restart of `dispatchd`, `no_drivers_nearby` over a real WebSocket, the trip's
//! `dispatch` object and the estimate's `pickup_eta_s` and `nearby_drivers`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::*;

/// Now plus `secs`, in RFC 3339 (UTC, milliseconds).
fn ahead(secs: i64) -> (i64, String) {
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let at_ms = now_ms + secs * 1000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).unwrap();
    (at_ms, t.format(&time::format_description::well_known::Rfc3339).unwrap())
}

fn ms_of(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

fn ride(extra: Value) -> Value {
    let mut body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

async fn trip(s: &Server, id: &str, token: &str) -> Value {
    s.get(&format!("/v1/trips/{id}"), token).await.expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_are_booked_15_minutes_to_7_days_ahead_and_cancel_free_until_dispatch() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    // A driver nearby is offered nothing before the dispatch.
    let (_, driver) = online_driver(&s, 2, HERE).await;
    for (secs, why) in [(10 * 60, "10 minutes"), (8 * 24 * 3600, "8 days"), (-3600, "the past")] {
        let r = s.post("/v1/trips", &rider, ride(json!({"scheduled_at": ahead(secs).1}))).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], "scheduled_at", "{why}: {}", r.text);
    }
    for bad in
        [json!({"scheduled_at": "tomorrow"}), json!({"scheduled_at": ahead(3600).1, "bid": {"amount_minor": 5000}})]
    {
        let r = s.post("/v1/trips", &rider, ride(bad.clone())).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], "scheduled_at", "{bad}: {}", r.text);
    }
    let (at_ms, at) = ahead(3600);
    let t = s.post("/v1/trips", &rider, ride(json!({"scheduled_at": at}))).await.expect(201);
    assert_eq!(t["status"], "scheduled");
    assert_eq!(ms_of(t["scheduled_at"].as_str().unwrap()), at_ms);
    assert_eq!(t["dispatch"], json!({"round": 0, "drivers_offered": 0, "nearby_drivers": null}));
    assert!(t["fare"]["estimate_minor"].as_i64().unwrap() > 0, "the estimate is locked at booking");
    let offers = s.get("/v1/driver/offers", &driver).await.expect(200);
    assert_eq!(offers["items"], json!([]));
    // Rides booked ahead do not stop the rider from riding now (3 open trips at most).
    for _ in 0..2 {
        s.post("/v1/trips", &rider, ride(json!({"scheduled_at": ahead(7200).1}))).await.expect(201);
    }
    let now = create_trip(&s, &rider).await;
    assert_eq!(now["status"], "searching");
    assert_eq!(now["scheduled_at"], Value::Null);
    // The rider cancels the ride booked ahead: no fee.
    let id = t["id"].as_str().unwrap();
    let c = s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({"reason_code": "changed_mind"})).await.expect(200);
    assert_eq!((&c["status"], &c["fare"]["cancel_fee_minor"]), (&json!("cancelled"), &Value::Null));
    assert_eq!(c["cancellation"]["by"], "rider");
    assert_eq!(trip(&s, id, &rider).await["status"], "cancelled");
    // The listing filters on the new status.
    let scheduled = s.get("/v1/trips?status=scheduled", &rider).await.expect(200);
    assert_eq!(scheduled["items"].as_array().unwrap().len(), 2);
}

/// With `schedule_lead_s = 899`, a ride booked 15 minutes ahead (and a few seconds) is
/// dispatched seconds later: the real clock is enough to see the transition, across a
/// restart of the server in between (the deadline is state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ride_booked_ahead_is_dispatched_at_the_lead_time_across_a_restart() {
    let config = "[dispatch]\nschedule_lead_s = 899\n";
    let s = Server::start(&[], Some(config));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let (at_ms, at) = ahead(900 + 8);
    let dispatch_at_ms = at_ms - 899_000;
    let t = s.post("/v1/trips", &rider, ride(json!({"scheduled_at": at}))).await.expect(201);
    assert_eq!(t["status"], "scheduled");
    let id = t["id"].as_str().unwrap().to_owned();
    // Restart on the same data directory.
    s.sigterm();
    let mut s = s;
    assert!(s.wait_exit().success());
    let data = s.data_dir();
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(&data, dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], Some(config));
    // The driver's position is refreshed (it must be fresh to be offered a trip).
    s2.post("/v1/driver/location", &driver, json!({"lat": HERE.0, "lng": HERE.1})).await.expect(204);
    let first = trip(&s2, &id, &rider).await;
    let before = ahead(0).0 < dispatch_at_ms - 500;
    if before {
        assert_eq!(first["status"], "scheduled", "not dispatched before its time");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let searching = loop {
        let t = trip(&s2, &id, &rider).await;
        if t["status"] != "scheduled" {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "never dispatched: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ahead(0).0 >= dispatch_at_ms, "dispatched before scheduled_at - schedule_lead_s");
    assert_eq!(searching["status"], "searching", "{searching}");
    assert_eq!(searching["dispatch"], json!({"round": 1, "drivers_offered": 1, "nearby_drivers": 1}));
    let offers = s2.get("/v1/driver/offers", &driver).await.expect(200);
    assert_eq!(offers["items"][0]["trip_id"], json!(id), "{offers}");
    drop(s);
}

/// The frames `ws` receives until one of type `until` (included).
async fn frames_until(ws: &mut Ws, until: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    let done = v["type"] == until;
                    seen.push(v);
                    if done {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended while waiting for {until}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {until} frame in {seen:?}"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_city_tells_the_rider_at_once_and_the_estimate_shows_who_is_near() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let estimate = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25}});
    let e = s.post("/v1/fares/estimate", &rider, estimate.clone()).await.expect(200);
    assert_eq!((&e["estimates"][0]["nearby_drivers"], &e["estimates"][0]["pickup_eta_s"]), (&json!(0), &Value::Null));
    // Nobody near: the trip exists, searches, and its rider is told over the socket at once.
    let mut ws = s.ws(&rider).await;
    let t = create_trip(&s, &rider).await;
    assert_eq!(t["status"], "searching");
    assert_eq!(t["dispatch"], json!({"round": 0, "drivers_offered": 0, "nearby_drivers": 0}));
    let frame = next_of(&mut ws, "no_drivers_nearby").await;
    assert_eq!(frame, json!({"type": "no_drivers_nearby", "trip_id": t["id"]}));
    let id = t["id"].as_str().unwrap();
    assert_eq!(trip(&s, id, &rider).await["dispatch"]["nearby_drivers"], 0);
    // A driver 1 km north comes online: the estimate shows one, and how long it takes to come.
    let north = (HERE.0 + 1.0 / 111.195, HERE.1);
    online_driver(&s, 2, north).await;
    let e = s.post("/v1/fares/estimate", &rider, estimate).await.expect(200);
    assert_eq!(e["estimates"][0]["nearby_drivers"], 1);
    // 1 km × the detour factor 1.3 at 30 km/h: 156 s.
    let eta = e["estimates"][0]["pickup_eta_s"].as_u64().unwrap();
    assert!((150..=162).contains(&eta), "{eta}");
    // Another rider books with that driver near: no such frame, and the count is on the trip.
    let (_, rider2) = user(&s, "rider", 3).await;
    let mut ws2 = s.ws(&rider2).await;
    let t2 = create_trip(&s, &rider2).await;
    assert_eq!(t2["dispatch"], json!({"round": 1, "drivers_offered": 1, "nearby_drivers": 1}));
    let frames = frames_until(&mut ws2, "trip_updated").await;
    assert!(frames.iter().all(|f| f["type"] != "no_drivers_nearby"), "{frames:?}");
}
