//! The console's back-office pages (issue 23, helper E) in a real headless Chromium against
//! the real `dispatchd serve --dev`: users, driver applications, payouts, coupons,
//! settings, the audit trail, notifications and webhook deliveries, reports. Each page's
//! fixtures are made through the API first (as the black-box suites make them); the test
//! then works the page as an operator would — search, open, confirm, see the API's
//! refusals — and checks the API afterwards. `look_at` takes every page in both languages
//! and both sizes (no overflow, the axe scan, a screenshot).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;
use browser::*;

use bytes::Bytes;
use fantoccini::{Client, Locator};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const PNG: &[u8] = include_bytes!("fixtures/office/licence.png");
const PDF: &[u8] = include_bytes!("fixtures/office/registration.pdf");

/// `PUT path` with raw bytes (a document upload), answering the status.
async fn put_raw(s: &Server, path: &str, token: &str, body: &'static [u8], content_type: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header("host", s.addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

async fn call_ok(s: &Server, method: Method, path: &str, token: &str, body: Value, want: u16) -> Value {
    let (status, _, v) = s.call(method, path, Some(token), Some(body)).await;
    assert_eq!(status, want, "{path}: {v}");
    v
}

/// The code of the last OTP the file sink holds for `phone`.
fn otp_code(s: &Server, phone: &str) -> String {
    let sms = std::fs::read_to_string(s._dir.path().join("sms.jsonl")).unwrap();
    let line = sms.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).rfind(|l| l["to"] == phone).unwrap();
    line["code"].as_str().unwrap().to_owned()
}

/// A driver applicant (OTP sign-in as a driver), every detail and document, submitted.
async fn submitted_applicant(s: &Server, phone: &str, name: &str) -> String {
    let (status, _, _) =
        s.call(Method::POST, "/v1/auth/otp", None, Some(json!({"phone": phone, "role": "driver"}))).await;
    assert_eq!(status, 202);
    let code = otp_code(s, phone);
    let (status, _, v) =
        s.call(Method::POST, "/v1/auth/otp/verify", None, Some(json!({"phone": phone, "code": code}))).await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let details = json!({"name": name, "vehicle": {"category": "economy", "plate": "ABC 123", "make": "Hyundai",
        "model": "Elantra", "color": "silver", "year": 2019},
        "license": {"number": "L-123456", "expires_on": "2031-06-30"}});
    call_ok(s, Method::PUT, "/v1/driver/application", &token, details, 200).await;
    for (kind, bytes, ty) in [
        ("license_front", PNG, "image/png"),
        ("license_back", PNG, "image/png"),
        ("id_card", PNG, "image/png"),
        ("vehicle_registration", PDF, "application/pdf"),
        ("photo", PNG, "image/png"),
    ] {
        assert_eq!(
            put_raw(s, &format!("/v1/driver/application/documents/{kind}"), &token, bytes, ty).await,
            201,
            "{kind}"
        );
    }
    call_ok(s, Method::POST, "/v1/driver/application/submit", &token, json!({}), 200).await;
    v["user"]["id"].as_str().unwrap().to_owned()
}

/// A webhook receiver on loopback that answers every request `200 OK`: its URL.
async fn accepting_receiver() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}/hook")
}

async fn open_page(c: &Client, id: &str) {
    click(c, &format!("nav button[data-view='{id}']")).await;
    until(c, &format!("!document.getElementById('view-{id}').hidden"), WAIT, id).await;
}

/// Types `text` into the element `css` selects (cleared first).
async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Confirms the open dialog with `reason` (when it asks one) and `typed` (when it asks to type back).
async fn confirm(c: &Client, reason: Option<&str>, typed: Option<&str>) {
    until(c, "document.querySelector('dialog.office-dialog[open]')", WAIT, "the confirmation").await;
    if let Some(r) = reason {
        type_into(c, "dialog.office-dialog .dlg-reason", r).await;
    }
    if let Some(t) = typed {
        type_into(c, "dialog.office-dialog .dlg-typeback", t).await;
    }
    click(c, "dialog.office-dialog .dlg-ok").await;
    until(c, "!document.querySelector('dialog.office-dialog')", WAIT, "the dialog closed").await;
}

