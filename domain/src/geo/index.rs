//! The spatial index of drivers: who is nearest to a pickup.
//!
//! Owns [`DriverIndex`]: one entry per driver (position, vehicle category, time of the fix) in
//! an `rstar` R-tree, plus a map from driver to entry so a move is a removal and an insertion
//! with no search by position (rstar removes an element by finding an equal one under its
//! envelope, so it needs the exact stored point).
//!
//! # Points on the unit sphere
//!
//! A position is stored as a 3-D unit vector (ECEF on the unit sphere, `f32`). The straight
//! chord between two such points is `2·sin(θ/2)` for the great-circle angle `θ`, which grows
//! with `θ` on all of `[0, π]`: Euclidean nearest-neighbour order *is* great-circle order, at
//! the poles and across the antimeridian as anywhere else. No projection, no wrap-around.
//!
//! # Guarantees
//!
//! - [`DriverIndex::nearest`] returns exactly what a scan of every driver would: the drivers
//!   that pass the filter with haversine distance ([`haversine_m`]) at most `radius_m`, nearest
//!   first, ties broken by lower [`UserId`], the first `limit` of them. The tree search is only
//!   a way to get there: it is bounded by the chord of the radius and stops once `limit` drivers
//!   are found and no further one can be nearer.
//! - `f32` rounding of the stored vectors moves chord lengths by under 5·10⁻⁷ (about 3 m on the
//!   Earth); the search keeps going [`CHORD_SLACK`] beyond each bound, and ranks and cuts by the
//!   haversine distance between the original `f64` coordinates, so rounding never changes an
//!   answer. (The unit tests check this against a brute-force scan, with drivers near both poles
//!   and astride ±180°.)
//! - At most one entry per driver; the tree and the map always agree.
//!
//! # Cost
//!
//! `f32` vectors keep a tree leaf at 48 bytes, the size of rstar's inner-node record, so an
//! entry costs nothing beyond the node slot it occupies (see `benches/geo.rs` for the measured
//! bytes per driver). A query visits O(log n) nodes plus the drivers it rejects.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::f64::consts::PI;
use std::hash::{Hash, Hasher};

use rstar::{AABB, Envelope, PointDistance, RTree, RTreeObject, SelectionFunction};
use serde::{Deserialize, Serialize};

use super::point::{EARTH_RADIUS_M, LatLng, haversine_m};
use crate::clock::Timestamp;
use crate::id::{IdHashing, UserId};

/// How far (in chord length on the unit sphere) the search goes beyond a bound, to absorb the
/// rounding of `f32` vectors (under 5·10⁻⁷, see the module docs): 2·10⁻⁶ ≈ 13 m on the Earth.
/// Larger only costs a few more candidates; smaller could miss a driver.
pub const CHORD_SLACK: f64 = 2e-6;

/// A vehicle category (economy, comfort, parcel, ...) as a small number, so the eligibility
/// filter compares integers. The engine keeps the mapping from names to codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct CategoryCode(pub u16);

/// What the index knows about one driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexedDriver {
    /// The driver.
    pub id: UserId,
    /// Last known position.
    pub position: LatLng,
    /// The vehicle's category.
    pub category: CategoryCode,
    /// When that position was recorded (for the freshness rule: no offers on a stale fix).
    pub recorded_at: Timestamp,
}

/// One answer of [`DriverIndex::nearest`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearby {
    /// The driver, as indexed.
    pub driver: IndexedDriver,
    /// Great-circle (haversine) distance from the search centre, metres.
    pub distance_m: f64,
}

/// A driver in the tree. Equality and hashing look at the driver id only: there is one entry
/// per driver, and rstar finds the entry to remove by its envelope first.
#[derive(Debug, Clone, Copy)]
struct Entry {
    point: [f32; 3],
    driver: IndexedDriver,
}

impl Entry {
    fn new(driver: IndexedDriver) -> Self {
        Self { point: unit_vector(driver.position), driver }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.driver.id == other.driver.id
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.driver.id.hash(state);
    }
}

impl Borrow<UserId> for Entry {
    fn borrow(&self) -> &UserId {
        &self.driver.id
    }
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f32; 3]>;

    fn envelope(&self) -> Self::Envelope {
        AABB::from_point(self.point)
    }
}

impl PointDistance for Entry {
    fn distance_2(&self, point: &[f32; 3]) -> f32 {
        self.point.distance_2(point)
    }
}

