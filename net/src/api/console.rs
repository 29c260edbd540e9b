//! The operators' console: its static files (compiled into the binary, one table of them,
//! [`ASSETS`]) and the headers every answer under `/console` carries.
//!
//! Guarantees: every answer on a console path, errors included, carries API.md's
//! `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`; the files carry no data (the page signs in with a staff
//! token); only the files in [`ASSETS`] are served (a path outside it is `404 not_found`,
//! whatever it names on disk: nothing is read from disk at run time). `config.json` is
//! not a file: it is built from `[console]` (the map's tile server, if any), and the
//! policy's `img-src` names that tile server's origin and no other ([`csp`]).

use hyper::header::HeaderValue;

use crate::http::{self, ApiError, Resp};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const PNG: &str = "image/png";

/// One file of the console: its path under `/console/`, its type and its bytes.
pub struct Asset {
    /// `app.js`, `lib/api.js`, `pages/users.js`: what follows `/console/`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The file, compiled in.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset { path: $path, content_type: $ty, body: include_bytes!(concat!("../../console/", $path)) }
    };
}

/// Every file the console serves. The page is `index.html` (served at `/console`); the
/// script is an ES module (`app.js`) importing the others; pages live in `pages/`, shared
/// code in `lib/`, the shell's own views in `views/`, third-party code with its licence
/// in `vendor/`.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("app.js", JS),
    asset!("lib/api.js", JS),
    asset!("lib/dom.js", JS),
    asset!("lib/format.js", JS),
    asset!("lib/i18n.js", JS),
    asset!("lib/pages.js", JS),
    asset!("pages/index.js", JS),
    asset!("pages/cluster.js", JS),
    // The back-office pages (issue 23) and what they share.
    asset!("pages/office-kit.js", JS),
    asset!("pages/office.css", CSS),
    asset!("pages/users.js", JS),
    asset!("pages/applications.js", JS),
    asset!("pages/payouts.js", JS),
    asset!("pages/coupons.js", JS),
    asset!("pages/settings.js", JS),
    asset!("pages/audit.js", JS),
    asset!("pages/outbox.js", JS),
    asset!("pages/reports.js", JS),
    asset!("pages/zones.js", JS),
    asset!("pages/zones.css", CSS),
    // The shell's views that live in modules of their own.
    asset!("views/health.js", JS),
    asset!("views/search.js", JS),
    // Third-party code, each with its licence (vendor/README.md says where it came from).
    asset!("vendor/uplot/uPlot.esm.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", TEXT),
    // ----- issue 23: D -----
    asset!("vendor/leaflet/leaflet-src.esm.js", JS),
    asset!("vendor/leaflet/leaflet.css", CSS),
    asset!("vendor/leaflet/LICENSE", TEXT),
    asset!("vendor/leaflet/images/layers.png", PNG),
    asset!("vendor/leaflet/images/layers-2x.png", PNG),
    asset!("vendor/leaflet/images/marker-icon.png", PNG),
    asset!("vendor/leaflet/images/marker-icon-2x.png", PNG),
    asset!("vendor/leaflet/images/marker-shadow.png", PNG),
    asset!("lib/map.js", JS),
    asset!("lib/trailmap.js", JS),
];

