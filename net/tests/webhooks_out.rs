//! Black-box tests of outbound webhooks (API.md "Notifications and outbound webhooks") on
//! a real `dispatchd` over loopback, against a receiver that checks every signature the
//! way an integrator would (`Dispatch-Signature`, HMAC-SHA256 over `"<t>.<body>"` with the
//! endpoint's secret): endpoints and their secret shown once, a trip's events delivered
//! in order, retries after `503` and `429`, a refusal failing the delivery, the delivery
//! log, a resend, and a delivery pending at a `kill -9` made after the restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_core::payment::{WebhookScheme, verify_webhook};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use common::*;

/// What the receiver got: the signature header, the body, and the status it answered.
#[derive(Debug, Clone)]
struct Got {
    signature: Option<String>,
    body: Value,
    raw: Vec<u8>,
    answered: u16,
}

/// A webhook receiver on `listener`: answers each request with the next status of
/// `script` (then `200`), `429`s with `Retry-After: 1`, and sends what it got on the
/// channel.
fn receiver(listener: tokio::net::TcpListener, script: Vec<u16>) -> mpsc::UnboundedReceiver<Got> {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (tx, script) = (tx.clone(), Arc::clone(&script));
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
                let header = |name: &str| {
                    head.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
                };
                let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                while got.len() < head_end + len {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let raw = got[head_end..head_end + len].to_vec();
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let extra = if status == 429 { "retry-after: 1\r\n" } else { "" };
                let resp = format!("HTTP/1.1 {status} X\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n");
                let _ = sock.write_all(resp.as_bytes()).await;
                let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                let _ = tx.send(Got { signature: header("dispatch-signature"), body, raw, answered: status });
            });
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("no delivery in time").expect("receiver gone")
}

/// Checks `got`'s signature under `secret` as an integrator would.
fn verified(got: &Got, secret: &str) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let secrets = [secret.as_bytes().to_vec()];
    verify_webhook(WebhookScheme::Timestamped, &secrets, got.signature.as_deref(), &got.raw, now).is_ok()
}

