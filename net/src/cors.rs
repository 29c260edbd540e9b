//! Cross-origin requests (CORS, the Fetch standard): which browser origins may call the
//! API, from `[server] cors_origins`, and the headers that tell a browser so.
//!
//! Owns the validation of the configured origins, the matching of a request's `Origin`
//! and the headers of answers and preflights; the pipeline (`api::handle`) decides when
//! to call them.
//!
//! Guarantees:
//! - an empty list (the default) adds no CORS header anywhere: browsers allow the API to
//!   pages of its own origin only;
//! - a configured origin is `scheme://host[:port]` (`http` or `https`, no path, query,
//!   user or fragment) or the whole list is `["*"]`; anything else is a configuration
//!   error at start. Scheme and host compare case-insensitively and a default port
//!   (`:443` for https, `:80` for http) is the same as none, as browsers serialise them;
//! - an allowed `Origin` gets `Access-Control-Allow-Origin` (the origin itself; `*` only
//!   when the list is `["*"]`) and `Access-Control-Expose-Headers`; credentials (cookies)
//!   are never allowed — the API authenticates with bearer tokens in `Authorization`,
//!   which a page sends itself — so `*` is never combined with credentials;
//! - with an explicit list every answer says `Vary: Origin` (the allowed origin differs
//!   per caller);
//! - a preflight from an allowed origin is `204` with the path's methods, the request
//!   headers the API reads and `Access-Control-Max-Age: 600`; from any other origin it is
//!   `403 forbidden` without CORS headers (the browser then refuses the real request).

use hyper::HeaderMap;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, HeaderValue, ORIGIN, VARY,
};

/// Response headers a page may read (besides the CORS-safelisted ones).
pub const EXPOSE_HEADERS: &str =
    "X-Request-Id, Idempotent-Replayed, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset";

/// Request headers a page may send (besides the CORS-safelisted ones).
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, X-Request-Id, traceparent";

/// Seconds a browser may keep a preflight's answer.
pub const MAX_AGE_S: u32 = 600;

/// Checks `[server] cors_origins`: `["*"]`, or each `scheme://host[:port]`.
pub fn validate(origins: &[String]) -> Result<(), String> {
    if origins.iter().any(|o| o == "*") {
        return if origins.len() == 1 {
            Ok(())
        } else {
            Err("server.cors_origins: \"*\" allows every origin and must be the only entry".into())
        };
    }
    for o in origins {
        normalise(o).map_err(|why| format!("server.cors_origins: {o:?} is not an origin ({why})"))?;
    }
    Ok(())
}

/// An origin in the form browsers send it: lower-case scheme and host, no default port.
fn normalise(origin: &str) -> Result<String, &'static str> {
    let (scheme, rest) = origin.split_once("://").ok_or("it needs a scheme: http:// or https://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err("the scheme must be http or https"),
    };
    if rest.is_empty() {
        return Err("the host is missing");
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err("an origin has no path, query, fragment or user: scheme://host[:port]");
    }
    // An IPv6 literal is bracketed: its colons are not the port's.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("an IPv6 host needs its closing ]")?;
            addr.parse::<std::net::Ipv6Addr>().map_err(|_| "the IPv6 address is malformed")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("only :port may follow the host")?),
            };
            (&rest[..addr.len() + 2], port)
        }
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let labels_ok = host.starts_with('[')
        || (!host.is_empty()
            && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
    if !labels_ok {
        return Err("the host must be a DNS name or an IP address");
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) => {
            let n: u16 = p.parse().map_err(|_| "the port must be 1-65535")?;
            if n == 0 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the port must be 1-65535");
            }
            if p.trim_start_matches('0') == default_port {
                Ok(format!("{scheme}://{host}"))
            } else {
                Ok(format!("{scheme}://{host}:{n}"))
            }
        }
    }
}

/// What the configured list says about a request's `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// CORS is off (empty list), or the request names no origin: no CORS header.
    Off,
    /// The origin may call: the value of `Access-Control-Allow-Origin`.
    Allowed(HeaderValue),
    /// Another origin: no `Access-Control-Allow-Origin`.
    Refused,
}

