//! Outbound webhooks in the state: endpoints made and removed by admins, deliveries
//! made as effects of the commands that cause their events, the worker's reports,
//! resends, and the deliveries' clock (windows that end, finished ones that leave).
//!
//! Guarantees: deliveries are made only after a command succeeded, from the command, the
//! trips as they were before it changed them (kept by `State::trip_mut`, the one way a
//! trip is changed) and after it, so a replay makes the same
//! deliveries with the same event ids; an event is made once per change it announces (a
//! trip's status, its payment's status or refunded amount, an SOS, a suspension), never
//! for a command that changed nothing; nothing is made, and nothing is copied to compare,
//! while no endpoint exists; a report changes a pending delivery at the head of its line
//! only, and only for its next attempt.
//!
//! What is announced: a trip's status changes (`trip.created` when booked, then
//! `accepted`, `arrived`, `started`, `completed`, `cancelled`, `expired`; a trip going
//! back to `searching` has no event), its payment's (`payment.captured`, `failed`, and
//! `refunded` whenever the refunded amount grows), `sos.raised`, and `driver.suspended`
//! when a driver becomes suspended, `application.submitted` when an applicant submits,
//! `payout.paid` and `payout.failed` when a payout reaches either (a driver's payouts and
//! suspension share the driver's line).

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::command::{Actor, Command, Event, Outcome};
use crate::error::{Error, Result};
use crate::hooks::{
    Delivery, DeliveryStatus, Endpoint, EventData, EventType, GIVE_UP_S, HookEvent, HookOutcome, Hooks, MAX_ENDPOINTS,
    event_id, validate_description, validate_patterns, validate_secret, validate_url,
};
use crate::id::{EndpointId, EventId};
use crate::outbox::clip_error;
use crate::payout::PayoutStatus;
use crate::trip::{Trip, TripStatus};
use crate::trip_payment::PaymentStatus;

use super::{Effects, State, Who};

/// What the webhooks compare a command's results with, besides the trips as they were
/// before the command changed them (which `State::trip_mut` keeps in
/// `Effects::trips_before`): whether the driver a suspension names was suspended. Taken
/// only while an endpoint exists.
pub(super) struct Before {
    suspended: Option<bool>,
    trips: Vec<Arc<Trip>>,
}

impl Before {
    /// With the trips as they were before the command changed them.
    pub(super) fn with_trips(self, trips: Vec<Arc<Trip>>) -> Before {
        Before { trips, ..self }
    }
}

impl State {
    /// The webhook endpoints and deliveries.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// What [`State::hook_effects`] will need after `command`, or `None` when nothing
    /// can be announced: no endpoint, or a location report (which changes no trip: the
    /// hot path pays nothing for webhooks). `Some` also has `trip_mut` keep each trip as
    /// it was before the command changed it.
    pub(super) fn hook_before(&self, command: &Command) -> Option<Before> {
        if self.hooks.endpoints.is_empty() || matches!(command, Command::UpdateLocation(_) | Command::Positions(_)) {
            return None;
        }
        let suspended = match inner(command) {
            Command::SetDriverSuspended { driver_id, .. } => self.users.get(driver_id).map(|u| u.suspended),
            _ => None,
        };
        Some(Before { suspended, trips: Vec::new() })
    }

