//! Payment gateways, the worker that carries out what card trips owe them, and the
//! engine-side reconciliation. The rules that need no engine (webhook signatures, the
//! gateway events, idempotency keys, reconciliation as a pure function) are the
//! domain's, re-exported here: `dispatch_domain::payment`.
//!
//! Owns:
//! - [`Gateway`], the seam to a card processor (authorise, capture, void, refund, and
//!   pay a driver out: [`Gateway::payout`], whose outcome comes later by webhook), and
//!   [`SimGateway`], a deterministic in-process one with injectable failures and its own
//!   settlement report, for development and tests;
//! - [`reconcile_report`]: the ledger's card payments (captured − refunded, and the
//!   payment status) against a gateway's settlement CSV — the one function behind
//!   `dispatchd reconcile` and `POST /v1/admin/reconcile`;
//! - [`PaymentWorker`]: a thread that watches the engine for trips whose
//!   `payment.due` is set, calls the gateway, and reports the result as a
//!   `PaymentEvent` command — retried with exponential backoff while the gateway is
//!   unavailable, and after [`WorkerConfig::max_attempts`] failures recorded as a dead
//!   letter on the trip (`Command::RecordDeadLetter`: durable, listed to operators, the
//!   rider is offered cash, and the worker does not start it over after a restart);
//!   it also sends approved payouts (`processing`, not yet accepted) through
//!   [`Gateway::payout`] and reports the gateway's acceptance (`PayoutReport::Sent`) or
//!   decline (`Failed`: the hold returned).
//!
//! Guarantees:
//! - nothing is charged twice: every call carries an idempotency key derived from the
//!   trip and the action (one per refund; gateways deduplicate on it), and every result
//!   is reported with an event id derived the same way (the engine applies an event id
//!   once, and a second capture report finds no capture due);
//! - a decline is the gateway's final answer: reported once (`Failed`), never retried;
//! - the worker never blocks the engine's writer: it reads the view and submits
//!   commands like any client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use dispatch_domain::payment::*;

use crate::command::{Actor, Command};
use crate::engine::Engine;
use crate::history::{TripCursor, TripsOf};
use crate::id::{PayoutId, TripId};
use crate::money::Currency;
use crate::payout::{PayoutReportKind, PayoutStatus, TopUpStatus};
use crate::trip::{DeadLetter, GatewayAction, PaymentMethod, PaymentStatus};
use crate::view::View;

// ----- gateways ------------------------------------------------------------------------

/// What a gateway call asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCall {
    /// The trip.
    pub trip_id: TripId,
    /// What to do.
    pub action: GatewayAction,
    /// The trip's currency.
    pub currency: Currency,
    /// Sent to the gateway, which must not act twice on one key.
    pub idempotency_key: String,
    /// The gateway's own reference for the trip's payment, if it gave one before (the
    /// engine keeps it: `TripPayment::gateway_ref`; Stripe's PaymentIntent id).
    pub reference: Option<String>,
}

/// Why a gateway call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Down, slow, or answered garbage: try again later.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway said no (card declined): do not retry.
    #[error("declined: {0}")]
    Declined(String),
}

/// A payout call: pay a driver's held earnings out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutCall {
    /// The payout (the gateway's reference: its webhooks name it as `payout_id`).
    pub payout_id: PayoutId,
    /// Whose.
    pub driver_id: crate::UserId,
    /// Minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
    /// Sent to the gateway, which must not pay twice on one key.
    pub idempotency_key: String,
}

/// A card processor.
pub trait Gateway: Send + Sync {
    /// The gateway's name in events (`sim`, …).
    fn name(&self) -> &str;
    /// Carries out `call`; `Ok` is the gateway's confirmation, with the gateway's
    /// reference for the payment when it made one that later calls must name (the
    /// worker records it on the trip before it reports the result).
    fn execute(&self, call: &GatewayCall) -> Result<Option<String>, GatewayError>;
    /// Sends a payout. `Ok` means the gateway accepted it: whether it was paid comes
    /// later, by its signed webhook (`payout.paid` / `payout.failed`). A gateway that
    /// cannot pay out declines (the payout fails and its hold is returned).
    fn payout(&self, call: &PayoutCall) -> Result<(), GatewayError> {
        let _ = call;
        Err(GatewayError::Declined(format!("the {} gateway does not pay out", self.name())))
    }
}

