//! Batched matching and the ranking that learns (`batch.rs`, `dispatch.rs`, issue 22): the
//! window holds new trips back until it closes, assigns them together at least total
//! pickup cost, never a driver twice, hands the rest to greedy rounds; a trip cancelled
//! while it waits leaves; with learning on, a driver who declines is ranked behind.

use super::*;
use crate::matching::MAX_BATCH_TRIPS;
use crate::rules::{LearningWeights, MatchingMode};
use crate::testkit::{CAIRO, cash_ride};
use crate::trip::{CancelReason, TripStatus};

/// The weights the ranking's tests reason with (the arithmetic in their comments); the
/// tuned pair is the simulator's choice and may move.
const WEIGHTS: LearningWeights = LearningWeights { acceptance_pct: 100, idle_pct: 50 };

fn batched() -> DispatchRules {
    DispatchRules { matching: MatchingMode::Batched, batch_window_ms: 2_000, ..rules() }
}

/// `rider` books a ride whose pickup is `km_north` of the city's centre.
fn trip_at(w: &mut World, rider: UserId, km_north: f64) -> TripId {
    let from = LatLng::new(CAIRO.0 + km_north / 111.195, CAIRO.1).unwrap();
    let new = cash_ride(from, LatLng::new(30.06, 31.25).unwrap());
    match w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap() {
        Outcome::Trip(t) => t.id,
        o => panic!("{o:?}"),
    }
}

#[test]
fn the_window_holds_trips_back_then_assigns_them_at_least_total_cost() {
    let mut w = World::new(batched());
    // Trip a at 0, trip b 1 km north; d1 between them (0.6 from a, 0.4 from b), d2 0.7 km
    // south of a. Nearest-first in booking order gives a→d1, b→d2 (0.6 + 1.7 km); the
    // window's optimum is a→d2, b→d1 (0.7 + 0.4 km).
    let d1 = w.driver(0.6);
    let d2 = w.driver(-0.7);
    let (r1, r2) = (w.rider(), w.rider());
    let a = trip_at(&mut w, r1, 0.0);
    w.advance(1);
    let b = trip_at(&mut w, r2, 1.0);
    assert!(w.offered(a).is_empty() && w.offered(b).is_empty(), "nothing is offered while the window is open");
    assert_eq!(w.state.batch_waiting(), &[a, b]);
    assert_eq!(w.get(a).status, TripStatus::Searching);
    w.advance(1); // 2 s after a: the window (opened by a) closes
    assert!(w.state.batch_waiting().is_empty());
    assert_eq!(w.offered(a), vec![d2]);
    assert_eq!(w.offered(b), vec![d1]);
    assert_eq!(w.get(a).round, 1);
    // The first offer answered, the rounds of greedy mode take over.
    w.run(Actor::User(d2), Command::DeclineTrip { trip_id: a }).unwrap();
    assert_eq!(w.offered(a), vec![d1], "a decline falls back to a greedy round");
    w.accept(d1, b).unwrap();
    assert!(w.offered(a).is_empty(), "d1's offer of a is withdrawn when it takes b");
    w.finish();
}

#[test]
fn more_trips_than_drivers_the_rest_go_to_rounds_and_no_driver_gets_two_of_a_window() {
    let mut w = World::new(batched());
    let d = w.driver(0.5);
    let riders: Vec<UserId> = (0..3).map(|_| w.rider()).collect();
    // The trip nearest the driver wins it, whatever the booking order.
    let far = trip_at(&mut w, riders[0], -1.0);
    let near = trip_at(&mut w, riders[1], 0.4);
    let mid = trip_at(&mut w, riders[2], 0.0);
    w.advance(2);
    let first_round_offers: Vec<_> = [far, near, mid]
        .iter()
        .filter(|t| w.get(**t).offers.iter().any(|o| o.driver_id == d && o.round == 1))
        .copied()
        .collect();
    // Every trip had a round; `near` got the driver from the solve, the others from the
    // greedy rounds after it (today's rounds offer a driver several trips).
    assert!(first_round_offers.contains(&near));
    assert_eq!(w.offered(near), vec![d]);
    let events = w.events();
    let offered: Vec<TripId> = events
        .iter()
        .filter_map(|e| match e {
            Event::TripOffered { trip, driver_id, .. } if *driver_id == d => Some(trip.id),
            _ => None,
        })
        .collect();
    assert_eq!(offered.first(), Some(&near), "the solve's assignment is offered first");
    w.finish();
}

