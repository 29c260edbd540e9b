//! The spatial index of drivers: who is nearest to a pickup.
//!
//! Owns [`DriverIndex`]: one entry per driver (position, vehicle category, time of the fix) in
//! a grid of columns over the unit sphere, plus a map from driver to column so a move or a
//! removal goes straight to the driver's column with no search by position.
//!
//! # Points on the unit sphere
//!
//! A position is stored as a 3-D unit vector (ECEF on the unit sphere, `f32`). The straight
//! chord between two such points is `2·sin(θ/2)` for the great-circle angle `θ`, which grows
//! with `θ` on all of `[0, π]`: Euclidean nearest-neighbour order *is* great-circle order, at
//! the poles and across the antimeridian as anywhere else. No projection, no wrap-around.
//!
//! # The grid (why not an R-tree)
//!
//! Space is cut into cubes of edge [`CELL`] (2⁻¹⁴ of the Earth's radius, ~389 m). Each vector
//! lies on one face of the cube map, the face of its dominant axis and that coordinate's
//! sign (six faces, the first axis of equals); over a face the sphere is a graph of the two
//! other axes, so a driver is kept in the *column* of its face indexed by its cube on those
//! two axes. A column holds what two or three cubes the sphere crosses would, and columns
//! are kept 4 × 4 to a *tile*, in a hash map from tile to its sixteen columns' drivers (only
//! tiles with drivers exist): a search's few columns are mostly in one or two tiles, so it
//! looks a tile up once and finds the columns side by side.
//! A move is a lookup of the driver's column and a rewrite in place, or, when it crosses into
//! another column, a swap-remove there and a push here: O(1), and the structure never loosens
//! with time the way an R-tree's boxes do under in-place moves. It replaced an `rstar` R-tree
//! (`benches/geo_churn.rs`, an hour-aged index, side by side on a loaded machine: moves 4-6×
//! cheaper, 30 % less memory per driver; see BENCHMARKS for the k-NN).
//!
//! A search walks the columns of each face its radius reaches ([`face_gap`], a lower bound of
//! the chord to any point of a face: the centre's own face, and a neighbour only near a seam
//! or for a large radius), nearest column first: square rings of a face's columns around the
//! centre's indices on its axes are taken into one heap by their distance (across the face's
//! two axes, and no less than the face's gap) until, on every face, the square's edge is
//! farther than the nearest column waiting. A driver is settled (filter, haversine) once no
//! column not yet visited can be nearer, and the walk stops once the next column is beyond
//! the radius or beyond the `limit`-th driver found: a 10-NN in a city looks up the five or
//! so columns its answer spans. A search waits on memory more than it computes (a column's
//! lookup and its drivers are cache misses one after the other), which is why a column is
//! one lookup in a tile the search has usually looked up already, and why a search first
//! reads the 3 × 3 columns round its centre ahead of the walk, so that their misses overlap.
//! A search that would take in more columns than twice the number of occupied
//! columns (a huge radius, a sparse index) scans the occupied columns it has not walked
//! instead: the answer is the same, the cost bounded by a scan.
//!
//! # Guarantees
//!
//! - [`DriverIndex::nearest`] returns exactly what a scan of every driver would: the drivers
//!   that pass the filter with haversine distance ([`haversine_m`](super::haversine_m)) at most `radius_m`, nearest
//!   first, ties broken by lower [`UserId`], the first `limit` of them. The grid walk is only
//!   a way to get there: it is bounded by the chord of the radius and stops once `limit`
//!   drivers are found and no further one can be nearer.
//! - `f32` rounding of the stored vectors moves chord lengths by under 5·10⁻⁷ (about 3 m on the
//!   Earth); the search keeps going [`CHORD_SLACK`] beyond each bound, and ranks and cuts by the
//!   haversine distance between the original `f64` coordinates, so rounding never changes an
//!   answer. Cube edges are a power of two, so which column holds a vector is exact
//!   arithmetic on the stored vector, and so is its face; a face's gap and a column's
//!   distance are bounds on chords to the stored vectors themselves. (The unit tests check
//!   all this against a brute-force scan, with drivers near both poles, astride ±180° and on
//!   the faces' seams and corners, on both the ring walk and the scan; and each face's gap
//!   against the chord to points on it.)
//! - At most one entry per driver; the columns and the map always agree; no tile in the map
//!   is empty, and the count of occupied columns is exact.
//!
//! # Cost
//!
//! A move: one hash lookup of the driver, one of its column's tile, a scan of the few drivers there
//! (a column holds ~10 drivers at 60 per km²). A search: a handful of column lookups for the
//! 10 nearest in a city, plus the drivers it rejects; bytes per driver are printed by
//! `benches/geo.rs`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::f64::consts::PI;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::point::{EARTH_RADIUS_M, HaversineFrom, LatLng};
use crate::clock::Timestamp;
use crate::id::{IdHashing, UserId};

