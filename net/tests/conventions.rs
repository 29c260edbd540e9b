//! The HTTP conventions of issue 25 against the real `dispatchd` over loopback: error
//! bodies with `type` and `request_id`, strict `Idempotency-Key`, `WWW-Authenticate`,
//! `Allow`, `HEAD`, `OPTIONS` and CORS, gzip, `RateLimit-*`, and W3C `traceparent` in
//! the log.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::Read;
use std::process::Command;

use common::*;
use hyper::Method;
use serde_json::{Value, json};

/// The request id an answer carries, which its error body must repeat.
fn request_id(r: &Reply) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

#[track_caller]
fn assert_error(r: &Reply, status: u16, code: &str, ty: &str) {
    r.expect_error(status, code);
    assert_eq!(r.json["error"]["type"], ty, "{}", r.text);
    assert_eq!(r.json["error"]["request_id"], request_id(r).as_str(), "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store", "errors are never cached");
}

/// The request line of the log for the request `id` (its `X-Request-Id`).
fn log_line(s: &Server, id: &str) -> Value {
    let stderr = s.stderr();
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "request" && l["fields"]["request_id"] == id)
        .unwrap_or_else(|| panic!("no request line for {id} in {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_say_their_type_and_the_request_id() {
    let s = Server::start(&[], None);
    // 404 of an unknown path, with a new id and with the caller's.
    let r = s.call(Method::GET, "/v1/nope", None, None).await;
    assert_error(&r, 404, "not_found", "invalid_request_error");
    assert!(request_id(&r).starts_with("req_"));
    let r = s.call_with(Method::GET, "/v1/nope", None, None, &[("x-request-id", "client-chosen-1")]).await;
    assert_eq!(r.json["error"]["request_id"], "client-chosen-1");
    // 401: no token, then a refused one (RFC 6750).
    let r = s.call(Method::GET, "/v1/zones", None, None).await;
    assert_error(&r, 401, "unauthorized", "authentication_error");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"dispatch\"");
    let r = s.get("/v1/zones", "dt1.not-a-token").await;
    assert_error(&r, 401, "unauthorized", "authentication_error");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"dispatch\", error=\"invalid_token\"");
    // A wrong OTP is a 401 too.
    let ask = json!({"phone": "+201001112233", "role": "rider"}).to_string();
    s.call(Method::POST, "/v1/auth/otp", None, Some(&ask)).await.expect(202);
    let code = s.otp_code("+201001112233");
    let wrong: String = code.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect();
    let wrong = json!({"phone": "+201001112233", "code": wrong}).to_string();
    let r = s.call(Method::POST, "/v1/auth/otp/verify", None, Some(&wrong)).await;
    assert_error(&r, 401, "invalid_otp", "authentication_error");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"dispatch\"", "every 401 says how to authenticate");
    // 403: a rider on an admin route.
    let (_, rider) = user(&s, "rider", 1).await;
    let r = s.get("/v1/admin/stats", &rider).await;
    assert_error(&r, 403, "forbidden", "authentication_error");
    assert!(!r.headers.contains_key("www-authenticate"));
    // 400: a bad body, and malformed JSON.
    let r = s.post("/v1/trips", &rider, json!({"pickup": "here"})).await;
    assert_error(&r, 400, "invalid_request", "invalid_request_error");
    let r = s.call(Method::POST, "/v1/trips", Some(&rider), Some("{")).await;
    assert_error(&r, 400, "invalid_json", "invalid_request_error");
    // 405 and 413 too; and on the console's paths, whose files are cacheable, errors are not.
    let r = s.call(Method::DELETE, "/v1/trips", Some(&rider), None).await;
    assert_error(&r, 405, "method_not_allowed", "invalid_request_error");
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(70_000));
    let r = s.call(Method::POST, "/v1/trips", Some(&rider), Some(&big)).await;
    assert_error(&r, 413, "payload_too_large", "invalid_request_error");
    let r = s.call(Method::POST, "/console", None, None).await;
    assert_error(&r, 405, "method_not_allowed", "invalid_request_error");
    assert!(r.headers.contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_idempotency_key_is_refused_and_creates_nothing() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"})
    .to_string();
    let long = "k".repeat(300);
    for key in ["", long.as_str(), "tab\there"] {
        let r = s.call_with(Method::POST, "/v1/trips", Some(&rider), Some(&body), &[("idempotency-key", key)]).await;
        assert_error(&r, 400, "invalid_request", "invalid_request_error");
        assert_eq!(r.json["error"]["param"], "Idempotency-Key", "{}", r.text);
        assert_eq!(r.json["error"]["details"][0]["param"], "Idempotency-Key", "{}", r.text);
    }
    // Sent twice: which one would count? Refused too.
    let mut req = hyper::Request::post("/v1/trips").header("host", s.addr.to_string());
    req = req.header("authorization", format!("Bearer {rider}"));
    req = req.header("idempotency-key", "a").header("idempotency-key", "b");
    let r = raw(&s, req.body(body.clone()).unwrap()).await;
    assert_eq!(r.0, 400);
    let trips = s.get("/v1/trips", &rider).await.expect(200);
    assert_eq!(trips["items"], json!([]), "no refused request booked a trip");
    // 255 characters are fine; a route that takes no key ignores it, even empty.
    let ok = "k".repeat(255);
    s.call_with(Method::POST, "/v1/trips", Some(&rider), Some(&body), &[("idempotency-key", &ok)]).await.expect(201);
    s.call_with(Method::GET, "/v1/zones", Some(&rider), None, &[("idempotency-key", "")]).await.expect(200);
}

