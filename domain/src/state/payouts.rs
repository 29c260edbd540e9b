//! Drivers' payouts (two-phase), wallet top-ups through the gateway, cash debt and cash
//! received at an office (the types and the earnings index: `crate::payout`).
//!
//! Guarantees:
//! - a payout's amount is held by a pending transfer from the driver's earnings to the
//!   gateway's clearing account the moment it is requested; approval sends it, and the
//!   hold is posted on `payout.paid` or voided on `payout.failed` or a rejection — once:
//!   the payout state machine ([`PayoutStatus::can_become`]) has no edge out of `paid`,
//!   `failed` or `rejected`, so no payout is paid twice and a failed one returns exactly
//!   what was held;
//! - a payout never takes more than is withdrawable (earnings netted with cash held,
//!   less other payouts' holds), nor less than `payout_min_minor`;
//! - a gateway report (payout or top-up) is applied once per event id (`duplicate`); a
//!   stale one, or one from another gateway than the one the payout or top-up goes
//!   through, is remembered and changes nothing (`ignored`, with the reason);
//! - a top-up credits its wallet once, for exactly its amount and currency; a user has at
//!   most `MAX_PENDING_TOP_UPS` waiting, each `expired` after `TOP_UP_TTL_S` without a
//!   capture (a capture that comes later still credits it);
//! - a driver whose cash debt is above `max_cash_debt_minor` cannot go online
//!   (`cash_debt_limit`); cash received at an office pays the debt down, never beyond it.

use std::sync::Arc;

use super::money::{Accounts, Purpose, derived_id, posted};
use super::{Effects, State, Who};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::error::{Error, Result};
use crate::id::{PayoutId, TopUpId, TransferId, UserId};
use crate::ledger::{AccountKey, AccountKind, MAX_AMOUNT, Op, Transfer, TransferCode, TransferState};
use crate::money::Currency;
use crate::payout::{
    Book, MAX_PENDING_TOP_UPS, Payout, PayoutReportKind, PayoutStatus, Position, TOP_UP_TTL_S, TopUp, TopUpReportKind,
    TopUpStatus,
};
use crate::user::Role;

/// What a gateway report will do, decided before anything changes.
enum Plan {
    Ignore(String),
    Apply(Vec<Op>),
}

