//! The tests of the drivers' index: every search against a brute-force haversine scan,
//! on the ring walk and on the scan, under moves and removals, at the poles and across ±180°.

use super::search::Chord2;
use super::*;
use crate::geo::haversine_m;
use proptest::prelude::*;

fn driver(raw: u64, lat: f64, lng: f64, category: u16) -> IndexedDriver {
    IndexedDriver {
        id: UserId::from_raw(raw).unwrap(),
        position: LatLng::new(lat, lng).unwrap(),
        category: CategoryCode(category),
        recorded_at: Timestamp::from_millis(0),
    }
}

/// Drivers 1, 2, … at `points` (position, category).
fn numbered(points: &[((f64, f64), u16)]) -> Vec<IndexedDriver> {
    points.iter().enumerate().map(|(i, ((lat, lng), c))| driver(i as u64 + 1, *lat, *lng, *c)).collect()
}

/// The reference: every driver, haversine, filter, radius, sort, cut.
fn brute_force(
    drivers: &[IndexedDriver],
    center: LatLng,
    radius_m: f64,
    limit: usize,
    eligible: impl Fn(&IndexedDriver) -> bool,
) -> Vec<(UserId, f64)> {
    let mut all: Vec<(UserId, f64)> = drivers
        .iter()
        .filter(|d| eligible(d))
        .map(|d| (d.id, haversine_m(center, d.position)))
        .filter(|(_, m)| *m <= radius_m)
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(limit);
    all
}

