//! Black-box tests of `dispatchd serve`: the real binary on `127.0.0.1:0 --dev` with a
//! temporary data dir and fixed secrets, driven over real sockets by an HTTP client
//! (hyper) and a WebSocket client (tokio-tungstenite). Timeouts are generous: nothing
//! here depends on the machine's speed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_trip_over_http_and_websocket() {
    // Positions are not coalesced here, so the one sent below is relayed at once.
    let s = Server::start(&[], Some("[limits]\nlocation_min_interval_ms = 0\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (driver_user, driver) = online_driver(&s, 2, HERE).await;
    let mut dws = s.ws(&driver).await;
    let mut rws = s.ws(&rider).await;

    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    assert_eq!(trip["status"], "searching");
    let code = trip["pickup_code"].as_str().unwrap().to_owned();
    assert_eq!(trip["fare"]["currency"], "EGP");

    let offer = next_of(&mut dws, "trip_offer").await;
    assert_eq!(offer["offer"]["trip_id"], id.as_str());
    assert!(offer["offer"]["expires_at"].as_str().unwrap().ends_with('Z'));
    let offers = s.get("/v1/driver/offers", &driver).await.expect(200);
    assert_eq!(offers["items"][0]["trip_id"], id.as_str());

    let accepted = s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["driver_id"], driver_user["id"]);
    assert!(accepted.get("pickup_code").is_none(), "the driver never sees the pickup code");
    let update = loop {
        let u = next_of(&mut rws, "trip_updated").await;
        if u["trip"]["status"] != "searching" {
            break u;
        }
    };
    assert_eq!(
        (update["trip"]["status"].as_str(), update["trip"]["pickup_code"].as_str()),
        (Some("accepted"), Some(code.as_str()))
    );

    // The driver's position reaches the rider of the accepted trip.
    // (a metre away: no implausible jump, whatever the machine's speed.)
    send(&mut dws, json!({"type": "location", "lat": 30.04441, "lng": HERE.1, "heading_deg": 90})).await;
    let moved = next_of(&mut rws, "driver_location").await;
    assert_eq!(moved["trip_id"], id.as_str());
    assert_eq!(moved["lat"], 30.04441);

    s.call(Method::POST, &format!("/v1/trips/{id}/arrived"), Some(&driver), None).await.expect(200);
    let wrong = if code == "0000" { "1111" } else { "0000" };
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": wrong}))
        .await
        .expect_error(403, "forbidden");
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({"distance_m": 8230})).await.expect(200);
    assert_eq!(done["status"], "completed");
    assert!(done["fare"]["final_minor"].as_i64().unwrap() > 0);

    let mine = s.get("/v1/trips", &rider).await.expect(200);
    assert_eq!(mine["items"][0]["id"], id.as_str());
    let seen = s.get(&format!("/v1/trips/{id}"), &rider).await.expect(200);
    assert_eq!(seen["pickup_code"], code.as_str());
    let stats = s.get("/v1/admin/stats", ADMIN).await.expect(200);
    assert_eq!(stats["trips"]["completed"], 1);
    let metrics = s.get("/metrics", ADMIN).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text.contains("dispatch_accepts_won_total 1"), "{}", metrics.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_the_contract() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, other) = user(&s, "rider", 2).await;
    let (_, driver) = online_driver(&s, 3, HERE).await;

    s.call(Method::GET, "/v1/trips", None, None).await.expect_error(401, "unauthorized");
    s.get("/v1/trips", "dt1.00.00").await.expect_error(401, "unauthorized");
    s.get("/v1/admin/trips", &rider).await.expect_error(403, "forbidden");
    s.post("/v1/driver/status", &rider, json!({"status": "online"})).await.expect_error(403, "forbidden");
    s.get("/v1/trips/trp_0123456789abcdef", &rider).await.expect_error(404, "not_found");
    s.get("/v1/nope", &rider).await.expect_error(404, "not_found");

    let bad_json = s.call(Method::POST, "/v1/trips", Some(&rider), Some("{\"pickup\":")).await;
    bad_json.expect_error(400, "invalid_json");
    let mut body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});
    body["tip"] = json!(5);
    s.post("/v1/trips", &rider, body).await.expect_error(400, "invalid_request");
    s.post("/v1/driver/location", &driver, json!({"lat": "north", "lng": 31.2}))
        .await
        .expect_error(400, "invalid_request");
    s.post("/v1/driver/location", &driver, json!({"lat": 91.0, "lng": 31.2}))
        .await
        .expect_error(400, "invalid_coordinates");
    s.post("/v1/driver/location", &driver, json!({"lat": HERE.0, "lng": HERE.1})).await.expect(204);
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    s.call(Method::POST, "/v1/admin/users", Some(ADMIN), Some(&big)).await.expect_error(413, "payload_too_large");
    let far = json!({"pickup": {"lat": 10.0, "lng": 10.0}, "dropoff": {"lat": 10.01, "lng": 10.01},
        "category": "economy", "payment_method": "cash"});
    s.post("/v1/trips", &rider, far).await.expect_error(422, "outside_service_area");

    // Someone else's trip does not exist for them; the driver cannot re-accept.
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();
    s.get(&format!("/v1/trips/{id}"), &other).await.expect_error(404, "not_found");
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect_error(409, "invalid_transition");
    s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({"reason": "changed my mind"})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({})).await.expect_error(409, "invalid_transition");
    // Open-trip limit (3 by default).
    for _ in 0..3 {
        create_trip(&s, &other).await;
    }
    let fourth = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});
    s.post("/v1/trips", &other, fourth).await.expect_error(409, "too_many_open_trips");

    // The console: compiled in, with its security headers.
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        let r = s.call(Method::GET, path, None, None).await;
        assert_eq!(r.status, 200);
        assert!(r.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
    }

    // The caller's request id is echoed.
    let r = s.call_with(Method::GET, "/healthz", None, None, &[("x-request-id", "abc-123")]).await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_reuse() {
    let s = Server::start(&[], None);
    let body = json!({"role": "rider", "name": "Amal", "phone": "+201001234567"}).to_string();
    let key = [("idempotency-key", "create-amal-1")];
    let first = s.call_with(Method::POST, "/v1/admin/users", Some(ADMIN), Some(&body), &key).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = s.call_with(Method::POST, "/v1/admin/users", Some(ADMIN), Some(&body), &key).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json["user"]["id"], first.json["user"]["id"]);
    let other = json!({"role": "rider", "name": "Other", "phone": "+201001234568"}).to_string();
    s.call_with(Method::POST, "/v1/admin/users", Some(ADMIN), Some(&other), &key)
        .await
        .expect_error(422, "idempotency_key_reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let s = Server::start(&[], Some("[limits]\nip_per_min = 3\nuser_per_min = 4\ntrip_create_per_min = 1\n"));
    for _ in 0..5 {
        s.call(Method::GET, "/healthz", None, None).await.expect(200); // never counted
    }
    for _ in 0..3 {
        assert_eq!(s.call(Method::GET, "/v1/zones", None, None).await.status, 401);
    }
    let r = s.call(Method::GET, "/v1/zones", None, None).await;
    r.expect_error(429, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // A user's own bucket; the bootstrap admin has none.
    let (_, rider) = user(&s, "rider", 1).await;
    for _ in 0..4 {
        s.get("/v1/zones", &rider).await.expect(200);
    }
    s.get("/v1/zones", &rider).await.expect_error(429, "rate_limited");
    for _ in 0..10 {
        s.get("/v1/zones", ADMIN).await.expect(200);
    }
    // Trip creation has its own per-rider bucket.
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, booker) = user(&s, "rider", 2).await;
    create_trip(&s, &booker).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});
    s.post("/v1/trips", &booker, body).await.expect_error(429, "rate_limited");
    let metrics = s.get("/metrics", ADMIN).await;
    assert!(metrics.text.contains("dispatch_rate_limited_total{class=\"ip\"}"), "{}", metrics.text);
    assert!(metrics.text.contains("dispatch_rate_limited_total{class=\"trip_create\"} 1"), "{}", metrics.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_auth_frames_and_subscriptions() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    // No token, a bad token: refused before the upgrade.
    for url in [format!("ws://{}/v1/ws", s.addr), format!("ws://{}/v1/ws?token=nope", s.addr)] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
            other => panic!("expected a 401, got {other:?}"),
        }
    }
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, stranger) = user(&s, "rider", 2).await;
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();

    // `?token=` works (browsers); a bad frame gets an error and the socket stays open.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/ws?token={stranger}", s.addr)).await.unwrap();
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_of(&mut ws, "error").await["code"], "invalid_json");
    send(&mut ws, json!({"type": "location", "lat": 30.0, "lng": 31.0})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "forbidden", "riders send no locations");
    send(&mut ws, json!({"type": "subscribe", "trip_id": id})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "forbidden");
    send(&mut ws, json!({"type": "ping"})).await;
    next_of(&mut ws, "pong").await;

    let mut own = s.ws(&rider).await;
    send(&mut own, json!({"type": "subscribe", "trip_id": id})).await;
    assert_eq!(next_of(&mut own, "subscribed").await["trip_id"], id);
    let mut staff = s.ws(ADMIN).await;
    send(&mut staff, json!({"type": "subscribe", "trip_id": id})).await;
    next_of(&mut staff, "subscribed").await;

    // A driver's bad coordinates are an error frame, not a disconnect.
    let (_, driver) = online_driver(&s, 3, HERE).await;
    let mut dws = s.ws(&driver).await;
    send(&mut dws, json!({"type": "location", "lat": 200.0, "lng": 31.0})).await;
    assert_eq!(next_of(&mut dws, "error").await["code"], "invalid_coordinates");
    send(&mut dws, json!({"type": "ping"})).await;
    next_of(&mut dws, "pong").await;

    // The ops channel: staff only, a snapshot of the box once a second.
    send(&mut ws, json!({"type": "subscribe", "channel": "ops", "bbox": [31.0, 29.9, 31.5, 30.3]})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "forbidden");
    send(&mut staff, json!({"type": "subscribe", "channel": "ops", "bbox": [31.5, 29.9, 31.0, 30.3]})).await;
    assert_eq!(next_of(&mut staff, "error").await["code"], "invalid_coordinates");
    send(&mut staff, json!({"type": "subscribe", "channel": "ops", "bbox": [31.0, 29.9, 31.5, 30.3]})).await;
    let snap = next_of(&mut staff, "ops_snapshot").await;
    assert_eq!(snap["drivers"]["total"], 1);
    assert_eq!(snap["trips"]["items"][0]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_delivered_then_withdrawn_when_another_driver_takes_it() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, d1) = online_driver(&s, 2, HERE).await;
    let (_, d2) = online_driver(&s, 3, (30.046, 31.236)).await;
    let mut ws2 = s.ws(&d2).await;
    let mut ws1 = s.ws(&d1).await;
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();
    assert_eq!(next_of(&mut ws1, "trip_offer").await["offer"]["trip_id"], id);
    assert_eq!(next_of(&mut ws2, "trip_offer").await["offer"]["trip_id"], id);
    s.post(&format!("/v1/trips/{id}/accept"), &d1, json!({})).await.expect(200);
    let gone = next_of(&mut ws2, "offer_withdrawn").await;
    assert_eq!((gone["trip_id"].as_str(), gone["reason"].as_str()), (Some(id), Some("taken")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_by_the_heartbeat() {
    // Pings every 100 ms; silence of 3 s closes (a starved test machine must not close the
    // live socket, so the idle limit is 30 ping intervals).
    let s = Server::start(&["--ws-ping-ms", "100", "--ws-idle-ms", "3000"], None);
    let (_, rider) = user(&s, "rider", 1).await;
    // A client that keeps reading answers pings and stays.
    let mut live = s.ws(&rider).await;
    let mut dead = s.ws(&rider).await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(4000) {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), live.next()).await {
            assert!(matches!(m, Ok(Message::Ping(_))), "{m:?}");
        }
    }
    // The one that never read answered no ping: it was closed.
    assert!(closed_within_wait(&mut dead).await, "the silent socket was not closed");
    send(&mut live, json!({"type": "ping"})).await;
    next_of(&mut live, "pong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_drivers_race_to_accept_and_exactly_one_wins() {
    let s = Server::start(&[], Some("[dispatch]\noffers_per_round = 50\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let mut drivers = Vec::new();
    for i in 0..50u32 {
        let at = (HERE.0 + f64::from(i) * 0.0001, HERE.1);
        drivers.push(online_driver(&s, 100 + i, at).await.1);
    }
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let s = std::sync::Arc::new(s);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(drivers.len()));
    let tasks: Vec<_> = drivers
        .into_iter()
        .map(|d| {
            let (s, id, barrier) = (std::sync::Arc::clone(&s), id.clone(), std::sync::Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                s.post(&format!("/v1/trips/{id}/accept"), &d, json!({})).await
            })
        })
        .collect();
    let mut won = 0;
    let mut lost = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => won += 1,
            409 => {
                assert_eq!(r.json["error"]["code"], "trip_already_assigned", "{}", r.text);
                lost += 1
            }
            _ => panic!("unexpected {}", r.text),
        }
    }
    assert_eq!((won, lost), (1, 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_flushes_and_a_restart_keeps_the_data() {
    let mut s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (driver_user, _driver) = online_driver(&s, 2, HERE).await;
    let trip = create_trip(&s, &rider).await;
    let mut ws = s.ws(&rider).await;
    s.sigterm();
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1001, "going away: {close:?}");
    assert!(s.wait_exit().success());
    let log = std::fs::read_to_string(s.dir.path().join("stderr.log")).unwrap();
    assert!(!log.contains("did not close in time") && !log.contains("panicked"), "{log}");
    // Restart on the same data directory: the user and its token are still good.
    let data = s.data_dir();
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(&data, dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], None);
    let drivers = s2.get("/v1/admin/drivers?limit=5", ADMIN).await.expect(200);
    let ids: Vec<&Value> = drivers["items"].as_array().unwrap().iter().map(|d| &d["driver_id"]).collect();
    assert_eq!(ids, vec![&driver_user["id"]], "the driver is back, and only it");
    // The rider's token still works and the booking is there, as it was.
    let id = trip["id"].as_str().unwrap();
    let again = s2.get(&format!("/v1/trips/{id}"), &rider).await.expect(200);
    assert_eq!(
        (&again["id"], &again["pickup_code"], &again["fare"]),
        (&trip["id"], &trip["pickup_code"], &trip["fare"])
    );
    let mine = s2.get("/v1/trips", &rider).await.expect(200);
    assert_eq!(mine["items"][0]["id"], trip["id"]);
    drop(s);
}

