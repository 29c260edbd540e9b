//! The console's map in a real browser (issue 23, helper D): Leaflet's map of the zones
//! with a graticule and a scale bar; drivers in count bubbles when zoomed out and alone
//! with a heading arrow when zoomed in; following a driver; the trip page's map with the
//! route and the driver's trail; and a `[console] tile_url` reaching the page and the
//! Content-Security-Policy (that origin added to `img-src`, nothing else).
//!
//! Skipped (passes) without chromedriver, as the other browser suites.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;
use browser::*;

use std::time::Duration;

use fantoccini::{Client, Locator};
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
    let mut args = vec!["--demo", "--demo-drivers", drivers];
    args.extend_from_slice(extra);
    with_browser(&args, f).await;
}

/// Waits for `n` more snapshots drawn.
async fn snapshots(c: &Client, n: u64) {
    let seen = js(c, "return window.__renderTimes.length;").await.as_u64().unwrap();
    until(c, &format!("window.__renderTimes.length >= {}", seen + n), WAIT, "snapshots drawn").await;
}

/// The map's dataset as numbers: `drivers`, `dots`, `clusters`, `arrows`, `trips`.
async fn drawn(c: &Client, key: &str) -> u64 {
    js(c, &format!("return Number(document.getElementById('map').dataset.{key} || 0);")).await.as_u64().unwrap()
}

/// The middle of the first zone's outer ring's bounds.
async fn zone_middle(s: &Server) -> (f64, f64) {
    let zones = s.get("/v1/zones").await;
    let ring = zones["items"][0]["polygon"]["coordinates"][0].as_array().unwrap().clone();
    let (mut lo, mut hi) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
    for p in ring {
        let (lng, lat) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        lo = (lo.0.min(lat), lo.1.min(lng));
        hi = (hi.0.max(lat), hi.1.max(lng));
    }
    ((lo.0 + hi.0) / 2.0, (lo.1 + hi.1) / 2.0)
}

/// A driver of our own, online and standing at (lat, lng) (the demo's drivers move).
async fn standing_driver(s: &Server, n: u32, lat: f64, lng: f64) -> (String, String) {
    let made = s
        .post(
            "/v1/admin/users",
            ADMIN,
            json!({"role": "driver", "name": format!("Map {n}"), "phone": format!("+20107000000{n}"),
                "vehicle": {"category": "economy", "plate": format!("MAP {n}")}}),
            201,
        )
        .await;
    let token = made["token"].as_str().unwrap().to_owned();
    s.post("/v1/driver/status", &token, json!({"status": "online", "location": {"lat": lat, "lng": lng}}), 200).await;
    (token, made["user"]["id"].as_str().unwrap().to_owned())
}

async fn move_driver(s: &Server, token: &str, lat: f64, lng: f64) {
    let (status, _, v) = s
        .call(Method::POST, "/v1/driver/location", Some(token), Some(json!({"lat": lat, "lng": lng, "heading_deg": 0})))
        .await;
    assert_eq!(status, 204, "{v}");
}

/// The offline map: zones, a graticule whose step follows the zoom, a metric scale bar,
/// and nothing from another origin. Zoomed out, drivers near each other are one bubble
/// with their count (every driver still counted); zoomed in, each is drawn alone, with
/// an arrow once it has moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_cluster_when_zoomed_out_and_stand_alone_when_zoomed_in() {
    with_city("200", &[], async |s, c| {
        sign_in(s, c).await;
        let (lat, lng) = zone_middle(s).await;
        assert!(drawn(c, "zones").await >= 1, "the demo zone drawn");
        let scale = js(c, "return document.querySelector('#map .leaflet-control-scale-line')?.textContent;").await;
        assert!(scale.as_str().is_some_and(|t| t.ends_with(" m") || t.ends_with(" km")), "scale bar: {scale}");

        // Zoomed out: the city in a few bubbles, every driver of the snapshot counted.
        js(c, &format!("return window.__map.view({lat}, {lng}, 10);")).await;
        snapshots(c, 2).await;
        let (drivers, dots, clusters) = (drawn(c, "drivers").await, drawn(c, "dots").await, drawn(c, "clusters").await);
        println!("console_map: zoom 10: {drivers} drivers as {dots} dots and {clusters} bubbles");
        assert!(clusters >= 1 && dots + clusters < drivers, "zoom 10: {drivers} drivers, {dots} dots, {clusters} bubbles");
        let counted = js(c, "return document.getElementById('ops-summary').textContent;").await;
        assert!(counted.as_str().unwrap().starts_with(&format!("{drivers} drivers")), "{counted} vs {drivers}");
        assert_eq!(js(c, "return document.getElementById('map').dataset.graticule;").await, json!("0.1"));

        // A click on a bubble zooms into it.
        let z0 = js(c, "return window.__map.zoom();").await.as_f64().unwrap();
        let bubble = js(c, "return window.__map.bubbles()[0];").await;
        let at = map_offset(c, bubble[0].as_f64().unwrap(), bubble[1].as_f64().unwrap()).await;
        click_at(c, "#map", at).await;
        until(c, &format!("window.__map.zoom() > {z0}"), WAIT, "zoomed into the bubble").await;

        // Zoomed in: every driver alone; those that moved since the last snapshot with an arrow.
        js(c, &format!("return window.__map.view({lat}, {lng}, 16);")).await;
        snapshots(c, 3).await;
        let (drivers, dots, clusters) = (drawn(c, "drivers").await, drawn(c, "dots").await, drawn(c, "clusters").await);
        assert_eq!((clusters, dots), (0, drivers), "zoom 16: every driver alone");
        assert_eq!(js(c, "return document.getElementById('map').dataset.graticule;").await, json!("0.01"));
        // Around one of the demo's drivers: it drives, so it gets an arrow.
        let one = s.get("/v1/admin/drivers?limit=200").await;
        let d = one["items"].as_array().unwrap().iter().find(|d| d["location"].is_object()).unwrap().clone();
        let (dlat, dlng) = (d["location"]["lat"].as_f64().unwrap(), d["location"]["lng"].as_f64().unwrap());
        js(c, &format!("return window.__map.view({dlat}, {dlng}, 15);")).await;
        until(c, "Number(document.getElementById('map').dataset.arrows) >= 1", WAIT, "a moving driver's arrow").await;

        // Nothing came from another origin (no tile_url).
        let foreign = js(
            c,
            "return performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(location.origin));",
        )
        .await;
        assert_eq!(foreign, json!([]), "loaded from another origin");
        assert_eq!(js(c, "return window.__cspViolations;").await, json!([]));
        click(c, "#map-fit").await;
        snapshots(c, 2).await;
        look_at(c, "map", &format!("{DRAWN} > 0")).await;
    })
    .await;
}

