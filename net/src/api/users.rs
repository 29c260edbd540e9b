//! Staff's users (issue 20: U): `GET /v1/admin/users` (list and search), `GET` and
//! `PATCH /v1/admin/users/{id}`, block and unblock, erase.
//!
//! Guarantees: lists and searches are answered from the view's user indexes
//! (`dispatch_core::user_index`), never by a walk of the users: O(log n + page) (a search
//! with a role or status filter reads the search's candidates, at most
//! `user_index::MAX_CANDIDATES` a page); every change is a logged command, answered with
//! the user as it is after it; a driver's answer carries its `stats`.

use dispatch_core::clock::Clock;
use dispatch_core::command::UserPatch;
use dispatch_core::user::UserStatus;
use dispatch_core::user_index::{self, UserCursor, UserQuery};
use dispatch_core::{Command, Outcome, Role, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::{Ctx, parse_id, unexpected};
use crate::http::{self, ApiError, Resp, json_response};
use crate::render;

/// `{"reason"}`: why a user is blocked or unblocked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockIn {
    #[serde(default)]
    reason: String,
}

/// A cursor of `GET /v1/admin/users`: `u1.<created ms hex>.<id hex>` in the newest-first
/// list, `k1.<key hex>.<id hex>` in a search (the key: the normalised name or the
/// reversed phone digits, UTF-8 in hex). Opaque to clients.
fn encode_cursor(c: &UserCursor) -> String {
    match c {
        UserCursor::Newest(at, id) => format!("u1.{:x}.{:x}", at.as_millis(), id.raw()),
        UserCursor::Key(k, id) => format!("k1.{}.{:x}", crate::hex::hex(k.as_bytes()), id.raw()),
    }
}

fn decode_cursor(s: &str) -> Result<UserCursor, ApiError> {
    let bad = || ApiError::invalid("cursor is malformed").with_param("cursor");
    let mut parts = s.split('.');
    let (kind, a, b) = (parts.next(), parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    if parts.next().is_some() {
        return Err(bad());
    }
    let id = u64::from_str_radix(b, 16).ok().and_then(UserId::from_raw).ok_or_else(bad)?;
    match kind {
        Some("u1") => {
            let at = i64::from_str_radix(a, 16).map_err(|_| bad())?;
            Ok(UserCursor::Newest(dispatch_core::clock::Timestamp::from_millis(at), id))
        }
        Some("k1") => {
            let bytes = crate::hex::unhex(a).ok_or_else(bad)?;
            Ok(UserCursor::Key(String::from_utf8(bytes).map_err(|_| bad())?, id))
        }
        _ => Err(bad()),
    }
}

/// `q`: a phone suffix when it is all digits (a leading `+` allowed) and 4 or more long,
/// else a name prefix (normalised by `user_index::name_key`).
fn parse_q(q: &str) -> Result<UserQuery, ApiError> {
    let digits = q.strip_prefix('+').unwrap_or(q);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() < user_index::MIN_PHONE_DIGITS {
            return Err(ApiError::invalid(format!(
                "a phone search needs at least {} digits",
                user_index::MIN_PHONE_DIGITS
            ))
            .with_param("q"));
        }
        return Ok(UserQuery::PhoneSuffix(digits.to_owned()));
    }
    let key = user_index::name_key(q);
    if key.is_empty() || q.chars().count() > dispatch_core::user::MAX_NAME_LEN {
        return Err(ApiError::invalid("q must be a name prefix (1-100 characters) or 4+ phone digits").with_param("q"));
    }
    Ok(UserQuery::NamePrefix(key))
}

impl Ctx<'_> {
    /// A user as staff see it, with `stats` for a driver (the view, now).
    fn admin_user_json(&self, u: &dispatch_core::User) -> Value {
        let now = dispatch_core::clock::SystemClock.now();
        let driver = self.app.engine.driver(u.id);
        render::admin_user(u, driver.as_deref(), now)
    }

    /// `GET /v1/admin/users?role=&q=&status=&limit=&cursor=`.
    pub(super) fn list_users(&self) -> Result<Resp, ApiError> {
        let role =
            match self.query.get("role") {
                None => None,
                Some(s) => Some(serde_json::from_value::<Role>(Value::String(s.to_owned())).map_err(|_| {
                    ApiError::invalid("role must be rider, driver, support or admin").with_param("role")
                })?),
            };
        let status =
            match self.query.get("status") {
                None => None,
                Some(s) => Some(UserStatus::parse(s).ok_or_else(|| {
                    ApiError::invalid("status must be active, blocked or erased").with_param("status")
                })?),
            };
        let query = match self.query.get("q") {
            None | Some("") => UserQuery::Newest,
            Some(q) => parse_q(q)?,
        };
        let limit = http::limit(&self.query)?;
        let after = self.query.get("cursor").map(decode_cursor).transpose()?;
        let after = match (&query, after) {
            (UserQuery::Newest, Some(c @ UserCursor::Newest(..)))
            | (UserQuery::NamePrefix(_) | UserQuery::PhoneSuffix(_), Some(c @ UserCursor::Key(..))) => Some(c),
            (_, Some(_)) => return Err(ApiError::invalid("cursor is of another list").with_param("cursor")),
            (_, None) => None,
        };
        // A page may read up to `MAX_CANDIDATES` entries: on a snapshot, holding no lock.
        let (users, next) = self.app.engine.read_snapshot(|v| v.user_page(&query, role, status, after.as_ref(), limit));
        let items: Vec<Value> = users.iter().map(|u| self.admin_user_json(u)).collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"items": items, "next_cursor": next.as_ref().map(encode_cursor)}),
        ))
    }

    /// `GET /v1/admin/users/{id}`: the user, erased ones too.
    pub(super) fn get_user(&self, id: &str) -> Result<Resp, ApiError> {
        let user_id: UserId = parse_id(id, "user")?;
        let u = self.app.engine.user(user_id).ok_or_else(|| ApiError::not_found("user"))?;
        Ok(json_response(StatusCode::OK, &self.admin_user_json(&u)))
    }

    /// `PATCH /v1/admin/users/{id}` `{"name"?,"email"?,"vehicle"?}`.
    pub(super) async fn patch_user(&mut self, id: &str) -> Result<Resp, ApiError> {
        let change: UserPatch = self.json(false)?;
        let user_id: UserId = parse_id(id, "user")?;
        self.user_out(Command::PatchUser { user_id, change }).await
    }

    /// `POST /v1/admin/users/{id}/block` (`blocked`) or `/unblock` `{"reason"}`.
    pub(super) async fn block_user(&mut self, id: &str, blocked: bool) -> Result<Resp, ApiError> {
        let b: BlockIn = self.json(true)?;
        let user_id: UserId = parse_id(id, "user")?;
        self.user_out(Command::BlockUser { user_id, blocked, reason: b.reason }).await
    }

    /// `POST /v1/admin/users/{id}/erase`: personal data replaced in the state at once; the
    /// files, positions and archived chat follow (the eraser: `crate::eraser`).
    pub(super) async fn erase_user(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.json::<super::Empty>(true)?;
        let user_id: UserId = parse_id(id, "user")?;
        self.user_out(Command::EraseUser { user_id }).await
    }

    async fn user_out(&mut self, command: Command) -> Result<Resp, ApiError> {
        match self.submit(command).await? {
            Outcome::User(u) => Ok(json_response(StatusCode::OK, &self.admin_user_json(&u))),
            o => Err(unexpected(&o)),
        }
    }
}
