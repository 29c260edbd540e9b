//! Money: transfer ids, wallet holds at booking, settlement at completion, the money of a
//! cancellation, wallet credits and hold expiry. Card payments through the gateway, refunds,
//! dead letters and the switch to cash are `gateway.rs`, on the helpers here.
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
//!   still authorised is `expired`.

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::error::{Error, Result};
use crate::id::{TransferId, TripId, UserId};
use crate::ledger::{AccountKey, AccountKind, LedgerError, Op, Transfer, TransferCode, TransferState};
use crate::money::Currency;
use crate::trip::{GatewayAction, PaymentMethod, PaymentStatus, Trip};

/// Purposes of the transfers of one trip (mixed into their ids).
#[derive(Clone, Copy)]
pub(super) enum Purpose {
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
    CashClaimDebt = 20,
    PayoutHold = 21,
    PayoutPost = 22,
    PayoutVoid = 23,
    TopUpCredit = 24,
}

/// The id of the transfer of `trip` for `purpose`: a fixed mixing of the two (so replay
/// recreates it), never zero.
pub(super) fn transfer_id(trip: TripId, purpose: Purpose, n: u64) -> TransferId {
    derived_id(trip.raw(), purpose, n)
}

/// The id of the transfer for `purpose` of the entity whose raw id is `raw` (a trip, a
/// payout, a top-up: the purposes differ, so the entities' ids never mix).
pub(super) fn derived_id(raw: u64, purpose: Purpose, n: u64) -> TransferId {
    // splitmix64 of the trip id, the purpose and a counter: distinct inputs give distinct
    // 64-bit outputs with overwhelming probability; a clash is caught by the ledger
    // (`ExistsWithDifferent`), never silently merged.
    let mut z = raw ^ ((purpose as u64) << 56) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    TransferId::from_nonzero(std::num::NonZeroU64::new(z).unwrap_or(std::num::NonZeroU64::MIN))
}

pub(super) fn posted(
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

pub(super) fn ledger_error(e: LedgerError) -> Error {
    match e {
        LedgerError::InsufficientFunds { available, needed } => Error::InsufficientFunds { available, needed },
        other => Error::Internal(format!("ledger: {other}")),
    }
}

pub(super) struct Accounts {
    pub(super) currency: Currency,
}

impl Accounts {
    pub(super) fn user(&self, kind: AccountKind, u: UserId) -> AccountKey {
        AccountKey::of(kind, u, self.currency)
    }
    pub(super) fn platform(&self, kind: AccountKind) -> AccountKey {
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

    /// Refuses with `insufficient_funds` unless the rider's wallet has `amount_minor`
    /// available: a booking ahead checks what the hold at dispatch will take.
    pub(super) fn check_wallet_covers(&self, rider: UserId, currency: Currency, amount_minor: i64) -> Result<()> {
        let available = self.ledger.account(&Accounts { currency }.user(AccountKind::RiderWallet, rider)).available();
        if amount_minor > 0 && available < amount_minor {
            return Err(Error::InsufficientFunds { available, needed: amount_minor });
        }
        Ok(())
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
        let applied = self.ledger.apply_all(ops).map_err(ledger_error)?;
        for (op, applied) in ops.iter().zip(applied) {
            let id = match op {
                Op::Create(t) => t.id,
                Op::Post { id, .. } | Op::Void { id, .. } => *id,
            };
            if let Some(t) = self.ledger.transfer(id) {
                fx.accounts.extend([t.debit, t.credit]);
                fx.transfers.push(id);
                // The earnings index follows the transfers the ledger created (a retried
                // one, `Exists`, is not counted twice).
                if applied == crate::ledger::Applied::Created && crate::payout::EarningsDay::of_transfer(t).is_some() {
                    self.book.index(t);
                    fx.book = true;
                }
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
        let kind = AccountKind::wallet_of(user.role)
            .ok_or_else(|| Error::Invalid("only riders and drivers have wallets".into()))?;
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
}

/// A trip ending without a ride: what its payment owes. A wallet hold was voided by
/// the ledger ops; a card is voided (or charged the fee) by the gateway. Every status
/// change goes through the payment state machine.
pub(super) fn settle_cancelled_payment(t: &mut Trip, fee: Option<i64>) -> Result<()> {
    let p = &mut t.payment;
    match (p.method, fee) {
        (PaymentMethod::Card, Some(fee)) => p.set_due(Some(GatewayAction::Capture { amount_minor: fee })),
        (PaymentMethod::Card, None) if p.status == PaymentStatus::Authorized => p.set_due(Some(GatewayAction::Void)),
        (PaymentMethod::Card, None) => {
            // Nothing is held on the card: nothing to ask the gateway.
            p.set_due(None);
            if p.status.can_become(PaymentStatus::Voided) {
                p.set_status(PaymentStatus::Voided)?;
            }
        }
        (PaymentMethod::Wallet, Some(fee)) => {
            p.set_status(PaymentStatus::Captured)?;
            p.captured_minor = fee;
        }
        (PaymentMethod::Wallet | PaymentMethod::Cash, None) | (PaymentMethod::Cash, Some(_)) => {
            // An expired wallet hold stays `expired`: it was released already.
            if p.status.can_become(PaymentStatus::Voided) {
                p.set_status(PaymentStatus::Voided)?;
            }
        }
    }
    Ok(())
}
