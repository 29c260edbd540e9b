//! A validated WGS84 position and the great-circle distance between two.

use serde::{Deserialize, Deserializer, Serialize};

/// Mean Earth radius used by every distance in dispatch (IUGG mean radius, metres).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Why a coordinate was refused (HTTP `400 invalid_coordinates`).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("invalid coordinates: lat {lat}, lng {lng} (need finite values with -90 <= lat <= 90 and -180 <= lng <= 180)")]
pub struct CoordinateError {
    /// The latitude given.
    pub lat: f64,
    /// The longitude given.
    pub lng: f64,
}

/// A position in WGS84 degrees, known to be finite and in range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatLng {
    lat: f64,
    lng: f64,
}

impl LatLng {
    /// The position, if `lat` and `lng` are finite and `-90 ≤ lat ≤ 90`, `-180 ≤ lng ≤ 180`.
    pub fn new(lat: f64, lng: f64) -> Result<Self, CoordinateError> {
        if lat.is_finite() && lng.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng) {
            Ok(Self { lat, lng })
        } else {
            Err(CoordinateError { lat, lng })
        }
    }

    /// Latitude in degrees.
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude in degrees.
    pub fn lng(&self) -> f64 {
        self.lng
    }

    /// Great-circle distance to `other` in metres.
    pub fn distance_m(&self, other: &LatLng) -> f64 {
        haversine_m(*self, *other)
    }
}

impl<'de> Deserialize<'de> for LatLng {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            lat: f64,
            lng: f64,
        }
        let raw = Raw::deserialize(d)?;
        LatLng::new(raw.lat, raw.lng).map_err(serde::de::Error::custom)
    }
}

/// Haversine great-circle distance in metres on a sphere of [`EARTH_RADIUS_M`].
pub fn haversine_m(a: LatLng, b: LatLng) -> f64 {
    HaversineFrom::new(a).to(b)
}

/// [`haversine_m`] from one fixed point to many: the point's latitude in radians and its
/// cosine computed once. Gives bit for bit what `haversine_m` gives (which is defined by it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HaversineFrom {
    lat_rad: f64,
    cos_lat: f64,
    lng: f64,
}

impl HaversineFrom {
    pub(crate) fn new(a: LatLng) -> Self {
        let lat_rad = a.lat.to_radians();
        Self { lat_rad, cos_lat: lat_rad.cos(), lng: a.lng }
    }

    /// Haversine distance in metres to `b`.
    pub(crate) fn to(&self, b: LatLng) -> f64 {
        let la2 = b.lat.to_radians();
        let dlat = la2 - self.lat_rad;
        let dlng = (b.lng - self.lng).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + self.cos_lat * la2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_range_and_finiteness() {
        assert!(LatLng::new(30.0444, 31.2357).is_ok());
        assert!(LatLng::new(90.0, 180.0).is_ok());
        assert!(LatLng::new(-90.0, -180.0).is_ok());
        for (lat, lng) in [(90.0001, 0.0), (0.0, 180.5), (f64::NAN, 0.0), (0.0, f64::INFINITY), (-91.0, 0.0)] {
            assert!(LatLng::new(lat, lng).is_err(), "{lat},{lng}");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<LatLng>(r#"{"lat":91,"lng":0}"#).is_err());
        assert!(serde_json::from_str::<LatLng>(r#"{"lat":1,"lng":2,"x":3}"#).is_err());
        assert_eq!(serde_json::from_str::<LatLng>(r#"{"lat":1,"lng":2}"#).unwrap(), LatLng::new(1.0, 2.0).unwrap());
    }

    #[test]
    fn haversine_known_distances() {
        // One degree of latitude on this sphere: 2πR/360.
        let d = haversine_m(LatLng::new(0.0, 0.0).unwrap(), LatLng::new(1.0, 0.0).unwrap());
        assert!((d - 111_195.08).abs() < 0.1, "{d}");
        // Across the antimeridian the short way round.
        let d = haversine_m(LatLng::new(0.0, 179.5).unwrap(), LatLng::new(0.0, -179.5).unwrap());
        assert!((d - 111_195.08).abs() < 0.1, "{d}");
        assert_eq!(haversine_m(LatLng::new(10.0, 10.0).unwrap(), LatLng::new(10.0, 10.0).unwrap()), 0.0);
    }
}