/// The position as a unit vector: x towards (0°, 0°), y towards (0°, 90° E), z to the north
/// pole. Computed in `f64`, stored in `f32`.
fn unit_vector(p: LatLng) -> [f32; 3] {
    let (lat, lng) = (p.lat().to_radians(), p.lng().to_radians());
    let (sin_lat, cos_lat) = lat.sin_cos();
    let (sin_lng, cos_lng) = lng.sin_cos();
    [(cos_lat * cos_lng) as f32, (cos_lat * sin_lng) as f32, sin_lat as f32]
}

/// The chord on the unit sphere spanning `radius_m` of great circle; `None` for a negative or
/// NaN radius. Radii of half the circumference or more span the whole sphere (chord 2).
fn chord_of(radius_m: f64) -> Option<f64> {
    if radius_m.is_nan() || radius_m < 0.0 {
        return None;
    }
    let angle = (radius_m / EARTH_RADIUS_M).min(PI);
    Some(2.0 * (angle / 2.0).sin())
}

/// The tree's node sizes: up to 10 children instead of rstar's default 6. Measured over
/// 100,000 drivers (30 m moves; 10 nearest within 5 km): 9 % fewer instructions per move
/// and 10 % fewer per search than (3, 6, 2) (callgrind); in wall time moves got 19 %
/// faster and a search 10 % slower (3.1 → 3.4 µs, `cargo bench --bench geo`) — a city
/// moves its drivers a hundred times as often as it searches for one. (6, 16, 4) gained
/// no more and (10, 32, 8) lost both.
#[derive(Debug, Clone, Copy)]
struct Params;

impl rstar::RTreeParams for Params {
    const MIN_SIZE: usize = 4;
    const MAX_SIZE: usize = 10;
    const REINSERTION_COUNT: usize = 3;
    type DefaultInsertionStrategy = rstar::RStarInsertionStrategy;
}

/// Selects the leaf `stored` through nodes whose boxes contain both its point and `to`.
struct BothPoints {
    stored: Entry,
    to: [f32; 3],
}

impl SelectionFunction<Entry> for BothPoints {
    fn should_unpack_parent(&self, envelope: &AABB<[f32; 3]>) -> bool {
        envelope.contains_point(&self.stored.point) && envelope.contains_point(&self.to)
    }

    fn should_unpack_leaf(&self, leaf: &Entry) -> bool {
        leaf.driver.id == self.stored.driver.id && leaf.point == self.stored.point
    }
}

/// Online drivers by position. The module documentation of `geo::index` says how it works.
#[derive(Debug, Clone, Default)]
pub struct DriverIndex {
    /// Unit vectors, for nearest-first search.
    tree: RTree<Entry, Params>,
    /// The same entries by driver id: the exact stored point for removal, and
    /// [`DriverIndex::get`] without a search.
    by_driver: HashSet<Entry, IdHashing>,
}

