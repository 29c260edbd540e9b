//! Browser tests of the console's shell (issue 23): staff sign-in with e-mail, password and
//! a TOTP code computed here (RFC 6238 with `ring`, from the secret of the setup's
//! `otpauth://` URI), a wrong code refused, a 401 ending the session; English and Arabic
//! (right to left) on every static view and the sign-in page; times in the operator's
//! chosen time zone (UTC on hover); the search box (a trip by ref, a user by name or the
//! last digits of a phone); the trip page (driver and rider cards, the timeline, amounts
//! typed in major units); the health charts (uPlot, a time axis and a value axis with its
//! unit); hash addresses with back and forward. Every page is looked at in both languages
//! and both sizes (`look_at`: no sideways overflow, axe-core, a screenshot each).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;
// The black-box suites' TOTP client (this suite has its own server harness, `browser`).
#[allow(dead_code)]
#[path = "common/totp.rs"]
mod totp;

use browser::*;
use fantoccini::{Client, Locator};
use futures_util::FutureExt;
use hyper::Method;
use serde_json::{Value, json};
use totp::{totp_at, unbase32};

const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "amal@example.com";

fn step_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

/// An admin makes a staff user signing in with `email`, who sets its password: (user id,
/// TOTP secret).
async fn staff(s: &Server, name: &str, email: &str, phone: &str) -> (String, Vec<u8>) {
    let v = s
        .post("/v1/admin/users", ADMIN, json!({"role": "support", "name": name, "phone": phone, "email": email}), 201)
        .await;
    let id = v["user"]["id"].as_str().unwrap().to_owned();
    let setup = v["setup_token"].as_str().unwrap();
    let (status, _, v) = s
        .call(Method::POST, "/v1/auth/staff/setup", None, Some(json!({"setup_token": setup, "password": PASSWORD})))
        .await;
    assert_eq!(status, 200, "{v}");
    let uri = v["totp_uri"].as_str().unwrap();
    let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    (id, unbase32(secret))
}

