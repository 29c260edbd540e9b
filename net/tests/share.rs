//! Black-box tests of API.md "The ride, as riders and drivers see it": the trip's `ref`
//! and `GET /v1/admin/trips?ref=`, share links (`POST`/`DELETE /v1/trips/{id}/share`, the
//! public `GET /v1/share/{token}`), `GET`/`PATCH /v1/me`, and a driver's `dispatchable`
//! with its reason; refs and links of archived trips and across a restart; the public
//! read's per-address limit. The 15-minute expiry after a trip ends needs a clock the harness cannot
//! move: the rule is pinned in the domain (`state/tests/shares.rs`); here the link's
//! `expires_at` is checked to be 15 minutes after the end.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use hyper::Method;
use serde_json::{Value, json};

use common::*;

/// Keys and values a shared view must never hold anywhere in it.
const PRIVATE_KEYS: &[&str] =
    &["phone", "rider", "rider_id", "first_name", "pickup_code", "id", "driver_id", "trip_id"];

/// Every key of `v`, at any depth, and every string value.
fn walk<'a>(v: &'a Value, keys: &mut Vec<&'a str>, strings: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                keys.push(k);
                walk(x, keys, strings);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, keys, strings)),
        Value::String(s) => strings.push(s),
        _ => {}
    }
}

#[track_caller]
fn assert_private(view: &Value, rider_name: &str, rider_phone: &str, code: &str) {
    let (mut keys, mut strings) = (Vec::new(), Vec::new());
    walk(view, &mut keys, &mut strings);
    for k in PRIVATE_KEYS {
        assert!(!keys.contains(k), "the shared view has `{k}`: {view}");
    }
    for s in strings {
        assert!(!s.starts_with("usr_") && !s.starts_with("trp_"), "an id in the shared view: {view}");
        assert!(
            !s.contains(rider_phone) && !s.contains(rider_name) && s != code,
            "the rider in the shared view: {view}"
        );
    }
}

async fn patch(s: &Server, path: &str, token: &str, body: Value) -> Reply {
    s.call(Method::PATCH, path, Some(token), Some(&body.to_string())).await
}

async fn delete(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::DELETE, path, Some(token), None).await
}

