//! Payouts, top-ups, cash debt and cash received (`payouts.rs`): who may do what, the
//! minimum and what is withdrawable, the state machine, gateway reports once per event
//! id and only from the payout's gateway, the cash debt limit at going online, and the
//! earnings index of a card trip with a coupon (the refusals change nothing: the harness
//! checks it after every command).

use super::*;
use crate::ledger::{AccountKey, AccountKind};
use crate::payout::{PayoutReportKind, PayoutStatus, TopUpReportKind, TopUpStatus, day_of};
use crate::trip::PaymentMethod;

fn egp() -> crate::money::Currency {
    "EGP".parse().unwrap()
}

fn credit(w: &mut World, user: UserId, amount_minor: i64) {
    let c = Command::CreditWallet { id: None, user_id: user, amount_minor, currency: egp(), reason: "r".into() };
    w.run(Actor::Admin, c).unwrap();
}

fn ask(w: &mut World, driver: UserId, amount_minor: i64) -> Result<Outcome> {
    w.run(Actor::User(driver), Command::RequestPayout { id: None, amount_minor, currency: egp() })
}

fn payout_id(o: Outcome) -> crate::id::PayoutId {
    match o {
        Outcome::Payout(p) => p.id,
        o => panic!("{o:?}"),
    }
}

fn report(payout_id: crate::id::PayoutId, gateway: &str, event: &str, kind: PayoutReportKind) -> Command {
    Command::PayoutReport { gateway: gateway.into(), event_id: event.into(), payout_id, kind, amount_minor: None }
}

#[test]
fn only_drivers_ask_for_payouts_only_staff_review_them_and_only_the_server_reports() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let d = w.driver(0.5);
    credit(&mut w, d, 5_000);
    assert!(matches!(ask(&mut w, rider, 1_000), Err(Error::Forbidden(_))));
    assert!(matches!(ask(&mut w, d, 999), Err(Error::InvalidParam { param: "amount_minor", .. })));
    assert_eq!(ask(&mut w, d, 5_001).unwrap_err(), Error::InsufficientFunds { available: 5_000, needed: 5_001 });
    let p = payout_id(ask(&mut w, d, 5_000).unwrap());
    assert_eq!(ask(&mut w, d, 1_000).unwrap_err(), Error::InsufficientFunds { available: 0, needed: 1_000 });
    let review = |approve| Command::ReviewPayout { payout_id: p, approve, reason: String::new() };
    assert!(matches!(w.run(Actor::User(d), review(true)), Err(Error::Forbidden(_))));
    let support = w.run(
        Actor::Admin,
        Command::CreateUser(crate::command::NewUser {
            id: None,
            role: crate::user::Role::Support,
            name: "S".into(),
            phone: "+201009999999".into(),
            vehicle: None,
        }),
    );
    let Ok(Outcome::User(support)) = support else { panic!("{support:?}") };
    assert!(matches!(w.run(Actor::User(d), report(p, "sim", "e1", PayoutReportKind::Paid)), Err(Error::Forbidden(_))));
    // Staff review: which staff hold `payouts.approve` is the server's one check (a
    // support user granted it, a custom role); the engine refuses everyone else.
    w.run(Actor::User(support.id), review(true)).unwrap();
    assert!(matches!(w.run(Actor::Admin, review(false)), Err(Error::InvalidTransition { from: "processing", .. })));
    w.finish();
}

