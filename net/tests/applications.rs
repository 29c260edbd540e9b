//! Drivers' applications through a real `dispatchd` (API.md "Drivers: onboarding"): a
//! driver's first sign-in opens an applicant who cannot go online (`403 not_approved`);
//! its details, its documents (a PNG, a JPEG and a PDF are taken; a text file sent as
//! `image/png` is `422 unsupported_media_type` with nothing stored; a body over 5 MiB is
//! `413`), submission naming what is missing, staff's list and download (an attachment,
//! `nosniff`, its sniffed type; a file gone from disk is a clean `500`), approval and then
//! going online; an expired licence (`403 document_expired`, seen through the hidden
//! `--clock-offset-s`); a restart and `dispatchd backup`/`restore` keep the application
//! and its files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake png body";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF fake jpeg body";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n";

/// `PUT` of raw bytes (a document upload), with the `Content-Type` the client claims.
async fn put_raw(s: &Server, path: &str, token: &str, body: Vec<u8>, content_type: &str) -> Reply {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header("host", s.addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, json, text: String::from_utf8_lossy(&bytes).into_owned(), body: bytes }
}

/// A `PUT` of a document declared one byte over 5 MiB, of which only the first bytes are
/// sent: the server's whole answer, as text.
async fn oversized_upload(s: &Server, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "PUT /v1/driver/application/documents/photo HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: image/png\r\ncontent-length: {}\r\n\r\n",
        s.addr,
        5 * 1024 * 1024 + 1
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(PNG).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, sock.read(&mut buf)).await.expect("no answer in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&answer).contains("payload_too_large") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn upload(s: &Server, token: &str, kind: &str, bytes: &[u8], content_type: &str) -> Reply {
    put_raw(s, &format!("/v1/driver/application/documents/{kind}"), token, bytes.to_vec(), content_type).await
}

/// `YYYY-MM-DD` of the UTC day `days` from today.
fn day_from_today(days: i64) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // Howard Hinnant's civil_from_days.
    let z = secs.div_euclid(86_400) + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn details(expires_on: &str) -> Value {
    json!({"name": "Karim", "vehicle": {"category": "economy", "plate": "ABC 123", "make": "Hyundai",
        "model": "Elantra", "color": "silver", "year": 2019},
        "license": {"number": "L-123456", "expires_on": expires_on}})
}

async fn put_details(s: &Server, token: &str, body: &Value) -> Reply {
    s.call(Method::PUT, "/v1/driver/application", Some(token), Some(&body.to_string())).await
}

/// A new applicant (signed in by OTP) whose application has every detail and document,
/// submitted. Returns (token, user id).
async fn submitted_applicant(s: &Server, phone: &str, expires_on: &str) -> (String, String) {
    let (token, user) = s.sign_in(phone, "driver").await;
    put_details(s, &token, &details(expires_on)).await.expect(200);
    for (kind, bytes) in [
        ("license_front", PNG),
        ("license_back", PNG),
        ("id_card", JPEG),
        ("vehicle_registration", PDF),
        ("photo", JPEG),
    ] {
        upload(s, &token, kind, bytes, "application/octet-stream").await.expect(201);
    }
    s.post("/v1/driver/application/submit", &token, json!({})).await.expect(200);
    (token, user["id"].as_str().unwrap().to_owned())
}

fn online() -> Value {
    json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}})
}

