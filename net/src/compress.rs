//! gzip for large JSON answers: `Accept-Encoding` negotiation (RFC 9110 §12.5.3) and the
//! compression itself (flate2 on miniz_oxide, pure Rust).
//!
//! Guarantees:
//! - an answer is compressed only when the request accepts gzip with a q-value above 0
//!   (`gzip`, `x-gzip` or `*` when gzip is not named; `gzip;q=0` refuses it whatever `*`
//!   says), its body is JSON of at least [`MIN_BYTES`], its status can have a body (not
//!   1xx, 204 or 304) and it has no `Content-Encoding` yet;
//! - a compressed answer carries `Content-Encoding: gzip` and the compressed body's own
//!   length (hyper writes `Content-Length` from the body); every JSON answer of at least
//!   [`MIN_BYTES`] says `Vary: Accept-Encoding`, compressed or not;
//! - a failure to compress (none is expected: it is all in memory) sends the body as it
//!   was, never a broken one.

use std::io::Write;

use bytes::Bytes;
use http_body_util::Full;
use hyper::HeaderMap;
use hyper::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, VARY};

use crate::http::Resp;

/// The smallest body worth compressing, bytes (below it the gzip header and the CPU cost
/// outweigh the bytes saved).
pub const MIN_BYTES: usize = 1024;

/// Whether the request's `Accept-Encoding` takes gzip.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut star) = (None, None);
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
            });
            // No q is q=1; a malformed q counts as 0 (never guess a client wants it).
            let weight = q.unwrap_or(Some(1000)).unwrap_or(0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(gzip.unwrap_or(0).max(weight)),
                "*" => star = Some(star.unwrap_or(0).max(weight)),
                _ => {}
            }
        }
    }
    gzip.or(star).is_some_and(|w| w > 0)
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// Compresses `resp` when the rules of this module allow (`accepts`: the request takes
/// gzip). `body` is the answer's body, already read.
pub fn maybe_gzip(resp: &mut Resp, body: Bytes, accepts: bool) -> Bytes {
    let status = resp.status();
    let h = resp.headers();
    let json = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    let can_have_body = !(status.is_informational()
        || status == hyper::StatusCode::NO_CONTENT
        || status == hyper::StatusCode::NOT_MODIFIED);
    if !json || !can_have_body || body.len() < MIN_BYTES || h.contains_key(CONTENT_ENCODING) {
        return body;
    }
    resp.headers_mut().append(VARY, HeaderValue::from_static("Accept-Encoding"));
    if !accepts {
        return body;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    match enc.write_all(&body).and_then(|()| enc.finish()) {
        Ok(gz) => {
            let h = resp.headers_mut();
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            h.insert(CONTENT_LENGTH, HeaderValue::from(gz.len()));
            Bytes::from(gz)
        }
        Err(e) => {
            tracing::warn!(error = %e, "gzip failed; the answer goes uncompressed");
            body
        }
    }
}

/// Rebuilds `resp` around `body`.
pub fn with_body(resp: Resp, body: Bytes) -> Resp {
    let (parts, _) = resp.into_parts();
    Resp::from_parts(parts, Full::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        for yes in
            ["gzip", "gzip, deflate, br", "br;q=1.0, GZIP;q=0.5", "*", "deflate, *;q=0.1", "x-gzip", "gzip;q=0.001"]
        {
            assert!(accepts_gzip(&ae(yes)), "{yes}");
        }
        for no in [
            "gzip;q=0",
            "gzip;q=0.000, *",
            "identity",
            "br, deflate",
            "*;q=0",
            "",
            "gzip;q=2",
            "gzip;q=abc",
            "gzip;q=0.0001",
        ] {
            assert!(!accepts_gzip(&ae(no)), "{no}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()), "no header: identity");
    }

    #[test]
    fn large_json_is_gzipped_and_decompresses_to_the_same_bytes() {
        use std::io::Read;
        let big = Bytes::from(format!("[{}0]", "1234567890,".repeat(200)));
        let mut r = crate::http::json_response(hyper::StatusCode::OK, &serde_json::Value::Null);
        let gz = maybe_gzip(&mut r, big.clone(), true);
        assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[CONTENT_LENGTH], gz.len().to_string().as_str());
        assert_eq!(r.headers()[VARY], "Accept-Encoding");
        assert!(gz.len() < big.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, big);

        // Not accepted: the same bytes, still `Vary`.
        let mut r = crate::http::json_response(hyper::StatusCode::OK, &serde_json::Value::Null);
        assert_eq!(maybe_gzip(&mut r, big.clone(), false), big);
        assert!(!r.headers().contains_key(CONTENT_ENCODING));
        assert_eq!(r.headers()[VARY], "Accept-Encoding");
        // Small, or not JSON: untouched.
        let mut r = crate::http::json_response(hyper::StatusCode::OK, &serde_json::Value::Null);
        assert_eq!(maybe_gzip(&mut r, Bytes::from_static(b"{}"), true), Bytes::from_static(b"{}"));
        assert!(r.headers().get(CONTENT_ENCODING).is_none() && r.headers().get(VARY).is_none());
        let mut r = crate::http::text_response("text/plain", String::new());
        assert_eq!(maybe_gzip(&mut r, big.clone(), true), big);
        assert!(r.headers().get(CONTENT_ENCODING).is_none());
    }
}
