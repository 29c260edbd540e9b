//! Black-box regression tests of the red team's findings that live in the engine's rules
//! (issue 24): each is named after its finding, drives the real `dispatchd` over
//! loopback, and failed on the code before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use common::*;

/// Books a trip for `rider` paid by `method`.
async fn book(s: &Server, rider: &str, method: &str) -> Value {
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": method});
    s.post("/v1/trips", rider, body).await.expect(201)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Every open alert, page by page (`limit` a page), oldest first.
async fn open_alerts(s: &Server, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = format!("/v1/admin/alerts?status=open&limit={limit}");
    loop {
        let page = s.get(&path, ADMIN).await.expect(200);
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/admin/alerts?status=open&limit={limit}&cursor={c}"),
            None => return all,
        }
    }
}

/// Finding 1 (High): a rider raised SOS again and again on their own trip, each a new
/// open alert; the list was oldest first, capped, with no paging, and 110 SOS from one
/// rider buried another rider's real alert. Now repeats fold into one alert with a count,
/// a person has at most 3 open alerts, and the list pages with a cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sos_flood_hides_real_alerts() {
    let s = Server::start(&[], Some("[limits]\nuser_per_min = 100000\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, flooder) = user(&s, "rider", 1).await;
    let (_, victim) = user(&s, "rider", 2).await;
    let flooded = id(&create_trip(&s, &flooder).await);
    let real = id(&create_trip(&s, &victim).await);
    for i in 0..110 {
        s.post(&format!("/v1/trips/{flooded}/sos"), &flooder, json!({"note": format!("spam {i}")})).await.expect(201);
    }
    let victims = s.post(&format!("/v1/trips/{real}/sos"), &victim, json!({"note": "help"})).await.expect(201);
    let open = open_alerts(&s, 1).await;
    assert_eq!(open.len(), 2, "one alert per person and trip: {open:?}");
    let spam = open.iter().find(|a| a["trip_id"] == flooded.as_str()).unwrap();
    assert_eq!((spam["count"].as_u64(), spam["note"].as_str()), (Some(110), Some("spam 109")));
    assert!(open.iter().any(|a| a["id"] == victims["id"]), "the real alert is listed");
    // At most 3 open alerts per person: a fourth trip's SOS waits for staff.
    let mut trips = vec![flooded.clone()];
    for _ in 0..2 {
        let t = id(&create_trip(&s, &flooder).await);
        s.post(&format!("/v1/trips/{t}/sos"), &flooder, json!({})).await.expect(201);
        trips.push(t);
    }
    s.post(&format!("/v1/trips/{}/cancel", trips[2]), &flooder, json!({"reason": "x"})).await.expect(200);
    let fourth = id(&create_trip(&s, &flooder).await);
    let refused = s.post(&format!("/v1/trips/{fourth}/sos"), &flooder, json!({})).await;
    refused.expect_error(429, "rate_limited");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(open_alerts(&s, 50).await.len(), 4);
}

/// Finding 7 (Low): alerts were never pruned (and copied whole on every change). Now an
/// acknowledged alert leaves the hot state at the next checkpoint, for the history, where
/// the list still finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_never_pruned_move_to_the_history_once_acknowledged() {
    let s = Server::start(&[], Some("[store]\ncheckpoint_every_records = 20\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let trip = id(&create_trip(&s, &rider).await);
    let alert = s.post(&format!("/v1/trips/{trip}/sos"), &rider, json!({"note": "help"})).await.expect(201);
    assert_eq!(s.metric("dispatch_alerts_hot").await, 1.0);
    s.post(&format!("/v1/admin/alerts/{}/ack", id(&alert)), ADMIN, json!({})).await.expect(200);
    // Records go by until a checkpoint has written the alert and the writer archived it.
    let deadline = std::time::Instant::now() + WAIT;
    for n in 100.. {
        if s.metric("dispatch_alerts_hot").await == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the acknowledged alert never left the hot state");
        user(&s, "rider", n).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed = s.get("/v1/admin/alerts?status=acknowledged", ADMIN).await.expect(200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!((items[0]["id"].as_str(), items[0]["note"].as_str()), (alert["id"].as_str(), Some("help")));
    assert!(open_alerts(&s, 10).await.is_empty());
}

/// Finding 5 (Medium): 115 wrong 4-digit pickup codes were refused with no lockout: a
/// driver could start (and bill) a ride without its rider. Now the 5th wrong code locks
/// the start, even for the right code, until staff unlock it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_code_brute_force() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let (_, support) = user(&s, "support", 3).await;
    let trip = create_trip(&s, &rider).await;
    let (t, code) = (id(&trip), trip["pickup_code"].as_str().unwrap().to_owned());
    s.post(&format!("/v1/trips/{t}/accept"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{t}/arrived"), &driver, json!({})).await.expect(200);
    let wrong = if code == "0000" { "0001" } else { "0000" };
    let start = |c: &str| json!({"pickup_code": c});
    for _ in 0..5 {
        s.post(&format!("/v1/trips/{t}/start"), &driver, start(wrong)).await.expect_error(403, "forbidden");
    }
    let locked = s.post(&format!("/v1/trips/{t}/start"), &driver, start(&code)).await;
    locked.expect_error(403, "forbidden");
    assert!(locked.text.contains("locked"), "{}", locked.text);
    assert_eq!(s.get(&format!("/v1/trips/{t}"), &rider).await.expect(200)["pickup_code_locked"], true);
    s.post(&format!("/v1/admin/trips/{t}/unlock"), &driver, json!({})).await.expect_error(403, "forbidden");
    let unlocked = s.post(&format!("/v1/admin/trips/{t}/unlock"), &support, json!({})).await.expect(200);
    assert_eq!(unlocked["pickup_code_locked"], false);
    let started = s.post(&format!("/v1/trips/{t}/start"), &driver, start(&code)).await.expect(200);
    assert_eq!(started["status"], "in_progress");
}

/// Signs a `sim` webhook body as the gateway would.
fn sim_signature(body: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    dispatch_core::payment::sign_timestamped(b"test-webhook-secret-0123456789", t, body.as_bytes())
}

async fn sim_event(s: &Server, event: &str, kind: &str, trip: &str, amount: i64) -> Reply {
    let body = json!({"id": event, "type": kind, "data": {"trip_id": trip, "amount_minor": amount, "currency": "EGP"}})
        .to_string();
    let sig = sim_signature(&body);
    s.call_with(Method::POST, "/v1/webhooks/sim", None, Some(&body), &[("dispatch-signature", &sig)]).await
}

/// A card trip of `rider`, authorised through `sim` (a signed event for its estimate),
/// driven by `driver` to completion: its id and the completion's answer.
async fn card_ride_completed(s: &Server, rider: &str, driver: &str) -> (String, Value) {
    let trip = book(s, rider, "card").await;
    let (t, code) = (id(&trip), trip["pickup_code"].as_str().unwrap().to_owned());
    let estimate = trip["fare"]["estimate_minor"].as_i64().unwrap();
    sim_event(s, "evt_auth", "payment.authorized", &t, estimate).await.expect(200);
    s.post(&format!("/v1/trips/{t}/accept"), driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{t}/arrived"), driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{t}/start"), driver, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{t}/complete"), driver, json!({"distance_m": 4000})).await.expect(200);
    (t, done)
}

/// Finding 6 (Medium): after a failed card payment the rider switched the finished ride
/// to cash with no driver confirmation, and the driver's cash in hand was debited a fare
/// they never received. Now the switch waits for the driver's confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_trip_switched_to_cash_after_the_fact_needs_the_driver() {
    let s = Server::start(
        &["--sim-gateway-down", "--payment-max-attempts", "1", "--payment-backoff-ms", "10"],
        Some("[limits]\nuser_per_min = 100000\n"),
    );
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    // The gateway authorised it (a signed sim event); it is down for the worker's capture.
    let (t, _) = card_ride_completed(&s, &rider, &driver).await;
    // The capture is declined (the gateway's signed word): the card failed after the ride.
    sim_event(&s, "evt_declined", "payment.failed", &t, 0).await.expect(200);
    let failed = s.get(&format!("/v1/trips/{t}"), &rider).await.expect(200);
    assert_eq!(
        (failed["payment"]["status"].as_str(), failed["payment"]["cash_offered"].as_bool()),
        (Some("failed"), Some(true)),
        "{failed}"
    );
    let switched =
        s.post(&format!("/v1/trips/{t}/payment-method"), &rider, json!({"method": "cash"})).await.expect(200);
    assert_eq!(switched["payment"]["method"], "card", "not paid in cash until the driver says so: {switched}");
    assert!(switched["payment"]["cash_claimed_at"].is_string(), "{switched}");
    s.post(&format!("/v1/trips/{t}/cash-received"), &rider, json!({})).await.expect_error(403, "forbidden");
    let confirmed = s.post(&format!("/v1/trips/{t}/cash-received"), &driver, json!({})).await.expect(200);
    assert_eq!(
        (confirmed["payment"]["method"].as_str(), confirmed["payment"]["status"].as_str()),
        (Some("cash"), Some("captured"))
    );
    let ledger = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
    assert_eq!(ledger["balanced"], true);
}

/// Finding 8 (Low): an event signed with Paystack's secret captured a trip paid through
/// `sim`. Now a card trip is tied to its gateway: another gateway's event changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_not_tied_to_the_trips_gateway() {
    use ring::hmac;
    let config = "[gateways.paystack]\nscheme = \"paystack\"\n";
    let s = Server::start_env(
        tempfile::tempdir().unwrap(),
        &["--sim-gateway-down"],
        Some(config),
        &[("DISPATCH_WEBHOOK_SECRET_PAYSTACK", "paystack-secret-0123456789")],
    );
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    // Authorised through sim (its signed event), driven to the end: a capture is due.
    let (t, done) = card_ride_completed(&s, &rider, &driver).await;
    let fare = done["fare"]["final_minor"].as_i64().unwrap();
    // Paystack's signed capture of this trip (Paystack's own, valid secret) moves nothing.
    let body = json!({"event": "charge.success", "data": {"id": 42, "amount": fare, "currency": "EGP",
        "metadata": {"trip_id": t}}})
    .to_string();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, b"paystack-secret-0123456789"), body.as_bytes());
    let sig = dispatch_core::payment::hex_encode(tag.as_ref());
    let r = s
        .call_with(Method::POST, "/v1/webhooks/paystack", None, Some(&body), &[("x-paystack-signature", &sig)])
        .await
        .expect(200);
    assert_eq!(r["applied"], false, "{r}");
    let after = s.get(&format!("/v1/trips/{t}"), &rider).await.expect(200);
    assert_eq!(after["payment"]["status"], "authorized", "the trip is charged through sim: {after}");
    // The sim gateway's own capture does move it.
    sim_event(&s, "evt_capture", "payment.captured", &t, fare).await.expect(200);
    assert_eq!(s.get(&format!("/v1/trips/{t}"), &rider).await.expect(200)["payment"]["status"], "captured");
}
