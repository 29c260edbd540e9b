//! Push devices and the notification outbox (`notify.rs`): registration, which commands
//! make which items, the worker's reports, windows and pruning; and a proptest of the
//! outbox's promise over random interleavings with restarts.

use proptest::prelude::*;

use super::*;
use crate::command::ProfileChange;
use crate::id::{DeviceId, NotificationId};
use crate::outbox::{AttemptOutcome, Channel, GIVE_UP_S, KEPT_S, Kind, Notification, Platform, Status, Target};
use crate::record::Record;
use crate::schedule::Schedule;

fn register(w: &mut World, user: UserId, token: &str) -> Result<(DeviceId, bool)> {
    let cmd = Command::RegisterDevice { id: None, platform: Platform::Fcm, token: token.into() };
    match w.run(Actor::User(user), cmd)? {
        Outcome::Device { device, created } => Ok((device.id, created)),
        o => panic!("{o:?}"),
    }
}

fn items(w: &World) -> Vec<Arc<Notification>> {
    w.state.outbox().newest_first(None, |_| true, usize::MAX)
}

fn of_kind(w: &World, kind: Kind) -> Vec<Arc<Notification>> {
    items(w).into_iter().filter(|n| n.kind == kind).collect()
}

fn report(w: &mut World, id: NotificationId, attempt: u32, outcome: AttemptOutcome) -> Result<Outcome> {
    w.run(Actor::System, Command::NotificationAttempted { id, attempt, outcome })
}

#[test]
fn devices_register_once_per_token_keep_five_and_are_removed_by_their_owner_only() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let other = w.rider();
    let (first, created) = register(&mut w, rider, "tok-1").unwrap();
    assert!(created);
    assert_eq!(register(&mut w, rider, "tok-1").unwrap(), (first, false), "the same token: the same device");
    for i in 2..=5 {
        register(&mut w, rider, &format!("tok-{i}")).unwrap();
    }
    assert_eq!(w.state.outbox().devices_of(rider).len(), 5);
    let (sixth, _) = register(&mut w, rider, "tok-6").unwrap();
    let list = w.state.outbox().devices_of(rider);
    assert_eq!(list.len(), 5);
    assert!(list.iter().all(|d| d.id != first), "the oldest was dropped");
    assert_eq!(list.last().map(|d| d.id), Some(sixth));

    // Bad tokens are refused (and change nothing: the harness checks).
    assert!(register(&mut w, rider, "").is_err());
    assert!(register(&mut w, rider, "has space").is_err());
    assert!(register(&mut w, rider, &"x".repeat(4097)).is_err());
    assert!(
        w.run(Actor::System, Command::RegisterDevice { id: None, platform: Platform::Apns, token: "t".into() })
            .is_err()
    );

    // Another user's device is not found; the owner removes it.
    let gone = Command::RemoveDevice { device_id: sixth };
    assert!(matches!(w.run(Actor::User(other), gone.clone()), Err(Error::NotFound { .. })));
    w.run(Actor::User(rider), gone.clone()).unwrap();
    assert!(matches!(w.run(Actor::User(rider), gone), Err(Error::NotFound { .. })));
    assert_eq!(w.state.outbox().devices_of(rider).len(), 4);

    // A token registered by another user moves to them.
    let (moved, created) = register(&mut w, other, "tok-2").unwrap();
    assert!(created);
    assert!(w.state.outbox().devices_of(rider).iter().all(|d| d.token != "tok-2"));
    assert_eq!(w.state.outbox().devices_of(other)[0].id, moved);
    // The token dropped with the oldest device is nobody's any more: another user takes it
    // and the first user's list does not change; a token taken back moves back.
    let before = w.state.outbox().devices_of(rider).to_vec();
    register(&mut w, other, "tok-1").unwrap();
    assert_eq!(w.state.outbox().devices_of(rider), &before[..]);
    register(&mut w, rider, "tok-2").unwrap();
    assert!(w.state.outbox().devices_of(other).iter().all(|d| d.token != "tok-2"));
    assert_eq!(w.state.outbox().devices_of(other).len(), 1);
    w.finish();
}