/// A request sent as built (headers the helpers cannot repeat): (status, headers).
async fn raw(s: &Server, req: hyper::Request<String>) -> (u16, hyper::HeaderMap) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (parts, body) = req.into_parts();
    let req = hyper::Request::from_parts(parts, http_body_util::Full::new(bytes::Bytes::from(body)));
    let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    resp.into_body().collect().await.unwrap();
    (status, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_head_and_options_follow_the_route_table() {
    let s = Server::start(&[], None);
    for (method, path, allow) in [
        (Method::DELETE, "/v1/trips", "GET, HEAD, POST, OPTIONS"),
        (Method::PUT, "/v1/trips/trp_1/accept", "POST, OPTIONS"),
        (Method::POST, "/healthz", "GET, HEAD, OPTIONS"),
        (Method::PATCH, "/v1/admin/zones/z1", "PUT, OPTIONS"),
        (Method::HEAD, "/v1/auth/otp", "POST, OPTIONS"),
        (Method::HEAD, "/v1/ws", "GET, OPTIONS"),
    ] {
        let r = s.call(method.clone(), path, Some(ADMIN), None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.headers["allow"], allow, "{method} {path}");
        if method != Method::HEAD {
            assert_error(&r, 405, "method_not_allowed", "invalid_request_error");
        }
    }

    // HEAD is GET without the body: same status and headers, the GET's length.
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let trip = create_trip(&s, &rider).await;
    let path = format!("/v1/trips/{}", trip["id"].as_str().unwrap());
    for (path, token) in [("/healthz", None), (path.as_str(), Some(rider.as_str()))] {
        let get = s.call(Method::GET, path, token, None).await;
        let head = s.call(Method::HEAD, path, token, None).await;
        assert_eq!((head.status, get.status), (200, 200), "{path}");
        assert!(head.body.is_empty(), "{path}: HEAD has no body");
        assert_eq!(head.headers["content-length"], get.body.len().to_string().as_str(), "{path}");
        for h in ["content-type", "cache-control"] {
            assert_eq!(head.headers.get(h), get.headers.get(h), "{path}: {h}");
        }
    }
    // The same pipeline: no token, no trip.
    let r = s.call(Method::HEAD, &path, None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty() && r.headers.contains_key("www-authenticate"));
    assert_eq!(s.call(Method::HEAD, "/v1/nope", None, None).await.status, 404);

    // OPTIONS: 204 with Allow, no credentials needed; an unknown path is 404.
    let r = s.call(Method::OPTIONS, "/v1/trips", None, None).await;
    assert_eq!((r.status, r.headers["allow"].to_str().unwrap()), (204, "GET, HEAD, POST, OPTIONS"));
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    s.call(Method::OPTIONS, "/v1/nope", None, None).await.expect_error(404, "not_found");
}

const OPS: &str = "https://ops.example.com";

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [("origin", origin), ("access-control-request-method", "POST"), ("access-control-request-headers", "authorization")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_configured_origins_only() {
    let s = Server::start(&[], Some(&format!("[server]\ncors_origins = [\"{OPS}\", \"http://localhost:3000\"]\n")));
    // A preflight from an allowed origin.
    let r = s.call_with(Method::OPTIONS, "/v1/trips", None, None, &preflight(OPS)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let h = &r.headers;
    assert_eq!(h["access-control-allow-origin"], OPS);
    assert_eq!(h["access-control-allow-methods"], "GET, HEAD, POST, OPTIONS");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id", "traceparent"] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert_eq!(h["access-control-max-age"], "600");
    assert!(!h.contains_key("access-control-allow-credentials"), "bearer tokens, never cookies");
    // From another origin: 403, no CORS header.
    let r = s.call_with(Method::OPTIONS, "/v1/trips", None, None, &preflight("https://evil.example.com")).await;
    assert_error(&r, 403, "forbidden", "authentication_error");
    assert!(!r.headers.keys().any(|k| k.as_str().starts_with("access-control-")), "{:?}", r.headers);

    // The real request: the origin and the headers a page may read; errors too.
    let r = s.call_with(Method::GET, "/healthz", None, None, &[("origin", "http://localhost:3000")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["access-control-allow-origin"], "http://localhost:3000");
    let exposed = r.headers["access-control-expose-headers"].to_str().unwrap();
    for name in [
        "X-Request-Id",
        "Idempotent-Replayed",
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    assert!(r.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let r = s.call_with(Method::GET, "/v1/zones", None, None, &[("origin", OPS)]).await;
    assert_eq!(
        (r.status, &r.headers["access-control-allow-origin"]),
        (401, &OPS.parse::<hyper::header::HeaderValue>().unwrap())
    );
    let r = s.call_with(Method::GET, "/healthz", None, None, &[("origin", "https://evil.example.com")]).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.contains_key("access-control-allow-origin"));

    // `["*"]`: any origin, answered `*`.
    let any = Server::start(&[], Some("[server]\ncors_origins = [\"*\"]\n"));
    let r = any.call_with(Method::GET, "/healthz", None, None, &[("origin", "https://any.example")]).await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_there_is_no_cors_header_at_all() {
    let s = Server::start(&[], None);
    let r = s.call_with(Method::GET, "/healthz", None, None, &[("origin", OPS)]).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.keys().any(|k| k.as_str().starts_with("access-control-")), "{:?}", r.headers);
    assert!(!r.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let r = s.call_with(Method::OPTIONS, "/v1/trips", None, None, &preflight(OPS)).await;
    assert_eq!(r.status, 403);
    assert!(!r.headers.keys().any(|k| k.as_str().starts_with("access-control-")));
}

#[test]
fn a_malformed_cors_origin_stops_start_up_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["[\"https://ops.example.com/console\"]", "[\"ops.example.com\"]", "[\"*\", \"https://a.example\"]"] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("[server]\ncors_origins = {bad}\n")).unwrap();
        let out = Command::new(dispatchd_bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("cors_origins") && !stderr.contains("unknown field"), "{bad}: {stderr}");
    }
}

/// A zone whose polygon has many vertices: its JSON is well over 1 KiB.
fn round_zone() -> Value {
    let mut z = cairo_zone();
    let ring: Vec<Value> = (0..=96)
        .map(|i| {
            let a = f64::from(i % 96) * std::f64::consts::TAU / 96.0;
            json!([31.25 + 0.2 * a.cos(), 30.1 + 0.15 * a.sin()])
        })
        .collect();
    z["polygon"]["coordinates"] = json!([ring]);
    z
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_json_is_gzipped_when_the_client_takes_it() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, round_zone()).await.expect(201);
    let plain = s.get("/v1/zones", ADMIN).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.len() >= 1024, "the fixture is large: {}", plain.body.len());
    assert!(!plain.headers.contains_key("content-encoding"), "no Accept-Encoding: identity");

    let gz =
        s.call_with(Method::GET, "/v1/zones", Some(ADMIN), None, &[("accept-encoding", "br;q=1, gzip;q=0.8")]).await;
    assert_eq!(
        (gz.status, &gz.headers["content-encoding"]),
        (200, &"gzip".parse::<hyper::header::HeaderValue>().unwrap())
    );
    assert_eq!(gz.headers["content-length"], gz.body.len().to_string().as_str());
    assert!(gz.headers.get_all("vary").iter().any(|v| v == "Accept-Encoding"));
    assert!(gz.body.len() < plain.body.len());
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_end(&mut out).unwrap();
    let (a, b): (Value, Value) = (serde_json::from_slice(&out).unwrap(), serde_json::from_slice(&plain.body).unwrap());
    assert_eq!(a, b, "the gzipped answer is the identity answer");

    // Refused with q=0, not worth it for a small body, never on HEAD.
    let r = s.call_with(Method::GET, "/v1/zones", Some(ADMIN), None, &[("accept-encoding", "gzip;q=0, *;q=0.5")]).await;
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.body, plain.body);
    let r = s.call_with(Method::GET, "/healthz", None, None, &[("accept-encoding", "gzip")]).await;
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.json["status"], "ok");
    let r = s.call_with(Method::HEAD, "/v1/zones", Some(ADMIN), None, &[("accept-encoding", "gzip")]).await;
    assert!(!r.headers.contains_key("content-encoding") && r.body.is_empty());
    assert_eq!(r.headers["content-length"], plain.body.len().to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_says_the_limit_and_when_it_resets() {
    let s = Server::start(&[], Some("[limits]\nip_per_min = 2\nuser_per_min = 3\n"));
    // Counted unauthenticated answers say what is left of the IP's quota.
    let first = s.call(Method::GET, "/v1/zones", None, None).await;
    assert_eq!(first.status, 401);
    assert_eq!(
        (&first.headers["ratelimit-limit"], &first.headers["ratelimit-remaining"]),
        (&"2".parse::<hyper::header::HeaderValue>().unwrap(), &"1".parse::<hyper::header::HeaderValue>().unwrap())
    );
    s.call(Method::GET, "/v1/zones", None, None).await;
    let r = s.call(Method::GET, "/v1/zones", None, None).await;
    assert_error(&r, 429, "rate_limited", "rate_limit_error");
    let h = &r.headers;
    assert_eq!((h["ratelimit-limit"].to_str().unwrap(), h["ratelimit-remaining"].to_str().unwrap()), ("2", "0"));
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(h["ratelimit-reset"], h["retry-after"]);
    // A user's answers count down their own quota.
    let (_, rider) = user(&s, "rider", 1).await;
    // 3 a minute: a slot comes back only after 20 s, far longer than these requests take.
    for left in (0..3).rev() {
        let r = s.get("/v1/zones", &rider).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            (r.headers["ratelimit-limit"].to_str().unwrap(), r.headers["ratelimit-remaining"].to_str().unwrap()),
            ("3", left.to_string().as_str())
        );
    }
    let r = s.get("/v1/zones", &rider).await;
    assert_error(&r, 429, "rate_limited", "rate_limit_error");
    assert_eq!(r.headers["ratelimit-limit"], "3");
    // Unlimited routes and the bootstrap admin carry none.
    assert!(!s.call(Method::GET, "/healthz", None, None).await.headers.contains_key("ratelimit-limit"));
    assert!(!s.get("/v1/zones", ADMIN).await.headers.contains_key("ratelimit-limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_traceparent_is_logged_and_a_malformed_one_ignored() {
    let s = Server::start(&[], None);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    s.call_with(Method::GET, "/healthz", None, None, &[("traceparent", tp), ("x-request-id", "traced-1")])
        .await
        .expect(200);
    let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    s.call_with(Method::GET, "/healthz", None, None, &[("traceparent", bad), ("x-request-id", "traced-2")])
        .await
        .expect(200);
    s.call_with(Method::GET, "/healthz", None, None, &[("traceparent", "garbage"), ("x-request-id", "traced-3")])
        .await
        .expect(200);
    let line = log_line(&s, "traced-1");
    assert_eq!(line["fields"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{line}");
    assert_eq!(line["fields"]["parent_id"], "00f067aa0ba902b7", "{line}");
    for id in ["traced-2", "traced-3"] {
        let line = log_line(&s, id);
        assert_eq!((&line["fields"]["trace_id"], &line["fields"]["parent_id"]), (&json!("-"), &json!("-")), "{line}");
    }
}