#[test]
fn serve_refuses_to_start_without_secrets_and_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dispatchd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("DISPATCH_ADMIN_TOKEN")
        .env_remove("DISPATCH_TOKEN_SECRET")
        .env_remove("DISPATCH_WEBHOOK_SECRET_SIM")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DISPATCH_ADMIN_TOKEN"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten_adress = \"x\"\n").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_dispatchd")).args(["serve", "--dev", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_sign_in_revocation_zones_estimates_wallets_and_webhooks() {
    let s = Server::start(&[], None);
    // OTP: the code goes to the sink (a file here), only its hash to the engine.
    let phone = "+201009998877";
    let r =
        s.call(Method::POST, "/v1/auth/otp", None, Some(&json!({"phone": phone, "role": "rider"}).to_string())).await;
    assert_eq!(r.expect(202)["expires_in_s"], 300);
    let again =
        s.call(Method::POST, "/v1/auth/otp", None, Some(&json!({"phone": phone, "role": "rider"}).to_string())).await;
    again.expect_error(429, "rate_limited");
    assert!(again.headers.contains_key("retry-after"));
    let sms = std::fs::read_to_string(s.dir.path().join("sms.jsonl")).unwrap();
    let line: Value = serde_json::from_str(sms.lines().next().unwrap()).unwrap();
    assert_eq!(line["to"], phone);
    let code = line["code"].as_str().unwrap().to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let verify = |c: &str| json!({"phone": phone, "code": c}).to_string();
    s.call(Method::POST, "/v1/auth/otp/verify", None, Some(&verify(wrong))).await.expect_error(401, "invalid_otp");
    let signed_in = s.call(Method::POST, "/v1/auth/otp/verify", None, Some(&verify(&code))).await.expect(200);
    let rider = signed_in["token"].as_str().unwrap().to_owned();
    let rider_id = signed_in["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(signed_in["user"]["role"], "rider");
    let stderr = std::fs::read_to_string(s.dir.path().join("stderr.log")).unwrap();
    assert!(!stderr.contains(&code) && !stderr.contains(phone), "codes and phones stay out of the log");

    // Zones, lookup and estimates.
    let zone = s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    assert!(zone["id"].as_str().unwrap().starts_with("zon_"));
    let mut bad = cairo_zone();
    bad["polygon"]["coordinates"] = json!([[[31.0, 29.9], [31.5, 29.9], [31.5, 30.3]]]);
    s.post("/v1/admin/zones", ADMIN, bad).await.expect_error(400, "invalid_request");
    let found = s.get(&format!("/v1/zones/lookup?lat={}&lng={}", HERE.0, HERE.1), &rider).await.expect(200);
    assert_eq!(found["id"], zone["id"]);
    s.get("/v1/zones/lookup?lat=10&lng=10", &rider).await.expect_error(422, "outside_service_area");
    let est = s
        .post(
            "/v1/fares/estimate",
            &rider,
            json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25}}),
        )
        .await
        .expect(200);
    let e = &est["estimates"][0];
    assert_eq!((e["category"].as_str(), e["route_source"].as_str()), (Some("economy"), Some("straight_line")));
    let b = &e["breakdown"];
    let sum: i64 = [
        "base_minor",
        "distance_minor",
        "time_minor",
        "surge_minor",
        "minimum_fill_minor",
        "booking_fee_minor",
        "extra_fee_minor",
    ]
    .iter()
    .map(|k| b[*k].as_i64().unwrap())
    .sum::<i64>()
        - b["discount_minor"].as_i64().unwrap();
    assert_eq!(sum, e["fare"]["amount_minor"].as_i64().unwrap(), "the breakdown adds up to the fare");
    let coupon =
        s.post("/v1/admin/coupons", ADMIN, json!({"code": "WELCOME", "percent_bps": 1000, "max_uses": 10})).await;
    assert!(coupon.expect(201)["id"].as_str().unwrap().starts_with("cpn_"));

    // Wallets and the ledger.
    let credit = json!({"amount_minor": 5000, "currency": "EGP", "reason": "welcome"});
    s.post(&format!("/v1/admin/wallets/{rider_id}/credit"), ADMIN, credit).await.expect(201);
    let wallet = s.get("/v1/wallet", &rider).await.expect(200);
    assert_eq!(wallet["balance"], json!({"amount_minor": 5000, "currency": "EGP", "currency_exponent": 2}));
    assert_eq!(wallet["entries"]["items"][0]["amount_minor"], 5000);
    let ledger = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
    assert_eq!((ledger["balanced"].as_bool(), ledger["sum_minor"].as_i64()), (Some(true), Some(0)));

    // Webhooks: signed by the sim gateway's scheme; forged or stale ones change nothing.
    let trip = s
        .post(
            "/v1/trips",
            &rider,
            json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
            "category": "economy", "payment_method": "card"}),
        )
        .await
        .expect(201);
    let body = json!({"id": "evt_1", "type": "payment.authorized",
        "data": {"trip_id": trip["id"], "amount_minor": trip["fare"]["estimate_minor"], "currency": "EGP"}})
    .to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let secret = b"test-webhook-secret-0123456789";
    let hook = |sig: String| {
        let body = body.clone();
        let s = &s;
        async move {
            s.call_with(Method::POST, "/v1/webhooks/sim", None, Some(&body), &[("dispatch-signature", &sig)]).await
        }
    };
    let trip_path = format!("/v1/trips/{}", trip["id"].as_str().unwrap());
    // What a webhook could change: the trip, the ledger, the rider's wallet.
    let snapshot = || async {
        let t = s.get(&trip_path, ADMIN).await.expect(200);
        let l = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
        let w = s.get("/v1/wallet", &rider).await.expect(200);
        (t, l, w)
    };
    let before = snapshot().await;
    // Forged (another secret), stale (signed 1000 s ago), tampered (signed, then the
    // amount changed) and unsigned: refused, and nothing changes.
    hook(dispatch_core::payment::sign_timestamped(b"wrong-secret-wrong-secret", now, body.as_bytes()))
        .await
        .expect_error(400, "invalid_signature");
    hook(dispatch_core::payment::sign_timestamped(secret, now - 1000, body.as_bytes()))
        .await
        .expect_error(400, "invalid_signature");
    let tampered = body.replace(&format!("\"amount_minor\":{}", trip["fare"]["estimate_minor"]), "\"amount_minor\":1");
    assert_ne!(tampered, body);
    let signed = dispatch_core::payment::sign_timestamped(secret, now, body.as_bytes());
    s.call_with(Method::POST, "/v1/webhooks/sim", None, Some(&tampered), &[("dispatch-signature", &signed)])
        .await
        .expect_error(400, "invalid_signature");
    s.call(Method::POST, "/v1/webhooks/sim", None, Some(&body)).await.expect_error(400, "invalid_signature");
    assert_eq!(snapshot().await, before, "a refused webhook changed something");
    // The first genuine delivery is processed: the card is authorised.
    let first = hook(dispatch_core::payment::sign_timestamped(secret, now, body.as_bytes())).await.expect(200);
    assert_eq!((first["status"].as_str(), first["applied"].as_bool()), (Some("processed"), Some(true)), "{first}");
    let after = snapshot().await;
    assert_eq!(after.0["payment"]["status"], "authorized");
    let transfers = before.1["transfers"].as_i64().unwrap();
    assert_eq!(
        (after.1["balanced"].as_bool(), after.1["sum_minor"].as_i64(), after.1["transfers"].as_i64()),
        (Some(true), Some(0), Some(transfers + 1)),
        "the authorisation is one pending transfer"
    );
    assert_eq!(after.2, before.2, "the wallet is not touched");
    // Replayed: a duplicate, nothing changes.
    let second = hook(dispatch_core::payment::sign_timestamped(secret, now, body.as_bytes())).await.expect(200);
    assert_eq!(second["status"], "duplicate");
    assert_eq!(snapshot().await, after, "a replayed webhook changed something");
    // Stale: the same authorisation under a new event id, after it was applied, is
    // acknowledged without effect (a gateway would retry anything but a 2xx).
    let stale_body = body.replace("evt_1", "evt_1_again");
    let sig = dispatch_core::payment::sign_timestamped(secret, now, stale_body.as_bytes());
    let stale = s
        .call_with(Method::POST, "/v1/webhooks/sim", None, Some(&stale_body), &[("dispatch-signature", &sig)])
        .await
        .expect(200);
    assert_eq!((stale["status"].as_str(), stale["applied"].as_bool()), (Some("processed"), Some(false)), "{stale}");
    assert!(stale["reason"].as_str().unwrap().contains("stale"), "{stale}");
    assert_eq!(snapshot().await, after, "a stale webhook changed something");
    s.call(Method::POST, "/v1/webhooks/nope", None, Some("{}")).await.expect_error(404, "not_found");

    // Revocation: every token issued before is refused.
    s.call(Method::POST, &format!("/v1/admin/users/{rider_id}/revoke-tokens"), Some(ADMIN), None).await.expect(204);
    s.get("/v1/trips", &rider).await.expect_error(401, "unauthorized");
    let events = s.get(&format!("/v1/admin/trips/{}/events", trip["id"].as_str().unwrap()), ADMIN).await.expect(200);
    assert_eq!(events["items"][0]["type"], "created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_seeds_a_living_city() {
    let s = Server::start(&["--demo", "--demo-drivers", "5"], None);
    // The simulation sets the city up on its own thread, then drivers go online within
    // its ramp-up (10 s).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let zones = s.get("/v1/zones", ADMIN).await.expect(200);
        let d = s.get("/v1/admin/drivers?availability=available", ADMIN).await.expect(200);
        if zones["items"].as_array().unwrap().len() == 1 && !d["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the demo city never came alive: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = s.get("/v1/admin/drivers", ADMIN).await.expect(200);
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_codes_are_posted_to_an_http_sms_provider() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send?key=k", provider.local_addr().unwrap());
    let got = tokio::spawn(async move {
        let (mut sock, _) = provider.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the JSON body has arrived (the request is small).
        while !buf.ends_with(b"}") {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the provider's client hung up early");
            buf.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        String::from_utf8(buf).unwrap()
    });
    let s = Server::start_env(tempfile::tempdir().unwrap(), &[], None, &[("DISPATCH_SMS_SINK", url.as_str())]);
    let phone = "+201005554433";
    let r =
        s.call(Method::POST, "/v1/auth/otp", None, Some(&json!({"phone": phone, "role": "driver"}).to_string())).await;
    r.expect(202);
    let request = tokio::time::timeout(WAIT, got).await.unwrap().unwrap();
    assert!(request.starts_with("POST /send?key=k HTTP/1.1"), "{request}");
    assert!(request.contains(phone) && request.contains("Your dispatch code is"), "{request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fares_are_priced_on_the_router_when_one_is_configured() {
    let body = r#"{"code":"Ok","routes":[{"distance":8230.4,"duration":960.2}]}"#;
    let (url, mut heads) = fake_router(body.to_owned()).await;
    let s = Server::start(&[], Some(&format!("[route]\nrouter_url = \"{url}\"\n")));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25}});
    let est = s.post("/v1/fares/estimate", &rider, body).await.expect(200);
    let e = &est["estimates"][0];
    assert_eq!(
        (e["route_source"].as_str(), e["distance_m"].as_u64(), e["duration_s"].as_u64()),
        (Some("router"), Some(8230), Some(960))
    );
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /route/v1/driving/31.2357"), "{head}");
}

