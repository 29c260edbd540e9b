//! Writes sent to a follower, forwarded to the leader (API.md "Cluster", "v1.1 details":
//! a follower never applies a write itself).
//!
//! Owns the forwarding of an HTTP request ([`forward`]: its method, path and query, body
//! and end-to-end headers, through one pooled client, 5 s at most), the cluster-internal
//! signature that marks a forwarded request ([`sign`], [`trusted`]), the follower's
//! read-your-writes wait ([`wait_applied`]), and the forwarding of commands that come in
//! over a WebSocket (a location, a chat message, a presence report: [`submit`], answered
//! by `POST /v1/cluster/commands` on the leader).
//!
//! Guarantees:
//! - a request is forwarded at most once: it carries `X-Dispatch-Forwarded: <node id>`
//!   and a signature (`X-Dispatch-Forwarded-Auth: <unix s>.<hex HMAC-SHA256>`, keyed from
//!   the token secret every node shares, over the time, the node, the method, the path
//!   and query, and the request id); a node that does not lead answers such a request
//!   `503 not_leader` instead of passing it on;
//! - the signature is only believed within [`SKEW_S`] of this node's clock, and only
//!   when it verifies: an outside client cannot skip the leader's rate limits by sending
//!   the header;
//! - no leader known, the leader unreachable or silent for [`TIMEOUT`]: `503 not_leader`
//!   with `Retry-After` (the client retries with the same `Idempotency-Key`);
//! - the leader's answer is returned as it was given (status, headers but hop-by-hop
//!   ones, body), with `X-Dispatch-Forwarded-By: <leader id>`; before it is returned the
//!   follower waits (at most [`READ_YOUR_WRITES`]) until it applied the LSN the leader
//!   reported in `X-Dispatch-Lsn`, so a client that writes then reads through the same
//!   follower sees its write.

use std::time::Duration;

use bytes::Bytes;
use dispatch_core::{Actor, Command, Leadership};
use dispatch_storage::Lsn;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::Node;
use crate::auth::Keys;
use crate::http::{ApiError, Resp};

/// Marks a request one node forwarded to another: the forwarding node's id.
pub const FORWARDED: &str = "x-dispatch-forwarded";
/// The forwarded request's signature: `<unix seconds>.<hex HMAC-SHA256>`.
pub const FORWARDED_AUTH: &str = "x-dispatch-forwarded-auth";
/// On a forwarded answer: the leader that answered.
pub const FORWARDED_BY: &str = "x-dispatch-forwarded-by";
/// On the leader's answer to a forwarded request: the LSN its write reached.
pub const LSN: &str = "x-dispatch-lsn";
/// The path of the leader's endpoint for commands that came in over a follower's socket.
pub const COMMANDS_PATH: &str = "/v1/cluster/commands";

/// The longest a forwarded request waits for the leader's whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a follower waits to apply a forwarded write before it answers anyway.
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(2);
/// How far apart two nodes' clocks may be for a signature to be believed, seconds.
pub const SKEW_S: i64 = 60;
/// The largest answer a leader's forwarded answer may have (a page of trips is far less).
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// The pooled client writes are forwarded through (plain HTTP: nodes talk on the
/// cluster's own network; API-NOTES).
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A new pooled client.
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// What a signature covers.
fn signed_text(at_s: i64, node: &str, method: &str, path_and_query: &str, request_id: &str) -> String {
    format!("dispatch-forward\0{at_s}\0{node}\0{method}\0{path_and_query}\0{request_id}")
}

/// The `X-Dispatch-Forwarded-Auth` value for a request `node` forwards at `now_s`.
pub fn sign(keys: &Keys, now_s: i64, node: &str, method: &str, path_and_query: &str, request_id: &str) -> String {
    let tag = keys.cluster_tag(signed_text(now_s, node, method, path_and_query, request_id).as_bytes());
    format!("{now_s}.{tag}")
}

