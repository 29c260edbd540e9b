//! Signing in and the accounts behind tokens: OTP issue and verify (`/v1/auth/otp*`,
//! open to anyone), creating users and revoking their tokens (admin).
//!
//! Guarantees: a code is sent only after the engine recorded its hash (never the code
//! itself) and accepted the send limits; a wrong or expired code is `401 invalid_otp`,
//! and the phone's lockout is the engine's; a signed-in user's id reaches the request's
//! log line, never the phone or the code.

use dispatch_core::{Actor, Command, NewUser, Outcome, Role, UserId, Vehicle};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, Empty, parse_id, unexpected};
use crate::auth::Principal;
use crate::http::{ApiError, Resp, json_response, no_content};
use crate::render;

impl Ctx<'_> {
    /// `POST /v1/auth/otp`: a code by SMS, within the phone's send limits.
    pub(super) async fn otp_issue(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            phone: String,
            role: Role,
        }
        let b: In = self.json(false)?;
        dispatch_core::user::validate_phone(&b.phone)?;
        if !matches!(b.role, Role::Rider | Role::Driver) {
            return Err(ApiError::invalid("role must be rider or driver"));
        }
        let code = crate::sms::new_code();
        let code_hash = self.app.keys.otp_hash(&b.phone, &code);
        let o = self
            .app
            .submit(Actor::System, Command::IssueOtp { phone: b.phone.clone(), role: b.role, code_hash })
            .await?;
        match o {
            Outcome::OtpIssued { expires_in_s } => {
                self.app.sms.send(&b.phone, &format!("Your dispatch code is {code}"), Some(&code));
                Ok(json_response(StatusCode::ACCEPTED, &json!({"expires_in_s": expires_in_s})))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/auth/otp/verify`: a token for the phone's user; the user is the log line's.
    pub(super) async fn otp_verify(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            phone: String,
            code: String,
        }
        let b: In = self.json(false)?;
        dispatch_core::user::validate_phone(&b.phone)?;
        let code_hash = self.app.keys.otp_hash(&b.phone, &b.code);
        let o =
            self.app.submit(Actor::System, Command::VerifyOtp { phone: b.phone, code_hash, new_user_id: None }).await?;
        match o {
            Outcome::User(u) => {
                let token = self.app.keys.token_for(&u, self.app.now().as_secs());
                self.who = Some(Principal::user(u.id, u.role));
                let mut user = render::user(&u);
                if u.role == Role::Driver {
                    // A driver account opened by a first sign-in is an applicant until approved.
                    let approved = self.app.engine.read(|v| v.driver(u.id).is_some());
                    user["status"] = json!(if approved { "approved" } else { "applicant" });
                }
                Ok(json_response(StatusCode::OK, &json!({"token": token, "user": user})))
            }
            Outcome::OtpRefused { locked } => Err(ApiError::new(
                "invalid_otp",
                if locked { "wrong code; the phone is now locked for an hour" } else { "wrong or expired code" },
            )),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/admin/users`: the user and a token for it; a staff user with an
    /// `email` (or of a custom role, `[roles.<name>]`) is created with its sign-in
    /// credentials, and a staff user with an `email` also gets a one-time `setup_token`
    /// (API.md v1.1 "Back office").
    pub(super) async fn create_user(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            role: String,
            name: String,
            phone: String,
            #[serde(default)]
            vehicle: Option<Vehicle>,
            #[serde(default)]
            email: Option<String>,
        }
        let b: In = self.json(false)?;
        let (role, staff_role) = match b.role.as_str() {
            "rider" => (Role::Rider, None),
            "driver" => (Role::Driver, None),
            "support" => (Role::Support, None),
            "admin" => (Role::Admin, None),
            custom if self.app.config.roles.contains_key(custom) => (Role::Support, Some(custom.to_owned())),
            _ => {
                return Err(ApiError::invalid("role must be rider, driver, support, admin or a configured staff role")
                    .with_param("role"));
            }
        };
        if b.email.is_some() && !role.is_staff() {
            return Err(ApiError::invalid("only staff users sign in with an e-mail").with_param("email"));
        }
        let new = NewUser { id: None, role, name: b.name, phone: b.phone, vehicle: b.vehicle };
        if b.email.is_none() && staff_role.is_none() {
            return match self.submit(Command::CreateUser(new)).await? {
                Outcome::User(u) => {
                    let token = self.app.keys.token_for(&u, self.app.now().as_secs());
                    Ok(json_response(StatusCode::CREATED, &json!({"user": render::user(&u), "token": token})))
                }
                o => Err(unexpected(&o)),
            };
        }
        let command = Command::CreateStaff { user: new, staff_role, email: b.email, setup_nonce: None };
        match self.submit(command).await? {
            Outcome::StaffCreated { user: u, setup } => {
                let token = self.app.keys.token_for(&u, self.app.now().as_secs());
                let mut out = json!({"user": render::user(&u), "token": token});
                if let Some((nonce, expires_at)) = setup {
                    out["setup_token"] = json!(self.setup_token(u.id, nonce, expires_at));
                }
                Ok(json_response(StatusCode::CREATED, &out))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/admin/users/{id}/revoke-tokens`: every token issued to the user so far stops working.
    pub(super) async fn revoke_tokens(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        let user_id: UserId = parse_id(id, "user")?;
        self.submit(Command::RevokeTokens { user_id }).await?;
        Ok(no_content())
    }
}