/// The built-in simulated gateway: succeeds unless told to fail, remembers every
/// idempotency key it acted on (so a retried call is not a second charge) and what it
/// captured, for reconciliation tests.
#[derive(Debug, Default)]
pub struct SimGateway {
    inner: Mutex<SimInner>,
}

#[derive(Debug, Default)]
struct SimInner {
    /// Calls left to fail as unavailable.
    fail_next: u32,
    /// Fail every call while set.
    down: bool,
    /// Decline these trips.
    declines: Vec<TripId>,
    /// Keys acted on, in order.
    done: Vec<String>,
    /// Captured per trip.
    captured: BTreeMap<TripId, i64>,
    /// Refunded per trip.
    refunded: BTreeMap<TripId, i64>,
    /// The last status of each trip's payment, as the gateway sees it.
    status: BTreeMap<TripId, PaymentStatus>,
    /// Every call, including refused ones.
    calls: u64,
    /// Payouts accepted, by payout (each idempotency key once).
    payouts: BTreeMap<PayoutId, (i64, Currency)>,
}

impl SimGateway {
    /// A gateway that works.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` calls fail as unavailable.
    pub fn fail_next(&self, n: u32) {
        self.inner.lock().fail_next = n;
    }

    /// Every call fails until `set_down(false)`.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().down = down;
    }

    /// Calls about `trip` are declined.
    pub fn decline(&self, trip: TripId) {
        self.inner.lock().declines.push(trip);
    }

    /// What was captured per trip (each idempotency key counted once).
    pub fn captured(&self) -> BTreeMap<TripId, i64> {
        self.inner.lock().captured.clone()
    }

    /// What was refunded per trip.
    pub fn refunded(&self) -> BTreeMap<TripId, i64> {
        self.inner.lock().refunded.clone()
    }

    /// The payouts accepted so far (each once, however often it was sent).
    pub fn payouts(&self) -> BTreeMap<PayoutId, (i64, Currency)> {
        self.inner.lock().payouts.clone()
    }

    /// Calls received, successful or not.
    pub fn calls(&self) -> u64 {
        self.inner.lock().calls
    }

    /// The gateway's settlement report in the CSV format [`parse_settlement_all`] reads:
    /// a capture line and a (negative) refund line per trip, each with the payment's
    /// status as the gateway sees it (trips only authorised or voided get one line of 0),
    /// and a line per payout it accepted (the sim pays them all).
    pub fn settlement_csv(&self, currency: Currency) -> String {
        let g = self.inner.lock();
        let mut out = String::from(
            "trip_id,amount_minor,currency,status
",
        );
        for (trip, status) in &g.status {
            let captured = g.captured.get(trip).copied().unwrap_or(0);
            out.push_str(&format!(
                "{trip},{captured},{},{}
",
                currency.code(),
                status.as_str()
            ));
            if let Some(r) = g.refunded.get(trip) {
                out.push_str(&format!(
                    "{trip},-{r},{},{}
",
                    currency.code(),
                    status.as_str()
                ));
            }
        }
        // The sim pays every payout it accepted.
        for (payout, (amount, currency)) in &g.payouts {
            out.push_str(&format!("{payout},{amount},{},paid\n", currency.code()));
        }
        out
    }
}

impl SimInner {
    /// Counts a call and fails it when the gateway is down or told to fail it.
    fn admit(&mut self) -> Result<(), GatewayError> {
        self.calls += 1;
        if self.down {
            return Err(GatewayError::Unavailable("sim gateway is down".into()));
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(GatewayError::Unavailable("sim gateway failed this call".into()));
        }
        Ok(())
    }
}

impl Gateway for SimGateway {
    fn name(&self) -> &str {
        "sim"
    }

