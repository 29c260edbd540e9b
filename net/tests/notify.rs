//! Black-box tests of API.md "Notifications" (the parts of this wave: devices, the outbox,
//! its worker without providers, its metrics): `POST`/`GET /v1/me/devices` and `DELETE
//! /v1/me/devices/{id}` (201, 200 for the same token, the oldest dropped at six, the token
//! never shown, another user's device 404); a trip accepted by a driver makes a
//! `trip_accepted` item for its rider's device, listed by `GET /v1/admin/notifications`,
//! which the worker fails at once "not configured" (no provider is built in this wave);
//! the outbox's metrics. The providers end to end, and delivery after a `kill -9`, are in
//! `notify_dispatchd.rs` (and FCM in `notify_providers.rs`); at the engine level in
//! `outbox_crash.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use common::*;

async fn device(s: &Server, token: &str, push_token: &str) -> Reply {
    s.post("/v1/me/devices", token, json!({"platform": "fcm", "token": push_token})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_once_keep_five_never_show_the_token_and_are_their_owner_s() {
    let s = Server::start(&[], None);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, other) = user(&s, "rider", 2).await;
    let first = device(&s, &rider, "push-token-secret-1").await.expect(201);
    assert!(first["id"].as_str().unwrap().starts_with("dev_"), "{first}");
    assert_eq!(first["platform"], "fcm");
    let again = device(&s, &rider, "push-token-secret-1").await.expect(200);
    assert_eq!(again["id"], first["id"]);

    for i in 2..=6 {
        device(&s, &rider, &format!("push-token-secret-{i}")).await.expect(201);
    }
    let list = s.get("/v1/me/devices", &rider).await;
    assert!(!list.text.contains("push-token-secret"), "a token in the list: {}", list.text);
    let list = list.expect(200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|d| d["id"] != first["id"]), "the oldest was dropped: {list}");
    assert!(items.iter().all(|d| d["platform"] == "fcm" && d["created_at"].is_string()));
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["created_at", "id", "platform"]);

    // Another user's device, an unknown one, a malformed id: 404.
    let id = items[0]["id"].as_str().unwrap().to_owned();
    s.call(Method::DELETE, &format!("/v1/me/devices/{id}"), Some(&other), None).await.expect_error(404, "not_found");
    s.call(Method::DELETE, "/v1/me/devices/dev_nope", Some(&rider), None).await.expect_error(404, "not_found");
    s.call(Method::DELETE, &format!("/v1/me/devices/{id}"), Some(&rider), None).await.expect(204);
    s.call(Method::DELETE, &format!("/v1/me/devices/{id}"), Some(&rider), None).await.expect_error(404, "not_found");
    assert_eq!(s.get("/v1/me/devices", &rider).await.expect(200)["items"].as_array().unwrap().len(), 4);
    assert_eq!(s.get("/v1/me/devices", &other).await.expect(200)["items"], json!([]));

    // Bad bodies: 400, nothing registered.
    for bad in [
        json!({"platform": "sms", "token": "t"}),
        json!({"platform": "fcm", "token": ""}),
        json!({"platform": "fcm", "token": "has space"}),
        json!({"platform": "fcm", "token": "x".repeat(4097)}),
        json!({"platform": "fcm"}),
    ] {
        s.post("/v1/me/devices", &other, bad).await.expect_error(400, "invalid_request");
    }
    assert_eq!(s.get("/v1/me/devices", &other).await.expect(200)["items"], json!([]));
}

/// The notifications of `query`, polled until `done` holds of them (the worker runs
/// every 200 ms).
async fn notifications_until(s: &Server, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = s.get(&format!("/v1/admin/notifications{query}"), ADMIN).await.expect(200)["items"]
            .as_array()
            .unwrap()
            .clone();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("notifications{query} never got there: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_trip_notifies_its_rider_and_without_a_provider_the_item_fails_not_configured() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (rider_user, rider) = user(&s, "rider", 1).await;
    let (quiet_user, _) = user(&s, "rider", 3).await;
    device(&s, &rider, "rider-phone").await.expect(201);
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    let rider_id = rider_user["id"].as_str().unwrap();
    let items = notifications_until(&s, &format!("?user_id={rider_id}"), |items| {
        items.iter().any(|n| n["kind"] == "trip_accepted" && n["status"] == "failed")
    })
    .await;
    let accepted = items.iter().find(|n| n["kind"] == "trip_accepted").unwrap();
    assert_eq!(accepted["channel"], "push");
    assert_eq!(accepted["user_id"], rider_id);
    assert_eq!(accepted["attempts"], 1);
    assert_eq!(accepted["last_error"], "fcm not configured");
    assert!(accepted["id"].as_str().unwrap().starts_with("ntf_") && accepted["created_at"].is_string());
    let keys: Vec<&String> = accepted.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["attempts", "channel", "created_at", "id", "kind", "last_error", "status", "user_id"]);

    // Filters: by status, by another user (nobody without a device gets anything).
    let failed = notifications_until(&s, "?status=failed", |i| !i.is_empty()).await;
    assert!(failed.iter().all(|n| n["status"] == "failed"));
    let none = s.get(&format!("/v1/admin/notifications?user_id={}", quiet_user["id"].as_str().unwrap()), ADMIN).await;
    assert_eq!(none.expect(200)["items"], json!([]));
    s.get("/v1/admin/notifications?status=lost", ADMIN).await.expect_error(400, "invalid_request");
    s.get("/v1/admin/notifications?user_id=nobody", ADMIN).await.expect_error(400, "invalid_request");
    // Staff only.
    s.get("/v1/admin/notifications", &rider).await.expect_error(403, "forbidden");

    // Paginated newest first: one per page, then the next.
    let page = s.get("/v1/admin/notifications?limit=1", ADMIN).await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    if let Some(cursor) = page["next_cursor"].as_str() {
        let next = s.get(&format!("/v1/admin/notifications?limit=1&cursor={cursor}"), ADMIN).await.expect(200);
        assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);
    }

    // The metrics: nothing pending, one push failure at least.
    assert_eq!(s.metric("dispatch_notifications_pending").await, 0.0);
    assert_eq!(s.metric("dispatch_notifications_oldest_pending_age_seconds").await, 0.0);
    assert!(s.metric("dispatch_notifications_failed_total{channel=\"push\"}").await >= 1.0);
    assert_eq!(s.metric("dispatch_notifications_delivered_total{channel=\"push\"}").await, 0.0);
}
