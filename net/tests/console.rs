//! Browser tests of the operators' console (`/console`, issue 9): the real `dispatchd serve
//! --dev --demo` on loopback and a real headless Chromium driven through its WebDriver
//! (`chromedriver`, started here on a free port) by `fantoccini`. They sign in, read the live
//! map, cancel and refund trips, write in a trip's chat, suspend drivers and acknowledge an
//! SOS by clicking what an operator would, page through trips and drivers, check that
//! hostile text stays text, save a screenshot of each view under
//! `target/console-screenshots/` (at 1280×800 and at tablet size, 820×1180, where nothing
//! may stick out sideways), and time the rendering of an `ops_snapshot` in the page (median
//! asserted, p90 and max printed).
//!
//! `DISPATCH_UPDATE_DOCS_SCREENSHOT=1` also copies the signed-in map to `docs/console.png`
//! (the README's picture).
//!
//! Without `chromedriver` the browser test fails with an install hint, unless
//! `DISPATCH_SKIP_BROWSER_TESTS=1` (then it says so and returns). Setup waits are generous;
//! only the contract's "within 2 s" is timed, from the API call that caused it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::*;
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use futures_util::FutureExt;
use hyper::{HeaderMap, Method};
use serde_json::{Value, json};

/// JS: how many drivers the map has drawn (alone or counted in a bubble: lib/map.js says
/// so on its container).
const DRAWN_JS: &str = "Number(document.getElementById('map').dataset.drivers || 0)";
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const XSS_REASON: &str = "</dd><script>window.__xss = 1</script> rider asked";

