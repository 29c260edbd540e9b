//! Money: wallet holds at booking, settlement at completion, cancellation fees, card
//! payments through the gateway, refunds, wallet credits, payment events, hold expiry,
//! dead letters and the switch to cash.
//!
//! Guarantees:
//! - every movement is a ledger transfer whose id is derived from what it is for (the
//!   trip and the purpose), so replay recreates the same ids and nothing is paid twice;
//! - a trip's settlement is one linked batch, applied before the trip changes: a
//!   completion either settles completely or is refused and changes nothing;
//! - the driver earns the fare before the coupon's discount (the platform's promotions
//!   account pays the discount) minus the commission of the trip's zone and category;
//! - a wallet never goes negative: a final fare above the hold takes what the wallet
//!   has and records the rest as the rider's debt;
//! - holds are pending transfers with an expiry (`DispatchRules::wallet_hold_ttl_s`,
//!   `card_auth_ttl_s`): a wallet hold at booking, a card hold when the gateway
//!   authorises; when the time is up a hold still pending is voided and a card payment
//!   still authorised is `expired`;
//! - every payment status change follows `PaymentStatus::can_become`; a gateway event
//!   that is stale or disagrees with what is due is remembered, moves no money and is
//!   answered `ignored` (a disagreeing amount is kept on the trip for reconciliation);
//! - a refund never exceeds what was captured minus what was refunded or is still
//!   pending; a card refund is pending until the gateway confirms it;
//! - a gateway event id is applied once; a repeat answers `duplicate` and changes nothing,
//!   whether the id is still hot or was moved to the history (the writer stamps it into
//!   the command, `PaymentEvent::archived`), for as long as ids are kept.

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::error::{Error, Result};
use crate::id::{TransferId, TripId, UserId};
use crate::ledger::{AccountKey, AccountKind, LedgerError, Op, Transfer, TransferCode, TransferState};
use crate::money::Currency;
use crate::payment::PaymentEventKind;
use crate::trip::{DeadLetter, GatewayAction, GatewayMismatch, PaymentMethod, PaymentStatus, PendingRefund, Trip};
use crate::user::Role;

/// Purposes of the transfers of one trip (mixed into their ids).
#[derive(Clone, Copy)]
enum Purpose {
    Hold = 1,
    HoldPost = 2,
    HoldVoid = 3,
    Topup = 4,
    Debt = 5,
    Fare = 6,
    Discount = 7,
    Commission = 8,
    Cash = 9,
    CancelFee = 10,
    CancelCommission = 11,
    Capture = 12,
    CardHold = 13,
    CardHoldPost = 14,
    CardHoldVoid = 15,
    HoldExpired = 16,
    RefundPost = 17,
    RefundVoid = 18,
    CashForCard = 19,
}

/// The id of the transfer of `trip` for `purpose`: a fixed mixing of the two (so replay
/// recreates it), never zero.
fn transfer_id(trip: TripId, purpose: Purpose, n: u64) -> TransferId {
    // splitmix64 of the trip id, the purpose and a counter: distinct inputs give distinct
    // 64-bit outputs with overwhelming probability; a clash is caught by the ledger
    // (`ExistsWithDifferent`), never silently merged.
    let mut z = trip.raw() ^ ((purpose as u64) << 56) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    TransferId::from_nonzero(std::num::NonZeroU64::new(z).unwrap_or(std::num::NonZeroU64::MIN))
}

fn posted(
    id: TransferId,
    debit: AccountKey,
    credit: AccountKey,
    amount: i64,
    code: TransferCode,
    trip: Option<TripId>,
    at: Timestamp,
) -> Op {
    Op::Create(Transfer { id, debit, credit, amount, code, state: TransferState::Posted, trip_id: trip, at })
}

fn ledger_error(e: LedgerError) -> Error {
    match e {
        LedgerError::InsufficientFunds { available, needed } => Error::InsufficientFunds { available, needed },
        other => Error::Internal(format!("ledger: {other}")),
    }
}

struct Accounts {
    currency: Currency,
}

