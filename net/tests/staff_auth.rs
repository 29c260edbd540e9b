//! Staff sign-in, black box (API.md v1.1 "Back office"): setup tokens, Argon2id passwords,
//! TOTP codes computed here (RFC 6238 with `ring`, independently of the server's
//! `totp.rs`, from the secret in the `totp_uri`), the one 401 whatever was wrong, replayed
//! codes, the lock after 5 failures (and its end 15 minutes later, by the engine's clock),
//! 12-hour staff tokens, sign-out, a new setup from an admin, custom staff roles from
//! `[roles.<name>]`, and credentials kept across a restart (from a checkpoint).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::totp::{base32, totp_at, unbase32};
use common::*;
use hyper::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// The secret in an `otpauth://` URI, after checking the URI's fixed parts.
fn secret_of(uri: &str, email: &str) -> Vec<u8> {
    let prefix = format!("otpauth://totp/dispatch:{email}?secret=");
    let rest = uri.strip_prefix(&prefix).unwrap_or_else(|| panic!("{uri}"));
    let (secret, params) = rest.split_once('&').unwrap();
    assert_eq!(params, "issuer=dispatch&algorithm=SHA1&digits=6&period=30");
    let secret = unbase32(secret);
    assert_eq!(secret.len(), 20);
    secret
}

/// The current 30-second step, `offset_s` ahead of the system clock (the server's
/// `--clock-offset-s`).
fn step_now(offset_s: u64) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    (now + offset_s) / 30
}

async fn post_anon(s: &Server, path: &str, body: Value) -> Reply {
    s.call(Method::POST, path, None, Some(&body.to_string())).await
}

/// An admin creates a staff user of `role` signing in with `email`: (user, token, setup token).
async fn staff(s: &Server, role: &str, email: &str, n: u32) -> (Value, String, String) {
    let body = json!({"role": role, "name": format!("Staff {n}"), "phone": format!("+2011{:08}", n), "email": email});
    let v = s.post("/v1/admin/users", ADMIN, body).await.expect(201);
    (v["user"].clone(), v["token"].as_str().unwrap().to_owned(), v["setup_token"].as_str().unwrap().to_owned())
}

/// Sets a staff user up: its TOTP secret.
async fn set_up(s: &Server, setup_token: &str, password: &str, email: &str) -> Vec<u8> {
    let v = post_anon(s, "/v1/auth/staff/setup", json!({"setup_token": setup_token, "password": password}))
        .await
        .expect(200);
    secret_of(v["totp_uri"].as_str().unwrap(), email)
}

async fn login(s: &Server, email: &str, password: &str, code: &str) -> Reply {
    post_anon(s, "/v1/auth/staff/login", json!({"email": email, "password": password, "totp": code})).await
}

/// An error body without its request id (which differs per request).
fn error_of(r: &Reply) -> Value {
    let mut e = r.json["error"].clone();
    e.as_object_mut().unwrap().remove("request_id");
    e
}

