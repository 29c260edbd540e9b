//! Rides booked ahead (`scheduled_at`) and the count of drivers near a search: the window
//! and what may be booked ahead, the separate cap, free cancellation until dispatch, the
//! wallet hold placed at dispatch, the dispatch at exactly `scheduled_at − schedule_lead_s`
//! (a model test through restarts), and `no_drivers_nearby` once per search.

use proptest::prelude::*;

use super::*;
use crate::ledger::{AccountKey, AccountKind};
use crate::record::{Record, replay};
use crate::trip::{
    CancelReason, CancelledBy, MAX_SCHEDULE_AHEAD_S, MIN_SCHEDULE_AHEAD_S, PaymentMethod, TripKind, TripStatus,
};

const HOUR_MS: i64 = 3_600_000;

fn book_ahead(w: &mut World, rider: UserId, ahead_ms: i64) -> Result<Outcome> {
    let mut new = w.new_trip();
    new.scheduled_at = Some(w.now.plus_millis(ahead_ms));
    w.run(Actor::User(rider), Command::CreateTrip(new))
}

fn booked(o: Result<Outcome>) -> Arc<Trip> {
    match o {
        Ok(Outcome::Trip(t)) => t,
        o => panic!("{o:?}"),
    }
}

fn cancel(w: &mut World, who: UserId, trip_id: TripId) -> Result<Outcome> {
    w.run(Actor::User(who), Command::CancelTrip { trip_id, code: CancelReason::ChangedMind, reason: String::new() })
}

fn param_of(r: Result<Outcome>) -> Option<&'static str> {
    match r {
        Err(Error::InvalidParam { param, .. }) => Some(param),
        _ => None,
    }
}

fn no_drivers_events(events: &[Event], trip: TripId) -> usize {
    events.iter().filter(|e| matches!(e, Event::NoDriversNearby { trip_id, .. } if *trip_id == trip)).count()
}

#[test]
fn scheduled_at_is_15_minutes_to_7_days_ahead_inclusive_for_rides_only() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let (min, max) = (i64::from(MIN_SCHEDULE_AHEAD_S) * 1000, i64::from(MAX_SCHEDULE_AHEAD_S) * 1000);
    for ahead in [min - 1, max + 1, -HOUR_MS, 0] {
        assert_eq!(param_of(book_ahead(&mut w, rider, ahead)), Some("scheduled_at"), "{ahead} ms ahead");
    }
    for ahead in [min, max] {
        let t = booked(book_ahead(&mut w, rider, ahead));
        assert_eq!(t.status, TripStatus::Scheduled);
        assert_eq!(t.scheduled_at, Some(w.now.plus_millis(ahead)));
    }
    // A parcel is sent when it is ready; a bidding trip haggles with drivers who are there now.
    let mut parcel = w.new_trip();
    parcel.kind = TripKind::Parcel;
    parcel.parcel = Some(crate::trip::Parcel {
        weight_g: 1_000,
        description: "books".into(),
        recipient_phone: "+201000000999".into(),
        delivery_code: None,
    });
    parcel.scheduled_at = Some(w.now.plus_millis(HOUR_MS));
    assert_eq!(param_of(w.run(Actor::User(rider), Command::CreateTrip(parcel))), Some("scheduled_at"));
    let mut bid = w.new_trip();
    bid.bid_minor = Some(5_000);
    bid.scheduled_at = Some(w.now.plus_millis(HOUR_MS));
    assert_eq!(param_of(w.run(Actor::User(rider), Command::CreateTrip(bid))), Some("scheduled_at"));
    w.finish();
}