fn text_of(css: &str) -> String {
    format!("(document.querySelector(\"{css}\")?.textContent ?? '')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_applications_payouts_and_coupons_are_worked_from_the_console() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&[]);
    s.post("/v1/admin/zones", ADMIN, cairo_zone(), 201).await;

    // Fixtures: a rider to find by name and by phone, a staff user, an applicant, a
    // driver with two payouts asked, a coupon.
    let rider = s
        .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": "Amal Hassan", "phone": "+201000004321"}), 201)
        .await;
    let rider_id = rider["user"]["id"].as_str().unwrap().to_owned();
    let staff = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "support", "name": "Sara Staff", "phone": "+201000009999", "email": "sara@example.com"}),
            201,
        )
        .await;
    let staff_id = staff["user"]["id"].as_str().unwrap().to_owned();
    let applicant_id = submitted_applicant(&s, "+201000005555", "Karim Applicant").await;
    let driver = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "driver", "name": "Omar Driver", "phone": "+201000007777",
            "vehicle": {"category": "economy", "plate": "CAI 1"}}),
            201,
        )
        .await;
    let (driver_id, driver_token) =
        (driver["user"]["id"].as_str().unwrap().to_owned(), driver["token"].as_str().unwrap().to_owned());
    s.post(
        &format!("/v1/admin/wallets/{driver_id}/credit"),
        ADMIN,
        json!({"amount_minor": 10_000, "currency": "EGP", "reason": "bonus"}),
        201,
    )
    .await;
    let p1 = s.post("/v1/driver/payouts", &driver_token, json!({"amount_minor": 4000}), 201).await;
    let p2 = s.post("/v1/driver/payouts", &driver_token, json!({"amount_minor": 3050}), 201).await;
    s.post("/v1/admin/coupons", ADMIN, json!({"code": "WELCOME10", "percent_bps": 1000, "max_uses": 100}), 201).await;

    let c = browser(port).await;
    sign_in_with_token(&s, &c).await;

    // ---- Users: search by name, then by the phone's last digits; open; block; unblock; erase.
    open_page(&c, "users").await;
    type_into(&c, ".users-q", "amal").await;
    click(&c, "#view-users form button[type=submit]").await;
    until(&c, "[...document.querySelectorAll('.users-list tbody tr')].length === 1 && document.querySelector('.users-list tbody').textContent.includes('Amal Hassan')", WAIT, "the search by name").await;
    type_into(&c, ".users-q", "4321").await;
    click(&c, "#view-users form button[type=submit]").await;
    until(
        &c,
        "document.querySelector('.users-list tbody')?.textContent.includes('+201000004321')",
        WAIT,
        "the search by phone",
    )
    .await;
    click(&c, ".users-list tbody tr button.link").await;
    until(&c, &format!("{}.includes('{rider_id}')", text_of(".users-detail .user-id")), WAIT, "the user's detail")
        .await;
    look_at(
        &c,
        "backoffice-users",
        "document.querySelector('.users-detail .user-id') && document.querySelector('.users-list tbody tr')",
    )
    .await;
    click(&c, ".users-detail .user-block").await;
    // Cancelled: nothing is sent.
    until(&c, "document.querySelector('dialog.office-dialog[open]')", WAIT, "the confirmation").await;
    click(&c, "dialog.office-dialog .dlg-cancel").await;
    until(&c, "!document.querySelector('dialog.office-dialog')", WAIT, "the dialog closed").await;
    assert_eq!(
        s.get(&format!("/v1/admin/users/{rider_id}")).await["status"],
        "active",
        "a cancelled block blocks nobody"
    );
    click(&c, ".users-detail .user-block").await;
    confirm(&c, Some("abusive messages"), None).await;
    until(&c, &format!("{}.includes('blocked')", text_of(".users-detail .user-status")), WAIT, "blocked").await;
    let u = s.get(&format!("/v1/admin/users/{rider_id}")).await;
    assert_eq!((u["status"].as_str(), u["blocked"]["reason"].as_str()), (Some("blocked"), Some("abusive messages")));
    click(&c, ".users-detail .user-unblock").await;
    confirm(&c, Some("apologised"), None).await;
    until(&c, &format!("{}.includes('active')", text_of(".users-detail .user-status")), WAIT, "unblocked").await;
    // Erase asks for the id typed back: Confirm stays disabled until it matches.
    click(&c, ".users-detail .user-erase").await;
    until(&c, "document.querySelector('dialog.office-dialog[open] .dlg-typeback')", WAIT, "the erase confirmation")
        .await;
    type_into(&c, "dialog.office-dialog .dlg-typeback", "usr_wrong").await;
    assert_eq!(js(&c, "return document.querySelector('dialog.office-dialog .dlg-ok').disabled;").await, json!(true));
    type_into(&c, "dialog.office-dialog .dlg-typeback", &rider_id).await;
    assert_eq!(js(&c, "return document.querySelector('dialog.office-dialog .dlg-ok').disabled;").await, json!(false));
    click(&c, "dialog.office-dialog .dlg-ok").await;
    until(&c, &format!("{}.includes('erased')", text_of(".users-detail .user-status")), WAIT, "erased").await;
    assert_eq!(s.get(&format!("/v1/admin/users/{rider_id}")).await["status"], "erased");
    // Staff are not blockable: the API's refusal is shown in the alert.
    type_into(&c, ".users-q", "sara").await;
    click(&c, "#view-users form button[type=submit]").await;
    until(
        &c,
        "document.querySelector('.users-list tbody')?.textContent.includes('Sara Staff')",
        WAIT,
        "the staff user",
    )
    .await;
    click(&c, ".users-list tbody tr button.link").await;
    until(
        &c,
        &format!("{}.includes('{staff_id}')", text_of(".users-detail .user-id")),
        WAIT,
        "the staff user's detail",
    )
    .await;
    click(&c, ".users-detail .user-block").await;
    confirm(&c, Some("testing"), None).await;
    until(
        &c,
        &format!("{}.includes('staff accounts are not blocked')", text_of(".users-detail-error")),
        WAIT,
        "the API's refusal",
    )
    .await;
    assert_eq!(s.get(&format!("/v1/admin/users/{staff_id}")).await["status"], "active");
    assert_no_injection(&c).await;

    // ---- Applications: the submitted one, its documents inline (images by data: URL, the PDF as a download).
    open_page(&c, "applications").await;
    until(
        &c,
        "document.querySelector('.apps-list tbody')?.textContent.includes('Karim Applicant')",
        WAIT,
        "the application listed",
    )
    .await;
    click(&c, ".apps-list tbody tr button.link").await;
    until(&c, "document.querySelectorAll('.apps-detail img.doc-image').length === 4 && [...document.querySelectorAll('.apps-detail img.doc-image')].every((i) => i.complete && i.naturalWidth === 48)", WAIT, "the four images drawn").await;
    let imgs =
        js(&c, "return [...document.querySelectorAll('.apps-detail img.doc-image')].map((i) => i.src.slice(0, 22));")
            .await;
    assert!(imgs.as_array().unwrap().iter().all(|s| s == "data:image/png;base64,"), "{imgs}");
    let pdf = js(&c, "const a = document.querySelector('.apps-detail a.doc-download'); return [a.getAttribute('download'), a.href.slice(0, 28), atob(a.href.split(',')[1]).slice(0, 5)];").await;
    assert_eq!(
        pdf,
        json!([format!("{applicant_id}-vehicle_registration.pdf"), "data:application/pdf;base64,", "%PDF-"])
    );
    look_at(&c, "backoffice-applications", "document.querySelectorAll('.apps-detail img.doc-image').length === 4")
        .await;
    click(&c, ".apps-detail .app-reject").await;
    confirm(&c, Some("blurry photo"), None).await;
    until(&c, &format!("{}.includes('rejected')", text_of(".apps-detail .app-status")), WAIT, "rejected").await;
    let a = s.get(&format!("/v1/admin/applications/{applicant_id}")).await;
    assert_eq!((a["status"].as_str(), a["reason"].as_str()), (Some("rejected"), Some("blurry photo")));
    assert_no_injection(&c).await;

    // ---- Payouts: amounts in major units; approve one, reject the other.
    open_page(&c, "payouts").await;
    until(
        &c,
        "document.querySelectorAll('.payouts-list tbody tr .payout-approve').length === 2",
        WAIT,
        "two payouts asked",
    )
    .await;
    let amounts =
        js(&c, "return [...document.querySelectorAll('.payouts-list .amount')].map((e) => e.textContent).sort();")
            .await;
    assert_eq!(amounts, json!(["30.50 EGP", "40.00 EGP"]));
    look_at(&c, "backoffice-payouts", "document.querySelectorAll('.payouts-list .amount').length === 2").await;
    let (id1, id2) = (p1["id"].as_str().unwrap(), p2["id"].as_str().unwrap());
    click(&c, &format!(".payout-approve[aria-label$='{id1}']")).await;
    confirm(&c, Some(""), None).await;
    until(&c, &format!("{}.includes('{id1}')", text_of(".payouts-note")), WAIT, "approved").await;
    click(&c, &format!(".payout-reject[aria-label$='{id2}']")).await;
    confirm(&c, Some("bank details missing"), None).await;
    until(&c, &format!("{}.includes('{id2}')", text_of(".payouts-note")), WAIT, "rejected").await;
    let all = s.get("/v1/admin/payouts").await;
    let status = |id: &str| all["items"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap()["status"].clone();
    assert_ne!(status(id1), "requested", "approved: sent to the gateway");
    assert_eq!(status(id2), "rejected");

    // ---- Coupons: the detail with its uses; disable.
    open_page(&c, "coupons").await;
    until(
        &c,
        "document.querySelector('.coupons-list tbody')?.textContent.includes('WELCOME10')",
        WAIT,
        "the coupon listed",
    )
    .await;
    click(&c, ".coupons-list tbody tr button.link").await;
    until(&c, &format!("{} === '0'", text_of(".coupons-detail .coupon-uses")), WAIT, "the coupon's uses").await;
    look_at(&c, "backoffice-coupons", "document.querySelector('.coupons-detail .coupon-uses')").await;
    click(&c, ".coupons-detail .coupon-disable").await;
    confirm(&c, None, None).await;
    until(&c, "document.querySelector('.coupons-detail .coupon-disable')?.disabled", WAIT, "disabled").await;
    assert!(s.get("/v1/admin/coupons/WELCOME10").await["disabled_at"].is_string());
    assert_no_injection(&c).await;

    // ---- Reports, revenue: one cash ride completed today, charted; the table and the CSV
    // say its amounts in major units, exactly the API's minor units.
    let rider_two = completed_cash_ride(&s).await;
    let row = s.get("/v1/admin/reports/revenue").await["items"][0].clone();
    assert_eq!((row["currency"].as_str(), row["trips_completed"].as_i64()), (Some("EGP"), Some(1)), "{row}");
    let gross = row["gross_minor"].as_i64().unwrap();
    assert!(gross > 0, "{row}");
    open_page(&c, "reports").await;
    click(&c, "#view-reports form button[type=submit]").await;
    until(&c, "document.querySelectorAll('.reports-charts canvas').length === 1 && document.querySelector('.reports-tables tbody .amount')", WAIT, "the revenue report").await;
    let want = format!("{}.{:02}", gross / 100, gross % 100);
    let cells = js(&c, "return [...document.querySelectorAll('.reports-tables tbody tr:first-child .amount')].map((e) => e.textContent);").await;
    assert_eq!(cells[0], json!(format!("{want} EGP")), "{cells}");
    let csv = js(
        &c,
        "return decodeURIComponent(document.querySelector('a.csv-download').href.split(',').slice(1).join(','));",
    )
    .await;
    let lines: Vec<&str> = csv.as_str().unwrap().lines().collect();
    assert_eq!(lines[0], "period_start,currency,trips_completed,gross,commission,discount,refunded,cancel_fees");
    assert!(lines[1].contains(&format!(",EGP,1,{want},")), "{csv}");
    look_at(&c, "backoffice-reports-revenue", "document.querySelectorAll('.reports-charts canvas').length === 1").await;

    // ---- Notifications: the ride's, found by the rider's id.
    let outbox = s.get(&format!("/v1/admin/notifications?user_id={rider_two}")).await;
    let kinds = outbox["items"].as_array().unwrap().len();
    assert!(kinds > 0, "{outbox}");
    open_page(&c, "outbox").await;
    type_into(&c, ".notes-user", &rider_two).await;
    click(&c, "#view-outbox form button[type=submit]").await;
    until(&c, &format!("document.querySelectorAll('.notes-list tbody tr').length === {kinds} && document.querySelector('.notes-list tbody').textContent.includes('{rider_two}')"), WAIT, "the rider's notifications").await;
    look_at(&c, "backoffice-notifications", "document.querySelector('.notes-list tbody time')").await;
    assert_no_injection(&c).await;
}

