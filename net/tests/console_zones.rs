//! The console's zones page (issue 23, helper G) in a real headless Chromium against the
//! real `dispatchd serve --dev`: a zone drawn by clicking vertices on the Leaflet map and
//! created, a vertex dragged and saved, the outline retyped in the "lat,lng" text area and
//! saved — each checked through the API afterwards; bad outlines (2 vertices, an edge
//! crossing another) refused in the page with nothing sent; `look_at` in both languages
//! and both sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;
use browser::*;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::time::Duration;

/// Types `text` into the element `css` selects (cleared first).
async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Sets a text area's value and fires `input`, as typing it would (send_keys of many lines is slow).
async fn set_text(c: &Client, css: &str, text: &str) {
    let script = format!(
        "const e = document.querySelector({}); e.focus(); e.value = {}; e.dispatchEvent(new Event('input')); return true;",
        json!(css),
        json!(text)
    );
    js(c, &script).await;
}

async fn confirm(c: &Client) {
    until(c, "document.querySelector('dialog.office-dialog[open]')", WAIT, "the confirmation").await;
    click(c, "dialog.office-dialog .dlg-ok").await;
    until(c, "!document.querySelector('dialog.office-dialog')", WAIT, "the dialog closed").await;
}

/// The zones the API lists.
async fn zones(s: &Server) -> Vec<Value> {
    s.get("/v1/zones").await["items"].as_array().unwrap().clone()
}

fn zone_named<'a>(zs: &'a [Value], name: &str) -> &'a Value {
    zs.iter().find(|z| z["name"] == name).unwrap_or_else(|| panic!("no zone {name} in {zs:?}"))
}

/// The page's vertices as the closed GeoJSON ring ([lng, lat]) it sends.
async fn page_ring(c: &Client) -> Vec<Value> {
    let vs = js(c, "return window.__zoneMap.vertices();").await;
    let mut ring: Vec<Value> = vs.as_array().unwrap().iter().map(|v| json!([v[1], v[0]])).collect();
    ring.push(ring[0].clone());
    ring
}

fn ring_of(z: &Value) -> Vec<Value> {
    z["polygon"]["coordinates"][0].as_array().unwrap().clone()
}

async fn vertices(c: &Client) -> usize {
    js(c, "return window.__zoneMap.vertices().length;").await.as_u64().unwrap() as usize
}

