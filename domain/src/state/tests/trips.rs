//! The trip's lifecycle and dispatch (`trips.rs`, `dispatch.rs`, `users.rs`): booking, offers
//! to the nearest eligible drivers, rounds and lapses, accept and its refusals, arrive, the
//! pickup code, start, complete, cancels by each side with their fees, the waiting charge,
//! driver availability and suspension, roles, bad input and stamped ids.

use super::*;
use crate::command::NewUser;
use crate::id::{IdSource, RandomIds};
use crate::trip::{CancelledBy, OfferState, PickupCode, Place, TripKind, TripStatus, WithdrawReason};
use crate::user::Category;

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
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "changed my mind".into() },
    )
    .unwrap();
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
        w.run(
            Actor::User(rider),
            Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: String::new() }
        ),
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
    w.run(
        Actor::User(a),
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "flat tyre".into() },
    )
    .unwrap();
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
        w.run(
            Actor::User(b),
            Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: String::new() }
        ),
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
    w.run(
        Actor::Admin,
        Command::CancelTrip {
            trip_id: trip,
            code: crate::trip::CancelReason::Other,
            reason: "<script>x</script>".into(),
        },
    )
    .unwrap();
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Cancelled);
    assert_eq!(t.cancellation.as_ref().unwrap().by, CancelledBy::Staff);
    assert_eq!(w.state.driver(a).unwrap().availability, Availability::Available);
    w.finish();
}

#[test]
fn a_cancel_records_who_the_code_and_the_text() {
    use crate::trip::CancelReason;
    let mut w = World::new(rules());
    let rider = w.rider();
    let a = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(a, trip).unwrap();
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: trip, code: CancelReason::DriverLate, reason: "ten minutes away".into() },
    )
    .unwrap();
    let c = w.get(trip).cancellation.clone().unwrap();
    assert_eq!((c.by, c.code, c.reason.as_str()), (CancelledBy::Rider, CancelReason::DriverLate, "ten minutes away"));
    // The system actor's cancel is the system's, not staff's.
    let other = w.trip(rider);
    w.run(Actor::System, Command::CancelTrip { trip_id: other, code: CancelReason::Other, reason: String::new() })
        .unwrap();
    assert_eq!(w.get(other).cancellation.as_ref().unwrap().by, CancelledBy::System);
    w.finish();
}

#[test]
fn a_search_that_times_out_records_a_system_cancellation() {
    use crate::trip::{CancelReason, EXPIRED_REASON};
    let mut w = World::new(rules());
    let rider = w.rider();
    let trip = w.trip(rider);
    assert_eq!(w.get(trip).cancellation, None);
    w.advance(i64::from(w.state.rules().timeout_s) + 1);
    let t = w.get(trip);
    assert_eq!(t.status, TripStatus::Expired);
    let c = t.cancellation.clone().unwrap();
    assert_eq!((c.by, c.code, c.reason.as_str()), (CancelledBy::System, CancelReason::Other, EXPIRED_REASON));
    w.finish();
}

