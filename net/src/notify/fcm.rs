//! Firebase Cloud Messaging, HTTP v1: `POST {fcm_endpoint}/v1/projects/{project}/messages:send`
//! with an OAuth 2 access token of a service account.
//!
//! The token comes from `{fcm_token_url}` by the JWT-bearer grant (RFC 7523, Google's
//! "OAuth 2.0 for server to server applications"): a JWT signed RS256 with the service
//! account's key, `iss` = its `client_email`, `scope` = firebase.messaging, `aud` = the
//! token URL, valid one hour. Guarantees: one token is shared by all sends and reused
//! until [`REFRESH_EARLY`] before it expires; one refresh at a time (the others wait for
//! it); a `401` refreshes the token once and sends again within the same `send`. Answers
//! as Google documents them: 200 → delivered (`name` is the provider id); 404 or
//! `UNREGISTERED` in `error.details[].errorCode` → the token is invalid; 429 and 5xx →
//! retry, honouring `Retry-After`; any other 4xx → rejected with Google's message.
//!
//! FCM takes no client idempotency key: a send whose answer was lost and is retried may
//! show twice on the device. The outbox retries only after a failure, so this is rare.

use std::time::{Duration, Instant};

use hyper::Method;
use ring::signature::RsaKeyPair;
use serde::Deserialize;

use super::client::{Client, Endpoint, Reply, Version};
use super::{Message, Provider, Recipient, SendFuture, SendOutcome, jwt};

/// The OAuth scope of FCM's send API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// A token is refreshed this long before Google says it expires.
pub const REFRESH_EARLY: Duration = Duration::from_secs(60);

/// How long the JWT assertion is valid (Google's maximum).
const ASSERTION_LIFETIME_S: u64 = 3600;

/// A service account's JSON key file: what this client needs of it.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    project_id: String,
}

/// FCM's settings, from `[notify]` and `DISPATCH_FCM_CREDENTIALS`.
pub struct FcmConfig<'a> {
    /// `[notify] fcm_endpoint`.
    pub endpoint: &'a str,
    /// `[notify] fcm_token_url`.
    pub token_url: &'a str,
    /// `[notify] fcm_project_id` (empty: the service account's).
    pub project_id: &'a str,
    /// The service-account JSON's text.
    pub credentials: &'a str,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// The FCM provider.
pub struct Fcm {
    api: Client,
    token_api: Client,
    token_url: String,
    project_id: String,
    client_email: String,
    key: RsaKeyPair,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm").field("project_id", &self.project_id).field("client_email", &self.client_email).finish()
    }
}

/// Why a token could not be had: to retry, or a configuration Google refuses.
enum TokenError {
    Retry(String, Option<Duration>),
    Rejected(String),
}

impl Fcm {
    /// The provider, from its settings; a bad credentials file or URL is an error.
    pub fn new(config: &FcmConfig<'_>) -> Result<Fcm, String> {
        let account: ServiceAccount = serde_json::from_str(config.credentials)
            .map_err(|e| format!("not a service-account JSON key (client_email, private_key): {e}"))?;
        let key = jwt::rsa_key(account.private_key.as_bytes()).map_err(|e| format!("private_key: {e}"))?;
        let project_id = if config.project_id.is_empty() { account.project_id } else { config.project_id.to_owned() };
        if project_id.is_empty() || !project_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "project id {project_id:?}: set [notify] fcm_project_id or project_id in the credentials (letters, digits, -)"
            ));
        }
        let token_endpoint = Endpoint::parse("notify.fcm_token_url", config.token_url)?;
        // The grant is posted to the URL's own path.
        let token_url = token_endpoint.url("");
        Ok(Fcm {
            api: Client::new(Endpoint::parse("notify.fcm_endpoint", config.endpoint)?, Version::Http1)?,
            token_api: Client::new(token_endpoint, Version::Http1)?,
            token_url,
            project_id,
            client_email: account.client_email,
            key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The project messages are sent to.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// A valid access token: the cached one, or a new one when it is about to expire or
    /// is `stale` (the one the API just refused).
    async fn access_token(&self, stale: Option<&str>) -> Result<String, TokenError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
            && Some(t.value.as_str()) != stale
        {
            return Ok(t.value.clone());
        }
        let iat = jwt::unix_now();
        let claims = serde_json::json!({
            "iss": self.client_email, "scope": SCOPE, "aud": self.token_url,
            "iat": iat, "exp": iat + ASSERTION_LIFETIME_S,
        });
        let assertion = jwt::sign_rs256(&self.key, &claims).map_err(TokenError::Rejected)?;
        let form = super::client::form_encode(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ]);
        let reply = self
            .token_api
            .send(Method::POST, "", &[("content-type", "application/x-www-form-urlencoded")], form.into_bytes())
            .await
            .map_err(|e| TokenError::Retry(format!("fcm token: {e}"), None))?;
        let body = reply.json();
        match reply.status {
            200 => {
                let value = body["access_token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| TokenError::Retry("fcm token: the answer has no access_token".into(), None))?;
                let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(ASSERTION_LIFETIME_S));
                let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_EARLY);
                *cached = Some(Token { value: value.to_owned(), refresh_at });
                Ok(value.to_owned())
            }
            429 | 500..=599 => Err(TokenError::Retry(
                format!("fcm token: {} {}", reply.status, oauth_error(&body)),
                reply.retry_after(),
            )),
            status => Err(TokenError::Rejected(format!("fcm token: {status} {}", oauth_error(&body)))),
        }
    }

    async fn post(&self, token: &str, body: &[u8]) -> Result<Reply, String> {
        let path = format!("/v1/projects/{}/messages:send", self.project_id);
        let auth = format!("Bearer {token}");
        self.api
            .send(
                Method::POST,
                &path,
                &[("authorization", &auth), ("content-type", "application/json; charset=UTF-8")],
                body.to_vec(),
            )
            .await
    }

    async fn deliver(&self, message: &Message) -> SendOutcome {
        let Recipient::Fcm(device) = &message.to else {
            return SendOutcome::Rejected { error: "fcm: the recipient is not an FCM token".into() };
        };
        let mut fields = serde_json::json!({
            "token": device,
            "notification": {"title": message.title, "body": message.body},
        });
        if !message.data.is_empty() {
            fields["data"] = serde_json::json!(message.data);
        }
        let body = serde_json::json!({ "message": fields }).to_string().into_bytes();
        let mut stale: Option<String> = None;
        loop {
            let token = match self.access_token(stale.as_deref()).await {
                Ok(t) => t,
                Err(TokenError::Retry(error, retry_after)) => return SendOutcome::Retry { error, retry_after },
                Err(TokenError::Rejected(error)) => return SendOutcome::Rejected { error },
            };
            let reply = match self.post(&token, &body).await {
                Ok(r) => r,
                Err(e) => return SendOutcome::Retry { error: format!("fcm: {e}"), retry_after: None },
            };
            if reply.status == 401 && stale.is_none() {
                // The token was revoked or expired early: one new token, one more try.
                stale = Some(token);
                continue;
            }
            return classify(&reply);
        }
    }
}

