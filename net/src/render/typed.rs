//! The hot answers as typed JSON: a trip (what a booking, an accept and every step of a
//! ride answer, and the `trip_updated` frame) and a driver's offer (`trip_offer`),
//! serialised straight from the records they show: no `serde_json::Value` tree, no map of
//! owned keys, no `String` per id or time (ids and times are written through `Display`).
//!
//! Guarantees: the bytes are the ones the `Value` rendering wrote (same fields, same
//! values, and the same key order: `serde_json` without `preserve_order` wrote a `Value`'s
//! keys sorted, so every struct here declares its fields sorted; the tests check the bytes
//! against that rendering, kept there as their oracle); what a viewer may see is decided
//! by [`Viewer`] as before: `pickup_code` for the rider alone, the `driver` card for the
//! rider, the driver and staff, the `rider` card for the driver and staff.

use std::fmt;

use dispatch_core::clock::Timestamp;
use dispatch_core::driver::Fix;
use dispatch_core::trip::Place;
use dispatch_core::user::RatingTotals;
use dispatch_core::{Trip, TripStatus, User};
use serde::{Serialize, Serializer};

use super::{Cards, Viewer, first_name};
use crate::eta::{Eta, Leg};
use crate::http::Rfc3339;

/// A value written through its `Display` (an id, a reference, a code): no `String` in between.
#[derive(Debug, Clone, Copy)]
pub struct Shown<T>(pub T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An instant, written as RFC 3339 UTC with milliseconds.
type Time = Rfc3339;

fn time(t: Timestamp) -> Time {
    Rfc3339(t)
}

fn time_opt(t: Option<Timestamp>) -> Option<Time> {
    t.map(time)
}

/// A pickup, a stop or a drop-off: `{"address"?,"lat","lng"}`.
#[derive(Serialize)]
pub struct PlaceOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    lat: f64,
    lng: f64,
}

impl<'a> PlaceOut<'a> {
    /// `p` as the API shows it.
    pub fn of(p: &'a Place) -> Self {
        PlaceOut { address: p.address.as_deref(), lat: p.point.lat(), lng: p.point.lng() }
    }
}

/// A trip's stops, written as an array of places without collecting them first.
pub struct Stops<'a>(&'a [Place]);

impl Serialize for Stops<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(PlaceOut::of))
    }
}

/// A user's shown rating (`null` until [`RatingTotals::SHOWN_FROM`] ratings).
#[derive(Serialize)]
pub struct RatingOut {
    average: f64,
    count: u32,
}

fn rating(r: &RatingTotals) -> Option<RatingOut> {
    r.shown_average().map(|average| RatingOut { average, count: r.count })
}

/// A driver's vehicle on a trip's card (no year).
#[derive(Serialize)]
struct VehicleCard<'a> {
    category: &'a str,
    color: &'a Option<String>,
    make: &'a Option<String>,
    model: &'a Option<String>,
    plate: &'a str,
}

/// Where the driver is, while coming or driving.
#[derive(Serialize)]
struct Located {
    at: Time,
    lat: f64,
    lng: f64,
}

/// The driver's card of a trip.
#[derive(Serialize)]
struct DriverCard<'a> {
    id: Shown<dispatch_core::UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Located>,
    name: &'a str,
    rating: Option<RatingOut>,
    vehicle: Option<VehicleCard<'a>>,
}

fn driver_card<'a>(t: &Trip, d: &'a User, fix: Option<Fix>) -> DriverCard<'a> {
    let live = matches!(t.status, TripStatus::Accepted | TripStatus::Arrived | TripStatus::InProgress);
    DriverCard {
        id: Shown(d.id),
        location: fix.filter(|_| live).map(|f| Located { at: time(f.at), lat: f.point.lat(), lng: f.point.lng() }),
        // API.md: `driver.name` is the name the driver is shown by, the first name.
        name: first_name(&d.name),
        rating: rating(&d.rating),
        vehicle: d.vehicle.as_ref().map(|v| VehicleCard {
            category: v.category.as_str(),
            color: &v.color,
            make: &v.make,
            model: &v.model,
            plate: &v.plate,
        }),
    }
}

/// The rider's card of a trip.
#[derive(Serialize)]
struct RiderCard<'a> {
    first_name: &'a str,
    id: Shown<dispatch_core::UserId>,
    rating: Option<RatingOut>,
}

/// `{"amount_minor"}`: the price a bidding trip's rider named.
#[derive(Serialize)]
struct BidOut {
    amount_minor: i64,
}

