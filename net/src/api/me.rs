//! The caller's own profile (`GET /v1/me`, `PATCH /v1/me`) and trips' share links
//! (`POST`/`DELETE /v1/trips/{id}/share`, the public `GET /v1/share/{token}`).
//!
//! Guarantees: a profile change is one logged command validated by the domain; a field
//! the domain refuses is `400 invalid_request` naming it (`param`) and changes nothing;
//! the bootstrap admin, who has no user record, gets `404 not_found` saying so. A share
//! token is derived from its link's id (`Keys::share_token`): nothing secret is logged or
//! stored; the public read checks the token's MAC in constant time before it asks the
//! engine, answers `404` alike for a bad, unknown, revoked or expired token, and shows
//! only what `render::shared_trip` renders (no phone, no rider, no pickup code, no ids).

use dispatch_core::command::ProfileChange;
use dispatch_core::{Command, Outcome, PaymentMethod, TripId, user};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Ctx, Empty, now, unexpected};
use crate::auth::Principal;
use crate::http::{ApiError, Resp, json_response, no_content, rfc3339};
use crate::render;

impl Ctx<'_> {
    /// The caller's user id; the bootstrap admin has none (`404`, saying why).
    fn own_id(&self) -> Result<dispatch_core::UserId, ApiError> {
        match self.principal()? {
            Principal::User { id, .. } => Ok(id),
            Principal::BootstrapAdmin => Err(ApiError::new(
                "not_found",
                "the bootstrap admin token has no user record, so no profile: sign in as an admin user",
            )),
        }
    }

    /// The profile of `u` as the caller sees it.
    fn me_json(&self, u: &dispatch_core::User) -> Value {
        let driver = self.app.engine.driver(u.id);
        render::me(u, driver.as_deref(), now(), self.stale_s())
    }

    /// `GET /v1/me`.
    pub(super) fn me(&self) -> Result<Resp, ApiError> {
        let id = self.own_id()?;
        let u = self.app.engine.user(id).ok_or_else(|| ApiError::not_found("user"))?;
        Ok(json_response(StatusCode::OK, &self.me_json(&u)))
    }

    /// `PATCH /v1/me`: `name`, `email` (`null` removes it), `language`,
    /// `default_payment_method` (`null` removes it); absent fields stay as they are.
    pub(super) async fn update_me(&mut self) -> Result<Resp, ApiError> {
        self.own_id()?;
        let body: serde_json::Map<String, Value> = self.json(false)?;
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        let param = |name: &'static str| move |e: dispatch_core::DomainError| ApiError::from(e).with_param(name);
        let change = ProfileChange {
            name: text("name"),
            email: body.get("email").map(|_| text("email")),
            language: text("language"),
            default_payment_method: match body.get("default_payment_method") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(v) => Some(Some(serde_json::from_value::<PaymentMethod>(v.clone()).map_err(|_| {
                    ApiError::invalid("default_payment_method must be cash, card or wallet")
                        .with_param("default_payment_method")
                })?)),
            },
        };
        // The domain's rules, told here with the field they are about (it checks them again).
        if let Some(n) = &change.name {
            user::validate_name(n).map_err(param("name"))?;
        }
        if let Some(Some(e)) = &change.email {
            user::validate_email(e).map_err(param("email"))?;
        }
        if let Some(l) = &change.language {
            user::validate_language(l).map_err(param("language"))?;
        }
        match self.submit(Command::UpdateProfile(change)).await? {
            Outcome::User(u) => Ok(json_response(StatusCode::OK, &self.me_json(&u))),
            o => Err(unexpected(&o)),
        }
    }

    /// The trip `id` if the caller is its rider (anyone else: `404`, as for the trip).
    async fn own_trip(&self, id: &str) -> Result<std::sync::Arc<dispatch_core::Trip>, ApiError> {
        let t = self.visible_trip(id).await?;
        if self.for_rider(&t) { Ok(t) } else { Err(ApiError::not_found("trip")) }
    }

    /// `POST /v1/trips/{id}/share`: a new link, while the trip is open.
    pub(super) async fn share_trip(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        let t = self.own_trip(id).await?;
        if t.status.is_terminal() {
            // An archived trip would be "not found" to the engine: told here.
            return Err(ApiError::from(dispatch_core::DomainError::InvalidTransition {
                action: "share",
                entity: format!("trip {}", t.id),
                from: t.status.as_str(),
            }));
        }
        match self.submit(Command::CreateShare { id: None, trip_id: t.id }).await? {
            Outcome::Share { id, trip } => {
                let token = self.app.keys.share_token(id);
                let expires_at = dispatch_core::share::expires_at(&trip).map(rfc3339);
                let body = json!({"token": token, "url": format!("/v1/share/{token}"), "expires_at": expires_at});
                Ok(json_response(StatusCode::CREATED, &body))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `DELETE /v1/trips/{id}/share`: every link of the trip stops working.
    pub(super) async fn unshare_trip(&mut self, id: &str) -> Result<Resp, ApiError> {
        let t = self.own_trip(id).await?;
        self.submit(Command::RevokeShares { trip_id: t.id }).await?;
        Ok(no_content())
    }

    /// `GET /v1/share/{token}`: the shared trip, for anyone with the token.
    pub(super) async fn shared(&self, token: &str) -> Result<Resp, ApiError> {
        let gone = || ApiError::new("not_found", "no such share link, or it has expired");
        let share_id = self.app.keys.share_id(token).ok_or_else(gone)?;
        let at = now();
        let (tx, rx) = oneshot::channel();
        self.app.engine.query_with(
            move |s| s.share_live(share_id, at),
            move |r| {
                let _ = tx.send(r);
            },
        )?;
        let trip_id: TripId = match rx.await {
            Ok(r) => r.map_err(ApiError::from)?.ok_or_else(gone)?,
            Err(_) => return Err(ApiError::from_core(&dispatch_core::Error::ShutDown)),
        };
        let t = self.app.blocking(move |e| e.find_trip(trip_id)).await?.ok_or_else(gone)?;
        if !dispatch_core::share::is_live(&t, at) {
            return Err(gone());
        }
        self.refresh_eta(&t).await;
        let mut cards = self.app.engine.read(|v| render::Cards::of(v, &t));
        cards.eta = self.app.etas.cached(&t);
        Ok(json_response(StatusCode::OK, &render::shared_trip(&t, &cards)))
    }
}
