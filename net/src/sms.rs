//! Where SMS (OTP codes) go: `DISPATCH_SMS_SINK` = `log` | `file:PATH` | `http://…`.
//!
//! Guarantees: the code is generated here from the OS's randomness and only its keyed
//! hash reaches the engine; the app log never holds a code or a full phone number (the
//! `log` sink prints the message on stdout, a dev-only delivery channel, and only with
//! `--dev`; without it the code is withheld). `file:` writes one JSON line per message,
//! `{"to","text","code","at"}`; `http://` posts `{"to","text","at"}` to a provider or relay
//! (`https://` needs TLS, not linked: refused at start-up rather than dropping codes).

use std::io::Write;
use std::path::PathBuf;

use parking_lot::Mutex;

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
    /// POST `{"to","text","at"}` to a provider's `http://` URL (on a task, 10 s timeout).
    Http {
        /// `host:port`.
        authority: String,
        /// The path and query.
        path: String,
    },
}

/// How long a provider has to answer.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl SmsSink {
    /// The sink named by `spec` (`None`: `log`).
    pub fn from_spec(spec: Option<&str>, dev: bool) -> Result<SmsSink, Error> {
        match spec.unwrap_or("log") {
            "log" => Ok(SmsSink::Log { dev }),
            s if s.starts_with("file:") => {
                let path = PathBuf::from(&s["file:".len()..]);
                let f =
                    std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| {
                        Error::Setting(format!("DISPATCH_SMS_SINK: cannot open {}: {e}", path.display()))
                    })?;
                Ok(SmsSink::File(Mutex::new(f)))
            }
            s if s.starts_with("http://") => {
                let uri: hyper::Uri =
                    s.parse().map_err(|e| Error::Setting(format!("DISPATCH_SMS_SINK: bad URL: {e}")))?;
                let host = uri.host().ok_or_else(|| Error::Setting("DISPATCH_SMS_SINK: the URL has no host".into()))?;
                let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
                let path = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
                Ok(SmsSink::Http { authority, path })
            }
            s if s.starts_with("https://") => Err(Error::Setting(
                "DISPATCH_SMS_SINK: https needs TLS, which this build does not link; use an http:// relay, log or file:PATH"
                    .into(),
            )),
            other => Err(Error::Setting(format!(
                "DISPATCH_SMS_SINK must be log, file:PATH or an http(s) URL, not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
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
            SmsSink::Http { authority, path } => {
                let body = serde_json::json!({"to": to, "text": text, "at": at}).to_string();
                let (authority, path, masked) = (authority.clone(), path.clone(), crate::http::mask_phone(to));
                tokio::spawn(async move {
                    match tokio::time::timeout(HTTP_TIMEOUT, post(&authority, &path, body)).await {
                        Ok(Ok(status)) if (200..300).contains(&status) => {}
                        Ok(Ok(status)) => tracing::error!(status, to = %masked, "sms provider refused a message"),
                        Ok(Err(e)) => tracing::error!(error = %e, to = %masked, "sms provider unreachable"),
                        Err(_) => tracing::error!(to = %masked, "sms provider timed out"),
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

async fn post(authority: &str, path: &str, body: String) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
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
