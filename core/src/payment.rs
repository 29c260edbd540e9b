//! Payment gateways: the trait, the built-in simulated gateway, webhook signatures, and
//! the worker that carries out what card trips owe the gateway.
//!
//! Owns:
//! - [`Gateway`], the seam to a card processor (authorise, capture, void), and
//!   [`SimGateway`], a deterministic in-process one with injectable failures, for
//!   development and tests;
//! - [`verify_webhook`]: the signature schemes of the supported gateways, each an HMAC
//!   over the raw body compared in constant time (`ring::hmac::verify`), with several
//!   secrets accepted at once (rotation);
//! - [`reconcile`]: the ledger's card captures against a gateway's settlement report;
//! - [`PaymentWorker`]: a thread that watches the engine for trips whose
//!   `payment.due` is set, calls the gateway, and reports the result as a
//!   `PaymentEvent` command — retried with exponential backoff, and after
//!   [`WorkerConfig::max_attempts`] failures put on a dead-letter list for operators.
//!
//! Guarantees:
//! - nothing is charged twice: every call carries an idempotency key derived from the
//!   trip and the action (gateways deduplicate on it), and every result is reported
//!   with an event id derived the same way (the engine applies an event id once);
//! - a forged, stale or unsigned webhook is refused before its body is looked at;
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
use crate::trip::{GatewayAction, PaymentMethod};

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

    /// Calls received, successful or not.
    pub fn calls(&self) -> u64 {
        self.inner.lock().calls
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
        if let GatewayAction::Capture { amount_minor } = call.action {
            *g.captured.entry(call.trip_id).or_default() += amount_minor;
        }
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

/// A payment the worker gave up on (for operators: offer cash, call the rider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The trip.
    pub trip_id: TripId,
    /// What could not be done.
    pub action: GatewayAction,
    /// The last error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
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
    dead: Arc<Mutex<Vec<DeadLetter>>>,
}

fn action_name(a: &GatewayAction) -> &'static str {
    match a {
        GatewayAction::Authorize { .. } => "authorize",
        GatewayAction::Capture { .. } => "capture",
        GatewayAction::Void => "void",
    }
}

impl PaymentWorker {
    /// Starts the worker on `engine` with `gateway`.
    pub fn start(engine: Arc<Engine>, gateway: Arc<dyn Gateway>, config: WorkerConfig) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(Mutex::new(Vec::new()));
        let (s, d) = (Arc::clone(&stop), Arc::clone(&dead));
        let handle = std::thread::Builder::new()
            .name("dispatch-payments".into())
            .spawn(move || run(&engine, gateway.as_ref(), config, &s, &d))?;
        Ok(PaymentWorker { stop, handle: Some(handle), dead })
    }

    /// Payments given up on so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.lock().clone()
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

