//! Payment gateways: the trait, the built-in simulated gateway, webhook signatures, the
//! worker that carries out what card trips owe the gateway, and reconciliation.
//!
//! Owns:
//! - [`Gateway`], the seam to a card processor (authorise, capture, void, refund), and
//!   [`SimGateway`], a deterministic in-process one with injectable failures and its own
//!   settlement report, for development and tests;
//! - [`verify_webhook`]: the signature schemes of the supported gateways, each an HMAC
//!   over the raw body compared in constant time (`ring::hmac::verify`), with several
//!   secrets accepted at once (rotation);
//! - [`reconcile_report`] / [`reconcile`]: the ledger's card payments (captured −
//!   refunded, and the payment status) against a gateway's settlement CSV — the one
//!   function behind `dispatchd reconcile` and `POST /v1/admin/reconcile`;
//! - [`PaymentWorker`]: a thread that watches the engine for trips whose
//!   `payment.due` is set, calls the gateway, and reports the result as a
//!   `PaymentEvent` command — retried with exponential backoff while the gateway is
//!   unavailable, and after [`WorkerConfig::max_attempts`] failures recorded as a dead
//!   letter on the trip (`Command::RecordDeadLetter`: durable, listed to operators, the
//!   rider is offered cash, and the worker does not start it over after a restart).
//!
//! Guarantees:
//! - nothing is charged twice: every call carries an idempotency key derived from the
//!   trip and the action (one per refund; gateways deduplicate on it), and every result
//!   is reported with an event id derived the same way (the engine applies an event id
//!   once, and a second capture report finds no capture due);
//! - a forged, stale or unsigned webhook is refused before its body is looked at;
//! - a decline is the gateway's final answer: reported once (`Failed`), never retried;
//! - the worker never blocks the engine's writer: it reads the view and submits
//!   commands like any client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ring::hmac;

use crate::command::{Actor, Command};
use crate::engine::Engine;
use crate::id::TripId;
use crate::money::Currency;
use crate::state::PaymentEventKind;
use crate::trip::{DeadLetter, GatewayAction, PaymentMethod, PaymentStatus};
use crate::view::View;

// ----- webhooks ----------------------------------------------------------------------

/// How a gateway signs its webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookScheme {
    /// The built-in `sim` gateway (and Stripe's scheme): header
    /// `Dispatch-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, several
    /// `v1=` allowed, refused when `|now − t| > 300 s`.
    Timestamped,
    /// Paystack's: hex HMAC-SHA512 of the raw body (`x-paystack-signature`).
    HexSha512,
    /// Razorpay's: hex HMAC-SHA256 of the raw body (`X-Razorpay-Signature`).
    HexSha256,
}

/// How far a timestamped signature may be from now.
pub const WEBHOOK_TOLERANCE_S: i64 = 300;

/// Why a webhook was refused (HTTP `400 invalid_signature`; nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature header.
    #[error("missing signature")]
    Missing,
    /// The header does not parse.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is too far from now.
    #[error("stale signature")]
    Stale,
    /// No secret produces this signature.
    #[error("signature does not match")]
    Mismatch,
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok())).collect()
}

/// Hex of `bytes`, lowercase.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `signature` (the header's value, `None` when absent) over `body` under any of
/// `secrets`, at `now_s` (Unix seconds).
pub fn verify_webhook(
    scheme: WebhookScheme,
    secrets: &[Vec<u8>],
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), WebhookError> {
    let signature = signature.map(str::trim).filter(|s| !s.is_empty()).ok_or(WebhookError::Missing)?;
    match scheme {
        WebhookScheme::HexSha256 | WebhookScheme::HexSha512 => {
            let tag = hex_decode(signature).ok_or(WebhookError::Malformed)?;
            let alg = if scheme == WebhookScheme::HexSha256 { hmac::HMAC_SHA256 } else { hmac::HMAC_SHA512 };
            let ok = secrets.iter().any(|s| hmac::verify(&hmac::Key::new(alg, s), body, &tag).is_ok());
            if ok { Ok(()) } else { Err(WebhookError::Mismatch) }
        }
        WebhookScheme::Timestamped => {
            let mut t = None;
            let mut tags = Vec::new();
            for part in signature.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| WebhookError::Malformed)?),
                    Some(("v1", v)) => tags.push(hex_decode(v).ok_or(WebhookError::Malformed)?),
                    Some(_) => {} // other schemes' entries (v0, …) are ignored, as Stripe does
                    None => return Err(WebhookError::Malformed),
                }
            }
            let t = t.ok_or(WebhookError::Malformed)?;
            if tags.is_empty() {
                return Err(WebhookError::Malformed);
            }
            if (now_s - t).abs() > WEBHOOK_TOLERANCE_S {
                return Err(WebhookError::Stale);
            }
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(body);
            let ok = secrets.iter().any(|s| {
                let key = hmac::Key::new(hmac::HMAC_SHA256, s);
                tags.iter().any(|tag| hmac::verify(&key, &signed, tag).is_ok())
            });
            if ok { Ok(()) } else { Err(WebhookError::Mismatch) }
        }
    }
}

