//! Stops on the way (`trips.rs`'s `create_trip`): a trip keeps its stops in order, at most
//! `MAX_STOPS`, each a valid place; its fare is the formula over the route summed over
//! every leg, to the minor unit (a proptest, against the formula worked out by hand).

use proptest::prelude::*;

use super::*;
use crate::command::NewTrip;
use crate::fare::{self, Pricing};
use crate::route::{Route, RouteSource, StraightLine};
use crate::trip::{MAX_STOPS, Place};
use crate::user::Category;
use crate::zone::NO_SURGE_BPS;

fn p(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).unwrap()
}

/// Books `new` for a fresh rider; the outcome.
fn book(w: &mut World, new: NewTrip) -> crate::error::Result<Outcome> {
    let rider = w.rider();
    w.run(Actor::User(rider), Command::CreateTrip(new))
}

/// `round(n / d)`, half up, on non-negative integers: the fare's rounding, written again
/// here so that the test does not check the formula against itself.
fn div_half_up(n: i128, d: i128) -> i128 {
    (n + d / 2) / d
}

/// API.md's fare formula for `route` at no surge and no coupon, by hand.
fn formula(pricing: &Pricing, extra_fee_minor: i64, route: &Route) -> i64 {
    let distance = div_half_up(i128::from(pricing.per_km_minor) * i128::from(route.distance_m), 1000);
    let time = div_half_up(i128::from(pricing.per_min_minor) * i128::from(route.duration_s), 60);
    let ride = i128::from(pricing.base_minor) + distance + time;
    let fare = ride.max(i128::from(pricing.minimum_minor))
        + i128::from(pricing.booking_fee_minor)
        + i128::from(extra_fee_minor);
    i64::try_from(fare).unwrap()
}

#[test]
fn a_trip_keeps_its_stops_in_order_and_is_priced_on_the_whole_route() {
    let mut w = World::new(rules());
    let stops = vec![Place { point: p(30.05, 31.24), address: Some("Bakery".into()) }, Place::at(p(30.055, 31.245))];
    let mut new = w.new_trip();
    let waypoints: Vec<LatLng> =
        std::iter::once(new.pickup.point).chain(stops.iter().map(|s| s.point)).chain([new.dropoff.point]).collect();
    new.route = StraightLine::default().through(&waypoints);
    new.stops = stops.clone();
    let direct = {
        let mut plain = w.new_trip();
        plain.pickup = new.pickup.clone();
        match book(&mut w, plain).unwrap() {
            Outcome::Trip(t) => t.fare.estimate_minor,
            o => panic!("{o:?}"),
        }
    };
    let Outcome::Trip(trip) = book(&mut w, new.clone()).unwrap() else { panic!("a trip") };
    assert_eq!(trip.stops, stops);
    assert_eq!(trip.fare.locked.route, new.route);
    assert!(trip.fare.estimate_minor > direct, "{} ≤ {direct}: the stops cost nothing", trip.fare.estimate_minor);
    w.finish();
}

#[test]
fn more_than_max_stops_or_a_bad_stop_is_refused() {
    let mut w = World::new(rules());
    let mut new = w.new_trip();
    new.stops = vec![Place::at(p(30.05, 31.24)); MAX_STOPS + 1];
    let refused = book(&mut w, new.clone());
    assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains("stops")), "{refused:?}");
    new.stops = vec![Place::at(p(30.05, 31.24)), Place { point: p(30.05, 31.24), address: Some("a\u{7}b".into()) }];
    assert!(matches!(book(&mut w, new.clone()), Err(Error::Invalid(_))));
    // Exactly MAX_STOPS is fine.
    new.stops = vec![Place::at(p(30.05, 31.24)); MAX_STOPS];
    assert!(book(&mut w, new).is_ok());
    w.finish();
}

/// A leg of a city ride: up to 40 km and 2 hours, from a router or the straight line.
fn leg() -> impl Strategy<Value = Route> {
    (0..=40_000u64, 0..=7_200u64, any::<bool>()).prop_map(|(distance_m, duration_s, router)| Route {
        distance_m,
        duration_s,
        source: if router { RouteSource::Router } else { RouteSource::StraightLine },
    })
}

/// A stop within a few kilometres of central Cairo (inside the demo zone).
fn stop() -> impl Strategy<Value = Place> {
    (30.00..=30.09f64, 31.20..=31.29f64).prop_map(|(lat, lng)| Place::at(p(lat, lng)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The fare a booking with 0–3 stops locks is the formula over the legs summed, to the
    /// minor unit: booked through `apply`, compared with the formula by hand and with
    /// `fare::estimate` on the same summed route.
    #[test]
    fn the_fare_with_stops_is_the_formula_over_the_summed_route(
        (stops, legs) in (0..=MAX_STOPS).prop_flat_map(|n| {
            (proptest::collection::vec(stop(), n), proptest::collection::vec(leg(), n + 1))
        }),
        comfort in any::<bool>(),
    ) {
        let mut w = World::new(rules());
        let mut new = w.new_trip();
        new.category = Category::new(if comfort { "comfort" } else { "economy" }).unwrap();
        new.stops = stops.clone();
        new.route = Route::sum(legs.iter().copied());
        let summed = Route {
            distance_m: legs.iter().map(|l| l.distance_m).sum(),
            duration_s: legs.iter().map(|l| l.duration_s).sum(),
            source: if legs.iter().all(|l| l.source == RouteSource::Router) {
                RouteSource::Router
            } else {
                RouteSource::StraightLine
            },
        };
        prop_assert_eq!(new.route, summed);

        let zone = std::sync::Arc::clone(w.state.price_book().catalog.zones().next().unwrap());
        let pricing = zone.spec.pricing[&new.category];
        let Outcome::Trip(trip) = book(&mut w, new.clone()).unwrap() else { panic!("a trip") };
        prop_assert_eq!(trip.fare.surge_bps, NO_SURGE_BPS);
        prop_assert_eq!(&trip.stops, &stops);
        prop_assert_eq!(trip.fare.locked.route, summed);
        let by_hand = formula(&pricing, zone.spec.extra_fee_minor, &summed);
        prop_assert_eq!(trip.fare.estimate_minor, by_hand);
        let (currency, extra) = (zone.spec.currency, zone.spec.extra_fee_minor);
        let engine = fare::estimate(&pricing, currency, extra, &summed, NO_SURGE_BPS, None).unwrap();
        prop_assert_eq!(engine.fare.amount_minor, by_hand);
        w.finish();
    }
}
