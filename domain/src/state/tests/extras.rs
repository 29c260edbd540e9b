//! Bids, ratings, SOS alerts and idempotency keys (`extras.rs`): picking a bid (and what
//! accepting one checks and holds), rating once per side (and the rated users' totals,
//! against a model in a proptest), raising and acknowledging alerts,
//! keyed commands answered again, and the archiving of keys.

use super::*;
use crate::command::IdempotencyKey;
use crate::trip::{OfferState, PaymentMethod, TripStatus};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

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
    w.run(
        Actor::User(a),
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "flat tyre".into() },
    )
    .unwrap();
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

/// Finding 1 of the red team (SOS flood hides real alerts): a rider raised SOS again and
/// again on their own trip, even a cancelled one, and every one was a new open alert: 110
/// of them buried another rider's real alert. Now repeats fold into the open alert (with a
/// count), an SOS is taken only on a live trip or one that ended within
/// `SOS_AFTER_END_S`, and a person has at most `MAX_OPEN_ALERTS_PER_USER` open alerts.
#[test]
fn sos_flood_folds_into_one_open_alert_and_is_bounded_per_person() {
    use crate::alert::{MAX_OPEN_ALERTS_PER_USER, SOS_AFTER_END_S};
    let mut w = World::new(DispatchRules { open_trips_per_rider: 6, ..rules() });
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    let sos = |trip_id, note: &str| Command::RaiseSos { id: None, trip_id, location: None, note: Some(note.into()) };
    let alert_of = |o: Outcome| match o {
        Outcome::Alert(a) => a,
        o => panic!("{o:?}"),
    };
    let first = alert_of(w.run(Actor::User(rider), sos(trip, "help")).unwrap());
    for i in 2..=110u32 {
        w.advance(1);
        let again = alert_of(w.run(Actor::User(rider), sos(trip, &format!("help {i}"))).unwrap());
        assert_eq!((again.id, again.count), (first.id, i), "folded into the open alert");
    }
    assert_eq!(w.state.alerts().count(), 1, "one alert, not 110");
    let a = w.state.alert(first.id).unwrap();
    assert_eq!((a.note.as_deref(), a.raised_at, a.last_raised_at), (Some("help 110"), first.raised_at, w.now));
    // The driver's SOS on the same trip is their own alert; another rider's is untouched.
    let theirs = alert_of(w.run(Actor::User(d), sos(trip, "rider is aggressive")).unwrap());
    assert_ne!(theirs.id, first.id);
    // Once acknowledged, a new SOS is a new alert.
    w.run(Actor::Admin, Command::AckAlert { alert_id: first.id }).unwrap();
    let next = alert_of(w.run(Actor::User(rider), sos(trip, "again")).unwrap());
    assert_ne!(next.id, first.id);
    assert_eq!(next.count, 1);
    // At most MAX_OPEN_ALERTS_PER_USER open alerts per person, each on its own trip.
    let mut trips = vec![trip];
    while trips.len() < MAX_OPEN_ALERTS_PER_USER + 1 {
        let t = w.trip(rider);
        trips.push(t);
    }
    for t in &trips[1..MAX_OPEN_ALERTS_PER_USER] {
        w.run(Actor::User(rider), sos(*t, "help")).unwrap();
    }
    let over = w.run(Actor::User(rider), sos(trips[MAX_OPEN_ALERTS_PER_USER], "help"));
    assert!(matches!(over, Err(Error::RateLimited { .. })), "{over:?}");
    // Only on a live trip, or one that ended within the window.
    let (r2, _, done) = complete_a_trip(&mut w);
    w.advance(i64::from(SOS_AFTER_END_S) - 60);
    w.run(Actor::User(r2), sos(done, "left my bag, and the driver threatened me")).unwrap();
    let cancelled = w.trip(r2);
    w.run(
        Actor::User(r2),
        Command::CancelTrip {
            trip_id: cancelled,
            code: crate::trip::CancelReason::Other,
            reason: "changed plans".into(),
        },
    )
    .unwrap();
    w.advance(i64::from(SOS_AFTER_END_S) + 1);
    let late = w.run(Actor::User(r2), sos(cancelled, "fake"));
    assert!(matches!(late, Err(Error::InvalidTransition { .. })), "{late:?}");
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
        alerts: Vec::new(),
        audit: Vec::new(),
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

/// One step of the rating model: a ride of one of two riders with the one driver, or a
/// rating (valid or not, maybe a second one) of a ride so far by one of its sides.
#[derive(Debug, Clone)]
enum RatingStep {
    Ride { rider: usize },
    Rate { ride: usize, by_rider: bool, stars: u8 },
}

fn rating_step() -> impl Strategy<Value = RatingStep> {
    prop_oneof![
        1 => (0usize..2).prop_map(|rider| RatingStep::Ride { rider }),
        3 => (0usize..6, any::<bool>(), 0u8..=6)
            .prop_map(|(ride, by_rider, stars)| RatingStep::Rate { ride, by_rider, stars }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A user's rating totals are the sum and count of the ratings applied about them:
    /// riders rate the driver, the driver rates riders; refused ratings (out of range, a
    /// second one by the same side) change nothing.
    #[test]
    fn rating_totals_are_the_sum_and_count_of_the_ratings_applied(
        steps in proptest::collection::vec(rating_step(), 1..40)
    ) {
        let mut w = World::new(rules());
        let riders = [w.rider(), w.rider()];
        let driver = w.driver(0.5);
        let mut rides: Vec<(TripId, usize)> = Vec::new();
        let mut rated: BTreeSet<(usize, bool)> = BTreeSet::new();
        let mut model: BTreeMap<UserId, (u64, u32)> = BTreeMap::new();
        for step in steps {
            match step {
                RatingStep::Ride { rider } => {
                    let trip = w.trip(riders[rider]);
                    w.accept(driver, trip).unwrap();
                    w.run(Actor::User(driver), Command::DriverArrived { trip_id: trip }).unwrap();
                    let code = w.get(trip).pickup_code.to_string();
                    w.run(Actor::User(driver), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
                    let done = Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None };
                    w.run(Actor::User(driver), done).unwrap();
                    rides.push((trip, rider));
                }
                RatingStep::Rate { ride, by_rider, stars } => {
                    let Some(&(trip, rider)) = rides.get(ride) else { continue };
                    let by = if by_rider { riders[rider] } else { driver };
                    let rate = Command::RateTrip { trip_id: trip, stars, comment: None };
                    let applied = w.run(Actor::User(by), rate).is_ok();
                    let valid = (1..=5).contains(&stars) && !rated.contains(&(ride, by_rider));
                    prop_assert_eq!(applied, valid, "ride {} by_rider {} stars {}", ride, by_rider, stars);
                    if applied {
                        rated.insert((ride, by_rider));
                        let about = if by_rider { driver } else { riders[rider] };
                        let m = model.entry(about).or_default();
                        m.0 += u64::from(stars);
                        m.1 += 1;
                    }
                }
            }
        }
        for u in [driver, riders[0], riders[1]] {
            let totals = w.state.user(u).unwrap().rating;
            prop_assert_eq!((totals.stars, totals.count), model.get(&u).copied().unwrap_or_default());
        }
        w.finish();
    }
}
