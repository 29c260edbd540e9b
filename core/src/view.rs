//! The published view: what readers see of the world as of the last durable batch.
//!
//! The writer applies each batch's changes to the view once the batch is durable (the
//! `Arc`s of the entities the batch changed), under a brief write lock. Readers of a few
//! entities take a brief read lock (an `Arc` clone). A reader that walks the city takes
//! a snapshot: every collection here is a persistent map (`imbl`), so a clone is O(1) —
//! a few pointer copies under the read lock — and walking it holds no lock at all. The
//! writer then copies a map's node only when it changes one a live snapshot still
//! shares; with no snapshot alive it updates in place, as fast as a hash map.
//!
//! Why not a fresh immutable snapshot swapped per batch: measured, it made the writer
//! copy a path (and touch every neighbour's reference count) for every entity of every
//! batch, which halved the accept rate and doubled the cost of a position report
//! (BENCHMARKS.md, "The crate split"). Snapshots on demand cost that only while a
//! reader holds one.
//!
//! Guarantees: a reader never sees a change that a crash could take back (the writer
//! publishes after the fsync), but for drivers' positions, which are published when
//! written and made durable within 10 ms (`Engine::update_location`); every read, and
//! every snapshot, is of whole batches; a snapshot never changes.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::alert::Alert;
use crate::application::Applications;
use crate::clock::Timestamp;
use crate::driver::Driver;
use crate::hooks::Hooks;
use crate::id::{AlertId, IdHashing, TransferId, ZoneId};
use crate::id::{TripId, UserId};
use crate::ledger::{Account, AccountKey, Transfer};
use crate::outbox::Outbox;
use crate::state::{Effects, State};
use crate::trip::Trip;
use crate::user::{Role, User};
use crate::zone::{Catalog, CouponRecord, PriceBook, SurgeReading};

/// The result of a ledger check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerReport {
    /// Every currency sums to zero and no no-overdraft account is negative.
    pub balanced: bool,
    /// Accounts in use.
    pub accounts: usize,
    /// Transfers ever recorded (hot and archived).
    pub transfers: usize,
    /// The sum of every balance (0 when balanced; per currency it is 0 too).
    pub sum_minor: i128,
}

/// A persistent hash map keyed by an id (ids are random: the id's bits are its hash).
type IdMap<K, V> = imbl::GenericHashMap<K, V, IdHashing, imbl::shared_ptr::DefaultSharedPtr>;

