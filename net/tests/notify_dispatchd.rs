//! The notification outbox end to end through `dispatchd` (a real process) and local
//! fakes of the providers (`common/fakes.rs`), for the channels `notify_providers.rs`
//! tests at the provider level only:
//! - APNs: a rider's iOS device gets the accepted trip's push over HTTP/2 with a verified
//!   ES256 provider token, its text carrying the driver's ETA; a chat message to the rider
//!   is pushed while the rider has no open socket and not once one is open; an APNs `410`
//!   fails the item and removes the device;
//! - SMTP: the receipt at completion is emailed to a rider with an address;
//! - Twilio: an SOS goes by SMS to `[notify] sos_phones` with basic auth and a form, a
//!   `503` then a `429` retried and the same item sent on its third try;
//! - a dead letter: a `400` from Twilio fails the item at once, its reason listed by
//!   `GET /v1/admin/notifications`;
//! - `kill -9` with an item pending (its provider answered `503`): restarted on the same
//!   data directory with the provider up, the item is sent once, and the log's view says
//!   `sent` with every attempt counted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "common/fakes.rs"]
mod fakes;

use std::time::Duration;

use serde_json::{Value, json};

use common::*;
use fakes::*;

const TWILIO_ENV: [(&str, &str); 2] =
    [("DISPATCH_TWILIO_SID", "AC0123456789abcdef"), ("DISPATCH_TWILIO_TOKEN", "twilio-auth-token")];
const SOS_PHONE: &str = "+201009999999";

/// `[sms]` through the Twilio fake at `url`, and one on-call phone.
fn twilio_config(url: &str) -> String {
    format!(
        "[sms]\nprovider = \"twilio\"\ntwilio_endpoint = \"{url}\"\nfrom = \"+15005550006\"\n\
         [notify]\nsos_phones = [\"{SOS_PHONE}\"]\n"
    )
}

