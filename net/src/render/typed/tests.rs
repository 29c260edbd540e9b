//! The typed rendering against the `Value` one it replaced (kept here, verbatim, as the
//! oracle): the same bytes for trips in every status, to every viewer, with every
//! optional part present or not, and text that needs escaping.

use std::sync::{Arc, LazyLock};

use dispatch_core::clock::Timestamp;
use dispatch_core::driver::Fix;
use dispatch_core::route::{RouteSource, StraightLine};
use dispatch_core::trip::{CancelReason, Cancellation, CancelledBy, Parcel, PaymentStatus};
use dispatch_core::user::RatingTotals;
use dispatch_core::{
    Actor, Category, Engine, EngineConfig, LatLng, NewTrip, NewUser, PaymentMethod, Place, Role, Trip, TripKind,
    TripStatus, User, Vehicle,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{Cards, Viewer, enum_str, first_name, place, rating, time, vehicle_card};
use crate::eta::{Eta, Leg};
use crate::http::rfc3339;

/// The rendering before the typed one (`render::trip` of 2026-12), verbatim.
mod oracle {
    use super::*;
    use crate::render::eta;

    fn driver_card(t: &Trip, cards: &Cards) -> Value {
        let Some(d) = &cards.driver else { return Value::Null };
        let vehicle = vehicle_card(d);
        let name = first_name(&d.name);
        let mut card = json!({"id": d.id.to_string(), "name": name, "rating": rating(&d.rating), "vehicle": vehicle});
        let live = matches!(t.status, TripStatus::Accepted | TripStatus::Arrived | TripStatus::InProgress);
        if let (true, Some(f)) = (live, cards.driver_fix) {
            card["location"] = json!({"lat": f.point.lat(), "lng": f.point.lng(), "at": rfc3339(f.at)});
        }
        card
    }

    fn rider_card(cards: &Cards) -> Value {
        let Some(r) = &cards.rider else { return Value::Null };
        json!({"id": r.id.to_string(), "first_name": first_name(&r.name), "rating": rating(&r.rating)})
    }

    pub fn trip(t: &Trip, viewer: Viewer, cards: &Cards) -> Value {
        let f = &t.fare;
        let mut v = json!({
            "id": t.id.to_string(),
            "ref": t.reference.to_string(),
            "status": t.status.as_str(),
            "kind": match t.kind { dispatch_core::TripKind::Ride => "ride", dispatch_core::TripKind::Parcel => "parcel" },
            "rider_id": t.rider_id.to_string(),
            "driver_id": t.driver_id.map(|d| d.to_string()),
            "zone_id": t.zone_id.to_string(),
            "category": t.category.as_str(),
            "pickup": place(&t.pickup),
            "dropoff": place(&t.dropoff),
            "stops": t.stops.iter().map(place).collect::<Vec<_>>(),
            "fare": {
                "estimate_minor": f.estimate_minor,
                "final_minor": f.final_minor,
                "currency": f.currency.code(),
                "currency_exponent": f.currency.exponent(),
                "surge_bps": f.surge_bps,
                "discount_minor": f.discount_minor,
                "cancel_fee_minor": f.cancel_fee_minor,
            },
            "payment": {
                "method": enum_str(&t.payment.method),
                "status": enum_str(&t.payment.status),
                "cash_offered": t.payment.cash_offered(),
                "captured_minor": t.payment.captured_minor,
                "refunded_minor": t.payment.refunded_minor,
                "refunds_pending_minor": t.payment.pending_refunds_minor(),
                "cash_claimed_at": time(t.payment.cash_claimed_at),
            },
            "pickup_code_locked": t.code_failures >= dispatch_core::trip::MAX_CODE_FAILURES,
            "created_at": rfc3339(t.created_at),
            "updated_at": rfc3339(t.updated_at),
            "accepted_at": time(t.accepted_at),
            "arrived_at": time(t.arrived_at),
            "started_at": time(t.started_at),
            "ended_at": time(t.ended_at),
            "distance_m": t.distance_m,
            "driven_m": t.driven_m,
            "scheduled_at": time(t.scheduled_at),
            "dispatch": {
                "round": t.round,
                "drivers_offered": t.drivers_offered(),
                "nearby_drivers": t.nearby_drivers,
            },
        });
        if viewer == Viewer::Rider {
            v["pickup_code"] = json!(t.pickup_code.to_string());
        }
        v["driver"] = match viewer {
            Viewer::Rider | Viewer::Driver | Viewer::Staff => driver_card(t, cards),
            Viewer::Other => Value::Null,
        };
        v["rider"] = match viewer {
            Viewer::Driver | Viewer::Staff => rider_card(cards),
            Viewer::Rider | Viewer::Other => Value::Null,
        };
        if let Some(p) = &t.parcel {
            v["parcel"] = json!({
                "weight_kg": f64::from(p.weight_g) / 1000.0,
                "description": p.description,
                "recipient_phone": p.recipient_phone,
                "delivery_code_locked": t.delivery_code_failures >= dispatch_core::trip::MAX_CODE_FAILURES,
            });
        }
        if let Some(b) = t.rider_offer_minor {
            v["bid"] = json!({"amount_minor": b});
        }
        v["eta"] = cards.eta.map_or(Value::Null, |e| eta(&e));
        v["cancellation"] = match &t.cancellation {
            Some(c) => {
                json!({"by": enum_str(&c.by), "reason_code": c.code.as_str(), "reason": c.reason, "at": rfc3339(c.at)})
            }
            None => Value::Null,
        };
        v
    }

    pub fn offer(t: &Trip, expires_at: Timestamp, distance_to_pickup_m: u32) -> Value {
        json!({
            "trip_id": t.id.to_string(),
            "pickup": place(&t.pickup),
            "dropoff": place(&t.dropoff),
            "stops": t.stops.iter().map(place).collect::<Vec<_>>(),
            "category": t.category.as_str(),
            "fare": {"amount_minor": t.fare.estimate_minor, "currency": t.fare.currency.code(),
                     "currency_exponent": t.fare.currency.exponent()},
            "distance_to_pickup_m": distance_to_pickup_m,
            "expires_at": rfc3339(expires_at),
        })
    }
}

/// A trip booked on an in-memory engine, its rider and its driver (with a vehicle):
/// the records every case starts from.
struct Base {
    trip: Trip,
    rider: User,
    driver: User,
}

static BASE: LazyLock<Base> = LazyLock::new(|| {
    let engine = Engine::open(EngineConfig::default()).unwrap();
    engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
    let economy = Category::new("economy").unwrap();
    let user = |role, name: &str, phone: &str, vehicle| {
        let new = NewUser { id: None, role, name: name.into(), phone: phone.into(), vehicle };
        engine.create_user(Actor::Admin, new).unwrap()
    };
    let mut car = Vehicle::new(economy.clone(), "B 1234".to_owned());
    car.make = Some("Toyota".into());
    car.color = Some("white \"pearl\"".into());
    let driver = user(Role::Driver, "Karim  Adel", "+201100000001", Some(car));
    let rider = user(Role::Rider, "Mona Z. \u{e9}\u{1F600}", "+201200000001", None);
    let at = LatLng::new(30.0444, 31.2357).unwrap();
    let to = LatLng::new(30.0544, 31.2457).unwrap();
    let new = NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(at),
        dropoff: Place::at(to),
        stops: Vec::new(),
        category: economy,
        parcel: None,
        payment_method: PaymentMethod::Cash,
        route: StraightLine::default().between(at, to),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    };
    let trip = engine.create_trip(rider.id, new).unwrap();
    Base { trip: (*trip).clone(), rider: (*rider).clone(), driver: (*driver).clone() }
});