/// How far (in chord length on the unit sphere) the search goes beyond a bound, to absorb the
/// rounding of `f32` vectors (under 5·10⁻⁷, see the module docs): 2·10⁻⁶ ≈ 13 m on the Earth.
/// Larger only costs a few more candidates; smaller could miss a driver.
pub const CHORD_SLACK: f64 = 2e-6;

/// The grid's cube edge on the unit sphere: 2⁻¹⁴ (~389 m on the Earth). A power of two, so a
/// coordinate's cube index is exact. At 60 drivers per km² with 30 % refused, the 10th
/// eligible driver is ~270 m away, so a 10-NN touches the few columns around the centre and a
/// column holds ~10 drivers (a move rarely changes column). Measured against its neighbours on
/// `benches/geo_churn.rs` (BENCHMARKS.md, "Nearest under churn"): 2⁻¹⁵ (~195 m) costs 16 %
/// more instructions per search and was slower, 2⁻¹³ (~778 m) 37 % more and no faster.
pub const CELL: f64 = 1.0 / CELL_INV;
/// Cubes per unit of length: 2¹⁴.
const CELLS_PER_UNIT: i32 = 1 << 14;
const CELL_INV: f64 = CELLS_PER_UNIT as f64;
/// A cube index beyond every vector's (the sphere spans `-CELLS_PER_UNIT..=CELLS_PER_UNIT`).
const EDGE: i32 = CELLS_PER_UNIT + 1;

/// Bias of a cube index in a column's key (indices are within ±`EDGE`).
const KEY_BIAS: i64 = 1 << 20;
const KEY_MASK: u64 = (1 << 21) - 1;

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

/// A driver in its column.
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

