//! Parcels and coupon admin (issue 19), across `trips.rs`, `catalog.rs` and `notify.rs`:
//! the price by weight and the one weight limit, the delivery code by SMS, its lockout (a
//! proptest against a model), staff completion, disabled coupons and what `uses` counts.

use proptest::prelude::*;

use super::*;
use crate::fare::ParcelPricing;
use crate::ledger::{AccountKey, AccountKind};
use crate::outbox::{Channel, Kind, Target};
use crate::trip::{CancelReason, MAX_CODE_FAILURES, Parcel, PaymentMethod, TripKind, TripStatus};

const RECIPIENT: &str = "+201055555555";

/// A world whose economy carries parcels at 250 per kg, up to 20 kg.
fn parcel_world() -> World {
    let mut w = World::new(rules());
    let mut spec = crate::demo::cairo().unwrap();
    spec.pricing.values_mut().for_each(|p| p.parcel = Some(ParcelPricing { per_kg_minor: 250, max_weight_kg: 20 }));
    let zone_id = w.zone_id();
    w.run(Actor::Admin, Command::ReplaceZone { zone_id, zone: Box::new(spec) }).unwrap();
    w
}

fn parcel_of(w: &World, weight_g: u32) -> crate::command::NewTrip {
    let mut t = w.new_trip();
    t.kind = TripKind::Parcel;
    t.parcel =
        Some(Parcel { weight_g, description: "books".into(), recipient_phone: RECIPIENT.into(), delivery_code: None });
    t
}

/// `rider` sends a parcel of `weight_g`; a driver takes it and starts: (driver, trip).
fn parcel_in_progress(w: &mut World, rider: UserId, weight_g: u32) -> (UserId, TripId) {
    let d = w.driver(0.5);
    let Ok(Outcome::Trip(t)) = w.run(Actor::User(rider), Command::CreateTrip(parcel_of(w, weight_g))) else {
        panic!("booking refused")
    };
    w.accept(d, t.id).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: t.id }).unwrap();
    let code = w.get(t.id).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: t.id, pickup_code: code }).unwrap();
    (d, t.id)
}

fn delivery_code(w: &World, trip: TripId) -> String {
    w.get(trip).parcel.as_ref().unwrap().delivery_code.unwrap().to_string()
}

fn deliver(trip: TripId, code: &str) -> Command {
    Command::CompleteDelivery { trip_id: trip, delivery_code: code.into(), distance_m: None, dropoff: None }
}

fn complete(trip: TripId) -> Command {
    Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }
}

fn wrong_code(right: &str) -> &'static str {
    if right == "0000" { "0001" } else { "0000" }
}

#[test]
fn a_parcel_is_priced_by_weight_and_the_category_sets_the_one_limit() {
    let mut w = parcel_world();
    let rider = w.rider();
    let ride = w.new_trip();
    let book = w.state.price_book();
    let at = |g| book.estimate(ride.pickup.point, &ride.route, Some(&ride.category), g, None, rider, w.now);
    let plain = at(None).unwrap().quotes[0].1;
    // 2.5 kg × 250 = 625 on top of the ride's price, in the estimate…
    let quoted = at(Some(2_500)).unwrap().quotes[0].1;
    assert_eq!(quoted.breakdown.parcel_minor, 625);
    assert_eq!(quoted.fare.amount_minor, plain.fare.amount_minor + 625);
    // …and 20 kg is the limit: one gram more is `parcel_too_heavy`, at estimate and booking.
    assert!(at(Some(20_000)).is_ok());
    assert_eq!(at(Some(20_001)).unwrap_err(), Error::ParcelTooHeavy { max_weight_kg: 20 });
    assert_eq!(
        w.run(Actor::User(rider), Command::CreateTrip(parcel_of(&w, 20_001))),
        Err(Error::ParcelTooHeavy { max_weight_kg: 20 })
    );
    // Booked: the estimate locked with its parcel line, and the final fare keeps it.
    let (d, trip) = parcel_in_progress(&mut w, rider, 2_500);
    let t = w.get(trip);
    assert_eq!((t.fare.estimate_minor, t.fare.estimate_breakdown.parcel_minor), (quoted.fare.amount_minor, 625));
    let code = delivery_code(&w, trip);
    let Ok(Outcome::Trip(done)) = w.run(Actor::User(d), deliver(trip, &code)) else { panic!() };
    assert_eq!(done.status, TripStatus::Completed);
    assert_eq!(done.fare.final_breakdown.unwrap().parcel_minor, 625);
    w.finish();
}

