//! [`audit`]: an independent check, from the engine's published view, that no driver is on
//! two open trips and no trip has two drivers.
//!
//! It knows nothing of [`Sim`](crate::Sim): it reads any engine's view (the `city` example
//! audits the engine its simulation drives), trusting nothing the simulation counted.
//!
//! Guarantees: read only — it submits nothing and changes nothing; one scan of every trip
//! and driver under the view's read lock, so its cost grows with the city (call it once in a
//! while, not every step). Its figures do not depend on hash-map iteration order: the maps
//! only count.

use std::collections::HashMap;

use dispatch_core::driver::Availability;
use dispatch_core::engine::Engine;
use dispatch_core::id::{TripId, UserId};
use dispatch_core::trip::OfferState;

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
    engine.read_snapshot(|view| {
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
