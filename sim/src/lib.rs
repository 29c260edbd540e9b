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
//!   accept, decline, or ignore it so that it lapses. An assigned driver drives to the
//!   pickup, marks arrival, starts the ride with the pickup code the rider tells it (read
//!   from the rider's trip), drives to the drop-off and completes; now and then one
//!   cancels on the way to the pickup, which sends the trip back to searching.
//! - **Riders** ask for rides between random points of the area, priced on a
//!   [`StraightLine`] route, wait, sometimes cancel before pickup, and ask again after an
//!   idle time once the trip has ended (completed, cancelled or expired).
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

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use dispatch_core::clock::{Clock, ManualClock, Timestamp};
use dispatch_core::command::{Actor, Command, LocationReport, NewTrip, NewUser, Outcome};
use dispatch_core::driver::Availability;
use dispatch_core::engine::Engine;
use dispatch_core::error::{DomainError, Error, Result};
use dispatch_core::geo::{LatLng, haversine_m};
use dispatch_core::id::{TripId, UserId};
use dispatch_core::route::StraightLine;
use dispatch_core::trip::{OfferState, PaymentMethod, PickupCode, Place, Trip, TripKind, TripStatus};
use dispatch_core::user::{Category, Role, Vehicle};

/// The fastest a simulated driver moves, m/s (54 km/h: a city street, far below the
/// engine's `max_speed_kmh`).
pub const MAX_SPEED_MPS: f64 = 15.0;

/// The shortest allowed interval between a driver's position reports: the engine's
/// default `location_min_interval_ms`, below which reports would be coalesced.
pub const MIN_REPORT_INTERVAL_MS: u32 = 1_000;

/// Most simulated drivers, and most simulated riders (phone numbers have 8 digits of
/// room; the bound also keeps a step's work bounded).
pub const MAX_PEOPLE: u32 = 1_000_000;

/// How long [`Sim::settle`] and [`Sim::new`] wait for the engine's answers before
/// reporting it stuck. Only reached if the engine stopped answering; never in a run.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The vehicle category of every simulated driver and ride.
const CATEGORY: &str = "economy";

/// Metres per degree of latitude on the sphere of [`dispatch_core::geo::EARTH_RADIUS_M`].
const M_PER_DEG: f64 = 111_195.0;

/// Riders ask for drop-offs at least this far from the pickup.
const MIN_RIDE_M: f64 = 500.0;

/// A cruising driver's next waypoint is at most this far away.
const CRUISE_LEG_M: f64 = 2_000.0;

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
    /// Chance that a driver accepts an offer.
    pub accept_probability: f64,
    /// Chance that a driver declines an offer; the rest are ignored and lapse.
    pub decline_probability: f64,
    /// A driver answers an offer 1 s to this long after seeing it.
    pub reaction_max_s: u32,
    /// Mean time a rider waits before asking for a ride (first ride: uniform over this).
    pub rider_idle_mean_s: u32,
    /// Chance that a rider cancels a ride before pickup (after 15 s to 3 min).
    pub rider_cancel_probability: f64,
    /// Chance that a driver who accepted cancels on the way to the pickup.
    pub driver_cancel_probability: f64,
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
            reaction_max_s: 8,
            rider_idle_mean_s: 300,
            rider_cancel_probability: 0.08,
            driver_cancel_probability: 0.03,
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
        ];
        if p.iter().any(|p| !(0.0..=1.0).contains(p)) || self.accept_probability + self.decline_probability > 1.0 {
            return bad("probabilities must be in [0, 1], accept + decline at most 1");
        }
        if self.reaction_max_s == 0 || self.boarding_max_s < 5 || self.rider_idle_mean_s == 0 {
            return bad("reaction_max_s and rider_idle_mean_s must be positive, boarding_max_s at least 5");
        }
        LatLng::new(self.center_lat_deg, self.center_lng_deg).map_err(Error::from)
    }
}

/// Live figures of a simulation (see [`Sim::stats`]). Counts are since the start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    /// Simulated time since the first step, ms.
    pub simulated_ms: i64,
    /// Drivers online now (available or on a trip).
    pub drivers_online: u32,
    /// Drivers with an assigned trip now.
    pub drivers_on_trip: u32,
    /// Riders with an open trip now.
    pub riders_waiting: u32,
    /// Trips the engine created.
    pub trips_requested: u64,
    /// Trip requests the engine refused.
    pub trips_refused: u64,
    /// Trips accepted by a driver at least once.
    pub trips_matched: u64,
    /// Trips completed.
    pub trips_completed: u64,
    /// Trips cancelled by their rider.
    pub trips_cancelled: u64,
    /// Trips that found no driver before the dispatch timeout.
    pub trips_expired: u64,
    /// Times an assigned driver gave a trip back (it searched again).
    pub driver_cancels: u64,
    /// Offers made, over the finished (completed, cancelled, expired) trips.
    pub offers_on_finished_trips: u64,
    /// Offers declined, over the finished trips.
    pub declines: u64,
    /// Offers that lapsed unanswered, over the finished trips.
    pub lapses: u64,
    /// Offers the drivers chose to ignore.
    pub ignored: u64,
    /// Accepts refused (the trip was taken, or the offer lapsed, meanwhile).
    pub accepts_refused: u64,
    /// Time from request to first accept, median, ms (engine time; 100 ms resolution).
    pub match_p50_ms: Option<i64>,
    /// Time from request to first accept, 95th percentile, ms.
    pub match_p95_ms: Option<i64>,
    /// Position reports answered.
    pub location_reports: u64,
    /// Position reports refused (as implausible jumps, or otherwise). Must be 0.
    pub locations_refused: u64,
    /// Commands submitted.
    pub commands: u64,
    /// Commands not submitted because the engine's queue was full.
    pub overloaded: u64,
    /// Answers that a correct engine never gives to this simulation (see [`Sim::last_error`]).
    pub unexpected_errors: u64,
    /// Accepts the engine granted for a trip another driver still held, or to a driver
    /// already on a trip, as seen in the answers. Must be 0.
    pub double_assignments: u64,
}

impl SimStats {
    /// Finished trips: completed, cancelled or expired.
    pub fn finished_trips(&self) -> u64 {
        self.trips_completed + self.trips_cancelled + self.trips_expired
    }