/// DESIGN.md: "router (OSRM) down or slow → straight-line estimate, marked
/// `straight_line`". A server whose router is dead prices estimates and bookings exactly
/// as a server with no router at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_router_prices_on_the_straight_line_like_no_router() {
    // Bind and drop: nothing listens on that port any more (connections are refused).
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25}});
    let mut answers = Vec::new();
    for config in [None, Some(format!("[route]\nrouter_url = \"http://{dead}\"\n"))] {
        let s = Server::start(&[], config.as_deref());
        s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
        let (_, rider) = user(&s, "rider", 1).await;
        let est = s.post("/v1/fares/estimate", &rider, body.clone()).await.expect(200);
        let e = est["estimates"][0].clone();
        assert_eq!(e["route_source"], "straight_line", "{config:?}: {e}");
        let mut booking = body.clone();
        booking["category"] = json!("economy");
        booking["payment_method"] = json!("cash");
        let trip = s.post("/v1/trips", &rider, booking).await.expect(201);
        assert_eq!(trip["fare"]["estimate_minor"], e["fare"]["amount_minor"], "{config:?}: booking locks the estimate");
        answers.push((e["distance_m"].clone(), e["duration_s"].clone(), e["fare"].clone()));
    }
    assert_eq!(answers[0], answers[1], "no router and a dead router price alike");
    assert!(answers[0].0.as_u64().unwrap() > 0);
}

