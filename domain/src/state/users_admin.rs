//! Staff's work on users (issue 20: U): editing a user, blocking and unblocking, erasing a
//! user's personal data, and the queue of erasures still to finish outside the state.
//!
//! Guarantees:
//! - any staff member edits and blocks (the server checks `users.write` / `users.block`
//!   first); only an admin erases; edits follow the rules of user creation (a driver's
//!   vehicle is of a category some zone prices; only drivers have one);
//! - a block is kept apart from an admin's suspension: a blocked driver's record is
//!   suspended (offline at once, its offers withdrawn, it cannot come online: the
//!   suspension path), and unblocking lifts that only, leaving a suspension an admin made
//!   (`User::suspended`) in force; a blocked rider cannot book (`Error::Blocked`);
//! - an erasure is refused while the user has an open or scheduled trip (as rider or
//!   driver); otherwise one command replaces the name ([`ERASED_NAME`]), removes the
//!   phone (its index entry is freed: the number may sign up again, as a new user), the
//!   e-mail, the OTP record and the push devices, revokes every token, drops the driver application's
//!   personal data and documents, keeps the driver suspended for good, and replaces the
//!   text of the messages the user wrote in hot trips; the data outside the state is
//!   queued (`State::erasures`) until the system logs [`Command::ErasureFinished`]
//!   (`crate::command::Command`); ledger entries keep the user's id;
//! - every user change goes through [`State::put_user`], which keeps the user indexes
//!   (`crate::user_index`) in step.

use std::sync::Arc;

use super::{Effects, State, Who, validate_reason};
use crate::clock::Timestamp;
use crate::command::{Outcome, UserPatch};
use crate::driver::Availability;
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::trip::{Trip, WithdrawReason};
use crate::user::{self, Block, ERASED_NAME, Erasure, Role, User};
use crate::user_index::UserIndex;

/// The text that replaces an erased user's chat messages.
pub const ERASED_TEXT: &str = "(erased)";

impl State {
    /// The staff's user indexes.
    pub fn user_index(&self) -> &UserIndex {
        &self.user_index
    }

    /// Erased users whose data outside the state is not gone yet, oldest id first.
    pub fn erasures(&self) -> &std::collections::BTreeMap<UserId, Erasure> {
        &self.erasures
    }

    /// Replaces a user (which must exist) with `new`, keeping the indexes in step.
    fn put_user(&mut self, new: User, fx: &mut Effects) -> Arc<User> {
        let new = Arc::new(new);
        if let Some(old) = self.users.insert(new.id, Arc::clone(&new)) {
            self.user_index.replace(Some(&old), &new);
        } else {
            self.user_index.replace(None, &new);
        }
        fx.users.push(new.id);
        new
    }

    fn staff_user(&self, who: Who, user_id: UserId) -> Result<&Arc<User>> {
        Self::require_staff(who, "manage users")?;
        self.users.get(&user_id).ok_or_else(|| Error::not_found("user", user_id))
    }

    pub(super) fn patch_user(
        &mut self,
        who: Who,
        user_id: UserId,
        change: &UserPatch,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let old = self.staff_user(who, user_id)?;
        if old.erased_at.is_some() {
            return Err(Error::InvalidTransition { action: "edit", entity: format!("user {user_id}"), from: "erased" });
        }
        if let Some(name) = &change.name {
            user::validate_name(name)?;
        }
        if let Some(email) = &change.email {
            user::validate_email(email)?;
        }
        if let Some(v) = &change.vehicle {
            if old.role != Role::Driver {
                return Err(Error::Invalid("only drivers have a vehicle".into()));
            }
            user::validate_vehicle(v)?;
            if !self.catalog.prices(&v.category) {
                return Err(Error::Invalid(format!(
                    "no zone prices category {}: create the zone's pricing before its drivers",
                    v.category
                )));
            }
        }
        let mut new = (**old).clone();
        if let Some(name) = &change.name {
            new.name.clone_from(name);
        }
        if let Some(email) = &change.email {
            new.email = Some(email.clone());
        }
        if let Some(v) = &change.vehicle {
            new.vehicle = Some(v.clone());
            // The driver is dispatched in its new category from now on.
            if let Some(d) = self.drivers.get(&user_id)
                && d.category != v.category
            {
                self.driver_mut(user_id, fx)?.category = v.category.clone();
            }
        }
        Ok(Outcome::User(self.put_user(new, fx)))
    }

    pub(super) fn block_user(
        &mut self,
        who: Who,
        user_id: UserId,
        blocked: bool,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let old = self.staff_user(who, user_id)?;
        validate_reason(reason)?;
        if old.role.is_staff() {
            return Err(Error::Invalid("staff accounts are not blocked: change their role's rights".into()));
        }
        let mut new = (**old).clone();
        new.blocked = blocked.then(|| Block { reason: reason.to_owned(), at: now });
        let admin_suspended = new.suspended;
        let erased = new.erased_at.is_some();
        let out = self.put_user(new, fx);
        if let Some(d) = self.drivers.get(&user_id) {
            let suspended = blocked || admin_suspended || erased;
            let going_offline = suspended && d.availability == Availability::Available;
            if d.suspended != suspended {
                self.driver_mut(user_id, fx)?.suspended = suspended;
            }
            if going_offline {
                self.set_offline(user_id, now, fx)?;
                self.withdraw_driver_offers(user_id, None, WithdrawReason::Expired, now, fx)?;
            }
        }
        Ok(Outcome::User(out))
    }

