//! The Stripe card gateway: a [`Gateway`] speaking Stripe's PaymentIntents API, used by
//! the payment worker for card trips when `[gateways.<name>] scheme = "stripe"` is
//! configured (its webhooks come back through `crate::gateways`, scheme `stripe`).
//!
//! Owns the calls and how Stripe's answers map to the engine's:
//! - authorise: `POST /v1/payment_intents` with `amount`, `currency` (lowercase),
//!   `capture_method=manual`, `confirm=true`, `payment_method` (the configured one: the
//!   engine keeps no rider's card, so a server-side integration confirms with a saved
//!   PaymentMethod; `pm_card_visa` in test mode), `payment_method_types[0]=card` (no
//!   redirects, so no `return_url`), `metadata[trip_id]` (which Stripe's events carry
//!   back). The PaymentIntent id it answers is the payment's reference: the worker
//!   records it on the trip (`Command::RecordGatewayRef`) and later calls name it;
//! - capture: `POST /v1/payment_intents/{id}/capture` with `amount_to_capture`; a trip
//!   never authorised (Stripe was down at accept) is charged at once instead: a
//!   PaymentIntent created with `capture_method=automatic` and confirmed;
//! - void: `POST /v1/payment_intents/{id}/cancel` (nothing to cancel without one);
//! - refund: `POST /v1/refunds` with `payment_intent`, `amount`, `metadata[trip_id]` (so
//!   the `refund.*` events name the trip);
//! - payout: `POST /v1/payouts` with `amount`, `currency`, `metadata[payout_id]`,
//!   `metadata[driver_id]`: the platform's balance to its bank account, from which the
//!   operator pays the driver. Transfers to Connect accounts would pay drivers directly,
//!   but the engine keeps no driver's connected account; the payout's outcome comes back
//!   by `payout.paid` / `payout.failed`, which name `metadata.payout_id`.
//!
//! Guarantees:
//! - every call carries `Authorization: Bearer <DISPATCH_STRIPE_SECRET_KEY>` and
//!   `Idempotency-Key: <the call's key>`: a retried call is the same call to Stripe, not
//!   a second charge;
//! - answers map to [`GatewayError`] one way: 2xx is done; 402 (`card_declined`, …) and
//!   any other 4xx are `Declined` with Stripe's `error.message`; 409 (the same key in
//!   flight), 429, 5xx, timeouts and unreadable answers are `Unavailable` (retried by the
//!   worker with backoff);
//! - the secret key is never logged or put in an error.

use std::sync::Arc;

use dispatch_core::payment::{Gateway, GatewayCall, GatewayError, PayoutCall};
use dispatch_core::trip::GatewayAction;
use serde_json::Value;

use crate::config::{Config, GatewayScheme};
use crate::error::Error;
use crate::notify::client::{Client, Endpoint, Reply, Version, form_encode};

/// The environment variable holding Stripe's secret API key.
pub const SECRET_KEY_VAR: &str = "DISPATCH_STRIPE_SECRET_KEY";

/// Stripe's API base URL (`[gateways.<name>] api_base`'s default).
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// The PaymentMethod authorisations are confirmed with (`[gateways.<name>]
/// payment_method`'s default): Stripe's test Visa card.
pub const DEFAULT_PAYMENT_METHOD: &str = "pm_card_visa";

/// The API version the request and answer shapes follow (sent as `Stripe-Version`).
pub const API_VERSION: &str = "2024-06-20";

/// The Stripe gateway. Its calls block the calling thread (the payment worker's) on a
/// runtime of its own.
pub struct StripeGateway {
    name: String,
    api: Client,
    secret_key: String,
    payment_method: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway").field("name", &self.name).field("api", &self.api).finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// The gateway `name` at `api_base`, calling with `secret_key`, confirming
    /// authorisations with `payment_method`.
    pub fn new(name: &str, api_base: &str, secret_key: &str, payment_method: &str) -> Result<StripeGateway, Error> {
        let key = format!("gateways.{name}.api_base");
        let endpoint = Endpoint::parse(&key, api_base).map_err(Error::Setting)?;
        let api = Client::new(endpoint, Version::Http1).map_err(Error::Setting)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(StripeGateway {
            name: name.to_owned(),
            api,
            secret_key: secret_key.to_owned(),
            payment_method: payment_method.to_owned(),
            runtime,
        })
    }

    /// The configured Stripe gateway (the `[gateways.<name>]` with `scheme = "stripe"`),
    /// its secret key read through `env`; `None` when there is none. A missing key is a
    /// start-up error naming [`SECRET_KEY_VAR`].
    pub fn from_config(config: &Config, env: impl Fn(&str) -> Option<String>) -> Result<Option<Arc<Self>>, Error> {
        let Some((name, section)) = config.gateways.iter().find(|(_, g)| g.scheme == GatewayScheme::Stripe) else {
            return Ok(None);
        };
        let key = env(SECRET_KEY_VAR).filter(|k| !k.trim().is_empty());
        let key = key.ok_or_else(|| Error::MissingSecret(SECRET_KEY_VAR.to_owned()))?;
        let base = section.api_base.as_deref().unwrap_or(DEFAULT_API_BASE);
        let method = section.payment_method.as_deref().unwrap_or(DEFAULT_PAYMENT_METHOD);
        Ok(Some(Arc::new(StripeGateway::new(name, base, key.trim(), method)?)))
    }

