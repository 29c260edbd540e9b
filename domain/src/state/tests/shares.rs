//! References and share links (`shares.rs`), the profile (`users.rs`, `UpdateProfile`) and
//! why a driver is not dispatchable (`Driver::not_dispatchable`, against the round).

use proptest::prelude::*;

use super::*;
use crate::command::{NewTrip, ProfileChange};
use crate::driver::NotDispatchable;
use crate::id::{IdSource, ShareId};
use crate::share::{MAX_SHARES_PER_TRIP, SHARE_AFTER_END_S};
use crate::trip::PaymentMethod;
use crate::trip_ref::{REF_KEPT_S, TripRef};

fn archive(trip: TripId, revision: u32) -> Command {
    Command::Archive {
        trips: vec![(trip, revision)],
        transfer_ids: vec![],
        keys: vec![],
        gateway_events: vec![],
        alerts: vec![],
        audit: Vec::new(),
    }
}

/// `rider` books with this reference set by hand.
fn book_with_ref(w: &mut World, rider: UserId, reference: TripRef) -> Result<Outcome> {
    let new = NewTrip { reference: Some(reference), ..w.new_trip() };
    w.run(Actor::User(rider), Command::CreateTrip(new))
}

#[test]
fn a_reference_names_one_trip_for_30_days_even_archived_then_may_name_another() {
    let mut w = World::new(rules());
    let (rider, _, trip) = complete_a_trip(&mut w);
    let reference = w.get(trip).reference;
    assert_eq!(w.state.trip_by_ref(reference, w.now), Some(trip));
    assert_eq!(TripRef::parse(&reference.to_string().to_lowercase().replace('-', "")), Some(reference));

    // Taken: a booking that carries it is refused (and changes nothing).
    assert!(matches!(book_with_ref(&mut w, rider, reference), Err(Error::Invalid(_))));

    // The trip leaves the hot state: its reference still names it.
    let revision = w.get(trip).revision;
    w.run(Actor::System, archive(trip, revision)).unwrap();
    assert!(w.state.trip(trip).is_none());
    assert_eq!(w.state.trip_by_ref(reference, w.now), Some(trip));

    // Just before 30 days: still reserved. At 30 days it is forgotten and free again.
    let booked = w.now;
    w.advance(i64::from(REF_KEPT_S) - 1);
    assert_eq!(w.state.trip_by_ref(reference, w.now), Some(trip));
    assert!(matches!(book_with_ref(&mut w, rider, reference), Err(Error::Invalid(_))));
    w.advance(1);
    assert_eq!(w.now, booked.plus_secs(REF_KEPT_S));
    assert_eq!(w.state.trip_by_ref(reference, w.now), None);
    assert_eq!(w.state.refs_len(), 0, "the Tick purged it");
    let again = match book_with_ref(&mut w, rider, reference).unwrap() {
        Outcome::Trip(t) => t.id,
        o => panic!("{o:?}"),
    };
    assert_eq!(w.state.trip_by_ref(reference, w.now), Some(again));
    w.finish();
}

/// Random bits from a list, then from a seeded generator.
struct Scripted(Vec<u64>, crate::id::RandomIds);

impl IdSource for Scripted {
    fn next_u64(&mut self) -> u64 {
        if self.0.is_empty() { self.1.next_u64() } else { self.0.remove(0) }
    }
}

#[test]
fn the_stamp_draws_again_when_a_reference_is_taken() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let first = w.trip(rider);
    let taken = w.get(first).reference;
    // Id, pickup code, then the taken reference's bits: the stamp must draw once more.
    let mut ids = Scripted(vec![0xABCD, 1234, u64::from(taken.raw()), 7], crate::id::RandomIds::seeded(1));
    let mut cmd = Command::CreateTrip(w.new_trip());
    w.state.stamp(&mut cmd, &mut ids);
    let Command::CreateTrip(new) = &cmd else { unreachable!() };
    assert_eq!(new.reference, Some(TripRef::from_random(7)));
    w.run(Actor::User(rider), cmd).unwrap();
    w.finish();
}

