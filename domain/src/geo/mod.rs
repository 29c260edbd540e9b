//! Geography: validated coordinates and great-circle distance, zone shapes and the zone
//! index, and the spatial index of drivers.
//!
//! ## Layout
//! - [`point`](LatLng): [`LatLng`] (finite, in range; every coordinate from outside goes
//!   through [`LatLng::new`]) and [`haversine_m`], the one distance used everywhere.
//! - `polygon`: [`ZoneGeometry`], a GeoJSON `Polygon` / `MultiPolygon` that is known to be
//!   valid (closed, simple, in range, holes inside shells, bounded size), or a
//!   [`GeometryError`] naming the ring at fault.
//! - [`polyline`]: Google's encoded polyline (precision 5), the line a client draws for
//!   a route: [`polyline::encode`], and [`polyline::decode`] for a router's answer.
//! - `zone`: [`ZoneIndex`], active zones behind an R-tree of their boxes; which zone a
//!   point is in, deterministically when zones overlap.
//! - `index`: [`DriverIndex`], drivers as unit vectors in columns of their cube-map face,
//!   kept in tiles of 2 × 2 columns; the nearest eligible drivers within a radius
//!   (`index/search.rs`), exactly as a full scan would rank them.
//!
//! Everything here is plain data, owned by the engine's single writer and read from its
//! snapshots: no locks, no I/O, no clock reads (times come in as [`Timestamp`](crate::clock::Timestamp)s).

mod index;
mod point;
mod polygon;
pub mod polyline;
mod zone;

pub use index::{CHORD_SLACK, CategoryCode, DriverIndex, IndexedDriver, Nearby};
pub use point::{CoordinateError, EARTH_RADIUS_M, LatLng, haversine_m};
pub use polygon::{GeometryError, GeometryKind, MAX_POSITIONS, MAX_RINGS, RingRef, ZoneGeometry};
pub use zone::{IndexedZone, ZoneIndex};
