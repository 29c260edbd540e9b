//! Where SMS (OTP codes) go: `DISPATCH_SMS_SINK` = `log` | `file:PATH` | `http(s)://…`.
//!
//! Guarantees: the code is generated here from the OS's randomness and only its keyed
//! hash reaches the engine; the app log never holds a code or a full phone number (the
//! `log` sink prints the message on stdout — a dev-only delivery channel, so with `--dev`
//! it shows the code by design, next to the masked number; without `--dev` the code is
//! withheld). `file:` writes one JSON line per message, `{"to","text","code","at"}`, to a
//! file it creates 0600 (live codes: a development sink, warned about at start without
//! `--dev`); `http://` and `https://` post `{"to","text","at"}` to a provider or relay.
//! `https://` uses rustls (on `ring`) and verifies the provider against Mozilla's root certificates
//! compiled into the binary (`webpki-roots`), never the platform's store: a certificate
//! that does not chain to them, or names another host, fails the delivery (logged with
//! the masked number) rather than sending a code in the clear. With `[sms] provider =
//! "twilio"` the sink is Twilio's Messages API (`notify::twilio`) and
//! `DISPATCH_SMS_SINK` is not read.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_rustls::rustls;

use crate::error::Error;

/// The configured sink.
pub enum SmsSink {
    /// Print to stdout (`dev`: the whole message; else the code is withheld).
    Log {
        /// Running with `--dev`.
        dev: bool,
    },
    /// Append JSON lines to a file.
    File(Mutex<std::fs::File>),
    /// POST `{"to","text","at"}` to a provider's `http://` or `https://` URL (on a task,
    /// 10 s timeout).
    Http(Provider),
    /// Twilio's Messages API (`[sms] provider = "twilio"`; on a task).
    Twilio(Arc<crate::notify::twilio::Twilio>),
}

/// An SMS provider's endpoint, from its URL.
#[derive(Clone)]
pub struct Provider {
    /// The host as connected to and verified (an IPv6 literal without brackets).
    host: String,
    port: u16,
    /// The `Host` header (`host`, or `host:port` for a port that is not the scheme's).
    authority: String,
    /// The path and query.
    path: String,
    /// TLS for `https://`.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("https", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a provider has to answer.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Provider {
    /// Parses an `http://` or `https://` URL; `https` verifies against `roots`.
    fn parse(url: &str, roots: impl FnOnce() -> rustls::RootCertStore) -> Result<Provider, Error> {
        let bad = |why: String| Error::Setting(format!("DISPATCH_SMS_SINK: {why}"));
        let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("bad URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the URL must be http:// or https://".into())),
        };
        let raw_host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("the URL has no host".into()))?;
        let host = raw_host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let default_port = if https { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = if port == default_port { raw_host.to_owned() } else { format!("{raw_host}:{port}") };
        let path = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
        let tls = if https {
            rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| bad(format!("{host:?} is not a host name TLS can verify")))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(format!("TLS setup: {e}")))?
                .with_root_certificates(roots())
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Provider { host, port, authority, path, tls })
    }

    /// Posts `body`; the provider's status.
    async fn post(&self, body: String) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        match &self.tls {
            None => exchange(tcp, &self.authority, &self.path, body).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
                let stream = tls.connect(name, tcp).await?;
                exchange(stream, &self.authority, &self.path, body).await
            }
        }
    }
}

/// Mozilla's root certificates, compiled in.
fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

