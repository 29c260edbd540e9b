//! The Stripe gateway (`dispatch_server::stripe`) against a local fake Stripe that checks
//! the documented request shapes (method, path, form fields, `Authorization: Bearer`,
//! `Idempotency-Key`) and answers Stripe's documented JSON: each call, each mapping of an
//! answer to the engine's errors, a card trip through `dispatchd` authorised, captured
//! (after a restart), confirmed by Stripe's signed webhook and refunded, and a payout paid
//! by Stripe's `payout.paid`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_core::payment::{Gateway, GatewayCall, GatewayError, PayoutCall};
use dispatch_core::trip::GatewayAction;
use dispatch_server::stripe::StripeGateway;
use hyper::Method;
use serde_json::{Value, json};

use common::*;

const KEY: &str = "sk_test_fake_0123456789";
const HOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// One request the fake received.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    form: BTreeMap<String, String>,
}

type Answer = Arc<dyn Fn(&Got) -> Option<(u16, Value)> + Send + Sync>;

/// A fake Stripe on loopback (HTTP/1.1, a connection per request). Every request must
/// carry the bearer key, a form body and an `Idempotency-Key`; a key seen before is
/// answered as the first time (Stripe's idempotency). `answer` may script an answer;
/// otherwise the fake answers as Stripe does for the PaymentIntents API.
struct FakeStripe {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl FakeStripe {
    fn start(answer: Option<Answer>) -> FakeStripe {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&got);
        std::thread::spawn(move || {
            let mut replays: BTreeMap<String, (u16, Value)> = BTreeMap::new();
            let mut next = 0u32;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&mut stream) else { continue };
                seen.lock().unwrap().push(req.clone());
                let (status, body) = match answer.as_ref().and_then(|a| a(&req)) {
                    Some(scripted) => scripted,
                    None => {
                        let key = req.headers.get("idempotency-key").cloned().unwrap_or_default();
                        match replays.get(&key) {
                            Some(first) => first.clone(),
                            None => {
                                next += 1;
                                let a = stripe_answer(&req, next);
                                if !key.is_empty() {
                                    replays.insert(key, a.clone());
                                }
                                a
                            }
                        }
                    }
                };
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            }
        });
        FakeStripe { url, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn gateway(&self) -> StripeGateway {
        StripeGateway::new("stripe", &self.url, KEY, "pm_card_visa").unwrap()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Got> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let form = String::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('=').map(|(k, v)| (decode(k), decode(v))))
        .collect();
    Some(Got { method, path, headers, form })
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn stripe_error(status: u16, ty: &str, code: &str, message: &str) -> (u16, Value) {
    (status, json!({"error": {"type": ty, "code": code, "message": message}}))
}

/// Stripe's documented answers (the fields the gateway and the tests read).
fn stripe_answer(req: &Got, n: u32) -> (u16, Value) {
    if req.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {KEY}")) {
        return stripe_error(401, "invalid_request_error", "", "Invalid API Key provided");
    }
    if req.headers.get("content-type").map(String::as_str) != Some("application/x-www-form-urlencoded") {
        return stripe_error(400, "invalid_request_error", "", "form bodies only");
    }
    if req.headers.get("idempotency-key").is_none_or(String::is_empty) {
        return stripe_error(400, "invalid_request_error", "", "this fake wants an Idempotency-Key");
    }
    if req.method != "POST" {
        return stripe_error(405, "invalid_request_error", "", "POST only here");
    }
    let f = |k: &str| req.form.get(k).cloned().unwrap_or_default();
    let int = |k: &str| f(k).parse::<i64>().ok();
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "payment_intents"] => {
            let (Some(amount), true) = (int("amount"), f("currency").chars().all(|c| c.is_ascii_lowercase())) else {
                return stripe_error(400, "invalid_request_error", "parameter_missing", "amount and currency");
            };
            let manual = f("capture_method") == "manual";
            (
                200,
                json!({"id": format!("pi_fake{n}"), "object": "payment_intent", "amount": amount,
                    "currency": f("currency"), "capture_method": f("capture_method"),
                    "status": if manual { "requires_capture" } else { "succeeded" },
                    "amount_capturable": if manual { amount } else { 0 },
                    "amount_received": if manual { 0 } else { amount },
                    "metadata": {"trip_id": f("metadata[trip_id]")}}),
            )
        }
        ["v1", "payment_intents", id, "capture"] => (
            200,
            json!({"id": id, "object": "payment_intent", "status": "succeeded",
                "amount_received": int("amount_to_capture")}),
        ),
        ["v1", "payment_intents", id, "cancel"] => {
            (200, json!({"id": id, "object": "payment_intent", "status": "canceled"}))
        }
        ["v1", "refunds"] => (
            200,
            json!({"id": format!("re_fake{n}"), "object": "refund", "amount": int("amount"),
                "payment_intent": f("payment_intent"), "status": "succeeded",
                "metadata": {"trip_id": f("metadata[trip_id]")}}),
        ),
        ["v1", "payouts"] => (
            200,
            json!({"id": format!("po_fake{n}"), "object": "payout", "amount": int("amount"),
                "currency": f("currency"), "status": "pending",
                "metadata": {"payout_id": f("metadata[payout_id]"), "driver_id": f("metadata[driver_id]")}}),
        ),
        _ => stripe_error(404, "invalid_request_error", "", "Unrecognized request URL"),
    }
}

