//! Random sequences of trips (cash, wallet, card), wallet credits, completions,
//! cancellations, gateway webhooks (honest, duplicated, stale after later events,
//! forged), refunds (partial, over the limit), hold expiries, drivers' payouts (requested,
//! approved, rejected, sent, paid or failed by signed webhooks, duplicated), wallet
//! top-ups (captured or failed by webhook), cash debt (going online above the limit, cash
//! received at an office) and crashes (a random prefix of the log replayed through the
//! records' encoding, then on), checked after every step against a reference model that
//! books every movement by hand: the ledger balances after every step, no payout is paid
//! twice, and a failed or rejected payout returns exactly what it held.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::ledger::{AccountKey, AccountKind};
use crate::payment::PaymentEventKind;
use crate::payment::{WebhookScheme, sign_timestamped, verify_webhook};
use crate::record::{Record, replay};
use crate::trip::{GatewayAction, PaymentMethod, PaymentStatus, TripStatus};

const SECRET: &[u8] = b"whsec_model_secret_0123456789";
const COMMISSION_BPS: i64 = 1500;
const CARD_TTL_S: u32 = 2_500;
const WALLET_TTL_S: u32 = 4_000;
const PAYOUT_MIN: i64 = 500;
const DEBT_LIMIT: i64 = 1_500;

fn egp() -> crate::money::Currency {
    "EGP".parse().unwrap()
}

/// Half-up commission of the demo prices (15 %).
fn commission(x: i64) -> i64 {
    (x * COMMISSION_BPS + 5_000) / 10_000
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    Authorize(i64),
    Capture(i64),
    Void,
    Refund(i64),
}

/// What the model knows of one trip's payment.
#[derive(Debug, Clone)]
struct MTrip {
    id: TripId,
    rider: UserId,
    method: PaymentMethod,
    status: PaymentStatus,
    captured: i64,
    refunded: i64,
    pending: VecDeque<i64>,
    due: Option<Due>,
    /// The open hold: (amount, expires at).
    hold: Option<(i64, Timestamp)>,
    /// Completed, cancelled or expired: its end was booked.
    ended: bool,
    /// A finished card trip its rider switched to cash: what the card owed, and when it
    /// becomes the rider's debt unless the driver confirms the cash first.
    claimed: Option<(i64, Timestamp)>,
}

/// What the model knows of one payout.
#[derive(Debug, Clone)]
struct MPayout {
    id: crate::id::PayoutId,
    driver: UserId,
    amount: i64,
    status: crate::payout::PayoutStatus,
    sent: bool,
}

/// What the model knows of one top-up.
#[derive(Debug, Clone)]
struct MTopUp {
    id: crate::id::TopUpId,
    wallet: AccountKey,
    amount: i64,
    status: crate::payout::TopUpStatus,
    /// Expired unless captured by then.
    until: Timestamp,
}

#[derive(Debug, Clone, Default)]
struct Model {
    bal: BTreeMap<AccountKey, i64>,
    trips: Vec<MTrip>,
    payouts: Vec<MPayout>,
    top_ups: Vec<MTopUp>,
}

impl Model {
    fn mv(&mut self, from: AccountKey, to: AccountKey, amount: i64) {
        if amount > 0 {
            *self.bal.entry(from).or_default() -= amount;
            *self.bal.entry(to).or_default() += amount;
        }
    }
    fn available(&self, rider: UserId) -> i64 {
        let held: i64 = self
            .trips
            .iter()
            .filter(|t| t.rider == rider && t.method == PaymentMethod::Wallet)
            .filter_map(|t| t.hold.map(|h| h.0))
            .sum();
        self.bal.get(&user(AccountKind::RiderWallet, rider)).copied().unwrap_or(0) - held
    }
    /// What payouts of `driver` hold (requested or processing).
    fn held(&self, driver: UserId) -> i64 {
        use crate::payout::PayoutStatus::{Processing, Requested};
        self.payouts
            .iter()
            .filter(|p| p.driver == driver && matches!(p.status, Requested | Processing))
            .map(|p| p.amount)
            .sum()
    }
    /// Earnings netted with cash held, less what payouts hold: positive is withdrawable,
    /// negative is cash debt.
    fn free(&self, driver: UserId) -> i64 {
        let b = |k: AccountKind| self.bal.get(&user(k, driver)).copied().unwrap_or(0);
        b(AccountKind::DriverEarnings) + b(AccountKind::CashInHand) - self.held(driver)
    }
    fn trip(&mut self, id: TripId) -> &mut MTrip {
        self.trips.iter_mut().find(|t| t.id == id).unwrap()
    }
}

fn user(kind: AccountKind, u: UserId) -> AccountKey {
    AccountKey::of(kind, u, egp())
}
fn platform(kind: AccountKind) -> AccountKey {
    AccountKey::platform(kind, egp())
}