/// An OAuth error answer's words (`error`, `error_description`).
fn oauth_error(body: &serde_json::Value) -> String {
    let error = body["error"].as_str().unwrap_or("");
    match body["error_description"].as_str() {
        Some(d) => format!("{error}: {d}"),
        None => error.to_owned(),
    }
}

/// What an answer of `messages:send` means.
fn classify(reply: &Reply) -> SendOutcome {
    let body = reply.json();
    if reply.status == 200 {
        return SendOutcome::Delivered { provider_id: body["name"].as_str().map(str::to_owned) };
    }
    let status = body["error"]["status"].as_str().unwrap_or("");
    let message = body["error"]["message"].as_str().unwrap_or("");
    let codes: Vec<&str> = body["error"]["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["errorCode"].as_str()).collect())
        .unwrap_or_default();
    let error =
        format!("fcm: {} {} {}", reply.status, codes.first().copied().unwrap_or(status), message).trim_end().to_owned();
    if reply.status == 404 || codes.contains(&"UNREGISTERED") {
        return SendOutcome::InvalidToken { error };
    }
    match reply.status {
        429 | 500..=599 => SendOutcome::Retry { error, retry_after: reply.retry_after() },
        401 => SendOutcome::Retry { error, retry_after: None },
        _ => SendOutcome::Rejected { error },
    }
}

impl Provider for Fcm {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str, retry_after: Option<&str>) -> Reply {
        let mut headers = hyper::HeaderMap::new();
        if let Some(r) = retry_after {
            headers.insert(hyper::header::RETRY_AFTER, r.parse().unwrap());
        }
        Reply { status, headers, body: bytes::Bytes::from(body.to_owned()) }
    }

    #[test]
    fn answers_are_classified_as_google_documents_them() {
        assert_eq!(
            classify(&reply(200, r#"{"name":"projects/p/messages/0:1"}"#, None)),
            SendOutcome::Delivered { provider_id: Some("projects/p/messages/0:1".into()) }
        );
        let unregistered = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
            "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert!(
            matches!(classify(&reply(404, unregistered, None)), SendOutcome::InvalidToken { error } if error.contains("UNREGISTERED"))
        );
        let unregistered_400 = unregistered.replace("404", "400");
        assert!(matches!(classify(&reply(400, &unregistered_400, None)), SendOutcome::InvalidToken { .. }));
        assert!(matches!(classify(&reply(404, "", None)), SendOutcome::InvalidToken { .. }));
        assert_eq!(
            classify(&reply(429, "{}", Some("30"))),
            SendOutcome::Retry { error: "fcm: 429".into(), retry_after: Some(Duration::from_secs(30)) }
        );
        assert!(matches!(classify(&reply(503, "", None)), SendOutcome::Retry { retry_after: None, .. }));
        assert!(matches!(classify(&reply(500, "", None)), SendOutcome::Retry { .. }));
        let invalid = r#"{"error":{"code":400,"message":"Invalid JSON payload","status":"INVALID_ARGUMENT"}}"#;
        assert!(
            matches!(classify(&reply(400, invalid, None)), SendOutcome::Rejected { error } if error.contains("Invalid JSON payload"))
        );
        assert!(matches!(classify(&reply(403, "", None)), SendOutcome::Rejected { .. }));
    }

    #[test]
    fn bad_credentials_are_refused_with_the_reason() {
        let config = |credentials| FcmConfig {
            endpoint: "https://fcm.googleapis.com",
            token_url: "https://oauth2.googleapis.com/token",
            project_id: "",
            credentials,
        };
        let e = Fcm::new(&config("{}")).unwrap_err();
        assert!(e.contains("service-account"), "{e}");
        let e = Fcm::new(&config(r#"{"client_email":"a@b","private_key":"nope","project_id":"p"}"#)).unwrap_err();
        assert!(e.contains("private_key"), "{e}");
    }
}
