//! Archiving and restoring finished trips (`archive.rs`), the writer's copy of the state for a
//! checkpoint (shared account maps, their encoding, the copy without its index), and the
//! invariants (`invariants.rs`) catching a cloned state broken by hand.

use super::*;
use crate::testkit::CAIRO;
use crate::user::Category;

/// Regression: a trip changed between the checkpoint that wrote its history row and the
/// `Archive` record lost that change with its hot copy.
#[test]
fn archive_keeps_a_trip_changed_since_its_history_row_was_written() {
    let mut w = World::new(rules());
    let (rider, _, trip) = complete_a_trip(&mut w);
    let written = w.get(trip).revision;
    let rate = Command::RateTrip { trip_id: trip, stars: 4, comment: None };
    w.run(Actor::User(rider), rate).unwrap();
    assert!(w.get(trip).revision > written, "every change counts a revision");
    let archive = |revision| Command::Archive {
        trips: vec![(trip, revision)],
        transfer_ids: vec![],
        keys: vec![],
        gateway_events: vec![],
        alerts: Vec::new(),
        audit: Vec::new(),
    };
    assert!(matches!(w.run(Actor::System, archive(written)).unwrap(), Outcome::Done));
    assert_eq!(w.get(trip).rider_rating.as_ref().map(|r| r.stars), Some(4), "the rating stays hot");
    let now = w.get(trip).revision;
    w.run(Actor::System, archive(now)).unwrap();
    assert!(w.state.trip(trip).is_none(), "at the revision the history holds, it leaves");
    w.finish();
}

#[test]
fn a_restored_trip_comes_back_for_its_command_and_leaves_again_when_refused() {
    let mut w = World::new(rules());
    let (rider, driver, trip) = complete_a_trip(&mut w);
    let copy = w.get(trip);
    let revision = copy.revision;
    let archive = Command::Archive {
        trips: vec![(trip, revision)],
        transfer_ids: vec![],
        keys: vec![],
        gateway_events: vec![],
        alerts: Vec::new(),
        audit: Vec::new(),
    };
    w.run(Actor::System, archive).unwrap();
    assert!(w.state.trip(trip).is_none());
    let restored = |command| Command::Restored { trip: Arc::clone(&copy), command: Box::new(command) };

    // Refused: the trip does not stay behind, and the refusal is the one the hot trip gives.
    let bad = restored(Command::RateTrip { trip_id: trip, stars: 9, comment: None });
    assert!(matches!(w.run(Actor::User(rider), bad), Err(Error::Invalid(_))));
    assert!(w.state.trip(trip).is_none(), "a refused command leaves the trip in the history");
    let accept = restored(Command::AcceptTrip { trip_id: trip });
    assert!(matches!(w.run(Actor::User(driver), accept), Err(Error::InvalidTransition { .. })));

    // A restore must name the trip its command is about.
    let other = w.trip(rider);
    let mismatched = restored(Command::RateTrip { trip_id: other, stars: 5, comment: None });
    assert!(matches!(w.run(Actor::User(rider), mismatched), Err(Error::Internal(_))));

    // Applied: back in the state with the change, for the next checkpoint to archive again.
    w.run(Actor::User(rider), restored(Command::RateTrip { trip_id: trip, stars: 5, comment: None })).unwrap();
    assert_eq!(w.get(trip).rider_rating.as_ref().map(|r| r.stars), Some(5));
    assert!(w.get(trip).revision > revision);
    // Once hot, a second restore does not replace the newer hot copy.
    w.run(Actor::User(driver), restored(Command::RateTrip { trip_id: trip, stars: 2, comment: None })).unwrap();
    let t = w.get(trip);
    assert_eq!(
        (t.rider_rating.as_ref().map(|r| r.stars), t.driver_rating.as_ref().map(|r| r.stars)),
        (Some(5), Some(2))
    );
    w.finish();
}

/// The checkpoint's copy of the state is a clone on the writer thread: the collections
/// that grow with accounts must be shared by it, not copied (a copy of 1,000,000 accounts
/// stalled every command for 235 ms), and a write on either side must leave the other as
/// it was.
#[test]
fn a_cloned_state_shares_its_account_maps_until_one_side_writes() {
    use crate::ledger::{AccountKey, AccountKind};
    let mut w = World::new(rules());
    let rider = w.rider();
    w.driver(1.0);
    let egp: crate::money::Currency = "EGP".parse().unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: rider, amount_minor: 5_000, currency: egp, reason: "top-up".into() };
    w.run(Actor::Admin, credit).unwrap();
    w.run(Actor::System, Command::IssueOtp { phone: "+201011112222".into(), role: Role::Rider, code_hash: [1; 32] })
        .unwrap();
    w.add_coupon(coupon("HALF", 5_000, None));
    let mut new = w.new_trip();
    new.coupon = Some("HALF".into());
    w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap();
    assert!(!w.state.users.is_empty() && !w.state.otps.is_empty() && w.state.ledger.accounts().count() > 0);

    let copy = w.state.clone();
    assert!(copy.users.ptr_eq(&w.state.users), "users are copied, not shared");
    assert!(copy.phones.ptr_eq(&w.state.phones), "the phone index is copied, not shared");
    assert!(copy.otps.ptr_eq(&w.state.otps), "OTP records are copied, not shared");
    assert!(copy.ledger.shares_accounts_with(&w.state.ledger), "ledger accounts are copied, not shared");
    let uses = |s: &State| Arc::clone(&s.coupons["HALF"]);
    let record = uses(&w.state);
    assert_eq!(record.uses_by(rider), 1);
    let cloned = (*record).clone();
    assert!(cloned.uses_by_rider.ptr_eq(&record.uses_by_rider), "a coupon's uses per rider are copied");

    // Writes after the clone: the state moves on, the copy stays what it was.
    let second = w.rider();
    w.run(Actor::Admin, Command::RevokeTokens { user_id: rider }).unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: second, amount_minor: 700, currency: egp, reason: "top-up".into() };
    w.run(Actor::Admin, credit).unwrap();
    w.run(Actor::System, Command::IssueOtp { phone: "+201033334444".into(), role: Role::Rider, code_hash: [2; 32] })
        .unwrap();
    assert!(!copy.users.ptr_eq(&w.state.users) && !copy.ledger.shares_accounts_with(&w.state.ledger));
    assert!(copy.user(second).is_none() && copy.user_by_phone(Role::Rider, &w.state.users[&second].phone).is_none());
    assert_eq!(copy.user(rider).map(|u| u.token_generation), Some(0));
    assert_eq!(w.state.user(rider).map(|u| u.token_generation), Some(1));
    assert!(copy.otp("+201033334444").is_none());
    let second_wallet = AccountKey::of(AccountKind::RiderWallet, second, egp);
    assert_eq!(
        (copy.ledger().account(&second_wallet).balance(), w.state.ledger().account(&second_wallet).balance()),
        (0, 700)
    );
    assert_ne!(copy, w.state);
    copy.check_invariants().unwrap();
    w.finish();
}

