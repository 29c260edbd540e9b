//! The double-entry ledger: accounts, transfers, two-phase holds, linked batches.
//!
//! Owns [`Ledger`], modelled on TigerBeetle's: every movement of money is a [`Transfer`]
//! from one account (debited) to another (credited) of the same currency, for a positive
//! amount in minor units. Accounts are keyed by what they are ([`AccountKind`]), whose
//! they are and their currency, and are opened on first use.
//!
//! Guarantees (checked by [`Ledger::check`] and property-tested against a model):
//! - **balance**: the sum of all balances, per currency, is zero — every transfer
//!   credits exactly what it debits;
//! - **no overdraft**: an account whose kind forbids it ([`AccountKind::no_overdraft`],
//!   rider wallets) never has `debits_posted + debits_pending > credits_posted`;
//! - **idempotent ids**: a transfer id is used once. The same id with the same fields
//!   answers [`Applied::Exists`] and changes nothing; with different fields it is
//!   [`LedgerError::ExistsWithDifferent`] naming the first field that differs;
//! - **two-phase**: a pending transfer reserves its amount on both sides until it is
//!   posted (for at most its amount; the rest is released) or voided, once;
//! - **linked**: [`Ledger::apply_all`] applies a batch all-or-nothing: every check of
//!   every transfer passes before the first balance moves;
//! - amounts are `i64` minor units, sums checked: an overflow is an error, never a wrap.
//!
//! Balances are `credits_posted − debits_posted`: positive is what the platform owes the
//! account's owner (a wallet's money, a driver's earnings), negative what they owe it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{TransferId, TripId, UserId};
use crate::money::Currency;
use crate::user::Role;

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A rider's prepaid balance (never negative).
    RiderWallet,
    /// What a rider owes when a final fare exceeded their wallet (negative balance).
    RiderDebt,
    /// A driver's earnings: fares minus commission (negative: the driver owes commission).
    DriverEarnings,
    /// Cash a driver collected from riders (negative: the driver holds it).
    CashInHand,
    /// Fares held between booking and completion (wallet holds, card captures).
    Escrow,
    /// The platform's commission and fees.
    PlatformRevenue,
    /// What the payment gateway owes the platform (captures) or is owed (refunds).
    GatewayClearing,
    /// Discounts the platform pays for (coupons), and credits it grants.
    Promotions,
    /// Cash drivers paid in at an office against their cash debt (the platform holds it).
    OfficeCash,
}

impl AccountKind {
    /// The account a user's own balance is kept in, by role: a rider's wallet, a driver's
    /// earnings (what `GET /v1/wallet` reads, and what an admin's credit goes to). Staff
    /// have none.
    pub fn wallet_of(role: Role) -> Option<AccountKind> {
        match role {
            Role::Rider => Some(AccountKind::RiderWallet),
            Role::Driver => Some(AccountKind::DriverEarnings),
            Role::Support | Role::Admin => None,
        }
    }

    /// Whether debits may never exceed credits.
    pub fn no_overdraft(self) -> bool {
        matches!(self, AccountKind::RiderWallet)
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::RiderWallet => "rider_wallet",
            AccountKind::RiderDebt => "rider_debt",
            AccountKind::DriverEarnings => "driver_earnings",
            AccountKind::CashInHand => "cash_in_hand",
            AccountKind::Escrow => "escrow",
            AccountKind::PlatformRevenue => "platform_revenue",
            AccountKind::GatewayClearing => "gateway_clearing",
            AccountKind::Promotions => "promotions",
            AccountKind::OfficeCash => "office_cash",
        }
    }
}

/// An account's identity: its kind, its owner (none for the platform's) and currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey {
    /// What it is.
    pub kind: AccountKind,
    /// Whose (riders' and drivers' accounts), or the platform's.
    pub owner: Option<UserId>,
    /// Its currency.
    pub currency: Currency,
}

impl AccountKey {
    /// A user's account.
    pub fn of(kind: AccountKind, owner: UserId, currency: Currency) -> Self {
        AccountKey { kind, owner: Some(owner), currency }
    }

    /// One of the platform's accounts.
    pub fn platform(kind: AccountKind, currency: Currency) -> Self {
        AccountKey { kind, owner: None, currency }
    }
}