    /// Mean offers per finished trip (0 before any finished).
    pub fn offers_per_trip(&self) -> f64 {
        match self.finished_trips() {
            0 => 0.0,
            n => self.offers_on_finished_trips as f64 / n as f64,
        }
    }
}

/// What [`audit`] found in the view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audit {
    /// Trips not yet completed, cancelled or expired.
    pub open_trips: u64,
    /// Open trips with a driver (accepted, arrived, in progress).
    pub assigned_trips: u64,
    /// Drivers named by more than one open trip, trips that more than one driver is on,
    /// and trips with more than one accepted offer. Must be 0.
    pub double_assignments: u64,
    /// Assigned trips whose driver is not `on_trip` on them, and `on_trip` drivers whose
    /// trip does not name them. Must be 0.
    pub mismatches: u64,
}

/// Checks, from the engine's published view, that no driver is on two open trips and no
/// trip has two drivers. Scans every trip and driver under the view's read lock: call it
/// once in a while (the `city` example does once a simulated minute), not every step.
pub fn audit(engine: &Engine) -> Audit {
    engine.read(|view| {
        let mut a = Audit::default();
        let mut trips_per_driver: HashMap<UserId, u32> = HashMap::new();
        for t in view.trips() {
            if !t.status.is_open() {
                continue;
            }
            a.open_trips += 1;
            if t.offers.iter().filter(|o| o.state == OfferState::Accepted).count() > 1 {
                a.double_assignments += 1;
            }
            if !t.status.has_driver() {
                continue;
            }
            a.assigned_trips += 1;
            match t.driver_id {
                Some(d) => {
                    *trips_per_driver.entry(d).or_default() += 1;
                    let on_it = view
                        .driver(d)
                        .is_some_and(|d| d.availability == Availability::OnTrip && d.trip_id == Some(t.id));
                    if !on_it {
                        a.mismatches += 1;
                    }
                }
                None => a.mismatches += 1,
            }
        }
        a.double_assignments += trips_per_driver.values().filter(|n| **n > 1).count() as u64;
        let mut drivers_per_trip: HashMap<TripId, u32> = HashMap::new();
        for d in view.drivers() {
            if let Some(tid) = d.trip_id {
                *drivers_per_trip.entry(tid).or_default() += 1;
                let named = view.trip(tid).is_some_and(|t| t.driver_id == Some(d.id) && t.status.has_driver());
                if d.availability != Availability::OnTrip || !named {
                    a.mismatches += 1;
                }
            } else if d.availability == Availability::OnTrip {
                a.mismatches += 1;
            }
        }
        a.double_assignments += drivers_per_trip.values().filter(|n| **n > 1).count() as u64;
        a
    })
}

/// A straight stretch of a driver's path, driven at constant speed (or a stop, when
/// `from == to`). Positions are interpolated in degrees: at city scale the error against
/// the great circle is far below a metre.
#[derive(Debug, Clone, Copy)]
struct Leg {
    from: LatLng,
    to: LatLng,
    start: Timestamp,
    end: Timestamp,
}

impl Leg {
    fn stop(at: LatLng, start: Timestamp, ms: i64) -> Leg {
        Leg { from: at, to: at, start, end: start.plus_millis(ms.max(0)) }
    }

    fn drive(from: LatLng, to: LatLng, start: Timestamp, speed_mps: f64) -> Leg {
        // Rounded up: the leg is never driven faster than `speed_mps`.
        let ms = (haversine_m(from, to) / speed_mps * 1000.0).ceil() as i64;
        Leg { from, to, start, end: start.plus_millis(ms.max(1)) }
    }

    fn position(&self, now: Timestamp) -> LatLng {
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

    fn done(&self, now: Timestamp) -> bool {
        now >= self.end
    }

    fn moving(&self, now: Timestamp) -> bool {
        self.from != self.to && now < self.end
    }

    /// Degrees from north, in `[0, 360)`.
    fn heading_deg(&self) -> f32 {
        let dlat = self.to.lat() - self.from.lat();
        let dlng = (self.to.lng() - self.from.lng()) * self.from.lat().to_radians().cos();
        let h = dlng.atan2(dlat).to_degrees().rem_euclid(360.0) as f32;
        if (0.0..360.0).contains(&h) { h } else { 0.0 }
    }

    fn speed_mps(&self) -> f32 {
        let span = self.end.millis_since(self.start);
        if span <= 0 || self.from == self.to {
            return 0.0;
        }
        (haversine_m(self.from, self.to) / (span as f64 / 1000.0)) as f32
    }
}

/// What a driver decided to do with an offer, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accept,
    Decline,
    Ignore,
}

