//! The HTTP conventions every answer follows, whatever its route: the methods a path
//! allows (`Allow` of a `405`, `OPTIONS`, CORS preflights), and the finishing of a
//! response in [`super::handle`] — `X-Request-Id`, `Cache-Control`, `RateLimit-*`,
//! CORS, gzip and `HEAD`.
//!
//! Guarantees:
//! - the methods of a path come from [`Endpoint::route`] alone (the one route table):
//!   `HEAD` wherever `GET` is (not on `/v1/ws`, an upgrade), and `OPTIONS` on every
//!   known path;
//! - a `HEAD` answer has the status and headers of the `GET` (its `Content-Length`
//!   included, never gzipped) and no body;
//! - `OPTIONS` never authenticates nor counts against a limit: a plain one is `204` with
//!   `Allow`; a CORS preflight is judged by [`crate::cors`]; an unknown path is `404`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{ALLOW, CONTENT_LENGTH, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};

use super::Endpoint;
use super::console::{console_headers, is_console_path};
use crate::cors::{self, Verdict};
use crate::http::{self, ApiError, Resp};
use crate::ratelimit::Quota;

/// The methods `path` answers, in a stable order (`GET, HEAD, POST, PUT, DELETE, PATCH,
/// OPTIONS`); empty for an unknown path.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (m, name) in [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
    ] {
        if let Ok(ep) = Endpoint::route(&m, path) {
            out.push(name);
            if m == Method::GET && ep != Endpoint::Ws {
                out.push("HEAD");
            }
        }
    }
    if !out.is_empty() {
        out.push("OPTIONS");
    }
    out
}

/// The endpoint of a request: `HEAD` is routed as `GET` (but not to the WebSocket).
pub fn route(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    if method != Method::HEAD {
        return Endpoint::route(method, path);
    }
    let refused = || ApiError::new("method_not_allowed", "HEAD is not allowed here");
    match Endpoint::route(&Method::GET, path) {
        Ok(Endpoint::Ws) => Err(refused()),
        Ok(ep) => Ok(ep),
        Err(e) if e.code == "method_not_allowed" => Err(refused()),
        Err(e) => Err(e),
    }
}

/// The answer to `OPTIONS path`.
pub fn options(cors_origins: &[String], path: &str, headers: &HeaderMap) -> Result<Resp, ApiError> {
    let methods = allowed_methods(path);
    if methods.is_empty() {
        return Err(ApiError::new("not_found", "no such endpoint"));
    }
    let list = methods.join(", ");
    let mut r = http::no_content();
    if let Ok(v) = HeaderValue::from_str(&list) {
        r.headers_mut().insert(ALLOW, v);
    }
    if cors::is_preflight(&Method::OPTIONS, headers) {
        match cors::judge(cors_origins, headers) {
            Verdict::Allowed(_) => cors::preflight_headers(&list, r.headers_mut()),
            Verdict::Off | Verdict::Refused => {
                return Err(ApiError::new("forbidden", "this origin may not call the API (server.cors_origins)"));
            }
        }
    }
    Ok(r)
}

/// What the finishing of a response needs to know about its request.
pub struct Finish {
    /// The request was `HEAD`.
    pub head: bool,
    /// Its `Accept-Encoding` takes gzip.
    pub gzip: bool,
    /// Its `Origin`, judged.
    pub cors: Verdict,
}

impl Finish {
    /// Reads what it needs from the request.
    pub fn of(method: &Method, headers: &HeaderMap, cors_origins: &[String]) -> Finish {
        Finish {
            head: method == Method::HEAD,
            gzip: crate::compress::accepts_gzip(headers),
            cors: cors::judge(cors_origins, headers),
        }
    }

