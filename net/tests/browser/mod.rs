//! What the console's browser suites share: the real `dispatchd serve --dev` on loopback
//! ([`Server`], with an HTTP client over real sockets), `chromedriver` on a free port and a
//! headless Chromium session ([`chromedriver`], [`browser`]), the page sizes of the
//! screenshots, and the waits, clicks and checks the suites use. Included by each
//! `console*.rs` suite with `mod browser;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token-0123456789abcdef";
/// Long enough for a slow, shared machine; never reached when things work.
pub const WAIT: Duration = Duration::from_secs(60);
/// What issue 9 promises for a trip or an alert to reach the console.
pub const LIVE: Duration = Duration::from_secs(2);
/// The Content-Security-Policy of API.md, exactly.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A child process killed when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Server {
    _child: Proc,
    pub addr: SocketAddr,
    pub _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        // `DISPATCH_TEST_BIN` runs the suite against another build, as `common::dispatchd_bin`.
        let bin = std::env::var("DISPATCH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dispatchd").to_owned());
        let mut cmd = Command::new(bin);
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn call(
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

    pub async fn post(&self, path: &str, token: &str, body: Value, want: u16) -> Value {
        let (status, _, v) = self.call(Method::POST, path, Some(token), Some(body)).await;
        assert_eq!(status, want, "POST {path}: {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, _, v) = self.call(Method::GET, path, Some(ADMIN), None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }
}

/// `chromedriver` on a free loopback port, or `None` when the test is to be skipped.
pub fn chromedriver() -> Option<(Proc, u16)> {
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

pub async fn browser(port: u16) -> Client {
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
    viewport(&c, DESKTOP).await;
    c
}

/// The desktop the issue names, and a tablet held upright (an iPad Air's CSS pixels).
pub const DESKTOP: (u32, u32) = (1280, 800);
pub const TABLET: (u32, u32) = (820, 1180);

/// Makes the page itself (not the window around it) `w`×`h` CSS pixels.
pub async fn viewport(c: &Client, (w, h): (u32, u32)) {
    let frame = js(c, "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];").await;
    let (fw, fh) = (frame[0].as_u64().unwrap() as u32, frame[1].as_u64().unwrap() as u32);
    c.set_window_size(w + fw, h + fh).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while js(c, "return [window.innerWidth, window.innerHeight];").await != json!([w, h]) {
        assert!(Instant::now() < deadline, "the page never became {w}×{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nothing sticks out sideways: the page needs no horizontal scrolling.
pub async fn assert_no_horizontal_overflow(c: &Client, what: &str) {
    let v = js(c, "return [document.documentElement.scrollWidth, window.innerWidth];").await;
    let (scroll, inner) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
    assert!(scroll <= inner, "{what}: the page is {scroll} px wide in a {inner} px viewport");
}

/// Two clicks in a row on what `css` selects, as fast as the pointer goes (a double-click).
pub async fn double_click(c: &Client, css: &str) {
    use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let e = c.find(Locator::Css(css)).await.unwrap();
    let mut mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
        element: e,
        duration: None,
        x: 0.0,
        y: 0.0,
    });
    for _ in 0..2 {
        mouse = mouse
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    }
    c.perform_actions(mouse).await.unwrap();
    c.release_actions().await.unwrap();
}

/// A real click on `css`, `(x, y)` CSS pixels from its centre.
pub async fn click_at(c: &Client, css: &str, (x, y): (f64, f64)) {
    use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let e = c.find(Locator::Css(css)).await.unwrap();
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement { element: e, duration: None, x, y })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    c.perform_actions(mouse).await.unwrap();
    c.release_actions().await.unwrap();
}

/// One browser test at a time: they share two cores, and the 2 s checks are timed.
pub static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}: {script}"))
}

/// The box the map page shows, `[west, south, east, north]` (its `data-bbox`).
pub async fn page_bbox(c: &Client) -> [f64; 4] {
    let v = js(c, "return document.getElementById('map').dataset.bbox.split(',').map(Number);").await;
    let v: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    v.try_into().unwrap()
}

/// Where (lat, lng) is on the map, from the map's centre (what `click_at` takes).
pub async fn map_offset(c: &Client, lat: f64, lng: f64) -> (f64, f64) {
    let v = js(
        c,
        &format!(
            "const m = document.getElementById('map').getBoundingClientRect(); \
             const [x, y] = window.__map.point({lat}, {lng}); return [x - m.width / 2, y - m.height / 2];"
        ),
    )
    .await;
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

/// Polls `script` (a JS expression) until it is truthy; returns when it became so.
pub async fn until(c: &Client, script: &str, within: Duration, what: &str) -> Instant {
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

pub fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// Clicks the element `css` selects. Live lists are redrawn under the pointer now and then
/// (a stale element): find it again until it takes the click.
pub async fn click(c: &Client, css: &str) {
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
pub async fn assert_no_injection(c: &Client) {
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

/// axe-core (npm, MPL-2.0), vendored for the tests only: never served by `dispatchd`.
const AXE: &str = include_str!("../fixtures/axe-core/axe.min.js");

/// Runs axe-core's WCAG 2.x A/AA rules on the page as it is now and fails listing every
/// serious or critical violation (rule, impact, the first targets). Moderate and minor
/// ones are printed, not failed. The script is handed to the driver, which runs it outside
/// the page's CSP (the page itself still loads nothing but its own files).
pub async fn assert_accessible(c: &Client, what: &str) {
    if js(c, "return !!window.axe;").await != json!(true) {
        js(c, &format!("{AXE}\n;return true;")).await;
    }
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })\
               .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,\
                  targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }))),\
                     (e) => done({ error: String(e) }));",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: axe-core did not run: {e}"));
    assert!(result.get("error").is_none(), "{what}: axe-core failed: {result}");
    let violations = result.as_array().cloned().unwrap_or_default();
    let (bad, minor): (Vec<Value>, Vec<Value>) =
        violations.into_iter().partition(|v| matches!(v["impact"].as_str(), Some("serious") | Some("critical")));
    if !minor.is_empty() {
        eprintln!("{what}: axe-core, moderate or minor: {}", Value::Array(minor));
    }
    assert!(bad.is_empty(), "{what}: axe-core found serious or critical violations: {:#}", Value::Array(bad));
}

