//! Rule-by-rule tests of `apply`. The harness checks after every command that a
//! refusal changed nothing and that the invariants hold, and at the end that
//! replaying the recorded commands gives the same state.

use super::*;
use crate::command::{IdempotencyKey, LocationReport};
use crate::id::{IdSource, RandomIds};
use crate::record::{Record, replay};
use crate::route::StraightLine;
use crate::testkit::{CAIRO, World};
use crate::trip::{PaymentMethod, Place};
use crate::user::{Category, Vehicle};

fn rules() -> DispatchRules {
    DispatchRules { offers_per_round: 2, ..DispatchRules::default() }
}

#[test]
fn a_trip_goes_from_searching_to_completed() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(1.0);
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![d]);
    w.accept(d, trip).unwrap();
    assert_eq!(w.state.driver(d).unwrap().availability, Availability::OnTrip);
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.drive(d, 8230.0, 960);
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Completed);
    // API.md's example: 1500 + round(450 × 8.230) + round(75 × 16) + 300 = 1500 + 3704 + 1200 + 300.
    assert_eq!(t.fare.final_minor, Some(6704));
    assert_eq!(t.driver_id, Some(d));
    assert_eq!(w.state.driver(d).unwrap().availability, Availability::Available);
    w.finish();
}

#[test]
fn offers_go_to_the_nearest_eligible_drivers_first() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let far = w.driver(3.0);
    let near = w.driver(0.5);
    let mid = w.driver(1.5);
    let _outside_radius = w.driver(6.0);
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![near, mid], "offers_per_round nearest, nearest first");
    let t = w.get(trip);
    assert!(t.offers[0].distance_to_pickup_m < t.offers[1].distance_to_pickup_m);
    assert!((495..=505).contains(&t.offers[0].distance_to_pickup_m), "{}", t.offers[0].distance_to_pickup_m);

    // The round ends when every offer is answered; then the next nearest.
    w.run(Actor::User(near), Command::DeclineTrip { trip_id: trip }).unwrap();
    assert_eq!(w.offered(trip), vec![mid], "no new round while an offer is pending");
    w.run(Actor::User(mid), Command::DeclineTrip { trip_id: trip }).unwrap();
    assert_eq!(w.offered(trip), vec![far], "the driver beyond the radius is never offered");
    assert_eq!(w.get(trip).round, 2);
    w.finish();
}

#[test]
fn stale_offline_disconnected_busy_and_wrong_category_drivers_are_not_offered() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let stale = w.driver(0.1);
    let offline = w.driver(0.2);
    w.run(Actor::User(offline), Command::SetDriverStatus { online: false, location: None }).unwrap();
    let _comfort = w.driver_at(0.3, "comfort");
    w.advance(31); // `stale`'s position is now older than stale_location_s
    let fresh = w.driver(0.9);
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![fresh]);
    assert!(w.get(trip).offer_to(stale).is_none());
    // A busy driver is not offered a second trip.
    w.accept(fresh, trip).unwrap();
    let rider2 = w.rider();
    let trip2 = w.trip(rider2);
    assert!(w.offered(trip2).is_empty());
    w.finish();
}

#[test]
fn accept_refusals_come_in_the_order_the_api_fixes() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let b = w.driver(1.0);
    let stranger = w.driver(50.0);
    let trip = w.trip(rider);

    let missing = TripId::from_raw(12345).unwrap();
    assert!(matches!(w.accept(a, missing), Err(Error::NotFound { .. })));
    assert_eq!(w.accept(stranger, trip), Err(Error::NotOffered(trip)));
    assert!(matches!(w.run(Actor::User(rider), Command::AcceptTrip { trip_id: trip }), Err(Error::Forbidden(_))));
    w.accept(a, trip).unwrap();
    assert_eq!(w.accept(b, trip), Err(Error::TripAlreadyAssigned(trip)));
    assert_eq!(w.accept(stranger, trip), Err(Error::NotOffered(trip)), "403 comes before 409");
    assert!(matches!(w.accept(a, trip), Err(Error::InvalidTransition { .. })), "accepting twice");

    // b's offer was withdrawn when a took the trip: b is offered a new one and takes it,
    // then tries an old offer of a third trip: driver_not_available comes before offer_expired.
    let events = w.events();
    assert!(events.contains(&Event::OfferWithdrawn { trip_id: trip, driver_id: b, reason: WithdrawReason::Taken }));
    w.finish();
}

#[test]
fn an_offer_withdrawn_because_its_driver_took_another_trip_answers_driver_not_available() {
    let mut w = World::new(DispatchRules { offers_per_round: 1, ..DispatchRules::default() });
    let d = w.driver(0.5);
    let (r1, r2) = (w.rider(), w.rider());
    let t1 = w.trip(r1);
    let t2 = w.trip(r2);
    assert_eq!(w.offered(t1), vec![d]);
    assert_eq!(w.offered(t2), vec![d], "one driver may hold offers of several trips");
    w.accept(d, t1).unwrap();
    assert!(w.offered(t2).is_empty(), "the offer of t2 was withdrawn");
    assert_eq!(w.accept(d, t2), Err(Error::DriverNotAvailable(d)));
    w.finish();
}

#[test]
fn offers_lapse_then_the_next_round_goes_out_then_the_trip_expires() {
    let mut w = World::new(DispatchRules { offers_per_round: 1, offer_ttl_s: 20, timeout_s: 60, ..rules() });
    let rider = w.rider();
    let a = w.driver(0.5);
    let b = w.driver(1.0);
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![a]);
    w.advance(19);
    assert_eq!(w.offered(trip), vec![a]);
    // Past the ttl, before the tick: the offer is already refused.
    w.now = w.now.plus_millis(1_000);
    assert_eq!(w.accept(a, trip), Err(Error::OfferExpired(trip)));
    w.advance(0);
    assert_eq!(w.offered(trip), vec![b]);
    assert_eq!(w.get(trip).offer_to(a).unwrap().state, OfferState::Lapsed);
    assert_eq!(w.state.driver(a).unwrap().pending_offers, vec![]);
    w.advance(20);
    assert!(w.offered(trip).is_empty(), "nobody left to offer");
    assert_eq!(w.get(trip).status, TripStatus::Searching);
    w.advance(20);
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Expired);
    assert_eq!(
        w.accept(b, trip),
        Err(Error::InvalidTransition { action: "accept", entity: format!("trip {trip}"), from: "expired" })
    );
    // The rider may book again: the expired trip no longer counts as open.
    w.trip(rider);
    w.finish();
}

#[test]
fn a_searching_trip_with_nobody_around_finds_a_driver_who_comes_online_later() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let trip = w.trip(rider);
    assert!(w.offered(trip).is_empty());
    let d = w.driver(0.5);
    w.advance(2);
    assert_eq!(w.offered(trip), vec![d]);
    w.finish();
}

#[test]
fn rider_cancel_is_terminal_and_withdraws_offers() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let trip = w.trip(rider);
    w.events();
    w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, reason: "changed my mind".into() }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Cancelled);
    assert_eq!(t.cancellation.as_ref().unwrap().by, CancelledBy::Rider);
    assert!(w.events().contains(&Event::OfferWithdrawn {
        trip_id: trip,
        driver_id: a,
        reason: WithdrawReason::Cancelled
    }));
    assert!(w.state.driver(a).unwrap().pending_offers.is_empty());
    assert!(matches!(
        w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, reason: String::new() }),
        Err(Error::InvalidTransition { .. })
    ));
    w.finish();
}

#[test]
fn driver_cancel_after_accept_sends_the_trip_back_to_searching_without_that_driver() {
    let mut w = World::new(DispatchRules { offers_per_round: 1, ..rules() });
    let rider = w.rider();
    let a = w.driver(0.5);
    let b = w.driver(1.0);
    let trip = w.trip(rider);
    w.accept(a, trip).unwrap();
    w.run(Actor::User(a), Command::DriverArrived { trip_id: trip }).unwrap();
    w.run(Actor::User(a), Command::CancelTrip { trip_id: trip, reason: "flat tyre".into() }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Searching);
    assert_eq!(t.driver_id, None);
    assert_eq!(t.offer_to(a).unwrap().state, OfferState::Released);
    assert_eq!(w.offered(trip), vec![b], "the canceller is not offered it again");
    assert_eq!(w.state.driver(a).unwrap().availability, Availability::Available);
    w.accept(b, trip).unwrap();
    // Once the ride is under way the driver cannot walk away from it.
    w.run(Actor::User(b), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = t.pickup_code.to_string();
    w.run(Actor::User(b), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    assert!(matches!(
        w.run(Actor::User(b), Command::CancelTrip { trip_id: trip, reason: String::new() }),
        Err(Error::InvalidTransition { .. })
    ));
    w.finish();
}

#[test]
fn staff_cancel_is_terminal_and_frees_the_driver() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(a, trip).unwrap();
    w.run(Actor::Admin, Command::CancelTrip { trip_id: trip, reason: "<script>x</script>".into() }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Cancelled);
    assert_eq!(t.cancellation.as_ref().unwrap().by, CancelledBy::Staff);
    assert_eq!(w.state.driver(a).unwrap().availability, Availability::Available);
    w.finish();
}

#[test]
fn start_needs_the_pickup_code_and_the_steps_in_order() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(a, trip).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    assert!(
        matches!(
            w.run(Actor::User(a), Command::StartTrip { trip_id: trip, pickup_code: code.clone() }),
            Err(Error::InvalidTransition { .. })
        ),
        "start before arrived"
    );
    assert!(matches!(
        w.run(Actor::User(a), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }),
        Err(Error::InvalidTransition { .. })
    ));
    w.run(Actor::User(a), Command::DriverArrived { trip_id: trip }).unwrap();
    let wrong = if code == "0000" { "0001" } else { "0000" };
    for bad in [wrong, "12345", "", "abcd"] {
        assert_eq!(
            w.run(Actor::User(a), Command::StartTrip { trip_id: trip, pickup_code: bad.into() }),
            Err(Error::WrongPickupCode(trip))
        );
    }
    // Only the assigned driver moves the trip; the rider may not, strangers learn nothing.
    assert!(matches!(
        w.run(Actor::User(rider), Command::StartTrip { trip_id: trip, pickup_code: code.clone() }),
        Err(Error::Forbidden(_))
    ));
    let stranger = w.rider();
    assert!(matches!(
        w.run(Actor::User(stranger), Command::DriverArrived { trip_id: trip }),
        Err(Error::NotFound { .. })
    ));
    w.run(Actor::User(a), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.finish();
}

#[test]
fn driver_availability_rules() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(a, trip).unwrap();
    assert!(matches!(
        w.run(Actor::User(a), Command::SetDriverStatus { online: false, location: None }),
        Err(Error::InvalidTransition { from: "on_trip", .. })
    ));
    // Going online while on a trip changes nothing.
    w.run(Actor::User(a), Command::SetDriverStatus { online: true, location: None }).unwrap();
    assert_eq!(w.state.driver(a).unwrap().availability, Availability::OnTrip);
    // Going offline withdraws pending offers and moves their trips on.
    let b = w.driver(0.7);
    let c = w.driver(0.8);
    let rider2 = w.rider();
    let t2 = w.trip(rider2);
    assert_eq!(w.offered(t2), vec![b, c]);
    w.run(Actor::User(b), Command::SetDriverStatus { online: false, location: None }).unwrap();
    assert_eq!(w.offered(t2), vec![c]);
    assert!(matches!(
        w.run(Actor::User(rider), Command::SetDriverStatus { online: true, location: None }),
        Err(Error::Forbidden(_))
    ));
    w.finish();
}

