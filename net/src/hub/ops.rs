//! The ops channel's snapshots: what a staff socket subscribed to `ops` sees of the city
//! once a second (drivers with a position, open trips), inside its map box.
//!
//! Guarantees: a box exists only valid (finite, in range, min ≤ max: [`BBox::new`]); a
//! snapshot lists at most [`OPS_SNAPSHOT_MAX_ITEMS`] of each kind, an even sample when
//! there are more, with the true totals beside it; it is built from one read of the view.

use dispatch_core::TripId;
use serde_json::{Value, json};

use crate::http::ApiError;
use crate::render;

/// Most items of each list in an `ops_snapshot` (API.md): a sample when more, with the true total.
pub const OPS_SNAPSHOT_MAX_ITEMS: usize = 2_000;

/// The outbox slot of ops snapshots: a newer one replaces one not yet written.
pub(super) const OPS_SNAPSHOT_SLOT: TripId = match TripId::from_raw(u64::MAX) {
    Some(t) => t,
    None => panic!("u64::MAX is a valid id"),
};

/// A map box `[min_lng, min_lat, max_lng, max_lat]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox([f64; 4]);

impl BBox {
    /// A valid box (finite, in range, min ≤ max), or `invalid_coordinates`.
    pub fn new(b: [f64; 4]) -> Result<BBox, ApiError> {
        let [min_lng, min_lat, max_lng, max_lat] = b;
        crate::http::lat_lng(min_lat, min_lng)?;
        crate::http::lat_lng(max_lat, max_lng)?;
        if min_lng > max_lng || min_lat > max_lat {
            return Err(ApiError::new("invalid_coordinates", "bbox is [min_lng, min_lat, max_lng, max_lat]"));
        }
        Ok(BBox(b))
    }

    /// Whether `p` is inside the box (edges included).
    pub(super) fn contains(&self, p: dispatch_core::LatLng) -> bool {
        let [min_lng, min_lat, max_lng, max_lat] = self.0;
        (min_lng..=max_lng).contains(&p.lng()) && (min_lat..=max_lat).contains(&p.lat())
    }
}

/// Every `n`-th item so that at most [`OPS_SNAPSHOT_MAX_ITEMS`] remain.
fn sample(items: Vec<Value>) -> (usize, Vec<Value>) {
    let total = items.len();
    if total <= OPS_SNAPSHOT_MAX_ITEMS {
        return (total, items);
    }
    let step = total.div_ceil(OPS_SNAPSHOT_MAX_ITEMS);
    (total, items.into_iter().step_by(step).collect())
}

/// The `ops_snapshot` frame of `bbox` (everywhere when `None`) as of `now`.
pub(super) fn ops_snapshot(
    v: &dispatch_core::View,
    bbox: Option<BBox>,
    now: dispatch_core::clock::Timestamp,
) -> String {
    let inside = |p: dispatch_core::LatLng| bbox.is_none_or(|b| b.contains(p));
    let drivers: Vec<Value> = v
        .drivers()
        .filter_map(|d| {
            let f = d.fix?;
            inside(f.point).then(|| {
                json!({"id": d.id.to_string(), "lat": f.point.lat(), "lng": f.point.lng(),
                    "availability": d.availability.as_str(), "category": d.category.as_str()})
            })
        })
        .collect();
    let trips: Vec<Value> = v
        .trips()
        .filter(|t| t.status.is_open() && inside(t.pickup.point))
        .map(|t| {
            json!({"id": t.id.to_string(), "status": t.status.as_str(), "pickup": render::place(&t.pickup),
                "age_s": now.millis_since(t.created_at).max(0) / 1000})
        })
        .collect();
    let (dt, di) = sample(drivers);
    let (tt, ti) = sample(trips);
    json!({"type": "ops_snapshot", "at": crate::http::rfc3339(now),
        "drivers": {"total": dt, "items": di}, "trips": {"total": tt, "items": ti}})
    .to_string()
}