/// A cash ride from booking to completion in the Cairo zone: its rider's id.
async fn completed_cash_ride(s: &Server) -> String {
    let here = json!({"lat": 30.0444, "lng": 31.2357});
    let rider = s
        .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": "Rider Two", "phone": "+201000001111"}), 201)
        .await;
    let (rider_id, rider) =
        (rider["user"]["id"].as_str().unwrap().to_owned(), rider["token"].as_str().unwrap().to_owned());
    // A phone to push to: the ride's notifications (accepted, arrived, the receipt) go
    // through the outbox (no FCM is configured: they stay pending or fail there).
    s.post("/v1/me/devices", &rider, json!({"platform": "fcm", "token": "fcm-token-of-rider-two"}), 201).await;
    let driver = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "driver", "name": "Driver Two", "phone": "+201000002222",
            "vehicle": {"category": "economy", "plate": "CAI 2"}}),
            201,
        )
        .await;
    let driver = driver["token"].as_str().unwrap().to_owned();
    s.post("/v1/driver/status", &driver, json!({"status": "online", "location": here}), 200).await;
    let booked = s
        .post(
            "/v1/trips",
            &rider,
            json!({"pickup": {"lat": 30.0444, "lng": 31.2357, "address": "Tahrir"},
            "dropoff": {"lat": 30.06, "lng": 31.25}, "category": "economy", "payment_method": "cash"}),
            201,
        )
        .await;
    let id = booked["id"].as_str().unwrap().to_owned();
    // The offer reaches the driver a moment after the booking.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, _, v) =
            s.call(Method::POST, &format!("/v1/trips/{id}/accept"), Some(&driver), Some(json!({}))).await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never offered: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({}), 200).await;
    let code = booked["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code}), 200).await;
    s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({}), 200).await;
    rider_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_audit_outbox_and_reports_are_worked_from_the_console() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&["--demo", "--demo-drivers", "20"]);
    // Two endpoints: one that nobody answers (its delivery stays pending, retried by the
    // server: not resendable), one that answers 200 (delivered: resendable).
    s.post(
        "/v1/admin/webhook-endpoints",
        ADMIN,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["application.submitted"], "description": "nobody"}),
        201,
    )
    .await;
    let url = accepting_receiver().await;
    let hook = s
        .post(
            "/v1/admin/webhook-endpoints",
            ADMIN,
            json!({"url": url, "events": ["application.submitted"], "description": "CRM"}),
            201,
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    submitted_applicant(&s, "+201000005556", "Mona Applicant").await;
    let deliveries = format!("/v1/admin/webhook-endpoints/{hook_id}/deliveries");
    let deadline = std::time::Instant::now() + WAIT;
    while s.get(&deliveries).await["items"][0]["status"] != "delivered" {
        assert!(std::time::Instant::now() < deadline, "never delivered: {}", s.get(&deliveries).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let c = browser(port).await;
    sign_in_with_token(&s, &c).await;

    // ---- Settings: a value the page refuses is not sent; one the API refuses is shown
    // beside its field (its `param`); a good one is applied.
    open_page(&c, "settings").await;
    until(&c, "document.querySelector('[data-param=\"dispatch.offers_per_round\"]')", WAIT, "the settings form").await;
    look_at(&c, "backoffice-settings", "document.querySelector('[data-param=\"dispatch.offers_per_round\"]')").await;
    let before = s.get("/v1/admin/settings").await;
    type_into(&c, "[data-param='dispatch.offers_per_round']", "0").await;
    click(&c, ".settings-save").await;
    until(&c, &format!("{}.length > 0", text_of("#set-dispatch-offers_per_round-error")), WAIT, "the page's own check")
        .await;
    assert_eq!(
        js(&c, "return !!document.querySelector('dialog.office-dialog');").await,
        json!(false),
        "nothing to confirm"
    );
    type_into(&c, "[data-param='dispatch.offers_per_round']", "3").await;
    type_into(&c, "[data-param='dispatch.schedule_lead_s']", "5000").await;
    click(&c, ".settings-save").await;
    confirm(&c, None, None).await;
    until(
        &c,
        &format!("{}.length > 0", text_of("#set-dispatch-schedule_lead_s-error")),
        WAIT,
        "the API's param beside its field",
    )
    .await;
    assert_eq!(
        js(
            &c,
            "return document.querySelector('[data-param=\"dispatch.schedule_lead_s\"]').getAttribute('aria-invalid');"
        )
        .await,
        json!("true")
    );
    assert_eq!(s.get("/v1/admin/settings").await, before, "nothing changed");
    type_into(&c, "[data-param='dispatch.schedule_lead_s']", &before["dispatch"]["schedule_lead_s"].to_string()).await;
    click(&c, ".settings-save").await;
    until(
        &c,
        "document.querySelector('dialog.office-dialog[open]')?.textContent.includes('dispatch.offers_per_round')",
        WAIT,
        "the changes listed",
    )
    .await;
    confirm(&c, None, None).await;
    until(&c, &format!("{}.length > 0", text_of(".settings-note")), WAIT, "saved").await;
    assert_eq!(s.get("/v1/admin/settings").await["dispatch"]["offers_per_round"], 3);

    // ---- Audit: the settings change, filtered by action.
    open_page(&c, "audit").await;
    type_into(&c, ".audit-action", "settings.update").await;
    click(&c, "#view-audit form button[type=submit]").await;
    until(&c, "document.querySelectorAll('.audit-list tbody tr').length === 1 && document.querySelector('.audit-list tbody').textContent.includes('settings.update')", WAIT, "the settings change in the trail").await;
    look_at(&c, "backoffice-audit", "document.querySelector('.audit-list tbody tr')").await;

    // ---- Outbox: the endpoints; a pending delivery offers no resend; a delivered one is resent.
    open_page(&c, "outbox").await;
    until(&c, "document.querySelectorAll('.hooks-list tbody tr button.link').length === 2", WAIT, "the endpoints")
        .await;
    let open_endpoint = |url: String| {
        format!(
            "[...document.querySelectorAll('.hooks-list tbody tr')].find((r) => r.textContent.includes('{url}')).querySelector('button').click(); return true;"
        )
    };
    js(&c, &open_endpoint("http://127.0.0.1:9/hook".into())).await;
    until(&c, "document.querySelector('.deliveries h3')?.textContent.includes('127.0.0.1:9/') && document.querySelectorAll('.deliveries-list tbody tr').length === 1", WAIT, "the pending delivery").await;
    assert_eq!(
        js(&c, "return !!document.querySelector('.deliveries-list .delivery-resend');").await,
        json!(false),
        "a pending delivery offers no resend"
    );
    js(&c, &open_endpoint(url.clone())).await;
    until(&c, &format!("document.querySelector('.deliveries h3')?.textContent.includes('{url}') && document.querySelector('.deliveries-list .delivery-resend')"), WAIT, "the delivered one").await;
    look_at(&c, "backoffice-outbox", "document.querySelector('.deliveries-list .delivery-resend')").await;
    let event = s.get(&deliveries).await["items"][0]["event_id"].as_str().unwrap().to_owned();
    click(&c, ".deliveries-list .delivery-resend").await;
    confirm(&c, None, None).await;
    until(
        &c,
        &format!("{}.length > 0 || {}.length > 0", text_of(".deliveries-note"), text_of(".deliveries-error")),
        WAIT,
        "resent",
    )
    .await;
    assert_eq!(js(&c, &format!("return {};", text_of(".deliveries-error"))).await, json!(""), "no error");
    assert!(js(&c, &format!("return {};", text_of(".deliveries-note"))).await.as_str().unwrap().contains(&event));

    // ---- Reports: the demo's trips per day, charted; the CSV holds the rows shown.
    open_page(&c, "reports").await;
    // The demo city's riders ask for trips: wait until the day's report has them.
    let deadline = std::time::Instant::now() + 2 * WAIT;
    while s.get("/v1/admin/reports/trips").await["items"].as_array().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the demo city asked for no trip");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    c.find(Locator::Css(".reports-kind")).await.unwrap().select_by_value("trips").await.unwrap();
    until(&c, "document.querySelectorAll('.reports-charts canvas').length === 2 && document.querySelector('.reports-tables tbody tr td time')", WAIT, "the trips report").await;
    let csv = js(
        &c,
        "return decodeURIComponent(document.querySelector('a.csv-download').href.split(',').slice(1).join(','));",
    )
    .await;
    let csv = csv.as_str().unwrap().to_owned();
    let rows = js(&c, "return document.querySelectorAll('.reports-tables tbody tr').length;").await.as_u64().unwrap();
    assert!(csv.starts_with("period_start,requested,completed,cancelled_by_rider,cancelled_by_driver,expired,match_p50_s,match_p95_s\r\n"), "{csv}");
    assert_eq!(csv.trim_end().lines().count() as u64, rows + 1, "{csv}");
    look_at(&c, "backoffice-reports-trips", "document.querySelectorAll('.reports-charts canvas').length === 2").await;
    assert_no_injection(&c).await;
}
