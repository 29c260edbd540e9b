//! Staff's users (issue 20: U): the user indexes against a scan (a proptest), edits, blocks
//! and their apartness from an admin's suspension, erasure and its queue, drivers' stats.

use proptest::prelude::*;

use super::*;
use crate::command::UserPatch;
use crate::trip::CancelReason;
use crate::user::{ERASED_NAME, UserStatus};
use crate::user_index::{UserCursor, UserQuery, name_key, phone_key};

fn patch_name(w: &mut World, id: UserId, name: &str) -> Result<Outcome> {
    let change = UserPatch { name: Some(name.into()), ..UserPatch::default() };
    w.run(Actor::Admin, Command::PatchUser { user_id: id, change })
}

fn block(w: &mut World, id: UserId, blocked: bool) -> Result<Outcome> {
    w.run(Actor::Admin, Command::BlockUser { user_id: id, blocked, reason: "test".into() })
}

fn erase(w: &mut World, id: UserId) -> Result<Outcome> {
    w.run(Actor::Admin, Command::EraseUser { user_id: id })
}

/// Every page of `query`, followed by its cursors (pages of `limit`).
fn all_pages(
    s: &State,
    query: &UserQuery,
    role: Option<Role>,
    status: Option<UserStatus>,
    limit: usize,
) -> Vec<UserId> {
    let mut out = Vec::new();
    let mut after: Option<UserCursor> = None;
    for _ in 0..10_000 {
        let (page, next) = s.user_index().page(|id| s.user(id), query, role, status, after.as_ref(), limit);
        out.extend(page.iter().map(|u| u.id));
        match next {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
    panic!("paging did not end");
}

/// What a scan of every user answers, in the index's order.
fn scan(s: &State, query: &UserQuery, role: Option<Role>, status: Option<UserStatus>) -> Vec<UserId> {
    let mut hits: Vec<(String, i64, UserId)> = s
        .users()
        .filter(|u| role.is_none_or(|r| u.role == r) && status.is_none_or(|st| u.status() == st))
        .filter_map(|u| match query {
            UserQuery::Newest => Some((String::new(), -u.created_at.as_millis(), u.id)),
            UserQuery::NamePrefix(p) => {
                let k = name_key(&u.name);
                (u.erased_at.is_none() && k.starts_with(p.as_str())).then_some((k, 0, u.id))
            }
            UserQuery::PhoneSuffix(d) => {
                let k = phone_key(&u.phone);
                let rev: String = d.chars().rev().collect();
                (u.erased_at.is_none() && !u.phone.is_empty() && k.starts_with(&rev)).then_some((k, 0, u.id))
            }
        })
        .collect();
    hits.sort();
    hits.into_iter().map(|(_, _, id)| id).collect()
}

#[derive(Debug, Clone)]
enum Op {
    Create(bool, usize),
    Rename(usize, usize),
    Block(usize, bool),
    Erase(usize),
    Later(i64),
}

const NAMES: [&str; 6] = ["Amal", "amal hassan", "Ámal", "Omar", "  OMAR  farouk", "Émile"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), 0..NAMES.len()).prop_map(|(d, n)| Op::Create(d, n)),
        2 => (0..40usize, 0..NAMES.len()).prop_map(|(u, n)| Op::Rename(u, n)),
        1 => (0..40usize, any::<bool>()).prop_map(|(u, b)| Op::Block(u, b)),
        1 => (0..40usize).prop_map(Op::Erase),
        1 => (0..3i64).prop_map(Op::Later),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever users were created, renamed, blocked or erased, each index answers exactly
    /// what a scan of the users would, page after page, with every filter; and the state
    /// read back (its indexes rebuilt) answers the same.
    #[test]
    fn the_user_indexes_answer_what_a_scan_would(ops in proptest::collection::vec(op(), 1..40), limit in 1usize..4) {
        let mut w = World::new(rules());
        let mut users: Vec<UserId> = Vec::new();
        let mut next_phone = 0u64;
        for op in ops {
            match op {
                Op::Create(driver, n) => {
                    next_phone += 1;
                    let vehicle = driver.then(|| crate::user::Vehicle::new(crate::user::Category::new("economy").unwrap(), "P 1"));
                    let role = if driver { Role::Driver } else { Role::Rider };
                    // Phones end in few different digits: suffixes match several users.
                    let phone = format!("+2010{:04}{:04}", next_phone, next_phone % 7);
                    let new = crate::command::NewUser { id: None, role, name: NAMES[n].into(), phone, vehicle };
                    if let Ok(Outcome::User(u)) = w.run(Actor::Admin, Command::CreateUser(new)) {
                        users.push(u.id);
                    }
                }
                Op::Rename(u, n) if !users.is_empty() => {
                    let _ = patch_name(&mut w, users[u % users.len()], NAMES[n]);
                }
                Op::Block(u, b) if !users.is_empty() => {
                    let _ = block(&mut w, users[u % users.len()], b);
                }
                Op::Erase(u) if !users.is_empty() => {
                    let _ = erase(&mut w, users[u % users.len()]);
                }
                Op::Later(s) => w.now = w.now.plus_millis(s * 1000),
                _ => {}
            }
        }
        let queries = [
            UserQuery::Newest,
            UserQuery::NamePrefix("amal".into()),
            UserQuery::NamePrefix("ám".into()),
            UserQuery::NamePrefix("omar f".into()),
            UserQuery::NamePrefix("e".into()),
            UserQuery::PhoneSuffix("0003".into()),
            UserQuery::PhoneSuffix("0".into()),
        ];
        let read_back: State = postcard::from_bytes(&postcard::to_allocvec(&w.state).unwrap()).unwrap();
        for q in &queries {
            for role in [None, Some(Role::Rider), Some(Role::Driver)] {
                for status in [None, Some(UserStatus::Active), Some(UserStatus::Blocked), Some(UserStatus::Erased)] {
                    let want = scan(&w.state, q, role, status);
                    prop_assert_eq!(&all_pages(&w.state, q, role, status, limit), &want, "{:?} {:?} {:?}", q, role, status);
                    prop_assert_eq!(&all_pages(&read_back, q, role, status, limit), &want);
                }
            }
        }
        w.finish();
    }
}

