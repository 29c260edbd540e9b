//! Drivers' money beyond the trip: payouts, wallet top-ups, cash debt and the earnings
//! index (API.md v1.1 "Earnings and payouts").
//!
//! Owns:
//! - [`Payout`] and its two-phase life ([`PayoutStatus::can_become`]): `requested` (the
//!   amount held at once by a pending ledger transfer from the driver's earnings) →
//!   `processing` (approved, sent through the payment gateway) → `paid` (the hold posted)
//!   or `failed` (voided: the held amount returned); `requested` → `rejected` (voided);
//! - [`TopUp`]: a rider's or driver's wallet top-up, `pending` until the gateway reports
//!   the capture (`succeeded`: the wallet credited) or a failure;
//! - [`Position`]: a driver's balance, cash debt and withdrawable amount, computed from the
//!   ledger's accounts (earnings netted with the cash the driver holds, less what payouts
//!   hold);
//! - [`EarningsDay`] and [`Book`]: the per-driver, per-day earnings index, derived from
//!   the ledger's transfers as they are created (no second source of truth: it is only
//!   ever written from a transfer the ledger accepted).
//!
//! Guarantees: a payout's hold is posted or voided once (its status is final after
//! either), so a payout is never paid twice and a failed or rejected one returns exactly
//! what was held; a top-up credits its wallet once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{PayoutId, TopUpId, TransferId, UserId};
use crate::ledger::{Account, AccountKey, AccountKind, Transfer, TransferCode};
use crate::money::Currency;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A top-up waits this long for the gateway's capture, then is `expired`.
pub const TOP_UP_TTL_S: u32 = 24 * 60 * 60;

/// Top-ups one user may have waiting for the gateway at once.
pub const MAX_PENDING_TOP_UPS: u16 = 5;

/// Where a payout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Asked for by the driver; the amount is held.
    Requested,
    /// Approved by staff and sent through the gateway.
    Processing,
    /// The gateway paid it (the hold is posted).
    Paid,
    /// The gateway could not pay it (the hold is voided: returned).
    Failed,
    /// Refused by staff (the hold is voided: returned).
    Rejected,
}

impl PayoutStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Requested => "requested",
            PayoutStatus::Processing => "processing",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Rejected => "rejected",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Requested, Self::Processing, Self::Paid, Self::Failed, Self::Rejected]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// The edges of the payout state machine.
    pub fn can_become(self, next: PayoutStatus) -> bool {
        use PayoutStatus::*;
        matches!((self, next), (Requested, Processing | Rejected) | (Processing, Paid | Failed))
    }
}

/// A driver's payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// `pyo_…`.
    pub id: PayoutId,
    /// Whose earnings.
    pub driver_id: UserId,
    /// Minor units, positive.
    pub amount_minor: i64,
    /// The earnings' currency.
    pub currency: Currency,
    /// Where it is.
    pub status: PayoutStatus,
    /// The pending transfer that holds the amount.
    pub hold: TransferId,
    /// The gateway it is (to be) sent through.
    pub gateway: String,
    /// When the gateway accepted it (the payment worker's report), while processing.
    pub sent_at: Option<Timestamp>,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    /// When requested.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Where a top-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopUpStatus {
    /// Waiting for the gateway's capture.
    Pending,
    /// Captured: the wallet was credited.
    Succeeded,
    /// The gateway reported a failure.
    Failed,
    /// No capture came within [`TOP_UP_TTL_S`]: no longer counted as waiting (a capture
    /// that comes later still credits the wallet: the money was taken).
    Expired,
}

impl TopUpStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TopUpStatus::Pending => "pending",
            TopUpStatus::Succeeded => "succeeded",
            TopUpStatus::Failed => "failed",
            TopUpStatus::Expired => "expired",
        }
    }
}

/// A wallet top-up through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUp {
    /// `top_…`.
    pub id: TopUpId,
    /// Whose wallet (a rider's wallet, a driver's earnings).
    pub user_id: UserId,
    /// Minor units, positive.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: Currency,
    /// Where it is.
    pub status: TopUpStatus,
    /// The gateway that takes the money.
    pub gateway: String,
    /// The credit, once succeeded.
    pub transfer: Option<TransferId>,
    /// When asked for.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// What the gateway (or the payment worker) reported about a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutReportKind {
    /// The gateway accepted the payout (the worker's call succeeded).
    Sent,
    /// `payout.paid`.
    Paid,
    /// `payout.failed`, or the gateway declined the call.
    Failed,
}