#[test]
fn roles_are_read_from_the_state_not_trusted() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let nt = w.new_trip();
    assert!(matches!(w.run(Actor::User(d), Command::CreateTrip(nt.clone())), Err(Error::Forbidden(_))));
    let ghost = UserId::from_raw(99).unwrap();
    assert!(matches!(w.run(Actor::User(ghost), Command::CreateTrip(nt)), Err(Error::Forbidden(_))));
    let new = NewUser { id: None, role: Role::Admin, name: "Eve".into(), phone: "+201099999999".into(), vehicle: None };
    assert!(matches!(w.run(Actor::User(rider), Command::CreateUser(new)), Err(Error::Forbidden(_))));
    assert!(matches!(w.run(Actor::Admin, Command::SetRules(rules())), Err(Error::Forbidden(_))));
    w.finish();
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let dup = NewUser { id: None, role: Role::Rider, name: "Dup".into(), phone: "+201000000001".into(), vehicle: None };
    assert!(matches!(w.run(Actor::Admin, Command::CreateUser(dup)), Err(Error::Invalid(_))), "phone taken");
    let no_car =
        NewUser { id: None, role: Role::Driver, name: "D".into(), phone: "+201077777777".into(), vehicle: None };
    assert!(matches!(w.run(Actor::Admin, Command::CreateUser(no_car)), Err(Error::Invalid(_))));

    let mut t = w.new_trip();
    t.kind = TripKind::Parcel;
    assert!(
        matches!(w.run(Actor::User(rider), Command::CreateTrip(t)), Err(Error::Invalid(_))),
        "parcel without details"
    );
    let mut t = w.new_trip();
    t.pickup.address = Some("x".repeat(301));
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(t)), Err(Error::Invalid(_))));
    let mut t = w.new_trip();
    t.category = Category::new("moto").unwrap();
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(t)), Err(Error::NoPricing(_))));
    let mut t = w.new_trip();
    t.pickup = Place::at(LatLng::new(48.85, 2.35).unwrap());
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(t)), Err(Error::OutsideServiceArea)));
    let mut t = w.new_trip();
    t.kind = TripKind::Parcel;
    t.parcel = Some(crate::trip::Parcel {
        weight_g: 2_000,
        description: "books".into(),
        recipient_phone: "+201055555555".into(),
    });
    w.run(Actor::User(rider), Command::CreateTrip(t)).unwrap();
    let trip = w.trip(rider);
    assert!(matches!(
        w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, reason: "a\u{7}b".into() }),
        Err(Error::Invalid(_))
    ));
    w.finish();
}

#[test]
fn a_rider_has_at_most_the_allowed_number_of_open_trips() {
    let mut w = World::new(DispatchRules { open_trips_per_rider: 2, ..rules() });
    let rider = w.rider();
    let first = w.trip(rider);
    w.trip(rider);
    let nt = w.new_trip();
    assert_eq!(w.run(Actor::User(rider), Command::CreateTrip(nt.clone())), Err(Error::TooManyOpenTrips(2)));
    w.run(Actor::User(rider), Command::CancelTrip { trip_id: first, reason: String::new() }).unwrap();
    w.run(Actor::User(rider), Command::CreateTrip(nt)).unwrap();
    w.finish();
}

#[test]
fn ids_are_stamped_once_and_never_collide() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.trip(rider);
    let mut nt = w.new_trip();
    nt.id = Some(a);
    nt.pickup_code = Some(PickupCode::from_random(1));
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(nt)), Err(Error::Invalid(_))));
    let mut ids = RandomIds::seeded(1);
    assert_ne!(ids.next_u64(), ids.next_u64());
    w.finish();
}

#[test]
fn location_reports_are_validated() {
    let mut w = World::new(rules());
    let d = w.driver(0.5);
    w.advance(5);
    let point = LatLng::new(CAIRO.0 + 0.55 / 111.195, CAIRO.1).unwrap();
    for (heading_deg, speed_mps) in
        [(Some(f32::NAN), None), (Some(360.0), None), (None, Some(-1.0)), (None, Some(f32::INFINITY))]
    {
        let r = w.run(Actor::User(d), Command::UpdateLocation(LocationReport { point, heading_deg, speed_mps }));
        assert!(matches!(r, Err(Error::Invalid(_))), "{heading_deg:?} {speed_mps:?}");
    }
    w.run(
        Actor::User(d),
        Command::UpdateLocation(LocationReport { point, heading_deg: Some(90.0), speed_mps: Some(12.5) }),
    )
    .unwrap();
    assert_eq!(w.state.driver(d).unwrap().fix.unwrap().point, point);
    assert!(matches!(w.events().last(), Some(Event::DriverMoved { .. })));
    w.finish();
}

#[test]
fn a_suspended_driver_goes_offline_and_cannot_come_back_until_reinstated() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let b = w.driver(0.6);
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![a, b]);
    let suspend = |suspended| Command::SetDriverSuspended { driver_id: a, suspended, reason: "complaint".into() };
    assert!(matches!(w.run(Actor::User(rider), suspend(true)), Err(Error::Forbidden(_))));
    w.run(Actor::Admin, suspend(true)).unwrap();
    assert_eq!(w.state.driver(a).unwrap().availability, Availability::Offline);
    assert_eq!(w.offered(trip), vec![b], "the suspended driver's offer was withdrawn");
    assert!(matches!(
        w.run(Actor::User(a), Command::SetDriverStatus { online: true, location: None }),
        Err(Error::Forbidden(_))
    ));
    // Suspended mid-trip: the trip goes on; the driver is offline when it ends.
    w.accept(b, trip).unwrap();
    w.run(Actor::Admin, Command::SetDriverSuspended { driver_id: b, suspended: true, reason: String::new() }).unwrap();
    assert_eq!(w.state.driver(b).unwrap().availability, Availability::OnTrip);
    w.run(Actor::Admin, Command::CancelTrip { trip_id: trip, reason: String::new() }).unwrap();
    assert_eq!(w.state.driver(b).unwrap().availability, Availability::Offline);
    w.run(Actor::Admin, suspend(false)).unwrap();
    w.run(Actor::User(a), Command::SetDriverStatus { online: true, location: None }).unwrap();
    assert!(w.state.user(a).is_some_and(|u| !u.suspended));
    w.finish();
}

// ----- zones, prices, coupons, surge ---------------------------------------------

fn coupon(code: &str, percent_bps: u32, max_uses_per_rider: Option<u64>) -> crate::fare::Coupon {
    crate::fare::Coupon {
        id: crate::id::CouponId::from_raw(1).unwrap(),
        code: code.into(),
        discount: crate::fare::CouponDiscount::Percent { percent_bps, max_discount_minor: None },
        min_fare_minor: None,
        valid_from: None,
        valid_until: None,
        max_uses: None,
        max_uses_per_rider,
        currency: None,
    }
}

impl World {
    fn zone_id(&self) -> ZoneId {
        self.state.price_book().catalog.zones().next().unwrap().id
    }

    fn add_coupon(&mut self, c: crate::fare::Coupon) {
        self.run(Actor::Admin, Command::CreateCoupon { id: None, coupon: Box::new(c) }).unwrap();
    }
}

#[test]
fn only_admins_change_zones_and_a_zone_must_be_valid() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let spec = crate::demo::cairo().unwrap();
    let as_rider = Command::CreateZone { id: None, zone: Box::new(spec.clone()) };
    assert!(matches!(w.run(Actor::User(rider), as_rider), Err(Error::Forbidden(_))));
    let mut bad = spec.clone();
    bad.surge.max_bps = 9_000;
    assert!(matches!(
        w.run(Actor::Admin, Command::CreateZone { id: None, zone: Box::new(bad) }),
        Err(Error::Invalid(_))
    ));
    let mut bad = spec.clone();
    bad.name = String::new();
    assert!(matches!(
        w.run(Actor::Admin, Command::CreateZone { id: None, zone: Box::new(bad) }),
        Err(Error::Invalid(_))
    ));
    let mut bad = spec;
    bad.pricing.values_mut().for_each(|p| p.base_minor = -1);
    let zone_id = w.zone_id();
    let replace = Command::ReplaceZone { zone_id, zone: Box::new(bad) };
    assert!(matches!(w.run(Actor::Admin, replace), Err(Error::Invalid(_))));
    // A driver's category must be priced somewhere.
    let moto = Vehicle { category: Category::new("moto").unwrap(), plate: "M 1".into() };
    let new =
        NewUser { id: None, role: Role::Driver, name: "M".into(), phone: "+201099999999".into(), vehicle: Some(moto) };
    assert!(matches!(w.run(Actor::Admin, Command::CreateUser(new)), Err(Error::Invalid(_))));
    w.finish();
}

#[test]
fn the_price_is_computed_by_the_engine_locked_at_booking_and_equal_to_the_estimate() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let new = w.new_trip();
    let estimate =
        w.state.price_book().estimate(new.pickup.point, &new.route, Some(&new.category), None, rider, w.now).unwrap();
    let trip = w.trip(rider);
    let t = w.get(trip);
    let (_, quote) = &estimate.quotes[0];
    assert_eq!(t.fare.estimate_minor, quote.fare.amount_minor);
    assert_eq!(t.fare.estimate_breakdown, quote.breakdown);
    assert_eq!(t.zone_id, estimate.zone.id);
    // A zone edited after booking does not change the trip's prices.
    let mut dearer = crate::demo::cairo().unwrap();
    dearer.pricing.values_mut().for_each(|p| p.base_minor *= 10);
    let zone_id = w.zone_id();
    w.run(Actor::Admin, Command::ReplaceZone { zone_id, zone: Box::new(dearer) }).unwrap();
    assert_eq!(w.get(trip).fare.locked.pricing, crate::demo::ECONOMY);
    w.finish();
}

#[test]
fn a_coupon_discounts_is_counted_per_rider_and_given_back_on_cancel() {
    let mut w = World::new(rules());
    let rider = w.rider();
    w.add_coupon(coupon("HALF", 5_000, Some(1)));
    let mut new = w.new_trip();
    new.coupon = Some("HALF".into());
    let t = match w.run(Actor::User(rider), Command::CreateTrip(new.clone())).unwrap() {
        Outcome::Trip(t) => t,
        o => panic!("{o:?}"),
    };
    let before = t.fare.estimate_breakdown;
    assert!(t.fare.discount_minor > 0);
    assert_eq!(t.fare.discount_minor, (t.fare.estimate_minor + t.fare.discount_minor + 1) / 2, "half, rounded up");
    assert_eq!(before.discount_minor, t.fare.discount_minor);
    // Used up by this rider while the first trip is open.
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(new.clone())), Err(Error::CouponInvalid(_))));
    let mut unknown = new.clone();
    unknown.coupon = Some("NOPE".into());
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(unknown)), Err(Error::CouponInvalid(_))));
    // Cancelling gives the use back.
    w.run(Actor::User(rider), Command::CancelTrip { trip_id: t.id, reason: "changed plans".into() }).unwrap();
    w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap();
    // Codes are unique.
    let dup = Command::CreateCoupon { id: None, coupon: Box::new(coupon("HALF", 1_000, None)) };
    assert!(matches!(w.run(Actor::Admin, dup), Err(Error::Invalid(_))));
    w.finish();
}

#[test]
fn surge_follows_demand_over_supply_on_its_timer_and_is_locked_into_trips() {
    let rules = DispatchRules { offers_per_round: 1, search_radius_m: 100, stale_location_s: 3_600, ..rules() };
    let mut w = World::new(rules);
    let _driver = w.driver(0.01);
    let riders: Vec<UserId> = (0..3).map(|_| w.rider()).collect();
    let first = w.trip(riders[0]);
    assert_eq!(w.get(first).fare.surge_bps, 10_000, "no surge before the first recomputation");
    // 3 searching trips (the driver was offered one and has not answered), 1 available driver.
    w.trip(riders[1]);
    w.trip(riders[2]);
    w.advance(i64::from(w.state.rules().surge_interval_s));
    let zone = w.zone_id();
    let reading = *w.state.price_book().surge.get(&zone).unwrap();
    assert_eq!((reading.demand, reading.supply), (3, 1));
    assert_eq!(reading.bps, 20_000, "ratio 3.0 → 10000 + 20000/2");
    let late = w.rider();
    let t = w.trip(late);
    assert_eq!(w.get(t).fare.surge_bps, 20_000);
    assert_eq!(w.get(first).fare.surge_bps, 10_000, "booked trips keep their surge");
    w.finish();
}

// ----- bidding, ratings, alerts ------------------------------------------------------

