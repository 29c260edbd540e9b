//! Driver positions (`location.rs`): validated reports, the spoofing check (reports and the
//! status endpoint alike), coalescing, the spatial index, and the distance billed.

use super::*;
use crate::testkit::CAIRO;

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
    w.run(
        Actor::Admin,
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: String::new() },
    )
    .unwrap();
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