impl SmsSink {
    /// The sink `[sms]` names: Twilio (with `DISPATCH_TWILIO_SID` and
    /// `DISPATCH_TWILIO_TOKEN` from `env`), or the one `DISPATCH_SMS_SINK` names.
    pub fn from_config(
        sms: &crate::config::SmsSection,
        env: impl Fn(&str) -> Option<String>,
        dev: bool,
    ) -> Result<SmsSink, Error> {
        match sms.provider {
            crate::config::SmsProvider::Sink => SmsSink::from_spec(env("DISPATCH_SMS_SINK").as_deref(), dev),
            crate::config::SmsProvider::Twilio => {
                let secret = |name: &str| {
                    env(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                        Error::Setting(format!("{name} is not set: [sms] provider = \"twilio\" needs it"))
                    })
                };
                let (sid, token) = (secret("DISPATCH_TWILIO_SID")?, secret("DISPATCH_TWILIO_TOKEN")?);
                let twilio = crate::notify::twilio::Twilio::new(&crate::notify::twilio::TwilioConfig {
                    endpoint: &sms.twilio_endpoint,
                    from: &sms.from,
                    sid: &sid,
                    token: &token,
                })
                .map_err(Error::Setting)?;
                Ok(SmsSink::Twilio(Arc::new(twilio)))
            }
        }
    }

    /// The sink named by `spec` (`None`: `log`).
    pub fn from_spec(spec: Option<&str>, dev: bool) -> Result<SmsSink, Error> {
        match spec.unwrap_or("log") {
            "log" => Ok(SmsSink::Log { dev }),
            s if s.starts_with("file:") => {
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let path = PathBuf::from(&s["file:".len()..]);
                let cannot = |e: std::io::Error| {
                    Error::Setting(format!("DISPATCH_SMS_SINK: cannot open {}: {e}", path.display()))
                };
                // Live codes: the owner's only, whatever the umask.
                let f =
                    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(cannot)?;
                let meta = f.metadata().map_err(cannot)?;
                if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                    // An older file: not changed behind the operator's back, but said.
                    eprintln!(
                        "WARNING: DISPATCH_SMS_SINK: {} is {:o}: other users may read the sign-in codes in it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    );
                }
                Ok(SmsSink::File(Mutex::new(f)))
            }
            s if s.starts_with("http://") || s.starts_with("https://") => {
                Ok(SmsSink::Http(Provider::parse(s, webpki_roots)?))
            }
            other => Err(Error::Setting(format!(
                "DISPATCH_SMS_SINK must be log, file:PATH or an http(s) URL, not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// Delivers one message and says how it went, as a notification provider answers:
    /// `log` and `file:` deliver at once; `http(s)://` is delivered on a 2xx, retried on
    /// a timeout, a connection failure, 429 or 5xx, rejected on another status; Twilio
    /// answers as `notify::twilio` says.
    pub async fn deliver(&self, to: &str, text: &str, code: Option<&str>) -> crate::notify::SendOutcome {
        use crate::notify::SendOutcome;
        match self {
            SmsSink::Http(provider) => {
                let at = crate::http::rfc3339(dispatch_core::clock::Clock::now(&dispatch_core::clock::SystemClock));
                let body = serde_json::json!({"to": to, "text": text, "at": at}).to_string();
                let retry = |error: String| SendOutcome::Retry { error, retry_after: None };
                match tokio::time::timeout(HTTP_TIMEOUT, provider.post(body)).await {
                    Ok(Ok(status)) if (200..300).contains(&status) => SendOutcome::Delivered { provider_id: None },
                    Ok(Ok(status)) if status == 429 || status >= 500 => retry(format!("sms sink: {status}")),
                    Ok(Ok(status)) => SendOutcome::Rejected { error: format!("sms sink: {status}") },
                    Ok(Err(e)) => retry(format!("sms sink: {e}")),
                    Err(_) => retry("sms sink: no answer within 10 s".into()),
                }
            }
            SmsSink::Twilio(twilio) => twilio.send_sms(to, text).await,
            SmsSink::Log { .. } | SmsSink::File(_) => {
                self.send(to, text, code);
                SendOutcome::Delivered { provider_id: None }
            }
        }
    }

    /// Delivers one message (best effort: a failure is logged, the code stays valid).
    pub fn send(&self, to: &str, text: &str, code: Option<&str>) {
        let at = crate::http::rfc3339(dispatch_core::clock::Clock::now(&dispatch_core::clock::SystemClock));
        match self {
            // By design the dev sink shows the code (a developer signs in with it); the
            // number is masked like everywhere else.
            SmsSink::Log { dev: true } => println!("sms to={} text={text:?}", crate::http::mask_phone(to)),
            SmsSink::Log { dev: false } => {
                println!("sms to={} text=[withheld outside --dev]", crate::http::mask_phone(to))
            }
            SmsSink::Http(provider) => {
                let body = serde_json::json!({"to": to, "text": text, "at": at}).to_string();
                let (provider, masked) = (provider.clone(), crate::http::mask_phone(to));
                tokio::spawn(async move {
                    match tokio::time::timeout(HTTP_TIMEOUT, provider.post(body)).await {
                        Ok(Ok(status)) if (200..300).contains(&status) => {}
                        Ok(Ok(status)) => tracing::error!(status, to = %masked, "sms provider refused a message"),
                        Ok(Err(e)) => tracing::error!(error = %e, to = %masked, "sms provider unreachable"),
                        Err(_) => tracing::error!(to = %masked, "sms provider timed out"),
                    }
                });
            }
            SmsSink::Twilio(twilio) => {
                let (twilio, to, text, masked) =
                    (Arc::clone(twilio), to.to_owned(), text.to_owned(), crate::http::mask_phone(to));
                tokio::spawn(async move {
                    match twilio.send_sms(&to, &text).await {
                        crate::notify::SendOutcome::Delivered { .. } => {}
                        outcome => tracing::error!(?outcome, to = %masked, "twilio did not take a message"),
                    }
                });
            }
            SmsSink::File(f) => {
                let line = serde_json::json!({"to": to, "text": text, "code": code, "at": at});
                let mut f = f.lock();
                if let Err(e) = writeln!(f, "{line}").and_then(|()| f.flush()) {
                    tracing::error!(error = %e, to = %crate::http::mask_phone(to), "sms sink write failed");
                }
            }
        }
    }
}

/// The sink as a notification provider: notifications by SMS go the way OTP codes go
/// (so they work in development without Twilio), answering as [`SmsSink::deliver`] says.
impl crate::notify::Provider for SmsSink {
    fn send<'a>(&'a self, message: &'a crate::notify::Message) -> crate::notify::SendFuture<'a> {
        Box::pin(async move {
            match &message.to {
                crate::notify::Recipient::Phone(to) => self.deliver(to, &message.body, None).await,
                _ => crate::notify::SendOutcome::Rejected { error: "sms: the recipient is not a phone number".into() },
            }
        })
    }
}

/// One HTTP/1.1 POST over `io` (plain or TLS); the status.
async fn exchange<IO>(
    io: IO,
    authority: &str,
    path: &str,
    body: String,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// A fresh 6-digit code.
pub fn new_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn parse(url: &str) -> Result<Provider, Error> {
        Provider::parse(url, webpki_roots)
    }

    #[test]
    fn provider_urls_parse_with_the_schemes_ports() {
        let p = parse("http://sms.local/send?key=k").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authority.as_str(), p.path.as_str()),
            ("sms.local", 80, "sms.local", "/send?key=k")
        );
        assert!(p.tls.is_none());
        let p = parse("https://sms.example.com").unwrap();
        assert_eq!((p.port, p.authority.as_str(), p.path.as_str()), (443, "sms.example.com", "/"));
        assert!(p.tls.is_some());
        let p = parse("https://[::1]:8443/v1/sms").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.authority.as_str()), ("::1", 8443, "[::1]:8443"));
        let p = parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(p.authority, "127.0.0.1:9000");
        for bad in ["https://", "ftp://x", "https://exa mple.com/"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(SmsSink::from_spec(Some("smtp://x"), false).is_err());
        assert!(matches!(SmsSink::from_spec(Some("https://sms.example.com/x"), false), Ok(SmsSink::Http(_))));
    }

    /// A TLS provider on loopback with a certificate made here for 127.0.0.1; answers 200
    /// and hands back the request it got.
    async fn tls_stub() -> (u16, rustls::pki_types::CertificateDer<'static>, tokio::task::JoinHandle<String>) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else { return String::new() };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"}") {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client hung up early");
                got.extend_from_slice(&buf[..n]);
            }
            tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            let _ = tls.shutdown().await;
            String::from_utf8(got).unwrap()
        });
        (port, cert.der().clone(), served)
    }

    #[tokio::test]
    async fn an_https_provider_gets_the_message_over_verified_tls() {
        let (port, cert, served) = tls_stub().await;
        let trust = move || {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert).unwrap();
            roots
        };
        let p = Provider::parse(&format!("https://127.0.0.1:{port}/send?key=k"), trust).unwrap();
        let status = p.post(r#"{"to":"+201001234567","text":"Your dispatch code is 123456"}"#.into()).await.unwrap();
        assert_eq!(status, 200);
        let request = served.await.unwrap();
        assert!(request.starts_with("POST /send?key=k HTTP/1.1"), "{request}");
        assert!(request.to_ascii_lowercase().contains(&format!("host: 127.0.0.1:{port}")), "{request}");
        assert!(request.ends_with(r#"{"to":"+201001234567","text":"Your dispatch code is 123456"}"#), "{request}");
    }

    #[tokio::test]
    async fn an_https_provider_whose_certificate_is_not_trusted_gets_nothing() {
        let (port, _cert, served) = tls_stub().await;
        // The production roots: a self-signed certificate does not chain to them.
        let p = parse(&format!("https://127.0.0.1:{port}/send")).unwrap();
        let refused = p.post(r#"{"to":"+201001234567"}"#.into()).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(served.await.unwrap(), "", "no request reached the untrusted server");
    }

    /// An `http://` sink answering `status` to one request.
    async fn answering(status: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"}") {
                let n = tcp.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            tcp.write_all(answer.as_bytes()).await.unwrap();
        });
        format!("http://127.0.0.1:{port}/sms")
    }

    #[tokio::test]
    async fn the_sink_as_a_notification_provider_says_how_it_went() {
        use crate::notify::{Message, Provider, Recipient, SendOutcome};
        let msg =
            |to| Message { id: "ntf_1".into(), to, title: String::new(), body: "hi".into(), data: Default::default() };
        let phone = msg(Recipient::Phone("+201001234567".into()));
        for (status, delivered, retry) in
            [(200, true, false), (503, false, true), (429, false, true), (400, false, false)]
        {
            let sink = SmsSink::from_spec(Some(&answering(status).await), false).unwrap();
            let outcome = Provider::send(&sink, &phone).await;
            assert_eq!(matches!(outcome, SendOutcome::Delivered { .. }), delivered, "{status}: {outcome:?}");
            assert_eq!(matches!(outcome, SendOutcome::Retry { .. }), retry, "{status}: {outcome:?}");
        }
        let log = SmsSink::Log { dev: false };
        assert!(matches!(Provider::send(&log, &phone).await, SendOutcome::Delivered { .. }));
        assert!(matches!(
            Provider::send(&log, &msg(Recipient::Email("a@b.c".into()))).await,
            SendOutcome::Rejected { .. }
        ));
    }
}