#[test]
fn cancel_reason_codes_round_trip_through_their_wire_names() {
    use crate::trip::CancelReason;
    for code in CancelReason::ALL {
        assert_eq!(CancelReason::parse(code.as_str()), Some(code));
        assert_eq!(serde_json::to_value(code).unwrap(), serde_json::Value::from(code.as_str()));
    }
    assert_eq!(CancelReason::parse("bored"), None);
    assert_eq!(CancelReason::default(), CancelReason::Other);
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
    for (i, bad) in [wrong, "12345", "", "abcd"].into_iter().enumerate() {
        // Counted (so a code cannot be guessed attempt after attempt), answered as a refusal.
        assert_eq!(
            w.run(Actor::User(a), Command::StartTrip { trip_id: trip, pickup_code: bad.into() }),
            Ok(Outcome::PickupCodeRefused { attempts_left: crate::trip::MAX_CODE_FAILURES - 1 - i as u8 })
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
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "late".into() },
    )
    .unwrap();
    assert_eq!(w.get(trip).fare.cancel_fee_minor, Some(1000));
    let d = w.driver(0.4); // the first one's position is stale by now
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.advance(500);
    w.run(
        Actor::Admin,
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "ops".into() },
    )
    .unwrap();
    assert_eq!(w.get(trip).fare.cancel_fee_minor, None);
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
    w.run(
        Actor::Admin,
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: String::new() },
    )
    .unwrap();
    assert_eq!(w.state.driver(b).unwrap().availability, Availability::Offline);
    w.run(Actor::Admin, suspend(false)).unwrap();
    w.run(Actor::User(a), Command::SetDriverStatus { online: true, location: None }).unwrap();
    assert!(w.state.user(a).is_some_and(|u| !u.suspended));
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
        delivery_code: None,
    });
    w.run(Actor::User(rider), Command::CreateTrip(t)).unwrap();
    let trip = w.trip(rider);
    assert!(matches!(
        w.run(
            Actor::User(rider),
            Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "a\u{7}b".into() }
        ),
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
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: first, code: crate::trip::CancelReason::Other, reason: String::new() },
    )
    .unwrap();
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

/// Finding 5 of the red team (pickup code brute force): 115 wrong 4-digit codes were
/// refused with no lockout, so a driver could start (and bill) a ride without its rider.
/// The 5th wrong code locks the start, even for the right code, until staff unlock it.
#[test]
fn pickup_code_brute_force_locks_the_start_until_staff_unlock_it() {
    use crate::trip::MAX_CODE_FAILURES;
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    let wrong = if code == "0000" { "0001" } else { "0000" };
    let start = |c: &str| Command::StartTrip { trip_id: trip, pickup_code: c.into() };
    for left in (0..MAX_CODE_FAILURES).rev() {
        assert_eq!(w.run(Actor::User(d), start(wrong)), Ok(Outcome::PickupCodeRefused { attempts_left: left }));
    }
    assert_eq!(w.get(trip).code_failures, MAX_CODE_FAILURES);
    // Locked: the right code is refused too, and so is a sixth guess; nothing changes.
    for c in [code.as_str(), wrong] {
        assert!(matches!(w.run(Actor::User(d), start(c)), Err(Error::Forbidden(_))), "{c}");
    }
    // Only staff unlock.
    let unlock = Command::UnlockPickupCode { trip_id: trip };
    for who in [Actor::User(d), Actor::User(rider)] {
        assert!(matches!(w.run(who, unlock.clone()), Err(Error::Forbidden(_))));
    }
    assert!(matches!(w.run(Actor::Admin, unlock), Ok(Outcome::Trip(t)) if t.code_failures == 0));
    assert!(matches!(w.run(Actor::User(d), start(&code)), Ok(Outcome::Trip(t)) if t.status == TripStatus::InProgress));
    w.finish();
}

#[test]
fn a_round_counts_the_drivers_who_could_drive_within_the_radius_up_to_the_cap() {
    use crate::trip::MAX_NEARBY_COUNTED;
    let mut w = World::new(rules());
    let rider = w.rider();
    let near: Vec<UserId> = (1..=MAX_NEARBY_COUNTED + 3).map(|i| w.driver(0.01 * f64::from(i))).collect();
    let _outside_radius = w.driver(6.0);
    let _comfort = w.driver_at(0.5, "comfort");
    let first = w.trip(rider);
    assert_eq!(w.get(first).nearby_drivers, Some(MAX_NEARBY_COUNTED), "counted up to the cap");

    // Seven left online: those holding the first trip's offers count (they could drive).
    for d in &near[7..] {
        w.run(Actor::User(*d), Command::SetDriverStatus { online: false, location: None }).unwrap();
    }
    let second = w.trip(rider);
    assert_eq!(w.get(second).nearby_drivers, Some(7));
    let t = w.get(second);
    let (count, nearest) = w.state.supply_near(t.pickup.point, &t.category, w.now);
    assert_eq!(count, 7);
    assert_eq!(nearest.map(|n| n.driver.id), Some(near[0]));
    w.finish();
}