#[test]
fn a_trip_notifies_its_rider_at_each_step_per_device_and_a_rider_without_device_gets_none() {
    let mut w = World::new(rules());
    let rider = w.rider();
    register(&mut w, rider, "phone").unwrap();
    register(&mut w, rider, "tablet").unwrap();
    w.run(
        Actor::User(rider),
        Command::UpdateProfile(ProfileChange {
            email: Some(Some("r@example.com".into())),
            language: Some("ar-EG".into()),
            ..ProfileChange::default()
        }),
    )
    .unwrap();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    // The driver never opened a socket: the offer goes by push — but has no device.
    assert!(of_kind(&w, Kind::TripOffer).is_empty(), "a driver without a device gets no push");
    w.accept(d, trip).unwrap();
    let accepted = of_kind(&w, Kind::TripAccepted);
    assert_eq!(accepted.len(), 2, "one per device");
    assert!(accepted.iter().all(|n| n.user_id == Some(rider) && n.channel == Channel::Push));
    assert_eq!(accepted[0].params.language, "ar-EG");
    assert_eq!(accepted[0].params.name.as_deref(), w.state.user(d).map(|u| u.name.as_str()));
    assert!(accepted[0].params.plate.is_some());
    assert!(accepted.iter().all(|n| n.status == Status::Pending && n.next_attempt_at == w.now));
    assert_eq!(accepted[0].give_up_at, w.now.plus_secs(GIVE_UP_S));

    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    assert_eq!(of_kind(&w, Kind::DriverArrived).len(), 2);
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    let receipts = of_kind(&w, Kind::Receipt);
    assert_eq!(receipts.iter().filter(|n| n.channel == Channel::Push).count(), 2);
    let email: Vec<_> = receipts.iter().filter(|n| n.channel == Channel::Email).collect();
    assert_eq!(email.len(), 1);
    assert_eq!(email[0].target, Target::Email("r@example.com".into()));
    assert_eq!(email[0].params.amount_minor, w.get(trip).fare.final_minor);

    // A rider with no device and no email: nothing for them.
    let quiet = w.rider();
    let before = items(&w).len();
    let d2 = w.driver(0.6);
    let t2 = w.trip(quiet);
    w.accept(d2, t2).unwrap();
    assert_eq!(items(&w).len(), before);
    w.finish();
}

#[test]
fn a_notice_is_made_once_per_trip_and_kind_however_often_a_command_updates_the_trip() {
    // A command may announce one trip twice (an expiry that also voids the card's hold);
    // its rider hears once. Driven directly: no command of this world's rules does it.
    let mut w = World::new(rules());
    let rider = w.rider();
    register(&mut w, rider, "phone").unwrap();
    register(&mut w, rider, "tablet").unwrap();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    let before = items(&w).len();
    let updated = Event::TripUpdated { trip: w.get(trip) };
    let accept = Command::AcceptTrip { trip_id: trip };
    let mut fx = Effects::default();
    // Items already in the effects, made by an earlier command of the batch, do not count.
    fx.notifications.extend(of_kind(&w, Kind::TripAccepted).into_iter().map(|n| (n.id, Some(n))));
    let earlier = fx.notifications.len();
    w.state.notify_effects(Actor::User(d), &accept, &[updated.clone(), updated], w.now, &mut fx);
    assert_eq!(fx.notifications.len() - earlier, 2, "one per device, not one per event: {:?}", fx.notifications);
    assert_eq!(items(&w).len(), before + 2);
}

#[test]
fn offers_go_by_push_only_to_drivers_without_a_socket() {
    let mut w = World::new(DispatchRules { offers_per_round: 2, ..rules() });
    let near = w.driver(0.3);
    let far = w.driver(0.6);
    register(&mut w, near, "near-phone").unwrap();
    register(&mut w, far, "far-phone").unwrap();
    w.run(Actor::User(near), Command::SetPresence { connected: true }).unwrap();
    let rider = w.rider();
    w.trip(rider);
    let offers = of_kind(&w, Kind::TripOffer);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].user_id, Some(far));
    assert!(offers[0].params.distance_m.is_some() && offers[0].params.currency.is_some());
    w.finish();
}

