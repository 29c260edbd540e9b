//! Browser tests of the operators' console (`/console`, issue 9): the real `dispatchd serve
//! --dev --demo` on loopback and a real headless Chromium driven through its WebDriver
//! (`chromedriver`, started here on a free port) by `fantoccini`. They sign in, read the live
//! map, cancel a trip and acknowledge an SOS by clicking what an operator would, check that
//! hostile text stays text, save a screenshot of each view under
//! `target/console-screenshots/`, and time the rendering of an `ops_snapshot` in the page.
//!
//! `DISPATCH_UPDATE_DOCS_SCREENSHOT=1` also copies the signed-in map to `docs/console.png`
//! (the README's picture).
//!
//! Without `chromedriver` the browser test fails with an install hint, unless
//! `DISPATCH_SKIP_BROWSER_TESTS=1` (then it says so and returns). Setup waits are generous;
//! only the contract's "within 2 s" is timed, from the API call that caused it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
/// Long enough for a slow, shared machine; never reached when things work.
const WAIT: Duration = Duration::from_secs(60);
/// What issue 9 promises for a trip or an alert to reach the console.
const LIVE: Duration = Duration::from_secs(2);
/// The Content-Security-Policy of API.md, exactly.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// JS: how many driver dots the map has drawn (each is one `M x y h0` of a driver path).
const DRAWN_JS: &str = "[...document.querySelectorAll('#map path.driver')]\
    .reduce((n, p) => n + (p.getAttribute('d').match(/M/g) || []).length, 0)";
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const XSS_REASON: &str = "</dd><script>window.__xss = 1</script> rider asked";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Server {
    _child: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatchd"));
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("data"));
        cmd.args(args)
            .env("DISPATCH_ADMIN_TOKEN", ADMIN)
            .env("DISPATCH_TOKEN_SECRET", "test-token-secret-0123456789abcdef0123456789")
            .env("DISPATCH_WEBHOOK_SECRET_SIM", "test-webhook-secret-0123456789")
            .env("DISPATCH_SMS_SINK", format!("file:{}", dir.path().join("sms.jsonl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "no 'listening on' line; stderr: {}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap()
            )
        });
        Server { _child: Proc(child), addr: addr.parse().unwrap(), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header("host", self.addr.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value, want: u16) -> Value {
        let (status, _, v) = self.call(Method::POST, path, Some(token), Some(body)).await;
        assert_eq!(status, want, "POST {path}: {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let (status, _, v) = self.call(Method::GET, path, Some(ADMIN), None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }
}

/// `chromedriver` on a free loopback port, or `None` when the test is to be skipped.
fn chromedriver() -> Option<(Proc, u16)> {
    let found = Command::new("chromedriver").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("DISPATCH_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
            eprintln!("DISPATCH_SKIP_BROWSER_TESTS=1 and no chromedriver: browser test skipped");
            return None;
        }
        panic!(
            "the console's browser tests need Chromium and its WebDriver: run `bash scripts/deps.sh` \
             (apt-get install chromium chromium-driver), or set DISPATCH_SKIP_BROWSER_TESTS=1 to skip them"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((proc, port))
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"]}),
    );
    // Leave any dialog open so that the test can see it (an `alert(1)` would be a failure).
    caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session from chromedriver");
    // --window-size sizes the window; make the page itself (what screenshots show) 1280×800.
    c.goto("about:blank").await.unwrap();
    let frame =
        js(&c, "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];").await;
    let (fw, fh) = (frame[0].as_u64().unwrap() as u32, frame[1].as_u64().unwrap() as u32);
    c.set_window_size(1280 + fw, 800 + fh).await.unwrap();
    assert_eq!(js(&c, "return [window.innerWidth, window.innerHeight];").await, json!([1280, 800]));
    c
}

/// One browser test at a time: they share two cores, and the 2 s checks are timed.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Signs in with the admin token and waits for the first drivers on the map.
async fn sign_in(s: &Server, c: &Client) {
    c.goto(&s.url("/console")).await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Id("token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    click(c, "#signin button[type=submit]").await;
    until(c, &format!("{DRAWN_JS} > 0"), WAIT, "drivers on the map").await;
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}: {script}"))
}

/// Polls `script` (a JS expression) until it is truthy; returns when it became so.
async fn until(c: &Client, script: &str, within: Duration, what: &str) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let v = js(c, &format!("return !!({script});")).await;
        if v == json!(true) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{what}: not true within {within:?}: {script}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// Clicks the element `css` selects. Live lists are redrawn under the pointer now and then
/// (a stale element): find it again until it takes the click.
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let clicked = match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "could not click {css}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No dialog is open, no `<img src=x>` and no script but app.js is in the page.
async fn assert_no_injection(c: &Client) {
    assert!(c.get_alert_text().await.is_err(), "a dialog is open: injected script ran");
    let v = js(
        c,
        "return [document.querySelectorAll('img[src=\"x\"]').length, document.scripts.length, \
         document.scripts[0].getAttribute('src'), window.__xss === undefined];",
    )
    .await;
    assert_eq!(v, json!([0, 1, "/console/app.js", true]), "[img[src=x], scripts, script src, no __xss]");
    assert_eq!(js(c, "return window.__cspViolations;").await, json!([]), "the page broke its own CSP");
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
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        let (status, h, _) = s.call(Method::GET, path, None, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let (_, _, page) = s.call(Method::GET, "/console", None, None).await;
    assert!(page.is_null(), "the page is HTML, not JSON");
    // Errors under /console carry them too: an unknown file, another method, and the
    // 429 of a caller guessing tokens (bad tokens pay the IP limit, 60 a minute).
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
    let mut limited = None;
    for _ in 0..100 {
        let (status, h, _) = s.call(Method::GET, "/console", Some("not-a-token"), None).await;
        if status == 429 {
            limited = Some(h);
            break;
        }
        assert_eq!(status, 401);
        headers_ok(&h, "401");
    }
    let h = limited.expect("bad tokens were never rate-limited");
    assert!(h.contains_key("retry-after"));
    headers_ok(&h, "429");
    // Not the API's other paths.
    let (_, h, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert!(!h.contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&["--demo", "--demo-drivers", "50"]);
    let c = browser(port).await;
    // Close the browser whatever happens, then report the failure if there was one.
    let outcome = std::panic::AssertUnwindSafe(drive(&s, &c)).catch_unwind().await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
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
    let bbox: Vec<f64> = js(c, "return document.getElementById('map').dataset.bbox.split(',').map(Number);")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let bbox: [f64; 4] = bbox.try_into().unwrap();
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
    let (median, worst, times) = render_ms(c).await;
    println!("console: rendering one ops_snapshot of {markers} drivers: median {median} ms, max {worst} ms ({times})");
    assert!(median <= 50.0, "rendering an ops_snapshot took {median} ms (median): {times}");

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
    let on_map =
        until(c, &format!("document.querySelector('#map g.trip[data-id=\"{id}\"]')"), WAIT, "trip on map").await;
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
    let pickup = js(c, "return [...document.querySelectorAll('#trip-facts dd')].map(d => d.textContent);").await;
    assert!(pickup.as_array().unwrap().iter().any(|d| d == XSS_NAME), "the address shows as text: {pickup}");
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
    c.find(Locator::Id("confirm-amount")).await.unwrap().send_keys("100").await.unwrap();
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
    let raised = Instant::now();
    let sos = s.post(&format!("/v1/trips/{id2}/sos"), &rider, json!({"note": XSS_NAME}), 201).await;
    let sos_id = sos["id"].as_str().unwrap();
    let seen =
        until(c, &format!("document.querySelector('#alerts li[data-id=\"{sos_id}\"]')"), WAIT, "the alert").await;
    println!("console: the SOS reached the console in {:?}", seen - raised);
    assert!(seen - raised <= LIVE, "the SOS reached the console after {:?}", seen - raised);
    assert!(c.find(Locator::Id("alert-banner")).await.unwrap().is_displayed().await.unwrap(), "visible cue");
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
        click(c, &format!("#map g.trip[data-id=\"{id2}\"] rect")).await;
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

/// The page's render times of `ops_snapshot`s (ms): (median, max, all as recorded).
/// The median is what is asserted: on a shared two-core machine one render now and then
/// is preempted by the OS, which is not the page's cost; the max is printed beside it.
async fn render_ms(c: &Client) -> (f64, f64, Value) {
    let times = js(c, "return window.__renderTimes.map(t => Math.round(t * 10) / 10);").await;
    let mut v: Vec<f64> = times.as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1], times)
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
        let (median, worst, times) = render_ms(&c).await;
        println!(
            "console: rendering one ops_snapshot of 2000 of 10000 drivers: median {median} ms, max {worst} ms ({times})"
        );
        screenshot(&c, "map-10000").await;
        assert!(median <= 50.0, "rendering an ops_snapshot took {median} ms (median): {times}");
    })
    .catch_unwind()
    .await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
