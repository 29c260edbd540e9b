//! The payment rules that need no engine: what a gateway can report, webhook signatures,
//! the idempotency key of a gateway call, and reconciliation against a settlement report.
//!
//! Owns:
//! - [`PaymentEventKind`], what a gateway reported (a webhook, or the payment worker's
//!   call), which `apply` turns into ledger moves through the payment state machine;
//! - [`verify_webhook`]: the signature schemes of the supported gateways, each an HMAC
//!   over the raw body compared in constant time, with several secrets accepted at once
//!   (rotation); [`parse_signature_header`], the bounded parser of a timestamped header
//!   (no cryptography: fuzzed alone, `fuzz/fuzz_targets/signature_header.rs`);
//! - [`idempotency_key`]: one key per trip and gateway action (one per refund);
//! - [`parse_settlement`] and [`reconcile`]: a gateway's settlement CSV against the
//!   engine's card trips, and [`parse_settlement_all`] and [`reconcile_money`]: its lines
//!   about drivers' payouts (`pyo_…`) and wallet top-ups (`top_…`) against what the
//!   engine paid out and credited, as pure functions (the engine-side wrapper is
//!   `dispatch_core::payment::reconcile_report`).
//!
//! Guarantees:
//! - a forged, stale or unsigned webhook is refused before its body is looked at;
//! - the work a signature costs is bounded before any cryptography: a header over
//!   [`MAX_SIGNATURE_HEADER_BYTES`] or with more than [`MAX_SIGNATURES`] `v1` entries is
//!   `Malformed` unread, and a timestamped header costs one HMAC per secret, however
//!   many entries it has;
//! - the same trip and action always give the same idempotency key, so a gateway that
//!   deduplicates on it never acts twice;
//! - a settlement report that does not parse is refused whole, naming the line.

use std::collections::BTreeMap;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::id::TripId;
use crate::money::Currency;
use crate::trip::{GatewayAction, PaymentMethod, PaymentStatus, Trip};

/// What a payment gateway reported (a webhook, or the payment worker's call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEventKind {
    /// The card hold succeeded (`payment.authorized`).
    Authorized,
    /// Money was taken (`payment.captured`).
    Captured,
    /// The gateway refused or failed (`payment.failed`).
    Failed,
    /// A refund reached the rider (`refund.succeeded`).
    RefundSucceeded,
    /// The authorisation was released.
    Voided,
}

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

/// Longest signature header read, bytes: a timestamp and [`MAX_SIGNATURES`] entries take
/// about 600; anything longer is refused before it is decoded (`Malformed`).
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 1024;

/// Most `v1=` entries a timestamped signature header may carry: a secret rotation on the
/// sender's side needs two or three; more is refused (`Malformed`).
pub const MAX_SIGNATURES: usize = 8;

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

/// What a timestamped signature header says: its time and its candidate signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t=`: when the sender signed, Unix seconds.
    pub t: i64,
    /// The `v1=` entries: HMAC-SHA256 tags, 1 to [`MAX_SIGNATURES`] of them.
    pub tags: Vec<[u8; 32]>,
}

/// Parses a `Dispatch-Signature` (or `Stripe-Signature`) value, `t=<unix s>,v1=<hex>,…`,
/// within its bounds: at most [`MAX_SIGNATURE_HEADER_BYTES`], exactly one `t`, 1 to
/// [`MAX_SIGNATURES`] `v1` entries of 64 hex digits each; entries of other schemes (`v0`,
/// …) are skipped, as Stripe does. Pure and cheap (no cryptography: the fuzz target
/// `signature_header` runs it alone); anything else is `Malformed`.
pub fn parse_signature_header(header: &str) -> Result<SignatureHeader, WebhookError> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(WebhookError::Malformed);
    }
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.trim().split(',') {
        match part.trim().split_once('=') {
            Some(("t", _)) if t.is_some() => return Err(WebhookError::Malformed),
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| WebhookError::Malformed)?),
            Some(("v1", _)) if tags.len() == MAX_SIGNATURES => return Err(WebhookError::Malformed),
            Some(("v1", v)) => {
                let tag = hex_decode(v).and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or(WebhookError::Malformed)?;
                tags.push(tag);
            }
            Some(_) => {} // other schemes' entries (v0, …) are ignored, as Stripe does
            None => return Err(WebhookError::Malformed),
        }
    }
    match t {
        Some(t) if !tags.is_empty() => Ok(SignatureHeader { t, tags }),
        _ => Err(WebhookError::Malformed),
    }
}

