//! The trip: its record, its offers, and the statuses it moves through.
//!
//! ```text
//! scheduled ──at scheduled_at − schedule_lead_s──▶ searching
//!     └──rider / staff cancel (free)──▶ cancelled
//!
//! searching ──accept──▶ accepted ──arrived──▶ arrived ──start(code)──▶ in_progress ──complete──▶ completed
//!     │  ▲                 │                     │
//!     │  └─driver cancel───┴─────────────────────┘      (the trip goes back to searching)
//!     ├──rider / staff cancel (from any open status)──▶ cancelled
//!     └──no accept by timeout_s──▶ expired
//! ```
//!
//! This module holds the data and the rules that concern a trip alone; the steps
//! that also change a driver (accept, cancel, complete) are applied together in
//! [`crate::state`], in one command, so a trip and its driver can never disagree.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fare::{Breakdown, CouponDiscount, Pricing};
use crate::geo::LatLng;
use crate::id::{BidId, CouponId, TripId, UserId, ZoneId};
use crate::money::Currency;
/// How a rider pays lives beside money (a user's default names one too); a trip records one.
pub use crate::money::PaymentMethod;
use crate::route::Route;
use crate::trip_ref::TripRef;
use crate::user::Category;

/// The payment's types live in [`crate::trip_payment`]; a trip records one payment.
pub use crate::trip_payment::{DeadLetter, GatewayAction, GatewayMismatch, PaymentStatus, PendingRefund, TripPayment};

/// The cancellation types live in [`crate::cancellation`]; a trip records one.
pub use crate::cancellation::{CancelReason, Cancellation, CancelledBy, EXPIRED_REASON};

/// Where a trip goes in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripStatus {
    /// Looking for a driver: offers are out.
    Searching,
    /// A driver has it and is driving to the pickup.
    Accepted,
    /// The driver is at the pickup.
    Arrived,
    /// The rider (or parcel) is on board.
    InProgress,
    /// Done; the fare is final.
    Completed,
    /// Cancelled by the rider or by staff.
    Cancelled,
    /// No driver accepted before the dispatch timeout.
    Expired,
    /// Booked ahead (`scheduled_at`): no offers yet; dispatch starts `schedule_lead_s`
    /// before the time asked for. (Last, so the encodings of the others do not move.)
    Scheduled,
}

impl TripStatus {
    /// Not yet at one of the ends (completed, cancelled, expired).
    pub fn is_open(self) -> bool {
        !self.is_terminal()
    }

    /// Completed, cancelled or expired: nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, TripStatus::Completed | TripStatus::Cancelled | TripStatus::Expired)
    }

    /// A driver is assigned (accepted, arrived, in progress).
    pub fn has_driver(self) -> bool {
        matches!(self, TripStatus::Accepted | TripStatus::Arrived | TripStatus::InProgress)
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TripStatus::Scheduled => "scheduled",
            TripStatus::Searching => "searching",
            TripStatus::Accepted => "accepted",
            TripStatus::Arrived => "arrived",
            TripStatus::InProgress => "in_progress",
            TripStatus::Completed => "completed",
            TripStatus::Cancelled => "cancelled",
            TripStatus::Expired => "expired",
        }
    }

    /// Whether the state machine has an edge from `self` to `next`. The single
    /// source of truth for the diagram above; `apply` asserts it on every change.
    pub fn can_become(self, next: TripStatus) -> bool {
        use TripStatus::*;
        matches!(
            (self, next),
            (Scheduled, Searching | Cancelled)
                | (Searching, Accepted | Cancelled | Expired)
                | (Accepted, Arrived | Searching | Cancelled)
                | (Arrived, InProgress | Searching | Cancelled)
                | (InProgress, Completed | Cancelled)
        )
    }
}

impl fmt::Display for TripStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ride or a parcel delivery: the same lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripKind {
    /// People.
    #[default]
    Ride,
    /// A parcel for a recipient.
    Parcel,
}

