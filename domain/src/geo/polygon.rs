//! Zone geometry: a GeoJSON `Polygon` or `MultiPolygon` in `[lng, lat]` degrees, parsed,
//! validated, and kept ready for point-in-polygon tests.
//!
//! Owns [`ZoneGeometry`], the only way a polygon from outside becomes a zone's shape, and
//! [`GeometryError`], which says which ring is wrong and why.
//!
//! # Guarantees
//!
//! A [`ZoneGeometry`] that exists, whether built by [`ZoneGeometry::polygon`],
//! [`ZoneGeometry::multi_polygon`] or deserialized (JSON or postcard), is valid:
//! - it has at least one polygon, each with an exterior ring and any number of holes;
//! - every position is `[lng, lat]` or `[lng, lat, altitude]` (altitude is dropped), finite,
//!   `-180 ≤ lng ≤ 180`, `-90 ≤ lat ≤ 90`;
//! - every ring has at least 4 positions, ends where it starts, has 3 or more distinct corners
//!   and a non-zero area, and is simple: it never touches or crosses itself;
//! - rings never cross one another nor share a stretch of boundary; they may touch at points;
//! - every hole lies inside its polygon's exterior ring, and no hole lies inside another;
//! - the polygons of a `MultiPolygon` never overlap (an island in another polygon's hole is
//!   fine); they may touch at points;
//! - it has at most [`MAX_POSITIONS`] positions and [`MAX_RINGS`] rings in all, so that
//!   validation and every later point test are bounded.
//!
//! Winding order is not checked (RFC 7946 §3.1.6 asks parsers not to reject on it), and
//! consecutive repeated positions are accepted and kept. Like `geo`'s own validation, the
//! check does not reject holes that touch the exterior at points in a way that cuts the
//! interior in two.
//!
//! # Planar lon/lat, and the antimeridian
//!
//! Edges are straight lines in the lon/lat plane, as in RFC 7946 and PostGIS `geometry`. An
//! edge whose longitude jumps by more than 180° is refused as crossing the antimeridian: a
//! zone astride ±180° must be sent as a `MultiPolygon` cut at the antimeridian (RFC 7946
//! §3.1.9). A ring around a pole can only be drawn that way too.
//!
//! # Why not `geo::Validation`
//!
//! `geo`'s `Validation` trait (0.33) tests every pair of a ring's edges for self-intersection:
//! O(n²), which at [`MAX_POSITIONS`] means about 10¹⁰ segment tests on an upload. The check
//! here puts the edges in an R-tree, so it is O(n log n) plus the pairs of edges whose boxes
//! overlap; it uses `geo`'s robust segment intersection and, only for rings that touch,
//! `geo`'s `Relate`. The unit tests hold it to `Validation`'s answers on random polygons.

use std::collections::BTreeSet;
use std::fmt;

use geo::coordinate_position::CoordPos;
use geo::dimensions::Dimensions;
use geo::line_intersection::{LineIntersection, line_intersection};
use geo::{ChamberlainDuquetteArea, Coord, CoordinatePosition, Line, LineString, MultiPolygon, Polygon, Rect, Relate};
use rstar::{AABB, RTree, RTreeObject};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::point::LatLng;

/// The most positions (in all rings together, closing positions included) a zone may have.
pub const MAX_POSITIONS: usize = 100_000;

/// The most rings (exterior rings and holes, in all polygons together) a zone may have.
pub const MAX_RINGS: usize = 10_000;

/// Values (numbers and arrays) a `coordinates` member may hold while it is being read: enough
/// for [`MAX_POSITIONS`] positions with altitude and [`MAX_RINGS`] rings, and no more, so a
/// hostile body is refused before it is stored.
const MAX_COORDINATE_VALUES: usize = 4 * MAX_POSITIONS + 2 * MAX_RINGS + 1;

/// `MultiPolygon` coordinates are arrays four deep; nothing valid is deeper.
const MAX_NESTING: usize = 4;

/// Which GeoJSON geometry type a zone was given as; it is serialized back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GeometryKind {
    /// `"type": "Polygon"`: one exterior ring and its holes.
    Polygon,
    /// `"type": "MultiPolygon"`: several polygons, none overlapping another.
    MultiPolygon,
}

impl GeometryKind {
    fn name(self) -> &'static str {
        match self {
            GeometryKind::Polygon => "Polygon",
            GeometryKind::MultiPolygon => "MultiPolygon",
        }
    }
}

impl fmt::Display for GeometryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a ring sits in the GeoJSON `coordinates`, for error messages.
///
/// Displayed as the JSON path plus its role: `coordinates[2] (hole 2)` for a `Polygon`,
/// `coordinates[1][0] (exterior ring of polygon 1)` for a `MultiPolygon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingRef {
    /// The geometry type the ring was given in.
    pub kind: GeometryKind,
    /// Index of the polygon (always 0 in a `Polygon`).
    pub polygon: usize,
    /// Index of the ring in its polygon: 0 is the exterior ring, 1.. are holes.
    pub ring: usize,
}

impl fmt::Display for RingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.ring) {
            (GeometryKind::Polygon, 0) => write!(f, "coordinates[0] (exterior ring)"),
            (GeometryKind::Polygon, r) => write!(f, "coordinates[{r}] (hole {r})"),
            (GeometryKind::MultiPolygon, 0) => {
                write!(f, "coordinates[{p}][0] (exterior ring of polygon {p})", p = self.polygon)
            }
            (GeometryKind::MultiPolygon, r) => {
                write!(f, "coordinates[{p}][{r}] (hole {r} of polygon {p})", p = self.polygon)
            }
        }
    }
}