/// Currencies are ISO 4217 codes in force: three letters that name none are refused
/// with the code named, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_in_an_unknown_currency_is_refused() {
    let s = Server::start(&[], None);
    let mut zone = cairo_zone();
    zone["currency"] = json!("ABC");
    let r = s.post("/v1/admin/zones", ADMIN, zone).await;
    r.expect_error(400, "invalid_request");
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("ABC") && message.contains("ISO 4217"), "{message}");
    let (_, rider) = user(&s, "rider", 1).await;
    assert_eq!(s.get("/v1/zones", &rider).await.expect(200)["items"], json!([]), "no zone was created");
    // A real code with another exponent is taken, and the zone says its exponent.
    let mut zone = cairo_zone();
    zone["currency"] = json!("KWD");
    let created = s.post("/v1/admin/zones", ADMIN, zone).await.expect(201);
    assert_eq!((created["currency"].as_str(), created["currency_exponent"].as_u64()), (Some("KWD"), Some(3)));
    // And a zone replaced with an unknown currency is refused the same way, unchanged.
    let mut zone = cairo_zone();
    zone["currency"] = json!("XYZ");
    let id = created["id"].as_str().unwrap();
    s.call_with(Method::PUT, &format!("/v1/admin/zones/{id}"), Some(ADMIN), Some(&zone.to_string()), &[])
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(s.get("/v1/zones", &rider).await.expect(200)["items"][0]["currency"], "KWD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_ratings_sos_and_alerts() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (driver_user, driver) = online_driver(&s, 2, HERE).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash", "bid": {"amount_minor": 5000}});
    let trip = s.post("/v1/trips", &rider, body).await.expect(201);
    let id = trip["id"].as_str().unwrap().to_owned();
    assert_eq!(trip["bid"]["amount_minor"], 5000);
    let code = trip["pickup_code"].as_str().unwrap().to_owned();

    let bid = s.post(&format!("/v1/trips/{id}/bids"), &driver, json!({"amount_minor": 5500})).await.expect(201);
    let bid_id = bid["id"].as_str().unwrap().to_owned();
    assert!(bid_id.starts_with("bid_"));
    let bids = s.get(&format!("/v1/trips/{id}/bids"), &rider).await.expect(200);
    assert_eq!(bids["items"][0]["amount_minor"], 5500);
    s.get(&format!("/v1/trips/{id}/bids"), &driver).await.expect_error(403, "forbidden");
    let accepted = s.post(&format!("/v1/trips/{id}/bids/{bid_id}/accept"), &rider, json!({})).await.expect(200);
    assert_eq!(
        (accepted["status"].as_str(), accepted["driver_id"].as_str()),
        (Some("accepted"), driver_user["id"].as_str())
    );

    // A safety alert reaches the operators, who acknowledge it.
    let sos = s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "help"})).await.expect(201);
    let alerts = s.get("/v1/admin/alerts?status=open", ADMIN).await.expect(200);
    assert_eq!(alerts["items"][0]["id"], sos["id"]);
    let acked =
        s.post(&format!("/v1/admin/alerts/{}/ack", sos["id"].as_str().unwrap()), ADMIN, json!({})).await.expect(200);
    assert_eq!(acked["status"], "acknowledged");

    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/rating"), &rider, json!({"stars": 5, "comment": "great"})).await.expect(201);
    s.post(&format!("/v1/trips/{id}/rating"), &rider, json!({"stars": 4}))
        .await
        .expect_error(409, "invalid_transition");
    s.post(&format!("/v1/trips/{id}/rating"), &driver, json!({"stars": 9})).await.expect_error(400, "invalid_request");
    let events = s.get(&format!("/v1/admin/trips/{id}/events"), ADMIN).await.expect(200);
    let types: Vec<&str> = events["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"accepted") && types.contains(&"completed"), "{types:?}");
}

/// The codes the other tests do not produce: each caused the way a client would meet it.
/// (`idempotency_key_in_use`, `overloaded` and `read_only` need a request in flight, a
/// full queue and a failing disk: see `a_key_still_being_processed_is_409_idempotency_key_in_use`,
/// `a_full_queue_is_503_overloaded_with_retry_after` and
/// `a_failing_disk_is_503_read_only_reads_still_work_and_it_recovers_by_itself`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remaining_error_codes_of_the_contract() {
    let s = Server::start(&[], Some("[dispatch]\noffers_per_round = 1\noffer_ttl_s = 1\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, near) = online_driver(&s, 2, HERE).await;
    let (_, next) = online_driver(&s, 3, (HERE.0 + 0.01, HERE.1)).await;

    // Two trips at once: both offered to the nearest driver (one offer per round).
    let a = create_trip(&s, &rider).await;
    let b = create_trip(&s, &rider).await;
    let (a_id, b_id) = (a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned());
    s.post(&format!("/v1/trips/{a_id}/accept"), &next, json!({})).await.expect_error(403, "not_offered");
    s.post(&format!("/v1/trips/{a_id}/accept"), &near, json!({})).await.expect(200);
    // Its offer of the other trip was withdrawn when it took this one: still "offered".
    s.post(&format!("/v1/trips/{b_id}/accept"), &near, json!({})).await.expect_error(409, "driver_not_available");
    // The other trip moved on to the next driver, whose offer lapses after 1 s.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let offers = s.get("/v1/driver/offers", &next).await.expect(200);
        if offers["items"].as_array().is_some_and(|o| !o.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the next driver was never offered the trip");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.post(&format!("/v1/trips/{b_id}/accept"), &next, json!({})).await.expect_error(410, "offer_expired");

    let trip = |category: &str, payment: &str, coupon: Option<&str>| {
        let mut body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
            "category": category, "payment_method": payment});
        if let Some(c) = coupon {
            body["coupon"] = json!(c);
        }
        body
    };
    s.post("/v1/trips", &rider, trip("moto", "cash", None)).await.expect_error(422, "no_pricing");
    s.post("/v1/trips", &rider, trip("economy", "cash", Some("NOPE"))).await.expect_error(422, "coupon_invalid");
    s.post("/v1/trips", &rider, trip("economy", "wallet", None)).await.expect_error(422, "insufficient_funds");

    // A refund above what was captured.
    let code = a["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{a_id}/arrived"), &near, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{a_id}/start"), &near, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{a_id}/complete"), &near, json!({"distance_m": 3000})).await.expect(200);
    let fare = done["fare"]["final_minor"].as_i64().unwrap();
    let refund = json!({"amount_minor": fare + 1, "reason": "too much"});
    s.post(&format!("/v1/admin/trips/{a_id}/refund"), ADMIN, refund).await.expect_error(422, "refund_exceeds_captured");
    s.post(&format!("/v1/admin/trips/{a_id}/refund"), ADMIN, json!({"amount_minor": fare, "reason": "all"}))
        .await
        .expect(201);
    // A jump of 50 km in moments is refused as suspected spoofing, and counted.
    let jump = json!({"lat": HERE.0 + 0.45, "lng": HERE.1});
    s.post("/v1/driver/location", &near, jump).await.expect_error(400, "invalid_coordinates");
    let metrics = s.get("/metrics", ADMIN).await;
    assert!(metrics.text.contains("dispatch_engine_spoofing_suspected_total 1"), "{}", metrics.text);
}

/// A whole trip per payment method, over HTTP: each settles, the card one through the
/// payment worker and the sim gateway, and the ledger balances after all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_per_payment_method_leaves_the_ledger_balanced() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (rider_user, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let rider_id = rider_user["id"].as_str().unwrap();
    let credit = json!({"amount_minor": 50_000, "currency": "EGP", "reason": "top-up"});
    s.post(&format!("/v1/admin/wallets/{rider_id}/credit"), ADMIN, credit).await.expect(201);
    for method in ["cash", "wallet", "card"] {
        let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
            "category": "economy", "payment_method": method});
        let trip = s.post("/v1/trips", &rider, body).await.expect(201);
        let id = trip["id"].as_str().unwrap().to_owned();
        s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
        s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
        let code = trip["pickup_code"].as_str().unwrap();
        s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
        let done = s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({"distance_m": 4000})).await.expect(200);
        assert!(done["fare"]["final_minor"].as_i64().unwrap() > 0);
        // Settled: at once for cash and wallet; for the card once the worker captured it.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let t = s.get(&format!("/v1/trips/{id}"), &rider).await.expect(200);
            if t["payment"]["status"] == "captured" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{method} trip never captured: {t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ledger = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
        assert_eq!((ledger["balanced"].as_bool(), ledger["sum_minor"].as_i64()), (Some(true), Some(0)), "{method}");
    }
    let wallet = s.get("/v1/wallet", &rider).await.expect(200);
    assert!(wallet["balance"]["amount_minor"].as_i64().unwrap() < 50_000, "the wallet trip was paid from it");
}

