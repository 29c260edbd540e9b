//! Commands (every change the engine can make), who sends them, and what they yield.
//!
//! A [`Command`] is what goes into the log: the writer fills in fresh ids and random
//! values ([`State::stamp`](crate::state::State::stamp)) *before* applying it, so the logged command carries
//! everything `apply` needs and replay never draws a random number or reads a clock.
//!
//! Why this file is long: it is the log's vocabulary — every [`Command`], its
//! [`Outcome`] and [`Event`] — one enum per
//! concept, each variant documented where it is declared; splitting the variants' payloads
//! away from their enum would make a reader of the log hunt for them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::application::{Application, ApplicationDetails, DocumentKind, MediaType};
use crate::chat::Message;
use crate::clock::Timestamp;
use crate::driver::Driver;
use crate::fare::Coupon;
use crate::geo::LatLng;
use crate::hooks::{Delivery, Endpoint, HookOutcome};
use crate::id::{
    AlertId, BidId, CouponId, DeviceId, EndpointId, EventId, MessageId, NotificationId, ShareId, TransferId, TripId,
    UserId, ZoneId,
};
use crate::ledger::Transfer;
use crate::money::Currency;
use crate::outbox::{AttemptOutcome, Device, Platform};
use crate::payment::PaymentEventKind;
use crate::route::Route;
use crate::trip::{Bid, GatewayAction, Parcel, PaymentMethod, PickupCode, Place, Trip, TripKind, WithdrawReason};
use crate::trip_ref::TripRef;
use crate::user::{Category, Role, User, Vehicle};
use crate::zone::ZoneSpec;
use crate::zone::{CouponRecord, Zone};

/// Who is asking. The engine looks the role up itself; it never trusts a claimed role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Actor {
    /// The engine itself (deadlines) or the embedding program's own logic.
    System,
    /// The bootstrap administrator (the `DISPATCH_ADMIN_TOKEN` holder); has no user record.
    Admin,
    /// A user, whose role is read from the engine's state.
    User(UserId),
}

/// The rules live in [`crate::rules`]; a `SetRules` command replaces them.
pub use crate::rules::{DispatchRules, LearningWeights, MatchingMode};

/// A new user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    /// Filled by the writer.
    pub id: Option<UserId>,
    /// Rider, driver or staff.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// E.164 phone number; unique per role.
    pub phone: String,
    /// Required for drivers, refused for others.
    pub vehicle: Option<Vehicle>,
}

/// A trip request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTrip {
    /// Filled by the writer.
    pub id: Option<TripId>,
    /// Filled by the writer.
    pub pickup_code: Option<PickupCode>,
    /// Filled by the writer: the trip's short reference, free among the last 30 days' trips.
    pub reference: Option<TripRef>,
    /// Ride or parcel.
    pub kind: TripKind,
    /// Pickup.
    pub pickup: Place,
    /// Drop-off.
    pub dropoff: Place,
    /// Stops on the way, in order: at most [`MAX_STOPS`](crate::trip::MAX_STOPS). `route`
    /// is pickup → stops → drop-off, every leg summed.
    pub stops: Vec<Place>,
    /// Vehicle category.
    pub category: Category,
    /// Parcel trips only.
    pub parcel: Option<Parcel>,
    /// How the rider pays.
    pub payment_method: PaymentMethod,
    /// The route from pickup through the stops to drop-off, computed by the caller (routing is I/O, so it
    /// happens before the command and is recorded in it). The engine prices it with the
    /// pickup zone's pricing and surge and locks the price into the trip.
    pub route: Route,
    /// A coupon code to redeem.
    pub coupon: Option<String>,
    /// Bidding trips: the price the rider names; offered drivers may bid against it.
    pub bid_minor: Option<i64>,
    /// A ride booked ahead: when the rider wants it, 15 minutes to 7 days after the
    /// booking (bounds inclusive); `None` for a ride now.
    pub scheduled_at: Option<Timestamp>,
}

/// What `PATCH /v1/me` changes of a user's profile: each field given replaces the
/// user's; `None` leaves it as it is (the optional ones take `Some(None)` to clear).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChange {
    /// A new display name (the rules of user creation).
    pub name: Option<String>,
    /// A new e-mail address, or `Some(None)` to remove it.
    pub email: Option<Option<String>>,
    /// A new language tag (BCP 47).
    pub language: Option<String>,
    /// A new default payment method, or `Some(None)` to remove it.
    pub default_payment_method: Option<Option<PaymentMethod>>,
}

/// An idempotency key, scoped to its principal, with the hash of the request it came
/// with (API.md "Idempotency").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// Who sent it (the user, or the bootstrap admin): keys of different principals never meet.
    pub principal: Actor,
    /// The key itself: 1-255 printable ASCII characters.
    pub key: String,
    /// A hash of the request (method, path, body) computed by the caller.
    pub request_hash: [u8; 32],
}

impl IdempotencyKey {
    /// Longest key, bytes.
    pub const MAX_LEN: usize = 255;

    /// Refuses an empty, too long or non-printable key.
    pub fn validate(&self) -> crate::Result<()> {
        let ok = (1..=Self::MAX_LEN).contains(&self.key.len()) && self.key.bytes().all(|b| (0x20..0x7f).contains(&b));
        if ok {
            Ok(())
        } else {
            Err(crate::Error::Invalid("Idempotency-Key must be 1-255 printable ASCII characters".into()))
        }
    }
}