async fn type_into(c: &Client, id: &str, text: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Sets a `<select>` the way a change by hand does.
async fn choose(c: &Client, id: &str, value: &str) {
    js(
        c,
        &format!(
            "const s = document.getElementById('{id}'); s.value = {}; s.dispatchEvent(new Event('change')); return s.value;",
            json!(value)
        ),
    )
    .await;
}

async fn hash(c: &Client) -> Value {
    js(c, "return location.hash;").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_signs_staff_in_speaks_two_languages_and_finds_things() {
    with_browser(&["--demo", "--demo-drivers", "20"], shell).await;
}

async fn shell(s: &Server, c: &Client) {
    // The login answer says when the token ends (another user: a code is taken once).
    let (_, other) = staff(s, "Other Staff", "other@example.com", "+201012340009").await;
    let (status, _, v) = s
        .call(
            Method::POST,
            "/v1/auth/staff/login",
            None,
            Some(json!({"email": "other@example.com", "password": PASSWORD, "totp": totp_at(&other, step_now())})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["expires_in_s"], json!(12 * 3600), "{v}");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");

    let (_, secret) = staff(s, "Amal Support", EMAIL, "+201012340001").await;

    // The sign-in page, its language switch and time-zone chooser shown.
    c.goto(&s.url("/console")).await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Id("email")).await.unwrap();
    assert!(c.find(Locator::Id("lang")).await.unwrap().is_displayed().await.unwrap(), "#lang on the sign-in page");
    assert!(c.find(Locator::Id("tz")).await.unwrap().is_displayed().await.unwrap(), "#tz on the sign-in page");
    look_at(c, "signin", "!document.getElementById('signin-view').hidden").await;
    // A language chosen before is the page's language when it opens again.
    set_lang(c, "ar").await;
    c.refresh().await.unwrap();
    until(c, "document.documentElement.dir === 'rtl'", WAIT, "Arabic remembered").await;
    let said = js(c, "return document.querySelector('#signin-staff button').textContent;").await;
    assert_eq!(said, json!("تسجيل الدخول"));
    set_lang(c, "en").await;

    // A wrong code: the one answer, on the page, still signed out.
    let right = totp_at(&secret, step_now());
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    type_into(c, "email", EMAIL).await;
    type_into(c, "password", PASSWORD).await;
    type_into(c, "totp", &wrong).await;
    click(c, "#signin-staff button[type=submit]").await;
    until(
        c,
        "document.getElementById('signin-error').textContent.includes('Wrong e-mail, password or code')",
        WAIT,
        "wrong code",
    )
    .await;
    assert!(!c.find(Locator::Id("app")).await.unwrap().is_displayed().await.unwrap());
    assert_eq!(js(c, "return document.getElementById('password').value;").await, json!(""), "the password is not kept");

    // The right one: the map, the operator's name in the header, the address. The
    // page's timers are recorded first: the session's end is one of them.
    js(
        c,
        "window.__timeouts = []; const st = window.setTimeout; \
         window.setTimeout = (f, ms, ...a) => { window.__timeouts.push([ms, f]); return st(f, ms, ...a); }; return 0;",
    )
    .await;
    type_into(c, "email", EMAIL).await;
    type_into(c, "password", PASSWORD).await;
    type_into(c, "totp", &totp_at(&secret, step_now())).await;
    click(c, "#signin-staff button[type=submit]").await;
    until(c, "!document.getElementById('app').hidden && !document.getElementById('view-map').hidden", WAIT, "the map")
        .await;
    assert_eq!(js(c, "return document.getElementById('who').textContent;").await, json!("Amal Support"));
    assert_eq!(hash(c).await, json!("#/map"));
    // The token is in memory only.
    assert_eq!(
        js(c, "return [localStorage.length, sessionStorage.length, document.cookie];").await.as_array().unwrap()[2],
        json!("")
    );
    let stored =
        js(c, "return Object.keys(localStorage).filter((k) => !['dispatch.lang', 'dispatch.tz'].includes(k));").await;
    assert_eq!(stored, json!([]), "only preferences in storage");
    look_at(
        c,
        "map",
        "!document.getElementById('view-map').hidden && document.getElementById('status').textContent !== ''",
    )
    .await;

    // A trip with a driver: a driver of our own, online at the pickup, accepts.
    let bbox = page_bbox(c).await;
    let (lat0, lng0) = ((bbox[1] + bbox[3]) / 2.0, (bbox[0] + bbox[2]) / 2.0);
    let made = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "driver", "name": "Karim Driver", "phone": "+201077770001",
                "vehicle": {"category": "comfort", "plate": "KRM 7"}}),
            201,
        )
        .await;
    let driver = made["token"].as_str().unwrap().to_owned();
    s.post("/v1/driver/status", &driver, json!({"status": "online", "location": {"lat": lat0, "lng": lng0}}), 200)
        .await;
    let made = s
        .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": "Nour Rider", "phone": "+201066665432"}), 201)
        .await;
    let rider = made["token"].as_str().unwrap().to_owned();
    let rider_id = made["user"]["id"].as_str().unwrap().to_owned();
    let trip = s
        .post(
            "/v1/trips",
            &rider,
            json!({"pickup": {"lat": lat0 + 0.0002, "lng": lng0, "address": "Opera Square"},
                "dropoff": {"lat": lat0 + 0.004, "lng": lng0 + 0.004, "address": "Zamalek"},
                "category": "comfort", "payment_method": "cash"}),
            201,
        )
        .await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let trip_ref = trip["ref"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, _, v) =
            s.call(Method::POST, &format!("/v1/trips/{id}/accept"), Some(&driver), Some(json!({}))).await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never accepted: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // An SOS, for the alerts page.
    s.post(&format!("/v1/trips/{id}/sos"), &rider, json!({"note": "rider feels unsafe"}), 201).await;

    // Trips: times in the operator's zone, UTC on hover; the chosen zone is remembered.
    click(c, "nav button[data-view=trips]").await;
    let row = format!("#trips tr[data-id=\"{id}\"]");
    until(c, &format!("document.querySelector('{row} time')"), WAIT, "the trip in the table").await;
    assert_eq!(hash(c).await, json!("#/trips"));
    choose(c, "tz", "Asia/Tokyo").await;
    let check = format!(
        "const t = document.querySelector('{row} time'); const d = new Date(t.dateTime); \
         const hm = String((d.getUTCHours() + 9) % 24).padStart(2, '0') + ':' + String(d.getUTCMinutes()).padStart(2, '0'); \
         return [t.textContent.includes(hm), t.title === d.toISOString(), localStorage.getItem('dispatch.tz')];"
    );
    until(c, &format!("(() => {{ {check} }})()[0]"), WAIT, "the time in Tokyo").await;
    assert_eq!(js(c, &check).await, json!([true, true, "Asia/Tokyo"]), "[hh:mm in Tokyo, UTC on hover, remembered]");
    choose(c, "tz", "UTC").await;
    look_at(c, "trips", &format!("document.querySelector('{row}')")).await;

    // The trip page by its address: both cards, the timeline's times, the fare.
    js(c, &format!("location.hash = '#/trips/{id}'; return 0;")).await;
    until(c, &format!("document.getElementById('trip-id').textContent === '{id}'"), WAIT, "the trip page").await;
    let card = "document.querySelector('#trip-driver-card dd[data-field=name]')";
    until(c, &format!("{card} && {card}.textContent === 'Karim Driver'"), WAIT, "the driver's card").await;
    let cards = js(
        c,
        "return [document.querySelector('#trip-driver-card dd[data-field=plate]').textContent, \
                 document.querySelector('#trip-rider-card dd[data-field=id]').textContent, \
                 document.querySelector('#trip-rider-card dd[data-field=id] a').getAttribute('href'), \
                 document.getElementById('trip-ref').textContent];",
    )
    .await;
    assert_eq!(cards, json!(["KRM 7", rider_id, format!("#/users/{rider_id}"), trip_ref]));
    until(c, "document.querySelectorAll('#trip-events li time').length >= 2", WAIT, "the timeline's times").await;
    // Refunds are typed in major units: more decimals than the currency has is refused
    // on the page, before anything is sent.
    click(c, "#trip-refund").await;
    until(c, "document.getElementById('confirm').open", WAIT, "the refund dialog").await;
    let caption = js(c, "return document.getElementById('confirm-amount-caption').textContent;").await;
    assert_eq!(caption, json!(format!("Amount in {}", trip["fare"]["currency"].as_str().unwrap())));
    type_into(c, "confirm-amount", "1.234").await;
    type_into(c, "confirm-reason", "goodwill").await;
    click(c, "#confirm-ok").await;
    until(
        c,
        "document.getElementById('confirm-amount-error').textContent.includes('at most 2 decimals')",
        WAIT,
        "too many decimals",
    )
    .await;
    assert_eq!(js(c, "return document.getElementById('confirm').open;").await, json!(true), "the dialog stays open");
    click(c, "#confirm-back").await;
    look_at(c, "trip", &format!("{card} && document.querySelector('#trip-events li time')")).await;

    // Drivers, then back and forward through the addresses.
    click(c, "nav button[data-view=drivers]").await;
    until(c, "document.querySelector('#drivers tr')", WAIT, "drivers").await;
    assert_eq!(hash(c).await, json!("#/drivers"));
    look_at(c, "drivers", "document.querySelector('#drivers tr')").await;
    js(c, "history.back(); return 0;").await;
    until(
        c,
        &format!("location.hash === '#/trips/{id}' && !document.getElementById('view-trips').hidden"),
        WAIT,
        "back",
    )
    .await;
    until(c, &format!("document.getElementById('trip-id').textContent === '{id}'"), WAIT, "back to the trip").await;
    js(c, "history.forward(); return 0;").await;
    until(c, "location.hash === '#/drivers' && !document.getElementById('view-drivers').hidden", WAIT, "forward").await;

    // Alerts: the SOS, its time in the zone.
    click(c, "nav button[data-view=alerts]").await;
    until(c, "document.querySelector('#alerts li[data-id] time')", WAIT, "the SOS").await;
    look_at(c, "alerts", "document.querySelector('#alerts li[data-id] time')").await;

    // Health: a uPlot chart per series with a time axis and a value axis with its unit.
    click(c, "nav button[data-view=health]").await;
    let charts = "document.querySelectorAll('#charts figure .plot canvas').length >= 10";
    until(c, charts, WAIT, "the charts").await;
    let axes = js(
        c,
        "const f = document.querySelector('#charts figure[data-series=offers]'); \
         return [f.querySelectorAll('.u-axis').length, f.dataset.axes];",
    )
    .await;
    assert_eq!(axes, json!([2, "|per second"]), "[axes, the time axis's and the value axis's labels]");
    set_lang(c, "ar").await;
    let unit = "document.querySelector('#charts figure[data-series=offers]').dataset.axes";
    until(c, &format!("{unit} === '|في الثانية'"), WAIT, "the unit in Arabic").await;
    set_lang(c, "en").await;
    look_at(c, "health", charts).await;

    // Search: a user by name, by the last digits of the phone; a trip by its ref.
    type_into(c, "search", "Nour").await;
    click(c, "#search-form button[type=submit]").await;
    let user_hit = format!("#search-results li[data-kind=user][data-id=\"{rider_id}\"] a");
    until(c, &format!("document.querySelector('{user_hit}')"), WAIT, "the user by name").await;
    assert_eq!(hash(c).await, json!("#/search/Nour"));
    look_at(c, "search", &format!("document.querySelector('{user_hit}')")).await;
    type_into(c, "search", "5432").await;
    click(c, "#search-form button[type=submit]").await;
    until(c, &format!("location.hash === '#/search/5432' && document.querySelector('{user_hit}')"), WAIT, "by phone")
        .await;
    type_into(c, "search", &trip_ref).await;
    click(c, "#search-form button[type=submit]").await;
    let trip_hit = format!("#search-results li[data-kind=trip][data-id=\"{id}\"] a");
    until(c, &format!("document.querySelector('{trip_hit}')"), WAIT, "the trip by ref").await;
    click(c, &trip_hit).await;
    until(
        c,
        &format!("location.hash === '#/trips/{id}' && document.getElementById('trip-id').textContent === '{id}'"),
        WAIT,
        "the trip from the search",
    )
    .await;
    assert_no_injection(c).await;

    // The session ends when the token does: a timer of the login answer's 12 hours,
    // run now.
    let ended = js(
        c,
        "const t = window.__timeouts.filter(([ms]) => ms === 12 * 3600 * 1000); \
         if (t.length === 1) t[0][1](); return t.length;",
    )
    .await;
    assert_eq!(ended, json!(1), "one timer of 12 hours");
    let why = "return [document.getElementById('signin-error').textContent, location.hash, \
               document.getElementById('who').textContent, document.getElementById('app').hidden];";
    assert_eq!(js(c, why).await, json!(["your session has ended: sign in again", "", "", true]));

    // Any 401 ends the session too: a staff token typed in, then revoked.
    let made = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "support", "name": "Sami Support", "phone": "+201012340002"}),
            201,
        )
        .await;
    let token = made["token"].as_str().unwrap().to_owned();
    let sami = made["user"]["id"].as_str().unwrap().to_owned();
    type_into(c, "token", &token).await;
    click(c, "#signin button[type=submit]").await;
    until(c, "!document.getElementById('app').hidden", WAIT, "signed in with the token").await;
    assert_eq!(js(c, "return document.getElementById('who').textContent;").await, json!("API token"));
    s.post(&format!("/v1/admin/users/{sami}/revoke-tokens"), ADMIN, json!({}), 204).await;
    until(c, "!document.getElementById('signin-view').hidden", WAIT, "signed out on a 401").await;
    assert_eq!(js(c, why).await, json!(["your session has ended: sign in again", "", "", true]));
}