/// The `Dispatch-Signature` header value for `body` at `t` under `secret` (what the `sim`
/// gateway sends; tests and the load generator sign with it).
pub fn sign_timestamped(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &signed);
    format!("t={t},v1={}", hex_encode(tag.as_ref()))
}

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

/// A card processor.
pub trait Gateway: Send + Sync {
    /// The gateway's name in events (`sim`, …).
    fn name(&self) -> &str;
    /// Carries out `call`; `Ok` is the gateway's confirmation.
    fn execute(&self, call: &GatewayCall) -> Result<(), GatewayError>;
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

    /// Calls received, successful or not.
    pub fn calls(&self) -> u64 {
        self.inner.lock().calls
    }

    /// The gateway's settlement report in the CSV format [`parse_settlement`] reads:
    /// a capture line and a (negative) refund line per trip, each with the payment's
    /// status as the gateway sees it. Trips only authorised or voided get one line of 0.
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
        out
    }
}

impl Gateway for SimGateway {
    fn name(&self) -> &str {
        "sim"
    }

    fn execute(&self, call: &GatewayCall) -> Result<(), GatewayError> {
        let mut g = self.inner.lock();
        g.calls += 1;
        if g.down {
            return Err(GatewayError::Unavailable("sim gateway is down".into()));
        }
        if g.fail_next > 0 {
            g.fail_next -= 1;
            return Err(GatewayError::Unavailable("sim gateway failed this call".into()));
        }
        if g.declines.contains(&call.trip_id) {
            return Err(GatewayError::Declined("card declined".into()));
        }
        if g.done.contains(&call.idempotency_key) {
            return Ok(()); // already done: the same answer, no second effect
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

/// The idempotency key of a gateway call: one per trip and action (one per refund).
pub fn idempotency_key(trip_id: TripId, action: &GatewayAction) -> String {
    match action {
        GatewayAction::Refund { transfer, .. } => format!("{trip_id}-refund-{transfer}"),
        other => format!("{trip_id}-{}", other.name()),
    }
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
        self.engine.read(dead_letters)
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
    while !stop.load(Ordering::Relaxed) {
        let due: Vec<(TripId, GatewayAction, Currency)> = engine.read(|v| {
            v.trips()
                .filter_map(|t| {
                    let due = t.payment.due?;
                    // A dead letter is durable: after a restart the worker does not start over.
                    let given_up = t.payment.dead_letter.as_ref().is_some_and(|d| d.action == due);
                    (!given_up).then_some((t.id, due, t.fare.currency))
                })
                .collect()
        });
        let now = Instant::now();
        retries.retain(|key, _| due.iter().any(|(t, a, _)| idempotency_key(*t, a) == *key));
        for (trip_id, action, currency) in due {
            let key = idempotency_key(trip_id, &action);
            let retry = retries.entry(key.clone()).or_insert(Retry { attempts: 0, next: now });
            if retry.attempts >= config.max_attempts || retry.next > now {
                continue;
            }
            let call = GatewayCall { trip_id, action, currency, idempotency_key: key.clone() };
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
            match gateway.execute(&call) {
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
        std::thread::sleep(config.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret_with_enough_bytes";

    #[test]
    fn timestamped_signatures_verify_within_tolerance_under_any_current_secret() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign_timestamped(SECRET, 1_700_000_000, body);
        let secrets = vec![b"old-secret".to_vec(), SECRET.to_vec()];
        assert_eq!(verify_webhook(WebhookScheme::Timestamped, &secrets, Some(&header), body, 1_700_000_100), Ok(()));
        assert_eq!(
            verify_webhook(WebhookScheme::Timestamped, &secrets, Some(&header), body, 1_700_000_301),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_webhook(WebhookScheme::Timestamped, &secrets, Some(&header), br#"{"id":"evt_2"}"#, 1_700_000_000),
            Err(WebhookError::Mismatch),
            "the body is signed"
        );
        assert_eq!(verify_webhook(WebhookScheme::Timestamped, &secrets, None, body, 0), Err(WebhookError::Missing));
        assert_eq!(
            verify_webhook(WebhookScheme::Timestamped, &secrets, Some("t=abc,v1=00"), body, 0),
            Err(WebhookError::Malformed)
        );
        // Two v1 entries (rotation on the sender's side): one matching is enough.
        let two = format!("{header},v1={}", hex_encode(&[0u8; 32]));
        assert_eq!(
            verify_webhook(WebhookScheme::Timestamped, &[SECRET.to_vec()], Some(&two), body, 1_700_000_000),
            Ok(())
        );
    }

    #[test]
    fn hex_hmac_schemes() {
        let body = b"{}";
        let s512 = hex_encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, SECRET), body).as_ref());
        let s256 = hex_encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), body).as_ref());
        let secrets = [SECRET.to_vec()];
        assert_eq!(verify_webhook(WebhookScheme::HexSha512, &secrets, Some(&s512), body, 0), Ok(()));
        assert_eq!(verify_webhook(WebhookScheme::HexSha256, &secrets, Some(&s256), body, 0), Ok(()));
        assert_eq!(
            verify_webhook(WebhookScheme::HexSha256, &secrets, Some(&s512), body, 0),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook(WebhookScheme::HexSha512, &secrets, Some("zz"), body, 0),
            Err(WebhookError::Malformed)
        );
    }

    #[test]
    fn settlement_reports_parse_strictly() {
        let ok = "trip_id,amount_minor,currency\ntrp_0000000000000007,6704,EGP\n\ntrp_0000000000000007,-704,EGP\n";
        let rows = parse_settlement(ok).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].trip_id, rows[1].amount_minor), (TripId::from_raw(7).unwrap(), -704));
        assert!(parse_settlement("id,amount\n").unwrap_err().starts_with("line 1"));
        let bad = "trip_id,amount_minor,currency\ntrp_0000000000000007,12.5,EGP\n";
        assert_eq!(parse_settlement(bad).unwrap_err(), "line 2: amount_minor is not an integer");
        let short = "trip_id,amount_minor,currency\ntrp_0000000000000007,1\n";
        assert_eq!(parse_settlement(short).unwrap_err(), "line 2: three fields expected");
    }

    #[test]
    fn the_sim_gateway_acts_once_per_key() {
        let g = SimGateway::new();
        let trip = TripId::from_raw(7).unwrap();
        let call = GatewayCall {
            trip_id: trip,
            action: GatewayAction::Capture { amount_minor: 500 },
            currency: "EGP".parse().unwrap(),
            idempotency_key: "k".into(),
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

// ----- reconciliation ----------------------------------------------------------------------

/// One line of a gateway's settlement report: what it says it settled (a capture, or a
/// refund as a negative amount) for a trip, and optionally the payment's status as the
/// gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    /// The trip (the gateway's reference).
    pub trip_id: TripId,
    /// Amount settled, minor units (negative: refunded).
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
    /// The payment's status at the gateway (reports with a `status` column).
    pub status: Option<PaymentStatus>,
}

/// What kind of difference reconciliation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MismatchKind {
    /// The gateway settled a trip the engine has no card payment for.
    MissingInLedger,
    /// The engine captured a card trip the gateway did not settle.
    MissingAtGateway,
    /// Both know it, with different net amounts (captured − refunded) or currencies.
    AmountDiffers,
    /// The amounts agree but the payment's status differs.
    StatusDiffers,
}

