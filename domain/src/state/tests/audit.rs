//! The audit trail and runtime settings (`audit.rs`): one entry per staff command that
//! succeeded, with its action and target; none for a refusal or a replayed key; settings
//! changed whole or not at all, their overrides kept; a zone's bidding switch.

use super::*;
use crate::audit::{AuditEntry, Detail};
use crate::command::{IdempotencyKey, NewUser};
use crate::settings::{RuleOverrides, SettingsChange, ZoneSettings};
use crate::zone::SurgeSettings;

fn audited(request_id: &str, command: Command) -> Command {
    Command::Audited { request_id: request_id.into(), command: Box::new(command) }
}

fn last_entry(w: &World) -> Arc<AuditEntry> {
    Arc::clone(w.state.audit_entries().next_back().expect("an audit entry"))
}

fn settings(dispatch: RuleOverrides) -> Command {
    Command::UpdateSettings(Box::new(SettingsChange { dispatch, zones: Default::default() }))
}

#[test]
fn every_staff_command_wrapped_gives_one_entry_with_its_action_and_target() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(0.5);
    let trip = w.trip(rider);
    let sos = w.run(Actor::User(rider), Command::RaiseSos { id: None, trip_id: trip, location: None, note: None });
    let Ok(Outcome::Alert(alert)) = sos else { panic!("{sos:?}") };
    let zone_id = w.zone_id();
    let support =
        NewUser { id: None, role: Role::Support, name: "S".into(), phone: "+201055500001".into(), vehicle: None };
    let egp: crate::money::Currency = "EGP".parse().unwrap();
    let cases: Vec<(Command, &str, Option<String>)> = vec![
        (Command::CreateUser(support), "user.create", None),
        (
            Command::SetDriverSuspended { driver_id: driver, suspended: true, reason: "docs".into() },
            "driver.suspend",
            Some(driver.to_string()),
        ),
        (
            Command::SetDriverSuspended { driver_id: driver, suspended: false, reason: String::new() },
            "driver.unsuspend",
            Some(driver.to_string()),
        ),
        (Command::CreateZone { id: None, zone: Box::new(crate::demo::cairo().unwrap()) }, "zone.create", None),
        (
            Command::ReplaceZone { zone_id, zone: Box::new(crate::demo::cairo().unwrap()) },
            "zone.update",
            Some(zone_id.to_string()),
        ),
        (Command::CreateCoupon { id: None, coupon: Box::new(coupon("AUDIT", 1000, None)) }, "coupon.create", None),
        (Command::DisableCoupon { code: "AUDIT".into() }, "coupon.disable", None),
        (Command::AckAlert { alert_id: alert.id }, "alert.ack", Some(alert.id.to_string())),
        (
            Command::CreditWallet {
                id: None,
                user_id: rider,
                amount_minor: 500,
                currency: egp,
                reason: "promo".into(),
            },
            "wallet.credit",
            Some(rider.to_string()),
        ),
        (Command::RevokeTokens { user_id: rider }, "user.revoke_tokens", Some(rider.to_string())),
        (
            Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "dup".into() },
            "trip.cancel",
            Some(trip.to_string()),
        ),
        (
            settings(RuleOverrides { offer_ttl_s: Some(15), ..Default::default() }),
            "settings.update",
            Some("settings".into()),
        ),
    ];
    for (n, (command, action, target)) in cases.into_iter().enumerate() {
        assert_eq!(command.audit_action(), Some(action), "{}", command.name());
        let before = w.state.audit_entries().count();
        let request_id = format!("req_{n}");
        let outcome = w.run(Actor::Admin, audited(&request_id, command)).unwrap();
        assert_eq!(w.state.audit_entries().count(), before + 1, "{action}: one entry");
        let e = last_entry(&w);
        assert_eq!((e.action.as_str(), e.actor_id.as_str(), e.actor_role.as_str()), (action, "admin", "admin"));
        assert_eq!(e.request_id, request_id);
        assert_eq!(e.at, w.now);
        match target {
            Some(t) => assert_eq!(e.target_id, t, "{action}"),
            // What it created: the id in its outcome.
            None => {
                let id = match &outcome {
                    Outcome::User(u) => u.id.to_string(),
                    Outcome::Zone(z) => z.id.to_string(),
                    Outcome::Coupon(c) => c.coupon.id.to_string(),
                    o => panic!("{o:?}"),
                };
                assert_eq!(e.target_id, id, "{action}");
            }
        }
    }
    // Numbered densely, in order; the details say what was done.
    let seqs: Vec<u64> = w.state.audit_entries().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let suspend = w.state.audit_entry(2).unwrap();
    assert_eq!(suspend.details, vec![("reason".to_string(), Detail::Text("docs".into()))]);
    let settings = last_entry(&w);
    assert_eq!(settings.details, vec![("dispatch.offer_ttl_s".to_string(), Detail::Int(15))]);
    // A support user's entries name it and its role.
    let support = w.user(Role::Support, None);
    let t2 = w.trip(rider);
    let cancel = Command::CancelTrip { trip_id: t2, code: crate::trip::CancelReason::Other, reason: String::new() };
    w.run(Actor::User(support), audited("req_s", cancel)).unwrap();
    let e = last_entry(&w);
    assert_eq!((e.actor_id.clone(), e.actor_role.as_str()), (support.to_string(), "support"));
    w.finish();
}

