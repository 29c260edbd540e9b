//! The chat (`state/chat.rs`, rules in `crate::chat`): who may post when, the text rules,
//! the bound, retention, archived trips. Every refusal is checked by the `World` to
//! change nothing.

use super::*;
use crate::chat::{MAX_MESSAGES_PER_TRIP, MAX_TEXT_CHARS, SenderRole};
use crate::trip::CancelReason;

fn post(trip_id: TripId, text: &str) -> Command {
    Command::PostMessage { id: None, trip_id, text: text.into(), rider_connected: None }
}

fn posted(w: &mut World, actor: Actor, trip: TripId, text: &str) -> Result<crate::chat::Message> {
    match w.run(actor, post(trip, text))? {
        Outcome::Message(m) => Ok(*m),
        o => panic!("{o:?}"),
    }
}

/// What a post by each kind of sender gives: `Ok(())`, or the error's code.
fn outcome(w: &mut World, actor: Actor, trip: TripId) -> std::result::Result<(), &'static str> {
    posted(w, actor, trip, "hello").map(|_| ()).map_err(|e| e.code())
}

#[test]
fn who_may_post_before_accept_during_the_ride_and_around_the_end_of_the_window() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let other_rider = w.rider();
    let driver = w.driver(0.5);
    let other_driver = w.driver(40.0); // too far to be offered anything
    let support = w.user(Role::Support, None);
    let admin = w.user(Role::Admin, None);
    let trip = w.trip(rider);

    // Before accept: the parties may not post yet (409), staff may, strangers get 404.
    let table_before: [(Actor, std::result::Result<(), &str>); 7] = [
        (Actor::User(rider), Err("invalid_transition")),
        (Actor::User(driver), Err("not_found")), // offered, not assigned: not a party
        (Actor::User(other_rider), Err("not_found")),
        (Actor::User(other_driver), Err("not_found")),
        (Actor::User(support), Ok(())),
        (Actor::User(admin), Ok(())),
        (Actor::Admin, Ok(())),
    ];
    for (actor, want) in table_before {
        assert_eq!(outcome(&mut w, actor, trip), want, "before accept, {actor:?}");
    }
    assert_eq!(outcome(&mut w, Actor::System, trip), Err("forbidden"));

    // From accept to the end, and 29 minutes after it: rider and driver post.
    w.accept(driver, trip).unwrap();
    for stage in 0..3 {
        assert_eq!(outcome(&mut w, Actor::User(rider), trip), Ok(()), "stage {stage}");
        assert_eq!(outcome(&mut w, Actor::User(driver), trip), Ok(()), "stage {stage}");
        assert_eq!(outcome(&mut w, Actor::User(other_rider), trip), Err("not_found"));
        match stage {
            0 => drop(w.run(Actor::User(driver), Command::DriverArrived { trip_id: trip }).unwrap()),
            1 => {
                let code = w.get(trip).pickup_code.to_string();
                w.run(Actor::User(driver), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
            }
            _ => {
                w.run(Actor::User(driver), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None })
                    .unwrap();
            }
        }
    }
    w.now = w.now.plus_millis(29 * 60 * 1000);
    assert_eq!(outcome(&mut w, Actor::User(rider), trip), Ok(()), "29 min after the end");
    assert_eq!(outcome(&mut w, Actor::User(driver), trip), Ok(()), "29 min after the end");
    // 31 minutes after: the window is shut for the parties, not for staff.
    w.now = w.now.plus_millis(2 * 60 * 1000);
    assert_eq!(outcome(&mut w, Actor::User(rider), trip), Err("invalid_transition"), "31 min after");
    assert_eq!(outcome(&mut w, Actor::User(driver), trip), Err("invalid_transition"), "31 min after");
    assert_eq!(outcome(&mut w, Actor::User(other_driver), trip), Err("not_found"));
    assert_eq!(outcome(&mut w, Actor::User(support), trip), Ok(()));

    // Everything posted is on the trip, in order, with its sender.
    let t = w.get(trip);
    let roles: Vec<SenderRole> = t.messages.iter().map(|m| m.from_role).collect();
    assert_eq!(roles.len(), 3 + 6 + 2 + 1);
    assert_eq!(&roles[..3], &[SenderRole::Support, SenderRole::Admin, SenderRole::Admin]);
    assert_eq!(t.messages[2].from_user_id, None, "the bootstrap admin has no user id");
    assert_eq!(t.messages[3].from_user_id, Some(rider));
    assert_eq!(t.messages.last().map(|m| m.from_role), Some(SenderRole::Support));
    w.finish();
}