/// What the gateway reported about a top-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopUpReportKind {
    /// `payment.captured` with `data.top_up_id`.
    Captured,
    /// `payment.failed` with `data.top_up_id`.
    Failed,
}

/// A driver's money position in one currency, from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Earnings netted with the cash the driver holds (posted): negative when the driver
    /// owes commission on cash trips.
    pub balance_minor: i64,
    /// What the driver still owes after netting with earnings and what payouts hold.
    pub cash_debt_minor: i64,
    /// What a payout may take now.
    pub withdrawable_minor: i64,
    /// Held by payouts not yet paid, failed or rejected.
    pub held_minor: i64,
}

impl Position {
    /// The position from the driver's earnings and cash-in-hand accounts.
    pub fn of(earnings: &Account, cash_in_hand: &Account) -> Position {
        let balance = earnings.balance().saturating_add(cash_in_hand.balance());
        let held = earnings.debits_pending;
        let free = balance.saturating_sub(held);
        Position {
            balance_minor: balance,
            cash_debt_minor: free.min(0).saturating_neg(),
            withdrawable_minor: free.max(0),
            held_minor: held,
        }
    }
}

/// One driver's earnings on one UTC day, in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EarningsDay {
    /// Trips paid (a fare or a cash fare credited to the driver).
    pub trips: u32,
    /// Fares before commission (with coupon discounts the platform paid, and fees).
    pub gross_minor: i64,
    /// Commission taken.
    pub commission_minor: i64,
    /// Cash the driver collected from riders.
    pub cash_collected_minor: i64,
}

impl EarningsDay {
    /// Adds `other`.
    pub fn add(&mut self, other: &EarningsDay) {
        self.trips = self.trips.saturating_add(other.trips);
        self.gross_minor = self.gross_minor.saturating_add(other.gross_minor);
        self.commission_minor = self.commission_minor.saturating_add(other.commission_minor);
        self.cash_collected_minor = self.cash_collected_minor.saturating_add(other.cash_collected_minor);
    }

    /// What a transfer adds to its driver's day, and whose day: `None` when it is not
    /// about a driver's earnings.
    pub fn of_transfer(t: &Transfer) -> Option<(UserId, EarningsDay)> {
        let earns = |k: &crate::ledger::AccountKey| k.kind == AccountKind::DriverEarnings;
        let mut d = EarningsDay::default();
        let owner = match t.code {
            TransferCode::Fare | TransferCode::Cash if earns(&t.credit) => {
                d.trips = 1;
                d.gross_minor = t.amount;
                if t.code == TransferCode::Cash {
                    d.cash_collected_minor = t.amount;
                }
                t.credit.owner
            }
            // Cash a driver took for a card fare (the rider switched to cash).
            TransferCode::Cash if t.debit.kind == AccountKind::CashInHand => {
                d.cash_collected_minor = t.amount;
                t.debit.owner
            }
            TransferCode::Discount | TransferCode::CancelFee if earns(&t.credit) => {
                d.gross_minor = t.amount;
                t.credit.owner
            }
            TransferCode::Commission if earns(&t.debit) => {
                d.commission_minor = t.amount;
                t.debit.owner
            }
            _ => None,
        }?;
        Some((owner, d))
    }
}

/// The day (days since the Unix epoch, UTC) of `at`.
pub fn day_of(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(DAY_MS)
}

/// The currencies `driver` holds cash in or has earnings in, in order: a range of the
/// ledger's accounts (keyed by kind, owner, currency), never a walk of all of them.
pub fn driver_currencies(accounts: &imbl::OrdMap<AccountKey, Account>, driver: UserId) -> Vec<Currency> {
    let Some((lo, hi)) = currency_bounds() else { return Vec::new() };
    let mut out: Vec<Currency> = Vec::new();
    for kind in [AccountKind::DriverEarnings, AccountKind::CashInHand] {
        let range = (
            std::ops::Bound::Included(AccountKey::of(kind, driver, lo)),
            std::ops::Bound::Included(AccountKey::of(kind, driver, hi)),
        );
        out.extend(accounts.range(range).map(|(k, _)| k.currency));
    }
    out.sort();
    out.dedup();
    out
}