/// `GET /v1/admin/drivers/nearby` is answered from the engine's R-tree: drivers at work,
/// nearest first, with their distance; offline drivers are not listed; the radius and
/// the limit bound the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_see_nearby_drivers_nearest_first_from_the_index() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let north = |m: f64| (HERE.0 + m / 111_195.0, HERE.1);
    let (far, _) = online_driver(&s, 1, north(900.0)).await;
    let (near, _) = online_driver(&s, 2, north(100.0)).await;
    let (mid, _) = online_driver(&s, 3, north(400.0)).await;
    let (gone, gone_token) = online_driver(&s, 4, north(50.0)).await;
    let (outside, _) = online_driver(&s, 5, north(3_000.0)).await;
    s.post("/v1/driver/status", &gone_token, json!({"status": "offline"})).await.expect(200);
    let query = format!("/v1/admin/drivers/nearby?lat={}&lng={}&radius_m=2000", HERE.0, HERE.1);
    let got = s.get(&query, ADMIN).await.expect(200);
    let ids: Vec<&str> = got["items"].as_array().unwrap().iter().map(|d| d["driver_id"].as_str().unwrap()).collect();
    let id = |u: &Value| u["id"].as_str().unwrap().to_owned();
    assert_eq!(ids, vec![id(&near), id(&mid), id(&far)], "{got}");
    assert!(!ids.contains(&id(&gone).as_str()) && !ids.contains(&id(&outside).as_str()));
    let first = &got["items"][0];
    assert!((99..=101).contains(&first["distance_m"].as_u64().unwrap()), "{first}");
    assert_eq!(first["availability"], "available");
    let limited = s.get(&format!("{query}&limit=2"), ADMIN).await.expect(200);
    assert_eq!(limited["items"].as_array().unwrap().len(), 2);
    let (_, rider) = user(&s, "rider", 9).await;
    s.get(&query, &rider).await.expect_error(403, "forbidden");
    // One driver by id, whatever its availability (the console's driver panel).
    let one = s.get(&format!("/v1/admin/drivers/{}", id(&gone)), ADMIN).await.expect(200);
    assert_eq!((one["driver_id"].as_str(), one["availability"].as_str()), (Some(&*id(&gone)), Some("offline")));
    s.get(&format!("/v1/admin/drivers/{}", id(&gone)), &rider).await.expect_error(403, "forbidden");
    s.get("/v1/admin/drivers/usr_00000000000000ff", ADMIN).await.expect_error(404, "not_found");
    s.get("/v1/admin/drivers/nonsense", ADMIN).await.expect_error(404, "not_found");
}