    /// Adds the headers every answer carries and shapes its body (gzip, `HEAD`).
    pub async fn apply(
        self,
        mut resp: Resp,
        request_id: &str,
        path: &str,
        quota: Option<Quota>,
        cors_origins: &[String],
        console_csp: &HeaderValue,
    ) -> Resp {
        let status = resp.status();
        let h = resp.headers_mut();
        // Room for what follows at once (request id, cache, three quota headers, `Vary`,
        // CORS): grown one header past its first size, the map rehashes every answer.
        h.reserve(8);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-request-id", v);
        }
        if is_console_path(path) {
            console_headers(h, console_csp);
        } else if path == super::openapi::PATH && status == hyper::StatusCode::OK {
            // The document is public and the same for everyone until the next release.
            h.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        } else {
            // API answers carry tokens (sign-in, user creation) or personal data (phones,
            // names, positions, trips): no cache, shared or the browser's, keeps any of them.
            h.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        // A refusal sets its own (`http::ApiError::into_response`); any other answer of a
        // limited caller says what is left of the tightest quota it was counted against.
        if let (Some(q), false) = (quota, h.contains_key("ratelimit-remaining")) {
            h.insert("ratelimit-limit", HeaderValue::from(q.limit));
            h.insert("ratelimit-remaining", HeaderValue::from(q.remaining));
            h.insert("ratelimit-reset", HeaderValue::from(q.reset_s));
        }
        cors::answer_headers(cors_origins, &self.cors, h);
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return resp; // an upgrade has no body to shape
        }
        let (parts, body) = resp.into_parts();
        // A `Full` body is ready at once: this awaits nothing.
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let mut resp = Resp::from_parts(parts, http_body_util::Full::new(Bytes::new()));
        // `HEAD` sends the `GET`'s headers as if the client took no encoding.
        let bytes = crate::compress::maybe_gzip(&mut resp, bytes, self.gzip && !self.head);
        if !self.head {
            return crate::compress::with_body(resp, bytes);
        }
        let status = resp.status();
        if !(status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED) {
            resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_allows_what_the_route_table_routes() {
        assert_eq!(allowed_methods("/v1/trips"), ["GET", "HEAD", "POST", "OPTIONS"]);
        assert_eq!(allowed_methods("/v1/trips/trp_1"), ["GET", "HEAD", "OPTIONS"]);
        assert_eq!(allowed_methods("/v1/trips/trp_1/accept"), ["POST", "OPTIONS"]);
        assert_eq!(allowed_methods("/v1/admin/zones/z1"), ["PUT", "OPTIONS"]);
        assert_eq!(allowed_methods("/v1/ws"), ["GET", "OPTIONS"], "no HEAD upgrade");
        assert_eq!(allowed_methods("/healthz"), ["GET", "HEAD", "OPTIONS"]);
        assert!(allowed_methods("/v1/nope").is_empty());
        assert!(allowed_methods("/v1/trips/t/fly").is_empty());
    }

    #[test]
    fn head_is_routed_as_get_except_to_the_websocket() {
        assert_eq!(route(&Method::HEAD, "/v1/trips/t1"), Ok(Endpoint::GetTrip("t1".into())));
        assert_eq!(route(&Method::HEAD, "/v1/ws").unwrap_err().code, "method_not_allowed");
        assert_eq!(route(&Method::HEAD, "/v1/auth/otp").unwrap_err().code, "method_not_allowed");
        assert_eq!(route(&Method::HEAD, "/v1/nope").unwrap_err().code, "not_found");
    }

    #[test]
    fn options_answers_allow_and_judges_preflights() {
        let origins = vec!["https://ops.example.com".to_owned()];
        let r = options(&origins, "/v1/trips", &HeaderMap::new()).unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD, POST, OPTIONS");
        let mut pre = HeaderMap::new();
        pre.insert(hyper::header::ORIGIN, HeaderValue::from_static("https://ops.example.com"));
        pre.insert(hyper::header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("POST"));
        let r = options(&origins, "/v1/trips", &pre).unwrap();
        assert_eq!(r.headers()[hyper::header::ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD, POST, OPTIONS");
        assert_eq!(r.headers()[hyper::header::ACCESS_CONTROL_MAX_AGE], "600");
        pre.insert(hyper::header::ORIGIN, HeaderValue::from_static("https://evil.example.com"));
        assert_eq!(options(&origins, "/v1/trips", &pre).unwrap_err().code, "forbidden");
        assert_eq!(options(&[], "/v1/trips", &pre).unwrap_err().code, "forbidden", "CORS off: no origin may");
        assert_eq!(options(&origins, "/v1/nope", &HeaderMap::new()).unwrap_err().code, "not_found");
    }
}
