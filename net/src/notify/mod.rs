//! Notifications leave the server through providers: push (FCM, APNs), SMS and email.
//!
//! This module owns the contract between the outbox's delivery worker and the providers:
//! a [`Message`] to one [`Recipient`], and the provider's answer as a [`SendOutcome`] the
//! worker acts on (done, try again later, drop the device, give up). Guarantees of every
//! [`Provider`]: `send` never panics and never blocks the runtime; it classifies every
//! answer as its provider's documentation says (a timeout, a 429 or a 5xx is
//! [`SendOutcome::Retry`], honouring `Retry-After`; a token the provider calls invalid is
//! [`SendOutcome::InvalidToken`]; any other refusal is [`SendOutcome::Rejected`] at once);
//! and it passes [`Message::id`] to the provider as its idempotency key where the provider
//! takes one, so a retry after a lost answer is not shown twice.
//!
//! Below the contract: [`Providers`], the configured providers built once at start from
//! `[notify]`, `[sms]`, `[email]` and the secrets in the environment (a missing or bad
//! secret stops start-up with the variable's name), one file per provider ([`fcm`],
//! [`apns`], [`twilio`], [`email`]), and what they share ([`client`], [`jwt`]). The SMS
//! sink of `crate::sms` (itself Twilio with `[sms] provider = "twilio"`) is the SMS
//! provider, so notifications by SMS work in development without Twilio.

pub mod apns;
pub mod client;
pub mod email;
pub mod fcm;
pub mod jwt;
pub mod twilio;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// An Android (or web) device's FCM registration token.
    Fcm(String),
    /// An iOS device's APNs device token (hex).
    Apns(String),
    /// A phone number, E.164.
    Phone(String),
    /// An email address.
    Email(String),
}

/// One notification to one recipient, rendered already (in the recipient's language).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The outbox item's id (`ntf_…`): the provider's idempotency key where it has one.
    pub id: String,
    /// Who.
    pub to: Recipient,
    /// A push notification's title, an email's subject (unused by SMS).
    pub title: String,
    /// The text.
    pub body: String,
    /// Data for the app (push only): `kind`, `trip_id`, … Small string pairs.
    pub data: BTreeMap<String, String>,
}

/// What a provider answered, as the worker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the provider; its id for the message if it gave one.
    Delivered {
        /// The provider's message id (FCM `name`, APNs `apns-id`, Twilio `sid`, SMTP queue id).
        provider_id: Option<String>,
    },
    /// Not now: a timeout, a connection failure, 429 or 5xx. Try again after
    /// `retry_after` if the provider said (`Retry-After`), else after the worker's backoff.
    Retry {
        /// What went wrong, for the outbox's `last_error`.
        error: String,
        /// The provider's `Retry-After`, if it gave one.
        retry_after: Option<Duration>,
    },
    /// The push token is not valid any more (FCM `UNREGISTERED` or 404, APNs 410): the
    /// device is removed and the item fails.
    InvalidToken {
        /// The provider's words.
        error: String,
    },
    /// Refused for good (another 4xx, a bad configuration): the item fails at once.
    Rejected {
        /// The provider's words.
        error: String,
    },
}

/// The future a [`Provider`] answers with.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendOutcome> + Send + 'a>>;

/// A way out: FCM, APNs, an SMS gateway, an SMTP server (or a test's fake).
pub trait Provider: Send + Sync {
    /// Sends `message`; never panics, always answers.
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a>;
}