const STATUSES: [TripStatus; 8] = [
    TripStatus::Searching,
    TripStatus::Accepted,
    TripStatus::Arrived,
    TripStatus::InProgress,
    TripStatus::Completed,
    TripStatus::Cancelled,
    TripStatus::Expired,
    TripStatus::Scheduled,
];
const VIEWERS: [Viewer; 4] = [Viewer::Rider, Viewer::Driver, Viewer::Staff, Viewer::Other];
const PAYMENTS: [PaymentStatus; 4] =
    [PaymentStatus::Pending, PaymentStatus::Captured, PaymentStatus::PartiallyRefunded, PaymentStatus::Failed];
const TEXTS: [&str; 4] = ["", "Tahrir Sq.", "\"gate\" 3\n\\ back \u{1F695}", "\u{0}\u{1f}\u{7f} é"];

/// Which optional parts a case has, and the values that vary.
#[derive(Debug, Clone)]
struct Case {
    status: usize,
    viewer: usize,
    driver_assigned: bool,
    cards: (bool, bool, bool),
    eta: Option<(bool, u64, bool)>,
    stops: Vec<Option<usize>>,
    address: Option<usize>,
    times: [Option<i64>; 6],
    cancelled: Option<usize>,
    parcel: Option<(u32, usize)>,
    bid: Option<i64>,
    ratings: (u32, u32),
    codes: (u8, u8),
    money: (i64, Option<i64>, Option<i64>, i64, u32),
    payment: (bool, usize),
    counts: (Option<u32>, Option<u32>, Option<u32>, u16),
}