/// Checks `signature` (the header's value, `None` when absent) over `body` under any of
/// `secrets`, at `now_s` (Unix seconds). The header is bounded and parsed before any
/// cryptography; then one HMAC per secret is computed, whatever the number of entries,
/// and compared with each in constant time.
pub fn verify_webhook(
    scheme: WebhookScheme,
    secrets: &[Vec<u8>],
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), WebhookError> {
    let signature = signature.ok_or(WebhookError::Missing)?;
    if signature.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(WebhookError::Malformed);
    }
    let signature = Some(signature.trim()).filter(|s| !s.is_empty()).ok_or(WebhookError::Missing)?;
    match scheme {
        WebhookScheme::HexSha256 | WebhookScheme::HexSha512 => {
            let tag = hex_decode(signature).ok_or(WebhookError::Malformed)?;
            let alg = if scheme == WebhookScheme::HexSha256 { hmac::HMAC_SHA256 } else { hmac::HMAC_SHA512 };
            let ok = secrets.iter().any(|s| hmac::verify(&hmac::Key::new(alg, s), body, &tag).is_ok());
            if ok { Ok(()) } else { Err(WebhookError::Mismatch) }
        }
        WebhookScheme::Timestamped => {
            let SignatureHeader { t, tags } = parse_signature_header(signature)?;
            if now_s.abs_diff(t) > WEBHOOK_TOLERANCE_S.unsigned_abs() {
                return Err(WebhookError::Stale);
            }
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(body);
            let mut ok = false;
            for secret in secrets {
                let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &signed);
                let expected: &[u8; 32] = expected.as_ref().try_into().map_err(|_| WebhookError::Mismatch)?;
                for tag in &tags {
                    // No early exit: the time does not tell which entry or secret matched.
                    ok |= crate::otp::constant_time_eq(expected, tag);
                }
            }
            if ok { Ok(()) } else { Err(WebhookError::Mismatch) }
        }
    }
}

/// The property the fuzz target `signature_header` and its stable proptest twin check on
/// any bytes: the parser never panics; what it accepts is within its bounds and renders
/// back to a header that parses to the same value; verifying never panics and accepts
/// only what parses. Panics when the property does not hold (that is the finding).
pub fn fuzz_signature_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_signature_header(&text);
    if let Ok(h) = &parsed {
        assert!(text.len() <= MAX_SIGNATURE_HEADER_BYTES, "accepted {} bytes", text.len());
        assert!((1..=MAX_SIGNATURES).contains(&h.tags.len()), "accepted {} signatures", h.tags.len());
        let rendered = h.tags.iter().fold(format!("t={}", h.t), |acc, tag| acc + ",v1=" + &hex_encode(tag));
        assert_eq!(parse_signature_header(&rendered).as_ref(), Ok(h), "{rendered}");
    }
    let secrets = [b"fuzz-webhook-secret-0123456789".to_vec()];
    let t = parsed.as_ref().map_or(0, |h| h.t);
    for now in [t, t.saturating_add(WEBHOOK_TOLERANCE_S + 1), i64::MIN, i64::MAX] {
        let verified = verify_webhook(WebhookScheme::Timestamped, &secrets, Some(&text), data, now);
        assert!(parsed.is_ok() || verified.is_err(), "verified what does not parse");
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

/// The idempotency key of a gateway call: one per trip and action (one per refund).
pub fn idempotency_key(trip_id: TripId, action: &GatewayAction) -> String {
    match action {
        GatewayAction::Refund { transfer, .. } => format!("{trip_id}-refund-{transfer}"),
        other => format!("{trip_id}-{}", other.name()),
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
    /// Differences about payouts and top-ups, in id order.
    pub money_mismatches: Vec<MoneyMismatch>,
    /// Payouts and top-ups the engine compared.
    pub money: usize,
}

/// What a settlement line other than a trip's is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Settled {
    /// A driver's payout (`pyo_…`): the amount paid out.
    Payout(crate::id::PayoutId),
    /// A wallet top-up (`top_…`): the amount captured.
    TopUp(crate::id::TopUpId),
}

/// A settlement line about a payout or a top-up (its status column, if any, is not read:
/// the amounts decide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyRow {
    /// What it is about.
    pub subject: Settled,
    /// Amount settled, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
}

