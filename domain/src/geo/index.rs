//! The spatial index of drivers: who is nearest to a pickup.
//!
//! Owns [`DriverIndex`]: one entry per driver (position, vehicle category, time of the fix) in
//! a grid of cells over the unit sphere's 3-D space, plus a map from driver to cell so a move
//! or a removal goes straight to the driver's cell with no search by position.
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
//! Space is cut into cubes of edge [`CELL`] (2⁻¹⁴ of the Earth's radius, ~389 m); a driver
//! lives in the cube holding its vector, in a hash map from cube to the drivers in it (only
//! cubes with drivers exist: those the sphere's surface crosses, a 2-D sheet of them). A move
//! is a lookup of the driver's cube and a rewrite in place, or, when it crosses into another
//! cube, a swap-remove there and a push here: O(1), and the structure never loosens with
//! time the way an R-tree's boxes do under in-place moves. It replaced an `rstar` R-tree
//! (`benches/geo_churn.rs`, an hour-aged index, side by side on a loaded machine: moves 4-6×
//! cheaper, 30 % less memory per driver; the k-NN under churn no faster yet, see BENCHMARKS).
//!
//! A search visits grid columns along the two axes other than the centre's dominant one (the
//! sphere is a graph over them there), nearest column first: square rings of columns around
//! the centre's are taken into a heap by their distance until the square's edge is farther
//! than the nearest column waiting. In each column it looks up only the cubes the sphere
//! crosses within reach of the centre, all of them before it reads any of their drivers: a
//! search waits on memory more than it computes, and so the cache misses of a column's
//! two or three lookups overlap instead of each waiting for the last. A driver is settled (filter, haversine) once no
//! column not yet visited can be nearer, and the walk stops once the next column is beyond
//! the radius or beyond the `limit`-th driver found: a 10-NN in a city looks up the few
//! columns its radius touches. A search that would take in more columns than twice the
//! number of occupied cubes (a huge radius, a sparse index) scans the occupied cubes
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
//!   answer. Cube edges are a power of two, so which cube holds a vector is exact arithmetic;
//!   the sphere test widens the sheet by [`SPHERE_SLACK`] for vectors a rounding off unit
//!   length. (The unit tests check all this against a brute-force scan, with drivers near both
//!   poles and astride ±180°, on both the ring walk and the scan.)
//! - At most one entry per driver; the cells and the map always agree.
//!
//! # Cost
//!
//! A move: one hash lookup of the driver, one of its cube, a scan of the few drivers there
//! (a cube holds ~10 drivers at 60 per km²). A search: a few dozen cube lookups for the 10
//! nearest in a city, plus the drivers it rejects; bytes per driver are printed by
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
/// eligible driver is ~270 m away, so a 10-NN touches the 2-4 columns around the centre and a
/// cube holds ~10 drivers (a move rarely changes cube). Measured against its neighbours on
/// `benches/geo_churn.rs` (BENCHMARKS.md, "Nearest under churn"): 2⁻¹⁵ (~195 m) costs 16 %
/// more instructions per search and was slower, 2⁻¹³ (~778 m) 37 % more and no faster.
pub const CELL: f64 = 1.0 / CELL_INV;
/// Cubes per unit of length: 2¹⁴.
const CELLS_PER_UNIT: i32 = 1 << 14;
const CELL_INV: f64 = CELLS_PER_UNIT as f64;
/// A cube index beyond every vector's (the sphere spans `-CELLS_PER_UNIT..=CELLS_PER_UNIT`).
const EDGE: i32 = CELLS_PER_UNIT + 1;

/// How far off unit length (in squared norm) a stored `f32` vector may be (its rounding is
/// under 4·10⁻⁷): the sphere test of a column widens the sheet by this much.
pub const SPHERE_SLACK: f64 = 1e-5;

/// Bias of a cube index in its key (indices are within ±`EDGE`).
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

/// A driver in its cube.
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

/// A cube's key in the map: the three indices, biased, 21 bits each.
fn key_of(cube: [i32; 3]) -> u64 {
    cube.iter()
        .enumerate()
        .fold(0u64, |key, (axis, &i)| key | (((i64::from(i) + KEY_BIAS) as u64 & KEY_MASK) << (21 * axis)))
}