#[test]
fn names_are_lower_cased_in_unicode_and_phones_reversed() {
    assert_eq!(name_key("  ÉMILE   Zola "), "émile zola");
    assert_eq!(name_key("İSTANBUL"), "i\u{307}stanbul");
    assert_eq!(phone_key("+201001234567"), "765432100102");
}

#[test]
fn staff_edit_users_by_the_rules_of_creation() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(1.0);
    let change = UserPatch { name: Some("Amal".into()), email: Some("amal@example.com".into()), vehicle: None };
    let Outcome::User(u) = w.run(Actor::Admin, Command::PatchUser { user_id: rider, change }).unwrap() else {
        panic!()
    };
    assert_eq!((u.name.as_str(), u.email.as_deref()), ("Amal", Some("amal@example.com")));
    let (page, _) =
        w.state.user_index().page(|id| w.state.user(id), &UserQuery::NamePrefix("am".into()), None, None, None, 10);
    assert_eq!(page.iter().map(|u| u.id).collect::<Vec<_>>(), vec![rider]);
    // A rider has no vehicle; a driver's must be of a priced category.
    let v = |c: &str| crate::user::Vehicle::new(crate::user::Category::new(c).unwrap(), "NEW 1");
    let with = |vehicle| UserPatch { vehicle: Some(vehicle), ..UserPatch::default() };
    let refused = w.run(Actor::Admin, Command::PatchUser { user_id: rider, change: with(v("economy")) });
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    let refused = w.run(Actor::Admin, Command::PatchUser { user_id: driver, change: with(v("helicopter")) });
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    w.run(Actor::Admin, Command::PatchUser { user_id: driver, change: with(v("economy")) }).unwrap();
    assert_eq!(w.state.user(driver).unwrap().vehicle.as_ref().unwrap().plate, "NEW 1");
    assert!(matches!(patch_name(&mut w, rider, ""), Err(Error::Invalid(_))));
    // Riders and drivers edit nobody.
    assert!(matches!(
        w.run(Actor::User(rider), Command::PatchUser { user_id: driver, change: UserPatch::default() }),
        Err(Error::Forbidden(_))
    ));
    w.finish();
}