#[derive(Debug, Clone)]
enum Step {
    Book {
        rider: usize,
        method: u8,
    },
    Credit {
        rider: usize,
        amount: i64,
    },
    Accept {
        trip: usize,
        driver: usize,
    },
    Complete {
        trip: usize,
        metres: u32,
        secs: u32,
    },
    Cancel {
        trip: usize,
        by_rider: bool,
    },
    /// The gateway reports the result of the trip's due action (or declines it).
    Deliver {
        trip: usize,
        decline: bool,
    },
    /// A webhook sent before, again with its id (a duplicate).
    Replay {
        which: usize,
    },
    /// A webhook sent before, with a new id (stale: the payment may have moved on).
    Stale {
        which: usize,
    },
    /// A webhook whose signature does not verify (wrong secret, or a tampered body).
    Forged {
        which: usize,
        tamper: bool,
    },
    Refund {
        trip: usize,
        amount: i64,
    },
    SwitchToCash {
        trip: usize,
    },
    /// The trip's driver confirms the cash its rider said it paid.
    ConfirmCash {
        trip: usize,
    },
    Wait {
        secs: u32,
    },
    Crash {
        keep: usize,
    },
    RequestPayout {
        driver: usize,
        amount: i64,
    },
    ReviewPayout {
        which: usize,
        approve: bool,
    },
    /// The payment worker's report that the gateway accepted the payout.
    PayoutSent {
        which: usize,
    },
    /// The gateway's signed `payout.paid` / `payout.failed`.
    PayoutHook {
        which: usize,
        paid: bool,
    },
    TopUp {
        who: usize,
        amount: i64,
    },
    /// The gateway's signed `payment.captured` / `payment.failed` naming a top-up.
    TopUpHook {
        which: usize,
        fail: bool,
        off_by: i64,
    },
    /// A payout or top-up webhook sent before, again with its id.
    MoneyReplay {
        which: usize,
    },
    CashIn {
        driver: usize,
        amount: i64,
    },
    /// The driver goes offline (if it may) and online again: refused above the cash debt
    /// limit, then the debt is paid in at an office and it goes online.
    Relog {
        driver: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3, 0u8..3).prop_map(|(rider, method)| Step::Book { rider, method }),
        1 => (0usize..3, 1i64..20_000).prop_map(|(rider, amount)| Step::Credit { rider, amount }),
        3 => (0usize..5, 0usize..3).prop_map(|(trip, driver)| Step::Accept { trip, driver }),
        3 => (0usize..5, 0u32..30_000, 0u32..3_000).prop_map(|(trip, metres, secs)| Step::Complete { trip, metres, secs }),
        1 => (0usize..5, any::<bool>()).prop_map(|(trip, by_rider)| Step::Cancel { trip, by_rider }),
        5 => (0usize..5, proptest::bool::weighted(0.15)).prop_map(|(trip, decline)| Step::Deliver { trip, decline }),
        1 => (0usize..6).prop_map(|which| Step::Replay { which }),
        3 => (0usize..6).prop_map(|which| Step::Stale { which }),
        1 => (0usize..6, any::<bool>()).prop_map(|(which, tamper)| Step::Forged { which, tamper }),
        2 => (0usize..5, 1i64..8_000).prop_map(|(trip, amount)| Step::Refund { trip, amount }),
        1 => (0usize..5).prop_map(|trip| Step::SwitchToCash { trip }),
        1 => (0usize..5).prop_map(|trip| Step::ConfirmCash { trip }),
        2 => (1u32..3_000).prop_map(|secs| Step::Wait { secs }),
        1 => (0usize..64).prop_map(|keep| Step::Crash { keep }),
        2 => (0usize..3, 0i64..6_000).prop_map(|(driver, amount)| Step::RequestPayout { driver, amount }),
        2 => (0usize..6, proptest::bool::weighted(0.75)).prop_map(|(which, approve)| Step::ReviewPayout { which, approve }),
        1 => (0usize..6).prop_map(|which| Step::PayoutSent { which }),
        2 => (0usize..6, proptest::bool::weighted(0.7)).prop_map(|(which, paid)| Step::PayoutHook { which, paid }),
        2 => (0usize..6, 1i64..9_000).prop_map(|(who, amount)| Step::TopUp { who, amount }),
        1 => (0usize..6, proptest::bool::weighted(0.2), prop_oneof![9 => Just(0i64), 1 => Just(1i64)])
            .prop_map(|(which, fail, off_by)| Step::TopUpHook { which, fail, off_by }),
        1 => (0usize..6).prop_map(|which| Step::MoneyReplay { which }),
        1 => (0usize..3, 1i64..3_000).prop_map(|(driver, amount)| Step::CashIn { driver, amount }),
        1 => (0usize..3).prop_map(|driver| Step::Relog { driver }),
    ]
}

/// A webhook as the sim gateway would send it (API.md's body).
#[derive(Debug, Clone)]
struct Hook {
    id: String,
    kind: PaymentEventKind,
    trip: TripId,
    amount: i64,
}

impl Hook {
    fn body(&self) -> String {
        let ty = match self.kind {
            PaymentEventKind::Authorized => "payment.authorized",
            PaymentEventKind::Captured => "payment.captured",
            PaymentEventKind::Failed => "payment.failed",
            PaymentEventKind::Voided => "payment.voided",
            PaymentEventKind::RefundSucceeded => "refund.succeeded",
        };
        serde_json::json!({"id": self.id, "type": ty,
            "data": {"trip_id": self.trip.to_string(), "amount_minor": self.amount, "currency": "EGP"}})
        .to_string()
    }
}

/// A payout's or top-up's webhook as the sim gateway sends it (API.md v1.1).
#[derive(Debug, Clone)]
struct MoneyHook {
    id: String,
    ty: &'static str,
    payout: Option<crate::id::PayoutId>,
    top_up: Option<(crate::id::TopUpId, i64)>,
}

impl MoneyHook {
    fn body(&self) -> String {
        let data = match (self.payout, self.top_up) {
            (Some(p), _) => serde_json::json!({"payout_id": p.to_string()}),
            (_, Some((t, amount))) => {
                serde_json::json!({"top_up_id": t.to_string(), "amount_minor": amount, "currency": "EGP"})
            }
            _ => serde_json::json!({}),
        };
        serde_json::json!({"id": self.id, "type": self.ty, "data": data}).to_string()
    }
}

/// The server's side of a payout or top-up webhook: verify, then parse and submit.
fn receive_money(body: &str, signature: &str, now_s: i64) -> Option<Command> {
    use crate::payout::{PayoutReportKind, TopUpReportKind};
    verify_webhook(WebhookScheme::Timestamped, &[SECRET.to_vec()], Some(signature), body.as_bytes(), now_s).ok()?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let (ty, event_id) = (v["type"].as_str()?, v["id"].as_str()?.to_owned());
    if let Some(p) = v["data"]["payout_id"].as_str() {
        let kind = match ty {
            "payout.paid" => PayoutReportKind::Paid,
            "payout.failed" => PayoutReportKind::Failed,
            _ => return None,
        };
        let amount_minor = v["data"]["amount_minor"].as_i64();
        return Some(Command::PayoutReport {
            gateway: "sim".into(),
            event_id,
            payout_id: p.parse().ok()?,
            kind,
            amount_minor,
        });
    }
    let kind = match ty {
        "payment.captured" => TopUpReportKind::Captured,
        "payment.failed" => TopUpReportKind::Failed,
        _ => return None,
    };
    Some(Command::TopUpReport {
        gateway: "sim".into(),
        event_id,
        top_up_id: v["data"]["top_up_id"].as_str()?.parse().ok()?,
        kind,
        amount_minor: v["data"]["amount_minor"].as_i64()?,
        currency: v["data"]["currency"].as_str()?.parse().ok()?,
    })
}