    pub(super) fn create_webhook_endpoint(
        &mut self,
        who: Who,
        command: &Command,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let Command::CreateWebhookEndpoint { id, secret, url, events, description } = command else {
            return Err(Error::Internal("create_webhook_endpoint: not that command".into()));
        };
        if who != (Who::Staff { admin: true }) {
            return Err(Error::Forbidden("only an admin manages webhook endpoints".into()));
        }
        validate_url(url)?;
        validate_patterns(events)?;
        if let Some(d) = description {
            validate_description(d)?;
        }
        if self.hooks.endpoints.len() >= MAX_ENDPOINTS {
            return Err(Error::Invalid(format!("at most {MAX_ENDPOINTS} webhook endpoints")));
        }
        let id = id.ok_or_else(|| Error::Internal("create_webhook_endpoint: the writer did not stamp an id".into()))?;
        let secret = secret
            .clone()
            .ok_or_else(|| Error::Internal("create_webhook_endpoint: the writer did not stamp a secret".into()))?;
        validate_secret(&secret)?;
        if self.hooks.endpoints.contains_key(&id) {
            return Err(Error::Internal(format!("webhook endpoint id {id} taken")));
        }
        let endpoint = Arc::new(Endpoint {
            id,
            url: url.clone(),
            events: events.clone(),
            description: description.clone(),
            secret,
            created_at: now,
        });
        self.hooks.endpoints.insert(id, Arc::clone(&endpoint));
        fx.hook_endpoints = true;
        Ok(Outcome::WebhookEndpoint(endpoint))
    }

    pub(super) fn delete_webhook_endpoint(&mut self, who: Who, id: EndpointId, fx: &mut Effects) -> Result<Outcome> {
        if who != (Who::Staff { admin: true }) {
            return Err(Error::Forbidden("only an admin manages webhook endpoints".into()));
        }
        if !self.hooks.endpoints.contains_key(&id) {
            return Err(Error::not_found("webhook endpoint", id));
        }
        fx.deliveries.extend(self.hooks.remove_endpoint(id));
        fx.hook_endpoints = true;
        Ok(Outcome::Done)
    }

    pub(super) fn resend_webhook(
        &mut self,
        who: Who,
        endpoint_id: EndpointId,
        event_id: EventId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != (Who::Staff { admin: true }) {
            return Err(Error::Forbidden("only an admin manages webhook endpoints".into()));
        }
        let old = self.hooks.delivery(endpoint_id, event_id).ok_or_else(|| Error::not_found("delivery", event_id))?;
        if old.status == DeliveryStatus::Pending {
            return Err(Error::InvalidTransition {
                action: "resend",
                entity: format!("delivery of {event_id}"),
                from: DeliveryStatus::Pending.as_str(),
            });
        }
        let old = Arc::clone(old);
        let new = Delivery {
            status: DeliveryStatus::Pending,
            next_attempt_at: now,
            give_up_at: now.plus_secs(GIVE_UP_S),
            finished_at: None,
            ..Delivery::clone(&old)
        };
        fx.deliveries.push(old.key());
        self.hooks.replace(&old, new);
        // Back in its line, perhaps ahead of its head: the worker's order rebuilds.
        self.hooks.wakes = self.hooks.wakes.wrapping_add(1);
        let now_is = self.hooks.deliveries.get(&old.key()).cloned();
        Ok(Outcome::WebhookDelivery(now_is.ok_or_else(|| Error::Internal("resent delivery vanished".into()))?))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn webhook_attempted(
        &mut self,
        who: Who,
        endpoint_id: EndpointId,
        event_id: EventId,
        attempt: u32,
        outcome: &HookOutcome,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the webhook worker reports deliveries".into()));
        }
        let old = self.hooks.delivery(endpoint_id, event_id).ok_or_else(|| Error::not_found("delivery", event_id))?;
        if old.status != DeliveryStatus::Pending {
            return Err(Error::InvalidTransition {
                action: "report",
                entity: format!("delivery of {event_id}"),
                from: old.status.as_str(),
            });
        }
        if attempt != old.attempts.saturating_add(1) {
            return Err(Error::Invalid(format!(
                "stale report: the delivery of {event_id} has had {} attempts, the report is for attempt {attempt}",
                old.attempts
            )));
        }
        if !self.hooks.is_head(old) {
            return Err(Error::Invalid(format!(
                "the delivery of {event_id} waits for an earlier event of its subject"
            )));
        }
        let old = Arc::clone(old);
        let mut new = Delivery::clone(&old);
        new.attempts = attempt;
        match outcome {
            HookOutcome::Delivered { status_code } => {
                new.status = DeliveryStatus::Delivered;
                new.last_status_code = Some(*status_code);
            }
            HookOutcome::Retry { status_code, error, next_attempt_at } => {
                new.last_status_code = status_code.or(new.last_status_code);
                new.last_error = Some(clip_error(error));
                if now >= new.give_up_at {
                    new.status = DeliveryStatus::Failed;
                } else {
                    new.next_attempt_at = (*next_attempt_at).max(now);
                }
            }
            HookOutcome::Rejected { status_code, error } => {
                new.last_status_code = status_code.or(new.last_status_code);
                new.last_error = Some(clip_error(error));
                new.status = DeliveryStatus::Failed;
            }
        }
        if new.status != DeliveryStatus::Pending {
            new.finished_at = Some(now);
        }
        fx.deliveries.push(old.key());
        self.hooks.replace(&old, new);
        Ok(Outcome::Done)
    }

