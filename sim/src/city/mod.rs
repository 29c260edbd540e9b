//! [`Sim`]: the whole simulated city in one struct — its people, its random generator, the
//! notes it keeps on trips and the channel the engine answers on — and the loop that runs
//! it: [`Sim::step`], [`Sim::settle`], [`Sim::advance`], submitting commands (`send`) and
//! handling their answers (`handle`).
//!
//! The rest of `impl Sim` is in the child modules: `setup.rs` ([`Sim::new`]), and
//! `driver.rs` and `rider.rs`, what each kind of person does at a step and on an answer.
//! They share this module's state, its `send` and its `random_point`; `driver` and `rider`
//! do not use each other.
//!
//! Guarantees upheld here:
//! - **Never blocks in [`Sim::step`].** A step drains the answers that arrived
//!   (`try_recv`), reads the view once (`observe`) and submits through `send`, which uses
//!   [`Engine::submit_with`] and gives up on a full queue rather than wait. Only
//!   [`Sim::settle`] waits for the engine (giving up once no answer has come for
//!   [`SETTLE_TIMEOUT`]), and so [`Sim::advance`], which also waits for [`Engine::tick`];
//!   and [`Sim::new`], in `setup.rs`.
//! - **Bounded.** `send` is the only way a command leaves: a full queue is counted in
//!   [`SimStats::overloaded`] and `send` returns `false`, so the person stays as it was and
//!   the next step tries again; nothing is queued here. Each person has at most one
//!   state-changing command in flight (its `busy` flag, set by `driver.rs` and `rider.rs`
//!   when `send` succeeds, cleared here by its answer) and a driver at most one position
//!   report (`report_in_flight`): after setup, the commands in flight, and so the answers
//!   waiting in `inbox`, are at most two per driver and one per rider. `notes` holds one
//!   entry per trip a rider waits on, dropped when the rider sees it end.
//! - **Reproducible.** All randomness is drawn from `rng` (seeded with
//!   [`SimConfig::seed`](crate::SimConfig::seed)) in a fixed order: a step handles the
//!   answers in submission order (sorted by `seq`, not by arrival), then the riders and
//!   then the drivers, each in index order; `notes` is a hash map that is never iterated.
//!   [`Sim::advance`] moves a [`ManualClock`] only after [`Sim::settle`]: the engine never
//!   works on a step's commands while the clock moves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rand::Rng;
use rand::rngs::StdRng;

use dispatch_core::clock::{Clock, ManualClock, Timestamp};
use dispatch_core::command::{Actor, Command, Outcome};
use dispatch_core::engine::Engine;
use dispatch_core::error::{DomainError, Error, Result};
use dispatch_core::geo::LatLng;
use dispatch_core::id::{TripId, UserId};
use dispatch_core::route::StraightLine;
use dispatch_core::trip::{PickupCode, Trip};
use dispatch_core::user::{Category, Role};

use crate::SimConfig;
use crate::draw::Hotspots;
use crate::geo::offset;
use crate::leg::Leg;
use crate::stats::{Histogram, SimStats, gini};

use driver::{DriverAgent, DriverPhase};
use rider::{RiderAgent, RiderPhase};

mod driver;
mod rider;
mod setup;

/// How long [`Sim::settle`] and [`Sim::new`] wait for the engine's answers before
/// reporting it stuck. Only reached if the engine stopped answering; never in a run.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the simulation knows of a trip a rider asked for, until it ends.
struct TripNote {
    /// What the rider tells the driver at pickup.
    code: PickupCode,
    matched: bool,
    /// The driver the sim last saw win an accept, until it completes or gives the trip back.
    holder: Option<usize>,
    /// Booked ahead and not yet seen dispatched.
    scheduled: bool,
}

#[derive(Debug, Clone, Copy)]
enum Tag {
    CreateUser {
        role: Role,
        index: usize,
    },
    Online(usize),
    Location(usize),
    CreateTrip(usize),
    Accept(usize, TripId),
    Decline(usize),
    Arrived(usize),
    Start(usize),
    Complete(usize, TripId),
    DriverCancel(usize, TripId),
    /// `true`: the rider gave up waiting.
    RiderCancel(usize, bool),
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

/// A simulated city driving `engine`. See the crate documentation.
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
    match_times: Histogram,
    /// Driver to pickup when a driver wins a trip, m.
    pickup_m: Histogram,
    /// The same as the driver's drive, ms.
    pickup_eta_ms: Histogram,
    /// Winning a trip to completing it, ms.
    engaged_ms: Histogram,
    hotspots: Hotspots,
    last_error: Option<String>,
}