/// Why a zone geometry was refused (HTTP `400 invalid_request`, with this message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// `type` is not `Polygon` or `MultiPolygon`.
    #[error("unsupported geometry type `{found}`: a zone is a GeoJSON \"Polygon\" or \"MultiPolygon\"")]
    UnsupportedType {
        /// The type given (cut to 40 characters).
        found: String,
    },
    /// `coordinates` does not have the shape the type requires.
    #[error("invalid {kind} coordinates: {reason}")]
    Malformed {
        /// The geometry type given.
        kind: GeometryKind,
        /// What is wrong with the shape.
        reason: &'static str,
    },
    /// A polygon with no rings, or a `MultiPolygon` with no polygons.
    #[error("{kind} has no {what}: a zone needs at least one exterior ring")]
    Empty {
        /// The geometry type given.
        kind: GeometryKind,
        /// `"rings"` or `"polygons"`.
        what: &'static str,
    },
    /// More positions than [`MAX_POSITIONS`].
    #[error("the geometry has {count} positions; at most {MAX_POSITIONS} are accepted")]
    TooManyPositions {
        /// Positions counted (or a lower bound, when reading stopped early).
        count: usize,
    },
    /// More rings than [`MAX_RINGS`].
    #[error("the geometry has {count} rings; at most {MAX_RINGS} are accepted")]
    TooManyRings {
        /// Rings counted.
        count: usize,
    },
    /// A position with other than 2 or 3 numbers.
    #[error("{ring}: position {position} has {count} numbers; a position is [lng, lat] or [lng, lat, altitude]")]
    PositionArity {
        /// The ring.
        ring: RingRef,
        /// Index of the position in the ring.
        position: usize,
        /// Numbers found.
        count: usize,
    },
    /// A non-finite or out-of-range coordinate.
    #[error(
        "{ring}: position {position} [{lng}, {lat}] is not a valid coordinate (need finite values, -180 <= lng <= 180 and -90 <= lat <= 90; GeoJSON order is [lng, lat])"
    )]
    InvalidCoordinate {
        /// The ring.
        ring: RingRef,
        /// Index of the position in the ring.
        position: usize,
        /// The longitude given.
        lng: f64,
        /// The latitude given.
        lat: f64,
    },
    /// A ring with fewer than 4 positions.
    #[error("{ring} has {count} positions; a ring needs at least 4 (three corners and the first repeated to close it)")]
    TooFewPositions {
        /// The ring.
        ring: RingRef,
        /// Positions found.
        count: usize,
    },
    /// A ring whose last position differs from its first.
    #[error("{ring} is not closed: its last position must equal its first")]
    UnclosedRing {
        /// The ring.
        ring: RingRef,
    },
    /// A ring with fewer than 3 distinct corners, or with no area.
    #[error("{ring} is degenerate: it needs at least 3 distinct corners enclosing a non-zero area")]
    DegenerateRing {
        /// The ring.
        ring: RingRef,
    },
    /// An edge crossing the antimeridian.
    #[error(
        "{ring}: the edge from position {position} to the next jumps more than 180 degrees of longitude, i.e. crosses the antimeridian, which zones do not support; cut the zone at +/-180 into a MultiPolygon"
    )]
    CrossesAntimeridian {
        /// The ring.
        ring: RingRef,
        /// Index of the edge's first position.
        position: usize,
    },
    /// A ring that touches or crosses itself.
    #[error("{ring} intersects itself near [{lng}, {lat}]; a ring must be simple")]
    SelfIntersection {
        /// The ring.
        ring: RingRef,
        /// Longitude of (one) intersection.
        lng: f64,
        /// Latitude of (one) intersection.
        lat: f64,
    },
    /// Two rings that cross, or share a stretch of boundary.
    #[error("{first} and {second} cross or share an edge near [{lng}, {lat}]; rings may only touch at points")]
    RingsIntersect {
        /// One ring.
        first: RingRef,
        /// The other ring.
        second: RingRef,
        /// Longitude of (one) intersection.
        lng: f64,
        /// Latitude of (one) intersection.
        lat: f64,
    },
    /// A hole not inside its polygon's exterior ring.
    #[error("{ring} is a hole but does not lie inside its polygon's exterior ring")]
    HoleOutsideShell {
        /// The hole.
        ring: RingRef,
    },
    /// Two holes of the same polygon that overlap (one inside the other, or partly).
    #[error("{first} and {second} are holes of the same polygon that overlap")]
    HolesOverlap {
        /// One hole.
        first: RingRef,
        /// The other hole.
        second: RingRef,
    },
    /// Two polygons of a `MultiPolygon` whose interiors overlap.
    #[error("polygons coordinates[{first}] and coordinates[{second}] of the MultiPolygon overlap")]
    PolygonsOverlap {
        /// Index of one polygon.
        first: usize,
        /// Index of the other polygon.
        second: usize,
    },
}

/// A validated zone shape: see the [module documentation](self) for what "valid" means.
///
/// Serializes to the GeoJSON it came from in human-readable formats (JSON), altitude and
/// `bbox` dropped; in binary formats (postcard, the WAL) to its raw rings. Both ways of
/// deserializing validate again.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneGeometry {
    kind: GeometryKind,
    shape: MultiPolygon<f64>,
    /// Bounding box of each polygon, in the order of `shape`: a point test skips polygons
    /// whose box is elsewhere.
    polygon_boxes: Vec<Rect<f64>>,
    bbox: Rect<f64>,
    south_west: LatLng,
    north_east: LatLng,
    area_m2: f64,
    positions: usize,
}

/// Positions of one ring, `[lng, lat]`.
type Ring = Vec<[f64; 2]>;

impl ZoneGeometry {
    /// A `Polygon` from its GeoJSON `coordinates`: the exterior ring, then its holes, each a
    /// list of positions `[lng, lat]` or `[lng, lat, altitude]`.
    pub fn polygon(rings: Vec<Vec<Vec<f64>>>) -> Result<Self, GeometryError> {
        Self::multi_polygon_of(GeometryKind::Polygon, vec![rings])
    }

    /// A `MultiPolygon` from its GeoJSON `coordinates`: polygons, each as in
    /// [`ZoneGeometry::polygon`].
    pub fn multi_polygon(polygons: Vec<Vec<Vec<Vec<f64>>>>) -> Result<Self, GeometryError> {
        Self::multi_polygon_of(GeometryKind::MultiPolygon, polygons)
    }

    fn multi_polygon_of(kind: GeometryKind, polygons: Vec<Vec<Vec<Vec<f64>>>>) -> Result<Self, GeometryError> {
        check_counts(polygons.iter().map(Vec::len).sum(), polygons.iter().flatten().map(Vec::len).sum())?;
        let mut rings = Vec::with_capacity(polygons.len());
        for (p, polygon) in polygons.into_iter().enumerate() {
            let mut out = Vec::with_capacity(polygon.len());
            for (r, ring) in polygon.into_iter().enumerate() {
                let at = RingRef { kind, polygon: p, ring: r };
                let mut positions = Vec::with_capacity(ring.len());
                for (i, position) in ring.into_iter().enumerate() {
                    match position[..] {
                        [lng, lat] | [lng, lat, _] => positions.push([lng, lat]),
                        _ => {
                            return Err(GeometryError::PositionArity { ring: at, position: i, count: position.len() });
                        }
                    }
                }
                out.push(positions);
            }
            rings.push(out);
        }
        Self::from_rings(kind, rings)
    }

