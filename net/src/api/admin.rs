//! Staff's resources that are neither trips, drivers nor money: zones (created and
//! replaced by admins, read by any signed-in caller) and SOS alerts (listed and
//! acknowledged by staff).
//!
//! Guarantees: a zone is validated by the engine whole before it replaces anything
//! (`ZoneSpec` is strict JSON); alerts are listed oldest first, at most `limit`.

use std::sync::Arc;

use dispatch_core::id::{AlertId, ZoneId};
use dispatch_core::{Command, Outcome, ZoneSpec};
use hyper::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, Empty, parse_id, unexpected};
use crate::http::{self, ApiError, Resp, json_response, lat_lng};
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

    /// `GET /v1/admin/alerts`: oldest first, at most `limit`.
    pub(super) fn list_alerts(&self) -> Result<Resp, ApiError> {
        let status = self.query.get("status").map(str::to_owned);
        let mut alerts: Vec<_> = self.app.engine.read_snapshot(|v| {
            v.alerts().filter(|a| status.as_deref().is_none_or(|s| a.status.as_str() == s)).cloned().collect()
        });
        alerts.sort_by_key(|a| (a.raised_at, a.id));
        let limit = http::limit(&self.query)?;
        let items: Vec<Value> = alerts.iter().take(limit).map(|a| render::alert(a)).collect();
        Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
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