#[derive(Serialize)]
struct CancellationOut<'a> {
    at: Time,
    by: dispatch_core::trip::CancelledBy,
    reason: &'a str,
    reason_code: &'static str,
}

#[derive(Serialize)]
struct DispatchOut {
    drivers_offered: usize,
    nearby_drivers: Option<u32>,
    round: u16,
}

/// An ETA: the seconds of the leg it measured, the other `null`.
#[derive(Serialize)]
pub struct EtaOut {
    at: Time,
    dropoff_s: Option<u64>,
    pickup_s: Option<u64>,
    source: dispatch_core::route::RouteSource,
}

impl EtaOut {
    /// `e` as the API shows it.
    pub fn of(e: &Eta) -> Self {
        let (pickup_s, dropoff_s) = match e.leg {
            Leg::Pickup => (Some(e.seconds), None),
            Leg::Dropoff => (None, Some(e.seconds)),
        };
        EtaOut { at: time(e.at), dropoff_s, pickup_s, source: e.source }
    }
}

#[derive(Serialize)]
struct FareOut<'a> {
    cancel_fee_minor: Option<i64>,
    currency: &'a str,
    currency_exponent: u8,
    discount_minor: i64,
    estimate_minor: i64,
    final_minor: Option<i64>,
    surge_bps: u32,
}

#[derive(Serialize)]
struct ParcelOut<'a> {
    delivery_code_locked: bool,
    description: &'a str,
    recipient_phone: &'a str,
    weight_kg: f64,
}

#[derive(Serialize)]
struct PaymentOut {
    captured_minor: i64,
    cash_claimed_at: Option<Time>,
    cash_offered: bool,
    method: dispatch_core::PaymentMethod,
    refunded_minor: i64,
    refunds_pending_minor: i64,
    status: dispatch_core::trip::PaymentStatus,
}

/// A trip as one viewer may see it ([`super::trip`]); serialises to API.md's trip object.
#[derive(Serialize)]
pub struct TripOut<'a> {
    accepted_at: Option<Time>,
    arrived_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid: Option<BidOut>,
    cancellation: Option<CancellationOut<'a>>,
    category: &'a str,
    created_at: Time,
    dispatch: DispatchOut,
    distance_m: Option<u32>,
    driven_m: Option<u32>,
    driver: Option<DriverCard<'a>>,
    driver_id: Option<Shown<dispatch_core::UserId>>,
    dropoff: PlaceOut<'a>,
    ended_at: Option<Time>,
    eta: Option<EtaOut>,
    fare: FareOut<'a>,
    id: Shown<dispatch_core::TripId>,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parcel: Option<ParcelOut<'a>>,
    payment: PaymentOut,
    pickup: PlaceOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pickup_code: Option<Shown<&'a dispatch_core::trip::PickupCode>>,
    pickup_code_locked: bool,
    #[serde(rename = "ref")]
    reference: Shown<dispatch_core::trip_ref::TripRef>,
    rider: Option<RiderCard<'a>>,
    rider_id: Shown<dispatch_core::UserId>,
    scheduled_at: Option<Time>,
    started_at: Option<Time>,
    status: &'static str,
    stops: Stops<'a>,
    updated_at: Time,
    zone_id: Shown<dispatch_core::id::ZoneId>,
}

