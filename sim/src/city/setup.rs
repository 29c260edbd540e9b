//! Setting a city up: [`Sim::new`] checks the configuration, makes sure the city area is
//! served (creating the demo zone if it is not), creates the drivers and riders or finds
//! those a previous run created, and draws where and when each person starts. `start_at`
//! turns those draws into instants at the first step.
//!
//! Guarantees:
//! - Setup may wait, steps may not: [`Sim::new`] waits for the engine's answers (through
//!   [`Sim::settle`]) and waits out a full queue, which a step never does.
//! - Idempotent on an engine: users are found by phone number (drivers `+2011`, riders
//!   `+2012`, then the index in 8 digits, which [`MAX_PEOPLE`](crate::MAX_PEOPLE) keeps
//!   within), and the demo zone is created only if the area is not already served, so a
//!   second `Sim` on the same engine reuses both.
//! - The simulation starts from the same state whether its users were created or found:
//!   nothing is drawn from the random generator until the users exist, and the figures
//!   and sequence numbers that creating them used are reset.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use dispatch_core::clock::Timestamp;
use dispatch_core::command::{Actor, Command, NewUser, Outcome};
use dispatch_core::engine::Engine;
use dispatch_core::error::{Error, Result};
use dispatch_core::id::UserId;
use dispatch_core::route::StraightLine;
use dispatch_core::user::{Category, Role, Vehicle};

use super::driver::{DriverAgent, DriverPhase};
use super::rider::{RiderAgent, RiderPhase};
use super::{Sim, Tag};
use crate::SimConfig;
use crate::draw::{Hotspots, beta};
use crate::geo::offset;
use crate::leg::Leg;
use crate::stats::{Histogram, SimStats};

/// The vehicle category of every simulated driver and ride.
const CATEGORY: &str = "economy";

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
            match_times: Histogram::match_times(),
            // 10 m up to 20 km; 1 s up to an hour; 1 s up to two hours.
            pickup_m: Histogram::new(10, 20_000),
            pickup_eta_ms: Histogram::new(1_000, 3_600_000),
            engaged_ms: Histogram::new(1_000, 7_200_000),
            hotspots: Hotspots::none(center),
            last_error: None,
            config,
        };
        sim.ensure_zone()?;
        let drivers = sim.create_users(Role::Driver, sim.config.drivers)?;
        let riders = sim.create_users(Role::Rider, sim.config.riders)?;
        let c = &sim.config;
        sim.hotspots = Hotspots::draw(&mut sim.rng, c.hotspots, center, c.radius_m, c.hotspot_day_s);
        // What a driver does not accept it declines or ignores in the ratio of the means.
        let (mean_accept, mean_decline) = (sim.config.accept_probability, sim.config.decline_probability);
        let decline_share = if mean_accept < 1.0 { mean_decline / (1.0 - mean_accept) } else { 0.0 };
        for id in drivers {
            let speed_mps = sim.rng.random_range(sim.config.speed_min_mps..=sim.config.speed_max_mps);
            let accept_p = beta(&mut sim.rng, mean_accept, sim.config.acceptance_concentration);
            let offset_ms = sim.rng.random_range(0..=i64::from(sim.config.ramp_up_s) * 1000);
            let start = sim.random_point();
            sim.drivers.push(DriverAgent {
                id,
                speed_mps,
                accept_p,
                decline_p: ((1.0 - accept_p) * decline_share).clamp(0.0, 1.0 - accept_p),
                earned_minor: 0,
                engaged_at: Timestamp::default(),
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
            let (min_s, max_s) = (sim.config.patience_min_s, sim.config.patience_max_s);
            let patience_ms = (max_s > 0).then(|| i64::from(sim.rng.random_range(min_s..=max_s)) * 1000);
            sim.riders.push(RiderAgent {
                id,
                patience_ms,
                phase: RiderPhase::Idle { request_at: Timestamp::from_millis(offset_ms) },
                busy: false,
            });
        }
        Ok(sim)
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
            let vehicle = (role == Role::Driver).then(|| Vehicle::new(self.category.clone(), format!("SIM {n}")));
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
    pub(super) fn start_at(&mut self, now: Timestamp) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::city::tests::{START_MS, small};
    use dispatch_core::clock::ManualClock;
    use dispatch_core::error::DomainError;
    use dispatch_core::{EngineConfig, RandomIds};

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
}
