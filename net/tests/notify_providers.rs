//! The notification providers against local fakes of FCM, APNs, Twilio and an SMTP
//! server, each checking the request its provider documents: FCM's OAuth token endpoint
//! verifies the service-account JWT's RS256 signature and claims and `messages:send` the
//! bearer token and body; the APNs fake is an HTTP/2 (h2c) server that verifies the ES256
//! provider token, topic, push type and `apns-id`; Twilio's checks basic auth and the
//! form; the SMTP sink records the envelope and the message. Then each provider's answers
//! map to the outcome the outbox acts on. Last, `dispatchd` itself: OTP codes through
//! Twilio with `[sms] provider = "twilio"`, and start-up refused with a bad credential.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "common/fakes.rs"]
mod fakes;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_server::notify::{self, Message, Provider, Recipient, SendOutcome};
use ring::signature;
use serde_json::{Value, json};

use common::notifications_when;
use fakes::*;

fn message(id: &str, to: Recipient) -> Message {
    Message {
        id: id.into(),
        to,
        title: "Your driver has arrived".into(),
        body: "Ahmed is outside in a white Toyota Corolla (ABC 123)".into(),
        data: BTreeMap::from([
            ("kind".to_owned(), "driver_arrived".to_owned()),
            ("trip_id".to_owned(), "trp_1".to_owned()),
        ]),
    }
}

// ---------------------------------------------------------------------------------------
// FCM

const SERVICE_ACCOUNT: &str = include_str!("fixtures/fcm-test-service-account.json");

/// The FCM fake: the token endpoint (`/token`) and `messages:send` on one server.
struct FcmFake {
    fake: Fake,
    tokens_issued: Arc<Mutex<u32>>,
    sends: Arc<Mutex<VecDeque<Answer>>>,
}

async fn fcm_fake() -> FcmFake {
    let account: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    use tokio_rustls::rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
    let der = PrivatePkcs8KeyDer::from_pem_slice(account["private_key"].as_str().unwrap().as_bytes()).unwrap();
    let public = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap().public().as_ref().to_vec();
    let client_email = account["client_email"].as_str().unwrap().to_owned();
    let tokens_issued = Arc::new(Mutex::new(0u32));
    let sends = script(vec![]);
    let port_cell = Arc::new(Mutex::new(0u16));
    let (issued, answers, port_of) = (Arc::clone(&tokens_issued), Arc::clone(&sends), Arc::clone(&port_cell));
    let handler = move |req: &Seen| -> Answer {
        let port = *port_of.lock().unwrap();
        if req.path == "/token" {
            let form = req.form();
            if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
                return (400, vec![], json!({"error": "unsupported_grant_type"}).to_string());
            }
            let verify = |signed: &[u8], sig: &[u8]| {
                signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &public)
                    .verify(signed, sig)
                    .is_ok()
            };
            let Some((header, claims)) = form.get("assertion").and_then(|a| verified_jwt(a, verify)) else {
                return (
                    400,
                    vec![],
                    json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).to_string(),
                );
            };
            let iat = claims["iat"].as_i64().unwrap_or(0);
            let good = header["alg"] == "RS256"
                && claims["iss"] == client_email.as_str()
                && claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
                && claims["aud"] == format!("http://127.0.0.1:{port}/token")
                && (iat - now_s()).abs() < 60
                && claims["exp"].as_i64() == Some(iat + 3600);
            if !good {
                return (
                    400,
                    vec![],
                    json!({"error": "invalid_grant", "error_description": format!("bad claims {claims}")}).to_string(),
                );
            }
            let mut n = issued.lock().unwrap();
            *n += 1;
            return (
                200,
                vec![],
                json!({"access_token": format!("ya29.test-{n}"), "expires_in": 3599, "token_type": "Bearer"})
                    .to_string(),
            );
        }
        assert_eq!(req.path, "/v1/projects/dispatch-test/messages:send");
        assert_eq!(req.method, "POST");
        let current = format!("Bearer ya29.test-{}", *issued.lock().unwrap());
        if req.header("authorization") != current {
            return (
                401,
                vec![],
                json!({"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "bad token"}}).to_string(),
            );
        }
        answers.lock().unwrap().pop_front().unwrap_or_else(|| {
            (
                200,
                vec![],
                json!({"name": "projects/dispatch-test/messages/0:1500415314455276%31bd1c9631bd1c96"}).to_string(),
            )
        })
    };
    let fake = fake(false, Arc::new(handler)).await;
    *port_cell.lock().unwrap() = fake.port;
    FcmFake { fake, tokens_issued, sends }
}

