//! The audit trail: one [`AuditEntry`] for every staff command that succeeded, made by
//! `apply` from the log itself (`Command::Audited`), so the trail is exactly what the log
//! says happened — a replay gives the same entries, a refused command none.
//!
//! Owns the entry ([`AuditEntry`], its [`Detail`] values), the dotted action name of each
//! command staff can send ([`Command::audit_action`]) and what an entry says of a command
//! ([`Command::audit_target`], the small summary in `details`).
//!
//! Guarantees: every command staff can send has an action name (the match is exhaustive:
//! a new command must say whether staff send it); an entry is small and bounded — at most
//! [`MAX_DETAILS`] details, each text at most [`MAX_DETAIL_CHARS`] characters, a request id
//! of at most [`MAX_REQUEST_ID_LEN`] printable ASCII bytes (a longer or non-printable one
//! is refused before anything runs).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::command::{Actor, Command, Outcome};
use crate::error::{Error, Result};

/// Longest request id an entry keeps, bytes (the server's `X-Request-Id` bound).
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Most details one entry keeps (a settings change over many zones says how many more).
pub const MAX_DETAILS: usize = 16;
/// Longest text detail, characters (a reason is cut there).
pub const MAX_DETAIL_CHARS: usize = 200;

/// One value of an entry's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detail {
    /// Text (a reason, a code), at most [`MAX_DETAIL_CHARS`] characters.
    Text(String),
    /// A number (an amount in minor units, a setting).
    Int(i64),
    /// A switch.
    Bool(bool),
}

impl Detail {
    /// Text cut to [`MAX_DETAIL_CHARS`] characters.
    pub fn text(s: &str) -> Detail {
        Detail::Text(s.chars().take(MAX_DETAIL_CHARS).collect())
    }
}

/// One staff action, as the trail keeps it (immutable once made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number: 1, 2, 3… in the order of the log (newest = highest).
    pub seq: u64,
    /// When it was applied.
    pub at: Timestamp,
    /// `usr_…`, or `admin` for the bootstrap administrator.
    pub actor_id: String,
    /// The actor's role at that moment (`admin`, `support`, …).
    pub actor_role: String,
    /// The dotted action name ([`Command::audit_action`]).
    pub action: String,
    /// What it acted on, with its prefix (`usr_…`, `trp_…`, `zon_…`), or `settings`.
    pub target_id: String,
    /// The request's `X-Request-Id`.
    pub request_id: String,
    /// A small summary: the reason, the amount, the settings changed.
    pub details: Vec<(String, Detail)>,
}

/// Refuses a request id that is empty, too long or not printable ASCII.
pub fn validate_request_id(id: &str) -> Result<()> {
    if (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("a request id must be 1-{MAX_REQUEST_ID_LEN} printable ASCII characters")))
    }
}

/// The `actor_id` of an entry.
pub fn actor_id(actor: Actor) -> String {
    match actor {
        Actor::Admin => "admin".into(),
        Actor::System => "system".into(),
        Actor::User(u) => u.to_string(),
    }
}

