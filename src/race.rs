//! The accept race: `drivers` threads accept the same trip at the same instant,
//! for `trips` trips in a row. Exactly one must win each trip; every loser must
//! be told `trip_already_assigned`; no driver may end up on two trips.
//!
//! Each trip is offered to every driver (one round as wide as the field), all
//! driver threads are released together by a barrier, and the winner completes
//! the trip before the next one, so every trip is a fresh `drivers`-way race.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dispatch_core::{
    Actor, Availability, DispatchRules, DomainError, Engine, EngineConfig, Error, LatLng, Role, TripId, UserId,
};

use crate::scenario::{self, CENTER, ride_from};

/// What a race run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceReport {
    /// Trips raced for.
    pub trips: u64,
    /// Trips with exactly one winning accept.
    pub winners: u64,
    /// Accepts refused with `trip_already_assigned`.
    pub conflicts: u64,
    /// Trips won by more than one driver, or drivers on two trips. Must be 0.
    pub double_assignments: u64,
    /// Any other answer to an accept (each one is a bug).
    pub unexpected: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl RaceReport {
    /// The one-line summary the `race` example prints.
    pub fn line(&self) -> String {
        format!(
            "trips={} winners={} conflicts={} double_assignments={} elapsed_ms={}",
            self.trips,
            self.winners,
            self.conflicts,
            self.double_assignments,
            self.elapsed.as_millis()
        )
    }
}

fn engine_for(drivers: usize) -> Result<Engine, Error> {
    let offers = u16::try_from(drivers).unwrap_or(u16::MAX).min(DispatchRules::MAX_OFFERS_PER_ROUND);
    let rules = DispatchRules {
        offers_per_round: offers,
        // The race is about accepts, not freshness: positions stay valid for the run.
        stale_location_s: 86_400,
        offer_ttl_s: 3_600,
        timeout_s: 3_600,
        ..DispatchRules::default()
    };
    Engine::open(EngineConfig::default().with_rules(rules))
}

/// Runs the race. `drivers` is capped at [`DispatchRules::MAX_OFFERS_PER_ROUND`]
/// (every driver must be offered every trip).
pub fn run(drivers: usize, trips: u64) -> Result<RaceReport, Error> {
    let drivers = drivers.clamp(2, usize::from(DispatchRules::MAX_OFFERS_PER_ROUND));
    let engine = Arc::new(engine_for(drivers)?);
    let rider = scenario::user(&engine, Role::Rider, 0)?;
    let mut ids = Vec::with_capacity(drivers);
    for n in 1..=drivers as u64 {
        // All within a few metres of the pickup.
        ids.push(scenario::online_driver(&engine, n, scenario::near_center(n as f64, 0.0)?)?);
    }

    let start = Barrier::new(drivers + 1);
    let done = Barrier::new(drivers + 1);
    let current = AtomicU64::new(0);
    let (results_tx, results_rx) = crossbeam_channel::unbounded::<(UserId, Result<(), Error>)>();
    let started = Instant::now();
    let mut report =
        RaceReport { trips, winners: 0, conflicts: 0, double_assignments: 0, unexpected: 0, elapsed: Duration::ZERO };

    std::thread::scope(|s| -> Result<(), Error> {
        for &driver in &ids {
            let (engine, start, done, current, results) = (&engine, &start, &done, &current, results_tx.clone());
            s.spawn(move || {
                loop {
                    start.wait();
                    let raw = current.load(Ordering::SeqCst);
                    let Some(trip) = TripId::from_raw(raw) else { break };
                    let outcome = engine.accept(driver, trip).map(|_| ());
                    let _ = results.send((driver, outcome));
                    done.wait();
                }
            });
        }
        let finish = |report: &mut RaceReport| -> Result<(), Error> {
            current.store(0, Ordering::SeqCst);
            start.wait();
            report.elapsed = started.elapsed();
            Ok(())
        };
        for _ in 0..trips {
            let trip = match engine.create_trip(rider, pickup()?) {
                Ok(t) => t,
                Err(e) => {
                    finish(&mut report)?;
                    return Err(e);
                }
            };
            current.store(trip.id.raw(), Ordering::SeqCst);
            start.wait();
            done.wait();
            let mut winners = Vec::new();
            for (driver, outcome) in results_rx.try_iter() {
                match outcome {
                    Ok(()) => winners.push(driver),
                    Err(Error::Domain(DomainError::TripAlreadyAssigned(_))) => report.conflicts += 1,
                    Err(_) => report.unexpected += 1,
                }
            }
            let on_trip = ids
                .iter()
                .filter(|d| engine.driver(**d).is_some_and(|d| d.availability == Availability::OnTrip))
                .count();
            let assigned = engine.trip(trip.id).and_then(|t| t.driver_id);
            if winners.len() > 1 || on_trip > 1 || (winners.len() == 1 && assigned != Some(winners[0])) {
                report.double_assignments += 1;
            }
            if let [winner] = winners[..] {
                report.winners += 1;
                engine.arrived(winner, trip.id)?;
                engine.start(winner, trip.id, &trip.pickup_code.to_string())?;
                engine.complete(winner, trip.id, Some(1_000))?;
            }
        }
        finish(&mut report)
    })?;
    Ok(report)
}

/// One driver, two trips, both accepted at the same instant, `rounds` times:
/// returns how many rounds the driver won more than one trip (must be 0) and
/// how many rounds it won exactly one.
pub fn one_driver_two_trips(rounds: u64) -> Result<(u64, u64), Error> {
    let engine = engine_for(2)?;
    let driver = scenario::online_driver(&engine, 1, LatLng::new(CENTER.0, CENTER.1)?)?;
    let riders = [scenario::user(&engine, Role::Rider, 2)?, scenario::user(&engine, Role::Rider, 3)?];
    let (mut doubles, mut singles) = (0, 0);
    for _ in 0..rounds {
        let a = engine.create_trip(riders[0], pickup()?)?;
        let b = engine.create_trip(riders[1], pickup()?)?;
        let barrier = Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ha = s.spawn(|| {
                barrier.wait();
                engine.accept(driver, a.id)
            });
            let hb = s.spawn(|| {
                barrier.wait();
                engine.accept(driver, b.id)
            });
            (ha.join(), hb.join())
        });
        let (ra, rb) = (ra.map_err(|_| panicked())?, rb.map_err(|_| panicked())?);
        let won: Vec<TripId> = [(a.id, &ra), (b.id, &rb)].iter().filter(|(_, r)| r.is_ok()).map(|(t, _)| *t).collect();
        for r in [&ra, &rb] {
            if let Err(e) = r
                && !matches!(e, Error::Domain(DomainError::DriverNotAvailable(_)))
            {
                return Err(e.clone());
            }
        }
        match won[..] {
            [t] => {
                singles += 1;
                let other = if t == a.id { b.id } else { a.id };
                let code = if t == a.id { a.pickup_code } else { b.pickup_code };
                engine.arrived(driver, t)?;
                engine.start(driver, t, &code.to_string())?;
                engine.complete(driver, t, None)?;
                let rider = if other == a.id { riders[0] } else { riders[1] };
                engine.cancel(Actor::User(rider), other, "race over")?;
            }
            [] => {}
            _ => doubles += 1,
        }
    }
    engine.shutdown()?;
    Ok((doubles, singles))
}

fn pickup() -> Result<dispatch_core::NewTrip, Error> {
    ride_from(LatLng::new(CENTER.0, CENTER.1)?)
}

fn panicked() -> Error {
    Error::internal("a racing thread panicked")
}