fn fcm_provider(f: &FcmFake) -> notify::fcm::Fcm {
    notify::fcm::Fcm::new(&notify::fcm::FcmConfig {
        endpoint: &f.fake.url(),
        token_url: &format!("{}/token", f.fake.url()),
        project_id: "",
        credentials: SERVICE_ACCOUNT,
    })
    .unwrap()
}

fn fcm_error(status: u16, code: &str) -> String {
    json!({"error": {"code": status, "message": "Requested entity was not found.", "status": "NOT_FOUND",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}})
    .to_string()
}

#[tokio::test]
async fn fcm_gets_a_verified_service_account_token_once_and_the_documented_message() {
    let f = fcm_fake().await;
    let fcm = fcm_provider(&f);
    let msg = message("ntf_0000000000000001", Recipient::Fcm("fcm-device-token-1".into()));
    let first = fcm.send(&msg).await;
    assert_eq!(
        first,
        SendOutcome::Delivered {
            provider_id: Some("projects/dispatch-test/messages/0:1500415314455276%31bd1c9631bd1c96".into())
        }
    );
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Delivered { .. }));
    assert_eq!(*f.tokens_issued.lock().unwrap(), 1, "the access token is cached across sends");
    let seen = f.fake.seen();
    assert_eq!(seen.iter().filter(|s| s.path == "/token").count(), 1);
    let send = seen.iter().find(|s| s.path.ends_with("messages:send")).unwrap();
    assert!(send.header("content-type").starts_with("application/json"));
    assert_eq!(
        send.json(),
        json!({"message": {"token": "fcm-device-token-1",
            "notification": {"title": "Your driver has arrived", "body": "Ahmed is outside in a white Toyota Corolla (ABC 123)"},
            "data": {"kind": "driver_arrived", "trip_id": "trp_1"}}})
    );
}

#[tokio::test]
async fn fcm_concurrent_sends_share_one_token_request() {
    let f = fcm_fake().await;
    let fcm = Arc::new(fcm_provider(&f));
    let sends: Vec<_> = (0..8)
        .map(|i| {
            let fcm = Arc::clone(&fcm);
            tokio::spawn(async move {
                let msg = message(&format!("ntf_00000000000001{i:02}"), Recipient::Fcm(format!("device-{i}")));
                fcm.send(&msg).await
            })
        })
        .collect();
    for send in sends {
        assert!(matches!(send.await.unwrap(), SendOutcome::Delivered { .. }));
    }
    assert_eq!(*f.tokens_issued.lock().unwrap(), 1, "one refresh at a time: the others waited for it");
}

#[tokio::test]
async fn fcm_answers_map_to_retry_invalid_token_and_rejected() {
    let f = fcm_fake().await;
    let fcm = fcm_provider(&f);
    let msg = message("ntf_0000000000000002", Recipient::Fcm("fcm-device-token-2".into()));
    f.sends.lock().unwrap().extend([
        (429, vec![("retry-after", "17".to_owned())], fcm_error(429, "QUOTA_EXCEEDED")),
        (503, vec![], fcm_error(503, "UNAVAILABLE")),
        (404, vec![], fcm_error(404, "UNREGISTERED")),
        (
            400,
            vec![],
            json!({"error": {"code": 400, "message": "Invalid value at 'message.data'", "status": "INVALID_ARGUMENT"}})
                .to_string(),
        ),
    ]);
    match fcm.send(&msg).await {
        SendOutcome::Retry { retry_after, error } => {
            assert_eq!(retry_after, Some(Duration::from_secs(17)), "{error}");
            assert!(error.contains("429"), "{error}");
        }
        other => panic!("429: {other:?}"),
    }
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Retry { retry_after: None, .. }));
    assert!(matches!(fcm.send(&msg).await, SendOutcome::InvalidToken { error } if error.contains("UNREGISTERED")));
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Rejected { error } if error.contains("Invalid value")));
    assert_eq!(*f.tokens_issued.lock().unwrap(), 1);
}