#[test]
fn a_blocked_rider_cannot_book_until_unblocked() {
    let mut w = World::new(rules());
    let rider = w.rider();
    w.driver(1.0);
    let Outcome::User(u) = block(&mut w, rider, true).unwrap() else { panic!() };
    assert_eq!(u.status(), UserStatus::Blocked);
    assert_eq!(u.blocked.as_ref().map(|b| (b.reason.as_str(), b.at)), Some(("test", w.now)));
    let new = w.new_trip();
    let refused = w.run(Actor::User(rider), Command::CreateTrip(new));
    assert_eq!(refused.as_ref().map_err(Error::code), Err("blocked"));
    block(&mut w, rider, false).unwrap();
    assert_eq!(w.state.user(rider).unwrap().status(), UserStatus::Active);
    w.trip(rider);
    w.finish();
}

#[test]
fn a_block_suspends_a_driver_apart_from_an_admins_suspension() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(1.0);
    let trip = w.trip(rider);
    assert_eq!(w.offered(trip), vec![driver]);
    block(&mut w, driver, true).unwrap();
    let d = w.state.driver(driver).unwrap();
    assert!(d.suspended && d.availability == Availability::Offline && d.pending_offers.is_empty());
    let here = LatLng::new(crate::testkit::CAIRO.0, crate::testkit::CAIRO.1).unwrap();
    let online = Command::SetDriverStatus { online: true, location: Some(here) };
    assert!(matches!(w.run(Actor::User(driver), online.clone()), Err(Error::Forbidden(_))));
    // An admin's suspension besides the block: unblocking leaves it.
    let suspend = |s: bool| Command::SetDriverSuspended { driver_id: driver, suspended: s, reason: String::new() };
    w.run(Actor::Admin, suspend(true)).unwrap();
    block(&mut w, driver, false).unwrap();
    assert!(w.state.driver(driver).unwrap().suspended, "the admin's suspension stays");
    assert!(w.run(Actor::User(driver), online.clone()).is_err());
    // And the other way round: lifting the suspension leaves a block.
    block(&mut w, driver, true).unwrap();
    w.run(Actor::Admin, suspend(false)).unwrap();
    assert!(w.state.driver(driver).unwrap().suspended, "the block stays");
    block(&mut w, driver, false).unwrap();
    assert!(!w.state.driver(driver).unwrap().suspended);
    w.run(Actor::User(driver), online).unwrap();
    w.finish();
}