#[test]
fn a_category_without_parcel_prices_carries_fifty_kilograms_at_the_ride_price() {
    let mut w = World::new(rules());
    let rider = w.rider();
    assert_eq!(
        w.run(Actor::User(rider), Command::CreateTrip(parcel_of(&w, 50_001))),
        Err(Error::ParcelTooHeavy { max_weight_kg: crate::fare::DEFAULT_MAX_PARCEL_KG })
    );
    let Ok(Outcome::Trip(t)) = w.run(Actor::User(rider), Command::CreateTrip(parcel_of(&w, 50_000))) else { panic!() };
    assert_eq!(t.fare.estimate_breakdown.parcel_minor, 0);
    w.finish();
}

#[test]
fn the_recipient_gets_the_delivery_code_by_sms_once() {
    let mut w = parcel_world();
    let rider = w.rider();
    let (_, trip) = parcel_in_progress(&mut w, rider, 1_000);
    let code = delivery_code(&w, trip);
    let sms = w.state.outbox().newest_first(None, |n| n.kind == Kind::DeliveryCode, usize::MAX);
    assert_eq!(sms.len(), 1, "one SMS, at booking");
    let n = &sms[0];
    assert_eq!((n.channel, &n.target, n.user_id), (Channel::Sms, &Target::Phone(RECIPIENT.into()), None));
    assert_eq!(n.params.text.as_deref(), Some(code.as_str()));
    assert_eq!(n.params.trip_id, Some(trip));
    let body = crate::templates::render(Kind::DeliveryCode, &n.params).body;
    assert!(body.contains(&code), "{body}");
    // A ride sends no delivery code.
    w.trip(rider);
    assert_eq!(w.state.outbox().newest_first(None, |n| n.kind == Kind::DeliveryCode, usize::MAX).len(), 1);
    w.finish();
}

#[test]
fn completing_a_parcel_needs_its_code_and_five_wrong_codes_leave_it_to_staff() {
    let mut w = parcel_world();
    let rider = w.rider();
    let (d, trip) = parcel_in_progress(&mut w, rider, 1_000);
    let code = delivery_code(&w, trip);
    let wrong = wrong_code(&code);
    // No code: `invalid_request` naming it; the rider cannot deliver.
    assert!(matches!(w.run(Actor::User(d), complete(trip)), Err(Error::InvalidParam { param: "delivery_code", .. })));
    assert!(matches!(w.run(Actor::User(rider), deliver(trip, &code)), Err(Error::Forbidden(_))));
    for left in (0..MAX_CODE_FAILURES).rev() {
        assert_eq!(
            w.run(Actor::User(d), deliver(trip, wrong)),
            Ok(Outcome::DeliveryCodeRefused { attempts_left: left })
        );
    }
    assert_eq!(w.get(trip).delivery_code_failures, MAX_CODE_FAILURES);
    // Locked: even the right code is refused, and nothing changes.
    for c in [code.as_str(), wrong] {
        assert!(matches!(w.run(Actor::User(d), deliver(trip, c)), Err(Error::Forbidden(_))), "{c}");
    }
    // Staff complete it without the code.
    let Ok(Outcome::Trip(t)) = w.run(Actor::Admin, complete(trip)) else { panic!() };
    assert_eq!((t.status, t.driver_id), (TripStatus::Completed, Some(d)));
    assert!(w.state.driver(d).unwrap().trip_id.is_none(), "the driver is free again");
    // A ride has no delivery code; staff do not complete rides.
    let d2 = w.driver(0.6);
    let ride = w.trip(rider);
    w.accept(d2, ride).unwrap();
    w.run(Actor::User(d2), Command::DriverArrived { trip_id: ride }).unwrap();
    let pc = w.get(ride).pickup_code.to_string();
    w.run(Actor::User(d2), Command::StartTrip { trip_id: ride, pickup_code: pc }).unwrap();
    assert!(matches!(
        w.run(Actor::User(d2), deliver(ride, "1234")),
        Err(Error::InvalidParam { param: "delivery_code", .. })
    ));
    assert!(matches!(w.run(Actor::Admin, complete(ride)), Err(Error::Forbidden(_))));
    w.finish();
}

#[test]
fn staff_unlock_the_delivery_code_and_the_driver_delivers() {
    let mut w = parcel_world();
    let rider = w.rider();
    let (d, trip) = parcel_in_progress(&mut w, rider, 1_000);
    let code = delivery_code(&w, trip);
    for _ in 0..MAX_CODE_FAILURES {
        w.run(Actor::User(d), deliver(trip, wrong_code(&code))).unwrap();
    }
    let Ok(Outcome::Trip(t)) = w.run(Actor::Admin, Command::UnlockPickupCode { trip_id: trip }) else { panic!() };
    assert_eq!(t.delivery_code_failures, 0);
    let Ok(Outcome::Trip(t)) = w.run(Actor::User(d), deliver(trip, &code)) else { panic!() };
    assert_eq!(t.status, TripStatus::Completed);
    w.finish();
}