/// The least and the greatest currency (the table is sorted by code, and a currency is
/// ordered by its code first).
fn currency_bounds() -> Option<(Currency, Currency)> {
    let code = |c: &([u8; 3], u8)| std::str::from_utf8(&c.0).ok().and_then(|s| Currency::new(s).ok());
    Some((code(crate::money::CURRENCIES.first()?)?, code(crate::money::CURRENCIES.last()?)?))
}

/// Payouts, top-ups and the earnings index: persistent maps, so a copy of the state (a
/// checkpoint's, the view's) shares them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// Every payout.
    pub payouts: imbl::OrdMap<PayoutId, Arc<Payout>>,
    /// Every top-up.
    pub top_ups: imbl::OrdMap<TopUpId, Arc<TopUp>>,
    /// (driver, currency, day) → that day's earnings, derived from the ledger's transfers.
    pub earnings: imbl::OrdMap<(UserId, Currency, i64), EarningsDay>,
    /// Payouts approved and not yet accepted by their gateway (`processing`, no
    /// `sent_at`): what the payment worker sends, without walking every payout.
    pub unsent: imbl::OrdSet<PayoutId>,
    /// Top-ups waiting for the gateway, per user (at most [`MAX_PENDING_TOP_UPS`]).
    pub pending_top_ups: imbl::OrdMap<UserId, u16>,
}

impl Book {
    /// Adds a transfer the ledger created to the earnings index.
    pub fn index(&mut self, t: &Transfer) {
        if let Some((driver, d)) = EarningsDay::of_transfer(t) {
            self.earnings.entry((driver, t.debit.currency, day_of(t.at))).or_default().add(&d);
        }
    }

    /// A driver's days with earnings in `[from_day, to_day)`, in day order.
    pub fn days(
        &self,
        driver: UserId,
        currency: Currency,
        from_day: i64,
        to_day: i64,
    ) -> impl Iterator<Item = (i64, &EarningsDay)> {
        self.earnings.range((driver, currency, from_day)..(driver, currency, to_day)).map(|((_, _, day), d)| (*day, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payout_state_machine_has_no_way_back() {
        use PayoutStatus::*;
        assert!(Requested.can_become(Processing) && Requested.can_become(Rejected));
        assert!(Processing.can_become(Paid) && Processing.can_become(Failed));
        for done in [Paid, Failed, Rejected] {
            for next in [Requested, Processing, Paid, Failed, Rejected] {
                assert!(!done.can_become(next), "{done:?} → {next:?}");
            }
        }
        assert!(!Requested.can_become(Paid), "never paid without approval");
        assert_eq!(PayoutStatus::parse("processing"), Some(Processing));
        assert_eq!(PayoutStatus::parse("nope"), None);
    }

    #[test]
    fn a_position_nets_cash_with_earnings_and_counts_holds() {
        let acc = |credits: i64, debits: i64, pending: i64| Account {
            credits_posted: credits,
            debits_posted: debits,
            debits_pending: pending,
            credits_pending: 0,
        };
        // A cash trip of 1000 at 20 %: the driver holds 1000 and earned 800.
        let p = Position::of(&acc(1000, 200, 0), &acc(0, 1000, 0));
        assert_eq!((p.balance_minor, p.cash_debt_minor, p.withdrawable_minor), (-200, 200, 0));
        // A card fare of 1500 (1200 after commission) nets the debt first.
        let p = Position::of(&acc(2500, 500, 0), &acc(0, 1000, 0));
        assert_eq!((p.balance_minor, p.cash_debt_minor, p.withdrawable_minor), (1000, 0, 1000));
        // A payout holding 600 leaves 400.
        let p = Position::of(&acc(2500, 500, 600), &acc(0, 1000, 0));
        assert_eq!((p.withdrawable_minor, p.held_minor), (400, 600));
    }
}