/// `GET path` as the admin until `done` holds of the answer (or [`WAIT`] passes).
async fn until(s: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = s.get(path, ADMIN).await.expect(200);
        if done(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never got there: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_endpoint(s: &Server, url: &str, events: &[&str]) -> Value {
    s.post("/v1/admin/webhook-endpoints", ADMIN, json!({"url": url, "events": events, "description": "test"}))
        .await
        .expect(201)
}

async fn ride(s: &Server, rider: &str, driver: &str) -> String {
    let trip = create_trip(s, rider).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/arrived"), driver, json!({})).await.expect(200);
    let code = trip["pickup_code"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/start"), driver, json!({"pickup_code": code})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/complete"), driver, json!({})).await.expect(200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trips_events_arrive_signed_in_order_through_retries_and_can_be_resent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/in", listener.local_addr().unwrap());
    // The first try answers 503, the second 429 (Retry-After: 1): the third is delivered.
    let mut rx = receiver(listener, vec![503, 429]);
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refusing_url = format!("http://{}/", refusing.local_addr().unwrap());
    let mut refused_rx = receiver(refusing, vec![400; 8]);

    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    // Bad endpoints change nothing.
    for (bad, why) in [("ftp://127.0.0.1/x", "scheme"), ("http://hooks.example.com/x", "http to a remote host")] {
        let r = s.post("/v1/admin/webhook-endpoints", ADMIN, json!({"url": bad, "events": ["*"]})).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], "url", "{why}");
    }
    let r = s.post("/v1/admin/webhook-endpoints", ADMIN, json!({"url": url, "events": ["trip.flown"]})).await;
    r.expect_error(400, "invalid_request");
    let (_, rider) = user(&s, "rider", 2).await;
    s.post("/v1/admin/webhook-endpoints", &rider, json!({"url": url, "events": ["*"]}))
        .await
        .expect_error(403, "forbidden");

    let made = create_endpoint(&s, &url, &["trip.*"]).await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");
    let endpoint = made["id"].as_str().unwrap().to_owned();
    let refusing_endpoint = create_endpoint(&s, &refusing_url, &["trip.completed"]).await;
    let listed = s.get("/v1/admin/webhook-endpoints", ADMIN).await.expect(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret), "the secret is shown once");

    let (_, driver) = online_driver(&s, 1, HERE).await;
    let trip = ride(&s, &rider, &driver).await;

    // The first event is tried three times; then the rest follow, in order, each signed.
    let mut delivered = Vec::new();
    let mut answers = Vec::new();
    while delivered.len() < 5 {
        let got = next(&mut rx).await;
        assert!(verified(&got, &secret), "a delivery's signature does not verify: {:?}", got.signature);
        assert!(!verified(&got, "whsec_someone_elses"), "verified under the wrong secret");
        answers.push(got.answered);
        if got.answered == 200 {
            delivered.push(got.body);
        }
    }
    assert_eq!(answers[..3], [503, 429, 200], "retried after 503 and 429");
    let types: Vec<&str> = delivered.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["trip.created", "trip.accepted", "trip.arrived", "trip.started", "trip.completed"]);
    for b in &delivered {
        assert_eq!(b["data"]["id"], trip.as_str(), "data is the trip itself");
        assert!(b["id"].as_str().unwrap().starts_with("evt_"));
        assert!(b["data"].get("pickup_code").is_none(), "an integrator never sees the rider's code");
    }
    assert_eq!(delivered[4]["data"]["status"], "completed");

    // The log (once the last report is in): newest first; the first event took three tries.
    let log = until(&s, &format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries"), |l| {
        l["items"].as_array().is_some_and(|i| i.len() == 5 && i.iter().all(|d| d["status"] == "delivered"))
    })
    .await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|d| d["status"] == "delivered" && d["last_status_code"] == 200));
    assert_eq!(items[4]["type"], "trip.created");
    assert_eq!(items[4]["attempts"], 3);
    let page = s.get(&format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries?limit=2"), ADMIN).await.expect(200);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = s
        .get(&format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries?limit=10&cursor={cursor}"), ADMIN)
        .await
        .expect(200);
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert_eq!(rest["items"][0], items[2]);

    // The refusing endpoint's delivery failed at once, with the status.
    let refused = next(&mut refused_rx).await;
    assert_eq!(refused.answered, 400);
    let id = refusing_endpoint["id"].as_str().unwrap();
    let log =
        until(&s, &format!("/v1/admin/webhook-endpoints/{id}/deliveries"), |l| l["items"][0]["status"] == "failed")
            .await;
    let failed = &log["items"][0];
    assert_eq!((failed["attempts"].as_u64(), failed["last_status_code"].as_u64()), (Some(1), Some(400)));

    // A resend: the same event, again, signed; pending ones cannot be resent.
    let completed = items[0]["event_id"].as_str().unwrap();
    let again = s
        .post(&format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries/{completed}/resend"), ADMIN, json!({}))
        .await
        .expect(200);
    assert_eq!(again["status"], "pending");
    let got = next(&mut rx).await;
    assert!(verified(&got, &secret));
    assert_eq!(got.body["id"], completed);
    assert!(s.metric("dispatch_webhooks_delivered_total").await >= 6.0);

    // Removed: its log with it.
    let r = s.call(hyper::Method::DELETE, &format!("/v1/admin/webhook-endpoints/{endpoint}"), Some(ADMIN), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.get(&format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries"), ADMIN).await.expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_at_a_kill_9_is_made_after_the_restart() {
    // A port nobody listens on yet: every try fails to connect.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/in");
    let mut s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let made = create_endpoint(&s, &url, &["trip.created"]).await;
    let (endpoint, secret) = (made["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned());
    let (_, rider) = user(&s, "rider", 2).await;
    let trip = create_trip(&s, &rider).await;
    let log = format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries");
    // Wait for a failed try to be logged, so the kill comes between tries.
    let l = until(&s, &log, |l| l["items"][0]["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(l["items"][0]["status"], "pending");
    s.child.kill().unwrap(); // SIGKILL: no shutdown, no flush beyond what was acknowledged.
    s.child.wait().unwrap();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut rx = receiver(listener, vec![]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], None);
    let got = next(&mut rx).await;
    assert!(verified(&got, &secret), "the secret survived the crash");
    assert_eq!(
        (got.body["type"].as_str(), got.body["data"]["id"].as_str()),
        (Some("trip.created"), trip["id"].as_str())
    );
    let l = until(&s2, &log, |l| l["items"][0]["status"] == "delivered").await;
    assert!(l["items"][0]["attempts"].as_u64() >= Some(2), "the try before the crash is counted");
    // Delivered once: nothing more arrives.
    assert!(tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await.is_err(), "delivered twice");
}
