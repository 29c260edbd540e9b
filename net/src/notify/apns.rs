//! Apple Push Notification service: HTTP/2 `POST {apns_endpoint}/3/device/{token}` with a
//! provider token (token-based authentication).
//!
//! The provider token is an ES256 JWT (`kid` = `[notify] apns_key_id`, `iss` =
//! `apns_team_id`, `iat`) signed with the `.p8` key of `DISPATCH_APNS_KEY`. Guarantees:
//! one token is reused for [`TOKEN_REUSE`] (Apple refuses tokens refreshed more often than
//! every 20 minutes and accepts them for an hour), and made anew, once, when Apple answers
//! `403 ExpiredProviderToken`; one HTTP/2 connection is kept and reopened when it breaks
//! (TLS with ALPN `h2` on `https://`, cleartext prior knowledge on `http://`, for local
//! fakes). Each notification's `apns-id` is derived from [`Message::id`], so a retry of the
//! same outbox item carries the same `apns-id` (APNs' idempotency). Answers as Apple
//! documents them: 200 → delivered (`apns-id`); 410, or 400 `BadDeviceToken` → the token
//! is invalid; 429 and 5xx → retry (honouring `Retry-After` if given); anything else →
//! rejected with Apple's `reason`.

use std::time::{Duration, Instant};

use hyper::Method;
use ring::signature::EcdsaKeyPair;

use super::client::{Client, Endpoint, Reply, Version};
use super::{Message, Provider, Recipient, SendFuture, SendOutcome, jwt};

/// How long a provider token is used (Apple: between 20 and 60 minutes).
pub const TOKEN_REUSE: Duration = Duration::from_secs(40 * 60);

/// APNs' settings, from `[notify]` and `DISPATCH_APNS_KEY`.
pub struct ApnsConfig<'a> {
    /// `[notify] apns_endpoint`.
    pub endpoint: &'a str,
    /// `[notify] apns_key_id`.
    pub key_id: &'a str,
    /// `[notify] apns_team_id`.
    pub team_id: &'a str,
    /// `[notify] apns_topic` (the app's bundle id).
    pub topic: &'a str,
    /// The `.p8` key's PEM.
    pub key_pem: &'a [u8],
}

struct Token {
    value: String,
    made: Instant,
}

/// The APNs provider.
pub struct Apns {
    api: Client,
    key_id: String,
    team_id: String,
    topic: String,
    key: EcdsaKeyPair,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns").field("key_id", &self.key_id).field("topic", &self.topic).finish()
    }
}