#[test]
fn staff_and_driver_cancels_no_drivers_expiry_sos_and_chat_are_notified() {
    let mut w = World::new(rules());
    let mut r = w.state.rules().clone();
    r.sos_phones = vec!["+201000000001".into(), "+201000000002".into()];
    w.run(Actor::System, Command::SetRules(r)).unwrap();
    let rider = w.rider();
    register(&mut w, rider, "phone").unwrap();

    // Nobody nearby, then the search times out.
    let lonely = w.trip(rider);
    assert_eq!(of_kind(&w, Kind::NoDriversNearby).len(), 1);
    w.advance(i64::from(w.state.rules().timeout_s) + 1);
    assert_eq!(w.get(lonely).status, crate::trip::TripStatus::Expired);
    assert_eq!(of_kind(&w, Kind::TripExpired).len(), 1);

    // Staff cancel; a rider's own cancel tells nobody.
    let d = w.driver(0.5);
    let t = w.trip(rider);
    w.accept(d, t).unwrap();
    let cancel = |code| Command::CancelTrip { trip_id: t, code, reason: String::new() };
    w.run(Actor::User(d), cancel(crate::trip::CancelReason::Other)).unwrap();
    assert_eq!(of_kind(&w, Kind::TripCancelled).len(), 1, "the driver gave it back");
    w.run(Actor::Admin, cancel(crate::trip::CancelReason::Other)).unwrap();
    assert_eq!(of_kind(&w, Kind::TripCancelled).len(), 2, "staff cancelled");
    let t3 = w.trip(rider);
    w.run(
        Actor::User(rider),
        Command::CancelTrip { trip_id: t3, code: crate::trip::CancelReason::Other, reason: String::new() },
    )
    .unwrap();
    assert_eq!(of_kind(&w, Kind::TripCancelled).len(), 2);

    // SOS: one SMS per on-call phone.
    let d2 = w.driver(0.4);
    register(&mut w, d2, "driver-phone").unwrap();
    let t4 = w.trip(rider);
    let t4_offers = of_kind(&w, Kind::TripOffer).len();
    assert!(t4_offers >= 1);
    w.accept(d2, t4).unwrap();
    w.run(Actor::User(rider), Command::RaiseSos { id: None, trip_id: t4, location: None, note: Some("help".into()) })
        .unwrap();
    let sos = of_kind(&w, Kind::Sos);
    assert_eq!(sos.len(), 2);
    assert!(sos.iter().all(|n| n.channel == Channel::Sms && n.user_id.is_none()));

    // Chat: the rider writes, the driver (no socket) gets a push, the rider nothing.
    let chat = |text: &str, rider_connected| Command::PostMessage {
        id: None,
        trip_id: t4,
        text: text.into(),
        rider_connected,
    };
    w.run(Actor::User(rider), chat("I am at the gate", Some(false))).unwrap();
    let pushed = of_kind(&w, Kind::ChatMessage);
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].user_id, Some(d2));
    assert_eq!(pushed[0].params.text.as_deref(), Some("I am at the gate"));
    // The driver writes to a rider with an open socket: nothing; to a rider without one,
    // or not known to have one: a push each, from the driver.
    w.run(Actor::User(d2), chat("coming", Some(true))).unwrap();
    assert_eq!(of_kind(&w, Kind::ChatMessage).len(), 1);
    w.run(Actor::User(d2), chat("two minutes", Some(false))).unwrap();
    w.run(Actor::User(d2), chat("at the gate", None)).unwrap();
    let to_rider: Vec<_> = of_kind(&w, Kind::ChatMessage).into_iter().filter(|n| n.user_id == Some(rider)).collect();
    let texts: Vec<_> = to_rider.iter().map(|n| n.params.text.as_deref()).collect();
    assert_eq!(texts, [Some("at the gate"), Some("two minutes")], "newest first");
    assert!(
        to_rider
            .iter()
            .all(|n| n.channel == Channel::Push && n.params.name == w.state.user(d2).map(|u| u.name.clone()))
    );
    // Staff write: both parties without a socket hear it (the driver's presence from the state).
    let before = of_kind(&w, Kind::ChatMessage).len();
    w.run(Actor::Admin, chat("support here", Some(false))).unwrap();
    let staff: Vec<_> =
        of_kind(&w, Kind::ChatMessage).into_iter().take(of_kind(&w, Kind::ChatMessage).len() - before).collect();
    let mut whom: Vec<_> = staff.iter().map(|n| n.user_id).collect();
    whom.sort();
    let mut both = vec![Some(rider), Some(d2)];
    both.sort();
    assert_eq!(whom, both);
    w.finish();
}