    /// Validates `[lng, lat]` rings and builds the geometry.
    fn from_rings(kind: GeometryKind, polygons: Vec<Vec<Ring>>) -> Result<Self, GeometryError> {
        check_counts(polygons.iter().map(Vec::len).sum(), polygons.iter().flatten().map(Vec::len).sum())?;
        if polygons.is_empty() {
            return Err(GeometryError::Empty { kind, what: "polygons" });
        }
        let mut rings = Vec::new();
        for (p, polygon) in polygons.iter().enumerate() {
            if polygon.is_empty() {
                return Err(GeometryError::Empty { kind, what: "rings" });
            }
            for (r, ring) in polygon.iter().enumerate() {
                let at = RingRef { kind, polygon: p, ring: r };
                rings.push(CheckedRing::new(at, ring)?);
            }
        }
        check_topology(kind, &polygons, &rings)?;

        let shape = MultiPolygon::new(
            polygons
                .iter()
                .map(|polygon| {
                    let mut rings = polygon.iter().map(|ring| line_string(ring));
                    let exterior = rings.next().unwrap_or_else(|| LineString::new(Vec::new()));
                    Polygon::new(exterior, rings.collect())
                })
                .collect(),
        );
        let polygon_boxes: Vec<Rect<f64>> = polygons.iter().map(|p| ring_box(&p[0])).collect();
        let bbox = polygon_boxes
            .iter()
            .copied()
            .reduce(|a, b| {
                Rect::new(
                    Coord { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
                    Coord { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
                )
            })
            .unwrap_or_else(|| Rect::new(Coord { x: 0.0, y: 0.0 }, Coord { x: 0.0, y: 0.0 }));
        let area_m2 = polygons
            .iter()
            .map(|polygon| {
                let mut rings = polygon
                    .iter()
                    .map(|ring| Polygon::new(line_string(ring), Vec::new()).chamberlain_duquette_unsigned_area());
                let exterior = rings.next().unwrap_or(0.0);
                exterior - rings.sum::<f64>()
            })
            .sum();
        let positions = polygons.iter().flatten().map(Vec::len).sum();
        // Every position passed `LatLng::new`, so the box corners (their minima and maxima) do.
        let south_west = LatLng::new(bbox.min().y, bbox.min().x).map_err(|e| GeometryError::InvalidCoordinate {
            ring: rings[0].at,
            position: 0,
            lng: e.lng,
            lat: e.lat,
        })?;
        let north_east = LatLng::new(bbox.max().y, bbox.max().x).map_err(|e| GeometryError::InvalidCoordinate {
            ring: rings[0].at,
            position: 0,
            lng: e.lng,
            lat: e.lat,
        })?;
        Ok(Self { kind, shape, polygon_boxes, bbox, south_west, north_east, area_m2, positions })
    }

    /// Whether `point` is in the zone. Points on the boundary (an exterior ring or a hole's
    /// ring) count as inside; points strictly inside a hole do not.
    pub fn contains(&self, point: LatLng) -> bool {
        let c = Coord { x: point.lng(), y: point.lat() };
        // Polygon by polygon, not `MultiPolygon::coordinate_position`: its OGC "mod 2" rule
        // puts a point where two polygons touch outside both.
        self.shape
            .iter()
            .zip(&self.polygon_boxes)
            .any(|(polygon, b)| in_rect(b, c) && polygon.coordinate_position(&c) != CoordPos::Outside)
    }

    /// The geometry type it was given as.
    pub fn kind(&self) -> GeometryKind {
        self.kind
    }

    /// Area in square metres (on a sphere, by the Chamberlain–Duquette approximation), holes
    /// taken out. Used to prefer the smaller of overlapping zones.
    pub fn area_m2(&self) -> f64 {
        self.area_m2
    }

    /// Positions in all rings, closing positions included.
    pub fn position_count(&self) -> usize {
        self.positions
    }

    /// The smallest lon/lat box around the zone: `(south_west, north_east)`.
    pub fn bounding_box(&self) -> (LatLng, LatLng) {
        (self.south_west, self.north_east)
    }

    pub(crate) fn bbox_rect(&self) -> Rect<f64> {
        self.bbox
    }

    /// `[lng, lat]` rings per polygon, exterior first.
    fn raw_rings(&self) -> impl Iterator<Item = impl Iterator<Item = &LineString<f64>>> {
        self.shape.iter().map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
    }
}

fn in_rect(r: &Rect<f64>, c: Coord<f64>) -> bool {
    r.min().x <= c.x && c.x <= r.max().x && r.min().y <= c.y && c.y <= r.max().y
}

fn line_string(ring: &[[f64; 2]]) -> LineString<f64> {
    LineString::new(ring.iter().map(|&[x, y]| Coord { x, y }).collect())
}

fn ring_box(ring: &[[f64; 2]]) -> Rect<f64> {
    let mut min = Coord { x: f64::INFINITY, y: f64::INFINITY };
    let mut max = Coord { x: f64::NEG_INFINITY, y: f64::NEG_INFINITY };
    for &[x, y] in ring {
        min.x = min.x.min(x);
        min.y = min.y.min(y);
        max.x = max.x.max(x);
        max.y = max.y.max(y);
    }
    Rect::new(min, max)
}

fn check_counts(rings: usize, positions: usize) -> Result<(), GeometryError> {
    if rings > MAX_RINGS {
        return Err(GeometryError::TooManyRings { count: rings });
    }
    if positions > MAX_POSITIONS {
        return Err(GeometryError::TooManyPositions { count: positions });
    }
    Ok(())
}

/// One ring that passed the per-ring checks, with what the topology checks need.
struct CheckedRing {
    at: RingRef,
    /// The ring with consecutive repeats removed; closed (first == last).
    corners: Vec<Coord<f64>>,
    bbox: Rect<f64>,
    /// The ring alone as a polygon, for point-in-ring tests.
    area: Polygon<f64>,
}

impl CheckedRing {
    /// Per-ring checks, in the order a person fixing the data wants them: coordinates,
    /// count, closure, antimeridian, degeneracy.
    fn new(at: RingRef, ring: &[[f64; 2]]) -> Result<Self, GeometryError> {
        for (i, &[lng, lat]) in ring.iter().enumerate() {
            if LatLng::new(lat, lng).is_err() {
                return Err(GeometryError::InvalidCoordinate { ring: at, position: i, lng, lat });
            }
        }
        if ring.len() < 4 {
            return Err(GeometryError::TooFewPositions { ring: at, count: ring.len() });
        }
        if ring.first() != ring.last() {
            return Err(GeometryError::UnclosedRing { ring: at });
        }
        if let Some(i) = ring.windows(2).position(|w| (w[1][0] - w[0][0]).abs() > 180.0) {
            return Err(GeometryError::CrossesAntimeridian { ring: at, position: i });
        }
        let mut corners: Vec<Coord<f64>> = Vec::with_capacity(ring.len());
        for &[x, y] in ring {
            let c = Coord { x, y };
            if corners.last() != Some(&c) {
                corners.push(c);
            }
        }
        // Closed, so 3 distinct corners make 4 entries; a corner repeated elsewhere in the
        // ring is caught as a self-intersection.
        if corners.len() < 4 {
            return Err(GeometryError::DegenerateRing { ring: at });
        }
        let bbox = ring_box(ring);
        let area = Polygon::new(LineString::new(corners.clone()), Vec::new());
        Ok(Self { at, corners, bbox, area })
    }

    fn edge_count(&self) -> usize {
        self.corners.len() - 1
    }

    /// Whether `c` is strictly inside this ring.
    fn encloses(&self, c: Coord<f64>) -> bool {
        in_rect(&self.bbox, c) && self.area.coordinate_position(&c) == CoordPos::Inside
    }

    /// Whether every point of `other` is strictly inside this ring, given that the two rings
    /// neither touch nor cross (so one corner decides).
    fn encloses_disjoint(&self, other: &CheckedRing) -> bool {
        rect_within(&other.bbox, &self.bbox) && self.encloses(other.corners[0])
    }

    /// Shoelace area in square degrees; only its being non-zero matters.
    fn planar_area(&self) -> f64 {
        let sum: f64 = self.corners.windows(2).map(|w| w[0].x * w[1].y - w[1].x * w[0].y).sum();
        (sum / 2.0).abs()
    }
}

fn rect_within(inner: &Rect<f64>, outer: &Rect<f64>) -> bool {
    outer.min().x <= inner.min().x
        && outer.min().y <= inner.min().y
        && inner.max().x <= outer.max().x
        && inner.max().y <= outer.max().y
}

fn rects_intersect(a: &Rect<f64>, b: &Rect<f64>) -> bool {
    a.min().x <= b.max().x && b.min().x <= a.max().x && a.min().y <= b.max().y && b.min().y <= a.max().y
}

/// One edge of one ring, in the R-tree of edges.
struct Edge {
    /// Index into the list of all rings.
    ring: usize,
    /// Index of the edge within its ring (from `corners[index]` to `corners[index + 1]`).
    index: usize,
    line: Line<f64>,
}

impl RTreeObject for Edge {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        AABB::from_corners([self.line.start.x, self.line.start.y], [self.line.end.x, self.line.end.y])
    }
}

/// The checks between edges and between rings. `rings` is every ring of every polygon in
/// order; `polygons` gives the grouping.
fn check_topology(kind: GeometryKind, polygons: &[Vec<Ring>], rings: &[CheckedRing]) -> Result<(), GeometryError> {
    let touching = check_edges(rings)?;

    for ring in rings {
        if ring.planar_area() == 0.0 {
            return Err(GeometryError::DegenerateRing { ring: ring.at });
        }
    }

    // Index of each polygon's exterior ring in `rings`.
    let mut starts = Vec::with_capacity(polygons.len());
    let mut next = 0;
    for polygon in polygons {
        starts.push(next);
        next += polygon.len();
    }
    let ring_range = |p: usize| starts[p]..starts[p] + polygons[p].len();
    let touch = |a: usize, b: usize| touching.contains(&(a.min(b), a.max(b)));

    // Holes: inside their shell, not inside one another.
    for p in 0..polygons.len() {
        let range = ring_range(p);
        let shell = &rings[range.start];
        for (h, hole) in rings.iter().enumerate().take(range.end).skip(range.start + 1) {
            let inside = if touch(range.start, h) {
                shell.area.relate(&hole.area).is_contains()
            } else {
                shell.encloses_disjoint(hole)
            };
            if !inside {
                return Err(GeometryError::HoleOutsideShell { ring: hole.at });
            }
        }
        let holes: Vec<usize> = (range.start + 1..range.end).collect();
        for (a, b) in box_overlaps(&holes, |i| &rings[i].bbox) {
            let (ra, rb) = (&rings[a], &rings[b]);
            let overlap = if touch(a, b) {
                ra.area.relate(&rb.area).get(CoordPos::Inside, CoordPos::Inside) == Dimensions::TwoDimensional
            } else {
                ra.encloses_disjoint(rb) || rb.encloses_disjoint(ra)
            };
            if overlap {
                return Err(GeometryError::HolesOverlap { first: ra.at, second: rb.at });
            }
        }
    }

    if kind == GeometryKind::Polygon {
        return Ok(());
    }

    // Polygons of a MultiPolygon: interiors must not overlap.
    let polygon_of = |ring: usize| starts.partition_point(|&s| s <= ring) - 1;
    let touching_polygons: BTreeSet<(usize, usize)> = touching
        .iter()
        .map(|&(a, b)| {
            let (pa, pb) = (polygon_of(a), polygon_of(b));
            (pa.min(pb), pa.max(pb))
        })
        .filter(|(pa, pb)| pa != pb)
        .collect();
    for (sa, sb) in box_overlaps(&starts, |i| &rings[i].bbox) {
        let (pa, pb) = (polygon_of(sa), polygon_of(sb));
        let (pa, pb) = (pa.min(pb), pa.max(pb));
        let overlap = if touching_polygons.contains(&(pa, pb)) {
            let a = polygon_geometry(&rings[ring_range(pa)]);
            let b = polygon_geometry(&rings[ring_range(pb)]);
            a.relate(&b).get(CoordPos::Inside, CoordPos::Inside) == Dimensions::TwoDimensional
        } else {
            inside_shell_not_hole(&rings[ring_range(pa)], &rings[ring_range(pb)])
                || inside_shell_not_hole(&rings[ring_range(pb)], &rings[ring_range(pa)])
        };
        if overlap {
            return Err(GeometryError::PolygonsOverlap { first: pa, second: pb });
        }
    }
    Ok(())
}

/// Whether polygon `inner` (its rings, shell first) overlaps polygon `outer`, given that no
/// ring of one touches a ring of the other: it does when its shell lies inside `outer`'s shell
/// but in none of `outer`'s holes.
fn inside_shell_not_hole(inner: &[CheckedRing], outer: &[CheckedRing]) -> bool {
    let shell = &inner[0];
    outer[0].encloses_disjoint(shell) && !outer[1..].iter().any(|h| h.encloses_disjoint(shell))
}

fn polygon_geometry(rings: &[CheckedRing]) -> Polygon<f64> {
    Polygon::new(rings[0].area.exterior().clone(), rings[1..].iter().map(|r| r.area.exterior().clone()).collect())
}

/// Pairs `(a, b)`, `a < b`, of `items` whose boxes intersect: sort by west edge, sweep east.
fn box_overlaps<'a>(items: &[usize], bbox: impl Fn(usize) -> &'a Rect<f64>) -> Vec<(usize, usize)> {
    let mut sorted = items.to_vec();
    sorted.sort_by(|&a, &b| bbox(a).min().x.total_cmp(&bbox(b).min().x));
    let mut pairs = Vec::new();
    for (i, &a) in sorted.iter().enumerate() {
        let ba = bbox(a);
        for &b in &sorted[i + 1..] {
            let bb = bbox(b);
            if bb.min().x > ba.max().x {
                break;
            }
            if rects_intersect(ba, bb) {
                pairs.push((a.min(b), a.max(b)));
            }
        }
    }
    pairs
}