/// A pickup or drop-off point, with an optional address line for the driver.
///
/// Serialized flat, as the API writes it: `{"lat":..,"lng":..,"address":..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PlaceRepr", into = "PlaceRepr")]
pub struct Place {
    /// Where.
    pub point: LatLng,
    /// What to show the driver (plain text; renderers escape it).
    pub address: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceRepr {
    lat: f64,
    lng: f64,
    #[serde(default)]
    address: Option<String>,
}

impl TryFrom<PlaceRepr> for Place {
    type Error = crate::geo::CoordinateError;
    fn try_from(r: PlaceRepr) -> Result<Self, Self::Error> {
        Ok(Place { point: LatLng::new(r.lat, r.lng)?, address: r.address })
    }
}

impl From<Place> for PlaceRepr {
    fn from(p: Place) -> Self {
        PlaceRepr { lat: p.point.lat(), lng: p.point.lng(), address: p.address }
    }
}

/// Longest address line accepted.
pub const MAX_ADDRESS_LEN: usize = 300;

/// The most stops a trip may make between pickup and drop-off (API.md: "up to 3").
pub const MAX_STOPS: usize = 3;

/// Checks a trip's stops: at most [`MAX_STOPS`], each a valid place.
pub(crate) fn validate_stops(stops: &[Place]) -> Result<()> {
    if stops.len() > MAX_STOPS {
        return Err(Error::Invalid(format!("stops: at most {MAX_STOPS} stops, got {}", stops.len())));
    }
    stops.iter().try_for_each(Place::validate)
}

impl Place {
    /// A place with no address line.
    pub fn at(point: LatLng) -> Self {
        Self { point, address: None }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match &self.address {
            Some(a) if a.chars().count() > MAX_ADDRESS_LEN || a.chars().any(char::is_control) => Err(Error::Invalid(
                format!("address must be at most {MAX_ADDRESS_LEN} characters without control characters"),
            )),
            _ => Ok(()),
        }
    }
}

/// What a parcel trip carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parcel {
    /// Weight in grams (the API takes `weight_kg`; the server converts).
    pub weight_g: u32,
    /// What it is.
    pub description: String,
    /// Who receives it (E.164).
    pub recipient_phone: String,
    /// Filled by the writer: the code the recipient gets by SMS and gives the driver at
    /// the door; completing the trip needs it. Never shown to the driver (nor in any
    /// trip the API renders).
    pub delivery_code: Option<DeliveryCode>,
}

/// A parcel's delivery code: four digits, like the pickup code.
pub type DeliveryCode = PickupCode;

impl Parcel {
    /// The weight's upper bound is the category's (`fare::Pricing::max_parcel_g`),
    /// checked where the trip is priced: one limit, in one place.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.weight_g == 0 {
            return Err(Error::InvalidParam {
                param: "parcel.weight_kg",
                message: "a parcel weighs at least 1 g".into(),
            });
        }
        let len = self.description.chars().count();
        if !(1..=200).contains(&len) || self.description.chars().any(char::is_control) {
            return Err(Error::Invalid("parcel description must be 1-200 characters".into()));
        }
        crate::user::validate_phone(&self.recipient_phone)
    }
}

/// The trip's price: the estimate locked at creation and the final fare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripFare {
    /// The price shown at booking, locked into the trip.
    pub estimate_minor: i64,
    /// Set at completion.
    pub final_minor: Option<i64>,
    /// The currency of the trip's zone.
    pub currency: Currency,
    /// The surge multiplier locked at booking (10000 = ×1.0).
    pub surge_bps: u32,
    /// The coupon's discount in the estimate.
    pub discount_minor: i64,
    /// What was priced at booking, kept to price the final fare the same way.
    pub locked: LockedPrice,
    /// The estimate's lines (they add up to `estimate_minor`).
    pub estimate_breakdown: Breakdown,
    /// The final fare's lines, at completion.
    pub final_breakdown: Option<Breakdown>,
    /// The cancellation fee charged, if a rider cancelled late.
    pub cancel_fee_minor: Option<i64>,
}

/// The prices in force when the trip was booked: a zone edited later does not change them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedPrice {
    /// The category's pricing in the trip's zone.
    pub pricing: Pricing,
    /// The zone's extra fee.
    pub extra_fee_minor: i64,
    /// The coupon redeemed, if any.
    pub coupon: Option<LockedCoupon>,
    /// The route the estimate priced.
    pub route: Route,
    /// A price agreed by bidding: the fare is exactly this, whatever the route.
    pub agreed_minor: Option<i64>,
}

/// A coupon redeemed by a trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedCoupon {
    /// Its id.
    pub id: CouponId,
    /// What the rider typed.
    pub code: String,
    /// What it takes off.
    pub discount: CouponDiscount,
}

/// One driver's price for a bidding trip (inDrive style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The bid's id.
    pub id: BidId,
    /// The bidding driver.
    pub driver_id: UserId,
    /// The driver's price, in the trip's currency.
    pub amount_minor: i64,
    /// How far the driver was from the pickup.
    pub distance_to_pickup_m: u32,
    /// When.
    pub at: Timestamp,
}