#[tokio::test]
async fn fcm_refreshes_a_refused_token_once_within_the_send() {
    let f = fcm_fake().await;
    let fcm = fcm_provider(&f);
    let msg = message("ntf_0000000000000003", Recipient::Fcm("fcm-device-token-3".into()));
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Delivered { .. }));
    // Google revokes the token: the next send is answered 401 once.
    f.sends.lock().unwrap().push_back((
        401,
        vec![],
        json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}).to_string(),
    ));
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Delivered { .. }), "one refresh, one more try");
    assert_eq!(*f.tokens_issued.lock().unwrap(), 2);
    let auths: Vec<String> = f
        .fake
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("messages:send"))
        .map(|s| s.header("authorization").to_owned())
        .collect();
    assert_eq!(auths, ["Bearer ya29.test-1", "Bearer ya29.test-1", "Bearer ya29.test-2"]);
    // 401 for ever: one refresh, then Retry (no loop).
    f.sends.lock().unwrap().extend((0..3).map(|_| (401, vec![], "{}".to_owned())));
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Retry { .. }));
    assert_eq!(*f.tokens_issued.lock().unwrap(), 3);
}

#[tokio::test]
async fn fcm_with_a_key_the_token_endpoint_does_not_know_is_rejected() {
    // The account's key was replaced (or another account's file was given): the token
    // endpoint's signature check fails.
    let f = fcm_fake().await;
    let account = include_str!("fixtures/fcm-test-service-account-wrong-key.json");
    let fcm = notify::fcm::Fcm::new(&notify::fcm::FcmConfig {
        endpoint: &f.fake.url(),
        token_url: &format!("{}/token", f.fake.url()),
        project_id: "",
        credentials: account,
    })
    .unwrap();
    let msg = message("ntf_0000000000000004", Recipient::Fcm("t".into()));
    assert!(matches!(fcm.send(&msg).await, SendOutcome::Rejected { error } if error.contains("invalid_grant")));
    assert_eq!(*f.tokens_issued.lock().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// APNs

fn apns_provider(f: &ApnsFake) -> notify::apns::Apns {
    notify::apns::Apns::new(&notify::apns::ApnsConfig {
        endpoint: &f.fake.url(),
        key_id: "KEYID12345",
        team_id: "TEAMID1234",
        topic: "com.example.rider",
        key_pem: f.key_pem.as_bytes(),
    })
    .unwrap()
}

#[tokio::test]
async fn apns_gets_an_es256_provider_token_over_http2_and_a_stable_apns_id() {
    let f = apns_fake().await;
    let apns = apns_provider(&f);
    let msg = message("ntf_0000000000000010", Recipient::Apns(DEVICE.into()));
    let expected = notify::apns::apns_id("ntf_0000000000000010");
    assert_eq!(apns.send(&msg).await, SendOutcome::Delivered { provider_id: Some(expected.clone()) });
    assert_eq!(apns.send(&msg).await, SendOutcome::Delivered { provider_id: Some(expected.clone()) });
    let seen = f.fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.header("apns-id") == expected), "a retry keeps its apns-id");
    assert_eq!(seen[0].header("authorization"), seen[1].header("authorization"), "the provider token is reused");
    assert_eq!(
        seen[0].json(),
        json!({"aps": {"alert": {"title": "Your driver has arrived", "body": "Ahmed is outside in a white Toyota Corolla (ABC 123)"}},
            "kind": "driver_arrived", "trip_id": "trp_1"})
    );
    let other = message("ntf_0000000000000011", Recipient::Apns(DEVICE.into()));
    assert!(matches!(apns.send(&other).await, SendOutcome::Delivered { provider_id: Some(id) } if id != expected));
}