#[test]
fn reports_move_an_item_once_and_refuse_duplicates_and_stale_attempts() {
    let mut w = World::new(rules());
    let (rider, d) = (w.rider(), w.driver(0.5));
    let (device, _) = register(&mut w, rider, "phone").unwrap();
    let t = w.trip(rider);
    w.accept(d, t).unwrap();
    let id = of_kind(&w, Kind::TripAccepted)[0].id;

    let delivered = AttemptOutcome::Delivered { provider_id: Some("projects/x/messages/1".into()) };
    report(&mut w, id, 1, delivered.clone()).unwrap();
    let item = w.state.outbox().item(id).unwrap().clone();
    assert_eq!(item.status, Status::Sent);
    assert_eq!(item.attempts, 1);
    assert!(matches!(report(&mut w, id, 1, delivered.clone()), Err(Error::InvalidTransition { .. })), "a duplicate");
    assert!(matches!(report(&mut w, id, 2, delivered.clone()), Err(Error::InvalidTransition { .. })));

    w.run(Actor::User(d), Command::DriverArrived { trip_id: t }).unwrap();
    let arrived = of_kind(&w, Kind::DriverArrived)[0].id;
    // Only the system reports.
    assert!(matches!(
        w.run(
            Actor::User(rider),
            Command::NotificationAttempted { id: arrived, attempt: 1, outcome: delivered.clone() }
        ),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(report(&mut w, arrived, 2, delivered.clone()), Err(Error::Invalid(_))), "not the next attempt");
    let later = w.now.plus_secs(5);
    report(&mut w, arrived, 1, AttemptOutcome::Retry { error: "503".into(), next_attempt_at: later }).unwrap();
    let item = w.state.outbox().item(arrived).unwrap().clone();
    assert_eq!((item.status, item.attempts, item.next_attempt_at), (Status::Pending, 1, later));
    assert_eq!(item.last_error.as_deref(), Some("503"));
    // The worker's order, taken now and at the next try.
    let mut schedule = Schedule::of(w.state.outbox());
    assert!(
        schedule.take_due(w.state.outbox(), w.now, 10).iter().all(|n| n.id != arrived),
        "not due before its next try"
    );
    assert!(schedule.take_due(w.state.outbox(), later, 10).iter().any(|n| n.id == arrived));
    assert!(matches!(report(&mut w, arrived, 1, delivered.clone()), Err(Error::Invalid(_))), "stale");

    // An invalid token fails the item and removes the device.
    report(&mut w, arrived, 2, AttemptOutcome::InvalidToken { error: "UNREGISTERED".into() }).unwrap();
    assert_eq!(w.state.outbox().item(arrived).unwrap().status, Status::Failed);
    assert!(w.state.outbox().device(rider, device).is_none());
    w.finish();
}

#[test]
fn items_fail_when_their_window_ends_and_finished_items_leave_after_seven_days() {
    let mut w = World::new(rules());
    let (rider, d) = (w.rider(), w.driver(0.5));
    register(&mut w, rider, "phone").unwrap();
    let t = w.trip(rider);
    w.accept(d, t).unwrap();
    let id = of_kind(&w, Kind::TripAccepted)[0].id;
    assert_eq!(w.state.outbox().pending(), 1);
    assert_eq!(w.state.next_deadline().map(|t| t <= w.now.plus_secs(GIVE_UP_S)), Some(true));
    w.advance(i64::from(GIVE_UP_S) - 1);
    assert_eq!(w.state.outbox().item(id).unwrap().status, Status::Pending);
    w.advance(1);
    let item = w.state.outbox().item(id).unwrap().clone();
    assert_eq!(item.status, Status::Failed);
    assert!(item.last_error.is_some());
    assert_eq!(w.state.outbox().pending(), 0);
    assert!(matches!(
        report(&mut w, id, 1, AttemptOutcome::Delivered { provider_id: None }),
        Err(Error::InvalidTransition { .. })
    ));
    w.advance(i64::from(KEPT_S) - 1);
    assert!(w.state.outbox().item(id).is_some());
    w.advance(1);
    assert!(w.state.outbox().item(id).is_none(), "pruned");
    w.finish();
}

/// Pending items fail in the order their windows end, not the order they were made: after
/// the clock steps back, an item made later has the earlier window and fails first, and
/// the one before it fails at its own window, neither early nor late. (Failing them in the
/// order they were made would save the writer the order of windows, an insert per item
/// made, but the first pending item found by a walk when it finishes can be a day of
/// finished items behind: BENCHMARKS.md "The notification outbox", round four.)
#[test]
fn items_fail_in_the_order_their_windows_end_even_after_the_clock_steps_back() {
    let mut w = World::new(rules());
    let (rider, d) = (w.rider(), w.driver(0.5));
    register(&mut w, rider, "phone").unwrap();
    let t = w.trip(rider);
    w.accept(d, t).unwrap();
    let accepted = of_kind(&w, Kind::TripAccepted)[0].id;
    w.now = w.now.plus_millis(-3_600_000);
    w.run(Actor::User(d), Command::DriverArrived { trip_id: t }).unwrap();
    let arrived = of_kind(&w, Kind::DriverArrived)[0].id;
    let item = |w: &World, id| w.state.outbox().item(id).unwrap().clone();
    assert_eq!(item(&w, arrived).give_up_at, item(&w, accepted).give_up_at.plus_millis(-3_600_000));
    w.advance(i64::from(GIVE_UP_S));
    assert_eq!((item(&w, arrived).status, item(&w, arrived).finished_at), (Status::Failed, Some(w.now)));
    assert_eq!(item(&w, accepted).status, Status::Pending, "failed before its window ended");
    w.advance(3_599);
    assert_eq!(item(&w, accepted).status, Status::Pending, "failed before its window ended");
    w.advance(1);
    assert_eq!((item(&w, accepted).status, item(&w, accepted).finished_at), (Status::Failed, Some(w.now)));
    assert_eq!(w.state.outbox().pending(), 0);
    w.finish();
}

#[derive(Debug, Clone)]
enum Op {
    /// A rider (of three, each with a device) books; a driver near accepts.
    Ride(u8),
    /// Report on the `i`-th item (mod the count), for its next attempt plus `skew` (0: right).
    Report { i: usize, skew: i8, answer: u8 },
    /// Send the last report again (a duplicate).
    Duplicate,
    /// Time passes.
    Wait(u32),
    /// A restart: the state is read back from its checkpoint encoding.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..3).prop_map(Op::Ride),
        6 => (any::<usize>(), prop_oneof![3 => Just(0i8), 1 => -1i8..=1], 0u8..10).prop_map(|(i, skew, answer)| Op::Report { i, skew, answer }),
        1 => Just(Op::Duplicate),
        2 => prop_oneof![Just(1u32), Just(60), Just(3_600), Just(GIVE_UP_S / 2)].prop_map(Op::Wait),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For any interleaving of outbox-making commands, reports (delivered, retry, invalid
    /// token, rejected; duplicates and stale attempts), time and restarts: every item ends
    /// sent or failed, none is delivered twice in the log's view, and an item fails only
    /// on a permanent answer or after its window.
    #[test]
    fn every_item_ends_sent_or_failed_and_none_is_delivered_twice(ops in prop::collection::vec(op(), 1..40)) {
        let mut w = World::new(rules());
        let riders: Vec<UserId> = (0..3).map(|_| w.rider()).collect();
        for (i, r) in riders.iter().enumerate() {
            register(&mut w, *r, &format!("rider-{i}")).unwrap();
        }
        let mut last: Option<Command> = None;
        let mut drivers = 0.3;
        // The readers' copy, following the state entry by entry as the view does, and the
        // delivery worker's order following it as the worker follows the view's, told of
        // each try it "made".
        let mut readers = w.state.outbox().for_readers();
        let (mut items_synced, mut devices_synced) = (w.fx.notifications.len(), w.fx.devices.len());
        let mut schedule = Schedule::of(&readers);
        for op in ops {
            readers.sync_from(w.state.outbox(), &w.fx.notifications[items_synced..], &w.fx.devices[devices_synced..]);
            (items_synced, devices_synced) = (w.fx.notifications.len(), w.fx.devices.len());
            prop_assert_eq!(&readers, &w.state.outbox().for_readers(), "the readers' copy drifted");
            readers.check().map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                (readers.pending(), readers.oldest_pending()),
                (w.state.outbox().pending(), w.state.outbox().oldest_pending())
            );
            schedule.follow(&readers);
            schedule.check(&readers, |_| false).map_err(TestCaseError::fail)?;
            // What it would take now is exactly what is due now.
            let mut taken: Vec<NotificationId> = schedule.clone().take_due(&readers, w.now, usize::MAX).iter().map(|n| n.id).collect();
            let mut due: Vec<NotificationId> = w.state.outbox().pending_items().filter(|n| n.next_attempt_at <= w.now).map(|n| n.id).collect();
            taken.sort_unstable();
            due.sort_unstable();
            prop_assert_eq!(taken, due, "the worker's order takes what is due");
            match op {
                Op::Ride(r) => {
                    drivers += 0.01;
                    let d = w.driver(drivers);
                    let new = w.new_trip();
                    if let Ok(Outcome::Trip(t)) = w.run(Actor::User(riders[usize::from(r)]), Command::CreateTrip(new)) {
                        let _ = w.accept(d, t.id);
                        // Staff cancel it (one more notice), so the rider may book again.
                        let cancel = Command::CancelTrip { trip_id: t.id, code: crate::trip::CancelReason::Other, reason: String::new() };
                        let _ = w.run(Actor::Admin, cancel);
                    }
                }
                Op::Report { i, skew, answer } => {
                    let all = items(&w);
                    if all.is_empty() { continue; }
                    let n = &all[i % all.len()];
                    let attempt = (i64::from(n.attempts) + 1 + i64::from(skew)).max(0) as u32;
                    let outcome = match answer {
                        0..=3 => AttemptOutcome::Delivered { provider_id: Some(format!("p{i}")) },
                        4..=7 => AttemptOutcome::Retry { error: "503".into(), next_attempt_at: w.now.plus_secs(1 + u32::from(answer)) },
                        8 => AttemptOutcome::InvalidToken { error: "UNREGISTERED".into() },
                        _ => AttemptOutcome::Rejected { error: "400".into() },
                    };
                    let cmd = Command::NotificationAttempted { id: n.id, attempt, outcome };
                    if w.run(Actor::System, cmd.clone()).is_ok() {
                        // The worker puts back what it tried, at the try it chose.
                        let next = w.state.outbox().item(n.id).map_or(w.now, |n| n.next_attempt_at);
                        schedule.put(n.id, next);
                    }
                    last = Some(cmd);
                }
                Op::Duplicate => {
                    if let Some(cmd) = last.clone() {
                        prop_assert!(w.run(Actor::System, cmd).is_err(), "a duplicate report was applied");
                    }
                }
                Op::Wait(s) => w.advance(i64::from(s)),
                Op::Restart => {
                    let back: State = postcard::from_bytes(&postcard::to_allocvec(&w.state).unwrap()).unwrap();
                    prop_assert_eq!(&back, &w.state);
                    w.state = back;
                }
            }
        }
        // Past every window: nothing is pending any more.
        w.advance(i64::from(GIVE_UP_S));
        let all = items(&w);
        prop_assert_eq!(w.state.outbox().pending(), 0);
        for n in &all {
            prop_assert!(matches!(n.status, Status::Sent | Status::Failed));
            let reports: Vec<&Record> = w.log.iter().filter(|r| matches!(&r.command, Command::NotificationAttempted { id, .. } if *id == n.id)).collect();
            let delivered = reports.iter().filter(|r| matches!(&r.command, Command::NotificationAttempted { outcome: AttemptOutcome::Delivered { .. }, .. })).count();
            prop_assert!(delivered <= 1, "{} delivered {delivered} times", n.id);
            prop_assert_eq!(n.status == Status::Sent, delivered == 1);
            prop_assert_eq!(reports.len() as u32, n.attempts, "every applied report counted once");
            if n.status == Status::Failed {
                let permanent = reports.last().is_some_and(|r| matches!(&r.command, Command::NotificationAttempted { outcome: AttemptOutcome::InvalidToken { .. } | AttemptOutcome::Rejected { .. }, .. }));
                let finished = n.finished_at.unwrap();
                prop_assert!(permanent || finished >= n.give_up_at, "{} failed at {finished:?} before {:?}", n.id, n.give_up_at);
            }
        }
        w.finish();
    }
}