/// A difference about a payout or a top-up: what the engine paid out or credited (`None`:
/// nothing), what the gateway settled (`None`: no line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyMismatch {
    /// What differs.
    pub kind: MismatchKind,
    /// The payout or top-up.
    pub subject: Settled,
    /// The engine's amount (paid out, or credited), with its currency.
    pub ledger: Option<(i64, Currency)>,
    /// The gateway's amount, with its currency.
    pub gateway: Option<(i64, Currency)>,
}

const HEADER: &str = "trip_id,amount_minor,currency";
const HEADER_WITH_STATUS: &str = "trip_id,amount_minor,currency,status";

/// Reads a settlement report: a header line `trip_id,amount_minor,currency` (optionally
/// `,status`), then one line per settled amount (a trip may have several: a capture and
/// a refund as a negative amount). Blank lines are skipped. Refuses anything else,
/// naming the line (1-based, blank lines counted).
pub fn parse_settlement(text: &str) -> Result<Vec<SettlementRow>, String> {
    parse_settlement_all(text).map(|(trips, _)| trips)
}

/// Reads a settlement report like [`parse_settlement`], whose lines may also be about a
/// payout (`pyo_…`) or a top-up (`top_…`) instead of a trip: the trips' lines, and the
/// others'.
pub fn parse_settlement_all(text: &str) -> Result<(Vec<SettlementRow>, Vec<MoneyRow>), String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let with_status = match lines.next() {
        Some((_, header)) if header.trim().replace(' ', "") == HEADER => false,
        Some((_, header)) if header.trim().replace(' ', "") == HEADER_WITH_STATUS => true,
        _ => return Err(format!("line 1: the header must be {HEADER} or {HEADER_WITH_STATUS}")),
    };
    let mut money = Vec::new();
    let mut trips = Vec::new();
    for (i, line) in lines {
        let bad = |what: &str| format!("line {}: {what}", i + 1);
        let first = line.split(',').next().unwrap_or_default().trim();
        let subject = if first.starts_with("pyo_") {
            Some(Settled::Payout(first.parse().map_err(|_| bad("not a payout id"))?))
        } else if first.starts_with("top_") {
            Some(Settled::TopUp(first.parse().map_err(|_| bad("not a top-up id"))?))
        } else {
            None
        };
        if let Some(subject) = subject {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let (amount, currency) = match (with_status, &fields[..]) {
                (false, [_, a, c]) | (true, [_, a, c, _]) => (*a, *c),
                (false, _) => return Err(bad("three fields expected")),
                (true, _) => return Err(bad("four fields expected")),
            };
            money.push(MoneyRow {
                subject,
                amount_minor: amount.parse().map_err(|_| bad("amount_minor is not an integer"))?,
                currency: currency.parse().map_err(|e: crate::money::MoneyError| bad(&e.to_string()))?,
            });
            continue;
        }
        trips.push(parse_trip_line(i, line, with_status)?);
    }
    Ok((trips, money))
}