#[tokio::test]
async fn apns_answers_map_to_invalid_token_retry_and_a_new_provider_token() {
    let f = apns_fake().await;
    let apns = apns_provider(&f);
    let msg = message("ntf_0000000000000012", Recipient::Apns(DEVICE.into()));
    let reason = |r: &str| json!({"reason": r}).to_string();
    f.answers.lock().unwrap().extend([
        (410, vec![], json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64}).to_string()),
        (429, vec![], reason("TooManyRequests")),
        (500, vec![], reason("InternalServerError")),
        (403, vec![], reason("ExpiredProviderToken")),
    ]);
    assert!(matches!(apns.send(&msg).await, SendOutcome::InvalidToken { error } if error.contains("410")));
    assert!(matches!(apns.send(&msg).await, SendOutcome::Retry { error, .. } if error.contains("TooManyRequests")));
    assert!(matches!(apns.send(&msg).await, SendOutcome::Retry { .. }));
    assert!(matches!(apns.send(&msg).await, SendOutcome::Delivered { .. }), "a new token, one more try");
    let seen = f.fake.seen();
    let auths: Vec<&str> = seen.iter().map(|s| s.header("authorization")).collect();
    assert_eq!(auths.len(), 5);
    assert_eq!(auths[0], auths[3], "one token until Apple calls it expired");
    assert_ne!(auths[3], auths[4], "then a new one");
    // A token that is not hex never reaches Apple.
    let bad = message("ntf_0000000000000013", Recipient::Apns("../../x".into()));
    assert!(matches!(apns.send(&bad).await, SendOutcome::InvalidToken { .. }));
    assert_eq!(f.fake.seen().len(), 5);
}

// ---------------------------------------------------------------------------------------
// Twilio

fn twilio_provider(f: &Fake) -> notify::twilio::Twilio {
    notify::twilio::Twilio::new(&notify::twilio::TwilioConfig {
        endpoint: &f.url(),
        from: "+15005550006",
        sid: "AC0123456789abcdef",
        token: "twilio-auth-token",
    })
    .unwrap()
}

#[tokio::test]
async fn twilio_gets_basic_auth_and_the_form_and_its_answers_are_classified() {
    let f = twilio_fake(vec![
        (201, vec![], json!({"sid": "SM0123456789abcdef0123456789abcdef"}).to_string()),
        (
            429,
            vec![("retry-after", "7".to_owned())],
            json!({"code": 20429, "message": "Too Many Requests"}).to_string(),
        ),
        (
            400,
            vec![],
            json!({"code": 21211, "message": "The 'To' number +201001234567 is not a valid phone number.", "status": 400})
                .to_string(),
        ),
    ])
    .await;
    let twilio = twilio_provider(&f);
    let mut msg = message("ntf_0000000000000020", Recipient::Phone("+201001234567".into()));
    msg.body = "Delivery code: 4821 — give it to the driver & keep it safe".into();
    assert_eq!(
        twilio.send(&msg).await,
        SendOutcome::Delivered { provider_id: Some("SM0123456789abcdef0123456789abcdef".into()) }
    );
    let form = f.seen()[0].form();
    assert_eq!(form["To"], "+201001234567");
    assert_eq!(form["From"], "+15005550006");
    assert_eq!(form["Body"], "Delivery code: 4821 — give it to the driver & keep it safe");
    assert_eq!(
        twilio.send(&msg).await,
        SendOutcome::Retry {
            error: "twilio: 429 20429 Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(7))
        }
    );
    match twilio.send(&msg).await {
        SendOutcome::Rejected { error } => {
            assert!(error.contains("21211") && error.contains("not a valid phone number"), "{error}");
            assert!(!error.contains("201001234567") && error.contains("+*********567"), "masked: {error}");
        }
        other => panic!("400: {other:?}"),
    }
    // Wrong credentials: Twilio's 401 is a refusal, not a retry.
    let wrong = notify::twilio::Twilio::new(&notify::twilio::TwilioConfig {
        endpoint: &f.url(),
        from: "+15005550006",
        sid: "AC0123456789abcdef",
        token: "wrong",
    })
    .unwrap();
    assert!(matches!(wrong.send(&msg).await, SendOutcome::Rejected { error } if error.contains("20003")));
}

// ---------------------------------------------------------------------------------------
// SMTP

fn email_provider(port: u16) -> notify::email::Email {
    notify::email::Email::new(&format!("smtp+insecure://127.0.0.1:{port}"), "Dispatch <noreply@example.com>", None)
        .unwrap()
}

