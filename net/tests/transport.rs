//! Black-box regression tests of `dispatchd`'s transport, one or more per finding of the
//! red team's report (issue 24): the real binary on `127.0.0.1:0 --dev`, driven over real
//! loopback sockets. Timeouts are generous (`WAIT`) except where the finding states a
//! bound (`/healthz` within a second).
//!
//! Some tests open connections from `127.0.0.2` (the whole of 127.0.0.0/8 is loopback on
//! Linux): the "attacker" and the health checker are then two addresses, as they are in
//! production.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

mod common;
use common::{Reply, Ws, next_of, request_over};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
/// Long enough for a slow, shared machine; never reached when things work.
const WAIT: Duration = Duration::from_secs(30);
/// The attackers' address (the health checker and the test's own calls use 127.0.0.1).
const ATTACKER: &str = "127.0.0.2";

/// The binary under test: this build's, or `DISPATCH_TEST_BIN` (an older build, to see a
/// regression test fail on the code before its fix).
fn dispatchd_bin() -> String {
    std::env::var("DISPATCH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dispatchd").to_owned())
}

struct Server {
    child: Child,
    addr: SocketAddr,
    /// The data, the config and the logs (removed when the server is dropped).
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config: Option<&str>) -> Server {
        Self::start_wrapped(&[], config)
    }

    /// Starts `dispatchd serve` through `wrapper` (e.g. `prlimit --nofile=256`), with
    /// `config` as its file. The data, the config and the logs are in a temporary directory.
    fn start_wrapped(wrapper: &[&str], config: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(dispatchd_bin());
                c
            }
            None => Command::new(dispatchd_bin()),
        };
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("data"));
        if let Some(c) = config {
            let path = dir.path().join("dispatch.toml");
            std::fs::write(&path, c).unwrap();
            cmd.arg("--config").arg(path);
        }
        cmd.env("DISPATCH_ADMIN_TOKEN", ADMIN)
            .env("DISPATCH_TOKEN_SECRET", "test-token-secret-0123456789abcdef0123456789")
            .env("DISPATCH_WEBHOOK_SECRET_SIM", "test-webhook-secret-0123456789")
            .env("DISPATCH_SMS_SINK", format!("file:{}", dir.path().join("sms.jsonl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "no 'listening on' line; stderr: {}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap()
            )
        });
        Server { child, addr: addr.parse().unwrap(), _dir: dir }
    }

    /// One request on a fresh connection from `127.0.0.1`.
    async fn call(&self, method: Method, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        request(stream, &self.addr.to_string(), method, path, token, headers).await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), &[]).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let host = self.addr.to_string();
        request_over(stream, &host, Method::POST, path, Some(token), Some(&body.to_string()), &[]).await
    }

    /// A metric's value (the first series whose name and labels are exactly `series`).
    async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics", ADMIN).await.text;
        common::metric_in(&text, series).unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    fn ws_request(&self, token: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        let mut req = format!("ws://{}/v1/ws", self.addr).into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    }

    /// Opens a WebSocket, or says how the upgrade was refused: `Err((status, headers, body))`.
    async fn try_ws(&self, token: &str) -> Result<Ws, (u16, HeaderMap, Value)> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(self.ws_request(token))).await.unwrap() {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
                Err((resp.status().as_u16(), resp.headers().clone(), body))
            }
            Err(e) => panic!("the upgrade failed: {e}"),
        }
    }

    async fn ws(&self, token: &str) -> Ws {
        self.try_ws(token).await.unwrap_or_else(|e| panic!("the upgrade was refused: {e:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with no body over `io` (plain TCP or TLS).
async fn request<I>(
    io: I,
    host: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    request_over(io, host, method, path, token, None, headers).await
}

/// A TCP connection to `addr` from `source` (an address of 127.0.0.0/8).
async fn connect_from(
    source: &str,
    addr: SocketAddr,
    recv_buffer: Option<u32>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n)?;
    }
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// An admin-made user of `role`: its token.
async fn user(s: &Server, role: &str, n: u32) -> String {
    let mut body = json!({"role": role, "name": format!("{role} {n}"), "phone": format!("+2010{:08}", n)});
    if role == "driver" {
        body["vehicle"] = json!({"category": "economy", "plate": format!("CAI {n}")});
    }
    let v = s.post("/v1/admin/users", ADMIN, body).await.expect(201);
    v["token"].as_str().unwrap().to_owned()
}

/// How the server ended `ws`: the close frame it sent (`None` when the connection just
/// dropped without one), read within `WAIT`; other frames are skipped.
async fn close_frame(ws: &mut Ws) -> Option<(CloseCode, String)> {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some((f.code, f.reason.to_string())),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the server neither closed the socket nor hung up")
}

/// Reads `stream` until the server hangs up: the bytes it sent first. `Err` when it did
/// not hang up within `within`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return Err(got),
        }
    }
}