fn case() -> impl Strategy<Value = Case> {
    let t = proptest::option::of(0i64..2_000_000_000_000);
    (
        (0..STATUSES.len(), 0..VIEWERS.len(), any::<bool>(), any::<(bool, bool, bool)>()),
        (
            proptest::option::of((any::<bool>(), 0u64..100_000, any::<bool>())),
            proptest::collection::vec(proptest::option::of(0..TEXTS.len()), 0..3),
            proptest::option::of(0..TEXTS.len()),
            proptest::array::uniform6(t),
        ),
        (
            proptest::option::of(0..TEXTS.len()),
            proptest::option::of((1u32..100_000_000, 0..TEXTS.len())),
            proptest::option::of(-5i64..1_000_000),
            (0u32..12, 0u32..12),
            (0u8..7, 0u8..7),
        ),
        (
            (
                any::<i64>(),
                proptest::option::of(any::<i64>()),
                proptest::option::of(0i64..10_000),
                0i64..999,
                any::<u32>(),
            ),
            (any::<bool>(), 0..PAYMENTS.len()),
            (
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                any::<u16>(),
            ),
        ),
    )
        .prop_map(
            |(
                (status, viewer, driver_assigned, cards),
                (eta, stops, address, times),
                (cancelled, parcel, bid, ratings, codes),
                (money, payment, counts),
            )| Case {
                status,
                viewer,
                driver_assigned,
                cards,
                eta,
                stops,
                address,
                times,
                cancelled,
                parcel,
                bid,
                ratings,
                codes,
                money,
                payment,
                counts,
            },
        )
}

/// The trip, viewer and cards of `c`.
fn build(c: &Case) -> (Trip, Viewer, Cards) {
    let base = &*BASE;
    let mut t = base.trip.clone();
    let ts = Timestamp::from_millis;
    t.status = STATUSES[c.status];
    t.driver_id = c.driver_assigned.then_some(base.driver.id);
    let text = |i: usize| TEXTS[i].to_owned();
    let at = |i: Option<usize>| {
        let mut p = Place::at(LatLng::new(30.0 + i.unwrap_or(0) as f64 * 0.013_7, 31.2).unwrap());
        p.address = i.map(text);
        p
    };
    t.pickup.address = c.address.map(text);
    t.stops = c.stops.iter().map(|s| at(*s)).collect();
    [t.accepted_at, t.arrived_at, t.started_at, t.ended_at, t.scheduled_at, t.payment.cash_claimed_at] =
        c.times.map(|m| m.map(ts));
    t.cancellation = c.cancelled.map(|i| Cancellation {
        by: [CancelledBy::Rider, CancelledBy::Driver, CancelledBy::Staff, CancelledBy::System][i],
        code: [CancelReason::ChangedMind, CancelReason::DriverLate, CancelReason::Unsafe, CancelReason::Other][i],
        reason: text(i),
        at: ts(1_765_000_000_123),
    });
    t.parcel = c.parcel.map(|(weight_g, i)| Parcel {
        weight_g,
        description: text(i),
        recipient_phone: "+201000000000".into(),
        delivery_code: None,
    });
    t.kind = if t.parcel.is_some() { TripKind::Parcel } else { TripKind::Ride };
    t.rider_offer_minor = c.bid;
    (t.code_failures, t.delivery_code_failures) = c.codes;
    (t.fare.estimate_minor, t.fare.final_minor, t.fare.cancel_fee_minor, t.fare.discount_minor, t.fare.surge_bps) =
        c.money;
    t.payment.method = if c.payment.0 { PaymentMethod::Card } else { PaymentMethod::Cash };
    t.payment.status = PAYMENTS[c.payment.1];
    t.payment.captured_minor = c.money.3 * 3;
    t.payment.refunded_minor = c.money.3;
    (t.distance_m, t.driven_m, t.nearby_drivers, t.round) = c.counts;
    let mut rider = base.rider.clone();
    rider.rating = RatingTotals { stars: u64::from(c.ratings.0) * 4 + 1, count: c.ratings.0 };
    let mut driver = base.driver.clone();
    driver.rating = RatingTotals { stars: u64::from(c.ratings.1) * 5 - u64::from(c.ratings.1 / 2), count: c.ratings.1 };
    let (has_rider, has_driver, has_fix) = c.cards;
    let cards = Cards {
        rider: has_rider.then(|| Arc::new(rider)),
        driver: has_driver.then(|| Arc::new(driver)),
        driver_fix: has_fix.then(|| Fix {
            point: LatLng::new(30.01, 31.21).unwrap(),
            at: ts(1_765_000_000_007),
            heading_deg: Some(90.0),
            speed_mps: None,
        }),
        eta: c.eta.map(|(pickup, seconds, router)| Eta {
            leg: if pickup { Leg::Pickup } else { Leg::Dropoff },
            seconds,
            source: if router { RouteSource::Router } else { RouteSource::StraightLine },
            at: ts(1_765_000_000_999),
        }),
    };
    (t, VIEWERS[c.viewer], cards)
}

