//! The operators' console: its static files (compiled into the binary) and the headers
//! every answer under `/console` carries.
//!
//! Guarantees: every answer on a console path, errors included, carries API.md's
//! `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`; the files carry no data (the page signs in with a staff
//! token).

use hyper::header::HeaderValue;

use super::routes::ConsoleAsset;
use crate::http::{self, Resp};

impl ConsoleAsset {
    /// The file, with its content type.
    pub(super) fn response(self) -> Resp {
        let (content_type, body) = match self {
            ConsoleAsset::Page => ("text/html; charset=utf-8", include_str!("../../console/index.html")),
            ConsoleAsset::Script => ("text/javascript; charset=utf-8", include_str!("../../console/app.js")),
            ConsoleAsset::Style => ("text/css; charset=utf-8", include_str!("../../console/app.css")),
        };
        http::text_response(content_type, body.to_owned())
    }
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