#[derive(Debug, Clone, Copy)]
struct Decision {
    trip: TripId,
    due: Timestamp,
    answer: Answer,
    sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DriverPhase {
    Offline,
    Cruising,
    ToPickup { trip: TripId, cancel_at: Option<Timestamp> },
    AtPickup { trip: TripId, start_at: Timestamp },
    Riding { trip: TripId },
}

impl DriverPhase {
    fn trip(self) -> Option<TripId> {
        match self {
            DriverPhase::ToPickup { trip, .. } | DriverPhase::AtPickup { trip, .. } | DriverPhase::Riding { trip } => {
                Some(trip)
            }
            _ => None,
        }
    }
}

struct DriverAgent {
    id: UserId,
    speed_mps: f64,
    /// Until the first step: an offset from it.
    online_at: Timestamp,
    phase: DriverPhase,
    leg: Leg,
    /// A state-changing command is in flight.
    busy: bool,
    report_in_flight: bool,
    next_report_at: Timestamp,
    /// Live offers seen, at most the engine's `MAX_PENDING_OFFERS`.
    decisions: Vec<Decision>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RiderPhase {
    /// Until the first step, `request_at` is an offset from it.
    Idle {
        request_at: Timestamp,
    },
    Waiting {
        trip: TripId,
        cancel_at: Option<Timestamp>,
    },
}

struct RiderAgent {
    id: UserId,
    phase: RiderPhase,
    busy: bool,
}

/// What the simulation knows of a trip a rider asked for, until it ends.
struct TripNote {
    /// What the rider tells the driver at pickup.
    code: PickupCode,
    matched: bool,
    /// The driver the sim last saw win an accept, until it completes or gives the trip back.
    holder: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Tag {
    CreateUser { role: Role, index: usize },
    Online(usize),
    Location(usize),
    CreateTrip(usize),
    Accept(usize, TripId),
    Decline(usize),
    Arrived(usize),
    Start(usize),
    Complete(usize, TripId),
    DriverCancel(usize, TripId),
    RiderCancel(usize),
}

struct Reply {
    seq: u64,
    tag: Tag,
    result: Result<Outcome>,
}

/// What a step read from the view about one person.
enum Seen {
    Nothing,
    Offers(Vec<TripId>),
    Trip(Option<Arc<Trip>>),
}

/// A simulated city driving `engine`. See the module documentation.
pub struct Sim<'e> {
    engine: &'e Engine,
    config: SimConfig,
    center: LatLng,
    route: StraightLine,
    category: Category,
    rng: StdRng,
    drivers: Vec<DriverAgent>,
    riders: Vec<RiderAgent>,
    notes: HashMap<TripId, TripNote>,
    /// Answers arrive here, from the writer thread.
    tx: Sender<Reply>,
    rx: Receiver<Reply>,
    /// Answers received but not yet handled (by [`Sim::settle`]).
    inbox: Vec<Reply>,
    next_seq: u64,
    /// Commands submitted and not yet answered.
    outstanding: u64,
    origin: Option<Timestamp>,
    now: Timestamp,
    stats: SimStats,
    match_times: MatchTimes,
    last_error: Option<String>,
}

impl<'e> Sim<'e> {
    /// Sets up a city on `engine`: creates the demo zone if the city area is in no zone
    /// that prices economy rides, and the drivers and riders (reusing those a previous run
    /// created, found by phone number). Waits for the engine; every later call but
    /// [`Sim::settle`] only submits.
    pub fn new(engine: &'e Engine, config: SimConfig) -> Result<Sim<'e>> {
        let center = config.validate()?;
        let category = Category::new(CATEGORY)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sim = Sim {
            engine,
            center,
            route: StraightLine::default(),
            category,
            rng: StdRng::seed_from_u64(config.seed),
            drivers: Vec::with_capacity(config.drivers as usize),
            riders: Vec::with_capacity(config.riders as usize),
            notes: HashMap::new(),
            tx,
            rx,
            inbox: Vec::new(),
            next_seq: 0,
            outstanding: 0,
            origin: None,
            now: Timestamp::default(),
            stats: SimStats::default(),
            match_times: MatchTimes::default(),
            last_error: None,
            config,
        };
        sim.ensure_zone()?;
        let drivers = sim.create_users(Role::Driver, sim.config.drivers)?;
        let riders = sim.create_users(Role::Rider, sim.config.riders)?;
        for id in drivers {
            let speed_mps = sim.rng.random_range(sim.config.speed_min_mps..=sim.config.speed_max_mps);
            let offset_ms = sim.rng.random_range(0..=i64::from(sim.config.ramp_up_s) * 1000);
            let start = sim.random_point();
            sim.drivers.push(DriverAgent {
                id,
                speed_mps,
                online_at: Timestamp::from_millis(offset_ms),
                phase: DriverPhase::Offline,
                leg: Leg::stop(start, Timestamp::default(), 0),
                busy: false,
                report_in_flight: false,
                next_report_at: Timestamp::default(),
                decisions: Vec::new(),
            });
        }
        for id in riders {
            let offset_ms = sim.rng.random_range(0..=i64::from(sim.config.rider_idle_mean_s) * 1000);
            sim.riders.push(RiderAgent {
                id,
                phase: RiderPhase::Idle { request_at: Timestamp::from_millis(offset_ms) },
                busy: false,
            });
        }
        Ok(sim)
    }

    /// The configuration the city was built with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The simulated drivers' user ids, in index order.
    pub fn driver_ids(&self) -> impl Iterator<Item = UserId> + '_ {
        self.drivers.iter().map(|d| d.id)
    }

    /// The simulated riders' user ids, in index order.
    pub fn rider_ids(&self) -> impl Iterator<Item = UserId> + '_ {
        self.riders.iter().map(|r| r.id)
    }

    /// The last unexpected answer, for diagnosis.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The figures so far.
    pub fn stats(&self) -> SimStats {
        let mut s = self.stats.clone();
        s.drivers_online = self.drivers.iter().filter(|d| d.phase != DriverPhase::Offline).count() as u32;
        s.drivers_on_trip = self.drivers.iter().filter(|d| d.phase.trip().is_some()).count() as u32;
        s.riders_waiting = self.riders.iter().filter(|r| matches!(r.phase, RiderPhase::Waiting { .. })).count() as u32;
        s.match_p50_ms = self.match_times.percentile(50);
        s.match_p95_ms = self.match_times.percentile(95);
        s
    }

    /// One step of the city at `now` (the engine's clock): handles the answers that
    /// arrived, reads the view once, and submits what the people do now. Never waits for
    /// the engine. Returns how many commands it submitted. Call it every second or so
    /// (live), or through [`Sim::advance`] on a [`ManualClock`].
    pub fn step(&mut self, now: Timestamp) -> usize {
        let submitted = self.stats.commands;
        if self.origin.is_none() {
            self.start_at(now);
        }
        self.now = now;
        self.stats.simulated_ms = self.origin.map_or(0, |o| now.millis_since(o));
        self.drain_replies();
        let (driver_seen, rider_seen) = self.observe();
        for (i, seen) in rider_seen.into_iter().enumerate() {
            self.step_rider(i, seen);
        }
        for (i, seen) in driver_seen.into_iter().enumerate() {
            self.step_driver(i, seen);
        }
        (self.stats.commands - submitted) as usize
    }