/// A driver's position report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocationReport {
    /// Where.
    pub point: LatLng,
    /// Degrees from north.
    pub heading_deg: Option<f32>,
    /// Metres per second.
    pub speed_mps: Option<f32>,
}

/// Every change the engine can make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replaces the dispatch rules (system only).
    SetRules(DispatchRules),
    /// Creates a user (admin, or system for OTP sign-up).
    CreateUser(NewUser),
    /// A driver goes online (optionally with a position) or offline.
    SetDriverStatus {
        /// Online or offline.
        online: bool,
        /// A position to start from.
        location: Option<LatLng>,
    },
    /// Staff (admin) suspend or reinstate a driver. A suspended driver goes offline
    /// (at once, or when the current trip ends) and may not go online.
    SetDriverSuspended {
        /// Which driver.
        driver_id: UserId,
        /// Suspend (`true`) or reinstate (`false`).
        suspended: bool,
        /// Why (plain text, kept for the audit trail).
        reason: String,
    },
    /// A driver's position (not waited for fsync: see `dispatch_core::Engine::update_location`).
    UpdateLocation(LocationReport),
    /// Positions the writer published, in the order it published them: the one log
    /// record of a run of accepted position reports (the writer's only, see
    /// [`Command::is_writer_only`]). Replayed as published — the same fixes, the same
    /// odometers, one `DriverMoved` each — without the reports' checks, which passed
    /// when they were applied.
    Positions(Vec<(UserId, crate::driver::Fix)>),
    /// A rider asks for a trip; the first dispatch round starts at once.
    CreateTrip(NewTrip),
    /// An offered driver takes the trip.
    AcceptTrip {
        /// Which.
        trip_id: TripId,
    },
    /// An offered driver says no; the trip moves on to the next drivers.
    DeclineTrip {
        /// Which.
        trip_id: TripId,
    },
    /// The assigned driver is at the pickup.
    DriverArrived {
        /// Which.
        trip_id: TripId,
    },
    /// The assigned driver starts the ride with the rider's pickup code.
    StartTrip {
        /// Which.
        trip_id: TripId,
        /// As typed by the driver.
        pickup_code: String,
    },
    /// The assigned driver ends the ride.
    CompleteTrip {
        /// Which.
        trip_id: TripId,
        /// Distance actually driven, if the app measured it.
        distance_m: Option<u32>,
        /// Where the ride actually ended, if not at the planned drop-off.
        dropoff: Option<LatLng>,
    },
    /// The rider (terminal), staff (terminal, no fee) or the assigned driver (back to searching) cancels.
    CancelTrip {
        /// Which.
        trip_id: TripId,
        /// Why, as a code ([`crate::trip::CancelReason::Other`] when the caller gave none).
        code: crate::trip::CancelReason,
        /// Why (plain text).
        reason: String,
    },
    /// Fires every deadline due at the command's time (offer lapses, timeouts, re-dispatch).
    Tick,
    /// An admin creates a zone.
    CreateZone {
        /// Filled by the writer.
        id: Option<ZoneId>,
        /// What the zone is.
        zone: Box<ZoneSpec>,
    },
    /// An admin replaces a zone's spec (trips already booked keep their locked prices).
    ReplaceZone {
        /// Which.
        zone_id: ZoneId,
        /// The new spec.
        zone: Box<ZoneSpec>,
    },
    /// An admin creates a coupon. `coupon.id` is replaced by `id`, which the writer fills.
    CreateCoupon {
        /// Filled by the writer.
        id: Option<CouponId>,
        /// The coupon.
        coupon: Box<Coupon>,
    },
    /// An offered driver names a price for a bidding trip.
    PlaceBid {
        /// Filled by the writer.
        id: Option<BidId>,
        /// Which trip.
        trip_id: TripId,
        /// The driver's price, minor units of the trip's currency.
        amount_minor: i64,
    },
    /// The rider picks a bid: the trip is assigned to its driver at its price, atomically.
    AcceptBid {
        /// Which trip.
        trip_id: TripId,
        /// Which bid.
        bid_id: BidId,
    },
    /// The rider or the driver rates a completed trip (once each).
    RateTrip {
        /// Which.
        trip_id: TripId,
        /// 1 to 5.
        stars: u8,
        /// Optional words.
        comment: Option<String>,
    },
    /// The rider or the driver of a trip raises a safety alert.
    RaiseSos {
        /// Filled by the writer.
        id: Option<AlertId>,
        /// Which trip.
        trip_id: TripId,
        /// Where, if the app knows.
        location: Option<LatLng>,
        /// A short note.
        note: Option<String>,
    },
    /// The trip's rider or driver, or staff, post a chat message (rules: `crate::chat`).
    PostMessage {
        /// Filled by the writer.
        id: Option<MessageId>,
        /// Which trip.
        trip_id: TripId,
        /// As typed (trimmed and checked by `apply`).
        text: String,
        /// Whether the trip's rider had an open socket when the server took the message
        /// (`None`: not known). Recorded by the server, which holds the sockets, as the
        /// writer records ids: a rider without one (or not known to have one) is pushed
        /// the message, and a replay decides the same. Drivers' presence is in the state.
        rider_connected: Option<bool>,
    },
    /// Staff acknowledge an alert.
    AckAlert {
        /// Which.
        alert_id: AlertId,
    },
    /// Staff unlock a trip's pickup code after the wrong codes that locked it (see
    /// `trip::MAX_CODE_FAILURES`): the driver may try again.
    UnlockPickupCode {
        /// Which trip.
        trip_id: TripId,
    },
    /// The trip's driver confirms that the rider paid the fare in cash, after the rider
    /// switched a finished card trip to cash (`SetPaymentMethod`). Only then is the
    /// driver's cash in hand charged with it.
    ConfirmCashReceived {
        /// Which trip.
        trip_id: TripId,
    },
    /// A driver's socket connected or dropped (sent by the gateway, as that driver).
    SetPresence {
        /// Connected (`true`) or gone (`false`).
        connected: bool,
    },
    /// Every token issued to the user before now is refused from now on.
    RevokeTokens {
        /// Whose.
        user_id: UserId,
    },
    /// A one-time sign-in code was generated and sent (by the caller) to `phone`; only
    /// its keyed hash is stored. Refused beyond 1 a minute, 5 an hour, 10 a day, or
    /// while the phone is locked.
    IssueOtp {
        /// E.164 phone number.
        phone: String,
        /// The role the phone signs in as.
        role: Role,
        /// HMAC of the code under the server's secret.
        code_hash: [u8; 32],
    },
    /// A sign-in attempt with a code: on success the user (created for a new rider) is
    /// the outcome; 5 wrong codes lock the phone for an hour.
    VerifyOtp {
        /// E.164 phone number.
        phone: String,
        /// HMAC of the code typed, under the same secret.
        code_hash: [u8; 32],
        /// Filled by the writer: the id a new rider would get.
        new_user_id: Option<UserId>,
    },
    /// Finished trips whose history rows are durable leave the hot state (system only;
    /// logged by the writer after a checkpoint wrote them: see `history.rs`).
    Archive {
        /// Which, each with the revision its history row holds. Each must be terminal;
        /// a trip no longer in the state, or changed since (a later revision: a rating,
        /// a refund, a late payment event), stays where it is — the next checkpoint
        /// writes its new revision and archives it then.
        trips: Vec<(TripId, u32)>,
        /// Settled ledger transfers whose rows are durable too (never an open hold).
        transfer_ids: Vec<TransferId>,
        /// Idempotency keys whose history rows are durable: `(principal, key, expires_at)`.
        /// Each leaves only if the hot entry still expires then (a key that expired and
        /// was used again since is another entry, and stays).
        #[serde(default)]
        keys: Vec<(Actor, String, Timestamp)>,
        /// Gateway event ids whose history rows are durable: `(gateway, event id,
        /// seen_at)`; each leaves only if the hot one was seen then.
        #[serde(default)]
        gateway_events: Vec<(String, String, Timestamp)>,
        /// Acknowledged alerts whose history rows are durable (an acknowledged alert
        /// never changes again).
        #[serde(default)]
        alerts: Vec<AlertId>,
        /// Audit entries whose history rows are durable, by number (issue 20: A).
        #[serde(default)]
        audit: Vec<u64>,
    },
    /// An admin adds money to a rider's wallet (or a driver's earnings), from promotions.
    CreditWallet {
        /// Filled by the writer.
        id: Option<TransferId>,
        /// Whose.
        user_id: UserId,
        /// Minor units, positive.
        amount_minor: i64,
        /// In this currency.
        currency: Currency,
        /// Why (audit trail).
        reason: String,
    },
    /// Staff give back part of what a trip's rider paid.
    Refund {
        /// Filled by the writer.
        id: Option<TransferId>,
        /// Which trip.
        trip_id: TripId,
        /// Minor units, at most captured minus refunded.
        amount_minor: i64,
        /// Why.
        reason: String,
    },
    /// A payment gateway's report (a verified webhook, or the payment worker's call),
    /// applied once per `(gateway, event_id)`.
    PaymentEvent {
        /// Which gateway (`sim`, …).
        gateway: String,
        /// The gateway's event id.
        event_id: String,
        /// What happened.
        kind: PaymentEventKind,
        /// The trip it is about.
        trip_id: TripId,
        /// Minor units.
        amount_minor: i64,
        /// Currency of the amount.
        currency: Currency,
        /// Filled by the writer (whatever the caller put there): when the event id was
        /// first seen, if it is no longer in the hot state but the history still keeps
        /// it — `apply` then answers `duplicate` as for a hot one, and a replay does the
        /// same without reading the history.
        #[serde(default)]
        archived: Option<Timestamp>,
    },
    /// The payment worker gave up on a card trip's due action after its retries
    /// (system only): recorded on the trip, so it survives restarts, is listed to
    /// operators, and the rider is offered cash.
    RecordDeadLetter {
        /// Which trip.
        trip_id: TripId,
        /// The action given up on (must still be the trip's due action).
        action: GatewayAction,
        /// The last error.
        error: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The trip's rider pays another way: a card trip whose card payment failed, was
    /// given up on, or was never authorised switches to cash.
    SetPaymentMethod {
        /// Which trip.
        trip_id: TripId,
        /// The new method (only `cash`).
        method: PaymentMethod,
    },
    /// A trip's rider makes a share link to it (while it is open; at most
    /// [`crate::share::MAX_SHARES_PER_TRIP`] at once).
    CreateShare {
        /// Filled by the writer.
        id: Option<ShareId>,
        /// Which trip.
        trip_id: TripId,
    },
    /// A trip's rider revokes every share link of the trip.
    RevokeShares {
        /// Which trip.
        trip_id: TripId,
    },
    /// A signed-in user changes their own profile.
    UpdateProfile(ProfileChange),
    /// A signed-in user registers a push device; the same token again answers the
    /// device it already is (`created: false`); a sixth drops the oldest.
    RegisterDevice {
        /// Filled by the writer.
        id: Option<DeviceId>,
        /// FCM or APNs.
        platform: Platform,
        /// The push token (1-4096 printable ASCII).
        token: String,
    },
    /// A user removes one of their own devices (anyone else's is `not_found`).
    RemoveDevice {
        /// Which.
        device_id: DeviceId,
    },
    /// The delivery worker reports one try of an outbox item (system only). Refused —
    /// and nothing changes — unless the item is pending and `attempt` is the next one,
    /// so a duplicate report is never counted twice.
    NotificationAttempted {
        /// Which item.
        id: NotificationId,
        /// Which try, from 1: the item's `attempts + 1`.
        attempt: u32,
        /// What the provider answered (with the worker's choice of the next try).
        outcome: AttemptOutcome,
    },
    /// An admin registers an outbound webhook endpoint; the writer fills in its id and
    /// its signing secret (shown once, in the outcome).
    CreateWebhookEndpoint {
        /// Filled by the writer.
        id: Option<EndpointId>,
        /// Filled by the writer: `whsec_` and 64 hex digits.
        secret: Option<String>,
        /// Where deliveries go (checked by the server: https, or http to loopback in
        /// development).
        url: String,
        /// Event patterns: types, `group.*`, or `*`.
        events: Vec<String>,
        /// What the admin wrote about it.
        description: Option<String>,
    },
    /// An admin removes an endpoint, with every delivery to it.
    DeleteWebhookEndpoint {
        /// Which.
        endpoint_id: EndpointId,
    },
    /// An admin sends a finished delivery again: a new series of tries, a new 3-day window.
    ResendWebhook {
        /// To which endpoint.
        endpoint_id: EndpointId,
        /// Which event.
        event_id: EventId,
    },
    /// The webhook worker reports one try of a delivery (system only). Refused — and
    /// nothing changes — unless the delivery is pending, due (the head of its line) and
    /// `attempt` is the next one.
    WebhookAttempted {
        /// To which endpoint.
        endpoint_id: EndpointId,
        /// Which event.
        event_id: EventId,
        /// Which try, from 1: the delivery's `attempts + 1`.
        attempt: u32,
        /// What the endpoint answered (with the worker's choice of the next try).
        outcome: HookOutcome,
    },
    /// A driver asks for a payout of `amount_minor` of its earnings in `currency`: held at
    /// once (a pending transfer), `requested` until staff approve or reject it. Above
    /// what is withdrawable → `insufficient_funds`; below `payout_min_minor` → invalid.
    RequestPayout {
        /// Stamped by the writer.
        id: Option<crate::id::PayoutId>,
        /// Minor units.
        amount_minor: i64,
        /// The earnings' currency.
        currency: Currency,
    },
    /// Staff approve (→ `processing`, sent through the gateway) or reject (→ `rejected`,
    /// the hold returned) a requested payout. Admin only.
    ReviewPayout {
        /// Which.
        payout_id: crate::id::PayoutId,
        /// Approve, or reject.
        approve: bool,
        /// Why (kept on a rejection).
        reason: String,
    },
    /// What the gateway (a signed webhook, or the payment worker's call) reported about a
    /// payout (system only); an event id is applied once.
    PayoutReport {
        /// The gateway's name.
        gateway: String,
        /// Its event id.
        event_id: String,
        /// Which payout.
        payout_id: crate::id::PayoutId,
        /// What happened.
        kind: crate::payout::PayoutReportKind,
        /// The amount the event names, if it names one (checked against the payout's).
        amount_minor: Option<i64>,
    },
    /// A rider or driver asks to top up its wallet through the card gateway: `pending`
    /// until the gateway reports the capture.
    CreateTopUp {
        /// Stamped by the writer.
        id: Option<crate::id::TopUpId>,
        /// Minor units.
        amount_minor: i64,
        /// Its currency.
        currency: Currency,
    },
    /// What the gateway reported about a top-up (system only); an event id is applied once.
    TopUpReport {
        /// The gateway's name.
        gateway: String,
        /// Its event id.
        event_id: String,
        /// Which top-up.
        top_up_id: crate::id::TopUpId,
        /// What happened.
        kind: crate::payout::TopUpReportKind,
        /// The amount the event names.
        amount_minor: i64,
        /// Its currency.
        currency: Currency,
    },
    /// A driver paid cash debt in at an office (admin): a transfer from the platform's
    /// office cash to the driver's cash in hand, at most what the driver owes.
    CashReceived {
        /// Stamped by the writer.
        id: Option<TransferId>,
        /// Which driver.
        driver_id: UserId,
        /// Minor units.
        amount_minor: i64,
        /// Its currency.
        currency: Currency,
        /// Why (a receipt number, the office).
        reason: String,
    },
    /// `command`, about a finished trip that had left the hot state for the history
    /// (a refund, a rating, a late payment event): the writer read the trip back from
    /// the history and carries it here, so `apply` puts it back in the state before
    /// `command` runs — and a replay does the same without reading the history. When
    /// `command` is refused, the trip leaves again: a refusal changes nothing.
    Restored {
        /// The trip as the history holds it (terminal).
        trip: Arc<Trip>,
        /// The change.
        command: Box<Command>,
    },
    /// `command`, remembered under an idempotency key: the first success is stored with
    /// the change itself and returned again for the same key and request.
    Keyed {
        /// The key and the request's hash.
        key: IdempotencyKey,
        /// The change.
        command: Box<Command>,
        /// Filled by the writer (whatever the caller put there): what the history keeps
        /// under the key, if it is no longer in the hot state and not expired — `apply`
        /// then answers from it exactly as from a hot key (the replay, or
        /// `idempotency_key_reused`), and a replay of the log does the same without
        /// reading the history.
        #[serde(default)]
        archived: Option<Arc<Remembered>>,
    },
    // ----- driver applications (`crate::application`) -----
    /// An applicant gives or changes its application's details (while it may edit it).
    PutApplication(Box<ApplicationDetails>),
    /// An applicant uploaded a document: the server stored its bytes under their hash;
    /// the log records only the hash, kind, media type and size.
    AddDocument {
        /// Which document.
        kind: DocumentKind,
        /// SHA-256 of the bytes.
        sha256: [u8; 32],
        /// What the bytes are (sniffed by the server).
        media_type: MediaType,
        /// How many bytes.
        size: u64,
    },
    /// An applicant submits its application for review.
    SubmitApplication,
    /// An admin approves (the applicant becomes a driver) or rejects a submitted application.
    DecideApplication {
        /// Whose.
        driver_id: UserId,
        /// Approve (`true`) or reject.
        approve: bool,
        /// Why (optional, at most `application::MAX_DECISION_REASON_LEN` characters).
        reason: Option<String>,
    },
    // ----- issue 19: parcels and coupon admin -----
    /// The assigned driver ends a parcel trip with the delivery code the recipient got by
    /// SMS (a parcel's `CompleteTrip` from its driver is refused for want of it). A wrong
    /// code is counted ([`Outcome::DeliveryCodeRefused`]); at
    /// [`MAX_CODE_FAILURES`](crate::trip::MAX_CODE_FAILURES) only staff complete it.
    CompleteDelivery {
        /// Which.
        trip_id: TripId,
        /// As typed by the driver.
        delivery_code: String,
        /// Distance actually driven, if the app measured it.
        distance_m: Option<u32>,
        /// Where the ride actually ended, if not at the planned drop-off.
        dropoff: Option<LatLng>,
    },
    /// An admin disables a coupon: later estimates and bookings with it are refused.
    DisableCoupon {
        /// Its code.
        code: String,
    },
    // ----- issue 19: the Stripe gateway -----
    /// The payment worker records the gateway's own reference for a card trip's payment
    /// (Stripe's PaymentIntent id), which later calls (capture, cancel, refund) name
    /// (system only; the trip's gateway only).
    RecordGatewayRef {
        /// Which trip.
        trip_id: TripId,
        /// The gateway that made it (must be the trip's).
        gateway: String,
        /// Its reference: 1-255 printable ASCII characters.
        reference: String,
    },
    // ----- issue 20: A -----
    /// `command`, sent by staff: applied as itself and, when it succeeds, recorded as one
    /// entry of the audit trail (`crate::audit`) with the request's id. Inside `Keyed`
    /// when the request had an idempotency key, so a replayed key writes no second entry.
    Audited {
        /// The request's `X-Request-Id` (1-128 printable ASCII).
        request_id: String,
        /// The staff command (one with an `audit_action`).
        command: Box<Command>,
    },
    /// Staff change runtime settings (`PATCH /v1/admin/settings`): dispatch rules and
    /// zones' bidding and surge, all at once or nothing.
    UpdateSettings(Box<crate::settings::SettingsChange>),
    // ----- issue 20: S -----
    /// An admin creates a staff user (`support`, `admin`, or `support` with a custom role
    /// from the server's `[roles.<name>]`), with the e-mail it will sign in with: the
    /// credentials then hold a setup valid [`SETUP_TTL_S`](crate::staff::SETUP_TTL_S)
    /// whose nonce the writer draws ([`Outcome::StaffCreated`]).
    CreateStaff {
        /// The user (its role `support` or `admin`).
        user: NewUser,
        /// A custom staff role's name (the user's role is then `support`).
        staff_role: Option<String>,
        /// The sign-in e-mail; without one the user signs in with the token it is given
        /// only (v1).
        email: Option<String>,
        /// Filled by the writer (when an e-mail is given): the setup's nonce.
        setup_nonce: Option<u64>,
    },
    /// An admin issues a staff user a new setup (a new password and TOTP once used);
    /// `email` gives or changes its sign-in address (required if it has none).
    IssueStaffSetup {
        /// Whose.
        user_id: UserId,
        /// The sign-in e-mail, if given or changed.
        email: Option<String>,
        /// Filled by the writer: the setup's nonce.
        nonce: Option<u64>,
    },
    /// The server checked a setup token (its MAC and expiry) and hashed the new password:
    /// the setup named by `setup_nonce` is consumed (refused unless it is the user's
    /// pending, unexpired one), the password and the TOTP secret replaced (system only).
    SetupStaff {
        /// Whose.
        user_id: UserId,
        /// The setup the token named.
        setup_nonce: u64,
        /// The new password's Argon2id PHC string (never the password).
        password_hash: String,
        /// Filled by the writer: what the new TOTP secret is derived from.
        totp_nonce: Option<u64>,
    },
    /// A staff sign-in failed (wrong password or code) for this user: counted, and the
    /// account locked at the [`MAX_FAILURES`](crate::staff::MAX_FAILURES)th (system only;
    /// refused while locked).
    StaffLoginFailed {
        /// Whose.
        user_id: UserId,
    },
    /// A staff sign-in passed the server's password and TOTP checks with the code of time
    /// step `step`: accepted unless the account is locked or a step this late was already
    /// used (replay), then the failures are reset and the step remembered (system only).
    StaffLoginSucceeded {
        /// Whose.
        user_id: UserId,
        /// The TOTP time step of the code used.
        step: u64,
    },
    /// A signed-in user signs out: every token issued to it before stops working.
    SignOut,
    // ----- issue 20: U -----
    /// Staff change a user's name, e-mail or vehicle (`PATCH /v1/admin/users/{id}`;
    /// the rules of user creation).
    PatchUser {
        /// Whose.
        user_id: UserId,
        /// What changes.
        change: UserPatch,
    },
    /// Staff block (`blocked`) or unblock a user: a blocked rider cannot book, a blocked
    /// driver is suspended (apart from an admin's own suspension).
    BlockUser {
        /// Whom.
        user_id: UserId,
        /// Block or unblock.
        blocked: bool,
        /// Why (bounded like every reason).
        reason: String,
    },
    /// An admin erases a user's personal data in the state; what lies outside it
    /// (documents, positions, archived chat) is queued for the eraser
    /// (`State::erasures`).
    EraseUser {
        /// Whom.
        user_id: UserId,
    },
    /// The system: an erased user's data outside the state is gone; the user leaves the
    /// erasure queue.
    ErasureFinished {
        /// Whose.
        user_id: UserId,
    },
}

