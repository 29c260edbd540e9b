//! Payment gateways' webhooks, `POST /v1/webhooks/{gateway}`.
//!
//! Guarantees: the signature is verified before the body is parsed; an unsigned or forged
//! call pays the IP rate limit, and that limit is looked at before any cryptography: an
//! address that has spent it is answered `429` without a single HMAC computed (signed
//! webhooks are never counted, API.md, so a good signature costs its sender nothing); the
//! signature header itself is bounded (`dispatch_core::payment::MAX_SIGNATURE_HEADER_BYTES`,
//! `MAX_SIGNATURES`) and costs one HMAC per secret; an event id already seen answers
//! `duplicate` and moves nothing; a stale, disagreeing or unknown event is acknowledged
//! (`"applied": false` with the reason), so a gateway does not retry it forever. Payout
//! events (`data.payout_id`) and top-up captures (`data.top_up_id`) go to their own
//! engine commands (`PayoutReport`, `TopUpReport`) under the same rules.

use dispatch_core::{Actor, Command, Outcome};
use hyper::StatusCode;
use serde_json::json;

use super::routes::Endpoint;
use super::{Ctx, now, unexpected};
use crate::http::{ApiError, Resp, json_response};
use crate::ratelimit::{Class, Subject};

impl Ctx<'_> {
    /// `POST /v1/webhooks/{gateway}`: the gateway's signature first, then its body
    /// mapped to the engine's payment event. A stale or disagreeing event is answered
    /// `processed` with `"applied": false` and the reason (a gateway retries anything
    /// else); an event type the engine does not act on likewise.
    pub(super) async fn webhook(&mut self, gateway: &str) -> Result<Resp, ApiError> {
        let hooks = self.app.gateways.get(gateway).ok_or_else(|| ApiError::not_found("gateway"))?;
        let route = Endpoint::Webhook(String::new()).spec().name;
        // Before any cryptography: an address that spent its allowance on bad signatures
        // gets no more HMACs computed. Only a look: a good signature is never counted.
        self.app.limiter.peek(Class::Ip, Subject::Ip(self.peer)).map_err(|retry| {
            self.app.metrics.rate_limited(Class::Ip.as_str());
            ApiError::rate_limited(retry, &format!("{} limit on {route}", Class::Ip.as_str()))
                .with_limit(self.app.limiter.limit_of(Class::Ip))
        })?;
        if let Err(e) = hooks.verify(&self.headers, &self.body, now().as_secs()) {
            // Unsigned and forged calls pay the IP limit.
            self.app.limit(route, Class::Ip, Subject::Ip(self.peer))?;
            return Err(ApiError::new("invalid_signature", e.to_string()));
        }
        let event = hooks.parse(&self.headers, &self.body)?;
        let answer = |status: &str, applied: bool, reason: Option<String>| {
            let mut v = json!({"status": status, "applied": applied});
            if let Some(r) = reason {
                v["reason"] = json!(r);
            }
            json_response(StatusCode::OK, &v)
        };
        let answer_of = |o: Outcome| match o {
            Outcome::PaymentEvent { duplicate: true, .. } => Ok(answer("duplicate", false, None)),
            Outcome::PaymentEvent { duplicate: false, ignored } => Ok(answer("processed", ignored.is_none(), ignored)),
            o => Err(unexpected(&o)),
        };
        if let Some((payout_id, kind)) = event.payout {
            let c = Command::PayoutReport {
                gateway: gateway.to_owned(),
                event_id: event.event_id,
                payout_id,
                kind,
                amount_minor: event.has_amount.then_some(event.amount_minor),
            };
            return answer_of(self.app.submit(Actor::System, c).await?);
        }
        if let (Some((top_up_id, kind)), Some(currency)) = (event.top_up, event.currency) {
            let c = Command::TopUpReport {
                gateway: gateway.to_owned(),
                event_id: event.event_id,
                top_up_id,
                kind,
                amount_minor: event.amount_minor,
                currency,
            };
            return answer_of(self.app.submit(Actor::System, c).await?);
        }
        let (Some(kind), Some(trip_id), Some(currency)) = (event.kind, event.trip_id, event.currency) else {
            return Ok(answer("processed", false, Some(format!("event type {} is not acted on", event.event_type))));
        };
        let c = Command::PaymentEvent {
            gateway: gateway.to_owned(),
            event_id: event.event_id,
            kind,
            trip_id,
            amount_minor: event.amount_minor,
            currency,
            archived: None,
        };
        answer_of(self.app.submit(Actor::System, c).await?)
    }
}