/// An account's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Posted debits.
    pub debits_posted: i64,
    /// Posted credits.
    pub credits_posted: i64,
    /// Debits reserved by pending transfers.
    pub debits_pending: i64,
    /// Credits reserved by pending transfers.
    pub credits_pending: i64,
}

impl Account {
    /// `credits_posted − debits_posted`.
    pub fn balance(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }

    /// What can still be debited from a no-overdraft account.
    pub fn available(&self) -> i64 {
        self.credits_posted - self.debits_posted - self.debits_pending
    }
}

/// Why money moved (kept on the transfer, shown in wallet statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferCode {
    /// A fare paid.
    Fare,
    /// The platform's commission.
    Commission,
    /// A coupon's discount, paid by the platform to the driver.
    Discount,
    /// A rider's late-cancellation fee.
    CancelFee,
    /// A hold on a wallet for a booked trip.
    Hold,
    /// Money added to a wallet by an admin or a top-up.
    Credit,
    /// Money given back.
    Refund,
    /// A fare the wallet could not cover, recorded as the rider's debt.
    Debt,
    /// Cash collected by the driver.
    Cash,
    /// A card capture through the gateway.
    Capture,
    /// A driver's payout (held at request, posted when the gateway paid it).
    Payout,
    /// Cash a driver paid in at an office against their cash debt.
    CashReceived,
}

/// Posted at once, or pending until posted or voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferState {
    /// Final.
    Posted,
    /// Reserved until posted or voided.
    Pending,
    /// A pending transfer, posted for `amount` (at most what was reserved).
    PostedFrom(TransferId),
    /// A pending transfer released.
    VoidedFrom(TransferId),
}

/// A movement of money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Unique, chosen by the caller (so a retry is recognised).
    pub id: TransferId,
    /// Debited.
    pub debit: AccountKey,
    /// Credited.
    pub credit: AccountKey,
    /// Minor units, positive.
    pub amount: i64,
    /// Why.
    pub code: TransferCode,
    /// Posted, pending, or the posting/voiding of a pending one.
    pub state: TransferState,
    /// The trip it is for, if any.
    pub trip_id: Option<TripId>,
    /// When.
    pub at: Timestamp,
}

/// What applying a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It moved money.
    Created,
    /// The same transfer was applied before: nothing changed.
    Exists,
}

/// Why a transfer was refused (it changed nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Zero, negative, or too large.
    #[error("transfer amount must be positive")]
    InvalidAmount,
    /// Debit and credit are the same account, or in different currencies.
    #[error("a transfer moves money between two different accounts of one currency")]
    InvalidAccounts,
    /// The id was used for a different transfer.
    #[error("transfer {id} exists with a different {field}")]
    ExistsWithDifferent {
        /// The id.
        id: TransferId,
        /// The first field that differs.
        field: &'static str,
    },
    /// A no-overdraft account lacks the funds.
    #[error("insufficient funds: {available} available, {needed} needed")]
    InsufficientFunds {
        /// What the account could pay.
        available: i64,
        /// What the transfer needed.
        needed: i64,
    },
    /// Posting or voiding something that is not a pending transfer still pending.
    #[error("transfer {0} is not a pending transfer that can be posted or voided")]
    NotPending(TransferId),
    /// Posting more than was reserved.
    #[error("cannot post more than the pending amount")]
    PostExceedsPending,
    /// A total would overflow.
    #[error("ledger arithmetic overflow")]
    Overflow,
}

/// The ledger: accounts and every transfer by id.
///
/// The accounts, one or more per user who ever moved money, are a persistent map
/// ([`imbl::OrdMap`], in key order like the `BTreeMap` it replaced and encoded the same):
/// a clone of the state for a checkpoint shares them rather than copying them. So are the
/// transfers: only the hot ones are kept (settled ones move to the history with their
/// trips), but a busy city settles tens of thousands between two checkpoints, and the
/// writer copied every one of them, by value, at each checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    accounts: imbl::OrdMap<AccountKey, Account>,
    transfers: imbl::OrdMap<TransferId, Transfer>,
    /// Pending transfers not yet posted or voided.
    open_pending: BTreeMap<TransferId, ()>,
    /// Transfers ever created, including those archived to the history.
    created: u64,
}