// ----- issue 20: U -----

/// What `PATCH /v1/admin/users/{id}` changes: each field given replaces the user's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new display name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new e-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// A driver's new vehicle (its category must be priced in some zone).
    #[serde(default)]
    pub vehicle: Option<crate::user::Vehicle>,
}

impl Command {
    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::SetRules(_) => "set_rules",
            Command::CreateUser(_) => "create_user",
            Command::SetDriverStatus { .. } => "set_driver_status",
            Command::SetDriverSuspended { .. } => "set_driver_suspended",
            Command::UpdateLocation(_) => "update_location",
            Command::Positions(_) => "positions",
            Command::CreateTrip(_) => "create_trip",
            Command::AcceptTrip { .. } => "accept_trip",
            Command::DeclineTrip { .. } => "decline_trip",
            Command::DriverArrived { .. } => "driver_arrived",
            Command::StartTrip { .. } => "start_trip",
            Command::CompleteTrip { .. } => "complete_trip",
            Command::CancelTrip { .. } => "cancel_trip",
            Command::Tick => "tick",
            Command::CreateZone { .. } => "create_zone",
            Command::ReplaceZone { .. } => "replace_zone",
            Command::CreateCoupon { .. } => "create_coupon",
            Command::PlaceBid { .. } => "place_bid",
            Command::AcceptBid { .. } => "accept_bid",
            Command::RateTrip { .. } => "rate_trip",
            Command::RaiseSos { .. } => "raise_sos",
            Command::PostMessage { .. } => "post_message",
            Command::AckAlert { .. } => "ack_alert",
            Command::UnlockPickupCode { .. } => "unlock_pickup_code",
            Command::ConfirmCashReceived { .. } => "confirm_cash_received",
            Command::SetPresence { .. } => "set_presence",
            Command::RevokeTokens { .. } => "revoke_tokens",
            Command::IssueOtp { .. } => "issue_otp",
            Command::VerifyOtp { .. } => "verify_otp",
            Command::Archive { .. } => "archive",
            Command::CreditWallet { .. } => "credit_wallet",
            Command::Refund { .. } => "refund",
            Command::PaymentEvent { .. } => "payment_event",
            Command::RecordDeadLetter { .. } => "record_dead_letter",
            Command::SetPaymentMethod { .. } => "set_payment_method",
            Command::CreateShare { .. } => "create_share",
            Command::RevokeShares { .. } => "revoke_shares",
            Command::UpdateProfile(_) => "update_profile",
            Command::RegisterDevice { .. } => "register_device",
            Command::RemoveDevice { .. } => "remove_device",
            Command::NotificationAttempted { .. } => "notification_attempted",
            Command::CreateWebhookEndpoint { .. } => "create_webhook_endpoint",
            Command::DeleteWebhookEndpoint { .. } => "delete_webhook_endpoint",
            Command::ResendWebhook { .. } => "resend_webhook",
            Command::WebhookAttempted { .. } => "webhook_attempted",
            Command::RequestPayout { .. } => "request_payout",
            Command::ReviewPayout { .. } => "review_payout",
            Command::PayoutReport { .. } => "payout_report",
            Command::CreateTopUp { .. } => "create_top_up",
            Command::TopUpReport { .. } => "top_up_report",
            Command::CashReceived { .. } => "cash_received",
            Command::Keyed { command, .. } | Command::Restored { command, .. } => command.name(),
            Command::PutApplication(_) => "put_application",
            Command::AddDocument { .. } => "add_document",
            Command::SubmitApplication => "submit_application",
            Command::DecideApplication { .. } => "decide_application",
            Command::CompleteDelivery { .. } => "complete_delivery",
            Command::DisableCoupon { .. } => "disable_coupon",
            Command::RecordGatewayRef { .. } => "record_gateway_ref",
            // ----- issue 20: A -----
            Command::Audited { command, .. } => command.name(),
            Command::UpdateSettings(_) => "update_settings",
            // ----- issue 20: S -----
            Command::CreateStaff { .. } => "create_staff",
            Command::IssueStaffSetup { .. } => "issue_staff_setup",
            Command::SetupStaff { .. } => "setup_staff",
            Command::StaffLoginFailed { .. } => "staff_login_failed",
            Command::StaffLoginSucceeded { .. } => "staff_login_succeeded",
            Command::SignOut => "sign_out",
            // ----- issue 20: U -----
            Command::PatchUser { .. } => "patch_user",
            Command::BlockUser { .. } => "block_user",
            Command::EraseUser { .. } => "erase_user",
            Command::ErasureFinished { .. } => "erasure_finished",
        }
    }

    /// The trip this command acts on, if any (through an idempotency key too): the
    /// writer looks a trip that is not in the hot state up in the history.
    pub fn trip_id(&self) -> Option<TripId> {
        match self {
            Command::AcceptTrip { trip_id }
            | Command::DeclineTrip { trip_id }
            | Command::DriverArrived { trip_id }
            | Command::StartTrip { trip_id, .. }
            | Command::CompleteTrip { trip_id, .. }
            | Command::CancelTrip { trip_id, .. }
            | Command::PlaceBid { trip_id, .. }
            | Command::AcceptBid { trip_id, .. }
            | Command::RateTrip { trip_id, .. }
            | Command::RaiseSos { trip_id, .. }
            | Command::PostMessage { trip_id, .. }
            | Command::Refund { trip_id, .. }
            | Command::PaymentEvent { trip_id, .. }
            | Command::RecordDeadLetter { trip_id, .. }
            | Command::SetPaymentMethod { trip_id, .. }
            | Command::UnlockPickupCode { trip_id }
            | Command::ConfirmCashReceived { trip_id }
            | Command::CompleteDelivery { trip_id, .. }
            | Command::RecordGatewayRef { trip_id, .. } => Some(*trip_id),
            Command::Keyed { command, .. } | Command::Restored { command, .. } => command.trip_id(),
            Command::Audited { command, .. } => command.trip_id(),
            _ => None,
        }
    }

    /// Whether only the writer may issue this command: `Archive` (finished trips leave
    /// the hot state once a checkpoint wrote them), `Restored` (a trip brought back
    /// from the history with the command about it) and `Positions` (the record of
    /// reports it checked). Whatever builds them must have read the history or checked
    /// the reports first; from anyone else, an `Archive` could drop live trips, a
    /// `Restored` could insert a trip its caller made up (`apply` can only check that it is
    /// finished and the one its command is about), and `Positions` could move any driver
    /// anywhere. The runtime refuses them from callers (`dispatch_core::Engine::submit`).
    pub fn is_writer_only(&self) -> bool {
        match self {
            Command::Archive { .. } | Command::Restored { .. } | Command::Positions(_) => true,
            Command::Keyed { command, .. } | Command::Audited { command, .. } => command.is_writer_only(),
            _ => false,
        }
    }

    /// Whether the caller is answered before the command is durable. Only location
    /// updates: a position is re-sent every few seconds, and making drivers wait
    /// for an fsync per position would cost more than losing the last one in a crash.
    pub fn is_durability_exempt(&self) -> bool {
        matches!(self, Command::UpdateLocation(_))
    }
}