/// A rider's trip accepted by a driver 1 km north of the pickup: (rider token, driver
/// token, trip id).
async fn accepted_trip(s: &Server) -> (String, String, String) {
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(s, "rider", 1).await;
    let (_, driver) = online_driver(s, 2, (HERE.0 + 0.009, HERE.1)).await;
    let id = create_trip(s, &rider).await["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    (rider, driver, id)
}

/// The SOS items (on-call staff's, so no user) once `done` holds.
async fn sos_when(s: &Server, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    notifications_when(s, "", "sos", done).await
}

fn posted_to(fake: &Fake) -> Vec<std::collections::BTreeMap<String, String>> {
    fake.seen().iter().map(Seen::form).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_pushes_the_accepted_trip_with_its_eta_and_chat_to_an_absent_rider_and_a_410_drops_the_device() {
    let f = apns_fake().await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("AuthKey_KEYID12345.p8");
    std::fs::write(&key, &f.key_pem).unwrap();
    let config = format!(
        "[notify]\napns_endpoint = \"{}\"\napns_key_id = \"KEYID12345\"\napns_team_id = \"TEAMID1234\"\n\
         apns_topic = \"com.example.rider\"\n",
        f.fake.url()
    );
    let s = Server::start_env(
        tempfile::tempdir().unwrap(),
        &[],
        Some(&config),
        &[("DISPATCH_APNS_KEY", key.to_str().unwrap())],
    );
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (rider_user, rider) = user(&s, "rider", 1).await;
    let rider_q = format!("?user_id={}", rider_user["id"].as_str().unwrap());
    s.post("/v1/me/devices", &rider, json!({"platform": "apns", "token": DEVICE})).await.expect(201);
    let (_, driver) = online_driver(&s, 2, (HERE.0 + 0.009, HERE.1)).await;
    let id = create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    // The accepted push: over HTTP/2, the fake verified the provider token; its text has
    // the driver, the plate and the ETA (the straight line of 1 km: a few minutes).
    let sent = notifications_when(&s, &rider_q, "trip_accepted", |n| n.iter().any(|n| n["status"] == "sent")).await;
    assert_eq!((&sent[0]["status"], &sent[0]["attempts"]), (&json!("sent"), &json!(1)), "{sent:?}");
    let seen = f.fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, hyper::Version::HTTP_2);
    assert_eq!(seen[0].header("apns-id"), dispatch_server::notify::apns::apns_id(sent[0]["id"].as_str().unwrap()));
    let push = seen[0].json();
    assert!(push["aps"]["alert"]["title"].as_str().unwrap().starts_with("Driver found"), "{push}");
    let body = push["aps"]["alert"]["body"].as_str().unwrap();
    assert!(body.starts_with("driver 2 is on the way, plate CAI 2, arriving in about "), "{body}");
    assert!(body.ends_with(" min."), "{body}");
    assert_eq!((&push["kind"], &push["trip_id"]), (&json!("trip_accepted"), &json!(id)));

    // Chat: the rider has no socket, so the driver's message is pushed to the rider.
    let messages = format!("/v1/trips/{id}/messages");
    s.post(&messages, &driver, json!({"text": "I am outside"})).await.expect(201);
    let chat = notifications_when(&s, &rider_q, "chat_message", |n| n.iter().any(|n| n["status"] == "sent")).await;
    assert_eq!(chat.len(), 1, "{chat:?}");
    let pushed = f.fake.seen().last().unwrap().json();
    assert_eq!(pushed["aps"]["alert"], json!({"title": "driver 2", "body": "I am outside"}));
    // With a socket open (it hears the next message, so the server holds it), no push.
    let mut ws = s.ws(&rider).await;
    s.post(&messages, &driver, json!({"text": "the white car"})).await.expect(201);
    next_of(&mut ws, "chat_message").await;
    let before = notifications_when(&s, &rider_q, "chat_message", |_| true).await.len();
    s.post(&messages, &driver, json!({"text": "by the gate"})).await.expect(201);
    assert_eq!(next_of(&mut ws, "chat_message").await["message"]["text"], "by the gate");
    let after = notifications_when(&s, &rider_q, "chat_message", |_| true).await.len();
    assert_eq!(after, before, "a rider with an open socket is not pushed the chat");
    drop(ws);
    // "the white car" may have been pushed (the socket was opening): let it settle first,
    // so the next answer goes to the next push.
    let settled = notifications_when(&s, &rider_q, "chat_message", |n| n.iter().all(|n| n["status"] != "pending"));
    assert!(settled.await.iter().all(|n| n["status"] == "sent"));

    // Apple says the device is gone: the item fails, the device is removed.
    f.answers.lock().unwrap().push_back((410, vec![], json!({"reason": "Unregistered"}).to_string()));
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    let failed =
        notifications_when(&s, &rider_q, "driver_arrived", |n| n.iter().any(|n| n["status"] == "failed")).await;
    assert_eq!(failed[0]["status"], "failed", "{failed:?}");
    assert!(failed[0]["last_error"].as_str().unwrap().contains("410"), "{failed:?}");
    assert_eq!(s.get("/v1/me/devices", &rider).await.expect(200)["items"], json!([]), "the device is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_is_emailed_to_a_rider_with_an_address() {
    let (port, mails) = smtp_sink("250 2.1.5 Ok").await;
    let config = format!(
        "[email]\nsmtp_url = \"smtp+insecure://127.0.0.1:{port}\"\nfrom = \"Dispatch <noreply@example.com>\"\n"
    );
    let s = Server::start(&[], Some(&config));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (rider_user, rider) = user(&s, "rider", 1).await;
    let email = json!({"email": "rider@example.com"}).to_string();
    s.call(hyper::Method::PATCH, "/v1/me", Some(&rider), Some(&email)).await.expect(200);
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let trip = create_trip(&s, &rider).await;
    let id = trip["id"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    let code = trip["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({})).await.expect(200);

    let rider_q = format!("?user_id={}", rider_user["id"].as_str().unwrap());
    let receipts = notifications_when(&s, &rider_q, "receipt", |n| n.iter().any(|n| n["status"] == "sent")).await;
    assert_eq!(receipts.len(), 1, "no device: the email only: {receipts:?}");
    assert_eq!((&receipts[0]["channel"], &receipts[0]["status"]), (&json!("email"), &json!("sent")));
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["<rider@example.com>"]);
    let reference = done["ref"].as_str().unwrap();
    // The subject's middle dot is RFC 2047-encoded; the words around it are plain.
    let subject = mails[0].data.lines().find(|l| l.starts_with("Subject: ")).unwrap();
    assert!(subject.starts_with("Subject: Your receipt ") && subject.ends_with(reference), "{subject}");
    let message_id = format!("Message-ID: <{}@dispatch>", receipts[0]["id"].as_str().unwrap());
    assert!(mails[0].data.lines().any(|l| l == message_id), "{}", mails[0].data);
    assert!(mails[0].data.contains("Your fare: EGP "), "{}", mails[0].data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sos_goes_by_sms_through_twilio_after_a_503_and_a_429() {
    let f = twilio_fake(vec![
        (503, vec![], json!({"code": 20503, "message": "Service Unavailable"}).to_string()),
        (
            429,
            vec![("retry-after", "1".to_owned())],
            json!({"code": 20429, "message": "Too Many Requests"}).to_string(),
        ),
    ])
    .await;
    let s = Server::start_env(tempfile::tempdir().unwrap(), &[], Some(&twilio_config(&f.url())), &TWILIO_ENV);
    let (rider, _, id) = accepted_trip(&s).await;
    s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "help"})).await.expect(201);

    let sos = sos_when(&s, |n| n.iter().any(|n| n["status"] == "sent")).await;
    assert_eq!(sos.len(), 1, "{sos:?}");
    assert_eq!(
        (&sos[0]["channel"], &sos[0]["status"], &sos[0]["attempts"]),
        (&json!("sms"), &json!("sent"), &json!(3))
    );
    assert_eq!(sos[0]["user_id"], Value::Null);
    let forms = posted_to(&f);
    assert_eq!(forms.len(), 3, "the 503, the 429, the delivery");
    for form in &forms {
        assert_eq!(form["To"], SOS_PHONE);
        assert_eq!(form["From"], "+15005550006");
        assert!(
            form["Body"].starts_with("SOS raised by rider 1 on trip ") && form["Body"].ends_with(": help"),
            "{form:?}"
        );
    }
    assert_eq!(s.metric("dispatch_notifications_delivered_total{channel=\"sms\"}").await, 1.0);
    assert_eq!(s.metric("dispatch_notifications_failed_total{channel=\"sms\"}").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_from_the_provider_is_a_dead_letter_with_its_reason() {
    let refusal = json!({"code": 21211, "message": "The 'To' number +201009999999 is not a valid phone number.",
        "status": 400});
    let f = twilio_fake(vec![(400, vec![], refusal.to_string())]).await;
    let s = Server::start_env(tempfile::tempdir().unwrap(), &[], Some(&twilio_config(&f.url())), &TWILIO_ENV);
    let (rider, _, id) = accepted_trip(&s).await;
    s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "help"})).await.expect(201);

    let failed = sos_when(&s, |n| n.iter().any(|n| n["status"] == "failed")).await;
    assert_eq!((&failed[0]["status"], &failed[0]["attempts"]), (&json!("failed"), &json!(1)), "{failed:?}");
    let reason = failed[0]["last_error"].as_str().unwrap();
    assert!(reason.contains("21211") && reason.contains("not a valid phone number"), "{reason}");
    assert!(!reason.contains("201009999999"), "the number is masked: {reason}");
    let listed = s.get("/v1/admin/notifications?status=failed", ADMIN).await.expect(200);
    assert!(listed["items"].as_array().unwrap().iter().any(|n| n["id"] == failed[0]["id"]), "{listed}");
    // Not retried.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(f.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_pending_at_a_kill_9_is_sent_once_after_the_restart() {
    // The provider is down: a 503 asking for 3 s, so no second try comes before the kill.
    let down = twilio_fake(vec![(
        503,
        vec![("retry-after", "3".to_owned())],
        json!({"code": 20503, "message": "Service Unavailable"}).to_string(),
    )])
    .await;
    let mut s = Server::start_env(tempfile::tempdir().unwrap(), &[], Some(&twilio_config(&down.url())), &TWILIO_ENV);
    let (rider, _, id) = accepted_trip(&s).await;
    s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "help"})).await.expect(201);
    let pending = sos_when(&s, |n| n.iter().any(|n| n["attempts"] == 1)).await;
    assert_eq!((&pending[0]["status"], &pending[0]["attempts"]), (&json!("pending"), &json!(1)), "{pending:?}");
    assert!(pending[0]["last_error"].as_str().unwrap().contains("503"), "{pending:?}");

    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    assert_eq!(down.seen().len(), 1, "one try before the kill");
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();

    // Restarted with the provider up: the item is sent, once.
    let up = twilio_fake(vec![]).await;
    let s = Server::start_env(dir, &[], Some(&twilio_config(&up.url())), &TWILIO_ENV);
    let sent = sos_when(&s, |n| n.iter().any(|n| n["status"] == "sent")).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["id"], pending[0]["id"]);
    assert_eq!((&sent[0]["status"], &sent[0]["attempts"]), (&json!("sent"), &json!(2)), "both tries counted");
    // Several passes of the worker later: still once.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(up.seen().len(), 1);
    assert_eq!(down.seen().len(), 1);
    assert_eq!(sos_when(&s, |_| true).await, sent);
}
