//! [`Effects`]: what applying commands produced besides their outcomes — the events to
//! publish and the entities that changed, which the writer hands to readers (the view)
//! after each batch. `apply` only ever adds to it after a command succeeded (a refusal
//! leaves it as it was); the writer clears it after each batch.

use crate::command::Event;
use crate::id::{AlertId, TripId, UserId};

/// What applying commands produced besides their outcomes: events to publish and
/// the entities that changed (for the writer to publish to readers). Owned by the
/// writer, cleared after each batch.
#[derive(Debug, Default)]
pub struct Effects {
    /// Events, in the order they happened.
    pub events: Vec<Event>,
    /// Zones, surge or coupons changed: readers need the new catalog.
    pub catalog: bool,
    /// Alerts raised, changed or removed (archived).
    pub alerts: Vec<AlertId>,
    /// Trips changed, added or removed (archived).
    pub trips: Vec<TripId>,
    /// Users changed or added.
    pub users: Vec<UserId>,
    /// Driver records changed, added or removed.
    pub drivers: Vec<UserId>,
    /// Drivers whose position alone changed (`fix` and `trip_odometer_m`): the view
    /// copies those fields into its own record, in place, rather than share the state's
    /// (which would make the next report copy the record).
    pub moved: Vec<UserId>,
    /// Ledger accounts whose totals changed.
    pub accounts: Vec<crate::ledger::AccountKey>,
    /// Transfers added, changed or removed (archived).
    pub transfers: Vec<crate::id::TransferId>,
    /// Outbox items made, changed (each as it is now) or pruned (`None`), in the order
    /// they were: the view copies them from here without looking them up.
    pub notifications: Vec<(crate::id::NotificationId, Option<std::sync::Arc<crate::outbox::Notification>>)>,
    /// Users whose push devices changed.
    pub devices: Vec<UserId>,
    /// Webhook deliveries made, changed or removed, by endpoint and event number.
    pub deliveries: Vec<(crate::id::EndpointId, u64)>,
    /// Webhook endpoints made or removed.
    pub hook_endpoints: bool,
    /// Driver applications changed.
    pub applications: bool,
    /// Payouts, top-ups or the earnings index changed.
    pub book: bool,
    // ----- issue 20: A -----
    /// Audit entries made or removed (archived), by number.
    pub audit: Vec<u64>,
    /// The dispatch rules (or their runtime overrides) changed.
    pub rules: bool,
    // ----- issue 20: U -----
    /// The erasure queue changed.
    pub erasures: bool,
    /// While the command being applied may announce webhook events: each trip as it was
    /// before the command first changed it (`State::trip_mut` keeps it), for
    /// `state/hooks.rs` to compare with. Empty between commands.
    pub(crate) trips_before: Option<Vec<std::sync::Arc<crate::trip::Trip>>>,
    // ----- issue 20: S -----
    /// Staff credentials changed.
    pub staff: bool,
}

impl Effects {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && !self.catalog
            && self.trips.is_empty()
            && self.users.is_empty()
            && self.drivers.is_empty()
            && self.moved.is_empty()
            && self.alerts.is_empty()
            && self.notifications.is_empty()
            && self.devices.is_empty()
            && self.deliveries.is_empty()
            && !self.hook_endpoints
            && !self.applications
            && !self.book
            && self.audit.is_empty()
            && !self.rules
            && !self.staff
            && !self.erasures
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.events.clear();
        self.catalog = false;
        self.accounts.clear();
        self.transfers.clear();
        self.trips.clear();
        self.users.clear();
        self.drivers.clear();
        self.moved.clear();
        self.alerts.clear();
        self.notifications.clear();
        self.devices.clear();
        self.deliveries.clear();
        self.hook_endpoints = false;
        self.applications = false;
        self.book = false;
        self.audit.clear();
        self.rules = false;
        self.staff = false;
        self.erasures = false;
    }
}