#[tokio::test]
async fn smtp_delivers_the_message_with_its_headers() {
    let (port, mails) = smtp_sink("250 2.1.5 Ok").await;
    let email = email_provider(port);
    let mut msg = message("ntf_0000000000000030", Recipient::Email("rider@example.com".into()));
    msg.title = "Your receipt".into();
    msg.body = "Trip trp_1: EGP 85.50. Thank you for riding.".into();
    match email.send(&msg).await {
        SendOutcome::Delivered { provider_id } => assert!(provider_id.unwrap().contains("4F2A1C")),
        other => panic!("{other:?}"),
    }
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "<noreply@example.com>");
    assert_eq!(m.to, ["<rider@example.com>"]);
    for header in [
        "From: Dispatch <noreply@example.com>",
        "To: rider@example.com",
        "Subject: Your receipt",
        "Message-ID: <ntf_0000000000000030@dispatch>",
    ] {
        assert!(m.data.lines().any(|l| l == header), "{header} in {}", m.data);
    }
    assert!(m.data.contains("Trip trp_1: EGP 85.50. Thank you for riding."), "{}", m.data);
}

#[tokio::test]
async fn smtp_4yz_is_retried_and_5yz_rejected() {
    let msg = message("ntf_0000000000000031", Recipient::Email("rider@example.com".into()));
    let (port, mails) = smtp_sink("451 4.3.0 Mailbox temporarily unavailable").await;
    assert!(matches!(email_provider(port).send(&msg).await, SendOutcome::Retry { error, .. } if error.contains("451")));
    let (port, _) = smtp_sink("550 5.1.1 <rider@example.com>: Recipient address rejected").await;
    match email_provider(port).send(&msg).await {
        SendOutcome::Rejected { error } => {
            assert!(error.contains("550") && error.contains("Recipient address rejected"), "{error}");
            assert!(!error.contains("rider@example.com") && error.contains("r***@example.com"), "masked: {error}");
        }
        other => panic!("550: {other:?}"),
    }
    assert!(mails.lock().unwrap().is_empty());
    // Nobody listening: a connection failure is retried.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    assert!(matches!(email_provider(closed).send(&msg).await, SendOutcome::Retry { .. }));
}

