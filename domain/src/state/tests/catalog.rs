//! Zones, prices, coupons and surge (`catalog.rs`): who may change them, what a valid zone
//! is, the price locked at booking, coupon uses per rider, surge on its timer.

use super::*;
use crate::command::NewUser;
use crate::user::{Category, Vehicle};

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
    let moto = Vehicle::new(Category::new("moto").unwrap(), "M 1");
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
    let estimate = w
        .state
        .price_book()
        .estimate(new.pickup.point, &new.route, Some(&new.category), None, None, rider, w.now)
        .unwrap();
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
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: t.id, code: crate::trip::CancelReason::Other, reason: "changed plans".into() },
    )
    .unwrap();
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