/// Squared chord between `q` and a stored vector.
fn chord_2(q: [f64; 3], p: [f32; 3]) -> f64 {
    let d = [q[0] - f64::from(p[0]), q[1] - f64::from(p[1]), q[2] - f64::from(p[2])];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// The cube index of one coordinate (exact: `CELL` is a power of two). Rounded down by hand:
/// `f64::floor` is a library call on the baseline x86-64 target (no SSE4.1), 1.8 % of a
/// search's instructions.
fn cell_index(x: f64) -> i32 {
    let t = x * CELL_INV;
    let i = t as i32;
    if f64::from(i) > t { i - 1 } else { i }
}

/// The cube holding `point`.
fn cube_of(point: [f32; 3]) -> [i32; 3] {
    point.map(|x| cell_index(f64::from(x)))
}

/// The face of the cube map a vector lies on, `0..6`: its dominant axis (the largest
/// coordinate in magnitude, the first of equals) times two, plus one when that coordinate
/// is negative. Every point of face `2·m + n` has `±p[m] ≥ |p[j]|` for the other axes `j`
/// (the sign `+` for `n = 0`).
fn face_of(point: [f32; 3]) -> usize {
    let m = (0..3).fold(0, |best, axis| if point[axis].abs() > point[best].abs() { axis } else { best });
    2 * m + usize::from(point[m] < 0.0)
}

/// The dominant axis of face `face` and the two axes its columns are indexed by.
fn axes_of(face: usize) -> (usize, usize, usize) {
    let m = face / 2;
    (m, (m + 1) % 3, (m + 2) % 3)
}

/// A column's key in the map: its face (3 bits) and its cube indices on the face's two
/// other axes, biased, 21 bits each.
fn column_key(face: usize, ca: i32, cb: i32) -> u64 {
    let biased = |i: i32| (i64::from(i) + KEY_BIAS) as u64 & KEY_MASK;
    biased(ca) | (biased(cb) << 21) | ((face as u64) << 42)
}

/// The face and cube indices of a column's key.
fn column_of_key(key: u64) -> (usize, i32, i32) {
    let unbiased = |bits: u64| ((bits & KEY_MASK) as i64 - KEY_BIAS) as i32;
    ((key >> 42) as usize, unbiased(key), unbiased(key >> 21))
}

/// The key of the column holding `point`.
fn column_of(point: [f32; 3]) -> u64 {
    let face = face_of(point);
    let (_, a, b) = axes_of(face);
    let cube = cube_of(point);
    column_key(face, cube[a], cube[b])
}

/// Columns per tile along each of a face's two axes: 2^`TILE_BITS`.
const TILE_BITS: u32 = 2;
const TILE_MASK: i32 = (1 << TILE_BITS) - 1;
/// Columns per tile.
const TILE_COLUMNS: usize = 1 << (2 * TILE_BITS);

/// The key of the tile holding column `key` (a column key of the tile's indices), and the
/// column's slot in it.
fn tile_of(key: u64) -> (u64, usize) {
    let (face, ca, cb) = column_of_key(key);
    let slot = (ca & TILE_MASK) | ((cb & TILE_MASK) << TILE_BITS);
    (column_key(face, ca >> TILE_BITS, cb >> TILE_BITS), slot as usize)
}

/// The key of the column in `slot` of the tile `tile`.
fn column_in(tile: u64, slot: usize) -> u64 {
    let (face, ta, tb) = column_of_key(tile);
    let slot = slot as i32;
    column_key(face, (ta << TILE_BITS) | (slot & TILE_MASK), (tb << TILE_BITS) | (slot >> TILE_BITS))
}

/// A lower bound of the chord from `q` to any point of face `face` (see [`face_of`]): the
/// face lies within the half-spaces `±p[m] ≥ 0` and `±p[m] ≥ ±p[j]`, and the distance to
/// an intersection is at least the distance to each. Zero on the face of `q`.
fn face_gap(q: [f64; 3], face: usize) -> f64 {
    let (m, a, b) = axes_of(face);
    let s = if face.is_multiple_of(2) { q[m] } else { -q[m] };
    let seam = (q[a].abs().max(q[b].abs()) - s).max(0.0) * std::f64::consts::FRAC_1_SQRT_2;
    // Less a hair for the rounding of these few operations (chords of interest are ≥ 1e-9).
    ((-s).max(seam) - 1e-12).max(0.0)
}

/// Distance from `x` to the interval `[lo, hi]` (0 inside).
fn gap(x: f64, lo: f64, hi: f64) -> f64 {
    if x < lo {
        lo - x
    } else if x > hi {
        x - hi
    } else {
        0.0
    }
}

/// Hashes a column key: one multiplication, then the high half folded into the low half (the
/// table picks buckets by the low bits, which a product alone takes from the low bits of the
/// key only: one axis).
#[derive(Debug, Default, Clone, Copy)]
pub struct CellHasher(u64);

impl Hasher for CellHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type CellHashing = BuildHasherDefault<CellHasher>;

/// A tile: the 4 × 4 neighbouring columns of a face whose indices agree but for their last
/// [`TILE_BITS`], by slot ([`tile_of`]). A search's few columns are mostly in one or two
/// tiles, so it looks up a tile once and finds its columns' headers side by side.
#[derive(Debug, Clone, Default)]
struct Tile {
    columns: [Vec<Entry>; TILE_COLUMNS],
    /// How many of `columns` hold a driver (never 0 in the map).
    occupied: usize,
}

/// Online drivers by position. The module documentation of `geo::index` says how it works.
#[derive(Debug, Clone, Default)]
pub struct DriverIndex {
    /// The tiles holding a driver, by tile key ([`tile_of`]), in the table's own slots (not
    /// boxed: a lookup is one dependent read fewer). An empty column keeps its allocation
    /// while its tile lives (drivers cross a column's edge back and forth).
    tiles: HashMap<u64, Tile, CellHashing>,
    /// How many columns hold a driver.
    columns: usize,
    /// The key of each driver's column.
    by_driver: HashMap<UserId, u64, IdHashing>,
}

impl DriverIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of `drivers`. Of several entries for the same driver, the last wins. For
    /// recovery and for tests.
    pub fn from_drivers(drivers: impl IntoIterator<Item = IndexedDriver>) -> Self {
        let drivers = drivers.into_iter();
        let mut index = Self::new();
        index.by_driver.reserve(drivers.size_hint().0);
        for d in drivers {
            index.upsert(d.id, d.position, d.category, d.recorded_at);
        }
        index
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
        let key = column_of(entry.point);
        match self.by_driver.insert(driver, key) {
            // Still in its column (most moves of a few tens of metres): rewrite in place.
            Some(old_key) if old_key == key => {
                let (tile, slot) = tile_of(key);
                let found = self
                    .tiles
                    .get_mut(&tile)
                    .and_then(|tile| tile.columns[slot].iter_mut().find(|e| e.driver.id == driver));
                debug_assert!(found.is_some(), "driver {driver} was in the map but not its column");
                match found {
                    Some(found) => Some(std::mem::replace(found, entry).driver),
                    None => {
                        self.push(key, entry);
                        None
                    }
                }
            }
            old_key => {
                let previous = old_key.and_then(|old| self.take(old, driver));
                debug_assert_eq!(previous.is_some(), old_key.is_some(), "driver {driver} map and columns disagree");
                self.push(key, entry);
                previous
            }
        }
    }

    /// Adds `entry` to the column `key`.
    fn push(&mut self, key: u64, entry: Entry) {
        let (tile, slot) = tile_of(key);
        let tile = self.tiles.entry(tile).or_default();
        let column = &mut tile.columns[slot];
        if column.is_empty() {
            tile.occupied += 1;
            self.columns += 1;
        }
        column.push(entry);
    }

    /// Takes `driver` out of the column `key`, dropping the tile if it empties.
    fn take(&mut self, key: u64, driver: UserId) -> Option<IndexedDriver> {
        let (tile_key, slot) = tile_of(key);
        let tile = self.tiles.get_mut(&tile_key)?;
        let column = &mut tile.columns[slot];
        let at = column.iter().position(|e| e.driver.id == driver)?;
        let entry = column.swap_remove(at);
        if column.is_empty() {
            tile.occupied -= 1;
            self.columns -= 1;
            if tile.occupied == 0 {
                self.tiles.remove(&tile_key);
            }
        }
        Some(entry.driver)
    }

    /// The drivers of the column `key` (none if its tile holds nobody).
    fn column(&self, key: u64) -> &[Entry] {
        let (tile, slot) = tile_of(key);
        self.tiles.get(&tile).map_or(&[], |tile| &tile.columns[slot])
    }

    /// Takes `driver` out of the index (gone offline, suspended). Returns what was indexed.
    pub fn remove(&mut self, driver: UserId) -> Option<IndexedDriver> {
        let key = self.by_driver.remove(&driver)?;
        let removed = self.take(key, driver);
        debug_assert!(removed.is_some(), "driver {driver} was in the map but not its column");
        removed
    }

    /// What is indexed for `driver`.
    pub fn get(&self, driver: UserId) -> Option<IndexedDriver> {
        let key = self.by_driver.get(&driver)?;
        self.column(*key).iter().find(|e| e.driver.id == driver).map(|e| e.driver)
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
        self.tiles.values().flat_map(|tile| tile.columns.iter().flatten()).map(|e| e.driver)
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
        eligible: impl FnMut(&IndexedDriver) -> bool,
    ) -> Vec<Nearby> {
        self.nearest_within_budget(center, radius_m, limit, eligible, 2 * self.columns + 64)
    }

    /// [`DriverIndex::nearest`], walking at most `budget` grid columns before it scans every
    /// cube instead (tests force either path with it).
    fn nearest_within_budget(
        &self,
        center: LatLng,
        radius_m: f64,
        limit: usize,
        mut eligible: impl FnMut(&IndexedDriver) -> bool,
        budget: usize,
    ) -> Vec<Nearby> {
        let Some(chord) = chord_of(radius_m) else {
            return Vec::new();
        };
        if limit == 0 || self.is_empty() {
            return Vec::new();
        }
        let point = unit_vector(center);
        let q = point.map(f64::from);
        let cube = cube_of(point);
        let mut search = Search {
            radius_m,
            limit,
            q,
            bound_2: (chord + CHORD_SLACK).powi(2),
            reach_2: (chord + CHORD_SLACK).powi(2),
            // Room for the drivers found past the `limit`-th within `CHORD_SLACK` of it
            // (about one in a city: they are ranked by haversine before the cut), so the
            // answer is not reallocated in most searches; the heaps sized for a 10-NN in a
            // city (~80 candidates, ~40 columns), so they are not either.
            found: Vec::with_capacity(limit.saturating_mul(2).min(self.len()).min(1024)),
            pending: BinaryHeap::with_capacity(256),
            tile: None,
            from: HaversineFrom::new(center),
            inside_2: (chord - CHORD_SLACK).max(0.0).powi(2),
        };
        // The faces the radius reaches: the centre's, and near a seam or with a large
        // radius its neighbours. Each is walked in rings of columns round the centre's
        // indices on its axes; all their columns wait in one heap, nearest first.
        let mut faces: [Option<FaceWalk>; 6] = [None; 6];
        for (face, walk) in faces.iter_mut().enumerate() {
            let gap = face_gap(q, face);
            if gap * gap <= search.bound_2 {
                let (_, a, b) = axes_of(face);
                *walk = Some(FaceWalk { face, ca: cube[a], cb: cube[b], gap_2: gap * gap, ring: 0, unseen_2: 0.0 });
            }
        }
        {
            let face = face_of(point);
            let (_, a, b) = axes_of(face);
            self.read_ahead(face, cube[a], cube[b]);
        }
        let mut columns: BinaryHeap<Column> = BinaryHeap::with_capacity(64);
        let mut walked = 0usize;
        loop {
            // Each face's rings are added until nothing outside them is nearer than the
            // nearest column waiting (or than anything that can still matter).
            let mut over_budget = false;
            for walk in faces.iter_mut().flatten() {
                if !walk.extend(q, &mut columns, &mut walked, budget, search.reach_2()) {
                    over_budget = true;
                    break;
                }
            }
            if over_budget {
                // Finish the columns taken in, then scan every column outside the rings.
                while let Some(column) = columns.pop() {
                    self.visit_column(&mut search, column.key);
                }
                self.scan_outside(&mut search, &faces);
                search.settle(f64::INFINITY, &mut eligible);
                break;
            }
            let Some(column) = columns.pop() else {
                search.settle(f64::INFINITY, &mut eligible);
                break;
            };
            // Every column not yet visited is at least as far as this one, or outside the
            // rings of its face.
            let unseen_2 = faces.iter().flatten().fold(column.distance_2.get(), |u, w| u.min(w.unseen_2));
            if !search.settle(unseen_2, &mut eligible) {
                break;
            }
            if column.distance_2.get() > search.reach_2() {
                search.settle(f64::INFINITY, &mut eligible);
                break;
            }
            self.visit_column(&mut search, column.key);
        }
        let mut found = search.found;
        // A total order (no driver is found twice), so an unstable sort gives the same
        // answer; `found` comes nearly sorted (by chord), which insertion sort, what the
        // unstable sort does for a handful, takes in one pass.
        found.sort_unstable_by(|x, y| x.distance_m.total_cmp(&y.distance_m).then(x.driver.id.cmp(&y.driver.id)));
        found.truncate(limit);
        found
    }

    /// Reads the drivers' points of the 3 × 3 columns round (`ca`, `cb`) on `face`, the
    /// columns a search in a city visits first, before the walk does. The reads do not wait
    /// for each other, so their cache misses (the tiles, the columns' drivers) overlap where
    /// the walk, which settles each column before it looks up the next, would meet them one
    /// after another: on a machine whose caches forget an index left alone for a few tens
    /// of microseconds, that was a quarter of a search (BENCHMARKS.md, "Nearest under
    /// churn"). Reading each column's first driver only did a little less well there. What
    /// is read is only kept from the optimiser.
    fn read_ahead(&self, face: usize, ca: i32, cb: i32) {
        let mut tile: Option<(u64, Option<&Tile>)> = None;
        let mut touched = 0.0f32;
        for db in -1..=1 {
            for da in -1..=1 {
                let (tile_key, slot) = tile_of(column_key(face, ca + da, cb + db));
                let here = match tile {
                    Some((k, t)) if k == tile_key => t,
                    _ => {
                        let t = self.tiles.get(&tile_key);
                        tile = Some((tile_key, t));
                        t
                    }
                };
                for entry in here.map_or(&[][..], |t| &t.columns[slot]) {
                    touched += entry.point[0];
                }
            }
        }
        std::hint::black_box(touched);
    }

    /// Offers the drivers of the column `key`.
    fn visit_column<'a>(&'a self, search: &mut Search<'a>, key: u64) {
        let (tile_key, slot) = tile_of(key);
        let tile = match search.tile {
            Some((k, tile)) if k == tile_key => Some(tile),
            _ => {
                let tile = self.tiles.get(&tile_key);
                if let Some(tile) = tile {
                    search.tile = Some((tile_key, tile));
                }
                tile
            }
        };
        for entry in tile.map_or(&[][..], |tile| &tile.columns[slot]) {
            search.offer(entry);
        }
    }

    /// Offers every driver whose column is outside the rings its face's walk took in (all
    /// of a face not walked), unless the column is beyond reach.
    fn scan_outside<'a>(&'a self, search: &mut Search<'a>, faces: &[Option<FaceWalk>; 6]) {
        let columns = self.tiles.iter().flat_map(|(&tile, t)| {
            t.columns.iter().enumerate().filter(|(_, c)| !c.is_empty()).map(move |(slot, c)| (column_in(tile, slot), c))
        });
        for (key, cell) in columns {
            let (face, ia, ib) = column_of_key(key);
            if let Some(w) = &faces[face]
                && (ia - w.ca).abs() < w.ring
                && (ib - w.cb).abs() < w.ring
            {
                continue;
            }
            let (_, a, b) = axes_of(face);
            if column_gap_2(search.q, a, b, ia, ib) > search.reach_2() {
                continue;
            }
            for entry in cell {
                search.offer(entry);
            }
        }
    }
}

