//! Money (`money.rs`, `gateway.rs`): what each payment method moves at completion and at a
//! cancel, wallet holds and their expiry, card payments through the gateway once per event
//! (late, stale, mismatched and archived events), refunds within what was captured, dead
//! letters and the switch to cash, and the commission of the trip's zone and category.

use super::*;
use crate::ledger::{AccountKey, AccountKind};
use crate::payment::PaymentEventKind;
use crate::route::StraightLine;
use crate::trip::{GatewayAction, PaymentMethod, PaymentStatus, Place, TripStatus};
use crate::user::{Category, Vehicle};

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
    let c = Command::CreditWallet { id: None, user_id: user, amount_minor, currency: egp(), reason: "top-up".into() };
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
    assert_eq!(w.state.ledger().account(&AccountKey::platform(AccountKind::PlatformRevenue, egp())).balance(), 1006);
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
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "x".into() },
    )
    .unwrap();
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
    assert_eq!(w.run(Actor::Admin, refund(6705)), Err(Error::RefundExceedsCaptured { captured: 6704, refunded: 0 }));
    w.run(Actor::Admin, refund(704)).unwrap();
    assert_eq!(w.get(trip).payment.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(w.run(Actor::Admin, refund(6001)), Err(Error::RefundExceedsCaptured { captured: 6704, refunded: 704 }));
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
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "x".into() },
    )
    .unwrap();
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
    assert!(ignored(w.run(Actor::System, pay_event(trip, "evt_r2", PaymentEventKind::RefundSucceeded, 400)).unwrap()));
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
fn the_gateway_reference_is_recorded_by_the_worker_for_the_trips_own_gateway_only() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
    let record = |gateway: &str, reference: &str| Command::RecordGatewayRef {
        trip_id: trip,
        gateway: gateway.into(),
        reference: reference.into(),
    };
    assert!(matches!(w.run(Actor::User(rider), record("sim", "pi_1")), Err(Error::Forbidden(_))));
    assert!(matches!(w.run(Actor::System, record("stripe", "pi_1")), Err(Error::Invalid(_))), "not its gateway");
    for bad in ["", "pi 1", "pi_\n", &"x".repeat(256)] {
        assert!(matches!(w.run(Actor::System, record("sim", bad)), Err(Error::Invalid(_))), "{bad:?}");
    }
    assert_eq!(w.get(trip).payment.gateway_ref, None, "refusals change nothing");
    w.run(Actor::System, record("sim", "pi_1")).unwrap();
    assert_eq!(w.run(Actor::System, record("sim", "pi_1")).unwrap(), Outcome::Done, "the same again: nothing");
    assert_eq!(w.get(trip).payment.gateway_ref.as_deref(), Some("pi_1"));
    let missing = Command::RecordGatewayRef {
        trip_id: TripId::from_raw(999).unwrap(),
        gateway: "sim".into(),
        reference: "pi_2".into(),
    };
    assert!(matches!(w.run(Actor::System, missing), Err(Error::NotFound { .. })));
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
    // The rider's word books nothing on the driver: the driver confirms the cash.
    assert_eq!(balance(&w, acct(AccountKind::CashInHand, d)), 0);
    w.run(Actor::User(d), Command::ConfirmCashReceived { trip_id: trip }).unwrap();
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
    let da = w.user(Role::Driver, Some(Vehicle::new(economy, "A 1")));
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
        alerts: Vec::new(),
        audit: Vec::new(),
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

/// Finding 6 of the red team (a card trip switched to cash after the fact): after a failed
/// card payment the rider switched the finished ride to cash and the driver's cash in hand
/// was debited a fare they never received. Now the switch waits for the driver: only their
/// confirmation books the cash on them; unconfirmed, the fare becomes the rider's debt.
#[test]
fn a_card_trip_switched_to_cash_after_the_fact_waits_for_the_driver_then_becomes_the_riders_debt() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
    ride(&mut w, d, trip);
    w.run(Actor::System, pay_event(trip, "evt_declined", PaymentEventKind::Failed, 0)).unwrap();
    let escrow = AccountKey::platform(AccountKind::Escrow, egp());
    assert_eq!(balance(&w, escrow), -6704);
    let switch = Command::SetPaymentMethod { trip_id: trip, method: PaymentMethod::Cash };
    let t = match w.run(Actor::User(rider), switch.clone()).unwrap() {
        Outcome::Trip(t) => t,
        o => panic!("{o:?}"),
    };
    assert!(t.payment.cash_claimed_at.is_some() && t.payment.due.is_none(), "no capture is asked meanwhile");
    assert_eq!(t.payment.method, PaymentMethod::Card, "not paid in cash until the driver says so");
    assert_eq!(balance(&w, acct(AccountKind::CashInHand, d)), 0, "nothing booked on the driver");
    assert!(w.state.finished_trips().iter().all(|f| f.id != trip), "the trip stays hot while it waits");
    // Again: the same claim; the rider cannot confirm for the driver, nor staff.
    assert!(matches!(w.run(Actor::User(rider), switch), Ok(Outcome::Trip(_))));
    let confirm = Command::ConfirmCashReceived { trip_id: trip };
    for who in [Actor::User(rider), Actor::Admin] {
        assert!(matches!(w.run(who, confirm.clone()), Err(Error::Forbidden(_))));
    }
    // The driver never confirms: the fare becomes the rider's debt, never the driver's.
    w.advance(i64::from(rules().cash_confirm_ttl_s) + 1);
    let p = w.get(trip).payment.clone();
    assert_eq!(p.cash_claimed_at, None);
    assert_eq!(balance(&w, acct(AccountKind::CashInHand, d)), 0);
    assert_eq!(balance(&w, acct(AccountKind::RiderDebt, rider)), -6704, "the rider owes the fare");
    assert_eq!(balance(&w, escrow), 0);
    assert!(matches!(w.run(Actor::User(d), confirm), Err(Error::InvalidTransition { .. })), "too late to confirm");
    w.finish();
}

/// Finding 8 of the red team (a webhook not tied to the trip's gateway): an event signed
/// with another gateway's secret captured a trip paid through `sim`. A card trip records
/// its gateway at booking; another gateway's event is remembered and moves nothing.
#[test]
fn a_webhook_is_tied_to_the_trips_gateway() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = id_of(book(&mut w, rider, PaymentMethod::Card, None).unwrap());
    assert_eq!(w.get(trip).payment.gateway.as_deref(), Some("sim"));
    let t = ride(&mut w, d, trip);
    let before = w.state.clone();
    let foreign = Command::PaymentEvent {
        gateway: "paystack".into(),
        event_id: "evt_foreign".into(),
        kind: PaymentEventKind::Captured,
        trip_id: trip,
        amount_minor: t.fare.final_minor.unwrap(),
        currency: egp(),
        archived: None,
    };
    let o = w.run(Actor::System, foreign.clone()).unwrap();
    assert!(
        matches!(&o, Outcome::PaymentEvent { duplicate: false, ignored: Some(why) } if why.contains("sim")),
        "{o:?}"
    );
    assert_eq!(w.get(trip).payment, before.trip(trip).unwrap().payment, "nothing moved");
    assert_eq!(balance(&w, AccountKey::platform(AccountKind::GatewayClearing, egp())), 0);
    // Its own gateway's capture does.
    let capture = pay_event(trip, "evt_capture", PaymentEventKind::Captured, t.fare.final_minor.unwrap());
    w.run(Actor::System, capture).unwrap();
    assert_eq!(w.get(trip).payment.status, PaymentStatus::Captured);
    w.finish();
}