impl Sim<'_> {
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
        s.pickup_mean_m = self.pickup_m.mean();
        s.pickup_p95_m = self.pickup_m.percentile(95);
        s.pickup_eta_mean_ms = self.pickup_eta_ms.mean();
        s.pickup_eta_p95_ms = self.pickup_eta_ms.percentile(95);
        s.trip_engaged_mean_ms = self.engaged_ms.mean();
        let earnings: Vec<i64> =
            self.drivers.iter().filter(|d| d.phase != DriverPhase::Offline).map(|d| d.earned_minor).collect();
        s.earnings_gini = gini(&earnings);
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
        } else {
            self.count_driver_time(now.millis_since(self.now).max(0) as u64);
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

    /// Adds `dt` ms, the time since the last step, to the online (and idle) time of every
    /// driver online (and cruising) through it.
    fn count_driver_time(&mut self, dt: u64) {
        for d in &self.drivers {
            match d.phase {
                DriverPhase::Offline => {}
                DriverPhase::Cruising => {
                    self.stats.driver_online_ms += dt;
                    self.stats.driver_idle_ms += dt;
                }
                _ => self.stats.driver_online_ms += dt,
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
                        let scheduled = t.status == dispatch_core::trip::TripStatus::Scheduled;
                        self.stats.scheduled_booked += u64::from(scheduled);
                        let note = TripNote { code: t.pickup_code, matched: false, holder: None, scheduled };
                        self.notes.insert(t.id, note);
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
                    Ok(outcome) => {
                        if let Outcome::Trip(t) = &outcome {
                            self.drivers[i].earned_minor += t.fare.final_minor.unwrap_or(0);
                        }
                        self.engaged_ms.record(now.millis_since(self.drivers[i].engaged_at));
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
            Tag::RiderCancel(i, gave_up) => {
                // Seen in the view at the next step, like any end of a trip.
                self.riders[i].busy = false;
                self.stats.riders_gave_up += u64::from(gave_up && result.is_ok());
            }
        }
    }

    // ----- the people ------------------------------------------------------------

    /// One read of the view: what every person would see in their app now.
    fn observe(&self) -> (Vec<Seen>, Vec<Seen>) {
        self.engine.read_snapshot(|view| {
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

    // ----- randomness --------------------------------------------------------------

    /// A uniformly random point of the city area.
    fn random_point(&mut self) -> LatLng {
        let r = self.config.radius_m * self.rng.random::<f64>().sqrt();
        let theta = self.rng.random_range(0.0..std::f64::consts::TAU);
        offset(self.center, r * theta.cos(), r * theta.sin()).unwrap_or(self.center)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit;
    use dispatch_core::driver::Availability;
    use dispatch_core::trip::TripStatus;
    use dispatch_core::{EngineConfig, RandomIds, State};

    pub(super) const START_MS: i64 = 1_700_000_000_000;

    /// A small seeded city: 50 drivers and 20 riders within 3 km, so that rides end
    /// within minutes.
    pub(super) fn small(seed: u64) -> SimConfig {
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
        // A tenth book ahead; those booked early enough are dispatched within the run.
        assert!(s.scheduled_dispatched > 0 && s.scheduled_dispatched <= s.scheduled_booked, "{s:?}");
        state.check_invariants().unwrap();
        let completed = state.trips().filter(|t| t.status == TripStatus::Completed).count() as u64;
        assert_eq!(completed, s.trips_completed, "the sim counts what the engine did");
        for t in state.trips().filter(|t| t.status == TripStatus::Completed) {
            assert!(t.started_at.is_some() && t.fare.final_minor.is_some(), "{t:?}");
        }
        // A share of riders book with stops, and such rides complete too.
        let with_stops = state.trips().filter(|t| !t.stops.is_empty()).count();
        assert!(with_stops > 0 && with_stops < state.trips().count(), "{with_stops} trips with stops");
        assert!(state.trips().all(|t| t.stops.len() <= dispatch_core::trip::MAX_STOPS));
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
    fn impatient_riders_give_up_through_the_engine_and_count_as_unmatched() {
        // Drivers who rarely accept, riders who wait 10 to 20 s: many searches end unmatched.
        let config = SimConfig {
            accept_probability: 0.1,
            decline_probability: 0.3,
            patience_min_s: 10,
            patience_max_s: 20,
            rider_cancel_probability: 0.0,
            ..small(5)
        };
        let (s, state) = run(config, 6);
        assert!(s.riders_gave_up > 0, "{s:?}");
        // A give-up before any accept is an unmatched search (after one, the trip was matched).
        assert!(s.trips_unmatched > 0 && s.trips_unmatched <= s.trips_cancelled + s.trips_expired, "{s:?}");
        assert!(s.match_rate().is_some_and(|r| r < 1.0), "{s:?}");
        // Nobody waits for the engine's 120 s timeout: riders cancel before it.
        assert_eq!(s.trips_expired, 0, "{s:?}");
        let given_up =
            state.trips().filter(|t| t.cancellation.as_ref().is_some_and(|c| c.reason == "waited too long")).count()
                as u64;
        assert_eq!(given_up, s.riders_gave_up, "the engine saw each give-up as a rider's cancel");
        for t in state.trips().filter(|t| t.cancellation.as_ref().is_some_and(|c| c.reason == "waited too long")) {
            let asked_at = if t.scheduled_at.is_some() { t.searching_since } else { t.created_at };
            let waited = t.ended_at.map(|e| e.millis_since(asked_at)).unwrap_or_default();
            // Patience counts from the request: a rider whose driver gave the trip back
            // may give up the moment it searches again, later than 20 s.
            let never_matched = t.accepted_at.is_none();
            assert!(waited >= 10_000 && (waited <= 22_000 || !never_matched), "gave up after {waited} ms: {t:?}");
        }

        let patient = SimConfig { patience_max_s: 0, patience_min_s: 0, ..small(5) };
        let (s, _) = run(patient, 4);
        assert_eq!(s.riders_gave_up, 0, "{s:?}");
    }

    #[test]
    fn quality_figures_are_measured() {
        let (s, _) = run(small(11), 10);
        let rate = s.match_rate().unwrap();
        assert!(rate > 0.0 && rate <= 1.0, "{s:?}");
        assert!(s.pickup_mean_m.is_some_and(|m| m > 0.0 && m <= 6_000.0), "{s:?}");
        assert!(s.pickup_p95_m.is_some_and(|m| m as f64 >= s.pickup_mean_m.unwrap_or(0.0) * 0.5), "{s:?}");
        // The ETA is the distance at the driver's speed: between 6 and 14 m/s.
        let (m, eta_s) = (s.pickup_mean_m.unwrap(), s.pickup_eta_mean_ms.unwrap() / 1000.0);
        assert!(eta_s >= m / 14.0 - 1.0 && eta_s <= m / 6.0 + 1.0, "{m} m in {eta_s} s");
        assert!(s.trip_engaged_mean_ms.is_some_and(|ms| ms > 0.0), "{s:?}");
        let idle = s.idle_share().unwrap();
        assert!(idle > 0.0 && idle < 1.0, "{s:?}");
        assert!(s.driver_online_ms <= 50 * 10 * 60_000, "{s:?}");
        assert!(s.earnings_gini.is_some_and(|g| (0.0..1.0).contains(&g)), "{s:?}");
        assert!(s.declines_per_trip() > 0.0, "some drivers decline: {s:?}");
    }

    #[test]
    fn pickups_gather_around_the_hotspots() {
        let clock = ManualClock::new(Timestamp::from_millis(START_MS));
        let engine =
            Engine::open(EngineConfig::default().with_clock(clock.clone()).with_ids(RandomIds::seeded(8))).unwrap();
        let config = SimConfig {
            hotspots: 1,
            hotspot_share: 1.0,
            hotspot_radius_m: 300.0,
            scheduled_probability: 0.0,
            ..small(8)
        };
        let mut sim = Sim::new(&engine, config).unwrap();
        sim.advance(&clock, 4 * 60_000, 1_000).unwrap();
        let spot = sim.hotspots.centre(0, clock.now()).unwrap();
        let far = engine
            .read(|v| v.trips().map(|t| dispatch_core::geo::haversine_m(t.pickup.point, spot)).fold(0.0_f64, f64::max));
        // Within the hotspot's radius, and what it moved in four minutes (< 60 m).
        assert!(far > 0.0 && far < 360.0, "farthest pickup {far} m from the hotspot");
        assert!(sim.stats().trips_requested > 10);
    }

    #[test]
    fn drivers_accept_with_probabilities_of_their_own() {
        let clock = ManualClock::new(Timestamp::from_millis(START_MS));
        let engine = Engine::open(EngineConfig::default().with_clock(clock).with_ids(RandomIds::seeded(4))).unwrap();
        let sim = Sim::new(&engine, small(4)).unwrap();
        let p: Vec<f64> = sim.drivers.iter().map(|d| d.accept_p).collect();
        assert!(p.iter().any(|p| *p < 0.5) && p.iter().any(|p| *p > 0.85), "{p:?}");
        for d in &sim.drivers {
            assert!(d.accept_p + d.decline_p <= 1.0 + 1e-12 && d.decline_p >= 0.0);
        }
        drop(sim);
        let same = SimConfig { acceptance_concentration: 0.0, ..small(4) };
        let sim = Sim::new(&engine, same).unwrap();
        assert!(sim.drivers.iter().all(|d| d.accept_p == 0.7 && (d.decline_p - 0.15).abs() < 1e-12));
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
}
