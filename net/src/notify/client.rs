//! The HTTP client the push and SMS providers share: one request to a provider's endpoint
//! over HTTP/1.1 (FCM, the OAuth token endpoint, Twilio) or HTTP/2 (APNs, which speaks
//! nothing else), on TLS for `https://` or in the clear for `http://` (tests' fakes).
//!
//! Guarantees: `https://` is rustls on `ring`, verified against Mozilla's roots compiled
//! in (`webpki-roots`), never the platform's store, with ALPN `h2` or `http/1.1`; every
//! exchange is bounded by [`TIMEOUT`] and its answer's body by [`MAX_ANSWER_BYTES`]; a
//! failure is an `Err` with words for the outbox's `last_error`, never a panic. HTTP/2
//! keeps one connection per provider and opens a new one when it breaks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderMap;
use tokio_rustls::rustls;

/// How long a provider has to answer one request (connection included).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer's body read (providers answer a few hundred bytes).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` honoured (a provider asking for more is asked again then).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A provider's base URL, parsed once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://` (else `http://`).
    pub https: bool,
    /// The host as connected to (an IPv6 literal without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `host` or `host:port` (brackets kept): the `Host` header / `:authority`.
    pub authority: String,
    /// The URL's path without a trailing `/` (usually empty).
    pub base_path: String,
}

impl Endpoint {
    /// Parses `url` (`http://` or `https://`, no query); `key` names the setting in errors.
    pub fn parse(key: &str, url: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("{key}: {why} (got {:?})", url.chars().take(80).collect::<String>());
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the URL must be https:// (or http:// for a local test server)")),
        };
        let raw_host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("the URL has no host"))?;
        if uri.query().is_some() {
            return Err(bad("the URL must not have a query"));
        }
        let host = raw_host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let default_port = if https { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = if port == default_port { raw_host.to_owned() } else { format!("{raw_host}:{port}") };
        let base_path = uri.path().trim_end_matches('/').to_owned();
        if https {
            rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| bad("the host is not a name TLS can verify"))?;
        }
        Ok(Endpoint { https, host, port, authority, base_path })
    }

    /// The absolute URL of `path` (which starts with `/`) on this endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}{}", if self.https { "https" } else { "http" }, self.authority, self.base_path, path)
    }
}

/// A provider's answer.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body (at most [`MAX_ANSWER_BYTES`]).
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `Retry-After` header: delay-seconds or an HTTP-date, at most [`MAX_RETRY_AFTER`].
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(hyper::header::RETRY_AFTER)?.to_str().ok()?.trim();
        parse_retry_after(value, SystemTime::now())
    }
}

/// `Retry-After`'s value (RFC 9110 §10.2.3) at `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
            let at = SystemTime::from(at);
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Which HTTP the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1, a connection per request.
    Http1,
    /// HTTP/2 (prior knowledge on `http://`, ALPN `h2` on `https://`), one kept connection.
    Http2,
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// A client of one endpoint.
pub struct Client {
    endpoint: Endpoint,
    version: Version,
    tls: Option<tokio_rustls::TlsConnector>,
    /// HTTP/2: the live connection, if any.
    h2: tokio::sync::Mutex<Option<H2Sender>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).field("version", &self.version).finish()
    }
}

/// A `Box<dyn Error>` for the plumbing below.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Client {
    /// A client of `endpoint` speaking `version`, trusting Mozilla's roots.
    pub fn new(endpoint: Endpoint, version: Version) -> Result<Client, String> {
        Self::with_roots(endpoint, version, rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
    }

    /// The same, trusting `roots` (tests: a loopback certificate).
    pub fn with_roots(endpoint: Endpoint, version: Version, roots: rustls::RootCertStore) -> Result<Client, String> {
        let tls = if endpoint.https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![match version {
                Version::Http1 => b"http/1.1".to_vec(),
                Version::Http2 => b"h2".to_vec(),
            }];
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Client { endpoint, version, tls, h2: tokio::sync::Mutex::new(None) })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `method path` (`path` below the endpoint's, starting with `/`) with `headers`
    /// and `body`; the answer, or why there is none (connection, TLS, timeout).
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut req = hyper::Request::builder().method(method);
        req = match self.version {
            Version::Http1 => req
                .uri(match format!("{}{path}", self.endpoint.base_path) {
                    p if p.is_empty() => "/".to_owned(),
                    p => p,
                })
                .header(hyper::header::HOST, self.endpoint.authority.as_str()),
            Version::Http2 => req.uri(self.endpoint.url(path)),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("bad request: {e}"))?;
        match tokio::time::timeout(TIMEOUT, self.exchange(req)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(format!("{}: {e}", self.endpoint.authority)),
            Err(_) => Err(format!("{}: no answer within {} s", self.endpoint.authority, TIMEOUT.as_secs())),
        }
    }

    async fn exchange(&self, req: hyper::Request<Full<Bytes>>) -> Result<Reply, BoxError> {
        let resp = match self.version {
            Version::Http1 => {
                let tcp = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port)).await?;
                match &self.tls {
                    None => send_h1(tcp, req).await?,
                    Some(tls) => send_h1(tls.connect(self.server_name()?, tcp).await?, req).await?,
                }
            }
            Version::Http2 => {
                let mut sender = self.h2_sender().await?;
                match sender.send_request(req).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        // A broken connection is not reused.
                        *self.h2.lock().await = None;
                        return Err(e.into());
                    }
                }
            }
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await?.to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    fn server_name(&self) -> Result<rustls::pki_types::ServerName<'static>, BoxError> {
        Ok(rustls::pki_types::ServerName::try_from(self.endpoint.host.clone())?)
    }

    /// The kept HTTP/2 connection, or a new one.
    async fn h2_sender(&self) -> Result<H2Sender, BoxError> {
        let mut kept = self.h2.lock().await;
        if let Some(sender) = kept.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let tcp = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port)).await?;
        let sender = match &self.tls {
            None => handshake_h2(tcp).await?,
            Some(tls) => handshake_h2(tls.connect(self.server_name()?, tcp).await?).await?,
        };
        *kept = Some(sender.clone());
        Ok(sender)
    }
}