/// One trip's settlement line.
fn parse_trip_line(i: usize, line: &str, with_status: bool) -> Result<SettlementRow, String> {
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
}

/// Compares what the engine paid out (payouts `paid`) and credited (top-ups `succeeded`)
/// with the gateway's lines about them (summed per payout or top-up), and lists every
/// difference: payouts first, then top-ups, each in id order. `engine` is every payout and top-up the engine knows with the
/// amount it settled (0: not paid or not captured) and its currency; one with nothing
/// settled and no line agrees silently. Returns the differences and how many agreed.
pub fn reconcile_money(
    engine: impl IntoIterator<Item = (Settled, i64, Currency)>,
    rows: &[MoneyRow],
) -> (Vec<MoneyMismatch>, usize) {
    let ledger: BTreeMap<Settled, (i64, Currency)> = engine.into_iter().map(|(s, a, c)| (s, (a, c))).collect();
    let mut gateway: BTreeMap<Settled, (i64, Currency)> = BTreeMap::new();
    for r in rows {
        let e = gateway.entry(r.subject).or_insert((0, r.currency));
        e.0 = e.0.saturating_add(r.amount_minor);
    }
    let ids: std::collections::BTreeSet<Settled> = ledger.keys().chain(gateway.keys()).copied().collect();
    let (mut out, mut matched) = (Vec::new(), 0);
    for subject in ids {
        let (l, g) = (ledger.get(&subject).copied(), gateway.get(&subject).copied());
        let kind = match (l, g) {
            (Some(l), Some(g)) if l != g => Some(MismatchKind::AmountDiffers),
            (Some(_), Some(_)) => {
                matched += 1;
                None
            }
            (Some((0, _)), None) => None,
            (Some(_), None) => Some(MismatchKind::MissingAtGateway),
            (None, Some(_)) => Some(MismatchKind::MissingInLedger),
            (None, None) => None,
        };
        if let Some(kind) = kind {
            out.push(MoneyMismatch { kind, subject, ledger: l, gateway: g });
        }
    }
    (out, matched)
}