/// The most bids one trip keeps (one per offered driver at most).
pub const MAX_BIDS_PER_TRIP: usize = MAX_OFFERS_PER_TRIP;

/// A star rating left after a completed trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// 1 to 5.
    pub stars: u8,
    /// Optional words.
    pub comment: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// The longest rating comment, characters.
pub const MAX_COMMENT_LEN: usize = 1000;

/// The 4-digit code the rider tells the driver at pickup.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PickupCode(u16);

impl PickupCode {
    /// The code from 64 random bits (uniform enough over 0000–9999: bias < 10⁻¹⁵).
    pub fn from_random(bits: u64) -> Self {
        Self((bits % 10_000) as u16)
    }

    /// The code if `s` is exactly four ASCII digits.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok().map(Self) } else { None }
    }
}

impl fmt::Display for PickupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl fmt::Debug for PickupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PickupCode(****)")
    }
}

/// Why an offer was taken back from a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// Someone (another driver, or this driver on another trip) took it.
    Taken,
    /// The trip was cancelled.
    Cancelled,
    /// The trip expired, the offer lapsed, or its driver stopped being reachable (went
    /// offline, was suspended, lost the socket). API.md's `offer_withdrawn.reason` has
    /// no closer value than `expired` for the last: from the driver's side the offer is
    /// simply over.
    Expired,
}

/// Where one driver's offer of one trip stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferState {
    /// Out, waiting for the driver.
    Pending,
    /// The driver took the trip.
    Accepted,
    /// The driver said no.
    Declined,
    /// Nobody answered before `expires_at`.
    Lapsed,
    /// Taken back before an answer.
    Withdrawn(WithdrawReason),
    /// The driver accepted, then cancelled: the trip went back to searching.
    Released,
}

/// A trip offered to one driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Who.
    pub driver_id: UserId,
    /// In which round of the trip's dispatch (1-based).
    pub round: u16,
    /// When it went out.
    pub offered_at: Timestamp,
    /// When it lapses.
    pub expires_at: Timestamp,
    /// How far the driver was from the pickup, great-circle.
    pub distance_to_pickup_m: u32,
    /// Where it stands.
    pub state: OfferState,
}

/// Longest cancellation reason kept.
pub const MAX_REASON_LEN: usize = 500;

/// A trip and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// Unguessable id.
    pub id: TripId,
    /// Where it stands.
    pub status: TripStatus,
    /// Ride or parcel.
    pub kind: TripKind,
    /// Who asked for it.
    pub rider_id: UserId,
    /// Who drives it, while a driver is assigned.
    pub driver_id: Option<UserId>,
    /// The vehicle category asked for.
    pub category: Category,
    /// Pickup.
    pub pickup: Place,
    /// Drop-off.
    pub dropoff: Place,
    /// Where the ride stops on the way, in order (at most [`MAX_STOPS`]): the route, and
    /// so the fare, is pickup → stops → drop-off.
    pub stops: Vec<Place>,
    /// Parcel trips only.
    pub parcel: Option<Parcel>,
    /// Price.
    pub fare: TripFare,
    /// Payment.
    pub payment: TripPayment,
    /// Shown to the rider only; checked at start.
    pub pickup_code: PickupCode,
    /// Every offer made, in order (bounded by [`MAX_OFFERS_PER_TRIP`]).
    pub offers: Vec<Offer>,
    /// The current dispatch round (0 before the first).
    pub round: u16,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// How many changes the trip has had since it was created (0 at creation): the
    /// archive removes a trip from the hot state only at the revision its history row
    /// holds, so no change made after a checkpoint is lost (see `history.rs`).
    pub revision: u32,
    /// When the current search began: creation, or a driver's cancellation.
    /// The trip expires `timeout_s` after this with no accept.
    pub searching_since: Timestamp,
    /// Last accepted by a driver.
    pub accepted_at: Option<Timestamp>,
    /// The driver reached the pickup.
    pub arrived_at: Option<Timestamp>,
    /// The ride started.
    pub started_at: Option<Timestamp>,
    /// Completed, cancelled or expired.
    pub ended_at: Option<Timestamp>,
    /// The distance billed at completion: the driver's report bounded by what the engine
    /// saw driven and the planned route (see [`crate::fare::billed_distance_m`]).
    pub distance_m: Option<u32>,
    /// The distance the engine saw driven while the ride was in progress (the sum of the
    /// great-circle steps between the driver's published positions), set at completion.
    pub driven_m: Option<u32>,
    /// Set when cancelled.
    pub cancellation: Option<Cancellation>,
    /// The zone the pickup is in; its prices were locked at booking.
    pub zone_id: ZoneId,
    /// Bidding trips: the price the rider named (drivers see it and may bid).
    pub rider_offer_minor: Option<i64>,
    /// Bids made by offered drivers (bidding trips only; bounded by [`MAX_BIDS_PER_TRIP`]).
    pub bids: Vec<Bid>,
    /// Wrong pickup codes tried at start; at [`MAX_CODE_FAILURES`] the start is locked
    /// until staff unlock it (so the 4-digit code cannot be guessed).
    pub code_failures: u8,
    /// Wrong delivery codes tried at completion (parcels); at [`MAX_CODE_FAILURES`] only
    /// staff complete the trip (or unlock the code for the driver to try again).
    pub delivery_code_failures: u8,
    /// The rider's rating of the ride.
    pub rider_rating: Option<Rating>,
    /// The driver's rating of the rider.
    pub driver_rating: Option<Rating>,
    /// A ride booked ahead: when the rider wants it (the trip is `scheduled` until
    /// dispatch starts `schedule_lead_s` before). `None` for a ride now.
    pub scheduled_at: Option<Timestamp>,
    /// Eligible drivers within `search_radius_m` of the pickup found by the last round
    /// (counted up to [`MAX_NEARBY_COUNTED`]); `None` before the first round.
    pub nearby_drivers: Option<u32>,
    /// The short reference support reads over the phone (`7KQ-2M4`), unique among the
    /// trips of the last 30 days.
    pub reference: TripRef,
    /// The trip's chat, oldest first (bounded by [`crate::chat::MAX_MESSAGES_PER_TRIP`];
    /// the rules are in [`crate::chat`]). Shared: a change to the trip that is not a
    /// message copies the list's pointer, not the list.
    pub messages: std::sync::Arc<Vec<crate::chat::Message>>,
}

