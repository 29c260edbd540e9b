//! The drivers' index's search: [`DriverIndex::nearest`], the read-ahead of the columns
//! round the centre, the walk of the faces' columns nearest first, the heaps it keeps and the
//! settling of candidates; and the count that walks the same columns without ranking
//! ([`DriverIndex::count_within`]); the module documentation of `geo::index` says how it works and
//! what it guarantees. It owns no data: everything it reads is the index's.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::*;

impl DriverIndex {
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

    /// [`DriverIndex::nearest`], walking at most `budget` grid columns before it scans the
    /// occupied columns instead (tests force either path with it).
    pub(super) fn nearest_within_budget(
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
        let bound_2 = (chord + CHORD_SLACK).powi(2);
        let mut search = Search {
            radius_m,
            limit,
            q,
            bound_2,
            reach_2: bound_2,
            // Room for the drivers found past the `limit`-th within `CHORD_SLACK` of it
            // (about one in a city: they are ranked by haversine before the cut), so the
            // answer is not reallocated in most searches; the heaps sized for a 10-NN in a
            // city (~80 candidates, ~40 columns), so they are not either.
            found: Vec::with_capacity(limit.saturating_mul(2).min(self.len()).min(1024)),
            pending: BinaryHeap::with_capacity(256),
            last_tile: None,
            from: HaversineFrom::new(center),
            inside_2: (chord - CHORD_SLACK).max(0.0).powi(2),
        };
        // The faces the radius reaches: the centre's, and near a seam or with a large
        // radius its neighbours. Each is walked in rings of columns round the centre's
        // indices on its axes; all their columns wait in one heap, nearest first.
        let mut faces = FaceWalk::within(q, cube, search.bound_2);
        // The centre's own face is always walked (its gap is 0).
        if let Some(centre) = &faces[face_of(point)] {
            self.read_ahead(centre);
        }
        let mut columns: BinaryHeap<Column> = BinaryHeap::with_capacity(64);
        let mut walked = 0usize;
        loop {
            // Each face's rings are added until nothing outside them is nearer than the
            // nearest column waiting (or than anything that can still matter).
            let over_budget =
                !faces.iter_mut().flatten().all(|w| w.extend(q, &mut columns, &mut walked, budget, search.reach_2));
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
            if column.distance_2.get() > search.reach_2 {
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

    /// How many drivers for which `eligible` says yes are within `radius_m` metres of
    /// great circle (haversine) of `center`, counted up to `cap` (the answer is the smaller
    /// of the two): what [`DriverIndex::nearest`] with `cap` would return the length of,
    /// without ranking anybody. The columns are walked as the search walks them, but each
    /// driver is settled as its column is visited (no heap of candidates, no haversine for
    /// a driver well inside the radius), and the walk stops at `cap`.
    ///
    /// `eligible` is called at most once per driver, only for drivers within the radius,
    /// in no particular order, and only until `cap` are counted.
    pub fn count_within(
        &self,
        center: LatLng,
        radius_m: f64,
        cap: usize,
        eligible: impl FnMut(&IndexedDriver) -> bool,
    ) -> usize {
        self.count_within_budget(center, radius_m, cap, eligible, 2 * self.columns + 64)
    }

    /// [`DriverIndex::count_within`], walking at most `budget` grid columns before it scans
    /// the occupied columns instead (tests force either path with it).
    pub(super) fn count_within_budget(
        &self,
        center: LatLng,
        radius_m: f64,
        cap: usize,
        eligible: impl FnMut(&IndexedDriver) -> bool,
        budget: usize,
    ) -> usize {
        let Some(chord) = chord_of(radius_m) else {
            return 0;
        };
        if cap == 0 || self.is_empty() {
            return 0;
        }
        let point = unit_vector(center);
        let q = point.map(f64::from);
        let cube = cube_of(point);
        let bound_2 = (chord + CHORD_SLACK).powi(2);
        let mut count = Count {
            radius_m,
            q,
            bound_2,
            inside_2: (chord - CHORD_SLACK).max(0.0).powi(2),
            from: HaversineFrom::new(center),
            eligible,
            cap,
            counted: 0,
            last_tile: None,
        };
        let mut faces = FaceWalk::within(q, cube, bound_2);
        let mut columns: BinaryHeap<Column> = BinaryHeap::with_capacity(64);
        let mut walked = 0usize;
        // Every column within the bound, each once: the rings of each face until their edge
        // is beyond the bound (or the budget is spent, and then the scan of the rest).
        while count.counted < cap {
            let over_budget =
                !faces.iter_mut().flatten().all(|w| w.extend(q, &mut columns, &mut walked, budget, bound_2));
            if over_budget {
                while let Some(column) = columns.pop() {
                    self.count_column(&mut count, column.key);
                }
                self.scan_outside(&mut count, &faces);
                break;
            }
            let Some(column) = columns.pop() else { break };
            self.count_column(&mut count, column.key);
        }
        count.counted.min(cap)
    }

    /// Reads the drivers' points of the 3 × 3 columns round the centre on its own face
    /// (`walk`), the columns a search in a city visits first, before the walk does. The reads do not wait
    /// for each other, so their cache misses (the tiles, the columns' drivers) overlap where
    /// the walk, which settles each column before it looks up the next, would meet them one
    /// after another: on a machine whose caches forget an index left alone for a few tens
    /// of microseconds, that was a quarter of a search (BENCHMARKS.md, "Nearest under
    /// churn"). Reading each column's first driver only did a little less well there. What
    /// is read is only kept from the optimiser.
    fn read_ahead(&self, walk: &FaceWalk) {
        let mut last = None;
        let mut touched = 0.0f32;
        for db in -1..=1 {
            for da in -1..=1 {
                for entry in self.column_via(&mut last, column_key(walk.face, walk.ca + da, walk.cb + db)) {
                    touched += entry.point[0];
                }
            }
        }
        std::hint::black_box(touched);
    }

    /// Offers the drivers of the column `key` to a search. Not shared with the count
    /// ([`DriverIndex::count_column`]): made generic, the search's loop came out ~800
    /// instructions dearer (5 %: its `offer` no longer inlined the same way).
    fn visit_column<'a>(&'a self, search: &mut Search<'a>, key: u64) {
        for entry in self.column_via(&mut search.last_tile, key) {
            search.offer(entry);
        }
    }

    /// Offers the drivers of the column `key` to a count.
    fn count_column<'a, F: FnMut(&IndexedDriver) -> bool>(&'a self, count: &mut Count<'a, F>, key: u64) {
        for entry in self.column_via(&mut count.last_tile, key) {
            count.offer(entry);
        }
    }

    /// Offers every driver whose column is outside the rings its face's walk took in (all
    /// of a face not walked), unless the column is beyond reach.
    fn scan_outside<'a>(&'a self, search: &mut impl Visitor<'a>, faces: &[Option<FaceWalk>; 6]) {
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
            if column_gap_2(search.q(), a, b, ia, ib) > search.reach_2() {
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
    /// The walks of the faces within `bound_2` (squared chord) of `q`, whose cube is
    /// `cube`: each from the ring of the centre's indices on the face's axes.
    fn within(q: [f64; 3], cube: [i32; 3], bound_2: f64) -> [Option<FaceWalk>; 6] {
        let mut faces: [Option<FaceWalk>; 6] = [None; 6];
        for (face, walk) in faces.iter_mut().enumerate() {
            let gap = face_gap(q, face);
            if gap * gap <= bound_2 {
                let (_, a, b) = axes_of(face);
                *walk = Some(FaceWalk { face, ca: cube[a], cb: cube[b], gap_2: gap * gap, ring: 0, unseen_2: 0.0 });
            }
        }
        faces
    }

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
pub(super) struct Chord2(u64);

impl Chord2 {
    /// The key of `x`, which must be `+0.0`, positive or `+∞` (every squared chord and
    /// every bound here is: sums of squares of finite numbers, and `max`es of them).
    pub(super) fn new(x: f64) -> Self {
        debug_assert!(x >= 0.0 && x.is_sign_positive(), "a squared chord {x} is not a key");
        Self(x.to_bits())
    }

    pub(super) fn get(self) -> f64 {
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

/// What the scan of the columns outside the rings ([`DriverIndex::scan_outside`]) hands
/// their drivers to: a search ([`Search`]) or a count ([`Count`]).
trait Visitor<'a> {
    /// The centre, on the unit sphere.
    fn q(&self) -> [f64; 3];
    /// How far a driver may be and still matter (squared chord).
    fn reach_2(&self) -> f64;
    /// One driver of a visited column.
    fn offer(&mut self, entry: &'a Entry);
}

impl<'a> Visitor<'a> for Search<'a> {
    fn q(&self) -> [f64; 3] {
        self.q
    }

    fn reach_2(&self) -> f64 {
        self.reach_2
    }

    fn offer(&mut self, entry: &'a Entry) {
        Search::offer(self, entry);
    }
}

/// One count's state ([`DriverIndex::count_within`]).
struct Count<'a, F> {
    radius_m: f64,
    q: [f64; 3],
    /// The radius's chord plus slack, squared: nobody farther is within the radius.
    bound_2: f64,
    /// The radius's chord less the slack, squared: anybody strictly nearer is within it
    /// whatever the `f32` rounding, with no haversine to tell.
    inside_2: f64,
    from: HaversineFrom,
    eligible: F,
    cap: usize,
    counted: usize,
    last_tile: LastTile<'a>,
}

impl<'a, F: FnMut(&IndexedDriver) -> bool> Visitor<'a> for Count<'a, F> {
    fn q(&self) -> [f64; 3] {
        self.q
    }

    fn reach_2(&self) -> f64 {
        self.bound_2
    }

    #[inline(always)]
    fn offer(&mut self, entry: &'a Entry) {
        if self.counted >= self.cap {
            return;
        }
        let chord_2 = chord_2(self.q, entry.point);
        if chord_2 > self.bound_2 {
            return;
        }
        let driver = entry.driver();
        let within = chord_2 < self.inside_2 || self.from.to(driver.position) <= self.radius_m;
        if within && (self.eligible)(&driver) {
            self.counted += 1;
        }
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
    /// The tile last looked up ([`DriverIndex::column_via`]).
    last_tile: LastTile<'a>,
    /// Haversine from the centre.
    from: HaversineFrom,
    /// A squared chord shorter than this is within the radius whatever the `f32` rounding
    /// (it is the radius's chord less the slack): the haversine of such a driver is needed
    /// only if `eligible` takes it. Strictly shorter, so a radius of 0 has no inside.
    inside_2: f64,
}

impl<'a> Search<'a> {
    fn offer(&mut self, entry: &'a Entry) {
        let chord_2 = chord_2(self.q, entry.point);
        if chord_2 <= self.reach_2 {
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
            let (chord_2, driver) = (top.chord_2.get(), top.entry.driver());
            self.pending.pop();
            if chord_2 > self.reach_2 {
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