#[test]
fn a_rider_picks_a_bid_and_the_trip_is_assigned_at_that_price_atomically() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let b = w.driver(0.6);
    let mut new = w.new_trip();
    new.bid_minor = Some(4_000);
    let trip = match w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap() {
        Outcome::Trip(t) => t.id,
        o => panic!("{o:?}"),
    };
    assert_eq!(w.get(trip).fare.estimate_minor, 4_000, "the rider's price");
    let bid = |w: &mut World, d: UserId, amount_minor: i64| match w
        .run(Actor::User(d), Command::PlaceBid { id: None, trip_id: trip, amount_minor })
    {
        Ok(Outcome::Bid { bid, .. }) => Ok(bid),
        Ok(o) => panic!("{o:?}"),
        Err(e) => Err(e),
    };
    let stranger = w.driver(50.0);
    assert_eq!(bid(&mut w, stranger, 4_500), Err(Error::NotOffered(trip)));
    assert!(matches!(bid(&mut w, a, 0), Err(Error::Invalid(_))));
    let bid_a = bid(&mut w, a, 4_800).unwrap();
    let bid_b = bid(&mut w, b, 4_500).unwrap();
    assert_eq!(w.get(trip).bids.len(), 2);
    // Only the rider picks.
    let pick = |bid_id| Command::AcceptBid { trip_id: trip, bid_id };
    assert!(matches!(w.run(Actor::User(a), pick(bid_a.id)), Err(Error::Forbidden(_))));
    // Driver b goes busy on another trip: their bid can no longer win.
    let other_rider = w.rider();
    let other = w.trip(other_rider);
    assert!(w.offered(other).contains(&b));
    w.accept(b, other).unwrap();
    assert_eq!(w.run(Actor::User(rider), pick(bid_b.id)), Err(Error::DriverNotAvailable(b)));
    let t = match w.run(Actor::User(rider), pick(bid_a.id)).unwrap() {
        Outcome::Trip(t) => t,
        o => panic!("{o:?}"),
    };
    assert_eq!((t.status, t.driver_id, t.fare.estimate_minor), (TripStatus::Accepted, Some(a), 4_800));
    assert!(matches!(w.run(Actor::User(rider), pick(bid_a.id)), Err(Error::InvalidTransition { .. })));
    // The agreed price is the final fare, whatever the distance; the distance recorded is
    // the billed one (here the driver's 90 km, capped at twice the planned route: no
    // position reached the engine during the ride).
    w.run(Actor::User(a), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(a), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.advance(3_000);
    w.run(Actor::User(a), Command::CompleteTrip { trip_id: trip, distance_m: Some(90_000), dropoff: None }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.fare.final_minor, Some(4_800));
    let planned = u32::try_from(t.fare.locked.route.distance_m).unwrap();
    assert_eq!((t.distance_m, t.driven_m), (Some(2 * planned), Some(0)));
    w.finish();
}

#[test]
fn waiting_beyond_the_free_minutes_is_charged_per_started_minute() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    w.advance(180 + 61); // free 180 s, then 61 s: two started minutes
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.drive(d, 8230.0, 960);
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.fare.final_breakdown.unwrap().waiting_minor, 100);
    assert_eq!(t.fare.final_minor, Some(6704 + 100));
    w.finish();
}

#[test]
fn a_rider_cancelling_late_pays_the_fee_staff_never_charge() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.advance(121);
    w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, reason: "late".into() }).unwrap();
    assert_eq!(w.get(trip).fare.cancel_fee_minor, Some(1000));
    let d = w.driver(0.4); // the first one's position is stale by now
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.advance(500);
    w.run(Actor::Admin, Command::CancelTrip { trip_id: trip, reason: "ops".into() }).unwrap();
    assert_eq!(w.get(trip).fare.cancel_fee_minor, None);
    w.finish();
}

fn complete_a_trip(w: &mut World) -> (UserId, UserId, TripId) {
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    (rider, d, trip)
}

#[test]
fn a_trip_is_rated_once_by_each_side_after_completion() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let open = w.trip(rider);
    let rate = |trip_id, stars| Command::RateTrip { trip_id, stars, comment: Some("ok".into()) };
    assert!(matches!(w.run(Actor::User(rider), rate(open, 5)), Err(Error::InvalidTransition { .. })));
    let (rider, d, trip) = complete_a_trip(&mut w);
    assert!(matches!(w.run(Actor::User(rider), rate(trip, 6)), Err(Error::Invalid(_))));
    w.run(Actor::User(rider), rate(trip, 5)).unwrap();
    assert!(matches!(w.run(Actor::User(rider), rate(trip, 4)), Err(Error::InvalidTransition { .. })));
    w.run(Actor::User(d), rate(trip, 3)).unwrap();
    let other = w.rider();
    assert!(matches!(w.run(Actor::User(other), rate(trip, 1)), Err(Error::NotFound { .. })));
    let t = w.get(trip);
    assert_eq!((t.rider_rating.as_ref().unwrap().stars, t.driver_rating.as_ref().unwrap().stars), (5, 3));
    w.finish();
}

#[test]
fn sos_alerts_are_raised_by_the_trip_people_and_acknowledged_once_by_staff() {
    let mut w = World::new(rules());
    let (rider, _, trip) = complete_a_trip(&mut w);
    let other = w.rider();
    let sos = |trip_id| Command::RaiseSos { id: None, trip_id, location: None, note: Some("help".into()) };
    assert!(matches!(w.run(Actor::User(other), sos(trip)), Err(Error::NotFound { .. })));
    let alert = match w.run(Actor::User(rider), sos(trip)).unwrap() {
        Outcome::Alert(a) => a,
        o => panic!("{o:?}"),
    };
    assert!(alert.location.is_some(), "the driver's last position or the pickup");
    assert!(matches!(w.events().last(), Some(Event::AlertRaised { .. })));
    let ack = Command::AckAlert { alert_id: alert.id };
    assert!(matches!(w.run(Actor::User(rider), ack.clone()), Err(Error::Forbidden(_))));
    w.run(Actor::Admin, ack.clone()).unwrap();
    assert!(matches!(w.run(Actor::Admin, ack), Err(Error::InvalidTransition { .. })));
    assert_eq!(w.state.alert(alert.id).unwrap().status, crate::alert::AlertStatus::Acknowledged);
    w.finish();
}

// ----- accounts, presence, positions ------------------------------------------------------

#[test]
fn otp_wrong_codes_are_counted_durably_and_lock_the_phone() {
    let mut w = World::new(rules());
    let phone = "+201011112222".to_string();
    let issue = |code: u8| Command::IssueOtp { phone: phone.clone(), role: Role::Rider, code_hash: [code; 32] };
    let verify = |code: u8| Command::VerifyOtp { phone: phone.clone(), code_hash: [code; 32], new_user_id: None };
    let someone = w.rider();
    assert!(matches!(w.run(Actor::User(someone), issue(1)), Err(Error::Forbidden(_))));
    w.run(Actor::System, issue(1)).unwrap();
    assert!(matches!(w.run(Actor::System, issue(1)), Err(Error::RateLimited { .. })), "1 a minute");
    for i in 0..4 {
        assert_eq!(w.run(Actor::System, verify(9)).unwrap(), Outcome::OtpRefused { locked: false }, "wrong #{i}");
    }
    assert_eq!(w.run(Actor::System, verify(9)).unwrap(), Outcome::OtpRefused { locked: true });
    assert!(
        matches!(w.run(Actor::System, verify(1)), Err(Error::RateLimited { .. })),
        "locked even for the right code"
    );
    w.advance(3_601);
    w.run(Actor::System, issue(2)).unwrap();
    let user = match w.run(Actor::System, verify(2)).unwrap() {
        Outcome::User(u) => u,
        o => panic!("{o:?}"),
    };
    assert_eq!((user.role, user.phone.as_str()), (Role::Rider, phone.as_str()));
    // The same phone signs in as the same user next time.
    w.advance(61);
    w.run(Actor::System, issue(3)).unwrap();
    assert_eq!(w.run(Actor::System, verify(3)).unwrap(), Outcome::User(user));
    w.finish();
}

#[test]
fn housekeeping_forgets_idle_otp_records_and_keeps_the_others() {
    let mut w = World::new(rules());
    let issue = |phone: &str| Command::IssueOtp { phone: phone.into(), role: Role::Rider, code_hash: [1; 32] };
    w.run(Actor::System, issue("+201011110001")).unwrap();
    w.advance(12 * 3_600);
    w.run(Actor::System, issue("+201011110002")).unwrap();
    // A day after the first send: its record no longer limits anything; the second's does.
    w.advance(12 * 3_600 + 1);
    assert!(w.state.otp("+201011110001").is_none(), "an idle record is forgotten");
    assert!(w.state.otp("+201011110002").is_some(), "a record still limiting sends is kept");
    w.advance(12 * 3_600);
    assert!(w.state.otp("+201011110002").is_none());
    w.finish();
}

#[test]
fn a_driver_signs_in_only_to_an_account_an_admin_made() {
    let mut w = World::new(rules());
    let phone = "+201033334444".to_string();
    w.run(Actor::System, Command::IssueOtp { phone: phone.clone(), role: Role::Driver, code_hash: [5; 32] }).unwrap();
    let verify = Command::VerifyOtp { phone, code_hash: [5; 32], new_user_id: None };
    assert!(matches!(w.run(Actor::System, verify), Err(Error::Forbidden(_))));
    w.finish();
}

#[test]
fn revoking_tokens_bumps_the_generation() {
    let mut w = World::new(rules());
    let rider = w.rider();
    assert!(matches!(w.run(Actor::User(rider), Command::RevokeTokens { user_id: rider }), Err(Error::Forbidden(_))));
    w.run(Actor::Admin, Command::RevokeTokens { user_id: rider }).unwrap();
    assert_eq!(w.state.user(rider).unwrap().token_generation, 1);
    w.finish();
}

#[test]
fn a_disconnected_driver_is_offered_nothing_and_loses_an_unstarted_trip_after_the_grace() {
    let mut w = World::new(DispatchRules { offers_per_round: 1, disconnect_grace_s: 300, ..rules() });
    let rider = w.rider();
    let near = w.driver(0.5);
    let far = w.driver(1.0);
    w.run(Actor::User(near), Command::SetPresence { connected: false }).unwrap();
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![far], "the disconnected driver is skipped");
    w.accept(far, trip).unwrap();
    w.run(Actor::User(far), Command::SetPresence { connected: false }).unwrap();
    assert!(w.events().iter().any(|e| matches!(e, Event::DriverPresence { connected: false, .. })));
    w.advance(299);
    assert_eq!(w.get(trip).status, TripStatus::Accepted, "kept during the grace");
    w.run(Actor::User(far), Command::SetPresence { connected: true }).unwrap();
    w.run(Actor::User(far), Command::SetPresence { connected: false }).unwrap();
    w.advance(2);
    assert_eq!(w.get(trip).status, TripStatus::Accepted, "the grace restarts at each drop");
    w.advance(300);
    let t = w.get(trip);
    assert_eq!((t.status, t.driver_id), (TripStatus::Searching, None));
    assert_eq!(w.state.driver(far).unwrap().availability, Availability::Offline);
    w.finish();
}

#[test]
fn implausible_jumps_are_refused_and_close_reports_coalesce() {
    let mut w = World::new(rules());
    let d = w.driver(0.5);
    let at = |km_north: f64| LatLng::new(CAIRO.0 + km_north / 111.195, CAIRO.1).unwrap();
    let report = |point| Command::UpdateLocation(LocationReport { point, heading_deg: None, speed_mps: None });
    w.advance(10);
    // 50 km in 10 s is 18,000 km/h.
    assert!(matches!(w.run(Actor::User(d), report(at(50.0))), Err(Error::ImplausibleLocation { .. })));
    // 500 m in 10 s is 180 km/h: plausible.
    w.run(Actor::User(d), report(at(1.0))).unwrap();
    assert!(matches!(w.events().last(), Some(Event::DriverMoved { .. })));
    // Within the minimum interval of the last published position: nothing changes, and the
    // writer is told when the report may be published (it holds it until then).
    let published = w.state.driver(d).unwrap().fix.unwrap();
    w.now = w.now.plus_millis(200);
    let before = w.state.clone();
    let held = w.run(Actor::User(d), report(at(1.001))).unwrap();
    assert_eq!(held, Outcome::Coalesced { publish_at: published.at.plus_millis(1_000) });
    assert_eq!(w.state, before, "a coalesced report changes nothing");
    assert!(!w.events().iter().any(|e| matches!(e, Event::DriverMoved { .. })));
    // A jump is refused even within the interval (and counted as spoofing by the writer).
    assert!(matches!(w.run(Actor::User(d), report(at(50.0))), Err(Error::ImplausibleLocation { .. })));
    // Once the interval since the published one is up, the report is published.
    w.now = published.at.plus_millis(1_000);
    assert_eq!(w.run(Actor::User(d), report(at(1.002))), Ok(Outcome::Done));
    assert_eq!(w.state.driver(d).unwrap().fix.unwrap().point, at(1.002));
    assert!(w.events().iter().any(|e| matches!(e, Event::DriverMoved { .. })));
    w.finish();
}

