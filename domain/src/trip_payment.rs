//! A trip's payment: the statuses it moves through ([`PaymentStatus`], with the one table
//! of its edges), what the trip records of it ([`TripPayment`]: the method, the ledger's
//! transfers, refunds, dead letters), and the calls the payment worker owes the gateway
//! ([`GatewayAction`]).
//!
//! Guarantees: every change of a payment's status goes through
//! [`PaymentStatus::can_become`]; the amounts are integer minor units of the trip's
//! currency. The trip ([`crate::trip::Trip`]) holds one; `crate::trip` re-exports these types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::TransferId;
use crate::money::PaymentMethod;

/// Where the trip's payment stands.
///
/// ```text
/// pending ──▶ authorized ──▶ captured ──▶ partially_refunded ──▶ refunded
///   │  │         │  │  │                         ▲        │
///   │  │         │  │  └──▶ voided               └────────┘ (another partial refund)
///   │  │         │  └─────▶ expired ──▶ captured
///   │  │         └────────▶ failed ──▶ captured | voided
///   │  └──▶ captured | voided | failed | expired
/// ```
///
/// [`PaymentStatus::can_become`] is the one table of these edges: every change of a
/// trip's payment status goes through it (`TripPayment::set_status`), and a gateway
/// event that would take a step back (a late `payment.authorized` after the capture)
/// is refused by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Nothing taken yet.
    Pending,
    /// Held (card authorised, wallet amount on hold).
    Authorized,
    /// Taken.
    Captured,
    /// The hold was released.
    Voided,
    /// The hold lapsed before it was captured.
    Expired,
    /// Part of the capture was given back.
    PartiallyRefunded,
    /// All of it was given back.
    Refunded,
    /// The gateway declined (the card was refused): cash is offered.
    Failed,
}