/// A consistent, durable picture of the live world. Cloning it is O(1): every
/// collection is persistent (structurally shared), so a snapshot costs the writer a
/// handful of pointer copies, and a later change copies only the path to its entry.
#[derive(Debug, Clone, Default)]
pub struct View {
    trips: IdMap<TripId, Arc<Trip>>,
    /// The users, the phone index and the ledger's accounts are the state's persistent
    /// maps, shared at open (O(1) for a million accounts) and updated entry by entry.
    users: imbl::OrdMap<UserId, Arc<User>>,
    phones: imbl::OrdMap<(Role, String), UserId>,
    drivers: IdMap<UserId, Arc<Driver>>,
    catalog: Arc<Catalog>,
    /// Surges and coupons change rarely (a surge interval, an admin): a change replaces
    /// the map whole, which snapshots then share.
    surge: Arc<BTreeMap<ZoneId, SurgeReading>>,
    coupons: Arc<BTreeMap<String, Arc<CouponRecord>>>,
    /// Alerts change one by one (an SOS, an acknowledgement): copied one by one.
    alerts: imbl::OrdMap<AlertId, Arc<Alert>>,
    accounts: imbl::OrdMap<AccountKey, Account>,
    transfers: IdMap<TransferId, Arc<Transfer>>,
    /// Every transfer under both its accounts, newest first.
    statements: imbl::OrdSet<(AccountKey, Reverse<(Timestamp, TransferId)>)>,
    transfers_created: u64,
    /// Push devices and the notification outbox: a readers' copy of the state's at open
    /// (`Outbox::for_readers`: the items, no orders), then updated entry by entry
    /// (`Outbox::sync_from`), like the users: not the state's trees, which the state's
    /// next write would then copy root to leaf. Its items are in the order they were made,
    /// which lists read; the delivery worker keeps its own order of next tries
    /// (`schedule::Schedule`).
    outbox: Outbox,
    /// Webhook endpoints and deliveries: the same (`Hooks::sync_from`; the worker's order
    /// of next tries: `schedule::HookSchedule`).
    hooks: Hooks,
    /// Driver applications: persistent maps, replaced whole (an O(1) clone) when a batch
    /// changed one.
    applications: Applications,
    batches: u64,
    /// Payouts, top-ups and the earnings index: the state's persistent maps, shared
    /// (a change replaces the book, which costs three pointer copies).
    book: dispatch_domain::payout::Book,
    // ----- issue 20: A -----
    /// The audit entries not yet in the history, by number (entry by entry).
    audit: imbl::OrdMap<u64, Arc<crate::audit::AuditEntry>>,
    /// The dispatch rules in force (replaced whole when they change: rarely).
    rules: Arc<crate::command::DispatchRules>,
    /// The dispatch keys set at runtime.
    rule_overrides: crate::settings::RuleOverrides,
    // ----- issue 20: S -----
    /// Staff sign-in credentials: the state's persistent maps, shared (a change replaces
    /// them whole: an O(1) clone).
    staff: dispatch_domain::staff::Staff,
    // ----- issue 20: U -----
    /// The staff's user indexes: the state's persistent sets, shared at open and updated
    /// entry by entry with the users.
    user_index: crate::user_index::UserIndex,
    /// Erasures not finished outside the state (a few): replaced whole when one changes.
    erasures: Arc<BTreeMap<UserId, crate::user::Erasure>>,
}

impl View {
    /// A view of everything in `state` (used at open, after recovery).
    pub fn of(state: &State) -> Self {
        let mut view = View::default();
        for t in state.trips() {
            view.trips.insert(t.id, Arc::clone(t));
        }
        view.republish_drivers(state);
        let rows = state.rows();
        view.users = rows.users;
        view.phones = rows.phones;
        view.accounts = rows.ledger_accounts;
        view.copy_catalog(state);
        for a in state.alerts() {
            view.alerts.insert(a.id, Arc::clone(a));
        }
        for t in state.ledger().transfers() {
            view.add_transfer(t);
        }
        view.transfers_created = state.ledger().created();
        view.outbox = state.outbox().for_readers();
        view.hooks = state.hooks().for_readers();
        view.applications = state.applications().clone();
        view.book = state.book().clone();
        view.audit = state.audit_entries().map(|e| (e.seq, Arc::clone(e))).collect();
        view.rules = Arc::new(state.rules().clone());
        view.rule_overrides = *state.rule_overrides();
        view.staff = state.staff().clone();
        view.user_index = state.user_index().clone();
        view.erasures = Arc::new(state.erasures().clone());
        view
    }

    fn add_transfer(&mut self, t: &Transfer) {
        for key in [t.debit, t.credit] {
            self.statements.insert((key, Reverse((t.at, t.id))));
        }
        self.transfers.insert(t.id, Arc::new(t.clone()));
    }

    /// Every driver's record as `state` has it: at open, and after a failed write that
    /// had published positions not yet durable (the state rebuilt from what is durable).
    pub(crate) fn republish_drivers(&mut self, state: &State) {
        self.drivers = IdMap::default();
        for d in state.drivers() {
            self.drivers.insert(d.id, Arc::clone(d));
        }
    }

    /// A driver whose position alone changed: its fix and trip odometer are copied into
    /// the view's own record, in place when no reader holds it. The view so keeps a
    /// record of its own for a moving driver (shared with the state again at its next
    /// other change), and neither side copies a record per position report: the state
    /// changes its unshared record in place, and so does the view.
    fn publish_move(&mut self, state: &State, id: UserId) {
        let Some(d) = state.driver(id) else {
            self.drivers.remove(&id);
            return;
        };
        match self.drivers.get_mut(&id) {
            // Already the state's own record (a change of the same batch shared it).
            Some(mine) if Arc::ptr_eq(mine, d) => {}
            Some(mine) => {
                let mine = Arc::make_mut(mine);
                mine.fix = d.fix;
                mine.trip_odometer_m = d.trip_odometer_m;
                debug_assert_eq!(*mine, **d, "a driver's move changed more than its position");
            }
            None => {
                self.drivers.insert(id, Arc::clone(d));
            }
        }
    }