impl Accounts {
    fn user(&self, kind: AccountKind, u: UserId) -> AccountKey {
        AccountKey::of(kind, u, self.currency)
    }
    fn platform(&self, kind: AccountKind) -> AccountKey {
        AccountKey::platform(kind, self.currency)
    }
}

impl State {
    /// The ledger.
    pub fn ledger(&self) -> &crate::ledger::Ledger {
        &self.ledger
    }

    /// Books the wallet hold of a new trip, before it exists: refused with
    /// `insufficient_funds` when the wallet cannot cover the estimate.
    pub(super) fn hold_for_booking(
        &mut self,
        trip_id: TripId,
        rider: UserId,
        currency: Currency,
        estimate_minor: i64,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Option<TransferId>> {
        if estimate_minor <= 0 {
            return Ok(None);
        }
        let a = Accounts { currency };
        let id = transfer_id(trip_id, Purpose::Hold, 0);
        let hold = Transfer {
            id,
            debit: a.user(AccountKind::RiderWallet, rider),
            credit: a.platform(AccountKind::Escrow),
            amount: estimate_minor,
            code: TransferCode::Hold,
            state: TransferState::Pending,
            trip_id: Some(trip_id),
            at: now,
        };
        self.apply_money(&[Op::Create(hold)], fx)?;
        Ok(Some(id))
    }

    /// The linked batch that settles `trip` completed at `fare_minor`. Pure: nothing changes.
    pub(super) fn settlement(
        &self,
        trip: &Trip,
        driver: UserId,
        fare_minor: i64,
        discount: i64,
        now: Timestamp,
    ) -> Result<Vec<Op>> {
        let a = Accounts { currency: trip.fare.currency };
        let t = Some(trip.id);
        let gross = fare_minor.checked_add(discount).ok_or_else(|| Error::Invalid("fare overflow".into()))?;
        let (commission, _) = crate::fare::commission(gross, trip.fare.locked.pricing.commission_bps)
            .map_err(|e| Error::Invalid(format!("cannot split the fare: {e}")))?;
        let earnings = a.user(AccountKind::DriverEarnings, driver);
        let escrow = a.platform(AccountKind::Escrow);
        let mut ops = Vec::new();
        let mut push = |op: Option<Op>| ops.extend(op);
        let amount = |x: i64| (x > 0).then_some(x);
        match trip.payment.method {
            PaymentMethod::Cash => {
                let cash = a.user(AccountKind::CashInHand, driver);
                push(amount(fare_minor).map(|f| {
                    posted(transfer_id(trip.id, Purpose::Cash, 0), cash, earnings, f, TransferCode::Cash, t, now)
                }));
            }
            PaymentMethod::Wallet => {
                let wallet = a.user(AccountKind::RiderWallet, trip.rider_id);
                // A hold that expired was released already: only an open one pays.
                let held = trip
                    .payment
                    .hold
                    .filter(|h| self.ledger.is_open_pending(*h))
                    .and_then(|h| self.ledger.transfer(h))
                    .map_or(0, |h| h.amount);
                let from_hold = fare_minor.min(held);
                if let Some(hold) = trip.payment.hold.filter(|h| self.ledger.is_open_pending(*h)) {
                    push(Some(match amount(from_hold) {
                        Some(f) => Op::Post {
                            id: transfer_id(trip.id, Purpose::HoldPost, 0),
                            pending: hold,
                            amount: f,
                            at: now,
                        },
                        None => Op::Void { id: transfer_id(trip.id, Purpose::HoldVoid, 0), pending: hold, at: now },
                    }));
                }
                let extra = fare_minor - from_hold;
                // After the post above the hold no longer reserves anything, and
                // `from_hold` of it was taken.
                let available = (self.ledger.account(&wallet).available() + held - from_hold).max(0);
                let topup = extra.min(available).max(0);
                push(amount(topup).map(|x| {
                    posted(transfer_id(trip.id, Purpose::Topup, 0), wallet, escrow, x, TransferCode::Fare, t, now)
                }));
                let debt = a.user(AccountKind::RiderDebt, trip.rider_id);
                push(amount(extra - topup).map(|x| {
                    posted(transfer_id(trip.id, Purpose::Debt, 0), debt, escrow, x, TransferCode::Debt, t, now)
                }));
                push(amount(fare_minor).map(|f| {
                    posted(transfer_id(trip.id, Purpose::Fare, 0), escrow, earnings, f, TransferCode::Fare, t, now)
                }));
            }
            PaymentMethod::Card => {
                // The platform pays the driver now and collects from the card when the
                // gateway captures (escrow is short until then).
                push(amount(fare_minor).map(|f| {
                    posted(transfer_id(trip.id, Purpose::Fare, 0), escrow, earnings, f, TransferCode::Fare, t, now)
                }));
            }
        }
        let promotions = a.platform(AccountKind::Promotions);
        push(amount(discount).map(|d| {
            posted(transfer_id(trip.id, Purpose::Discount, 0), promotions, earnings, d, TransferCode::Discount, t, now)
        }));
        let revenue = a.platform(AccountKind::PlatformRevenue);
        push(amount(commission).map(|c| {
            posted(transfer_id(trip.id, Purpose::Commission, 0), earnings, revenue, c, TransferCode::Commission, t, now)
        }));
        Ok(ops)
    }

    /// The linked batch for a terminal cancellation: the wallet hold released, and a late
    /// rider's fee paid to the driver who came (minus commission). Pure.
    pub(super) fn cancellation_ops(&self, trip: &Trip, fee_minor: i64, now: Timestamp) -> Result<Vec<Op>> {
        let a = Accounts { currency: trip.fare.currency };
        let t = Some(trip.id);
        let mut ops = Vec::new();
        if let Some(hold) = trip.payment.hold.filter(|h| self.ledger.is_open_pending(*h)) {
            ops.push(Op::Void { id: transfer_id(trip.id, Purpose::HoldVoid, 0), pending: hold, at: now });
        }
        let Some(driver) = trip.driver_id.filter(|_| fee_minor > 0) else { return Ok(ops) };
        let earnings = a.user(AccountKind::DriverEarnings, driver);
        let payer = match trip.payment.method {
            // Wallet: taken from the wallet if it can pay, else owed.
            PaymentMethod::Wallet
                if self.ledger.account(&a.user(AccountKind::RiderWallet, trip.rider_id)).available()
                    + trip
                        .payment
                        .hold
                        .filter(|h| self.ledger.is_open_pending(*h))
                        .and_then(|h| self.ledger.transfer(h))
                        .map_or(0, |h| h.amount)
                    >= fee_minor =>
            {
                a.user(AccountKind::RiderWallet, trip.rider_id)
            }
            // Card: captured by the gateway later; the platform pays the driver now.
            PaymentMethod::Card => a.platform(AccountKind::Escrow),
            // Cash, or a wallet that cannot pay: the rider owes it.
            _ => a.user(AccountKind::RiderDebt, trip.rider_id),
        };
        ops.push(posted(
            transfer_id(trip.id, Purpose::CancelFee, 0),
            payer,
            earnings,
            fee_minor,
            TransferCode::CancelFee,
            t,
            now,
        ));
        let (commission, _) = crate::fare::commission(fee_minor, trip.fare.locked.pricing.commission_bps)
            .map_err(|e| Error::Invalid(format!("cannot split the fee: {e}")))?;
        if commission > 0 {
            let revenue = a.platform(AccountKind::PlatformRevenue);
            ops.push(posted(
                transfer_id(trip.id, Purpose::CancelCommission, 0),
                earnings,
                revenue,
                commission,
                TransferCode::Commission,
                t,
                now,
            ));
        }
        Ok(ops)
    }

    /// Applies a linked batch prepared by [`State::settlement`] or
    /// [`State::cancellation_ops`]: all or nothing.
    pub(super) fn apply_money(&mut self, ops: &[Op], fx: &mut Effects) -> Result<()> {
        self.ledger.apply_all(ops).map_err(ledger_error)?;
        for op in ops {
            let id = match op {
                Op::Create(t) => t.id,
                Op::Post { id, .. } | Op::Void { id, .. } => *id,
            };
            if let Some(t) = self.ledger.transfer(id) {
                fx.accounts.extend([t.debit, t.credit]);
                fx.transfers.push(id);
            }
        }
        Ok(())
    }

    /// Credits a user's wallet (riders) or earnings (drivers), from promotions. Admin only.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn credit_wallet(
        &mut self,
        who: Who,
        id: Option<TransferId>,
        user_id: UserId,
        amount_minor: i64,
        currency: Currency,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_admin(who, "credits wallets")?;
        let id = id.ok_or_else(|| Error::Internal("transfer id not stamped".into()))?;
        let user = self.users.get(&user_id).ok_or_else(|| Error::not_found("user", user_id))?;
        let kind = match user.role {
            Role::Rider => AccountKind::RiderWallet,
            Role::Driver => AccountKind::DriverEarnings,
            _ => return Err(Error::Invalid("only riders and drivers have wallets".into())),
        };
        if !(1..=crate::ledger::MAX_AMOUNT).contains(&amount_minor) {
            return Err(Error::Invalid("amount_minor must be positive".into()));
        }
        let op = posted(
            id,
            AccountKey::platform(AccountKind::Promotions, currency),
            AccountKey::of(kind, user_id, currency),
            amount_minor,
            TransferCode::Credit,
            None,
            now,
        );
        self.apply_money(&[op], fx)?;
        let transfer = self.ledger.transfer(id).cloned().ok_or_else(|| Error::Internal("transfer vanished".into()))?;
        Ok(Outcome::Transfer(Box::new(transfer)))
    }

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
        let plan = self.plan_event(trip, kind, amount_minor, now)?;
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

