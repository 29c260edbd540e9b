//! HTTP plumbing shared by every route: the error body and its status table, strict
//! JSON bodies under a size limit, query strings, request ids, pagination cursors and
//! RFC 3339 times.
//!
//! Guarantees:
//! - every error is `{"error":{"type","code","message","request_id"}}` with the status
//!   API.md gives its code ([`status_of`] is the one table; [`ApiError::from_core`] the
//!   one mapping of engine errors); `type` is Stripe's class of the status
//!   ([`error_type`]); `request_id` is the answer's `X-Request-Id`; an error about
//!   fields adds `param` (the first) and `details` (every one, [`FieldError`]);
//! - every error carries `Cache-Control: no-store`; every `401` carries
//!   `WWW-Authenticate: Bearer realm="dispatch"` (with `error="invalid_token"` when a
//!   token was presented and refused, RFC 6750);
//! - a body over its limit is refused with `413 payload_too_large` as soon as the limit is
//!   crossed (by `Content-Length`, or while reading): an oversized body is never read whole;
//! - malformed JSON is `invalid_json`; well-formed JSON with unknown or mistyped fields is
//!   `invalid_request`;
//! - 429 and 503 answers carry `Retry-After` in whole seconds, at least 1; a `429` also
//!   carries `RateLimit-Remaining: 0` and `RateLimit-Reset` (= `Retry-After`), and
//!   `RateLimit-Limit` when the refusal is a per-minute quota of `[limits]`;
//! - a body must arrive within [`BODY_READ_TIMEOUT`] (headers: 30 s, in `listener`).

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hex::hex_val;

/// What every handler answers.
pub type Resp = Response<Full<Bytes>>;

/// A refusal, as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status ([`status_of`] the code).
    pub status: StatusCode,
    /// The stable code of API.md.
    pub code: &'static str,
    /// For people; never holds secrets.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after_s: Option<u64>,
    /// The field the error is about (the first of `details`), e.g. `pickup.lat`, or a
    /// header (`Idempotency-Key`).
    pub param: Option<String>,
    /// Every invalid field, when the error is about fields ([`ApiError::with_fields`]).
    pub details: Vec<FieldError>,
    /// The requests per minute of the quota a `429` refused (`RateLimit-Limit`; the
    /// other `RateLimit-*` headers follow from `Retry-After`).
    pub rate_limit: Option<u32>,
    /// A bearer token was presented and refused: a `401` says `error="invalid_token"`.
    pub invalid_token: bool,
}

/// One invalid field of a request: `{"param","code","message"}` in `error.details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where the field is: a dotted path in the body (`pickup.lat`), or a header's name.
    pub param: String,
    /// The error code of API.md this field alone would get.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// Stripe's class of an error, from its status: `authentication_error` (401, 403),
/// `rate_limit_error` (429), `api_error` (5xx and anything not a client error),
/// `invalid_request_error` (every other 4xx).
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// `WWW-Authenticate` of every `401` (RFC 6750).
pub const WWW_AUTHENTICATE_BEARER: &str = "Bearer realm=\"dispatch\"";

/// `WWW-Authenticate` of a `401` that refused a presented token (RFC 6750 §3.1).
pub const WWW_AUTHENTICATE_INVALID_TOKEN: &str = "Bearer realm=\"dispatch\", error=\"invalid_token\"";

