//! The checks that make a [`ZoneGeometry`](super::ZoneGeometry) valid (see the parent module's
//! guarantees): per ring, in the order a person fixing the data wants them (coordinates,
//! count, closure, antimeridian, degeneracy), then between edges and rings (self-intersection,
//! crossing rings, holes inside their shell and apart, polygons of a `MultiPolygon` apart).
//!
//! Edges go into an R-tree, so the check is O(n log n) plus the pairs of edges whose boxes
//! overlap; `geo`'s robust segment intersection decides each pair, and `geo`'s `Relate` only
//! rings that touch.

use std::collections::BTreeSet;

use geo::coordinate_position::CoordPos;
use geo::dimensions::Dimensions;
use geo::line_intersection::{LineIntersection, line_intersection};
use geo::{Coord, CoordinatePosition, Line, LineString, Polygon, Rect, Relate};
use rstar::{AABB, RTree, RTreeObject};

use super::{GeometryError, GeometryKind, Ring, RingRef, in_rect, ring_box};
use crate::geo::LatLng;

/// One ring that passed the per-ring checks, with what the topology checks need.
pub(super) struct CheckedRing {
    pub(super) at: RingRef,
    /// The ring with consecutive repeats removed; closed (first == last).
    corners: Vec<Coord<f64>>,
    bbox: Rect<f64>,
    /// The ring alone as a polygon, for point-in-ring tests.
    area: Polygon<f64>,
}

impl CheckedRing {
    /// Per-ring checks, in the order a person fixing the data wants them: coordinates,
    /// count, closure, antimeridian, degeneracy.
    pub(super) fn new(at: RingRef, ring: &[[f64; 2]]) -> Result<Self, GeometryError> {
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
pub(super) fn check_topology(
    kind: GeometryKind,
    polygons: &[Vec<Ring>],
    rings: &[CheckedRing],
) -> Result<(), GeometryError> {
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