/// Webhooks from configured gateways (Paystack's and Razorpay's schemes), the
/// reconciliation endpoint, dead letters of a gateway that is down, and a rider who
/// then pays cash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_reconciliation_dead_letters_and_cash_over_http() {
    use ring::hmac;
    let config = "[gateways.paystack]\nscheme = \"paystack\"\n[gateways.rzp]\nscheme = \"razorpay\"\n";
    let secrets = [
        ("DISPATCH_WEBHOOK_SECRET_PAYSTACK", "paystack-secret-0123456789"),
        ("DISPATCH_WEBHOOK_SECRET_RZP", "razorpay-secret-0123456789,old-razorpay-secret-0123"),
    ];
    let s = Server::start_env(
        tempfile::tempdir().unwrap(),
        &["--sim-gateway-down", "--payment-max-attempts", "2", "--payment-backoff-ms", "10"],
        Some(config),
        &secrets,
    );
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, other_rider) = user(&s, "rider", 3).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "card"});
    let trip = s.post("/v1/trips", &rider, body.clone()).await.expect(201);
    let id = trip["id"].as_str().unwrap().to_owned();
    assert_eq!(trip["payment"]["cash_offered"], false);

    // Razorpay: hex HMAC-SHA256 of the body, any of the rotated secrets.
    let sign = |alg, secret: &str, body: &str| {
        dispatch_core::payment::hex_encode(
            hmac::sign(&hmac::Key::new(alg, secret.as_bytes()), body.as_bytes()).as_ref(),
        )
    };
    let rzp = json!({"event": "payment.authorized", "payload": {"payment": {"entity": {"id": "pay_1",
        "amount": trip["fare"]["estimate_minor"], "currency": "EGP", "notes": {"trip_id": id}}}}})
    .to_string();
    let post_hook = |gateway: &'static str, header: &'static str, sig: String, body: String| {
        let s = &s;
        async move {
            s.call_with(Method::POST, &format!("/v1/webhooks/{gateway}"), None, Some(&body), &[(header, &sig)]).await
        }
    };
    post_hook("rzp", "x-razorpay-signature", sign(hmac::HMAC_SHA256, "wrong-secret-0123456789", &rzp), rzp.clone())
        .await
        .expect_error(400, "invalid_signature");
    let ok = post_hook("rzp", "x-razorpay-signature", sign(hmac::HMAC_SHA256, "old-razorpay-secret-0123", &rzp), rzp)
        .await
        .expect(200);
    // Verified (any rotated secret), but the trip is charged through sim: no effect.
    assert_eq!((ok["status"].as_str(), ok["applied"].as_bool()), (Some("processed"), Some(false)), "{ok}");
    assert_eq!(s.get(&format!("/v1/trips/{id}"), &rider).await.expect(200)["payment"]["status"], "pending");
    // Its own gateway authorises it.
    let auth = json!({"id": "evt_auth_1", "type": "payment.authorized",
        "data": {"trip_id": id, "amount_minor": trip["fare"]["estimate_minor"], "currency": "EGP"}})
    .to_string();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let sim_sig = dispatch_core::payment::sign_timestamped(b"test-webhook-secret-0123456789", now_s, auth.as_bytes());
    post_hook("sim", "dispatch-signature", sim_sig, auth).await.expect(200);
    assert_eq!(s.get(&format!("/v1/trips/{id}"), &rider).await.expect(200)["payment"]["status"], "authorized");
    // Paystack: hex HMAC-SHA512; a capture nothing is due for is acknowledged, no effect.
    let ps = json!({"event": "charge.success", "data": {"id": 302961, "amount": 100, "currency": "EGP",
        "metadata": {"trip_id": id}}})
    .to_string();
    let r =
        post_hook("paystack", "x-paystack-signature", sign(hmac::HMAC_SHA512, "paystack-secret-0123456789", &ps), ps)
            .await
            .expect(200);
    assert_eq!(r["applied"], false, "{r}");
    let other = json!({"event": "transfer.success", "data": {"id": 1}}).to_string();
    let sig = sign(hmac::HMAC_SHA512, "paystack-secret-0123456789", &other);
    let r = post_hook("paystack", "x-paystack-signature", sig, other).await.expect(200);
    assert_eq!((r["status"].as_str(), r["applied"].as_bool()), (Some("processed"), Some(false)));
    s.call(Method::POST, "/v1/webhooks/stripe", None, Some("{}")).await.expect_error(404, "not_found");

    // The sim gateway is down: a second card trip's authorisation is dead-lettered.
    let second = s.post("/v1/trips", &other_rider, body).await.expect(201);
    let second_id = second["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{second_id}/accept"), &driver, json!({})).await.expect(200);
    let deadline = std::time::Instant::now() + WAIT;
    let dead = loop {
        let d = s.get("/v1/admin/payments/dead-letters", ADMIN).await.expect(200);
        if !d["items"].as_array().unwrap().is_empty() {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "no dead letter: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (dead["items"][0]["trip_id"].as_str(), dead["items"][0]["action"].as_str()),
        (Some(&*second_id), Some("authorize"))
    );
    assert_eq!(dead["items"][0]["attempts"], 2);
    s.get("/v1/admin/payments/dead-letters", &rider).await.expect_error(403, "forbidden");
    let t = s.get(&format!("/v1/trips/{second_id}"), &other_rider).await.expect(200);
    assert_eq!(t["payment"]["cash_offered"], true, "{t}");
    // Only its rider switches it to cash.
    let cash = json!({"method": "cash"});
    s.post(&format!("/v1/trips/{second_id}/payment-method"), &rider, cash.clone()).await.expect_error(404, "not_found");
    s.post(&format!("/v1/trips/{second_id}/payment-method"), &driver, cash.clone())
        .await
        .expect_error(403, "forbidden");
    s.post(&format!("/v1/trips/{second_id}/payment-method"), &other_rider, json!({"method": "card"}))
        .await
        .expect_error(400, "invalid_request");
    let switched =
        s.post(&format!("/v1/trips/{second_id}/payment-method"), &other_rider, cash.clone()).await.expect(200);
    assert_eq!(
        (switched["payment"]["method"].as_str(), switched["payment"]["cash_offered"].as_bool()),
        (Some("cash"), Some(false))
    );
    assert!(s.get("/v1/admin/payments/dead-letters", ADMIN).await.expect(200)["items"].as_array().unwrap().is_empty());
    // An authorised card may not switch.
    s.post(&format!("/v1/trips/{id}/payment-method"), &rider, cash).await.expect_error(409, "invalid_transition");
    let code = second["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{second_id}/arrived"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{second_id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let done =
        s.post(&format!("/v1/trips/{second_id}/complete"), &driver, json!({"distance_m": 4000})).await.expect(200);
    assert_eq!(done["payment"]["status"], "captured", "paid in cash");
    let fare = done["fare"]["final_minor"].as_i64().unwrap();

    // Reconciliation: admin only; the report's status column against the ledger's.
    let csv =
        format!("trip_id,amount_minor,currency,status\n{id},0,EGP,voided\ntrp_00000000000000aa,500,EGP,captured\n");
    let r = reconcile(&s, ADMIN, "sim", &csv).await.expect(200);
    assert_eq!(r["matched"], 0, "{r}");
    let kinds: Vec<(&str, &str)> = r["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["kind"].as_str().unwrap(), m["trip_id"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&("status_differs", id.as_str()))
            && kinds.contains(&("missing_in_ledger", "trp_00000000000000aa")),
        "{r}"
    );
    let status = r["mismatches"].as_array().unwrap().iter().find(|m| m["kind"] == "status_differs").unwrap();
    assert_eq!(
        (status["ledger"]["status"].as_str(), status["gateway"]["status"].as_str()),
        (Some("authorized"), Some("voided"))
    );
    assert!(status["ledger"]["amount_minor"].is_i64() && fare > 0);
    let bad = reconcile(&s, ADMIN, "sim", "trip_id,amount_minor,currency\ntrp_00000000000000aa,1.5,EGP\n").await;
    bad.expect_error(400, "invalid_request");
    assert!(bad.json["error"]["message"].as_str().unwrap().contains("line 2"), "{}", bad.text);
    reconcile(&s, ADMIN, "nope", &csv).await.expect_error(404, "not_found");
    let (_, support) = user(&s, "support", 9).await;
    reconcile(&s, &support, "sim", &csv).await.expect_error(403, "forbidden");
    assert_eq!(s.get("/v1/admin/payments/dead-letters", &support).await.status, 200, "support reads dead letters");
}

async fn reconcile(s: &Server, token: &str, gateway: &str, csv: &str) -> Reply {
    let path = format!("/v1/admin/reconcile?gateway={gateway}");
    s.call_with(Method::POST, &path, Some(token), Some(csv), &[("content-type", "text/csv")]).await
}

/// Regression: `by_trip` was checked only at subscription, so a driver who accepted,
/// subscribed and gave the trip back kept hearing its updates and the next driver's live
/// position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_who_gave_a_trip_back_hears_nothing_more_of_it() {
    let config = "[dispatch]\noffers_per_round = 1\n[limits]\nlocation_min_interval_ms = 0\n";
    let s = Server::start(&[], Some(config));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (first_user, first) = online_driver(&s, 2, HERE).await;
    let b_at = (HERE.0 + 0.002, HERE.1);
    let (_, second) = online_driver(&s, 3, b_at).await;
    let mut first_ws = s.ws(&first).await;
    let mut second_ws = s.ws(&second).await;
    let mut rider_ws = s.ws(&rider).await;

    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), &first, json!({})).await.expect(200);
    send(&mut first_ws, json!({"type": "subscribe", "trip_id": id})).await;
    next_of(&mut first_ws, "subscribed").await;
    let back = s.post(&format!("/v1/trips/{id}/cancel"), &first, json!({"reason": "flat tyre"})).await.expect(200);
    assert_eq!(back["status"], "searching", "a driver's cancel gives the trip back");

    // The next round goes to the other driver, who takes it and moves.
    assert_eq!(next_of(&mut second_ws, "trip_offer").await["offer"]["trip_id"], id.as_str());
    s.post(&format!("/v1/trips/{id}/accept"), &second, json!({})).await.expect(200);
    send(&mut second_ws, json!({"type": "location", "lat": b_at.0 + 0.00001, "lng": b_at.1})).await;
    let moved = next_of(&mut rider_ws, "driver_location").await;
    assert_eq!(moved["trip_id"], id.as_str(), "the rider does see the new driver");

    // A later event the first driver must get (an offer of another trip) marks the end of
    // what it was sent: nothing of the old trip after its cancel may come before it.
    let other = create_trip(&s, &rider).await;
    let first_id = first_user["id"].as_str().unwrap();
    let frames = tokio::time::timeout(WAIT, async {
        let mut frames = Vec::new();
        loop {
            let Some(Ok(m)) = first_ws.next().await else { panic!("the first driver's socket ended") };
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "trip_offer" && v["offer"]["trip_id"] == other["id"] {
                return frames;
            }
            frames.push(v);
        }
    })
    .await
    .expect("the first driver was never offered the other trip");
    for f in &frames {
        assert_ne!(f["type"], "driver_location", "the first driver saw the new driver's position: {f}");
        if f["type"] == "trip_updated" && f["trip"]["id"] == id.as_str() {
            assert_eq!(f["trip"]["driver_id"], first_id, "an update after the first driver left: {f}");
        }
    }
}

/// A client that stops reading while the server pushes frames at it is closed (1008)
/// within the send timeout, instead of holding a writer and its outbox forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_in_bounded_time() {
    let flags = ["--ws-send-timeout-ms", "300", "--ws-idle-ms", "600000", "--ws-ping-ms", "600000"];
    let limits = "[limits]\ntrip_create_per_min = 100000\nuser_per_min = 100000\n";
    let s = Server::start(&flags, Some(limits));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    // A client with a tiny receive buffer that never reads: the server's writes back up.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(s.addr).await.unwrap();
    let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {rider}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(s.metric("dispatch_ws_sockets_open").await, 1.0);

    let address = "A".repeat(300);
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1, "address": address},
        "dropoff": {"lat": 30.06, "lng": 31.25, "address": address}, "category": "economy", "payment_method": "cash"});
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        // Trip events for the rider (booked, cancelled), and a reply with the whole trip for
        // every subscription the client keeps sending (its writes still go through).
        let trip = s.post("/v1/trips", &rider, body.clone()).await.expect(201);
        let id = trip["id"].as_str().unwrap();
        for _ in 0..300 {
            if ws.send(Message::text(json!({"type": "subscribe", "trip_id": id}).to_string())).await.is_err() {
                break; // the server hung up
            }
        }
        s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({})).await.expect(200);
        if s.metric("dispatch_ws_sockets_open").await == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the client that never reads is still served");
    }
    assert_eq!(s.metric("dispatch_ws_slow_sockets_closed_total").await, 1.0);
    // Reading now drains what was buffered, then the connection ends.
    assert!(closed_within_wait(&mut ws).await, "the connection was not closed");
}

/// DESIGN.md: when the driver's socket drops during a trip, the rider sees the driver
/// temporarily offline at the last known position; when it comes back, online again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rider_sees_the_driver_offline_at_the_last_position_then_back() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (driver_user, driver) = online_driver(&s, 2, HERE).await;
    let mut dws = s.ws(&driver).await;
    let mut rws = s.ws(&rider).await;
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    dws.close(None).await.unwrap();
    drop(dws);
    let gone = next_of(&mut rws, "driver_presence").await;
    assert_eq!(
        (&gone["trip_id"], &gone["driver_id"], &gone["connected"]),
        (&json!(id), &driver_user["id"], &json!(false)),
        "{gone}"
    );
    assert_eq!((gone["lat"].as_f64(), gone["lng"].as_f64()), (Some(HERE.0), Some(HERE.1)), "{gone}");
    assert!(gone["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{gone}");
    assert!(gone["location_age_s"].as_u64().is_some_and(|a| a < 600), "{gone}");

    let _dws = s.ws(&driver).await;
    let back = next_of(&mut rws, "driver_presence").await;
    assert_eq!((&back["connected"], back["lat"].as_f64()), (&json!(true), Some(HERE.0)), "{back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_otp_codes_lock_the_phone_even_for_the_right_code() {
    let s = Server::start(&[], None);
    let phone = "+201004443322";
    let ask = json!({"phone": phone, "role": "rider"}).to_string();
    s.call(Method::POST, "/v1/auth/otp", None, Some(&ask)).await.expect(202);
    let code = s.otp_code(phone);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let verify = |c: &str| json!({"phone": phone, "code": c}).to_string();
    for i in 0..5 {
        let r = s.call(Method::POST, "/v1/auth/otp/verify", None, Some(&verify(wrong))).await;
        assert_eq!((r.status, r.json["error"]["code"].as_str()), (401, Some("invalid_otp")), "attempt {i}: {}", r.text);
    }
    let locked = s.call(Method::POST, "/v1/auth/otp/verify", None, Some(&verify(&code))).await;
    locked.expect_error(429, "rate_limited");
    let retry: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 60 && retry <= 3600, "locked for about an hour: {retry}");
}