    /// The webhooks' part of a `Tick`: pending deliveries whose window is over fail;
    /// finished ones [`KEPT_S`](crate::hooks::KEPT_S) old leave.
    pub(super) fn hooks_tick(&mut self, now: Timestamp, fx: &mut Effects) {
        while let Some((at, key)) = self.hooks.first_give_up() {
            if at > now {
                break;
            }
            let Some(old) = self.hooks.deliveries.get(&key).cloned() else { break };
            let mut new = Delivery::clone(&old);
            new.status = DeliveryStatus::Failed;
            new.finished_at = Some(now);
            if new.last_error.is_none() {
                new.last_error = Some("not delivered within 3 days".into());
            }
            fx.deliveries.push(key);
            self.hooks.replace(&old, new);
            // The next of its line heads it now, unknown to the worker: its order rebuilds.
            self.hooks.wakes = self.hooks.wakes.wrapping_add(1);
        }
        while let Some(at) = self.hooks.next_prune() {
            if at > now {
                break;
            }
            let Some(key) = self.hooks.first_done() else { break };
            self.hooks.remove_finished(key);
            fx.deliveries.push(key);
        }
    }

    /// When the webhooks next need a `Tick` (the first pending delivery's window ends).
    pub(super) fn hooks_deadline(&self) -> Option<Timestamp> {
        self.hooks.next_give_up()
    }

