//! The published view: what readers see, updated by the writer after each batch
//! is durable.
//!
//! Readers take a read lock for the few microseconds it takes to clone an `Arc`
//! and never wait on the writer's work: the writer applies a batch to its own
//! state, makes it durable, and only then copies the `Arc`s of the entities the
//! batch changed into the view under a brief write lock. So a reader never sees a
//! change that a crash could take back, and every read is of a whole batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::alert::Alert;
use crate::driver::Driver;
use crate::geo::{LatLng, haversine_m};
use crate::id::{AlertId, ZoneId};
use crate::id::{TripId, UserId};
use crate::state::{Effects, State};
use crate::trip::Trip;
use crate::user::{Role, User};
use crate::zone::{Catalog, CouponRecord, PriceBook, SurgeReading};

/// A consistent, durable picture of the live world.
#[derive(Debug, Default)]
pub struct View {
    trips: HashMap<TripId, Arc<Trip>>,
    users: HashMap<UserId, Arc<User>>,
    phones: HashMap<(Role, String), UserId>,
    drivers: HashMap<UserId, Arc<Driver>>,
    catalog: Arc<Catalog>,
    surge: BTreeMap<ZoneId, SurgeReading>,
    coupons: BTreeMap<String, Arc<CouponRecord>>,
    alerts: BTreeMap<AlertId, Arc<Alert>>,
    batches: u64,
}

impl View {
    /// A view of everything in `state` (used at open, after recovery).
    pub fn of(state: &State) -> Self {
        let mut view = View::default();
        for t in state.trips() {
            view.trips.insert(t.id, Arc::clone(t));
        }
        for d in state.drivers() {
            view.drivers.insert(d.id, Arc::clone(d));
        }
        for u in state.users() {
            view.phones.insert((u.role, u.phone.clone()), u.id);
            view.users.insert(u.id, Arc::clone(u));
        }
        view.copy_catalog(state);
        view
    }

    fn copy_catalog(&mut self, state: &State) {
        let (catalog, surge, coupons, alerts) = state.catalog_parts();
        self.catalog = Arc::clone(catalog);
        self.surge = surge.clone();
        self.coupons = coupons.clone();
        self.alerts = alerts.clone();
    }

    /// Copies what `fx` says changed from `state`.
    pub(crate) fn publish(&mut self, state: &State, fx: &Effects) {
        for id in &fx.trips {
            match state.trip(*id) {
                Some(t) => self.trips.insert(*id, Arc::clone(t)),
                None => self.trips.remove(id),
            };
        }
        for id in &fx.drivers {
            match state.driver(*id) {
                Some(d) => self.drivers.insert(*id, Arc::clone(d)),
                None => self.drivers.remove(id),
            };
        }
        for id in &fx.users {
            if let Some(u) = state.user(*id) {
                self.phones.insert((u.role, u.phone.clone()), u.id);
                self.users.insert(*id, Arc::clone(u));
            }
        }
        if fx.catalog {
            self.copy_catalog(state);
        }
        self.batches += 1;
    }

    /// A trip.
    pub fn trip(&self, id: TripId) -> Option<&Arc<Trip>> {
        self.trips.get(&id)
    }

    /// A user.
    pub fn user(&self, id: UserId) -> Option<&Arc<User>> {
        self.users.get(&id)
    }

    /// The user with this role and phone number.
    pub fn user_by_phone(&self, role: Role, phone: &str) -> Option<&Arc<User>> {
        self.phones.get(&(role, phone.to_owned())).and_then(|id| self.users.get(id))
    }

    /// A driver's live record.
    pub fn driver(&self, id: UserId) -> Option<&Arc<Driver>> {
        self.drivers.get(&id)
    }

    /// Every user, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// Every trip, in no particular order.
    pub fn trips(&self) -> impl Iterator<Item = &Arc<Trip>> {
        self.trips.values()
    }

    /// Every driver, in no particular order.
    pub fn drivers(&self) -> impl Iterator<Item = &Arc<Driver>> {
        self.drivers.values()
    }

    /// The trips this driver has a pending offer of, with the trip as it is.
    pub fn offers_for(&self, driver: UserId) -> Vec<Arc<Trip>> {
        self.drivers
            .get(&driver)
            .map(|d| d.pending_offers.iter().filter_map(|t| self.trips.get(t).cloned()).collect())
            .unwrap_or_default()
    }

    /// What prices rides: zones, surges, coupons (estimates use [`PriceBook::estimate`],
    /// the function booking uses).
    pub fn price_book(&self) -> PriceBook<'_> {
        PriceBook { catalog: &self.catalog, surge: &self.surge, coupons: &self.coupons }
    }

    /// Every zone and the zone index.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A zone's surge as last recomputed (none: surge disabled or not computed yet).
    pub fn surge(&self, zone: ZoneId) -> Option<SurgeReading> {
        self.surge.get(&zone).copied()
    }

    /// Every coupon, by code.
    pub fn coupons(&self) -> impl Iterator<Item = &Arc<CouponRecord>> {
        self.coupons.values()
    }

    /// An alert.
    pub fn alert(&self, id: AlertId) -> Option<&Arc<Alert>> {
        self.alerts.get(&id)
    }

    /// Every alert, by id.
    pub fn alerts(&self) -> impl Iterator<Item = &Arc<Alert>> {
        self.alerts.values()
    }

    /// Drivers with a known position within `radius_m` of `point`, nearest first (ties
    /// by id), at most `limit`, with their great-circle distance. For operators: it
    /// scans every driver (dispatch itself uses the writer's R-tree, never this).
    pub fn drivers_near(&self, point: LatLng, radius_m: f64, limit: usize) -> Vec<(Arc<Driver>, f64)> {
        let mut near: Vec<(Arc<Driver>, f64)> = self
            .drivers
            .values()
            .filter_map(|d| d.fix.map(|f| (Arc::clone(d), haversine_m(point, f.point))))
            .filter(|(_, m)| *m <= radius_m)
            .collect();
        near.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
        near.truncate(limit);
        near
    }

    /// How many batches have been published (a cheap change counter).
    pub fn batches(&self) -> u64 {
        self.batches
    }
}
