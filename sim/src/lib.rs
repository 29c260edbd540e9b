//! # dispatch-sim
//!
//! A simulated city: drivers and riders who use an [`Engine`] the way their apps would.
//! Used by `dispatchd --demo`, `examples/city.rs` and the benches.
//!
//! Owns the simulated people and nothing of the engine's: every change goes through the
//! engine's public API ([`Engine::submit_with`], answered on a channel), and everything
//! the people learn they read from the engine's published [`View`](dispatch_core::View), as an
//! app polls `GET /v1/driver/offers` and `GET /v1/trips/{id}`.
//!
//! - **Drivers** go online at random points of the city area (spread over
//!   [`SimConfig::ramp_up_s`]), wander between random waypoints, report their position
//!   every [`SimConfig::report_interval_ms`], and answer each offer after a reaction time:
//!   accept, decline, or ignore it so that it lapses. Each driver accepts with a
//!   probability of its own, drawn from a Beta spread around
//!   [`SimConfig::accept_probability`] ([`SimConfig::acceptance_concentration`]): some
//!   drivers take nearly every offer, some decline most. An assigned driver drives to the
//!   pickup, marks arrival, starts the ride with the pickup code the rider tells it (read
//!   from the rider's trip), drives to the drop-off and completes; now and then one
//!   cancels on the way to the pickup, which sends the trip back to searching.
//! - **Riders** ask for rides priced on a [`StraightLine`] route, from pickups drawn
//!   around demand hotspots that circle the centre over the day ([`SimConfig::hotspots`];
//!   the rest uniformly over the area) to drop-offs anywhere in it, wait, give up
//!   (cancel) when their ride has searched longer than their own patience
//!   ([`SimConfig::patience_min_s`]), sometimes cancel before pickup anyway, and ask again
//!   after an idle time once the trip has ended (completed, cancelled or expired).
//!
//! Besides counts, [`SimStats`] measures dispatch quality: match rate, time to match,
//! pickup distance and ETA, driver idle time, declines per trip and the Gini coefficient
//! of driver earnings.
//!
//! Guarantees:
//! - **Plausible movement.** A driver's position is a continuous function of time along
//!   straight legs at no more than [`MAX_SPEED_MPS`], and every report is at least
//!   `report_interval_ms` (≥ [`MIN_REPORT_INTERVAL_MS`], the engine's default
//!   `location_min_interval_ms`) after the previous one: the engine's spoofing check never
//!   fires on a simulated driver, and reports are not coalesced.
//! - **Bounded.** At most one state-changing command and one position report are in
//!   flight per simulated person; a full engine queue is counted
//!   ([`SimStats::overloaded`]) and retried at the next step, never queued here.
//! - **Never blocks in [`Sim::step`].** A step reads the view once, submits commands
//!   and returns; answers are picked up by the next step. Only [`Sim::new`] (creating the
//!   users) and [`Sim::settle`] wait for the engine.
//! - **Reproducible.** All randomness comes from one `StdRng` seeded with
//!   [`SimConfig::seed`], drawn in a fixed order (people in index order, answers in
//!   submission order; no hash-map iteration). On a [`ManualClock`] driven by
//!   [`Sim::advance`], which fires the engine's deadlines and waits for every answer
//!   before the clock moves again, the same seed (and a seeded [`RandomIds`](dispatch_core::RandomIds))
//!   gives the same [`SimStats`]. On the [`SystemClock`](dispatch_core::clock::SystemClock) the
//!   run is live and timing-dependent, as a real city is.
//!
//! The [`audit`] reads the view and counts double assignments (a driver on two open
//! trips, a trip held by two drivers): the engine's single writer makes it 0, and the
//! tests and the `city` example check that it is.
//!
//! ```
//! use dispatch_core::clock::{ManualClock, Timestamp};
//! use dispatch_sim::{Sim, SimConfig, audit};
//! use dispatch_core::{Engine, EngineConfig, RandomIds};
//!
//! let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
//! let engine = Engine::open(EngineConfig::default().with_clock(clock.clone()).with_ids(RandomIds::seeded(7)))?;
//! let mut sim = Sim::new(&engine, SimConfig { drivers: 20, riders: 5, seed: 7, ..SimConfig::default() })?;
//! sim.advance(&clock, 3 * 60_000, 1_000)?; // three simulated minutes, one-second steps
//! assert!(sim.stats().trips_requested > 0);
//! assert_eq!(audit(&engine).double_assignments, 0);
//! # Ok::<(), dispatch_core::Error>(())
//! ```
//!
//! A server runs it live beside its other callers: a thread of its own owns the `Sim`
//! (which borrows the engine) and steps it on a timer with the engine's clock:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use dispatch_core::clock::{Clock, SystemClock};
//! use dispatch_sim::{Sim, SimConfig};
//! use dispatch_core::{Engine, EngineConfig};
//!
//! let engine = Arc::new(Engine::open(EngineConfig::default())?);
//! let stop = Arc::new(AtomicBool::new(false));
//! let (shared, stopping) = (Arc::clone(&engine), Arc::clone(&stop));
//! let demo = std::thread::spawn(move || -> dispatch_core::Result<()> {
//!     let mut sim = Sim::new(&shared, SimConfig { drivers: 200, ..SimConfig::default() })?;
//!     while !stopping.load(Ordering::Relaxed) {
//!         sim.step(SystemClock.now());
//!         std::thread::sleep(std::time::Duration::from_millis(500));
//!     }
//!     Ok(())
//! });
//! // … serve; at shutdown:
//! stop.store(true, Ordering::Relaxed);
//! let _ = demo.join();
//! # Ok::<(), dispatch_core::Error>(())
//! ```
//!
//! # Layout
//!
//! Each module's docs say which of the guarantees above it upholds, and how:
//!
//! - `lib.rs` (here): [`SimConfig`], whose [`SimConfig::validate`] holds a configuration to
//!   the bounds that *plausible movement* and *bounded* rest on ([`MAX_SPEED_MPS`],
//!   [`MIN_REPORT_INTERVAL_MS`], [`MAX_PEOPLE`]).
//! - `city/`: [`Sim`], one struct for the whole city. `city/mod.rs` has the step loop
//!   ([`Sim::step`], [`Sim::settle`], [`Sim::advance`]), submitting commands and handling
//!   their answers: *never blocks in `step`*, *bounded* and *reproducible* are upheld
//!   there. `city/setup.rs` is [`Sim::new`] (the only other place that waits);
//!   `city/driver.rs` and `city/rider.rs` are what a driver and a rider do at a step and on
//!   an answer (*plausible movement*: where legs start and when positions are reported).
//! - `leg.rs`: a driver's path, straight legs driven at no more than their speed
//!   (*plausible movement*: continuity and speed).
//! - `stats.rs`: [`SimStats`], the bounded histograms of times to match and pickups, and
//!   the Gini coefficient.
//! - `draw.rs`: the Beta draw of acceptance probabilities and the moving demand hotspots.
//! - `audit.rs`: [`audit`] and [`Audit`], which read only the engine's view.
//! - `geo.rs`: flat-earth offsets within the city area.
//!
//! Dependencies between these modules go one way (`tests/architecture.rs` checks it):
//! `city` uses `leg`, `stats`, `draw` and `geo`; `draw` uses `geo`; `leg`, `stats`, `audit`
//! and `geo` use none of their siblings. Inside `city`, `setup` uses `driver` and `rider`, which do not use
//! each other.
//!
//! [`Engine`]: dispatch_core::Engine
//! [`Engine::submit_with`]: dispatch_core::Engine::submit_with
//! [`StraightLine`]: dispatch_core::route::StraightLine
//! [`ManualClock`]: dispatch_core::clock::ManualClock
//! [`audit`]: fn@audit

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod city;
mod draw;
mod geo;
mod leg;
mod stats;

