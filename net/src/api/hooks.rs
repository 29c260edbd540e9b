//! Outbound webhook endpoints as admins manage them: `POST`/`GET
//! /v1/admin/webhook-endpoints`, `DELETE /v1/admin/webhook-endpoints/{id}`, the delivery
//! log `GET /v1/admin/webhook-endpoints/{id}/deliveries` and `POST
//! .../deliveries/{event_id}/resend`.
//!
//! Guarantees: an endpoint URL is `https://` with a host TLS can verify, or `http://` to
//! a loopback address when the server runs with `--dev` (anything else: `400
//! invalid_request` with `param: "url"`, nothing logged); the secret is in the creation's
//! answer and in no other answer; the delivery log is newest event first, paginated with
//! the opaque cursor of the other lists, read from a snapshot.

use std::net::IpAddr;

use dispatch_core::hooks::{Delivery, Endpoint};
use dispatch_core::id::{EndpointId, EventId};
use dispatch_core::{Command, Outcome};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response, no_content, rfc3339};

/// `POST /v1/admin/webhook-endpoints`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointIn {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// An endpoint as admins see it: never the secret.
fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "id": e.id,
        "url": e.url,
        "events": e.events,
        "description": e.description,
        "created_at": rfc3339(e.created_at),
    })
}

/// A delivery as the log shows it.
pub(crate) fn delivery_json(d: &Delivery) -> Value {
    json!({
        "event_id": d.event.id,
        "type": d.event.kind.as_str(),
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": (d.status == dispatch_core::hooks::DeliveryStatus::Pending).then(|| rfc3339(d.next_attempt_at)),
        "created_at": rfc3339(d.event.created_at),
    })
}

/// Checks an endpoint URL the way this server sends to it: `https://` with a name TLS can
/// verify (and no user info or fragment), or, with `dev`, `http://` to a loopback address.
pub fn check_url(url: &str, dev: bool) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid(format!("url: {why}")).with_param("url");
    dispatch_core::hooks::validate_url(url).map_err(|_| bad("an https:// URL of at most 2048 printable characters"))?;
    if url.contains('#')
        || url.split_once("://").is_some_and(|(_, rest)| rest.split('/').next().is_some_and(|a| a.contains('@')))
    {
        return Err(bad("no user info or fragment"));
    }
    let endpoint = crate::notify::client::Endpoint::parse("url", url).map_err(|e| bad(&e))?;
    if !endpoint.https {
        let loopback = endpoint.host == "localhost" || endpoint.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !(dev && loopback) {
            return Err(bad("must be https:// (http:// only to a loopback address, with --dev)"));
        }
    }
    Ok(())
}

impl Ctx<'_> {
    /// `POST /v1/admin/webhook-endpoints`: `201` with the secret, shown this once.
    pub(super) async fn create_webhook_endpoint(&mut self) -> Result<Resp, ApiError> {
        let body: EndpointIn = self.json(false)?;
        check_url(&body.url, self.app.dev)?;
        let command = Command::CreateWebhookEndpoint {
            id: None,
            secret: None,
            url: body.url,
            events: body.events,
            description: body.description,
        };
        match self.submit(command).await? {
            Outcome::WebhookEndpoint(e) => {
                let mut v = endpoint_json(&e);
                v["secret"] = json!(e.secret);
                Ok(json_response(StatusCode::CREATED, &v))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/admin/webhook-endpoints`: every endpoint, oldest first (no secrets).
    pub(super) fn list_webhook_endpoints(&self) -> Result<Resp, ApiError> {
        let mut items: Vec<(i64, Value)> = self
            .app
            .engine
            .read(|v| v.hooks().endpoints().map(|e| (e.created_at.as_millis(), endpoint_json(e))).collect());
        items.sort_by_key(|(at, _)| *at);
        Ok(json_response(StatusCode::OK, &json!({"items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()})))
    }

    /// `DELETE /v1/admin/webhook-endpoints/{id}`: it and its deliveries go.
    pub(super) async fn delete_webhook_endpoint(&mut self, id: &str) -> Result<Resp, ApiError> {
        let endpoint_id: EndpointId = parse_id(id, "webhook endpoint")?;
        self.submit(Command::DeleteWebhookEndpoint { endpoint_id }).await?;
        Ok(no_content())
    }

    /// `GET /v1/admin/webhook-endpoints/{id}/deliveries?limit=&cursor=`: newest event first.
    pub(super) fn list_webhook_deliveries(&self, id: &str) -> Result<Resp, ApiError> {
        let endpoint_id: EndpointId = parse_id(id, "webhook endpoint")?;
        let limit = http::limit(&self.query)?;
        let before = match Cursor::from_query(&self.query)? {
            None => None,
            Some(c) => Some(EventId::from_raw(c.id).ok_or_else(|| ApiError::invalid("cursor is malformed"))?),
        };
        let found = self.app.engine.read_snapshot(|v| {
            v.hooks().endpoint(endpoint_id).map(|_| v.hooks().deliveries_of(endpoint_id, before, limit))
        });
        let found = found.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        let last = found.last().map(|d| Cursor { at_ms: d.event.created_at.as_millis(), id: d.event.id.raw() });
        let items: Vec<Value> = found.iter().map(|d| delivery_json(d)).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }

    /// `POST /v1/admin/webhook-endpoints/{id}/deliveries/{event_id}/resend`: a finished
    /// delivery is tried again (`409 invalid_transition` while it is pending).
    pub(super) async fn resend_webhook(&mut self, id: &str, event: &str) -> Result<Resp, ApiError> {
        let endpoint_id: EndpointId = parse_id(id, "webhook endpoint")?;
        let event_id: EventId = parse_id(event, "event")?;
        match self.submit(Command::ResendWebhook { endpoint_id, event_id }).await? {
            Outcome::WebhookDelivery(d) => Ok(json_response(StatusCode::OK, &delivery_json(&d))),
            o => Err(unexpected(&o)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn endpoint_urls_are_https_or_loopback_http_in_development() {
        assert!(check_url("https://hooks.example.com/dispatch", false).is_ok());
        assert!(check_url("http://hooks.example.com/dispatch", true).is_err());
        assert!(check_url("http://127.0.0.1:9000/in", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/in", true).is_ok());
        assert!(check_url("http://[::1]:9000/in", true).is_ok());
        assert!(check_url("http://localhost:9000/in", true).is_ok());
        assert!(check_url("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url("https://hooks.example.com/#x", false).is_err());
        assert!(check_url("https://hooks.example.com/?q=1", false).is_err());
        assert!(check_url("ftp://hooks.example.com/", true).is_err());
        assert!(check_url("https://", false).is_err());
    }
}