#[test]
fn a_keyed_command_is_answered_again_and_a_reused_key_refused() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let key = |hash: u8| IdempotencyKey { principal: Actor::User(rider), key: "k-1".into(), request_hash: [hash; 32] };
    let keyed = |w: &World, hash| Command::Keyed {
        key: key(hash),
        command: Box::new(Command::CreateTrip(w.new_trip())),
        archived: None,
    };
    let first = w.run(Actor::User(rider), keyed(&w, 1)).unwrap();
    let again = w.run(Actor::User(rider), keyed(&w, 1)).unwrap();
    assert_eq!(again, Outcome::Replayed(Box::new(first)));
    assert_eq!(w.state.trips().count(), 1, "the retry made no second trip");
    assert_eq!(w.run(Actor::User(rider), keyed(&w, 2)), Err(Error::IdempotencyKeyReused));
    // Another principal's key of the same name is another key.
    let other = w.rider();
    let theirs = Command::Keyed {
        key: IdempotencyKey { principal: Actor::User(other), key: "k-1".into(), request_hash: [2; 32] },
        command: Box::new(Command::CreateTrip(w.new_trip())),
        archived: None,
    };
    assert!(matches!(w.run(Actor::User(rider), theirs.clone()), Err(Error::Forbidden(_))));
    w.run(Actor::User(other), theirs).unwrap();
    // Kept 24 hours, then forgotten.
    w.advance(24 * 3600 + 1);
    assert!(w.state.remembered(Actor::User(rider), "k-1").is_none());
    w.finish();
}

/// A keyed trip request whose key moved to the history (`Archive`), sent again with
/// what the history keeps stamped in (as the writer does), answers exactly as a hot key:
/// the same outcome replayed, `idempotency_key_reused` for another request; once expired
/// the stamp no longer counts and the key runs a new request.
#[test]
fn an_archived_key_answers_as_a_hot_one_until_it_expires() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let key = |hash: u8| IdempotencyKey { principal: Actor::User(rider), key: "k-1".into(), request_hash: [hash; 32] };
    let keyed = |w: &World, hash, archived: Option<Arc<Remembered>>| Command::Keyed {
        key: key(hash),
        command: Box::new(Command::CreateTrip(w.new_trip())),
        archived,
    };
    let first = w.run(Actor::User(rider), keyed(&w, 1, None)).unwrap();
    let remembered = Arc::clone(w.state.remembered(Actor::User(rider), "k-1").unwrap());
    assert_eq!((remembered.stored_at, remembered.expires_at), (w.now, w.now.plus_secs(24 * 3600)));
    assert_eq!(w.state.idempotency_keys(), 1);
    // Archive names the expiry: another one (the key used again after expiring) stays hot.
    let archive = |expires_at| Command::Archive {
        trips: vec![],
        transfer_ids: vec![],
        keys: vec![(Actor::User(rider), "k-1".into(), expires_at)],
        gateway_events: vec![],
    };
    w.run(Actor::System, archive(remembered.expires_at.plus_millis(1))).unwrap();
    assert!(w.state.remembered(Actor::User(rider), "k-1").is_some());
    w.run(Actor::System, archive(remembered.expires_at)).unwrap();
    assert!(w.state.remembered(Actor::User(rider), "k-1").is_none());
    assert_eq!(w.state.idempotency_keys(), 0);
    assert_eq!(w.state.next_deadline().map(|d| d <= remembered.expires_at), Some(true));

    w.advance(3600);
    let trips = w.state.trips().count();
    let again = w.run(Actor::User(rider), keyed(&w, 1, Some(Arc::clone(&remembered)))).unwrap();
    assert_eq!(again, Outcome::Replayed(Box::new(first)));
    assert_eq!(w.state.trips().count(), trips, "the retry made no second trip");
    assert_eq!(
        w.run(Actor::User(rider), keyed(&w, 2, Some(Arc::clone(&remembered)))),
        Err(Error::IdempotencyKeyReused)
    );
    // Another principal cannot ride on it: the key is checked against the actor first.
    let other = w.rider();
    assert!(matches!(w.run(Actor::User(other), keyed(&w, 1, Some(Arc::clone(&remembered)))), Err(Error::Forbidden(_))));
    // Expired: the stamp is ignored and the key takes a new request.
    w.now = remembered.expires_at;
    let fresh = w.run(Actor::User(rider), keyed(&w, 2, Some(Arc::clone(&remembered)))).unwrap();
    assert!(matches!(fresh, Outcome::Trip(_)), "{fresh:?}");
    assert_eq!(w.state.trips().count(), trips + 1);
    assert_eq!(w.state.remembered(Actor::User(rider), "k-1").unwrap().request_hash, [2; 32]);
    w.finish();
}

/// The checkpoint takes keys and event ids past the hot window and not expired, oldest
/// first, within its count and byte bounds.
#[test]
fn archivable_keys_and_event_ids_are_past_the_window_unexpired_and_bounded() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let revoke = |n: u32| Command::Keyed {
        key: IdempotencyKey { principal: Actor::Admin, key: format!("key-{n}"), request_hash: [0; 32] },
        command: Box::new(Command::RevokeTokens { user_id: rider }),
        archived: None,
    };
    let t0 = w.now;
    for n in 0..4 {
        w.run(Actor::Admin, revoke(n)).unwrap();
        w.now = w.now.plus_secs(60);
    }
    let names = |v: Vec<(Actor, String, Arc<Remembered>)>| v.into_iter().map(|(_, k, _)| k).collect::<Vec<_>>();
    // Stored at t0, t0+60 s, t0+120 s, t0+180 s.
    assert_eq!(names(w.state.archivable_keys(t0.plus_secs(120), w.now, 10, 1 << 20)), ["key-0", "key-1", "key-2"]);
    assert_eq!(names(w.state.archivable_keys(t0.plus_secs(120), w.now, 2, 1 << 20)), ["key-0", "key-1"]);
    let one = "key-0".len() + ARCHIVED_ENTRY_BYTES;
    assert_eq!(names(w.state.archivable_keys(t0.plus_secs(120), w.now, 10, 2 * one)), ["key-0", "key-1"]);
    assert!(w.state.archivable_keys(t0.plus_millis(-1), w.now, 10, 1 << 20).is_empty());
    // Expired ones are `Tick`'s to forget, not the history's to keep.
    let late = t0.plus_secs(24 * 3600 + 30);
    assert_eq!(names(w.state.archivable_keys(late, late, 10, 1 << 20)), ["key-1", "key-2", "key-3"]);
    assert_eq!(w.state.archivable_gateway_events(w.now, w.now, 10, 1 << 20), vec![]);
    w.finish();
}

// ----- money ------------------------------------------------------------------------------

// ----- positions: the spoofing check, the index, the distance billed ---------------------

fn report_at(point: LatLng) -> Command {
    Command::UpdateLocation(LocationReport { point, heading_deg: None, speed_mps: None })
}

fn km_north(km: f64) -> LatLng {
    LatLng::new(CAIRO.0 + km / 111.195, CAIRO.1).unwrap()
}

#[test]
fn status_location_bypassed_the_spoofing_check() {
    let mut w = World::new(rules());
    let d = w.driver(0.5);
    w.advance(10);
    // 50 km in 10 s through POST /v1/driver/status: refused like a report, nothing changes.
    let jump = Command::SetDriverStatus { online: true, location: Some(km_north(50.0)) };
    assert!(matches!(w.run(Actor::User(d), jump), Err(Error::ImplausibleLocation { .. })));
    assert_eq!(w.state.driver(d).unwrap().fix.unwrap().point, km_north(0.5));
    // A plausible one is published like a report: the position moves and the history hears of it.
    w.events();
    let near = Command::SetDriverStatus { online: true, location: Some(km_north(0.6)) };
    w.run(Actor::User(d), near).unwrap();
    assert_eq!(w.state.driver(d).unwrap().fix.unwrap().point, km_north(0.6));
    assert!(w.events().iter().any(|e| matches!(e, Event::DriverMoved { point, .. } if *point == km_north(0.6))));
    // Going offline with a far position is checked too.
    let far_offline = Command::SetDriverStatus { online: false, location: Some(km_north(40.0)) };
    assert!(matches!(w.run(Actor::User(d), far_offline), Err(Error::ImplausibleLocation { .. })));
    // The first position after going online is free: the driver may have driven home meanwhile.
    w.run(Actor::User(d), Command::SetDriverStatus { online: false, location: None }).unwrap();
    w.advance(10);
    w.run(Actor::User(d), Command::SetDriverStatus { online: true, location: Some(km_north(40.0)) }).unwrap();
    assert_eq!(w.state.driver(d).unwrap().fix.unwrap().point, km_north(40.0));
    // ... and so is the first report after going online without a position.
    w.run(Actor::User(d), Command::SetDriverStatus { online: false, location: None }).unwrap();
    w.advance(10);
    w.run(Actor::User(d), Command::SetDriverStatus { online: true, location: None }).unwrap();
    w.advance(1);
    assert_eq!(w.run(Actor::User(d), report_at(km_north(0.5))), Ok(Outcome::Done));
    // From then on reports are checked against it.
    w.advance(1);
    assert!(matches!(w.run(Actor::User(d), report_at(km_north(20.0))), Err(Error::ImplausibleLocation { .. })));
    w.finish();
}

#[test]
fn offline_and_suspended_drivers_stayed_in_the_spatial_index() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let (a, b, c) = (w.driver(0.5), w.driver(0.6), w.driver(0.7));
    let near = |w: &World| -> Vec<UserId> {
        w.state.drivers_near(km_north(0.0), 5_000.0, 10).unwrap().into_iter().map(|(d, _)| d.id).collect()
    };
    assert_eq!(near(&w), vec![a, b, c]);
    // Offline: out of the index (its last fix is kept).
    w.run(Actor::User(a), Command::SetDriverStatus { online: false, location: None }).unwrap();
    assert_eq!(near(&w), vec![b, c]);
    assert_eq!(w.state.driver(a).unwrap().fix.unwrap().point, km_north(0.5));
    // A position reported while offline moves the record, not the index.
    w.advance(5);
    w.run(Actor::User(a), report_at(km_north(0.55))).unwrap();
    assert_eq!(near(&w), vec![b, c]);
    // Suspended: out too.
    w.run(Actor::Admin, Command::SetDriverSuspended { driver_id: b, suspended: true, reason: String::new() }).unwrap();
    assert_eq!(near(&w), vec![c]);
    // On a trip: still in (staff see it; dispatch's eligibility passes over it).
    let trip = w.trip(rider);
    w.accept(c, trip).unwrap();
    assert_eq!(near(&w), vec![c]);
    // Back online: in again, at the last fix.
    w.run(Actor::User(a), Command::SetDriverStatus { online: true, location: None }).unwrap();
    assert_eq!(near(&w), vec![a, c]);
    assert_eq!(w.state.drivers_near(km_north(0.55), 1.0, 10).unwrap()[0].0.id, a);
    // Suspended mid-trip: in until the trip ends, then out.
    w.run(Actor::Admin, Command::SetDriverSuspended { driver_id: c, suspended: true, reason: String::new() }).unwrap();
    assert_eq!(near(&w), vec![a, c]);
    w.run(Actor::Admin, Command::CancelTrip { trip_id: trip, reason: String::new() }).unwrap();
    assert_eq!(near(&w), vec![a]);
    // The radius is bounded.
    assert!(matches!(w.state.drivers_near(km_north(0.0), f64::NAN, 10), Err(Error::Invalid(_))));
    assert!(matches!(w.state.drivers_near(km_north(0.0), 1e9, 10), Err(Error::Invalid(_))));
    // `finish` also checks the index rebuilt from a checkpoint holds exactly the drivers at work.
    w.finish();
}

/// A 3 km trip (the route locked at booking says 3000 m), driven 3000 m due north in 6 minutes,
/// completed with `reported_m`.
fn ride_3_km(w: &mut World, reported_m: Option<u32>) -> Arc<Trip> {
    let rider = w.rider();
    let d = w.driver(0.2);
    let mut new = w.new_trip();
    new.route = crate::route::Route { distance_m: 3_000, duration_s: 360, source: crate::route::RouteSource::Router };
    let trip = match w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap() {
        Outcome::Trip(t) => t.id,
        o => panic!("{o:?}"),
    };
    w.accept(d, trip).unwrap();
    // Driving to the pickup is not the ride.
    w.drive(d, 500.0, 60);
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.drive(d, 3_000.0, 360);
    // A report within the minimum interval is not driving either (nothing is published).
    w.now = w.now.plus_millis(100);
    let here = w.state.driver(d).unwrap().fix.unwrap().point;
    let jitter = LatLng::new(here.lat() + 0.0001, here.lng()).unwrap();
    assert!(matches!(w.run(Actor::User(d), report_at(jitter)), Ok(Outcome::Coalesced { .. })));
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: reported_m, dropoff: None }).unwrap();
    let t = w.get(trip);
    assert_eq!(t.driven_m, Some(3_000), "the odometer counts the ride only");
    assert_eq!(w.state.driver(d).unwrap().trip_odometer_m, 0.0, "and starts again at the next trip");
    t
}