/// Every pair of edges whose boxes overlap, tested with `geo`'s robust intersection: refuses
/// self-intersections and rings that cross or share a stretch of boundary; returns the pairs
/// of rings (`a < b`, indexes into `rings`) that touch at points.
fn check_edges(rings: &[CheckedRing]) -> Result<BTreeSet<(usize, usize)>, GeometryError> {
    let edges: Vec<Edge> = rings
        .iter()
        .enumerate()
        .flat_map(|(r, ring)| {
            ring.corners.windows(2).enumerate().map(move |(i, w)| Edge {
                ring: r,
                index: i,
                line: Line::new(w[0], w[1]),
            })
        })
        .collect();
    let tree = RTree::bulk_load(edges);
    let mut touching = BTreeSet::new();
    for e in tree.iter() {
        for f in tree.locate_in_envelope_intersecting(e.envelope()) {
            if (f.ring, f.index) <= (e.ring, e.index) {
                continue;
            }
            let Some(hit) = line_intersection(e.line, f.line) else {
                continue;
            };
            let at = match hit {
                LineIntersection::SinglePoint { intersection, .. } => intersection,
                LineIntersection::Collinear { intersection } => intersection.start,
            };
            if e.ring == f.ring {
                let n = rings[e.ring].edge_count();
                let adjacent = f.index == e.index + 1 || (e.index == 0 && f.index == n - 1);
                // Neighbouring edges meet at their shared corner; any other contact, or a
                // neighbour folding back along the edge (a spike), is a self-intersection.
                let fine = adjacent && matches!(hit, LineIntersection::SinglePoint { .. });
                if !fine {
                    return Err(GeometryError::SelfIntersection { ring: rings[e.ring].at, lng: at.x, lat: at.y });
                }
            } else {
                match hit {
                    LineIntersection::SinglePoint { is_proper: false, .. } => {
                        touching.insert((e.ring, f.ring));
                    }
                    _ => {
                        return Err(GeometryError::RingsIntersect {
                            first: rings[e.ring].at,
                            second: rings[f.ring].at,
                            lng: at.x,
                            lat: at.y,
                        });
                    }
                }
            }
        }
    }
    Ok(touching)
}