#[tokio::test]
async fn smtp_url_without_insecure_requires_starttls() {
    // The sink offers no STARTTLS: `smtp://` sends nothing rather than the message in clear.
    let (port, mails) = smtp_sink("250 2.1.5 Ok").await;
    let email = notify::email::Email::new(&format!("smtp://127.0.0.1:{port}"), "noreply@example.com", None).unwrap();
    let msg = message("ntf_0000000000000032", Recipient::Email("rider@example.com".into()));
    let outcome = email.send(&msg).await;
    assert!(!matches!(outcome, SendOutcome::Delivered { .. }), "{outcome:?}");
    assert!(mails.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// dispatchd

#[tokio::test]
async fn with_twilio_configured_otp_codes_go_to_twilio() {
    let f = twilio_fake(vec![]).await;
    let config = format!("[sms]\nprovider = \"twilio\"\ntwilio_endpoint = \"{}\"\nfrom = \"+15005550006\"\n", f.url());
    let s = common::Server::start_env(
        tempfile::tempdir().unwrap(),
        &[],
        Some(&config),
        &[("DISPATCH_TWILIO_SID", "AC0123456789abcdef"), ("DISPATCH_TWILIO_TOKEN", "twilio-auth-token")],
    );
    let body = json!({"phone": "+201001234567", "role": "rider"}).to_string();
    let r = s.call(hyper::Method::POST, "/v1/auth/otp", None, Some(&body)).await;
    assert!(r.status / 100 == 2, "{}", r.status);
    let deadline = std::time::Instant::now() + common::WAIT;
    while f.seen().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let form = f.seen().first().expect("Twilio got the code").form();
    assert_eq!(form["To"], "+201001234567");
    assert!(form["Body"].starts_with("Your dispatch code is "), "{}", form["Body"]);
    assert!(
        !s.dir.path().join("sms.jsonl").exists()
            || std::fs::read_to_string(s.dir.path().join("sms.jsonl")).unwrap().is_empty(),
        "the sink is not used"
    );
}

#[test]
fn start_up_names_the_missing_credential() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str, env: &[(&str, &str)]| {
        let path = dir.path().join("dispatch.toml");
        std::fs::write(&path, config).unwrap();
        std::process::Command::new(common::dispatchd_bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let missing = dir.path().join("nope.json");
    let out = run("", &[("DISPATCH_FCM_CREDENTIALS", missing.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DISPATCH_FCM_CREDENTIALS") && err.contains("nope.json"), "{err}");
    let out = run("[sms]\nprovider = \"twilio\"\nfrom = \"+15005550006\"\n", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DISPATCH_TWILIO_SID"));
    let key = dir.path().join("key.p8");
    std::fs::write(&key, "not a key").unwrap();
    let out = run(
        "[notify]\napns_key_id = \"K\"\napns_team_id = \"T\"\napns_topic = \"com.example\"\n",
        &[("DISPATCH_APNS_KEY", key.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DISPATCH_APNS_KEY"));
    let out = run("[notify]\nsos_phones = [\"0100\"]\n", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sos_phones"));
}

/// The outbox and FCM together, in `dispatchd`: a rider's accepted trip is pushed to the
/// rider's device through the FCM fake (which verifies the service-account token); a 503
/// is retried and the same item delivered on its second try; a device FCM calls
/// `UNREGISTERED` is removed and its item failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatchd_pushes_through_fcm_retries_a_503_and_drops_an_unregistered_device() {
    let f = fcm_fake().await;
    f.sends.lock().unwrap().push_back((503, vec![], json!({"error": {"code": 503}}).to_string()));
    let url = f.fake.url();
    let config = format!("[notify]\nfcm_endpoint = \"{url}\"\nfcm_token_url = \"{url}/token\"\n");
    let credentials = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fcm-test-service-account.json");
    let s = common::Server::start_env(
        tempfile::tempdir().unwrap(),
        &[],
        Some(&config),
        &[("DISPATCH_FCM_CREDENTIALS", credentials)],
    );
    s.post("/v1/admin/zones", common::ADMIN, common::cairo_zone()).await.expect(201);
    let (rider_user, rider) = common::user(&s, "rider", 1).await;
    let rider_id = rider_user["id"].as_str().unwrap().to_owned();
    let (_, driver) = common::online_driver(&s, 2, common::HERE).await;
    let device = json!({"platform": "fcm", "token": "rider-device-1"});
    s.post("/v1/me/devices", &rider, device).await.expect(201);
    let id = common::create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    let sent = notifications_when(&s, &format!("?user_id={rider_id}"), "trip_accepted", |n| {
        n.iter().any(|n| n["status"] == "sent")
    })
    .await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (&sent[0]["status"], &sent[0]["attempts"], &sent[0]["channel"]),
        (&json!("sent"), &json!(2), &json!("push"))
    );
    let pushes: Vec<Value> =
        f.fake.seen().iter().filter(|r| r.path.ends_with("messages:send")).map(Seen::json).collect();
    assert_eq!(pushes.len(), 2, "the 503, then the delivery");
    for p in &pushes {
        assert_eq!(p["message"]["token"], "rider-device-1");
        assert_eq!(p["message"]["data"]["kind"], "trip_accepted");
        assert_eq!(p["message"]["data"]["trip_id"], id.as_str());
        assert_eq!(p["message"]["data"]["notification_id"], sent[0]["id"], "a retry is the same item");
    }

    // FCM says the device is gone: the item fails and the device is removed.
    f.sends.lock().unwrap().push_back((404, vec![], fcm_error(404, "UNREGISTERED")));
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    let failed = notifications_when(&s, &format!("?user_id={rider_id}"), "driver_arrived", |n| {
        n.iter().any(|n| n["status"] == "failed")
    })
    .await;
    assert_eq!(failed.first().map(|n| &n["status"]), Some(&json!("failed")), "{failed:?}");
    let devices = s.get("/v1/me/devices", &rider).await.expect(200);
    assert_eq!(devices["items"], json!([]), "the unregistered device is removed");
}