/// The public read of a share link (no token).
async fn shared(s: &Server, url: &str) -> Reply {
    s.call(Method::GET, url, None, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_s_ref_finds_it_in_any_case_with_or_without_the_dash() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let booked = create_trip(&s, &rider).await;
    let reference = booked["ref"].as_str().unwrap().to_owned();
    assert!(
        reference.len() == 7
            && reference.as_bytes()[3] == b'-'
            && reference
                .chars()
                .filter(|c| *c != '-')
                .all(|c| c.is_ascii_digit() || "ABCDEFGHJKMNPQRSTVWXYZ".contains(c)),
        "{reference}"
    );
    // The trip shows its ref to whoever sees it.
    assert_eq!(
        s.get(&format!("/v1/trips/{}", booked["id"].as_str().unwrap()), ADMIN).await.expect(200)["ref"],
        reference
    );
    let other = create_trip(&s, &rider).await;
    assert_ne!(other["ref"], booked["ref"]);

    for spelling in [
        reference.clone(),
        reference.to_lowercase(),
        reference.replace('-', ""),
        reference.to_lowercase().replace('-', ""),
    ] {
        let page = s.get(&format!("/v1/admin/trips?ref={spelling}"), ADMIN).await.expect(200);
        let ids: Vec<&Value> = page["items"].as_array().unwrap().iter().map(|t| &t["id"]).collect();
        assert_eq!(ids, [&booked["id"]], "{spelling}");
        assert_eq!(page["next_cursor"], Value::Null);
    }
    // Another status filters it out; a well-formed ref of no trip finds nothing.
    let page = s.get(&format!("/v1/admin/trips?ref={reference}&status=completed"), ADMIN).await.expect(200);
    assert_eq!(page["items"], json!([]));
    let free = if reference == "000-000" { "000-001" } else { "000-000" };
    if other["ref"] != free {
        assert_eq!(s.get(&format!("/v1/admin/trips?ref={free}"), ADMIN).await.expect(200)["items"], json!([]));
    }
    for bad in ["7KQ", "7KQ-2MU", "%20"] {
        let r = s.get(&format!("/v1/admin/trips?ref={bad}"), ADMIN).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], "ref", "{bad}");
    }
    // Riders do not search by reference.
    s.get(&format!("/v1/admin/trips?ref={reference}"), &rider).await.expect_error(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_shows_the_ride_but_never_the_rider_and_stops_when_revoked() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let vehicle =
        json!({"category": "economy", "plate": "CAI 101", "make": "Hyundai", "model": "Elantra", "color": "silver"});
    let body = json!({"role": "driver", "name": "Karim Adel", "phone": "+201000000101", "vehicle": vehicle});
    let created = s.post("/v1/admin/users", ADMIN, body).await.expect(201);
    let driver = created["token"].as_str().unwrap().to_owned();
    let at = json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}});
    s.post("/v1/driver/status", &driver, at).await.expect(200);
    let body = json!({"role": "rider", "name": "Amal Hassan", "phone": "+201000000102"});
    let rider = s.post("/v1/admin/users", ADMIN, body).await.expect(201)["token"].as_str().unwrap().to_owned();
    let (_, stranger) = user(&s, "rider", 3).await;

    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let code = trip["pickup_code"].as_str().unwrap().to_owned();
    let path = format!("/v1/trips/{id}/share");

    // Only its rider shares it: another rider 404 (as for the trip), a driver 403 (the role).
    s.post(&path, &stranger, json!({})).await.expect_error(404, "not_found");
    s.post(&path, &driver, json!({})).await.expect_error(403, "forbidden");
    delete(&s, &path, &stranger).await.expect_error(404, "not_found");

    let link = s.post(&path, &rider, json!({})).await.expect(201);
    let token = link["token"].as_str().unwrap().to_owned();
    assert_eq!(link["url"], format!("/v1/share/{token}"));
    assert_eq!(link["expires_at"], Value::Null, "open: the end is not known yet");
    let url = link["url"].as_str().unwrap().to_owned();

    // Searching: no driver, no position.
    let view = shared(&s, &url).await.expect(200);
    assert_eq!(
        (&view["status"], &view["driver"], &view["location"]),
        (&json!("searching"), &Value::Null, &Value::Null)
    );
    assert_eq!(view["eta"], Value::Null, "searching: nobody on the way");
    assert_private(&view, "Amal", "+201000000102", &code);

    // Accepted: the driver's first name, the car, where it is.
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    let view = shared(&s, &url).await.expect(200);
    assert_eq!(view["status"], "accepted");
    assert_eq!(view["driver"]["name"], "Karim");
    assert_eq!(view["driver"]["vehicle"]["plate"], "CAI 101");
    assert_eq!(view["driver"]["vehicle"]["make"], "Hyundai");
    assert_eq!(view["location"]["lat"], json!(HERE.0));
    assert!(view["location"]["at"].is_string());
    // The driver is at the pickup already: 0 s away, by the straight line (no router here).
    assert_eq!((&view["eta"]["pickup_s"], &view["eta"]["source"]), (&json!(0), &json!("straight_line")), "{view}");
    assert_private(&view, "Amal", "+201000000102", &code);
    assert!(!view.to_string().contains("+201000000101"), "no driver phone: {view}");

    // A second link works too; revoking ends both. A tampered token is unknown.
    let second = s.post(&path, &rider, json!({})).await.expect(201)["url"].as_str().unwrap().to_owned();
    shared(&s, &second).await.expect(200);
    let mut tampered = token.clone().into_bytes();
    tampered[79] = if tampered[79] == b'0' { b'1' } else { b'0' };
    shared(&s, &format!("/v1/share/{}", String::from_utf8(tampered).unwrap())).await.expect_error(404, "not_found");
    shared(&s, "/v1/share/nope").await.expect_error(404, "not_found");
    assert_eq!(delete(&s, &path, &rider).await.status, 204);
    shared(&s, &url).await.expect_error(404, "not_found");
    shared(&s, &second).await.expect_error(404, "not_found");

    // A link made during the ride outlives its end by 15 minutes; a finished trip is not shared.
    let third = s.post(&path, &rider, json!({})).await.expect(201)["url"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({})).await.expect(200);
    let view = shared(&s, &third).await.expect(200);
    assert_eq!((&view["status"], &view["location"]), (&json!("completed"), &Value::Null), "no position once it ended");
    let ended = dispatch_server::http::parse_rfc3339(done["ended_at"].as_str().unwrap(), "ended_at").unwrap();
    let expires = dispatch_server::http::parse_rfc3339(view["expires_at"].as_str().unwrap(), "expires_at").unwrap();
    assert_eq!(expires.millis_since(ended), 15 * 60 * 1000);
    s.post(&path, &rider, json!({})).await.expect_error(409, "invalid_transition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_has_at_most_five_live_links() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let id = create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/trips/{id}/share");
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(s.post(&path, &rider, json!({})).await.expect(201)["token"].as_str().unwrap().to_owned());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 5, "every link its own token");
    s.post(&path, &rider, json!({})).await.expect_error(409, "invalid_transition");
    assert_eq!(delete(&s, &path, &rider).await.status, 204);
    s.post(&path, &rider, json!({})).await.expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_reads_and_changes_with_each_field_checked() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (u, rider) = user(&s, "rider", 1).await;
    let me = s.get("/v1/me", &rider).await.expect(200);
    assert_eq!(me["id"], u["id"]);
    assert_eq!((&me["role"], &me["name"], &me["phone"]), (&json!("rider"), &u["name"], &u["phone"]));
    assert_eq!(
        (&me["email"], &me["language"], &me["default_payment_method"]),
        (&Value::Null, &json!("en"), &Value::Null)
    );
    assert_eq!(me["rating"], Value::Null);
    assert!(me.get("vehicle").is_none() && me.get("dispatchable").is_none(), "drivers only: {me}");

    for (body, param) in [
        (json!({"email": "amal@"}), "email"),
        (json!({"email": "amal@localhost"}), "email"),
        (json!({"email": "am al@example.com"}), "email"),
        (json!({"email": format!("{}@example.com", "a".repeat(250))}), "email"),
        (json!({"language": "english"}), "language"),
        (json!({"language": "en_US"}), "language"),
        (json!({"language": "ar-EG\u{7}"}), "language"),
        (json!({"name": ""}), "name"),
        (json!({"name": "A\u{0}"}), "name"),
        (json!({"default_payment_method": "cheque"}), "default_payment_method"),
        (json!({"nickname": "Ami"}), "nickname"),
    ] {
        let r = patch(&s, "/v1/me", &rider, body.clone()).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], param, "{body}: {}", r.text);
    }
    // Nothing of the refused bodies stuck.
    assert_eq!(s.get("/v1/me", &rider).await.expect(200), me);

    let body = json!({"name": "Amal Hassan", "email": "amal@example.com", "language": "ar-EG", "default_payment_method": "card"});
    let changed = patch(&s, "/v1/me", &rider, body).await.expect(200);
    assert_eq!((&changed["name"], &changed["email"]), (&json!("Amal Hassan"), &json!("amal@example.com")));
    assert_eq!((&changed["language"], &changed["default_payment_method"]), (&json!("ar-EG"), &json!("card")));
    assert_eq!(s.get("/v1/me", &rider).await.expect(200), changed);
    // Absent fields stay; null removes the optional ones.
    let cleared = patch(&s, "/v1/me", &rider, json!({"email": null, "default_payment_method": null})).await.expect(200);
    assert_eq!((&cleared["email"], &cleared["default_payment_method"]), (&Value::Null, &Value::Null));
    assert_eq!((&cleared["name"], &cleared["language"]), (&json!("Amal Hassan"), &json!("ar-EG")));
    // An empty change changes nothing.
    assert_eq!(patch(&s, "/v1/me", &rider, json!({})).await.expect(200), cleared);

    // The bootstrap admin has no user record; no token at all is 401.
    s.get("/v1/me", ADMIN).await.expect_error(404, "not_found");
    patch(&s, "/v1/me", ADMIN, json!({"name": "Root"})).await.expect_error(404, "not_found");
    s.call(Method::GET, "/v1/me", None, None).await.expect_error(401, "unauthorized");
}