    /// Waits until every command submitted so far is answered (the answers are handled
    /// by the next step). With a [`ManualClock`], this is what makes a run reproducible:
    /// the clock does not move while the engine still works on a step's commands.
    pub fn settle(&mut self) -> Result<()> {
        while self.outstanding > 0 {
            match self.rx.recv_timeout(SETTLE_TIMEOUT) {
                Ok(reply) => {
                    self.outstanding -= 1;
                    self.inbox.push(reply);
                }
                Err(_) => {
                    return Err(Error::internal(format!(
                        "the engine left {} simulated commands unanswered for {SETTLE_TIMEOUT:?}",
                        self.outstanding
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs the city for `duration_ms` of simulated time on `clock`, in steps of
    /// `step_ms`: each step moves the clock, fires the engine's due deadlines (a blocking
    /// [`Engine::tick`]), runs [`Sim::step`] and [`Sim::settle`]s. As fast as the engine
    /// goes, and reproducible.
    pub fn advance(&mut self, clock: &ManualClock, duration_ms: i64, step_ms: i64) -> Result<()> {
        if step_ms <= 0 {
            return Err(Error::invalid("step_ms must be positive"));
        }
        if self.origin.is_none() {
            self.engine.tick()?;
            self.step(clock.now());
            self.settle()?;
        }
        let mut left = duration_ms;
        while left > 0 {
            let dt = step_ms.min(left);
            clock.advance_millis(dt);
            left -= dt;
            self.engine.tick()?;
            self.step(clock.now());
            self.settle()?;
        }
        Ok(())
    }

    // ----- setup ---------------------------------------------------------------

    fn ensure_zone(&mut self) -> Result<()> {
        if self.area_is_served() {
            return Ok(());
        }
        self.engine.create_zone(Actor::Admin, dispatch_core::demo::cairo()?)?;
        if self.area_is_served() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "the city area ({} m around {:?}) is not inside an active zone that prices {CATEGORY} rides",
                self.config.radius_m, self.center
            )))
        }
    }

    /// Whether the centre and the four extreme points of the area are in zones that price
    /// the category. (The demo zone is a box, so these points decide for the whole disc.)
    fn area_is_served(&self) -> bool {
        let r = self.config.radius_m;
        let points = [(0.0, 0.0), (r, 0.0), (-r, 0.0), (0.0, r), (0.0, -r)];
        self.engine.read(|view| {
            points.iter().all(|&(north, east)| {
                offset(self.center, north, east)
                    .and_then(|p| view.catalog().lookup(p).ok().cloned())
                    .is_some_and(|z| z.spec.pricing.contains_key(&self.category))
            })
        })
    }

    fn create_users(&mut self, role: Role, count: u32) -> Result<Vec<UserId>> {
        let prefix = if role == Role::Driver { "+2011" } else { "+2012" };
        let mut ids: Vec<Option<UserId>> = Vec::with_capacity(count as usize);
        for n in 0..count {
            let phone = format!("{prefix}{n:08}");
            let existing = self.engine.read(|v| v.user_by_phone(role, &phone).map(|u| u.id));
            ids.push(existing);
            if existing.is_some() {
                continue;
            }
            let vehicle =
                (role == Role::Driver).then(|| Vehicle { category: self.category.clone(), plate: format!("SIM {n}") });
            let name = format!("Sim {} {n}", role.as_str());
            let user = NewUser { id: None, role, name, phone, vehicle };
            // A full queue is waited out here: setup may block, steps may not.
            while !self.send(
                Actor::Admin,
                Command::CreateUser(user.clone()),
                Tag::CreateUser { role, index: n as usize },
            ) {
                self.settle()?;
                if self.stats.unexpected_errors > 0 {
                    return Err(Error::internal(self.last_error.clone().unwrap_or_default()));
                }
            }
        }
        self.settle()?;
        for reply in std::mem::take(&mut self.inbox) {
            match (reply.tag, reply.result) {
                (Tag::CreateUser { role: r, index }, Ok(Outcome::User(u))) if r == role => ids[index] = Some(u.id),
                (_, Err(e)) => return Err(e),
                (_, Ok(other)) => return Err(Error::internal(format!("create_user answered {other:?}"))),
            }
        }
        self.stats = SimStats::default();
        self.next_seq = 0;
        ids.into_iter().map(|id| id.ok_or_else(|| Error::internal("a simulated user was not created"))).collect()
    }

    /// Turns the offsets drawn at setup into instants, at the first step.
    fn start_at(&mut self, now: Timestamp) {
        self.origin = Some(now);
        for d in &mut self.drivers {
            d.online_at = now.plus_millis(d.online_at.as_millis());
            d.leg = Leg::stop(d.leg.to, now, 0);
        }
        for r in &mut self.riders {
            if let RiderPhase::Idle { request_at } = r.phase {
                r.phase = RiderPhase::Idle { request_at: now.plus_millis(request_at.as_millis()) };
            }
        }
    }

    // ----- commands and answers --------------------------------------------------

    /// Submits without waiting; `false` if the queue was full or the engine is gone.
    fn send(&mut self, actor: Actor, command: Command, tag: Tag) -> bool {
        let seq = self.next_seq;
        let tx = self.tx.clone();
        let submitted = self.engine.submit_with(actor, command, move |result| {
            // The receiver lives as long as the sim; after that nobody needs the answer.
            let _ = tx.send(Reply { seq, tag, result });
        });
        match submitted {
            Ok(()) => {
                self.next_seq += 1;
                self.outstanding += 1;
                self.stats.commands += 1;
                true
            }
            Err(Error::Overloaded) => {
                self.stats.overloaded += 1;
                false
            }
            Err(e) => {
                self.unexpected(&e);
                false
            }
        }
    }

    fn unexpected(&mut self, e: &dyn std::fmt::Display) {
        self.stats.unexpected_errors += 1;
        self.last_error = Some(e.to_string());
    }

    fn drain_replies(&mut self) {
        while let Ok(reply) = self.rx.try_recv() {
            self.outstanding -= 1;
            self.inbox.push(reply);
        }
        let mut replies = std::mem::take(&mut self.inbox);
        // Position reports are answered before the batch is durable, the rest after:
        // submission order, not arrival order, keeps the run reproducible.
        replies.sort_unstable_by_key(|r| r.seq);
        for reply in replies {
            self.handle(reply.tag, reply.result);
        }
    }

    fn handle(&mut self, tag: Tag, result: Result<Outcome>) {
        let now = self.now;
        match tag {
            Tag::CreateUser { .. } => {}
            Tag::Online(i) => {
                self.drivers[i].busy = false;
                match result {
                    Ok(_) => {
                        let phase_ms = self.rng.random_range(0..i64::from(self.config.report_interval_ms));
                        let d = &mut self.drivers[i];
                        d.phase = DriverPhase::Cruising;
                        d.next_report_at = now.plus_millis(phase_ms);
                    }
                    Err(e) => self.unexpected(&e),
                }
            }
            Tag::Location(i) => {
                self.drivers[i].report_in_flight = false;
                match result {
                    Ok(_) => self.stats.location_reports += 1,
                    Err(e) => {
                        self.stats.locations_refused += 1;
                        self.unexpected(&e);
                    }
                }
            }
            Tag::CreateTrip(i) => {
                self.riders[i].busy = false;
                match result {
                    Ok(Outcome::Trip(t)) => {
                        self.stats.trips_requested += 1;
                        self.notes.insert(t.id, TripNote { code: t.pickup_code, matched: false, holder: None });
                        let cancel_at = self
                            .rng
                            .random_bool(self.config.rider_cancel_probability)
                            .then(|| now.plus_millis(self.rng.random_range(15_000..=180_000)));
                        self.riders[i].phase = RiderPhase::Waiting { trip: t.id, cancel_at };
                    }
                    other => {
                        self.stats.trips_refused += 1;
                        if let Err(e) = other {
                            self.last_error = Some(e.to_string());
                        }
                        let request_at = self.next_request(now);
                        self.riders[i].phase = RiderPhase::Idle { request_at };
                    }
                }
            }
            Tag::Accept(i, trip_id) => {
                self.drivers[i].busy = false;
                match result {
                    Ok(Outcome::Trip(t)) => self.accepted(i, &t),
                    Ok(other) => self.unexpected(&format!("accept answered {other:?}")),
                    Err(
                        Error::Domain(DomainError::TripAlreadyAssigned(_))
                        | Error::Domain(DomainError::DriverNotAvailable(_))
                        | Error::Domain(DomainError::OfferExpired(_))
                        | Error::Domain(DomainError::InvalidTransition { .. }),
                    ) => self.stats.accepts_refused += 1,
                    Err(e) => {
                        self.stats.accepts_refused += 1;
                        self.unexpected(&format!("accept of {trip_id}: {e}"));
                    }
                }
            }
            Tag::Decline(i) => {
                // A refusal means the offer went away meanwhile: nothing to do.
                self.drivers[i].busy = false;
            }
            Tag::Arrived(i) => {
                self.drivers[i].busy = false;
                match (result, self.drivers[i].phase) {
                    (Ok(_), DriverPhase::ToPickup { trip, .. }) => {
                        let board_ms = self.rng.random_range(5_000..=i64::from(self.config.boarding_max_s) * 1000);
                        let d = &mut self.drivers[i];
                        d.phase = DriverPhase::AtPickup { trip, start_at: now.plus_millis(board_ms) };
                        d.leg = Leg::stop(d.leg.position(now), now, board_ms);
                    }
                    (Ok(_), _) => {}
                    (Err(e), _) => self.trip_command_refused(i, &e),
                }
            }
            Tag::Start(i) => {
                self.drivers[i].busy = false;
                match (result, self.drivers[i].phase) {
                    (Ok(Outcome::Trip(t)), DriverPhase::AtPickup { trip, .. }) => {
                        let d = &mut self.drivers[i];
                        d.phase = DriverPhase::Riding { trip };
                        d.leg = Leg::drive(d.leg.position(now), t.dropoff.point, now, d.speed_mps);
                    }
                    (Ok(_), _) => {}
                    (Err(e), _) => self.trip_command_refused(i, &e),
                }
            }
            Tag::Complete(i, trip_id) => {
                self.drivers[i].busy = false;
                match result {
                    Ok(_) => {
                        self.release(trip_id, i);
                        self.cruise(i);
                    }
                    Err(e) => self.trip_command_refused(i, &e),
                }
            }
            Tag::DriverCancel(i, trip_id) => {
                self.drivers[i].busy = false;
                if result.is_ok() {
                    self.stats.driver_cancels += 1;
                    self.release(trip_id, i);
                    self.cruise(i);
                }
                // Refused: the rider cancelled first; the next observation frees the driver.
            }
            Tag::RiderCancel(i) => {
                // Seen in the view at the next step, like any end of a trip.
                self.riders[i].busy = false;
            }
        }
    }

    /// Driver `i` won trip `t`.
    fn accepted(&mut self, i: usize, t: &Trip) {
        let now = self.now;
        if self.drivers[i].phase.trip().is_some() {
            self.stats.double_assignments += 1;
        }
        match self.notes.get_mut(&t.id) {
            Some(note) => {
                if note.holder.is_some_and(|h| h != i) {
                    self.stats.double_assignments += 1;
                }
                note.holder = Some(i);
                if !note.matched {
                    note.matched = true;
                    self.stats.trips_matched += 1;
                    let accepted_at = t.accepted_at.unwrap_or(now);
                    self.match_times.record(accepted_at.millis_since(t.created_at));
                }
            }
            None => self.unexpected(&format!("won trip {}, which no simulated rider asked for", t.id)),
        }
        let cancel_at = self
            .rng
            .random_bool(self.config.driver_cancel_probability)
            .then(|| now.plus_millis(self.rng.random_range(5_000..=60_000)));
        let d = &mut self.drivers[i];
        d.decisions.clear();
        d.phase = DriverPhase::ToPickup { trip: t.id, cancel_at };
        d.leg = Leg::drive(d.leg.position(now), t.pickup.point, now, d.speed_mps);
    }

    /// An arrived/start/complete refused: the trip was taken away (the rider cancelled)
    /// and the next observation frees the driver; anything else is unexpected.
    fn trip_command_refused(&mut self, i: usize, e: &Error) {
        if !matches!(
            e,
            Error::Domain(DomainError::InvalidTransition { .. })
                | Error::Domain(DomainError::NotFound { .. })
                | Error::Domain(DomainError::Forbidden(_))
        ) {
            self.unexpected(&format!("driver {}: {e}", self.drivers[i].id));
        }
    }

    fn release(&mut self, trip: TripId, driver: usize) {
        if let Some(note) = self.notes.get_mut(&trip)
            && note.holder == Some(driver)
        {
            note.holder = None;
        }
    }

    /// Driver `i` is free: wanders from where it is.
    fn cruise(&mut self, i: usize) {
        let now = self.now;
        let here = self.drivers[i].leg.position(now);
        self.drivers[i].phase = DriverPhase::Cruising;
        self.drivers[i].decisions.clear();
        self.drivers[i].leg = self.cruise_leg(here, self.drivers[i].speed_mps, now);
    }

    fn cruise_leg(&mut self, here: LatLng, speed_mps: f64, now: Timestamp) -> Leg {
        if self.rng.random_bool(0.3) {
            let ms = self.rng.random_range(20_000..=120_000);
            return Leg::stop(here, now, ms);
        }
        let r = CRUISE_LEG_M * self.rng.random::<f64>().sqrt();
        let theta = self.rng.random_range(0.0..std::f64::consts::TAU);
        let target = offset(here, r * theta.cos(), r * theta.sin())
            .filter(|p| haversine_m(*p, self.center) <= self.config.radius_m)
            .unwrap_or_else(|| self.random_point());
        Leg::drive(here, target, now, speed_mps)
    }

    // ----- the people ------------------------------------------------------------

    /// One read of the view: what every person would see in their app now.
    fn observe(&self) -> (Vec<Seen>, Vec<Seen>) {
        self.engine.read(|view| {
            let drivers = self
                .drivers
                .iter()
                .map(|d| match d.phase {
                    _ if d.busy => Seen::Nothing,
                    DriverPhase::Offline => Seen::Nothing,
                    DriverPhase::Cruising => {
                        Seen::Offers(view.driver(d.id).map(|d| d.pending_offers.clone()).unwrap_or_default())
                    }
                    phase => Seen::Trip(phase.trip().and_then(|t| view.trip(t).cloned())),
                })
                .collect();
            let riders = self
                .riders
                .iter()
                .map(|r| match r.phase {
                    RiderPhase::Waiting { trip, .. } if !r.busy => Seen::Trip(view.trip(trip).cloned()),
                    _ => Seen::Nothing,
                })
                .collect();
            (drivers, riders)
        })
    }

    fn step_rider(&mut self, i: usize, seen: Seen) {
        let now = self.now;
        if self.riders[i].busy {
            return;
        }
        match self.riders[i].phase {
            RiderPhase::Idle { request_at } if now >= request_at => {
                let (pickup, dropoff) = self.random_ride();
                let new = NewTrip {
                    id: None,
                    pickup_code: None,
                    kind: TripKind::Ride,
                    pickup: Place::at(pickup),
                    dropoff: Place::at(dropoff),
                    category: self.category.clone(),
                    parcel: None,
                    payment_method: PaymentMethod::Cash,
                    route: self.route.between(pickup, dropoff),
                    coupon: None,
                    bid_minor: None,
                };
                let rider = self.riders[i].id;
                if self.send(Actor::User(rider), Command::CreateTrip(new), Tag::CreateTrip(i)) {
                    self.riders[i].busy = true;
                }
            }
            RiderPhase::Idle { .. } => {}
            RiderPhase::Waiting { trip, cancel_at } => {
                let Seen::Trip(Some(t)) = seen else { return };
                if t.status.is_terminal() {
                    self.trip_ended(&t);
                    let request_at = self.next_request(now);
                    self.riders[i].phase = RiderPhase::Idle { request_at };
                } else if cancel_at.is_some_and(|at| now >= at)
                    && matches!(t.status, TripStatus::Searching | TripStatus::Accepted)
                {
                    let rider = self.riders[i].id;
                    let cancel = Command::CancelTrip { trip_id: trip, reason: "changed my mind".into() };
                    if self.send(Actor::User(rider), cancel, Tag::RiderCancel(i)) {
                        self.riders[i].busy = true;
                        self.riders[i].phase = RiderPhase::Waiting { trip, cancel_at: None };
                    }
                }
            }
        }
    }

    fn trip_ended(&mut self, t: &Trip) {
        match t.status {
            TripStatus::Completed => self.stats.trips_completed += 1,
            TripStatus::Cancelled => self.stats.trips_cancelled += 1,
            TripStatus::Expired => self.stats.trips_expired += 1,
            _ => return,
        }
        self.stats.offers_on_finished_trips += t.offers.len() as u64;
        for o in &t.offers {
            match o.state {
                OfferState::Declined => self.stats.declines += 1,
                OfferState::Lapsed => self.stats.lapses += 1,
                _ => {}
            }
        }
        self.notes.remove(&t.id);
    }

    fn step_driver(&mut self, i: usize, seen: Seen) {
        let now = self.now;
        if !self.drivers[i].busy {
            match self.drivers[i].phase {
                DriverPhase::Offline => self.go_online(i),
                DriverPhase::Cruising => self.answer_offers(i, seen),
                phase => self.drive_trip(i, phase, seen),
            }
        }
        if self.drivers[i].phase == DriverPhase::Cruising && self.drivers[i].leg.done(now) {
            let (here, speed) = (self.drivers[i].leg.to, self.drivers[i].speed_mps);
            self.drivers[i].leg = self.cruise_leg(here, speed, now);
        }
        self.report_position(i);
    }

    fn go_online(&mut self, i: usize) {
        let d = &self.drivers[i];
        if self.now < d.online_at {
            return;
        }
        let (id, at) = (d.id, d.leg.to);
        if self.send(Actor::User(id), Command::SetDriverStatus { online: true, location: Some(at) }, Tag::Online(i)) {
            self.drivers[i].busy = true;
        }
    }

    fn answer_offers(&mut self, i: usize, seen: Seen) {
        let now = self.now;
        let Seen::Offers(offers) = seen else { return };
        self.drivers[i].decisions.retain(|d| offers.contains(&d.trip));
        for trip in offers {
            if self.drivers[i].decisions.iter().any(|d| d.trip == trip) {
                continue;
            }
            let roll = self.rng.random::<f64>();
            let answer = if roll < self.config.accept_probability {
                Answer::Accept
            } else if roll < self.config.accept_probability + self.config.decline_probability {
                Answer::Decline
            } else {
                self.stats.ignored += 1;
                Answer::Ignore
            };
            let due = now.plus_millis(self.rng.random_range(1_000..=i64::from(self.config.reaction_max_s) * 1000));
            self.drivers[i].decisions.push(Decision { trip, due, answer, sent: false });
        }
        let next = self.drivers[i].decisions.iter_mut().find(|d| !d.sent && d.answer != Answer::Ignore && now >= d.due);
        let Some(decision) = next else { return };
        decision.sent = true;
        let (trip_id, answer) = (decision.trip, decision.answer);
        let driver = Actor::User(self.drivers[i].id);
        let sent = match answer {
            Answer::Accept => self.send(driver, Command::AcceptTrip { trip_id }, Tag::Accept(i, trip_id)),
            _ => self.send(driver, Command::DeclineTrip { trip_id }, Tag::Decline(i)),
        };
        if sent {
            self.drivers[i].busy = true;
        } else if let Some(d) = self.drivers[i].decisions.iter_mut().find(|d| d.trip == trip_id) {
            d.sent = false;
        }
    }

    fn drive_trip(&mut self, i: usize, phase: DriverPhase, seen: Seen) {
        let now = self.now;
        let (id, leg) = (self.drivers[i].id, self.drivers[i].leg);
        let Some(trip_id) = phase.trip() else { return };
        let ours = matches!(&seen, Seen::Trip(Some(t)) if t.driver_id == Some(id) && t.status.has_driver());
        if !ours {
            // The rider cancelled (or the trip is gone): back to the streets.
            self.release(trip_id, i);
            self.cruise(i);
            return;
        }
        let driver = Actor::User(id);
        let (command, tag) = match phase {
            DriverPhase::ToPickup { cancel_at: Some(at), .. } if now >= at => {
                (Command::CancelTrip { trip_id, reason: "stuck in traffic".into() }, Tag::DriverCancel(i, trip_id))
            }
            DriverPhase::ToPickup { .. } if leg.done(now) => (Command::DriverArrived { trip_id }, Tag::Arrived(i)),
            DriverPhase::AtPickup { start_at, .. } if now >= start_at => {
                // The rider tells the driver the code shown in the rider's app.
                let Some(code) = self.notes.get(&trip_id).map(|n| n.code.to_string()) else {
                    self.unexpected(&format!("no pickup code known for {trip_id}"));
                    return;
                };
                (Command::StartTrip { trip_id, pickup_code: code }, Tag::Start(i))
            }
            DriverPhase::Riding { .. } if leg.done(now) => {
                let driven_m = haversine_m(leg.from, leg.to).round() as u32;
                (
                    Command::CompleteTrip { trip_id, distance_m: Some(driven_m), dropoff: None },
                    Tag::Complete(i, trip_id),
                )
            }
            _ => return,
        };
        if self.send(driver, command, tag) {
            self.drivers[i].busy = true;
        }
    }

    fn report_position(&mut self, i: usize) {
        let now = self.now;
        let d = &self.drivers[i];
        if d.phase == DriverPhase::Offline || d.report_in_flight || now < d.next_report_at {
            return;
        }
        let moving = d.leg.moving(now);
        let report = LocationReport {
            point: d.leg.position(now),
            heading_deg: moving.then(|| d.leg.heading_deg()),
            speed_mps: Some(if moving { d.leg.speed_mps() } else { 0.0 }),
        };
        let id = d.id;
        if self.send(Actor::User(id), Command::UpdateLocation(report), Tag::Location(i)) {
            let d = &mut self.drivers[i];
            d.report_in_flight = true;
            d.next_report_at = now.plus_millis(i64::from(self.config.report_interval_ms));
        }
    }

    // ----- randomness --------------------------------------------------------------

    fn next_request(&mut self, now: Timestamp) -> Timestamp {
        // Exponential idle time: riders ask independently of each other.
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let ms = -u.ln() * f64::from(self.config.rider_idle_mean_s) * 1000.0;
        now.plus_millis(ms.min(24.0 * 3_600_000.0) as i64)
    }

    /// A uniformly random point of the city area.
    fn random_point(&mut self) -> LatLng {
        let r = self.config.radius_m * self.rng.random::<f64>().sqrt();
        let theta = self.rng.random_range(0.0..std::f64::consts::TAU);
        offset(self.center, r * theta.cos(), r * theta.sin()).unwrap_or(self.center)
    }

    /// A pickup and a drop-off at least [`MIN_RIDE_M`] apart (when the area allows).
    fn random_ride(&mut self) -> (LatLng, LatLng) {
        let pickup = self.random_point();
        let mut dropoff = self.random_point();
        for _ in 0..10 {
            if haversine_m(pickup, dropoff) >= MIN_RIDE_M {
                break;
            }
            dropoff = self.random_point();
        }
        (pickup, dropoff)
    }
}

/// The point `north_m` north and `east_m` east of `from` (flat-earth offset: exact enough
/// within a city).
fn offset(from: LatLng, north_m: f64, east_m: f64) -> Option<LatLng> {
    let lat = from.lat() + north_m / M_PER_DEG;
    let lng = from.lng() + east_m / (M_PER_DEG * from.lat().to_radians().cos());
    LatLng::new(lat, lng).ok()
}

/// Resolution of [`MatchTimes`], ms.
const MATCH_BUCKET_MS: i64 = 100;

/// Times to match longer than this share the last bucket (a trip expires long before).
const MATCH_MAX_MS: i64 = 600_000;

/// A histogram of times to match: bounded memory however long a live city runs, exact to
/// [`MATCH_BUCKET_MS`] (and exact outright on a manual clock stepped in whole multiples of it).
#[derive(Debug, Clone)]
struct MatchTimes {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for MatchTimes {
    fn default() -> Self {
        Self { buckets: vec![0; (MATCH_MAX_MS / MATCH_BUCKET_MS) as usize + 1], count: 0 }
    }
}

impl MatchTimes {
    fn record(&mut self, ms: i64) {
        let i = (ms.clamp(0, MATCH_MAX_MS) / MATCH_BUCKET_MS) as usize;
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
            self.count += 1;
        }
    }

    /// Nearest-rank percentile `p`, as the lower edge of its bucket.
    fn percentile(&self, p: u64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let rank = (p * self.count).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(i as i64 * MATCH_BUCKET_MS);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_core::{EngineConfig, RandomIds, State};

    const START_MS: i64 = 1_700_000_000_000;

    /// A small seeded city: 50 drivers and 20 riders within 3 km, so that rides end
    /// within minutes.
    fn small(seed: u64) -> SimConfig {
        SimConfig { drivers: 50, riders: 20, seed, radius_m: 3_000.0, rider_idle_mean_s: 120, ..SimConfig::default() }
    }

    /// Runs `config` for `minutes` simulated minutes on a manual clock, checking the
    /// engine's invariants from the view every simulated minute. Returns the figures and
    /// the engine's final state.
    fn run(config: SimConfig, minutes: i64) -> (SimStats, State) {
        let clock = ManualClock::new(Timestamp::from_millis(START_MS));
        let ids = RandomIds::seeded(config.seed);
        let engine = Engine::open(EngineConfig::default().with_clock(clock.clone()).with_ids(ids)).unwrap();
        let mut sim = Sim::new(&engine, config).unwrap();
        for _ in 0..minutes {
            sim.advance(&clock, 60_000, 1_000).unwrap();
            assert_accepted_trips_are_driven(&engine);
            let a = audit(&engine);
            assert_eq!((a.double_assignments, a.mismatches), (0, 0), "{a:?}");
        }
        let stats = sim.stats();
        assert_eq!(stats.unexpected_errors, 0, "last: {:?}", sim.last_error());
        drop(sim);
        (stats, engine.shutdown().unwrap())
    }

    /// Every trip with a driver is that driver's trip, and the driver is on_trip on it.
    fn assert_accepted_trips_are_driven(engine: &Engine) {
        engine.read(|view| {
            for t in view.trips().filter(|t| t.status.has_driver()) {
                let driver = t.driver_id.and_then(|d| view.driver(d)).expect("an assigned trip names a known driver");
                assert_eq!(driver.availability, Availability::OnTrip, "driver of {}", t.id);
                assert_eq!(driver.trip_id, Some(t.id), "driver of {}", t.id);
            }
        });
    }

    #[test]
    fn a_small_city_matches_and_completes_trips_with_no_double_assignment() {
        let (s, state) = run(small(1), 10);
        assert!(s.trips_requested >= 20, "{s:?}");
        assert!(s.trips_matched > 0 && s.trips_completed > 0, "{s:?}");
        assert!(s.trips_matched <= s.trips_requested && s.trips_completed <= s.trips_matched, "{s:?}");
        assert_eq!(s.double_assignments, 0, "{s:?}");
        assert_eq!(s.locations_refused, 0, "no simulated move is implausible: {s:?}");
        assert!(s.location_reports > 50 * 60, "every online driver reports every few seconds: {s:?}");
        assert!(s.match_p50_ms.is_some_and(|p| p <= s.match_p95_ms.unwrap_or(0)), "{s:?}");
        assert!(s.ignored > 0 && s.accepts_refused > 0, "drivers ignore offers and lose races: {s:?}");
        assert_eq!(s.drivers_online, 50, "{s:?}");
        state.check_invariants().unwrap();
        let completed = state.trips().filter(|t| t.status == TripStatus::Completed).count() as u64;
        assert_eq!(completed, s.trips_completed, "the sim counts what the engine did");
        for t in state.trips().filter(|t| t.status == TripStatus::Completed) {
            assert!(t.started_at.is_some() && t.fare.final_minor.is_some(), "{t:?}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let (a, state_a) = run(small(42), 5);
        let (b, state_b) = run(small(42), 5);
        assert_eq!(a, b);
        assert_eq!(state_a, state_b, "the engine ends in the same state, bit for bit");
        let (c, _) = run(small(43), 5);
        assert_ne!(a, c, "another seed, another city");
    }

    #[test]
    fn offers_nobody_takes_are_declined_lapse_and_expire() {
        let reluctant = SimConfig { accept_probability: 0.02, decline_probability: 0.48, ..small(9) };
        let (s, state) = run(reluctant, 6);
        assert!(s.declines > 0 && s.lapses > 0, "{s:?}");
        assert!(s.offers_per_trip() > 5.0, "trips go through several rounds: {s:?}");
        assert!(s.trips_expired > 0, "some trips find nobody before the timeout: {s:?}");
        assert_eq!(s.double_assignments, 0, "{s:?}");
        state.check_invariants().unwrap();
    }

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
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_area_outside_every_zone_is_refused_and_a_second_sim_reuses_the_users() {
        let clock = ManualClock::new(Timestamp::from_millis(START_MS));
        let engine = Engine::open(EngineConfig::default().with_clock(clock).with_ids(RandomIds::seeded(3))).unwrap();
        let far = SimConfig { center_lat_deg: 48.85, center_lng_deg: 2.35, ..small(3) };
        assert!(matches!(Sim::new(&engine, far), Err(Error::Domain(DomainError::Invalid(_)))));
        let first: Vec<UserId> = Sim::new(&engine, small(3)).unwrap().driver_ids().collect();
        let again: Vec<UserId> = Sim::new(&engine, small(4)).unwrap().driver_ids().collect();
        assert_eq!(first, again, "users are found by phone, not created twice");
        assert_eq!(engine.read(|v| v.catalog().zones().count()), 1, "the demo zone is created once");
    }

    #[test]
    fn match_time_percentiles_are_nearest_rank_to_100_ms() {
        let mut m = MatchTimes::default();
        assert_eq!(m.percentile(50), None);
        m.record(7_000);
        assert_eq!(m.percentile(95), Some(7_000));
        let mut m = MatchTimes::default();
        for s in 1..=100 {
            m.record(s * 1_000 + 50);
        }
        assert_eq!((m.percentile(50), m.percentile(95)), (Some(50_000), Some(95_000)));
        m.record(-5);
        m.record(10 * MATCH_MAX_MS);
        assert_eq!((m.percentile(0), m.percentile(100)), (Some(0), Some(MATCH_MAX_MS)));
    }
}