/// The model's side of a payout or top-up webhook; whether it has an effect.
fn model_money_event(m: &mut Model, hook: &MoneyHook) -> bool {
    use crate::payout::{PayoutStatus, TopUpStatus};
    if let Some(id) = hook.payout {
        let Some(p) = m.payouts.iter_mut().find(|p| p.id == id) else { return false };
        if p.status != PayoutStatus::Processing {
            return false;
        }
        let (driver, amount) = (p.driver, p.amount);
        if hook.ty == "payout.paid" {
            p.status = PayoutStatus::Paid;
            m.mv(user(AccountKind::DriverEarnings, driver), platform(AccountKind::GatewayClearing), amount);
        } else {
            p.status = PayoutStatus::Failed;
        }
        return true;
    }
    let Some((id, amount)) = hook.top_up else { return false };
    let Some(t) = m.top_ups.iter_mut().find(|t| t.id == id) else { return false };
    let late_capture = t.status == TopUpStatus::Expired && hook.ty == "payment.captured";
    if t.status != TopUpStatus::Pending && !late_capture {
        return false;
    }
    if hook.ty == "payment.failed" {
        t.status = TopUpStatus::Failed;
        return true;
    }
    if amount != t.amount {
        return false;
    }
    t.status = TopUpStatus::Succeeded;
    let (wallet, amount) = (t.wallet, t.amount);
    m.mv(platform(AccountKind::GatewayClearing), wallet, amount);
    true
}

/// The `which`-th newest webhook sent (stale events are mostly recent ones).
fn recent(sent: &[Hook], which: usize) -> Option<Hook> {
    sent.len().checked_sub(1 + which).and_then(|i| sent.get(i)).cloned()
}

/// What the server does with a webhook: verify the signature over the raw body,
/// then parse it and submit the event. `None`: refused at verification.
fn receive(body: &str, signature: &str, now_s: i64) -> Option<Command> {
    verify_webhook(WebhookScheme::Timestamped, &[SECRET.to_vec()], Some(signature), body.as_bytes(), now_s).ok()?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let kind = match v["type"].as_str()? {
        "payment.authorized" => PaymentEventKind::Authorized,
        "payment.captured" => PaymentEventKind::Captured,
        "payment.failed" => PaymentEventKind::Failed,
        "payment.voided" => PaymentEventKind::Voided,
        "refund.succeeded" => PaymentEventKind::RefundSucceeded,
        _ => return None,
    };
    Some(Command::PaymentEvent {
        gateway: "sim".into(),
        event_id: v["id"].as_str()?.to_owned(),
        kind,
        trip_id: v["data"]["trip_id"].as_str()?.parse().ok()?,
        amount_minor: v["data"]["amount_minor"].as_i64()?,
        currency: v["data"]["currency"].as_str()?.parse().ok()?,
        archived: None,
    })
}

/// The model's side of a gateway event: the payment rules of DESIGN.md, written
/// out again independently. Returns whether it has an effect.
fn model_event(m: &mut Model, t: TripId, trip: &Trip, kind: PaymentEventKind, amount: i64, now: Timestamp) -> bool {
    let open = trip.status.is_open();
    let mt = m.trip(t).clone();
    let card = mt.method == PaymentMethod::Card;
    let mut out = mt.clone();
    let applied = match kind {
        PaymentEventKind::Authorized => {
            let chargeable = card && (open || matches!(mt.due, Some(Due::Capture(_))));
            if !chargeable {
                let nothing_taken = mt.captured == 0
                    && matches!(
                        mt.status,
                        PaymentStatus::Pending | PaymentStatus::Voided | PaymentStatus::Failed | PaymentStatus::Expired
                    );
                if mt.due.is_none() && nothing_taken {
                    out.due = Some(Due::Void);
                    true
                } else {
                    false
                }
            } else if mt.status == PaymentStatus::Pending
                && amount > 0
                && !matches!(mt.due, Some(Due::Authorize(a)) if a != amount)
            {
                out.status = PaymentStatus::Authorized;
                out.hold = Some((amount, now.plus_secs(CARD_TTL_S)));
                if matches!(mt.due, Some(Due::Authorize(_))) {
                    out.due = None;
                }
                true
            } else {
                false
            }
        }
        PaymentEventKind::Captured => match mt.due {
            Some(Due::Capture(d))
                if d == amount
                    && matches!(
                        mt.status,
                        PaymentStatus::Pending
                            | PaymentStatus::Authorized
                            | PaymentStatus::Failed
                            | PaymentStatus::Expired
                    ) =>
            {
                m.mv(platform(AccountKind::GatewayClearing), platform(AccountKind::Escrow), d);
                out.status = PaymentStatus::Captured;
                out.captured += d;
                out.hold = None;
                out.due = None;
                true
            }
            _ => false,
        },
        PaymentEventKind::Voided => {
            if mt.due == Some(Due::Void) {
                out.hold = None;
                if card
                    && matches!(mt.status, PaymentStatus::Pending | PaymentStatus::Authorized | PaymentStatus::Failed)
                {
                    out.status = PaymentStatus::Voided;
                }
                out.due = None;
                true
            } else {
                false
            }
        }
        PaymentEventKind::Failed => match mt.due {
            Some(Due::Refund(_)) => {
                out.pending.pop_front();
                out.due = out.pending.front().map(|a| Due::Refund(*a));
                true
            }
            Some(Due::Authorize(_) | Due::Capture(_)) | None
                if matches!(mt.status, PaymentStatus::Pending | PaymentStatus::Authorized | PaymentStatus::Failed) =>
            {
                out.status = PaymentStatus::Failed;
                if !matches!(mt.due, Some(Due::Capture(_))) {
                    out.due = None;
                }
                true
            }
            _ => false,
        },
        PaymentEventKind::RefundSucceeded => match mt.due {
            Some(Due::Refund(a)) if a == amount => {
                m.mv(platform(AccountKind::PlatformRevenue), platform(AccountKind::GatewayClearing), a);
                out.pending.pop_front();
                out.refunded += a;
                out.status = if out.refunded >= out.captured {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                };
                out.due = out.pending.front().map(|a| Due::Refund(*a));
                true
            }
            _ => false,
        },
    };
    *m.trip(t) = out;
    applied
}