/// The status of each error code of API.md (unknown codes are 500).
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid_json" | "invalid_request" | "invalid_coordinates" | "invalid_signature" => StatusCode::BAD_REQUEST,
        "unauthorized" | "invalid_otp" => StatusCode::UNAUTHORIZED,
        "forbidden" | "not_offered" => StatusCode::FORBIDDEN,
        "cash_debt_limit" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "trip_already_assigned"
        | "driver_not_available"
        | "invalid_transition"
        | "idempotency_key_in_use"
        | "too_many_open_trips" => StatusCode::CONFLICT,
        "offer_expired" => StatusCode::GONE,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "idempotency_key_reused"
        | "outside_service_area"
        | "no_pricing"
        | "coupon_invalid"
        | "insufficient_funds"
        | "refund_exceeds_captured" => StatusCode::UNPROCESSABLE_ENTITY,
        // v1.1: driver applications.
        "not_approved" | "document_expired" => StatusCode::FORBIDDEN,
        "unsupported_media_type" => StatusCode::UNPROCESSABLE_ENTITY,
        "parcel_too_heavy" => StatusCode::UNPROCESSABLE_ENTITY,
        // ----- issue 20: U -----
        "blocked" => StatusCode::FORBIDDEN,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "overloaded" | "read_only" | "unavailable" | "not_leader" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds a client is told to wait after `overloaded` / `read_only` / `unavailable`.
pub const UNAVAILABLE_RETRY_S: u64 = 1;