/// Finding 2 (High): slow-read denial of service. 300 connections that pipeline requests
/// for a file that is not rate-limited and never read an answer, against a server whose
/// descriptor limit is 256: before the fix they held their descriptors forever, accept
/// failed with EMFILE and `/healthz` stopped answering. Now the connection budget
/// (RLIMIT_NOFILE less a reserve) turns the extra ones away at once, the probe lane still
/// answers `/healthz`, and the write timeout closes the stuck ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_slow_readers_do_not_exhaust_descriptors_and_healthz_keeps_answering() {
    let s = Server::start_wrapped(&["prlimit", "--nofile=256"], None);
    // 200 pipelined requests for the console's script (about 40 KB each): megabytes of
    // answers for a client whose receive buffer is 4 KiB and that never reads.
    let pipeline = "GET /console/app.js HTTP/1.1\r\nhost: dispatch\r\n\r\n".repeat(200);
    let mut attackers = Vec::new();
    for _ in 0..300 {
        // A connection the server closed at once may refuse the write: that is fine.
        if let Ok(Ok(mut stream)) = tokio::time::timeout(WAIT, connect_from(ATTACKER, s.addr, Some(4096))).await {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(pipeline.as_bytes())).await;
            attackers.push(stream);
        }
    }
    assert!(attackers.len() >= 250, "the attack itself could not connect: {}", attackers.len());
    // While they are held: a fresh health check every 200 ms, each answered well before the
    // write timeout (10 s) frees a descriptor of the stuck ones: the probe lane, not their
    // departure, answers it. 5 s, not 1: the suite's other tests share the two cores.
    for round in 0..15 {
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            let stream = tokio::net::TcpStream::connect(s.addr).await?;
            Ok::<_, std::io::Error>(request(stream, &s.addr.to_string(), Method::GET, "/healthz", None, &[]).await)
        })
        .await;
        match answer {
            Ok(Ok(r)) => assert_eq!(r.status, 200, "round {round}: {}", r.text),
            other => panic!(
                "round {round}: /healthz did not answer within 5 s ({other:?} after {:?}) while {} slow \
                 readers were connected",
                started.elapsed(),
                attackers.len()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s.metric("dispatch_connections_refused_total{reason=\"budget\"}").await > 0.0);
    // The stuck connections are closed by the write timeout (10 s by default), though the
    // clients still hold their ends: the server's descriptors come back.
    let deadline = Instant::now() + WAIT;
    while s.metric("dispatch_connections_open").await > 2.0 {
        assert!(Instant::now() < deadline, "the slow readers are still served");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(s.metric("dispatch_connection_write_timeouts_total").await > 0.0);
    drop(attackers);
}

/// Finding 2: one address holds at most `[server] max_connections_per_ip` connections;
/// one more is accepted and closed at once (and counted) while other addresses are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_one_address_is_capped_at_max_connections_per_ip() {
    let s = Server::start(Some("[server]\nmax_connections_per_ip = 4\n"));
    let mut held = Vec::new();
    for _ in 0..4 {
        let stream = connect_from(ATTACKER, s.addr, None).await.unwrap();
        // Each is served (and stays open: keep-alive).
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get("/healthz").header("host", "x").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap().status(), 200);
        held.push(sender);
    }
    // The fifth from the same address: closed without a byte of answer.
    let mut fifth = connect_from(ATTACKER, s.addr, None).await.unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(read_until_closed(&mut fifth, WAIT).await, Ok(Vec::new()), "the fifth connection was served");
    // Another address is not affected, nor are the four held connections.
    s.call(Method::GET, "/healthz", None, &[]).await.expect(200);
    let req = Request::get("/healthz").header("host", "x").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(held[0].send_request(req).await.unwrap().status(), 200);
    assert!(s.metric("dispatch_connections_refused_total{reason=\"per_ip\"}").await >= 1.0);
    // Once one closes, the address may connect again.
    held.pop();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = connect_from(ATTACKER, s.addr, None).await.unwrap();
        again.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let got = read_until_closed(&mut again, WAIT).await.unwrap();
        if got.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the address never got its slot back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finding 4 (Medium): no per-user WebSocket cap. One rider's sixth socket (the default