impl MismatchKind {
    /// The name in reports and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::MissingInLedger => "missing_in_ledger",
            MismatchKind::MissingAtGateway => "missing_at_gateway",
            MismatchKind::AmountDiffers => "amount_differs",
            MismatchKind::StatusDiffers => "status_differs",
        }
    }
}

/// One side's view of a trip's card payment: the net amount (captured − refunded),
/// its currency and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Net settled, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
    /// The payment's status (`None`: the report has no status column).
    pub status: Option<PaymentStatus>,
}

/// A difference between the ledger and a gateway's settlement report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs.
    pub kind: MismatchKind,
    /// The trip.
    pub trip_id: TripId,
    /// The engine's side (`None`: it knows no card payment of the trip).
    pub ledger: Option<Side>,
    /// The gateway's side (`None`: the report has no line for the trip).
    pub gateway: Option<Side>,
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    /// Trips both sides know and agree on.
    pub matched: usize,
    /// Every difference, in trip order.
    pub mismatches: Vec<Mismatch>,
    /// Card trips the engine compared.
    pub trips: usize,
    /// Lines of the report.
    pub rows: usize,
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

const HEADER: &str = "trip_id,amount_minor,currency";
const HEADER_WITH_STATUS: &str = "trip_id,amount_minor,currency,status";