#[test]
fn a_trip_cancelled_while_it_waits_leaves_the_window() {
    let mut w = World::new(batched());
    let d = w.driver(0.5);
    let (r1, r2) = (w.rider(), w.rider());
    let gone = trip_at(&mut w, r1, 0.4);
    let stays = trip_at(&mut w, r2, 0.0);
    w.run(
        Actor::User(r1),
        Command::CancelTrip { trip_id: gone, code: CancelReason::Other, reason: "changed my mind".into() },
    )
    .unwrap();
    w.advance(2);
    assert_eq!(w.get(gone).status, TripStatus::Cancelled);
    assert!(w.get(gone).offers.is_empty());
    assert_eq!(w.offered(stays), vec![d]);
    w.finish();
}

#[test]
fn a_trip_without_candidates_gets_a_round_and_retries() {
    let mut w = World::new(batched());
    let rider = w.rider();
    let trip = trip_at(&mut w, rider, 0.0);
    w.advance(2);
    assert!(w.get(trip).offers.is_empty());
    assert_eq!(w.get(trip).nearby_drivers, Some(0), "the close's round counted nobody near");
    let d = w.driver(0.3);
    w.advance(2); // the retry of the greedy round
    assert_eq!(w.offered(trip), vec![d]);
    w.finish();
}

#[test]
fn a_full_window_offers_at_once_and_greedy_mode_never_waits() {
    let mut w = World::new(DispatchRules { open_trips_per_rider: u16::MAX, ..batched() });
    let d = w.driver(0.5);
    let rider = w.rider();
    let waiting: Vec<TripId> = (0..MAX_BATCH_TRIPS).map(|_| trip_at(&mut w, rider, 0.0)).collect();
    let extra = trip_at(&mut w, rider, 0.0);
    assert_eq!(w.offered(extra), vec![d], "the window is full: offered at once");
    assert_eq!(w.state.batch_waiting().len(), MAX_BATCH_TRIPS);
    w.advance(2);
    // The one driver got one trip of the window; with its room of offers full (16), the
    // rest wait for rounds.
    let solved = waiting.iter().filter(|t| w.get(**t).offers.iter().any(|o| o.round == 1)).count();
    assert!(solved >= 1);
    w.fx.clear();

    let mut g = World::new(rules());
    let d = g.driver(0.5);
    let rider = g.rider();
    let t = trip_at(&mut g, rider, 0.0);
    assert_eq!(g.offered(t), vec![d], "greedy offers at once");
    assert!(g.state.batch_waiting().is_empty());
    g.finish();
}

#[test]
fn learning_ranks_a_driver_who_declines_behind_a_reliable_one() {
    let learning = DispatchRules { offers_per_round: 1, learning: WEIGHTS, ..rules() };
    let mut w = World::new(learning);
    let decliner = w.driver(0.5);
    let reliable = w.driver(0.8);
    let rider = w.rider();
    // 0.5 km against 0.8: the decliner's cost passes the reliable driver's after its fourth
    // decline (acceptance (0 + 2) / (4 + 2), so × 1.67 against × 1.6 in distance).
    for _ in 0..4 {
        let t = trip_at(&mut w, rider, 0.0);
        assert_eq!(w.offered(t), vec![decliner], "nearest first while the decliner's record is good");
        w.run(Actor::User(decliner), Command::DeclineTrip { trip_id: t }).unwrap();
        assert_eq!(w.offered(t), vec![reliable]);
        w.run(Actor::User(rider), Command::CancelTrip { trip_id: t, code: CancelReason::Other, reason: String::new() })
            .unwrap();
    }
    let s = &w.state.driver(decliner).unwrap().stats;
    assert_eq!((s.recent_len, s.recent & 0b1111), (4, 0));
    assert_eq!(w.state.driver(reliable).unwrap().stats.recent_len, 0, "a withdrawn offer is no answer");
    let t = trip_at(&mut w, rider, 0.0);
    assert_eq!(w.offered(t), vec![reliable], "the decliner is no longer offered first");
    w.accept(reliable, t).unwrap();
    assert_eq!(w.state.driver(reliable).unwrap().available_since, None);
    w.finish();

    // The same declines with learning off: the nearest is still offered first.
    let mut w = World::new(DispatchRules { offers_per_round: 1, ..rules() });
    let decliner = w.driver(0.5);
    let _reliable = w.driver(0.8);
    let rider = w.rider();
    for _ in 0..5 {
        let t = trip_at(&mut w, rider, 0.0);
        w.run(Actor::User(decliner), Command::DeclineTrip { trip_id: t }).unwrap();
        w.run(Actor::User(rider), Command::CancelTrip { trip_id: t, code: CancelReason::Other, reason: String::new() })
            .unwrap();
    }
    let t = trip_at(&mut w, rider, 0.0);
    assert_eq!(w.offered(t), vec![decliner]);
    w.finish();
}