/// A success remembered under an idempotency key: in the hot state for a while, then in
/// the history (`history.rs`) until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    /// The hash of the request that produced it.
    pub request_hash: [u8; 32],
    /// What it answered.
    pub outcome: Outcome,
    /// When it was stored (it moves to the history once older than the hot window).
    pub stored_at: Timestamp,
    /// When it may be forgotten: it answers while `now < expires_at`.
    pub expires_at: Timestamp,
}

/// What a command produced, for its caller. Serializable: an idempotent command's
/// outcome is stored with it and answered again to a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Nothing to return.
    Done,
    /// The user created, changed or signed in.
    User(Arc<User>),
    /// The driver's record after the change.
    Driver(Arc<Driver>),
    /// The trip after the change.
    Trip(Arc<Trip>),
    /// The zone created or replaced.
    Zone(Arc<Zone>),
    /// The coupon created.
    Coupon(Arc<CouponRecord>),
    /// The bid placed, and its trip.
    Bid {
        /// The bid.
        bid: Bid,
        /// Its trip, after the change.
        trip: Arc<Trip>,
    },
    /// The alert raised or acknowledged.
    Alert(Arc<Alert>),
    /// The chat message posted.
    Message(Box<Message>),
    /// An OTP was issued; it expires after this many seconds.
    OtpIssued {
        /// Seconds until the code stops working.
        expires_in_s: u32,
    },
    /// A wrong or expired sign-in code was counted (`invalid_otp`); `locked` when it was
    /// the last allowed and the phone is now locked.
    OtpRefused {
        /// The phone is locked from now on.
        locked: bool,
    },
    /// A wrong pickup code was counted (`forbidden`): `attempts_left` more may be tried
    /// before the code locks; `0` when this one locked it (staff can unlock it).
    PickupCodeRefused {
        /// Wrong codes still allowed before the lock.
        attempts_left: u8,
    },
    /// The ledger transfer made (a credit, a refund).
    Transfer(Box<Transfer>),
    /// A gateway event was applied, or was a duplicate and changed nothing.
    PaymentEvent {
        /// Seen before.
        duplicate: bool,
        /// Accepted (its id is remembered) but without effect, and why: it was stale
        /// (the payment had moved past it) or disagreed with what was due.
        ignored: Option<String>,
    },
    /// The share link made, and its trip.
    Share {
        /// The link's id (the server derives its token from it).
        id: ShareId,
        /// The trip it shows.
        trip: Arc<Trip>,
    },
    /// A webhook endpoint made (its secret is in it: the one time it is shown).
    WebhookEndpoint(Arc<Endpoint>),
    /// A delivery, as it is now (a resend).
    WebhookDelivery(Arc<Delivery>),
    /// A push device registered (`created: false`: the token was already this user's
    /// device, which is answered again).
    Device {
        /// The device.
        device: Box<Device>,
        /// New (`201`) or already there (`200`).
        created: bool,
    },
    /// A retried idempotent command: what its first success answered.
    Replayed(Box<Outcome>),
    /// A position report within `location_min_interval_ms` of the driver's last published
    /// position: nothing changed. The writer keeps the report (the newest wins) and
    /// publishes it at `publish_at` unless a newer one comes first; it logs no record
    /// for it.
    Coalesced {
        /// When the report may be published.
        publish_at: Timestamp,
    },
    /// A driver application after the change.
    Application(Arc<Application>),
    /// A wrong delivery code was counted (`forbidden`): `attempts_left` more may be tried
    /// before the code locks; `0` when this one locked it (then only staff complete the
    /// trip, or unlock the code).
    DeliveryCodeRefused {
        /// Wrong codes still allowed before the lock.
        attempts_left: u8,
    },
    /// A payout, as it is now.
    Payout(Arc<crate::payout::Payout>),
    /// A top-up, as it is now.
    TopUp(Arc<crate::payout::TopUp>),
    // ----- issue 20: S -----
    /// A staff user created; with its pending setup (nonce, expiry) when it has an e-mail.
    StaffCreated {
        /// The user.
        user: Arc<User>,
        /// The setup a token is made of.
        setup: Option<(u64, Timestamp)>,
    },
    /// A staff setup issued: its nonce and expiry.
    StaffSetupIssued {
        /// The setup's nonce.
        nonce: u64,
        /// When it stops working.
        expires_at: Timestamp,
    },
    /// A staff user set up: the nonce its TOTP secret is derived from, and its e-mail.
    StaffSetUp {
        /// The sign-in e-mail.
        email: String,
        /// What the TOTP secret is derived from.
        totp_nonce: u64,
    },
    /// A failed staff sign-in counted; `locked` when it locked the account.
    StaffLoginCounted {
        /// The account is locked from now on.
        locked: bool,
    },
}