/// The squared distance from `q` to the column (`ia`, `ib`) across axes `a` and `b`: at most
/// the squared chord from `q` to any point in it.
fn column_gap_2(q: [f64; 3], a: usize, b: usize, ia: i32, ib: i32) -> f64 {
    let ga = gap(q[a], f64::from(ia) * CELL, f64::from(ia + 1) * CELL);
    let gb = gap(q[b], f64::from(ib) * CELL, f64::from(ib + 1) * CELL);
    ga * ga + gb * gb
}

/// One face's walk: square rings of columns round the centre's indices on the face's axes.
#[derive(Debug, Clone, Copy)]
struct FaceWalk {
    face: usize,
    /// The centre's cube indices on the face's two column axes ([`axes_of`]).
    ca: i32,
    cb: i32,
    /// The squared lower bound of the chord to any point of the face ([`face_gap`]).
    gap_2: f64,
    /// Rings `0..ring` are taken in.
    ring: i32,
    /// Nothing of this face outside the rings taken in is nearer than this (squared chord).
    unseen_2: f64,
}

impl FaceWalk {
    /// Takes in rings until nothing outside them is nearer than the nearest column waiting,
    /// or than `reach_2`. False when that would walk more than `budget` columns in all.
    fn extend(
        &mut self,
        q: [f64; 3],
        columns: &mut BinaryHeap<Column>,
        walked: &mut usize,
        budget: usize,
        reach_2: f64,
    ) -> bool {
        let (_, a, b) = axes_of(self.face);
        loop {
            let mut edge_2 = 0.0;
            if self.ring > 0 {
                let s = self.ring - 1;
                if [self.ca, self.cb].iter().all(|&c| c - s <= -EDGE && c + s >= EDGE) {
                    // The rings cover the whole face: nothing of it is left unseen.
                    self.unseen_2 = f64::INFINITY;
                    return true;
                }
                let edge = [(a, self.ca), (b, self.cb)]
                    .iter()
                    .map(|&(x, c)| {
                        let lo = f64::from(c - s) * CELL;
                        let hi = f64::from(c + s + 1) * CELL;
                        (q[x] - lo).min(hi - q[x])
                    })
                    .fold(f64::INFINITY, f64::min);
                edge_2 = edge * edge;
            }
            self.unseen_2 = edge_2.max(self.gap_2);
            let nearest_column = columns.peek().map_or(f64::INFINITY, |c| c.distance_2.get());
            if self.unseen_2 > nearest_column || self.unseen_2 > reach_2 {
                return true;
            }
            let ring = self.ring;
            let count = if ring == 0 { 1 } else { 8 * ring as usize };
            if *walked + count > budget {
                return false;
            }
            *walked += count;
            let mut push = |da: i32, db: i32| {
                let (ia, ib) = (self.ca + da, self.cb + db);
                let distance_2 = column_gap_2(q, a, b, ia, ib).max(self.gap_2);
                if distance_2 <= reach_2 {
                    columns.push(Column { distance_2: Chord2::new(distance_2), key: column_key(self.face, ia, ib) });
                }
            };
            if ring == 0 {
                push(0, 0);
            } else {
                for d in -ring..=ring {
                    push(d, -ring);
                    push(d, ring);
                }
                for d in -ring + 1..ring {
                    push(-ring, d);
                    push(ring, d);
                }
            }
            self.ring += 1;
        }
    }
}