/// API.md's whole path, as apps walk it: both people sign in by OTP (the admin made the
/// driver's account, with a vehicle, first), the driver goes online and reports over the
/// socket, the rider books, the driver accepts (an app retry replays), arrives, starts
/// with the pickup code and completes; the rider's socket sees `completed` with the fare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_otp_sign_in_to_a_completed_trip() {
    let s = Server::start(&[], Some("[limits]\nlocation_min_interval_ms = 0\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let driver_phone = "+201007770001";
    let account = json!({"role": "driver", "name": "Omar", "phone": driver_phone,
        "vehicle": {"category": "economy", "plate": "CAI 77"}});
    let made = s.post("/v1/admin/users", ADMIN, account).await.expect(201);
    let (driver, driver_user) = s.sign_in(driver_phone, "driver").await;
    assert_eq!((&driver_user["id"], &driver_user["role"]), (&made["user"]["id"], &json!("driver")));
    let (rider, rider_user) = s.sign_in("+201007770002", "rider").await;
    assert_eq!(rider_user["role"], "rider");

    let status = s.post("/v1/driver/status", &driver, json!({"status": "online"})).await.expect(200);
    assert_eq!(status["availability"], "available");
    let mut dws = s.ws(&driver).await;
    send(&mut dws, json!({"type": "location", "lat": HERE.0, "lng": HERE.1, "heading_deg": 10})).await;
    let driver_id = driver_user["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let d = s.get("/v1/admin/drivers?availability=available", ADMIN).await.expect(200);
        let me = d["items"].as_array().unwrap().iter().find(|d| d["driver_id"] == driver_id).cloned();
        if me.is_some_and(|d| !d["location"].is_null() && d["connected"] == true) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the socket's position never reached the engine: {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut rws = s.ws(&rider).await;
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let offer = next_of(&mut dws, "trip_offer").await;
    assert_eq!(offer["offer"]["trip_id"], id.as_str());
    let key = [("idempotency-key", "accept-1")];
    let accept = format!("/v1/trips/{id}/accept");
    let won = s.call_with(Method::POST, &accept, Some(&driver), Some("{}"), &key).await;
    assert_eq!((won.status, won.json["status"].as_str()), (200, Some("accepted")), "{}", won.text);
    let replay = s.call_with(Method::POST, &accept, Some(&driver), Some("{}"), &key).await;
    let replayed = replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok());
    assert_eq!((replay.status, replayed), (200, Some("true")), "{}", replay.text);
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    let code = trip["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({"distance_m": 5000})).await.expect(200);
    let fare = done["fare"]["final_minor"].as_i64().unwrap();
    assert!(fare > 0);

    let completed = loop {
        let u = next_of(&mut rws, "trip_updated").await;
        if u["trip"]["status"] == "completed" {
            break u;
        }
    };
    assert_eq!(
        (completed["trip"]["id"].as_str(), completed["trip"]["fare"]["final_minor"].as_i64()),
        (Some(id.as_str()), Some(fare))
    );
    // The replayed accept won nothing new; the engine's histograms saw the batches.
    assert_eq!(s.metric("dispatch_accepts_won_total").await, 1.0);
    assert!(s.metric("dispatch_engine_fsync_seconds_count").await >= 1.0);
    assert!(s.metric("dispatch_engine_batch_commands_count").await >= 1.0);
    assert!(s.metric("dispatch_engine_batch_commands_bucket{le=\"+Inf\"}").await >= 1.0);
}

/// API.md: "same key while the first is still being processed → 409". The first booking
/// waits on a router that accepts and never answers (for its 1 s timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_still_being_processed_is_409_idempotency_key_in_use() {
    let router = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", router.local_addr().unwrap());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = router.accept().await {
            held.push(sock); // never answered
            let _ = accepted_tx.send(());
        }
    });
    let s = std::sync::Arc::new(Server::start(&[], Some(&format!("[route]\nrouter_url = \"{url}\"\n"))));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"})
    .to_string();
    let key = [("idempotency-key", "book-1")];
    let first = {
        let (s, rider, body) = (std::sync::Arc::clone(&s), rider.clone(), body.clone());
        tokio::spawn(async move { s.call_with(Method::POST, "/v1/trips", Some(&rider), Some(&body), &key).await })
    };
    tokio::time::timeout(WAIT, accepted.recv()).await.unwrap().unwrap();
    // The first booking is waiting on the router now, holding its key.
    s.call_with(Method::POST, "/v1/trips", Some(&rider), Some(&body), &key)
        .await
        .expect_error(409, "idempotency_key_in_use");
    let first = first.await.unwrap();
    assert_eq!(first.status, 201, "{}", first.text);
    let again = s.call_with(Method::POST, "/v1/trips", Some(&rider), Some(&body), &key).await;
    let replayed = again.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok());
    assert_eq!((again.status, replayed), (201, Some("true")), "{}", again.text);
    assert_eq!(again.json["id"], first.json["id"]);
}

/// A full queue is `503 overloaded` with `Retry-After` at once, never a wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_overloaded_with_retry_after() {
    let s = std::sync::Arc::new(Server::start(&["--queue-capacity", "2"], None));
    let deadline = std::time::Instant::now() + WAIT;
    let mut round = 0u32;
    let overloaded = loop {
        round += 1;
        let calls: Vec<_> = (0..64u32)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                let body = json!({"role": "rider", "name": "R", "phone": format!("+2011{round:04}{i:04}")});
                tokio::spawn(async move { s.post("/v1/admin/users", ADMIN, body).await })
            })
            .collect();
        let mut refused = None;
        for c in calls {
            let r = c.await.unwrap();
            match r.status {
                201 => {}
                503 => refused = Some(r),
                _ => panic!("neither created nor overloaded: {}", r.text),
            }
        }
        if let Some(r) = refused {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "64 concurrent writes never overflowed a queue of 2");
    };
    overloaded.expect_error(503, "overloaded");
    let retry: u64 = overloaded.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(s.metric("dispatch_engine_overloaded_total").await >= 1.0);
}

/// DESIGN.md: a disk that cannot be written makes the engine read-only — commands are
/// `503 read_only` with `Retry-After`, reads keep working, `/readyz` fails its
/// `engine_writable` check — and it recovers by itself once writes succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_is_503_read_only_reads_still_work_and_it_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let fault = dir.path().join("disk-full");
    let s = Server::start_in(dir, &["--fault-file", fault.to_str().unwrap()], None);
    let ready = s.call(Method::GET, "/readyz", None, None).await.expect(200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        (&ready["checks"]["engine_writable"], &ready["checks"]["queue"], &ready["checks"]["accepting"]),
        (&json!("ok"), &json!("ok"), &json!("ok")),
        "{ready}"
    );
    let (rider_user, rider) = user(&s, "rider", 1).await;

    std::fs::write(&fault, b"").unwrap();
    let person = json!({"role": "rider", "name": "Late", "phone": "+201009990000"});
    let refused = s.post("/v1/admin/users", ADMIN, person.clone()).await;
    refused.expect_error(503, "read_only");
    assert!(refused.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Reads are served from the last durable state.
    let me = s.get("/v1/trips", &rider).await.expect(200);
    assert_eq!(me["items"], json!([]));
    s.get("/v1/zones", &rider).await.expect(200);
    // While writes keep failing (several of the engine's 1 s probes), it stays read-only.
    let until = std::time::Instant::now() + Duration::from_millis(3500);
    while std::time::Instant::now() < until {
        let r = s.call(Method::GET, "/readyz", None, None).await;
        assert_eq!((r.status, r.json["checks"]["engine_writable"].as_str()), (503, Some("read_only")), "{}", r.text);
        assert!(r.headers.contains_key("retry-after"));
        s.post("/v1/admin/users", ADMIN, person.clone()).await.expect_error(503, "read_only");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    std::fs::remove_file(&fault).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = s.call(Method::GET, "/readyz", None, None).await;
        if r.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never writable again: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refused creations changed nothing: the phone is still free.
    let late = s.post("/v1/admin/users", ADMIN, person).await.expect(201);
    assert_ne!(late["user"]["id"], rider_user["id"]);
    s.get("/v1/trips", &rider).await.expect(200);
}

/// A request the server could not serve for now (a `503`) is given back to the buckets it was
/// counted in: a rider retrying a booking through a read-only spell is not told `429`
/// once the disk is back, and every `503` says the quota is still whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_server_failed_to_serve_cost_no_quota() {
    let dir = tempfile::tempdir().unwrap();
    let fault = dir.path().join("disk-full");
    // One booking a minute, three requests a minute: the refused attempts below would
    // spend both several times over if they were counted.
    let limits = "[limits]\ntrip_create_per_min = 1\nuser_per_min = 3\n";
    let s = Server::start_in(dir, &["--fault-file", fault.to_str().unwrap()], Some(limits));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    std::fs::write(&fault, b"").unwrap();
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});
    for _ in 0..6 {
        let r = s.post("/v1/trips", &rider, body.clone()).await;
        r.expect_error(503, "read_only");
        let remaining =
            (r.headers["ratelimit-limit"].to_str().unwrap(), r.headers["ratelimit-remaining"].to_str().unwrap());
        assert_eq!(remaining, ("1", "1"), "the tightest quota, after the refund: the booking's, whole");
    }
    std::fs::remove_file(&fault).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while s.call(Method::GET, "/readyz", None, None).await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "never writable again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let booked = s.post("/v1/trips", &rider, body.clone()).await.expect(201);
    assert_eq!(booked["status"], "searching", "{booked}");
    // Served requests are counted as before: the booking's quota is spent.
    s.post("/v1/trips", &rider, body).await.expect_error(429, "rate_limited");
}

