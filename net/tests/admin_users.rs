//! Staff's users through a real `dispatchd` (API.md "Back office", issue 20: U): search by
//! a name prefix and by a phone suffix, paging, the role filter, a user with a driver's
//! `stats` after an offer and an accept, an edit; a block (a blocked rider's booking is
//! `403 blocked`, a blocked driver cannot go online) and an unblock; an erasure refused
//! while a trip is open, then done: the user answers with its fields replaced, its
//! positions gone from the trip's trail, its documents gone from disk, its chat replaced,
//! its phone free to sign up again; and all of it after a restart; an erasure a crash cut
//! short resumes after the restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

async fn make_user(s: &Server, role: &str, name: &str, phone: &str) -> (String, String) {
    let mut body = json!({"role": role, "name": name, "phone": phone});
    if role == "driver" {
        body["vehicle"] = json!({"category": "economy", "plate": "CAI 1"});
    }
    let v = s.post("/v1/admin/users", ADMIN, body).await.expect(201);
    (v["user"]["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
}

fn online() -> Value {
    json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}})
}

/// Waits until `done` holds of what `get` answers.
async fn until(s: &Server, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = s.get(path, ADMIN).await.expect(200);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_search_page_filter_read_and_edit_users_with_drivers_stats() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (amal, _) = make_user(&s, "rider", "Amal Hassan", "+201001110001").await;
    let (amal2, _) = make_user(&s, "rider", "amal  Zaki", "+201001114567").await;
    let (_, rider) = make_user(&s, "rider", "Omar", "+201009994567").await;
    let (driver, driver_token) = make_user(&s, "driver", "Émile Driver", "+201002220002").await;

    // A name prefix, in any case; a phone's last digits (with a `+` or without).
    let page = s.get("/v1/admin/users?q=AMAL", ADMIN).await.expect(200);
    let mut found = ids(&page);
    found.sort();
    let mut want = vec![amal.clone(), amal2.clone()];
    want.sort();
    assert_eq!(found, want, "{page}");
    assert_eq!(page["items"][0]["status"], "active");
    assert_eq!(ids(&s.get("/v1/admin/users?q=amal%20z", ADMIN).await.expect(200)), vec![amal2.clone()]);
    assert_eq!(ids(&s.get("/v1/admin/users?q=%C3%89mile", ADMIN).await.expect(200)), vec![driver.clone()]);
    let by_phone = s.get("/v1/admin/users?q=14567", ADMIN).await.expect(200);
    assert_eq!(ids(&by_phone), vec![amal2.clone()]);
    assert_eq!(ids(&s.get("/v1/admin/users?q=%2B4567", ADMIN).await.expect(200)).len(), 2, "two phones end in 4567");
    s.get("/v1/admin/users?q=456", ADMIN).await.expect_error(400, "invalid_request");
    s.get("/v1/admin/users?status=gone", ADMIN).await.expect_error(400, "invalid_request");
    s.get("/v1/admin/users?cursor=nonsense", ADMIN).await.expect_error(400, "invalid_request");

    // Newest first, two a page, every user once; the role filter.
    let mut seen = Vec::new();
    let mut path = "/v1/admin/users?limit=2".to_owned();
    loop {
        let page = s.get(&path, ADMIN).await.expect(200);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/admin/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], driver, "newest first");
    assert_eq!(ids(&s.get("/v1/admin/users?role=driver", ADMIN).await.expect(200)), vec![driver.clone()]);
    // A search with a role.
    assert_eq!(ids(&s.get("/v1/admin/users?q=4567&role=rider&limit=1", ADMIN).await.expect(200)).len(), 1);

    // An offer and an accept show in the driver's stats.
    s.post("/v1/driver/status", &driver_token, online()).await.expect(200);
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/accept"), &driver_token, json!({})).await.expect(200);
    let u = s.get(&format!("/v1/admin/users/{driver}"), ADMIN).await.expect(200);
    let stats = &u["stats"];
    assert_eq!((stats["offers"].as_u64(), stats["accepted"].as_u64()), (Some(1), Some(1)), "{u}");
    assert_eq!((stats["acceptance_rate_bps"].as_u64(), stats["cancel_rate_bps"].as_u64()), (Some(10_000), Some(0)));
    assert_eq!(stats["rating"], Value::Null);
    assert!(stats["online_s_7d"].is_u64());
    let d = s.get(&format!("/v1/admin/drivers/{driver}"), ADMIN).await.expect(200);
    assert_eq!(d["stats"]["accepted"], 1, "{d}");
    assert!(s.get(&format!("/v1/admin/users/{amal}"), ADMIN).await.expect(200).get("stats").is_none());

    // An edit, by the rules of creation; the search follows it.
    let patch = json!({"name": "Amira Hassan", "email": "amira@example.com"}).to_string();
    let path = format!("/v1/admin/users/{amal}");
    let u = s.call(Method::PATCH, &path, Some(ADMIN), Some(&patch)).await.expect(200);
    assert_eq!((u["name"].as_str(), u["email"].as_str()), (Some("Amira Hassan"), Some("amira@example.com")));
    assert_eq!(ids(&s.get("/v1/admin/users?q=amir", ADMIN).await.expect(200)), vec![amal.clone()]);
    assert_eq!(ids(&s.get("/v1/admin/users?q=amal", ADMIN).await.expect(200)), vec![amal2.clone()]);
    let r = s.call(Method::PATCH, &path, Some(ADMIN), Some(r#"{"nickname":"x"}"#)).await;
    r.expect_error(400, "invalid_request");
    let r = s.call(Method::PATCH, &path, Some(ADMIN), Some(r#"{"vehicle":{"category":"economy","plate":"X"}}"#)).await;
    r.expect_error(400, "invalid_request");
    let bad_category = json!({"vehicle": {"category": "helicopter", "plate": "X"}}).to_string();
    let r = s.call(Method::PATCH, &format!("/v1/admin/users/{driver}"), Some(ADMIN), Some(&bad_category)).await;
    r.expect_error(400, "invalid_request");
    s.get("/v1/admin/users/usr_0000000000000001", ADMIN).await.expect_error(404, "not_found");
    // Riders are not staff.
    s.get("/v1/admin/users", &rider).await.expect_error(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_rider_cannot_book_and_a_blocked_driver_cannot_go_online() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (rider_id, rider) = make_user(&s, "rider", "Rana", "+201003330003").await;
    let (driver_id, driver) = make_user(&s, "driver", "Dina", "+201003330004").await;
    s.post("/v1/driver/status", &driver, online()).await.expect(200);

    let u = s.post(&format!("/v1/admin/users/{rider_id}/block"), ADMIN, json!({"reason": "fraud"})).await.expect(200);
    assert_eq!((u["status"].as_str(), u["blocked"]["reason"].as_str()), (Some("blocked"), Some("fraud")));
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});
    s.post("/v1/trips", &rider, body.clone()).await.expect_error(403, "blocked");
    assert_eq!(ids(&s.get("/v1/admin/users?status=blocked", ADMIN).await.expect(200)), vec![rider_id.clone()]);
    let u = s.post(&format!("/v1/admin/users/{rider_id}/unblock"), ADMIN, json!({})).await.expect(200);
    assert_eq!((u["status"].as_str(), &u["blocked"]), (Some("active"), &Value::Null));
    s.post("/v1/trips", &rider, body).await.expect(201);

    // The driver was offered that trip: blocked, it is offline and offered nothing.
    let u = s.post(&format!("/v1/admin/users/{driver_id}/block"), ADMIN, json!({"reason": "x"})).await.expect(200);
    assert_eq!(u["status"], "blocked");
    let d = s.get(&format!("/v1/admin/drivers/{driver_id}"), ADMIN).await.expect(200);
    assert_eq!((d["availability"].as_str(), d["suspended"].as_bool()), (Some("offline"), Some(true)), "{d}");
    s.post("/v1/driver/status", &driver, online()).await.expect_error(403, "forbidden");
    s.post(&format!("/v1/admin/users/{driver_id}/unblock"), ADMIN, json!({})).await.expect(200);
    s.post("/v1/driver/status", &driver, online()).await.expect(200);
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR an erased applicant's photo";

async fn upload(s: &Server, token: &str, kind: &str, bytes: &[u8]) -> u16 {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::PUT)
        .uri(format!("/v1/driver/application/documents/{kind}"))
        .header("host", s.addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "image/png")
        .body(Full::new(Bytes::from(bytes.to_vec())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

fn documents_on_disk(s: &Server) -> usize {
    std::fs::read_dir(s.data_dir().join("documents"))
        .map_or(0, |d| d.filter_map(Result::ok).filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_waits_for_the_open_trip_then_removes_the_personal_data_everywhere_and_survives_a_restart() {
    // Checkpoints every 10 records: the finished trip moves to the history (its chat
    // erased there by the eraser), and the state comes back from a checkpoint.
    let config = Some("[store]\ncheckpoint_every_records = 10\n");
    let mut s = Server::start(&[], config);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = make_user(&s, "rider", "Rami", "+201004440001").await;
    let driver_phone = "+201004440002";
    let (driver_id, driver) = make_user(&s, "driver", "Hoda Driver", driver_phone).await;
    s.post("/v1/driver/status", &driver, online()).await.expect(200);
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/messages"), &driver, json!({"text": "I am in a white car"})).await.expect(201);
    s.post(&format!("/v1/trips/{id}/messages"), &rider, json!({"text": "ok"})).await.expect(201);
    // Open trip: refused.
    s.post(&format!("/v1/admin/users/{driver_id}/erase"), ADMIN, json!({}))
        .await
        .expect_error(409, "invalid_transition");
    for i in 1..=4 {
        let at = json!({"lat": HERE.0 + 0.000_01 * f64::from(i), "lng": HERE.1});
        let r = s.post("/v1/driver/location", &driver, at).await;
        assert_eq!(r.status, 204, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    let code = trip["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({})).await.expect(200);
    let trail = format!("/v1/admin/trips/{id}/trail");
    until(&s, &trail, "the trail never reached the history", |v| !v["items"].as_array().unwrap().is_empty()).await;
    s.post("/v1/driver/status", &driver, json!({"status": "offline"})).await.expect(200);

    // An applicant with a document on disk.
    let applicant_phone = "+201004440003";
    let (applicant, applicant_user) = s.sign_in(applicant_phone, "driver").await;
    assert_eq!(upload(&s, &applicant, "photo", PNG).await, 201);
    assert_eq!(documents_on_disk(&s), 1);
    let applicant_id = applicant_user["id"].as_str().unwrap().to_owned();

    // Erased: the personal fields are replaced at once.
    let u = s.post(&format!("/v1/admin/users/{driver_id}/erase"), ADMIN, json!({})).await.expect(200);
    assert_eq!((u["name"].as_str(), u["phone"].as_str(), &u["email"]), (Some("Erased user"), Some(""), &Value::Null));
    assert_eq!(u["status"], "erased");
    assert!(u["erased_at"].is_string());
    s.get("/v1/me", &driver).await.expect_error(401, "unauthorized");
    s.post(&format!("/v1/admin/users/{applicant_id}/erase"), ADMIN, json!({})).await.expect(200);
    // The rest follows: positions, documents, chat.
    until(&s, &trail, "the positions stayed", |v| v["items"].as_array().unwrap().is_empty()).await;
    let deadline = Instant::now() + WAIT;
    while documents_on_disk(&s) > 0 {
        assert!(Instant::now() < deadline, "the document stayed on disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chat = until(&s, &format!("/v1/trips/{id}/messages"), "the chat stayed", |v| {
        v["items"].as_array().unwrap().iter().any(|m| m["text"] == "(erased)")
    })
    .await;
    let texts: Vec<&str> = chat["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"ok") && !texts.contains(&"I am in a white car"), "{chat}");
    assert!(ids(&s.get("/v1/admin/users?q=hoda", ADMIN).await.expect(200)).is_empty());
    assert!(ids(&s.get("/v1/admin/users?q=40002", ADMIN).await.expect(200)).is_empty());
    assert_eq!(ids(&s.get("/v1/admin/users?status=erased&role=driver", ADMIN).await.expect(200)).len(), 2);
    // The number signs up again, as someone new.
    let (_, newcomer) = s.sign_in(driver_phone, "driver").await;
    assert_ne!(newcomer["id"].as_str().unwrap(), driver_id);

    // After a restart: still erased, still found by nobody's name, the newcomer kept.
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &[], config);
    let u = s.get(&format!("/v1/admin/users/{driver_id}"), ADMIN).await.expect(200);
    assert_eq!((u["status"].as_str(), u["name"].as_str()), (Some("erased"), Some("Erased user")));
    assert!(ids(&s.get("/v1/admin/users?q=hoda", ADMIN).await.expect(200)).is_empty());
    assert_eq!(ids(&s.get("/v1/admin/users?q=40002", ADMIN).await.expect(200)), vec![newcomer["id"].as_str().unwrap()]);
    assert!(s.get(&trail, ADMIN).await.expect(200)["items"].as_array().unwrap().is_empty());
    assert_eq!(documents_on_disk(&s), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_cut_short_by_a_crash_resumes_after_the_restart_and_a_block_stays() {
    let mut s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (rider_id, _) = make_user(&s, "rider", "Badr", "+201005550002").await;
    s.post(&format!("/v1/admin/users/{rider_id}/block"), ADMIN, json!({"reason": "chargebacks"})).await.expect(200);
    let (applicant, user) = s.sign_in("+201005550001", "driver").await;
    assert_eq!(upload(&s, &applicant, "photo", PNG).await, 201);
    let id = user["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/admin/users/{id}/erase"), ADMIN, json!({})).await.expect(200);
    // Killed before the eraser's turn (it waits 2 s for the position tracker).
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    assert_eq!(documents_on_disk(&s), 1, "the crash came before the eraser");
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &[], None);
    let u = s.get(&format!("/v1/admin/users/{id}"), ADMIN).await.expect(200);
    assert_eq!(u["status"], "erased");
    let deadline = Instant::now() + WAIT;
    while documents_on_disk(&s) > 0 {
        assert!(Instant::now() < deadline, "the erasure did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let u = s.get(&format!("/v1/admin/users/{rider_id}"), ADMIN).await.expect(200);
    assert_eq!((u["status"].as_str(), u["blocked"]["reason"].as_str()), (Some("blocked"), Some("chargebacks")));
}