/// The largest amount one transfer moves (10^15 minor units: far above any payment,
/// far below overflow of the totals).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// What a batch asks for: a transfer to create, or a pending one to post or void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create this transfer (state `Posted` or `Pending`).
    Create(Transfer),
    /// Post the pending transfer `pending` for `amount` under the new id `id`.
    Post {
        /// The new transfer's id.
        id: TransferId,
        /// Which pending transfer.
        pending: TransferId,
        /// How much of it (the rest is released).
        amount: i64,
        /// When.
        at: Timestamp,
    },
    /// Release the pending transfer `pending`, recorded under the new id `id`.
    Void {
        /// The new transfer's id.
        id: TransferId,
        /// Which pending transfer.
        pending: TransferId,
        /// When.
        at: Timestamp,
    },
}

impl Ledger {
    /// Every account's totals, by key.
    pub fn account_map(&self) -> &imbl::OrdMap<AccountKey, Account> {
        &self.accounts
    }

    /// Replaces the accounts (with none, while a checkpoint encodes the rest; with those
    /// a checkpoint read back).
    pub fn set_accounts(&mut self, accounts: imbl::OrdMap<AccountKey, Account>) {
        self.accounts = accounts;
    }

    /// An account's totals (zero if never used).
    pub fn account(&self, key: &AccountKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Every account that was ever used.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountKey, &Account)> {
        self.accounts.iter()
    }