#[test]
fn a_payout_is_paid_once_by_its_own_gateway_and_a_failure_returns_the_hold() {
    let mut w = World::new(rules());
    // Integrators hear each payout once it is paid or failed (outbound webhooks).
    let hook = Command::CreateWebhookEndpoint {
        id: None,
        secret: None,
        url: "https://hooks.example.com/in".into(),
        events: vec!["payout.*".into()],
        description: None,
    };
    let Outcome::WebhookEndpoint(hook) = w.run(Actor::Admin, hook).unwrap() else { panic!() };
    let d = w.driver(0.5);
    credit(&mut w, d, 9_000);
    let earnings = AccountKey::of(AccountKind::DriverEarnings, d, egp());
    let p = payout_id(ask(&mut w, d, 4_000).unwrap());
    let approve = Command::ReviewPayout { payout_id: p, approve: true, reason: String::new() };
    w.run(Actor::Admin, approve).unwrap();
    let applied = |o: Outcome| match o {
        // (a duplicate, it changed something)
        Outcome::PaymentEvent { duplicate, ignored } => (duplicate, !duplicate && ignored.is_none()),
        o => panic!("{o:?}"),
    };
    // Another gateway's report (its own valid signature) changes nothing.
    let other = w.run(Actor::System, report(p, "paystack", "e0", PayoutReportKind::Paid)).unwrap();
    assert_eq!(applied(other), (false, false));
    // A report naming another amount changes nothing.
    let mut wrong = report(p, "sim", "e0b", PayoutReportKind::Paid);
    if let Command::PayoutReport { amount_minor, .. } = &mut wrong {
        *amount_minor = Some(4_001);
    }
    assert_eq!(applied(w.run(Actor::System, wrong).unwrap()), (false, false));
    w.events();
    assert_eq!(applied(w.run(Actor::System, report(p, "sim", "e1", PayoutReportKind::Paid)).unwrap()), (false, true));
    // What outbound `payout.paid` comes from.
    let events = w.events();
    assert!(
        matches!(&events[..], [crate::command::Event::PayoutUpdated { payout }] if payout.status == PayoutStatus::Paid),
        "{events:?}"
    );
    assert_eq!(applied(w.run(Actor::System, report(p, "sim", "e1", PayoutReportKind::Paid)).unwrap()), (true, false));
    assert_eq!(applied(w.run(Actor::System, report(p, "sim", "e2", PayoutReportKind::Paid)).unwrap()), (false, false));
    assert_eq!(
        applied(w.run(Actor::System, report(p, "sim", "e3", PayoutReportKind::Failed)).unwrap()),
        (false, false)
    );
    assert_eq!(w.state.payout(p).unwrap().status, PayoutStatus::Paid);
    let a = w.state.ledger().account(&earnings);
    assert_eq!((a.balance(), a.debits_pending), (5_000, 0), "paid once");

    let q = payout_id(ask(&mut w, d, 2_000).unwrap());
    w.run(Actor::Admin, Command::ReviewPayout { payout_id: q, approve: true, reason: String::new() }).unwrap();
    assert_eq!(applied(w.run(Actor::System, report(q, "sim", "f1", PayoutReportKind::Sent)).unwrap()), (false, true));
    assert!(w.state.payout(q).unwrap().sent_at.is_some());
    assert_eq!(applied(w.run(Actor::System, report(q, "sim", "f2", PayoutReportKind::Sent)).unwrap()), (false, false));
    assert_eq!(applied(w.run(Actor::System, report(q, "sim", "f3", PayoutReportKind::Failed)).unwrap()), (false, true));
    let a = w.state.ledger().account(&earnings);
    assert_eq!((a.balance(), a.debits_pending), (5_000, 0), "the failed payout's hold came back whole");
    assert_eq!(w.state.driver_position(d, egp()).withdrawable_minor, 5_000);
    let mut announced: Vec<_> = w.state.hooks().deliveries_of(hook.id, None, 10);
    announced.reverse();
    let kinds: Vec<&str> = announced.iter().map(|d| d.event.kind.as_str()).collect();
    assert_eq!(kinds, ["payout.paid", "payout.failed"], "each once, duplicates and refusals unannounced");
    w.finish();
}

#[test]
fn a_top_up_is_credited_once_for_its_own_amount_and_staff_have_no_wallet_to_top_up() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let top = |amount_minor| Command::CreateTopUp { id: None, amount_minor, currency: egp() };
    assert!(matches!(w.run(Actor::Admin, top(100)), Err(Error::Forbidden(_))));
    assert!(matches!(w.run(Actor::User(rider), top(0)), Err(Error::InvalidParam { .. })));
    let Outcome::TopUp(t) = w.run(Actor::User(rider), top(2_500)).unwrap() else { panic!() };
    let capture = |event: &str, amount_minor| Command::TopUpReport {
        gateway: "sim".into(),
        event_id: event.into(),
        top_up_id: t.id,
        kind: TopUpReportKind::Captured,
        amount_minor,
        currency: egp(),
    };
    let wallet = AccountKey::of(AccountKind::RiderWallet, rider, egp());
    w.run(Actor::System, capture("c0", 2_400)).unwrap();
    assert_eq!(w.state.ledger().account(&wallet).balance(), 0, "another amount credits nothing");
    w.run(Actor::System, capture("c1", 2_500)).unwrap();
    w.run(Actor::System, capture("c2", 2_500)).unwrap();
    assert_eq!(w.state.ledger().account(&wallet).balance(), 2_500, "credited once");
    assert_eq!(w.state.top_up(t.id).unwrap().status, TopUpStatus::Succeeded);
    assert!(matches!(w.run(Actor::User(rider), capture("c3", 2_500)), Err(Error::Forbidden(_))));
    w.finish();
}