impl State {
    /// Carries out a gateway report's plan: its money moves (if any) and its event id
    /// remembered. `Some`: the answer to an ignored report, which moved nothing.
    fn carry_out(
        &mut self,
        plan: Plan,
        gateway: &str,
        event_id: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Option<Outcome>> {
        match plan {
            Plan::Ignore(reason) => {
                self.remember_event(gateway, event_id, now);
                Ok(Some(Outcome::PaymentEvent { duplicate: false, ignored: Some(reason) }))
            }
            Plan::Apply(ops) => {
                self.apply_money(&ops, fx)?;
                self.remember_event(gateway, event_id, now);
                Ok(None)
            }
        }
    }

    /// Payouts, top-ups and the earnings index.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// A payout.
    pub fn payout(&self, id: PayoutId) -> Option<&Arc<Payout>> {
        self.book.payouts.get(&id)
    }

    /// A top-up.
    pub fn top_up(&self, id: TopUpId) -> Option<&Arc<TopUp>> {
        self.book.top_ups.get(&id)
    }

    /// A driver's money position in `currency`, from the ledger.
    pub fn driver_position(&self, driver: UserId, currency: Currency) -> Position {
        let a = Accounts { currency };
        Position::of(
            &self.ledger.account(&a.user(AccountKind::DriverEarnings, driver)),
            &self.ledger.account(&a.user(AccountKind::CashInHand, driver)),
        )
    }

    /// The currencies a driver holds cash in or has earnings in, in order.
    pub fn driver_currencies(&self, driver: UserId) -> Vec<Currency> {
        crate::payout::driver_currencies(self.ledger.account_map(), driver)
    }

    /// Refuses with `cash_debt_limit` when `driver` owes more cash debt than the rules
    /// allow, in any currency.
    pub(super) fn check_cash_debt(&self, driver: UserId) -> Result<()> {
        let limit = self.rules.max_cash_debt_minor;
        for currency in self.driver_currencies(driver) {
            let owed = self.driver_position(driver, currency).cash_debt_minor;
            if owed > limit {
                return Err(Error::CashDebtLimit { owed, limit });
            }
        }
        Ok(())
    }

    /// A driver asks for a payout: the amount is held at once.
    pub(super) fn request_payout(
        &mut self,
        who: Who,
        id: Option<PayoutId>,
        amount_minor: i64,
        currency: Currency,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let driver = self.driver_of(who)?;
        let id = id.ok_or_else(|| Error::Internal("payout id not stamped".into()))?;
        let min = self.rules.payout_min_minor;
        if !(min..=MAX_AMOUNT).contains(&amount_minor) {
            return Err(Error::InvalidParam {
                param: "amount_minor",
                message: format!("a payout is at least {min} minor units"),
            });
        }
        let available = self.driver_position(driver, currency).withdrawable_minor;
        if amount_minor > available {
            return Err(Error::InsufficientFunds { available, needed: amount_minor });
        }
        if self.book.payouts.contains_key(&id) {
            return Err(Error::Internal(format!("payout {id} exists")));
        }
        let a = Accounts { currency };
        let hold = derived_id(id.raw(), Purpose::PayoutHold, 0);
        let op = Op::Create(Transfer {
            id: hold,
            debit: a.user(AccountKind::DriverEarnings, driver),
            credit: a.platform(AccountKind::GatewayClearing),
            amount: amount_minor,
            code: TransferCode::Payout,
            state: TransferState::Pending,
            trip_id: None,
            at: now,
        });
        self.apply_money(&[op], fx)?;
        let payout = Arc::new(Payout {
            id,
            driver_id: driver,
            amount_minor,
            currency,
            status: PayoutStatus::Requested,
            hold,
            gateway: self.rules.card_gateway.clone(),
            sent_at: None,
            reason: None,
            created_at: now,
            updated_at: now,
        });
        self.book.payouts.insert(id, Arc::clone(&payout));
        fx.book = true;
        fx.events.push(crate::command::Event::PayoutUpdated { payout: Arc::clone(&payout) });
        Ok(Outcome::Payout(payout))
    }

    /// Staff approve (→ `processing`) or reject (→ `rejected`, the hold voided) a payout.
    pub(super) fn review_payout(
        &mut self,
        who: Who,
        payout_id: PayoutId,
        approve: bool,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "reviews payouts")?;
        let p = Arc::clone(self.book.payouts.get(&payout_id).ok_or_else(|| Error::not_found("payout", payout_id))?);
        let next = if approve { PayoutStatus::Processing } else { PayoutStatus::Rejected };
        if !p.status.can_become(next) {
            return Err(Error::InvalidTransition {
                action: if approve { "approve" } else { "reject" },
                entity: format!("payout {payout_id}"),
                from: p.status.as_str(),
            });
        }
        if !approve {
            let void = Op::Void { id: derived_id(payout_id.raw(), Purpose::PayoutVoid, 0), pending: p.hold, at: now };
            self.apply_money(&[void], fx)?;
        }
        let mut p = (*p).clone();
        p.status = next;
        if !approve && !reason.is_empty() {
            p.reason = Some(reason.to_owned());
        }
        p.updated_at = now;
        let p = Arc::new(p);
        self.book.payouts.insert(payout_id, Arc::clone(&p));
        if approve {
            self.book.unsent.insert(payout_id);
        }
        fx.book = true;
        fx.events.push(crate::command::Event::PayoutUpdated { payout: Arc::clone(&p) });
        Ok(Outcome::Payout(p))
    }

    /// Checks a gateway report's ids and answers `true` when its event id was seen.
    fn seen_event(&self, gateway: &str, event_id: &str, who: Who) -> Result<bool> {
        if who != Who::System {
            return Err(Error::Forbidden("only the server reports gateway events".into()));
        }
        if event_id.is_empty() || event_id.len() > 255 || gateway.is_empty() || gateway.len() > 32 {
            return Err(Error::Invalid("event id must be 1-255 bytes and gateway 1-32".into()));
        }
        Ok(self.gateway_events.contains_key(&(gateway.to_owned(), event_id.to_owned())))
    }

    fn remember_event(&mut self, gateway: &str, event_id: &str, now: Timestamp) {
        self.gateway_events.insert((gateway.to_owned(), event_id.to_owned()), now);
        self.schedule_housekeeping(now);
    }