impl Command {
    /// The audit trail's name of this command when staff send it (`user.create`,
    /// `trip.refund`, …), seen through an idempotency key; `None` for a command staff never
    /// send (the system's, riders' and drivers' own), which is never audited.
    pub fn audit_action(&self) -> Option<&'static str> {
        Some(match self {
            Command::CreateUser(_) => "user.create",
            Command::SetDriverSuspended { suspended: true, .. } => "driver.suspend",
            Command::SetDriverSuspended { suspended: false, .. } => "driver.unsuspend",
            Command::CompleteTrip { .. } | Command::CompleteDelivery { .. } => "trip.complete",
            Command::CancelTrip { .. } => "trip.cancel",
            Command::CreateZone { .. } => "zone.create",
            Command::ReplaceZone { .. } => "zone.update",
            Command::CreateCoupon { .. } => "coupon.create",
            Command::DisableCoupon { .. } => "coupon.disable",
            Command::PostMessage { .. } => "trip.message",
            Command::AckAlert { .. } => "alert.ack",
            Command::UnlockPickupCode { .. } => "trip.unlock",
            Command::RevokeTokens { .. } => "user.revoke_tokens",
            Command::CreditWallet { .. } => "wallet.credit",
            Command::Refund { .. } => "trip.refund",
            Command::UpdateProfile(_) => "user.update",
            Command::RegisterDevice { .. } => "device.register",
            Command::RemoveDevice { .. } => "device.remove",
            Command::CreateWebhookEndpoint { .. } => "webhook_endpoint.create",
            Command::DeleteWebhookEndpoint { .. } => "webhook_endpoint.delete",
            Command::ResendWebhook { .. } => "webhook_endpoint.resend",
            Command::ReviewPayout { approve: true, .. } => "payout.approve",
            Command::ReviewPayout { approve: false, .. } => "payout.reject",
            Command::CashReceived { .. } => "driver.cash_received",
            Command::DecideApplication { approve: true, .. } => "application.approve",
            Command::DecideApplication { approve: false, .. } => "application.reject",
            Command::UpdateSettings(_) => "settings.update",
            Command::CreateStaff { .. } => "user.create",
            Command::IssueStaffSetup { .. } => "user.staff_setup",
            Command::SignOut => "user.sign_out",
            Command::PatchUser { .. } => "user.update",
            Command::BlockUser { blocked: true, .. } => "user.block",
            Command::BlockUser { blocked: false, .. } => "user.unblock",
            Command::EraseUser { .. } => "user.erase",
            Command::Keyed { command, .. } => return command.audit_action(),
            // The system's own, and what riders, drivers and applicants send.
            Command::SetRules(_)
            | Command::SetDriverStatus { .. }
            | Command::UpdateLocation(_)
            | Command::Positions(_)
            | Command::CreateTrip(_)
            | Command::AcceptTrip { .. }
            | Command::DeclineTrip { .. }
            | Command::DriverArrived { .. }
            | Command::StartTrip { .. }
            | Command::Tick
            | Command::PlaceBid { .. }
            | Command::AcceptBid { .. }
            | Command::RateTrip { .. }
            | Command::RaiseSos { .. }
            | Command::ConfirmCashReceived { .. }
            | Command::SetPresence { .. }
            | Command::IssueOtp { .. }
            | Command::VerifyOtp { .. }
            | Command::Archive { .. }
            | Command::PaymentEvent { .. }
            | Command::RecordDeadLetter { .. }
            | Command::SetPaymentMethod { .. }
            | Command::CreateShare { .. }
            | Command::RevokeShares { .. }
            | Command::NotificationAttempted { .. }
            | Command::WebhookAttempted { .. }
            | Command::RequestPayout { .. }
            | Command::PayoutReport { .. }
            | Command::CreateTopUp { .. }
            | Command::TopUpReport { .. }
            | Command::Restored { .. }
            | Command::PutApplication(_)
            | Command::AddDocument { .. }
            | Command::SubmitApplication
            | Command::RecordGatewayRef { .. }
            | Command::SetupStaff { .. }
            | Command::StaffLoginFailed { .. }
            | Command::StaffLoginSucceeded { .. }
            | Command::ErasureFinished { .. }
            | Command::Audited { .. } => return None,
        })
    }

    /// What an audited command acted on (`usr_…`, `trp_…`, `zon_…`, `settings`), from the
    /// command (stamped) or, for what it created, its outcome; and the small summary of
    /// the entry's `details`.
    pub fn audit_target(&self, actor: Actor, outcome: &Outcome) -> (String, Vec<(String, Detail)>) {
        let text = |k: &str, v: &str| (k.to_owned(), Detail::text(v));
        let int = |k: &str, v: i64| (k.to_owned(), Detail::Int(v));
        let reason = |r: &str| if r.is_empty() { Vec::new() } else { vec![text("reason", r)] };
        let unknown = || "-".to_owned();
        match self {
            Command::Keyed { command, .. } | Command::Restored { command, .. } | Command::Audited { command, .. } => {
                command.audit_target(actor, outcome)
            }
            Command::CreateUser(new) => {
                let target = match outcome {
                    Outcome::User(u) => u.id.to_string(),
                    _ => new.id.map_or_else(unknown, |u| u.to_string()),
                };
                (target, vec![text("role", new.role.as_str())])
            }
            Command::SetDriverSuspended { driver_id, reason: r, .. } => (driver_id.to_string(), reason(r)),
            Command::CompleteTrip { trip_id, .. }
            | Command::CompleteDelivery { trip_id, .. }
            | Command::PostMessage { trip_id, .. }
            | Command::UnlockPickupCode { trip_id } => (trip_id.to_string(), Vec::new()),
            Command::CancelTrip { trip_id, code, reason: r } => {
                let mut d = vec![text("reason_code", code.as_str())];
                d.extend(reason(r));
                (trip_id.to_string(), d)
            }
            Command::Refund { trip_id, amount_minor, reason: r, .. } => {
                let mut d = vec![int("amount_minor", *amount_minor)];
                d.extend(reason(r));
                (trip_id.to_string(), d)
            }
            Command::CreateZone { id, zone } => {
                let target = match outcome {
                    Outcome::Zone(z) => z.id.to_string(),
                    _ => id.map_or_else(unknown, |z| z.to_string()),
                };
                (target, vec![text("name", &zone.name)])
            }
            Command::ReplaceZone { zone_id, zone } => (zone_id.to_string(), vec![text("name", &zone.name)]),
            Command::CreateCoupon { id, coupon } => {
                (id.map_or_else(unknown, |c| c.to_string()), vec![text("code", &coupon.code)])
            }
            Command::DisableCoupon { code } => {
                let target = match outcome {
                    Outcome::Coupon(c) => c.coupon.id.to_string(),
                    _ => unknown(),
                };
                (target, vec![text("code", code)])
            }
            Command::AckAlert { alert_id } => (alert_id.to_string(), Vec::new()),
            Command::RevokeTokens { user_id } => (user_id.to_string(), Vec::new()),
            Command::CreditWallet { user_id, amount_minor, currency, reason: r, .. }
            | Command::CashReceived { driver_id: user_id, amount_minor, currency, reason: r, .. } => {
                let mut d = vec![int("amount_minor", *amount_minor), text("currency", currency.code())];
                d.extend(reason(r));
                (user_id.to_string(), d)
            }
            Command::UpdateProfile(_) => (actor_id(actor), Vec::new()),
            Command::RegisterDevice { id, .. } => (id.map_or_else(unknown, |d| d.to_string()), Vec::new()),
            Command::RemoveDevice { device_id } => (device_id.to_string(), Vec::new()),
            Command::CreateWebhookEndpoint { id, url, .. } => {
                (id.map_or_else(unknown, |e| e.to_string()), vec![text("url", url)])
            }
            Command::DeleteWebhookEndpoint { endpoint_id } => (endpoint_id.to_string(), Vec::new()),
            Command::ResendWebhook { endpoint_id, event_id } => {
                (endpoint_id.to_string(), vec![text("event_id", &event_id.to_string())])
            }
            Command::ReviewPayout { payout_id, reason: r, .. } => (payout_id.to_string(), reason(r)),
            Command::DecideApplication { driver_id, reason: r, .. } => {
                (driver_id.to_string(), r.as_deref().map(reason).unwrap_or_default())
            }
            Command::UpdateSettings(change) => ("settings".into(), settings_summary(change)),
            Command::CreateStaff { user, staff_role, .. } => {
                let target = match outcome {
                    Outcome::StaffCreated { user, .. } => user.id.to_string(),
                    _ => user.id.map_or_else(unknown, |u| u.to_string()),
                };
                (target, vec![text("role", staff_role.as_deref().unwrap_or(user.role.as_str()))])
            }
            Command::IssueStaffSetup { user_id, .. } => (user_id.to_string(), Vec::new()),
            Command::SignOut => (actor_id(actor), Vec::new()),
            Command::PatchUser { user_id, change } => {
                // Which fields changed, never their values (personal data stays out of the trail).
                let given = [
                    ("name", change.name.is_some()),
                    ("email", change.email.is_some()),
                    ("vehicle", change.vehicle.is_some()),
                ];
                let changed: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(k, _)| *k).collect();
                (user_id.to_string(), vec![text("changed", &changed.join(","))])
            }
            Command::BlockUser { user_id, reason: r, .. } => (user_id.to_string(), reason(r)),
            Command::EraseUser { user_id } => (user_id.to_string(), Vec::new()),
            _ => (unknown(), Vec::new()),
        }
    }
}