impl ApiError {
    /// An error with this code (its status from [`status_of`]).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        let status = status_of(code);
        let retry_after_s = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(UNAVAILABLE_RETRY_S);
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s,
            param: None,
            details: Vec::new(),
            rate_limit: None,
            invalid_token: false,
        }
    }

    /// The same error about these fields: `details` lists them all, `param` names the
    /// first.
    pub fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.param = fields.first().map(|f| f.param.clone()).filter(|p| !p.is_empty());
        self.details = fields;
        self
    }

    /// The same error about one field or header (`param`, and `details` with it alone).
    pub fn with_param(self, param: &str) -> Self {
        let field = FieldError { param: param.to_owned(), code: self.code, message: self.message.clone() };
        self.with_fields(vec![field])
    }

    /// `400 invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_request", message)
    }

    /// `404 not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new("not_found", format!("{what} not found"))
    }

    /// `429 rate_limited` with `Retry-After`.
    pub fn rate_limited(retry_after_s: u64, what: &str) -> Self {
        let mut e = Self::new("rate_limited", format!("too many requests ({what}); retry in {retry_after_s} s"));
        e.retry_after_s = Some(retry_after_s.max(1));
        e
    }

    /// The same `429`, refused by a per-minute quota of `limit` requests
    /// (`RateLimit-Limit`).
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The one mapping of engine errors to the HTTP contract. Internal and storage
    /// failures are answered `500 internal` without their details (logged instead).
    pub fn from_core(e: &dispatch_core::Error) -> Self {
        use dispatch_core::{DomainError as D, Error as E};
        match e {
            E::Domain(D::Internal(_)) | E::Storage(_) => {
                tracing::error!(error = %e, "engine failure");
                Self::new("internal", "internal error")
            }
            E::Domain(D::RateLimited { retry_after_s, .. }) => {
                let mut r = Self::new("rate_limited", e.to_string());
                r.retry_after_s = Some((*retry_after_s).max(1));
                r
            }
            E::Domain(D::InvalidParam { param, message }) => Self::invalid(message.clone()).with_param(param),
            E::ShutDown => Self::new("unavailable", "the server is shutting down; try again shortly"),
            _ => Self::new(e.code(), e.to_string()),
        }
    }

    /// The body: `{"error":{"type","code","message","request_id","param"?,"details"?}}`.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut error = serde_json::json!({
            "type": error_type(self.status),
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        });
        if let Some(param) = &self.param {
            error["param"] = serde_json::Value::from(param.as_str());
        }
        if !self.details.is_empty() {
            error["details"] = serde_json::to_value(&self.details).unwrap_or_default();
        }
        serde_json::json!({ "error": error })
    }

    /// The response of the request `request_id` (the caller sets the `X-Request-Id`
    /// header to the same value).
    pub fn into_response(self, request_id: &str) -> Resp {
        let mut r = json_response(self.status, &self.body(request_id));
        let h = r.headers_mut();
        // An error may name a user, a trip or a phone's state: never cached.
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(s) = self.retry_after_s {
            h.insert(RETRY_AFTER, HeaderValue::from(s.max(1)));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            // Lock-outs and caps of the engine and the socket hub are no per-minute quota:
            // they say no limit, only that nothing is left until `Retry-After`.
            if let Some(limit) = self.rate_limit {
                h.insert("ratelimit-limit", HeaderValue::from(limit));
            }
            h.insert("ratelimit-remaining", HeaderValue::from(0u32));
            h.insert("ratelimit-reset", HeaderValue::from(self.retry_after_s.unwrap_or(1).max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let v = if self.invalid_token { WWW_AUTHENTICATE_INVALID_TOKEN } else { WWW_AUTHENTICATE_BEARER };
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        r
    }
}

impl From<dispatch_core::Error> for ApiError {
    fn from(e: dispatch_core::Error) -> Self {
        ApiError::from_core(&e)
    }
}

impl From<dispatch_core::DomainError> for ApiError {
    fn from(e: dispatch_core::DomainError) -> Self {
        ApiError::from_core(&e.into())
    }
}

/// A JSON response.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `204 No Content`.
pub fn no_content() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A response of ready bytes (the OpenAPI document).
pub fn bytes_response(content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response (the metrics).
pub fn text_response(content_type: &'static str, text: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The longest a request body may take to arrive (a client trickling one byte at a time
/// must not hold a connection slot forever).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a body of at most `limit` bytes. A declared or actual length over it is
/// `413 payload_too_large`, decided before reading the excess.
pub async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::new("payload_too_large", format!("the body is over {limit} bytes"));
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        let len: u64 =
            len.to_str().ok().and_then(|s| s.parse().ok()).ok_or_else(|| ApiError::invalid("bad Content-Length"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await;
    match read {
        Err(_) => Err(ApiError::invalid(format!("the body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::invalid(format!("cannot read the body: {e}"))),
    }
}

/// Parses a strict JSON body. `empty_ok`: an empty body stands for `{}` (API.md: a POST
/// that needs no fields takes an empty body or `{}`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8], empty_ok: bool) -> Result<T, ApiError> {
    let body: &[u8] = if empty_ok && body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| json_error(&e))
}

/// `invalid_json` for bytes that are not JSON, `invalid_request` for JSON of the wrong shape.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new("invalid_json", format!("malformed JSON: {e}"))
        }
        Category::Data => ApiError::invalid(format!("invalid request: {e}")),
    }
}

/// Checks a coordinate pair (`400 invalid_coordinates` unless finite and in range).
pub fn lat_lng(lat: f64, lng: f64) -> Result<dispatch_core::LatLng, ApiError> {
    dispatch_core::LatLng::new(lat, lng).map_err(|e| ApiError::new("invalid_coordinates", e.to_string()))
}

/// A decoded query string, in order.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=x%20y` (`+` is a space); malformed escapes are kept literally.
    pub fn parse(q: Option<&str>) -> Self {
        let Some(q) = q else { return Query::default() };
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k).into_owned(), percent_decode(v).into_owned())
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, if present (`400 invalid_request` if it does not parse).
    pub fn parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| v.parse::<T>().map_err(|_| ApiError::invalid(format!("query parameter `{key}` is malformed"))))
            .transpose()
    }

    /// A required float (coordinates).
    pub fn f64(&self, key: &str) -> Result<f64, ApiError> {
        self.parsed::<f64>(key)?.ok_or_else(|| ApiError::invalid(format!("query parameter `{key}` is required")))
    }
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A request id: the caller's `X-Request-Id` when it is 1-128 visible ASCII
/// characters, else a new random one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", crate::hex::random_hex(8)))
}

/// A valid W3C Trace Context `traceparent` of a request: its trace and the caller's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span: 16 lower-case hex digits, not all zero.
    pub parent_id: String,
}