/// Compares the engine's card trips (`captured − refunded` of each, and its payment
/// status) with a gateway's settlement `rows` (summed per trip; the status of a trip's
/// last line), and lists every difference, in trip order. Refunds still waiting for
/// the gateway are not in the engine's net amount. A card trip with nothing captured
/// and no line agrees silently.
pub fn reconcile<'a>(trips: impl IntoIterator<Item = &'a Trip>, rows: &[SettlementRow]) -> Reconciliation {
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

    /// Finding 3 of issue 24: a `Dispatch-Signature` header with thousands of `v1=`
    /// entries cost an HMAC over the body each. At most 8 entries and 1 KiB are read;
    /// more is malformed, even when one of the entries is the right signature.
    #[test]
    fn finding_3_a_signature_header_is_bounded_in_entries_and_size() {
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000;
        let good = sign_timestamped(SECRET, t, body);
        let secrets = [SECRET.to_vec()];
        let verify = |header: &str| verify_webhook(WebhookScheme::Timestamped, &secrets, Some(header), body, t);
        let decoy = |i: u8| format!(",v1={}", hex_encode(&[i; 32]));
        // Eight entries (the right one and seven decoys) are read.
        let eight = (1..8).fold(good.clone(), |h, i| h + &decoy(i));
        assert_eq!(verify(&eight), Ok(()));
        // A ninth is one too many, wherever the right one is.
        let nine = eight.clone() + &decoy(8);
        assert_eq!(verify(&nine), Err(WebhookError::Malformed));
        let right_last = (1..9).fold(format!("t={t}"), |h, i| h + &decoy(i)) + &good[good.find(",v1=").unwrap()..];
        assert_eq!(verify(&right_last), Err(WebhookError::Malformed));
        // Over 1 KiB is refused before anything is decoded, whatever it holds.
        let padded = format!("{good},v0={}", "0".repeat(1024 - good.len() - 4));
        assert_eq!(padded.len(), 1024);
        assert_eq!(verify(&padded), Ok(()), "1 KiB is read");
        assert_eq!(verify(&(padded + "0")), Err(WebhookError::Malformed), "one byte more is not");
        let thousands = (0..6_000).fold(good.clone(), |h, i| h + &decoy((i % 250) as u8));
        assert_eq!(verify(&thousands), Err(WebhookError::Malformed));
    }

    /// Near-valid signature headers: a few `t`, `v1` (of every length, in either case)
    /// and other entries, with stray spaces, commas and junk.
    fn near_valid_header() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let hex = |n: usize| proptest::collection::vec(any::<u8>(), n).prop_map(|b| hex_encode(&b));
        let entry = prop_oneof![
            any::<i64>().prop_map(|t| format!("t={t}")),
            (1_600_000_000i64..1_800_000_000).prop_map(|t| format!("t={t}")),
            hex(32).prop_map(|h| format!("v1={h}")),
            hex(32).prop_map(|h| format!("v1={}", h.to_ascii_uppercase())),
            (0usize..40).prop_flat_map(hex).prop_map(|h| format!("v1={h}")),
            hex(32).prop_map(|h| format!("v0={h}")),
            "[ =,a-u0-9]{0,12}",
        ];
        (proptest::collection::vec(entry, 0..14), prop_oneof![Just(","), Just(", "), Just(" ,")])
            .prop_map(|(entries, sep)| entries.join(sep))
    }

    proptest::proptest! {
        /// What `fuzz/fuzz_targets/signature_header.rs` runs, on stable, in every test run
        /// (finding 3 of issue 24: the header parser's bounds).
        #[test]
        fn signature_headers_never_panic_and_stay_in_bounds(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1_200),
        ) {
            fuzz_signature_header(&data);
        }

        #[test]
        fn near_valid_signature_headers_never_panic_and_stay_in_bounds(header in near_valid_header()) {
            fuzz_signature_header(header.as_bytes());
            if let Ok(h) = parse_signature_header(&header) {
                proptest::prop_assert_eq!(h.tags.len(), header.matches("v1=").count());
            }
        }
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
    fn payouts_and_top_ups_reconcile_by_their_amounts() {
        let egp: Currency = "EGP".parse().unwrap();
        let text = "trip_id,amount_minor,currency,status\npyo_0000000000000001,4000,EGP,paid\n\
            top_0000000000000002,5000,EGP,captured\ntrp_0000000000000007,6704,EGP,captured\n\
            pyo_0000000000000003,100,EGP,paid\n";
        let (trips, money) = parse_settlement_all(text).unwrap();
        assert_eq!((trips.len(), money.len()), (1, 3));
        assert_eq!(parse_settlement(text).unwrap(), trips);
        let payout = |n| Settled::Payout(crate::id::PayoutId::from_raw(n).unwrap());
        let top_up = |n| Settled::TopUp(crate::id::TopUpId::from_raw(n).unwrap());
        let engine = [(payout(1), 4000, egp), (top_up(2), 4999, egp), (payout(4), 700, egp), (payout(5), 0, egp)];
        let (found, matched) = reconcile_money(engine, &money);
        let kinds: Vec<(MismatchKind, Settled)> = found.iter().map(|m| (m.kind, m.subject)).collect();
        assert_eq!(
            kinds,
            [
                (MismatchKind::MissingInLedger, payout(3)),
                (MismatchKind::MissingAtGateway, payout(4)),
                (MismatchKind::AmountDiffers, top_up(2)),
            ],
            "payouts first, then top-ups, each in id order"
        );
        assert_eq!(matched, 1);
        let bad = "trip_id,amount_minor,currency\npyo_12,1,EGP\n";
        assert_eq!(parse_settlement_all(bad).unwrap_err(), "line 2: not a payout id");
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
}