#[test]
fn the_driver_set_the_final_fare_distance() {
    // 90 km claimed for a 3 km ride: billed the cap, max(3000 × 1.25, 3000 × 2) = 6000 m.
    let mut w = World::new(rules());
    let t = ride_3_km(&mut w, Some(90_000));
    assert_eq!(t.distance_m, Some(6_000));
    // 1500 + round(450 × 6.000) + round(75 × 6) + 300 = 1500 + 2700 + 450 + 300.
    assert_eq!(t.fare.final_minor, Some(4_950));
    w.finish();
}

#[test]
fn an_honest_reported_distance_is_billed_as_reported() {
    let mut w = World::new(rules());
    let t = ride_3_km(&mut w, Some(3_100));
    assert_eq!(t.distance_m, Some(3_100));
    // 1500 + round(450 × 3.100) + round(75 × 6) + 300 = 1500 + 1395 + 450 + 300.
    assert_eq!(t.fare.final_minor, Some(3_645));
    w.finish();
}

#[test]
fn without_a_report_the_distance_driven_is_billed() {
    let mut w = World::new(rules());
    let t = ride_3_km(&mut w, None);
    assert_eq!(t.distance_m, Some(3_000));
    // 1500 + round(450 × 3.000) + round(75 × 6) + 300 = 1500 + 1350 + 450 + 300.
    assert_eq!(t.fare.final_minor, Some(3_600));
    w.finish();
}

// ----- accepting a bid ------------------------------------------------------------------

/// A bidding trip at the rider's price `rider_minor`, paid by `method`, offered to `drivers`.
fn bid_trip(w: &mut World, rider: UserId, rider_minor: i64, method: PaymentMethod) -> Result<TripId> {
    let mut new = w.new_trip();
    new.bid_minor = Some(rider_minor);
    new.payment_method = method;
    match w.run(Actor::User(rider), Command::CreateTrip(new))? {
        Outcome::Trip(t) => Ok(t.id),
        o => panic!("{o:?}"),
    }
}

fn place_bid(w: &mut World, d: UserId, trip_id: TripId, amount_minor: i64) -> crate::trip::Bid {
    match w.run(Actor::User(d), Command::PlaceBid { id: None, trip_id, amount_minor }).unwrap() {
        Outcome::Bid { bid, .. } => bid,
        o => panic!("{o:?}"),
    }
}

#[test]
fn accept_bid_did_not_check_the_bidder() {
    let mut w = World::new(DispatchRules { offers_per_round: 4, ..rules() });
    let rider = w.rider();
    let (gone, offline, stale, ok) = (w.driver(0.5), w.driver(0.6), w.driver(0.7), w.driver(0.8));
    let trip = bid_trip(&mut w, rider, 4_000, PaymentMethod::Cash).unwrap();
    let bids: Vec<_> = [gone, offline, stale, ok].iter().map(|&d| place_bid(&mut w, d, trip, 4_500)).collect();
    let pick = |bid: &crate::trip::Bid| Command::AcceptBid { trip_id: trip, bid_id: bid.id };
    // The bidder's socket dropped; another went offline; a third stopped reporting.
    w.run(Actor::User(gone), Command::SetPresence { connected: false }).unwrap();
    w.run(Actor::User(offline), Command::SetDriverStatus { online: false, location: None }).unwrap();
    for secs in [10, 10, 11] {
        w.advance(secs);
        for d in [gone, ok] {
            let here = w.state.driver(d).unwrap().fix.unwrap().point;
            w.run(Actor::User(d), report_at(here)).unwrap();
        }
    }
    // The offers have lapsed by now (ttl 20 s): a bid outlives its offer, not its driver.
    assert!(w.get(trip).offers.iter().all(|o| o.state != OfferState::Pending || o.driver_id != ok));
    for (bid, who) in [(&bids[0], gone), (&bids[1], offline), (&bids[2], stale)] {
        assert_eq!(w.run(Actor::User(rider), pick(bid)), Err(Error::DriverNotAvailable(who)), "{who}");
    }
    // Suspended: not available either.
    w.run(Actor::Admin, Command::SetDriverSuspended { driver_id: ok, suspended: true, reason: String::new() }).unwrap();
    assert_eq!(w.run(Actor::User(rider), pick(&bids[3])), Err(Error::DriverNotAvailable(ok)));
    w.run(Actor::Admin, Command::SetDriverSuspended { driver_id: ok, suspended: false, reason: String::new() })
        .unwrap();
    w.run(Actor::User(ok), Command::SetDriverStatus { online: true, location: None }).unwrap();
    let t = match w.run(Actor::User(rider), pick(&bids[3])).unwrap() {
        Outcome::Trip(t) => t,
        o => panic!("{o:?}"),
    };
    assert_eq!((t.status, t.driver_id, t.fare.estimate_minor), (TripStatus::Accepted, Some(ok), 4_500));
    w.finish();
}

#[test]
fn a_wallet_trip_hold_follows_the_accepted_bid() {
    use crate::ledger::{AccountKey, AccountKind};
    let mut w = World::new(rules());
    let rider = w.rider();
    let (a, b) = (w.driver(0.5), w.driver(0.6));
    let egp: crate::money::Currency = "EGP".parse().unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: rider, amount_minor: 5_000, currency: egp, reason: "top-up".into() };
    w.run(Actor::Admin, credit).unwrap();
    let wallet = AccountKey::of(AccountKind::RiderWallet, rider, egp);
    let available = |w: &World| w.state.ledger().account(&wallet).available();
    let trip = bid_trip(&mut w, rider, 3_000, PaymentMethod::Wallet).unwrap();
    assert_eq!(available(&w), 2_000, "the rider's price is held");
    let (dear, fair) = (place_bid(&mut w, a, trip, 6_000), place_bid(&mut w, b, trip, 4_500));
    // The wallet cannot hold 6000: refused, and nothing changed (the old hold stands).
    let before = w.state.clone();
    let r = w.run(Actor::User(rider), Command::AcceptBid { trip_id: trip, bid_id: dear.id });
    assert!(matches!(r, Err(Error::InsufficientFunds { .. })), "{r:?}");
    assert_eq!(w.state, before);
    // 4500: the hold moves to it.
    w.run(Actor::User(rider), Command::AcceptBid { trip_id: trip, bid_id: fair.id }).unwrap();
    assert_eq!(available(&w), 500);
    let hold = w.get(trip).payment.hold.unwrap();
    assert_eq!(w.state.ledger().transfer(hold).map(|t| t.amount), Some(4_500));
    // Settled at the agreed price from the new hold: no debt.
    w.run(Actor::User(b), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(b), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.drive(b, 3_000.0, 360);
    w.run(Actor::User(b), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    assert_eq!(w.get(trip).fare.final_minor, Some(4_500));
    assert_eq!(w.state.ledger().account(&wallet).balance(), 500);
    assert_eq!(w.state.ledger().account(&AccountKey::of(AccountKind::RiderDebt, rider, egp)).balance(), 0);
    w.finish();
}

#[test]
fn a_driver_who_gives_back_a_bid_trip_loses_the_bid_and_the_agreed_price() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let trip = bid_trip(&mut w, rider, 4_000, PaymentMethod::Cash).unwrap();
    let bid_a = place_bid(&mut w, a, trip, 4_800);
    w.run(Actor::User(rider), Command::AcceptBid { trip_id: trip, bid_id: bid_a.id }).unwrap();
    let b = w.driver(0.6);
    w.run(Actor::User(a), Command::CancelTrip { trip_id: trip, reason: "flat tyre".into() }).unwrap();
    let t = w.get(trip);
    assert_eq!((t.status, t.fare.estimate_minor, t.fare.locked.agreed_minor), (TripStatus::Searching, 4_000, None));
    assert!(t.bids.is_empty(), "the bid went with its driver");
    let r = w.run(Actor::User(rider), Command::AcceptBid { trip_id: trip, bid_id: bid_a.id });
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    // The next driver takes it at the rider's price.
    assert_eq!(w.offered(trip), vec![b]);
    w.accept(b, trip).unwrap();
    assert_eq!(w.get(trip).fare.locked.agreed_minor, Some(4_000));
    w.finish();
}

mod money {
    use super::*;
    use crate::ledger::{AccountKey, AccountKind};
    use crate::payment::PaymentEventKind;
    use crate::trip::{GatewayAction, PaymentStatus};

    fn egp() -> crate::money::Currency {
        "EGP".parse().unwrap()
    }

    fn acct(kind: AccountKind, u: UserId) -> AccountKey {
        AccountKey::of(kind, u, egp())
    }

    fn balance(w: &World, key: AccountKey) -> i64 {
        w.state.ledger().account(&key).balance()
    }

    fn credit(w: &mut World, user: UserId, amount_minor: i64) {
        let c =
            Command::CreditWallet { id: None, user_id: user, amount_minor, currency: egp(), reason: "top-up".into() };
        w.run(Actor::Admin, c).unwrap();
    }

    fn book(w: &mut World, rider: UserId, method: PaymentMethod, coupon: Option<&str>) -> Result<Outcome> {
        let mut new = w.new_trip();
        new.payment_method = method;
        new.coupon = coupon.map(str::to_owned);
        w.run(Actor::User(rider), Command::CreateTrip(new))
    }

    fn id_of(o: Outcome) -> TripId {
        match o {
            Outcome::Trip(t) => t.id,
            o => panic!("{o:?}"),
        }
    }

    /// Accept, arrive, start, ride 960 s, complete with 8230 m: API.md's 6704 before discounts.
    fn ride(w: &mut World, d: UserId, trip: TripId) -> Arc<Trip> {
        w.accept(d, trip).unwrap();
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.drive(d, 8230.0, 960);
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        w.get(trip)
    }

