//! Staff's resources that are neither trips, drivers nor money: zones (created and
//! replaced by admins, read by any signed-in caller) and SOS alerts (listed and
//! acknowledged by staff).
//!
//! Guarantees: a zone is validated by the engine whole before it replaces anything
//! (`ZoneSpec` is strict JSON); alerts are listed oldest first, paged with a cursor, from
//! the hot state and the history.

use std::sync::Arc;

use dispatch_core::alert::AlertStatus;
use dispatch_core::clock::Timestamp;
use dispatch_core::id::{AlertId, ZoneId};
use dispatch_core::{Command, Outcome, ZoneSpec};
use hyper::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, Empty, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response, lat_lng};
use crate::render;

impl Ctx<'_> {
    /// `POST /v1/admin/zones`.
    pub(super) async fn create_zone(&mut self) -> Result<Resp, ApiError> {
        let zone: ZoneSpec = self.json(false)?;
        match self.submit(Command::CreateZone { id: None, zone: Box::new(zone) }).await? {
            Outcome::Zone(z) => Ok(json_response(StatusCode::CREATED, &render::zone(&z))),
            o => Err(unexpected(&o)),
        }
    }

    /// `PUT /v1/admin/zones/{id}`: the spec replaced whole.
    pub(super) async fn replace_zone(&mut self, id: &str) -> Result<Resp, ApiError> {
        let zone_id: ZoneId = parse_id(id, "zone")?;
        let zone: ZoneSpec = self.json(false)?;
        match self.submit(Command::ReplaceZone { zone_id, zone: Box::new(zone) }).await? {
            Outcome::Zone(z) => Ok(json_response(StatusCode::OK, &render::zone(&z))),
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/zones`.
    pub(super) fn list_zones(&self) -> Result<Resp, ApiError> {
        let items: Vec<Value> = self.app.engine.read(|v| v.catalog().zones().map(|z| render::zone(z)).collect());
        Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
    }

    /// `GET /v1/zones/lookup?lat=&lng=`: the active zone a point is in.
    pub(super) fn lookup_zone(&self) -> Result<Resp, ApiError> {
        let p = lat_lng(self.query.f64("lat")?, self.query.f64("lng")?)?;
        let z = self.app.engine.read(|v| v.catalog().lookup(p).map(Arc::clone))?;
        Ok(json_response(StatusCode::OK, &render::zone(&z)))
    }

    /// `GET /v1/admin/alerts?status=&limit=&cursor=`: oldest first (API.md), paged with a
    /// cursor like every list, from the hot state and the history (acknowledged alerts
    /// move there at the next checkpoint).
    pub(super) async fn list_alerts(&self) -> Result<Resp, ApiError> {
        let status = match self.query.get("status") {
            None => None,
            Some("open") => Some(AlertStatus::Open),
            Some("acknowledged") => Some(AlertStatus::Acknowledged),
            Some(_) => return Err(ApiError::invalid("status must be open or acknowledged")),
        };
        let limit = http::limit(&self.query)?;
        let after = match Cursor::from_query(&self.query)? {
            None => None,
            Some(c) => Some((
                Timestamp::from_millis(c.at_ms),
                AlertId::from_raw(c.id).ok_or_else(|| ApiError::invalid("cursor is malformed"))?,
            )),
        };
        let alerts = self.app.blocking(move |e| e.alerts(status, after, limit)).await?;
        let last = alerts.last().map(|a| Cursor { at_ms: a.raised_at.as_millis(), id: a.id.raw() });
        let items: Vec<Value> = alerts.iter().map(|a| render::alert(a)).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }

    /// `POST /v1/admin/alerts/{id}/ack`.
    pub(super) async fn ack_alert(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        let alert_id: AlertId = parse_id(id, "alert")?;
        match self.submit(Command::AckAlert { alert_id }).await? {
            Outcome::Alert(a) => Ok(json_response(StatusCode::OK, &render::alert(&a))),
            o => Err(unexpected(&o)),
        }
    }
}