/// Signs in with the admin token and waits for the first drivers on the map.
async fn sign_in(s: &Server, c: &Client) {
    c.goto(&s.url("/console")).await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Id("token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    click(c, "#signin button[type=submit]").await;
    until(c, &format!("{DRAWN_JS} > 0"), WAIT, "drivers on the map").await;
}

fn inside(bbox: &[f64; 4], lat: f64, lng: f64) -> bool {
    bbox[0] <= lng && lng <= bbox[2] && bbox[1] <= lat && lat <= bbox[3]
}

/// Drivers that `/v1/admin/drivers` places inside `bbox`, and how many have a position.
async fn drivers_in(s: &Server, bbox: &[f64; 4]) -> (usize, usize) {
    let all = s.get("/v1/admin/drivers?limit=200").await;
    let items = all["items"].as_array().unwrap();
    assert!(all["next_cursor"].is_null(), "more than one page of drivers");
    let located: Vec<&Value> = items.iter().filter(|d| d["location"].is_object()).collect();
    let n = located
        .iter()
        .filter(|d| inside(bbox, d["location"]["lat"].as_f64().unwrap(), d["location"]["lng"].as_f64().unwrap()))
        .count();
    (n, located.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_responses_carry_the_security_headers() {
    let s = Server::start(&[]);
    for path in ["/console", "/console/app.js", "/console/app.css", "/console/lib/api.js", "/console/pages/cluster.js"]
    {
        let (status, h, _) = s.call(Method::GET, path, None, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let (_, _, page) = s.call(Method::GET, "/console", None, None).await;
    assert!(page.is_null(), "the page is HTML, not JSON");
    // Errors under /console carry them too: an unknown file, another method.
    let headers_ok = |h: &HeaderMap, what: &str| {
        assert_eq!(h["content-security-policy"], CSP, "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    };
    let (status, h, v) = s.call(Method::GET, "/console/nope.js", None, None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("not_found")));
    headers_ok(&h, "404");
    let (status, h, _) = s.call(Method::POST, "/console", None, None).await;
    assert_eq!(status, 405);
    headers_ok(&h, "405");
    // The page is public and ignores tokens (it holds no data; its API calls are checked):
    // a bad one is neither refused nor counted against the IP limit, however often.
    for _ in 0..100 {
        let (status, h, _) = s.call(Method::GET, "/console", Some("not-a-token"), None).await;
        assert_eq!(status, 200);
        headers_ok(&h, "a bad token");
    }
    // Not the API's other paths.
    let (_, h, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert!(!h.contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    with_browser(&["--demo", "--demo-drivers", "50"], drive).await;
}

async fn drive(s: &Server, c: &Client) {
    // The demo city comes alive: every simulated driver online with a position.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, located) = drivers_in(s, &[-180.0, -90.0, 180.0, 90.0]).await;
        if located == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "the demo city never came alive: {located} drivers placed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Signed out: only the sign-in view.
    assert_eq!(js(c, "return document.readyState;").await, json!("complete"));
    c.goto(&s.url("/console")).await.unwrap();
    let signin = c.wait().at_most(WAIT).for_element(Locator::Id("signin-view")).await.unwrap();
    assert!(signin.is_displayed().await.unwrap());
    assert!(!c.find(Locator::Id("app")).await.unwrap().is_displayed().await.unwrap());
    assert_eq!(js(c, &format!("return {DRAWN_JS};")).await, json!(0));
    screenshot(c, "signin").await;

    // A wrong token stays on the sign-in view, with the API's error.
    c.find(Locator::Id("token")).await.unwrap().send_keys("not-a-token").await.unwrap();
    click(c, "#signin button[type=submit]").await;
    until(c, "document.getElementById('signin-error').textContent.includes('unauthorized')", WAIT, "wrong token").await;
    assert!(!c.find(Locator::Id("app")).await.unwrap().is_displayed().await.unwrap());

    // Signed in: the map draws exactly the drivers the API lists in the page's box.
    c.find(Locator::Id("token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    click(c, "#signin button[type=submit]").await;
    until(c, &format!("{DRAWN_JS} > 0"), WAIT, "drivers on the map").await;
    assert!(!c.find(Locator::Id("signin-view")).await.unwrap().is_displayed().await.unwrap());
    let bbox = page_bbox(c).await;
    // Read the page after the next snapshot, then the API: the demo's drivers move, but
    // within the zone, which the page's box contains with a margin.
    let seen = js(c, "return window.__renderTimes.length;").await.as_u64().unwrap();
    until(c, &format!("window.__renderTimes.length > {seen}"), WAIT, "a fresh snapshot").await;
    let markers = js(c, &format!("return {DRAWN_JS};")).await.as_u64().unwrap();
    let (listed, located) = drivers_in(s, &bbox).await;
    assert_eq!(markers as usize, listed, "markers drawn vs drivers listed in {bbox:?}");
    assert_eq!(listed, located, "the page's first box holds the whole demo city");
    let summary = c.find(Locator::Id("ops-summary")).await.unwrap().text().await.unwrap();
    assert!(summary.starts_with(&format!("{listed} drivers")), "{summary}");
    screenshot(c, "map-zones").await;
    // Zoomed to the drivers, for the picture.
    click(c, "#map-fit").await;
    let seen = js(c, "return window.__renderTimes.length;").await.as_u64().unwrap();
    until(c, &format!("window.__renderTimes.length > {}", seen + 1), WAIT, "snapshots of the new box").await;
    let map_png = screenshot(c, "map").await;
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    if std::env::var("DISPATCH_UPDATE_DOCS_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&map_png, docs.join("console.png")).unwrap();
    }

    // Rendering one ops_snapshot, timed in the page with the Performance API.
    let RenderTimes { median, p90, max, all } = render_ms(c).await;
    println!(
        "console: rendering one ops_snapshot of {markers} drivers: median {median} ms, p90 {p90} ms, max {max} ms ({all})"
    );
    assert!(median <= 50.0, "rendering an ops_snapshot took {median} ms (median): {all}");

    // A trip asked for through the API reaches the map and the trips table within 2 s.
    // Picked up where the demo's drivers are (their mean position), so offers go out.
    let all = s.get("/v1/admin/drivers?limit=200").await;
    let located: Vec<&Value> = all["items"].as_array().unwrap().iter().filter(|d| d["location"].is_object()).collect();
    let n = located.len() as f64;
    let lat = located.iter().map(|d| d["location"]["lat"].as_f64().unwrap()).sum::<f64>() / n;
    let lng = located.iter().map(|d| d["location"]["lng"].as_f64().unwrap()).sum::<f64>() / n;
    let made = s
        .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": XSS_NAME, "phone": "+201099999999"}), 201)
        .await;
    let rider = made["token"].as_str().unwrap().to_owned();
    click(c, "nav button[data-view=trips]").await;
    let body = json!({"pickup": {"lat": lat, "lng": lng, "address": XSS_NAME},
        "dropoff": {"lat": lat + 0.01, "lng": lng + 0.01, "address": "Zamalek"},
        "category": "economy", "payment_method": "cash"});
    let asked = Instant::now();
    let trip = s.post("/v1/trips", &rider, body, 201).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let on_map = until(c, &format!("(window.__map?.trips() ?? []).includes('{id}')"), WAIT, "trip on map").await;
    let in_table =
        until(c, &format!("document.querySelector('#trips tr[data-id=\"{id}\"]')"), WAIT, "trip in table").await;
    println!("console: the trip reached the map in {:?} and the table in {:?}", on_map - asked, in_table - asked);
    assert!(on_map - asked <= LIVE, "the trip reached the map after {:?}", on_map - asked);
    assert!(in_table - asked <= LIVE, "the trip reached the table after {:?}", in_table - asked);
    assert_no_injection(c).await;

    // Cancelled from its page, with a confirmation, as an operator would.
    click(c, &format!("#trips tr[data-id=\"{id}\"]")).await;
    until(c, &format!("document.getElementById('trip-id').textContent === '{id}'"), WAIT, "trip page").await;
    until(c, "document.getElementById('trip-facts').textContent.includes('pickup')", WAIT, "trip facts").await;
    let pickup = js(c, "return document.querySelector('#trip-facts dd[data-fact=pickup]').textContent;").await;
    assert_eq!(pickup, json!(XSS_NAME), "the address shows as text");
    // The rider's name too (staff see it): "<name> · <id>", as text.
    let rider_id = made["user"]["id"].as_str().unwrap();
    let shown = js(c, "return document.querySelector('#trip-facts dd[data-fact=rider]').textContent;").await;
    assert_eq!(shown, json!(format!("{XSS_NAME} · {rider_id}")), "the rider's name shows as text");
    // The fare is shown with its currency's ISO 4217 exponent (the trip says which), as
    // `Money`'s Display writes it: "67.04 EGP".
    let currency: dispatch_core::Currency = trip["fare"]["currency"].as_str().unwrap().parse().unwrap();
    assert_eq!(trip["fare"]["currency_exponent"], json!(currency.exponent()));
    let minor = trip["fare"]["estimate_minor"].as_i64().unwrap();
    let fare = js(c, "return document.querySelector('#trip-facts dd[data-fact=fare]').textContent;").await;
    assert_eq!(fare, json!(dispatch_core::Money::new(minor, currency).to_string()), "the fare as shown");
    assert_no_injection(c).await;

    // The trip's chat on its page: staff write to the rider and driver (hostile text stays
    // text), and a message posted elsewhere arrives live (the page follows the trip).
    until(c, "document.getElementById('trip-chat').textContent.includes('no messages')", WAIT, "the empty chat").await;
    c.find(Locator::Id("trip-chat-text")).await.unwrap().send_keys(XSS_REASON).await.unwrap();
    click(c, "#trip-chat-send").await;
    let shown = |text: &str| {
        format!("[...document.querySelectorAll('#trip-chat .text')].some((e) => e.textContent === {})", json!(text))
    };
    until(c, &shown(XSS_REASON), WAIT, "the console's message in its chat").await;
    let chat = s.get(&format!("/v1/trips/{id}/messages")).await;
    assert_eq!((&chat["items"][0]["text"], &chat["items"][0]["from_role"]), (&json!(XSS_REASON), &json!("admin")));
    assert_eq!(js(c, "return document.getElementById('trip-chat-text').value;").await, json!(""), "the box is cleared");
    s.post(&format!("/v1/trips/{id}/messages"), ADMIN, json!({"text": "posted through the API"}), 201).await;
    until(c, &shown("posted through the API"), WAIT, "a message posted elsewhere, live").await;
    assert_no_injection(c).await;
    screenshot(c, "trip").await;
    click(c, "#trip-cancel").await;
    until(c, "document.getElementById('confirm').open", WAIT, "the confirmation").await;
    screenshot(c, "trip-cancel-confirm").await;
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys(XSS_REASON).await.unwrap();
    click(c, "#confirm-ok").await;
    until(c, "!document.getElementById('confirm').open", WAIT, "the confirmation closes").await;
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let list = s.get("/v1/admin/trips?limit=200").await;
        let t = list["items"].as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap().clone();
        if t["status"] == "cancelled" {
            break t;
        }
        assert!(Instant::now() < deadline, "never cancelled: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after["cancellation"]["reason"], XSS_REASON);
    assert_eq!(after["fare"]["cancel_fee_minor"].as_i64().unwrap_or(0), 0, "staff cancels charge no fee: {after}");
    let events = s.get(&format!("/v1/admin/trips/{id}/events")).await;
    let pending: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "offered" && e["outcome"] == "pending")
        .collect();
    assert!(pending.is_empty(), "offers still pending after the cancel: {pending:?}");
    until(
        c,
        &format!("document.getElementById('trip-facts').textContent.includes({})", json!(XSS_REASON)),
        WAIT,
        "the reason shown on the trip's page",
    )
    .await;
    assert_no_injection(c).await;
    screenshot(c, "trips").await;

    // A refund the API refuses (nothing was captured on a cancelled cash trip): the console
    // shows the API's error as it comes.
    click(c, "#trip-refund").await;
    until(c, "document.getElementById('confirm').open", WAIT, "the refund confirmation").await;
    // Typed in major units: 1.00 of a currency of exponent 2 is 100 minor units.
    assert_eq!(trip["fare"]["currency_exponent"], json!(2));
    c.find(Locator::Id("confirm-amount")).await.unwrap().send_keys("1.00").await.unwrap();
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys("goodwill").await.unwrap();
    click(c, "#confirm-ok").await;
    until(c, "document.getElementById('trip-error').textContent !== ''", WAIT, "the refund's error").await;
    let shown = c.find(Locator::Id("trip-error")).await.unwrap().text().await.unwrap();
    let (status, _, v) = s
        .call(
            Method::POST,
            &format!("/v1/admin/trips/{id}/refund"),
            Some(ADMIN),
            Some(json!({"amount_minor": 100, "reason": "goodwill"})),
        )
        .await;
    assert!(status >= 400, "a refund of nothing captured was accepted: {v}");
    let code = v["error"]["code"].as_str().unwrap();
    assert!(shown.starts_with(&format!("{code}: ")), "shown {shown:?}, the API says {v}");
    screenshot(c, "trip-refund-refused").await;

    // An SOS raised through the API is an alert within 2 s, with a visible cue; acknowledged.
    let trip2 = s
        .post(
            "/v1/trips",
            &rider,
            json!({"pickup": {"lat": lat, "lng": lng}, "dropoff": {"lat": lat + 0.01, "lng": lng},
                "category": "economy", "payment_method": "cash"}),
            201,
        )
        .await;
    let id2 = trip2["id"].as_str().unwrap();
    click(c, "nav button[data-view=map]").await;
    // Count the audio contexts the alert cues make (browsers cap them: one is reused).
    js(
        c,
        "window.__audioContexts = 0; const A = window.AudioContext; \
         window.AudioContext = class extends A { constructor() { super(); window.__audioContexts++; } }; return 0;",
    )
    .await;
    let raised = Instant::now();
    let sos = s.post(&format!("/v1/trips/{id2}/sos"), &rider, json!({"note": XSS_NAME}), 201).await;
    let sos_id = sos["id"].as_str().unwrap();
    let seen =
        until(c, &format!("document.querySelector('#alerts li[data-id=\"{sos_id}\"]')"), WAIT, "the alert").await;
    println!("console: the SOS reached the console in {:?}", seen - raised);
    assert!(seen - raised <= LIVE, "the SOS reached the console after {:?}", seen - raised);
    assert!(c.find(Locator::Id("alert-banner")).await.unwrap().is_displayed().await.unwrap(), "visible cue");
    // A second alert (on the rider's other trip, just cancelled: a repeat on the same trip
    // would fold into the first) beeps with the same audio context.
    let sos2 = s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "second"}), 201).await;
    let sos2_id = sos2["id"].as_str().unwrap().to_owned();
    until(c, &format!("document.querySelector('#alerts li[data-id=\"{sos2_id}\"]')"), WAIT, "the second alert").await;
    assert_eq!(js(c, "return window.__audioContexts;").await, json!(1), "one AudioContext for every cue");
    screenshot(c, "map-with-alert").await;
    click(c, "nav button[data-view=alerts]").await;
    let li = format!("document.querySelector('#alerts li[data-id=\"{sos_id}\"]')");
    until(c, &format!("{li}.textContent.includes({})", json!(XSS_NAME)), WAIT, "the note shows as text").await;
    assert_no_injection(c).await;
    screenshot(c, "alerts").await;
    click(c, &format!("#alerts li[data-id=\"{sos_id}\"] button")).await;
    until(c, &format!("!document.querySelector('#alerts li[data-id=\"{sos_id}\"]')"), WAIT, "ack").await;
    let open = s.get("/v1/admin/alerts?status=open").await;
    assert!(open["items"].as_array().unwrap().iter().all(|a| a["id"] != sos_id), "still open: {open}");

    // Clicking a trip on the map opens its page. (Markers are reused by the next snapshot:
    // if one became another trip's between finding and clicking it, click again.)
    let deadline = Instant::now() + WAIT;
    loop {
        click(c, "nav button[data-view=map]").await;
        until(c, &format!("window.__map.trips().includes('{id2}')"), WAIT, "the trip drawn").await;
        let at = map_offset(c, lat, lng).await;
        click_at(c, "#map", at).await;
        let opened = format!("document.getElementById('trip-id').textContent === '{id2}'");
        if js(c, &format!("return {opened};")).await == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "clicking the trip on the map did not open it");
    }
    assert!(c.find(Locator::Id("view-trips")).await.unwrap().is_displayed().await.unwrap());

    // Drivers: suspend one from the list, with a confirmation; the API agrees; unsuspend.
    click(c, "nav button[data-view=drivers]").await;
    until(c, "document.querySelectorAll('#drivers tr').length === 50", WAIT, "the drivers list").await;
    screenshot(c, "drivers").await;
    let victim = js(c, "return document.querySelector('#drivers tr').dataset.id;").await;
    let victim = victim.as_str().unwrap().to_owned();
    let row = format!("#drivers tr[data-id=\"{victim}\"]");
    click(c, &format!("{row} button")).await;
    until(c, "document.getElementById('confirm').open", WAIT, "the confirmation").await;
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys("documents expired").await.unwrap();
    click(c, "#confirm-ok").await;
    until(c, &format!("document.querySelector('{row} button').textContent.startsWith('Unsuspend')"), WAIT, "suspended")
        .await;
    let listed = s.get("/v1/admin/drivers?limit=200").await;
    let d = listed["items"].as_array().unwrap().iter().find(|d| d["driver_id"] == victim.as_str()).unwrap().clone();
    assert_eq!(d["suspended"], true, "{d}");
    click(c, &format!("{row} button")).await;
    until(c, "document.getElementById('confirm').open", WAIT, "the confirmation").await;
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys("documents renewed").await.unwrap();
    click(c, "#confirm-ok").await;
    until(c, &format!("document.querySelector('{row} button').textContent.startsWith('Suspend')"), WAIT, "unsuspended")
        .await;

    // Health charts, then sign-out returns to the sign-in view.
    click(c, "nav button[data-view=health]").await;
    until(c, "document.querySelectorAll('#charts figure').length >= 6", WAIT, "charts").await;
    screenshot(c, "health").await;
    click(c, "#signout").await;
    assert!(c.find(Locator::Id("signin-view")).await.unwrap().is_displayed().await.unwrap());
    assert!(!c.find(Locator::Id("app")).await.unwrap().is_displayed().await.unwrap());
    assert_signed_out_page_is_empty(c).await;

    // With the keyboard only: a support user signs in (Enter), walks to the Trips tab and
    // opens a trip with Enter; when the user's tokens are revoked the console returns to
    // the sign-in view.
    let support = s
        .post("/v1/admin/users", ADMIN, json!({"role": "support", "name": "Support 1", "phone": "+201088888888"}), 201)
        .await;
    let token = c.find(Locator::Id("token")).await.unwrap();
    token.send_keys(support["token"].as_str().unwrap()).await.unwrap();
    token.send_keys(&Key::Enter.to_string()).await.unwrap();
    until(c, &format!("{DRAWN_JS} > 0"), WAIT, "signed in with the keyboard").await;
    c.find(Locator::Css("nav button[data-view=trips]"))
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    let row = format!("#trips tr[data-id=\"{id}\"]");
    until(c, &format!("document.querySelector('{row}')"), WAIT, "the trips table").await;
    let deadline = Instant::now() + WAIT;
    loop {
        // The row may be redrawn (a live table) between finding it and the key press.
        let pressed = match c.find(Locator::Css(&row)).await {
            Ok(e) => e.send_keys(&Key::Enter.to_string()).await,
            Err(e) => Err(e),
        };
        if pressed.is_ok()
            && js(c, &format!("return document.getElementById('trip-id').textContent === '{id}';")).await == json!(true)
        {
            break;
        }
        assert!(Instant::now() < deadline, "Enter on a trip's row did not open it: {pressed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let user_id = support["user"]["id"].as_str().unwrap();
    let (status, _, _) =
        s.call(Method::POST, &format!("/v1/admin/users/{user_id}/revoke-tokens"), Some(ADMIN), None).await;
    assert_eq!(status, 204);
    until(c, "!document.getElementById('signin-view').hidden", WAIT, "back to sign-in after revocation").await;
    let why = c.find(Locator::Id("signin-error")).await.unwrap().text().await.unwrap();
    assert!(why.contains("sign in again"), "{why}");
}

/// After a sign-out nothing of the session is left in the page, hidden or not: the next
/// operator at this screen starts clean.
async fn assert_signed_out_page_is_empty(c: &Client) {
    let left = js(
        c,
        "return {trips: document.querySelectorAll('#trips tr').length, \
         drivers: document.querySelectorAll('#drivers tr').length, \
         alerts: document.querySelectorAll('#alerts li[data-id]').length, \
         alert_count: document.getElementById('alert-count').hidden, \
         banner: document.getElementById('alert-banner').hidden, \
         charts: document.querySelectorAll('#charts figure').length, \
         dots: Number(document.getElementById('map').dataset.drivers || 0) \
           + Number(document.getElementById('map').dataset.trips || 0) \
           + Number(document.getElementById('map').dataset.zones || 0), \
         trip: document.getElementById('trip').hidden, \
         trail: window.__trail ? window.__trail.points().length : 0, \
         info: document.getElementById('map-info').textContent, \
         summary: document.getElementById('ops-summary').textContent};",
    )
    .await;
    assert_eq!(
        left,
        json!({"trips": 0, "drivers": 0, "alerts": 0, "alert_count": true, "banner": true, "charts": 0, "dots": 0,
            "trip": true, "trail": 0, "info": "", "summary": "—"}),
        "left in the page after sign-out"
    );
}

/// The page's render times of `ops_snapshot`s (ms): median, p90 and max, and all as
/// recorded. The median is what is asserted: on a shared two-core machine one render now
/// and then is preempted by the OS, which is not the page's cost; p90 and max are printed
/// beside it.
struct RenderTimes {
    median: f64,
    p90: f64,
    max: f64,
    all: Value,
}

async fn render_ms(c: &Client) -> RenderTimes {
    let all = js(c, "return window.__renderTimes.map(t => Math.round(t * 10) / 10);").await;
    let mut v: Vec<f64> = all.as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
    RenderTimes { median: at(50), p90: at(90), max: v[v.len() - 1], all }
}

/// Issue 9: with 10,000 online drivers the snapshot is bounded (2,000 items, the true
/// total beside) and the page renders one in at most 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_of_ten_thousand_drivers_renders_within_50_ms() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&["--demo", "--demo-drivers", "10000"]);
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = s.get("/v1/admin/stats").await;
        let online = stats["drivers"]["available"].as_u64().unwrap() + stats["drivers"]["on_trip"].as_u64().unwrap();
        if online == 10_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the demo city never came alive: {stats}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let c = browser(port).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        sign_in(&s, &c).await;
        // Ten full snapshots rendered after the city is up.
        let full = "document.getElementById('ops-summary').textContent.startsWith('10000 drivers')";
        until(&c, full, WAIT, "the whole city in the snapshot").await;
        let seen = js(&c, "return window.__renderTimes.length;").await.as_u64().unwrap();
        until(&c, &format!("window.__renderTimes.length >= {}", seen + 10), WAIT, "ten snapshots").await;
        let markers = js(&c, &format!("return {DRAWN_JS};")).await;
        assert_eq!(markers, json!(2000), "a snapshot holds at most 2,000 drivers");
        let RenderTimes { median, p90, max, all } = render_ms(&c).await;
        println!(
            "console: rendering one ops_snapshot of 2000 of 10000 drivers: median {median} ms, p90 {p90} ms, \
             max {max} ms ({all})"
        );
        screenshot(&c, "map-10000").await;
        assert!(median <= 50.0, "rendering an ops_snapshot took {median} ms (median): {all}");
    })
    .catch_unwind()
    .await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The parts of the console one trip exercises end to end: a comfort trip (the demo's
/// drivers are all economy, so only the test's driver is offered it) driven through the
/// API; its page with the rider's name, the driver's trail and refunds that a doubled
/// click or a lost answer cannot make twice; the driver opened from the map, by mouse and
/// by keyboard, and suspended from its panel; cursor paging of trips and drivers; the
/// health charts' rates; sign-out leaving nothing behind; every view at tablet size.
/// Finding 1 of the red team, in the console: opening the Alerts tab reloaded only the
/// first 50 open alerts and wiped one just received live. Now every open alert is kept
/// (read page by page and merged with what arrived live), newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_every_open_alert_newest_first() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    // A few simulated drivers: signing in waits for the map to show some.
    let s = Server::start(&["--demo", "--demo-drivers", "5"]);
    let c = browser(port).await;
    let outcome = std::panic::AssertUnwindSafe(alerts_kept(&s, &c)).catch_unwind().await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn alerts_kept(s: &Server, c: &Client) {
    // 60 riders, one trip and one SOS each: more than a page of 50.
    let (lat, lng) = (30.0444, 31.2357);
    let mut last = String::new();
    let raise = |n: u32| async move {
        let phone = format!("+20107{n:07}");
        let made = s
            .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": format!("R{n}"), "phone": phone}), 201)
            .await;
        let rider = made["token"].as_str().unwrap().to_owned();
        let body = json!({"pickup": {"lat": lat, "lng": lng}, "dropoff": {"lat": lat + 0.01, "lng": lng},
            "category": "economy", "payment_method": "cash"});
        let trip = s.post("/v1/trips", &rider, body, 201).await;
        let id = trip["id"].as_str().unwrap().to_owned();
        let alert = s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": format!("help {n}")}), 201).await;
        alert["id"].as_str().unwrap().to_owned()
    };
    for n in 0..60 {
        last = raise(n).await;
    }
    sign_in(s, c).await;
    click(c, "nav button[data-view=alerts]").await;
    until(c, "document.querySelectorAll('#alerts li.alert').length === 60", WAIT, "every open alert").await;
    let first = js(c, "return document.querySelector('#alerts li.alert').dataset.id;").await;
    assert_eq!(first, json!(last), "newest first");
    // One raised live while the tab is open is kept when the tab loads the list again.
    let live = raise(60).await;
    until(
        c,
        &format!("document.querySelector('#alerts li.alert').dataset.id === '{live}'"),
        WAIT,
        "the live alert on top",
    )
    .await;
    click(c, "nav button[data-view=map]").await;
    click(c, "nav button[data-view=alerts]").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    until(c, "document.querySelectorAll('#alerts li.alert').length === 61", WAIT, "all kept").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_its_trail_refunds_paging_and_health_in_a_real_browser() {
    with_browser(&["--demo", "--demo-drivers", "20"], operate).await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(s: &Server, token: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.unwrap().unwrap().0
}

/// The next frame of type `ty` (others skipped).
async fn next_frame(ws: &mut Ws, ty: &str) -> Value {
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == ty {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended while waiting for {ty}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {ty} frame"))
}

/// The ids of the rows of the table body `id`.
async fn rows(c: &Client, id: &str) -> Vec<String> {
    let v = js(c, &format!("return [...document.querySelectorAll('#{id} tr')].map(r => r.dataset.id);")).await;
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

/// Waits for a table's page `n` to be shown, then returns its rows and the cursor it was read at.
async fn table_page(c: &Client, id: &str, n: u32) -> (Vec<String>, String) {
    until(c, &format!("document.getElementById('{id}-page').textContent === 'page {n}'"), WAIT, "the page").await;
    // Let the page's load land (the label changes with it; the rows right before).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cursor = js(c, &format!("return document.getElementById('{id}').dataset.cursor;")).await;
    (rows(c, id).await, cursor.as_str().unwrap().to_owned())
}

/// Refunds of `trip` credited to the rider's wallet (amounts, newest first).
async fn refunds(s: &Server, rider: &str, trip: &str) -> Vec<i64> {
    let (status, _, w) = s.call(Method::GET, "/v1/wallet?limit=200", Some(rider), None).await;
    assert_eq!(status, 200, "{w}");
    w["entries"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["code"] == "refund" && e["trip_id"] == trip)
        .map(|e| e["amount_minor"].as_i64().unwrap())
        .collect()
}

/// `minor` units written in major units with `exp` decimals, as an operator types them.
fn major(minor: u32, exp: u32) -> String {
    if exp == 0 {
        return minor.to_string();
    }
    let unit = 10u32.pow(exp);
    format!("{}.{:0w$}", minor / unit, minor % unit, w = exp as usize)
}

/// Opens the refund dialog of the open trip and fills it: the amount (`amount` minor
/// units) typed in major units of the trip's currency, as the dialog asks.
async fn refund_from_page(c: &Client, amount: u32, reason: &str) {
    click(c, "#trip-refund").await;
    until(c, "document.getElementById('confirm').open", WAIT, "the refund confirmation").await;
    let exp = js(c, "return Number(document.getElementById('trip-refund').dataset.exponent);").await;
    let typed = major(amount, exp.as_u64().unwrap() as u32);
    c.find(Locator::Id("confirm-amount")).await.unwrap().send_keys(&typed).await.unwrap();
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys(reason).await.unwrap();
}

async fn operate(s: &Server, c: &Client) {
    let deadline = Instant::now() + WAIT;
    while drivers_in(s, &[-180.0, -90.0, 180.0, 90.0]).await.1 < 20 {
        assert!(Instant::now() < deadline, "the demo city never came alive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sign_in(s, c).await;
    // The test's driver waits at the centre of the map's first box: the zone's middle, far
    // from the demo city, so nothing else is drawn near it.
    let bbox = page_bbox(c).await;
    let (lat0, lng0) = ((bbox[1] + bbox[3]) / 2.0, (bbox[0] + bbox[2]) / 2.0);
    let made = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "driver", "name": "Comfort 1", "phone": "+201077777777",
                "vehicle": {"category": "comfort", "plate": "CMF 1"}}),
            201,
        )
        .await;
    let driver = made["token"].as_str().unwrap().to_owned();
    let driver_id = made["user"]["id"].as_str().unwrap().to_owned();
    let mut dws = ws(s, &driver).await;
    s.post("/v1/driver/status", &driver, json!({"status": "online", "location": {"lat": lat0, "lng": lng0}}), 200)
        .await;
    let made = s
        .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": XSS_NAME, "phone": "+201066666666"}), 201)
        .await;
    let rider = made["token"].as_str().unwrap().to_owned();
    let rider_id = made["user"]["id"].as_str().unwrap().to_owned();

    // The trip, driven through the API: offered (over the socket), accepted, a position a
    // second (the default coalescing interval) about 11 m apart, picked up, completed.
    let trip = s
        .post(
            "/v1/trips",
            &rider,
            json!({"pickup": {"lat": lat0 + 0.0002, "lng": lng0, "address": "Opera"},
                "dropoff": {"lat": lat0 + 0.0006, "lng": lng0 + 0.0004, "address": "Zamalek"},
                "category": "comfort", "payment_method": "cash"}),
            201,
        )
        .await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let offer = next_frame(&mut dws, "trip_offer").await;
    assert_eq!(offer["offer"]["trip_id"], id.as_str());
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({}), 200).await;
    let mut at = (lat0, lng0);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        at.0 += 0.0001;
        let (status, _, v) = s
            .call(
                Method::POST,
                "/v1/driver/location",
                Some(&driver),
                Some(json!({"lat": at.0, "lng": at.1, "heading_deg": 0})),
            )
            .await;
        assert_eq!(status, 204, "{v}");
    }
    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({}), 200).await;
    let code = trip["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code}), 200).await;
    let done = s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({"distance_m": 2000}), 200).await;
    assert!(done["fare"]["final_minor"].as_i64().unwrap() > 600, "{done}");
    // The trail endpoint has the positions (recorded best effort, so wait for them).
    let deadline = Instant::now() + WAIT;
    while s.get(&format!("/v1/admin/trips/{id}/trail")).await["items"].as_array().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "the trail never reached the history");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A rider asking too fast is refused (10 trips a minute): counted by the stats.
    let hasty = s
        .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": "Hasty", "phone": "+201055555555"}), 201)
        .await;
    let hasty = hasty["token"].as_str().unwrap().to_owned();
    let mut limited = 0;
    for _ in 0..12 {
        let (status, _, _) = s.call(Method::POST, "/v1/trips", Some(&hasty), Some(json!({}))).await;
        limited += usize::from(status == 429);
    }
    assert!(limited >= 1, "never rate-limited");

    // The trip's page: found by id (not among the latest trips), with the rider's name
    // as text and the driver's trail as a line of more than one point.
    click(c, "nav button[data-view=trips]").await;
    let row = format!("#trips tr[data-id=\"{id}\"]");
    until(c, &format!("document.querySelector('{row}')"), WAIT, "the trip in the table").await;
    click(c, &row).await;
    until(c, "document.getElementById('trip-trail').dataset.points >= 4", WAIT, "the trail drawn").await;
    let shown = js(c, "return document.querySelector('#trip-facts dd[data-fact=rider]').textContent;").await;
    assert_eq!(shown, json!(format!("{XSS_NAME} · {rider_id}")), "the rider's name, as text");
    let driver_shown = js(c, "return document.querySelector('#trip-facts dd[data-fact=driver]').textContent;").await;
    assert_eq!(driver_shown, json!(format!("Comfort 1 · {driver_id}")));
    assert_no_injection(c).await;
    let line = js(c, "return window.__trail.points().length;").await;
    assert!(line.as_u64().unwrap() >= 4, "the trail's line: {line} points");
    // Going north: the line's y falls point after point (north up, as on the map).
    let ys = js(c, "return window.__trail.points().map(p => p[1]);").await;
    let ys: Vec<f64> = ys.as_array().unwrap().iter().map(|y| y.as_f64().unwrap()).collect();
    assert!(ys.windows(2).all(|w| w[1] < w[0]), "north is up: {ys:?}");
    screenshot(c, "trip-trail").await;

    // A refund confirmed with a double-click is made once.
    refund_from_page(c, 100, "doubled").await;
    double_click(c, "#confirm-ok").await;
    until(c, "document.getElementById('trip-note').textContent.startsWith('refunded')", WAIT, "the refund").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(refunds(s, &rider, &id).await, vec![100], "a double-click refunded twice");
    // An answer lost on the way back (the refund was made): the operator tries again, the
    // same refund goes with the same Idempotency-Key, and the server replays it.
    js(
        c,
        "const real = window.fetch; window.__lost = 0; \
         window.fetch = async (...a) => { const r = await real(...a); \
           if (String(a[0]).endsWith('/refund') && window.__lost++ === 0) throw new TypeError('connection reset'); \
           return r; }; return 0;",
    )
    .await;
    refund_from_page(c, 200, "lost answer").await;
    click(c, "#confirm-ok").await;
    until(c, "document.getElementById('trip-error').textContent.includes('no answer')", WAIT, "the lost answer").await;
    assert_eq!(refunds(s, &rider, &id).await, vec![200, 100], "the server made the refund");
    refund_from_page(c, 200, "lost answer").await;
    click(c, "#confirm-ok").await;
    until(c, "document.getElementById('trip-note').textContent.includes('already done')", WAIT, "the replay").await;
    assert_eq!(js(c, "return document.getElementById('trip-error').textContent;").await, json!(""));
    assert_eq!(refunds(s, &rider, &id).await, vec![200, 100], "the retry refunded again");
    // A new refund, confirmed anew, is a new action (its key is new): it is made.
    refund_from_page(c, 100, "doubled").await;
    click(c, "#confirm-ok").await;
    until(c, "document.getElementById('trip-note').textContent.startsWith('refunded')", WAIT, "the third refund").await;
    assert_eq!(refunds(s, &rider, &id).await, vec![100, 200, 100]);

    // Health: the rates of offers, accepts and refusals are charted (from 0 before them).
    click(c, "nav button[data-view=health]").await;
    for series in ["offers", "accepts", "rate_limited"] {
        until(
            c,
            &format!("Number(document.querySelector('#charts figure[data-series={series}]')?.dataset.max) > 0"),
            WAIT,
            &format!("a {series} rate"),
        )
        .await;
    }
    screenshot(c, "health-rates").await;

    // The driver, clicked on the map (where the page's box puts it), opens in a panel with
    // suspend and unsuspend.
    click(c, "nav button[data-view=map]").await;
    until(c, &format!("{DRAWN_JS} >= 21"), WAIT, "every driver drawn").await;
    // Zoomed in on it (from INDIVIDUAL_ZOOM no driver is in a bubble).
    js(c, &format!("return window.__map.view({}, {}, 17);", at.0, at.1)).await;
    until(c, "document.getElementById('map').dataset.clusters === '0'", WAIT, "drivers drawn alone").await;
    let offset = map_offset(c, at.0, at.1).await;
    click_at(c, "#map", offset).await;
    let panel = format!("document.getElementById('map-info').dataset.driver === '{driver_id}'");
    until(c, &panel, WAIT, "the driver's panel").await;
    until(c, "document.querySelector('#map-info button.suspend')", WAIT, "its suspend button").await;
    screenshot(c, "map-driver").await;
    click(c, "#map-info button.suspend").await;
    until(c, "document.getElementById('confirm').open", WAIT, "the confirmation").await;
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys("checking documents").await.unwrap();
    click(c, "#confirm-ok").await;
    until(c, "document.querySelector('#map-info button.suspend')?.textContent === 'Unsuspend…'", WAIT, "suspended")
        .await;
    let me = s.get(&format!("/v1/admin/drivers/{driver_id}")).await;
    assert_eq!((me["suspended"].as_bool(), me["availability"].as_str()), (Some(true), Some("offline")), "{me}");
    click(c, "#map-info button.suspend").await;
    until(c, "document.getElementById('confirm').open", WAIT, "the confirmation").await;
    c.find(Locator::Id("confirm-reason")).await.unwrap().send_keys("documents fine").await.unwrap();
    click(c, "#confirm-ok").await;
    until(c, "document.querySelector('#map-info button.suspend')?.textContent === 'Suspend…'", WAIT, "unsuspended")
        .await;

    // By keyboard: with the map focused, Enter opens what is under the crosshair (the
    // centre). The test's driver was moved back there.
    s.post("/v1/driver/status", &driver, json!({"status": "online", "location": {"lat": lat0, "lng": lng0}}), 200)
        .await;
    js(c, "document.getElementById('map-info').replaceChildren(); delete document.getElementById('map-info').dataset.driver; return 0;")
        .await;
    js(c, &format!("return window.__map.view({lat0}, {lng0}, 17);")).await;
    let seen = js(c, "return window.__renderTimes.length;").await.as_u64().unwrap();
    until(c, &format!("window.__renderTimes.length > {}", seen + 1), WAIT, "a snapshot with the move").await;
    let map = c.find(Locator::Id("map")).await.unwrap();
    map.send_keys(&Key::Enter.to_string()).await.unwrap();
    until(c, &panel, WAIT, "Enter opened the driver under the crosshair").await;

    // Trips: more than one page (page size 10), next and previous by cursor.
    let riders: Vec<String> = {
        let mut v = Vec::new();
        for n in 0..2 {
            let m = s
                .post(
                    "/v1/admin/users",
                    ADMIN,
                    json!({"role": "rider", "name": format!("Pager {n}"), "phone": format!("+20104444444{n}")}),
                    201,
                )
                .await;
            v.push(m["token"].as_str().unwrap().to_owned());
        }
        v
    };
    for n in 0..12 {
        let r = &riders[n % 2];
        let t = s
            .post(
                "/v1/trips",
                r,
                json!({"pickup": {"lat": lat0 - 0.1, "lng": lng0 - 0.1}, "dropoff": {"lat": lat0 - 0.09, "lng": lng0 - 0.1},
                    "category": "economy", "payment_method": "cash"}),
                201,
            )
            .await;
        s.post(&format!("/v1/trips/{}/cancel", t["id"].as_str().unwrap()), r, json!({"reason": "paging"}), 200).await;
    }
    click(c, "nav button[data-view=trips]").await;
    c.find(Locator::Id("trips-limit")).await.unwrap().select_by_value("10").await.unwrap();
    until(c, "document.querySelectorAll('#trips tr').length === 10", WAIT, "a page of 10").await;
    let (first, cursor) = table_page(c, "trips", 1).await;
    assert_eq!((first.len(), cursor.as_str()), (10, ""));
    click(c, "#trips-next").await;
    let (second, cursor) = table_page(c, "trips", 2).await;
    assert!(!cursor.is_empty());
    let api = s.get(&format!("/v1/admin/trips?limit=10&cursor={cursor}")).await;
    let want: Vec<&str> = api["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(second, want, "page 2 is the API's page after the cursor");
    assert!(!second.is_empty(), "{first:?} then nothing");
    assert!(!js(c, "return document.getElementById('trips-prev').disabled;").await.as_bool().unwrap());
    screenshot(c, "trips-page-2").await;
    click(c, "#trips-prev").await;
    let (back, cursor) = table_page(c, "trips", 1).await;
    assert_eq!((back.len(), cursor.as_str()), (10, ""));
    c.find(Locator::Id("trips-limit")).await.unwrap().select_by_value("50").await.unwrap();

    // Drivers: 21 in pages of 10, every one once.
    click(c, "nav button[data-view=drivers]").await;
    c.find(Locator::Id("drivers-limit")).await.unwrap().select_by_value("10").await.unwrap();
    until(c, "document.querySelectorAll('#drivers tr').length === 10", WAIT, "a page of 10 drivers").await;
    let mut seen = Vec::new();
    for page in 1..=3 {
        if page > 1 {
            click(c, "#drivers-next").await;
        }
        let (ids, _) = table_page(c, "drivers", page).await;
        assert_eq!(ids.len(), if page < 3 { 10 } else { 1 }, "page {page}");
        seen.extend(ids);
    }
    assert!(js(c, "return document.getElementById('drivers-next').disabled;").await.as_bool().unwrap());
    let all = s.get("/v1/admin/drivers?limit=200").await;
    let mut want: Vec<String> =
        all["items"].as_array().unwrap().iter().map(|d| d["driver_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(want.len(), 21);
    assert_eq!(seen, want, "the pages in order, each driver once");
    want.dedup();
    assert_eq!(want.len(), 21);
    c.find(Locator::Id("drivers-limit")).await.unwrap().select_by_value("100").await.unwrap();
    until(c, "document.querySelectorAll('#drivers tr').length === 21", WAIT, "one page of all").await;

    // Every view at tablet size (and the desktop's beside it): nothing sticks out sideways.
    let sos = s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "left my bag"}), 201).await;
    let sos_id = sos["id"].as_str().unwrap().to_owned();
    until(c, &format!("document.querySelector('#alerts li[data-id=\"{sos_id}\"]')"), WAIT, "the alert").await;
    click(c, "nav button[data-view=trips]").await;
    click(c, &format!("#trips tr[data-id=\"{id}\"]")).await;
    until(c, "document.getElementById('trip-trail').dataset.points >= 4", WAIT, "the trail").await;
    for (size, suffix) in [(TABLET, "-tablet"), (DESKTOP, "-desktop")] {
        viewport(c, size).await;
        for view in ["map", "trips", "drivers", "alerts", "health"] {
            click(c, &format!("nav button[data-view={view}]")).await;
            if view == "map" {
                let seen = js(c, "return window.__renderTimes.length;").await.as_u64().unwrap();
                until(c, &format!("window.__renderTimes.length > {}", seen + 1), WAIT, "the map redrawn").await;
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert_no_horizontal_overflow(c, &format!("{view} at {size:?}")).await;
            screenshot(c, &format!("{view}{suffix}")).await;
        }
    }
    viewport(c, DESKTOP).await;

    // Sign-out leaves nothing; signing in again starts the health history afresh.
    click(c, "#signout").await;
    assert_signed_out_page_is_empty(c).await;
    viewport(c, TABLET).await;
    assert_no_horizontal_overflow(c, "sign-in at tablet size").await;
    screenshot(c, "signin-tablet").await;
    viewport(c, DESKTOP).await;
    sign_in(s, c).await;
    click(c, "nav button[data-view=health]").await;
    until(c, "document.querySelectorAll('#charts figure').length >= 10", WAIT, "charts").await;
    let max = js(c, "return document.querySelector('#charts figure[data-series=accepts]').dataset.max;").await;
    assert_eq!(max, json!("0"), "the last session's accepts are not charted");
}

/// A page of `lib/pages.js` (the cluster status) gets its button and section at sign-in,
/// says that a standalone node has no cluster, in both languages, and passes the
/// accessibility scan at both sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_page_in_both_languages() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&["--demo", "--demo-drivers", "20"]);
    let c = browser(port).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        sign_in(&s, &c).await;
        click(&c, "nav button[data-view=cluster]").await;
        until(&c, "document.querySelector('#view-cluster .standalone') !== null", WAIT, "the cluster page").await;
        set_lang(&c, "ar").await;
        let said = js(
            &c,
            "return [document.querySelector('#view-cluster .standalone').textContent, \
                               document.querySelector('nav button[data-view=cluster]').textContent];",
        )
        .await;
        assert_eq!(said, json!(["تعمل هذه العقدة وحدها: لا عنقود مُعدّ.", "العنقود"]), "the page in Arabic");
        look_at(&c, "cluster", "document.querySelector('#view-cluster .standalone') !== null").await;
        assert_no_injection(&c).await;
        // The scan bites: a button with no name (axe's `button-name`, critical) fails it.
        js(&c, "document.getElementById('view-cluster').appendChild(document.createElement('button')); return true;")
            .await;
        let caught = std::panic::AssertUnwindSafe(assert_accessible(&c, "a nameless button")).catch_unwind().await;
        assert!(caught.is_err(), "axe-core let a button with no name pass");
    })
    .catch_unwind()
    .await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