    #[test]
    fn cash_the_driver_earns_the_fare_before_discount_minus_commission() {
        let mut w = World::new(rules());
        w.add_coupon(coupon("TENPC", 1_000, None));
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Cash, Some("TENPC")).unwrap());
        let t = ride(&mut w, d, trip);
        // 6704 before the coupon; 10 % off = 670.4 → 670; the rider pays 6034.
        assert_eq!((t.fare.final_minor, t.fare.final_breakdown.unwrap().discount_minor), (Some(6034), 670));
        assert_eq!((t.payment.status, t.payment.captured_minor), (PaymentStatus::Captured, 6034));
        // Commission 15 % of 6704 = 1005.6 → 1006; the driver earns 6704 − 1006 = 5698.
        assert_eq!(balance(&w, acct(AccountKind::DriverEarnings, d)), 5698);
        assert_eq!(balance(&w, acct(AccountKind::CashInHand, d)), -6034, "the driver holds the cash");
        assert_eq!(
            w.state.ledger().account(&AccountKey::platform(AccountKind::PlatformRevenue, egp())).balance(),
            1006
        );
        assert_eq!(w.state.ledger().account(&AccountKey::platform(AccountKind::Promotions, egp())).balance(), -670);
        w.state.ledger().check().unwrap();
        w.finish();
    }

    #[test]
    fn wallet_needs_the_estimate_holds_it_and_never_goes_negative() {
        let mut w = World::new(rules());
        let rider = w.rider();
        let d = w.driver(0.5);
        assert!(matches!(book(&mut w, rider, PaymentMethod::Wallet, None), Err(Error::InsufficientFunds { .. })));
        credit(&mut w, rider, 5_000);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Wallet, None).unwrap());
        let estimate = w.get(trip).fare.estimate_minor;
        let wallet = acct(AccountKind::RiderWallet, rider);
        assert_eq!(w.state.ledger().account(&wallet).available(), 5_000 - estimate, "the estimate is held");
        // The final fare (6704) is above the hold and the wallet (5000): the wallet pays
        // all it has, the rest is the rider's debt.
        let t = ride(&mut w, d, trip);
        assert_eq!(t.fare.final_minor, Some(6704));
        assert_eq!(balance(&w, wallet), 0);
        assert_eq!(balance(&w, acct(AccountKind::RiderDebt, rider)), -1704);
        assert_eq!(balance(&w, AccountKey::platform(AccountKind::Escrow, egp())), 0, "escrow passes everything on");
        w.finish();
    }

    #[test]
    fn wallet_hold_is_released_when_the_trip_is_cancelled_or_expires() {
        let mut w = World::new(rules());
        let rider = w.rider();
        credit(&mut w, rider, 10_000);
        let wallet = acct(AccountKind::RiderWallet, rider);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Wallet, None).unwrap());
        w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, reason: "x".into() }).unwrap();
        assert_eq!(w.state.ledger().account(&wallet).available(), 10_000);
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Voided);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Wallet, None).unwrap());
        w.advance(i64::from(w.state.rules().timeout_s) + 1);
        assert_eq!(w.get(trip).status, TripStatus::Expired);
        assert_eq!(w.state.ledger().account(&wallet).available(), 10_000);
        w.finish();
    }

    #[test]
    fn card_goes_through_the_gateway_once_per_event() {
        let mut w = World::new(rules());
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
        w.accept(d, trip).unwrap();
        let estimate = w.get(trip).fare.estimate_minor;
        assert_eq!(w.get(trip).payment.due, Some(GatewayAction::Authorize { amount_minor: estimate }));
        let event = |id: &str, kind, amount_minor| Command::PaymentEvent {
            gateway: "sim".into(),
            event_id: id.into(),
            kind,
            trip_id: trip,
            amount_minor,
            currency: egp(),
            archived: None,
        };
        let rider_sends = event("evt_1", PaymentEventKind::Authorized, estimate);
        assert!(matches!(w.run(Actor::User(rider), rider_sends), Err(Error::Forbidden(_))), "only the server");
        w.run(Actor::System, event("evt_1", PaymentEventKind::Authorized, estimate)).unwrap();
        assert_eq!((w.get(trip).payment.status, w.get(trip).payment.due), (PaymentStatus::Authorized, None));
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.drive(d, 8230.0, 960);
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        assert_eq!(w.get(trip).payment.due, Some(GatewayAction::Capture { amount_minor: 6704 }));
        assert_eq!(
            w.run(Actor::System, event("evt_2", PaymentEventKind::Captured, 6704)).unwrap(),
            Outcome::PaymentEvent { duplicate: false, ignored: None }
        );
        assert_eq!(
            w.run(Actor::System, event("evt_2", PaymentEventKind::Captured, 6704)).unwrap(),
            Outcome::PaymentEvent { duplicate: true, ignored: None },
            "a replayed webhook changes nothing"
        );
        assert!(
            matches!(
                w.run(Actor::System, event("evt_3", PaymentEventKind::Captured, 6704)).unwrap(),
                Outcome::PaymentEvent { duplicate: false, ignored: Some(_) }
            ),
            "another id for a capture already taken takes nothing"
        );
        let t = w.get(trip);
        assert_eq!((t.payment.status, t.payment.captured_minor, t.payment.due), (PaymentStatus::Captured, 6704, None));
        assert_eq!(balance(&w, AccountKey::platform(AccountKind::GatewayClearing, egp())), -6704);
        assert_eq!(balance(&w, AccountKey::platform(AccountKind::Escrow, egp())), 0);
        w.finish();
    }

    #[test]
    fn refunds_never_exceed_what_was_captured() {
        let mut w = World::new(rules());
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Cash, None).unwrap());
        ride(&mut w, d, trip);
        let refund = |amount_minor| Command::Refund { id: None, trip_id: trip, amount_minor, reason: "detour".into() };
        assert!(matches!(w.run(Actor::User(rider), refund(100)), Err(Error::Forbidden(_))));
        assert_eq!(
            w.run(Actor::Admin, refund(6705)),
            Err(Error::RefundExceedsCaptured { captured: 6704, refunded: 0 })
        );
        w.run(Actor::Admin, refund(704)).unwrap();
        assert_eq!(w.get(trip).payment.status, PaymentStatus::PartiallyRefunded);
        assert_eq!(
            w.run(Actor::Admin, refund(6001)),
            Err(Error::RefundExceedsCaptured { captured: 6704, refunded: 704 })
        );
        w.run(Actor::Admin, refund(6000)).unwrap();
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Refunded);
        assert_eq!(balance(&w, acct(AccountKind::RiderWallet, rider)), 6704, "cash refunds go to the wallet");
        w.finish();
    }
    fn pay_event(trip: TripId, id: &str, kind: PaymentEventKind, amount_minor: i64) -> Command {
        Command::PaymentEvent {
            gateway: "sim".into(),
            event_id: id.into(),
            kind,
            trip_id: trip,
            amount_minor,
            currency: egp(),
            archived: None,
        }
    }

    fn ignored(o: Outcome) -> bool {
        matches!(o, Outcome::PaymentEvent { duplicate: false, ignored: Some(_) })
    }

    /// A card trip accepted and authorised: (rider, driver, trip, estimate).
    fn authorised_card_trip(w: &mut World) -> (UserId, UserId, TripId, i64) {
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(w, rider, PaymentMethod::Card, None).unwrap());
        w.accept(d, trip).unwrap();
        let estimate = w.get(trip).fare.estimate_minor;
        w.run(Actor::System, pay_event(trip, "evt_auth", PaymentEventKind::Authorized, estimate)).unwrap();
        (rider, d, trip, estimate)
    }

    /// The card trip of [`authorised_card_trip`] ridden and captured: (trip, fare).
    fn captured_card_trip(w: &mut World) -> (TripId, i64) {
        let (_, d, trip, _) = authorised_card_trip(w);
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.drive(d, 8230.0, 960);
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        let fare = w.get(trip).fare.final_minor.unwrap();
        w.run(Actor::System, pay_event(trip, "evt_cap", PaymentEventKind::Captured, fare)).unwrap();
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Captured);
        (trip, fare)
    }

    #[test]
    fn a_late_authorized_event_does_not_turn_captured_back_into_authorized() {
        let mut w = World::new(rules());
        let (trip, fare) = captured_card_trip(&mut w);
        let before = w.get(trip);
        let ledger = w.state.ledger().clone();
        let estimate = before.fare.estimate_minor;
        // Stale events with new ids: an authorisation, a void, a failure, another capture.
        for (id, kind, amount) in [
            ("evt_late_auth", PaymentEventKind::Authorized, estimate),
            ("evt_late_void", PaymentEventKind::Voided, 0),
            ("evt_late_fail", PaymentEventKind::Failed, 0),
            ("evt_late_cap", PaymentEventKind::Captured, fare),
        ] {
            let o = w.run(Actor::System, pay_event(trip, id, kind, amount)).unwrap();
            assert!(ignored(o), "{id} was applied");
            assert_eq!(w.get(trip), before, "{id} changed the trip");
            assert_eq!(w.state.ledger(), &ledger, "{id} moved money");
        }
        // Each is remembered: sent again it is a duplicate.
        let again = w.run(Actor::System, pay_event(trip, "evt_late_auth", PaymentEventKind::Authorized, estimate));
        assert_eq!(again.unwrap(), Outcome::PaymentEvent { duplicate: true, ignored: None });
        w.finish();
    }

    #[test]
    fn an_authorization_arriving_after_the_trip_was_cancelled_is_voided() {
        let mut w = World::new(rules());
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
        w.accept(d, trip).unwrap();
        // Cancelled inside the free window while the authorisation is still on its way.
        w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, reason: "x".into() }).unwrap();
        assert_eq!((w.get(trip).payment.status, w.get(trip).payment.due), (PaymentStatus::Voided, None));
        let estimate = w.get(trip).fare.estimate_minor;
        let o = w.run(Actor::System, pay_event(trip, "evt_auth", PaymentEventKind::Authorized, estimate)).unwrap();
        assert_eq!(o, Outcome::PaymentEvent { duplicate: false, ignored: None });
        assert_eq!(w.get(trip).payment.due, Some(GatewayAction::Void), "the late hold is released");
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Voided);
        assert!(w.state.finished_trips().iter().all(|t| t.id != trip), "kept hot until the gateway voided it");
        w.run(Actor::System, pay_event(trip, "evt_void", PaymentEventKind::Voided, 0)).unwrap();
        assert_eq!((w.get(trip).payment.status, w.get(trip).payment.due), (PaymentStatus::Voided, None));
        w.finish();
    }

    #[test]
    fn a_capture_of_another_amount_is_refused_and_kept_as_a_mismatch() {
        let mut w = World::new(rules());
        let (_, d, trip, _) = authorised_card_trip(&mut w);
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.drive(d, 8230.0, 960);
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        let ledger = w.state.ledger().clone();
        let o = w.run(Actor::System, pay_event(trip, "evt_short", PaymentEventKind::Captured, 6000)).unwrap();
        assert!(ignored(o));
        let p = w.get(trip).payment.clone();
        assert_eq!((p.status, p.captured_minor), (PaymentStatus::Authorized, 0), "nothing booked");
        assert_eq!(p.due, Some(GatewayAction::Capture { amount_minor: 6704 }), "still owed");
        let m = p.mismatch.unwrap();
        assert_eq!((m.event_id.as_str(), m.reported_minor, m.due_minor), ("evt_short", 6000, 6704));
        assert_eq!(w.state.ledger(), &ledger);
        // The right amount is then captured as usual.
        w.run(Actor::System, pay_event(trip, "evt_cap", PaymentEventKind::Captured, 6704)).unwrap();
        assert_eq!(w.get(trip).payment.captured_minor, 6704);
        w.finish();
    }

    #[test]
    fn card_refunds_go_to_the_gateway_and_count_against_the_limit_while_pending() {
        let mut w = World::new(rules());
        let (trip, fare) = captured_card_trip(&mut w);
        let refund = |amount_minor| Command::Refund { id: None, trip_id: trip, amount_minor, reason: "detour".into() };
        let first = match w.run(Actor::Admin, refund(1000)).unwrap() {
            Outcome::Transfer(t) => t,
            o => panic!("{o:?}"),
        };
        assert_eq!(first.state, crate::ledger::TransferState::Pending, "booked as pending");
        let p = w.get(trip).payment.clone();
        assert_eq!(p.due, Some(GatewayAction::Refund { amount_minor: 1000, transfer: first.id }));
        assert_eq!((p.status, p.refunded_minor, p.refundable_minor()), (PaymentStatus::Captured, 0, fare - 1000));
        // A second refund queues behind the first; together they may not pass the capture.
        assert_eq!(
            w.run(Actor::Admin, refund(fare - 999)),
            Err(Error::RefundExceedsCaptured { captured: fare, refunded: 1000 })
        );
        let second = match w.run(Actor::Admin, refund(500)).unwrap() {
            Outcome::Transfer(t) => t,
            o => panic!("{o:?}"),
        };
        // The gateway confirms the first: posted, the second becomes due.
        let o = w.run(Actor::System, pay_event(trip, "evt_r1", PaymentEventKind::RefundSucceeded, 1000)).unwrap();
        assert_eq!(o, Outcome::PaymentEvent { duplicate: false, ignored: None });
        let p = w.get(trip).payment.clone();
        assert_eq!((p.status, p.refunded_minor), (PaymentStatus::PartiallyRefunded, 1000));
        assert_eq!(p.due, Some(GatewayAction::Refund { amount_minor: 500, transfer: second.id }));
        // A confirmation of another amount is refused; a decline releases the refund.
        assert!(ignored(
            w.run(Actor::System, pay_event(trip, "evt_r2", PaymentEventKind::RefundSucceeded, 400)).unwrap()
        ));
        w.run(Actor::System, pay_event(trip, "evt_r2_failed", PaymentEventKind::Failed, 0)).unwrap();
        let p = w.get(trip).payment.clone();
        assert_eq!((p.due, p.refunded_minor, p.refundable_minor()), (None, 1000, fare - 1000));
        assert!(!w.state.ledger().is_open_pending(second.id), "the declined refund was voided");
        let clearing = AccountKey::platform(AccountKind::GatewayClearing, egp());
        assert_eq!(balance(&w, clearing), -fare + 1000, "only the confirmed refund moved money");
        w.finish();
    }

    #[test]
    fn an_uncaptured_card_authorisation_expires_and_its_hold_is_released() {
        let mut w = World::new(DispatchRules { card_auth_ttl_s: 600, ..rules() });
        let (_, d, trip, estimate) = authorised_card_trip(&mut w);
        let hold = w.get(trip).payment.hold.unwrap();
        let escrow = AccountKey::platform(AccountKind::Escrow, egp());
        assert_eq!(w.state.ledger().account(&escrow).credits_pending, estimate, "the authorisation is a hold");
        w.advance(601);
        let p = w.get(trip).payment.clone();
        assert_eq!(p.status, PaymentStatus::Expired);
        assert!(!w.state.ledger().is_open_pending(hold));
        assert_eq!(w.state.ledger().account(&escrow).credits_pending, 0, "released");
        // The ride still ends and the card is charged for it.
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        let fare = w.get(trip).fare.final_minor.unwrap();
        w.run(Actor::System, pay_event(trip, "evt_cap", PaymentEventKind::Captured, fare)).unwrap();
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Captured);
        w.finish();
    }

    #[test]
    fn a_wallet_hold_expires_and_the_ride_pays_from_the_balance() {
        let mut w = World::new(DispatchRules { wallet_hold_ttl_s: 300, ..rules() });
        let rider = w.rider();
        let d = w.driver(0.5);
        credit(&mut w, rider, 10_000);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Wallet, None).unwrap());
        let wallet = acct(AccountKind::RiderWallet, rider);
        w.accept(d, trip).unwrap();
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.drive(d, 2572.0, 300);
        w.advance(1);
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Expired);
        assert_eq!(w.state.ledger().account(&wallet).available(), 10_000, "the hold was released");
        w.drive(d, 5658.0, 600);
        w.advance(59);
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        let t = w.get(trip);
        assert_eq!((t.payment.status, t.payment.captured_minor), (PaymentStatus::Captured, 6704));
        assert_eq!(balance(&w, wallet), 10_000 - 6704, "paid once, from the balance");
        w.finish();
    }

    #[test]
    fn a_dead_letter_is_recorded_and_the_rider_may_then_pay_cash() {
        let mut w = World::new(rules());
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
        w.accept(d, trip).unwrap();
        let due = w.get(trip).payment.due.unwrap();
        assert!(!w.get(trip).payment.cash_offered());
        let dead = Command::RecordDeadLetter { trip_id: trip, action: due, error: "down".into(), attempts: 10 };
        assert!(matches!(w.run(Actor::User(rider), dead.clone()), Err(Error::Forbidden(_))));
        w.run(Actor::System, dead).unwrap();
        let p = w.get(trip).payment.clone();
        assert_eq!(p.dead_letter.as_ref().map(|d| (d.action, d.attempts)), Some((due, 10)));
        assert!(p.cash_offered());
        // Only the trip's rider switches, and only to cash.
        let switch = |method| Command::SetPaymentMethod { trip_id: trip, method };
        assert!(matches!(w.run(Actor::User(d), switch(PaymentMethod::Cash)), Err(Error::Forbidden(_))));
        assert!(matches!(w.run(Actor::User(rider), switch(PaymentMethod::Wallet)), Err(Error::Invalid(_))));
        let other = w.rider();
        assert!(matches!(w.run(Actor::User(other), switch(PaymentMethod::Cash)), Err(Error::NotFound { .. })));
        w.run(Actor::User(rider), switch(PaymentMethod::Cash)).unwrap();
        let p = w.get(trip).payment.clone();
        assert_eq!(
            (p.method, p.status, p.due, p.dead_letter.is_none()),
            (PaymentMethod::Cash, PaymentStatus::Pending, None, true)
        );
        // The ride settles as cash.
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let code = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
        w.drive(d, 8230.0, 960);
        w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
        assert_eq!(balance(&w, acct(AccountKind::CashInHand, d)), -6704);
        assert_eq!(w.get(trip).payment.status, PaymentStatus::Captured);
        w.finish();
    }

    #[test]
    fn after_the_ride_a_card_capture_given_up_on_is_paid_in_cash_to_the_driver() {
        let mut w = World::new(rules());
        let rider = w.rider();
        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
        let t = ride(&mut w, d, trip);
        assert_eq!(t.payment.due, Some(GatewayAction::Capture { amount_minor: 6704 }));
        let declined = pay_event(trip, "evt_declined", PaymentEventKind::Failed, 0);
        w.run(Actor::System, declined).unwrap();
        let p = w.get(trip).payment.clone();
        assert_eq!((p.status, p.due), (PaymentStatus::Failed, Some(GatewayAction::Capture { amount_minor: 6704 })));
        assert!(p.cash_offered());
        let escrow = AccountKey::platform(AccountKind::Escrow, egp());
        assert_eq!(balance(&w, escrow), -6704, "the platform paid the driver and is owed the fare");
        w.run(Actor::User(rider), Command::SetPaymentMethod { trip_id: trip, method: PaymentMethod::Cash }).unwrap();
        let p = w.get(trip).payment.clone();
        assert_eq!(
            (p.method, p.status, p.captured_minor, p.due),
            (PaymentMethod::Cash, PaymentStatus::Captured, 6704, None)
        );
        assert_eq!(balance(&w, escrow), 0);
        assert_eq!(balance(&w, acct(AccountKind::CashInHand, d)), -6704, "the driver holds the cash");
        // A captured card payment cannot switch.
        let (card, _) = captured_card_trip(&mut w);
        let rider2 = w.get(card).rider_id;
        let r = w.run(Actor::User(rider2), Command::SetPaymentMethod { trip_id: card, method: PaymentMethod::Cash });
        assert!(matches!(r, Err(Error::InvalidTransition { .. })), "{r:?}");
        w.finish();
    }

    #[test]
    fn commission_is_the_trip_zone_and_category_rate() {
        let mut w = World::new(rules());
        // Economy at 20 %, comfort at 10 % in Cairo; a second zone (Alexandria) at 5 %.
        let mut cairo = crate::demo::cairo().unwrap();
        let economy = Category::new("economy").unwrap();
        let comfort = Category::new("comfort").unwrap();
        cairo.pricing.get_mut(&economy).unwrap().commission_bps = 2_000;
        cairo.pricing.get_mut(&comfort).unwrap().commission_bps = 1_000;
        let zone_id = w.zone_id();
        w.run(Actor::Admin, Command::ReplaceZone { zone_id, zone: Box::new(cairo) }).unwrap();
        let mut alex = crate::demo::zone_spec("Alexandria", [[29.5, 31.1], [30.3, 31.4]]).unwrap();
        alex.pricing.get_mut(&economy).unwrap().commission_bps = 500;
        w.run(Actor::Admin, Command::CreateZone { id: None, zone: Box::new(alex) }).unwrap();
        let rider = w.rider();
        let earned = |w: &World, d: UserId| balance(w, acct(AccountKind::DriverEarnings, d));
        let half_up = |fare: i64, bps: i64| (fare * bps + 5_000) / 10_000;

        let d = w.driver(0.5);
        let trip = id_of(book(&mut w, rider, PaymentMethod::Cash, None).unwrap());
        let t = ride(&mut w, d, trip);
        assert_eq!(t.fare.final_minor, Some(6704));
        assert_eq!(earned(&w, d), 6704 - 1341, "20 % of 6704 is 1340.8 → 1341");

        let dc = w.driver_at(0.5, "comfort");
        let mut new = w.new_trip();
        new.category = comfort.clone();
        let trip = id_of(w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap());
        let fare = ride(&mut w, dc, trip).fare.final_minor.unwrap();
        assert_eq!(earned(&w, dc), fare - half_up(fare, 1_000), "comfort's rate");

        let here = LatLng::new(31.2, 29.9).unwrap();
        let da = w.user(Role::Driver, Some(Vehicle { category: economy, plate: "A 1".into() }));
        w.run(Actor::User(da), Command::SetDriverStatus { online: true, location: Some(here) }).unwrap();
        let mut new = w.new_trip();
        let there = LatLng::new(31.21, 29.92).unwrap();
        new.pickup = Place::at(here);
        new.dropoff = Place::at(there);
        new.route = StraightLine::default().between(here, there);
        let trip = id_of(w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap());
        let fare = ride(&mut w, da, trip).fare.final_minor.unwrap();
        assert_eq!(earned(&w, da), fare - half_up(fare, 500), "the Alexandria zone's rate");
        w.finish();
    }

    /// A gateway event id that moved to the history (`Archive`), delivered again with
    /// what the history keeps stamped in, is a duplicate that changes nothing; once its
    /// 30 days are up the stamp no longer counts.
    #[test]
    fn an_archived_gateway_event_id_is_a_duplicate_and_moves_no_money() {
        let mut w = World::new(rules());
        let (trip, fare) = captured_card_trip(&mut w);
        let seen = w.state.gateway_event_seen("sim", "evt_cap").unwrap();
        // Archive names the time seen: another time (a later use of the id) stays hot.
        let archive = |at: Timestamp| Command::Archive {
            trips: vec![],
            transfer_ids: vec![],
            keys: vec![],
            gateway_events: vec![("sim".into(), "evt_cap".into(), at)],
        };
        w.run(Actor::System, archive(seen.plus_millis(1))).unwrap();
        assert_eq!(w.state.gateway_event_seen("sim", "evt_cap"), Some(seen));
        let hot = w.state.gateway_event_ids();
        w.run(Actor::System, archive(seen)).unwrap();
        assert_eq!((w.state.gateway_event_seen("sim", "evt_cap"), w.state.gateway_event_ids()), (None, hot - 1));

        let again = |archived| {
            let mut c = pay_event(trip, "evt_cap", PaymentEventKind::Captured, fare);
            if let Command::PaymentEvent { archived: a, .. } = &mut c {
                *a = archived;
            }
            c
        };
        let before = w.state.clone();
        assert_eq!(
            w.run(Actor::System, again(Some(seen))).unwrap(),
            Outcome::PaymentEvent { duplicate: true, ignored: None }
        );
        assert_eq!(w.state, before, "a duplicate changes nothing");
        assert_eq!(balance(&w, AccountKey::platform(AccountKind::GatewayClearing, egp())), -fare);
        // Without the stamp (the writer found nothing), the id is new: remembered hot again,
        // and taking nothing twice (no capture is due any more).
        assert!(ignored(w.run(Actor::System, again(None)).unwrap()));
        assert_eq!(balance(&w, AccountKey::platform(AccountKind::GatewayClearing, egp())), -fare);
        // Kept 30 days: a stamp older than that is not a duplicate.
        w.run(Actor::System, archive(w.state.gateway_event_seen("sim", "evt_cap").unwrap())).unwrap();
        w.now = seen.plus_secs(GATEWAY_EVENT_TTL_S).plus_millis(1);
        assert!(ignored(w.run(Actor::System, again(Some(seen))).unwrap()));
        w.finish();
    }
}