fn trip_id() -> dispatch_core::TripId {
    "trp_0000000000000007".parse().unwrap()
}

fn call(action: GatewayAction, key: &str, reference: Option<&str>) -> GatewayCall {
    GatewayCall {
        trip_id: trip_id(),
        action,
        currency: "EGP".parse().unwrap(),
        idempotency_key: key.into(),
        reference: reference.map(str::to_owned),
    }
}

#[test]
fn each_call_sends_the_documented_request() {
    let fake = FakeStripe::start(None);
    let g = fake.gateway();
    assert_eq!(g.name(), "stripe");

    // Authorise: a manual-capture PaymentIntent, confirmed; its id is the reference.
    let auth = call(GatewayAction::Authorize { amount_minor: 6704 }, "trp_0000000000000007-authorize", None);
    let pi = g.execute(&auth).unwrap().expect("the PaymentIntent id");
    assert!(pi.starts_with("pi_"), "{pi}");
    // A retried call (same key) is the same PaymentIntent, not a second one.
    assert_eq!(g.execute(&auth).unwrap(), Some(pi.clone()));
    let got = fake.got();
    let create = &got[0];
    assert_eq!((create.method.as_str(), create.path.as_str()), ("POST", "/v1/payment_intents"));
    assert_eq!(create.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(create.headers["idempotency-key"], "trp_0000000000000007-authorize");
    assert_eq!(create.headers["content-type"], "application/x-www-form-urlencoded");
    let form: Vec<(&str, &str)> = create.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        form,
        [
            ("amount", "6704"),
            ("capture_method", "manual"),
            ("confirm", "true"),
            ("currency", "egp"),
            ("metadata[trip_id]", "trp_0000000000000007"),
            ("payment_method", "pm_card_visa"),
            ("payment_method_types[0]", "card"),
        ]
    );

    // Capture names the PaymentIntent and the amount.
    let capture = call(GatewayAction::Capture { amount_minor: 6000 }, "trp_0000000000000007-capture", Some(&pi));
    assert_eq!(g.execute(&capture).unwrap(), None);
    let last = fake.got().pop().unwrap();
    assert_eq!(last.path, format!("/v1/payment_intents/{pi}/capture"));
    assert_eq!((last.form["amount_to_capture"].as_str(), last.form.len()), ("6000", 1));
    assert_eq!(last.headers["idempotency-key"], "trp_0000000000000007-capture");

    // A refund names the PaymentIntent, the amount and the trip (for its webhooks).
    let refund = GatewayAction::Refund { amount_minor: 500, transfer: "txf_0000000000000009".parse().unwrap() };
    assert_eq!(g.execute(&call(refund, "trp_0000000000000007-refund-x", Some(&pi))).unwrap(), None);
    let last = fake.got().pop().unwrap();
    assert_eq!(last.path, "/v1/refunds");
    assert_eq!(
        (last.form["payment_intent"].as_str(), last.form["amount"].as_str(), last.form["metadata[trip_id]"].as_str()),
        (pi.as_str(), "500", "trp_0000000000000007")
    );
    // Without a recorded PaymentIntent there is nothing to refund: declined, no request.
    let n = fake.got().len();
    assert!(matches!(g.execute(&call(refund, "k-refund", None)), Err(GatewayError::Declined(_))));

    // Void cancels the PaymentIntent; with none, nothing was held: done, no request.
    assert_eq!(g.execute(&call(GatewayAction::Void, "k-void-none", None)).unwrap(), None);
    assert_eq!(fake.got().len(), n, "no request without a PaymentIntent");
    assert_eq!(g.execute(&call(GatewayAction::Void, "k-void", Some(&pi))).unwrap(), None);
    assert_eq!(fake.got().pop().unwrap().path, format!("/v1/payment_intents/{pi}/cancel"));

    // A capture never authorised (Stripe was down at accept) charges at once.
    let direct = call(GatewayAction::Capture { amount_minor: 4200 }, "k-capture-direct", None);
    let made = g.execute(&direct).unwrap().expect("a new PaymentIntent");
    assert_ne!(made, pi);
    let last = fake.got().pop().unwrap();
    assert_eq!((last.path.as_str(), last.form["capture_method"].as_str()), ("/v1/payment_intents", "automatic"));
    assert_eq!(last.form["amount"], "4200");

    // A payout: the amount, lowercase currency, and the engine's payout and driver.
    let payout = PayoutCall {
        payout_id: "pyo_0000000000000003".parse().unwrap(),
        driver_id: "usr_0000000000000002".parse().unwrap(),
        amount_minor: 25_000,
        currency: "EGP".parse().unwrap(),
        idempotency_key: "pyo_0000000000000003-payout".into(),
    };
    g.payout(&payout).unwrap();
    let last = fake.got().pop().unwrap();
    assert_eq!(last.path, "/v1/payouts");
    assert_eq!(last.headers["idempotency-key"], "pyo_0000000000000003-payout");
    assert_eq!(
        (last.form["amount"].as_str(), last.form["currency"].as_str(), last.form["metadata[payout_id]"].as_str()),
        ("25000", "egp", "pyo_0000000000000003")
    );
    assert_eq!(last.form["metadata[driver_id]"], "usr_0000000000000002");
}