    fn execute(&self, call: &GatewayCall) -> Result<Option<String>, GatewayError> {
        let mut g = self.inner.lock();
        g.admit()?;
        if g.declines.contains(&call.trip_id) {
            return Err(GatewayError::Declined("card declined".into()));
        }
        if g.done.contains(&call.idempotency_key) {
            return Ok(None); // already done: the same answer, no second effect
        }
        g.done.push(call.idempotency_key.clone());
        let status = match call.action {
            GatewayAction::Authorize { .. } => PaymentStatus::Authorized,
            GatewayAction::Capture { amount_minor } => {
                *g.captured.entry(call.trip_id).or_default() += amount_minor;
                PaymentStatus::Captured
            }
            GatewayAction::Void => PaymentStatus::Voided,
            GatewayAction::Refund { amount_minor, .. } => {
                *g.refunded.entry(call.trip_id).or_default() += amount_minor;
                let captured = g.captured.get(&call.trip_id).copied().unwrap_or(0);
                if g.refunded[&call.trip_id] >= captured {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                }
            }
        };
        g.status.insert(call.trip_id, status);
        Ok(None)
    }

    /// Accepts the payout (it reports the outcome later, by a signed webhook).
    fn payout(&self, call: &PayoutCall) -> Result<(), GatewayError> {
        let mut g = self.inner.lock();
        g.admit()?;
        if g.done.contains(&call.idempotency_key) {
            return Ok(());
        }
        g.done.push(call.idempotency_key.clone());
        g.payouts.insert(call.payout_id, (call.amount_minor, call.currency));
        Ok(())
    }
}

// ----- the worker ------------------------------------------------------------------------

/// How the payment worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// How often it looks for due payments.
    pub interval: Duration,
    /// The first retry waits this long; each next one twice as long.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub backoff_max: Duration,
    /// Failures before a payment goes to the dead-letter list.
    pub max_attempts: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            interval: Duration::from_millis(200),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_attempts: 10,
        }
    }
}

#[derive(Debug)]
struct Retry {
    attempts: u32,
    next: Instant,
}

/// Carries out card trips' `payment.due` through a [`Gateway`].
pub struct PaymentWorker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    engine: Arc<Engine>,
}

/// The payments given up on, newest first (durable: recorded on their trips).
pub fn dead_letters(view: &View) -> Vec<(TripId, DeadLetter)> {
    let mut out: Vec<(TripId, DeadLetter)> =
        view.trips().filter_map(|t| t.payment.dead_letter.clone().map(|d| (t.id, d))).collect();
    out.sort_by_key(|(id, d)| std::cmp::Reverse((d.at, *id)));
    out
}

impl PaymentWorker {
    /// Starts the worker on `engine` with `gateway`.
    pub fn start(engine: Arc<Engine>, gateway: Arc<dyn Gateway>, config: WorkerConfig) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, e) = (Arc::clone(&stop), Arc::clone(&engine));
        let handle = std::thread::Builder::new()
            .name("dispatch-payments".into())
            .spawn(move || run(&e, gateway.as_ref(), config, &s))?;
        Ok(PaymentWorker { stop, handle: Some(handle), engine })
    }

    /// Payments given up on so far (read from the engine: they survive restarts).
    pub fn dead_letters(&self) -> Vec<(TripId, DeadLetter)> {
        self.engine.read_snapshot(dead_letters)
    }

    /// Stops the worker (after the call in progress).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for PaymentWorker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One pass: every due action not given up on, called unless backing off.