impl PaymentStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Voided => "voided",
            PaymentStatus::Expired => "expired",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Failed => "failed",
        }
    }

    /// The status named `s` in the API (`None` for any other text).
    pub fn parse(s: &str) -> Option<PaymentStatus> {
        use PaymentStatus::*;
        [Pending, Authorized, Captured, Voided, Expired, PartiallyRefunded, Refunded, Failed]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// Whether the payment state machine has an edge from `self` to `next` (the
    /// diagram above). A status never "becomes" itself, except a partial refund
    /// followed by another partial refund.
    ///
    /// A capture needs no authorisation before it (a gateway that was down at accept
    /// is charged at completion); a failed or expired authorisation can still be
    /// followed by the capture of what the ride cost; nothing comes back from voided
    /// or refunded.
    pub fn can_become(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (Pending, Authorized | Captured | Voided | Failed | Expired)
                | (Authorized, Captured | Voided | Expired | Failed)
                | (Failed, Captured | Voided)
                | (Expired, Captured)
                | (Captured, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The trip's payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripPayment {
    /// How.
    pub method: PaymentMethod,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The hold: the wallet's (placed at booking) or the card's (placed when the
    /// gateway authorised it): a pending ledger transfer with an expiry.
    pub hold: Option<TransferId>,
    /// What was taken: the final fare (and a cancellation fee), once captured.
    pub captured_minor: i64,
    /// What was given back of it (confirmed refunds).
    pub refunded_minor: i64,
    /// Card refunds booked (pending ledger transfers) and not yet confirmed by the
    /// gateway, oldest first. They count against the refund limit.
    pub refunds_pending: Vec<PendingRefund>,
    /// Card trips: what the gateway still has to do (authorise, capture, void, refund).
    pub due: Option<GatewayAction>,
    /// The payment worker gave up on `due` (recorded durably; cleared when `due` changes).
    pub dead_letter: Option<DeadLetter>,
    /// The last gateway report refused because its amount disagreed with what was
    /// due (kept for reconciliation and operators).
    pub mismatch: Option<GatewayMismatch>,
    /// Card trips: the gateway the card is charged through, recorded at booking. Only
    /// events of that gateway (verified with its own secret) move this trip's money.
    pub gateway: Option<String>,
    /// A finished card trip its rider switched to cash: when, while the driver has not
    /// confirmed receiving the cash. Nothing is booked on the driver until they do.
    pub cash_claimed_at: Option<Timestamp>,
    /// Card trips: the gateway's own reference for this payment (Stripe's PaymentIntent
    /// id), recorded by the payment worker once the gateway made it
    /// (`Command::RecordGatewayRef`); later calls about the payment name it.
    #[serde(default)]
    pub gateway_ref: Option<String>,
}

impl TripPayment {
    /// A new payment by `method`.
    pub fn new(method: PaymentMethod) -> Self {
        TripPayment {
            method,
            status: PaymentStatus::Pending,
            hold: None,
            captured_minor: 0,
            refunded_minor: 0,
            refunds_pending: Vec::new(),
            due: None,
            dead_letter: None,
            mismatch: None,
            gateway: None,
            cash_claimed_at: None,
            gateway_ref: None,
        }
    }

    /// What may still be refunded: captured − refunded − refunds pending.
    pub fn refundable_minor(&self) -> i64 {
        self.captured_minor - self.refunded_minor - self.pending_refunds_minor()
    }

    /// The sum of the card refunds waiting for the gateway.
    pub fn pending_refunds_minor(&self) -> i64 {
        self.refunds_pending.iter().map(|r| r.amount_minor).sum()
    }

    /// Card trips whose payment was declined or given up on are offered cash
    /// (DESIGN.md: "card payment unavailable, you can pay cash") while nothing was
    /// taken from the card.
    pub fn cash_offered(&self) -> bool {
        self.method == PaymentMethod::Card
            && (self.status == PaymentStatus::Failed || self.dead_letter.is_some())
            && self.may_switch_to_cash()
    }

    /// Whether a card payment may still become cash: nothing is held on or taken from
    /// the card, and the gateway owes no void or refund.
    pub fn may_switch_to_cash(&self) -> bool {
        self.method == PaymentMethod::Card
            && matches!(self.status, PaymentStatus::Pending | PaymentStatus::Failed | PaymentStatus::Expired)
            && self.captured_minor == 0
            && matches!(self.due, None | Some(GatewayAction::Authorize { .. } | GatewayAction::Capture { .. }))
    }

    /// Sets what the gateway must do next; a dead letter about another action no
    /// longer applies.
    pub(crate) fn set_due(&mut self, due: Option<GatewayAction>) {
        if self.due != due {
            self.dead_letter = None;
        }
        self.due = due;
    }

    /// Moves to `next`, refusing any step [`PaymentStatus::can_become`] does not have
    /// (staying put is not a step).
    pub(crate) fn set_status(&mut self, next: PaymentStatus) -> Result<()> {
        if self.status == next && next != PaymentStatus::PartiallyRefunded {
            return Ok(());
        }
        if !self.status.can_become(next) {
            return Err(Error::Internal(format!(
                "payment would go from {} to {next}, which the payment state machine forbids",
                self.status
            )));
        }
        self.status = next;
        Ok(())
    }
}

/// A card refund booked and sent to the gateway, not yet confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRefund {
    /// The pending ledger transfer that books it.
    pub transfer: TransferId,
    /// Minor units.
    pub amount_minor: i64,
}

/// A payment the worker gave up on after its retries (operators see it; the rider is
/// offered cash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// What could not be done.
    pub action: GatewayAction,
    /// The last error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up.
    pub at: Timestamp,
}

/// A gateway report refused because its amount disagreed with what was due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayMismatch {
    /// The gateway.
    pub gateway: String,
    /// Its event id.
    pub event_id: String,
    /// What the event was.
    pub kind: String,
    /// What it reported, minor units.
    pub reported_minor: i64,
    /// What was due (0 when nothing of the kind was).
    pub due_minor: i64,
    /// When.
    pub at: Timestamp,
}

/// A call the payment worker must make to the gateway for a card trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayAction {
    /// Hold the estimate on the card (at accept).
    Authorize {
        /// Minor units.
        amount_minor: i64,
    },
    /// Take this much (the final fare, or a cancellation fee).
    Capture {
        /// Minor units.
        amount_minor: i64,
    },
    /// Release the authorisation.
    Void,
    /// Give this much back: an admin's refund, booked as the pending transfer `transfer`.
    Refund {
        /// Minor units.
        amount_minor: i64,
        /// The refund's pending ledger transfer (one gateway call per refund).
        transfer: TransferId,
    },
}

impl GatewayAction {
    /// The action's name (in idempotency keys and event ids).
    pub fn name(&self) -> &'static str {
        match self {
            GatewayAction::Authorize { .. } => "authorize",
            GatewayAction::Capture { .. } => "capture",
            GatewayAction::Void => "void",
            GatewayAction::Refund { .. } => "refund",
        }
    }

    /// The amount it moves (0 for a void).
    pub fn amount_minor(&self) -> i64 {
        match *self {
            GatewayAction::Authorize { amount_minor }
            | GatewayAction::Capture { amount_minor }
            | GatewayAction::Refund { amount_minor, .. } => amount_minor,
            GatewayAction::Void => 0,
        }
    }
}
