//! Geography: validated coordinates, great-circle distance, and (as they land) the
//! zone index and the spatial index of drivers.
//!
//! Guarantee: a [`LatLng`] that exists is finite and in range; every coordinate
//! from outside goes through [`LatLng::new`].

mod point;

pub use point::{CoordinateError, EARTH_RADIUS_M, LatLng, haversine_m};