#[test]
fn erasure_waits_for_open_trips_then_replaces_the_personal_data() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(1.0);
    let trip = w.trip(rider);
    // Support staff erase nobody; nobody is erased while a trip is open.
    let support = w.user(Role::Support, None);
    assert!(matches!(w.run(Actor::User(support), Command::EraseUser { user_id: rider }), Err(Error::Forbidden(_))));
    let refused = erase(&mut w, rider);
    assert_eq!(refused.as_ref().map_err(Error::code), Err("invalid_transition"));
    w.accept(driver, trip).unwrap();
    let refused = erase(&mut w, driver);
    assert_eq!(refused.as_ref().map_err(Error::code), Err("invalid_transition"));
    w.run(
        Actor::User(rider),
        Command::PostMessage { id: None, trip_id: trip, text: "I am at gate 3".into(), rider_connected: None },
    )
    .unwrap();
    w.run(
        Actor::User(driver),
        Command::PostMessage { id: None, trip_id: trip, text: "coming".into(), rider_connected: None },
    )
    .unwrap();
    w.run(Actor::User(rider), Command::CancelTrip { trip_id: trip, code: CancelReason::Other, reason: String::new() })
        .unwrap();
    let device = Command::RegisterDevice {
        id: None,
        platform: crate::outbox::Platform::Fcm,
        token: "fcm-token-of-the-rider".into(),
    };
    w.run(Actor::User(rider), device).unwrap();
    let phone = w.state.user(rider).unwrap().phone.clone();
    let generation = w.state.user(rider).unwrap().token_generation;
    let Outcome::User(u) = erase(&mut w, rider).unwrap() else { panic!() };
    assert_eq!((u.name.as_str(), u.phone.as_str(), u.email.as_deref()), (ERASED_NAME, "", None));
    assert_eq!((u.status(), u.erased_at, u.token_generation), (UserStatus::Erased, Some(w.now), generation + 1));
    let texts: Vec<(Option<UserId>, String)> =
        w.get(trip).messages.iter().map(|m| (m.from_user_id, m.text.clone())).collect();
    assert_eq!(texts, vec![(Some(rider), super::super::ERASED_TEXT.into()), (Some(driver), "coming".into())]);
    assert!(w.state.erasures().contains_key(&rider), "queued for the eraser");
    assert!(w.state.outbox().devices_of(rider).is_empty(), "no push device is left");
    assert!(w.state.user_by_phone(Role::Rider, &phone).is_none(), "the number is free");
    let (found, _) =
        w.state.user_index().page(|id| w.state.user(id), &UserQuery::NamePrefix("erased".into()), None, None, None, 10);
    assert!(found.is_empty(), "an erased user is not found by name");
    // Erasing again answers the same; the number signs up again as someone new.
    erase(&mut w, rider).unwrap();
    let again = crate::command::NewUser { id: None, role: Role::Rider, name: "New".into(), phone, vehicle: None };
    let Outcome::User(newcomer) = w.run(Actor::Admin, Command::CreateUser(again)).unwrap() else { panic!() };
    assert_ne!(newcomer.id, rider);
    // Only the system finishes an erasure; twice is harmless.
    assert!(w.run(Actor::Admin, Command::ErasureFinished { user_id: rider }).is_err());
    w.run(Actor::System, Command::ErasureFinished { user_id: rider }).unwrap();
    w.run(Actor::System, Command::ErasureFinished { user_id: rider }).unwrap();
    assert!(w.state.erasures().is_empty());
    // A driver erased is suspended for good.
    w.run(Actor::User(driver), Command::SetDriverStatus { online: false, location: None }).ok();
    erase(&mut w, driver).unwrap();
    assert!(w.state.driver(driver).unwrap().suspended);
    assert!(block(&mut w, driver, false).is_ok());
    assert!(w.state.driver(driver).unwrap().suspended, "unblocking does not bring an erased driver back");
    w.finish();
}

