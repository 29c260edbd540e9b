//! Driver applications: an applicant's details and documents, submission, staff's
//! decision, what they add to going online, and the licence reminders.
//!
//! Guarantees (the rules are [`crate::application`]'s):
//! - an applicant is a driver user without a driver record: every driver command of one
//!   is `403 not_approved` (`State::driver_of`); approval makes the driver record, with the
//!   application's vehicle and name, in the same command;
//! - only the applicant changes its application, and only while it is `draft` or
//!   `rejected`; every field is checked before anything is written (a refusal changes
//!   nothing); a rejected applicant edits and submits again;
//! - only an admin (or the system) decides, and only on a `submitted` application;
//! - a driver whose application's licence has expired at `now` cannot go online
//!   (`403 document_expired`), and one at work when it expires stops: offline at once
//!   (its offers withdrawn) when available, at the end of its trip when on one; drivers
//!   created by staff have no application and no such check;
//! - each approved licence gets one reminder push, [`crate::application::REMINDER_LEAD_DAYS`]
//!   before it expires, made by the `Tick` that finds it due (the queue is state).

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::application::{
    Application, ApplicationDetails, ApplicationStatus, Applications, Document, DocumentKind, MAX_DECISION_REASON_LEN,
    MAX_DOCUMENT_BYTES, MediaType,
};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::driver::{Availability, Driver};
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::outbox::Kind;
use crate::trip::WithdrawReason;
use crate::user::{self, Role};

impl State {
    /// The driver applications.
    pub fn applications(&self) -> &Applications {
        &self.applications
    }

    /// Opens an empty application for a new applicant (its first sign-in).
    pub(super) fn open_application(&mut self, driver_id: UserId, now: Timestamp, fx: &mut Effects) {
        self.applications.items.insert(driver_id, Arc::new(Application::new(driver_id, now)));
        fx.applications = true;
    }

    /// The caller's own application, if it may change it now.
    fn own_editable(&self, who: Who) -> Result<(UserId, Application)> {
        let Who::Driver(id) = who else {
            return Err(Error::Forbidden("only an applicant changes its application".into()));
        };
        let Some(a) = self.applications.items.get(&id) else {
            // Drivers created by staff were never applicants: they are approved.
            return Err(Error::InvalidTransition {
                action: "change",
                entity: format!("application {id}"),
                from: "approved",
            });
        };
        if !a.status.editable() {
            return Err(Error::InvalidTransition {
                action: "change",
                entity: format!("application {id}"),
                from: a.status.as_str(),
            });
        }
        Ok((id, Application::clone(a)))
    }

    fn put(&mut self, a: Application, fx: &mut Effects) -> Result<Outcome> {
        let a = Arc::new(a);
        self.applications.items.insert(a.driver_id, Arc::clone(&a));
        fx.applications = true;
        Ok(Outcome::Application(a))
    }

