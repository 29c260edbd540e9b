//! Email notifications over SMTP (`lettre`): `[email] smtp_url`, `from`, and
//! `DISPATCH_SMTP_PASSWORD` for the URL's user.
//!
//! `smtp_url` forms:
//! - `smtp://[user@]host[:port]`: STARTTLS required (port 587 by default); a server that
//!   does not offer it gets nothing;
//! - `smtps://[user@]host[:port]`: implicit TLS (port 465 by default);
//! - `smtp+insecure://host:port`: no TLS at all, accepted only when the host is loopback
//!   (`127.0.0.1`, `::1`, `localhost`): a relay on the same machine, or a test's sink.
//!
//! Guarantees: TLS is rustls on `ring`, verified against Mozilla's roots (`webpki-roots`);
//! the password is only ever given to the SMTP server; every message carries
//! `Message-ID: <{Message::id}@dispatch>`, so a message sent twice after a lost answer is
//! recognisable as one (SMTP has no idempotency key). Answers per RFC 5321: a 4yz reply,
//! a connection failure or a timeout → retry; a 5yz reply → rejected with the server's
//! words (the recipient's address masked in them).

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Message, Provider, Recipient, SendFuture, SendOutcome};

/// How long an SMTP exchange may stall.
const TIMEOUT: Duration = Duration::from_secs(20);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
    /// `smtp+insecure://`: none (loopback only).
    None,
}

/// `[email] smtp_url`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// How the connection is secured.
    pub security: Security,
    /// The server (an IPv6 literal without brackets).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The user to authenticate as, if any.
    pub user: Option<String>,
}

impl SmtpUrl {
    /// Parses an `smtp://`, `smtps://` or (loopback only) `smtp+insecure://` URL.
    pub fn parse(url: &str) -> Result<SmtpUrl, String> {
        let bad = |why: &str| format!("email.smtp_url: {why}");
        let (security, rest) = if let Some(r) = url.strip_prefix("smtp://") {
            (Security::StartTls, r)
        } else if let Some(r) = url.strip_prefix("smtps://") {
            (Security::Tls, r)
        } else if let Some(r) = url.strip_prefix("smtp+insecure://") {
            (Security::None, r)
        } else {
            return Err(bad("must start with smtp:// (STARTTLS), smtps:// (TLS) or smtp+insecure:// (loopback)"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("only [user@]host[:port]: no path or query"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => {
                (Some(percent_decode(u).ok_or_else(|| bad("bad %-escape in the user"))?), h)
            }
            Some(_) => return Err(bad("empty user before @")),
            None => (None, rest),
        };
        if user.as_deref().is_some_and(|u| u.contains(':')) {
            return Err(bad("no password in the URL: it comes from DISPATCH_SMTP_PASSWORD"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?,
            None => match security {
                Security::StartTls => 587,
                Security::Tls => 465,
                Security::None => return Err(bad("smtp+insecure:// needs a port")),
            },
        };
        if security == Security::None && !matches!(host.as_str(), "127.0.0.1" | "::1" | "localhost") {
            return Err(bad("smtp+insecure:// (no TLS) is for a loopback host only (127.0.0.1, ::1, localhost)"));
        }
        Ok(SmtpUrl { security, host, port, user })
    }
}

/// `%XX` escapes decoded (the user part of a URL: `me%40example.com`).
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The SMTP provider.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    url: SmtpUrl,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email").field("url", &self.url).field("from", &self.from.to_string()).finish()
    }
}

impl Email {
    /// The provider: `smtp_url`, `from` (an address, or `Name <address>`), and the
    /// password of the URL's user (`DISPATCH_SMTP_PASSWORD`).
    pub fn new(smtp_url: &str, from: &str, password: Option<&str>) -> Result<Email, String> {
        let url = SmtpUrl::parse(smtp_url)?;
        let from: Mailbox = from.parse().map_err(|e| format!("email.from: {from:?} is not an email address ({e})"))?;
        let builder = match url.security {
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&url.host),
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&url.host),
            Security::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)),
        }
        .map_err(|e| format!("email.smtp_url: {e}"))?;
        let mut builder = builder.port(url.port).timeout(Some(TIMEOUT));
        match (&url.user, password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user.clone(), password.to_owned()));
            }
            (Some(_), None) => {
                return Err("email.smtp_url names a user: set DISPATCH_SMTP_PASSWORD".into());
            }
            (None, _) => {}
        }
        Ok(Email { transport: builder.build(), from, url })
    }

    async fn deliver(&self, message: &Message) -> SendOutcome {
        let Recipient::Email(to) = &message.to else {
            return SendOutcome::Rejected { error: "smtp: the recipient is not an email address".into() };
        };
        let address = to.clone();
        let Ok(to) = to.parse::<Mailbox>() else {
            return SendOutcome::Rejected { error: "smtp: the recipient is not a valid email address".into() };
        };
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.title.clone())
            .message_id(Some(format!("<{}@dispatch>", message.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone());
        let email = match email {
            Ok(e) => e,
            Err(e) => return SendOutcome::Rejected { error: format!("smtp: cannot build the message: {e}") },
        };
        let outcome = match self.transport.send(email).await {
            Ok(response) => SendOutcome::Delivered { provider_id: response.first_line().map(str::to_owned) },
            Err(e) => {
                let code = e.status().map(|c| format!("{c} ")).unwrap_or_default();
                let error = format!("smtp: {code}{e}");
                if e.is_permanent() {
                    SendOutcome::Rejected { error }
                } else {
                    SendOutcome::Retry { error, retry_after: None }
                }
            }
        };
        // Servers quote the address back ("550 5.1.1 <a@b>: Recipient address rejected").
        super::redacted(outcome, &address, &super::mask_email(&address))
    }
}

impl Provider for Email {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_and_plain_text_is_for_loopback_only() {
        let u = SmtpUrl::parse("smtp://mail.example.com").unwrap();
        assert_eq!((u.security, u.host.as_str(), u.port, u.user), (Security::StartTls, "mail.example.com", 587, None));
        let u = SmtpUrl::parse("smtps://me%40example.com@mail.example.com:2465/").unwrap();
        assert_eq!((u.security, u.port, u.user.as_deref()), (Security::Tls, 2465, Some("me@example.com")));
        let u = SmtpUrl::parse("smtp+insecure://127.0.0.1:2525").unwrap();
        assert_eq!((u.security, u.port), (Security::None, 2525));
        assert_eq!(SmtpUrl::parse("smtp+insecure://[::1]:25").unwrap().host, "::1");
        for bad in [
            "mail.example.com",
            "http://mail.example.com",
            "smtp://",
            "smtp://u:secret@mail.example.com",
            "smtp://mail.example.com:0",
            "smtp://mail.example.com/x",
            "smtp+insecure://mail.example.com:25",
            "smtp+insecure://10.0.0.1:25",
            "smtp+insecure://127.0.0.1",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_user_needs_the_password_and_from_must_be_an_address() {
        assert!(
            Email::new("smtp://u@mail.example.com", "noreply@example.com", None)
                .unwrap_err()
                .contains("DISPATCH_SMTP_PASSWORD")
        );
        assert!(Email::new("smtp://u@mail.example.com", "noreply@example.com", Some("pw")).is_ok());
        assert!(Email::new("smtp://mail.example.com", "Dispatch <noreply@example.com>", None).is_ok());
        assert!(Email::new("smtp://mail.example.com", "not an address", None).unwrap_err().contains("email.from"));
    }
}