/// A trip ended without a ride (cancelled, or expired with no driver), `fee` charged.
fn settle_ended(mt: &mut MTrip, fee: i64) {
    mt.ended = true;
    // Any hold is released with the trip (a card's is then voided at the gateway).
    mt.hold = None;
    let voidable = matches!(mt.status, PaymentStatus::Pending | PaymentStatus::Authorized | PaymentStatus::Failed);
    match (mt.method, fee > 0) {
        (PaymentMethod::Card, true) => mt.due = Some(Due::Capture(fee)),
        (PaymentMethod::Card, false) if mt.status == PaymentStatus::Authorized => mt.due = Some(Due::Void),
        (PaymentMethod::Wallet, true) => {
            mt.status = PaymentStatus::Captured;
            mt.captured = fee;
        }
        (method, _) => {
            if method == PaymentMethod::Card {
                mt.due = None;
            }
            if voidable {
                mt.status = PaymentStatus::Voided;
            }
        }
    }
}

fn due_of(a: Option<GatewayAction>) -> Option<Due> {
    a.map(|a| match a {
        GatewayAction::Authorize { amount_minor } => Due::Authorize(amount_minor),
        GatewayAction::Capture { amount_minor } => Due::Capture(amount_minor),
        GatewayAction::Void => Due::Void,
        GatewayAction::Refund { amount_minor, .. } => Due::Refund(amount_minor),
    })
}