    /// `POST path` with the form `pairs`, under `idempotency_key`; the answer's JSON.
    fn post(&self, path: &str, pairs: &[(&str, &str)], idempotency_key: &str) -> Result<Value, GatewayError> {
        let auth = format!("Bearer {}", self.secret_key);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("idempotency-key", idempotency_key),
            ("stripe-version", API_VERSION),
        ];
        let body = form_encode(pairs).into_bytes();
        let reply = self
            .runtime
            .block_on(self.api.send(hyper::Method::POST, path, &headers, body))
            .map_err(GatewayError::Unavailable)?;
        answer(&reply)
    }

    /// Creates a PaymentIntent for `call` (`capture`: `manual` to authorise, `automatic`
    /// to charge at once); its id.
    fn create(&self, call: &GatewayCall, amount_minor: i64, capture: &str) -> Result<String, GatewayError> {
        let (amount, currency, trip) =
            (amount_minor.to_string(), call.currency.code().to_ascii_lowercase(), call.trip_id.to_string());
        let pairs = [
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("capture_method", capture),
            ("confirm", "true"),
            ("payment_method", self.payment_method.as_str()),
            ("payment_method_types[0]", "card"),
            ("metadata[trip_id]", trip.as_str()),
        ];
        let v = self.post("/v1/payment_intents", &pairs, &call.idempotency_key)?;
        object_id(&v, "pi_")
    }
}

/// Maps Stripe's answer (the module's table).
fn answer(reply: &Reply) -> Result<Value, GatewayError> {
    let v = reply.json();
    let message = || {
        let e = &v["error"];
        let text = e["message"].as_str().or_else(|| e["code"].as_str()).unwrap_or("no error message");
        format!("stripe {}: {text}", reply.status)
    };
    match reply.status {
        200..=299 => Ok(v),
        409 | 429 | 500..=599 => Err(GatewayError::Unavailable(message())),
        _ => Err(GatewayError::Declined(message())),
    }
}

/// The `id` of an answered object, which must start with `prefix`.
fn object_id(v: &Value, prefix: &str) -> Result<String, GatewayError> {
    match v["id"].as_str() {
        Some(id) if id.starts_with(prefix) && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(id.to_owned())
        }
        _ => Err(GatewayError::Unavailable(format!("stripe answered without a {prefix}… id"))),
    }
}

/// The `/v1/payment_intents/{id}/…` path of a recorded reference (which the worker got
/// from Stripe; checked anyway, as it goes into a path).
fn intent_path(reference: &str, what: &str) -> Result<String, GatewayError> {
    if reference.starts_with("pi_") && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(format!("/v1/payment_intents/{reference}/{what}"))
    } else {
        Err(GatewayError::Declined(format!("{reference:?} is not a PaymentIntent id")))
    }
}

impl Gateway for StripeGateway {
    fn name(&self) -> &str {
        &self.name
    }

    fn execute(&self, call: &GatewayCall) -> Result<Option<String>, GatewayError> {
        let reference = call.reference.as_deref();
        match (call.action, reference) {
            (GatewayAction::Authorize { amount_minor }, _) => self.create(call, amount_minor, "manual").map(Some),
            (GatewayAction::Capture { amount_minor }, Some(pi)) => {
                let amount = amount_minor.to_string();
                let path = intent_path(pi, "capture")?;
                self.post(&path, &[("amount_to_capture", &amount)], &call.idempotency_key).map(|_| None)
            }
            // Never authorised: charged at once.
            (GatewayAction::Capture { amount_minor }, None) => self.create(call, amount_minor, "automatic").map(Some),
            (GatewayAction::Void, Some(pi)) => {
                self.post(&intent_path(pi, "cancel")?, &[], &call.idempotency_key).map(|_| None)
            }
            // Nothing was held at Stripe.
            (GatewayAction::Void, None) => Ok(None),
            (GatewayAction::Refund { amount_minor, .. }, Some(pi)) => {
                let (amount, trip) = (amount_minor.to_string(), call.trip_id.to_string());
                let pairs = [("payment_intent", pi), ("amount", amount.as_str()), ("metadata[trip_id]", trip.as_str())];
                let v = self.post("/v1/refunds", &pairs, &call.idempotency_key)?;
                object_id(&v, "re_").map(|_| None)
            }
            (GatewayAction::Refund { .. }, None) => {
                Err(GatewayError::Declined("no Stripe PaymentIntent is recorded for this trip".into()))
            }
        }
    }

    fn payout(&self, call: &PayoutCall) -> Result<(), GatewayError> {
        let (amount, currency) = (call.amount_minor.to_string(), call.currency.code().to_ascii_lowercase());
        let (payout, driver) = (call.payout_id.to_string(), call.driver_id.to_string());
        let pairs = [
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("metadata[payout_id]", payout.as_str()),
            ("metadata[driver_id]", driver.as_str()),
        ];
        let v = self.post("/v1/payouts", &pairs, &call.idempotency_key)?;
        object_id(&v, "po_").map(|_| ())
    }
}
