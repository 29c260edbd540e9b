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
//! are kept 2 × 2 to a *tile*, in a hash map from tile to its four columns' drivers (only
//! tiles with drivers exist): a search's few columns are in a few tiles, so it looks each up
//! once and finds the columns side by side.
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
//! - [`DriverIndex::count_within`] returns the length that answer would have with `limit`
//!   the count's cap, without ranking: the same columns walked, each driver settled as its
//!   column is visited (a round counts up to 100 drivers nearby; ranking them cost 2.4 times
//!   what counting does, BENCHMARKS.md "A round's count of drivers nearby").
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

use std::collections::HashMap;
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
///
/// [`IndexedDriver`]'s fields side by side with the point, not nested: 48 bytes, where the
/// nested struct's padding made 56. A search waits on memory more than it computes, so a
/// column's drivers in fewer cache lines is what makes it faster (BENCHMARKS.md, "Nearest
/// under churn": a cosine kept per driver, 8 bytes more, saved 6 % of the instructions and
/// made searches slower).
#[derive(Debug, Clone, Copy)]
struct Entry {
    point: [f32; 3],
    category: CategoryCode,
    id: UserId,
    position: LatLng,
    recorded_at: Timestamp,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 48, "an entry is 48 bytes");

impl Entry {
    fn new(driver: IndexedDriver) -> Self {
        let IndexedDriver { id, position, category, recorded_at } = driver;
        Self { point: unit_vector(position), category, id, position, recorded_at }
    }

    /// The driver as indexed.
    fn driver(&self) -> IndexedDriver {
        IndexedDriver { id: self.id, position: self.position, category: self.category, recorded_at: self.recorded_at }
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

/// Columns per tile along each of a face's two axes: 2^`TILE_BITS`. Tiles of 4 × 4 were
/// no faster where it counts (`geo_churn` paced, alternated: p50 3.2 µs both, p99 4.7
/// against 4.6 µs; back to back 2.2 against 2.3 µs) and cost four times the memory of a
/// driver alone in its tile (~400 bytes against ~100), as in a sparse countryside.
const TILE_BITS: u32 = 1;
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

/// A tile: the 2 × 2 neighbouring columns of a face whose indices agree but for their last
/// [`TILE_BITS`], by slot ([`tile_of`]). A search's few columns are in a few tiles, so it
/// looks each up once and finds its columns' headers side by side.
#[derive(Debug, Clone, Default)]
struct Tile {
    columns: [Vec<Entry>; TILE_COLUMNS],
    /// How many of `columns` hold a driver (never 0 in the map).
    occupied: usize,
}

/// A tile looked up, by key, and what was there (see [`DriverIndex::column_via`]).
type LastTile<'a> = Option<(u64, Option<&'a Tile>)>;

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
                let found =
                    self.tiles.get_mut(&tile).and_then(|tile| tile.columns[slot].iter_mut().find(|e| e.id == driver));
                debug_assert!(found.is_some(), "driver {driver} was in the map but not its column");
                match found {
                    Some(found) => Some(std::mem::replace(found, entry).driver()),
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
        let at = column.iter().position(|e| e.id == driver)?;
        let entry = column.swap_remove(at);
        if column.is_empty() {
            tile.occupied -= 1;
            self.columns -= 1;
            if tile.occupied == 0 {
                self.tiles.remove(&tile_key);
            }
        }
        Some(entry.driver())
    }

    /// The drivers of the column `key` (none if its tile holds nobody).
    fn column(&self, key: u64) -> &[Entry] {
        self.column_via(&mut None, key)
    }

    /// [`DriverIndex::column`], through `last`: the tile looked up last, by key (`None`
    /// inside when nobody is there), which a search's next column is often in. Updated to
    /// the column's tile.
    fn column_via<'a>(&'a self, last: &mut LastTile<'a>, key: u64) -> &'a [Entry] {
        let (tile_key, slot) = tile_of(key);
        let tile = match *last {
            Some((k, tile)) if k == tile_key => tile,
            _ => {
                let tile = self.tiles.get(&tile_key);
                *last = Some((tile_key, tile));
                tile
            }
        };
        tile.map_or(&[], |tile| &tile.columns[slot])
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
        self.column(*key).iter().find(|e| e.id == driver).map(Entry::driver)
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
        self.tiles.values().flat_map(|tile| tile.columns.iter().flatten()).map(Entry::driver)
    }
}

mod search;

#[cfg(test)]
mod tests;
