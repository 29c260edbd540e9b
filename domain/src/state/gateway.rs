//! Card payments through the gateway: payment events, refunds, dead letters and the switch
//! to cash (transfer ids and ledger helpers: `money.rs`).
//!
//! Guarantees:
//! - every payment status change follows `PaymentStatus::can_become`; a gateway event
//!   that is stale or disagrees with what is due is remembered, moves no money and is
//!   answered `ignored` (a disagreeing amount is kept on the trip for reconciliation);
//! - a refund never exceeds what was captured minus what was refunded or is still
//!   pending; a card refund is pending until the gateway confirms it;
//! - a gateway event id is applied once; a repeat answers `duplicate` and changes nothing,
//!   whether the id is still hot or was moved to the history (the writer stamps it into
//!   the command, `PaymentEvent::archived`), for as long as ids are kept.

use std::sync::Arc;

use super::money::{Accounts, Purpose, posted, transfer_id};
use super::{Deadline, Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::error::{Error, Result};
use crate::id::{TransferId, TripId};
use crate::ledger::{AccountKind, Op, Transfer, TransferCode, TransferState};
use crate::money::Currency;
use crate::payment::PaymentEventKind;
use crate::trip::{DeadLetter, GatewayAction, GatewayMismatch, PaymentMethod, PaymentStatus, PendingRefund, Trip};

impl State {
    /// Gives back part of what a trip's rider paid. Admin or support.
    ///
    /// Cash and wallet trips are refunded to the rider's wallet at once. A card refund
    /// is booked as a pending transfer and sent to the gateway (`payment.due`); it is
    /// posted when the gateway confirms it (`refund.succeeded`) and voided if it
    /// declines. Pending refunds count against the limit (captured − refunded).
    pub(super) fn refund(
        &mut self,
        who: Who,
        id: Option<TransferId>,
        trip_id: TripId,
        amount_minor: i64,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if !matches!(who, Who::Staff { .. } | Who::System) {
            return Err(Error::Forbidden("only staff refund".into()));
        }
        let id = id.ok_or_else(|| Error::Internal("transfer id not stamped".into()))?;
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        if amount_minor <= 0 {
            return Err(Error::Invalid("amount_minor must be positive".into()));
        }
        let p = &trip.payment;
        if amount_minor > p.refundable_minor() {
            return Err(Error::RefundExceedsCaptured {
                captured: p.captured_minor,
                refunded: p.refunded_minor + p.pending_refunds_minor(),
            });
        }
        let card = p.method == PaymentMethod::Card;
        if card && !matches!(p.due, None | Some(GatewayAction::Refund { .. })) {
            return Err(Error::InvalidTransition {
                action: "refund",
                entity: format!("trip {trip_id}"),
                from: "waiting for the gateway",
            });
        }
        let a = Accounts { currency: trip.fare.currency };
        // The platform bears refunds. Card refunds go back through the gateway (its
        // clearing account); the others to the rider's wallet.
        let to = if card {
            a.platform(AccountKind::GatewayClearing)
        } else {
            a.user(AccountKind::RiderWallet, trip.rider_id)
        };
        let op = Op::Create(Transfer {
            id,
            debit: a.platform(AccountKind::PlatformRevenue),
            credit: to,
            amount: amount_minor,
            code: TransferCode::Refund,
            state: if card { TransferState::Pending } else { TransferState::Posted },
            trip_id: Some(trip_id),
            at: now,
        });
        self.apply_money(&[op], fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        if card {
            t.payment.refunds_pending.push(PendingRefund { transfer: id, amount_minor });
            if t.payment.due.is_none() {
                t.payment.set_due(Some(GatewayAction::Refund { amount_minor, transfer: id }));
            }
        } else {
            t.payment.refunded_minor += amount_minor;
            let next = if t.payment.refunded_minor >= t.payment.captured_minor {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::PartiallyRefunded
            };
            t.payment.set_status(next)?;
        }
        t.updated_at = now;
        let transfer = self.ledger.transfer(id).cloned().ok_or_else(|| Error::Internal("transfer vanished".into()))?;
        fx.events.push(crate::command::Event::TripUpdated { trip: Arc::clone(self.trip_ref(trip_id)?) });
        Ok(Outcome::Transfer(Box::new(transfer)))
    }

    /// Applies a gateway's report about a card trip, once per event id, through the
    /// payment state machine ([`PaymentStatus::can_become`]).
    ///
    /// An event that is stale (the payment moved past it: a late `authorized` after
    /// the capture, a second capture report) or that disagrees with what is due (a
    /// capture of another amount) is remembered and answered `ignored` with the
    /// reason: it moves no money and changes no status. A disagreeing amount is kept
    /// on the trip (`payment.mismatch`) for reconciliation. An authorisation for a
    /// trip that can no longer be charged (cancelled, switched to cash) is voided.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn payment_event(
        &mut self,
        who: Who,
        gateway: &str,
        event_id: &str,
        kind: PaymentEventKind,
        trip_id: TripId,
        amount_minor: i64,
        currency: Currency,
        archived: Option<Timestamp>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the server reports gateway events".into()));
        }
        if event_id.is_empty() || event_id.len() > 255 || gateway.is_empty() || gateway.len() > 32 {
            return Err(Error::Invalid("event id must be 1-255 bytes and gateway 1-32".into()));
        }
        let seen = (gateway.to_owned(), event_id.to_owned());
        // Seen before: still hot, or moved to the history (the writer stamped when).
        let archived_seen = archived.is_some_and(|at| super::account::gateway_event_kept(at, now));
        if self.gateway_events.contains_key(&seen) || archived_seen {
            return Ok(Outcome::PaymentEvent { duplicate: true, ignored: None });
        }
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        if currency != trip.fare.currency || amount_minor < 0 {
            return Err(Error::Invalid("the event's amount or currency does not match the trip".into()));
        }
        let card = trip.payment.method == PaymentMethod::Card;
        if !card && !(matches!(kind, PaymentEventKind::Authorized | PaymentEventKind::Voided)) {
            return Err(Error::Invalid(format!("trip {trip_id} is not paid by card")));
        }
        // Only the gateway that charges the trip moves its money: an event another
        // gateway signed (with its own, valid secret) is remembered and changes nothing.
        let plan = match trip.payment.gateway.as_deref() {
            Some(charged_by) if charged_by != gateway => Plan::Ignore {
                reason: format!("trip {trip_id} is paid through {charged_by}, not {gateway}"),
                mismatch: None,
            },
            _ => self.plan_event(trip, kind, amount_minor, now)?,
        };
        self.gateway_events.insert(seen, now);
        self.schedule_housekeeping(now);
        let (ops, change) = match plan {
            Plan::Ignore { reason, mismatch } => {
                if let Some(due_minor) = mismatch {
                    let t = self.trip_mut(trip_id, fx)?;
                    t.payment.mismatch = Some(GatewayMismatch {
                        gateway: gateway.to_owned(),
                        event_id: event_id.to_owned(),
                        kind: format!("{kind:?}").to_lowercase(),
                        reported_minor: amount_minor,
                        due_minor,
                        at: now,
                    });
                    t.updated_at = now;
                    fx.events.push(crate::command::Event::TripUpdated { trip: Arc::clone(self.trip_ref(trip_id)?) });
                }
                return Ok(Outcome::PaymentEvent { duplicate: false, ignored: Some(reason) });
            }
            Plan::Apply { ops, change } => (ops, change),
        };
        self.apply_money(&ops, fx)?;
        let ttl = self.rules.card_auth_ttl_s;
        let t = self.trip_mut(trip_id, fx)?;
        let p = &mut t.payment;
        match change {
            Change::Authorized { hold } => {
                p.set_status(PaymentStatus::Authorized)?;
                p.hold = Some(hold);
                if matches!(p.due, Some(GatewayAction::Authorize { .. })) {
                    p.set_due(None);
                }
            }
            Change::VoidDue => p.set_due(Some(GatewayAction::Void)),
            Change::Captured { amount } => {
                p.set_status(PaymentStatus::Captured)?;
                p.captured_minor += amount;
                p.set_due(None);
            }
            Change::Voided => {
                // A trip switched to cash keeps its own payment: only the card's is voided.
                if p.method == PaymentMethod::Card && p.status.can_become(PaymentStatus::Voided) {
                    p.set_status(PaymentStatus::Voided)?;
                }
                p.set_due(None);
            }
            Change::Declined { clear_due } => {
                p.set_status(PaymentStatus::Failed)?;
                if clear_due {
                    p.set_due(None);
                }
            }
            Change::RefundDone { amount, succeeded } => {
                p.refunds_pending.remove(0);
                if succeeded {
                    p.refunded_minor += amount;
                    let next = if p.refunded_minor >= p.captured_minor {
                        PaymentStatus::Refunded
                    } else {
                        PaymentStatus::PartiallyRefunded
                    };
                    p.set_status(next)?;
                }
                let next = p
                    .refunds_pending
                    .first()
                    .map(|r| GatewayAction::Refund { amount_minor: r.amount_minor, transfer: r.transfer });
                p.set_due(next);
            }
        }
        t.updated_at = now;
        if let Change::Authorized { hold } = change {
            self.deadlines.insert((now.plus_secs(ttl), super::Deadline::HoldExpiry { trip_id, hold }));
        }
        fx.events.push(crate::command::Event::TripUpdated { trip: Arc::clone(self.trip_ref(trip_id)?) });
        Ok(Outcome::PaymentEvent { duplicate: false, ignored: None })
    }

    /// What a gateway event does to `trip`, decided before anything changes.
    fn plan_event(&self, trip: &Trip, kind: PaymentEventKind, amount: i64, now: Timestamp) -> Result<Plan> {
        let p = &trip.payment;
        let a = Accounts { currency: trip.fare.currency };
        let t = Some(trip.id);
        let ignore =
            |why: &str| Ok(Plan::Ignore { reason: format!("{why} (payment is {})", p.status), mismatch: None });
        let mismatch = |why: &str, due: i64| {
            Ok(Plan::Ignore { reason: format!("{why}: {amount} reported, {due} due"), mismatch: Some(due) })
        };
        let open_hold = p.hold.filter(|h| self.ledger.is_open_pending(*h));
        match kind {
            PaymentEventKind::Authorized => {
                let chargeable = p.method == PaymentMethod::Card
                    && (trip.status.is_open() || matches!(p.due, Some(GatewayAction::Capture { .. })));
                if !chargeable {
                    // Cancelled, expired or switched to cash: the money held on the card
                    // must be released.
                    let nothing_taken = p.captured_minor == 0
                        && matches!(
                            p.status,
                            PaymentStatus::Pending
                                | PaymentStatus::Voided
                                | PaymentStatus::Failed
                                | PaymentStatus::Expired
                        );
                    return match p.due {
                        None if nothing_taken => Ok(Plan::Apply { ops: Vec::new(), change: Change::VoidDue }),
                        Some(GatewayAction::Void) => ignore("a void is already due"),
                        _ => ignore("stale authorisation"),
                    };
                }
                if !p.status.can_become(PaymentStatus::Authorized) {
                    return ignore("stale authorisation");
                }
                if let Some(GatewayAction::Authorize { amount_minor }) = p.due
                    && amount_minor != amount
                {
                    return mismatch("authorised amount differs", amount_minor);
                }
                if amount == 0 {
                    return ignore("an authorisation of nothing");
                }
                let hold = transfer_id(trip.id, Purpose::CardHold, 0);
                let op = Op::Create(Transfer {
                    id: hold,
                    debit: a.platform(AccountKind::GatewayClearing),
                    credit: a.platform(AccountKind::Escrow),
                    amount,
                    code: TransferCode::Hold,
                    state: TransferState::Pending,
                    trip_id: t,
                    at: now,
                });
                Ok(Plan::Apply { ops: vec![op], change: Change::Authorized { hold } })
            }
            PaymentEventKind::Captured => {
                let Some(GatewayAction::Capture { amount_minor: due }) = p.due else {
                    // Nothing is owed: a second capture report (another event id for the
                    // same capture, or a replay older than the ids kept) takes no money twice.
                    return ignore("no capture is due");
                };
                if due != amount {
                    return mismatch("captured amount differs", due);
                }
                if !p.status.can_become(PaymentStatus::Captured) {
                    return ignore("cannot capture");
                }
                let mut ops = Vec::new();
                let mut rest = amount;
                if let Some(hold) = open_hold {
                    let held = self.ledger.transfer(hold).map_or(0, |h| h.amount);
                    let from_hold = amount.min(held);
                    ops.push(if from_hold > 0 {
                        Op::Post {
                            id: transfer_id(trip.id, Purpose::CardHoldPost, 0),
                            pending: hold,
                            amount: from_hold,
                            at: now,
                        }
                    } else {
                        Op::Void { id: transfer_id(trip.id, Purpose::CardHoldVoid, 0), pending: hold, at: now }
                    });
                    rest -= from_hold;
                }
                if rest > 0 {
                    ops.push(posted(
                        transfer_id(trip.id, Purpose::Capture, 0),
                        a.platform(AccountKind::GatewayClearing),
                        a.platform(AccountKind::Escrow),
                        rest,
                        TransferCode::Capture,
                        t,
                        now,
                    ));
                }
                Ok(Plan::Apply { ops, change: Change::Captured { amount } })
            }
            PaymentEventKind::Voided => {
                if p.due != Some(GatewayAction::Void) {
                    return ignore("no void is due");
                }
                let ops = open_hold
                    .map(|hold| Op::Void { id: transfer_id(trip.id, Purpose::CardHoldVoid, 0), pending: hold, at: now })
                    .into_iter()
                    .collect();
                Ok(Plan::Apply { ops, change: Change::Voided })
            }
            PaymentEventKind::Failed => match p.due {
                Some(GatewayAction::Refund { transfer, .. }) => {
                    let void = Op::Void {
                        id: transfer_id(trip.id, Purpose::RefundVoid, transfer.raw()),
                        pending: transfer,
                        at: now,
                    };
                    Ok(Plan::Apply { ops: vec![void], change: Change::RefundDone { amount: 0, succeeded: false } })
                }
                Some(GatewayAction::Authorize { .. } | GatewayAction::Capture { .. }) | None
                    if p.status.can_become(PaymentStatus::Failed) || p.status == PaymentStatus::Failed =>
                {
                    // A declined authorisation needs no more calls (the ride is captured at
                    // completion, or paid in cash); a declined capture stays owed.
                    let clear_due = !matches!(p.due, Some(GatewayAction::Capture { .. }));
                    Ok(Plan::Apply { ops: Vec::new(), change: Change::Declined { clear_due } })
                }
                _ => ignore("stale failure"),
            },
            PaymentEventKind::RefundSucceeded => {
                let Some(GatewayAction::Refund { amount_minor: due, transfer }) = p.due else {
                    return ignore("no refund is due");
                };
                if due != amount {
                    return mismatch("refunded amount differs", due);
                }
                let post = Op::Post {
                    id: transfer_id(trip.id, Purpose::RefundPost, transfer.raw()),
                    pending: transfer,
                    amount,
                    at: now,
                };
                Ok(Plan::Apply { ops: vec![post], change: Change::RefundDone { amount, succeeded: true } })
            }
        }
    }

    /// Records that the payment worker gave up on `action` (it must still be due).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_dead_letter(
        &mut self,
        who: Who,
        trip_id: TripId,
        action: GatewayAction,
        error: &str,
        attempts: u32,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the payment worker records dead letters".into()));
        }
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        if trip.payment.due != Some(action) {
            return Err(Error::Invalid(format!("trip {trip_id} no longer owes the gateway a {}", action.name())));
        }
        let error: String = error.chars().filter(|c| !c.is_control()).take(500).collect();
        let t = self.trip_mut(trip_id, fx)?;
        t.payment.dead_letter = Some(DeadLetter { action, error, attempts, at: now });
        t.updated_at = now;
        self.trip_updated(trip_id, fx)
    }

    /// Records `reference`, the gateway's own id for the trip's card payment (Stripe's
    /// PaymentIntent), for the worker's later calls. Only the payment worker records it,
    /// only for the trip's own gateway; recording the same one again changes nothing.
    pub(super) fn record_gateway_ref(
        &mut self,
        who: Who,
        trip_id: TripId,
        gateway: &str,
        reference: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the payment worker records gateway references".into()));
        }
        if !(1..=255).contains(&reference.len()) || !reference.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Invalid("a gateway reference is 1-255 printable ASCII characters".into()));
        }
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        if trip.payment.gateway.as_deref() != Some(gateway) {
            return Err(Error::Invalid(format!("trip {trip_id} is not paid through the {gateway} gateway")));
        }
        if trip.payment.gateway_ref.as_deref() == Some(reference) {
            return Ok(Outcome::Done);
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.payment.gateway_ref = Some(reference.to_owned());
        t.updated_at = now;
        self.trip_updated(trip_id, fx)
    }

    /// The trip's rider pays cash instead of by card: allowed while nothing is held on
    /// or taken from the card (not yet authorised, declined, expired, or given up on).
    /// A new cash payment replaces the card's. After the ride (a capture still owed),
    /// the driver collects the amount owed in cash at once.
    pub(super) fn set_payment_method(
        &mut self,
        who: Who,
        trip_id: TripId,
        method: PaymentMethod,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        match who {
            Who::Rider(r) if r == trip.rider_id => {}
            Who::Driver(d) if trip.driver_id == Some(d) => {
                return Err(Error::Forbidden("only the trip's rider changes how it is paid".into()));
            }
            Who::Staff { .. } | Who::System => {
                return Err(Error::Forbidden("only the trip's rider changes how it is paid".into()));
            }
            _ => return Err(Error::not_found("trip", trip_id)),
        }
        if method != PaymentMethod::Cash {
            return Err(Error::Invalid("a trip can only switch to cash".into()));
        }
        if trip.payment.method == PaymentMethod::Cash {
            return Ok(Outcome::Trip(Arc::clone(trip)));
        }
        let refuse = || Error::InvalidTransition {
            action: "switch to cash",
            entity: format!("trip {trip_id}"),
            from: trip.payment.status.as_str(),
        };
        if trip.payment.cash_claimed_at.is_some() {
            return Ok(Outcome::Trip(Arc::clone(trip))); // claimed already: waiting for the driver
        }
        if !trip.payment.may_switch_to_cash() {
            return Err(refuse());
        }
        let payment = crate::trip::TripPayment::new(PaymentMethod::Cash);
        let mut ops = Vec::new();
        // A card hold left open by a declined capture is released now.
        if let Some(hold) = trip.payment.hold.filter(|h| self.ledger.is_open_pending(*h)) {
            ops.push(Op::Void { id: transfer_id(trip_id, Purpose::CardHoldVoid, 0), pending: hold, at: now });
        }
        if !trip.status.is_open() {
            // After the ride: the rider says the fare was paid in cash. Nothing is booked
            // on the driver until they confirm it (`ConfirmCashReceived`); unconfirmed, the
            // fare becomes the rider's debt when `cash_confirm_ttl_s` is up. The card
            // stays what it was meanwhile, and the gateway is asked for nothing.
            let (Some(GatewayAction::Capture { .. }), Some(_)) = (trip.payment.due, trip.driver_id) else {
                return Err(refuse());
            };
            self.apply_money(&ops, fx)?;
            let until = now.plus_secs(self.rules.cash_confirm_ttl_s);
            let t = self.trip_mut(trip_id, fx)?;
            t.payment.cash_claimed_at = Some(now);
            t.payment.set_due(None);
            t.updated_at = now;
            self.deadlines.insert((until, Deadline::CashClaimExpiry(trip_id)));
            return self.trip_updated(trip_id, fx);
        }
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        t.payment = payment;
        t.updated_at = now;
        self.trip_updated(trip_id, fx)
    }
}