/// The node that forwarded this request, when it carries a valid signature made within
/// [`SKEW_S`] of `now_s`; `None` for anything else (no header, a bad or old signature).
pub fn trusted(
    keys: &Keys,
    headers: &HeaderMap,
    now_s: i64,
    method: &str,
    path_and_query: &str,
    request_id: &str,
) -> Option<String> {
    let node = headers.get(FORWARDED)?.to_str().ok()?;
    if !crate::config::valid_node_id(node) {
        return None;
    }
    let (at, tag) = headers.get(FORWARDED_AUTH)?.to_str().ok()?.split_once('.')?;
    let at_s: i64 = at.parse().ok()?;
    if now_s.abs_diff(at_s) > SKEW_S.unsigned_abs() {
        return None;
    }
    keys.is_cluster_tag(signed_text(at_s, node, method, path_and_query, request_id).as_bytes(), tag)
        .then(|| node.to_owned())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the forwarding sets itself: never
/// passed on, either way.
fn is_hop_by_hop(name: &HeaderName, connection: &HeaderMap) -> bool {
    const HOP: [&str; 10] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    ];
    let n = name.as_str();
    HOP.contains(&n)
        || n == "content-length"
        || n == FORWARDED
        || n == FORWARDED_AUTH
        || connection
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(n))
}

/// The wall clock, Unix seconds (signatures only; never a state input).
pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `503 not_leader` (with `Retry-After`): the write was not applied; retry it.
pub fn not_leader(why: impl Into<String>) -> ApiError {
    ApiError::new("not_leader", why)
}

/// Forwards a request this follower took to the leader and returns its answer (see the
/// module's guarantees). `headers` are the client's; the body was read within the
/// route's limit already.
pub async fn forward(
    keys: &Keys,
    node: &Node,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    request_id: &str,
) -> Result<Resp, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(leader) = node.leader() else {
        node.forwarded.no_leader.fetch_add(1, Relaxed);
        return Err(not_leader("no leader is known just now; retry"));
    };
    let mut req = Request::builder().method(method.clone()).uri(format!("{}{path_and_query}", leader.url));
    if let Some(h) = req.headers_mut() {
        for (name, value) in headers {
            // The leader answers identity: this node's answer pipeline compresses.
            if !is_hop_by_hop(name, headers) && name != hyper::header::ACCEPT_ENCODING {
                h.append(name.clone(), value.clone());
            }
        }
        let sig = sign(keys, now_s(), &node.node_id, method.as_str(), path_and_query, request_id);
        for (name, value) in [(FORWARDED, node.node_id.as_str()), (FORWARDED_AUTH, &sig), ("x-request-id", request_id)]
        {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
    }
    let req = req.body(Full::new(body)).map_err(|e| not_leader(format!("the leader's URL is unusable: {e}")))?;
    let call = async {
        let resp = node.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = Limited::new(body, MAX_ANSWER_BYTES).collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts, bytes))
    };
    let (parts, bytes) = match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            node.forwarded.unreachable.fetch_add(1, Relaxed);
            tracing::warn!(leader = %leader.node_id, error = %e, "the leader could not be reached");
            return Err(not_leader(format!("the leader {} could not be reached; retry", leader.node_id)));
        }
        Err(_) => {
            node.forwarded.unreachable.fetch_add(1, Relaxed);
            tracing::warn!(leader = %leader.node_id, "the leader did not answer in time");
            return Err(not_leader(format!("the leader {} did not answer in time; retry", leader.node_id)));
        }
    };
    node.forwarded.ok.fetch_add(1, Relaxed);
    let lsn = parts.headers.get(LSN).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<Lsn>().ok());
    if let Some(lsn) = lsn {
        wait_applied(&node.leadership, lsn, READ_YOUR_WRITES).await;
    }
    let mut resp = Resp::new(Full::new(bytes));
    *resp.status_mut() = parts.status;
    let h = resp.headers_mut();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name, &parts.headers) && name != LSN {
            h.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&leader.node_id) {
        h.insert(FORWARDED_BY, v);
    }
    Ok(resp)
}