/// A squared chord (or a lower bound of one) as a heap key: the bits of a non-negative,
/// non-NaN `f64`, which order as the numbers do, so the heaps compare integers (`total_cmp`
/// on the `f64`s was a tenth of a search's instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Chord2(u64);

impl Chord2 {
    /// The key of `x`, which must be `+0.0`, positive or `+∞` (every squared chord and
    /// every bound here is: sums of squares of finite numbers, and `max`es of them).
    fn new(x: f64) -> Self {
        debug_assert!(x >= 0.0 && x.is_sign_positive(), "a squared chord {x} is not a key");
        Self(x.to_bits())
    }

    fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// A column waiting to be visited: a lower bound of its squared chord from the centre
/// (across its face's two column axes, and no less than its face's gap), and its key.
struct Column {
    distance_2: Chord2,
    key: u64,
}

impl PartialEq for Column {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Column {}

impl PartialOrd for Column {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Column {
    /// Reversed, so the heap's top is the nearest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.distance_2.cmp(&self.distance_2)
    }
}

/// A driver within reach, waiting until nothing unseen can be nearer.
struct Candidate<'a> {
    chord_2: Chord2,
    entry: &'a Entry,
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate<'_> {
    /// Reversed, so the heap's top is the nearest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.chord_2.cmp(&self.chord_2)
    }
}