/// Nothing sent: no dialog opened, and the page says why in the outline's alert.
async fn refused(c: &Client, s: &Server, before: &[Value], says: &str) {
    click(c, ".zone-save").await;
    until(c, &format!("document.querySelector('.zone-poly-error').textContent.includes({})", json!(says)), WAIT, says)
        .await;
    assert_eq!(js(c, "return !!document.querySelector('dialog.office-dialog');").await, json!(false), "{says}");
    assert_eq!(zones(s).await, before, "nothing was sent: {says}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_are_drawn_edited_and_saved_from_the_console() {
    let _one = BROWSER.lock().await;
    let Some((_driver, port)) = chromedriver() else { return };
    let s = Server::start(&[]);
    s.post("/v1/admin/zones", ADMIN, cairo_zone(), 201).await;

    let c = browser(port).await;
    sign_in_with_token(&s, &c).await;
    click(&c, "nav button[data-view='zones']").await;
    until(&c, "!document.getElementById('view-zones').hidden", WAIT, "the zones page").await;
    until(&c, "document.querySelector('.zones-list tbody')?.textContent.includes('Cairo')", WAIT, "the list").await;

    // ---- A new zone, drawn by clicking the map (Cairo is drawn faintly: clicks go through).
    click(&c, ".zones-new").await;
    until(&c, "window.__zoneMap && document.querySelector('.zones-map')?.clientWidth > 0", WAIT, "the editor").await;
    type_into(&c, ".zone-name", "Giza").await;
    js(&c, "document.querySelector('.zones-map').scrollIntoView({block: 'center'}); return true;").await;
    click_at(&c, ".zones-map", (-120.0, -90.0)).await;
    click_at(&c, ".zones-map", (120.0, -90.0)).await;
    until(&c, "window.__zoneMap.vertices().length === 2", WAIT, "two vertices").await;
    // Two vertices are no zone: refused in the page, nothing sent.
    let before = zones(&s).await;
    refused(&c, &s, &before, "At least 3 vertices").await;
    js(&c, "document.querySelector('.zones-map').scrollIntoView({block: 'center'}); return true;").await;
    click_at(&c, ".zones-map", (0.0, 110.0)).await;
    until(&c, "window.__zoneMap.vertices().length === 3", WAIT, "three vertices").await;
    // The text area followed the map.
    let lines = js(&c, "return document.querySelector('.zone-coords').value.split('\\n').length;").await;
    assert_eq!(lines, json!(3));
    // Prices typed in major units are sent in minor units.
    type_into(&c, ".zone-category[data-category=economy] .price-base_minor", "12.50").await;
    type_into(&c, ".zone-category[data-category=economy] .price-minimum_minor", "25").await;
    type_into(&c, ".zone-category[data-category=economy] .price-per_km_minor", "4.5").await;
    // A bad amount is refused beside its field.
    type_into(&c, ".zone-category[data-category=economy] .price-per_min_minor", "0.755").await;
    click(&c, ".zone-save").await;
    until(
        &c,
        "document.querySelector('.zone-category[data-category=economy] .price-per_min_minor').getAttribute('aria-invalid') === 'true'",
        WAIT,
        "three decimals refused for EGP",
    )
    .await;
    assert_eq!(js(&c, "return !!document.querySelector('dialog.office-dialog');").await, json!(false));
    type_into(&c, ".zone-category[data-category=economy] .price-per_min_minor", "0.75").await;
    let drawn = page_ring(&c).await;
    click(&c, ".zone-save").await;
    confirm(&c).await;
    until(&c, "document.querySelector('.zones-note').textContent.includes('Giza')", WAIT, "created").await;
    let zs = zones(&s).await;
    assert_eq!(zs.len(), 2);
    let giza = zone_named(&zs, "Giza").clone();
    assert_eq!(ring_of(&giza), drawn, "the API has the vertices clicked");
    let p = &giza["pricing"]["economy"];
    assert_eq!(
        (&p["base_minor"], &p["minimum_minor"], &p["per_km_minor"], &p["per_min_minor"]),
        (&json!(1250), &json!(2500), &json!(450), &json!(75))
    );
    let id = giza["id"].as_str().unwrap().to_owned();
    until(&c, &format!("document.querySelector('.zone-id')?.textContent === {}", json!(id)), WAIT, "editing it").await;

    // ---- Drag the first vertex 60 px right and 40 px down, save.
    js(&c, "document.querySelector('.zones-map').scrollIntoView({block: 'center'}); return true;").await;
    let old = js(&c, "return window.__zoneMap.vertices()[0];").await;
    {
        use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
        let e = c.find(Locator::Css(".zones-map .zone-vertex[data-index='0']")).await.unwrap();
        let step = Some(Duration::from_millis(50));
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement { element: e, duration: None, x: 0.0, y: 0.0 })
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(PointerAction::MoveBy { duration: step, x: 20.0, y: 10.0 })
            .then(PointerAction::MoveBy { duration: step, x: 20.0, y: 15.0 })
            .then(PointerAction::MoveBy { duration: step, x: 20.0, y: 15.0 })
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
        c.perform_actions(mouse).await.unwrap();
        c.release_actions().await.unwrap();
    }
    until(
        &c,
        &format!("JSON.stringify(window.__zoneMap.vertices()[0]) !== {}", json!(old.to_string())),
        WAIT,
        "dragged",
    )
    .await;
    let moved = js(&c, "return window.__zoneMap.vertices()[0];").await;
    assert!(moved[0].as_f64().unwrap() < old[0].as_f64().unwrap(), "down is south: {old} → {moved}");
    assert!(moved[1].as_f64().unwrap() > old[1].as_f64().unwrap(), "right is east: {old} → {moved}");
    assert_eq!(vertices(&c).await, 3, "a drag moves, it adds nothing");
    let dragged = page_ring(&c).await;
    click(&c, ".zone-save").await;
    confirm(&c).await;
    until(&c, "document.querySelector('.zones-note').textContent.includes('saved')", WAIT, "saved").await;
    let giza = zone_named(&zones(&s).await, "Giza").clone();
    assert_eq!(ring_of(&giza), dragged, "the API has the dragged vertex");
    assert_eq!(giza["pricing"]["economy"]["base_minor"], 1250, "the prices were kept");

    // ---- The keyboard's way: the outline retyped in the text area (a square), saved.
    set_text(&c, ".zone-coords", "30.00,31.60\n30.00,31.80\n30.20,31.80\n30.20,31.60").await;
    until(&c, "window.__zoneMap.vertices().length === 4", WAIT, "four vertices from the text").await;
    until(&c, "document.querySelectorAll('.zones-map .zone-vertex').length === 4", WAIT, "four markers").await;
    click(&c, ".zone-save").await;
    confirm(&c).await;
    until(&c, "document.querySelector('.zones-note').textContent.includes('saved')", WAIT, "saved").await;
    let giza = zone_named(&zones(&s).await, "Giza").clone();
    assert_eq!(
        ring_of(&giza),
        vec![json!([31.6, 30.0]), json!([31.8, 30.0]), json!([31.8, 30.2]), json!([31.6, 30.2]), json!([31.6, 30.0])]
    );

    // ---- A second category, priced and saved; a malformed name is refused beside its field.
    type_into(&c, ".zone-newcat", "Comfort").await;
    click(&c, ".zone-cat-add").await;
    until(
        &c,
        "document.querySelector('.zone-newcat').getAttribute('aria-invalid') === 'true'",
        WAIT,
        "Comfort refused",
    )
    .await;
    type_into(&c, ".zone-newcat", "comfort").await;
    click(&c, ".zone-cat-add").await;
    until(&c, "document.querySelector('.zone-category[data-category=comfort]')", WAIT, "comfort added").await;
    type_into(&c, ".zone-category[data-category=comfort] .price-base_minor", "20").await;
    type_into(&c, ".zone-category[data-category=comfort] .price-commission_bps", "2000").await;
    click(&c, ".zone-save").await;
    confirm(&c).await;
    until(&c, "document.querySelector('.zones-note').textContent.includes('saved')", WAIT, "saved").await;
    let giza = zone_named(&zones(&s).await, "Giza").clone();
    assert_eq!(
        (&giza["pricing"]["comfort"]["base_minor"], &giza["pricing"]["comfort"]["commission_bps"]),
        (&json!(2000), &json!(2000))
    );
    assert_eq!(giza["pricing"]["economy"]["base_minor"], 1250, "economy kept");

    // ---- Remove the last vertex with the button, then with Delete on a focused marker.
    click(&c, ".zone-undo").await;
    until(&c, "window.__zoneMap.vertices().length === 3", WAIT, "the last removed").await;
    js(&c, "document.querySelector(\".zones-map .zone-vertex[data-index='1']\").focus(); return true;").await;
    c.find(Locator::Css(".zones-map .zone-vertex[data-index='1']")).await.unwrap().send_keys("\u{E017}").await.unwrap();
    until(&c, "window.__zoneMap.vertices().length === 2", WAIT, "the focused one removed").await;
    assert_eq!(js(&c, "return document.querySelector('.zone-coords').value;").await, json!("30,31.6\n30.2,31.8"));
    let before = zones(&s).await;
    refused(&c, &s, &before, "At least 3 vertices").await;

    // ---- A self-intersecting outline (a bow tie) is refused in the page, nothing sent.
    set_text(&c, ".zone-coords", "30.0,31.0\n30.0,31.2\n30.2,31.0\n30.2,31.2").await;
    until(&c, "window.__zoneMap.vertices().length === 4", WAIT, "the bow tie").await;
    refused(&c, &s, &before, "crosses itself").await;
    // A line that is not "lat,lng" is named.
    set_text(&c, ".zone-coords", "30.0,31.0\nnorth of here").await;
    until(&c, "document.querySelector('.zone-poly-error').textContent.includes('Line 2')", WAIT, "line 2").await;

    // ---- The API's refusal is shown beside the field it names: by `param`, or by the
    // pricing field its message names (the engine's zone checks give no `param`). The
    // page checks what the engine checks, so the answers are stood in for once each.
    set_text(&c, ".zone-coords", "30.00,31.60\n30.00,31.80\n30.20,31.80").await;
    for (answer, field) in [
        (
            json!({"error": {"type": "invalid_request_error", "code": "invalid_request",
                "message": "surge.max_bps must be from 10000 to 100000", "param": "surge.max_bps"}}),
            "[data-param='surge.max_bps']",
        ),
        (
            json!({"error": {"type": "invalid_request_error", "code": "invalid_request",
                "message": "pricing.economy: base_minor is negative"}}),
            ".zone-category[data-category=economy] .price-base_minor",
        ),
    ] {
        let script = format!(
            "const real = window.fetch; window.fetch = (url, init) => {{ window.fetch = real; \
             return Promise.resolve(new Response(JSON.stringify({answer}), {{status: 400, headers: {{'Content-Type': 'application/json'}}}})); }}; return true;"
        );
        js(&c, &script).await;
        click(&c, ".zone-save").await;
        confirm(&c).await;
        until(
            &c,
            &format!(
                "(() => {{ const f = document.querySelector(\"{field}\"); return f.getAttribute('aria-invalid') === 'true' \
                 && document.getElementById(f.id + '-error').textContent.length > 0; }})()"
            ),
            WAIT,
            field,
        )
        .await;
    }
    assert_eq!(zones(&s).await, before, "nothing was saved");

    // ---- Look: reopen Giza from the list (the outline as saved), both languages and sizes.
    js(&c, "[...document.querySelectorAll('.zones-list button.link')].find((b) => b.textContent === 'Giza').click(); return true;").await;
    until(&c, "window.__zoneMap && window.__zoneMap.vertices().length === 4", WAIT, "Giza reopened").await;
    js(&c, "document.querySelector('.zones-detail').scrollIntoView({block: 'start'}); return true;").await;
    look_at(
        &c,
        "zones",
        "document.querySelectorAll('.zones-map .zone-vertex').length === 4 && document.querySelectorAll('.zones-list tbody tr').length === 2",
    )
    .await;
    // ---- The page's outline checks against a model, over rings drawn at random on a
    // small integer grid (many shared points, touching and collinear edges).
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut rings = Vec::new();
    for _ in 0..600 {
        let n = 3 + next(4) as usize;
        rings.push((0..n).map(|_| (next(5) as i64, next(5) as i64)).collect::<Vec<_>>());
    }
    let asked: Vec<Value> =
        rings.iter().map(|r| json!(r.iter().map(|&(a, b)| json!([a, b])).collect::<Vec<_>>())).collect();
    let answers = js(&c, &format!("return {}.map((r) => window.__zoneMap.problem(r));", json!(asked))).await;
    let mut simple_seen = 0;
    for (ring, answer) in rings.iter().zip(answers.as_array().unwrap()) {
        let ok = model_simple(ring);
        simple_seen += usize::from(ok);
        assert_eq!(answer.is_null(), ok, "{ring:?}: the page says {answer}");
    }
    assert!(simple_seen > 50 && simple_seen < 550, "the rings exercise both answers: {simple_seen} simple");

    assert_no_injection(&c).await;
    let v = js(&c, "return window.__cspViolations ?? [];").await;
    assert_eq!(v, json!([]), "CSP violations");
    c.close().await.unwrap();
}

