//! Push devices (`POST`/`GET /v1/me/devices`, `DELETE /v1/me/devices/{id}`) and the
//! outbox as staff see it (`GET /v1/admin/notifications`).
//!
//! Guarantees: a device is a logged command validated by the domain (platform `fcm` or
//! `apns`, a token of 1-4096 printable ASCII); the same token again answers `200` with
//! the same device, a new one `201`; no answer ever shows a token; another user's device
//! is `404` like an unknown one. The outbox list is newest first, filtered by `status`
//! and `user_id`, paginated with the opaque cursor of the other lists, read from a
//! snapshot (no lock held while it walks).

use dispatch_core::id::{DeviceId, NotificationId};
use dispatch_core::outbox::{Device, Notification, Platform, Status};
use dispatch_core::{Command, Outcome, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response, no_content, rfc3339};

/// `POST /v1/me/devices`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIn {
    platform: Platform,
    token: String,
}

/// A device as its owner sees it: never the token.
fn device_json(d: &Device) -> Value {
    json!({"id": d.id, "platform": d.platform.as_str(), "created_at": rfc3339(d.created_at)})
}

/// An outbox item as staff see it.
fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "user_id": n.user_id,
        "channel": n.channel.as_str(),
        "kind": n.kind.as_str(),
        "status": n.status.as_str(),
        "attempts": n.attempts,
        "last_error": n.last_error,
        "created_at": rfc3339(n.created_at),
    })
}

impl Ctx<'_> {
    /// The caller's user id (the bootstrap admin has no devices: `404`).
    fn device_owner(&self) -> Result<UserId, ApiError> {
        match self.principal()? {
            crate::auth::Principal::User { id, .. } => Ok(id),
            crate::auth::Principal::BootstrapAdmin => {
                Err(ApiError::new("not_found", "the bootstrap admin token has no user record, so no devices"))
            }
        }
    }

    /// `POST /v1/me/devices`: `201` for a new device, `200` for a token already the caller's.
    pub(super) async fn register_device(&mut self) -> Result<Resp, ApiError> {
        self.device_owner()?;
        let body: DeviceIn = self.json(false)?;
        dispatch_core::outbox::validate_token(&body.token).map_err(|e| ApiError::from(e).with_param("token"))?;
        let command = Command::RegisterDevice { id: None, platform: body.platform, token: body.token };
        match self.submit(command).await? {
            Outcome::Device { device, created } => {
                let status = if created { StatusCode::CREATED } else { StatusCode::OK };
                Ok(json_response(status, &json!({"id": device.id, "platform": device.platform.as_str()})))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/me/devices`: the caller's devices, oldest first.
    pub(super) fn list_devices(&self) -> Result<Resp, ApiError> {
        let owner = self.device_owner()?;
        let items: Vec<Value> =
            self.app.engine.read(|v| v.outbox().devices_of(owner).iter().map(device_json).collect());
        Ok(json_response(StatusCode::OK, &json!({"items": items})))
    }

    /// `DELETE /v1/me/devices/{id}`: its owner removes it.
    pub(super) async fn delete_device(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.device_owner()?;
        let device_id: DeviceId = parse_id(id, "device")?;
        self.submit(Command::RemoveDevice { device_id }).await?;
        Ok(no_content())
    }

    /// `GET /v1/admin/notifications?status=&user_id=&limit=&cursor=`: the outbox, newest first.
    pub(super) fn list_notifications(&self) -> Result<Resp, ApiError> {
        let status = match self.query.get("status") {
            None => None,
            Some("pending") => Some(Status::Pending),
            Some("sent") => Some(Status::Sent),
            Some("failed") => Some(Status::Failed),
            Some(_) => return Err(ApiError::invalid("status must be pending, sent or failed").with_param("status")),
        };
        let user: Option<UserId> = match self.query.get("user_id") {
            None => None,
            Some(u) => {
                Some(u.parse().map_err(|_| ApiError::invalid("user_id is not a user id").with_param("user_id"))?)
            }
        };
        let limit = http::limit(&self.query)?;
        // The items are listed in the order they were made: the cursor's item places the
        // page (its time is kept in the cursor's shape, shared with the other lists).
        let before = match Cursor::from_query(&self.query)? {
            None => None,
            Some(c) => Some(NotificationId::from_raw(c.id).ok_or_else(|| ApiError::invalid("cursor is malformed"))?),
        };
        let keep =
            move |n: &Notification| status.is_none_or(|s| n.status == s) && user.is_none_or(|u| n.user_id == Some(u));
        let found = self.app.engine.read_snapshot(|v| v.outbox().newest_first(before, keep, limit));
        let last = found.last().map(|n| Cursor { at_ms: n.created_at.as_millis(), id: n.id.raw() });
        let items: Vec<Value> = found.iter().map(|n| notification_json(n)).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }
}