    fn copy_catalog(&mut self, state: &State) {
        let (catalog, surge, coupons) = state.catalog_parts();
        self.catalog = Arc::clone(catalog);
        self.surge = Arc::new(surge.clone());
        self.coupons = Arc::new(coupons.clone());
    }

    /// Copies what `fx` says changed from `state` into this (the writer's own) copy.
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
        for id in &fx.moved {
            self.publish_move(state, *id);
        }
        for id in &fx.users {
            if let Some(u) = state.user(*id) {
                let old = self.users.insert(*id, Arc::clone(u));
                if let Some(old) = &old
                    && old.phone != u.phone
                {
                    self.phones.remove(&(old.role, old.phone.clone()));
                }
                // An erased user has no phone entry (issue 20: U).
                if u.erased_at.is_none() {
                    self.phones.insert((u.role, u.phone.clone()), u.id);
                }
                self.user_index.replace(old.as_deref(), u);
            }
        }
        if fx.erasures {
            self.erasures = Arc::new(state.erasures().clone());
        }
        if fx.catalog {
            self.copy_catalog(state);
        }
        for id in &fx.alerts {
            match state.alert(*id) {
                Some(a) => self.alerts.insert(*id, Arc::clone(a)),
                // Archived (acknowledged): readers find it in the history from now on.
                None => self.alerts.remove(id),
            };
        }
        self.transfers_created = state.ledger().created();
        for key in &fx.accounts {
            self.accounts.insert(*key, state.ledger().account(key));
        }
        for id in &fx.transfers {
            match state.ledger().transfer(*id) {
                Some(t) => self.add_transfer(t),
                // Archived: readers find it in the history from now on.
                None => {
                    if let Some(t) = self.transfers.remove(id) {
                        for key in [t.debit, t.credit] {
                            self.statements.remove(&(key, Reverse((t.at, t.id))));
                        }
                    }
                }
            }
        }
        if !fx.notifications.is_empty() || !fx.devices.is_empty() {
            self.outbox.sync_from(state.outbox(), &fx.notifications, &fx.devices);
        }
        if !fx.deliveries.is_empty() || fx.hook_endpoints {
            self.hooks.sync_from(state.hooks(), &fx.deliveries, fx.hook_endpoints);
        }
        if fx.applications {
            self.applications = state.applications().clone();
        }
        if fx.book {
            self.book = state.book().clone();
        }
        for seq in &fx.audit {
            match state.audit_entry(*seq) {
                Some(e) => self.audit.insert(*seq, Arc::clone(e)),
                // Archived: readers find it in the history from now on.
                None => self.audit.remove(seq),
            };
        }
        if fx.rules {
            self.rules = Arc::new(state.rules().clone());
            self.rule_overrides = *state.rule_overrides();
        }
        if fx.staff {
            self.staff = state.staff().clone();
        }
        self.batches += 1;
    }

    /// A driver's money position in `currency` (`dispatch_domain::payout::Position`).
    pub fn driver_position(&self, driver: UserId, currency: crate::Currency) -> dispatch_domain::payout::Position {
        use crate::ledger::AccountKind;
        dispatch_domain::payout::Position::of(
            &self.account(&AccountKey::of(AccountKind::DriverEarnings, driver, currency)),
            &self.account(&AccountKey::of(AccountKind::CashInHand, driver, currency)),
        )
    }

    /// The currencies a driver has earnings or holds cash in, in order.
    pub fn driver_currencies(&self, driver: UserId) -> Vec<crate::Currency> {
        dispatch_domain::payout::driver_currencies(&self.accounts, driver)
    }

    /// Payouts, top-ups and the earnings index.
    pub fn book(&self) -> &dispatch_domain::payout::Book {
        &self.book
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

    /// Every user, by id.
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

    /// The audit entries not yet in the history, oldest first.
    pub fn audit_entries(&self) -> impl DoubleEndedIterator<Item = &Arc<crate::audit::AuditEntry>> {
        self.audit.values()
    }

    /// The audit entries not yet in the history numbered below `before`, newest first.
    pub fn audit_before(&self, before: Option<u64>) -> impl Iterator<Item = &Arc<crate::audit::AuditEntry>> {
        self.audit.range(..before.unwrap_or(u64::MAX)).rev().map(|(_, e)| e)
    }

    /// The dispatch rules in force.
    pub fn rules(&self) -> &crate::command::DispatchRules {
        &self.rules
    }

    /// The dispatch keys set at runtime (`PATCH /v1/admin/settings`).
    pub fn rule_overrides(&self) -> &crate::settings::RuleOverrides {
        &self.rule_overrides
    }

    /// An account's totals (zero if never used).
    pub fn account(&self, key: &AccountKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Up to `limit` transfers of `key`'s account, newest first, strictly after `after`
    /// (the `(at, id)` of the last one of the previous page).
    pub fn statement(
        &self,
        key: &AccountKey,
        after: Option<(Timestamp, TransferId)>,
        limit: usize,
    ) -> Vec<Arc<Transfer>> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let start = match (after, TransferId::from_raw(u64::MAX)) {
            (Some(pos), _) => Excluded((*key, Reverse(pos))),
            // The newest possible position sorts first under `key`.
            (None, Some(last)) => Included((*key, Reverse((Timestamp::from_millis(i64::MAX), last)))),
            (None, None) => Unbounded,
        };
        self.statements
            .range((start, Unbounded))
            .take_while(|(k, _)| k == key)
            .take(limit)
            .filter_map(|(_, Reverse((_, id)))| self.transfers.get(id).cloned())
            .collect()
    }

    /// The ledger check of `GET /v1/admin/ledger/verify`: whether every currency sums
    /// to zero and no wallet is overdrawn, with the sum, accounts and transfers counted.
    pub fn ledger_verify(&self) -> LedgerReport {
        let mut sums: BTreeMap<crate::money::Currency, i128> = BTreeMap::new();
        let mut overdrawn = 0;
        for (key, a) in &self.accounts {
            *sums.entry(key.currency).or_default() += i128::from(a.balance());
            if key.kind.no_overdraft() && a.available() < 0 {
                overdrawn += 1;
            }
        }
        let sum_minor: i128 = sums.values().sum();
        LedgerReport {
            balanced: sums.values().all(|s| *s == 0) && overdrawn == 0,
            accounts: self.accounts.len(),
            transfers: usize::try_from(self.transfers_created).unwrap_or(usize::MAX),
            sum_minor,
        }
    }

    /// Push devices and the notification outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Webhook endpoints and deliveries.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Driver applications.
    pub fn applications(&self) -> &Applications {
        &self.applications
    }

    /// A page of users for staff (`GET /v1/admin/users`): see
    /// [`crate::user_index::UserIndex::page`] for the order and the costs.
    pub fn user_page(
        &self,
        query: &crate::user_index::UserQuery,
        role: Option<Role>,
        status: Option<crate::user::UserStatus>,
        after: Option<&crate::user_index::UserCursor>,
        limit: usize,
    ) -> (Vec<Arc<User>>, Option<crate::user_index::UserCursor>) {
        self.user_index.page(|id| self.users.get(&id), query, role, status, after, limit)
    }

    /// Erased users whose data outside the state is not gone yet.
    pub fn erasures(&self) -> &Arc<BTreeMap<UserId, crate::user::Erasure>> {
        &self.erasures
    }

    /// How many batches have been published (a cheap change counter).
    pub fn batches(&self) -> u64 {
        self.batches
    }

    // ----- issue 20: S -----
    /// Staff sign-in credentials.
    pub fn staff(&self) -> &dispatch_domain::staff::Staff {
        &self.staff
    }
}