async fn send_h1<IO>(
    io: IO,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, BoxError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

async fn handshake_h2<IO>(io: IO) -> Result<H2Sender, BoxError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(io))
            .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "push provider connection closed");
        }
    });
    Ok(sender)
}

/// `application/x-www-form-urlencoded` of `pairs` (the WHATWG URL standard's encoding).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, k);
        out.push('=');
        encode(&mut out, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_their_ports_and_paths() {
        let e = Endpoint::parse("k", "https://fcm.googleapis.com").unwrap();
        assert_eq!(
            (e.https, e.port, e.authority.as_str(), e.base_path.as_str()),
            (true, 443, "fcm.googleapis.com", "")
        );
        assert_eq!(e.url("/v1/x"), "https://fcm.googleapis.com/v1/x");
        let e = Endpoint::parse("k", "http://127.0.0.1:9000/fake/").unwrap();
        assert_eq!((e.port, e.authority.as_str(), e.base_path.as_str()), (9000, "127.0.0.1:9000", "/fake"));
        assert_eq!(e.url("/token"), "http://127.0.0.1:9000/fake/token");
        let e = Endpoint::parse("k", "http://[::1]:8443").unwrap();
        assert_eq!((e.host.as_str(), e.authority.as_str()), ("::1", "[::1]:8443"));
        for bad in ["", "fcm.googleapis.com", "ftp://x", "https://", "https://x/?a=b"] {
            let e = Endpoint::parse("notify.fcm_endpoint", bad).unwrap_err();
            assert!(e.starts_with("notify.fcm_endpoint: "), "{e}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn forms_are_encoded_as_browsers_do() {
        assert_eq!(
            form_encode(&[("To", "+201001234567"), ("Body", "Code: 12 34 & ü")]),
            "To=%2B201001234567&Body=Code%3A+12+34+%26+%C3%BC"
        );
    }

    /// A TLS server on loopback for `127.0.0.1` with ALPN `alpn`, speaking HTTP/2 or
    /// HTTP/1.1; answers each request with its version and path; counts connections.
    async fn tls_server(h2: bool) -> (u16, rustls::RootCertStore, Arc<std::sync::atomic::AtomicUsize>) {
        use hyper::service::service_fn;
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)
                .unwrap();
        config.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let text = format!("{:?} {}", req.version(), req.uri().path());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new().serve_connection(io, service).await
                    };
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        (port, roots, connections)
    }

    #[tokio::test]
    async fn https_is_verified_tls_with_alpn_and_http2_keeps_its_connection() {
        for (version, h2, expect) in [(Version::Http2, true, "HTTP/2.0"), (Version::Http1, false, "HTTP/1.1")] {
            let (port, roots, connections) = tls_server(h2).await;
            let endpoint = Endpoint::parse("k", &format!("https://127.0.0.1:{port}/base")).unwrap();
            let client = Client::with_roots(endpoint.clone(), version, roots).unwrap();
            for _ in 0..2 {
                let reply = client.send(hyper::Method::POST, "/3/device/ab", &[], b"{}".to_vec()).await.unwrap();
                assert_eq!((reply.status, &reply.body[..]), (200, format!("{expect} /base/3/device/ab").as_bytes()));
            }
            let opened = connections.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(opened, if h2 { 1 } else { 2 }, "{expect}: HTTP/2 reuses its connection");
            // Mozilla's roots do not know the test certificate: nothing is sent.
            let untrusted = Client::new(endpoint, version).unwrap();
            assert!(untrusted.send(hyper::Method::POST, "/x", &[], Vec::new()).await.is_err());
        }
    }
}