    /// A transfer.
    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        self.transfers.get(&id)
    }

    /// Every transfer, by id.
    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers.values()
    }

    /// Whether `id` is a pending transfer not yet posted or voided.
    pub fn is_open_pending(&self, id: TransferId) -> bool {
        self.open_pending.contains_key(&id)
    }

    /// Applies `ops` all-or-nothing (linked). Returns, per op, whether it moved money.
    /// On a refusal the ops already applied are undone, so the cost is that of the
    /// batch, not of the ledger.
    pub fn apply_all(&mut self, ops: &[Op]) -> Result<Vec<Applied>, LedgerError> {
        let mut undo = Undo::default();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply_one(op, &mut undo) {
                Ok(applied) => out.push(applied),
                Err(e) => {
                    self.roll_back(undo);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Applies one op. A single op checks everything before it writes.
    pub fn apply(&mut self, op: &Op) -> Result<Applied, LedgerError> {
        self.apply_one(op, &mut Undo::default())
    }

    fn apply_one(&mut self, op: &Op, undo: &mut Undo) -> Result<Applied, LedgerError> {
        let mark = undo.remember(self, op);
        let applied = match op {
            Op::Create(t) => self.create(t),
            Op::Post { id, pending, amount, at } => self.finish(*id, *pending, Some(*amount), *at),
            Op::Void { id, pending, at } => self.finish(*id, *pending, None, *at),
        };
        if !matches!(applied, Ok(Applied::Created)) {
            // Nothing changed (refused, or already there): nothing to undo for this op.
            undo.forget_from(mark);
        }
        applied
    }

    /// Transfers ever created (the hot ones and those archived).
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Whether `other`'s accounts are this ledger's, shared rather than copied (a clone's
    /// are until either side writes one).
    #[cfg(test)]
    pub(crate) fn shares_accounts_with(&self, other: &Ledger) -> bool {
        self.accounts.ptr_eq(&other.accounts)
    }

    fn roll_back(&mut self, undo: Undo) {
        for (key, before) in undo.accounts.into_iter().rev() {
            match before {
                Some(a) => self.accounts.insert(key, a),
                None => self.accounts.remove(&key),
            };
        }
        for (id, reopened) in undo.transfers.into_iter().rev() {
            self.transfers.remove(&id);
            self.created -= 1;
            self.open_pending.remove(&id);
            if let Some(pending) = reopened {
                self.open_pending.insert(pending, ());
            }
        }
    }

    fn create(&mut self, t: &Transfer) -> Result<Applied, LedgerError> {
        if let Some(old) = self.transfers.get(&t.id) {
            return same_or_differs(old, t);
        }
        if t.amount <= 0 || t.amount > MAX_AMOUNT {
            return Err(LedgerError::InvalidAmount);
        }
        if t.debit == t.credit || t.debit.currency != t.credit.currency {
            return Err(LedgerError::InvalidAccounts);
        }
        let pending = match t.state {
            TransferState::Posted => false,
            TransferState::Pending => true,
            TransferState::PostedFrom(_) | TransferState::VoidedFrom(_) => return Err(LedgerError::NotPending(t.id)),
        };
        let mut debit = self.account(&t.debit);
        let mut credit = self.account(&t.credit);
        if t.debit.kind.no_overdraft() && debit.available() < t.amount {
            return Err(LedgerError::InsufficientFunds { available: debit.available().max(0), needed: t.amount });
        }
        let add = |a: i64, b: i64| a.checked_add(b).ok_or(LedgerError::Overflow);
        if pending {
            debit.debits_pending = add(debit.debits_pending, t.amount)?;
            credit.credits_pending = add(credit.credits_pending, t.amount)?;
        } else {
            debit.debits_posted = add(debit.debits_posted, t.amount)?;
            credit.credits_posted = add(credit.credits_posted, t.amount)?;
        }
        self.accounts.insert(t.debit, debit);
        self.accounts.insert(t.credit, credit);
        if pending {
            self.open_pending.insert(t.id, ());
        }
        self.transfers.insert(t.id, t.clone());
        self.created += 1;
        Ok(Applied::Created)
    }

    /// Posts (`amount: Some`) or voids (`None`) the pending transfer `pending`.
    fn finish(
        &mut self,
        id: TransferId,
        pending: TransferId,
        amount: Option<i64>,
        at: Timestamp,
    ) -> Result<Applied, LedgerError> {
        let original = self.transfers.get(&pending).cloned().ok_or(LedgerError::NotPending(pending))?;
        let state = match amount {
            Some(_) => TransferState::PostedFrom(pending),
            None => TransferState::VoidedFrom(pending),
        };
        let posted = amount.unwrap_or(original.amount);
        let record = Transfer {
            id,
            debit: original.debit,
            credit: original.credit,
            amount: posted,
            code: original.code,
            state,
            trip_id: original.trip_id,
            at,
        };
        if let Some(old) = self.transfers.get(&id) {
            // `at` is when it happened, not part of what it is.
            let mut same_time = record.clone();
            same_time.at = old.at;
            return same_or_differs(old, &same_time);
        }
        if !self.open_pending.contains_key(&pending) {
            return Err(LedgerError::NotPending(pending));
        }
        if posted <= 0 {
            return Err(LedgerError::InvalidAmount);
        }
        if posted > original.amount {
            return Err(LedgerError::PostExceedsPending);
        }
        let mut debit = self.account(&original.debit);
        let mut credit = self.account(&original.credit);
        debit.debits_pending -= original.amount;
        credit.credits_pending -= original.amount;
        if amount.is_some() {
            let add = |a: i64, b: i64| a.checked_add(b).ok_or(LedgerError::Overflow);
            debit.debits_posted = add(debit.debits_posted, posted)?;
            credit.credits_posted = add(credit.credits_posted, posted)?;
        }
        self.accounts.insert(original.debit, debit);
        self.accounts.insert(original.credit, credit);
        self.open_pending.remove(&pending);
        self.transfers.insert(id, record);
        self.created += 1;
        Ok(Applied::Created)
    }

    /// Settled transfers (not an open hold) of no trip or of one of `trips`: what a
    /// checkpoint may move to the history with those trips.
    pub fn archivable(&self, trips: &std::collections::HashSet<TripId>) -> Vec<Transfer> {
        self.transfers
            .values()
            .filter(|t| !self.open_pending.contains_key(&t.id))
            .filter(|t| t.trip_id.is_none_or(|trip| trips.contains(&trip)))
            .cloned()
            .collect()
    }

    /// Forgets the records of settled transfers (their rows are in the history). The
    /// accounts' totals are unchanged; an open hold is never forgotten.
    pub fn forget(&mut self, ids: &[TransferId]) -> Result<(), LedgerError> {
        if let Some(open) = ids.iter().find(|id| self.open_pending.contains_key(id)) {
            return Err(LedgerError::NotPending(*open));
        }
        for id in ids {
            self.transfers.remove(id);
        }
        Ok(())
    }

    /// Checks the invariants of the module docs; `Err` names the first broken.
    pub fn check(&self) -> Result<(), String> {
        let mut sums: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
        for (key, a) in &self.accounts {
            let s = sums.entry(key.currency).or_default();
            s.0 += i128::from(a.balance());
            s.1 += i128::from(a.credits_pending) - i128::from(a.debits_pending);
            if key.kind.no_overdraft() && a.available() < 0 {
                return Err(format!("{} of {:?} is overdrawn: {a:?}", key.kind.as_str(), key.owner));
            }
            if a.debits_pending < 0 || a.credits_pending < 0 {
                return Err(format!("negative pending totals on {key:?}"));
            }
        }
        if let Some((c, s)) = sums.iter().find(|(_, s)| **s != (0, 0)) {
            return Err(format!("the ledger does not balance in {c}: {s:?}"));
        }
        Ok(())
    }

    /// The sum of all balances (0 when the ledger balances), accounts and transfers counted.
    pub fn totals(&self) -> (i128, usize, usize) {
        let sum = self.accounts.values().map(|a| i128::from(a.balance())).sum();
        (sum, self.accounts.len(), self.transfers.len())
    }
}

/// What a linked batch changed so far, to put back if a later op is refused.
#[derive(Default)]
struct Undo {
    /// Accounts as they were before the batch touched them, in the order touched.
    accounts: Vec<(AccountKey, Option<Account>)>,
    /// Transfers created, with the pending transfer a post or void closed.
    transfers: Vec<(TransferId, Option<TransferId>)>,
}

impl Undo {
    /// Records what `op` may change; returns a mark to forget it by.
    fn remember(&mut self, ledger: &Ledger, op: &Op) -> (usize, usize) {
        let mark = (self.accounts.len(), self.transfers.len());
        let (keys, id, closes) = match op {
            Op::Create(t) => ([t.debit, t.credit], t.id, None),
            Op::Post { id, pending, .. } | Op::Void { id, pending, .. } => match ledger.transfers.get(pending) {
                Some(p) => ([p.debit, p.credit], *id, Some(*pending)),
                None => return mark,
            },
        };
        for k in keys {
            self.accounts.push((k, ledger.accounts.get(&k).copied()));
        }
        self.transfers.push((id, closes));
        mark
    }

    fn forget_from(&mut self, (accounts, transfers): (usize, usize)) {
        self.accounts.truncate(accounts);
        self.transfers.truncate(transfers);
    }
}

fn same_or_differs(old: &Transfer, new: &Transfer) -> Result<Applied, LedgerError> {
    let field = if old.debit != new.debit {
        "debit account"
    } else if old.credit != new.credit {
        "credit account"
    } else if old.amount != new.amount {
        "amount"
    } else if old.code != new.code {
        "code"
    } else if old.state != new.state {
        "state"
    } else if old.trip_id != new.trip_id {
        "trip"
    } else {
        return Ok(Applied::Exists);
    };
    Err(LedgerError::ExistsWithDifferent { id: old.id, field })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn egp() -> Currency {
        "EGP".parse().unwrap()
    }

    fn user(n: u64) -> UserId {
        UserId::from_raw(n).unwrap()
    }

    #[test]
    fn a_users_wallet_is_chosen_by_role_and_staff_have_none() {
        assert_eq!(AccountKind::wallet_of(Role::Rider), Some(AccountKind::RiderWallet));
        assert_eq!(AccountKind::wallet_of(Role::Driver), Some(AccountKind::DriverEarnings));
        assert_eq!(AccountKind::wallet_of(Role::Support), None);
        assert_eq!(AccountKind::wallet_of(Role::Admin), None);
        // A rider's wallet may not be overdrawn; a driver's earnings may (owed commission).
        assert!(AccountKind::RiderWallet.no_overdraft() && !AccountKind::DriverEarnings.no_overdraft());
    }

    fn wallet(n: u64) -> AccountKey {
        AccountKey::of(AccountKind::RiderWallet, user(n), egp())
    }

    fn promo() -> AccountKey {
        AccountKey::platform(AccountKind::Promotions, egp())
    }

    fn earnings(n: u64) -> AccountKey {
        AccountKey::of(AccountKind::DriverEarnings, user(n), egp())
    }

    fn t(id: u64, debit: AccountKey, credit: AccountKey, amount: i64, state: TransferState) -> Transfer {
        Transfer {
            id: TransferId::from_raw(id).unwrap(),
            debit,
            credit,
            amount,
            code: TransferCode::Credit,
            state,
            trip_id: None,
            at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn a_repeated_id_answers_exists_or_names_the_field_that_differs() {
        let mut l = Ledger::default();
        let credit = t(1, promo(), wallet(1), 500, TransferState::Posted);
        assert_eq!(l.apply(&Op::Create(credit.clone())), Ok(Applied::Created));
        assert_eq!(l.apply(&Op::Create(credit.clone())), Ok(Applied::Exists));
        assert_eq!(l.account(&wallet(1)).balance(), 500, "applied once");
        let mut other = credit;
        other.amount = 501;
        assert_eq!(
            l.apply(&Op::Create(other)),
            Err(LedgerError::ExistsWithDifferent { id: TransferId::from_raw(1).unwrap(), field: "amount" })
        );
        l.check().unwrap();
    }

    #[test]
    fn a_wallet_never_goes_negative_and_holds_count_against_it() {
        let mut l = Ledger::default();
        l.apply(&Op::Create(t(1, promo(), wallet(1), 1000, TransferState::Posted))).unwrap();
        l.apply(&Op::Create(t(2, wallet(1), earnings(2), 800, TransferState::Pending))).unwrap();
        assert_eq!(
            l.apply(&Op::Create(t(3, wallet(1), earnings(2), 300, TransferState::Posted))),
            Err(LedgerError::InsufficientFunds { available: 200, needed: 300 })
        );
        // Posting less than held releases the rest.
        let post = Op::Post {
            id: TransferId::from_raw(4).unwrap(),
            pending: TransferId::from_raw(2).unwrap(),
            amount: 600,
            at: Timestamp::from_millis(1),
        };
        l.apply(&post).unwrap();
        assert_eq!(l.account(&wallet(1)).available(), 400);
        assert_eq!(l.apply(&post), Ok(Applied::Exists), "a retried post is recognised");
        let void = Op::Void {
            id: TransferId::from_raw(5).unwrap(),
            pending: TransferId::from_raw(2).unwrap(),
            at: Timestamp::from_millis(2),
        };
        assert_eq!(l.apply(&void), Err(LedgerError::NotPending(TransferId::from_raw(2).unwrap())));
        l.check().unwrap();
    }

    #[test]
    fn a_linked_batch_is_all_or_nothing() {
        let mut l = Ledger::default();
        l.apply(&Op::Create(t(1, promo(), wallet(1), 100, TransferState::Posted))).unwrap();
        let before = l.clone();
        let batch = [
            Op::Create(t(2, wallet(1), earnings(2), 60, TransferState::Posted)),
            Op::Create(t(3, wallet(1), earnings(2), 60, TransferState::Posted)),
        ];
        assert!(matches!(l.apply_all(&batch), Err(LedgerError::InsufficientFunds { .. })));
        assert_eq!(l, before, "the first transfer of the failed batch was not kept");
    }

    #[test]
    fn bad_transfers_are_refused() {
        let mut l = Ledger::default();
        for bad in [
            t(1, promo(), wallet(1), 0, TransferState::Posted),
            t(1, promo(), wallet(1), -5, TransferState::Posted),
            t(1, wallet(1), wallet(1), 5, TransferState::Posted),
            t(1, promo(), AccountKey { currency: "USD".parse().unwrap(), ..wallet(1) }, 5, TransferState::Posted),
        ] {
            assert!(l.apply(&Op::Create(bad)).is_err());
        }
        assert_eq!(l, Ledger::default());
    }

    /// The model: plain balances and a set of live holds, per account index.
    #[derive(Debug, Default)]
    struct Model {
        balance: BTreeMap<u8, i64>,
        held: BTreeMap<u8, i64>,
        holds: BTreeMap<u64, (u8, u8, i64)>,
    }

    fn key(i: u8) -> AccountKey {
        match i % 4 {
            0 => promo(),
            1 => wallet(1),
            2 => wallet(2),
            _ => earnings(3),
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Move { from: u8, to: u8, amount: i64, pending: bool },
        Post { which: usize, amount: i64 },
        Void { which: usize },
        Retry { which: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..4, 0u8..4, -5i64..400, any::<bool>()).prop_map(|(from, to, amount, pending)| Step::Move {
                from,
                to,
                amount,
                pending
            }),
            (0usize..20, 1i64..400).prop_map(|(which, amount)| Step::Post { which, amount }),
            (0usize..20).prop_map(|which| Step::Void { which }),
            (0usize..20).prop_map(|which| Step::Retry { which }),
        ]
    }

    proptest! {
        #[test]
        fn the_ledger_behaves_like_plain_balances(steps in proptest::collection::vec(step(), 1..60)) {
            let mut l = Ledger::default();
            let mut m = Model::default();
            let mut next = 1u64;
            let mut created: Vec<Transfer> = Vec::new();
            for s in steps {
                match s {
                    Step::Move { from, to, amount, pending } => {
                        let (fk, tk) = (key(from), key(to));
                        let state = if pending { TransferState::Pending } else { TransferState::Posted };
                        let tr = t(next, fk, tk, amount, state);
                        next += 1;
                        let avail = m.balance.get(&(from % 4)).copied().unwrap_or(0) - m.held.get(&(from % 4)).copied().unwrap_or(0);
                        let ok = amount > 0 && fk != tk && (!fk.kind.no_overdraft() || avail >= amount);
                        let r = l.apply(&Op::Create(tr.clone()));
                        prop_assert_eq!(r.is_ok(), ok, "{:?}", r);
                        if ok {
                            if pending {
                                *m.held.entry(from % 4).or_default() += amount;
                                m.holds.insert(tr.id.raw(), (from % 4, to % 4, amount));
                            } else {
                                *m.balance.entry(from % 4).or_default() -= amount;
                                *m.balance.entry(to % 4).or_default() += amount;
                            }
                            created.push(tr);
                        }
                    }
                    Step::Post { which, amount } => {
                        let Some(p) = created.get(which).cloned() else { continue };
                        let id = TransferId::from_raw(next).unwrap();
                        next += 1;
                        let r = l.apply(&Op::Post { id, pending: p.id, amount, at: Timestamp::from_millis(0) });
                        match m.holds.get(&p.id.raw()).copied() {
                            Some((f, to, held)) if amount <= held => {
                                prop_assert!(r.is_ok(), "{:?}", r);
                                m.holds.remove(&p.id.raw());
                                *m.held.entry(f).or_default() -= held;
                                *m.balance.entry(f).or_default() -= amount;
                                *m.balance.entry(to).or_default() += amount;
                            }
                            _ => prop_assert!(r.is_err()),
                        }
                    }
                    Step::Void { which } => {
                        let Some(p) = created.get(which).cloned() else { continue };
                        let id = TransferId::from_raw(next).unwrap();
                        next += 1;
                        let r = l.apply(&Op::Void { id, pending: p.id, at: Timestamp::from_millis(0) });
                        match m.holds.remove(&p.id.raw()) {
                            Some((f, _, held)) => {
                                prop_assert!(r.is_ok());
                                *m.held.entry(f).or_default() -= held;
                            }
                            None => prop_assert!(r.is_err()),
                        }
                    }
                    Step::Retry { which } => {
                        let Some(p) = created.get(which).cloned() else { continue };
                        prop_assert_eq!(l.apply(&Op::Create(p)), Ok(Applied::Exists));
                    }
                }
                l.check().map_err(TestCaseError::fail)?;
                for i in 0u8..4 {
                    let a = l.account(&key(i));
                    prop_assert_eq!(a.balance(), m.balance.get(&i).copied().unwrap_or(0), "account {}", i);
                    prop_assert_eq!(a.debits_pending, m.held.get(&i).copied().unwrap_or(0));
                }
            }
        }
    }
}
