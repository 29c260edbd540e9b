//! Runtime settings (API.md v1.1 "Back office": `GET`/`PATCH /v1/admin/settings`) against
//! the real binary: the configuration's values shown; a change applied at the next
//! dispatch round without a restart; bad values refused naming their key with nothing
//! changed; a zone's bidding switched off; a change that survives a restart; its audit entry.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use hyper::Method;
use serde_json::{Value, json};

const CONFIG: &str = "[dispatch]\noffers_per_round = 4\noffer_ttl_s = 20\n";

async fn patch(s: &Server, token: &str, body: Value) -> Reply {
    s.call(Method::PATCH, "/v1/admin/settings", Some(token), Some(&body.to_string())).await
}

/// Seconds since midnight of an RFC 3339 UTC time (`…THH:MM:SS.mmmZ`).
fn secs_of_day(t: &str) -> f64 {
    let clock = t.split('T').nth(1).unwrap().trim_end_matches('Z');
    let parts: Vec<f64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// The drivers (by token) that hold an offer of `trip` within the wait.
async fn offered(s: &Server, drivers: &[String], trip: &str, expect: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut offers = Vec::new();
        for d in drivers {
            let page = s.get("/v1/driver/offers", d).await.expect(200);
            offers.extend(page["items"].as_array().unwrap().iter().filter(|o| o["trip_id"] == trip).cloned());
        }
        if offers.len() >= expect || std::time::Instant::now() > deadline {
            return offers;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_change_at_once_are_checked_whole_and_survive_a_restart() {
    let mut s = Server::start(&[], Some(CONFIG));
    let zone = s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let zone_id = zone["id"].as_str().unwrap().to_owned();
    assert_eq!(zone["bidding"], true, "a zone takes bidding trips by default");
    // The configuration's values.
    let got = s.get("/v1/admin/settings", ADMIN).await.expect(200);
    assert_eq!(got["dispatch"]["offers_per_round"], 4);
    assert_eq!(got["dispatch"]["offer_ttl_s"], 20);
    assert_eq!(got["dispatch"]["timeout_s"], 120);
    assert_eq!(
        got["zones"][&zone_id],
        json!({"bidding": true, "surge": {"enabled": false, "max_bps": 10000}, "mode": "city"})
    );
    // Staff without the rights: support may neither read nor change them.
    let (_, support) = user(&s, "support", 90).await;
    s.get("/v1/admin/settings", &support).await.expect_error(403, "forbidden");
    patch(&s, &support, json!({"dispatch": {"offer_ttl_s": 5}})).await.expect_error(403, "forbidden");

    let (_, rider) = user(&s, "rider", 1).await;
    let mut drivers = Vec::new();
    for n in 0..3 {
        drivers.push(online_driver(&s, 10 + n, (HERE.0 + 0.001 * f64::from(n), HERE.1)).await.1);
    }
    // Before: every driver near is offered the trip (4 a round).
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    assert_eq!(offered(&s, &drivers, &id, 3).await.len(), 3);
    s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({})).await.expect(200);

    // Bad values: 400 naming the key, nothing changed.
    let bad = patch(&s, ADMIN, json!({"dispatch": {"offers_per_round": 0, "offer_ttl_s": 7}})).await;
    bad.expect_error(400, "invalid_request");
    assert_eq!(bad.json["error"]["param"], "dispatch.offers_per_round", "{}", bad.text);
    let bad = patch(&s, ADMIN, json!({"dispatch": {"offers_per_round": 1, "schedule_lead_s": 5000}})).await;
    assert_eq!(bad.json["error"]["param"], "dispatch.schedule_lead_s", "{}", bad.text);
    let bad = patch(&s, ADMIN, json!({"dispatch": {"offer_ttl": 5}})).await;
    bad.expect_error(400, "invalid_request");
    let bad = patch(&s, ADMIN, json!({"zones": {"zon_nope": {"bidding": false}}})).await;
    bad.expect_error(400, "invalid_request");
    assert_eq!(bad.json["error"]["param"], "zones.zon_nope", "{}", bad.text);
    let bad = patch(&s, ADMIN, json!({"zones": {&zone_id: {"surge": {"enabled": true, "max_bps": 5}}}})).await;
    assert_eq!(bad.json["error"]["param"], format!("zones.{zone_id}.surge.max_bps"), "{}", bad.text);
    assert_eq!(s.get("/v1/admin/settings", ADMIN).await.expect(200), got, "nothing changed");

    // A change: answered as now in force, used by the next round (no restart).
    let now = patch(&s, ADMIN, json!({"dispatch": {"offers_per_round": 1, "offer_ttl_s": 7}})).await.expect(200);
    assert_eq!(
        (now["dispatch"]["offers_per_round"].clone(), now["dispatch"]["offer_ttl_s"].clone()),
        (json!(1), json!(7))
    );
    assert_eq!(now["dispatch"]["timeout_s"], 120, "keys not named stay");
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let offers = offered(&s, &drivers, &id, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let offers_later = offered(&s, &drivers, &id, 1).await;
    assert_eq!((offers.len(), offers_later.len()), (1, 1), "one driver a round: {offers_later:?}");
    let ttl =
        secs_of_day(offers[0]["expires_at"].as_str().unwrap()) - secs_of_day(trip["created_at"].as_str().unwrap());
    assert!((6.5..=7.5).contains(&ttl), "the offer lapses after the new TTL: {ttl} s");
    s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({})).await.expect(200);

    // Bidding off in the zone: a booking naming its price is refused about `bid`.
    // (and the zone batches on its own; a mode that is none of the three is refused)
    let bad = patch(&s, ADMIN, json!({"zones": {&zone_id: {"mode": "fastest"}}})).await;
    bad.expect_error(400, "invalid_request");
    let now = patch(&s, ADMIN, json!({"zones": {&zone_id: {"bidding": false, "mode": "batched"}}})).await.expect(200);
    assert_eq!(now["zones"][&zone_id]["bidding"], false);
    assert_eq!(now["zones"][&zone_id]["mode"], "batched");
    assert_eq!(now["dispatch"]["offers_per_round"], 1, "the earlier change stays");
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash", "bid": {"amount_minor": 3000}});
    let refused = s.post("/v1/trips", &rider, body).await;
    refused.expect_error(400, "invalid_request");
    assert_eq!(refused.json["error"]["param"], "bid", "{}", refused.text);
    let zones = s.get("/v1/zones", &rider).await.expect(200);
    assert_eq!(zones["items"][0]["bidding"], false);

    // The audit entry of a change.
    let audit = s.get("/v1/admin/audit?action=settings.update", ADMIN).await.expect(200);
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "two changes applied, the refused ones none: {audit}");
    assert_eq!(items[0]["target_id"], "settings");
    assert_eq!(items[0]["details"][format!("zones.{zone_id}.bidding")], false);
    assert_eq!(items[0]["details"][format!("zones.{zone_id}.mode")], "batched");
    assert_eq!(items[1]["details"]["dispatch.offers_per_round"], 1);

    // A restart with the same configuration keeps the runtime change.
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], Some(CONFIG));
    let after = s2.get("/v1/admin/settings", ADMIN).await.expect(200);
    assert_eq!(after["dispatch"]["offers_per_round"], 1, "{after}");
    assert_eq!(after["dispatch"]["offer_ttl_s"], 7);
    assert_eq!(after["dispatch"]["timeout_s"], 120);
    assert_eq!(after["zones"][&zone_id]["bidding"], false);
    assert_eq!(after["zones"][&zone_id]["mode"], "batched", "the zone's own mode survives the restart");
    let back = patch(&s2, ADMIN, json!({"zones": {&zone_id: {"mode": "city"}}})).await.expect(200);
    assert_eq!(back["zones"][&zone_id]["mode"], "city");
}