/// The driver's record as staff see it, once `reason` shows (polled: presence reaches
/// the engine after the socket closes).
async fn driver_until(s: &Server, id: &str, reason: Value) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let d = s.get(&format!("/v1/admin/drivers/{id}"), ADMIN).await.expect(200);
        if d["not_dispatchable_because"] == reason {
            return d;
        }
        assert!(std::time::Instant::now() < deadline, "never {reason}: {d}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_sees_why_it_gets_no_offers() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (u, driver) = user(&s, "driver", 1).await;
    let id = u["id"].as_str().unwrap().to_owned();

    let me = s.get("/v1/me", &driver).await.expect(200);
    assert_eq!((&me["dispatchable"], &me["not_dispatchable_because"]), (&json!(false), &json!("offline")));
    assert_eq!(me["vehicle"]["plate"], "CAI 1");
    let staff = s.get(&format!("/v1/admin/drivers/{id}"), ADMIN).await.expect(200);
    assert_eq!((&staff["dispatchable"], &staff["not_dispatchable_because"]), (&json!(false), &json!("offline")));

    // Online without a position: nothing to dispatch from.
    let online = s.post("/v1/driver/status", &driver, json!({"status": "online"})).await.expect(200);
    assert_eq!(
        (&online["dispatchable"], &online["not_dispatchable_because"]),
        (&json!(false), &json!("stale_location"))
    );
    // With a fresh position: dispatchable.
    let at = json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}});
    let online = s.post("/v1/driver/status", &driver, at).await.expect(200);
    assert_eq!((&online["dispatchable"], &online["not_dispatchable_because"]), (&json!(true), &Value::Null));
    let me = s.get("/v1/me", &driver).await.expect(200);
    assert_eq!((&me["dispatchable"], &me["not_dispatchable_because"]), (&json!(true), &Value::Null));

    // A driver who uses the socket and dropped it is not offered trips, and is told why.
    let ws = s.ws(&driver).await;
    drop(ws);
    let d = driver_until(&s, &id, json!("socket_disconnected")).await;
    assert_eq!((&d["dispatchable"], &d["connected"]), (&json!(false), &json!(false)));
    assert_eq!(s.get("/v1/me", &driver).await.expect(200)["not_dispatchable_because"], "socket_disconnected");
    // And the round agrees: a trip at its door is not offered to it.
    let (_, rider) = user(&s, "rider", 2).await;
    let trip = create_trip(&s, &rider).await;
    assert_eq!(s.get("/v1/driver/offers", &driver).await.expect(200)["items"], json!([]), "{trip}");
    // Back on the socket, with a fresh position: dispatchable again.
    let _ws = s.ws(&driver).await;
    let at = json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}});
    s.post("/v1/driver/status", &driver, at).await.expect(200);
    let d = driver_until(&s, &id, Value::Null).await;
    assert_eq!((&d["dispatchable"], &d["connected"]), (&json!(true), &json!(true)));
}