/// `outcome` with `personal` (a phone number, an email address the provider quoted back
/// in its error) replaced by `masked`: `last_error` and the logs hold no full number or
/// address.
pub fn redacted(outcome: SendOutcome, personal: &str, masked: &str) -> SendOutcome {
    let clean = |error: String| {
        let mut error = error.replace(personal, masked);
        // Phone numbers are sometimes quoted without their `+`.
        if let Some(bare) = personal.strip_prefix('+').filter(|b| b.len() >= 6) {
            error = error.replace(bare, masked.trim_start_matches('+'));
        }
        error
    };
    match outcome {
        SendOutcome::Retry { error, retry_after } => SendOutcome::Retry { error: clean(error), retry_after },
        SendOutcome::InvalidToken { error } => SendOutcome::InvalidToken { error: clean(error) },
        SendOutcome::Rejected { error } => SendOutcome::Rejected { error: clean(error) },
        delivered @ SendOutcome::Delivered { .. } => delivered,
    }
}

/// An email address for logs: its first character, then `***`, then the domain.
pub fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_owned(),
    }
}

/// The providers configured, one per channel (`None`: that channel is not configured,
/// and its notifications cannot be sent).
#[derive(Clone, Default)]
pub struct Providers {
    /// FCM, when `DISPATCH_FCM_CREDENTIALS` is set.
    pub fcm: Option<Arc<dyn Provider>>,
    /// APNs, when `DISPATCH_APNS_KEY` is set.
    pub apns: Option<Arc<dyn Provider>>,
    /// SMS: Twilio with `[sms] provider = "twilio"`, else the `DISPATCH_SMS_SINK` sink.
    pub sms: Option<Arc<dyn Provider>>,
    /// Email, when `[email] smtp_url` is set.
    pub email: Option<Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("fcm", &self.fcm.is_some())
            .field("apns", &self.apns.is_some())
            .field("sms", &self.sms.is_some())
            .field("email", &self.email.is_some())
            .finish()
    }
}