impl DriverIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of `drivers`, built in one pass (rstar's bulk load: faster than inserting one
    /// by one, and a better-packed tree). Of several entries for the same driver, the last
    /// wins. For recovery and for tests.
    pub fn from_drivers(drivers: impl IntoIterator<Item = IndexedDriver>) -> Self {
        let mut by_driver = HashSet::default();
        for driver in drivers {
            by_driver.replace(Entry::new(driver));
        }
        let tree = RTree::bulk_load_with_params(by_driver.iter().copied().collect());
        Self { tree, by_driver }
    }

    /// Records that `driver` is at `position` (recorded at `recorded_at`) with a vehicle of
    /// `category`: adds the driver, or moves it. Returns what was indexed before.
    pub fn upsert(
        &mut self,
        driver: UserId,
        position: LatLng,
        category: CategoryCode,
        recorded_at: Timestamp,
    ) -> Option<IndexedDriver> {
        let entry = Entry::new(IndexedDriver { id: driver, position, category, recorded_at });
        let previous = self.by_driver.replace(entry);
        match previous {
            // A short move that stays inside the box of every node above the leaf (most
            // moves of a few tens of metres): rewrite the leaf in place. Every node's box
            // then still contains everything under it — the one property searches,
            // removals and insertions rely on — so the tree stays correct, only perhaps
            // less tight until the node next changes; and it costs one descent instead of
            // a removal and an R*-insertion. The descent goes only through boxes holding
            // both points, so finding the leaf is the proof that the move fits.
            Some(old) => {
                if !self.move_in_place(&old, entry) {
                    let removed = self.tree.remove(&old);
                    debug_assert!(removed.is_some(), "driver {driver} was in the map but not the tree");
                    self.tree.insert(entry);
                }
            }
            None => self.tree.insert(entry),
        }
        previous.map(|e| e.driver)
    }

    /// Rewrites the leaf `stored` as `entry` if every node on its path contains
    /// `entry`'s point too; says whether it did.
    fn move_in_place(&mut self, stored: &Entry, entry: Entry) -> bool {
        let path = BothPoints { stored: *stored, to: entry.point };
        match self.tree.locate_with_selection_function_mut(path).next() {
            Some(leaf) => {
                *leaf = entry;
                true
            }
            None => false,
        }
    }

    /// Takes `driver` out of the index (gone offline, suspended). Returns what was indexed.
    pub fn remove(&mut self, driver: UserId) -> Option<IndexedDriver> {
        let old = self.by_driver.take(&driver)?;
        let removed = self.tree.remove(&old);
        debug_assert!(removed.is_some(), "driver {driver} was in the map but not the tree");
        Some(old.driver)
    }

    /// What is indexed for `driver`.
    pub fn get(&self, driver: UserId) -> Option<IndexedDriver> {
        self.by_driver.get(&driver).map(|e| e.driver)
    }

    /// The last indexed position of `driver`.
    pub fn position(&self, driver: UserId) -> Option<LatLng> {
        self.get(driver).map(|d| d.position)
    }

    /// Number of drivers indexed.
    pub fn len(&self) -> usize {
        self.by_driver.len()
    }

    /// Whether no driver is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_driver.is_empty()
    }

    /// Every indexed driver, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = IndexedDriver> + '_ {
        self.by_driver.iter().map(|e| e.driver)
    }

    /// The drivers nearest to `center` for which `eligible` says yes: at most `limit`, within
    /// `radius_m` metres of great circle (haversine), nearest first, equal distances by lower id.
    ///
    /// `eligible` is where the engine applies its rules (online, available, category, fresh
    /// position, connected). It is called at most once per driver, nearest first, only for
    /// drivers within the radius, and only until the answer is settled; it should have no
    /// effects that matter. A negative or NaN radius matches nobody; a radius of half the
    /// Earth's circumference or more matches everybody.
    pub fn nearest(
        &self,
        center: LatLng,
        radius_m: f64,
        limit: usize,
        mut eligible: impl FnMut(&IndexedDriver) -> bool,
    ) -> Vec<Nearby> {
        let Some(chord) = chord_of(radius_m) else {
            return Vec::new();
        };
        if limit == 0 {
            return Vec::new();
        }
        let bound_2 = (chord + CHORD_SLACK).powi(2);
        // Set once `limit` drivers are found: the chord beyond which nobody can be nearer
        // than the farthest of them.
        let mut cutoff_2 = f64::INFINITY;
        let mut found: Vec<Nearby> = Vec::with_capacity(limit.min(self.len()).min(1024));
        for (entry, d2) in self.tree.nearest_neighbor_iter_with_distance_2(unit_vector(center)) {
            let d2 = f64::from(d2);
            if d2 > bound_2 || d2 > cutoff_2 {
                break;
            }
            let distance_m = haversine_m(center, entry.driver.position);
            if distance_m > radius_m || !eligible(&entry.driver) {
                continue;
            }
            found.push(Nearby { driver: entry.driver, distance_m });
            if found.len() == limit {
                cutoff_2 = (d2.sqrt() + CHORD_SLACK).powi(2);
            }
        }
        found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m).then(a.driver.id.cmp(&b.driver.id)));
        found.truncate(limit);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn driver(raw: u64, lat: f64, lng: f64, category: u16) -> IndexedDriver {
        IndexedDriver {
            id: UserId::from_raw(raw).unwrap(),
            position: LatLng::new(lat, lng).unwrap(),
            category: CategoryCode(category),
            recorded_at: Timestamp::from_millis(0),
        }
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
            let drivers: Vec<IndexedDriver> = points
                .iter()
                .enumerate()
                .map(|(i, ((lat, lng), c))| driver(i as u64 + 1, *lat, *lng, *c))
                .collect();
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
            prop_assert_eq!(index.tree.size(), 0);
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
}