#[test]
fn learning_credits_idle_time() {
    // Two drivers equally near; the one who just finished a trip is behind the one idle longer.
    let learning = DispatchRules { offers_per_round: 1, learning: WEIGHTS, ..rules() };
    let mut w = World::new(learning);
    let (_rider, busy, _trip) = complete_a_trip(&mut w);
    // `busy` is now at the trip's drop-off; bring it back next to the pickup.
    let near = LatLng::new(CAIRO.0 + 0.5 / 111.195, CAIRO.1).unwrap();
    w.advance(600);
    let idle = w.driver(0.5);
    w.advance(600);
    w.run(Actor::User(idle), report_at(near)).unwrap();
    // `busy` was released 1,200 s ago, `idle` came online 600 s ago; move `busy` a bit nearer.
    let nearer = LatLng::new(CAIRO.0 + 0.45 / 111.195, CAIRO.1).unwrap();
    w.run(Actor::User(busy), Command::SetDriverStatus { online: false, location: None }).unwrap();
    w.run(Actor::User(busy), Command::SetDriverStatus { online: true, location: Some(nearer) }).unwrap();
    // Going offline and back resets its idle time: now `idle` (600 s) wins over the nearer `busy` (0 s).
    let rider = w.rider();
    let t = trip_at(&mut w, rider, 0.0);
    assert_eq!(w.offered(t), vec![idle]);
    w.finish();
}