/// Judges the request's `Origin` against `origins` (already [`validate`]d).
pub fn judge(origins: &[String], headers: &HeaderMap) -> Verdict {
    if origins.is_empty() {
        return Verdict::Off;
    }
    let Some(origin) = headers.get(ORIGIN) else { return Verdict::Off };
    if origins.iter().any(|o| o == "*") {
        return Verdict::Allowed(HeaderValue::from_static("*"));
    }
    // `Origin: null` (sandboxed frames, files) never matches: it is no origin.
    let Ok(text) = origin.to_str() else { return Verdict::Refused };
    let Ok(wanted) = normalise(text) else { return Verdict::Refused };
    if origins.iter().any(|o| normalise(o).is_ok_and(|o| o == wanted)) {
        Verdict::Allowed(origin.clone())
    } else {
        Verdict::Refused
    }
}

/// The CORS headers of an ordinary answer (errors included).
pub fn answer_headers(origins: &[String], verdict: &Verdict, h: &mut HeaderMap) {
    if !origins.is_empty() && !origins.iter().any(|o| o == "*") {
        h.append(VARY, HeaderValue::from_static("Origin"));
    }
    if let Verdict::Allowed(origin) = verdict {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &hyper::Method, headers: &HeaderMap) -> bool {
    method == hyper::Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(hyper::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of a preflight's `204` for an allowed origin; `methods` is the path's
/// (`GET, HEAD, POST`).
pub fn preflight_headers(methods: &str, h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(methods) {
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_S));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        h
    }

    #[test]
    fn configured_origins_are_origins_or_a_lone_star() {
        for ok in [
            &[][..],
            &["*"],
            &["https://ops.example.com"],
            &["http://localhost:3000", "https://A.example.com:8443"],
            &["http://[::1]:8080", "http://127.0.0.1"],
        ] {
            assert_eq!(validate(&list(ok)), Ok(()), "{ok:?}");
        }
        for bad in [
            &["*", "https://a.example.com"][..],
            &["ops.example.com"],
            &["https://ops.example.com/"],
            &["https://ops.example.com/console"],
            &["https://ops.example.com?x=1"],
            &["https://user@ops.example.com"],
            &["ftp://ops.example.com"],
            &["https://"],
            &["https://ops.example.com:0"],
            &["https://ops.example.com:65536"],
            &["https://ops.example.com:+80"],
            &["https://ops..example.com"],
            &["https://[::1"],
            &["https://[zz]:80"],
            &["null"],
        ] {
            assert!(validate(&list(bad)).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn an_origin_matches_as_browsers_serialise_it() {
        let origins = list(&["https://Ops.Example.com:443", "http://localhost:3000"]);
        let allowed = |o: &str| judge(&origins, &with_origin(o));
        assert_eq!(
            allowed("https://ops.example.com"),
            Verdict::Allowed(HeaderValue::from_static("https://ops.example.com"))
        );
        assert!(matches!(allowed("http://localhost:3000"), Verdict::Allowed(_)));
        for other in [
            "http://ops.example.com",
            "https://evil.example.com",
            "http://localhost:3001",
            "null",
            "https://ops.example.com.evil.net",
        ] {
            assert_eq!(allowed(other), Verdict::Refused, "{other}");
        }
        assert_eq!(judge(&origins, &HeaderMap::new()), Verdict::Off, "no Origin: not a CORS request");
        assert_eq!(judge(&[], &with_origin("https://ops.example.com")), Verdict::Off, "off by default");
        assert_eq!(
            judge(&list(&["*"]), &with_origin("https://any.example")),
            Verdict::Allowed(HeaderValue::from_static("*"))
        );
    }

    #[test]
    fn answers_carry_the_headers_only_for_an_allowed_origin() {
        let origins = list(&["https://ops.example.com"]);
        let mut h = HeaderMap::new();
        answer_headers(&origins, &judge(&origins, &with_origin("https://ops.example.com")), &mut h);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://ops.example.com");
        assert_eq!(h[VARY], "Origin");
        assert!(h[ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().contains("X-Request-Id"));
        let mut h = HeaderMap::new();
        answer_headers(&origins, &judge(&origins, &with_origin("https://evil.example")), &mut h);
        assert!(!h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(h[VARY], "Origin", "the answer still varies by origin");
        let mut h = HeaderMap::new();
        answer_headers(&[], &Verdict::Off, &mut h);
        assert!(h.is_empty(), "no CORS header at all by default");
    }
}