#[test]
fn exactly_thirty_minutes_after_the_end_the_window_is_shut() {
    let mut w = World::new(rules());
    let (rider, _, trip) = complete_a_trip(&mut w);
    w.now = w.now.plus_millis(30 * 60 * 1000 - 1);
    assert_eq!(outcome(&mut w, Actor::User(rider), trip), Ok(()));
    w.now = w.now.plus_millis(1);
    assert_eq!(outcome(&mut w, Actor::User(rider), trip), Err("invalid_transition"));
    w.finish();
}

#[test]
fn a_driver_who_gave_the_trip_back_loses_the_chat_and_the_next_one_gets_it_whole() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let first = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(first, trip).unwrap();
    posted(&mut w, Actor::User(first), trip, "on my way").unwrap();
    let cancel = Command::CancelTrip { trip_id: trip, code: CancelReason::Other, reason: "flat tyre".into() };
    w.run(Actor::User(first), cancel).unwrap();
    // Searching again, without a driver: the rider waits (409), the first driver is out (404).
    assert_eq!(outcome(&mut w, Actor::User(rider), trip), Err("invalid_transition"));
    assert_eq!(outcome(&mut w, Actor::User(first), trip), Err("not_found"));

    let second = w.driver(0.6);
    w.advance(3); // the next round offers the trip to the new driver
    assert!(w.offered(trip).contains(&second), "{:?}", w.offered(trip));
    w.accept(second, trip).unwrap();
    assert_eq!(outcome(&mut w, Actor::User(second), trip), Ok(()));
    assert_eq!(outcome(&mut w, Actor::User(first), trip), Err("not_found"));
    assert!(!w.get(trip).visible_to(Some(first), false), "reading follows the same rule");
    assert!(w.get(trip).visible_to(Some(second), false));
    assert_eq!(w.get(trip).messages.len(), 2, "the earlier message stays on the trip");
    w.finish();
}

#[test]
fn text_is_trimmed_bounded_in_characters_and_without_control_characters() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(driver, trip).unwrap();
    let me = Actor::User(rider);
    let long = "ب".repeat(MAX_TEXT_CHARS);
    for bad in ["", "   ", "\n\t", &format!("{long}x"), "two\nlines", "bell\u{7}", "esc\u{1b}[2J"] {
        assert!(matches!(posted(&mut w, me, trip, bad), Err(Error::Invalid(_))), "{bad:?}");
    }
    // A stranger's bad text is still a 404: who comes first.
    let stranger = w.rider();
    assert!(matches!(posted(&mut w, Actor::User(stranger), trip, ""), Err(Error::NotFound { .. })));
    let m = posted(&mut w, me, trip, &format!("  {long}  ")).unwrap();
    assert_eq!(m.text, long, "trimmed, 1,000 characters (2,000 bytes) accepted");
    assert_eq!(posted(&mut w, me, trip, "  hi\u{a0}").unwrap().text, "hi");
    w.finish();
}

