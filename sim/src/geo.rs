//! Flat-earth geometry within the city area: [`offset`] moves a point so many metres north
//! and east, to draw random points of the area and cruising waypoints, and to test the
//! area's edges against the zones.
//!
//! Guarantee: [`offset`] never returns an invalid point: `None` if the result would be past
//! a pole or outside ±180° of longitude (it does not wrap), and the callers fall back to a
//! point they have. No speed is measured with it: a leg's speed is measured with the
//! engine's own `haversine_m` (see `leg`), so the flat-earth error cannot make a driver
//! look faster than it is.

use dispatch_core::geo::LatLng;

/// Metres per degree of latitude on the sphere of [`dispatch_core::geo::EARTH_RADIUS_M`].
const M_PER_DEG: f64 = 111_195.0;

/// The point `north_m` north and `east_m` east of `from` (flat-earth offset: exact enough
/// within a city).
pub(crate) fn offset(from: LatLng, north_m: f64, east_m: f64) -> Option<LatLng> {
    let lat = from.lat() + north_m / M_PER_DEG;
    let lng = from.lng() + east_m / (M_PER_DEG * from.lat().to_radians().cos());
    LatLng::new(lat, lng).ok()
}