#[test]
fn a_disabled_coupon_prices_nothing_and_uses_count_bookings_less_fee_free_cancels() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    w.add_coupon(coupon("SAVE10", 1000, None));
    let uses = |w: &World| w.state.price_book().coupons["SAVE10"].uses;
    let book = |w: &mut World| {
        let mut t = w.new_trip();
        t.coupon = Some("SAVE10".into());
        match w.run(Actor::User(rider), Command::CreateTrip(t)) {
            Ok(Outcome::Trip(t)) => Ok(t.id),
            Err(e) => Err(e),
            Ok(o) => panic!("{o:?}"),
        }
    };
    let cancel =
        |trip| Command::CancelTrip { trip_id: trip, code: CancelReason::Other, reason: "changed my mind".into() };
    // Booked, then cancelled for free: no use.
    let first = book(&mut w).unwrap();
    assert_eq!(uses(&w), 1);
    w.run(Actor::User(rider), cancel(first)).unwrap();
    assert_eq!(uses(&w), 0);
    // Booked, accepted, cancelled after the free window: the fee keeps the use.
    let second = book(&mut w).unwrap();
    w.accept(d, second).unwrap();
    w.advance(i64::from(crate::demo::ECONOMY.free_cancel_s) + 1);
    let Ok(Outcome::Trip(t)) = w.run(Actor::User(rider), cancel(second)) else { panic!() };
    assert_eq!(t.fare.cancel_fee_minor, Some(crate::demo::ECONOMY.cancel_fee_minor));
    assert_eq!(uses(&w), 1);
    // Only an admin disables; an unknown code is not found.
    let disable = |code: &str| Command::DisableCoupon { code: code.into() };
    assert!(matches!(w.run(Actor::User(rider), disable("SAVE10")), Err(Error::Forbidden(_))));
    assert!(matches!(w.run(Actor::Admin, disable("NOPE")), Err(Error::NotFound { .. })));
    let Ok(Outcome::Coupon(c)) = w.run(Actor::Admin, disable("SAVE10")) else { panic!() };
    assert_eq!(c.disabled_at, Some(w.now));
    // Later estimates and bookings with it: `coupon_invalid`; without it, fine.
    let t = w.new_trip();
    let estimate = w.state.price_book().estimate(t.pickup.point, &t.route, None, None, Some("SAVE10"), rider, w.now);
    assert!(matches!(estimate, Err(Error::CouponInvalid(_))));
    assert!(matches!(book(&mut w), Err(Error::CouponInvalid(_))));
    // Disabling again answers it as it is: the first time stays recorded.
    let first_time = w.now;
    w.advance(60);
    let Ok(Outcome::Coupon(c)) = w.run(Actor::Admin, disable("SAVE10")) else { panic!() };
    assert_eq!((c.disabled_at, c.uses), (Some(first_time), 1));
    w.finish();
}