#[test]
fn stripe_answers_map_to_declined_or_unavailable() {
    let scripted = |status: u16, body: Value| -> Answer { Arc::new(move |_: &Got| Some((status, body.clone()))) };
    let auth = call(GatewayAction::Authorize { amount_minor: 100 }, "k", None);
    let card_declined = json!({"error": {"type": "card_error", "code": "card_declined",
        "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}});
    let cases = [
        (402, card_declined, Some("Your card has insufficient funds.")),
        (
            400,
            json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                "message": "This PaymentIntent could not be captured because it has a status of canceled."}}),
            Some("This PaymentIntent could not be captured because it has a status of canceled."),
        ),
        (
            401,
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
            Some("Invalid API Key provided"),
        ),
        (409, json!({"error": {"type": "idempotency_error", "message": "in flight"}}), None),
        (429, json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}}), None),
        (500, json!({"error": {"type": "api_error", "message": "oops"}}), None),
        (503, Value::Null, None),
        // 2xx without a PaymentIntent id: garbage, asked again.
        (200, json!({"object": "payment_intent"}), None),
    ];
    for (status, body, declined) in cases {
        let fake = FakeStripe::start(Some(scripted(status, body)));
        let result = fake.gateway().execute(&auth);
        match (declined, result) {
            (Some(message), Err(GatewayError::Declined(m))) => {
                assert!(m.contains(message), "{status}: {m}");
                assert!(!m.contains(KEY), "the key is never in an error");
            }
            (None, Err(GatewayError::Unavailable(_))) => {}
            (want, got) => panic!("{status}: want declined {want:?}, got {got:?}"),
        }
    }
    // Nobody listening: unavailable.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let g = StripeGateway::new("stripe", &url, KEY, "pm_card_visa").unwrap();
    assert!(matches!(g.execute(&auth), Err(GatewayError::Unavailable(_))));
    // A payout Stripe refuses is declined (its hold is returned by the worker).
    let fake = FakeStripe::start(Some(scripted(
        400,
        json!({"error": {"type": "invalid_request_error", "code": "balance_insufficient", "message": "You have insufficient funds in your Stripe account."}}),
    )));
    let payout = PayoutCall {
        payout_id: "pyo_0000000000000003".parse().unwrap(),
        driver_id: "usr_0000000000000002".parse().unwrap(),
        amount_minor: 1,
        currency: "EGP".parse().unwrap(),
        idempotency_key: "p".into(),
    };
    assert!(
        matches!(fake.gateway().payout(&payout), Err(GatewayError::Declined(m)) if m.contains("insufficient funds"))
    );
}

/// Stripe's signed event about `object`.
fn stripe_event(id: &str, ty: &str, object: Value) -> (String, String) {
    let body = json!({"id": id, "object": "event", "type": ty, "data": {"object": object}}).to_string();
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let sig = dispatch_core::payment::sign_timestamped(HOOK_SECRET.as_bytes(), t, body.as_bytes());
    (body, sig)
}