impl Providers {
    /// The providers `config` and the environment (`env`, read here once) configure;
    /// SMS go through `sms` (the server's `SmsSink`: the `DISPATCH_SMS_SINK` sink, or
    /// Twilio). A file that cannot be read or a key that cannot be used is an error
    /// naming its variable.
    pub fn from_config(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
        sms: Arc<dyn Provider>,
    ) -> Result<Providers, Error> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let read = |name: &str, path: &str| {
            std::fs::read(path).map_err(|e| Error::Setting(format!("{name}: cannot read {path}: {e}")))
        };
        let n = &config.notify;
        let fcm = match set("DISPATCH_FCM_CREDENTIALS") {
            None => None,
            Some(path) => {
                let text = read("DISPATCH_FCM_CREDENTIALS", &path)?;
                let credentials = String::from_utf8(text)
                    .map_err(|_| Error::Setting(format!("DISPATCH_FCM_CREDENTIALS: {path} is not UTF-8 JSON")))?;
                let fcm = fcm::Fcm::new(&fcm::FcmConfig {
                    endpoint: &n.fcm_endpoint,
                    token_url: &n.fcm_token_url,
                    project_id: &n.fcm_project_id,
                    credentials: &credentials,
                })
                .map_err(|e| Error::Setting(format!("DISPATCH_FCM_CREDENTIALS ({path}): {e}")))?;
                Some(Arc::new(fcm) as Arc<dyn Provider>)
            }
        };
        let apns = match set("DISPATCH_APNS_KEY") {
            None => None,
            Some(path) => {
                let pem = read("DISPATCH_APNS_KEY", &path)?;
                let apns = apns::Apns::new(&apns::ApnsConfig {
                    endpoint: &n.apns_endpoint,
                    key_id: &n.apns_key_id,
                    team_id: &n.apns_team_id,
                    topic: &n.apns_topic,
                    key_pem: &pem,
                })
                .map_err(|e| Error::Setting(format!("DISPATCH_APNS_KEY ({path}): {e}")))?;
                Some(Arc::new(apns) as Arc<dyn Provider>)
            }
        };
        let email = if config.email.smtp_url.is_empty() {
            None
        } else {
            let password = set("DISPATCH_SMTP_PASSWORD");
            let email = email::Email::new(&config.email.smtp_url, &config.email.from, password.as_deref())
                .map_err(Error::Setting)?;
            Some(Arc::new(email) as Arc<dyn Provider>)
        };
        Ok(Providers { fcm, apns, sms: Some(sms), email })
    }

    /// The provider that reaches `to`, if that channel is configured.
    pub fn for_recipient(&self, to: &Recipient) -> Option<&Arc<dyn Provider>> {
        match to {
            Recipient::Fcm(_) => self.fcm.as_ref(),
            Recipient::Apns(_) => self.apns.as_ref(),
            Recipient::Phone(_) => self.sms.as_ref(),
            Recipient::Email(_) => self.email.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = include_str!("../../tests/fixtures/fcm-test-service-account.json");

    fn sink() -> Arc<dyn Provider> {
        Arc::new(crate::sms::SmsSink::Log { dev: false })
    }

    #[test]
    fn errors_quoting_a_number_or_an_address_are_redacted() {
        let rejected = SendOutcome::Rejected {
            error: "twilio: 400 21211 The 'To' number +201001234567 is not valid (201001234567)".into(),
        };
        let SendOutcome::Rejected { error } = redacted(rejected, "+201001234567", "+*********567") else { panic!() };
        assert_eq!(error, "twilio: 400 21211 The 'To' number +*********567 is not valid (*********567)");
        assert_eq!(mask_email("rider@example.com"), "r***@example.com");
        let delivered = SendOutcome::Delivered { provider_id: Some("SM1".into()) };
        assert_eq!(redacted(delivered.clone(), "x", "y"), delivered);
    }

    #[test]
    fn nothing_configured_is_sms_through_the_sink_only() {
        let p = Providers::from_config(&Config::default(), |_: &str| None, sink()).unwrap();
        assert!(p.fcm.is_none() && p.apns.is_none() && p.email.is_none());
        assert!(p.for_recipient(&Recipient::Phone("+201001234567".into())).is_some());
        assert!(p.for_recipient(&Recipient::Fcm("t".into())).is_none());
        assert!(p.for_recipient(&Recipient::Email("a@example.com".into())).is_none());
    }

    #[test]
    fn each_channel_is_configured_by_its_secret_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let account = dir.path().join("sa.json");
        std::fs::write(&account, ACCOUNT).unwrap();
        let key = dir.path().join("key.p8");
        let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        std::fs::write(&key, format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")).unwrap();
        let config = Config::parse(
            "[notify]\napns_key_id = \"K\"\napns_team_id = \"T\"\napns_topic = \"com.example\"\n\
             [email]\nsmtp_url = \"smtp://mail.example.com\"\nfrom = \"noreply@example.com\"\n",
        )
        .unwrap();
        let (account_path, key_path) = (account.display().to_string(), key.display().to_string());
        let env = |name: &str| match name {
            "DISPATCH_FCM_CREDENTIALS" => Some(account_path.clone()),
            "DISPATCH_APNS_KEY" => Some(key_path.clone()),
            _ => None,
        };
        let p = Providers::from_config(&config, env, sink()).unwrap();
        for to in [
            Recipient::Fcm("t".into()),
            Recipient::Apns("ab".into()),
            Recipient::Phone("+201001234567".into()),
            Recipient::Email("a@example.com".into()),
        ] {
            assert!(p.for_recipient(&to).is_some(), "{to:?}");
        }
        // The file is named when it cannot be read, and so is the variable.
        let missing = |name: &str| (name == "DISPATCH_FCM_CREDENTIALS").then(|| "/nonexistent/sa.json".to_owned());
        let e = Providers::from_config(&Config::default(), missing, sink()).err().unwrap().to_string();
        assert!(e.contains("DISPATCH_FCM_CREDENTIALS") && e.contains("/nonexistent/sa.json"), "{e}");
        // APNs without its ids.
        let e = Providers::from_config(&Config::default(), env, sink()).err().unwrap().to_string();
        assert!(e.contains("DISPATCH_APNS_KEY") && e.contains("apns_key_id"), "{e}");
    }
}