impl State {
    /// The trip's driver confirms the cash its rider said it paid after the ride: the
    /// driver's cash in hand is charged with the fare the card still owed, and the trip is
    /// paid in cash.
    pub(super) fn confirm_cash_received(
        &mut self,
        who: Who,
        trip_id: TripId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        match who {
            Who::Driver(d) if trip.driver_id == Some(d) => {}
            Who::Rider(r) if r == trip.rider_id => {
                return Err(Error::Forbidden("only the trip's driver confirms the cash".into()));
            }
            Who::Staff { .. } | Who::System => {
                return Err(Error::Forbidden("only the trip's driver confirms the cash".into()));
            }
            _ => return Err(Error::not_found("trip", trip_id)),
        }
        let (Some(_), Some(driver)) = (trip.payment.cash_claimed_at, trip.driver_id) else {
            return Err(Error::InvalidTransition {
                action: "confirm cash for",
                entity: format!("trip {trip_id}"),
                from: "not switched to cash",
            });
        };
        let owed = self.card_fare_owed(trip);
        let a = Accounts { currency: trip.fare.currency };
        let mut ops = Vec::new();
        if owed > 0 {
            ops.push(posted(
                transfer_id(trip_id, Purpose::CashForCard, 0),
                a.user(AccountKind::CashInHand, driver),
                a.platform(AccountKind::Escrow),
                owed,
                TransferCode::Cash,
                Some(trip_id),
                now,
            ));
        }
        let mut payment = crate::trip::TripPayment::new(PaymentMethod::Cash);
        payment.set_status(PaymentStatus::Captured)?;
        payment.captured_minor = owed;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        t.payment = payment;
        t.updated_at = now;
        self.trip_updated(trip_id, fx)
    }