    pub(super) fn put_application(
        &mut self,
        who: Who,
        details: &ApplicationDetails,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let (_, mut a) = self.own_editable(who)?;
        let param = |param: &'static str| move |e: Error| Error::InvalidParam { param, message: e.to_string() };
        user::validate_name(&details.name).map_err(param("name"))?;
        user::validate_vehicle(&details.vehicle).map_err(param("vehicle"))?;
        if !self.catalog.prices(&details.vehicle.category) {
            return Err(Error::InvalidParam {
                param: "vehicle.category",
                message: format!("no zone prices category {}", details.vehicle.category),
            });
        }
        details.license.validate()?;
        if details.license.expired_at(now) {
            return Err(Error::InvalidParam {
                param: "license.expires_on",
                message: format!("the licence expired on {}", details.license.expires_on),
            });
        }
        a.details = Some(details.clone());
        a.updated_at = now;
        self.put(a, fx)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_document(
        &mut self,
        who: Who,
        kind: DocumentKind,
        sha256: [u8; 32],
        media_type: MediaType,
        size: u64,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let (_, mut a) = self.own_editable(who)?;
        if size == 0 || size > MAX_DOCUMENT_BYTES as u64 {
            return Err(Error::Invalid(format!("a document must be 1 to {MAX_DOCUMENT_BYTES} bytes")));
        }
        a.documents.insert(kind, Document { sha256, media_type, size, uploaded_at: now });
        a.updated_at = now;
        self.put(a, fx)
    }

    pub(super) fn submit_application(&mut self, who: Who, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (_, mut a) = self.own_editable(who)?;
        let missing = a.missing();
        if !missing.is_empty() {
            return Err(Error::InvalidParam {
                param: missing[0],
                message: format!("the application is missing: {}", missing.join(", ")),
            });
        }
        a.status = ApplicationStatus::Submitted;
        a.submitted_at = Some(now);
        a.updated_at = now;
        self.put(a, fx)
    }

    pub(super) fn decide_application(
        &mut self,
        who: Who,
        driver_id: UserId,
        approve: bool,
        reason: Option<&str>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "decides applications")?;
        if let Some(r) = reason
            && (r.chars().count() > MAX_DECISION_REASON_LEN || r.chars().any(|c| c.is_control() && c != '\n'))
        {
            return Err(Error::InvalidParam {
                param: "reason",
                message: format!(
                    "reason must be at most {MAX_DECISION_REASON_LEN} characters, without control characters"
                ),
            });
        }
        let old = self.applications.items.get(&driver_id).ok_or_else(|| Error::not_found("application", driver_id))?;
        if old.status != ApplicationStatus::Submitted {
            return Err(Error::InvalidTransition {
                action: if approve { "approve" } else { "reject" },
                entity: format!("application {driver_id}"),
                from: old.status.as_str(),
            });
        }
        let mut a = Application::clone(old);
        let details = a
            .details
            .clone()
            .ok_or_else(|| Error::Internal(format!("application {driver_id} submitted without details")))?;
        let user =
            self.users.get(&driver_id).ok_or_else(|| Error::Internal(format!("applicant {driver_id} has no user")))?;
        if user.role != Role::Driver || self.drivers.contains_key(&driver_id) {
            return Err(Error::Internal(format!("applicant {driver_id} is not an applicant")));
        }
        if approve && !self.catalog.prices(&details.vehicle.category) {
            return Err(Error::Invalid(format!(
                "no zone prices category {} any more: price it, or reject the application",
                details.vehicle.category
            )));
        }
        a.status = if approve { ApplicationStatus::Approved } else { ApplicationStatus::Rejected };
        a.decided_at = Some(now);
        a.updated_at = now;
        a.reason = reason.map(str::to_owned);
        if approve {
            let u = self.users.get_mut(&driver_id).ok_or_else(|| Error::Internal("user vanished".into()))?;
            let old = Arc::clone(u);
            let u = Arc::make_mut(u);
            u.name.clone_from(&details.name);
            u.vehicle = Some(details.vehicle.clone());
            // A driver staff blocked (or suspended) as an applicant starts suspended.
            let suspended = u.suspended || u.blocked.is_some();
            let new = u.clone();
            self.user_index.replace(Some(&old), &new);
            fx.users.push(driver_id);
            let mut driver = Driver::new(driver_id, details.vehicle.category.clone());
            driver.suspended = suspended;
            self.drivers.insert(driver_id, Arc::new(driver));
            fx.drivers.push(driver_id);
            self.applications.reminders.insert((details.license.reminder_at(), driver_id));
            self.applications.expiries.insert((details.license.expires_at(), driver_id));
        }
        self.put(a, fx)
    }

    /// Why `driver_id` may not go online because of its application at `now`: an expired
    /// licence (`document_expired`). Drivers created by staff have no application.
    pub(super) fn application_blocks_online(&self, driver_id: UserId, now: Timestamp) -> Result<()> {
        match self.applications.items.get(&driver_id).and_then(|a| a.licence()) {
            Some(l) if l.expired_at(now) => {
                Err(Error::DocumentExpired { driver: driver_id, expires_on: l.expires_on.to_string() })
            }
            _ => Ok(()),
        }
    }

    /// The licences that expired by `now` (a `Tick`): a driver available then stops
    /// working — offline, its pending offers withdrawn — and cannot go online again
    /// (`document_expired`); one on a trip finishes it and goes offline when it ends
    /// (`release_driver`).
    pub(super) fn licence_expiries(&mut self, now: Timestamp, fx: &mut Effects) -> Result<()> {
        while let Some(&(at, driver_id)) = self.applications.expiries.get_min() {
            if at > now {
                break;
            }
            self.applications.expiries.remove_min();
            fx.applications = true;
            if self.application_blocks_online(driver_id, now).is_err()
                && self.drivers.get(&driver_id).is_some_and(|d| d.availability == Availability::Available)
            {
                self.set_offline(driver_id, now, fx)?;
                self.withdraw_driver_offers(driver_id, None, WithdrawReason::Expired, now, fx)?;
            }
        }
        Ok(())
    }

    /// The applications' part of a `Tick`: the licence reminders due, once per licence.
    pub(super) fn licence_reminders(&mut self, now: Timestamp, fx: &mut Effects) {
        while let Some(&(at, driver_id)) = self.applications.reminders.get_min() {
            if at > now {
                break;
            }
            self.applications.reminders.remove_min();
            let Some(a) = self.applications.items.get(&driver_id) else { continue };
            let Some(licence) = a.licence().cloned() else { continue };
            if a.status != ApplicationStatus::Approved || a.reminded.as_ref() == Some(&licence) {
                continue;
            }
            let mut a = Application::clone(a);
            a.reminded = Some(licence.clone());
            self.applications.items.insert(driver_id, Arc::new(a));
            fx.applications = true;
            let mut params = self.params_for(driver_id);
            params.text = Some(licence.expires_on.to_string());
            self.push(driver_id, Kind::LicenceExpiring, params, now, fx);
        }
    }
}