/// Nearby drivers are counted up to this many (a round's count, an estimate's): the count
/// is for the rider's eyes, and counting further would make a round's work grow with the
/// density of the city.
pub const MAX_NEARBY_COUNTED: u32 = 100;

/// The earliest a ride may be booked ahead: 15 minutes (inclusive).
pub const MIN_SCHEDULE_AHEAD_S: u32 = 15 * 60;

/// The latest a ride may be booked ahead: 7 days (inclusive).
pub const MAX_SCHEDULE_AHEAD_S: u32 = 7 * 24 * 60 * 60;

/// Wrong pickup codes after which a trip's start is locked (the 5th locks it): guessing
/// one of 10,000 codes then takes staff's help.
pub const MAX_CODE_FAILURES: u8 = 5;

/// No trip makes more offers than this, whatever the rounds: it bounds the trip's size.
pub const MAX_OFFERS_PER_TRIP: usize = 500;

impl Trip {
    /// This driver's offer of the trip, if one was ever made.
    pub fn offer_to(&self, driver: UserId) -> Option<&Offer> {
        self.offers.iter().find(|o| o.driver_id == driver)
    }

    pub(crate) fn offer_to_mut(&mut self, driver: UserId) -> Option<&mut Offer> {
        self.offers.iter_mut().find(|o| o.driver_id == driver)
    }

    /// Whether a caller may see this trip: its rider, its *current* driver, or staff. The
    /// one rule for every read of a trip (HTTP answers, socket subscriptions, the frames
    /// sent to sockets): a driver who gave the trip back no longer sees it. `user` is the
    /// caller's user id (`None` for a caller with no user record, such as the bootstrap
    /// admin token); `staff` whether the caller is support or admin.
    pub fn visible_to(&self, user: Option<UserId>, staff: bool) -> bool {
        staff || user.is_some_and(|u| u == self.rider_id || Some(u) == self.driver_id)
    }

    /// The distinct drivers offered the trip so far (a driver is offered a trip at most
    /// once: the round skips drivers with an offer of it, whatever its state).
    pub fn drivers_offered(&self) -> usize {
        self.offers.len()
    }

