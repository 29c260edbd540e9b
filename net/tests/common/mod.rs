//! What the black-box suites of `dispatchd` share: the real binary started on
//! `127.0.0.1:0 --dev` with a temporary data dir and fixed secrets ([`Server`]), an HTTP
//! client (hyper) and a WebSocket client (tokio-tungstenite) over real sockets, and a few
//! fixtures (the Cairo zone, users, online drivers, trips). Timeouts are generous: nothing
//! here depends on the machine's speed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

// ----- issue 21 -----
pub mod nats;

// ----- issues 19, 23: staff sign-in -----
pub mod totp;

pub const ADMIN: &str = "test-admin-token-0123456789abcdef";
/// Long enough for a slow, shared machine; never reached when things work.
pub const WAIT: Duration = Duration::from_secs(30);

/// The `dispatchd` under test. `DISPATCH_TEST_BIN` runs a suite against another build
/// (an older one, to see a regression test fail there).
pub fn dispatchd_bin() -> String {
    std::env::var("DISPATCH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dispatchd").to_owned())
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Every line the process printed on stdout so far.
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(args: &[&str], config: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, args, config)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[&str], config: Option<&str>) -> Server {
        Self::start_env(dir, args, config, &[])
    }

    pub fn start_env(dir: tempfile::TempDir, args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> Server {
        Self::start_on(dir, "127.0.0.1:0", args, config, env)
    }

    /// Started listening on `listen` (a node of a cluster advertises a known port).
    pub fn start_on(
        dir: tempfile::TempDir,
        listen: &str,
        args: &[&str],
        config: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new(dispatchd_bin());
        cmd.args(["serve", "--dev", "--listen", listen, "--data-dir"]).arg(dir.path().join("data"));
        if let Some(c) = config {
            let path = dir.path().join("dispatch.toml");
            std::fs::write(&path, c).unwrap();
            cmd.arg("--config").arg(path);
        }
        cmd.args(args)
            .env("DISPATCH_ADMIN_TOKEN", ADMIN)
            .env("DISPATCH_TOKEN_SECRET", "test-token-secret-0123456789abcdef0123456789")
            .env("DISPATCH_WEBHOOK_SECRET_SIM", "test-webhook-secret-0123456789")
            .env("DISPATCH_SMS_SINK", format!("file:{}", dir.path().join("sms.jsonl").display()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                seen.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "no 'listening on' line; stderr: {}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap()
            )
        });
        Server { child, addr: addr.parse().unwrap(), dir, stdout: lines }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap()
    }

    /// A metric's value (the first series whose name and labels are exactly `series`).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics", ADMIN).await.text;
        metric_in(&text, series).unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    /// The code of the last OTP sent to `phone` (the file sink).
    pub fn otp_code(&self, phone: &str) -> String {
        let sms = std::fs::read_to_string(self.dir.path().join("sms.jsonl")).unwrap();
        let line: Value =
            sms.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).rfind(|l| l["to"] == phone).unwrap();
        line["code"].as_str().unwrap().to_owned()
    }

    /// Signs `phone` in by OTP as `role`: (token, user).
    pub async fn sign_in(&self, phone: &str, role: &str) -> (String, Value) {
        let ask = json!({"phone": phone, "role": role}).to_string();
        self.call(Method::POST, "/v1/auth/otp", None, Some(&ask)).await.expect(202);
        let verify = json!({"phone": phone, "code": self.otp_code(phone)}).to_string();
        let v = self.call(Method::POST, "/v1/auth/otp/verify", None, Some(&verify)).await.expect(200);
        (v["token"].as_str().unwrap().to_owned(), v["user"].clone())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        request_over(stream, &self.addr.to_string(), method, path, token, body, headers).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(&body.to_string())).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn ws(&self, token: &str) -> Ws {
        let mut req = format!("ws://{}/v1/ws", self.addr).into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.unwrap().unwrap();
        ws
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "dispatchd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the first series of a Prometheus text whose name and labels are exactly
/// `series`, if any.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
    /// The body's bytes as they came (a gzipped body stays gzipped).
    pub body: Bytes,
}