#[test]
fn rides_booked_ahead_have_their_own_cap_and_never_block_riding_now() {
    let mut w = World::new(DispatchRules { scheduled_trips_per_rider: 2, open_trips_per_rider: 1, ..rules() });
    let rider = w.rider();
    let d = w.driver(0.5);
    let a = booked(book_ahead(&mut w, rider, HOUR_MS)).id;
    booked(book_ahead(&mut w, rider, 2 * HOUR_MS));
    assert_eq!(book_ahead(&mut w, rider, 3 * HOUR_MS).unwrap_err(), Error::TooManyScheduledTrips(2));
    assert_eq!(Error::TooManyScheduledTrips(2).code(), "too_many_open_trips");
    // Two rides next week, and one now: the open-trip cap counts only the ride now.
    let now_trip = w.trip(rider);
    assert_eq!(w.offered(now_trip), vec![d], "a ride booked ahead is offered to nobody before its dispatch");
    assert!(w.get(a).offers.is_empty());
    assert!(matches!(w.run(Actor::User(rider), Command::CreateTrip(w.new_trip())), Err(Error::TooManyOpenTrips(1))));
    // A cancel gives the scheduled slot back.
    cancel(&mut w, rider, a).unwrap();
    booked(book_ahead(&mut w, rider, 3 * HOUR_MS));
    w.finish();
}

#[test]
fn a_ride_booked_ahead_is_dispatched_at_scheduled_at_minus_the_lead_and_cancels_free_until_then() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let t = booked(book_ahead(&mut w, rider, HOUR_MS));
    assert_eq!(t.round, 0);
    assert_eq!(t.nearby_drivers, None, "no round before dispatch");
    let lead_ms = i64::from(w.state.rules().schedule_lead_s) * 1000;
    let dispatch_at = t.scheduled_at.unwrap().plus_millis(-lead_ms);
    // A driver comes online; nothing is offered before the time.
    w.now = dispatch_at.plus_millis(-1_000);
    let d = w.driver(0.5);
    w.run(Actor::System, Command::Tick).unwrap();
    assert_eq!(w.get(t.id).status, TripStatus::Scheduled);
    assert!(w.offered(t.id).is_empty());
    w.events();
    w.advance(1);
    let t1 = w.get(t.id);
    assert_eq!(t1.status, TripStatus::Searching);
    assert_eq!(t1.searching_since, dispatch_at);
    assert_eq!(w.offered(t.id), vec![d]);
    assert_eq!((t1.round, t1.nearby_drivers, t1.drivers_offered()), (1, Some(1), 1));
    let events = w.events();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::TripUpdated { trip } if trip.id == t.id && trip.status == TripStatus::Searching)
        )
    );
    assert_eq!(no_drivers_events(&events, t.id), 0);
    // The timeout counts from the dispatch: still searching just before, expired at it.
    w.run(Actor::User(d), Command::DeclineTrip { trip_id: t.id }).unwrap();
    w.advance(i64::from(w.state.rules().timeout_s) - 2);
    assert_eq!(w.get(t.id).status, TripStatus::Searching);
    w.advance(2);
    assert_eq!(w.get(t.id).status, TripStatus::Expired);

    // Another, cancelled by its rider before dispatch: free, and never dispatched.
    let t2 = booked(book_ahead(&mut w, rider, 2 * HOUR_MS));
    let c = match cancel(&mut w, rider, t2.id).unwrap() {
        Outcome::Trip(t) => t,
        o => panic!("{o:?}"),
    };
    assert_eq!(c.status, TripStatus::Cancelled);
    assert_eq!(c.fare.cancel_fee_minor, None);
    assert_eq!(c.cancellation.as_ref().map(|c| c.by), Some(CancelledBy::Rider));
    w.advance(3 * 3600);
    assert_eq!(w.get(t2.id).status, TripStatus::Cancelled);
    assert!(w.get(t2.id).offers.is_empty());
    w.finish();
}