fn share(w: &mut World, rider: UserId, trip: TripId) -> Result<ShareId> {
    match w.run(Actor::User(rider), Command::CreateShare { id: None, trip_id: trip })? {
        Outcome::Share { id, trip: t } => {
            assert_eq!(t.id, trip);
            Ok(id)
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn only_the_rider_shares_an_open_trip_a_bounded_number_of_times_and_revokes_them_all() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let stranger = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    assert!(matches!(share(&mut w, stranger, trip), Err(Error::NotFound { .. })), "another rider: 404");
    let as_driver = w.run(Actor::User(d), Command::CreateShare { id: None, trip_id: trip });
    assert!(matches!(as_driver, Err(Error::Forbidden(_))));
    assert!(matches!(w.run(Actor::Admin, Command::CreateShare { id: None, trip_id: trip }), Err(Error::Forbidden(_))));

    let links: Vec<ShareId> = (0..MAX_SHARES_PER_TRIP).map(|_| share(&mut w, rider, trip).unwrap()).collect();
    assert!(matches!(share(&mut w, rider, trip), Err(Error::InvalidTransition { .. })), "at most 5 at once");
    for id in &links {
        assert_eq!(w.state.share_live(*id, w.now), Some(trip));
    }
    // Another rider cannot revoke them; the rider revokes every one.
    assert!(matches!(
        w.run(Actor::User(stranger), Command::RevokeShares { trip_id: trip }),
        Err(Error::NotFound { .. })
    ));
    w.run(Actor::User(rider), Command::RevokeShares { trip_id: trip }).unwrap();
    assert!(links.iter().all(|id| w.state.share(*id).is_none()));
    assert!(w.state.shares_of(trip).is_empty());
    // Room again.
    share(&mut w, rider, trip).unwrap();
    w.finish();
}

#[test]
fn a_link_works_until_15_minutes_after_the_trip_ends_archived_or_not() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    let link = share(&mut w, rider, trip).unwrap();
    assert_eq!(crate::share::expires_at(&w.get(trip)), None, "open: the end is not known yet");
    w.accept(d, trip).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.advance(3600);
    assert_eq!(w.state.share_live(link, w.now), Some(trip), "a long ride: still open, still live");
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    let ended = w.get(trip).ended_at.unwrap();
    assert_eq!(crate::share::expires_at(&w.get(trip)), Some(ended.plus_secs(SHARE_AFTER_END_S)));
    assert!(
        matches!(share(&mut w, rider, trip), Err(Error::InvalidTransition { .. })),
        "a finished trip is not shared"
    );

    // It leaves the hot state: the link remembers when the trip ended.
    let revision = w.get(trip).revision;
    w.run(Actor::System, archive(trip, revision)).unwrap();
    assert_eq!(w.state.share(link).unwrap().trip_ended_at, Some(ended));
    w.now = ended.plus_secs(SHARE_AFTER_END_S - 1);
    assert_eq!(w.state.share_live(link, w.now), Some(trip));
    w.now = ended.plus_secs(SHARE_AFTER_END_S);
    assert_eq!(w.state.share_live(link, w.now), None, "15 minutes after the end: dead");
    // Housekeeping forgets it.
    w.advance(3600);
    assert!(w.state.share(link).is_none());
    w.finish();
}

#[test]
fn a_cancelled_trip_s_links_stop_15_minutes_after_the_cancel() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let trip = w.trip(rider);
    let link = share(&mut w, rider, trip).unwrap();
    let cancel =
        Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::ChangedMind, reason: String::new() };
    w.run(Actor::User(rider), cancel).unwrap();
    let ended = w.get(trip).ended_at.unwrap();
    assert_eq!(w.state.share_live(link, ended.plus_secs(SHARE_AFTER_END_S - 1)), Some(trip));
    assert_eq!(w.state.share_live(link, ended.plus_secs(SHARE_AFTER_END_S)), None);
    w.finish();
}

