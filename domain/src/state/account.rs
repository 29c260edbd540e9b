//! Sign-in codes, token revocation and driver presence.
//!
//! Guarantees:
//! - OTP send limits and lockouts are state, changed only by logged commands, so they
//!   survive restarts (see [`crate::otp`]); a wrong code is *counted* (the command
//!   succeeds with [`Outcome::OtpRefused`]) rather than refused, because a refused command
//!   changes nothing and a brute-forcer must not get free attempts;
//! - an attempt for a phone with no code pending (or no record at all) takes the same
//!   path to the caller as a wrong one: the same comparison, the same success with
//!   [`Outcome::OtpRefused`], so the same record logged and synced before the answer —
//!   its timing does not tell whether someone is signing in with that phone;
//! - a rider's first sign-in creates the rider; a driver's first sign-in opens an
//!   applicant's account (`applications.rs`), which cannot work until approved;
//! - revoking a user's tokens bumps their generation: the server refuses every token
//!   minted with an older one;
//! - a driver whose socket dropped is offered nothing; on a trip, the driver keeps it for
//!   `disconnect_grace_s`, after which an accepted (not yet started) trip goes back to
//!   searching and the driver offline. A ride in progress is never taken away.

use std::sync::Arc;

use super::{Deadline, Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::{Event, Outcome};
use crate::driver::Availability;
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::otp::{Attempt, OtpRecord};
use crate::trip::{TripStatus, WithdrawReason};
use crate::user::{self, Role, User};

/// How often idle OTP records and old gateway event ids are forgotten.
const HOUSEKEEPING_S: u32 = 10 * 60;

/// How long a gateway event id is remembered: 30 days.
pub const GATEWAY_EVENT_TTL_S: u32 = 30 * 24 * 60 * 60;

/// Whether an event id first seen at `seen_at` is still remembered at `now`: the one
/// rule for the hot state's housekeeping, the history's look-up and its purge.
pub fn gateway_event_kept(seen_at: Timestamp, now: Timestamp) -> bool {
    seen_at >= now.plus_millis(-i64::from(GATEWAY_EVENT_TTL_S) * 1000)
}

impl State {
    pub(super) fn issue_otp(
        &mut self,
        who: Who,
        phone: &str,
        role: Role,
        code_hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the server issues sign-in codes".into()));
        }
        user::validate_phone(phone)?;
        if !matches!(role, Role::Rider | Role::Driver) {
            return Err(Error::Invalid("role must be rider or driver".into()));
        }
        let mut record = self.otps.get(phone).cloned().unwrap_or_else(|| OtpRecord::new(role));
        record.issue(role, *code_hash, now)?;
        self.otps.insert(phone.to_owned(), record);
        self.schedule_housekeeping(now);
        Ok(Outcome::OtpIssued { expires_in_s: crate::otp::CODE_TTL_S })
    }

    pub(super) fn verify_otp(
        &mut self,
        who: Who,
        phone: &str,
        code_hash: &[u8; 32],
        new_user_id: Option<UserId>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the server verifies sign-in codes".into()));
        }
        let new_user_id = new_user_id.ok_or_else(|| Error::Internal("user id not stamped".into()))?;
        let Some(mut record) = self.otps.get(phone).cloned() else {
            // The same work as for a phone with a code pending (issue 24, finding 10d): the
            // same comparison, and the same answer, which is a success, so that the writer
            // logs and syncs this attempt as it does a counted one. A refusal would be
            // answered without a sync, a millisecond sooner on a real disk: a timing oracle
            // telling which phones are signing in. Nothing is kept for the phone (no record
            // for every number a stranger tries); the attempt changes no state.
            crate::otp::verify_absent(code_hash);
            return Ok(Outcome::OtpRefused { locked: false });
        };
        let role = match record.verify(code_hash, now) {
            Attempt::Refused(e) => return Err(e),
            Attempt::Wrong => {
                let locked = record.locked_until.is_some_and(|t| t > now);
                self.otps.insert(phone.to_owned(), record);
                return Ok(Outcome::OtpRefused { locked });
            }
            Attempt::Good(role) => role,
        };
        let existing = self.user_by_phone(role, phone).cloned();
        let user = match (existing, role) {
            (Some(u), _) => u,
            // A rider's first sign-in opens its account. A driver's opens an applicant's: a
            // driver user with no vehicle and no driver record, and an empty application
            // (`state/applications.rs`); it cannot work until staff approve it.
            (None, Role::Rider | Role::Driver) => {
                if self.users.contains_key(&new_user_id) {
                    return Err(Error::Internal(format!("user {new_user_id} already exists")));
                }
                let u = Arc::new(User {
                    id: new_user_id,
                    role,
                    name: if role == Role::Rider { "Rider" } else { "Driver" }.into(),
                    phone: phone.to_owned(),
                    vehicle: None,
                    token_generation: 0,
                    suspended: false,
                    created_at: now,
                    rating: Default::default(),
                    email: None,
                    language: crate::user::DEFAULT_LANGUAGE.into(),
                    default_payment_method: None,
                    staff_role: None,
                    blocked: None,
                    erased_at: None,
                });
                self.phones.insert((role, phone.to_owned()), new_user_id);
                self.user_index.replace(None, &u);
                self.users.insert(new_user_id, Arc::clone(&u));
                fx.users.push(new_user_id);
                if role == Role::Driver {
                    self.open_application(new_user_id, now, fx);
                }
                u
            }
            (None, _) => {
                return Err(Error::Forbidden("no account has this phone number; ask an operator".into()));
            }
        };
        self.otps.insert(phone.to_owned(), record);
        Ok(Outcome::User(user))
    }

    pub(super) fn housekeeping(&mut self, now: Timestamp) {
        // `imbl::OrdMap` has no `retain`: the idle records are found, then removed (each
        // removal copies only its path, and only where a checkpoint's copy shares it).
        let idle: Vec<String> = self.otps.iter().filter(|(_, r)| r.is_idle(now)).map(|(p, _)| p.clone()).collect();
        for phone in &idle {
            self.otps.remove(phone);
        }
        // Gateway event ids are kept well beyond any gateway's retry window (Stripe's is
        // 3 days) and any signature's tolerance, so a replay inside them is recognised.
        self.gateway_events.retain(|_, at| gateway_event_kept(*at, now));
        self.prune_shares(now);
        if !self.otps.is_empty() || !self.gateway_events.is_empty() || self.has_shares() {
            self.deadlines.insert((now.plus_secs(HOUSEKEEPING_S), Deadline::Housekeeping));
        }
    }

    /// Makes sure housekeeping will run.
    pub(super) fn schedule_housekeeping(&mut self, now: Timestamp) {
        if !self.deadlines.iter().any(|(_, d)| *d == Deadline::Housekeeping) {
            self.deadlines.insert((now.plus_secs(HOUSEKEEPING_S), Deadline::Housekeeping));
        }
    }

    /// The OTP record of a phone (for tests and operators).
    pub fn otp(&self, phone: &str) -> Option<&OtpRecord> {
        self.otps.get(phone)
    }

    pub(super) fn revoke_tokens(&mut self, who: Who, user_id: UserId, fx: &mut Effects) -> Result<Outcome> {
        Self::require_admin(who, "revokes tokens")?;
        let u = self.users.get_mut(&user_id).ok_or_else(|| Error::not_found("user", user_id))?;
        Arc::make_mut(u).token_generation += 1;
        fx.users.push(user_id);
        Ok(Outcome::User(Arc::clone(u)))
    }

    pub(super) fn set_presence(
        &mut self,
        who: Who,
        connected: bool,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = self.driver_of(who)?;
        let d = self.driver_mut(id, fx)?;
        d.connected = Some((connected, now));
        let trip_id = d.trip_id;
        if !connected {
            // Offers out to a driver who cannot see them go to the next drivers.
            self.withdraw_driver_offers(id, None, WithdrawReason::Expired, now, fx)?;
            if trip_id.is_some() {
                self.deadlines.insert((now.plus_secs(self.rules.disconnect_grace_s), Deadline::DisconnectGrace(id)));
            }
        }
        if let Some(trip_id) = trip_id {
            fx.events.push(Event::DriverPresence { driver_id: id, trip_id, connected });
        }
        Ok(Outcome::Driver(Arc::clone(self.driver_ref(id)?)))
    }

    /// The grace of a driver who disconnected at `at − disconnect_grace_s` is over.
    pub(super) fn disconnect_grace_over(
        &mut self,
        driver_id: UserId,
        at: Timestamp,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let Some(d) = self.drivers.get(&driver_id) else { return Ok(()) };
        let gone_since = match d.connected {
            Some((false, since)) => since,
            _ => return Ok(()),
        };
        if gone_since.plus_secs(self.rules.disconnect_grace_s) > at {
            return Ok(()); // dropped again later: that drop has its own deadline
        }
        let Some(trip_id) = d.trip_id else { return Ok(()) };
        let status = self.trip_ref(trip_id)?.status;
        if !matches!(status, TripStatus::Accepted | TripStatus::Arrived) {
            return Ok(());
        }
        self.driver_cancel(trip_id, now, fx)?;
        if self.driver_ref(driver_id)?.availability == Availability::Available {
            self.set_offline(driver_id, now, fx)?;
        }
        Ok(())
    }
}