#[test]
fn cash_debt_above_the_limit_keeps_a_driver_offline_until_paid_in() {
    let mut w = World::new(DispatchRules { max_cash_debt_minor: 500, ..rules() });
    let rider = w.rider();
    let d = w.driver(0.5);
    let mut new = w.new_trip();
    new.payment_method = PaymentMethod::Cash;
    let Outcome::Trip(trip) = w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap() else { panic!() };
    w.accept(d, trip.id).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip.id }).unwrap();
    let code = w.get(trip.id).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip.id, pickup_code: code }).unwrap();
    w.drive(d, 8230.0, 960);
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip.id, distance_m: Some(8230), dropoff: None }).unwrap();
    let owed = w.state.driver_position(d, egp()).cash_debt_minor;
    assert_eq!(owed, 1006, "15 % of 6704");
    // The earnings index: one trip, the fare, the commission, the cash.
    let day = day_of(w.now);
    let e = w.state.book().days(d, egp(), day, day + 1).map(|(_, e)| *e).next().unwrap();
    assert_eq!((e.trips, e.gross_minor, e.commission_minor, e.cash_collected_minor), (1, 6704, 1006, 6704));

    w.run(Actor::User(d), Command::SetDriverStatus { online: false, location: None }).unwrap();
    let online = Command::SetDriverStatus { online: true, location: None };
    assert_eq!(w.run(Actor::User(d), online.clone()).unwrap_err(), Error::CashDebtLimit { owed: 1006, limit: 500 });
    let paid_in = |amount_minor| Command::CashReceived {
        id: None,
        driver_id: d,
        amount_minor,
        currency: egp(),
        reason: "office".into(),
    };
    assert!(matches!(w.run(Actor::Admin, paid_in(1007)), Err(Error::InvalidParam { .. })));
    assert!(matches!(w.run(Actor::User(d), paid_in(100)), Err(Error::Forbidden(_))));
    let cash_to_rider =
        Command::CashReceived { id: None, driver_id: rider, amount_minor: 1, currency: egp(), reason: "o".into() };
    assert!(matches!(w.run(Actor::Admin, cash_to_rider), Err(Error::NotFound { .. })));
    w.run(Actor::Admin, paid_in(506)).unwrap();
    assert_eq!(w.state.driver_position(d, egp()).cash_debt_minor, 500);
    w.run(Actor::User(d), online).unwrap();
    w.finish();
}

#[test]
fn top_ups_waiting_are_bounded_and_expire_but_a_late_capture_still_credits() {
    use crate::payout::{MAX_PENDING_TOP_UPS, TOP_UP_TTL_S};
    let mut w = World::new(rules());
    let rider = w.rider();
    let top = Command::CreateTopUp { id: None, amount_minor: 1_000, currency: egp() };
    let mut ids = Vec::new();
    for _ in 0..MAX_PENDING_TOP_UPS {
        let Outcome::TopUp(t) = w.run(Actor::User(rider), top.clone()).unwrap() else { panic!() };
        ids.push(t.id);
    }
    assert!(matches!(w.run(Actor::User(rider), top.clone()), Err(Error::Invalid(_))), "one more waits");
    w.advance(i64::from(TOP_UP_TTL_S));
    assert!(ids.iter().all(|id| w.state.top_up(*id).unwrap().status == TopUpStatus::Expired));
    w.run(Actor::User(rider), top).unwrap();
    // The gateway took the money after all: the wallet is credited.
    let capture = Command::TopUpReport {
        gateway: "sim".into(),
        event_id: "late".into(),
        top_up_id: ids[0],
        kind: TopUpReportKind::Captured,
        amount_minor: 1_000,
        currency: egp(),
    };
    w.run(Actor::System, capture).unwrap();
    assert_eq!(w.state.top_up(ids[0]).unwrap().status, TopUpStatus::Succeeded);
    let wallet = AccountKey::of(AccountKind::RiderWallet, rider, egp());
    assert_eq!(w.state.ledger().account(&wallet).balance(), 1_000);
    // An expired one does not fail later: it stays expired.
    let failed = Command::TopUpReport {
        gateway: "sim".into(),
        event_id: "late-fail".into(),
        top_up_id: ids[1],
        kind: TopUpReportKind::Failed,
        amount_minor: 1_000,
        currency: egp(),
    };
    w.run(Actor::System, failed).unwrap();
    assert_eq!(w.state.top_up(ids[1]).unwrap().status, TopUpStatus::Expired);
    w.finish();
}