    /// Whether `user_id` has a trip that is not finished (open, or booked ahead).
    fn has_open_trip(&self, user_id: UserId) -> bool {
        self.open_trips_by_rider.contains_key(&user_id)
            || self.scheduled_by_rider.contains_key(&user_id)
            || self.drivers.get(&user_id).is_some_and(|d| d.trip_id.is_some())
    }

    pub(super) fn erase_user(
        &mut self,
        who: Who,
        user_id: UserId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_admin(who, "erases users")?;
        let old = Arc::clone(self.users.get(&user_id).ok_or_else(|| Error::not_found("user", user_id))?);
        if old.role.is_staff() {
            return Err(Error::Invalid("staff accounts are not erased".into()));
        }
        if old.erased_at.is_some() {
            // Erased already: the same answer again (the outside part is queued or done).
            return Ok(Outcome::User(old));
        }
        if self.has_open_trip(user_id) {
            return Err(Error::InvalidTransition {
                action: "erase",
                entity: format!("user {user_id}"),
                from: "on an open trip",
            });
        }
        // Every check passed: the writes.
        self.phones.remove(&(old.role, old.phone.clone()));
        self.otps.remove(&old.phone);
        let mut new = (*old).clone();
        new.name = ERASED_NAME.into();
        new.phone = String::new();
        new.email = None;
        new.token_generation = new.token_generation.wrapping_add(1);
        new.erased_at = Some(now);
        new.default_payment_method = None;
        if let Some(v) = &mut new.vehicle {
            // The plate and the car's description identify the person; the category is
            // the platform's.
            *v = user::Vehicle::new(v.category.clone(), "-");
        }
        let out = self.put_user(new, fx);
        // Push devices name the person's phone too: gone, and no push goes to them.
        if !self.outbox.devices_of(user_id).is_empty() {
            self.outbox.set_devices(user_id, None);
            fx.devices.push(user_id);
        }
        let mut documents = Vec::new();
        if let Some(a) = self.applications.items.get(&user_id) {
            let mut a = (**a).clone();
            documents = a.documents.values().map(|d| d.sha256).collect();
            if let Some(details) = a.details.take() {
                self.applications.reminders.remove(&(details.license.reminder_at(), user_id));
                self.applications.expiries.remove(&(details.license.expires_at(), user_id));
            }
            a.documents.clear();
            a.reminded = None;
            a.reason = None;
            a.updated_at = now;
            self.applications.items.insert(user_id, Arc::new(a));
            fx.applications = true;
        }
        if let Some(d) = self.drivers.get(&user_id) {
            let going_offline = d.availability == Availability::Available;
            if !d.suspended {
                self.driver_mut(user_id, fx)?.suspended = true;
            }
            if going_offline {
                self.set_offline(user_id, now, fx)?;
                self.withdraw_driver_offers(user_id, None, WithdrawReason::Expired, now, fx)?;
            }
        }
        // The chat the user wrote in trips still hot (finished ones waiting for the next
        // checkpoint to archive them: the user has no open trip). O(hot trips): an
        // erasure is rare, and the hot trips are bounded by the archive's window.
        let hot: Vec<_> = self
            .trips
            .values()
            .filter(|t| {
                (t.rider_id == user_id || t.driver_id == Some(user_id))
                    && t.messages.iter().any(|m| m.from_user_id == Some(user_id))
            })
            .map(|t| t.id)
            .collect();
        for trip_id in hot {
            let t = self.trip_mut(trip_id, fx)?;
            for m in Arc::make_mut(&mut t.messages).iter_mut().filter(|m| m.from_user_id == Some(user_id)) {
                m.text = ERASED_TEXT.into();
            }
        }
        self.erasures.insert(user_id, Erasure { at: now, role: old.role, documents });
        fx.erasures = true;
        Ok(Outcome::User(out))
    }

    /// `trip` (back from the history) with the text of erased users' chat messages
    /// replaced, as the eraser replaces it in the history: an archived trip restored
    /// before the eraser reached it does not bring the words back into the hot state
    /// (and the next checkpoint would write them again). O(the trip's messages).
    pub(super) fn without_erased_words(&self, trip: &Arc<Trip>) -> Arc<Trip> {
        let erased = |m: &crate::chat::Message| {
            m.text != ERASED_TEXT
                && m.from_user_id.and_then(|u| self.users.get(&u)).is_some_and(|u| u.erased_at.is_some())
        };
        if !trip.messages.iter().any(erased) {
            return Arc::clone(trip);
        }
        let mut t = (**trip).clone();
        for m in Arc::make_mut(&mut t.messages).iter_mut() {
            if erased(m) {
                m.text = ERASED_TEXT.into();
            }
        }
        Arc::new(t)
    }

    pub(super) fn erasure_finished(&mut self, who: Who, user_id: UserId, fx: &mut Effects) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the system finishes erasures".into()));
        }
        // Idempotent: a second report after a restart finds nothing to remove.
        if self.erasures.remove(&user_id).is_some() {
            fx.erasures = true;
        }
        Ok(Outcome::Done)
    }
}
