//! The shapes of the city's randomness that `rand` alone does not give: [`beta`], which
//! spreads the drivers' own acceptance probabilities around the configured mean, and
//! [`Hotspots`], demand centres that move over the day.
//!
//! Guarantees: *reproducible* — every draw takes its randomness from the generator it is
//! handed, a fixed number of draws per call except for the rejection loop of the Gamma
//! draw, whose count depends only on the values drawn (so a seed still fixes everything);
//! a hotspot's position is a pure function of the clock. *Valid* — [`beta`] returns a
//! value in `[0, 1]` whatever its inputs (degenerate ones give the mean, clamped), and
//! [`Hotspots::centre`] a valid point, or `None` for the caller to fall back on.

use std::f64::consts::TAU;

use rand::Rng;

use dispatch_core::clock::Timestamp;
use dispatch_core::geo::LatLng;

use crate::geo::offset;

/// A draw from Beta(`mean`·`concentration`, (1 − `mean`)·`concentration`): mean `mean`,
/// spread shrinking as `concentration` grows. `mean` outside (0, 1) or `concentration` not
/// positive gives `mean` clamped to `[0, 1]` (no spread).
pub(crate) fn beta(rng: &mut impl Rng, mean: f64, concentration: f64) -> f64 {
    if !(mean > 0.0 && mean < 1.0 && concentration > 0.0 && concentration.is_finite()) {
        return if mean.is_nan() { 0.0 } else { mean.clamp(0.0, 1.0) };
    }
    let x = gamma(rng, mean * concentration);
    let y = gamma(rng, (1.0 - mean) * concentration);
    if x + y > 0.0 { (x / (x + y)).clamp(0.0, 1.0) } else { mean }
}

/// A draw from Gamma(`shape`, 1), `shape` > 0 (Marsaglia and Tsang, 2000; shapes below 1
/// boosted by `U^(1/shape)`).
fn gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box–Muller; one of the pair).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Demand centres that circle the city centre: hotspot `k` is `ring_m[k]` from it, at an
/// angle that turns once a `day_ms` from `phase[k]`, set by the clock's time of day (so a
/// run that starts at 08:00 finds them where every 08:00 run does).
#[derive(Debug, Clone)]
pub(crate) struct Hotspots {
    centre: LatLng,
    day_ms: i64,
    spots: Vec<(f64, f64)>,
}

impl Hotspots {
    /// `count` hotspots around `centre`, each on a ring of 20 % to 70 % of `radius_m`, at
    /// a random phase.
    pub(crate) fn draw(rng: &mut impl Rng, count: u32, centre: LatLng, radius_m: f64, day_s: u32) -> Self {
        let spots = (0..count).map(|_| (radius_m * rng.random_range(0.2..=0.7), rng.random_range(0.0..TAU))).collect();
        Self { centre, day_ms: i64::from(day_s.max(1)) * 1000, spots }
    }

    /// No hotspot: pickups are uniform.
    pub(crate) fn none(centre: LatLng) -> Self {
        Self { centre, day_ms: 86_400_000, spots: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.spots.len()
    }

    /// Where hotspot `k` is at `now`.
    pub(crate) fn centre(&self, k: usize, now: Timestamp) -> Option<LatLng> {
        let (ring_m, phase) = *self.spots.get(k)?;
        let angle = phase + TAU * (now.as_millis().rem_euclid(self.day_ms) as f64 / self.day_ms as f64);
        offset(self.centre, ring_m * angle.cos(), ring_m * angle.sin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_core::geo::haversine_m;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn beta_draws_keep_their_mean_and_spread_with_low_concentration() {
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<f64> = (0..20_000).map(|_| beta(&mut rng, 0.7, 4.0)).collect();
        assert!(draws.iter().all(|p| (0.0..=1.0).contains(p)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.7).abs() < 0.01, "mean {mean}");
        // Beta(2.8, 1.2): variance m(1-m)/(k+1) = 0.042; a fifth or so below one half.
        let var = draws.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((var - 0.042).abs() < 0.004, "variance {var}");
        let reluctant = draws.iter().filter(|p| **p < 0.5).count() as f64 / draws.len() as f64;
        assert!((0.1..0.35).contains(&reluctant), "{reluctant}");
        // Small shapes (below 1) take the boosted path and keep their mean too.
        let low: Vec<f64> = (0..20_000).map(|_| beta(&mut rng, 0.05, 2.0)).collect();
        let low_mean = low.iter().sum::<f64>() / low.len() as f64;
        assert!((low_mean - 0.05).abs() < 0.01, "mean {low_mean}");
    }

    #[test]
    fn degenerate_beta_inputs_give_the_clamped_mean() {
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(beta(&mut rng, 0.7, 0.0), 0.7);
        assert_eq!(beta(&mut rng, 1.0, 4.0), 1.0);
        assert_eq!(beta(&mut rng, -0.5, 4.0), 0.0);
        assert_eq!(beta(&mut rng, f64::NAN, 4.0), 0.0);
    }

    #[test]
    fn hotspots_stay_on_their_ring_and_turn_once_a_day() {
        let mut rng = StdRng::seed_from_u64(3);
        let centre = LatLng::new(30.0444, 31.2357).unwrap();
        let spots = Hotspots::draw(&mut rng, 3, centre, 5_000.0, 86_400);
        assert_eq!(spots.len(), 3);
        let t0 = Timestamp::from_millis(1_767_254_400_000);
        for k in 0..3 {
            let a = spots.centre(k, t0).unwrap();
            let quarter = spots.centre(k, t0.plus_millis(6 * 3_600_000)).unwrap();
            let day = spots.centre(k, t0.plus_millis(24 * 3_600_000)).unwrap();
            let ring = haversine_m(centre, a);
            assert!((1_000.0 - 1.0..=3_500.0 + 1.0).contains(&ring), "{ring}");
            assert!((haversine_m(centre, quarter) - ring).abs() < 5.0);
            // A quarter turn moves it by the ring's radius times √2; a day brings it back.
            assert!((haversine_m(a, quarter) - ring * 2f64.sqrt()).abs() < 0.01 * ring);
            assert!(haversine_m(a, day) < 1.0);
        }
        assert_eq!(spots.centre(3, t0), None);
    }
}