pub use audit::{Audit, audit};
pub use city::{SETTLE_TIMEOUT, Sim};
pub use stats::SimStats;

use dispatch_core::error::{Error, Result};
use dispatch_core::geo::LatLng;

/// The fastest a simulated driver moves, m/s (54 km/h: a city street, far below the
/// engine's `max_speed_kmh`).
pub const MAX_SPEED_MPS: f64 = 15.0;

/// The shortest allowed interval between a driver's position reports: the engine's
/// default `location_min_interval_ms`, below which reports would be coalesced.
pub const MIN_REPORT_INTERVAL_MS: u32 = 1_000;

/// Most simulated drivers, and most simulated riders (phone numbers have 8 digits of
/// room; the bound also keeps a step's work bounded).
pub const MAX_PEOPLE: u32 = 1_000_000;

/// How a simulated city is set up. Every duration is in the unit its name ends with.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Simulated drivers (economy cars), at most [`MAX_PEOPLE`].
    pub drivers: u32,
    /// Simulated riders, at most [`MAX_PEOPLE`].
    pub riders: u32,
    /// Seeds every random choice of the simulation.
    pub seed: u64,
    /// Centre of the city area, latitude.
    pub center_lat_deg: f64,
    /// Centre of the city area, longitude.
    pub center_lng_deg: f64,
    /// Radius of the city area: drivers start, wander and ride, and riders ask for rides,
    /// within this distance of the centre. The demo zone (`demo::cairo()`) spans a whole
    /// region; rides happen in a city-sized disc of it. 100 m to 50 km; the disc must lie
    /// inside an active zone that prices economy rides.
    pub radius_m: f64,
    /// A driver reports its position this often (≥ [`MIN_REPORT_INTERVAL_MS`]; the engine
    /// calls a position stale after 30 s by default).
    pub report_interval_ms: u32,
    /// Slowest driver's speed.
    pub speed_min_mps: f64,
    /// Fastest driver's speed (≤ [`MAX_SPEED_MPS`]).
    pub speed_max_mps: f64,
    /// Drivers go online at random instants over this long after the first step.
    pub ramp_up_s: u32,
    /// Chance that a driver accepts an offer, on average over drivers.
    pub accept_probability: f64,
    /// Chance that a driver declines an offer, on average; the rest are ignored and lapse.
    /// A driver splits what it does not accept between declining and ignoring in the
    /// ratio of the averages.
    pub decline_probability: f64,
    /// How tightly the drivers' own acceptance probabilities gather around
    /// `accept_probability` (m): each driver's is drawn once from Beta(m·k, (1 − m)·k), k
    /// this. 0: every driver accepts with exactly m. The default, 4, gives a fifth of
    /// drivers (at m = 0.7) below one half.
    pub acceptance_concentration: f64,
    /// A driver answers an offer 1 s to this long after seeing it.
    pub reaction_max_s: u32,
    /// Mean time a rider waits before asking for a ride (first ride: uniform over this).
    pub rider_idle_mean_s: u32,
    /// Chance that a rider cancels a ride before pickup (after 15 s to 3 min), whatever
    /// happens (changed their mind).
    pub rider_cancel_probability: f64,
    /// Each rider's patience is drawn once, uniformly from `patience_min_s` to
    /// [`SimConfig::patience_max_s`]: a ride still searching that long after the rider asked
    /// (after its dispatch, booked ahead) is cancelled by the rider, who gave up.
    pub patience_min_s: u32,
    /// See [`SimConfig::patience_min_s`]; 0: riders never give up.
    pub patience_max_s: u32,
    /// Demand hotspots: centres that circle the city centre once a
    /// [`SimConfig::hotspot_day_s`], each 20 % to 70 % of `radius_m` from it. 0: pickups
    /// are uniform over the area.
    pub hotspots: u32,
    /// Share of pickups drawn around a hotspot (one chosen uniformly); the rest, and a
    /// hotspot draw that would leave the area, are uniform over the area.
    pub hotspot_share: f64,
    /// Pickups around a hotspot fall uniformly within this distance of its centre.
    pub hotspot_radius_m: f64,
    /// How long a hotspot takes to circle the centre; where it is depends on the clock's
    /// time since the epoch modulo this (a day: the time of day).
    pub hotspot_day_s: u32,
    /// Chance that a driver who accepted cancels on the way to the pickup.
    pub driver_cancel_probability: f64,
    /// Chance that a rider books ahead: `scheduled_at` 15 to 17 minutes after asking, so
    /// the ride is dispatched (`schedule_lead_s`, 10 min by default) within the run.
    pub scheduled_probability: f64,
    /// The rider takes 5 s to this long to board once the driver has arrived.
    pub boarding_max_s: u32,
}

