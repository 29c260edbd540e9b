//! The payment gateways whose webhooks `POST /v1/webhooks/{gateway}` takes: the built-in
//! `sim` and every `[gateways.<name>]` of the configuration, each with its signature
//! scheme, its secrets (`DISPATCH_WEBHOOK_SECRET_<NAME>`) and its body format.
//!
//! Guarantees:
//! - a body is looked at only after its signature verified (`verify`), under any of the
//!   gateway's secrets (rotation), in constant time (`dispatch_core::payment`); the
//!   signature header is bounded before any cryptography (at most
//!   `MAX_SIGNATURE_HEADER_BYTES`, and `MAX_SIGNATURES` entries for timestamped schemes),
//!   so its cost is one HMAC per secret whatever a caller sends;
//! - every format maps to the same engine command (`Command::PaymentEvent`): an event
//!   id, what happened, the trip, the amount in minor units and the currency;
//! - an event type a provider sends but the engine does not act on is recognised as
//!   such (`Parsed::kind` is `None`), so it is acknowledged rather than retried forever.

use std::collections::BTreeMap;

use dispatch_core::id::{PayoutId, TopUpId};
use dispatch_core::payment::PaymentEventKind;
use dispatch_core::payment::{WebhookError, WebhookScheme, verify_webhook};
use dispatch_core::payout::{PayoutReportKind, TopUpReportKind};
use dispatch_core::{Currency, TripId};
use hyper::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Config, GatewayScheme, Secrets};
use crate::http::ApiError;

/// How a gateway's event bodies are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// API.md's `sim` body: `{"id","type","data":{"trip_id","amount_minor","currency"}}`;
    /// a payout's event names `data.payout_id` (`payout.paid`, `payout.failed`; amount and
    /// currency optional), a top-up's `data.top_up_id` (`payment.captured`, `payment.failed`).
    Sim,
    /// Stripe's event: `{"id","type","data":{"object":{…,"metadata":{"trip_id"}}}}`; a
    /// payout's (`payout.paid`, `payout.failed`) names `metadata.payout_id` instead.
    Stripe,
    /// Paystack's: `{"event","data":{"id","amount","currency","metadata":{"trip_id"}}}`.
    Paystack,
    /// Razorpay's: `{"event","payload":{"payment"|"refund":{"entity":{"id","amount","currency","notes":{"trip_id"}}}}}`.
    Razorpay,
}

/// One gateway.
#[derive(Debug, Clone)]
pub struct GatewayHooks {
    /// How it signs.
    pub scheme: WebhookScheme,
    /// The header carrying the signature.
    pub header: &'static str,
    /// How its bodies are shaped.
    pub format: Format,
    /// Its current secrets.
    pub secrets: Vec<Vec<u8>>,
}

/// Every gateway the server takes webhooks from, by name.
#[derive(Debug, Clone, Default)]
pub struct Gateways(BTreeMap<String, GatewayHooks>);

impl Gateways {
    /// `sim` and the configured gateways, with their secrets.
    pub fn new(config: &Config, secrets: &Secrets) -> Result<Gateways, crate::Error> {
        let mut out = BTreeMap::new();
        let secret = |name: &str| {
            secrets
                .webhook_secrets
                .get(name)
                .cloned()
                .ok_or_else(|| crate::Error::MissingSecret(crate::config::webhook_secret_var(name)))
        };
        out.insert(
            "sim".to_owned(),
            GatewayHooks {
                scheme: WebhookScheme::Timestamped,
                header: "dispatch-signature",
                format: Format::Sim,
                secrets: secret("sim")?,
            },
        );
        for (name, g) in &config.gateways {
            let (scheme, header, format) = match g.scheme {
                GatewayScheme::Stripe => (WebhookScheme::Timestamped, "stripe-signature", Format::Stripe),
                GatewayScheme::Paystack => (WebhookScheme::HexSha512, "x-paystack-signature", Format::Paystack),
                GatewayScheme::Razorpay => (WebhookScheme::HexSha256, "x-razorpay-signature", Format::Razorpay),
            };
            out.insert(name.clone(), GatewayHooks { scheme, header, format, secrets: secret(name)? });
        }
        Ok(Gateways(out))
    }