fn run(engine: &Engine, gateway: &dyn Gateway, config: WorkerConfig, stop: &AtomicBool, dead: &Mutex<Vec<DeadLetter>>) {
    let mut retries: HashMap<(TripId, &'static str), Retry> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let due: Vec<(TripId, GatewayAction, Currency)> = engine.read(|v| {
            v.trips()
                .filter(|t| t.payment.method == PaymentMethod::Card)
                .filter_map(|t| t.payment.due.map(|a| (t.id, a, t.fare.currency)))
                .collect()
        });
        let now = Instant::now();
        for (trip_id, action, currency) in due {
            let name = action_name(&action);
            let key = (trip_id, name);
            let retry = retries.entry(key).or_insert(Retry { attempts: 0, next: now });
            if retry.attempts >= config.max_attempts || retry.next > now {
                continue;
            }
            let idempotency_key = format!("{trip_id}-{name}");
            let call = GatewayCall { trip_id, action, currency, idempotency_key: idempotency_key.clone() };
            let (kind, amount) = match action {
                GatewayAction::Authorize { amount_minor } => (PaymentEventKind::Authorized, amount_minor),
                GatewayAction::Capture { amount_minor } => (PaymentEventKind::Captured, amount_minor),
                GatewayAction::Void => (PaymentEventKind::Voided, 0),
            };
            let failure = match gateway.execute(&call) {
                Ok(()) => None,
                Err(GatewayError::Declined(why)) => {
                    // Reported once; the trip's due action stays for operators to settle.
                    retry.attempts = config.max_attempts;
                    Some(format!("declined: {why}"))
                }
                Err(GatewayError::Unavailable(why)) => Some(why),
            };
            let (kind, event_id) = match &failure {
                None => (kind, format!("{}-{idempotency_key}", gateway.name())),
                Some(_) => (
                    PaymentEventKind::Failed,
                    format!("{}-{idempotency_key}-failed-{}", gateway.name(), retry.attempts),
                ),
            };
            let event = Command::PaymentEvent {
                gateway: gateway.name().to_owned(),
                event_id,
                kind,
                trip_id,
                amount_minor: amount,
                currency,
            };
            // Refusals (the trip moved on, a duplicate) need nothing more from the worker.
            let _ = engine.submit(Actor::System, event);
            match failure {
                None => {
                    retries.remove(&key);
                }
                Some(error) => {
                    retry.attempts += 1;
                    let factor = 2u32.saturating_pow(retry.attempts.saturating_sub(1).min(16));
                    retry.next = now + config.backoff.saturating_mul(factor).min(config.backoff_max);
                    if retry.attempts >= config.max_attempts {
                        dead.lock().push(DeadLetter { trip_id, action, error, attempts: retry.attempts });
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

/// One line of a gateway's settlement report: what it says it captured (net of
/// refunds) for a trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    /// The trip (the gateway's reference).
    pub trip_id: TripId,
    /// Net amount settled, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
}

/// A difference between the ledger and a gateway's settlement report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The gateway settled a trip the engine has no card capture for.
    MissingInLedger {
        /// The trip.
        trip_id: TripId,
        /// What the gateway settled.
        amount_minor: i64,
    },
    /// The engine captured a card trip the gateway did not settle.
    MissingAtGateway {
        /// The trip.
        trip_id: TripId,
        /// What the engine captured, net of refunds.
        amount_minor: i64,
    },
    /// Both know it, with different amounts or currencies.
    AmountDiffers {
        /// The trip.
        trip_id: TripId,
        /// The engine's net captured amount.
        ledger_minor: i64,
        /// The gateway's.
        gateway_minor: i64,
    },
}

/// Reads a settlement report: a header line `trip_id,amount_minor,currency`, then one line
/// per settled amount (a trip may have several: a capture and a refund as a negative
/// amount). Blank lines are skipped. Refuses anything else, naming the line.
pub fn parse_settlement(text: &str) -> Result<Vec<SettlementRow>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim().replace(' ', "") == "trip_id,amount_minor,currency" => {}
        _ => return Err("line 1: the header must be trip_id,amount_minor,currency".into()),
    }
    lines
        .map(|(i, line)| {
            let bad = |what: &str| format!("line {}: {what}", i + 1);
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [trip, amount, currency] = fields[..] else { return Err(bad("three fields expected")) };
            Ok(SettlementRow {
                trip_id: trip.parse().map_err(|_| bad("not a trip id"))?,
                amount_minor: amount.parse().map_err(|_| bad("amount_minor is not an integer"))?,
                currency: currency.parse().map_err(|_| bad("not a currency code"))?,
            })
        })
        .collect()
}

/// Compares the engine's card trips (`captured − refunded` of each) with a gateway's
/// settlement `rows`, and lists every difference, in trip order. Trips with nothing
/// captured and no row agree.
pub fn reconcile<'a>(trips: impl IntoIterator<Item = &'a crate::trip::Trip>, rows: &[SettlementRow]) -> Vec<Mismatch> {
    let mut ledger: BTreeMap<TripId, (i64, Currency)> = BTreeMap::new();
    for t in trips.into_iter().filter(|t| t.payment.method == PaymentMethod::Card) {
        let net = t.payment.captured_minor - t.payment.refunded_minor;
        if t.payment.captured_minor > 0 {
            ledger.insert(t.id, (net, t.fare.currency));
        }
    }
    let mut gateway: BTreeMap<TripId, (i64, Currency)> = BTreeMap::new();
    for r in rows {
        let e = gateway.entry(r.trip_id).or_insert((0, r.currency));
        e.0 += r.amount_minor;
    }
    let mut out = Vec::new();
    let ids: std::collections::BTreeSet<TripId> = ledger.keys().chain(gateway.keys()).copied().collect();
    for id in ids {
        match (ledger.get(&id), gateway.get(&id)) {
            (Some(&(l, lc)), Some(&(g, gc))) if l != g || lc != gc => {
                out.push(Mismatch::AmountDiffers { trip_id: id, ledger_minor: l, gateway_minor: g });
            }
            (Some(&(l, _)), None) => out.push(Mismatch::MissingAtGateway { trip_id: id, amount_minor: l }),
            (None, Some(&(g, _))) => out.push(Mismatch::MissingInLedger { trip_id: id, amount_minor: g }),
            _ => {}
        }
    }
    out
}