/// Reads a settlement report: a header line `trip_id,amount_minor,currency` (optionally
/// `,status`), then one line per settled amount (a trip may have several: a capture and
/// a refund as a negative amount). Blank lines are skipped. Refuses anything else,
/// naming the line (1-based, blank lines counted).
pub fn parse_settlement(text: &str) -> Result<Vec<SettlementRow>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let with_status = match lines.next() {
        Some((_, header)) if header.trim().replace(' ', "") == HEADER => false,
        Some((_, header)) if header.trim().replace(' ', "") == HEADER_WITH_STATUS => true,
        _ => return Err(format!("line 1: the header must be {HEADER} or {HEADER_WITH_STATUS}")),
    };
    lines
        .map(|(i, line)| {
            let bad = |what: &str| format!("line {}: {what}", i + 1);
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let (trip, amount, currency, status) = match (with_status, &fields[..]) {
                (false, [t, a, c]) => (*t, *a, *c, None),
                (true, [t, a, c, s]) => (*t, *a, *c, Some(*s)),
                (false, _) => return Err(bad("three fields expected")),
                (true, _) => return Err(bad("four fields expected")),
            };
            Ok(SettlementRow {
                trip_id: trip.parse().map_err(|_| bad("not a trip id"))?,
                amount_minor: amount.parse().map_err(|_| bad("amount_minor is not an integer"))?,
                currency: currency.parse().map_err(|e: crate::money::MoneyError| bad(&e.to_string()))?,
                status: status
                    .map(|s| PaymentStatus::parse(s).ok_or_else(|| bad("status is not a payment status")))
                    .transpose()?,
            })
        })
        .collect()
}

/// Compares the engine's card trips (`captured − refunded` of each, and its payment
/// status) with a gateway's settlement `rows` (summed per trip; the status of a trip's
/// last line), and lists every difference, in trip order. Refunds still waiting for
/// the gateway are not in the engine's net amount. A card trip with nothing captured
/// and no line agrees silently.
pub fn reconcile<'a>(trips: impl IntoIterator<Item = &'a crate::trip::Trip>, rows: &[SettlementRow]) -> Reconciliation {
    let mut ledger: BTreeMap<TripId, Side> = BTreeMap::new();
    for t in trips.into_iter().filter(|t| t.payment.method == PaymentMethod::Card) {
        let net = t.payment.captured_minor - t.payment.refunded_minor;
        ledger.insert(t.id, Side { amount_minor: net, currency: t.fare.currency, status: Some(t.payment.status) });
    }
    let mut gateway: BTreeMap<TripId, Side> = BTreeMap::new();
    for r in rows {
        let e = gateway.entry(r.trip_id).or_insert(Side { amount_minor: 0, currency: r.currency, status: None });
        e.amount_minor = e.amount_minor.saturating_add(r.amount_minor);
        if r.status.is_some() {
            e.status = r.status;
        }
    }
    let mut out = Reconciliation { trips: ledger.len(), rows: rows.len(), ..Reconciliation::default() };
    let ids: std::collections::BTreeSet<TripId> = ledger.keys().chain(gateway.keys()).copied().collect();
    for id in ids {
        let (l, g) = (ledger.get(&id).copied(), gateway.get(&id).copied());
        let kind = match (l, g) {
            (Some(l), Some(g)) if l.amount_minor != g.amount_minor || l.currency != g.currency => {
                Some(MismatchKind::AmountDiffers)
            }
            (Some(l), Some(g)) if g.status.is_some() && g.status != l.status => Some(MismatchKind::StatusDiffers),
            (Some(_), Some(_)) => {
                out.matched += 1;
                None
            }
            (Some(l), None) if l.amount_minor != 0 || ledger_captured(&l) => Some(MismatchKind::MissingAtGateway),
            (Some(_), None) => None,
            (None, Some(_)) => Some(MismatchKind::MissingInLedger),
            (None, None) => None,
        };
        if let Some(kind) = kind {
            out.mismatches.push(Mismatch { kind, trip_id: id, ledger: l, gateway: g });
        }
    }
    out
}

/// A payment that took money (even if all of it was refunded since).
fn ledger_captured(side: &Side) -> bool {
    matches!(side.status, Some(PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded))
}

/// Reconciles the settlement report `csv` against every card trip the engine knows,
/// hot and archived: the one function behind `dispatchd reconcile` and
/// `POST /v1/admin/reconcile`.
pub fn reconcile_report(engine: &Engine, csv: &str) -> Result<Reconciliation, ReconcileError> {
    let rows = parse_settlement(csv).map_err(ReconcileError::Settlement)?;
    let mut trips = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine
            .trips(crate::history::TripsOf::All, cursor, 1000, true, |t| t.payment.method == PaymentMethod::Card)?;
        let Some(last) = page.last() else { break };
        cursor = Some(crate::history::TripCursor::after(last));
        trips.extend(page);
    }
    Ok(reconcile(trips.iter().map(|t| &**t), &rows))
}
