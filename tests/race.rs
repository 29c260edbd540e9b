//! Race tests: the check-then-act race that two-drivers-one-trip bugs come from
//! cannot happen, because accepts are commands applied one at a time.

use dispatch::race;

#[test]
fn sixty_four_drivers_accepting_one_trip_exactly_one_wins_every_time() {
    let report = race::run(64, 1_000).unwrap();
    assert_eq!(report.winners, 1_000, "{report:?}");
    assert_eq!(report.double_assignments, 0, "{report:?}");
    assert_eq!(report.unexpected, 0, "{report:?}");
    assert_eq!(report.conflicts, 1_000 * 63, "every loser is told trip_already_assigned");
}

#[test]
fn one_driver_accepting_two_trips_at_once_wins_at_most_one() {
    let (doubles, singles) = race::one_driver_two_trips(300).unwrap();
    assert_eq!(doubles, 0);
    assert_eq!(singles, 300, "the driver was free and offered both: exactly one accept wins");
}