#[test]
fn drivers_stats_count_what_happens_to_their_offers() {
    let mut w = World::new(DispatchRules { offers_per_round: 1, ..rules() });
    let rider = w.rider();
    let driver = w.driver(1.0);
    let stats = |w: &World| w.state.driver(driver).unwrap().stats.clone();
    // Declined.
    let t1 = w.trip(rider);
    w.run(Actor::User(driver), Command::DeclineTrip { trip_id: t1 }).unwrap();
    // Lapsed.
    let rider2 = w.rider();
    let t2 = w.trip(rider2);
    assert_eq!(w.offered(t2), vec![driver]);
    w.advance(i64::from(w.state.rules().offer_ttl_s) + 1);
    // Accepted, then given back (cancelled after accepting).
    let rider3 = w.rider();
    let t3 = w.trip(rider3);
    w.accept(driver, t3).unwrap();
    w.run(Actor::User(driver), Command::CancelTrip { trip_id: t3, code: CancelReason::Other, reason: String::new() })
        .unwrap();
    let s = stats(&w);
    assert_eq!((s.offers, s.declined, s.lapsed, s.accepted, s.cancelled_after_accept), (3, 1, 1, 1, 1), "{s:?}");
    assert_eq!(s.acceptance_rate_bps(), 3_333);
    assert_eq!(s.cancel_rate_bps(), 10_000);
    assert_eq!(crate::driver::DriverStats::default().acceptance_rate_bps(), 0, "no offers: 0");
    // Online time: the stretch running counts live, and is kept when the driver goes off.
    let since = w.state.driver(driver).unwrap().online_since.unwrap();
    let live = stats(&w).online_s_7d(Some(since), w.now);
    assert_eq!(live, u64::try_from(w.now.millis_since(since) / 1000).unwrap());
    let _ = w.run(Actor::User(driver), Command::SetDriverStatus { online: false, location: None });
    if w.state.driver(driver).unwrap().availability == Availability::Offline {
        assert_eq!(stats(&w).online_s_7d(None, w.now), live);
    }
    w.finish();
}

#[test]
fn online_time_is_split_by_utc_day_and_only_seven_days_count() {
    let mut s = crate::driver::DriverStats::default();
    let day = 86_400_000;
    let t = |ms: i64| Timestamp::from_millis(ms);
    // 23:00 to 01:00: an hour on each day.
    s.add_online(t(10 * day - 3_600_000), t(10 * day + 3_600_000));
    assert_eq!(s.online_days, vec![(9, 3_600), (10, 3_600)]);
    assert_eq!(s.online_s_7d(None, t(10 * day + 5_000_000)), 7_200);
    // Eight days later, day 9 and 10 are out of the window; the ring keeps eight days.
    assert_eq!(s.online_s_7d(None, t(17 * day)), 0);
    for d in 11..30 {
        s.add_online(t(d * day), t(d * day + 1_000));
    }
    assert_eq!(s.online_days.len(), crate::driver::ONLINE_DAYS_KEPT);
    assert_eq!(s.online_s_7d(Some(t(29 * day + 500_000)), t(29 * day + 600_000)), 7 + 100);
}

/// An archived trip brought back for a late command after its rider was erased (before
/// the eraser reached the history) comes back without the erased rider's words.
#[test]
fn a_trip_restored_after_an_erasure_does_not_bring_the_words_back() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(1.0);
    let trip = w.trip(rider);
    w.accept(driver, trip).unwrap();
    for (who, text) in [(rider, "blue door"), (driver, "here")] {
        let post = Command::PostMessage { id: None, trip_id: trip, text: text.into(), rider_connected: None };
        w.run(Actor::User(who), post).unwrap();
    }
    w.run(Actor::User(driver), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(driver), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.run(Actor::User(driver), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    let copy = w.get(trip);
    let archive = Command::Archive {
        trips: vec![(trip, copy.revision)],
        transfer_ids: vec![],
        keys: vec![],
        gateway_events: vec![],
        alerts: Vec::new(),
        audit: Vec::new(),
    };
    w.run(Actor::System, archive).unwrap();
    erase(&mut w, rider).unwrap();
    // The driver rates the rider late: the writer restores the history's copy.
    let rate = Command::RateTrip { trip_id: trip, stars: 4, comment: None };
    let restored = Command::Restored { trip: Arc::clone(&copy), command: Box::new(rate) };
    w.run(Actor::User(driver), restored).unwrap();
    let t = w.get(trip);
    assert_eq!(t.driver_rating.as_ref().map(|r| r.stars), Some(4), "the late rating applied");
    let texts: Vec<&str> = t.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, vec![super::super::ERASED_TEXT, "here"]);
    w.finish();
}
