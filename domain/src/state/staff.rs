//! Staff sign-in (API.md v1.1 "Back office"): creating staff users with a sign-in e-mail,
//! issuing and consuming setups, counting failed sign-ins and locking, accepting a
//! sign-in's TOTP step once, and signing out.
//!
//! Guarantees:
//! - only an admin (or the system) creates staff users and issues setups; only the system
//!   (the server, after checking the setup token, the password and the TOTP code itself)
//!   sets up, counts a failure or records a success;
//! - an e-mail names one staff user (any case); a custom role's name is well formed and
//!   its user's role is `support`;
//! - a setup is consumed once, before its expiry, and replaces password and TOTP secret;
//! - while an account is locked every failure and success is refused (`rate_limited`);
//!   a success is refused for a TOTP step not later than the last accepted one (replay),
//!   so two racing sign-ins with one code cannot both pass;
//! - signing out bumps the caller's token generation: every token issued before stops.

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::{Actor, NewUser, Outcome};
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::staff::{self, Credentials, LOCK_S, MAX_FAILURES, SETUP_TTL_S};
use crate::user::{self, Role};

impl State {
    /// Staff credentials, by user and by e-mail.
    pub fn staff(&self) -> &staff::Staff {
        &self.staff
    }

    /// An e-mail a staff user may sign in with: plausible and not another's.
    fn check_staff_email(&self, email: &str, user: UserId) -> Result<()> {
        user::validate_email(email).map_err(|e| Error::InvalidParam { param: "email", message: e.to_string() })?;
        if !self.staff.email_free_for(email, user) {
            return Err(Error::InvalidParam {
                param: "email",
                message: "another staff user signs in with this e-mail".into(),
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_staff(
        &mut self,
        who: Who,
        new: &NewUser,
        staff_role: Option<&str>,
        email: Option<&str>,
        setup_nonce: Option<u64>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_admin(who, "creates staff users")?;
        let id = new.id.ok_or_else(|| Error::Internal("user id not stamped".into()))?;
        match (new.role, staff_role) {
            (Role::Support, Some(name)) => staff::validate_role_name(name)?,
            (Role::Support | Role::Admin, None) => {}
            (Role::Admin, Some(_)) => {
                return Err(Error::InvalidParam { param: "role", message: "a custom staff role is support's".into() });
            }
            (Role::Rider | Role::Driver, _) => {
                return Err(Error::InvalidParam { param: "role", message: "a staff user is support or admin".into() });
            }
        }
        let setup = match email {
            Some(email) => {
                self.check_staff_email(email, id)?;
                let nonce = setup_nonce.ok_or_else(|| Error::Internal("setup nonce not stamped".into()))?;
                Some((nonce, now.plus_secs(SETUP_TTL_S as u32)))
            }
            None => None,
        };
        // Checks everything else, then writes the user.
        self.create_user(who, new, now, fx)?;
        let u = self.users.get_mut(&id).ok_or_else(|| Error::Internal(format!("user {id} vanished")))?;
        let u = Arc::make_mut(u);
        u.staff_role = staff_role.map(str::to_owned);
        u.email = email.map(str::to_owned);
        if let Some(email) = email {
            self.staff.put(
                id,
                Credentials {
                    email: email.to_owned(),
                    password_hash: None,
                    setup,
                    totp_nonce: None,
                    last_step: None,
                    failures: 0,
                    locked_until: None,
                },
            );
            fx.staff = true;
        }
        let user = Arc::clone(self.users.get(&id).ok_or_else(|| Error::Internal(format!("user {id} vanished")))?);
        Ok(Outcome::StaffCreated { user, setup })
    }

    pub(super) fn issue_staff_setup(
        &mut self,
        who: Who,
        user_id: UserId,
        email: Option<&str>,
        nonce: Option<u64>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_admin(who, "issues staff setups")?;
        let u = self.users.get(&user_id).ok_or_else(|| Error::not_found("user", user_id))?;
        if !u.role.is_staff() {
            return Err(Error::Invalid(format!("user {user_id} is not staff")));
        }
        let nonce = nonce.ok_or_else(|| Error::Internal("setup nonce not stamped".into()))?;
        let current = self.staff.get(user_id).map(|c| Credentials::clone(c));
        let email = match (email, &current) {
            (Some(e), _) => {
                self.check_staff_email(e, user_id)?;
                e.to_owned()
            }
            (None, Some(c)) => c.email.clone(),
            (None, None) => {
                return Err(Error::InvalidParam {
                    param: "email",
                    message: "this staff user has no sign-in e-mail yet: give one".into(),
                });
            }
        };
        let expires_at = now.plus_secs(SETUP_TTL_S as u32);
        let creds = match current {
            Some(c) => Credentials { email: email.clone(), setup: Some((nonce, expires_at)), ..c },
            None => Credentials {
                email: email.clone(),
                password_hash: None,
                setup: Some((nonce, expires_at)),
                totp_nonce: None,
                last_step: None,
                failures: 0,
                locked_until: None,
            },
        };
        self.staff.put(user_id, creds);
        fx.staff = true;
        let u = self.users.get_mut(&user_id).ok_or_else(|| Error::not_found("user", user_id))?;
        if u.email.as_deref() != Some(email.as_str()) {
            Arc::make_mut(u).email = Some(email);
            fx.users.push(user_id);
        }
        Ok(Outcome::StaffSetupIssued { nonce, expires_at })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn setup_staff(
        &mut self,
        who: Who,
        user_id: UserId,
        setup_nonce: u64,
        password_hash: &str,
        totp_nonce: Option<u64>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the server sets staff up".into()));
        }
        staff::validate_phc(password_hash)?;
        let totp_nonce = totp_nonce.ok_or_else(|| Error::Internal("TOTP nonce not stamped".into()))?;
        let c = self.staff.get(user_id).ok_or_else(|| Error::Forbidden("no setup pending".into()))?;
        match c.setup {
            Some((nonce, expires_at)) if nonce == setup_nonce && now < expires_at => {}
            _ => return Err(Error::Forbidden("this setup was used, replaced or expired".into())),
        }
        let creds = Credentials {
            email: c.email.clone(),
            password_hash: Some(password_hash.to_owned()),
            setup: None,
            totp_nonce: Some(totp_nonce),
            last_step: None,
            failures: 0,
            locked_until: None,
        };
        let email = creds.email.clone();
        self.staff.put(user_id, creds);
        fx.staff = true;
        Ok(Outcome::StaffSetUp { email, totp_nonce })
    }

    pub(super) fn staff_login_failed(
        &mut self,
        who: Who,
        user_id: UserId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let c = self.signing_in(who, user_id, now)?;
        let failures = c.failures.saturating_add(1);
        let locked = failures >= MAX_FAILURES;
        let creds = Credentials {
            failures: if locked { 0 } else { failures },
            locked_until: locked.then(|| now.plus_millis(LOCK_S * 1000)),
            ..Credentials::clone(c)
        };
        self.staff.put(user_id, creds);
        fx.staff = true;
        Ok(Outcome::StaffLoginCounted { locked })
    }

    pub(super) fn staff_login_succeeded(
        &mut self,
        who: Who,
        user_id: UserId,
        step: u64,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let c = self.signing_in(who, user_id, now)?;
        if !c.is_set_up() {
            return Err(Error::Forbidden("this staff user is not set up".into()));
        }
        if c.last_step.is_some_and(|last| step <= last) {
            return Err(Error::Forbidden("this code was already used".into()));
        }
        let creds = Credentials { last_step: Some(step), failures: 0, locked_until: None, ..Credentials::clone(c) };
        self.staff.put(user_id, creds);
        fx.staff = true;
        let u = self.users.get(&user_id).ok_or_else(|| Error::not_found("user", user_id))?;
        Ok(Outcome::User(Arc::clone(u)))
    }

    /// The credentials of a sign-in the server reports: the system's only, refused while
    /// the account is locked.
    fn signing_in(&self, who: Who, user_id: UserId, now: Timestamp) -> Result<&Arc<Credentials>> {
        if who != Who::System {
            return Err(Error::Forbidden("only the server reports staff sign-ins".into()));
        }
        let c = self.staff.get(user_id).ok_or_else(|| Error::not_found("staff user", user_id))?;
        if let Some(retry_after_s) = c.locked_for_s(now) {
            return Err(Error::RateLimited { what: "staff sign-in (account locked)", retry_after_s });
        }
        Ok(c)
    }

    pub(super) fn sign_out(&mut self, actor: Actor, fx: &mut Effects) -> Result<Outcome> {
        let Actor::User(id) = actor else {
            return Err(Error::Invalid("only a user with a record signs out".into()));
        };
        let u = self.users.get_mut(&id).ok_or_else(|| Error::Forbidden(format!("unknown user {id}")))?;
        let u = Arc::make_mut(u);
        u.token_generation = u.token_generation.wrapping_add(1);
        fx.users.push(id);
        Ok(Outcome::Done)
    }

    /// The staff credentials' invariants: the e-mail index names each user with
    /// credentials under its own address; only staff users have credentials.
    pub(super) fn check_staff_invariants(&self) -> std::result::Result<(), String> {
        if !self.staff.consistent() {
            return Err("the staff e-mail index does not match the credentials".into());
        }
        for (id, _) in self.staff.iter() {
            if !self.users.get(id).is_some_and(|u| u.role.is_staff()) {
                return Err(format!("user {id} has staff credentials and is not staff"));
            }
        }
        Ok(())
    }
}