// ----- money against a model ------------------------------------------------------------------

mod money_model {
    //! Random sequences of trips (cash, wallet, card), wallet credits, completions,
    //! cancellations, gateway webhooks (honest, duplicated, stale after later events,
    //! forged), refunds (partial, over the limit), hold expiries and crashes (a random
    //! prefix of the log replayed through the records' encoding, then on), checked after
    //! every step against a reference model that books every movement by hand.

    use std::collections::{BTreeMap, VecDeque};

    use proptest::prelude::*;

    use super::*;
    use crate::ledger::{AccountKey, AccountKind};
    use crate::payment::PaymentEventKind;
    use crate::payment::{WebhookScheme, sign_timestamped, verify_webhook};
    use crate::trip::{GatewayAction, PaymentStatus};

    const SECRET: &[u8] = b"whsec_model_secret_0123456789";
    const COMMISSION_BPS: i64 = 1500;
    const CARD_TTL_S: u32 = 2_500;
    const WALLET_TTL_S: u32 = 4_000;

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
    }

    #[derive(Debug, Clone, Default)]
    struct Model {
        bal: BTreeMap<AccountKey, i64>,
        trips: Vec<MTrip>,
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
        Wait {
            secs: u32,
        },
        Crash {
            keep: usize,
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
            2 => (1u32..3_000).prop_map(|secs| Step::Wait { secs }),
            1 => (0usize..64).prop_map(|keep| Step::Crash { keep }),
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
                            PaymentStatus::Pending
                                | PaymentStatus::Voided
                                | PaymentStatus::Failed
                                | PaymentStatus::Expired
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
                        && matches!(
                            mt.status,
                            PaymentStatus::Pending | PaymentStatus::Authorized | PaymentStatus::Failed
                        )
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
                    if matches!(
                        mt.status,
                        PaymentStatus::Pending | PaymentStatus::Authorized | PaymentStatus::Failed
                    ) =>
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
        for mt in &m.trips {
            let t = w.get(mt.id);
            let p = &t.payment;
            prop_assert_eq!((p.method, p.status), (mt.method, mt.status), "trip {}", mt.id);
            prop_assert_eq!((p.captured_minor, p.refunded_minor), (mt.captured, mt.refunded), "trip {}", mt.id);
            prop_assert_eq!(due_of(p.due), mt.due, "trip {}", mt.id);
            prop_assert_eq!(
                p.refunds_pending.iter().map(|r| r.amount_minor).collect::<VecDeque<_>>(),
                mt.pending.clone()
            );
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
                ..rules()
            };
            let mut w = World::new(rules);
            // Surge would change the estimate between bookings; the model prices nothing.
            let riders: Vec<UserId> = (0..3).map(|_| w.rider()).collect();
            let drivers: Vec<UserId> = (0..3).map(|i| w.driver(0.2 + f64::from(i as u8) * 0.1)).collect();
            let mut m = Model::default();
            // Model snapshots by log length, for crashes.
            let mut snapshots: Vec<(usize, Model)> = vec![(w.log.len(), m.clone())];
            let mut sent: Vec<Hook> = Vec::new();
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
                                    pending: VecDeque::new(), due: None, hold, ended: false,
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
                        if w.run(actor, Command::CancelTrip { trip_id: t, reason: "x".into() }).is_err() {
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
                        let may = mt.method == PaymentMethod::Card
                            && matches!(mt.status, PaymentStatus::Pending | PaymentStatus::Failed | PaymentStatus::Expired)
                            && mt.captured == 0
                            && matches!(mt.due, None | Some(Due::Authorize(_) | Due::Capture(_)))
                            && (trip.status.is_open() || matches!(mt.due, Some(Due::Capture(_))));
                        prop_assert_eq!(r.is_ok(), may || mt.method == PaymentMethod::Cash, "{:?} {:?}", r, mt);
                        if r.is_ok() && mt.method == PaymentMethod::Card {
                            let prev_due = mt.due;
                            let mt = m.trip(t);
                            mt.method = PaymentMethod::Cash;
                            mt.status = PaymentStatus::Pending;
                            mt.due = None;
                            mt.hold = None;
                            if let (false, Some(Due::Capture(a))) = (trip.status.is_open(), prev_due) {
                                let d = trip.driver_id.unwrap();
                                m.mv(user(AccountKind::CashInHand, d), platform(AccountKind::Escrow), a);
                                let mt = m.trip(t);
                                mt.status = PaymentStatus::Captured;
                                mt.captured = a;
                            }
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
}

/// Regression: a trip changed between the checkpoint that wrote its history row and the
/// `Archive` record lost that change with its hot copy.
#[test]
fn archive_keeps_a_trip_changed_since_its_history_row_was_written() {
    let mut w = World::new(rules());
    let (rider, _, trip) = complete_a_trip(&mut w);
    let written = w.get(trip).revision;
    let rate = Command::RateTrip { trip_id: trip, stars: 4, comment: None };
    w.run(Actor::User(rider), rate).unwrap();
    assert!(w.get(trip).revision > written, "every change counts a revision");
    let archive = |revision| Command::Archive {
        trips: vec![(trip, revision)],
        transfer_ids: vec![],
        keys: vec![],
        gateway_events: vec![],
    };
    assert!(matches!(w.run(Actor::System, archive(written)).unwrap(), Outcome::Done));
    assert_eq!(w.get(trip).rider_rating.as_ref().map(|r| r.stars), Some(4), "the rating stays hot");
    let now = w.get(trip).revision;
    w.run(Actor::System, archive(now)).unwrap();
    assert!(w.state.trip(trip).is_none(), "at the revision the history holds, it leaves");
    w.finish();
}

#[test]
fn a_restored_trip_comes_back_for_its_command_and_leaves_again_when_refused() {
    let mut w = World::new(rules());
    let (rider, driver, trip) = complete_a_trip(&mut w);
    let copy = w.get(trip);
    let revision = copy.revision;
    let archive =
        Command::Archive { trips: vec![(trip, revision)], transfer_ids: vec![], keys: vec![], gateway_events: vec![] };
    w.run(Actor::System, archive).unwrap();
    assert!(w.state.trip(trip).is_none());
    let restored = |command| Command::Restored { trip: Arc::clone(&copy), command: Box::new(command) };

    // Refused: the trip does not stay behind, and the refusal is the one the hot trip gives.
    let bad = restored(Command::RateTrip { trip_id: trip, stars: 9, comment: None });
    assert!(matches!(w.run(Actor::User(rider), bad), Err(Error::Invalid(_))));
    assert!(w.state.trip(trip).is_none(), "a refused command leaves the trip in the history");
    let accept = restored(Command::AcceptTrip { trip_id: trip });
    assert!(matches!(w.run(Actor::User(driver), accept), Err(Error::InvalidTransition { .. })));

    // A restore must name the trip its command is about.
    let other = w.trip(rider);
    let mismatched = restored(Command::RateTrip { trip_id: other, stars: 5, comment: None });
    assert!(matches!(w.run(Actor::User(rider), mismatched), Err(Error::Internal(_))));

    // Applied: back in the state with the change, for the next checkpoint to archive again.
    w.run(Actor::User(rider), restored(Command::RateTrip { trip_id: trip, stars: 5, comment: None })).unwrap();
    assert_eq!(w.get(trip).rider_rating.as_ref().map(|r| r.stars), Some(5));
    assert!(w.get(trip).revision > revision);
    // Once hot, a second restore does not replace the newer hot copy.
    w.run(Actor::User(driver), restored(Command::RateTrip { trip_id: trip, stars: 2, comment: None })).unwrap();
    let t = w.get(trip);
    assert_eq!(
        (t.rider_rating.as_ref().map(|r| r.stars), t.driver_rating.as_ref().map(|r| r.stars)),
        (Some(5), Some(2))
    );
    w.finish();
}

// ----- the writer's copy for a checkpoint --------------------------------------------

/// The checkpoint's copy of the state is a clone on the writer thread: the collections
/// that grow with accounts must be shared by it, not copied (a copy of 1,000,000 accounts
/// stalled every command for 235 ms), and a write on either side must leave the other as
/// it was.
#[test]
fn a_cloned_state_shares_its_account_maps_until_one_side_writes() {
    use crate::ledger::{AccountKey, AccountKind};
    let mut w = World::new(rules());
    let rider = w.rider();
    w.driver(1.0);
    let egp: crate::money::Currency = "EGP".parse().unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: rider, amount_minor: 5_000, currency: egp, reason: "top-up".into() };
    w.run(Actor::Admin, credit).unwrap();
    w.run(Actor::System, Command::IssueOtp { phone: "+201011112222".into(), role: Role::Rider, code_hash: [1; 32] })
        .unwrap();
    w.add_coupon(coupon("HALF", 5_000, None));
    let mut new = w.new_trip();
    new.coupon = Some("HALF".into());
    w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap();
    assert!(!w.state.users.is_empty() && !w.state.otps.is_empty() && w.state.ledger.accounts().count() > 0);

    let copy = w.state.clone();
    assert!(copy.users.ptr_eq(&w.state.users), "users are copied, not shared");
    assert!(copy.phones.ptr_eq(&w.state.phones), "the phone index is copied, not shared");
    assert!(copy.otps.ptr_eq(&w.state.otps), "OTP records are copied, not shared");
    assert!(copy.ledger.shares_accounts_with(&w.state.ledger), "ledger accounts are copied, not shared");
    let uses = |s: &State| Arc::clone(&s.coupons["HALF"]);
    let record = uses(&w.state);
    assert_eq!(record.uses_by(rider), 1);
    let cloned = (*record).clone();
    assert!(cloned.uses_by_rider.ptr_eq(&record.uses_by_rider), "a coupon's uses per rider are copied");

    // Writes after the clone: the state moves on, the copy stays what it was.
    let second = w.rider();
    w.run(Actor::Admin, Command::RevokeTokens { user_id: rider }).unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: second, amount_minor: 700, currency: egp, reason: "top-up".into() };
    w.run(Actor::Admin, credit).unwrap();
    w.run(Actor::System, Command::IssueOtp { phone: "+201033334444".into(), role: Role::Rider, code_hash: [2; 32] })
        .unwrap();
    assert!(!copy.users.ptr_eq(&w.state.users) && !copy.ledger.shares_accounts_with(&w.state.ledger));
    assert!(copy.user(second).is_none() && copy.user_by_phone(Role::Rider, &w.state.users[&second].phone).is_none());
    assert_eq!(copy.user(rider).map(|u| u.token_generation), Some(0));
    assert_eq!(w.state.user(rider).map(|u| u.token_generation), Some(1));
    assert!(copy.otp("+201033334444").is_none());
    let second_wallet = AccountKey::of(AccountKind::RiderWallet, second, egp);
    assert_eq!(
        (copy.ledger().account(&second_wallet).balance(), w.state.ledger().account(&second_wallet).balance()),
        (0, 700)
    );
    assert_ne!(copy, w.state);
    copy.check_invariants().unwrap();
    w.finish();
}

/// The persistent maps encode as the std maps they replaced (a postcard map: its length,
/// then its entries), so a checkpoint written before them reads back the same and
/// `STATE_FORMAT` did not change.
#[test]
fn the_account_maps_encode_as_the_std_maps_they_replaced() {
    use std::collections::HashMap;
    let users: Vec<(UserId, u64)> = (1..=50).map(|i| (UserId::from_raw(i * 7_919).unwrap(), i)).collect();
    let std_hash: HashMap<UserId, u64> = users.iter().copied().collect();
    let std_tree: BTreeMap<UserId, u64> = users.iter().copied().collect();
    let ord: imbl::OrdMap<UserId, u64> = users.iter().copied().collect();
    // A BTreeMap (the OTP records, the ledger's accounts, a coupon's uses) encodes byte for byte the same.
    assert_eq!(postcard::to_allocvec(&ord).unwrap(), postcard::to_allocvec(&std_tree).unwrap());
    // A std HashMap (users, the phone index) was written in its own order: it reads back whole.
    let back: imbl::OrdMap<UserId, u64> = postcard::from_bytes(&postcard::to_allocvec(&std_hash).unwrap()).unwrap();
    assert_eq!(back, ord);
    let forth: HashMap<UserId, u64> = postcard::from_bytes(&postcard::to_allocvec(&ord).unwrap()).unwrap();
    assert_eq!(forth, std_hash);
}

/// `who` takes a driver record as proof of the driver role (the location path then never
/// looks in the users map): the invariants refuse a driver record of anyone else.
#[test]
fn a_driver_record_of_a_non_driver_breaks_the_invariants() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(1.0);
    assert_eq!(w.state.who(Actor::User(d)).unwrap(), Who::Driver(d));
    assert_eq!(w.state.who(Actor::User(rider)).unwrap(), Who::Rider(rider));
    w.state.check_invariants().unwrap();
    let forged = Arc::new(Driver::new(rider, Category::new("economy").unwrap()));
    let mut broken = w.state.clone();
    broken.drivers.insert(rider, forged);
    assert!(broken.check_invariants().unwrap_err().contains("is not a driver's"));
    w.finish();
}