/// Waits until `leadership` applied `lsn`, at most `bound` (then gives up quietly: the
/// write is durable on the leader; this node shows it a little later). Returns whether
/// it got there.
pub async fn wait_applied(leadership: &Leadership, lsn: Lsn, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if leadership.applied_lsn() >= lsn {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The commands a follower's sockets forward to the leader (`POST /v1/cluster/commands`
/// takes these and nothing else).
pub fn forwardable(command: &Command) -> bool {
    matches!(command, Command::UpdateLocation(_) | Command::PostMessage { .. } | Command::SetPresence { .. })
}

/// The leader's refusal of a forwarded command, as it gave it (its code is one of the
/// contract's; a socket shows it in an `error` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The error code (`not_leader` when the leader could not be asked).
    pub code: String,
    /// What the leader said.
    pub message: String,
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused { code: e.code.to_owned(), message: e.message }
    }
}

/// Sends a command that came in over this follower's socket to the leader's
/// `POST /v1/cluster/commands`: the leader's answer body (`{"lsn", "message"?}`), or its
/// refusal.
pub async fn submit(node: &Node, actor: Actor, command: Command) -> Result<Value, Refused> {
    if !forwardable(&command) {
        return Err(not_leader("this node does not lead").into());
    }
    let body = serde_json::to_vec(&json!({"actor": actor, "command": command}))
        .map_err(|e| Refused { code: "internal".into(), message: format!("a command could not be encoded: {e}") })?;
    let mut headers = HeaderMap::new();
    headers.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request_id = format!("req_{}", crate::hex::random_hex(8));
    let resp =
        forward(&node.keys, node, &Method::POST, COMMANDS_PATH, &headers, Bytes::from(body), &request_id).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    Err(Refused {
        code: v["error"]["code"].as_str().unwrap_or("not_leader").to_owned(),
        message: v["error"]["message"].as_str().unwrap_or("the leader refused the command").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;
    use std::sync::Arc;

    fn keys() -> Keys {
        Keys::new(&[9u8; 32], "admin-token-0123456789abcdef")
    }

    fn headers(node: &str, auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(FORWARDED, HeaderValue::from_str(node).unwrap());
        h.insert(FORWARDED_AUTH, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn only_a_fresh_signature_of_this_request_by_this_cluster_is_trusted() {
        let k = keys();
        let sig = sign(&k, 1_000, "n2", "POST", "/v1/trips?x=1", "req_1");
        let ok = trusted(&k, &headers("n2", &sig), 1_010, "POST", "/v1/trips?x=1", "req_1");
        assert_eq!(ok.as_deref(), Some("n2"));
        // Another node's name, method, path, request id; an old or future signature.
        assert_eq!(trusted(&k, &headers("n3", &sig), 1_010, "POST", "/v1/trips?x=1", "req_1"), None);
        assert_eq!(trusted(&k, &headers("n2", &sig), 1_010, "PUT", "/v1/trips?x=1", "req_1"), None);
        assert_eq!(trusted(&k, &headers("n2", &sig), 1_010, "POST", "/v1/trips", "req_1"), None);
        assert_eq!(trusted(&k, &headers("n2", &sig), 1_010, "POST", "/v1/trips?x=1", "req_2"), None);
        assert_eq!(trusted(&k, &headers("n2", &sig), 1_061, "POST", "/v1/trips?x=1", "req_1"), None);
        assert_eq!(trusted(&k, &headers("n2", &sig), 939, "POST", "/v1/trips?x=1", "req_1"), None);
        // Another cluster's key; the header alone; garbage.
        let other = Keys::new(&[8u8; 32], "admin-token-0123456789abcdef");
        assert_eq!(trusted(&other, &headers("n2", &sig), 1_010, "POST", "/v1/trips?x=1", "req_1"), None);
        let mut bare = HeaderMap::new();
        bare.insert(FORWARDED, HeaderValue::from_static("n2"));
        assert_eq!(trusted(&k, &bare, 1_010, "POST", "/v1/trips?x=1", "req_1"), None);
        for junk in ["", ".", "x.y", "1000.", "1000.zz", "99999999999999999999.00"] {
            assert_eq!(trusted(&k, &headers("n2", junk), 1_010, "POST", "/v1/trips?x=1", "req_1"), None, "{junk:?}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_named_by_connection_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(hyper::header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        for n in ["transfer-encoding", "host", "x-secret-hop", "content-length", FORWARDED, FORWARDED_AUTH] {
            assert!(is_hop_by_hop(&HeaderName::from_static(n), &h), "{n}");
        }
        for n in ["authorization", "idempotency-key", "content-type", "x-paystack-signature", "stripe-signature"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(n), &h), "{n}");
        }
    }

    #[tokio::test]
    async fn without_a_leader_a_write_is_refused_not_leader_and_counted() {
        let (node, _) = super::super::tests::node("n2", None);
        let e = forward(&keys(), &node, &Method::POST, "/v1/trips", &HeaderMap::new(), Bytes::new(), "req_1")
            .await
            .unwrap_err();
        assert_eq!((e.code, e.status, e.retry_after_s), ("not_leader", StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        assert_eq!(node.forwarded.no_leader.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_unreachable_leader_is_not_leader_too() {
        // A port nobody listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let (node, _) = super::super::tests::node("n2", Some(("n1", &url)));
        let e = forward(&keys(), &node, &Method::POST, "/v1/trips", &HeaderMap::new(), Bytes::new(), "req_1")
            .await
            .unwrap_err();
        assert_eq!(e.code, "not_leader");
        assert_eq!(node.forwarded.unreachable.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_leaders_answer_comes_back_whole_after_the_follower_applied_its_lsn() {
        use hyper::server::conn::http1;
        use hyper::service::service_fn;
        // A stand-in leader: checks what it was sent, answers 201 with an LSN.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let k = Arc::new(keys());
        let leader_keys = Arc::clone(&k);
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let k = Arc::clone(&leader_keys);
                async move {
                    let h = req.headers().clone();
                    let rid = h.get("x-request-id").unwrap().to_str().unwrap().to_owned();
                    let ok = trusted(&k, &h, now_s(), "POST", "/v1/trips?a=b", &rid).is_some();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let echo = json!({
                        "signed": ok,
                        "auth": h.get("authorization").and_then(|v| v.to_str().ok()),
                        "key": h.get("idempotency-key").and_then(|v| v.to_str().ok()),
                        "gzip": h.contains_key("accept-encoding"),
                        "body": String::from_utf8_lossy(&body),
                    });
                    let mut r = hyper::Response::new(Full::new(Bytes::from(echo.to_string())));
                    *r.status_mut() = StatusCode::CREATED;
                    r.headers_mut().insert(LSN, HeaderValue::from_static("7"));
                    r.headers_mut().insert("location", HeaderValue::from_static("/v1/trips/t1"));
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
        });
        let (node, _) = super::super::tests::node("n2", Some(("n1", &url)));
        let node = Arc::new(node);
        let applier = Arc::clone(&node);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            applier.leadership.set_applied(7, 1);
        });
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        h.insert("idempotency-key", HeaderValue::from_static("k-1"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let resp = forward(&k, &node, &Method::POST, "/v1/trips?a=b", &h, Bytes::from_static(b"{\"x\":1}"), "req_9")
            .await
            .unwrap();
        assert!(node.leadership.applied_lsn() >= 7, "the answer waited for the follower to apply LSN 7");
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()[FORWARDED_BY], "n1");
        assert_eq!(resp.headers()["location"], "/v1/trips/t1");
        assert!(!resp.headers().contains_key(LSN));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, json!({"signed": true, "auth": "Bearer abc", "key": "k-1", "gzip": false, "body": "{\"x\":1}"}));
    }

    #[tokio::test]
    async fn waiting_to_apply_is_bounded() {
        let l = Leadership::new();
        assert!(!wait_applied(&l, 3, Duration::from_millis(20)).await);
        l.set_applied(3, 0);
        assert!(wait_applied(&l, 3, Duration::from_millis(0)).await);
    }

    #[test]
    fn only_socket_commands_are_forwardable() {
        assert!(forwardable(&Command::SetPresence { connected: true }));
        assert!(!forwardable(&Command::Tick));
    }
}