/// Driver positions around a few hard places: a city, both poles, the antimeridian.
fn position() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![
        (30.0..30.2f64, 31.1..31.4f64),
        (89.5..=90.0f64, -180.0..=180.0f64),
        (-90.0..=-89.5f64, -180.0..=180.0f64),
        (-1.0..1.0f64, prop_oneof![179.5..=180.0f64, -180.0..-179.5f64]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn nearest_equals_a_brute_force_haversine_scan(
        points in proptest::collection::vec((position(), 0u16..3), 0..200),
        center in position(),
        radius_m in prop_oneof![0.0..5_000.0f64, 0.0..200_000.0f64, Just(30_000_000.0)],
        limit in 0usize..15,
        modulus in 1u64..4,
    ) {
        let drivers = numbered(&points);
        let index = DriverIndex::from_drivers(drivers.iter().copied());
        prop_assert_eq!(index.len(), drivers.len());
        let center = LatLng::new(center.0, center.1).unwrap();
        let eligible = |d: &IndexedDriver| d.id.raw().is_multiple_of(modulus) && d.category != CategoryCode(2);
        let got: Vec<(UserId, f64)> =
            index.nearest(center, radius_m, limit, eligible).iter().map(|n| (n.driver.id, n.distance_m)).collect();
        prop_assert_eq!(got, brute_force(&drivers, center, radius_m, limit, eligible));
    }

    #[test]
    fn moves_and_removals_keep_the_index_equal_to_a_scan(
        points in proptest::collection::vec(position(), 1..80),
        moves in proptest::collection::vec((0usize..80, position(), any::<bool>()), 0..80),
        center in position(),
    ) {
        let mut index = DriverIndex::new();
        let mut live: std::collections::BTreeMap<u64, IndexedDriver> = Default::default();
        for (i, (lat, lng)) in points.iter().enumerate() {
            let d = driver(i as u64 + 1, *lat, *lng, 0);
            index.upsert(d.id, d.position, d.category, d.recorded_at);
            live.insert(i as u64 + 1, d);
        }
        for (which, (lat, lng), remove) in moves {
            let raw = (which % points.len()) as u64 + 1;
            if remove {
                prop_assert_eq!(index.remove(UserId::from_raw(raw).unwrap()).is_some(), live.remove(&raw).is_some());
            } else {
                let d = driver(raw, lat, lng, 0);
                index.upsert(d.id, d.position, d.category, d.recorded_at);
                live.insert(raw, d);
            }
        }
        prop_assert_eq!(index.len(), live.len());
        check_shape(&index)?;
        let drivers: Vec<IndexedDriver> = live.values().copied().collect();
        let center = LatLng::new(center.0, center.1).unwrap();
        let got: Vec<(UserId, f64)> =
            index.nearest(center, 30_000_000.0, 10, |_| true).iter().map(|n| (n.driver.id, n.distance_m)).collect();
        prop_assert_eq!(got, brute_force(&drivers, center, 30_000_000.0, 10, |_| true));
    }

    /// Short moves rewrite leaves in place inside their node's box (the `upsert` fast
    /// path): searches still equal a scan, and every driver is still found where the
    /// tree stores it (each removal succeeds, and the tree empties).
    #[test]
    fn short_moves_in_place_keep_the_index_equal_to_a_scan(
        n in 20usize..300,
        seed in any::<u64>(),
        steps in 1usize..1500,
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // A 4 km square city, ~1-200 m moves, now and then a driver leaves and comes back.
        let mut live: std::collections::BTreeMap<u64, IndexedDriver> = Default::default();
        let mut index = DriverIndex::new();
        for raw in 1..=n as u64 {
            let d = driver(raw, 30.0 + rng.random_range(0.0..0.036), 31.0 + rng.random_range(0.0..0.036), 0);
            index.upsert(d.id, d.position, d.category, d.recorded_at);
            live.insert(raw, d);
        }
        for _ in 0..steps {
            let raw = rng.random_range(1..=n as u64);
            if rng.random_range(0..20) == 0 {
                prop_assert_eq!(index.remove(UserId::from_raw(raw).unwrap()).is_some(), live.remove(&raw).is_some());
                continue;
            }
            let from = live.get(&raw).map_or((30.018, 31.018), |d| (d.position.lat(), d.position.lng()));
            let step = rng.random_range(0.0..0.0018);
            let d = driver(raw, from.0 + rng.random_range(-step..=step), from.1 + rng.random_range(-step..=step), 0);
            index.upsert(d.id, d.position, d.category, d.recorded_at);
            live.insert(raw, d);
        }
        prop_assert_eq!(index.len(), live.len());
        let drivers: Vec<IndexedDriver> = live.values().copied().collect();
        for _ in 0..5 {
            let center = LatLng::new(30.0 + rng.random_range(0.0..0.036), 31.0 + rng.random_range(0.0..0.036)).unwrap();
            let radius_m = rng.random_range(50.0..3_000.0);
            let got: Vec<(UserId, f64)> =
                index.nearest(center, radius_m, 10, |_| true).iter().map(|n| (n.driver.id, n.distance_m)).collect();
            prop_assert_eq!(got, brute_force(&drivers, center, radius_m, 10, |_| true));
        }
        for raw in live.keys() {
            prop_assert!(index.remove(UserId::from_raw(*raw).unwrap()).is_some(), "driver {} lost in the tree", raw);
        }
        prop_assert!(index.tiles.is_empty() && index.columns == 0);
    }
}

/// The index's shape: each driver in the column of its stored vector, in the tile and slot
/// of that column, named there by the map; no tile empty; the occupied counts exact.
fn check_shape(index: &DriverIndex) -> Result<(), TestCaseError> {
    let mut drivers = 0;
    let mut occupied = 0;
    for (&tile_key, tile) in &index.tiles {
        let nonempty = tile.columns.iter().filter(|c| !c.is_empty()).count();
        prop_assert!(nonempty > 0, "an empty tile is kept");
        prop_assert_eq!(tile.occupied, nonempty);
        occupied += nonempty;
        for (slot, column) in tile.columns.iter().enumerate() {
            for entry in column {
                let key = column_of(entry.point);
                prop_assert_eq!(tile_of(key), (tile_key, slot));
                prop_assert_eq!(index.by_driver.get(&entry.id), Some(&key));
                drivers += 1;
            }
        }
    }
    prop_assert_eq!(occupied, index.columns);
    prop_assert_eq!(drivers, index.by_driver.len());
    Ok(())
}

/// Positions for the grid tests: the hard places of [`position`], plus points on the
/// cube edges of the grid's axes (where the dominant axis changes) and on the equator.
fn grid_position() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![
        position(),
        (-0.05..0.05f64, prop_oneof![-45.05..-44.95f64, 44.95..45.05f64, 134.95..135.05f64]),
        (35.20..35.32f64, 44.9..45.1f64),
        (-0.02..0.02f64, -0.02..0.02f64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The ring walk alone (no fallback to the scan) and the scan alone (from the first
    /// ring) both equal a brute-force scan, for radii up to 10 km (the walk is bounded by
    /// the radius) and 0, everywhere including the poles, ±180° and the cube edges.
    #[test]
    fn the_ring_walk_and_the_scan_each_equal_a_brute_force_scan(
        points in proptest::collection::vec((grid_position(), 0u16..3), 0..150),
        center in grid_position(),
        radius_m in prop_oneof![Just(0.0), 0.0..2_000.0f64, 0.0..10_000.0f64],
        limit in 0usize..15,
        modulus in 1u64..4,
    ) {
        let drivers = numbered(&points);
        let index = DriverIndex::from_drivers(drivers.iter().copied());
        let center = LatLng::new(center.0, center.1).unwrap();
        let eligible = |d: &IndexedDriver| d.id.raw().is_multiple_of(modulus) && d.category != CategoryCode(2);
        let want = brute_force(&drivers, center, radius_m, limit, eligible);
        for budget in [usize::MAX, 0, 9] {
            let got: Vec<(UserId, f64)> = index
                .nearest_within_budget(center, radius_m, limit, eligible, budget)
                .iter()
                .map(|n| (n.driver.id, n.distance_m))
                .collect();
            prop_assert_eq!(&got, &want, "budget {}", budget);
        }
    }

    /// A count equals the brute-force scan's length, capped, on the walk and on the scan;
    /// `eligible` is asked at most once per driver, and only within the radius.
    #[test]
    fn a_count_equals_a_brute_force_scan_capped_and_asks_each_driver_once(
        points in proptest::collection::vec((grid_position(), 0u16..3), 0..150),
        center in grid_position(),
        radius_m in prop_oneof![Just(0.0), 0.0..2_000.0f64, 0.0..10_000.0f64, Just(30_000_000.0)],
        cap in 0usize..200,
        modulus in 1u64..4,
    ) {
        let drivers = numbered(&points);
        let index = DriverIndex::from_drivers(drivers.iter().copied());
        let center = LatLng::new(center.0, center.1).unwrap();
        let eligible = |d: &IndexedDriver| d.id.raw().is_multiple_of(modulus) && d.category != CategoryCode(2);
        let want = brute_force(&drivers, center, radius_m, cap, eligible).len();
        // The walk alone over the whole sphere would take 10⁹ columns: bounded radii only.
        let budgets: &[usize] = if radius_m > 10_000.0 { &[0, 9, 40] } else { &[usize::MAX, 0, 9] };
        for &budget in budgets {
            let mut asked: Vec<(UserId, f64)> = Vec::new();
            let got = index.count_within_budget(center, radius_m, cap, |d| {
                asked.push((d.id, haversine_m(center, d.position)));
                eligible(d)
            }, budget);
            prop_assert_eq!(got, want, "budget {}", budget);
            prop_assert!(asked.iter().all(|a| a.1 <= radius_m), "asked beyond the radius");
            let mut ids: Vec<UserId> = asked.iter().map(|a| a.0).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), asked.len(), "a driver was asked twice");
            let yes = asked.iter().filter(|a| drivers.iter().any(|d| d.id == a.0 && eligible(d))).count();
            prop_assert_eq!(yes, got, "asked on after the cap");
        }
    }

    /// `eligible` is asked about each driver at most once, nearest first (by chord, up to
    /// the `f32` slack), and only within the radius.
    #[test]
    fn eligible_is_asked_once_per_driver_nearest_first(
        points in proptest::collection::vec(grid_position(), 0..150),
        center in grid_position(),
        radius_m in prop_oneof![0.0..10_000.0f64, Just(30_000_000.0)],
        limit in 1usize..15,
        budget in prop_oneof![Just(usize::MAX), Just(0usize), Just(40usize)],
    ) {
        // The walk alone over the whole sphere would take 10⁹ columns: bounded radii only.
        let budget = if radius_m > 10_000.0 { budget.min(40) } else { budget };
        let drivers: Vec<IndexedDriver> =
            points.iter().enumerate().map(|(i, (lat, lng))| driver(i as u64 + 1, *lat, *lng, 0)).collect();
        let index = DriverIndex::from_drivers(drivers.iter().copied());
        let center = LatLng::new(center.0, center.1).unwrap();
        let mut asked: Vec<(UserId, f64)> = Vec::new();
        index.nearest_within_budget(center, radius_m, limit, |d| {
            asked.push((d.id, haversine_m(center, d.position)));
            d.id.raw() % 3 != 0
        }, budget);
        let mut ids: Vec<UserId> = asked.iter().map(|a| a.0).collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), asked.len(), "a driver was asked twice");
        // In chord order, up to CHORD_SLACK (far above the f32 rounding). Not in haversine
        // order up to a fixed distance: near the antipode the chord hardly grows with the
        // angle, so its rounding spans hundreds of metres there (the answer itself is
        // ranked by haversine, and is exact: the other tests).
        let chord = |m: f64| 2.0 * (m / EARTH_RADIUS_M / 2.0).sin();
        for pair in asked.windows(2) {
            prop_assert!(chord(pair[0].1) <= chord(pair[1].1) + CHORD_SLACK, "asked out of order: {:?}", pair);
        }
        prop_assert!(asked.iter().all(|a| a.1 <= radius_m));
    }

    /// Random moves (short and far, across cube edges, poles and ±180°), re-adds and
    /// removals, then queries of every kind on both paths: equal to a scan, and `get`,
    /// `len` and `iter` agree with the model.
    #[test]
    fn churn_keeps_the_grid_equal_to_a_scan(
        points in proptest::collection::vec(grid_position(), 1..60),
        moves in proptest::collection::vec((0usize..60, grid_position(), 0u8..4), 0..150),
        center in grid_position(),
        radius_m in prop_oneof![Just(0.0), 0.0..10_000.0f64, Just(30_000_000.0), Just(f64::NAN), Just(-1.0)],
    ) {
        let mut index = DriverIndex::new();
        let mut live: std::collections::BTreeMap<u64, IndexedDriver> = Default::default();
        for (i, (lat, lng)) in points.iter().enumerate() {
            let d = driver(i as u64 + 1, *lat, *lng, 0);
            prop_assert!(index.upsert(d.id, d.position, d.category, d.recorded_at).is_none());
            live.insert(i as u64 + 1, d);
        }
        for (which, (lat, lng), kind) in moves {
            let raw = (which % points.len()) as u64 + 1;
            let id = UserId::from_raw(raw).unwrap();
            if kind == 0 {
                prop_assert_eq!(index.remove(id), live.remove(&raw));
                continue;
            }
            // Half the moves are a few metres from where the driver is.
            let (lat, lng) = match (kind, live.get(&raw)) {
                (1, Some(d)) => ((d.position.lat() + 3e-5 * (lat - 45.0).signum()).clamp(-90.0, 90.0), d.position.lng()),
                _ => (lat, lng),
            };
            let d = driver(raw, lat, lng, 0);
            prop_assert_eq!(index.upsert(d.id, d.position, d.category, d.recorded_at), live.insert(raw, d));
        }
        prop_assert_eq!(index.len(), live.len());
        check_shape(&index)?;
        for (raw, d) in &live {
            prop_assert_eq!(index.get(UserId::from_raw(*raw).unwrap()), Some(*d));
        }
        let mut all: Vec<u64> = index.iter().map(|d| d.id.raw()).collect();
        all.sort_unstable();
        prop_assert_eq!(all, live.keys().copied().collect::<Vec<_>>());
        let drivers: Vec<IndexedDriver> = live.values().copied().collect();
        let center = LatLng::new(center.0, center.1).unwrap();
        let want = brute_force(&drivers, center, radius_m, 10, |_| true);
        // Bounded radii on the pure walk; every radius on the default and the scan.
        let budgets: &[usize] = if radius_m <= 10_000.0 { &[usize::MAX, 0, 100] } else { &[0, 100] };
        for &budget in budgets {
            let got: Vec<(UserId, f64)> = index
                .nearest_within_budget(center, radius_m, 10, |_| true, budget)
                .iter()
                .map(|n| (n.driver.id, n.distance_m))
                .collect();
            prop_assert_eq!(&got, &want, "budget {}", budget);
        }
        let got: Vec<(UserId, f64)> =
            index.nearest(center, radius_m, 10, |_| true).iter().map(|n| (n.driver.id, n.distance_m)).collect();
        prop_assert_eq!(&got, &want);
    }

    /// The hand-rounded cube index equals `floor`, on cube edges and negative values too.
    #[test]
    fn cell_index_rounds_down_like_floor(
        x in prop_oneof![-1.0001..=1.0001f64, (-EDGE..=EDGE).prop_map(|i| f64::from(i) * CELL)],
    ) {
        prop_assert_eq!(cell_index(x), (x * CELL_INV).floor() as i32);
        prop_assert_eq!(cell_index(x.next_down()), (x.next_down() * CELL_INV).floor() as i32);
    }

    /// The heaps' integer keys order squared chords as the numbers do, `+0.0` and `+∞`
    /// included, and give the number back.
    #[test]
    fn chord_keys_order_as_their_numbers(
        x in prop_oneof![0.0..=4.0f64, Just(0.0), Just(f64::INFINITY), Just(f64::MIN_POSITIVE)],
        y in prop_oneof![0.0..=4.0f64, Just(0.0), Just(f64::INFINITY), Just(4.0)],
    ) {
        prop_assert_eq!(Some(Chord2::new(x).cmp(&Chord2::new(y))), x.partial_cmp(&y));
        prop_assert_eq!(Chord2::new(x).get().to_bits(), x.to_bits());
    }

    #[test]
    fn column_keys_round_trip(face in 0usize..6, ca in -EDGE..=EDGE, cb in -EDGE..=EDGE) {
        prop_assert_eq!(column_of_key(column_key(face, ca, cb)), (face, ca, cb));
    }

    /// A column's tile and slot give the column back; the columns of a tile are the ones
    /// whose indices agree but for their last `TILE_BITS` (negative indices too).
    #[test]
    fn columns_and_tiles_round_trip(face in 0usize..6, ca in -EDGE..=EDGE, cb in -EDGE..=EDGE) {
        let key = column_key(face, ca, cb);
        let (tile, slot) = tile_of(key);
        prop_assert!(slot < TILE_COLUMNS);
        prop_assert_eq!(column_in(tile, slot), key);
        prop_assert_eq!(column_of_key(tile), (face, ca >> TILE_BITS, cb >> TILE_BITS));
    }

    /// A face's gap is a lower bound of the chord from any centre to any point of that face
    /// (what lets a search skip the faces its radius does not reach).
    #[test]
    fn a_faces_gap_never_exceeds_the_chord_to_its_points(
        center in grid_position(),
        point in prop_oneof![grid_position(), (-90.0..=90.0f64, -180.0..=180.0f64)],
    ) {
        let q = unit_vector(LatLng::new(center.0, center.1).unwrap()).map(f64::from);
        let p = unit_vector(LatLng::new(point.0, point.1).unwrap());
        let face = face_of(p);
        let chord = chord_2(q, p).sqrt();
        prop_assert!(face_gap(q, face) <= chord, "face {} gap {} chord {}", face, face_gap(q, face), chord);
        prop_assert_eq!(face_gap(p.map(f64::from), face), 0.0);
    }
}

#[test]
fn a_cube_holds_exactly_the_vectors_inside_it() {
    for (lat, lng) in [(90.0, 0.0), (-90.0, 180.0), (0.0, 180.0), (0.0, -180.0), (0.0, 0.0), (30.0444, 31.2357)] {
        let p = unit_vector(LatLng::new(lat, lng).unwrap());
        let cube = cube_of(p);
        for axis in 0..3 {
            let x = f64::from(p[axis]);
            assert!(f64::from(cube[axis]) * CELL <= x && x < f64::from(cube[axis] + 1) * CELL, "{lat},{lng}");
        }
    }
}

#[test]
fn a_negative_or_nan_radius_matches_nobody() {
    let index = DriverIndex::from_drivers([driver(1, 30.0, 31.0, 0)]);
    let c = LatLng::new(30.0, 31.0).unwrap();
    assert!(index.nearest(c, -1.0, 5, |_| true).is_empty());
    assert!(index.nearest(c, f64::NAN, 5, |_| true).is_empty());
    assert_eq!(index.nearest(c, 0.0, 5, |_| true).len(), 1);
}