/// The writer's checkpoint copy leaves out only the spatial index: it encodes to the same
/// bytes as the state, and what a checkpoint reads back has its index rebuilt.
#[test]
fn the_checkpoint_copy_is_the_state_but_its_index() {
    let mut w = World::new(rules());
    let near = w.driver(0.3);
    let far = w.driver(2.0);
    let rider = w.rider();
    w.trip(rider);
    let copy = w.state.copy_for_checkpoint();
    assert_eq!(postcard::to_allocvec(&copy).unwrap(), postcard::to_allocvec(&w.state).unwrap());
    let here = LatLng::new(CAIRO.0, CAIRO.1).unwrap();
    assert!(copy.drivers_near(here, 5_000.0, 10).unwrap().is_empty(), "the copy holds no index");
    let back: State = postcard::from_bytes(&postcard::to_allocvec(&copy).unwrap()).unwrap();
    assert_eq!(back, w.state);
    let found: Vec<UserId> = back.drivers_near(here, 5_000.0, 10).unwrap().iter().map(|(d, _)| d.id).collect();
    assert_eq!(found, vec![near, far], "the index is rebuilt from the drivers when read back");
    w.finish();
}

/// The invariants catch a phone index that disagrees with the users (a checkpoint reads
/// them from two tables).
#[test]
fn a_phone_index_that_disagrees_with_the_users_breaks_the_invariants() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let other = w.rider();
    let mut broken = w.state.clone();
    let key = broken.phones.keys().next().cloned().unwrap();
    let owner = broken.phones[&key];
    broken.phones.insert(key.clone(), if owner == rider { other } else { rider });
    assert!(broken.check_invariants().unwrap_err().contains("phone index"));
    let mut missing = w.state.clone();
    missing.phones.remove(&key);
    assert!(missing.check_invariants().unwrap_err().contains("phone index"));
    w.finish();
}