#[test]
fn the_new_rules_are_validated() {
    let ok = DispatchRules { matching: MatchingMode::Batched, learning: LearningWeights::TUNED, ..rules() };
    assert!(ok.validate().is_ok());
    for bad in [
        DispatchRules { batch_window_ms: 99, ..ok.clone() },
        DispatchRules { batch_window_ms: 10_001, ..ok.clone() },
        DispatchRules { batch_window_ms: 5_000, timeout_s: 5, ..ok.clone() },
        DispatchRules { learning: LearningWeights { acceptance_pct: 1_001, idle_pct: 0 }, ..ok.clone() },
        DispatchRules { learning: LearningWeights { acceptance_pct: 0, idle_pct: 91 }, ..ok.clone() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert!(LearningWeights::TUNED.is_on() && !LearningWeights::OFF.is_on());
    // A greedy city may keep a window longer than its searches (it batches nothing).
    let greedy = DispatchRules { batch_window_ms: 5_000, timeout_s: 5, ..rules() };
    assert!(greedy.validate().is_ok() && !greedy.window_fits_search());
}

#[test]
fn a_batched_zone_whose_window_would_outlast_the_search_offers_at_once() {
    use crate::settings::{SettingsChange, ZoneSettings};
    // A greedy city whose searches last 3 s, with the default 4 s window.
    let mut w = World::new(DispatchRules { timeout_s: 3, ..rules() });
    let zone = w.zone_id();
    let d = w.driver(0.5);
    let zones = [(zone, ZoneSettings { mode: Some(Some(MatchingMode::Batched)), ..Default::default() })];
    let change = SettingsChange { dispatch: Default::default(), zones: zones.into_iter().collect() };
    w.run(Actor::Admin, Command::UpdateSettings(Box::new(change))).unwrap();
    let rider = w.rider();
    let t = trip_at(&mut w, rider, 0.0);
    assert_eq!(w.offered(t), vec![d], "a window that closes after the search ends would starve the trip");
    w.finish();
}

#[test]
fn staff_switch_to_batched_at_runtime_and_the_waiting_window_still_closes() {
    use crate::settings::{RuleOverrides, SettingsChange};
    let settings = |dispatch: RuleOverrides| {
        Command::UpdateSettings(Box::new(SettingsChange { dispatch, zones: Default::default() }))
    };
    let mut w = World::new(rules());
    let d = w.driver(0.5);
    let to_batched = RuleOverrides {
        mode: Some(MatchingMode::Batched),
        batch_window_ms: Some(3_000),
        learning_acceptance_pct: Some(LearningWeights::TUNED.acceptance_pct),
        learning_idle_pct: Some(LearningWeights::TUNED.idle_pct),
        ..Default::default()
    };
    assert_eq!(
        to_batched.set_keys().iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["dispatch.mode", "dispatch.batch_window_ms", "dispatch.learning_acceptance_pct", "dispatch.learning_idle_pct"]
    );
    w.run(Actor::Admin, settings(to_batched)).unwrap();
    assert_eq!(w.state.rules().matching, MatchingMode::Batched);
    assert_eq!(w.state.rules().learning, LearningWeights::TUNED);
    let rider = w.rider();
    let t = trip_at(&mut w, rider, 0.0);
    assert!(w.offered(t).is_empty());
    // Back to greedy while the trip waits: its window still closes when due.
    w.run(Actor::Admin, settings(RuleOverrides { mode: Some(MatchingMode::Greedy), ..Default::default() })).unwrap();
    w.advance(2);
    assert!(w.offered(t).is_empty(), "the window closes 3 s after the trip");
    w.advance(1);
    assert_eq!(w.offered(t), vec![d]);
    // A bad window is refused, naming its key.
    match w.run(Actor::Admin, settings(RuleOverrides { batch_window_ms: Some(20_000), ..Default::default() })) {
        Err(Error::InvalidParam { param, .. }) => assert_eq!(param, "dispatch.batch_window_ms"),
        other => panic!("{other:?}"),
    }
    w.finish();
}

#[test]
fn an_unanswered_window_offer_is_joined_by_a_greedy_round_after_batch_exclusive_s() {
    let mut w = World::new(DispatchRules {
        batch_exclusive_s: 4,
        offer_ttl_s: 20,
        offers_per_round: 2,
        batch_round_slack_s: 0,
        ..batched()
    });
    let near = w.driver(0.2);
    let (mid, far) = (w.driver(0.5), w.driver(0.9));
    let rider = w.rider();
    let trip = trip_at(&mut w, rider, 0.0);
    w.advance(2);
    assert_eq!(w.offered(trip), vec![near], "the window's offer is the trip's only one");
    w.advance(3);
    assert_eq!(w.offered(trip), vec![near], "still exclusive 3 s after the window");
    w.advance(1);
    // 4 s: a round of 2 joins, the assigned driver's offer stays open.
    assert_eq!(w.offered(trip), vec![near, mid, far]);
    assert_eq!(w.get(trip).round, 2);
    w.accept(far, trip).unwrap();
    assert!(w.offered(trip).is_empty(), "the first accept wins, the others are withdrawn");
    assert!(w.accept(near, trip).is_err(), "the assigned driver's late accept loses the race");
    assert_eq!(w.get(trip).driver_id, Some(far));
    w.finish();
}

#[test]
fn an_answered_window_offer_needs_no_round_beside_it() {
    let mut w = World::new(DispatchRules { batch_exclusive_s: 4, offers_per_round: 1, ..batched() });
    let near = w.driver(0.2);
    let (mid, far) = (w.driver(0.5), w.driver(0.9));
    let rider = w.rider();
    let trip = trip_at(&mut w, rider, 0.0);
    w.advance(2);
    w.run(Actor::User(near), Command::DeclineTrip { trip_id: trip }).unwrap();
    assert_eq!(w.offered(trip), vec![mid], "the decline's round");
    w.advance(4);
    // The deadline of the window's round found the trip in a later round: nothing joins.
    assert_eq!(w.offered(trip), vec![mid]);
    assert!(w.get(trip).offer_to(far).is_none());
    w.finish();
}

#[test]
fn batch_exclusive_s_zero_joins_at_once_and_at_the_ttl_never() {
    for (exclusive, joined) in [(0, true), (20, false), (30, false)] {
        let mut w = World::new(DispatchRules {
            batch_exclusive_s: exclusive,
            offer_ttl_s: 20,
            offers_per_round: 1,
            ..batched()
        });
        let near = w.driver(0.2);
        let mid = w.driver(0.5);
        let rider = w.rider();
        let trip = trip_at(&mut w, rider, 0.0);
        w.advance(2);
        let expect = if joined { vec![near, mid] } else { vec![near] };
        assert_eq!(w.offered(trip), expect, "batch_exclusive_s {exclusive}");
        w.advance(10);
        assert_eq!(w.offered(trip), expect, "batch_exclusive_s {exclusive}, 10 s on");
        w.finish();
    }
}

#[test]
fn the_window_prefers_the_driver_nearer_in_time() {
    let mut w = World::new(batched());
    // `slow` is 0.8 km away crawling at 5 m/s (1,040 road m: 208 s), `fast` 1.0 km away at
    // 12 m/s (1,300 m: 108 s), `unknown` 0.9 km away with no speed (30 km/h: 140 s).
    let slow = w.driver(0.8);
    let fast = w.driver(1.0);
    let unknown = w.driver(0.9);
    for (d, km, speed) in [(slow, 0.8, 5.0), (fast, 1.0, 12.0)] {
        let point = LatLng::new(CAIRO.0 + km / 111.195, CAIRO.1).unwrap();
        let report = crate::command::LocationReport { point, heading_deg: None, speed_mps: Some(speed) };
        w.advance(2);
        w.run(Actor::User(d), Command::UpdateLocation(report)).unwrap();
    }
    let rider = w.rider();
    let trip = trip_at(&mut w, rider, 0.0);
    w.advance(2);
    assert_eq!(w.offered(trip), vec![fast]);
    assert!(w.get(trip).offer_to(unknown).is_none() && w.get(trip).offer_to(slow).is_none());
    w.finish();
}

#[test]
fn a_batched_round_skips_drivers_far_behind_its_best() {
    // Pickup ETAs (30 km/h, x1.3): 0.5 km 78 s, 0.8 km 125 s, 1.2 km 187 s.
    for (slack, expect_far) in [(60, false), (120, true), (0, true)] {
        let mut w = World::new(DispatchRules { batch_round_slack_s: slack, offers_per_round: 3, ..batched() });
        let (near, mid, far) = (w.driver(0.5), w.driver(0.8), w.driver(1.2));
        let rider = w.rider();
        let trip = trip_at(&mut w, rider, 0.0);
        w.advance(3);
        w.run(Actor::User(near), Command::DeclineTrip { trip_id: trip }).unwrap();
        let expect = if expect_far { vec![mid, far] } else { vec![mid] };
        assert_eq!(w.offered(trip), expect, "batch_round_slack_s {slack}");
        w.finish();
    }
    // Greedy mode has no bound: the far driver is offered with the others.
    let mut g = World::new(DispatchRules { batch_round_slack_s: 60, offers_per_round: 3, ..rules() });
    let (near, mid, far) = (g.driver(0.5), g.driver(0.8), g.driver(1.2));
    let rider = g.rider();
    let trip = trip_at(&mut g, rider, 0.0);
    assert_eq!(g.offered(trip), vec![near, mid, far]);
    g.finish();
}

#[test]
fn a_zone_of_its_own_mode_overrides_the_city_and_back() {
    use crate::settings::{SettingsChange, ZoneSettings};
    let zone_mode = |zone, mode| {
        let zones = [(zone, ZoneSettings { mode: Some(mode), ..Default::default() })].into_iter().collect();
        Command::UpdateSettings(Box::new(SettingsChange { dispatch: Default::default(), zones }))
    };
    // The city is greedy; the zone batches.
    let mut w = World::new(DispatchRules { batch_window_ms: 2_000, ..rules() });
    let zone = w.zone_id();
    let d = w.driver(0.5);
    w.run(Actor::Admin, zone_mode(zone, Some(MatchingMode::Batched))).unwrap();
    assert_eq!(w.state.catalog.get(zone).unwrap().matching, Some(MatchingMode::Batched));
    let rider = w.rider();
    let t = trip_at(&mut w, rider, 0.0);
    assert!(w.offered(t).is_empty(), "the zone's trip waits for its window");
    w.advance(2);
    assert_eq!(w.offered(t), vec![d]);
    w.run(Actor::User(d), Command::DeclineTrip { trip_id: t }).unwrap();
    // A replaced spec keeps the zone's mode.
    let spec = w.state.catalog.get(zone).unwrap().spec.clone();
    w.run(Actor::Admin, Command::ReplaceZone { zone_id: zone, zone: Box::new(spec) }).unwrap();
    assert_eq!(w.state.catalog.get(zone).unwrap().matching, Some(MatchingMode::Batched));
    // Back to the city's mode (greedy): offered at once.
    w.run(Actor::Admin, zone_mode(zone, None)).unwrap();
    assert_eq!(w.state.catalog.get(zone).unwrap().matching, None);
    let rider2 = w.rider();
    let t2 = trip_at(&mut w, rider2, 0.0);
    assert_eq!(w.offered(t2), vec![d], "greedy: offered at once");
    // The city batches; the zone is greedy on its own: offered at once too.
    let mut w = World::new(batched());
    let zone = w.zone_id();
    let d = w.driver(0.5);
    w.run(Actor::Admin, zone_mode(zone, Some(MatchingMode::Greedy))).unwrap();
    let rider = w.rider();
    let t = trip_at(&mut w, rider, 0.0);
    assert_eq!(w.offered(t), vec![d], "the zone's own greedy mode wins over the city's");
    w.finish();
}
