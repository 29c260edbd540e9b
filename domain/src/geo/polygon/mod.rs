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
//!
//! # Layout
//!
//! This file holds the types, the constructors and the point predicates; `validate` holds the
//! checks that make a geometry valid (per ring, then between rings on an R-tree of edges), and
//! `geojson` how a geometry is read and written (GeoJSON, or raw rings in binary formats).

use std::fmt;

use geo::coordinate_position::CoordPos;
use geo::{ChamberlainDuquetteArea, Coord, CoordinatePosition, LineString, MultiPolygon, Polygon, Rect};
use serde::{Deserialize, Serialize};

use super::point::LatLng;
use validate::{CheckedRing, check_topology};

mod geojson;
mod validate;

/// The most positions (in all rings together, closing positions included) a zone may have.
pub const MAX_POSITIONS: usize = 100_000;

/// The most rings (exterior rings and holes, in all polygons together) a zone may have.
pub const MAX_RINGS: usize = 10_000;

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

/// A validated zone shape: the module documentation of `geo::polygon` says what "valid" means.
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

#[cfg(test)]
mod tests {
    use super::geojson::Compact;
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
        let zone = ZoneGeometry::polygon(vec![big]).expect("the largest allowed ring");
        assert_eq!(zone.position_count(), MAX_POSITIONS);
        assert!(zone.contains(at(30.0, 31.2)));

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