/// Every check of the property, after every step.
fn check(w: &World, m: &Model) -> Result<(), TestCaseError> {
    w.state.ledger().check().map_err(TestCaseError::fail)?;
    for (key, account) in w.state.ledger().accounts() {
        prop_assert_eq!(account.balance(), m.bal.get(key).copied().unwrap_or(0), "balance of {:?}", key);
    }
    for (key, b) in &m.bal {
        prop_assert_eq!(w.state.ledger().account(key).balance(), *b, "balance of {:?}", key);
    }
    for p in &m.payouts {
        let s = w.state.payout(p.id).map(|s| (s.status, s.sent_at.is_some(), s.amount_minor));
        prop_assert_eq!(s, Some((p.status, p.sent, p.amount)), "payout {}", p.id);
        // Paid at most once, and only when paid: the hold is posted once or never.
        let hold = w.state.payout(p.id).map(|s| s.hold);
        let posts = w
            .state
            .ledger()
            .transfers()
            .filter(|x| matches!(x.state, crate::ledger::TransferState::PostedFrom(h) if Some(h) == hold))
            .count();
        prop_assert_eq!(posts, usize::from(p.status == crate::payout::PayoutStatus::Paid), "payout {} posted", p.id);
    }
    for t in &m.top_ups {
        prop_assert_eq!(w.state.top_up(t.id).map(|s| s.status), Some(t.status), "top-up {}", t.id);
    }
    for p in &m.payouts {
        // What payouts hold is exactly the pending debits of the driver's earnings: a
        // failed or rejected payout returned exactly what it held.
        let pending = w.state.ledger().account(&user(AccountKind::DriverEarnings, p.driver)).debits_pending;
        prop_assert_eq!(pending, m.held(p.driver), "held for {}", p.driver);
        let position = w.state.driver_position(p.driver, egp());
        let free = m.free(p.driver);
        prop_assert_eq!((position.withdrawable_minor, position.cash_debt_minor), (free.max(0), (-free).max(0)));
    }
    for mt in &m.trips {
        let t = w.get(mt.id);
        let p = &t.payment;
        prop_assert_eq!((p.method, p.status), (mt.method, mt.status), "trip {}", mt.id);
        prop_assert_eq!((p.captured_minor, p.refunded_minor), (mt.captured, mt.refunded), "trip {}", mt.id);
        prop_assert_eq!(due_of(p.due), mt.due, "trip {}", mt.id);
        prop_assert_eq!(p.refunds_pending.iter().map(|r| r.amount_minor).collect::<VecDeque<_>>(), mt.pending.clone());
        prop_assert_eq!(
            p.hold
                .filter(|h| w.state.ledger().is_open_pending(*h))
                .and_then(|h| w.state.ledger().transfer(h))
                .map(|h| h.amount),
            mt.hold.map(|h| h.0),
            "hold of trip {}",
            mt.id
        );
        prop_assert!(p.refunded_minor + p.pending_refunds_minor() <= p.captured_minor);
        // Never captured twice: what the gateway's clearing account paid for the trip
        // is exactly what the trip says it captured, and that is what it charged.
        if mt.method == PaymentMethod::Card {
            let cleared: i64 = w
                .state
                .ledger()
                .transfers()
                .filter(|x| x.trip_id == Some(mt.id) && x.debit == platform(AccountKind::GatewayClearing))
                .filter(|x| {
                    !matches!(
                        x.state,
                        crate::ledger::TransferState::Pending | crate::ledger::TransferState::VoidedFrom(_)
                    )
                })
                .map(|x| x.amount)
                .sum();
            prop_assert_eq!(cleared, p.captured_minor, "trip {} cleared", mt.id);
            if p.captured_minor > 0 {
                prop_assert_eq!(Some(p.captured_minor), t.fare.final_minor.or(t.fare.cancel_fee_minor));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn money_balances_against_a_model(steps in proptest::collection::vec(step(), 1..80)) {
        let rules = DispatchRules {
            offers_per_round: 3,
            stale_location_s: 10_000_000,
            card_auth_ttl_s: CARD_TTL_S,
            wallet_hold_ttl_s: WALLET_TTL_S,
            payout_min_minor: PAYOUT_MIN,
            max_cash_debt_minor: DEBT_LIMIT,
            ..rules()
        };
        let mut w = World::new(rules);
        // Surge would change the estimate between bookings; the model prices nothing.
        let riders: Vec<UserId> = (0..3).map(|_| w.rider()).collect();
        let drivers: Vec<UserId> = (0..3).map(|i| w.driver(0.2 + f64::from(i as u8) * 0.1)).collect();
        let mut m = Model::default();
        // The drivers start with some earnings, so that payouts are asked for early.
        for d in &drivers {
            let c = Command::CreditWallet { id: None, user_id: *d, amount_minor: 4_000, currency: egp(), reason: "start".into() };
            w.run(Actor::Admin, c).unwrap();
            m.mv(platform(AccountKind::Promotions), user(AccountKind::DriverEarnings, *d), 4_000);
        }
        // Model snapshots by log length, for crashes.
        let mut snapshots: Vec<(usize, Model)> = vec![(w.log.len(), m.clone())];
        let mut sent: Vec<Hook> = Vec::new();
        let mut sent_money: Vec<MoneyHook> = Vec::new();
        let mut ids = 0u32;
        for s in steps {
            let now_s = w.now.as_secs();
            match s {
                Step::Book { rider, method } => {
                    let method = [PaymentMethod::Cash, PaymentMethod::Wallet, PaymentMethod::Card][usize::from(method)];
                    let mut new = w.new_trip();
                    new.payment_method = method;
                    let r = riders[rider];
                    let available = m.available(r);
                    match w.run(Actor::User(r), Command::CreateTrip(new)) {
                        Ok(Outcome::Trip(t)) => {
                            let hold = (method == PaymentMethod::Wallet)
                                .then(|| (t.fare.estimate_minor, w.now.plus_secs(WALLET_TTL_S)));
                            if let Some((held, _)) = hold {
                                prop_assert!(available >= held, "a wallet booked beyond its balance");
                            }
                            m.trips.push(MTrip {
                                id: t.id, rider: r, method, status: PaymentStatus::Pending, captured: 0, refunded: 0,
                                pending: VecDeque::new(), due: None, hold, ended: false, claimed: None,
                            });
                        }
                        Ok(o) => prop_assert!(false, "{:?}", o),
                        Err(Error::InsufficientFunds { .. }) => prop_assert_eq!(method, PaymentMethod::Wallet),
                        Err(_) => {}
                    }
                }
                Step::Credit { rider, amount } => {
                    let c = Command::CreditWallet { id: None, user_id: riders[rider], amount_minor: amount, currency: egp(), reason: "t".into() };
                    w.run(Actor::Admin, c).unwrap();
                    m.mv(platform(AccountKind::Promotions), user(AccountKind::RiderWallet, riders[rider]), amount);
                }
                Step::Accept { trip, driver } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    if w.accept(drivers[driver], t).is_ok() {
                        let mt = m.trip(t);
                        if mt.method == PaymentMethod::Card && mt.status == PaymentStatus::Pending {
                            mt.due = Some(Due::Authorize(w.get(t).fare.estimate_minor));
                        }
                    }
                }
                Step::Complete { trip, metres, secs } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    let Some(d) = w.get(t).driver_id else { continue };
                    let _ = w.run(Actor::User(d), Command::DriverArrived { trip_id: t });
                    let code = w.get(t).pickup_code.to_string();
                    let _ = w.run(Actor::User(d), Command::StartTrip { trip_id: t, pickup_code: code });
                    w.now = w.now.plus_millis(i64::from(secs) * 1000);
                    let rider = m.trip(t).rider;
                    let available = m.available(rider);
                    let done = w.run(Actor::User(d), Command::CompleteTrip { trip_id: t, distance_m: Some(metres), dropoff: None });
                    if done.is_ok() {
                        let fare = w.get(t).fare.final_minor.unwrap();
                        let earnings = user(AccountKind::DriverEarnings, d);
                        let mt = m.trip(t).clone();
                        match mt.method {
                            PaymentMethod::Cash => m.mv(user(AccountKind::CashInHand, d), earnings, fare),
                            PaymentMethod::Wallet => {
                                // The wallet pays what it can (its hold included), the rest is debt.
                                let own = mt.hold.map_or(0, |h| h.0);
                                let paid = fare.min(available + own).max(0);
                                m.mv(user(AccountKind::RiderWallet, rider), platform(AccountKind::Escrow), paid);
                                m.mv(user(AccountKind::RiderDebt, rider), platform(AccountKind::Escrow), fare - paid);
                                m.mv(platform(AccountKind::Escrow), earnings, fare);
                            }
                            PaymentMethod::Card => m.mv(platform(AccountKind::Escrow), earnings, fare),
                        }
                        m.mv(earnings, platform(AccountKind::PlatformRevenue), commission(fare));
                        let mt = m.trip(t);
                        mt.ended = true;
                        match mt.method {
                            PaymentMethod::Card => mt.due = Some(Due::Capture(fare)),
                            _ => {
                                mt.status = PaymentStatus::Captured;
                                mt.captured = fare;
                                mt.hold = None;
                            }
                        }
                    }
                }
                Step::Cancel { trip, by_rider } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    let trip = w.get(t);
                    let actor = if by_rider { Actor::User(trip.rider_id) } else { Actor::Admin };
                    let available = m.available(trip.rider_id);
                    if w.run(actor, Command::CancelTrip { trip_id: t, code: crate::trip::CancelReason::Other, reason: "x".into() }).is_err() {
                        continue;
                    }
                    let after = w.get(t);
                    if after.status.is_open() {
                        continue; // the driver gave it back: nothing about money
                    }
                    let fee = after.fare.cancel_fee_minor.unwrap_or(0);
                    let mt = m.trip(t).clone();
                    if fee > 0 {
                        let d = after.driver_id.unwrap();
                        let earnings = user(AccountKind::DriverEarnings, d);
                        let own = mt.hold.map_or(0, |h| h.0);
                        let payer = match mt.method {
                            PaymentMethod::Wallet if available + own >= fee => user(AccountKind::RiderWallet, mt.rider),
                            PaymentMethod::Card => platform(AccountKind::Escrow),
                            _ => user(AccountKind::RiderDebt, mt.rider),
                        };
                        m.mv(payer, earnings, fee);
                        m.mv(earnings, platform(AccountKind::PlatformRevenue), commission(fee));
                    }
                    settle_ended(m.trip(t), fee);
                }
                Step::Deliver { trip, decline } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    let Some(due) = w.get(t).payment.due else { continue };
                    let kind = match (due, decline) {
                        (_, true) => PaymentEventKind::Failed,
                        (GatewayAction::Authorize { .. }, _) => PaymentEventKind::Authorized,
                        (GatewayAction::Capture { .. }, _) => PaymentEventKind::Captured,
                        (GatewayAction::Void, _) => PaymentEventKind::Voided,
                        (GatewayAction::Refund { .. }, _) => PaymentEventKind::RefundSucceeded,
                    };
                    ids += 1;
                    let amount = if decline { 0 } else { due.amount_minor() };
                    let hook = Hook { id: format!("evt_{ids}"), kind, trip: t, amount };
                    let body = hook.body();
                    let c = receive(&body, &sign_timestamped(SECRET, now_s, body.as_bytes()), now_s).unwrap();
                    let before = w.get(t);
                    let r = w.run(Actor::System, c).unwrap();
                    let applied = model_event(&mut m, t, &before, kind, amount, w.now);
                    prop_assert!(
                        matches!(&r, Outcome::PaymentEvent { duplicate: false, ignored } if ignored.is_none() == applied),
                        "{:?} answered {:?}, the model says applied: {}", hook, r, applied
                    );
                    sent.push(hook);
                }
                Step::Replay { which } => {
                    let Some(hook) = recent(&sent, which) else { continue };
                    let body = hook.body();
                    let c = receive(&body, &sign_timestamped(SECRET, now_s, body.as_bytes()), now_s).unwrap();
                    let before = w.state.clone();
                    let known = before.gateway_events.contains_key(&("sim".to_owned(), hook.id.clone()));
                    // A trip lost in a crash is unknown: refused, and nothing changes (the harness checks).
                    if let Ok(o) = w.run(Actor::System, c) {
                        if known {
                            prop_assert_eq!(o, Outcome::PaymentEvent { duplicate: true, ignored: None });
                            prop_assert_eq!(&w.state, &before, "a duplicate changed the state");
                        } else {
                            // Its first delivery was lost in a crash: it counts as new.
                            let trip = Arc::clone(before.trip(hook.trip).unwrap());
                            let applied = model_event(&mut m, hook.trip, &trip, hook.kind, hook.amount, w.now);
                            prop_assert_eq!(matches!(o, Outcome::PaymentEvent { ignored: None, .. }), applied);
                        }
                    }
                }
                Step::Stale { which } => {
                    let Some(old) = recent(&sent, which) else { continue };
                    ids += 1;
                    let hook = Hook { id: format!("evt_{ids}"), ..old };
                    let body = hook.body();
                    let c = receive(&body, &sign_timestamped(SECRET, now_s, body.as_bytes()), now_s).unwrap();
                    let Some(before) = w.state.trip(hook.trip).cloned() else { continue };
                    let o = w.run(Actor::System, c);
                    match o {
                        Ok(o) => {
                            let applied = model_event(&mut m, hook.trip, &before, hook.kind, hook.amount, w.now);
                            prop_assert_eq!(matches!(o, Outcome::PaymentEvent { duplicate: false, ignored: None }), applied, "{:?}", hook);
                            sent.push(hook);
                        }
                        Err(e) => prop_assert!(matches!(e, Error::Invalid(_)), "{e}"),
                    }
                }
                Step::Forged { which, tamper } => {
                    let Some(hook) = recent(&sent, which) else { continue };
                    ids += 1;
                    let hook = Hook { id: format!("evt_{ids}"), ..hook };
                    let body = hook.body();
                    let (signed, sent_body) = if tamper {
                        // Signed, then the amount changed on the way.
                        let forged = Hook { amount: hook.amount + 1, ..hook.clone() }.body();
                        (sign_timestamped(SECRET, now_s, body.as_bytes()), forged)
                    } else {
                        (sign_timestamped(b"not-the-secret-0123456789", now_s, body.as_bytes()), body)
                    };
                    prop_assert!(receive(&sent_body, &signed, now_s).is_none(), "a forged webhook verified");
                    // Stale (an hour old) signatures are refused too.
                    let old = sign_timestamped(SECRET, now_s - 3_600, hook.body().as_bytes());
                    prop_assert!(receive(&hook.body(), &old, now_s).is_none(), "a stale signature verified");
                }
                Step::Refund { trip, amount } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    let mt = m.trip(t).clone();
                    let left = mt.captured - mt.refunded - mt.pending.iter().sum::<i64>();
                    let card = mt.method == PaymentMethod::Card;
                    let r = w.run(Actor::Admin, Command::Refund { id: None, trip_id: t, amount_minor: amount, reason: "r".into() });
                    let busy = card && matches!(mt.due, Some(Due::Authorize(_) | Due::Capture(_) | Due::Void));
                    prop_assert_eq!(r.is_ok(), amount <= left && !busy, "{:?}", r);
                    if amount > left {
                        prop_assert!(matches!(r, Err(Error::RefundExceedsCaptured { .. })), "{:?}", r);
                    }
                    if r.is_ok() {
                        let mt = m.trip(t);
                        if card {
                            mt.pending.push_back(amount);
                            if mt.due.is_none() {
                                mt.due = Some(Due::Refund(amount));
                            }
                        } else {
                            mt.refunded += amount;
                            mt.status = if mt.refunded >= mt.captured { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
                            let rider = mt.rider;
                            m.mv(platform(AccountKind::PlatformRevenue), user(AccountKind::RiderWallet, rider), amount);
                        }
                    }
                }
                Step::SwitchToCash { trip } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    let trip = w.get(t);
                    let mt = m.trip(t).clone();
                    let r = w.run(Actor::User(mt.rider), Command::SetPaymentMethod { trip_id: t, method: PaymentMethod::Cash });
                    if mt.claimed.is_some() {
                        prop_assert!(r.is_ok(), "a claim made again answers the trip: {:?}", r);
                        continue;
                    }
                    let may = mt.method == PaymentMethod::Card
                        && matches!(mt.status, PaymentStatus::Pending | PaymentStatus::Failed | PaymentStatus::Expired)
                        && mt.captured == 0
                        && matches!(mt.due, None | Some(Due::Authorize(_) | Due::Capture(_)))
                        && (trip.status.is_open() || matches!(mt.due, Some(Due::Capture(_))));
                    prop_assert_eq!(r.is_ok(), may || mt.method == PaymentMethod::Cash, "{:?} {:?}", r, mt);
                    if r.is_ok() && mt.method == PaymentMethod::Card {
                        let prev_due = mt.due;
                        let until = w.now.plus_secs(w.state.rules().cash_confirm_ttl_s);
                        let mt = m.trip(t);
                        mt.hold = None;
                        mt.due = None;
                        if let (false, Some(Due::Capture(a))) = (trip.status.is_open(), prev_due) {
                            // After the ride: nothing is booked until the driver confirms.
                            mt.claimed = Some((a, until));
                        } else {
                            mt.method = PaymentMethod::Cash;
                            mt.status = PaymentStatus::Pending;
                        }
                    }
                }
                Step::ConfirmCash { trip } => {
                    let Some(t) = m.trips.get(trip).map(|t| t.id) else { continue };
                    let trip = w.get(t);
                    let Some(d) = trip.driver_id else { continue };
                    let r = w.run(Actor::User(d), Command::ConfirmCashReceived { trip_id: t });
                    let mt = m.trip(t);
                    match mt.claimed.take() {
                        Some((a, _)) => {
                            prop_assert!(r.is_ok(), "{:?}", r);
                            mt.method = PaymentMethod::Cash;
                            mt.status = PaymentStatus::Captured;
                            mt.captured = a;
                            m.mv(user(AccountKind::CashInHand, d), platform(AccountKind::Escrow), a);
                        }
                        None => prop_assert!(r.is_err(), "nothing to confirm: {:?}", r),
                    }
                }
                Step::Wait { secs } => {
                    w.advance(i64::from(secs));
                    // Trips that found no driver in time expired (their timeout comes
                    // long before any hold's), then holds whose time is up were released.
                    for mt in &mut m.trips {
                        if !mt.ended && w.get(mt.id).status == TripStatus::Expired {
                            settle_ended(mt, 0);
                        }
                    }
                    let now = w.now;
                    // Top-ups that waited too long for the gateway expired.
                    for t in &mut m.top_ups {
                        if t.status == crate::payout::TopUpStatus::Pending && t.until <= now {
                            t.status = crate::payout::TopUpStatus::Expired;
                        }
                    }
                    // Cash claims the drivers never confirmed became the riders' debts.
                    let mut debts = Vec::new();
                    for mt in &mut m.trips {
                        if let Some((a, until)) = mt.claimed
                            && until <= now
                        {
                            mt.claimed = None;
                            debts.push((mt.rider, a));
                        }
                    }
                    for (rider, a) in debts {
                        m.mv(user(AccountKind::RiderDebt, rider), platform(AccountKind::Escrow), a);
                    }
                    for mt in &mut m.trips {
                        if let Some((_, at)) = mt.hold
                            && at <= now
                        {
                            mt.hold = None;
                            if matches!(mt.status, PaymentStatus::Pending | PaymentStatus::Authorized) {
                                mt.status = PaymentStatus::Expired;
                            }
                        }
                    }
                }
                Step::RequestPayout { driver, amount } => {
                    let d = drivers[driver];
                    let free = m.free(d);
                    let r = w.run(Actor::User(d), Command::RequestPayout { id: None, amount_minor: amount, currency: egp() });
                    match r {
                        Ok(Outcome::Payout(p)) => {
                            prop_assert!(amount >= PAYOUT_MIN && amount <= free, "{} paid out of {}", amount, free);
                            prop_assert_eq!(p.status, crate::payout::PayoutStatus::Requested);
                            m.payouts.push(MPayout { id: p.id, driver: d, amount, status: p.status, sent: false });
                        }
                        Err(Error::InvalidParam { .. }) => prop_assert!(amount < PAYOUT_MIN),
                        Err(Error::InsufficientFunds { available, .. }) => {
                            prop_assert!(amount >= PAYOUT_MIN && amount > free);
                            prop_assert_eq!(available, free.max(0));
                        }
                        other => prop_assert!(false, "{:?}", other),
                    }
                }
                Step::ReviewPayout { which, approve } => {
                    use crate::payout::PayoutStatus;
                    let Some(p) = m.payouts.get(which).cloned() else { continue };
                    let r = w.run(Actor::Admin, Command::ReviewPayout { payout_id: p.id, approve, reason: "r".into() });
                    prop_assert_eq!(r.is_ok(), p.status == PayoutStatus::Requested, "{:?}", r);
                    if r.is_ok() {
                        m.payouts[which].status = if approve { PayoutStatus::Processing } else { PayoutStatus::Rejected };
                    } else {
                        prop_assert!(matches!(r, Err(Error::InvalidTransition { .. })), "{:?}", r);
                    }
                }
                Step::PayoutSent { which } => {
                    let Some(p) = m.payouts.get(which).cloned() else { continue };
                    ids += 1;
                    let c = Command::PayoutReport {
                        gateway: "sim".into(), event_id: format!("sent_{ids}"), payout_id: p.id,
                        kind: crate::payout::PayoutReportKind::Sent, amount_minor: None,
                    };
                    let r = w.run(Actor::System, c).unwrap();
                    let applies = p.status == crate::payout::PayoutStatus::Processing && !p.sent;
                    prop_assert!(
                        matches!(&r, Outcome::PaymentEvent { duplicate: false, ignored } if ignored.is_none() == applies),
                        "{:?}", r
                    );
                    if applies {
                        m.payouts[which].sent = true;
                    }
                }
                Step::PayoutHook { which, paid } => {
                    let Some(p) = m.payouts.get(which).cloned() else { continue };
                    ids += 1;
                    let ty = if paid { "payout.paid" } else { "payout.failed" };
                    let hook = MoneyHook { id: format!("evt_{ids}"), ty, payout: Some(p.id), top_up: None };
                    let body = hook.body();
                    let c = receive_money(&body, &sign_timestamped(SECRET, now_s, body.as_bytes()), now_s).unwrap();
                    let r = w.run(Actor::System, c).unwrap();
                    let applied = model_money_event(&mut m, &hook);
                    prop_assert!(
                        matches!(&r, Outcome::PaymentEvent { duplicate: false, ignored } if ignored.is_none() == applied),
                        "{:?} answered {:?}, the model says applied: {}", hook, r, applied
                    );
                    sent_money.push(hook);
                }
                Step::TopUp { who, amount } => {
                    let (u, kind) = if who < 3 {
                        (riders[who], AccountKind::RiderWallet)
                    } else {
                        (drivers[who - 3], AccountKind::DriverEarnings)
                    };
                    let waiting = m.top_ups.iter().filter(|t| t.wallet == user(kind, u) && t.status == crate::payout::TopUpStatus::Pending).count();
                    match w.run(Actor::User(u), Command::CreateTopUp { id: None, amount_minor: amount, currency: egp() }) {
                        Ok(Outcome::TopUp(t)) => {
                            prop_assert!(waiting < usize::from(crate::payout::MAX_PENDING_TOP_UPS));
                            let until = w.now.plus_secs(crate::payout::TOP_UP_TTL_S);
                            m.top_ups.push(MTopUp { id: t.id, wallet: user(kind, u), amount, status: t.status, until });
                        }
                        Err(Error::Invalid(_)) => prop_assert_eq!(waiting, usize::from(crate::payout::MAX_PENDING_TOP_UPS)),
                        other => prop_assert!(false, "{:?}", other),
                    }
                }
                Step::TopUpHook { which, fail, off_by } => {
                    let Some(t) = m.top_ups.get(which).cloned() else { continue };
                    ids += 1;
                    let ty = if fail { "payment.failed" } else { "payment.captured" };
                    let hook = MoneyHook { id: format!("evt_{ids}"), ty, payout: None, top_up: Some((t.id, t.amount + off_by)) };
                    let body = hook.body();
                    let c = receive_money(&body, &sign_timestamped(SECRET, now_s, body.as_bytes()), now_s).unwrap();
                    let r = w.run(Actor::System, c).unwrap();
                    let applied = model_money_event(&mut m, &hook);
                    prop_assert!(
                        matches!(&r, Outcome::PaymentEvent { duplicate: false, ignored } if ignored.is_none() == applied),
                        "{:?} answered {:?}, the model says applied: {}", hook, r, applied
                    );
                    sent_money.push(hook);
                }
                Step::MoneyReplay { which } => {
                    let Some(hook) = sent_money.len().checked_sub(1 + which).and_then(|i| sent_money.get(i)).cloned() else { continue };
                    let body = hook.body();
                    let c = receive_money(&body, &sign_timestamped(SECRET, now_s, body.as_bytes()), now_s).unwrap();
                    let before = w.state.clone();
                    let known = before.gateway_events.contains_key(&("sim".to_owned(), hook.id.clone()));
                    match w.run(Actor::System, c) {
                        Ok(o) if known => {
                            prop_assert_eq!(o, Outcome::PaymentEvent { duplicate: true, ignored: None });
                            prop_assert_eq!(&w.state, &before, "a duplicate changed the state");
                        }
                        Ok(o) => {
                            // Its first delivery was lost in a crash: it counts as new.
                            let applied = model_money_event(&mut m, &hook);
                            prop_assert_eq!(matches!(o, Outcome::PaymentEvent { ignored: None, .. }), applied);
                        }
                        // A payout or top-up lost in a crash is unknown: refused, nothing changes.
                        Err(e) => prop_assert!(matches!(e, Error::NotFound { .. }), "{e}"),
                    }
                }
                Step::CashIn { driver, amount } => {
                    let d = drivers[driver];
                    let owed = (-m.free(d)).max(0);
                    let c = Command::CashReceived { id: None, driver_id: d, amount_minor: amount, currency: egp(), reason: "office".into() };
                    let r = w.run(Actor::Admin, c);
                    prop_assert_eq!(r.is_ok(), amount <= owed, "{} paid in against {}: {:?}", amount, owed, r);
                    if r.is_ok() {
                        m.mv(platform(AccountKind::OfficeCash), user(AccountKind::CashInHand, d), amount);
                    }
                }
                Step::Relog { driver } => {
                    let d = drivers[driver];
                    let at = w.state.driver(d).and_then(|x| x.fix).map(|f| f.point);
                    if w.run(Actor::User(d), Command::SetDriverStatus { online: false, location: None }).is_err() {
                        continue; // on a trip
                    }
                    let owed = (-m.free(d)).max(0);
                    let online = Command::SetDriverStatus { online: true, location: at };
                    let r = w.run(Actor::User(d), online.clone());
                    prop_assert_eq!(r.is_ok(), owed <= DEBT_LIMIT, "{:?} owing {}", r, owed);
                    if r.is_err() {
                        prop_assert!(matches!(r, Err(Error::CashDebtLimit { .. })), "{:?}", r);
                        let c = Command::CashReceived { id: None, driver_id: d, amount_minor: owed, currency: egp(), reason: "office".into() };
                        w.run(Actor::Admin, c).unwrap();
                        m.mv(platform(AccountKind::OfficeCash), user(AccountKind::CashInHand, d), owed);
                        w.run(Actor::User(d), online).unwrap();
                    }
                }
                Step::Crash { keep } => {
                    // The process dies; what the log holds is replayed through the
                    // records' encoding, from a random earlier point.
                    let (len, model) = snapshots[keep % snapshots.len()].clone();
                    let records: Vec<Record> = w.log[..len].iter().map(|r| Record::decode(&r.encode().unwrap()).unwrap()).collect();
                    let mut state = w.initial.clone();
                    replay(&mut state, &records).unwrap();
                    w.state = state;
                    w.log.truncate(len);
                    m = model;
                    snapshots.retain(|(l, _)| *l <= len);
                }
            }
            check(&w, &m)?;
            if snapshots.last().is_none_or(|(l, _)| *l != w.log.len()) {
                snapshots.push((w.log.len(), m.clone()));
            }
        }
        w.finish();
    }
}