/// Every status to every viewer, with every card, an ETA and a cancellation.
#[test]
fn every_status_to_every_viewer_renders_the_bytes_of_the_value_rendering() {
    let mut seen = 0;
    for status in 0..STATUSES.len() {
        for viewer in 0..VIEWERS.len() {
            let c = Case {
                status,
                viewer,
                driver_assigned: status > 0,
                cards: (true, true, true),
                eta: Some((status < 3, 420, true)),
                stops: vec![Some(1), None],
                address: Some(2),
                times: [Some(1_765_000_000_001), Some(1_765_000_000_002), None, None, None, None],
                cancelled: (status == 5).then_some(1),
                parcel: (status % 2 == 1).then_some((1_250, 3)),
                bid: (status == 0).then_some(9_000),
                ratings: (5, 3),
                codes: (5, 0),
                money: (4_200, Some(4_350), None, 100, 12_500),
                payment: (false, 1),
                counts: (Some(2_300), Some(2_150), Some(7), 2),
            };
            let (t, viewer, cards) = build(&c);
            let typed = serde_json::to_string(&super::TripOut::new(&t, viewer, &cards)).unwrap();
            let old = oracle::trip(&t, viewer, &cards).to_string();
            assert_eq!(typed, old, "{:?} to {viewer:?}", t.status);
            assert!(typed.contains("\"driver\":{") == (viewer != Viewer::Other));
            assert!(typed.contains("\"pickup_code\":") == (viewer == Viewer::Rider));
            seen += 1;
        }
    }
    assert_eq!(seen, 32);
}

proptest! {
    #[test]
    fn a_trip_renders_the_bytes_of_the_value_rendering(c in case()) {
        let (t, viewer, cards) = build(&c);
        let typed = serde_json::to_string(&super::TripOut::new(&t, viewer, &cards)).unwrap();
        prop_assert_eq!(&typed, &oracle::trip(&t, viewer, &cards).to_string());
        // And as the frame the sockets get.
        let frame = serde_json::to_string(&super::TripUpdatedFrame::new(super::TripOut::new(&t, viewer, &cards))).unwrap();
        let old_frame = json!({"type": "trip_updated", "trip": oracle::trip(&t, viewer, &cards)}).to_string();
        prop_assert_eq!(frame, old_frame);
    }

    #[test]
    fn an_offer_renders_the_bytes_of_the_value_rendering(c in case(), expires in 0i64..4_000_000_000_000, m in any::<u32>()) {
        let (t, _, _) = build(&c);
        let expires = Timestamp::from_millis(expires);
        let typed = serde_json::to_string(&super::TripOfferFrame::new(super::OfferOut::new(&t, expires, m))).unwrap();
        let old = json!({"type": "trip_offer", "offer": oracle::offer(&t, expires, m)}).to_string();
        prop_assert_eq!(typed, old);
    }
}