/// Follow a driver from its panel: the map keeps it centred while it drives (a new box
/// subscribed each time); Esc stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_driver_keeps_it_centred_until_esc() {
    with_city("20", &[], async |s, c| {
        sign_in(s, c).await;
        let (lat, lng) = zone_middle(s).await;
        let (token, id) = standing_driver(s, 1, lat, lng).await;
        until(c, &format!("window.__map.driver('{id}')"), WAIT, "our driver in a snapshot").await;
        js(c, &format!("return window.__map.view({lat}, {lng}, 17);")).await;
        snapshots(c, 1).await;
        let at = map_offset(c, lat, lng).await;
        click_at(c, "#map", at).await;
        until(c, &format!("document.getElementById('map-info').dataset.driver === '{id}'"), WAIT, "its panel").await;
        click(c, "#map-info button.follow").await;
        until(c, &format!("document.getElementById('map').dataset.follow === '{id}'"), WAIT, "following").await;
        assert!(c.find(Locator::Id("map-unfollow")).await.unwrap().is_displayed().await.unwrap());
        let bbox0 = js(c, "return document.getElementById('map').dataset.bbox;").await;
        // It drives north, 11 m a second (about 10 px at zoom 17).
        let mut at = (lat, lng);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            at.0 += 0.0001;
            move_driver(s, &token, at.0, at.1).await;
            until(c, &format!("(window.__map.driver('{id}') || [0])[0] > {}", at.0 - 1e-7), WAIT, "the move seen")
                .await;
            snapshots(c, 1).await;
            let off = map_offset(c, at.0, at.1).await;
            assert!(off.0.abs() <= 2.0 && off.1.abs() <= 2.0, "followed driver {off:?} px from the centre");
        }
        assert_ne!(js(c, "return document.getElementById('map').dataset.bbox;").await, bbox0, "a new box");
        assert!(drawn(c, "arrows").await >= 1, "it has a heading now");
        screenshot(c, "map-follow").await;
        // Esc (the map focused) stops: the next move leaves it off-centre.
        let map = c.find(Locator::Id("map")).await.unwrap();
        map.send_keys(&fantoccini::key::Key::Escape.to_string()).await.unwrap();
        until(c, "!document.getElementById('map').dataset.follow", WAIT, "stopped").await;
        assert!(!c.find(Locator::Id("map-unfollow")).await.unwrap().is_displayed().await.unwrap());
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        at.0 += 0.0001;
        move_driver(s, &token, at.0, at.1).await;
        until(c, &format!("(window.__map.driver('{id}') || [0])[0] > {}", at.0 - 1e-7), WAIT, "the last move").await;
        snapshots(c, 1).await;
        let off = map_offset(c, at.0, at.1).await;
        assert!(off.1 < -5.0, "no longer followed, yet at {off:?} from the centre");
    })
    .await;
}