#[test]
fn a_profile_changes_field_by_field_and_bad_fields_change_nothing() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let u = w.state.user(rider).unwrap().clone();
    assert_eq!((u.email.as_deref(), u.language.as_str(), u.default_payment_method), (None, "en", None));
    let bad = [
        ProfileChange { email: Some(Some("amal@".into())), ..Default::default() },
        ProfileChange { language: Some("english".into()), ..Default::default() },
        ProfileChange { name: Some(String::new()), ..Default::default() },
        ProfileChange {
            name: Some("Amal".into()),
            email: Some(Some("a\u{7}@example.com".into())),
            ..Default::default()
        },
    ];
    for change in bad {
        assert!(
            matches!(w.run(Actor::User(rider), Command::UpdateProfile(change.clone())), Err(Error::Invalid(_))),
            "{change:?}"
        );
    }
    let set = ProfileChange {
        name: Some("Amal Hassan".into()),
        email: Some(Some("amal@example.com".into())),
        language: Some("ar-EG".into()),
        default_payment_method: Some(Some(PaymentMethod::Card)),
    };
    match w.run(Actor::User(rider), Command::UpdateProfile(set)).unwrap() {
        Outcome::User(u) => {
            assert_eq!((u.name.as_str(), u.email.as_deref()), ("Amal Hassan", Some("amal@example.com")));
            assert_eq!((u.language.as_str(), u.default_payment_method), ("ar-EG", Some(PaymentMethod::Card)));
        }
        o => panic!("{o:?}"),
    }
    // Absent fields stay; `Some(None)` clears.
    let clear = ProfileChange { email: Some(None), ..Default::default() };
    w.run(Actor::User(rider), Command::UpdateProfile(clear)).unwrap();
    let u = w.state.user(rider).unwrap();
    assert_eq!((u.email.as_deref(), u.language.as_str(), u.name.as_str()), (None, "ar-EG", "Amal Hassan"));
    // The bootstrap admin has no profile.
    let admin = w.run(Actor::Admin, Command::UpdateProfile(ProfileChange::default()));
    assert!(matches!(admin, Err(Error::Forbidden(_))));
    w.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `not_dispatchable` is `None` exactly when the round offers the driver a trip at its
    /// door, and names the first reason that holds.
    #[test]
    fn a_driver_is_dispatchable_exactly_when_the_round_would_offer_it_a_trip(
        online in any::<bool>(),
        busy in any::<bool>(),
        suspended in any::<bool>(),
        presence in 0u8..3,
        age_s in 0i64..60,
    ) {
        let mut w = World::new(DispatchRules { offers_per_round: 5, ..rules() });
        let d = w.driver(0.3);
        if busy {
            let rider = w.rider();
            let trip = w.trip(rider);
            w.accept(d, trip).unwrap();
        }
        if presence > 0 {
            w.run(Actor::User(d), Command::SetPresence { connected: true }).unwrap();
        }
        if presence == 2 {
            w.run(Actor::User(d), Command::SetPresence { connected: false }).unwrap();
        }
        if age_s > 0 {
            w.advance(age_s);
        }
        if !online && !busy {
            w.run(Actor::User(d), Command::SetDriverStatus { online: false, location: None }).unwrap();
        }
        if suspended {
            let c = Command::SetDriverSuspended { driver_id: d, suspended: true, reason: String::new() };
            w.run(Actor::Admin, c).unwrap();
        }
        let reason = w.state.driver(d).unwrap().not_dispatchable(w.now, w.state.rules().stale_location_s);
        let expected = if suspended {
            Some(NotDispatchable::Suspended)
        } else if !online && !busy {
            Some(NotDispatchable::Offline)
        } else if busy {
            Some(NotDispatchable::OnTrip)
        } else if presence == 2 {
            Some(NotDispatchable::SocketDisconnected)
        } else if age_s > i64::from(w.state.rules().stale_location_s) {
            Some(NotDispatchable::StaleLocation)
        } else {
            None
        };
        prop_assert_eq!(reason, expected);
        let rider = w.rider();
        let trip = w.trip(rider);
        prop_assert_eq!(w.offered(trip).contains(&d), reason.is_none());
        w.finish();
    }
}