/// The page sizes every page is looked at in.
pub const SIZES: [(&str, (u32, u32)); 2] = [("desktop", DESKTOP), ("tablet", TABLET)];
/// The console's languages (`lib/i18n.js`).
pub const LANGS: [&str; 2] = ["en", "ar"];

/// Switches the console's language with its own control (`#lang`), and waits for the page
/// to say so (`<html lang dir>`).
pub async fn set_lang(c: &Client, lang: &str) {
    js(c, &format!("const s = document.getElementById('lang'); s.value = '{lang}'; s.dispatchEvent(new Event('change')); return true;")).await;
    let dir = if lang == "ar" { "rtl" } else { "ltr" };
    until(
        c,
        &format!("document.documentElement.lang === '{lang}' && document.documentElement.dir === '{dir}'"),
        WAIT,
        "the language switch",
    )
    .await;
}

/// Looks at the page as it is now in both languages and both sizes: no horizontal
/// overflow, no serious accessibility violation, a screenshot each
/// (`target/console-screenshots/<name>-<lang>-<size>.png`, copied to `docs/console/` with
/// `DISPATCH_UPDATE_DOCS_SCREENSHOT=1`). `ready` is a JS expression true once the page
/// shows what it should (checked after each switch). Ends in English at desktop size.
pub async fn look_at(c: &Client, name: &str, ready: &str) {
    for lang in LANGS {
        set_lang(c, lang).await;
        for (size_name, size) in SIZES {
            viewport(c, size).await;
            until(c, ready, WAIT, &format!("{name} ({lang}, {size_name}) ready")).await;
            let what = format!("{name} ({lang}, {size_name})");
            assert_no_horizontal_overflow(c, &what).await;
            assert_accessible(c, &what).await;
            let shot = screenshot(c, &format!("{name}-{lang}-{size_name}")).await;
            if std::env::var("DISPATCH_UPDATE_DOCS_SCREENSHOT").as_deref() == Ok("1") {
                let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
                std::fs::create_dir_all(&docs).unwrap();
                std::fs::copy(&shot, docs.join(shot.file_name().unwrap())).unwrap();
            }
        }
    }
    set_lang(c, "en").await;
    viewport(c, DESKTOP).await;
}

/// Cairo, a zone of one category: what a suite books or prices in.
pub fn cairo_zone() -> Value {
    json!({"name": "Cairo", "currency": "EGP", "active": true,
     "polygon": {"type": "Polygon", "coordinates": [[[31.0,29.9],[31.5,29.9],[31.5,30.3],[31.0,30.3],[31.0,29.9]]]},
     "pricing": {"economy": {"base_minor": 1500, "per_km_minor": 450, "per_min_minor": 75,
                             "minimum_minor": 2500, "booking_fee_minor": 300,
                             "cancel_fee_minor": 1000, "wait_per_min_minor": 50, "free_wait_s": 180,
                             "commission_bps": 1500}},
     "surge": {"enabled": true, "max_bps": 30000}, "extra_fee_minor": 0})
}

/// Signs in with the admin token (the console's "API token" form) and waits for the app.
pub async fn sign_in_with_token(s: &Server, c: &Client) {
    c.goto(&s.url("/console")).await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Id("token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    click(c, "#signin button[type=submit]").await;
    until(c, "!document.getElementById('app').hidden", WAIT, "signed in").await;
}

/// Runs `f` with `dispatchd serve --dev <args>` and a fresh browser, one browser test at a
/// time; closes the browser whatever happens, then reports the failure if there was one.
pub async fn with_browser<F>(args: &[&str], f: F)
where
    F: for<'a> AsyncFnOnce(&'a Server, &'a Client),
{
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(args);
    let c = browser(port).await;
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(f(&s, &c))).await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