/// The persistent maps encode as the std maps they replaced (a postcard map: its length,
/// then its entries), so a checkpoint written before them reads back the same and
/// `STATE_FORMAT` did not change.
#[test]
fn the_account_maps_encode_as_the_std_maps_they_replaced() {
    use std::collections::HashMap;
    let users: Vec<(UserId, u64)> = (1..=50).map(|i| (UserId::from_raw(i * 7_919).unwrap(), i)).collect();
    let std_hash: HashMap<UserId, u64> = users.iter().copied().collect();
    let std_tree: BTreeMap<UserId, u64> = users.iter().copied().collect();
    let ord: imbl::OrdMap<UserId, u64> = users.iter().copied().collect();
    // A BTreeMap (the OTP records, the ledger's accounts, a coupon's uses) encodes byte for byte the same.
    assert_eq!(postcard::to_allocvec(&ord).unwrap(), postcard::to_allocvec(&std_tree).unwrap());
    // A std HashMap (users, the phone index) was written in its own order: it reads back whole.
    let back: imbl::OrdMap<UserId, u64> = postcard::from_bytes(&postcard::to_allocvec(&std_hash).unwrap()).unwrap();
    assert_eq!(back, ord);
    let forth: HashMap<UserId, u64> = postcard::from_bytes(&postcard::to_allocvec(&ord).unwrap()).unwrap();
    assert_eq!(forth, std_hash);
}

/// `who` takes a driver record as proof of the driver role (the location path then never
/// looks in the users map): the invariants refuse a driver record of anyone else.
#[test]
fn a_driver_record_of_a_non_driver_breaks_the_invariants() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(1.0);
    assert_eq!(w.state.who(Actor::User(d)).unwrap(), Who::Driver(d));
    assert_eq!(w.state.who(Actor::User(rider)).unwrap(), Who::Rider(rider));
    w.state.check_invariants().unwrap();
    let forged = Arc::new(Driver::new(rider, Category::new("economy").unwrap()));
    let mut broken = w.state.clone();
    broken.drivers.insert(rider, forged);
    assert!(broken.check_invariants().unwrap_err().contains("is not a driver's"));
    w.finish();
}

/// The writer's checkpoint copy leaves out only the spatial index: it encodes to the same
/// bytes as the state, and what a checkpoint reads back has its index rebuilt.
#[test]
fn the_checkpoint_copy_is_the_state_but_its_index() {
    let mut w = World::new(rules());
    let near = w.driver(0.3);
    let far = w.driver(2.0);
    let rider = w.rider();
    w.trip(rider);
    let copy = w.state.copy_for_checkpoint();
    assert_eq!(postcard::to_allocvec(&copy).unwrap(), postcard::to_allocvec(&w.state).unwrap());
    let here = LatLng::new(CAIRO.0, CAIRO.1).unwrap();
    assert!(copy.drivers_near(here, 5_000.0, 10).unwrap().is_empty(), "the copy holds no index");
    let back: State = postcard::from_bytes(&postcard::to_allocvec(&copy).unwrap()).unwrap();
    assert_eq!(back, w.state);
    let found: Vec<UserId> = back.drivers_near(here, 5_000.0, 10).unwrap().iter().map(|(d, _)| d.id).collect();
    assert_eq!(found, vec![near, far], "the index is rebuilt from the drivers when read back");
    w.finish();
}

/// The invariants catch a phone index that disagrees with the users (a checkpoint reads
/// them from two tables).
#[test]
fn a_phone_index_that_disagrees_with_the_users_breaks_the_invariants() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let other = w.rider();
    let mut broken = w.state.clone();
    let key = broken.phones.keys().next().cloned().unwrap();
    let owner = broken.phones[&key];
    broken.phones.insert(key.clone(), if owner == rider { other } else { rider });
    assert!(broken.check_invariants().unwrap_err().contains("phone index"));
    let mut missing = w.state.clone();
    missing.phones.remove(&key);
    assert!(missing.check_invariants().unwrap_err().contains("phone index"));
    w.finish();
}