/// `ws_per_user` is 5) is refused at the upgrade with `429 rate_limited` and
/// `Retry-After`, while another rider still connects; staff have a higher cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_a_riders_sixth_socket_is_refused_while_another_rider_connects() {
    let s = Server::start(None);
    let (rider, other) = (user(&s, "rider", 1).await, user(&s, "rider", 2).await);
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(s.ws(&rider).await);
    }
    match s.try_ws(&rider).await {
        Err((status, headers, body)) => {
            assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
        Ok(_) => panic!("the rider's sixth socket was accepted"),
    }
    let mut theirs = s.ws(&other).await;
    theirs.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    next_of(&mut theirs, "pong").await;
    // The five still work; once one closes, the rider may open another.
    sockets[0].send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    next_of(&mut sockets[0], "pong").await;
    let mut closing = sockets.pop().unwrap();
    closing.close(None).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while s.try_ws(&rider).await.is_err() {
        assert!(Instant::now() < deadline, "the rider never got a socket back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Staff (the ops console, several tabs) get more.
    let mut staff = Vec::new();
    for _ in 0..8 {
        staff.push(s.ws(ADMIN).await);
    }
    assert!(s.metric("dispatch_rate_limited_total{class=\"ws_sockets\"}").await >= 1.0);
}

/// Finding 10 (part): an oversized frame and a text frame that is not UTF-8 used to drop
/// the connection without a close frame. RFC 6455: close 1009 (message too big) and 1007
/// (invalid payload data). Valid UTF-8 that is bad JSON still gets an `error` frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_oversized_and_invalid_utf8_frames_are_closed_with_1009_and_1007() {
    let s = Server::start(None);
    let rider = user(&s, "rider", 1).await;
    let mut ws = s.ws(&rider).await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_of(&mut ws, "error").await["code"], "invalid_json");
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    next_of(&mut ws, "pong").await;
    // 65 KiB of text: over the 64 KiB limit.
    ws.send(Message::text("x".repeat(65 * 1024 + 1))).await.unwrap();
    let closed = close_frame(&mut ws).await;
    assert_eq!(closed.as_ref().map(|c| c.0), Some(CloseCode::Size), "{closed:?}");

    let mut ws = s.ws(&rider).await;
    let not_utf8 = Frame::message(Bytes::from_static(b"{\"type\":\"ping\xff\xfe\"}"), OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(not_utf8)).await.unwrap();
    let closed = close_frame(&mut ws).await;
    assert_eq!(closed.as_ref().map(|c| c.0), Some(CloseCode::Invalid), "{closed:?}");
}