fn run(engine: &Engine, gateway: &dyn Gateway, config: WorkerConfig, stop: &AtomicBool) {
    let mut retries: HashMap<String, Retry> = HashMap::new();
    let mut payout_retries: HashMap<String, Retry> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let due: Vec<(TripId, GatewayAction, Currency, Option<String>)> = engine.read_snapshot(|v| {
            v.trips()
                .filter_map(|t| {
                    let due = t.payment.due?;
                    // A dead letter is durable: after a restart the worker does not start over.
                    let given_up = t.payment.dead_letter.as_ref().is_some_and(|d| d.action == due);
                    // Only this gateway's trips: another's events would not move their money.
                    let other = t.payment.gateway.as_deref().is_some_and(|g| g != gateway.name());
                    (!given_up && !other).then(|| (t.id, due, t.fare.currency, t.payment.gateway_ref.clone()))
                })
                .collect()
        });
        let now = Instant::now();
        retries.retain(|key, _| due.iter().any(|(t, a, _, _)| idempotency_key(*t, a) == *key));
        for (trip_id, action, currency, reference) in due {
            let key = idempotency_key(trip_id, &action);
            let retry = retries.entry(key.clone()).or_insert(Retry { attempts: 0, next: now });
            if retry.attempts >= config.max_attempts || retry.next > now {
                continue;
            }
            let call = GatewayCall { trip_id, action, currency, idempotency_key: key.clone(), reference };
            let kind = match action {
                GatewayAction::Authorize { .. } => PaymentEventKind::Authorized,
                GatewayAction::Capture { .. } => PaymentEventKind::Captured,
                GatewayAction::Void => PaymentEventKind::Voided,
                GatewayAction::Refund { .. } => PaymentEventKind::RefundSucceeded,
            };
            let report = |kind, event_id: String| Command::PaymentEvent {
                gateway: gateway.name().to_owned(),
                event_id,
                kind,
                trip_id,
                amount_minor: action.amount_minor(),
                currency,
                archived: None,
            };
            let result = gateway.execute(&call).and_then(|made| {
                // The reference is recorded before the result is reported: a call retried
                // after a crash between the two finds the same one (same idempotency key).
                match made.filter(|r| call.reference.as_ref() != Some(r)) {
                    Some(reference) => {
                        let record =
                            Command::RecordGatewayRef { trip_id, gateway: gateway.name().to_owned(), reference };
                        engine.submit(Actor::System, record).map(|_| ()).map_err(|e| {
                            GatewayError::Unavailable(format!("cannot record the gateway's reference: {e}"))
                        })
                    }
                    None => Ok(()),
                }
            });
            match result {
                Ok(()) => {
                    // Refusals (the trip moved on, a duplicate) need nothing more from the worker.
                    let _ = engine.submit(Actor::System, report(kind, format!("{}-{key}", gateway.name())));
                    retries.remove(&key);
                }
                Err(GatewayError::Declined(_)) => {
                    // The gateway's final answer: reported once (the payment fails, or a
                    // refund is released); not retried.
                    retry.attempts = config.max_attempts;
                    let id = format!("{}-{key}-declined", gateway.name());
                    let _ = engine.submit(Actor::System, report(PaymentEventKind::Failed, id));
                }
                Err(GatewayError::Unavailable(error)) => {
                    retry.attempts += 1;
                    let factor = 2u32.saturating_pow(retry.attempts.saturating_sub(1).min(16));
                    retry.next = now + config.backoff.saturating_mul(factor).min(config.backoff_max);
                    if retry.attempts >= config.max_attempts {
                        let dead = Command::RecordDeadLetter { trip_id, action, error, attempts: retry.attempts };
                        let _ = engine.submit(Actor::System, dead);
                    }
                }
            }
        }
        send_payouts(engine, gateway, config, &mut payout_retries);
        std::thread::sleep(config.interval);
    }
}