/// Open routes ignore credentials: a stale or malformed token never turns a health check
/// or a sign-in into a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_routes_ignore_a_bad_token() {
    let s = Server::start(&[], None);
    let bad = Some("dt1.00.00");
    assert_eq!(s.call(Method::GET, "/healthz", bad, None).await.expect(200)["status"], "ok");
    assert_eq!(s.call(Method::GET, "/readyz", bad, None).await.expect(200)["status"], "ready");
    let ask = json!({"phone": "+201001112233", "role": "rider"}).to_string();
    s.call(Method::POST, "/v1/auth/otp", bad, Some(&ask)).await.expect(202);
    s.call(Method::GET, "/console", bad, None).await.expect(200);
    // Elsewhere a bad token is still refused.
    s.call(Method::GET, "/v1/zones", bad, None).await.expect_error(401, "unauthorized");
}

/// The request log names the trip a booking created and the user a sign-in signed in;
/// no log line holds a token, a code or a full phone number; the admin token is printed
/// only when `--dev` made it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_new_trips_and_signed_in_users_and_never_a_secret() {
    // The `log` sink (stdout, with the code: a developer signs in with it), and a webhook
    // secret that `--dev` makes up while the admin token comes from the environment.
    let env = [("DISPATCH_SMS_SINK", "log"), ("DISPATCH_WEBHOOK_SECRET_SIM", "")];
    let s = Server::start_env(tempfile::tempdir().unwrap(), &[], None, &env);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let phone = "+201006665544";
    let ask = json!({"phone": phone, "role": "rider"}).to_string();
    s.call(Method::POST, "/v1/auth/otp", None, Some(&ask)).await.expect(202);
    let deadline = std::time::Instant::now() + WAIT;
    let sms = loop {
        if let Some(l) = s.stdout.lock().unwrap().iter().find(|l| l.starts_with("sms to=")).cloned() {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no sms line on stdout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(sms.starts_with("sms to=+*********544 "), "the number is masked: {sms}");
    let code: String = sms.rsplit(' ').next().unwrap().chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{sms}");
    let verify = json!({"phone": phone, "code": code}).to_string();
    let signed_in = s.call(Method::POST, "/v1/auth/otp/verify", None, Some(&verify)).await.expect(200);
    let token = signed_in["token"].as_str().unwrap().to_owned();
    let user_id = signed_in["user"]["id"].as_str().unwrap().to_owned();
    let trip = create_trip(&s, &token).await;
    let trip_id = trip["id"].as_str().unwrap();

    let stderr = s.stderr();
    let lines: Vec<Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let request = |route: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == "request" && l["fields"]["route"] == route)
            .unwrap_or_else(|| panic!("no {route} line in {stderr}"))
            .clone()
    };
    assert_eq!(request("otp_verify")["fields"]["user_id"], user_id.as_str());
    let booked = request("trip_create");
    assert_eq!((&booked["fields"]["trip_id"], &booked["fields"]["user_id"]), (&json!(trip_id), &json!(user_id)));
    let stdout = s.stdout();
    for secret in [phone, code.as_str(), token.as_str(), ADMIN] {
        assert!(!stderr.contains(secret), "{secret} in the log: {stderr}");
    }
    for secret in [phone, token.as_str(), ADMIN] {
        assert!(!stdout.contains(secret), "{secret} on stdout: {stdout}");
    }
    assert!(!stdout.contains("dev admin token"), "an admin token from the environment is never printed: {stdout}");

    // With no admin token in the environment, `--dev` makes one up and prints it once.
    let made_up = Server::start_env(tempfile::tempdir().unwrap(), &[], None, &[("DISPATCH_ADMIN_TOKEN", "")]);
    let printed = made_up.stdout();
    let line = printed.lines().find(|l| l.starts_with("dev admin token: ")).expect("the made-up admin token");
    let generated = line.trim_start_matches("dev admin token: ");
    made_up.get("/v1/admin/stats", generated).await.expect(200);
}

/// Staff endpoints of the console (issue 9): a trip's driver trail from the accept on,
/// oldest first; staff see the names of a trip's people; `/v1/admin/stats` counts
/// offers, accepts and rate-limit refusals cumulatively.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trips_trail_names_and_the_stats_counters_for_staff() {
    // Positions are not coalesced here: each report below is recorded.
    let s = Server::start(&[], Some("[limits]\nlocation_min_interval_ms = 0\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let mut dws = s.ws(&driver).await;
    let before = s.get("/v1/admin/stats", ADMIN).await.expect(200)["counters"].clone();
    assert_eq!(before, json!({"offers_sent": 0, "accepts_won": 0, "accepts_lost": 0, "rate_limited": 0}));

    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    next_of(&mut dws, "trip_offer").await;
    // Searching: no driver yet, no trail.
    let none = s.get(&format!("/v1/admin/trips/{id}/trail"), ADMIN).await.expect(200);
    assert_eq!((none["items"].as_array().unwrap().len(), &none["recorded"]), (0, &json!(0)));
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    // Four reports a metre apart (no implausible jump, whatever the machine's speed).
    let lats = [30.04441, 30.04442, 30.04443, 30.04444];
    for lat in lats {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let at = json!({"lat": lat, "lng": HERE.1, "heading_deg": 0});
        s.call(Method::POST, "/v1/driver/location", Some(&driver), Some(&at.to_string())).await.expect(204);
    }
    let deadline = std::time::Instant::now() + WAIT;
    let trail = loop {
        let t = s.get(&format!("/v1/admin/trips/{id}/trail"), ADMIN).await.expect(200);
        if t["items"].as_array().unwrap().len() >= 4 {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the trail never filled: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let items = trail["items"].as_array().unwrap();
    assert_eq!((items.len(), &trail["sampled"], &trail["truncated"]), (4, &json!(false), &json!(false)), "{trail}");
    let ats: Vec<&str> = items.iter().map(|p| p["at"].as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] < w[1]), "oldest first: {ats:?}");
    let got: Vec<f64> = items.iter().map(|p| p["lat"].as_f64().unwrap()).collect();
    assert_eq!(got, lats);
    assert_eq!((items[3]["lng"].as_f64(), items[3]["heading_deg"].as_f64()), (Some(HERE.1), Some(0.0)));
    // Staff only; an unknown trip is 404.
    s.get(&format!("/v1/admin/trips/{id}/trail"), &rider).await.expect_error(403, "forbidden");
    s.get("/v1/admin/trips/trp_0000000000000001/trail", ADMIN).await.expect_error(404, "not_found");

    // Names: shown to staff, not added for the rider's own view.
    let staff_view = s.get(&format!("/v1/trips/{id}"), ADMIN).await.expect(200);
    assert_eq!(
        (staff_view["rider_name"].as_str(), staff_view["driver_name"].as_str()),
        (Some("rider 1"), Some("driver 2"))
    );
    let own = s.get(&format!("/v1/trips/{id}"), &rider).await.expect(200);
    assert!(own.get("rider_name").is_none(), "{own}");

    // A rider asking too fast (10 a minute) is refused: counted beside the offer and the accept.
    let mut refused = 0;
    for _ in 0..12 {
        let r = s.post("/v1/trips", &rider, json!({})).await;
        refused += u64::from(r.status == 429);
    }
    assert!(refused >= 1, "never rate-limited");
    let after = s.get("/v1/admin/stats", ADMIN).await.expect(200)["counters"].clone();
    assert_eq!(after, json!({"offers_sent": 1, "accepts_won": 1, "accepts_lost": 0, "rate_limited": refused}));
}