impl<'a> TripOut<'a> {
    /// `t` as `viewer` may see it, its people from `cards`.
    pub fn new(t: &'a Trip, viewer: Viewer, cards: &'a Cards) -> Self {
        let f = &t.fare;
        let p = &t.payment;
        let locked = dispatch_core::trip::MAX_CODE_FAILURES;
        let sees_driver = matches!(viewer, Viewer::Rider | Viewer::Driver | Viewer::Staff);
        let sees_rider = matches!(viewer, Viewer::Driver | Viewer::Staff);
        TripOut {
            accepted_at: time_opt(t.accepted_at),
            arrived_at: time_opt(t.arrived_at),
            bid: t.rider_offer_minor.map(|amount_minor| BidOut { amount_minor }),
            cancellation: t.cancellation.as_ref().map(|c| CancellationOut {
                at: time(c.at),
                by: c.by,
                reason: &c.reason,
                reason_code: c.code.as_str(),
            }),
            category: t.category.as_str(),
            created_at: time(t.created_at),
            dispatch: DispatchOut {
                drivers_offered: t.drivers_offered(),
                nearby_drivers: t.nearby_drivers,
                round: t.round,
            },
            distance_m: t.distance_m,
            driven_m: t.driven_m,
            driver: cards.driver.as_deref().filter(|_| sees_driver).map(|d| driver_card(t, d, cards.driver_fix)),
            driver_id: t.driver_id.map(Shown),
            dropoff: PlaceOut::of(&t.dropoff),
            ended_at: time_opt(t.ended_at),
            eta: cards.eta.as_ref().map(EtaOut::of),
            fare: FareOut {
                cancel_fee_minor: f.cancel_fee_minor,
                currency: f.currency.code(),
                currency_exponent: f.currency.exponent(),
                discount_minor: f.discount_minor,
                estimate_minor: f.estimate_minor,
                final_minor: f.final_minor,
                surge_bps: f.surge_bps,
            },
            id: Shown(t.id),
            kind: match t.kind {
                dispatch_core::TripKind::Ride => "ride",
                dispatch_core::TripKind::Parcel => "parcel",
            },
            // Never the delivery code: it is the recipient's, sent by SMS only.
            parcel: t.parcel.as_ref().map(|p| ParcelOut {
                delivery_code_locked: t.delivery_code_failures >= locked,
                description: &p.description,
                recipient_phone: &p.recipient_phone,
                weight_kg: f64::from(p.weight_g) / 1000.0,
            }),
            payment: PaymentOut {
                captured_minor: p.captured_minor,
                cash_claimed_at: time_opt(p.cash_claimed_at),
                cash_offered: p.cash_offered(),
                method: p.method,
                refunded_minor: p.refunded_minor,
                refunds_pending_minor: p.pending_refunds_minor(),
                status: p.status,
            },
            pickup: PlaceOut::of(&t.pickup),
            pickup_code: (viewer == Viewer::Rider).then_some(Shown(&t.pickup_code)),
            pickup_code_locked: t.code_failures >= locked,
            reference: Shown(t.reference),
            rider: cards.rider.as_deref().filter(|_| sees_rider).map(|r| RiderCard {
                first_name: first_name(&r.name),
                id: Shown(r.id),
                rating: rating(&r.rating),
            }),
            rider_id: Shown(t.rider_id),
            scheduled_at: time_opt(t.scheduled_at),
            started_at: time_opt(t.started_at),
            status: t.status.as_str(),
            stops: Stops(&t.stops),
            updated_at: time(t.updated_at),
            zone_id: Shown(t.zone_id),
        }
    }
}

#[derive(Serialize)]
struct OfferFare<'a> {
    amount_minor: i64,
    currency: &'a str,
    currency_exponent: u8,
}

/// A live offer to a driver (`GET /v1/driver/offers`, WS `trip_offer`).
#[derive(Serialize)]
pub struct OfferOut<'a> {
    category: &'a str,
    distance_to_pickup_m: u32,
    dropoff: PlaceOut<'a>,
    expires_at: Time,
    fare: OfferFare<'a>,
    pickup: PlaceOut<'a>,
    stops: Stops<'a>,
    trip_id: Shown<dispatch_core::TripId>,
}

impl<'a> OfferOut<'a> {
    /// The offer of `t` expiring at `expires_at`, its pickup `distance_to_pickup_m` away.
    pub fn new(t: &'a Trip, expires_at: Timestamp, distance_to_pickup_m: u32) -> Self {
        OfferOut {
            category: t.category.as_str(),
            distance_to_pickup_m,
            dropoff: PlaceOut::of(&t.dropoff),
            expires_at: time(expires_at),
            fare: OfferFare {
                amount_minor: t.fare.estimate_minor,
                currency: t.fare.currency.code(),
                currency_exponent: t.fare.currency.exponent(),
            },
            pickup: PlaceOut::of(&t.pickup),
            stops: Stops(&t.stops),
            trip_id: Shown(t.id),
        }
    }
}

/// `{"trip","type":"trip_updated"}`: a trip's change on a socket.
#[derive(Serialize)]
pub struct TripUpdatedFrame<'a> {
    /// The trip as the socket's viewer may see it.
    pub trip: TripOut<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> TripUpdatedFrame<'a> {
    /// The frame of `trip`.
    pub fn new(trip: TripOut<'a>) -> Self {
        TripUpdatedFrame { trip, kind: "trip_updated" }
    }
}

/// `{"offer","type":"trip_offer"}`: an offer on a driver's socket.
#[derive(Serialize)]
pub struct TripOfferFrame<'a> {
    /// The offer.
    pub offer: OfferOut<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> TripOfferFrame<'a> {
    /// The frame of `offer`.
    pub fn new(offer: OfferOut<'a>) -> Self {
        TripOfferFrame { offer, kind: "trip_offer" }
    }
}

/// `value` as JSON text (a frame): these shapes hold only strings, numbers, booleans and
/// nulls under string keys, which always serialise.
pub fn to_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests;