impl Default for SimConfig {
    /// 200 drivers and 50 riders within 5 km of Tahrir Square.
    fn default() -> Self {
        Self {
            drivers: 200,
            riders: 50,
            seed: 1,
            center_lat_deg: 30.0444,
            center_lng_deg: 31.2357,
            radius_m: 5_000.0,
            report_interval_ms: 4_000,
            speed_min_mps: 6.0,
            speed_max_mps: 14.0,
            ramp_up_s: 60,
            accept_probability: 0.7,
            decline_probability: 0.15,
            acceptance_concentration: 4.0,
            reaction_max_s: 8,
            rider_idle_mean_s: 300,
            rider_cancel_probability: 0.04,
            patience_min_s: 30,
            patience_max_s: 180,
            hotspots: 3,
            hotspot_share: 0.6,
            hotspot_radius_m: 800.0,
            hotspot_day_s: 86_400,
            driver_cancel_probability: 0.03,
            scheduled_probability: 0.1,
            boarding_max_s: 60,
        }
    }
}

impl SimConfig {
    /// Refuses a configuration that would make drivers implausible or the run unbounded.
    pub fn validate(&self) -> Result<LatLng> {
        let bad = |what: &str| Err(Error::invalid(format!("simulation config: {what}")));
        if self.drivers > MAX_PEOPLE || self.riders > MAX_PEOPLE {
            return bad("drivers and riders must be at most 1000000 each");
        }
        if !(100.0..=50_000.0).contains(&self.radius_m) {
            return bad("radius_m must be 100 to 50000");
        }
        if self.report_interval_ms < MIN_REPORT_INTERVAL_MS {
            return bad("report_interval_ms must be at least 1000 (the engine coalesces closer reports)");
        }
        if !(self.speed_min_mps > 0.0
            && self.speed_min_mps <= self.speed_max_mps
            && self.speed_max_mps <= MAX_SPEED_MPS)
        {
            return bad("speeds must satisfy 0 < speed_min_mps <= speed_max_mps <= 15");
        }
        let p = [
            self.accept_probability,
            self.decline_probability,
            self.rider_cancel_probability,
            self.driver_cancel_probability,
            self.scheduled_probability,
        ];
        if p.iter().any(|p| !(0.0..=1.0).contains(p)) || self.accept_probability + self.decline_probability > 1.0 {
            return bad("probabilities must be in [0, 1], accept + decline at most 1");
        }
        if !(self.acceptance_concentration >= 0.0 && self.acceptance_concentration.is_finite()) {
            return bad("acceptance_concentration must be a finite number at least 0");
        }
        if self.patience_min_s > self.patience_max_s {
            return bad("patience_min_s must be at most patience_max_s");
        }
        if !(0.0..=1.0).contains(&self.hotspot_share)
            || !(10.0..=50_000.0).contains(&self.hotspot_radius_m)
            || self.hotspot_day_s == 0
            || self.hotspots > 1_000
        {
            return bad(
                "hotspot_share must be in [0, 1], hotspot_radius_m 10 to 50000, hotspot_day_s positive, hotspots at most 1000",
            );
        }
        if self.reaction_max_s == 0 || self.boarding_max_s < 5 || self.rider_idle_mean_s == 0 {
            return bad("reaction_max_s and rider_idle_mean_s must be positive, boarding_max_s at least 5");
        }
        LatLng::new(self.center_lat_deg, self.center_lng_deg).map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_that_would_make_drivers_implausible_are_refused() {
        let ok = SimConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            SimConfig { speed_max_mps: 20.0, ..ok.clone() },
            SimConfig { speed_min_mps: 0.0, ..ok.clone() },
            SimConfig { report_interval_ms: 500, ..ok.clone() },
            SimConfig { accept_probability: 0.9, decline_probability: 0.2, ..ok.clone() },
            SimConfig { radius_m: 10.0, ..ok.clone() },
            SimConfig { center_lat_deg: 91.0, ..ok.clone() },
            SimConfig { drivers: MAX_PEOPLE + 1, ..ok.clone() },
            SimConfig { acceptance_concentration: -1.0, ..ok.clone() },
            SimConfig { acceptance_concentration: f64::INFINITY, ..ok.clone() },
            SimConfig { patience_min_s: 200, patience_max_s: 100, ..ok.clone() },
            SimConfig { hotspot_share: 1.5, ..ok.clone() },
            SimConfig { hotspot_day_s: 0, ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