#[test]
fn a_trip_keeps_at_most_500_messages_and_retention_drops_the_old_ones() {
    let rules = DispatchRules { chat_retention_s: 86_400, ..rules() };
    let mut w = World::new(rules);
    let rider = w.rider();
    let driver = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(driver, trip).unwrap();
    let first = posted(&mut w, Actor::User(rider), trip, "first").unwrap();
    for i in 1..MAX_MESSAGES_PER_TRIP {
        posted(&mut w, Actor::User(if i % 2 == 0 { rider } else { driver }), trip, &format!("m{i}")).unwrap();
    }
    let err = posted(&mut w, Actor::User(rider), trip, "one too many").unwrap_err();
    assert_eq!(err.code(), "invalid_transition", "{err}");
    assert_eq!(outcome(&mut w, Actor::Admin, trip), Err("invalid_transition"), "staff too");

    // Newest first, by time then id.
    let t = w.get(trip);
    let listed = t.chat_kept(w.now, 86_400);
    assert_eq!(listed.len(), MAX_MESSAGES_PER_TRIP);
    assert!(listed.windows(2).all(|p| (p[0].at, p[0].id) > (p[1].at, p[1].id)));

    // A day later the messages are no longer served, and the next post drops them.
    w.now = w.now.plus_millis(86_400 * 1000);
    assert!(w.get(trip).chat_kept(w.now, 86_400).is_empty());
    let kept = posted(&mut w, Actor::User(rider), trip, "still there?").unwrap();
    let t = w.get(trip);
    assert_eq!(t.messages.len(), 1);
    assert_eq!(t.messages[0].id, kept.id);
    assert!(t.messages.iter().all(|m| m.id != first.id));
    w.finish();
}

#[test]
fn a_post_emits_the_message_with_its_trip_and_an_archived_trip_comes_back_for_it() {
    let mut w = World::new(rules());
    let (rider, driver, trip) = complete_a_trip(&mut w);
    w.events();
    let m = posted(&mut w, Actor::User(driver), trip, "thanks!").unwrap();
    let events = w.events();
    assert!(
        matches!(&events[..], [Event::ChatMessage { trip: t, message }] if t.id == trip && *message == m),
        "{events:?}"
    );
    assert_eq!((m.trip_id, m.from_user_id, m.from_role, m.at), (trip, Some(driver), SenderRole::Driver, w.now));

    // Archived at its revision, then brought back for a message within the window.
    let copy = w.get(trip);
    let archive = Command::Archive {
        trips: vec![(trip, copy.revision)],
        transfer_ids: vec![],
        keys: vec![],
        gateway_events: vec![],
        alerts: vec![],
        audit: Vec::new(),
    };
    w.run(Actor::System, archive).unwrap();
    assert!(w.state.trip(trip).is_none());
    let restored = |command| Command::Restored { trip: Arc::clone(&copy), command: Box::new(command) };
    // A refused message leaves it in the history.
    assert!(w.run(Actor::User(rider), restored(post(trip, " "))).is_err());
    assert!(w.state.trip(trip).is_none());
    w.run(Actor::User(rider), restored(post(trip, "left my umbrella"))).unwrap();
    let t = w.get(trip);
    assert_eq!(t.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["thanks!", "left my umbrella"]);
    assert!(t.revision > copy.revision, "archived again at its new revision");
    w.finish();
}

#[test]
fn retention_below_a_day_is_refused() {
    let rules = DispatchRules { chat_retention_s: 3_600, ..DispatchRules::default() };
    assert!(rules.validate().is_err());
    assert!(DispatchRules::default().validate().is_ok());
    assert_eq!(DispatchRules::default().chat_retention_s, 30 * 86_400);
}

#[test]
fn a_trip_cancelled_after_accept_keeps_its_window_one_cancelled_while_searching_has_none() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let driver = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(driver, trip).unwrap();
    let cancel = |trip_id| Command::CancelTrip { trip_id, code: CancelReason::ChangedMind, reason: String::new() };
    w.run(Actor::User(rider), cancel(trip)).unwrap();
    w.now = w.now.plus_millis(10 * 60 * 1000);
    assert_eq!(outcome(&mut w, Actor::User(driver), trip), Ok(()), "the driver may still say goodbye");
    assert_eq!(outcome(&mut w, Actor::User(rider), trip), Ok(()));

    let searching = w.trip(rider);
    w.run(Actor::User(rider), cancel(searching)).unwrap();
    assert_eq!(outcome(&mut w, Actor::User(rider), searching), Err("invalid_transition"));
    assert_eq!(outcome(&mut w, Actor::User(driver), searching), Err("not_found"));
    w.finish();
}
