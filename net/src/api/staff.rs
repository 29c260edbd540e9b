//! Staff sign-in (API.md v1.1 "Back office"): setting up with a one-time setup token
//! (`POST /v1/auth/staff/setup`), signing in with e-mail, password and TOTP code
//! (`POST /v1/auth/staff/login`), signing out (`POST /v1/auth/logout`), and an admin's
//! new setup token for a staff user (`POST /v1/admin/users/{id}/staff-setup`).
//!
//! Guarantees:
//! - a wrong e-mail, password or code answers one and the same `401 unauthorized` body,
//!   and an unknown e-mail still costs one Argon2 verification (against a dummy hash);
//! - a locked account answers `429 rate_limited` with `Retry-After` before any password is
//!   verified, right credentials or not;
//! - Argon2 runs on the blocking pool, never on a runtime thread; only its PHC string
//!   reaches the engine; the TOTP secret and the setup token are derived from the token
//!   secret and the state's nonces (`crate::auth::Keys`), never stored;
//! - a code is accepted once: the engine re-checks the step against the last accepted one
//!   as it records the sign-in, so two racing sign-ins with one code cannot both pass;
//! - signing out ends every session of the caller (its token generation moves on).

use dispatch_core::clock::Timestamp;
use dispatch_core::{Actor, Command, Outcome, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, Empty, parse_id, unexpected};
use crate::auth::{Principal, SetupClaims};
use crate::http::{ApiError, Resp, json_response, no_content, rfc3339};
use crate::render;

/// The one answer to a wrong e-mail, password or code.
fn wrong() -> ApiError {
    ApiError::new("unauthorized", "wrong e-mail, password or code")
}

/// The answer to a setup token that is forged, expired or used.
fn bad_setup() -> ApiError {
    ApiError::new("unauthorized", "the setup token is invalid, expired or used")
}

impl Ctx<'_> {
    /// A setup token for `user`'s setup `nonce`, valid until `expires_at`.
    pub(super) fn setup_token(&self, user: UserId, nonce: u64, expires_at: Timestamp) -> String {
        self.app.keys.setup_token(SetupClaims { user, nonce, exp_s: expires_at.as_secs() })
    }

    /// `POST /v1/auth/staff/setup`: the setup token's setup is consumed, the password
    /// (hashed) and the TOTP secret replaced; the answer is the secret's `otpauth://` URI.
    pub(super) async fn staff_setup(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            setup_token: String,
            password: String,
        }
        let b: In = self.json(false)?;
        let claims = self.app.keys.setup_claims(&b.setup_token, self.app.now().as_secs()).ok_or_else(bad_setup)?;
        crate::staff::validate_password(&b.password)?;
        // A used or replaced setup is refused before the hashing work (the engine checks
        // again as it consumes it).
        let pending = self.app.engine.read(|v| v.staff().get(claims.user).and_then(|c| c.setup));
        if pending.is_none_or(|(nonce, _)| nonce != claims.nonce) {
            return Err(bad_setup());
        }
        let password_hash = crate::staff::hash_blocking(b.password).await?;
        let command =
            Command::SetupStaff { user_id: claims.user, setup_nonce: claims.nonce, password_hash, totp_nonce: None };
        match self.app.submit(Actor::System, command).await {
            Ok(Outcome::StaffSetUp { email, totp_nonce }) => {
                let secret = self.app.keys.totp_secret(claims.user, totp_nonce);
                let uri = crate::totp::uri(&email, &secret);
                Ok(json_response(StatusCode::OK, &json!({"totp_uri": uri})))
            }
            Ok(o) => Err(unexpected(&o)),
            Err(e) if matches!(e.code, "forbidden" | "not_found") => Err(bad_setup()),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/auth/staff/login`: a 12-hour token and the user.
    pub(super) async fn staff_login(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            email: String,
            password: String,
            totp: String,
        }
        let b: In = self.json(false)?;
        let now = self.app.now();
        let found = self.app.engine.read(|v| {
            let id = v.staff().by_email(&b.email)?;
            Some((id, std::sync::Arc::clone(v.staff().get(id)?)))
        });
        if let Some(retry) = found.as_ref().and_then(|(_, c)| c.locked_for_s(now)) {
            return Err(ApiError::rate_limited(retry, "staff sign-in: the account is locked"));
        }
        // Always one verification: an unknown e-mail, or a user not set up, against the
        // dummy hash. An over-long password is wrong without the work.
        let phc = found.as_ref().and_then(|(_, c)| c.password_hash.clone());
        let password_ok = b.password.len() <= crate::staff::MAX_PASSWORD_BYTES
            && crate::staff::verify_blocking(phc, b.password).await?;
        let Some((id, creds)) = found else { return Err(wrong()) };
        let step = creds
            .totp_nonce
            .filter(|_| password_ok)
            .and_then(|n| crate::totp::check(&self.app.keys.totp_secret(id, n), &b.totp, now.as_secs()))
            .filter(|step| creds.last_step.is_none_or(|last| *step > last));
        let Some(step) = step else {
            return match self.app.submit(Actor::System, Command::StaffLoginFailed { user_id: id }).await {
                Err(e) if e.code == "rate_limited" => Err(e),
                _ => Err(wrong()),
            };
        };
        match self.app.submit(Actor::System, Command::StaffLoginSucceeded { user_id: id, step }).await {
            Ok(Outcome::User(u)) => {
                let token = self.app.keys.token_for(&u, now.as_secs());
                self.who = Some(Principal::user(u.id, u.role));
                // The token's end, said with it: the console signs out then (a timer on
                // `expires_in_s`, so the browser's clock does not matter).
                let ttl = crate::auth::STAFF_TOKEN_TTL_S;
                let expires_at = crate::http::rfc3339(now.plus_millis(ttl * 1000));
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"token": token, "user": render::user(&u), "expires_at": expires_at, "expires_in_s": ttl}),
                ))
            }
            Ok(o) => Err(unexpected(&o)),
            Err(e) if e.code == "rate_limited" => Err(e),
            // Another sign-in used this code first (replay).
            Err(_) => Err(wrong()),
        }
    }

    /// `POST /v1/auth/logout`: every token of the caller issued so far stops working (every
    /// session of the user ends). The bootstrap admin token cannot sign out.
    pub(super) async fn logout(&mut self) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        if self.principal()? == Principal::BootstrapAdmin {
            return Err(ApiError::invalid(
                "the bootstrap admin token cannot sign out: change DISPATCH_ADMIN_TOKEN to end it",
            ));
        }
        self.submit(Command::SignOut).await?;
        Ok(no_content())
    }

    /// `POST /v1/admin/users/{id}/staff-setup`: a new one-time setup token (24 h) for a
    /// staff user; `{"email"?}` gives or changes its sign-in address. Using it replaces the
    /// password and the TOTP secret; until then the old ones keep working.
    pub(super) async fn issue_staff_setup(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            #[serde(default)]
            email: Option<String>,
        }
        let b: In = self.json(true)?;
        let user_id: UserId = parse_id(id, "user")?;
        match self.submit(Command::IssueStaffSetup { user_id, email: b.email, nonce: None }).await? {
            Outcome::StaffSetupIssued { nonce, expires_at } => {
                let token = self.setup_token(user_id, nonce, expires_at);
                Ok(json_response(StatusCode::OK, &json!({"setup_token": token, "expires_at": rfc3339(expires_at)})))
            }
            o => Err(unexpected(&o)),
        }
    }
}
