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

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