/// The cube of a key.
fn cube_of_key(key: u64) -> [i32; 3] {
    [0, 1, 2].map(|axis| (((key >> (21 * axis)) & KEY_MASK) as i64 - KEY_BIAS) as i32)
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

/// The smallest and largest square of a coordinate over the interval `[lo, hi]`.
fn square_range(lo: f64, hi: f64) -> (f64, f64) {
    let min = if lo <= 0.0 && hi >= 0.0 { 0.0 } else { (lo * lo).min(hi * hi) };
    (min, (lo * lo).max(hi * hi))
}

/// Hashes a cube key: one multiplication, then the high half folded into the low half (the
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

/// Online drivers by position. The module documentation of `geo::index` says how it works.
#[derive(Debug, Clone, Default)]
pub struct DriverIndex {
    /// The drivers of each occupied cube, by cube key. No cube is empty.
    cells: HashMap<u64, Vec<Entry>, CellHashing>,
    /// The key of each driver's cube.
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
        let key = key_of(cube_of(entry.point));
        match self.by_driver.insert(driver, key) {
            // Still in its cube (most moves of a few tens of metres): rewrite in place.
            Some(old_key) if old_key == key => {
                let slot = self.cells.get_mut(&key).and_then(|cell| cell.iter_mut().find(|e| e.driver.id == driver));
                debug_assert!(slot.is_some(), "driver {driver} was in the map but not its cube");
                match slot {
                    Some(slot) => Some(std::mem::replace(slot, entry).driver),
                    None => {
                        self.cells.entry(key).or_default().push(entry);
                        None
                    }
                }
            }
            old_key => {
                let previous = old_key.and_then(|old| self.take(old, driver));
                debug_assert_eq!(previous.is_some(), old_key.is_some(), "driver {driver} map and cubes disagree");
                self.cells.entry(key).or_default().push(entry);
                previous
            }
        }
    }

    /// Takes `driver` out of the cube `key`, dropping the cube if it empties.
    fn take(&mut self, key: u64, driver: UserId) -> Option<IndexedDriver> {
        let cell = self.cells.get_mut(&key)?;
        let at = cell.iter().position(|e| e.driver.id == driver)?;
        let entry = cell.swap_remove(at);
        if cell.is_empty() {
            self.cells.remove(&key);
        }
        Some(entry.driver)
    }

    /// Takes `driver` out of the index (gone offline, suspended). Returns what was indexed.
    pub fn remove(&mut self, driver: UserId) -> Option<IndexedDriver> {
        let key = self.by_driver.remove(&driver)?;
        let removed = self.take(key, driver);
        debug_assert!(removed.is_some(), "driver {driver} was in the map but not its cube");
        removed
    }

    /// What is indexed for `driver`.
    pub fn get(&self, driver: UserId) -> Option<IndexedDriver> {
        let key = self.by_driver.get(&driver)?;
        self.cells.get(key)?.iter().find(|e| e.driver.id == driver).map(|e| e.driver)
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
        self.cells.values().flatten().map(|e| e.driver)
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
        self.nearest_within_budget(center, radius_m, limit, eligible, 2 * self.cells.len() + 64)
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
        // The dominant axis `m`, and the two the columns run along.
        let m = (0..3).fold(0, |best, axis| if q[axis].abs() > q[best].abs() { axis } else { best });
        let (a, b) = ((m + 1) % 3, (m + 2) % 3);
        let mut search = Search {
            radius_m,
            limit,
            q,
            bound_2: (chord + CHORD_SLACK).powi(2),
            cutoff_2: f64::INFINITY,
            // Room for the drivers found past the `limit`-th within `CHORD_SLACK` of it
            // (about one in a city: they are ranked by haversine before the cut), so the
            // answer is not reallocated in most searches; the heaps sized for a 10-NN in a
            // city (~80 candidates, ~40 columns), so they are not either.
            found: Vec::with_capacity(limit.saturating_mul(2).min(self.len()).min(1024)),
            pending: BinaryHeap::with_capacity(256),
            from: HaversineFrom::new(center),
            inside_2: (chord - CHORD_SLACK).max(0.0).powi(2),
        };
        // Columns are visited nearest first: `columns` holds those of rings `0..ring`, and
        // rings are added until the square they fill reaches past the nearest column waiting.
        let (ca, cb) = (cube[a], cube[b]);
        let mut columns: BinaryHeap<Column> = BinaryHeap::with_capacity(64);
        let mut walked = 0usize;
        let mut ring: i32 = 0;
        loop {
            // Nothing outside the square of rings `0..ring` is nearer than `edge_2`.
            let mut edge_2 = 0.0;
            let mut all = false;
            let mut over_budget = false;
            loop {
                if ring > 0 {
                    let s = ring - 1;
                    let edge = [a, b]
                        .iter()
                        .map(|&x| {
                            let lo = f64::from(cube[x] - s) * CELL;
                            let hi = f64::from(cube[x] + s + 1) * CELL;
                            (q[x] - lo).min(hi - q[x])
                        })
                        .fold(f64::INFINITY, f64::min);
                    edge_2 = edge * edge;
                    all = [a, b].iter().all(|&x| cube[x] - s <= -EDGE && cube[x] + s >= EDGE);
                }
                let nearest_column = columns.peek().map_or(f64::INFINITY, |c| c.distance_2);
                if all || edge_2 > nearest_column || edge_2 > search.reach_2() {
                    break;
                }
                let count = if ring == 0 { 1 } else { 8 * ring as usize };
                if walked + count > budget {
                    over_budget = true;
                    break;
                }
                walked += count;
                let reach_2 = search.reach_2();
                let mut push = |da: i32, db: i32| {
                    let (ia, ib) = (ca + da, cb + db);
                    let ga = gap(q[a], f64::from(ia) * CELL, f64::from(ia + 1) * CELL);
                    let gb = gap(q[b], f64::from(ib) * CELL, f64::from(ib + 1) * CELL);
                    let distance_2 = ga * ga + gb * gb;
                    if distance_2 <= reach_2 {
                        columns.push(Column { distance_2, ca: ia, cb: ib });
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
                ring += 1;
            }
            if over_budget {
                // Finish the columns taken in, then scan every cube outside them.
                while let Some(column) = columns.pop() {
                    self.visit_column(&mut search, (m, a, b), column.ca, column.cb);
                }
                self.scan_outside(&mut search, cube, (a, b), ring);
                search.settle(f64::INFINITY, &mut eligible);
                break;
            }
            let Some(column) = columns.pop() else {
                search.settle(f64::INFINITY, &mut eligible);
                break;
            };
            // Every column not yet visited is at least as far as this one.
            let unseen_2 = if all { column.distance_2 } else { column.distance_2.min(edge_2) };
            if !search.settle(unseen_2, &mut eligible) {
                break;
            }
            if column.distance_2 > search.reach_2() {
                search.settle(f64::INFINITY, &mut eligible);
                break;
            }
            self.visit_column(&mut search, (m, a, b), column.ca, column.cb);
        }
        let mut found = search.found;
        // A total order (no driver is found twice), so an unstable sort gives the same
        // answer; `found` comes nearly sorted (by chord), which insertion sort, what the
        // unstable sort does for a handful, takes in one pass.
        found.sort_unstable_by(|x, y| x.distance_m.total_cmp(&y.distance_m).then(x.driver.id.cmp(&y.driver.id)));
        found.truncate(limit);
        found
    }

    /// Offers the drivers of column (`ca`, `cb`) along axes `a`, `b` that are in cubes the
    /// sphere crosses within reach of the centre.
    fn visit_column<'a>(&'a self, search: &mut Search<'a>, axes: (usize, usize, usize), ca: i32, cb: i32) {
        // The column's cubes are all looked up before any driver is offered: the cache
        // misses of the lookups overlap.
        let mut cells: [&[Entry]; 8] = [&[]; 8];
        let mut n = 0;
        self.cubes_of_column(search.q, axes, ca, cb, search.reach_2(), |cell| {
            if n == cells.len() {
                for entry in cells.iter().flat_map(|c| c.iter()) {
                    search.offer(entry);
                }
                n = 0;
            }
            cells[n] = cell;
            n += 1;
        });
        for entry in cells[..n].iter().flat_map(|c| c.iter()) {
            search.offer(entry);
        }
    }

    /// Calls `each` with the drivers of every occupied cube of column (`ca`, `cb`) along
    /// axes `a`, `b` that the sphere crosses within `reach_2` (squared chord) of `q`.
    fn cubes_of_column<'a>(
        &'a self,
        q: [f64; 3],
        (m, a, b): (usize, usize, usize),
        ca: i32,
        cb: i32,
        reach_2: f64,
        mut each: impl FnMut(&'a [Entry]),
    ) {
        let (a0, a1) = (f64::from(ca) * CELL, f64::from(ca + 1) * CELL);
        let (b0, b1) = (f64::from(cb) * CELL, f64::from(cb + 1) * CELL);
        let (ga, gb) = (gap(q[a], a0, a1), gap(q[b], b0, b1));
        let column_2 = ga * ga + gb * gb;
        if column_2 > reach_2 {
            return;
        }
        // The sphere over this column: |m| between `lo` and `hi`.
        let (amin, amax) = square_range(a0, a1);
        let (bmin, bmax) = square_range(b0, b1);
        let top = 1.0 + SPHERE_SLACK - amin - bmin;
        if top < 0.0 {
            return;
        }
        let hi = top.sqrt();
        let lo = (1.0 - SPHERE_SLACK - amax - bmax).max(0.0).sqrt();
        let reach = (reach_2 - column_2).sqrt();
        let (m0, m1) = (q[m] - reach, q[m] + reach);
        let sheets: [(f64, f64); 2] = if lo == 0.0 { [(-hi, hi), (1.0, -1.0)] } else { [(-hi, -lo), (lo, hi)] };
        for (s0, s1) in sheets {
            let (s0, s1) = (s0.max(m0), s1.min(m1));
            if s0 > s1 {
                continue;
            }
            for cm in cell_index(s0)..=cell_index(s1) {
                let mut cube = [0; 3];
                cube[m] = cm;
                cube[a] = ca;
                cube[b] = cb;
                if let Some(cell) = self.cells.get(&key_of(cube)) {
                    each(cell);
                }
            }
        }
    }

    /// Offers every driver whose column is not within `ring - 1` rings of the centre's (the
    /// ones the walk has not offered yet).
    fn scan_outside<'a>(&'a self, search: &mut Search<'a>, center: [i32; 3], (a, b): (usize, usize), ring: i32) {
        for (&key, cell) in &self.cells {
            let cube = cube_of_key(key);
            if (cube[a] - center[a]).abs() < ring && (cube[b] - center[b]).abs() < ring {
                continue;
            }
            let box_2: f64 = (0..3)
                .map(|x| gap(search.q[x], f64::from(cube[x]) * CELL, f64::from(cube[x] + 1) * CELL).powi(2))
                .sum();
            if box_2 > search.reach_2() {
                continue;
            }
            for entry in cell {
                search.offer(entry);
            }
        }
    }
}