    /// What the gateway reported about a payout: sent, paid (the hold posted) or failed
    /// (the hold voided).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn payout_report(
        &mut self,
        who: Who,
        gateway: &str,
        event_id: &str,
        payout_id: PayoutId,
        kind: PayoutReportKind,
        amount_minor: Option<i64>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if self.seen_event(gateway, event_id, who)? {
            return Ok(Outcome::PaymentEvent { duplicate: true, ignored: None });
        }
        let p = Arc::clone(self.book.payouts.get(&payout_id).ok_or_else(|| Error::not_found("payout", payout_id))?);
        let status = p.status;
        let ignore = |why: &str| Plan::Ignore(format!("{why} (payout is {})", status.as_str()));
        let plan = if p.gateway != gateway {
            Plan::Ignore(format!("payout {payout_id} goes through {}, not {gateway}", p.gateway))
        } else if amount_minor.is_some_and(|a| a != p.amount_minor) {
            Plan::Ignore(format!("paid amount differs: {} reported, {} due", amount_minor.unwrap_or(0), p.amount_minor))
        } else {
            match kind {
                PayoutReportKind::Sent if status == PayoutStatus::Processing && p.sent_at.is_none() => {
                    Plan::Apply(Vec::new())
                }
                PayoutReportKind::Sent => ignore("not waiting to be sent"),
                PayoutReportKind::Paid if status.can_become(PayoutStatus::Paid) => Plan::Apply(vec![Op::Post {
                    id: derived_id(payout_id.raw(), Purpose::PayoutPost, 0),
                    pending: p.hold,
                    amount: p.amount_minor,
                    at: now,
                }]),
                PayoutReportKind::Paid => ignore("not being paid"),
                PayoutReportKind::Failed if status.can_become(PayoutStatus::Failed) => Plan::Apply(vec![Op::Void {
                    id: derived_id(payout_id.raw(), Purpose::PayoutVoid, 0),
                    pending: p.hold,
                    at: now,
                }]),
                PayoutReportKind::Failed => ignore("not being paid"),
            }
        };
        if let Some(ignored) = self.carry_out(plan, gateway, event_id, now, fx)? {
            return Ok(ignored);
        }
        let mut p = (*p).clone();
        match kind {
            PayoutReportKind::Sent => p.sent_at = Some(now),
            PayoutReportKind::Paid => p.status = PayoutStatus::Paid,
            PayoutReportKind::Failed => {
                p.status = PayoutStatus::Failed;
                p.reason = Some(format!("the gateway reported a failure ({event_id})"));
            }
        }
        p.updated_at = now;
        let p = Arc::new(p);
        self.book.payouts.insert(payout_id, Arc::clone(&p));
        // Accepted, paid or failed: nothing more to send.
        self.book.unsent.remove(&payout_id);
        fx.book = true;
        fx.events.push(crate::command::Event::PayoutUpdated { payout: p });
        Ok(Outcome::PaymentEvent { duplicate: false, ignored: None })
    }

    /// A rider or driver asks to top up its wallet through the card gateway.
    pub(super) fn create_top_up(
        &mut self,
        who: Who,
        id: Option<TopUpId>,
        amount_minor: i64,
        currency: Currency,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let user_id = match who {
            Who::Rider(u) | Who::Driver(u) => u,
            _ => return Err(Error::Forbidden("only riders and drivers top up a wallet".into())),
        };
        let id = id.ok_or_else(|| Error::Internal("top-up id not stamped".into()))?;
        if !(1..=MAX_AMOUNT).contains(&amount_minor) {
            return Err(Error::InvalidParam { param: "amount_minor", message: "must be positive".into() });
        }
        if self.book.top_ups.contains_key(&id) {
            return Err(Error::Internal(format!("top-up {id} exists")));
        }
        let waiting = self.book.pending_top_ups.get(&user_id).copied().unwrap_or(0);
        if waiting >= MAX_PENDING_TOP_UPS {
            return Err(Error::Invalid(format!(
                "at most {MAX_PENDING_TOP_UPS} top-ups may wait for the gateway at once"
            )));
        }
        let top_up = Arc::new(TopUp {
            id,
            user_id,
            amount_minor,
            currency,
            status: TopUpStatus::Pending,
            gateway: self.rules.card_gateway.clone(),
            transfer: None,
            created_at: now,
            updated_at: now,
        });
        self.book.top_ups.insert(id, Arc::clone(&top_up));
        self.book.pending_top_ups.insert(user_id, waiting + 1);
        self.deadlines.insert((now.plus_secs(TOP_UP_TTL_S), super::Deadline::TopUpExpiry(id)));
        fx.book = true;
        Ok(Outcome::TopUp(top_up))
    }

    /// What the gateway reported about a top-up: captured (the wallet credited) or failed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn top_up_report(
        &mut self,
        who: Who,
        gateway: &str,
        event_id: &str,
        top_up_id: TopUpId,
        kind: TopUpReportKind,
        amount_minor: i64,
        currency: Currency,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if self.seen_event(gateway, event_id, who)? {
            return Ok(Outcome::PaymentEvent { duplicate: true, ignored: None });
        }
        let t = Arc::clone(self.book.top_ups.get(&top_up_id).ok_or_else(|| Error::not_found("top-up", top_up_id))?);
        let role = self.users.get(&t.user_id).map(|u| u.role);
        let wallet = role.and_then(AccountKind::wallet_of);
        let credit = derived_id(top_up_id.raw(), Purpose::TopUpCredit, 0);
        // A capture after the top-up expired still credits it: the money was taken.
        let open =
            t.status == TopUpStatus::Pending || (t.status == TopUpStatus::Expired && kind == TopUpReportKind::Captured);
        let plan = if t.gateway != gateway {
            Plan::Ignore(format!("top-up {top_up_id} goes through {}, not {gateway}", t.gateway))
        } else if !open {
            Plan::Ignore(format!("the top-up is {}", t.status.as_str()))
        } else {
            match (kind, wallet) {
                (TopUpReportKind::Captured, _) if amount_minor != t.amount_minor || currency != t.currency => {
                    Plan::Ignore(format!(
                        "captured amount differs: {amount_minor} {} reported, {} {} due",
                        currency.code(),
                        t.amount_minor,
                        t.currency.code()
                    ))
                }
                (TopUpReportKind::Captured, Some(kind)) => Plan::Apply(vec![posted(
                    credit,
                    AccountKey::platform(AccountKind::GatewayClearing, t.currency),
                    AccountKey::of(kind, t.user_id, t.currency),
                    t.amount_minor,
                    TransferCode::Credit,
                    None,
                    now,
                )]),
                (TopUpReportKind::Captured, None) => Plan::Ignore("the user has no wallet".into()),
                (TopUpReportKind::Failed, _) => Plan::Apply(Vec::new()),
            }
        };
        if let Some(ignored) = self.carry_out(plan, gateway, event_id, now, fx)? {
            return Ok(ignored);
        }
        if t.status == TopUpStatus::Pending {
            self.top_up_settled(t.user_id);
        }
        let mut t = (*t).clone();
        match kind {
            TopUpReportKind::Captured => {
                t.status = TopUpStatus::Succeeded;
                t.transfer = Some(credit);
            }
            TopUpReportKind::Failed => t.status = TopUpStatus::Failed,
        }
        t.updated_at = now;
        self.book.top_ups.insert(top_up_id, Arc::new(t));
        fx.book = true;
        Ok(Outcome::PaymentEvent { duplicate: false, ignored: None })
    }

    /// A top-up of `user` stops waiting for the gateway.
    fn top_up_settled(&mut self, user: UserId) {
        match self.book.pending_top_ups.get(&user).copied() {
            Some(n) if n > 1 => {
                self.book.pending_top_ups.insert(user, n - 1);
            }
            _ => {
                self.book.pending_top_ups.remove(&user);
            }
        }
    }

    /// [`TOP_UP_TTL_S`] after a top-up was asked for: `expired` if no capture came.
    pub(super) fn expire_top_up(&mut self, id: TopUpId, now: Timestamp, fx: &mut Effects) {
        let Some(t) = self.book.top_ups.get(&id).filter(|t| t.status == TopUpStatus::Pending) else { return };
        let mut t = (**t).clone();
        t.status = TopUpStatus::Expired;
        t.updated_at = now;
        self.top_up_settled(t.user_id);
        self.book.top_ups.insert(id, Arc::new(t));
        fx.book = true;
    }

    /// A driver paid cash debt in at an office: at most what the driver owes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cash_received(
        &mut self,
        who: Who,
        id: Option<TransferId>,
        driver_id: UserId,
        amount_minor: i64,
        currency: Currency,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        Self::require_staff(who, "records cash received")?;
        let id = id.ok_or_else(|| Error::Internal("transfer id not stamped".into()))?;
        match self.users.get(&driver_id) {
            Some(u) if u.role == Role::Driver => {}
            _ => return Err(Error::not_found("driver", driver_id)),
        }
        if !(1..=MAX_AMOUNT).contains(&amount_minor) {
            return Err(Error::InvalidParam { param: "amount_minor", message: "must be positive".into() });
        }
        let owed = self.driver_position(driver_id, currency).cash_debt_minor;
        if amount_minor > owed {
            return Err(Error::InvalidParam {
                param: "amount_minor",
                message: format!("more than the driver owes ({owed} {})", currency.code()),
            });
        }
        let a = Accounts { currency };
        let op = posted(
            id,
            a.platform(AccountKind::OfficeCash),
            a.user(AccountKind::CashInHand, driver_id),
            amount_minor,
            TransferCode::CashReceived,
            None,
            now,
        );
        self.apply_money(&[op], fx)?;
        let transfer = self.ledger.transfer(id).cloned().ok_or_else(|| Error::Internal("transfer vanished".into()))?;
        Ok(Outcome::Transfer(Box::new(transfer)))
    }
}