    /// A gateway by name.
    pub fn get(&self, name: &str) -> Option<&GatewayHooks> {
        self.0.get(name)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// What a webhook says, in the engine's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The gateway's event id (deduplicated by the engine).
    pub event_id: String,
    /// The provider's event type.
    pub event_type: String,
    /// What happened; `None` for a type the engine does not act on.
    pub kind: Option<PaymentEventKind>,
    /// The trip.
    pub trip_id: Option<TripId>,
    /// Minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Option<Currency>,
    /// A payout event (`sim`: `payout.paid` / `payout.failed` with `data.payout_id`).
    pub payout: Option<(PayoutId, PayoutReportKind)>,
    /// A top-up's capture or failure (`sim`: `data.top_up_id`).
    pub top_up: Option<(TopUpId, TopUpReportKind)>,
    /// `amount_minor` was in the event (payout events may leave it out).
    pub has_amount: bool,
}

impl GatewayHooks {
    /// Checks the signature of `body` at `now_s`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_s: i64) -> Result<(), WebhookError> {
        let signature = headers.get(self.header).and_then(|v| v.to_str().ok());
        verify_webhook(self.scheme, &self.secrets, signature, body, now_s)
    }

    /// Maps a verified body to the engine's event (`400 invalid_request` when a field
    /// the mapping needs is missing or malformed).
    pub fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, ApiError> {
        match self.format {
            Format::Sim => parse_sim(body),
            Format::Stripe | Format::Paystack | Format::Razorpay => {
                let v: Value = crate::http::parse_json(body, false)?;
                let header_id = headers.get("x-razorpay-event-id").and_then(|h| h.to_str().ok());
                parse_provider(self.format, &v, header_id)
            }
        }
    }
}

fn parse_sim(body: &[u8]) -> Result<Parsed, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Data {
        #[serde(default)]
        trip_id: Option<TripId>,
        #[serde(default)]
        payout_id: Option<String>,
        #[serde(default)]
        top_up_id: Option<String>,
        #[serde(default)]
        amount_minor: Option<i64>,
        #[serde(default)]
        currency: Option<Currency>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        data: Data,
    }
    let b: In = crate::http::parse_json(body, false)?;
    let d = b.data;
    let mut parsed = Parsed {
        event_id: b.id,
        event_type: b.kind,
        kind: None,
        trip_id: None,
        amount_minor: d.amount_minor.unwrap_or(0),
        currency: d.currency,
        payout: None,
        top_up: None,
        has_amount: d.amount_minor.is_some(),
    };
    let one =
        usize::from(d.trip_id.is_some()) + usize::from(d.payout_id.is_some()) + usize::from(d.top_up_id.is_some());
    if one != 1 {
        return Err(ApiError::invalid("data names exactly one of trip_id, payout_id and top_up_id"));
    }
    if let Some(payout) = d.payout_id {
        let kind = match parsed.event_type.as_str() {
            "payout.paid" => PayoutReportKind::Paid,
            "payout.failed" => PayoutReportKind::Failed,
            _ => return Err(ApiError::invalid("a payout event is payout.paid or payout.failed")),
        };
        parsed.payout = Some((payout.parse().map_err(|_| ApiError::not_found("payout"))?, kind));
        return Ok(parsed);
    }
    let (Some(_), Some(_)) = (d.amount_minor, d.currency) else {
        return Err(ApiError::invalid("a payment event names amount_minor and currency"));
    };
    if let Some(top_up) = d.top_up_id {
        let kind = match parsed.event_type.as_str() {
            "payment.captured" => TopUpReportKind::Captured,
            "payment.failed" => TopUpReportKind::Failed,
            _ => return Err(ApiError::invalid("a top-up event is payment.captured or payment.failed")),
        };
        parsed.top_up = Some((top_up.parse().map_err(|_| ApiError::not_found("top-up"))?, kind));
        return Ok(parsed);
    }
    parsed.kind = Some(match parsed.event_type.as_str() {
        "payment.authorized" => PaymentEventKind::Authorized,
        "payment.captured" => PaymentEventKind::Captured,
        "payment.failed" => PaymentEventKind::Failed,
        "payment.voided" => PaymentEventKind::Voided,
        "refund.succeeded" => PaymentEventKind::RefundSucceeded,
        _ => return Err(ApiError::invalid("unknown event type")),
    });
    parsed.trip_id = d.trip_id;
    Ok(parsed)
}