/// The hot trips of `status` (`GET /v1/admin/stats` counts the view's).
async fn hot(s: &Server, status: &str) -> u64 {
    s.get("/v1/admin/stats", ADMIN).await.expect(200)["trips"][status].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_and_links_outlive_the_hot_state_and_a_restart() {
    let config = "[store]\ncheckpoint_every_records = 20\n";
    let mut s = Server::start(&[], Some(config));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let trip = create_trip(&s, &rider).await;
    let (id, reference) = (trip["id"].as_str().unwrap().to_owned(), trip["ref"].as_str().unwrap().to_owned());
    let url = s.post(&format!("/v1/trips/{id}/share"), &rider, json!({})).await.expect(201)["url"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(&format!("/v1/trips/{id}/cancel"), &rider, json!({"reason_code": "changed_mind"})).await.expect(200);
    // Records go by until a checkpoint wrote the cancelled trip and the writer archived it.
    let deadline = std::time::Instant::now() + WAIT;
    for n in 100.. {
        if hot(&s, "cancelled").await == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cancelled trip never left the hot state");
        user(&s, "rider", n).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let path = format!("/v1/admin/trips?ref={}", reference.to_lowercase());
    assert_eq!(s.get(&path, ADMIN).await.expect(200)["items"][0]["id"], id.as_str(), "found in the history");
    let view = shared(&s, &url).await.expect(200);
    assert_eq!(view["status"], "cancelled");
    assert!(view["expires_at"].is_string(), "{view}");

    // A restart replays and reads back the index and the links.
    s.sigterm();
    assert!(s.wait_exit().success());
    let data = s.data_dir();
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(&data, dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &[], Some(config));
    assert_eq!(s.get(&path, ADMIN).await.expect(200)["items"][0]["id"], id.as_str());
    assert_eq!(shared(&s, &url).await.expect(200)["status"], "cancelled");
    assert_eq!(delete(&s, &format!("/v1/trips/{id}/share"), &rider).await.status, 204);
    shared(&s, &url).await.expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_read_is_limited_per_address_like_every_request_without_a_token() {
    let s = Server::start(&[], Some("[limits]\nip_per_min = 5\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let id = create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
    let url = s.post(&format!("/v1/trips/{id}/share"), &rider, json!({})).await.expect(201)["url"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        shared(&s, &url).await.expect(200);
    }
    let r = shared(&s, &url).await;
    r.expect_error(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // Unknown tokens are counted too (no free guessing).
    shared(&s, "/v1/share/0000").await.expect_error(429, "rate_limited");
}