#[test]
fn a_refused_or_replayed_command_writes_no_entry() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(0.5);
    let suspend = || Command::SetDriverSuspended { driver_id: driver, suspended: true, reason: "x".into() };
    // Refused inside: nothing (the harness checks the state is unchanged).
    let unknown = crate::id::UserId::from_raw(999_999).unwrap();
    let bad = Command::SetDriverSuspended { driver_id: unknown, suspended: true, reason: String::new() };
    assert!(w.run(Actor::Admin, audited("r1", bad)).is_err());
    // Not staff, not a staff action, a bad request id, nested: refused.
    assert!(matches!(w.run(Actor::User(rider), audited("r2", suspend())), Err(Error::Forbidden(_))));
    assert!(matches!(w.run(Actor::Admin, audited("r3", Command::Tick)), Err(Error::Invalid(_))));
    assert!(matches!(w.run(Actor::Admin, audited("", suspend())), Err(Error::Invalid(_))));
    assert!(matches!(w.run(Actor::Admin, audited(&"x".repeat(129), suspend())), Err(Error::Invalid(_))));
    assert!(matches!(w.run(Actor::Admin, audited("bad id", suspend())), Err(Error::Invalid(_))));
    assert!(matches!(w.run(Actor::Admin, audited("r4", audited("r5", suspend()))), Err(Error::Invalid(_))));
    assert_eq!(w.state.audit_entries().count(), 0);
    // Under an idempotency key: the replay answers the first outcome and writes nothing.
    let keyed = || Command::Keyed {
        key: IdempotencyKey { principal: Actor::Admin, key: "k1".into(), request_hash: [7; 32] },
        command: Box::new(audited("r6", suspend())),
        archived: None,
    };
    w.run(Actor::Admin, keyed()).unwrap();
    assert!(matches!(w.run(Actor::Admin, keyed()), Ok(Outcome::Replayed(_))));
    assert_eq!(w.state.audit_entries().count(), 1);
    w.finish();
}

#[test]
fn commands_staff_never_send_have_no_action_and_every_staff_one_a_dotted_name() {
    assert_eq!(Command::Tick.audit_action(), None);
    assert_eq!(Command::SubmitApplication.audit_action(), None);
    let t = crate::id::TripId::from_raw(1).unwrap();
    assert_eq!(Command::AcceptTrip { trip_id: t }.audit_action(), None);
    assert_eq!(audited("r", Command::Tick).audit_action(), None);
    let names = [
        Command::UnlockPickupCode { trip_id: t }.audit_action(),
        Command::Refund { id: None, trip_id: t, amount_minor: 1, reason: String::new() }.audit_action(),
        Command::CompleteTrip { trip_id: t, distance_m: None, dropoff: None }.audit_action(),
        Command::DecideApplication { driver_id: crate::id::UserId::from_raw(1).unwrap(), approve: true, reason: None }
            .audit_action(),
        Command::ReviewPayout {
            payout_id: crate::id::PayoutId::from_raw(1).unwrap(),
            approve: false,
            reason: String::new(),
        }
        .audit_action(),
    ];
    assert_eq!(
        names,
        [
            Some("trip.unlock"),
            Some("trip.refund"),
            Some("trip.complete"),
            Some("application.approve"),
            Some("payout.reject")
        ]
    );
}