/// What a driver (or staff) does at the door of an in-progress parcel.
#[derive(Debug, Clone, Copy)]
enum Step {
    Wrong,
    Right,
    Missing,
    Unlock,
    Staff,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Wrong),
        1 => Just(Step::Right),
        1 => Just(Step::Missing),
        1 => Just(Step::Unlock),
        1 => Just(Step::Staff),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The delivery-code lock against a model: a counter of wrong codes that locks the
    /// driver out at 5 (even with the right code), that only staff reset, and a trip that
    /// only the right code (before the lock) or staff complete, once.
    #[test]
    fn the_delivery_code_lock_follows_its_model(steps in proptest::collection::vec(step(), 1..16)) {
        let mut w = parcel_world();
        let rider = w.rider();
        let (d, trip) = parcel_in_progress(&mut w, rider, 1_000);
        let code = delivery_code(&w, trip);
        let (mut failures, mut done) = (0u8, false);
        for s in steps {
            let got = match s {
                Step::Wrong => w.run(Actor::User(d), deliver(trip, wrong_code(&code))),
                Step::Right => w.run(Actor::User(d), deliver(trip, &code)),
                Step::Missing => w.run(Actor::User(d), complete(trip)),
                Step::Unlock => w.run(Actor::Admin, Command::UnlockPickupCode { trip_id: trip }),
                Step::Staff => w.run(Actor::Admin, complete(trip)),
            };
            match (s, done) {
                (Step::Unlock | Step::Staff, true) => {
                    prop_assert!(matches!(got, Err(Error::InvalidTransition { .. })), "{s:?}: {got:?}");
                }
                // The finished trip has no driver any more: the driver is told it is not theirs.
                (_, true) => prop_assert!(got.is_err(), "{s:?}: {got:?}"),
                (Step::Missing, false) => {
                    let named = matches!(got, Err(Error::InvalidParam { param: "delivery_code", .. }));
                    prop_assert!(named, "{:?}", got);
                }
                (Step::Wrong | Step::Right, false) if failures >= MAX_CODE_FAILURES => {
                    prop_assert!(matches!(got, Err(Error::Forbidden(_))), "{s:?}: {got:?}");
                }
                (Step::Wrong, false) => {
                    failures += 1;
                    prop_assert_eq!(got, Ok(Outcome::DeliveryCodeRefused { attempts_left: MAX_CODE_FAILURES - failures }));
                }
                (Step::Right | Step::Staff, false) => {
                    prop_assert!(matches!(got, Ok(Outcome::Trip(ref t)) if t.status == TripStatus::Completed));
                    done = true;
                }
                (Step::Unlock, false) => {
                    failures = 0;
                    prop_assert!(matches!(got, Ok(Outcome::Trip(_))));
                }
            }
            if !done {
                prop_assert_eq!(w.get(trip).delivery_code_failures, failures);
            }
        }
        w.finish();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Parcel fares through the ledger: whatever the weight, the method (cash, wallet) and
    /// the coupon, the final fare is the ride's 6704 plus `round(250 × weight_g / 1000)`
    /// less the discount, the rider pays exactly it, the commission is taken on the fare
    /// before the discount, and the books balance (the harness checks them after every
    /// command as well).
    #[test]
    fn parcel_fares_settle_like_rides_and_the_books_balance(
        weight_g in 1u32..=20_000,
        wallet in any::<bool>(),
        with_coupon in any::<bool>(),
    ) {
        let egp: crate::money::Currency = "EGP".parse().unwrap();
        let mut w = parcel_world();
        if with_coupon {
            w.add_coupon(coupon("TENPC", 1_000, None));
        }
        let rider = w.rider();
        if wallet {
            let credit = Command::CreditWallet {
                id: None, user_id: rider, amount_minor: 100_000, currency: egp, reason: "top-up".into(),
            };
            w.run(Actor::Admin, credit).unwrap();
        }
        let d = w.driver(0.5);
        let mut new = parcel_of(&w, weight_g);
        new.payment_method = if wallet { PaymentMethod::Wallet } else { PaymentMethod::Cash };
        new.coupon = with_coupon.then(|| "TENPC".to_owned());
        let Ok(Outcome::Trip(t)) = w.run(Actor::User(rider), Command::CreateTrip(new)) else { panic!("refused") };
        let trip = t.id;
        w.accept(d, trip).unwrap();
        w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
        let pc = w.get(trip).pickup_code.to_string();
        w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: pc }).unwrap();
        w.drive(d, 8230.0, 960);
        let code = delivery_code(&w, trip);
        let done = Command::CompleteDelivery { trip_id: trip, delivery_code: code, distance_m: Some(8230), dropoff: None };
        w.run(Actor::User(d), done).unwrap();

        let half_up = |n: i64, d: i64| (n + d / 2) / d;
        let parcel = half_up(250 * i64::from(weight_g), 1_000);
        let before = 6_704 + parcel;
        let discount = if with_coupon { half_up(before * 1_000, 10_000) } else { 0 };
        let fare = before - discount;
        let t = w.get(trip);
        let b = t.fare.final_breakdown.unwrap();
        prop_assert_eq!((b.parcel_minor, b.discount_minor, t.fare.final_minor), (parcel, discount, Some(fare)));
        prop_assert_eq!(t.fare.estimate_breakdown.parcel_minor, parcel);
        prop_assert_eq!(t.payment.captured_minor, fare);
        let balance = |k: AccountKey| w.state.ledger().account(&k).balance();
        if wallet {
            prop_assert_eq!(balance(AccountKey::of(AccountKind::RiderWallet, rider, egp)), 100_000 - fare);
        } else {
            prop_assert_eq!(balance(AccountKey::of(AccountKind::CashInHand, d, egp)), -fare);
        }
        let commission = half_up(before * 1_500, 10_000);
        prop_assert_eq!(balance(AccountKey::platform(AccountKind::PlatformRevenue, egp)), commission);
        prop_assert_eq!(balance(AccountKey::of(AccountKind::DriverEarnings, d, egp)), before - commission);
        w.state.ledger().check().unwrap();
        w.finish();
    }
}