/// The model of `parseMajor` (lib/format.js): text in major units → minor units, or None
/// when it is not a positive amount with at most `exp` decimals (commas and spaces
/// between digits ignored, digits only, at most 2^53 − 1 minor units).
fn parse_major_model(text: &str, exp: u32) -> Option<u64> {
    let s: String = text.trim().chars().filter(|c| *c != ',' && !c.is_whitespace()).collect();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s.as_str(), ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > exp as usize {
        return None;
    }
    let digits = format!("{int}{frac:0<w$}", w = exp as usize);
    let minor: u128 = digits.parse().ok()?;
    (minor > 0 && minor < (1u128 << 53)).then_some(minor as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_typed_in_major_units_become_the_minor_units_of_the_model() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&[]);
    let c = browser(port).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        c.goto(&s.url("/console")).await.unwrap();
        c.wait().at_most(WAIT).for_element(Locator::Id("email")).await.unwrap();
        // Hand-picked texts, then many generated from a fixed seed (digits, dots, commas,
        // spaces, signs and letters), for exponents 0, 2 and 3.
        let mut texts: Vec<String> = [
            "12.5", "12.50", "12.505", "1,200", " 7 ", "0", "0.00", "0.01", ".5", "5.", "-1", "+1", "1e3", "", "1.2.3",
            "٣", "9007199254740991", "9007199254740992", "1 000.25", "00012.30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let alphabet: Vec<char> = "0123456789.., -+ae".chars().collect();
        let mut seed: u64 = 0x5eed;
        for _ in 0..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize + 1;
            let mut t = String::new();
            let mut x = seed;
            for _ in 0..len {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                t.push(alphabet[(x >> 58) as usize % alphabet.len()]);
            }
            texts.push(t);
        }
        let got = c
            .execute_async(
                "const [texts, done] = [arguments[0], arguments[arguments.length - 1]]; \
                 import('/console/lib/format.js').then((f) => done(texts.map((t) => [0, 2, 3].map((e) => f.parseMajor(t, e)))), \
                                                       (e) => done(String(e)));",
                vec![json!(texts)],
            )
            .await
            .unwrap();
        let got = got.as_array().unwrap_or_else(|| panic!("{got}"));
        for (text, row) in texts.iter().zip(got) {
            for (i, exp) in [0u32, 2, 3].into_iter().enumerate() {
                let want = parse_major_model(text, exp).map_or(Value::Null, |m| json!(m));
                assert_eq!(row[i], want, "parseMajor({text:?}, {exp})");
            }
        }
    })
    .catch_unwind()
    .await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