#[test]
fn settings_change_whole_or_not_at_all_and_their_overrides_are_kept() {
    let mut w = World::new(rules());
    let zone_id = w.zone_id();
    // A bad value is refused naming its key, and nothing changes (the harness checks).
    let bad = settings(RuleOverrides { offers_per_round: Some(0), offer_ttl_s: Some(9), ..Default::default() });
    match w.run(Actor::Admin, bad) {
        Err(Error::InvalidParam { param, .. }) => assert_eq!(param, "dispatch.offers_per_round"),
        other => panic!("{other:?}"),
    }
    let rider = w.rider();
    assert!(matches!(
        w.run(Actor::User(rider), settings(RuleOverrides { offer_ttl_s: Some(9), ..Default::default() })),
        Err(Error::Forbidden(_))
    ));
    let unknown = crate::id::ZoneId::from_raw(77).unwrap();
    let zones = [(unknown, ZoneSettings { bidding: Some(false), surge: None, mode: None })].into_iter().collect();
    let change = SettingsChange { dispatch: RuleOverrides::default(), zones };
    assert!(matches!(
        w.run(Actor::Admin, Command::UpdateSettings(Box::new(change))),
        Err(Error::InvalidParam { param: "zones", .. })
    ));
    // A good one: the rules at once, the keys kept as overrides, the zone changed.
    let surge = SurgeSettings { enabled: true, max_bps: 20_000 };
    let zones =
        [(zone_id, ZoneSettings { bidding: Some(false), surge: Some(surge), mode: None })].into_iter().collect();
    let dispatch = RuleOverrides { offers_per_round: Some(1), offer_ttl_s: Some(9), ..Default::default() };
    w.run(Actor::Admin, Command::UpdateSettings(Box::new(SettingsChange { dispatch, zones }))).unwrap();
    assert_eq!((w.state.rules().offers_per_round, w.state.rules().offer_ttl_s), (1, 9));
    assert_eq!(*w.state.rule_overrides(), dispatch);
    let z = w.state.zone(zone_id).unwrap();
    assert_eq!((z.spec.bidding, z.spec.surge), (false, surge));
    // A later change keeps the earlier keys it does not name.
    w.run(Actor::Admin, settings(RuleOverrides { timeout_s: Some(60), ..Default::default() })).unwrap();
    assert_eq!(
        *w.state.rule_overrides(),
        RuleOverrides { offers_per_round: Some(1), offer_ttl_s: Some(9), timeout_s: Some(60), ..Default::default() }
    );
    // The configuration's rules with the overrides on top (what the writer adopts at open).
    let config = DispatchRules { offers_per_round: 4, offer_ttl_s: 30, search_radius_m: 7_000, ..rules() };
    let adopted = w.state.rule_overrides().apply_to(&config);
    assert_eq!((adopted.offers_per_round, adopted.offer_ttl_s, adopted.timeout_s), (1, 9, 60));
    assert_eq!(adopted.search_radius_m, 7_000);
    // Bidding off: a booking naming its price is refused about `bid`; one at the fare is not.
    let mut bid = w.new_trip();
    bid.bid_minor = Some(5_000);
    assert!(matches!(
        w.run(Actor::User(rider), Command::CreateTrip(bid)),
        Err(Error::InvalidParam { param: "bid", .. })
    ));
    w.trip(rider);
    w.finish();
}

#[test]
fn archived_entries_leave_the_hot_state() {
    let mut w = World::new(rules());
    let driver = w.driver(0.5);
    for n in 0..3 {
        let c = Command::SetDriverSuspended { driver_id: driver, suspended: n % 2 == 0, reason: String::new() };
        w.run(Actor::Admin, audited("r", c)).unwrap();
    }
    let archive = Command::Archive {
        trips: Vec::new(),
        transfer_ids: Vec::new(),
        keys: Vec::new(),
        gateway_events: Vec::new(),
        alerts: Vec::new(),
        audit: vec![1, 2, 99],
    };
    assert!(matches!(w.run(Actor::Admin, archive.clone()), Err(Error::Forbidden(_))));
    w.run(Actor::System, archive).unwrap();
    assert_eq!(w.state.audit_entries().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    // Numbering goes on from the last made, not from what is hot.
    w.run(
        Actor::Admin,
        audited("r", Command::SetDriverSuspended { driver_id: driver, suspended: false, reason: String::new() }),
    )
    .unwrap();
    assert_eq!(last_entry(&w).seq, 4);
    w.finish();
}

#[test]
fn an_entry_stays_small_whatever_the_change() {
    let surge = SurgeSettings { enabled: true, max_bps: 20_000 };
    let zones = (1..=10)
        .map(|n| {
            (
                crate::id::ZoneId::from_raw(n).unwrap(),
                ZoneSettings { bidding: Some(true), surge: Some(surge), mode: None },
            )
        })
        .collect();
    let change = SettingsChange { dispatch: RuleOverrides { timeout_s: Some(60), ..Default::default() }, zones };
    let details = crate::audit::settings_summary(&change);
    assert_eq!(details.len(), crate::audit::MAX_DETAILS);
    assert_eq!(details[0], ("dispatch.timeout_s".to_string(), Detail::Int(60)));
    assert_eq!(details.last().unwrap(), &("more".to_string(), Detail::Int(31 - 15)));
    // A long reason is cut.
    let long = "x".repeat(crate::trip::MAX_REASON_LEN);
    let c = Command::SetDriverSuspended {
        driver_id: crate::id::UserId::from_raw(1).unwrap(),
        suspended: true,
        reason: long,
    };
    let (_, details) = c.audit_target(Actor::Admin, &Outcome::Done);
    assert_eq!(details, vec![("reason".to_string(), Detail::text(&"x".repeat(crate::audit::MAX_DETAIL_CHARS)))]);
    let Detail::Text(t) = &details[0].1 else { panic!() };
    assert_eq!(t.chars().count(), crate::audit::MAX_DETAIL_CHARS);
}