/// The console's settings for the page (`GET /console/config.json`): the tile server, or
/// `null` (the offline map).
fn config_json(console: &crate::config::ConsoleSection) -> Resp {
    let mut r = http::json_response(hyper::StatusCode::OK, &config_value(console));
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// What `config.json` says.
fn config_value(console: &crate::config::ConsoleSection) -> serde_json::Value {
    serde_json::json!({
        "tile_url": console.tile_url,
        "tile_attribution": console.tile_attribution,
    })
}

/// API.md's Content-Security-Policy, with `tile_origin` (the `[console] tile_url`'s) added
/// to `img-src` when there is one.
pub fn csp(tile_origin: Option<&str>) -> String {
    match tile_origin {
        Some(origin) => API_CSP.replacen(API_IMG_SRC, &format!("{API_IMG_SRC} {origin}"), 1),
        None => API_CSP.to_owned(),
    }
}

/// The console file at `path` (`""` is the page), or `404 not_found`.
pub(super) fn response(path: &str, console: &crate::config::ConsoleSection) -> Result<Resp, ApiError> {
    let path = if path.is_empty() { "index.html" } else { path };
    if path == "config.json" {
        return Ok(config_json(console));
    }
    let asset =
        ASSETS.iter().find(|a| a.path == path).ok_or_else(|| ApiError::new("not_found", "no such console file"))?;
    let mut r = http::bytes_response(asset.content_type, bytes::Bytes::from_static(asset.body));
    // Revalidated on every load: a new binary's console is never mixed with an old one's.
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// Whether `path` is the console's (its headers go on every answer there, errors too).
pub(super) fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// API.md's policy exactly.
const API_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Its `img-src` directive, which a tile server's origin extends.
const API_IMG_SRC: &str = "img-src 'self' data:";

/// The console's policy as a header, for `[console]`'s tile server (made once, on the first console answer).
pub fn console_csp(console: &crate::config::ConsoleSection) -> HeaderValue {
    csp_header(console.tile_origin().as_deref())
}

/// [`csp`] as a header value. The origin was checked at start
/// (`ConsoleSection::validate`): only a bug could make it unfit for a header, and then the
/// tiles are refused rather than the page.
fn csp_header(tile_origin: Option<&str>) -> HeaderValue {
    HeaderValue::from_str(&csp(tile_origin)).unwrap_or_else(|_| HeaderValue::from_static(API_CSP))
}

/// The headers of API.md on a console response, with the policy `csp` ([`console_csp`]).
pub(super) fn console_headers(h: &mut hyper::HeaderMap, csp: &HeaderValue) {
    h.insert("content-security-policy", csp.clone());
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_and_nothing_else() {
        for a in ASSETS {
            let r = response(a.path, &Default::default()).unwrap_or_else(|e| panic!("{}: {e:?}", a.path));
            assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], a.content_type, "{}", a.path);
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        assert!(response("", &Default::default()).is_ok(), "the page");
        for missing in ["../Cargo.toml", "lib/../app.js", "nope.js", "lib", "index.html/x"] {
            assert!(response(missing, &Default::default()).is_err(), "{missing}");
        }
    }

    #[test]
    fn paths_are_unique_and_typed_by_extension() {
        let mut seen = std::collections::HashSet::new();
        for a in ASSETS {
            assert!(seen.insert(a.path), "{} twice", a.path);
            let want = match a.path.rsplit('.').next() {
                Some("html") => HTML,
                Some("js") | Some("mjs") => JS,
                Some("css") => CSS,
                Some("png") => PNG,
                _ => a.content_type,
            };
            assert_eq!(a.content_type, want, "{}", a.path);
        }
    }

    #[test]
    fn the_policy_is_api_md_s_and_adds_only_the_tile_origin() {
        assert_eq!(csp(None), API_CSP);
        let mut h = hyper::HeaderMap::new();
        console_headers(&mut h, &csp_header(None));
        assert_eq!(h["content-security-policy"], API_CSP);
        let with = csp(Some("https://tile.example.com"));
        assert_eq!(with, API_CSP.replace("img-src 'self' data:", "img-src 'self' data: https://tile.example.com"));
        // Only img-src changes: scripts, styles and connections stay the page's own.
        let changed: Vec<_> = with.split("; ").filter(|d| !API_CSP.split("; ").any(|a| a == *d)).collect();
        assert_eq!(changed, ["img-src 'self' data: https://tile.example.com"]);
        console_headers(&mut h, &csp_header(Some("https://tile.example.com")));
        assert_eq!(h["content-security-policy"], with.as_str());
    }

    #[test]
    fn config_json_says_the_tile_server_or_null() {
        let off = crate::config::ConsoleSection::default();
        let r = response("config.json", &off).unwrap();
        assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], "application/json");
        assert_eq!(config_value(&off), serde_json::json!({"tile_url": null, "tile_attribution": ""}));
        let on = crate::config::ConsoleSection {
            tile_url: Some("https://tile.example.com/{z}/{x}/{y}.png".into()),
            tile_attribution: "© Example".into(),
        };
        assert_eq!(
            config_value(&on),
            serde_json::json!({"tile_url": "https://tile.example.com/{z}/{x}/{y}.png", "tile_attribution": "© Example"})
        );
    }
}