/// The trip page's map: pickup, a stop and the drop-off joined by the straight route
/// (the trip has no router geometry), no trail before a driver; the polyline decoder
/// against Google's own example.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trip_page_draws_its_stops_route_and_trail() {
    with_city("5", &[], async |s, c| {
        sign_in(s, c).await;
        let (lat, lng) = zone_middle(s).await;
        let made = s
            .post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": "Stops", "phone": "+201060000001"}), 201)
            .await;
        let rider = made["token"].as_str().unwrap().to_owned();
        let trip = s
            .post(
                "/v1/trips",
                &rider,
                json!({"pickup": {"lat": lat, "lng": lng}, "dropoff": {"lat": lat + 0.01, "lng": lng + 0.01},
                    "stops": [{"lat": lat + 0.005, "lng": lng - 0.003, "address": "the bakery"}],
                    "category": "economy", "payment_method": "cash"}),
                201,
            )
            .await;
        let id = trip["id"].as_str().unwrap().to_owned();
        click(c, "nav button[data-view=trips]").await;
        let row = format!("#trips tr[data-id=\"{id}\"]");
        until(c, &format!("document.querySelector('{row}')"), WAIT, "the trip in the table").await;
        click(c, &row).await;
        until(c, "document.getElementById('trip-trail').dataset.route === 'straight'", WAIT, "the route").await;
        let t = js(c, "const d = document.getElementById('trip-trail').dataset; return [d.stops, d.points];").await;
        assert_eq!(t, json!(["1", "0"]), "one stop, no trail yet");
        let canvas = js(c, "return document.querySelectorAll('#trip-trail canvas').length;").await;
        assert!(canvas.as_u64().unwrap() >= 1, "drawn on Leaflet's canvas renderer");
        screenshot(c, "trip-map-stops").await;
        let decoded = js(
            c,
            "return import('/console/lib/trailmap.js').then(m => m.decodePolyline('_p~iF~ps|U_ulLnnqC_mqNvxq`@'));",
        )
        .await;
        assert_eq!(decoded, json!([[38.5, -120.2], [40.7, -120.95], [43.252, -126.453]]));
        let bad = js(c, "return import('/console/lib/trailmap.js').then(m => m.decodePolyline('_p~iF~ps|U_u'));").await;
        assert_eq!(bad, json!([]), "a cut polyline draws nothing");
    })
    .await;
}

/// `[console] tile_url`: the page gets it (config.json), Leaflet asks that server for
/// tiles, and the policy's img-src adds exactly that origin; a bad one stops start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tile_server_is_named_in_the_policy_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dispatch.toml");
    std::fs::write(
        &config,
        "[console]\ntile_url = \"http://127.0.0.1:9/tiles/{z}/{x}/{y}.png\"\ntile_attribution = \"<b>Test</b> tiles\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_owned();
    with_city("5", &["--config", &cfg], async |s, c| {
        let (status, h, _) = s.call(Method::GET, "/console", None, None).await;
        assert_eq!(status, 200);
        let want = CSP.replace("img-src 'self' data:", "img-src 'self' data: http://127.0.0.1:9");
        assert_eq!(h["content-security-policy"], want.as_str());
        let (_, h, v) = s.call(Method::GET, "/console/config.json", None, None).await;
        assert_eq!(h["content-security-policy"], want.as_str());
        assert_eq!(
            v,
            json!({"tile_url": "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png", "tile_attribution": "<b>Test</b> tiles"})
        );
        // The API's answers carry no console policy.
        let (_, h, _) = s.call(Method::GET, "/healthz", None, None).await;
        assert!(!h.contains_key("content-security-policy"));

        sign_in(s, c).await;
        assert_eq!(js(c, "return document.getElementById('map').dataset.tiles;").await, json!("on"));
        until(c, "document.querySelector('#map img.leaflet-tile')", WAIT, "tiles asked for").await;
        let srcs = js(c, "return [...document.querySelectorAll('#map img.leaflet-tile')].map(i => i.src);").await;
        assert!(
            srcs.as_array().unwrap().iter().all(|u| u.as_str().unwrap().starts_with("http://127.0.0.1:9/tiles/")),
            "{srcs}"
        );
        // The attribution is text, not markup.
        let attribution =
            js(c, "return document.querySelector('#map .leaflet-control-attribution').textContent;").await;
        assert_eq!(attribution, json!("<b>Test</b> tiles"));
        assert_eq!(
            js(c, "return document.querySelectorAll('#map .leaflet-control-attribution b').length;").await,
            json!(0)
        );
        assert_eq!(js(c, "return window.__cspViolations;").await, json!([]), "the tiles' origin is allowed");
    })
    .await;

    // A tile_url without {z}/{x}/{y}, or not http(s), stops start-up with exit 2.
    for bad in ["https://tile.example.com/tiles.png", "file:///tmp/{z}/{x}/{y}.png"] {
        std::fs::write(&config, format!("[console]\ntile_url = \"{bad}\"\n")).unwrap();
        let bin = std::env::var("DISPATCH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dispatchd").to_owned());
        let out = std::process::Command::new(bin)
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--config", &cfg, "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("tile_url"), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