impl Apns {
    /// The provider, from its settings; a missing setting or a bad key is an error.
    pub fn new(config: &ApnsConfig<'_>) -> Result<Apns, String> {
        for (key, value) in [
            ("notify.apns_key_id", config.key_id),
            ("notify.apns_team_id", config.team_id),
            ("notify.apns_topic", config.topic),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{key} must be set when DISPATCH_APNS_KEY is"));
            }
        }
        Ok(Apns {
            api: Client::new(Endpoint::parse("notify.apns_endpoint", config.endpoint)?, Version::Http2)?,
            key_id: config.key_id.to_owned(),
            team_id: config.team_id.to_owned(),
            topic: config.topic.to_owned(),
            key: jwt::p256_key(config.key_pem)?,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider token: the kept one while younger than [`TOKEN_REUSE`] and not
    /// `stale` (the one Apple just called expired), else a new one.
    async fn provider_token(&self, stale: Option<&str>) -> Result<String, String> {
        let mut kept = self.token.lock().await;
        if let Some(t) = kept.as_ref()
            && t.made.elapsed() < TOKEN_REUSE
            && Some(t.value.as_str()) != stale
        {
            return Ok(t.value.clone());
        }
        let claims = serde_json::json!({"iss": self.team_id, "iat": jwt::unix_now()});
        let value = jwt::sign_es256(&self.key, &self.key_id, &claims)?;
        *kept = Some(Token { value: value.clone(), made: Instant::now() });
        Ok(value)
    }

    async fn deliver(&self, message: &Message) -> SendOutcome {
        let Recipient::Apns(device) = &message.to else {
            return SendOutcome::Rejected { error: "apns: the recipient is not an APNs token".into() };
        };
        // A device token is hex: anything else would not name a device (nor a safe path).
        if device.is_empty() || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
            return SendOutcome::InvalidToken { error: "apns: the device token is not hex".into() };
        }
        let mut payload = serde_json::Map::new();
        for (k, v) in &message.data {
            payload.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        payload.insert("aps".into(), serde_json::json!({"alert": {"title": message.title, "body": message.body}}));
        let body = serde_json::Value::Object(payload).to_string().into_bytes();
        let apns_id = apns_id(&message.id);
        let path = format!("/3/device/{device}");
        let mut stale: Option<String> = None;
        loop {
            let token = match self.provider_token(stale.as_deref()).await {
                Ok(t) => t,
                Err(error) => return SendOutcome::Rejected { error: format!("apns: {error}") },
            };
            let auth = format!("bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("apns-topic", self.topic.as_str()),
                ("apns-push-type", "alert"),
                ("apns-id", apns_id.as_str()),
                ("content-type", "application/json"),
            ];
            let reply = match self.api.send(Method::POST, &path, &headers, body.clone()).await {
                Ok(r) => r,
                Err(e) => return SendOutcome::Retry { error: format!("apns: {e}"), retry_after: None },
            };
            if reply.status == 403 && reason(&reply) == "ExpiredProviderToken" && stale.is_none() {
                stale = Some(token);
                continue;
            }
            return classify(&reply, &apns_id);
        }
    }
}

/// Apple's `reason` in an error answer.
fn reason(reply: &Reply) -> String {
    reply.json()["reason"].as_str().unwrap_or("").to_owned()
}

/// What an APNs answer means.
fn classify(reply: &Reply, apns_id: &str) -> SendOutcome {
    if reply.status == 200 {
        let id = reply.headers.get("apns-id").and_then(|v| v.to_str().ok()).unwrap_or(apns_id);
        return SendOutcome::Delivered { provider_id: Some(id.to_owned()) };
    }
    let reason = reason(reply);
    let error = format!("apns: {} {reason}", reply.status).trim_end().to_owned();
    match (reply.status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken") => SendOutcome::InvalidToken { error },
        (429 | 500..=599, _) => SendOutcome::Retry { error, retry_after: reply.retry_after() },
        _ => SendOutcome::Rejected { error },
    }
}

/// The `apns-id` of an outbox item: a UUID (RFC 9562 version 8, "custom") made of the
/// first 16 bytes of SHA-256 of its id, so every try of one item carries the same one.
pub fn apns_id(message_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, message_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC variant
    let hex = crate::hex::hex(&b);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

impl Provider for Apns {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_ids_are_uuids_fixed_by_the_message_id() {
        let a = apns_id("ntf_0000000000000001");
        assert_eq!(a, apns_id("ntf_0000000000000001"));
        assert_ne!(a, apns_id("ntf_0000000000000002"));
        assert_eq!(a.len(), 36);
        let dashes: Vec<usize> = a.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert_eq!(&a[14..15], "8", "version 8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "RFC variant: {a}");
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, headers: hyper::HeaderMap::new(), body: bytes::Bytes::from(body.to_owned()) }
    }

    #[test]
    fn answers_are_classified_as_apple_documents_them() {
        assert_eq!(classify(&reply(200, ""), "x"), SendOutcome::Delivered { provider_id: Some("x".into()) });
        assert!(
            matches!(classify(&reply(410, r#"{"reason":"Unregistered"}"#), "x"), SendOutcome::InvalidToken { error } if error == "apns: 410 Unregistered")
        );
        assert!(matches!(
            classify(&reply(400, r#"{"reason":"BadDeviceToken"}"#), "x"),
            SendOutcome::InvalidToken { .. }
        ));
        assert!(matches!(classify(&reply(400, r#"{"reason":"BadTopic"}"#), "x"), SendOutcome::Rejected { .. }));
        assert!(matches!(classify(&reply(429, r#"{"reason":"TooManyRequests"}"#), "x"), SendOutcome::Retry { .. }));
        assert!(matches!(classify(&reply(503, ""), "x"), SendOutcome::Retry { .. }));
        assert!(matches!(
            classify(&reply(403, r#"{"reason":"InvalidProviderToken"}"#), "x"),
            SendOutcome::Rejected { .. }
        ));
    }
}
