//! Users and drivers: the dispatch rules, accounts, a driver's going online or offline, and
//! suspension.
//!
//! Guarantees:
//! - only the system sets the rules, and only rules that pass `DispatchRules::validate`;
//! - only an admin (or the system) creates users and suspends drivers; a role and phone
//!   number name one user; a driver has a vehicle of a category some zone prices;
//! - a driver on a trip cannot go offline; going offline (or being suspended while
//!   available) withdraws the driver's pending offers and takes it out of the spatial index;
//! - a suspended driver cannot come online; suspended mid-trip, it finishes the trip and
//!   goes offline when the trip ends.

use std::sync::Arc;

use super::{Effects, State, Who, validate_reason};
use crate::clock::Timestamp;
use crate::command::{Actor, DispatchRules, NewUser, Outcome, ProfileChange};
use crate::driver::{Availability, Driver};
use crate::error::{Error, Result};
use crate::geo::LatLng;
use crate::id::UserId;
use crate::trip::WithdrawReason;
use crate::user::{self, Role, User};

impl State {
    pub(super) fn set_rules(&mut self, who: Who, rules: &DispatchRules) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the system sets dispatch rules".into()));
        }
        rules.validate()?;
        self.rules = rules.clone();
        Ok(Outcome::Done)
    }

    pub(super) fn create_user(&mut self, who: Who, new: &NewUser, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        if !matches!(who, Who::System | Who::Staff { admin: true }) {
            return Err(Error::Forbidden("only an admin creates users".into()));
        }
        let id = new.id.ok_or_else(|| Error::Internal("user id not stamped".into()))?;
        if self.users.contains_key(&id) {
            return Err(Error::Invalid(format!("user {id} already exists")));
        }
        user::validate_name(&new.name)?;
        user::validate_phone(&new.phone)?;
        match (&new.vehicle, new.role) {
            (Some(v), Role::Driver) => {
                user::validate_vehicle(v)?;
                if !self.catalog.prices(&v.category) {
                    return Err(Error::Invalid(format!(
                        "no zone prices category {}: create the zone's pricing before its drivers",
                        v.category
                    )));
                }
            }
            (None, Role::Driver) => return Err(Error::Invalid("a driver needs a vehicle".into())),
            (Some(_), _) => return Err(Error::Invalid("only drivers have a vehicle".into())),
            (None, _) => {}
        }
        let phone_key = (new.role, new.phone.clone());
        if self.phones.contains_key(&phone_key) {
            return Err(Error::Invalid(format!("a {} with this phone number already exists", new.role.as_str())));
        }
        let user = Arc::new(User {
            id,
            role: new.role,
            name: new.name.clone(),
            phone: new.phone.clone(),
            vehicle: new.vehicle.clone(),
            token_generation: 0,
            suspended: false,
            created_at: now,
            rating: Default::default(),
            email: None,
            language: user::DEFAULT_LANGUAGE.into(),
            default_payment_method: None,
            staff_role: None,
            blocked: None,
            erased_at: None,
        });
        if let Some(v) = &new.vehicle {
            self.drivers.insert(id, Arc::new(Driver::new(id, v.category.clone())));
            fx.drivers.push(id);
        }
        self.phones.insert(phone_key, id);
        self.user_index.replace(None, &user);
        self.users.insert(id, Arc::clone(&user));
        fx.users.push(id);
        Ok(Outcome::User(user))
    }

    /// A signed-in user changes their own profile; every field is checked before any
    /// is written (a name by the rules of user creation, [`user::validate_email`],
    /// [`user::validate_language`]).
    pub(super) fn update_profile(&mut self, actor: Actor, change: &ProfileChange, fx: &mut Effects) -> Result<Outcome> {
        let Actor::User(id) = actor else {
            return Err(Error::Forbidden("only a user with a record has a profile".into()));
        };
        if let Some(name) = &change.name {
            user::validate_name(name)?;
        }
        if let Some(Some(email)) = &change.email {
            user::validate_email(email)?;
        }
        if let Some(language) = &change.language {
            user::validate_language(language)?;
        }
        let u = self.users.get_mut(&id).ok_or_else(|| Error::Forbidden(format!("unknown user {id}")))?;
        let old = Arc::clone(u);
        let u = Arc::make_mut(u);
        if let Some(name) = &change.name {
            u.name.clone_from(name);
        }
        if let Some(email) = &change.email {
            u.email.clone_from(email);
        }
        if let Some(language) = &change.language {
            u.language.clone_from(language);
        }
        if let Some(method) = change.default_payment_method {
            u.default_payment_method = method;
        }
        let new = u.clone();
        self.user_index.replace(Some(&old), &new);
        fx.users.push(id);
        Ok(Outcome::User(Arc::new(new)))
    }

    pub(super) fn set_driver_status(
        &mut self,
        who: Who,
        online: bool,
        location: Option<LatLng>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = self.driver_of(who)?;
        let driver = self.drivers.get(&id).ok_or_else(|| Error::Internal(format!("driver {id} has no record")))?;
        if online && driver.suspended {
            return Err(Error::Forbidden("this driver is suspended".into()));
        }
        if online {
            self.application_blocks_online(id, now)?;
        }
        if !online && driver.availability == Availability::OnTrip {
            return Err(Error::InvalidTransition {
                action: "go offline",
                entity: format!("driver {id}"),
                from: "on_trip",
            });
        }
        let coming_online = online && driver.availability == Availability::Offline;
        if coming_online {
            self.check_cash_debt(id)?;
        }
        let going_offline = !online && driver.availability == Availability::Available;
        // The position first: it is checked like any report (free when coming online)
        // and may be refused as an implausible jump before anything changed.
        if let Some(point) = location {
            self.status_location(id, point, coming_online, now, fx)?;
        }
        if coming_online {
            let d = self.driver_mut(id, fx)?;
            d.availability = Availability::Available;
            d.online_since = Some(now);
            d.available_since = Some(now);
            // Back in the index at the last fix (a stale one is never offered trips).
            self.sync_index(id);
        }
        if going_offline {
            self.set_offline(id, now, fx)?;
            // `expired`: API.md's offer_withdrawn reasons have none closer (see `WithdrawReason`).
            self.withdraw_driver_offers(id, None, WithdrawReason::Expired, now, fx)?;
        }
        Ok(Outcome::Driver(Arc::clone(self.driver_ref(id)?)))
    }

    pub(super) fn set_suspended(
        &mut self,
        who: Who,
        driver_id: UserId,
        suspended: bool,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "suspends drivers")?;
        validate_reason(reason)?;
        let driver = self.drivers.get(&driver_id).ok_or_else(|| Error::not_found("driver", driver_id))?;
        let going_offline = suspended && driver.availability == Availability::Available;
        // The driver record's flag is the effective one: an admin's suspension or a block
        // (issue 20: U), which this does not lift; the user's is the admin's alone.
        let blocked = self.users.get(&driver_id).is_some_and(|u| u.blocked.is_some() || u.erased_at.is_some());
        let d = self.driver_mut(driver_id, fx)?;
        d.suspended = suspended || blocked;
        if going_offline {
            self.set_offline(driver_id, now, fx)?;
            self.withdraw_driver_offers(driver_id, None, WithdrawReason::Expired, now, fx)?;
        }
        if let Some(u) = self.users.get_mut(&driver_id) {
            Arc::make_mut(u).suspended = suspended;
            fx.users.push(driver_id);
        }
        Ok(Outcome::Driver(Arc::clone(self.driver_ref(driver_id)?)))
    }
}
