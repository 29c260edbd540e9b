//! `dispatchd backup`, `restore` and `reconcile` as an operator runs them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use dispatch_core::{Actor, Engine, EngineConfig, NewUser, Role};

fn dispatchd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dispatchd")).args(args).output().unwrap()
}

#[test]
fn backup_and_restore_round_trip_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backup, restored) = (dir.path().join("data"), dir.path().join("b"), dir.path().join("r"));
    let engine = Engine::open(EngineConfig::default().with_data_dir(&data)).unwrap();
    let new =
        NewUser { id: None, role: Role::Rider, name: "Amal".into(), phone: "+201001234567".into(), vehicle: None };
    let amal = engine.create_user(Actor::Admin, new).unwrap();
    // While the engine holds the data dir.
    let out = dispatchd(&["backup", "--data-dir", data.to_str().unwrap(), "--to", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 records"));
    engine.shutdown().unwrap();

    let out = dispatchd(&["restore", "--from", backup.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engine = Engine::open(EngineConfig::default().with_data_dir(&restored)).unwrap();
    assert_eq!(engine.user(amal.id).unwrap().name, "Amal");
    engine.shutdown().unwrap();

    // Refusals are clear and change nothing.
    let out = dispatchd(&["restore", "--from", backup.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let out = dispatchd(&["backup", "--data-dir", dir.path().join("none").to_str().unwrap(), "--to", "x"]);
    assert!(!out.status.success());
}

#[test]
fn reconcile_lists_every_difference_with_a_settlement_report() {
    use dispatch_core::payment::PaymentEventKind;
    use dispatch_core::route::StraightLine;
    use dispatch_core::{Category, Command, LatLng, NewTrip, PaymentMethod, Place, TripKind, Vehicle};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(EngineConfig::default().with_data_dir(&data)).unwrap();
    engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
    let person =
        |role, phone: &str, vehicle| NewUser { id: None, role, name: "X".into(), phone: phone.into(), vehicle };
    let rider = engine.create_user(Actor::Admin, person(Role::Rider, "+201001234567", None)).unwrap().id;
    let car = Some(Vehicle::new(Category::new("economy").unwrap(), "A 1"));
    let driver = engine.create_user(Actor::Admin, person(Role::Driver, "+201001234568", car)).unwrap().id;
    let here = LatLng::new(30.0444, 31.2357).unwrap();
    let there = LatLng::new(30.06, 31.25).unwrap();
    engine.set_driver_status(driver, true, Some(here)).unwrap();
    let new = NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(here),
        dropoff: Place::at(there),
        stops: Vec::new(),
        category: Category::new("economy").unwrap(),
        parcel: None,
        payment_method: PaymentMethod::Card,
        route: StraightLine::default().between(here, there),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    };
    let trip = engine.create_trip(rider, new).unwrap();
    let trip = engine.accept(driver, trip.id).unwrap();
    engine.arrived(driver, trip.id).unwrap();
    engine.start(driver, trip.id, &trip.pickup_code.to_string()).unwrap();
    let fare = engine.complete(driver, trip.id, Some(3_000)).unwrap().fare.final_minor.unwrap();
    let captured = Command::PaymentEvent {
        gateway: "sim".into(),
        event_id: "evt_1".into(),
        kind: PaymentEventKind::Captured,
        trip_id: trip.id,
        amount_minor: fare,
        currency: "EGP".parse().unwrap(),
        archived: None,
    };
    engine.submit(Actor::System, captured).unwrap();
    engine.shutdown().unwrap();

    let report = dir.path().join("settlement.csv");
    let run = |csv: String| {
        std::fs::write(&report, csv).unwrap();
        dispatchd(&["reconcile", "--data-dir", data.to_str().unwrap(), "--settlement", report.to_str().unwrap()])
    };
    let agree = run(format!("trip_id,amount_minor,currency\n{},{fare},EGP\n", trip.id));
    assert!(agree.status.success(), "{}", String::from_utf8_lossy(&agree.stdout));
    assert!(String::from_utf8_lossy(&agree.stdout).contains("0 mismatch"));
    let differ =
        run(format!("trip_id,amount_minor,currency\n{},{},EGP\ntrp_00000000000000aa,500,EGP\n", trip.id, fare - 1));
    assert_eq!(differ.status.code(), Some(1));
    let out = String::from_utf8_lossy(&differ.stdout);
    assert!(out.contains(&format!("{}: the ledger has {fare}, the gateway {}", trip.id, fare - 1)), "{out}");
    assert!(out.contains("trp_00000000000000aa: the gateway settled 500, the ledger has no capture"), "{out}");
    let status = run(format!("trip_id,amount_minor,currency,status\n{},{fare},EGP,refunded\n", trip.id));
    assert_eq!(status.status.code(), Some(1));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains(&format!("{}: the ledger's payment is captured, the gateway's refunded", trip.id)), "{out}");
    let bad = run("nonsense\n".into());
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("header"));
}

#[test]
fn reconcile_covers_payouts_and_top_ups() {
    use dispatch_core::payout::{PayoutReportKind, TopUpReportKind};
    use dispatch_core::{Category, Command, Outcome, Vehicle};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(EngineConfig::default().with_data_dir(&data)).unwrap();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
    let car = Some(Vehicle::new(Category::new("economy").unwrap(), "A 1"));
    let new = NewUser { id: None, role: Role::Driver, name: "K".into(), phone: "+201001234568".into(), vehicle: car };
    let driver = engine.create_user(Actor::Admin, new).unwrap().id;
    let credit =
        Command::CreditWallet { id: None, user_id: driver, amount_minor: 9_000, currency: egp, reason: "b".into() };
    engine.submit(Actor::Admin, credit).unwrap();
    let ask = Command::RequestPayout { id: None, amount_minor: 4_000, currency: egp };
    let Outcome::Payout(payout) = engine.submit(Actor::User(driver), ask).unwrap() else { panic!() };
    let approve = Command::ReviewPayout { payout_id: payout.id, approve: true, reason: String::new() };
    engine.submit(Actor::Admin, approve).unwrap();
    let paid = Command::PayoutReport {
        gateway: "sim".into(),
        event_id: "evt_p".into(),
        payout_id: payout.id,
        kind: PayoutReportKind::Paid,
        amount_minor: None,
    };
    engine.submit(Actor::System, paid).unwrap();
    let top = Command::CreateTopUp { id: None, amount_minor: 700, currency: egp };
    let Outcome::TopUp(top_up) = engine.submit(Actor::User(driver), top).unwrap() else { panic!() };
    let captured = Command::TopUpReport {
        gateway: "sim".into(),
        event_id: "evt_t".into(),
        top_up_id: top_up.id,
        kind: TopUpReportKind::Captured,
        amount_minor: 700,
        currency: egp,
    };
    engine.submit(Actor::System, captured).unwrap();
    engine.shutdown().unwrap();

    let report = dir.path().join("settlement.csv");
    let run = |csv: String| {
        std::fs::write(&report, csv).unwrap();
        dispatchd(&["reconcile", "--data-dir", data.to_str().unwrap(), "--settlement", report.to_str().unwrap()])
    };
    let (p, t) = (payout.id, top_up.id);
    let agree = run(format!("trip_id,amount_minor,currency\n{p},4000,EGP\n{t},700,EGP\n"));
    let out = String::from_utf8_lossy(&agree.stdout);
    assert!(agree.status.success(), "{out}");
    assert!(out.contains("2 payout(s) and top-up(s), 2 settlement line(s), 2 matched, 0 mismatch(es)"), "{out}");
    let differ = run(format!("trip_id,amount_minor,currency\n{p},4100,EGP\n"));
    assert_eq!(differ.status.code(), Some(1));
    let out = String::from_utf8_lossy(&differ.stdout);
    assert!(out.contains(&format!("{p}: the ledger paid out 4000, the gateway settled 4100")), "{out}");
    assert!(out.contains(&format!("{t}: the ledger credited 700, the gateway did not settle it")), "{out}");
}