/// Sends the approved payouts the gateway has not accepted yet (`processing`, not sent),
/// each reported as a `PayoutReport`: `Sent` when accepted, `Failed` when declined (the
/// hold is returned); retried with backoff while the gateway is unavailable, without end
/// (no dead letter: a payout that may have reached the gateway is never failed here).
fn send_payouts(engine: &Engine, gateway: &dyn Gateway, config: WorkerConfig, retries: &mut HashMap<String, Retry>) {
    let due: Vec<PayoutCall> = engine.read_snapshot(|v| {
        let book = v.book();
        book.unsent
            .iter()
            .filter_map(|id| book.payouts.get(id))
            .filter(|p| p.status == PayoutStatus::Processing && p.sent_at.is_none() && p.gateway == gateway.name())
            .map(|p| PayoutCall {
                payout_id: p.id,
                driver_id: p.driver_id,
                amount_minor: p.amount_minor,
                currency: p.currency,
                idempotency_key: format!("{}-payout", p.id),
            })
            .collect()
    });
    let now = Instant::now();
    retries.retain(|key, _| due.iter().any(|c| c.idempotency_key == *key));
    for call in due {
        let retry = retries.entry(call.idempotency_key.clone()).or_insert(Retry { attempts: 0, next: now });
        // A payout is never given up on while the gateway is unavailable: a call that
        // timed out may have reached it, so failing the payout (and returning the hold)
        // could pay the driver twice. It is retried at most every `backoff_max`.
        if retry.next > now {
            continue;
        }
        let report = |kind, event_id: String| Command::PayoutReport {
            gateway: gateway.name().to_owned(),
            event_id,
            payout_id: call.payout_id,
            kind,
            amount_minor: None,
        };
        match gateway.payout(&call) {
            Ok(()) => {
                let id = format!("{}-{}-sent", gateway.name(), call.idempotency_key);
                let _ = engine.submit(Actor::System, report(PayoutReportKind::Sent, id));
                retries.remove(&call.idempotency_key);
            }
            Err(GatewayError::Declined(_)) => {
                // The gateway's final answer: the payout fails (its hold returned) and
                // leaves the list of those to send; asked again only if that report is lost.
                retry.next = now + config.backoff_max;
                let id = format!("{}-{}-declined", gateway.name(), call.idempotency_key);
                let _ = engine.submit(Actor::System, report(PayoutReportKind::Failed, id));
            }
            Err(GatewayError::Unavailable(_)) => {
                retry.attempts += 1;
                let factor = 2u32.saturating_pow(retry.attempts.saturating_sub(1).min(16));
                retry.next = now + config.backoff.saturating_mul(factor).min(config.backoff_max);
            }
        }
    }
}

/// Why a reconciliation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReconcileError {
    /// The report does not parse (the message names the line).
    #[error("{0}")]
    Settlement(String),
    /// The engine could not read its trips.
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// Reconciles the settlement report `csv` against every card trip the engine knows,
/// hot and archived: the one function behind `dispatchd reconcile` and
/// `POST /v1/admin/reconcile`.
pub fn reconcile_report(engine: &Engine, csv: &str) -> Result<Reconciliation, ReconcileError> {
    let (rows, money_rows) = parse_settlement_all(csv).map_err(ReconcileError::Settlement)?;
    let mut trips = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine.trips(TripsOf::All, cursor, 1000, true, |t| t.payment.method == PaymentMethod::Card)?;
        let Some(last) = page.last() else { break };
        cursor = Some(TripCursor::after(last));
        trips.extend(page);
    }
    let mut report = reconcile(trips.iter().map(|t| &**t), &rows);
    // Payouts (what was paid out) and top-ups (what was credited), from the engine's book.
    let book = engine.read_snapshot(|v| v.book().clone());
    let payouts = book.payouts.values().map(|p| {
        let paid = if p.status == PayoutStatus::Paid { p.amount_minor } else { 0 };
        (Settled::Payout(p.id), paid, p.currency)
    });
    let top_ups = book.top_ups.values().map(|t| {
        let credited = if t.status == TopUpStatus::Succeeded { t.amount_minor } else { 0 };
        (Settled::TopUp(t.id), credited, t.currency)
    });
    report.money = book.payouts.len() + book.top_ups.len();
    report.rows += money_rows.len();
    let (found, matched) = reconcile_money(payouts.chain(top_ups), &money_rows);
    report.money_mismatches = found;
    report.matched += matched;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sim_gateway_acts_once_per_key() {
        let g = SimGateway::new();
        let trip = TripId::from_raw(7).unwrap();
        let call = GatewayCall {
            trip_id: trip,
            action: GatewayAction::Capture { amount_minor: 500 },
            currency: "EGP".parse().unwrap(),
            idempotency_key: "k".into(),
            reference: None,
        };
        g.fail_next(1);
        assert!(matches!(g.execute(&call), Err(GatewayError::Unavailable(_))));
        g.execute(&call).unwrap();
        g.execute(&call).unwrap();
        assert_eq!(g.captured().get(&trip), Some(&500));
        g.decline(trip);
        let other = GatewayCall { idempotency_key: "k2".into(), ..call };
        assert!(matches!(g.execute(&other), Err(GatewayError::Declined(_))));
    }
}