    /// `cash_confirm_ttl_s` after a rider's switch to cash, unconfirmed by the driver: the
    /// fare the card owed becomes the rider's debt (never a debit of the driver, who may
    /// never have seen the cash).
    pub(super) fn cash_claim_expired(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let Some(trip) = self.trips.get(&trip_id).filter(|t| t.payment.cash_claimed_at.is_some()) else {
            return Ok(()); // confirmed meanwhile
        };
        let owed = self.card_fare_owed(trip);
        let a = Accounts { currency: trip.fare.currency };
        let mut ops = Vec::new();
        if owed > 0 {
            ops.push(posted(
                transfer_id(trip_id, Purpose::CashClaimDebt, 0),
                a.user(AccountKind::RiderDebt, trip.rider_id),
                a.platform(AccountKind::Escrow),
                owed,
                TransferCode::Debt,
                Some(trip_id),
                now,
            ));
        }
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        t.payment.cash_claimed_at = None;
        t.updated_at = now;
        self.trip_updated(trip_id, fx)?;
        Ok(())
    }

    /// What the card still owed for a finished trip: the fare (or the cancellation fee)
    /// escrow paid the driver at completion and no capture covered.
    fn card_fare_owed(&self, trip: &Trip) -> i64 {
        let fare = trip.fare.final_minor.or(trip.fare.cancel_fee_minor).unwrap_or(0);
        (fare - trip.payment.captured_minor).max(0)
    }
}

/// What a gateway event will do, decided before anything changes.
enum Plan {
    /// Remember the event id, change nothing (else than noting a mismatch).
    Ignore {
        /// Why.
        reason: String,
        /// `Some(due)`: the reported amount disagreed with `due`.
        mismatch: Option<i64>,
    },
    /// Apply `ops` (linked), then `change` the trip's payment.
    Apply { ops: Vec<Op>, change: Change },
}

/// The change to a trip's payment that an applied event makes.
#[derive(Clone, Copy)]
enum Change {
    Authorized { hold: TransferId },
    VoidDue,
    Captured { amount: i64 },
    Voided,
    Declined { clear_due: bool },
    RefundDone { amount: i64, succeeded: bool },
}
