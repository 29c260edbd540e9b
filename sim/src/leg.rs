//! A driver's path: [`Leg`], a straight stretch driven at constant speed, or a stop.
//!
//! Guarantees (the movement half of *plausible movement*; the other half, when positions
//! are reported, is `city/driver.rs`'s):
//! - Within a leg, the position is a continuous function of time: `from` at `start`, `to`
//!   from `end` on, linear in between.
//! - [`Leg::drive`] rounds the leg's duration up (and to at least 1 ms), so a leg is never
//!   driven faster than the speed it was made with, measured with the engine's own
//!   [`haversine_m`]. That speed is a driver's, drawn within the configured range, which
//!   [`SimConfig::validate`](crate::SimConfig::validate) keeps at or below
//!   [`MAX_SPEED_MPS`](crate::MAX_SPEED_MPS).
//! - [`Leg::heading_deg`] is in `[0, 360)` and [`Leg::speed_mps`] is 0 for a stop: what a
//!   position report carries is always valid.
//!
//! Continuity across legs is the caller's: every new leg starts at the old one's position
//! at that instant.

use dispatch_core::clock::Timestamp;
use dispatch_core::geo::{LatLng, haversine_m};

/// A straight stretch of a driver's path, driven at constant speed (or a stop, when
/// `from == to`). Positions are interpolated in degrees: at city scale the error against
/// the great circle is far below a metre.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leg {
    pub(crate) from: LatLng,
    pub(crate) to: LatLng,
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
}

impl Leg {
    pub(crate) fn stop(at: LatLng, start: Timestamp, ms: i64) -> Leg {
        Leg { from: at, to: at, start, end: start.plus_millis(ms.max(0)) }
    }

    pub(crate) fn drive(from: LatLng, to: LatLng, start: Timestamp, speed_mps: f64) -> Leg {
        // Rounded up: the leg is never driven faster than `speed_mps`.
        let ms = (haversine_m(from, to) / speed_mps * 1000.0).ceil() as i64;
        Leg { from, to, start, end: start.plus_millis(ms.max(1)) }
    }

    pub(crate) fn position(&self, now: Timestamp) -> LatLng {
        let span = self.end.millis_since(self.start);
        let done = now.millis_since(self.start);
        if span <= 0 || done >= span {
            return self.to;
        }
        if done <= 0 {
            return self.from;
        }
        let f = done as f64 / span as f64;
        let lat = self.from.lat() + (self.to.lat() - self.from.lat()) * f;
        let lng = self.from.lng() + (self.to.lng() - self.from.lng()) * f;
        // Between two valid points, so valid; the fallback only keeps this panic-free.
        LatLng::new(lat, lng).unwrap_or(self.to)
    }

    pub(crate) fn done(&self, now: Timestamp) -> bool {
        now >= self.end
    }

    pub(crate) fn moving(&self, now: Timestamp) -> bool {
        self.from != self.to && now < self.end
    }

    /// Degrees from north, in `[0, 360)`.
    pub(crate) fn heading_deg(&self) -> f32 {
        let dlat = self.to.lat() - self.from.lat();
        let dlng = (self.to.lng() - self.from.lng()) * self.from.lat().to_radians().cos();
        let h = dlng.atan2(dlat).to_degrees().rem_euclid(360.0) as f32;
        if (0.0..360.0).contains(&h) { h } else { 0.0 }
    }

    pub(crate) fn speed_mps(&self) -> f32 {
        let span = self.end.millis_since(self.start);
        if span <= 0 || self.from == self.to {
            return 0.0;
        }
        (haversine_m(self.from, self.to) / (span as f64 / 1000.0)) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_SPEED_MPS;
    use crate::geo::offset;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const START_MS: i64 = 1_700_000_000_000;

    #[test]
    fn drivers_never_move_faster_than_the_limit() {
        let mut rng = StdRng::seed_from_u64(5);
        let t0 = Timestamp::from_millis(START_MS);
        let from = LatLng::new(30.0444, 31.2357).unwrap();
        for _ in 0..1_000 {
            let to = offset(from, rng.random_range(-5_000.0..5_000.0), rng.random_range(-5_000.0..5_000.0)).unwrap();
            let speed = rng.random_range(0.5..=MAX_SPEED_MPS);
            let leg = Leg::drive(from, to, t0, speed);
            assert_eq!(leg.position(t0), from);
            assert_eq!(leg.position(leg.end), to);
            let mut prev = from;
            for k in 1..=10 {
                let at = t0.plus_millis(k * 1_000);
                let here = leg.position(at);
                assert!(
                    haversine_m(prev, here) <= MAX_SPEED_MPS * 1.001 + 1e-6,
                    "{} m in 1 s",
                    haversine_m(prev, here)
                );
                prev = here;
            }
            assert!(leg.speed_mps() <= MAX_SPEED_MPS as f32 * 1.001);
            assert!((0.0..360.0).contains(&leg.heading_deg()));
        }
    }
}
