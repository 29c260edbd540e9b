//! The zone index: which active zone a point is in.
//!
//! Owns [`ZoneIndex`]: every zone's [`ZoneGeometry`] and `active` flag, and an `rstar` R-tree
//! of their lon/lat bounding boxes, so a lookup tests only the polygons whose box holds the
//! point.
//!
//! # Guarantees
//!
//! - [`ZoneIndex::lookup`] returns an *active* zone whose polygon holds the point, or `None`.
//!   Points on a zone's boundary (its exterior ring or a hole's ring) are in the zone; points
//!   strictly inside a hole are not.
//! - Where active zones overlap, the answer does not depend on insertion order: the zone with
//!   the smallest area ([`ZoneGeometry::area_m2`]) wins, then the lowest [`ZoneId`].
//! - A point at longitude −180 and the same point at +180 are the same place: both are tested.
//!   Points at a pole are tested at the longitude given (zones are planar lon/lat polygons,
//!   see the [`polygon`](super::polygon) module).
//! - The tree and the map always hold the same zones: every change goes through
//!   [`ZoneIndex::upsert`] and [`ZoneIndex::remove`].

use std::collections::BTreeMap;

use rstar::{AABB, RTree, RTreeObject};

use super::point::LatLng;
use super::polygon::ZoneGeometry;
use crate::id::ZoneId;

/// A zone as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedZone {
    geometry: ZoneGeometry,
    active: bool,
}

impl IndexedZone {
    /// The zone's shape.
    pub fn geometry(&self) -> &ZoneGeometry {
        &self.geometry
    }

    /// Whether lookups may return it.
    pub fn active(&self) -> bool {
        self.active
    }
}

/// A zone's bounding box in the R-tree.
#[derive(Debug, Clone, PartialEq)]
struct ZoneBox {
    id: ZoneId,
    bbox: AABB<[f64; 2]>,
}

impl RTreeObject for ZoneBox {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.bbox
    }
}

impl ZoneBox {
    fn of(id: ZoneId, geometry: &ZoneGeometry) -> Self {
        let r = geometry.bbox_rect();
        Self { id, bbox: AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]) }
    }
}

/// Zones by id, and an R-tree of their boxes for point lookups.
#[derive(Debug, Clone, Default)]
pub struct ZoneIndex {
    /// Bounding boxes, so a lookup tests a handful of polygons, not all.
    tree: RTree<ZoneBox>,
    /// The zones themselves; a `BTreeMap` so iteration is in id order, the same every run.
    zones: BTreeMap<ZoneId, IndexedZone>,
}

