//! Twilio's Messages API: `POST {twilio_endpoint}/2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded `To`, `From`, `Body`, HTTP basic auth with the account's SID and token.
//!
//! Guarantees: answers as Twilio documents them: 201 (or another 2xx) → delivered, the
//! message's `sid` as provider id; 429 and 5xx → retry, honouring `Retry-After`; any other
//! 4xx → rejected with Twilio's `code` and `message` (the phone number masked in them). The
//! auth token is sent only in the `Authorization` header, never logged.
//!
//! Twilio takes no idempotency key: an SMS whose answer was lost and is retried may arrive
//! twice. The outbox retries only after a failure, so this is rare.

use base64::Engine as _;
use hyper::Method;

use super::client::{Client, Endpoint, Reply, Version, form_encode};
use super::{Message, Provider, Recipient, SendFuture, SendOutcome};

/// Twilio's settings, from `[sms]` and `DISPATCH_TWILIO_SID` / `DISPATCH_TWILIO_TOKEN`.
pub struct TwilioConfig<'a> {
    /// `[sms] twilio_endpoint`.
    pub endpoint: &'a str,
    /// `[sms] from`.
    pub from: &'a str,
    /// The account SID.
    pub sid: &'a str,
    /// The auth token.
    pub token: &'a str,
}

/// The Twilio provider.
pub struct Twilio {
    api: Client,
    path: String,
    from: String,
    authorization: String,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio").field("path", &self.path).field("from", &self.from).finish_non_exhaustive()
    }
}

impl Twilio {
    /// The provider; an empty `from`, a malformed SID or a bad URL is an error.
    pub fn new(config: &TwilioConfig<'_>) -> Result<Twilio, String> {
        if config.from.trim().is_empty() {
            return Err("sms.from must be set when sms.provider = \"twilio\"".into());
        }
        if config.sid.is_empty() || !config.sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("DISPATCH_TWILIO_SID must be the account SID (letters and digits, AC…)".into());
        }
        if config.token.is_empty() {
            return Err("DISPATCH_TWILIO_TOKEN is empty".into());
        }
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", config.sid, config.token));
        Ok(Twilio {
            api: Client::new(Endpoint::parse("sms.twilio_endpoint", config.endpoint)?, Version::Http1)?,
            path: format!("/2010-04-01/Accounts/{}/Messages.json", config.sid),
            from: config.from.to_owned(),
            authorization: format!("Basic {credentials}"),
        })
    }

    /// Sends `body` to the phone number `to`.
    pub async fn send_sms(&self, to: &str, body: &str) -> SendOutcome {
        let form = form_encode(&[("To", to), ("From", &self.from), ("Body", body)]);
        let headers = [
            ("authorization", self.authorization.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        let outcome = match self.api.send(Method::POST, &self.path, &headers, form.into_bytes()).await {
            Ok(reply) => classify(&reply),
            Err(e) => SendOutcome::Retry { error: format!("twilio: {e}"), retry_after: None },
        };
        // Twilio quotes the number back in its errors ("The 'To' number … is not valid").
        super::redacted(outcome, to, &crate::http::mask_phone(to))
    }
}

/// What a Twilio answer means.
fn classify(reply: &Reply) -> SendOutcome {
    let body = reply.json();
    if (200..300).contains(&reply.status) {
        return SendOutcome::Delivered { provider_id: body["sid"].as_str().map(str::to_owned) };
    }
    let code = body["code"].as_u64().map(|c| format!(" {c}")).unwrap_or_default();
    let error =
        format!("twilio: {}{code} {}", reply.status, body["message"].as_str().unwrap_or("")).trim_end().to_owned();
    match reply.status {
        429 | 500..=599 => SendOutcome::Retry { error, retry_after: reply.retry_after() },
        _ => SendOutcome::Rejected { error },
    }
}

impl Provider for Twilio {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            match &message.to {
                Recipient::Phone(to) => self.send_sms(to, &message.body).await,
                _ => SendOutcome::Rejected { error: "twilio: the recipient is not a phone number".into() },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_twilio_documents_them() {
        let reply = |status, body: &str| Reply {
            status,
            headers: hyper::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_owned()),
        };
        assert_eq!(
            classify(&reply(201, r#"{"sid":"SM123","status":"queued"}"#)),
            SendOutcome::Delivered { provider_id: Some("SM123".into()) }
        );
        let invalid = r#"{"code":21211,"message":"The 'To' number +1 is not a valid phone number.","status":400}"#;
        assert!(
            matches!(classify(&reply(400, invalid)), SendOutcome::Rejected { error } if error.contains("21211") && error.contains("not a valid"))
        );
        assert!(matches!(classify(&reply(429, "{}")), SendOutcome::Retry { .. }));
        assert!(matches!(classify(&reply(502, "")), SendOutcome::Retry { .. }));
    }

    #[test]
    fn settings_are_checked() {
        let ok = TwilioConfig { endpoint: "https://api.twilio.com", from: "+15005550006", sid: "AC123", token: "t" };
        assert!(Twilio::new(&ok).is_ok());
        assert!(Twilio::new(&TwilioConfig { from: "", ..ok }).unwrap_err().contains("sms.from"));
        assert!(Twilio::new(&TwilioConfig { sid: "AC/../x", ..ok }).unwrap_err().contains("DISPATCH_TWILIO_SID"));
        assert!(Twilio::new(&TwilioConfig { token: "", ..ok }).is_err());
    }
}
