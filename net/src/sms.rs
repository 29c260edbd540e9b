//! Where SMS (OTP codes) go: `DISPATCH_SMS_SINK` = `log` | `file:PATH` | `http(s)://…`.
//!
//! Guarantees: the code is generated here from the OS's randomness and only its keyed
//! hash reaches the engine; the app log never holds a code or a full phone number (the
//! `log` sink prints the message on stdout, a dev-only delivery channel, and only with
//! `--dev`; without it the code is withheld). `file:` writes one JSON line per message,
//! `{"to","text","code","at"}`.

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
}

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
            s if s.starts_with("http://") || s.starts_with("https://") => Err(Error::Setting(
                "DISPATCH_SMS_SINK: the http(s) provider sink is not built yet; use log or file:PATH".into(),
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
            SmsSink::Log { dev: true } => println!("sms to={to} text={text:?}"),
            SmsSink::Log { dev: false } => {
                println!("sms to={} text=[withheld outside --dev]", crate::http::mask_phone(to))
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

/// A fresh 6-digit code.
pub fn new_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}