impl ZoneIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds zone `id`, or replaces its geometry and flag if it is there. Returns what it
    /// replaced.
    pub fn upsert(&mut self, id: ZoneId, geometry: ZoneGeometry, active: bool) -> Option<IndexedZone> {
        let previous = self.remove(id);
        self.tree.insert(ZoneBox::of(id, &geometry));
        self.zones.insert(id, IndexedZone { geometry, active });
        previous
    }

    /// Sets whether zone `id` is active; `false` if there is no such zone.
    pub fn set_active(&mut self, id: ZoneId, active: bool) -> bool {
        match self.zones.get_mut(&id) {
            Some(zone) => {
                zone.active = active;
                true
            }
            None => false,
        }
    }

    /// Removes zone `id`, returning it.
    pub fn remove(&mut self, id: ZoneId) -> Option<IndexedZone> {
        let zone = self.zones.remove(&id)?;
        let removed = self.tree.remove(&ZoneBox::of(id, &zone.geometry));
        debug_assert!(removed.is_some(), "zone {id} was in the map but not the tree");
        Some(zone)
    }

    /// Zone `id`, active or not.
    pub fn get(&self, id: ZoneId) -> Option<&IndexedZone> {
        self.zones.get(&id)
    }

    /// Every zone, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ZoneId, &IndexedZone)> {
        self.zones.iter().map(|(id, zone)| (*id, zone))
    }

    /// Number of zones, active or not.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there are no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The active zone that holds `point` (boundary included); of several, the smallest by
    /// area, then the lowest id. `None` is `422 outside_service_area`.
    pub fn lookup(&self, point: LatLng) -> Option<ZoneId> {
        let mut best: Option<(f64, ZoneId)> = None;
        let mirrored = (point.lng().abs() == 180.0).then(|| LatLng::new(point.lat(), -point.lng()).ok()).flatten();
        for p in std::iter::once(point).chain(mirrored) {
            let at = AABB::from_point([p.lng(), p.lat()]);
            for candidate in self.tree.locate_in_envelope_intersecting(at) {
                let Some(zone) = self.zones.get(&candidate.id) else {
                    debug_assert!(false, "zone {} in the tree but not the map", candidate.id);
                    continue;
                };
                if !zone.active || !zone.geometry.contains(p) {
                    continue;
                }
                let key = (zone.geometry.area_m2(), candidate.id);
                let better = match best {
                    None => true,
                    Some(b) => key.0.total_cmp(&b.0).then(key.1.cmp(&b.1)).is_lt(),
                };
                if better {
                    best = Some(key);
                }
            }
        }
        best.map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(lng0: f64, lat0: f64, size: f64) -> ZoneGeometry {
        let (x1, y1) = (lng0 + size, lat0 + size);
        ZoneGeometry::polygon(vec![vec![
            vec![lng0, lat0],
            vec![x1, lat0],
            vec![x1, y1],
            vec![lng0, y1],
            vec![lng0, lat0],
        ]])
        .unwrap()
    }

    fn id(raw: u64) -> ZoneId {
        ZoneId::from_raw(raw).unwrap()
    }

    fn at(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    #[test]
    fn lookup_finds_the_active_zone_and_prefers_the_smallest_of_overlapping_ones() {
        let mut zones = ZoneIndex::new();
        zones.upsert(id(1), square(31.0, 29.9, 0.5), true); // Cairo
        zones.upsert(id(2), square(31.2, 30.0, 0.1), true); // downtown, inside Cairo
        zones.upsert(id(3), square(29.8, 31.1, 0.3), false); // Alexandria, not open yet
        assert_eq!(zones.lookup(at(30.05, 31.25)), Some(id(2)), "the smaller overlapping zone wins");
        assert_eq!(zones.lookup(at(29.95, 31.05)), Some(id(1)));
        assert_eq!(zones.lookup(at(31.2, 29.9)), None, "inactive zones serve nobody");
        assert!(zones.set_active(id(3), true));
        assert_eq!(zones.lookup(at(31.2, 29.9)), Some(id(3)));
        assert_eq!(zones.lookup(at(0.0, 0.0)), None);
        // The boundary counts as inside.
        assert_eq!(zones.lookup(at(29.9, 31.0)), Some(id(1)));
    }

    #[test]
    fn replace_and_remove_update_the_tree() {
        let mut zones = ZoneIndex::new();
        zones.upsert(id(1), square(31.0, 29.9, 0.5), true);
        assert!(zones.upsert(id(1), square(10.0, 10.0, 1.0), true).is_some());
        assert_eq!(zones.lookup(at(30.0, 31.1)), None, "the old shape is gone");
        assert_eq!(zones.lookup(at(10.5, 10.5)), Some(id(1)));
        assert!(zones.remove(id(1)).is_some());
        assert_eq!(zones.lookup(at(10.5, 10.5)), None);
        assert!(zones.is_empty());
        assert!(!zones.set_active(id(1), true));
    }

    #[test]
    fn equal_overlapping_zones_resolve_by_lowest_id() {
        let mut zones = ZoneIndex::new();
        zones.upsert(id(9), square(31.0, 29.9, 0.5), true);
        zones.upsert(id(4), square(31.0, 29.9, 0.5), true);
        assert_eq!(zones.lookup(at(30.0, 31.1)), Some(id(4)));
    }
}