/// What happened, for the gateway to push and the outbox to deliver. Events are
/// published only after the commands that caused them are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A trip was offered to a driver.
    TripOffered {
        /// The trip as it is now.
        trip: Arc<Trip>,
        /// To whom.
        driver_id: UserId,
        /// When the offer lapses.
        expires_at: Timestamp,
        /// How far the driver is from the pickup.
        distance_to_pickup_m: u32,
    },
    /// An offer was taken back before the driver answered.
    OfferWithdrawn {
        /// Which trip.
        trip_id: TripId,
        /// From whom.
        driver_id: UserId,
        /// Why.
        reason: WithdrawReason,
    },
    /// A trip changed (status, driver, fare…): pushed to its rider and driver.
    TripUpdated {
        /// The trip as it is now.
        trip: Arc<Trip>,
    },
    /// A rider or driver raised a safety alert.
    AlertRaised {
        /// The alert.
        alert: Arc<Alert>,
    },
    /// A driver's socket presence changed while on a trip (the rider sees "temporarily offline").
    DriverPresence {
        /// Who.
        driver_id: UserId,
        /// The trip the driver is on.
        trip_id: TripId,
        /// Connected again (`true`) or gone (`false`).
        connected: bool,
    },
    /// A trip's search found no eligible driver within `search_radius_m` (at booking or
    /// when a round started): its rider learns it at once. Once per search while the
    /// count stays at zero (see `State::dispatch_round`).
    NoDriversNearby {
        /// Which trip.
        trip_id: TripId,
        /// Its rider.
        rider_id: UserId,
    },
    /// A chat message was posted: pushed to the trip's rider and driver and to staff
    /// watching the trip, its sender included.
    ChatMessage {
        /// The trip as it is now (who its rider and driver are).
        trip: Arc<Trip>,
        /// The message.
        message: Message,
    },
    /// A driver's position changed.
    DriverMoved {
        /// Who.
        driver_id: UserId,
        /// The trip the driver is on, if any (its rider sees the position).
        trip_id: Option<TripId>,
        /// Where.
        point: LatLng,
        /// Degrees from north.
        heading_deg: Option<f32>,
        /// When.
        at: Timestamp,
    },
    /// A payout was requested or changed (reviewed, sent, paid, failed): what outbound
    /// `payout.paid` / `payout.failed` come from. Not pushed on the WebSocket.
    PayoutUpdated {
        /// The payout as it is now.
        payout: Arc<crate::payout::Payout>,
    },
}
