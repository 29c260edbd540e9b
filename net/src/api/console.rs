//! The operators' console: its static files (compiled into the binary, one table of them,
//! [`ASSETS`]) and the headers every answer under `/console` carries.
//!
//! Guarantees: every answer on a console path, errors included, carries API.md's
//! `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`; the files carry no data (the page signs in with a staff
//! token); only the files in [`ASSETS`] are served (a path outside it is `404 not_found`,
//! whatever it names on disk: nothing is read from disk at run time).

use hyper::header::HeaderValue;

use crate::http::{self, ApiError, Resp};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

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
    // The shell's views that live in modules of their own.
    asset!("views/health.js", JS),
    asset!("views/search.js", JS),
    // Third-party code, each with its licence (vendor/README.md says where it came from).
    asset!("vendor/uplot/uPlot.esm.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", TEXT),
];

/// The console file at `path` (`""` is the page), or `404 not_found`.
pub(super) fn response(path: &str) -> Result<Resp, ApiError> {
    let path = if path.is_empty() { "index.html" } else { path };
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

/// The headers of API.md on a console response.
pub(super) fn console_headers(h: &mut hyper::HeaderMap) {
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_and_nothing_else() {
        for a in ASSETS {
            let r = response(a.path).unwrap_or_else(|e| panic!("{}: {e:?}", a.path));
            assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], a.content_type, "{}", a.path);
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        assert!(response("").is_ok(), "the page");
        for missing in ["../Cargo.toml", "lib/../app.js", "nope.js", "lib", "index.html/x"] {
            assert!(response(missing).is_err(), "{missing}");
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
                _ => a.content_type,
            };
            assert_eq!(a.content_type, want, "{}", a.path);
        }
    }
}
