//! The audit trail (API.md v1.1 "Back office": `GET /v1/admin/audit`) against the real
//! binary: staff actions — a driver suspended, a trip cancelled, one refunded, a zone created, settings
//! changed — each recorded once with its actor, role, action, target and the request's
//! `X-Request-Id`; queried by actor, target and action, paged; a replayed idempotency key
//! records nothing again; riders' own commands are not staff actions; entries survive
//! checkpoints (they move to the history) and a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use hyper::Method;
use serde_json::{Value, json};

/// Checkpoints every few records, so the entries leave the hot state for the history.
const CONFIG: &str = "[store]\ncheckpoint_every_records = 10\n";

async fn audit(s: &Server, query: &str) -> Vec<Value> {
    let page = s.get(&format!("/v1/admin/audit{query}"), ADMIN).await.expect(200);
    page["items"].as_array().unwrap().clone()
}

fn actions(items: &[Value]) -> Vec<&str> {
    items.iter().map(|e| e["action"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_actions_are_recorded_once_queryable_and_survive_checkpoints_and_a_restart() {
    let mut s = Server::start(&[], Some(CONFIG));
    // A zone created by the bootstrap admin, with a request id of the caller's.
    let zone_body = cairo_zone().to_string();
    let r = s
        .call_with(Method::POST, "/v1/admin/zones", Some(ADMIN), Some(&zone_body), &[("x-request-id", "req-zone-1")])
        .await;
    let zone_id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.status, 201);
    let (rider_user, rider) = user(&s, "rider", 1).await;
    let (driver_user, driver) = online_driver(&s, 2, HERE).await;
    let driver_id = driver_user["id"].as_str().unwrap().to_owned();
    let (support_user, support) = user(&s, "support", 3).await;
    let support_id = support_user["id"].as_str().unwrap().to_owned();

    // A support agent cancels a trip; an admin suspends a driver (under an idempotency
    // key, sent twice: one entry); the rider's own booking is no staff action.
    let trip = create_trip(&s, &rider).await;
    let trip_id = trip["id"].as_str().unwrap().to_owned();
    let cancel = s.post(&format!("/v1/admin/trips/{trip_id}/cancel"), &support, json!({"reason": "duplicate"})).await;
    let cancel_request_id = cancel.header("x-request-id").unwrap().to_owned();
    cancel.expect(200);
    // An admin refunds part of a finished trip.
    let done = create_trip(&s, &rider).await;
    let done_id = done["id"].as_str().unwrap().to_owned();
    let code = done["pickup_code"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{done_id}/accept"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{done_id}/arrived"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{done_id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    s.post(&format!("/v1/trips/{done_id}/complete"), &driver, json!({"distance_m": 3000})).await.expect(200);
    let refund = json!({"amount_minor": 100, "reason": "detour"});
    s.post(&format!("/v1/admin/trips/{done_id}/refund"), ADMIN, refund).await.expect(201);
    let suspend = json!({"reason": "documents expired"}).to_string();
    let path = format!("/v1/admin/drivers/{driver_id}/suspend");
    let key = [("idempotency-key", "suspend-1")];
    let first = s.call_with(Method::POST, &path, Some(ADMIN), Some(&suspend), &key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let again = s.call_with(Method::POST, &path, Some(ADMIN), Some(&suspend), &key).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (200, Some("true")));
    let patch = json!({"dispatch": {"offer_ttl_s": 15, "mode": "batched", "learning_idle_pct": 50}}).to_string();
    let set = s.call(Method::PATCH, "/v1/admin/settings", Some(ADMIN), Some(&patch)).await;
    assert_eq!(set.status, 200, "{}", set.text);
    let in_force: Value = serde_json::from_str(&set.text).unwrap();
    assert_eq!(in_force["dispatch"]["mode"], "batched");
    assert_eq!(
        (in_force["dispatch"]["batch_window_ms"].as_u64(), in_force["dispatch"]["learning_idle_pct"].as_u64()),
        (Some(4000), Some(50)),
        "the default window (DispatchRules::DEFAULT_BATCH_WINDOW_MS) and the idle weight set"
    );
    // A mode the API does not know is refused by the schema, and changes nothing.
    let bad = json!({"dispatch": {"mode": "random"}}).to_string();
    assert_eq!(s.call(Method::PATCH, "/v1/admin/settings", Some(ADMIN), Some(&bad)).await.status, 400);
    // A refused staff action records nothing.
    s.post("/v1/admin/trips/trp_nope/cancel", ADMIN, json!({})).await.expect_error(404, "not_found");

    let all = audit(&s, "").await;
    assert_eq!(
        actions(&all),
        [
            "settings.update",
            "driver.suspend",
            "trip.refund",
            "trip.cancel",
            "user.create",
            "user.create",
            "user.create",
            "zone.create"
        ],
        "newest first, once each: {all:?}"
    );
    let zone = &all[7];
    assert_eq!(zone["target_id"], zone_id.as_str());
    assert_eq!(zone["request_id"], "req-zone-1");
    assert_eq!((zone["actor_id"].as_str(), zone["actor_role"].as_str()), (Some("admin"), Some("admin")));
    let cancelled = &all[3];
    assert_eq!(cancelled["actor_id"], support_id.as_str());
    assert_eq!(cancelled["actor_role"], "support");
    assert_eq!(cancelled["target_id"], trip_id.as_str());
    assert_eq!(cancelled["request_id"], cancel_request_id.as_str(), "the answer's X-Request-Id");
    assert_eq!(cancelled["details"]["reason"], "duplicate");
    assert!(cancelled["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(all[1]["details"]["reason"], "documents expired");
    assert_eq!(all[0]["target_id"], "settings");
    assert_eq!(
        all[0]["details"],
        json!({"dispatch.offer_ttl_s": 15, "dispatch.mode": "batched", "dispatch.learning_idle_pct": 50})
    );
    let refunded = &all[2];
    assert_eq!(refunded["target_id"], done_id.as_str());
    assert_eq!(refunded["details"], json!({"amount_minor": 100, "reason": "detour"}));
    assert_eq!(actions(&audit(&s, &format!("?target_id={done_id}")).await), ["trip.refund"]);
    assert!(all.iter().all(|e| e["target_id"] != rider_user["id"] || e["action"] == "user.create"));

    // By actor, target and action; two filters at once; paged.
    assert_eq!(actions(&audit(&s, &format!("?actor_id={support_id}")).await), ["trip.cancel"]);
    assert_eq!(actions(&audit(&s, &format!("?target_id={driver_id}")).await), ["driver.suspend", "user.create"]);
    assert_eq!(audit(&s, "?action=user.create").await.len(), 3);
    assert_eq!(
        actions(&audit(&s, &format!("?actor_id=admin&target_id={driver_id}")).await),
        ["driver.suspend", "user.create"]
    );
    assert!(audit(&s, "?actor_id=nobody").await.is_empty());
    s.get("/v1/admin/audit?action=", ADMIN).await.expect_error(400, "invalid_request");
    s.get("/v1/admin/audit", &support).await.expect_error(403, "forbidden");
    let paged = page_through(&s, "?limit=2").await;
    assert_eq!(paged, all, "the pages together are the whole trail, once each");

    // Enough records for checkpoints: the entries move to the history and read the same.
    for n in 0..6 {
        let body = json!({"reason": format!("r{n}")});
        let action = if n % 2 == 0 { "unsuspend" } else { "suspend" };
        s.post(&format!("/v1/admin/drivers/{driver_id}/{action}"), ADMIN, body).await.expect(200);
    }
    let before = page_through(&s, "?limit=3").await;
    assert_eq!(before.len(), 14);
    assert_eq!(before[6..], all[..], "the older entries as they were");
    assert_eq!(page_through(&s, &format!("?target_id={driver_id}&limit=2")).await.len(), 8);

    // A restart reads the same trail back (from the checkpoint's history and the log).
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], Some(CONFIG));
    assert_eq!(page_through(&s2, "?limit=4").await, before);
    assert_eq!(page_through(&s2, "?action=driver.unsuspend&limit=1").await.len(), 3);
    // New entries go on after the old ones.
    s2.post(&format!("/v1/admin/drivers/{driver_id}/unsuspend"), ADMIN, json!({})).await.expect(200);
    let newest = audit(&s2, "?limit=1").await;
    assert_eq!(actions(&newest), ["driver.unsuspend"]);
    assert_eq!(audit(&s2, "").await.len(), 15);
}

/// Every entry of a query, following `next_cursor`.
async fn page_through(s: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let page = s.get(&format!("/v1/admin/audit{q}"), ADMIN).await.expect(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("the pages never ended");
}
