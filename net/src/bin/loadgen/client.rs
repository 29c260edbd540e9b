//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection to `dispatchd`,
//! requests with a bearer token and a JSON body.
//!
//! Guarantees:
//! - [`Http::call`] never panics and always answers: whatever fails on the client's side
//!   (connect, send, a timeout, a header the token cannot form) becomes a status 599 with
//!   `error.code` `connection_failed`, `timeout` or `invalid_header`; a body that is not
//!   JSON becomes `Value::Null`;
//! - no exchange waits more than [`TIMEOUT`], and a request is tried at most three times;
//! - every POST carries one `Idempotency-Key` for all its tries, so a request retried on a
//!   new connection after it was applied answers the first outcome instead of being
//!   applied twice (the double booking apps make when they retry without one);
//! - a connection given a source address ([`Http::from_source`], [`connect`]) leaves from
//!   that address: a run of 100,000 sockets spreads them over 127.0.0.x, since one
//!   (source, destination) pair has only the ~28,000 ports of the ephemeral range.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Longest wait for one try of one exchange (connect, send, read the whole answer).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The status of an answer the server never gave (the client's own failures).
pub const NO_ANSWER: u16 = 599;

/// One keep-alive HTTP/1.1 connection, opened on first use and again after it breaks.
pub struct Http {
    addr: SocketAddr,
    source: Option<IpAddr>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A TCP connection to `addr` with Nagle off, from `source` (port chosen by the kernel)
/// when given.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let stream = match source {
        None => tokio::net::TcpStream::connect(addr).await?,
        Some(ip) => {
            let socket = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Http {
    /// A connection to `addr`, not opened yet.
    pub fn new(addr: SocketAddr) -> Self {
        Http { addr, source: None, sender: None }
    }

    /// A connection to `addr` from `source` (`None`: whichever the kernel picks), not opened yet.
    pub fn from_source(addr: SocketAddr, source: Option<IpAddr>) -> Self {
        Http { addr, source, sender: None }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `method path` with `token` and `body`; answers the status and the JSON body.
    pub async fn call(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let key = (method == "POST").then(|| format!("lg-{:016x}", rand::random::<u64>()));
        let body = Bytes::from(body.as_ref().map(Value::to_string).unwrap_or_default());
        let mut failure = "connection_failed";
        for _ in 0..3 {
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string())
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json");
            if let Some(key) = &key {
                req = req.header("idempotency-key", key);
            }
            let req = match req.body(Full::new(body.clone())) {
                Ok(req) => req,
                Err(e) => return (NO_ANSWER, json!({"error": {"code": "invalid_header", "message": e.to_string()}})),
            };
            match tokio::time::timeout(TIMEOUT, self.exchange(req)).await {
                Ok(Some(answer)) => return answer,
                Ok(None) => failure = "connection_failed",
                Err(_) => failure = "timeout",
            }
            self.sender = None;
        }
        (NO_ANSWER, json!({"error": {"code": failure}}))
    }

    /// One try: (re)connects if needed, sends, reads the whole answer. `None` if the
    /// connection failed at any point.
    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Option<(u16, Value)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = connect(self.addr, self.source).await.ok()?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut()?;
        sender.ready().await.ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}