// ---------------------------------------------------------------------------------------
// serde

struct RingSer<'a>(&'a LineString<f64>);

impl Serialize for RingSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.0.len()))?;
        for c in &self.0.0 {
            seq.serialize_element(&[c.x, c.y])?;
        }
        seq.end()
    }
}

struct PolygonSer<'a>(&'a Polygon<f64>);

impl Serialize for PolygonSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(1 + self.0.interiors().len()))?;
        seq.serialize_element(&RingSer(self.0.exterior()))?;
        for hole in self.0.interiors() {
            seq.serialize_element(&RingSer(hole))?;
        }
        seq.end()
    }
}

struct PolygonsSer<'a>(&'a MultiPolygon<f64>);

impl Serialize for PolygonsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.0.len()))?;
        for polygon in self.0.iter() {
            seq.serialize_element(&PolygonSer(polygon))?;
        }
        seq.end()
    }
}

/// The binary form: raw `[lng, lat]` rings, validated again when read.
#[derive(Serialize, Deserialize)]
enum Compact {
    Polygon(Vec<Ring>),
    MultiPolygon(Vec<Vec<Ring>>),
}

impl Serialize for ZoneGeometry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut st = s.serialize_struct("Geometry", 2)?;
            st.serialize_field("type", self.kind.name())?;
            match self.kind {
                GeometryKind::Polygon => match self.shape.0.first() {
                    Some(p) => st.serialize_field("coordinates", &PolygonSer(p))?,
                    None => st.serialize_field("coordinates", &[(); 0])?,
                },
                GeometryKind::MultiPolygon => st.serialize_field("coordinates", &PolygonsSer(&self.shape))?,
            }
            st.end()
        } else {
            let polygons: Vec<Vec<Ring>> = self
                .raw_rings()
                .map(|rings| rings.map(|ring| ring.0.iter().map(|c| [c.x, c.y]).collect()).collect())
                .collect();
            match self.kind {
                GeometryKind::Polygon => Compact::Polygon(polygons.into_iter().next().unwrap_or_default()),
                GeometryKind::MultiPolygon => Compact::MultiPolygon(polygons),
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ZoneGeometry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_map(GeoJsonVisitor)
        } else {
            let (kind, polygons) = match Compact::deserialize(d)? {
                Compact::Polygon(rings) => (GeometryKind::Polygon, vec![rings]),
                Compact::MultiPolygon(polygons) => (GeometryKind::MultiPolygon, polygons),
            };
            ZoneGeometry::from_rings(kind, polygons).map_err(de::Error::custom)
        }
    }
}

struct GeoJsonVisitor;

impl<'de> Visitor<'de> for GeoJsonVisitor {
    type Value = ZoneGeometry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON Polygon or MultiPolygon object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ZoneGeometry, A::Error> {
        let mut kind: Option<String> = None;
        let mut coordinates: Option<Nested> = None;
        let budget = std::cell::Cell::new(0usize);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" if kind.is_none() => kind = Some(map.next_value()?),
                "coordinates" if coordinates.is_none() => {
                    coordinates = Some(map.next_value_seed(NestedSeed { depth: 0, budget: &budget })?)
                }
                // RFC 7946 §5: a geometry may carry a bounding box; it is recomputed.
                "bbox" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "type" | "coordinates" => {
                    return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                }
                other => {
                    return Err(de::Error::unknown_field(other, &["type", "coordinates", "bbox"]));
                }
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        let coordinates = coordinates.ok_or_else(|| de::Error::missing_field("coordinates"))?;
        from_nested(&kind, coordinates).map_err(de::Error::custom)
    }
}

/// A GeoJSON `coordinates` value read before its `type` is known (members come in any order).
enum Nested {
    Number(f64),
    List(Vec<Nested>),
}

/// Reads a [`Nested`], refusing nesting deeper than a `MultiPolygon`'s and more values than
/// [`MAX_COORDINATE_VALUES`].
struct NestedSeed<'a> {
    depth: usize,
    budget: &'a std::cell::Cell<usize>,
}