/// Finding 11: operating behind a proxy. With `trusted_proxies`, a request from the proxy
/// (127.0.0.1 here) is limited per forwarded address (the right-most one not itself
/// trusted: a client cannot pick its bucket by prepending addresses); without it, the
/// header is ignored and every request shares the peer's bucket. The per-IP connection
/// cap does not apply to a trusted proxy's own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_11_a_trusted_proxys_forwarded_addresses_get_their_own_rate_limit_buckets() {
    let limits = "[limits]\nip_per_min = 2\n";
    let proxied = format!("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 2\n{limits}");
    let s = Server::start(Some(&proxied));
    let from = |xff: &'static str| [("x-forwarded-for", xff)];
    for _ in 0..2 {
        s.call(Method::GET, "/v1/zones", None, &from("203.0.113.1")).await.expect_error(401, "unauthorized");
    }
    s.call(Method::GET, "/v1/zones", None, &from("203.0.113.1")).await.expect_error(429, "rate_limited");
    // A client prepending an address of its choice is still 203.0.113.1 to the proxy.
    s.call(Method::GET, "/v1/zones", None, &from("198.51.100.7, 203.0.113.1")).await.expect_error(429, "rate_limited");
    // Another forwarded address has its own bucket.
    s.call(Method::GET, "/v1/zones", None, &from("203.0.113.2")).await.expect_error(401, "unauthorized");
    // The proxy's own address is not capped per IP: three connections at once from it.
    let mut held = Vec::new();
    for _ in 0..3 {
        let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get("/healthz").header("host", "x").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap().status(), 200);
        held.push(sender);
    }
    drop(held);

    // Without the setting, the header is ignored: every request is the peer's.
    let s = Server::start(Some(limits));
    s.call(Method::GET, "/v1/zones", None, &from("203.0.113.1")).await.expect_error(401, "unauthorized");
    s.call(Method::GET, "/v1/zones", None, &from("203.0.113.2")).await.expect_error(401, "unauthorized");
    s.call(Method::GET, "/v1/zones", None, &from("203.0.113.3")).await.expect_error(429, "rate_limited");
}

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM, DER).
fn self_signed() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    (cert.pem(), signing_key.serialize_pem(), cert.der().clone())
}

/// A TLS connection to `addr` that trusts `cert` only, for the name `localhost`.
async fn tls_connect(
    addr: SocketAddr,
    cert: rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.unwrap().unwrap()
}

/// Finding 11: native TLS. `[server] tls_cert` and `tls_key`: `/healthz` over TLS with
/// `Strict-Transport-Security`, a WebSocket over `wss://`, and plain HTTP refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_11_tls_serves_healthz_with_hsts_and_websockets_over_wss() {
    let (cert_pem, key_pem, der) = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let config = format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\n", cert.display(), key.display());
    let s = Server::start(Some(&config));
    let host = format!("localhost:{}", s.addr.port());

    let tls = tls_connect(s.addr, der.clone()).await;
    let r = request(tls, &host, Method::GET, "/healthz", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
    // Errors carry it too.
    let tls = tls_connect(s.addr, der.clone()).await;
    let r = request(tls, &host, Method::GET, "/v1/zones", None, &[]).await;
    r.expect_error(401, "unauthorized");
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");

    // A WebSocket over wss://.
    let tls = tls_connect(s.addr, der.clone()).await;
    let mut req = format!("wss://{host}/v1/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                return t.to_string();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&pong).unwrap()["type"], "pong");

    // Plain HTTP to a TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let got = read_until_closed(&mut plain, WAIT).await.unwrap();
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
}

/// Finding 11: an unreadable certificate, a key that is not the certificate's, or only one
/// of the two keys stop start-up with a clear message and exit code 2, like any other
/// configuration error.
#[test]
fn finding_11_unreadable_or_mismatched_tls_files_stop_start_up_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, _, _) = self_signed();
    let (_, other_key_pem, _) = self_signed();
    let (cert, other_key, missing) =
        (dir.path().join("cert.pem"), dir.path().join("other-key.pem"), dir.path().join("missing.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&other_key, other_key_pem).unwrap();
    let cases = [
        (format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\n", missing.display(), other_key.display()), "tls_cert"),
        (format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\n", cert.display(), other_key.display()), "tls_key"),
        (format!("[server]\ntls_cert = {:?}\n", cert.display()), "tls_key"),
    ];
    for (i, (config, names)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("dispatch-{i}.toml"));
        std::fs::write(&path, config).unwrap();
        let out = Command::new(dispatchd_bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join(format!("data-{i}")))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(stderr.contains(names), "case {i} should name {names}: {stderr}");
    }
}