/// Whether any file under `dir` holds `needle` (the data directory: WAL segments, the
/// checkpoint store).
fn any_file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        if path.is_dir() {
            any_file_holds(&path, needle)
        } else {
            std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// Moves a stopped server's data directory to a new one started with `args`.
fn restart(mut s: Server, args: &[&str], config: Option<&str>) -> Server {
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    Server::start_in(dir, args, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_then_login_opens_the_staff_routes_and_every_wrong_part_answers_the_same_401() {
    let s = Server::start(&[], None);
    let (user, _, setup_token) = staff(&s, "support", "Amal@Example.com", 1).await;
    assert_eq!(user["role"], "support");
    assert_eq!(user["email"], "Amal@Example.com");
    // The password's rules, then a forged token.
    let short =
        post_anon(&s, "/v1/auth/staff/setup", json!({"setup_token": setup_token, "password": "too short"})).await;
    short.expect_error(400, "invalid_request");
    assert_eq!(short.json["error"]["param"], "password");
    let mut forged = setup_token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    post_anon(&s, "/v1/auth/staff/setup", json!({"setup_token": forged, "password": PASSWORD}))
        .await
        .expect_error(401, "unauthorized");
    let secret = set_up(&s, &setup_token, PASSWORD, "Amal@Example.com").await;
    // A setup token works once.
    post_anon(&s, "/v1/auth/staff/setup", json!({"setup_token": setup_token, "password": PASSWORD}))
        .await
        .expect_error(401, "unauthorized");

    // Signed in (the e-mail in any case): a staff route opens.
    let step = step_now(0);
    let code = totp_at(&secret, step);
    let v = login(&s, "amal@example.COM", PASSWORD, &code).await.expect(200);
    assert_eq!((v["user"]["id"].clone(), v["user"]["role"].as_str()), (user["id"].clone(), Some("support")));
    let token = v["token"].as_str().unwrap().to_owned();
    s.get("/v1/admin/trips", &token).await.expect(200);

    // A code is used once; a wrong password, a wrong code and an unknown e-mail: the same 401.
    let replay = login(&s, "amal@example.com", PASSWORD, &code).await;
    replay.expect_error(401, "unauthorized");
    let wrong_code = totp_at(&secret, step + 5);
    let wrong_password =
        login(&s, "amal@example.com", "correct horse battery stable", &totp_at(&secret, step + 1)).await;
    let wrong_totp = login(&s, "amal@example.com", PASSWORD, &wrong_code).await;
    let unknown = login(&s, "nobody@example.com", PASSWORD, &code).await;
    for r in [&wrong_password, &wrong_totp, &unknown] {
        r.expect_error(401, "unauthorized");
        assert_eq!(error_of(r), error_of(&replay), "{}", r.text);
        assert_eq!(r.header("www-authenticate"), replay.header("www-authenticate"));
    }

    // Signing out ends the token; the bootstrap admin cannot sign out.
    s.post("/v1/auth/logout", &token, json!({})).await.expect(204);
    s.get("/v1/admin/trips", &token).await.expect_error(401, "unauthorized");
    s.post("/v1/auth/logout", ADMIN, json!({})).await.expect_error(400, "invalid_request");

    // An admin's new setup token: setting up again replaces the password and the secret.
    let id = user["id"].as_str().unwrap();
    let (rider, rider_token) = common::user(&s, "rider", 2).await;
    s.post(&format!("/v1/admin/users/{id}/staff-setup"), &rider_token, json!({})).await.expect_error(403, "forbidden");
    let rider_id = rider["id"].as_str().unwrap();
    s.post(&format!("/v1/admin/users/{rider_id}/staff-setup"), ADMIN, json!({}))
        .await
        .expect_error(400, "invalid_request");
    let again = s.post(&format!("/v1/admin/users/{id}/staff-setup"), ADMIN, json!({})).await.expect(200);
    assert!(again["expires_at"].is_string());
    let new_password = "another long passphrase";
    let new_secret = set_up(&s, again["setup_token"].as_str().unwrap(), new_password, "Amal@Example.com").await;
    assert_ne!(new_secret, secret);
    let step = step_now(0);
    login(&s, "amal@example.com", PASSWORD, &totp_at(&new_secret, step)).await.expect_error(401, "unauthorized");
    login(&s, "amal@example.com", new_password, &totp_at(&secret, step)).await.expect_error(401, "unauthorized");
    let v = login(&s, "amal@example.com", new_password, &totp_at(&new_secret, step)).await.expect(200);
    s.get("/v1/admin/trips", v["token"].as_str().unwrap()).await.expect(200);
    // The log lines name no password or setup token (a 6-digit code could match any number
    // in them by chance: not checked).
    let log = s.stderr();
    assert!(log.contains("staff_login"), "the control: the requests are logged");
    for secret in [PASSWORD, new_password, &setup_token] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_lock_the_account_for_15_minutes_and_a_restart_keeps_the_credentials() {
    // Checkpoints every 10 records: the credentials come back from a checkpoint's state.
    let config = Some("[store]\ncheckpoint_every_records = 10\n");
    let s = Server::start(&[], config);
    for n in 0..8 {
        common::user(&s, "rider", 100 + n).await;
    }
    let (_, _, setup_token) = staff(&s, "admin", "boss@example.com", 1).await;
    let secret = set_up(&s, &setup_token, PASSWORD, "boss@example.com").await;
    for i in 0..5 {
        let r = login(&s, "boss@example.com", "not the password at all", &totp_at(&secret, step_now(0))).await;
        assert_eq!(r.status, 401, "failure {i}: {}", r.text);
    }
    // Locked: even the right credentials are refused, with Retry-After.
    let r = login(&s, "boss@example.com", PASSWORD, &totp_at(&secret, step_now(0))).await;
    r.expect_error(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");

    // 15 minutes later by the engine's clock (and after a restart), the account opens.
    let offset = 15 * 60 + 1;
    let s = restart(s, &["--clock-offset-s", &offset.to_string()], config);
    // Neither the log nor the checkpoint holds the password, the TOTP secret (raw or as
    // shown) or the setup token; the PHC hash is there.
    let data = s.data_dir();
    assert!(any_file_holds(&data, b"$argon2id$v=19$"), "the control: the PHC hash is in the log");
    let hex_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let base32_secret = base32(&secret);
    assert_eq!(unbase32(&base32_secret), secret);
    for needle in
        [PASSWORD.as_bytes(), &secret[..], hex_secret.as_bytes(), base32_secret.as_bytes(), setup_token.as_bytes()]
    {
        assert!(!any_file_holds(&data, needle), "{:?} is in the data directory", String::from_utf8_lossy(needle));
    }
    let v = login(&s, "boss@example.com", PASSWORD, &totp_at(&secret, step_now(offset))).await.expect(200);
    assert_eq!(v["user"]["role"], "admin");
    s.get("/v1/admin/ledger/verify", v["token"].as_str().unwrap()).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_token_ends_after_12_hours_a_riders_does_not_and_a_setup_token_after_24() {
    let s = Server::start(&[], None);
    let (_, staff_token, setup_token) = staff(&s, "support", "night@example.com", 1).await;
    let secret = set_up(&s, &setup_token, PASSWORD, "night@example.com").await;
    let v = login(&s, "night@example.com", PASSWORD, &totp_at(&secret, step_now(0))).await.expect(200);
    let signed_in = v["token"].as_str().unwrap().to_owned();
    let (_, rider_token) = common::user(&s, "rider", 2).await;
    for t in [&staff_token, &signed_in, &rider_token] {
        s.get("/v1/me", t).await.expect(200);
    }
    let (_, _, unused_setup) = staff(&s, "support", "late@example.com", 3).await;
    let s = restart(s, &["--clock-offset-s", &(12 * 3600 + 60).to_string()], None);
    for t in [&staff_token, &signed_in] {
        s.get("/v1/me", t).await.expect_error(401, "unauthorized");
    }
    s.get("/v1/me", &rider_token).await.expect(200);
    // A setup token ends after 24 hours.
    let s = restart(s, &["--clock-offset-s", &(24 * 3600 + 60).to_string()], None);
    post_anon(&s, "/v1/auth/staff/setup", json!({"setup_token": unused_setup, "password": PASSWORD}))
        .await
        .expect_error(401, "unauthorized");
    s.get("/v1/me", &rider_token).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_role_has_its_configured_permissions_only() {
    let config = "[roles.finance]\npermissions = [\"users.read\"]\n[roles.ops]\npermissions = [\"drivers.suspend\"]\n";
    let s = Server::start(&[], Some(config));
    let (user, token, setup_token) = staff(&s, "finance", "fin@example.com", 1).await;
    assert_eq!(user["role"], "finance");
    s.get("/v1/admin/drivers", &token).await.expect(200);
    s.get("/v1/admin/trips", &token).await.expect_error(403, "forbidden");
    // A permission a custom role holds works end to end: the engine takes the command
    // (it leaves which staff hold a permission to the route's check), and the trail
    // names the role.
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (driver, _) = common::user(&s, "driver", 7).await;
    let driver_id = driver["id"].as_str().unwrap();
    let suspend = format!("/v1/admin/drivers/{driver_id}/suspend");
    s.post(&suspend, &token, json!({"reason": "x"})).await.expect_error(403, "forbidden");
    let (_, ops, _) = staff(&s, "ops", "ops@example.com", 2).await;
    s.post(&suspend, &ops, json!({"reason": "documents"})).await.expect(200);
    let trail = s.get(&format!("/v1/admin/audit?target_id={driver_id}"), ADMIN).await.expect(200);
    assert_eq!(trail["items"][0]["action"], "driver.suspend", "{trail}");
    assert_eq!(trail["items"][0]["actor_role"], "ops", "{trail}");
    // Without `trips.read` a staff user does not see riders' trips: 404, as for anyone
    // who may not see one.
    let (_, rider) = common::user(&s, "rider", 8).await;
    let trip = create_trip(&s, &rider).await;
    let path = format!("/v1/trips/{}", trip["id"].as_str().unwrap());
    s.get(&path, &token).await.expect_error(404, "not_found");
    s.get(&path, ADMIN).await.expect(200);
    // It signs in like any staff user, and is shown with its role.
    let secret = set_up(&s, &setup_token, PASSWORD, "fin@example.com").await;
    let v = login(&s, "fin@example.com", PASSWORD, &totp_at(&secret, step_now(0))).await.expect(200);
    assert_eq!(v["user"]["role"], "finance");
    let me = s.get("/v1/me", v["token"].as_str().unwrap()).await.expect(200);
    assert_eq!(me["role"], "finance");
    // What creation refuses: an unknown role, an e-mail for a rider, a taken or bad e-mail.
    for (body, param) in [
        (json!({"role": "pilot", "name": "P", "phone": "+201200000001"}), "role"),
        (json!({"role": "rider", "name": "R", "phone": "+201200000002", "email": "r@example.com"}), "email"),
        (json!({"role": "support", "name": "S", "phone": "+201200000003", "email": "FIN@example.com"}), "email"),
        (json!({"role": "support", "name": "S", "phone": "+201200000004", "email": "not an address"}), "email"),
    ] {
        let r = s.post("/v1/admin/users", ADMIN, body).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], param, "{}", r.text);
    }
    // A staff user without an e-mail keeps v1's answer: a token only.
    let v = s.post("/v1/admin/users", ADMIN, json!({"role": "support", "name": "S", "phone": "+201200000005"})).await;
    let v = v.expect(201);
    assert!(v.get("setup_token").is_none() && v["token"].is_string());
}