fn documents_on_disk(s: &Server) -> Vec<String> {
    match std::fs::read_dir(s.data_dir().join("documents")) {
        Err(_) => Vec::new(),
        Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_uploads_submits_is_approved_and_goes_online() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (token, me) = s.sign_in("+201099990001", "driver").await;
    assert_eq!((me["role"].as_str(), me["status"].as_str()), (Some("driver"), Some("applicant")));
    let id = me["id"].as_str().unwrap().to_owned();
    // Not approved: cannot go online, over HTTP or by reporting a position.
    s.post("/v1/driver/status", &token, online()).await.expect_error(403, "not_approved");
    s.post("/v1/driver/location", &token, json!({"lat": HERE.0, "lng": HERE.1}))
        .await
        .expect_error(403, "not_approved");
    let me = s.get("/v1/me", &token).await.expect(200);
    assert_eq!(
        (me["dispatchable"].as_bool(), me["not_dispatchable_because"].as_str()),
        (Some(false), Some("not_approved"))
    );

    // Details: every field checked, with the field named.
    let mut bad = details("2030-01-01");
    bad["vehicle"]["year"] = json!(1900);
    let r = put_details(&s, &token, &bad).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["param"], "vehicle.year", "{}", r.text);
    let r = put_details(&s, &token, &details("2030-02-30")).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["param"], "license.expires_on", "{}", r.text);
    let r = put_details(&s, &token, &details("2001-01-01")).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["param"], "license.expires_on", "an expired licence: {}", r.text);
    let a = put_details(&s, &token, &details("2030-01-01")).await.expect(200);
    assert_eq!((a["status"].as_str(), a["license"]["expires_on"].as_str()), (Some("draft"), Some("2030-01-01")));

    // Submitting names everything missing.
    let r = s.post("/v1/driver/application/submit", &token, json!({})).await;
    r.expect_error(400, "invalid_request");
    let missing: Vec<&str> =
        r.json["error"]["details"].as_array().unwrap().iter().map(|d| d["param"].as_str().unwrap()).collect();
    assert_eq!(missing, ["license_front", "license_back", "id_card", "vehicle_registration", "photo"]);

    // A text file claiming to be a PNG: refused, nothing stored.
    let r = upload(&s, &token, "photo", b"hello, I am not a picture", "image/png").await;
    r.expect_error(422, "unsupported_media_type");
    assert!(documents_on_disk(&s).is_empty(), "{:?}", documents_on_disk(&s));
    // Over 5 MiB: 413, nothing stored. Refused by its declared length, before the body is
    // read (a client that sent all 5 MiB first would race the server's close: only the
    // body's first bytes are sent, as a client that waits for the answer would).
    let status_line = oversized_upload(&s, &token).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(status_line.contains("payload_too_large"), "{status_line}");
    assert!(documents_on_disk(&s).is_empty());
    // An unknown kind names nothing.
    upload(&s, &token, "selfie", PNG, "image/png").await.expect_error(404, "not_found");

    // The type is read from the bytes, whatever the header says.
    let d = upload(&s, &token, "license_front", PNG, "application/pdf").await.expect(201);
    assert_eq!((d["media_type"].as_str(), d["size"].as_u64()), (Some("image/png"), Some(PNG.len() as u64)));
    upload(&s, &token, "license_back", PNG, "image/png").await.expect(201);
    upload(&s, &token, "id_card", JPEG, "image/jpeg").await.expect(201);
    let d = upload(&s, &token, "vehicle_registration", PDF, "text/plain").await.expect(201);
    assert_eq!(d["media_type"], "application/pdf");
    upload(&s, &token, "photo", JPEG, "image/jpeg").await.expect(201);
    assert_eq!(documents_on_disk(&s).len(), 3, "stored once per content: {:?}", documents_on_disk(&s));
    let a = s.post("/v1/driver/application/submit", &token, json!({})).await.expect(200);
    assert_eq!(a["status"], "submitted");
    // Submitted: waiting for staff, no more edits.
    put_details(&s, &token, &details("2030-01-01")).await.expect_error(409, "invalid_transition");
    upload(&s, &token, "photo", PNG, "image/png").await.expect_error(409, "invalid_transition");

    // Staff read it; support may look but not decide.
    let (_, support) = user(&s, "support", 2).await;
    let list = s.get("/v1/admin/applications?status=submitted", &support).await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(s.get("/v1/admin/applications?status=approved", &support).await.expect(200)["items"], json!([]));
    let one = s.get(&format!("/v1/admin/applications/{id}"), &support).await.expect(200);
    assert_eq!(one["documents"]["vehicle_registration"]["media_type"], "application/pdf");
    s.get(&format!("/v1/admin/applications/{id}"), &token).await.expect_error(403, "forbidden");
    let file = s.get(&format!("/v1/admin/applications/{id}/documents/license_front"), &support).await;
    assert_eq!(file.status, 200);
    assert_eq!(&file.body[..], PNG);
    assert_eq!(file.header("content-type"), Some("image/png"));
    assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
    assert!(file.header("content-disposition").unwrap().starts_with("attachment"), "{:?}", file.headers);
    s.get(&format!("/v1/admin/applications/{id}/documents/license_front"), &token).await.expect_error(403, "forbidden");
    let approve = format!("/v1/admin/applications/{id}/approve");
    s.post(&approve, &support, json!({})).await.expect_error(403, "forbidden");

    // Approved: an ordinary driver, with the application's name and vehicle.
    let a = s.post(&approve, ADMIN, json!({"reason": "all good"})).await.expect(200);
    assert_eq!(a["status"], "approved");
    s.post(&approve, ADMIN, json!({})).await.expect_error(409, "invalid_transition");
    let me = s.get("/v1/me", &token).await.expect(200);
    assert_eq!((me["name"].as_str(), me["vehicle"]["plate"].as_str()), (Some("Karim"), Some("ABC 123")));
    let d = s.post("/v1/driver/status", &token, online()).await.expect(200);
    assert_eq!(d["availability"], "available");

    // A document gone from disk: a clean 500, logged, no panic.
    for name in documents_on_disk(&s) {
        std::fs::remove_file(s.data_dir().join("documents").join(name)).unwrap();
    }
    let r = s.get(&format!("/v1/admin/applications/{id}/documents/photo"), &support).await;
    r.expect_error(500, "internal");
    assert!(s.stderr().contains("missing or damaged"), "logged");
    s.get("/healthz", ADMIN).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_applicant_stays_offline_and_may_submit_again() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (token, id) = submitted_applicant(&s, "+201099990002", "2030-01-01").await;
    let a = s
        .post(&format!("/v1/admin/applications/{id}/reject"), ADMIN, json!({"reason": "blurry photo"}))
        .await
        .expect(200);
    assert_eq!((a["status"].as_str(), a["reason"].as_str()), (Some("rejected"), Some("blurry photo")));
    s.post("/v1/driver/status", &token, online()).await.expect_error(403, "not_approved");
    upload(&s, &token, "photo", PNG, "image/png").await.expect(201);
    s.post("/v1/driver/application/submit", &token, json!({})).await.expect(200);
    let list = s.get("/v1/admin/applications?status=submitted", ADMIN).await.expect(200);
    assert_eq!(list["items"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_licence_is_document_expired() {
    let mut s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    // Valid through tomorrow (UTC).
    let (token, id) = submitted_applicant(&s, "+201099990003", &day_from_today(1)).await;
    s.post(&format!("/v1/admin/applications/{id}/approve"), ADMIN, json!({})).await.expect(200);
    s.post("/v1/driver/status", &token, online()).await.expect(200);
    s.post("/v1/driver/status", &token, json!({"status": "offline"})).await.expect(200);
    s.sigterm();
    assert!(s.wait_exit().success());
    // Three days later, by the engine's clock.
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &["--clock-offset-s", "259200"], None);
    s.post("/v1/driver/status", &token, online()).await.expect_error(403, "document_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_and_a_backup_keep_the_application_and_its_documents() {
    // Checkpoints every 10 records: the applications come back from the checkpoint's state.
    let config = Some("[store]\ncheckpoint_every_records = 10\n");
    let mut s = Server::start(&[], config);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, id) = submitted_applicant(&s, "+201099990004", "2030-01-01").await;
    let before = s.get(&format!("/v1/admin/applications/{id}"), ADMIN).await.expect(200);
    s.sigterm();
    assert!(s.wait_exit().success());
    let backup = s.dir.path().join("backup");
    let restored = tempfile::tempdir().unwrap();
    let run = |args: &[&std::ffi::OsStr]| std::process::Command::new(dispatchd_bin()).args(args).output().unwrap();
    let out =
        run(&["backup".as_ref(), "--data-dir".as_ref(), s.data_dir().as_os_str(), "--to".as_ref(), backup.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(backup.join("documents")).unwrap().count(), 3, "the documents are in the backup");
    let data = restored.path().join("data");
    let out =
        run(&["restore".as_ref(), "--from".as_ref(), backup.as_os_str(), "--data-dir".as_ref(), data.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A server on the restored directory: the same application, and its files.
    let s2 = Server::start_in(restored, &[], config);
    let after = s2.get(&format!("/v1/admin/applications/{id}"), ADMIN).await.expect(200);
    assert_eq!(after, before);
    for (kind, bytes) in [("license_front", PNG), ("id_card", JPEG), ("vehicle_registration", PDF)] {
        let file = s2.get(&format!("/v1/admin/applications/{id}/documents/{kind}"), ADMIN).await;
        assert_eq!((file.status, &file.body[..]), (200, bytes), "{kind}");
    }
    s2.post(&format!("/v1/admin/applications/{id}/approve"), ADMIN, json!({})).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_is_not_approved_over_the_websocket_either() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (token, _) = s.sign_in("+201099990005", "driver").await;
    let mut ws = s.ws(&token).await;
    send(&mut ws, json!({"type": "location", "lat": HERE.0, "lng": HERE.1})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(e["code"], "not_approved", "{e}");
}

/// How many `licence_expiring` notifications the outbox holds for `user`.
async fn reminders(s: &Server, user: &str) -> usize {
    let page = s.get(&format!("/v1/admin/notifications?user_id={user}"), ADMIN).await.expect(200);
    page["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "licence_expiring").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_is_reminded_fourteen_days_before_its_licence_expires() {
    let mut s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (token, id) = submitted_applicant(&s, "+201099990006", &day_from_today(20)).await;
    s.post("/v1/me/devices", &token, json!({"platform": "fcm", "token": "fcm-token-6"})).await.expect(201);
    s.post(&format!("/v1/admin/applications/{id}/approve"), ADMIN, json!({})).await.expect(200);
    assert_eq!(reminders(&s, &id).await, 0, "20 days before: not yet");
    s.sigterm();
    assert!(s.wait_exit().success());
    // Eight days later by the engine's clock (12 days before expiry): reminded, once.
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &["--clock-offset-s", &(8 * 86_400).to_string()], None);
    let deadline = std::time::Instant::now() + WAIT;
    while reminders(&s, &id).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no licence_expiring notification");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(reminders(&s, &id).await, 1, "once per licence");
}