#[test]
fn a_wallet_ride_booked_ahead_is_held_at_dispatch_and_cancelled_if_the_wallet_no_longer_covers_it() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let egp: crate::money::Currency = "EGP".parse().unwrap();
    let wallet = AccountKey::of(AccountKind::RiderWallet, rider, egp);
    let wallet_ride = |w: &mut World, ahead: i64| {
        let mut new = w.new_trip();
        new.payment_method = PaymentMethod::Wallet;
        new.scheduled_at = Some(w.now.plus_millis(ahead));
        w.run(Actor::User(rider), Command::CreateTrip(new))
    };
    assert!(
        matches!(wallet_ride(&mut w, HOUR_MS), Err(Error::InsufficientFunds { .. })),
        "the booking needs the estimate"
    );
    let credit = |w: &mut World, amount_minor: i64| {
        let c =
            Command::CreditWallet { id: None, user_id: rider, amount_minor, currency: egp, reason: "top-up".into() };
        w.run(Actor::Admin, c).unwrap();
    };
    credit(&mut w, 1_000_000);
    let t = booked(wallet_ride(&mut w, HOUR_MS));
    assert_eq!(t.payment.hold, None, "nothing held a week, a day or an hour ahead");
    assert_eq!(w.state.ledger().account(&wallet).available(), 1_000_000);
    let lead = i64::from(w.state.rules().schedule_lead_s);
    w.advance(3600 - lead);
    let t = w.get(t.id);
    assert_eq!(t.status, TripStatus::Searching);
    assert!(t.payment.hold.is_some());
    assert_eq!(w.state.ledger().account(&wallet).available(), 1_000_000 - t.fare.estimate_minor);
    cancel(&mut w, rider, t.id).unwrap();
    assert_eq!(w.state.ledger().account(&wallet).available(), 1_000_000, "the hold is released by the cancel");

    // Booked while the wallet covered it, drained since by a ride now (same estimate):
    // cancelled by the system at dispatch, free, never searching.
    let estimate = t.fare.estimate_minor;
    let rider2 = w.rider();
    let wallet2 = AccountKey::of(AccountKind::RiderWallet, rider2, egp);
    let c =
        Command::CreditWallet { id: None, user_id: rider2, amount_minor: estimate, currency: egp, reason: "x".into() };
    w.run(Actor::Admin, c).unwrap();
    let mut ahead = w.new_trip();
    ahead.payment_method = PaymentMethod::Wallet;
    ahead.scheduled_at = Some(w.now.plus_millis(HOUR_MS));
    let ahead = booked(w.run(Actor::User(rider2), Command::CreateTrip(ahead)));
    let mut now = w.new_trip();
    now.payment_method = PaymentMethod::Wallet;
    let d = w.driver(0.5);
    let now = booked(w.run(Actor::User(rider2), Command::CreateTrip(now)));
    w.accept(d, now.id).unwrap();
    assert_eq!(w.state.ledger().account(&wallet2).available(), 0);
    w.advance(3600 - lead);
    let a = w.get(ahead.id);
    assert_eq!(a.status, TripStatus::Cancelled);
    assert_eq!(
        a.cancellation.as_ref().map(|c| (c.by, c.reason.as_str())),
        Some((CancelledBy::System, crate::state::UNFUNDED_REASON))
    );
    assert_eq!((a.fare.cancel_fee_minor, a.payment.hold, a.round), (None, None, 0));
    w.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A ride booked ahead through random time steps, restarts (the log replayed through
    /// its encoding; the state through a checkpoint's encoding), cancels and accepts, against
    /// a model: it stays `scheduled` (no offers, no hold) until the first tick at or after
    /// `scheduled_at − schedule_lead_s`, becomes `searching` then and only then (its search
    /// began at that tick, its timeout counts from it), and a cancel before is free, after an
    /// accept the zone's fee past the free window.
    #[test]
    fn scheduled_rides_dispatch_exactly_once_at_the_lead_through_restarts(
        ahead_s in MIN_SCHEDULE_AHEAD_S..=MAX_SCHEDULE_AHEAD_S,
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        run_model(ahead_s, &steps)?;
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Time moves on by this many seconds, then a tick.
    Advance(i64),
    /// Time moves to `dispatch_at + offset` seconds (if that is ahead), then a tick.
    Near(i64),
    /// A jump of a fraction (per mille) of the time left to dispatch.
    Jump(u16),
    /// The process restarts: from the log (`true`) or from a checkpoint of the state.
    Restart(bool),
    Cancel,
    Accept,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1i64..=300).prop_map(Step::Advance),
        2 => (-2i64..=2).prop_map(Step::Near),
        2 => (1u16..=1000).prop_map(Step::Jump),
        2 => any::<bool>().prop_map(Step::Restart),
        1 => Just(Step::Cancel),
        2 => Just(Step::Accept),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Model {
    Scheduled,
    Searching { since: Timestamp },
    Accepted { at: Timestamp },
    Cancelled { fee: Option<i64> },
    Expired,
}

fn run_model(ahead_s: u32, steps: &[Step]) -> std::result::Result<(), TestCaseError> {
    // Positions and offers last the whole test: what is modelled is the schedule.
    let rules = DispatchRules { stale_location_s: 30 * 86_400, ..rules() };
    let mut w = World::new(rules);
    let rider = w.rider();
    let d = w.driver(0.5);
    let t = booked(book_ahead(&mut w, rider, i64::from(ahead_s) * 1000));
    let lead = w.state.rules().schedule_lead_s;
    let (timeout_s, offer_ttl_s) = (w.state.rules().timeout_s, w.state.rules().offer_ttl_s);
    let dispatch_at = t.scheduled_at.unwrap().plus_millis(-i64::from(lead) * 1000);
    let pricing = t.fare.locked.pricing;
    let mut m = Model::Scheduled;
    let mut dispatches = 0;
    for s in steps {
        let target = match *s {
            Step::Advance(secs) => Some(w.now.plus_millis(secs * 1000)),
            Step::Near(offset) => Some(dispatch_at.plus_millis(offset * 1000)).filter(|t| *t > w.now),
            Step::Jump(per_mille) => {
                let left = dispatch_at.millis_since(w.now).max(1000);
                Some(w.now.plus_millis((left * i64::from(per_mille) / 1000).max(1)))
            }
            _ => None,
        };
        if let Some(at) = target {
            w.now = at;
            w.run(Actor::System, Command::Tick).unwrap();
            // The model: the first tick at or after dispatch_at starts the search.
            if m == Model::Scheduled && at >= dispatch_at {
                m = Model::Searching { since: at };
            }
            if let Model::Searching { since } = m
                && at >= since.plus_secs(timeout_s)
            {
                m = Model::Expired;
            }
        }
        match *s {
            Step::Restart(from_log) => {
                let state = if from_log {
                    let records: Vec<Record> =
                        w.log.iter().map(|r| Record::decode(&r.encode().unwrap()).unwrap()).collect();
                    let mut state = w.initial.clone();
                    replay(&mut state, &records).unwrap();
                    state
                } else {
                    postcard::from_bytes(&postcard::to_allocvec(&w.state).unwrap()).unwrap()
                };
                prop_assert_eq!(&state, &w.state, "a restart gives the same state");
                w.state = state;
            }
            Step::Cancel => {
                let r = cancel(&mut w, rider, t.id);
                match m {
                    Model::Scheduled | Model::Searching { .. } => {
                        prop_assert!(r.is_ok());
                        m = Model::Cancelled { fee: None };
                    }
                    Model::Accepted { at } => {
                        prop_assert!(r.is_ok());
                        let fee = crate::fare::cancellation_fee(&pricing, at, w.now).unwrap();
                        m = Model::Cancelled { fee: Some(fee).filter(|f| *f > 0) };
                    }
                    Model::Cancelled { .. } | Model::Expired => prop_assert!(r.is_err()),
                }
            }
            Step::Accept => {
                let r = w.accept(d, t.id);
                match m {
                    Model::Searching { since } if w.now < since.plus_secs(offer_ttl_s) => {
                        prop_assert!(r.is_ok(), "{:?}", r);
                        m = Model::Accepted { at: w.now };
                    }
                    _ => prop_assert!(r.is_err()),
                }
            }
            _ => {}
        }
        let trip = w.get(t.id);
        for e in w.events() {
            if let Event::TripUpdated { trip: u } = e
                && u.id == t.id
                && u.status == TripStatus::Searching
                && u.round == 1
                && u.offers.len() == 1
                && u.offers[0].state == crate::trip::OfferState::Pending
                && u.searching_since == u.updated_at
            {
                dispatches += 1;
            }
        }
        match m {
            Model::Scheduled => {
                prop_assert_eq!(trip.status, TripStatus::Scheduled);
                prop_assert!(w.now < dispatch_at, "never dispatched late");
                prop_assert!(trip.offers.is_empty() && trip.payment.hold.is_none());
            }
            Model::Searching { since } => {
                prop_assert_eq!(trip.status, TripStatus::Searching);
                prop_assert_eq!(trip.searching_since, since);
                prop_assert!(since >= dispatch_at, "never dispatched early");
            }
            Model::Accepted { .. } => prop_assert_eq!(trip.status, TripStatus::Accepted),
            Model::Cancelled { fee } => {
                prop_assert_eq!(trip.status, TripStatus::Cancelled);
                prop_assert_eq!(trip.fare.cancel_fee_minor, fee);
            }
            Model::Expired => prop_assert_eq!(trip.status, TripStatus::Expired),
        }
    }
    prop_assert!(dispatches <= 1, "dispatched {} times", dispatches);
    w.finish();
    Ok(())
}

#[test]
fn no_drivers_nearby_is_told_once_per_search_while_nobody_is_near() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let t = w.trip(rider);
    let trip = w.get(t);
    assert_eq!((trip.status, trip.nearby_drivers, trip.round), (TripStatus::Searching, Some(0), 0));
    let events = w.events();
    assert_eq!(no_drivers_events(&events, t), 1, "told at once");
    assert!(events.iter().any(|e| matches!(e, Event::NoDriversNearby { rider_id, .. } if *rider_id == rider)));
    // Empty retry rounds say nothing more.
    for _ in 0..10 {
        w.advance(i64::from(w.state.rules().redispatch_retry_s));
    }
    assert_eq!(no_drivers_events(&w.events(), t), 0);
    // A driver shows up: the next round counts and offers; nothing is told.
    let d = w.driver(1.0);
    w.advance(i64::from(w.state.rules().redispatch_retry_s));
    assert_eq!(w.get(t).nearby_drivers, Some(1));
    assert_eq!(w.offered(t), vec![d]);
    // The driver goes offline: the offer is withdrawn and the next round finds nobody: told again.
    w.run(Actor::User(d), Command::SetDriverStatus { online: false, location: None }).unwrap();
    assert_eq!(w.get(t).nearby_drivers, Some(0));
    assert_eq!(no_drivers_events(&w.events(), t), 1);
    // With drivers near, a booking is not told anything; a far driver does not count.
    let rider2 = w.rider();
    w.driver(0.5);
    w.driver(0.7);
    w.driver(50.0);
    let t2 = w.trip(rider2);
    assert_eq!(w.get(t2).nearby_drivers, Some(2));
    assert_eq!(w.get(t2).drivers_offered(), 2);
    assert_eq!(no_drivers_events(&w.events(), t2), 0);
    w.finish();
}

#[test]
fn supply_near_counts_what_a_round_could_offer_and_the_nearest_distance() {
    let mut w = World::new(rules());
    let here = crate::geo::LatLng::new(crate::testkit::CAIRO.0, crate::testkit::CAIRO.1).unwrap();
    let economy = crate::user::Category::new("economy").unwrap();
    assert!(matches!(w.state.supply_near(here, &economy, w.now), (0, None)));
    w.driver(2.0);
    w.driver(1.0);
    w.driver_at(0.5, "comfort");
    let suspended = w.driver(0.2);
    w.run(Actor::Admin, Command::SetDriverSuspended { driver_id: suspended, suspended: true, reason: "x".into() })
        .unwrap();
    let (n, nearest) = w.state.supply_near(here, &economy, w.now);
    assert_eq!(n, 2);
    assert!((nearest.unwrap().distance_m - 1_000.0).abs() < 5.0, "{nearest:?}");
    // Stale positions do not count.
    w.advance(i64::from(w.state.rules().stale_location_s) + 1);
    assert!(matches!(w.state.supply_near(here, &economy, w.now), (0, None)));
    w.finish();
}