/// The model of a zone outline the page accepts: at least 3 vertices, no zero-length edge,
/// adjacent edges meeting only at their shared vertex, other edges not touching at all, a
/// non-zero area. Exact integer arithmetic.
fn model_simple(vs: &[(i64, i64)]) -> bool {
    let n = vs.len();
    if n < 3 {
        return false;
    }
    let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let within = |a: (i64, i64), b: (i64, i64), p: (i64, i64)| {
        a.0.min(b.0) <= p.0 && p.0 <= a.0.max(b.0) && a.1.min(b.1) <= p.1 && p.1 <= a.1.max(b.1)
    };
    let touch = |p1, p2, p3, p4| {
        let (d1, d2, d3, d4) = (cross(p3, p4, p1), cross(p3, p4, p2), cross(p1, p2, p3), cross(p1, p2, p4));
        ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0))
            || (d1 == 0 && within(p3, p4, p1))
            || (d2 == 0 && within(p3, p4, p2))
            || (d3 == 0 && within(p1, p2, p3))
            || (d4 == 0 && within(p1, p2, p4))
    };
    let edge = |i: usize| (vs[i], vs[(i + 1) % n]);
    if (0..n).any(|i| edge(i).0 == edge(i).1) {
        return false;
    }
    for i in 0..n {
        // Adjacent edges (p→q, q→r) overlap when r lies back along q→p.
        let (p, q, r) = (vs[i], vs[(i + 1) % n], vs[(i + 2) % n]);
        if cross(q, p, r) == 0 && (p.0 - q.0) * (r.0 - q.0) + (p.1 - q.1) * (r.1 - q.1) > 0 {
            return false;
        }
        for k in i + 1..n {
            let adjacent = k == i + 1 || (i == 0 && k == n - 1);
            if !adjacent && touch(edge(i).0, edge(i).1, edge(k).0, edge(k).1) {
                return false;
            }
        }
    }
    let area: i64 = (0..n).map(|i| vs[i].1 * vs[(i + 1) % n].0 - vs[(i + 1) % n].1 * vs[i].0).sum();
    area != 0
}