/// One search's state: the candidates offered and not yet settled, and the answer so far.
struct Search<'a> {
    radius_m: f64,
    limit: usize,
    q: [f64; 3],
    /// The radius's chord plus slack, squared.
    bound_2: f64,
    /// How far a driver may be and still matter, squared chord: `bound_2`, and once `limit`
    /// drivers are found no more than the chord beyond which nobody can be nearer than the
    /// farthest of them. A field, not a `min` at each use: it is read for every driver
    /// offered.
    reach_2: f64,
    found: Vec<Nearby>,
    pending: BinaryHeap<Candidate<'a>>,
    /// The tile last looked up, by key (the next column is usually in it).
    tile: Option<(u64, &'a Tile)>,
    /// Haversine from the centre.
    from: HaversineFrom,
    /// A squared chord shorter than this is within the radius whatever the `f32` rounding
    /// (it is the radius's chord less the slack): the haversine of such a driver is needed
    /// only if `eligible` takes it. Strictly shorter, so a radius of 0 has no inside.
    inside_2: f64,
}

impl<'a> Search<'a> {
    /// How far a driver may be and still matter, squared chord.
    fn reach_2(&self) -> f64 {
        self.reach_2
    }

    fn offer(&mut self, entry: &'a Entry) {
        let chord_2 = chord_2(self.q, entry.point);
        if chord_2 <= self.reach_2() {
            self.pending.push(Candidate { chord_2: Chord2::new(chord_2), entry });
        }
    }

    /// Settles, nearest first, the candidates no nearer than `unseen_2` (no driver not yet
    /// offered is nearer than that). False once the answer is complete.
    fn settle(&mut self, unseen_2: f64, eligible: &mut impl FnMut(&IndexedDriver) -> bool) -> bool {
        while let Some(top) = self.pending.peek() {
            if top.chord_2.get() > unseen_2 {
                return true;
            }
            let (chord_2, driver) = (top.chord_2.get(), top.entry.driver);
            self.pending.pop();
            if chord_2 > self.reach_2() {
                return false;
            }
            let distance_m = if chord_2 < self.inside_2 {
                if !eligible(&driver) {
                    continue;
                }
                self.from.to(driver.position)
            } else {
                let distance_m = self.from.to(driver.position);
                if distance_m > self.radius_m || !eligible(&driver) {
                    continue;
                }
                distance_m
            };
            self.found.push(Nearby { driver, distance_m });
            if self.found.len() == self.limit {
                self.reach_2 = self.reach_2.min((chord_2.sqrt() + CHORD_SLACK).powi(2));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
