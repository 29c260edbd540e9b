//! Drivers: a driver's own status, position and offers, and the staff's reads and
//! suspension of drivers.
//!
//! Guarantees: every position (a status change's, a location report's) passes the same
//! checks (`crate::wire::LocationIn`, the engine's spoofing check); nearby drivers are a
//! query of the engine's R-tree answered right after a commit, never a scan; lists are
//! newest driver first with opaque cursors.

use dispatch_core::{Availability, Command, Outcome, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Ctx, PointIn, ReasonIn, now, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response, lat_lng, no_content};
use crate::render;
use crate::wire::LocationIn;

impl Ctx<'_> {
    /// `POST /v1/driver/status`: online or offline, with an optional position.
    pub(super) async fn driver_status(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            status: String,
            #[serde(default)]
            location: Option<PointIn>,
        }
        let b: In = self.json(false)?;
        let online = match b.status.as_str() {
            "online" => true,
            "offline" => false,
            _ => return Err(ApiError::invalid("status must be online or offline")),
        };
        let location = b.location.map(|l| l.get()).transpose()?;
        match self.submit(Command::SetDriverStatus { online, location }).await? {
            Outcome::Driver(d) => Ok(json_response(StatusCode::OK, &render::driver(&d, now(), self.stale_s()))),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/driver/location`: answered before it is durable (the engine may coalesce it).
    pub(super) async fn driver_location(&mut self) -> Result<Resp, ApiError> {
        let b: LocationIn = self.json(false)?;
        let report = b.report()?;
        self.submit(Command::UpdateLocation(report)).await?;
        Ok(no_content())
    }

    /// `GET /v1/driver/offers`: the caller's offers still pending.
    pub(super) fn driver_offers(&self) -> Result<Resp, ApiError> {
        let me = self.principal()?.user_id().ok_or_else(|| ApiError::new("forbidden", "drivers only"))?;
        let offers = self.app.engine.offers_for(me);
        let items: Vec<render::typed::OfferOut<'_>> = offers
            .iter()
            .filter_map(|t| {
                let o = t.offer_to(me)?;
                (o.state == dispatch_core::OfferState::Pending)
                    .then(|| render::offer(t, o.expires_at, o.distance_to_pickup_m))
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"items": items})))
    }

    /// `GET /v1/admin/drivers/nearby`: drivers at work near a point, nearest first.
    pub(super) async fn drivers_nearby(&self) -> Result<Resp, ApiError> {
        let p = lat_lng(self.query.f64("lat")?, self.query.f64("lng")?)?;
        let radius = self.query.parsed::<f64>("radius_m")?.unwrap_or(5_000.0);
        if !(radius.is_finite() && (1.0..=100_000.0).contains(&radius)) {
            return Err(ApiError::invalid("radius_m must be 1-100000"));
        }
        let limit = http::limit(&self.query)?;
        // The writer's R-tree, asked right after a commit (never a scan of every driver).
        let (tx, rx) = oneshot::channel();
        self.app.engine.nearby_drivers_with(p, radius, limit, move |r| {
            let _ = tx.send(r);
        })?;
        let near = match rx.await {
            Ok(r) => r.map_err(ApiError::from)?,
            Err(_) => return Err(ApiError::from_core(&dispatch_core::Error::ShutDown)),
        };
        let (t, stale_s) = (now(), self.stale_s());
        let items: Vec<Value> = near
            .into_iter()
            .map(|n| {
                let mut v = render::driver(&n.driver, t, stale_s);
                v["distance_m"] = json!(n.distance_m.round() as u64);
                v
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"items": items})))
    }

    /// `GET /v1/admin/drivers`: newest driver first, filtered by `?availability=`.
    pub(super) fn list_drivers(&self) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let cursor = Cursor::from_query(&self.query)?;
        let availability: Option<Availability> = self
            .query
            .get("availability")
            .map(|s| serde_json::from_value(json!(s)).map_err(|_| ApiError::invalid("unknown availability")))
            .transpose()?;
        let (t, stale_s) = (now(), self.stale_s());
        let mut drivers: Vec<(i64, u64, Value)> = self.app.engine.read_snapshot(|v| {
            v.drivers()
                .filter(|d| availability.is_none_or(|a| d.availability == a))
                .filter_map(|d| {
                    let created = v.user(d.id).map_or(0, |u| u.created_at.as_millis());
                    cursor
                        .is_none_or(|c| c.precedes(created, d.id.raw()))
                        .then(|| (created, d.id.raw(), render::driver(d, t, stale_s)))
                })
                .collect()
        });
        drivers.sort_by_key(|(at, id, _)| std::cmp::Reverse((*at, *id)));
        drivers.truncate(limit);
        let last = drivers.last().map(|(at, id, _)| Cursor { at_ms: *at, id: *id });
        let items = drivers.into_iter().map(|(_, _, v)| v).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }

    /// `GET /v1/admin/drivers/{id}`: one driver, whatever its availability.
    pub(super) fn get_driver(&self, id: &str) -> Result<Resp, ApiError> {
        let driver_id: UserId = parse_id(id, "driver")?;
        let d = self.app.engine.driver(driver_id).ok_or_else(|| ApiError::not_found("driver"))?;
        let (t, rating) = (now(), self.app.engine.user(driver_id).map(|u| u.rating).unwrap_or_default());
        let mut v = render::driver(&d, t, self.stale_s());
        // issue 20: U — staff see the driver's statistics.
        v["stats"] = render::driver_stats(&d, &rating, t);
        Ok(json_response(StatusCode::OK, &v))
    }

    /// `POST /v1/admin/drivers/{id}/suspend` (`suspended`) or `/unsuspend`.
    pub(super) async fn suspend(&mut self, id: &str, suspended: bool) -> Result<Resp, ApiError> {
        let b: ReasonIn = self.json(true)?;
        let driver_id: UserId = parse_id(id, "driver")?;
        match self.submit(Command::SetDriverSuspended { driver_id, suspended, reason: b.reason }).await? {
            Outcome::Driver(d) => Ok(json_response(StatusCode::OK, &render::driver(&d, now(), self.stale_s()))),
            o => Err(unexpected(&o)),
        }
    }
}