    /// Makes the deliveries `command`, just applied at `now`, causes: one event per
    /// change it announces (see the module's list), to every endpoint that wants it.
    pub(super) fn hook_effects(
        &mut self,
        before: Before,
        actor: Actor,
        command: &Command,
        events: &[Event],
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let inner = inner(command);
        let mut made: Vec<(EventType, EventData, u64)> = Vec::new();
        // Each trip once, at its state after the command, in the order first touched.
        let mut trips: Vec<Arc<Trip>> = Vec::new();
        for event in events {
            match event {
                Event::TripUpdated { trip } => match trips.iter_mut().find(|t| t.id == trip.id) {
                    Some(t) => *t = Arc::clone(trip),
                    None => trips.push(Arc::clone(trip)),
                },
                Event::AlertRaised { alert } => {
                    made.push((EventType::SosRaised, EventData::Alert(Arc::clone(alert)), alert.trip_id.raw()));
                }
                Event::PayoutUpdated { payout } => {
                    // A payout reaches `paid` or `failed` once (both are final).
                    let kind = match payout.status {
                        PayoutStatus::Paid => EventType::PayoutPaid,
                        PayoutStatus::Failed => EventType::PayoutFailed,
                        _ => continue,
                    };
                    made.push((kind, EventData::Payout(Arc::clone(payout)), payout.driver_id.raw()));
                }
                _ => {}
            }
        }
        for trip in trips {
            let was = before.trips.iter().find(|t| t.id == trip.id).cloned().or_else(|| match command {
                Command::Restored { trip: t, .. } if t.id == trip.id => Some(Arc::clone(t)),
                _ => None,
            });
            let subject = trip.id.raw();
            // The trip a booking made (its id was stamped into the command): created, whatever
            // the same command did to it next (its first offers).
            let created = matches!(inner, Command::CreateTrip(n) if n.id == Some(trip.id));
            let was = if created { None } else { was };
            let status = match &was {
                None if created => Some(EventType::TripCreated),
                Some(w) if w.status != trip.status => match trip.status {
                    TripStatus::Accepted => Some(EventType::TripAccepted),
                    TripStatus::Arrived => Some(EventType::TripArrived),
                    TripStatus::InProgress => Some(EventType::TripStarted),
                    TripStatus::Completed => Some(EventType::TripCompleted),
                    TripStatus::Cancelled => Some(EventType::TripCancelled),
                    TripStatus::Expired => Some(EventType::TripExpired),
                    TripStatus::Searching | TripStatus::Scheduled => None,
                },
                _ => None,
            };
            if let Some(kind) = status {
                made.push((kind, EventData::Trip(Arc::clone(&trip)), subject));
            }
            let (was_status, was_refunded) =
                was.as_ref().map_or((PaymentStatus::Pending, 0), |w| (w.payment.status, w.payment.refunded_minor));
            let p = &trip.payment;
            let payment = if p.status != was_status && p.status == PaymentStatus::Captured {
                Some(EventType::PaymentCaptured)
            } else if p.status != was_status && p.status == PaymentStatus::Failed {
                Some(EventType::PaymentFailed)
            } else if p.refunded_minor > was_refunded {
                Some(EventType::PaymentRefunded)
            } else {
                None
            };
            if let Some(kind) = payment {
                made.push((kind, EventData::Trip(Arc::clone(&trip)), subject));
            }
        }
        if let Command::SetDriverSuspended { driver_id, suspended: true, .. } = inner
            && before.suspended == Some(false)
            && let Some(user) = self.users.get(driver_id)
        {
            made.push((EventType::DriverSuspended, EventData::User(Arc::clone(user)), driver_id.raw()));
        }
        if let (Command::SubmitApplication, Actor::User(driver)) = (inner, actor)
            && let Some(a) = self.applications.get(driver)
        {
            made.push((EventType::ApplicationSubmitted, EventData::Application(Arc::clone(a)), driver.raw()));
        }
        for (kind, data, subject) in made {
            self.announce(kind, data, subject, now, fx);
        }
    }

    /// One event of `kind`, delivered to every endpoint that wants it (none: no event).
    pub(super) fn announce(
        &mut self,
        kind: EventType,
        data: EventData,
        subject: u64,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let endpoints: Vec<EndpointId> =
            self.hooks.endpoints.values().filter(|e| e.wants(kind)).map(|e| e.id).collect();
        if endpoints.is_empty() {
            return;
        }
        let id = loop {
            let seq = self.hooks.seq;
            self.hooks.seq = seq.wrapping_add(1);
            if let Some(id) = event_id(seq) {
                break id;
            }
        };
        let event = Arc::new(HookEvent { id, kind, created_at: now, data, subject });
        for endpoint_id in endpoints {
            let d = Delivery {
                endpoint_id,
                event: Arc::clone(&event),
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_status_code: None,
                last_error: None,
                next_attempt_at: now,
                give_up_at: now.plus_secs(GIVE_UP_S),
                finished_at: None,
            };
            fx.deliveries.push(d.key());
            self.hooks.insert_pending(d);
        }
    }
}

/// The command under its idempotency key or restored trip.
fn inner(command: &Command) -> &Command {
    let mut inner = command;
    while let Command::Keyed { command, .. } | Command::Restored { command, .. } | Command::Audited { command, .. } =
        inner
    {
        inner = command;
    }
    inner
}