    /// A hold's time is up: released if still pending; a card payment still authorised
    /// by it (or a wallet payment still pending on it) is `expired`.
    pub(super) fn expire_hold(
        &mut self,
        trip_id: TripId,
        hold: TransferId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        if !self.ledger.is_open_pending(hold) {
            return Ok(());
        }
        let void = Op::Void { id: transfer_id(trip_id, Purpose::HoldExpired, hold.raw()), pending: hold, at: now };
        self.apply_money(&[void], fx)?;
        if self.trips.get(&trip_id).is_some_and(|t| t.payment.hold == Some(hold)) {
            let t = self.trip_mut(trip_id, fx)?;
            if t.payment.status.can_become(PaymentStatus::Expired) {
                t.payment.set_status(PaymentStatus::Expired)?;
            }
            t.updated_at = now;
            fx.events.push(crate::command::Event::TripUpdated { trip: Arc::clone(self.trip_ref(trip_id)?) });
        }
        Ok(())
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
        if !trip.payment.may_switch_to_cash() {
            return Err(refuse());
        }
        let mut payment = crate::trip::TripPayment::new(PaymentMethod::Cash);
        let mut ops = Vec::new();
        // A card hold left open by a declined capture is released now.
        if let Some(hold) = trip.payment.hold.filter(|h| self.ledger.is_open_pending(*h)) {
            ops.push(Op::Void { id: transfer_id(trip_id, Purpose::CardHoldVoid, 0), pending: hold, at: now });
        }
        if !trip.status.is_open() {
            // After the ride: the driver, paid from escrow at completion, collects what
            // the card still owed.
            let (Some(GatewayAction::Capture { amount_minor }), Some(driver)) = (trip.payment.due, trip.driver_id)
            else {
                return Err(refuse());
            };
            let a = Accounts { currency: trip.fare.currency };
            if amount_minor > 0 {
                ops.push(posted(
                    transfer_id(trip_id, Purpose::CashForCard, 0),
                    a.user(AccountKind::CashInHand, driver),
                    a.platform(AccountKind::Escrow),
                    amount_minor,
                    TransferCode::Cash,
                    Some(trip_id),
                    now,
                ));
            }
            payment.set_status(PaymentStatus::Captured)?;
            payment.captured_minor = amount_minor;
        }
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        t.payment = payment;
        t.updated_at = now;
        self.trip_updated(trip_id, fx)
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
