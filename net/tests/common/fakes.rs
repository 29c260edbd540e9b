//! Local fakes of the notification providers, shared by the suites that need them
//! (`notify_providers.rs`: each provider alone; `notify_dispatchd.rs`: through `dispatchd`).
//! Included with `#[path]` by those suites only, so the others do not build it.
//!
//! A scripted HTTP server (HTTP/1.1, or HTTP/2 with prior knowledge) that records every
//! request ([`fake`]); on it, APNs ([`apns_fake`]: verifies the ES256 provider token, the
//! topic, the push type and the `apns-id`) and Twilio ([`twilio_fake`]: basic auth and the
//! form); and an SMTP sink ([`smtp_sink`]). Scripted answers come first, then the normal one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

// ---------------------------------------------------------------------------------------
// A scripted HTTP fake (HTTP/1.1, or HTTP/2 with prior knowledge).

/// A request the fake got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: hyper::Version,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn form(&self) -> BTreeMap<String, String> {
        form_decode(std::str::from_utf8(&self.body).unwrap())
    }
}

/// An answer: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

pub type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

pub struct Fake {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub async fn fake(h2: bool, handler: Arc<Handler>) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            version: parts.version,
                            headers: parts.headers,
                            body,
                        };
                        let (status, headers, body) = handler(&seen);
                        log.lock().unwrap().push(seen);
                        let mut resp = hyper::Response::builder().status(status);
                        for (k, v) in headers {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, std::convert::Infallible>(resp.body(Full::new(Bytes::from(body))).unwrap())
                    }
                });
                let io = TokioIo::new(tcp);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                }
            });
        }
    });
    Fake { port, seen }
}

/// Answers a fake gives in order before its normal one.
pub fn script(answers: Vec<Answer>) -> Arc<Mutex<VecDeque<Answer>>> {
    Arc::new(Mutex::new(answers.into()))
}

pub fn form_decode(s: &str) -> BTreeMap<String, String> {
    let decode = |x: &str| {
        let x = x.replace('+', " ");
        let bytes = x.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    s.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

pub fn b64url_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// A compact JWS's header and claims, once its signature verifies with `verify`.
pub fn verified_jwt(jwt: &str, verify: impl Fn(&[u8], &[u8]) -> bool) -> Option<(Value, Value)> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let signed = format!("{}.{}", parts[0], parts[1]);
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[2]).ok()?;
    if !verify(signed.as_bytes(), &sig) {
        return None;
    }
    Some((
        serde_json::from_slice(&b64url_decode(parts[0])).ok()?,
        serde_json::from_slice(&b64url_decode(parts[1])).ok()?,
    ))
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

// ---------------------------------------------------------------------------------------
// APNs

pub fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

pub struct ApnsFake {
    pub fake: Fake,
    pub answers: Arc<Mutex<VecDeque<Answer>>>,
    /// The provider key (PKCS#8 PEM, as a `.p8` file holds it), whose public half the
    /// fake verifies tokens with.
    pub key_pem: String,
}

pub const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

pub async fn apns_fake() -> ApnsFake {
    let rng = ring::rand::SystemRandom::new();
    let doc = signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let answers = script(vec![]);
    let queue = Arc::clone(&answers);
    let handler = move |req: &Seen| -> Answer {
        let refuse = |status: u16, reason: &str| (status, vec![], json!({"reason": reason}).to_string());
        if req.version != hyper::Version::HTTP_2 {
            return refuse(400, "NotHTTP2");
        }
        let Some(jwt) = req.header("authorization").strip_prefix("bearer ") else {
            return refuse(403, "MissingProviderToken");
        };
        let verify = |signed: &[u8], sig: &[u8]| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public).verify(signed, sig).is_ok()
        };
        let Some((header, claims)) = verified_jwt(jwt, verify) else { return refuse(403, "InvalidProviderToken") };
        if header != json!({"alg": "ES256", "kid": "KEYID12345"})
            || claims["iss"] != "TEAMID1234"
            || (claims["iat"].as_i64().unwrap_or(0) - now_s()).abs() > 60
        {
            return refuse(403, "InvalidProviderToken");
        }
        if req.method != "POST" || req.path != format!("/3/device/{DEVICE}") {
            return refuse(404, "BadPath");
        }
        if req.header("apns-topic") != "com.example.rider" {
            return refuse(400, "BadTopic");
        }
        if req.header("apns-push-type") != "alert" {
            return refuse(400, "InvalidPushType");
        }
        let id = req.header("apns-id").to_owned();
        if id.len() != 36 {
            return refuse(400, "BadMessageId");
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if body["aps"]["alert"]["title"].as_str().is_none_or(|t| t.is_empty()) {
            return refuse(400, "PayloadEmpty");
        }
        queue.lock().unwrap().pop_front().unwrap_or_else(|| (200, vec![("apns-id", id)], String::new()))
    };
    ApnsFake { fake: fake(true, Arc::new(handler)).await, answers, key_pem: pem(doc.as_ref()) }
}

// ---------------------------------------------------------------------------------------
// Twilio

pub async fn twilio_fake(answers: Vec<Answer>) -> Fake {
    let queue = script(answers);
    let handler = move |req: &Seen| -> Answer {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("AC0123456789abcdef:twilio-auth-token")
        );
        if req.header("authorization") != expected {
            return (401, vec![], json!({"code": 20003, "message": "Authenticate", "status": 401}).to_string());
        }
        assert_eq!(req.path, "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json");
        assert_eq!(req.header("content-type"), "application/x-www-form-urlencoded");
        let form = req.form();
        if form.get("From").map(String::as_str) != Some("+15005550006")
            || !form.contains_key("To")
            || !form.contains_key("Body")
        {
            return (
                400,
                vec![],
                json!({"code": 21603, "message": "A 'From' phone number is required.", "status": 400}).to_string(),
            );
        }
        queue.lock().unwrap().pop_front().unwrap_or_else(|| {
            (201, vec![], json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}).to_string())
        })
    };
    fake(false, Arc::new(handler)).await
}

// ---------------------------------------------------------------------------------------
// SMTP

/// What the SMTP sink got: the envelope and the message.
#[derive(Debug, Default, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A tiny SMTP server (RFC 5321, no TLS): answers `rcpt_reply` to RCPT TO and records
/// each message accepted.
pub async fn smtp_sink(rcpt_reply: &'static str) -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&mails);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let (read, mut write) = tcp.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
                let mut mail = Mail::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        "250-sink.test\r\n250 8BITMIME".into()
                    } else if upper.starts_with("MAIL FROM:") {
                        mail = Mail { from: line[10..].trim().to_owned(), ..Mail::default() };
                        "250 2.1.0 Ok".into()
                    } else if upper.starts_with("RCPT TO:") {
                        if rcpt_reply.starts_with('2') {
                            mail.to.push(line[8..].trim().to_owned());
                        }
                        rcpt_reply.into()
                    } else if upper == "DATA" {
                        write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.unwrap();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            mail.data.push_str(&l);
                            mail.data.push('\n');
                        }
                        log.lock().unwrap().push(std::mem::take(&mut mail));
                        "250 2.0.0 Ok: queued as 4F2A1C".into()
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                        return;
                    } else {
                        "250 Ok".into()
                    };
                    write.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, mails)
}