/// The mapping of each provider's event types and fields (net/API-NOTES.md lists it).
fn parse_provider(format: Format, v: &Value, header_id: Option<&str>) -> Result<Parsed, ApiError> {
    let missing = |what: &str| ApiError::invalid(format!("the event has no {what}"));
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (event_type, object, amount_field) = match format {
        Format::Stripe => {
            let ty = v["type"].as_str().ok_or_else(|| missing("type"))?;
            let object = &v["data"]["object"];
            let amount = match ty {
                "payment_intent.amount_capturable_updated" => "amount_capturable",
                "payment_intent.succeeded" => "amount_received",
                _ => "amount",
            };
            (ty, object, amount)
        }
        Format::Paystack => (v["event"].as_str().ok_or_else(|| missing("event"))?, &v["data"], "amount"),
        Format::Razorpay => {
            let ty = v["event"].as_str().ok_or_else(|| missing("event"))?;
            let entity = if ty.starts_with("refund.") { "refund" } else { "payment" };
            (ty, &v["payload"][entity]["entity"], "amount")
        }
        Format::Sim => return Err(ApiError::invalid("not a provider format")),
    };
    let kind = match (format, event_type) {
        (Format::Stripe, "payment_intent.amount_capturable_updated") => Some(PaymentEventKind::Authorized),
        (Format::Stripe, "payment_intent.succeeded") => Some(PaymentEventKind::Captured),
        (Format::Stripe, "payment_intent.payment_failed") => Some(PaymentEventKind::Failed),
        (Format::Stripe, "payment_intent.canceled") => Some(PaymentEventKind::Voided),
        (Format::Stripe, "refund.created" | "refund.updated") => {
            (object["status"].as_str() == Some("succeeded")).then_some(PaymentEventKind::RefundSucceeded)
        }
        (Format::Stripe, "refund.failed") => Some(PaymentEventKind::Failed),
        (Format::Paystack, "charge.success") => Some(PaymentEventKind::Captured),
        (Format::Paystack, "refund.processed") => Some(PaymentEventKind::RefundSucceeded),
        (Format::Paystack, "refund.failed") => Some(PaymentEventKind::Failed),
        (Format::Razorpay, "payment.authorized") => Some(PaymentEventKind::Authorized),
        (Format::Razorpay, "payment.captured") => Some(PaymentEventKind::Captured),
        (Format::Razorpay, "payment.failed") => Some(PaymentEventKind::Failed),
        (Format::Razorpay, "refund.processed") => Some(PaymentEventKind::RefundSucceeded),
        (Format::Razorpay, "refund.failed") => Some(PaymentEventKind::Failed),
        _ => None,
    };
    let object_id = text(&object["id"]);
    let event_id = match format {
        Format::Stripe => text(&v["id"]),
        Format::Razorpay => header_id.map(str::to_owned).or_else(|| object_id.map(|id| format!("{event_type}:{id}"))),
        // Paystack events carry no id of their own: the type and the transaction's id.
        _ => object_id.map(|id| format!("{event_type}:{id}")),
    }
    .filter(|id| (1..=255).contains(&id.len()))
    .ok_or_else(|| missing("id (1-255 characters)"))?;
    let mut parsed = Parsed {
        event_id,
        event_type: event_type.to_owned(),
        kind,
        trip_id: None,
        amount_minor: 0,
        currency: None,
        payout: None,
        top_up: None,
        has_amount: false,
    };
    if let (Format::Stripe, "payout.paid" | "payout.failed") = (format, event_type) {
        // A payout the Stripe gateway sent names the engine's payout in its metadata
        // (`crate::stripe`); one without it (made in Stripe's dashboard) is not the engine's.
        let Some(payout) = object["metadata"]["payout_id"].as_str() else { return Ok(parsed) };
        let report = if event_type == "payout.paid" { PayoutReportKind::Paid } else { PayoutReportKind::Failed };
        parsed.payout = Some((payout.parse().map_err(|_| ApiError::not_found("payout"))?, report));
        parsed.amount_minor = object["amount"].as_i64().ok_or_else(|| missing("amount"))?;
        parsed.has_amount = true;
        return Ok(parsed);
    }
    if kind.is_none() {
        return Ok(parsed);
    }
    let meta = if format == Format::Razorpay { &object["notes"] } else { &object["metadata"] };
    let trip = meta["trip_id"].as_str().ok_or_else(|| missing("trip_id in its metadata"))?;
    parsed.trip_id = Some(trip.parse().map_err(|_| ApiError::not_found("trip"))?);
    parsed.amount_minor = object[amount_field].as_i64().ok_or_else(|| missing(amount_field))?;
    let currency = object["currency"].as_str().ok_or_else(|| missing("currency"))?;
    parsed.currency = Some(
        currency.to_ascii_uppercase().parse().map_err(|e| ApiError::invalid(format!("the event's currency: {e}")))?,
    );
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TRIP: &str = "trp_0000000000000007";

    fn parse(format: Format, v: Value) -> Result<Parsed, ApiError> {
        parse_provider(format, &v, None)
    }

    #[test]
    fn each_provider_maps_its_event_type_and_fields_to_the_engine_event() {
        let meta = json!({"trip_id": TRIP});
        let stripe = parse(
            Format::Stripe,
            json!({"id": "evt_1", "type": "payment_intent.succeeded",
                "data": {"object": {"id": "pi_1", "amount": 9000, "amount_received": 6704, "currency": "egp", "metadata": meta}}}),
        )
        .unwrap();
        assert_eq!(
            (stripe.event_id.as_str(), stripe.kind, stripe.amount_minor, stripe.currency.unwrap().code()),
            ("evt_1", Some(PaymentEventKind::Captured), 6704, "EGP")
        );
        let paystack = parse(
            Format::Paystack,
            json!({"event": "charge.success", "data": {"id": 302961, "amount": 6704, "currency": "NGN", "metadata": meta}}),
        )
        .unwrap();
        assert_eq!(
            (paystack.event_id.as_str(), paystack.kind, paystack.trip_id.unwrap().to_string().as_str()),
            ("charge.success:302961", Some(PaymentEventKind::Captured), TRIP)
        );
        let rzp = json!({"event": "refund.processed", "payload": {"refund": {"entity":
            {"id": "rfnd_1", "amount": 500, "currency": "INR", "notes": meta}}}});
        let by_body = parse(Format::Razorpay, rzp.clone()).unwrap();
        assert_eq!(
            (by_body.event_id.as_str(), by_body.kind, by_body.amount_minor),
            ("refund.processed:rfnd_1", Some(PaymentEventKind::RefundSucceeded), 500)
        );
        let by_header = parse_provider(Format::Razorpay, &rzp, Some("evt_rzp_9")).unwrap();
        assert_eq!(by_header.event_id, "evt_rzp_9", "Razorpay's event id header wins");
        let authorized = parse(
            Format::Razorpay,
            json!({"event": "payment.authorized", "payload": {"payment": {"entity":
                {"id": "pay_1", "amount": 7000, "currency": "INR", "notes": meta}}}}),
        )
        .unwrap();
        assert_eq!(authorized.kind, Some(PaymentEventKind::Authorized));
    }

    #[test]
    fn stripe_payout_events_name_the_engines_payout_in_their_metadata() {
        let paid = parse(
            Format::Stripe,
            json!({"id": "evt_po_1", "type": "payout.paid", "data": {"object": {"id": "po_1", "object": "payout",
                "amount": 25000, "currency": "egp", "metadata": {"payout_id": "pyo_0000000000000003"}}}}),
        )
        .unwrap();
        assert_eq!(
            (paid.payout.map(|(p, k)| (p.to_string(), k)), paid.amount_minor, paid.has_amount, paid.kind),
            (Some(("pyo_0000000000000003".to_owned(), PayoutReportKind::Paid)), 25000, true, None)
        );
        let failed = parse(
            Format::Stripe,
            json!({"id": "evt_po_2", "type": "payout.failed", "data": {"object": {"id": "po_1", "amount": 25000,
                "metadata": {"payout_id": "pyo_0000000000000003"}}}}),
        )
        .unwrap();
        assert_eq!(failed.payout.map(|(_, k)| k), Some(PayoutReportKind::Failed));
        // A payout made in Stripe's dashboard is not the engine's: acknowledged, no effect.
        let foreign = parse(
            Format::Stripe,
            json!({"id": "evt_po_3", "type": "payout.paid", "data": {"object": {"id": "po_9", "amount": 1, "metadata": {}}}}),
        )
        .unwrap();
        assert_eq!((foreign.payout, foreign.kind), (None, None));
        let bad = parse(
            Format::Stripe,
            json!({"id": "evt_po_4", "type": "payout.paid", "data": {"object": {"metadata": {"payout_id": "nope"}}}}),
        );
        assert_eq!(bad.unwrap_err().code, "not_found");
    }

    #[test]
    fn unhandled_types_are_recognised_and_bad_events_refused() {
        let other = parse(Format::Paystack, json!({"event": "transfer.success", "data": {"id": 1}})).unwrap();
        assert_eq!((other.kind, other.trip_id), (None, None));
        let no_trip = parse(
            Format::Paystack,
            json!({"event": "charge.success", "data": {"id": 1, "amount": 5, "currency": "NGN"}}),
        );
        assert_eq!(no_trip.unwrap_err().code, "invalid_request");
        let no_id = parse(Format::Stripe, json!({"type": "payment_intent.succeeded", "data": {"object": {}}}));
        assert_eq!(no_id.unwrap_err().code, "invalid_request");
        assert_eq!(parse_sim(br#"{"id":"e","type":"nope","data":{"trip_id":"trp_0000000000000007","amount_minor":1,"currency":"EGP"}}"#).unwrap_err().code, "invalid_request");
    }
}