impl NestedSeed<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let used = self.budget.get() + 1;
        self.budget.set(used);
        if used > MAX_COORDINATE_VALUES {
            Err(E::custom(GeometryError::TooManyPositions { count: MAX_POSITIONS + 1 }))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for NestedSeed<'_> {
    type Value = Nested;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Nested, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NestedSeed<'_> {
    type Value = Nested;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nested arrays of numbers")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Nested, E> {
        self.spend()?;
        Ok(Nested::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Nested, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Nested, E> {
        self.visit_f64(v as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nested, A::Error> {
        self.spend()?;
        if self.depth >= MAX_NESTING {
            return Err(de::Error::custom("coordinates are nested deeper than a MultiPolygon's"));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NestedSeed { depth: self.depth + 1, budget: self.budget })? {
            items.push(item);
        }
        Ok(Nested::List(items))
    }
}

fn from_nested(kind: &str, coordinates: Nested) -> Result<ZoneGeometry, GeometryError> {
    match kind {
        "Polygon" => {
            let shape = GeometryKind::Polygon;
            let rings = list(coordinates, shape, "coordinates must be an array of rings")?;
            ZoneGeometry::polygon(rings_of(rings, shape)?)
        }
        "MultiPolygon" => {
            let shape = GeometryKind::MultiPolygon;
            let polygons = list(coordinates, shape, "coordinates must be an array of polygons")?;
            let polygons = polygons
                .into_iter()
                .map(|p| rings_of(list(p, shape, "each polygon must be an array of rings")?, shape))
                .collect::<Result<_, _>>()?;
            ZoneGeometry::multi_polygon(polygons)
        }
        other => Err(GeometryError::UnsupportedType { found: other.chars().take(40).collect() }),
    }
}

fn list(value: Nested, kind: GeometryKind, reason: &'static str) -> Result<Vec<Nested>, GeometryError> {
    match value {
        Nested::List(items) => Ok(items),
        Nested::Number(_) => Err(GeometryError::Malformed { kind, reason }),
    }
}

fn rings_of(rings: Vec<Nested>, kind: GeometryKind) -> Result<Vec<Vec<Vec<f64>>>, GeometryError> {
    rings
        .into_iter()
        .map(|ring| {
            list(ring, kind, "each ring must be an array of positions")?
                .into_iter()
                .map(|position| {
                    list(position, kind, "each position must be an array of numbers")?
                        .into_iter()
                        .map(|n| match n {
                            Nested::Number(v) => Ok(v),
                            Nested::List(_) => {
                                Err(GeometryError::Malformed { kind, reason: "a position holds numbers, not arrays" })
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Validation;
    use proptest::prelude::*;

    /// A closed axis-aligned rectangle ring, counter-clockwise.
    fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<Vec<f64>> {
        vec![vec![x0, y0], vec![x1, y0], vec![x1, y1], vec![x0, y1], vec![x0, y0]]
    }

    fn ring(points: &[[f64; 2]]) -> Vec<Vec<f64>> {
        points.iter().map(|p| p.to_vec()).collect()
    }

    fn at(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).expect("test coordinates are valid")
    }

    fn ring_ref(polygon: usize, ring: usize) -> RingRef {
        RingRef { kind: GeometryKind::Polygon, polygon, ring }
    }

    fn json(s: &str) -> Result<ZoneGeometry, String> {
        serde_json::from_str::<ZoneGeometry>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn polygon_with_hole_contains_by_boundary_rule() {
        let zone = ZoneGeometry::polygon(vec![rect(0.0, 0.0, 10.0, 10.0), rect(4.0, 4.0, 6.0, 6.0)])
            .expect("valid polygon with a hole");
        assert_eq!(zone.kind(), GeometryKind::Polygon);
        assert_eq!(zone.position_count(), 10);
        assert!(zone.contains(at(1.0, 1.0)));
        assert!(!zone.contains(at(5.0, 5.0)), "a point in the hole is outside");
        assert!(zone.contains(at(4.0, 5.0)), "the hole's ring is boundary, so inside");
        assert!(zone.contains(at(0.0, 3.0)), "the exterior ring is boundary, so inside");
        assert!(zone.contains(at(10.0, 10.0)), "a corner is boundary");
        assert!(!zone.contains(at(11.0, 5.0)));
        assert!(!zone.contains(at(5.0, -0.0001)));
        let (sw, ne) = zone.bounding_box();
        assert_eq!((sw.lat(), sw.lng(), ne.lat(), ne.lng()), (0.0, 0.0, 10.0, 10.0));
        // 10° × 10° near the equator, less a 2° × 2° hole: about 1.2e12 - 4.9e10 m².
        assert!((1.1e12..1.3e12).contains(&zone.area_m2()), "{}", zone.area_m2());
    }

    #[test]
    fn clockwise_rings_and_repeated_positions_are_accepted() {
        let shell = ring(&[[0.0, 0.0], [0.0, 5.0], [5.0, 5.0], [5.0, 5.0], [5.0, 0.0], [0.0, 0.0]]);
        let zone = ZoneGeometry::polygon(vec![shell]).expect("clockwise with a repeat");
        assert!(zone.contains(at(2.0, 2.0)));
        assert_eq!(zone.position_count(), 6);
    }

    #[test]
    fn refuses_unknown_type() {
        let err = json(r#"{"type":"Point","coordinates":[1,2]}"#).unwrap_err();
        assert!(err.contains("unsupported geometry type `Point`"), "{err}");
        let err = json(r#"{"type":"LineString","coordinates":[[1,2],[3,4]]}"#).unwrap_err();
        assert!(err.contains("unsupported geometry type"), "{err}");
    }

    #[test]
    fn refuses_rings_with_fewer_than_four_positions() {
        let err = ZoneGeometry::polygon(vec![ring(&[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])]).unwrap_err();
        assert_eq!(err, GeometryError::TooFewPositions { ring: ring_ref(0, 0), count: 3 });
        assert!(err.to_string().starts_with("coordinates[0] (exterior ring) has 3 positions"));
    }

    #[test]
    fn refuses_unclosed_rings() {
        let err = ZoneGeometry::polygon(vec![
            rect(0.0, 0.0, 10.0, 10.0),
            ring(&[[1.0, 1.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0]]),
        ])
        .unwrap_err();
        assert_eq!(err, GeometryError::UnclosedRing { ring: ring_ref(0, 1) });
        assert_eq!(err.to_string(), "coordinates[1] (hole 1) is not closed: its last position must equal its first");
    }

    #[test]
    fn refuses_non_finite_and_out_of_range_coordinates() {
        for (bad, position) in [([f64::NAN, 1.0], 1), ([1.0, f64::INFINITY], 1), ([180.5, 1.0], 1), ([1.0, -90.5], 1)] {
            let mut shell = rect(0.0, 0.0, 1.0, 1.0);
            shell[position] = bad.to_vec();
            let err = ZoneGeometry::polygon(vec![shell]).unwrap_err();
            assert!(matches!(err, GeometryError::InvalidCoordinate { position: 1, .. }), "{bad:?}: {err}");
        }
        // [lat, lng] order by mistake: 91 is no latitude.
        let err = json(r#"{"type":"Polygon","coordinates":[[[30,91],[30.5,91],[30.5,91.5],[30,91]]]}"#).unwrap_err();
        assert!(err.contains("position 0 [30, 91] is not a valid coordinate"), "{err}");
    }

    #[test]
    fn positions_take_two_or_three_numbers_and_altitude_is_dropped() {
        let err = json(r#"{"type":"Polygon","coordinates":[[[0,0],[1],[1,1],[0,0]]]}"#).unwrap_err();
        assert!(err.contains("position 1 has 1 numbers"), "{err}");
        let err = json(r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1,5,6],[0,0]]]}"#).unwrap_err();
        assert!(err.contains("position 2 has 4 numbers"), "{err}");
        let zone = json(r#"{"type":"Polygon","coordinates":[[[0,0,9],[1,0,9],[1,1,9],[0,0,9]]]}"#)
            .expect("altitude is allowed");
        assert_eq!(
            serde_json::to_string(&zone).expect("serializes"),
            r#"{"type":"Polygon","coordinates":[[[0.0,0.0],[1.0,0.0],[1.0,1.0],[0.0,0.0]]]}"#
        );
    }

    #[test]
    fn refuses_self_intersecting_rings() {
        // A bow tie.
        let err = ZoneGeometry::polygon(vec![ring(&[[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])])
            .unwrap_err();
        assert_eq!(err, GeometryError::SelfIntersection { ring: ring_ref(0, 0), lng: 1.0, lat: 1.0 });
        assert!(err.to_string().contains("intersects itself near [1, 1]"));
        // A spike: the ring goes out along an edge and comes back on itself.
        let err = ZoneGeometry::polygon(vec![ring(&[
            [0.0, 0.0],
            [4.0, 0.0],
            [6.0, 0.0],
            [4.0, 0.0],
            [4.0, 4.0],
            [0.0, 0.0],
        ])])
        .unwrap_err();
        assert!(matches!(err, GeometryError::SelfIntersection { .. }), "{err}");
        // Touching itself at one corner (an "inverted hole") is not simple either.
        let err = ZoneGeometry::polygon(vec![ring(&[
            [0.0, 0.0],
            [4.0, 0.0],
            [2.0, 2.0],
            [3.0, 3.0],
            [1.0, 3.0],
            [2.0, 2.0],
            [0.0, 4.0],
            [0.0, 0.0],
        ])])
        .unwrap_err();
        assert!(matches!(err, GeometryError::SelfIntersection { .. }), "{err}");
    }

    #[test]
    fn refuses_degenerate_rings() {
        let err = ZoneGeometry::polygon(vec![ring(&[[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])]).unwrap_err();
        assert_eq!(err, GeometryError::DegenerateRing { ring: ring_ref(0, 0) });
        // Collinear corners fold back on themselves.
        let err = ZoneGeometry::polygon(vec![ring(&[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])]).unwrap_err();
        assert!(matches!(err, GeometryError::SelfIntersection { .. } | GeometryError::DegenerateRing { .. }), "{err}");
    }

    #[test]
    fn refuses_holes_outside_or_across_their_shell() {
        let shell = rect(0.0, 0.0, 10.0, 10.0);
        let err = ZoneGeometry::polygon(vec![shell.clone(), rect(20.0, 20.0, 21.0, 21.0)]).unwrap_err();
        assert_eq!(err, GeometryError::HoleOutsideShell { ring: ring_ref(0, 1) });
        assert_eq!(
            err.to_string(),
            "coordinates[1] (hole 1) is a hole but does not lie inside its polygon's exterior ring"
        );
        // The shell inside the "hole": wrong way round.
        let err = ZoneGeometry::polygon(vec![rect(4.0, 4.0, 6.0, 6.0), shell.clone()]).unwrap_err();
        assert_eq!(err, GeometryError::HoleOutsideShell { ring: ring_ref(0, 1) });
        // Crossing the shell.
        let err = ZoneGeometry::polygon(vec![shell.clone(), rect(8.0, 8.0, 12.0, 12.0)]).unwrap_err();
        assert!(matches!(err, GeometryError::RingsIntersect { .. }), "{err}");
        // Sharing a stretch of the shell's edge.
        let err = ZoneGeometry::polygon(vec![shell.clone(), rect(0.0, 2.0, 2.0, 4.0)]).unwrap_err();
        assert!(matches!(err, GeometryError::RingsIntersect { .. }), "{err}");
        // Touching the shell at one point from inside is fine (OGC).
        let touching = ring(&[[0.0, 5.0], [2.0, 4.0], [2.0, 6.0], [0.0, 5.0]]);
        let zone = ZoneGeometry::polygon(vec![shell.clone(), touching]).expect("touching hole");
        assert!(!zone.contains(at(5.0, 1.5)));
        // Touching at one point but lying outside.
        let outside = ring(&[[10.0, 5.0], [12.0, 4.0], [12.0, 6.0], [10.0, 5.0]]);
        let err = ZoneGeometry::polygon(vec![shell, outside]).unwrap_err();
        assert_eq!(err, GeometryError::HoleOutsideShell { ring: ring_ref(0, 1) });
    }

    #[test]
    fn refuses_overlapping_holes() {
        let shell = rect(0.0, 0.0, 10.0, 10.0);
        let err =
            ZoneGeometry::polygon(vec![shell.clone(), rect(1.0, 1.0, 5.0, 5.0), rect(2.0, 2.0, 3.0, 3.0)]).unwrap_err();
        assert!(matches!(err, GeometryError::HolesOverlap { .. }), "{err}");
        let err =
            ZoneGeometry::polygon(vec![shell.clone(), rect(1.0, 1.0, 5.0, 5.0), rect(4.0, 4.0, 6.0, 6.0)]).unwrap_err();
        assert!(matches!(err, GeometryError::RingsIntersect { .. }), "{err}");
        ZoneGeometry::polygon(vec![shell, rect(1.0, 1.0, 2.0, 2.0), rect(2.0, 2.0, 3.0, 3.0)])
            .expect("holes touching at a corner");
    }

    #[test]
    fn multipolygons_must_not_overlap() {
        let a = vec![rect(0.0, 0.0, 4.0, 4.0)];
        let err = ZoneGeometry::multi_polygon(vec![a.clone(), vec![rect(2.0, 2.0, 6.0, 6.0)]]).unwrap_err();
        assert!(matches!(err, GeometryError::RingsIntersect { .. }), "{err}");
        let err = ZoneGeometry::multi_polygon(vec![a.clone(), vec![rect(1.0, 1.0, 2.0, 2.0)]]).unwrap_err();
        assert_eq!(err, GeometryError::PolygonsOverlap { first: 0, second: 1 });
        assert_eq!(err.to_string(), "polygons coordinates[0] and coordinates[1] of the MultiPolygon overlap");
        // An island in a lake is fine, and the lake is outside both.
        let lake = vec![rect(0.0, 0.0, 10.0, 10.0), rect(2.0, 2.0, 8.0, 8.0)];
        let island = vec![rect(4.0, 4.0, 6.0, 6.0)];
        let zone = ZoneGeometry::multi_polygon(vec![lake.clone(), island]).expect("island");
        assert!(zone.contains(at(5.0, 5.0)));
        assert!(!zone.contains(at(3.0, 3.0)));
        assert!(zone.contains(at(1.0, 1.0)));
        // Two squares touching at a corner: the corner is in the zone.
        let zone = ZoneGeometry::multi_polygon(vec![a, vec![rect(4.0, 4.0, 8.0, 8.0)]]).expect("touching at a point");
        assert!(zone.contains(at(4.0, 4.0)));
        assert_eq!(zone.kind(), GeometryKind::MultiPolygon);
    }

    #[test]
    fn refuses_antimeridian_crossings_and_accepts_the_cut_form() {
        let err = ZoneGeometry::polygon(vec![ring(&[
            [179.0, 0.0],
            [-179.0, 0.0],
            [-179.0, 1.0],
            [179.0, 1.0],
            [179.0, 0.0],
        ])])
        .unwrap_err();
        assert_eq!(err, GeometryError::CrossesAntimeridian { ring: ring_ref(0, 0), position: 0 });
        let zone =
            ZoneGeometry::multi_polygon(vec![vec![rect(179.0, 0.0, 180.0, 1.0)], vec![rect(-180.0, 0.0, -179.0, 1.0)]])
                .expect("cut at the antimeridian");
        assert!(zone.contains(at(0.5, 179.5)));
        assert!(zone.contains(at(0.5, -179.5)));
        assert!(zone.contains(at(0.5, 180.0)));
        assert!(!zone.contains(at(0.5, 0.0)));
    }

    #[test]
    fn refuses_empty_and_malformed_coordinates() {
        assert_eq!(
            ZoneGeometry::polygon(vec![]).unwrap_err(),
            GeometryError::Empty { kind: GeometryKind::Polygon, what: "rings" }
        );
        assert_eq!(
            ZoneGeometry::multi_polygon(vec![]).unwrap_err(),
            GeometryError::Empty { kind: GeometryKind::MultiPolygon, what: "polygons" }
        );
        for (body, needle) in [
            (r#"{"type":"Polygon","coordinates":[1,2]}"#, "each ring must be an array"),
            (r#"{"type":"Polygon","coordinates":5}"#, "must be an array of rings"),
            (r#"{"type":"Polygon","coordinates":[[[[0,0]]]]}"#, "a position holds numbers, not arrays"),
            (r#"{"type":"MultiPolygon","coordinates":[[[[[0,0]]]]]}"#, "nested deeper than a MultiPolygon"),
            (r#"{"type":"Polygon","coordinates":[[["a",0]]]}"#, "nested arrays of numbers"),
            (r#"{"type":"Polygon"}"#, "missing field `coordinates`"),
            (r#"{"coordinates":[]}"#, "missing field `type`"),
            (r#"{"type":"Polygon","type":"Polygon","coordinates":[]}"#, "duplicate field `type`"),
            (r#"{"type":"Polygon","coordinates":[],"extra":1}"#, "unknown field `extra`"),
        ] {
            let err = json(body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        // A GeoJSON bbox member is allowed and recomputed.
        json(r#"{"type":"Polygon","bbox":[0,0,1,1],"coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#).expect("bbox member");
    }

    /// A closed ring of `n` corners on a circle.
    fn circle(n: usize, cx: f64, cy: f64, r: f64) -> Vec<Vec<f64>> {
        let mut ring: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                vec![cx + r * a.cos(), cy + r * a.sin()]
            })
            .collect();
        ring.push(ring[0].clone());
        ring
    }

    #[test]
    fn vertex_and_ring_bounds_hold() {
        let big = circle(MAX_POSITIONS - 1, 31.2, 30.0, 0.5);
        let started = std::time::Instant::now();
        let zone = ZoneGeometry::polygon(vec![big]).expect("the largest allowed ring");
        assert_eq!(zone.position_count(), MAX_POSITIONS);
        assert!(zone.contains(at(30.0, 31.2)));
        // Generous for an unoptimized test build; the point is: not quadratic.
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());

        let err = ZoneGeometry::polygon(vec![circle(MAX_POSITIONS, 31.2, 30.0, 0.5)]).unwrap_err();
        assert_eq!(err, GeometryError::TooManyPositions { count: MAX_POSITIONS + 1 });
        let many: Vec<Vec<Vec<Vec<f64>>>> =
            (0..=MAX_RINGS).map(|i| vec![rect(i as f64 * 0.01, 0.0, i as f64 * 0.01 + 0.005, 0.005)]).collect();
        assert_eq!(
            ZoneGeometry::multi_polygon(many).unwrap_err(),
            GeometryError::TooManyRings { count: MAX_RINGS + 1 }
        );
        // A hostile body is cut off while being read, before it is all in memory.
        let mut body = String::from(r#"{"type":"Polygon","coordinates":[["#);
        for i in 0..=MAX_POSITIONS * 2 {
            if i > 0 {
                body.push(',');
            }
            body.push_str("[0,0]");
        }
        body.push_str("]]}");
        let err = json(&body).unwrap_err();
        assert!(err.contains("at most 100000 are accepted"), "{err}");
    }

    #[test]
    fn json_round_trip_keeps_the_shape() {
        for body in [
            r#"{"type":"Polygon","coordinates":[[[31.0,29.9],[31.5,29.9],[31.5,30.3],[31.0,30.3],[31.0,29.9]],[[31.1,30.0],[31.2,30.0],[31.2,30.1],[31.1,30.0]]]}"#,
            r#"{"type":"MultiPolygon","coordinates":[[[[0.0,0.0],[1.0,0.0],[1.0,1.0],[0.0,0.0]]],[[[2.0,2.0],[3.0,2.0],[3.0,3.0],[2.0,2.0]]]]}"#,
        ] {
            let zone = json(body).expect("valid");
            let text = serde_json::to_string(&zone).expect("serializes");
            assert_eq!(text, body);
            assert_eq!(json(&text).expect("reparses"), zone);
        }
    }

    #[test]
    fn postcard_round_trip_validates_again() {
        let zones = [
            ZoneGeometry::polygon(vec![rect(0.0, 0.0, 10.0, 10.0), rect(4.0, 4.0, 6.0, 6.0)]),
            ZoneGeometry::multi_polygon(vec![vec![rect(179.0, 0.0, 180.0, 1.0)], vec![rect(-180.0, 0.0, -179.0, 1.0)]]),
        ];
        for zone in zones {
            let zone = zone.expect("valid");
            let bytes = postcard::to_allocvec(&zone).expect("serializes");
            let back: ZoneGeometry = postcard::from_bytes(&bytes).expect("deserializes");
            assert_eq!(back, zone);
        }
        // A record holding a bow tie is refused on the way in, not trusted.
        let bow_tie = Compact::Polygon(vec![vec![[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]]);
        let bytes = postcard::to_allocvec(&bow_tie).expect("serializes");
        assert!(postcard::from_bytes::<ZoneGeometry>(&bytes).is_err());
    }

    fn closed(points: &[(f64, f64)]) -> Vec<Vec<f64>> {
        let mut ring: Vec<Vec<f64>> = points.iter().map(|&(x, y)| vec![x, y]).collect();
        ring.push(ring[0].clone());
        ring
    }

    fn geo_polygon(rings: &[Vec<Vec<f64>>]) -> Polygon<f64> {
        let ls = |r: &Vec<Vec<f64>>| LineString::new(r.iter().map(|p| Coord { x: p[0], y: p[1] }).collect());
        Polygon::new(ls(&rings[0]), rings[1..].iter().map(ls).collect())
    }

    fn points(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(f64, f64)>> {
        prop::collection::vec((0.0..10.0f64, 0.0..10.0f64), n)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// On random (generic) polygons with up to two holes, this validation and `geo`'s
        /// `Validation` (the O(n²) reference) agree.
        #[test]
        fn agrees_with_geo_validation_on_polygons(
            shell in points(3..9),
            holes in prop::collection::vec(points(3..6), 0..3),
        ) {
            let mut rings = vec![closed(&shell)];
            rings.extend(holes.iter().map(|h| closed(h)));
            let ours = ZoneGeometry::polygon(rings.clone());
            let reference = geo_polygon(&rings).check_validation();
            prop_assert_eq!(ours.is_ok(), reference.is_ok(), "ours {:?}, geo {:?}", ours.err(), reference.err());
        }

        /// The same for MultiPolygons of two or three simple polygons.
        #[test]
        fn agrees_with_geo_validation_on_multipolygons(
            shells in prop::collection::vec(points(3..6), 2..4),
        ) {
            let polygons: Vec<Vec<Vec<Vec<f64>>>> = shells.iter().map(|s| vec![closed(s)]).collect();
            let ours = ZoneGeometry::multi_polygon(polygons.clone());
            let reference = MultiPolygon::new(polygons.iter().map(|p| geo_polygon(p)).collect())
                .check_validation();
            prop_assert_eq!(ours.is_ok(), reference.is_ok(), "ours {:?}, geo {:?}", ours.err(), reference.err());
        }
    }
}