/// The request's `traceparent` (W3C Trace Context, level 1) when it is valid:
/// `<version>-<trace-id>-<parent-id>-<flags>`, lower-case hex; version `ff` is invalid,
/// version `00` has exactly these four fields, a later version may add fields after a
/// `-`. An invalid or repeated header is ignored (a request is never refused for it).
pub fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut all = headers.get_all("traceparent").iter();
    let v = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (version, rest) = v.split_at_checked(2)?;
    if !hex(version, 2) || version == "ff" || (version == "00" && v.len() != 55) {
        return None;
    }
    let fields = rest.get(..53)?;
    if v.len() > 55 && v.as_bytes()[55] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (fields.get(1..33)?, fields.get(34..50)?, fields.get(51..53)?);
    let dashes = [0, 33, 50].iter().all(|&i| fields.as_bytes()[i] == b'-');
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    (dashes && hex(trace_id, 32) && hex(parent_id, 16) && hex(flags, 2) && nonzero(trace_id) && nonzero(parent_id))
        .then(|| TraceParent { trace_id: trace_id.to_owned(), parent_id: parent_id.to_owned() })
}

/// Default page size of a list.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of a list.
pub const MAX_LIMIT: usize = 200;

/// `?limit=` (default [`DEFAULT_LIMIT`], 1 to [`MAX_LIMIT`]).
pub fn limit(q: &Query) -> Result<usize, ApiError> {
    match q.parsed::<usize>("limit")? {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(format!("limit must be 1-{MAX_LIMIT}"))),
    }
}

/// A position in a newest-first list: strictly older than `(at_ms, id)`. Rendered as
/// an opaque string; clients must not build one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The time of the last item seen, ms.
    pub at_ms: i64,
    /// Its raw id.
    pub id: u64,
}

impl Cursor {
    /// The opaque form.
    pub fn encode(self) -> String {
        format!("c1.{:x}.{:x}", self.at_ms, self.id)
    }

    /// `?cursor=` (`400 invalid_request` if malformed).
    pub fn from_query(q: &Query) -> Result<Option<Cursor>, ApiError> {
        let Some(s) = q.get("cursor") else { return Ok(None) };
        let bad = || ApiError::invalid("cursor is malformed");
        let mut parts = s.split('.');
        if parts.next() != Some("c1") {
            return Err(bad());
        }
        let at_ms = parts.next().and_then(|p| i64::from_str_radix(p, 16).ok()).ok_or_else(bad)?;
        let id = parts.next().and_then(|p| u64::from_str_radix(p, 16).ok()).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Some(Cursor { at_ms, id }))
    }

    /// Whether an item at `(at_ms, id)` comes after this cursor in newest-first order.
    pub fn precedes(self, at_ms: i64, id: u64) -> bool {
        (at_ms, id) < (self.at_ms, self.id)
    }
}

/// `{"items", "next_cursor"}`: `next_cursor` is set when the page is full.
pub fn page(items: Vec<serde_json::Value>, limit: usize, last: Option<Cursor>) -> serde_json::Value {
    let next = if items.len() >= limit { last.map(Cursor::encode) } else { None };
    serde_json::json!({"items": items, "next_cursor": next})
}

/// An instant as RFC 3339 UTC with milliseconds (`2026-11-25T10:00:00.123Z`).
pub fn rfc3339(ts: dispatch_core::clock::Timestamp) -> String {
    Rfc3339(ts).to_string()
}

/// An instant written as RFC 3339 UTC with milliseconds ([`rfc3339`]'s text), straight
/// into whatever formats it (a typed answer serialises it with no `String` in between).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub dispatch_core::clock::Timestamp);

impl Rfc3339 {
    /// The text, written digit by digit into a buffer on the stack (no formatting machinery
    /// on the hot answers' every timestamp); `None` for a year outside 0000-9999, which
    /// [`Display`](std::fmt::Display) writes the general way.
    fn ascii(self) -> Option<[u8; 24]> {
        /// `n`'s last `out.len()` decimal digits, zero-padded.
        fn digits(out: &mut [u8], mut n: u32) {
            for d in out.iter_mut().rev() {
                *d = b"0123456789"[(n % 10) as usize];
                n /= 10;
            }
        }
        let t = self.time();
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut b = *b"0000-00-00T00:00:00.000Z";
        digits(&mut b[0..4], year);
        digits(&mut b[5..7], u32::from(u8::from(t.month())));
        digits(&mut b[8..10], u32::from(t.day()));
        digits(&mut b[11..13], u32::from(t.hour()));
        digits(&mut b[14..16], u32::from(t.minute()));
        digits(&mut b[17..19], u32::from(t.second()));
        digits(&mut b[20..23], u32::from(t.millisecond()));
        Some(b)
    }