/// One HTTP/1.1 request over `io` (plain TCP, a TCP socket bound to a chosen source
/// address, or TLS), its answer read whole.
pub async fn request_over<I>(
    io: I,
    host: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", host);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned()))).unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, json, text: String::from_utf8_lossy(&bytes).into_owned(), body: bytes }
}

impl Reply {
    /// A header of the answer, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        self.json
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.json["error"]["code"].as_str()), (status, Some(code)), "{}", self.text);
        assert!(self.headers.contains_key("x-request-id"));
    }
}

/// The next JSON frame of type `ty` (other frames are skipped).
pub async fn next_of(ws: &mut Ws, ty: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == ty {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended while waiting for {ty}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {ty} frame"))
}

/// Whether the server closes `ws` within `WAIT` (what it still sends meanwhile is read
/// and skipped).
pub async fn closed_within_wait<S>(ws: &mut S) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

pub fn cairo_zone() -> Value {
    json!({"name": "Cairo", "currency": "EGP", "active": true,
        "polygon": {"type": "Polygon", "coordinates": [[[31.0,29.9],[31.5,29.9],[31.5,30.3],[31.0,30.3],[31.0,29.9]]]},
        "pricing": {"economy": {"base_minor": 1500, "per_km_minor": 450, "per_min_minor": 75,
            "minimum_minor": 2500, "booking_fee_minor": 300, "cancel_fee_minor": 1000,
            "wait_per_min_minor": 50, "free_wait_s": 180, "commission_bps": 1500}},
        "surge": {"enabled": false, "max_bps": 10000}, "extra_fee_minor": 0})
}

pub const HERE: (f64, f64) = (30.0444, 31.2357);

/// A city: the zone, and users made by the admin. Returns (user json, token).
pub async fn user(s: &Server, role: &str, n: u32) -> (Value, String) {
    let mut body = json!({"role": role, "name": format!("{role} {n}"), "phone": format!("+2010{:08}", n)});
    if role == "driver" {
        body["vehicle"] = json!({"category": "economy", "plate": format!("CAI {n}")});
    }
    let v = s.post("/v1/admin/users", ADMIN, body).await.expect(201);
    (v["user"].clone(), v["token"].as_str().unwrap().to_owned())
}

pub async fn online_driver(s: &Server, n: u32, at: (f64, f64)) -> (Value, String) {
    let (u, t) = user(s, "driver", n).await;
    let r = s.post("/v1/driver/status", &t, json!({"status": "online", "location": {"lat": at.0, "lng": at.1}})).await;
    assert_eq!(r.expect(200)["availability"], "available");
    (u, t)
}

pub async fn create_trip(s: &Server, rider: &str) -> Value {
    let body = json!({"pickup": {"lat": HERE.0, "lng": HERE.1, "address": "Tahrir"},
        "dropoff": {"lat": 30.06, "lng": 31.25}, "category": "economy", "payment_method": "cash"});
    s.post("/v1/trips", rider, body).await.expect(201)
}

/// A fake router (OSRM) on loopback: every request is answered `200` with `body` (an
/// OSRM JSON answer), and its head (request line and headers) is sent on the channel
/// returned. Returns the router's URL and that channel.
pub async fn fake_router(body: String) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let osrm = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", osrm.local_addr().unwrap());
    let (heads_tx, heads) = tokio::sync::mpsc::unbounded_channel();
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = osrm.accept().await else { return };
            let (heads_tx, body) = (heads_tx.clone(), std::sync::Arc::clone(&body));
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = heads_tx.send(String::from_utf8_lossy(&got).into_owned());
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, heads)
}

/// The notifications of `kind` that `GET /v1/admin/notifications{query}` lists (newest
/// first), once `done` holds for them (polled: the worker runs every 200 ms and a retry
/// waits about a second); what there is when `WAIT` is over.
pub async fn notifications_when(s: &Server, query: &str, kind: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let page = s.get(&format!("/v1/admin/notifications{query}"), ADMIN).await.expect(200);
        let items: Vec<Value> =
            page["items"].as_array().unwrap().iter().filter(|n| n["kind"] == kind).cloned().collect();
        if done(&items) || std::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