/// What an audit entry says of a settings change: each key set with its value, at most
/// [`MAX_DETAILS`] of them (then `more`: how many were left out).
pub fn settings_summary(change: &crate::settings::SettingsChange) -> Vec<(String, Detail)> {
    let mut all: Vec<(String, Detail)> = change
        .dispatch
        .set_keys()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                crate::settings::KeyValue::Int(n) => Detail::Int(n),
                crate::settings::KeyValue::Text(t) => Detail::text(t),
            };
            (k.to_owned(), v)
        })
        .collect();
    for (zone, s) in &change.zones {
        if let Some(b) = s.bidding {
            all.push((format!("zones.{zone}.bidding"), Detail::Bool(b)));
        }
        if let Some(m) = s.mode {
            all.push((format!("zones.{zone}.mode"), Detail::text(crate::settings::zone_mode_name(m))));
        }
        if let Some(surge) = s.surge {
            all.push((format!("zones.{zone}.surge.enabled"), Detail::Bool(surge.enabled)));
            all.push((format!("zones.{zone}.surge.max_bps"), Detail::Int(i64::from(surge.max_bps))));
        }
    }
    if all.len() > MAX_DETAILS {
        let more = all.len() - (MAX_DETAILS - 1);
        all.truncate(MAX_DETAILS - 1);
        all.push(("more".into(), Detail::Int(i64::try_from(more).unwrap_or(i64::MAX))));
    }
    all
}