/// A grid column waiting to be visited: its distance from the centre across the two column
/// axes, squared.
struct Column {
    distance_2: f64,
    ca: i32,
    cb: i32,
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
        other.distance_2.total_cmp(&self.distance_2)
    }
}

/// A driver within reach, waiting until nothing unseen can be nearer.
struct Candidate<'a> {
    chord_2: f64,
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
        other.chord_2.total_cmp(&self.chord_2)
    }
}

/// One search's state: the candidates offered and not yet settled, and the answer so far.
struct Search<'a> {
    radius_m: f64,
    limit: usize,
    q: [f64; 3],
    /// The radius's chord plus slack, squared.
    bound_2: f64,
    /// Set once `limit` drivers are found: the chord beyond which nobody can be nearer than
    /// the farthest of them, squared.
    cutoff_2: f64,
    found: Vec<Nearby>,
    pending: BinaryHeap<Candidate<'a>>,
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
        self.bound_2.min(self.cutoff_2)
    }

    fn offer(&mut self, entry: &'a Entry) {
        let chord_2 = chord_2(self.q, entry.point);
        if chord_2 <= self.reach_2() {
            self.pending.push(Candidate { chord_2, entry });
        }
    }

    /// Settles, nearest first, the candidates no nearer than `unseen_2` (no driver not yet
    /// offered is nearer than that). False once the answer is complete.
    fn settle(&mut self, unseen_2: f64, eligible: &mut impl FnMut(&IndexedDriver) -> bool) -> bool {
        while let Some(top) = self.pending.peek() {
            if top.chord_2 > unseen_2 {
                return true;
            }
            let (chord_2, driver) = (top.chord_2, top.entry.driver);
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
                self.cutoff_2 = (chord_2.sqrt() + CHORD_SLACK).powi(2);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