    /// Offers still waiting for an answer.
    pub fn pending_offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.iter().filter(|o| o.state == OfferState::Pending)
    }

    /// Moves to `next`, refusing any step the diagram does not have.
    pub(crate) fn set_status(&mut self, next: TripStatus, now: Timestamp) -> Result<()> {
        if !self.status.can_become(next) {
            return Err(Error::Internal(format!(
                "trip {} would go from {} to {next}, which the state machine forbids",
                self.id, self.status
            )));
        }
        self.status = next;
        self.updated_at = now;
        Ok(())
    }

    pub(crate) fn refuse(&self, action: &'static str) -> Error {
        Error::InvalidTransition { action, entity: format!("trip {}", self.id), from: self.status.as_str() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagram_has_exactly_these_edges() {
        use TripStatus::*;
        let all = [Scheduled, Searching, Accepted, Arrived, InProgress, Completed, Cancelled, Expired];
        let edges: Vec<_> =
            all.iter().flat_map(|a| all.iter().map(move |b| (*a, *b))).filter(|(a, b)| a.can_become(*b)).collect();
        assert_eq!(
            edges,
            vec![
                (Scheduled, Searching),
                (Scheduled, Cancelled),
                (Searching, Accepted),
                (Searching, Cancelled),
                (Searching, Expired),
                (Accepted, Searching),
                (Accepted, Arrived),
                (Accepted, Cancelled),
                (Arrived, Searching),
                (Arrived, InProgress),
                (Arrived, Cancelled),
                (InProgress, Completed),
                (InProgress, Cancelled),
            ]
        );
        for t in [Completed, Cancelled, Expired] {
            assert!(all.iter().all(|n| !t.can_become(*n)), "{t} is terminal");
        }
    }

    #[test]
    fn the_payment_diagram_has_exactly_these_edges() {
        use PaymentStatus::*;
        let all = [Pending, Authorized, Captured, Voided, Expired, PartiallyRefunded, Refunded, Failed];
        let edges: Vec<_> =
            all.iter().flat_map(|a| all.iter().map(move |b| (*a, *b))).filter(|(a, b)| a.can_become(*b)).collect();
        assert_eq!(
            edges,
            vec![
                (Pending, Authorized),
                (Pending, Captured),
                (Pending, Voided),
                (Pending, Expired),
                (Pending, Failed),
                (Authorized, Captured),
                (Authorized, Voided),
                (Authorized, Expired),
                (Authorized, Failed),
                (Captured, PartiallyRefunded),
                (Captured, Refunded),
                (Expired, Captured),
                (PartiallyRefunded, PartiallyRefunded),
                (PartiallyRefunded, Refunded),
                (Failed, Captured),
                (Failed, Voided),
            ]
        );
        // Regressions are refused: a late authorisation never undoes a capture.
        for (from, to) in [(Captured, Authorized), (Voided, Authorized), (Refunded, Captured), (Expired, Authorized)] {
            assert!(!from.can_become(to), "{from} -> {to}");
        }
        for s in all {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        let mut p = TripPayment::new(PaymentMethod::Card);
        p.set_status(Captured).unwrap();
        assert!(p.set_status(Authorized).is_err());
        assert_eq!(p.status, Captured, "a refused step changes nothing");
    }

    #[test]
    fn a_trip_is_visible_to_its_rider_its_current_driver_and_staff_only() {
        use crate::command::{Actor, Command};
        let mut w = crate::testkit::World::new(crate::command::DispatchRules::default());
        let (rider, stranger) = (w.rider(), w.rider());
        let driver = w.driver(0.5);
        let id = w.trip(rider);
        w.accept(driver, id).unwrap();
        let t = w.get(id);
        assert!(t.visible_to(Some(rider), false), "its rider");
        assert!(t.visible_to(Some(driver), false), "its driver");
        assert!(!t.visible_to(Some(stranger), false), "another rider");
        assert!(t.visible_to(None, true) && t.visible_to(Some(stranger), true), "staff, with or without a user");
        assert!(!t.visible_to(None, false), "nobody");
        // A driver who gives the trip back is no longer its driver.
        w.run(
            Actor::User(driver),
            Command::CancelTrip { trip_id: id, code: crate::trip::CancelReason::Other, reason: String::new() },
        )
        .unwrap();
        let t = w.get(id);
        assert_eq!(t.driver_id, None);
        assert!(!t.visible_to(Some(driver), false), "a former driver");
        assert!(t.visible_to(Some(rider), false));
        w.finish();
    }

    #[test]
    fn pickup_codes_are_four_digits_and_hidden_from_debug() {
        assert_eq!(PickupCode::from_random(7).to_string(), "0007");
        assert_eq!(PickupCode::from_random(123_456).to_string(), "3456");
        assert_eq!(PickupCode::parse("0007"), Some(PickupCode::from_random(7)));
        assert_eq!(PickupCode::parse("7"), None);
        assert_eq!(PickupCode::parse("+123"), None);
        assert!(!format!("{:?}", PickupCode::from_random(4821)).contains("4821"));
    }
}