    fn time(self) -> time::OffsetDateTime {
        let ms = self.0.as_millis();
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// [`Rfc3339::ascii`]'s text: digits and separators only, so always UTF-8.
fn ascii_str(b: &[u8; 24]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(b) = self.ascii() {
            return f.write_str(ascii_str(&b));
        }
        let t = self.time();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl serde::Serialize for Rfc3339 {
    /// As its text, handed to the serialiser whole (no `collect_str` adapter).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.ascii() {
            Some(b) => s.serialize_str(ascii_str(&b)),
            None => s.collect_str(self),
        }
    }
}

/// An RFC 3339 string as an instant (`400 invalid_request` if malformed).
pub fn parse_rfc3339(s: &str, field: &str) -> Result<dispatch_core::clock::Timestamp, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::invalid(format!("{field} must be an RFC 3339 time")))?;
    let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::invalid(format!("{field} is out of range")))?;
    Ok(dispatch_core::clock::Timestamp::from_millis(ms))
}

/// Masks a phone number for logs: all but the last 3 digits.
pub fn mask_phone(phone: &str) -> String {
    let n = phone.chars().count();
    phone.chars().enumerate().map(|(i, c)| if i + 3 < n && c.is_ascii_digit() { '*' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API.md's error table, row by row: every one of its 25 codes and its status.
    const API_MD_ERRORS: [(u16, &[&str]); 10] = [
        (400, &["invalid_json", "invalid_request", "invalid_coordinates", "invalid_signature"]),
        (401, &["unauthorized", "invalid_otp"]),
        (403, &["forbidden", "not_offered"]),
        (404, &["not_found"]),
        (
            409,
            &[
                "trip_already_assigned",
                "driver_not_available",
                "invalid_transition",
                "idempotency_key_in_use",
                "too_many_open_trips",
            ],
        ),
        (410, &["offer_expired"]),
        (413, &["payload_too_large"]),
        (
            422,
            &[
                "idempotency_key_reused",
                "outside_service_area",
                "no_pricing",
                "coupon_invalid",
                "insufficient_funds",
                "refund_exceeds_captured",
            ],
        ),
        (429, &["rate_limited"]),
        (503, &["overloaded", "read_only"]),
    ];

    #[test]
    fn every_api_code_has_its_status() {
        let mut codes = 0;
        for (status, row) in API_MD_ERRORS {
            for code in row {
                assert_eq!(status_of(code).as_u16(), status, "{code}");
                let e = ApiError::new(code, "x");
                assert_eq!((e.status.as_u16(), e.code), (status, *code));
                // 429 and 503 always say when to come back.
                let r = e.into_response("req_t");
                assert_eq!(r.status().as_u16(), status);
                if status == 503 {
                    assert_eq!(r.headers()[RETRY_AFTER], "1", "{code}");
                }
                codes += 1;
            }
        }
        assert_eq!(codes, 25, "API.md's table has 25 codes");
        assert_eq!(status_of("no_such_code"), StatusCode::INTERNAL_SERVER_ERROR);
        let r = ApiError::rate_limited(7, "test").with_limit(60).into_response("req_t");
        assert_eq!((r.status().as_u16(), &r.headers()[RETRY_AFTER]), (429, &HeaderValue::from(7u64)));
        let e = ApiError::from_core(&dispatch_core::Error::Overloaded);
        assert_eq!((e.status, e.code, e.retry_after_s), (StatusCode::SERVICE_UNAVAILABLE, "overloaded", Some(1)));
        let r = e.into_response("req_t");
        assert_eq!(r.headers()[RETRY_AFTER], "1");
    }

    /// The body of an error, parsed back.
    fn body_of(r: Resp) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = futures_util::FutureExt::now_or_never(r.into_body().collect())
            .expect("a full body is ready at once")
            .expect("infallible")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("an error body is JSON")
    }

    #[test]
    fn every_code_has_the_type_of_its_status() {
        let mut seen = 0;
        let extra: [(u16, &[&str]); 2] = [(405, &["method_not_allowed"]), (500, &["internal", "unavailable"])];
        for (status, row) in API_MD_ERRORS.iter().chain(extra.iter()) {
            for code in *row {
                let want = match status {
                    401 | 403 => "authentication_error",
                    429 => "rate_limit_error",
                    400..=499 => "invalid_request_error",
                    _ => "api_error",
                };
                let e = ApiError::new(code, "x");
                assert_eq!(error_type(e.status), want, "{code}");
                let body = body_of(e.into_response("req_1"));
                assert_eq!(body["error"]["type"], want, "{code}");
                seen += 1;
            }
        }
        assert_eq!(seen, 28);
        // `unavailable` is a 503 (the row above only names it): a server-side class too.
        assert_eq!(error_type(status_of("unavailable")), "api_error");
        assert_eq!(error_type(status_of("read_only")), "api_error");
    }

    #[test]
    fn an_error_body_has_its_type_request_id_and_fields() {
        let e = ApiError::invalid("two fields are wrong").with_fields(vec![
            FieldError { param: "pickup.lat".into(), code: "invalid_coordinates", message: "out of range".into() },
            FieldError { param: "category".into(), code: "invalid_request", message: "unknown".into() },
        ]);
        let r = e.into_response("req_abc");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let body = body_of(r);
        assert_eq!(
            body,
            serde_json::json!({"error": {
            "type": "invalid_request_error", "code": "invalid_request", "message": "two fields are wrong",
            "request_id": "req_abc", "param": "pickup.lat",
            "details": [
                {"param": "pickup.lat", "code": "invalid_coordinates", "message": "out of range"},
                {"param": "category", "code": "invalid_request", "message": "unknown"},
            ]}})
        );
        // Without fields: neither `param` nor `details`.
        let body = body_of(ApiError::not_found("trip").into_response("req_x"));
        assert_eq!(
            body,
            serde_json::json!({"error": {"type": "invalid_request_error", "code": "not_found",
                "message": "trip not found", "request_id": "req_x"}})
        );
        let one = ApiError::invalid("bad key").with_param("Idempotency-Key");
        assert_eq!(one.param.as_deref(), Some("Idempotency-Key"));
        assert_eq!(one.details[0].code, "invalid_request");
    }

    #[test]
    fn a_401_says_bearer_and_a_429_its_quota() {
        let r = ApiError::new("unauthorized", "x").into_response("r");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"dispatch\"");
        let mut e = ApiError::new("unauthorized", "x");
        e.invalid_token = true;
        let r = e.into_response("r");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"dispatch\", error=\"invalid_token\"");
        assert!(!ApiError::new("forbidden", "x").into_response("r").headers().contains_key(WWW_AUTHENTICATE));

        let r = ApiError::rate_limited(7, "test").with_limit(60).into_response("r");
        let h = r.headers();
        assert_eq!(
            (&h["ratelimit-limit"], &h["ratelimit-remaining"]),
            (&HeaderValue::from(60u32), &HeaderValue::from(0u32))
        );
        assert_eq!(h["ratelimit-reset"], h[RETRY_AFTER]);
        // An engine lock-out is no per-minute quota: no limit named, the rest the same.
        let lock = dispatch_core::DomainError::RateLimited { what: "locked", retry_after_s: 90 };
        let r = ApiError::from(lock).into_response("r");
        let h = r.headers();
        assert!(!h.contains_key("ratelimit-limit"));
        assert_eq!(
            (&h["ratelimit-remaining"], &h["ratelimit-reset"]),
            (&HeaderValue::from(0u32), &HeaderValue::from(90u64))
        );
        assert!(!ApiError::invalid("x").into_response("r").headers().contains_key("ratelimit-remaining"));
    }

    #[test]
    fn json_errors_are_told_apart() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: u32,
        }
        assert_eq!(parse_json::<S>(b"{", false).unwrap_err().code, "invalid_json");
        assert_eq!(parse_json::<S>(b"{\"a\":1,\"b\":2}", false).unwrap_err().code, "invalid_request");
        assert_eq!(parse_json::<S>(b"{\"a\":\"x\"}", false).unwrap_err().code, "invalid_request");
        assert_eq!(parse_json::<S>(b"", false).unwrap_err().code, "invalid_json");
        assert!(parse_json::<serde_json::Value>(b"", true).is_ok());
    }

    #[test]
    fn traceparent_is_taken_only_when_valid() {
        let tp = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_str(v).unwrap());
            traceparent(&h)
        };
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            tp(good),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                parent_id: "00f067aa0ba902b7".into()
            })
        );
        // A later version may carry more fields after a dash.
        assert!(tp("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 has 4 fields
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "garbage",
            "",
        ] {
            assert_eq!(tp(bad), None, "{bad}");
        }
        let mut two = HeaderMap::new();
        two.append("traceparent", HeaderValue::from_static(good));
        two.append("traceparent", HeaderValue::from_static(good));
        assert_eq!(traceparent(&two), None, "a repeated header is ignored");
    }

    #[test]
    fn queries_cursors_times_and_phones() {
        let q = Query::parse(Some("a=1&b=x%20y+z&c&bad=%zz%4"));
        assert_eq!(
            (q.get("a"), q.get("b"), q.get("c"), q.get("bad")),
            (Some("1"), Some("x y z"), Some(""), Some("%zz%4"))
        );
        let c = Cursor { at_ms: 1_700_000_000_000, id: u64::MAX };
        let q = Query::parse(Some(&format!("cursor={}", c.encode())));
        assert_eq!(Cursor::from_query(&q).unwrap(), Some(c));
        assert!(Cursor::from_query(&Query::parse(Some("cursor=zz"))).is_err());
        assert_eq!(
            rfc3339(dispatch_core::clock::Timestamp::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123Z", "t").unwrap().as_millis(), 1_700_000_000_123);
        assert_eq!(mask_phone("+201001234567"), "+*********567");
    }

    /// The digit-by-digit text is `time`'s own formatting of the same instant, for every
    /// field's edges, and years before 0 take the general path.
    #[test]
    fn rfc3339_text_is_times_formatting() {
        use time::format_description::well_known::Rfc3339 as Spec;
        let reference = |ms: i64| {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            let text = t.format(&Spec).unwrap();
            // `time` writes as many fraction digits as needed; the API always three.
            let (head, _) = text.split_once(['.', 'Z']).unwrap();
            format!("{head}.{:03}Z", t.millisecond())
        };
        let mut samples = vec![0, 1, 999, 1_000, 59_999, 86_399_999, 951_782_400_000, 253_402_300_799_999];
        let mut ms: i64 = 1;
        while ms < 253_402_300_799_999 {
            samples.push(ms);
            ms = ms * 7 + 13;
        }
        for ms in samples {
            let t = Rfc3339(dispatch_core::clock::Timestamp::from_millis(ms));
            assert_eq!(t.to_string(), reference(ms), "{ms}");
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", reference(ms)), "{ms}");
        }
        // Beyond `time`'s range (year 9999) an instant is written as the epoch, as before.
        let far = Rfc3339(dispatch_core::clock::Timestamp::from_millis(253_402_300_800_000));
        assert_eq!(serde_json::to_string(&far).unwrap(), "\"1970-01-01T00:00:00.000Z\"");
        let before = Rfc3339(dispatch_core::clock::Timestamp::from_millis(-62_167_219_200_001));
        assert_eq!(before.to_string(), "-001-12-31T23:59:59.999Z");
        assert_eq!(serde_json::to_string(&before).unwrap(), "\"-001-12-31T23:59:59.999Z\"");
    }
}