async fn wait_for(s: &Server, trip: &str, rider: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = s.get(&format!("/v1/trips/{trip}"), rider).await.expect(200);
        if t["payment"]["status"] == status {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "payment never {status}: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_trip_through_dispatchd_is_authorised_captured_and_refunded_at_stripe() {
    let fake = FakeStripe::start(None);
    let config = format!(
        "[gateways.stripe]\nscheme = \"stripe\"\napi_base = \"{}\"\n[limits]\nuser_per_min = 100000\n\
         [store]\ncheckpoint_every_records = 10\n",
        fake.url
    );
    let env = [("DISPATCH_STRIPE_SECRET_KEY", KEY), ("DISPATCH_WEBHOOK_SECRET_STRIPE", HOOK_SECRET)];
    let s = Server::start_env(tempfile::tempdir().unwrap(), &["--payment-backoff-ms", "10"], Some(&config), &env);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "card"});
    let trip = s.post("/v1/trips", &rider, body).await.expect(201);
    let (t, code) = (trip["id"].as_str().unwrap().to_owned(), trip["pickup_code"].as_str().unwrap().to_owned());
    let estimate = trip["fare"]["estimate_minor"].as_i64().unwrap();

    // Accepted: the worker authorises the estimate at Stripe.
    s.post(&format!("/v1/trips/{t}/accept"), &driver, json!({})).await.expect(200);
    wait_for(&s, &t, &rider, "authorized").await;
    let create = fake.got().into_iter().find(|g| g.path == "/v1/payment_intents").expect("a PaymentIntent");
    assert_eq!(create.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(create.headers["idempotency-key"], format!("{t}-authorize"));
    assert_eq!(
        (
            create.form["amount"].clone(),
            create.form["capture_method"].as_str(),
            create.form["metadata[trip_id]"].clone()
        ),
        (estimate.to_string(), "manual", t.clone())
    );

    // The PaymentIntent's id is kept on the trip: after a restart the capture names it.
    let mut s = s;
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s = Server::start_env(dir, &["--payment-backoff-ms", "10"], Some(&config), &env);

    // Completed: the worker captures the fare on that PaymentIntent.
    s.post(&format!("/v1/trips/{t}/arrived"), &driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{t}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let done = s.post(&format!("/v1/trips/{t}/complete"), &driver, json!({"distance_m": 4000})).await.expect(200);
    let fare = done["fare"]["final_minor"].as_i64().expect("a final fare");
    let captured = wait_for(&s, &t, &rider, "captured").await;
    assert_eq!(captured["payment"]["captured_minor"], fare, "{captured}");
    let pi = "pi_fake1";
    let capture = fake.got().into_iter().find(|g| g.path.ends_with("/capture")).expect("a capture");
    assert_eq!(capture.path, format!("/v1/payment_intents/{pi}/capture"));
    assert_eq!(capture.form["amount_to_capture"], fare.to_string());
    assert_eq!(capture.headers["idempotency-key"], format!("{t}-capture"));

    // Stripe's signed `payment_intent.succeeded` arrives after: verified, nothing twice.
    let (hook, sig) = stripe_event(
        "evt_succeeded_1",
        "payment_intent.succeeded",
        json!({"id": pi, "object": "payment_intent", "amount": estimate, "amount_received": fare,
            "currency": "egp", "status": "succeeded", "metadata": {"trip_id": t}}),
    );
    let headers = [("stripe-signature", sig.as_str())];
    let r = s.call_with(Method::POST, "/v1/webhooks/stripe", None, Some(&hook), &headers).await.expect(200);
    assert_eq!(r["applied"], false, "already captured by the worker: {r}");
    let forged = [("stripe-signature", "t=1,v1=00")];
    s.call_with(Method::POST, "/v1/webhooks/stripe", None, Some(&hook), &forged)
        .await
        .expect_error(400, "invalid_signature");
    let t_now = s.get(&format!("/v1/trips/{t}"), &rider).await.expect(200);
    assert_eq!(t_now["payment"]["captured_minor"], fare, "captured once: {t_now}");

    // An admin refund goes to Stripe against the same PaymentIntent.
    let refund = json!({"amount_minor": 500, "reason": "detour"});
    s.post(&format!("/v1/admin/trips/{t}/refund"), ADMIN, refund).await.expect(201);
    let refunded = wait_for(&s, &t, &rider, "partially_refunded").await;
    assert_eq!(refunded["payment"]["refunded_minor"], 500, "{refunded}");
    let r = fake.got().into_iter().find(|g| g.path == "/v1/refunds").expect("a refund");
    assert_eq!(
        (r.form["payment_intent"].as_str(), r.form["amount"].as_str(), r.form["metadata[trip_id]"].clone()),
        (pi, "500", t.clone())
    );
    assert!(r.headers["idempotency-key"].starts_with(&format!("{t}-refund-")));
    let ledger = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
    assert_eq!(ledger["balanced"], true);
    // One PaymentIntent, one capture, one refund: nothing charged twice.
    let got = fake.got();
    let count = |p: &str| got.iter().filter(|g| g.path == p).count();
    assert_eq!(
        (count("/v1/payment_intents"), count(&format!("/v1/payment_intents/{pi}/capture")), count("/v1/refunds")),
        (1, 1, 1)
    );
}

#[test]
fn a_stripe_gateway_without_its_secret_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dispatch.toml");
    std::fs::write(&config, "[gateways.stripe]\nscheme = \"stripe\"\n").unwrap();
    let out = std::process::Command::new(dispatchd_bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env("DISPATCH_ADMIN_TOKEN", ADMIN)
        .env("DISPATCH_TOKEN_SECRET", "test-token-secret-0123456789abcdef0123456789")
        .env("DISPATCH_WEBHOOK_SECRET_SIM", "test-webhook-secret-0123456789")
        .env("DISPATCH_WEBHOOK_SECRET_STRIPE", HOOK_SECRET)
        .env("DISPATCH_SMS_SINK", "log")
        .env_remove("DISPATCH_STRIPE_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DISPATCH_STRIPE_SECRET_KEY"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing opened before the check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_payout_goes_to_stripe_and_is_paid_by_its_signed_webhook() {
    let fake = FakeStripe::start(None);
    let config = format!("[gateways.stripe]\nscheme = \"stripe\"\napi_base = \"{}\"\n", fake.url);
    let env = [("DISPATCH_STRIPE_SECRET_KEY", KEY), ("DISPATCH_WEBHOOK_SECRET_STRIPE", HOOK_SECRET)];
    let s = Server::start_env(tempfile::tempdir().unwrap(), &["--payment-backoff-ms", "10"], Some(&config), &env);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (driver_user, driver) = user(&s, "driver", 1).await;
    let driver_id = driver_user["id"].as_str().unwrap().to_owned();
    let credit = json!({"amount_minor": 10_000, "currency": "EGP", "reason": "bonus"});
    s.post(&format!("/v1/admin/wallets/{driver_id}/credit"), ADMIN, credit).await.expect(201);
    let asked = s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 4000})).await.expect(201);
    let id = asked["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/admin/payouts/{id}/approve"), ADMIN, json!({})).await.expect(200);

    // The worker sends it to Stripe once, naming the engine's payout and driver.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sent = loop {
        if let Some(g) = fake.got().into_iter().find(|g| g.path == "/v1/payouts") {
            break g;
        }
        assert!(std::time::Instant::now() < deadline, "no payout reached Stripe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(sent.headers["idempotency-key"], format!("{id}-payout"));
    assert_eq!(
        (sent.form["amount"].as_str(), sent.form["currency"].as_str(), sent.form["metadata[payout_id]"].clone()),
        ("4000", "egp", id.clone())
    );
    assert_eq!(sent.form["metadata[driver_id]"], driver_id);

    // Stripe's signed `payout.paid` settles it, once.
    let (hook, sig) = stripe_event(
        "evt_po_paid",
        "payout.paid",
        json!({"id": "po_fake1", "object": "payout", "amount": 4000, "currency": "egp", "status": "paid",
            "metadata": {"payout_id": id, "driver_id": driver_id}}),
    );
    let headers = [("stripe-signature", sig.as_str())];
    let r = s.call_with(Method::POST, "/v1/webhooks/stripe", None, Some(&hook), &headers).await.expect(200);
    assert_eq!((r["status"].as_str(), r["applied"].as_bool()), (Some("processed"), Some(true)), "{r}");
    let again = s.call_with(Method::POST, "/v1/webhooks/stripe", None, Some(&hook), &headers).await.expect(200);
    assert_eq!(again["status"], "duplicate");
    let list = s.get("/v1/admin/payouts", ADMIN).await.expect(200);
    assert_eq!(list["items"][0]["status"], "paid", "{list}");
    let e = s.get("/v1/driver/earnings", &driver).await.expect(200);
    assert_eq!((e["balance_minor"].as_i64(), e["withdrawable_minor"].as_i64()), (Some(6000), Some(6000)), "{e}");
    assert_eq!(fake.got().iter().filter(|g| g.path == "/v1/payouts").count(), 1, "sent once");
    let ledger = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
    assert_eq!(ledger["balanced"], true);
}
