//! History: finished trips, settled transfers, idempotency keys and gateway event ids,
//! moved out of the hot state into the data directory's redb file (`store.redb`, which
//! also holds the checkpoint: `checkpoint.rs`), and read back from there; and every
//! driver's position track.
//!
//! Owns the tables and their keys:
//! - `trips`: trip id → the trip (postcard), as it ended;
//! - `trips_by_rider`: rider ‖ created (newest first) ‖ trip (highest first) → ();
//! - `trips_by_driver`: driver ‖ created ‖ trip, the same way → ();
//! - `trips_by_time`: created ‖ trip, the same way → () — every trip, for staff;
//! - `trips_by_status`, `trips_by_zone`, `trips_by_zone_status`: status / zone / zone ‖
//!   status ‖ created ‖ trip → () — the staff list's filters (`trip_index.rs`: the keys
//!   and which index a query reads);
//! - `report_days`: day ‖ zone ‖ currency → the rollup (`reports.rs`), what the trips
//!   archived add up to; a trip re-archived replaces its old contribution (and old index
//!   rows that differ), read from its old row before the same transaction;
//! - `transfers`: transfer id → the settled ledger transfer (postcard), archived with
//!   its trip (or on its own when it has none);
//! - `transfers_by_account`: account ‖ time (newest first) ‖ transfer → (): statements;
//! - `idempotency_keys`: principal ‖ key → expires_at ‖ the remembered answer
//!   (`state::Remembered`, postcard): keys older than the hot window
//!   ([`crate::journal::KEYS_HOT_WINDOW_S`]) until they expire;
//! - `idempotency_keys_by_expiry`: expires_at ‖ principal ‖ key → (): what the purge reads;
//! - `gateway_events`: gateway ‖ event id → seen_at: event ids older than the hot window,
//!   kept [`crate::state::GATEWAY_EVENT_TTL_S`] like hot ones;
//! - `gateway_events_by_seen`: seen_at ‖ gateway ‖ event id → () — expiry order, every id
//!   being kept as long;
//! - `alerts`: alert id → the alert (postcard), once acknowledged;
//! - `alerts_by_time`: raised_at ‖ alert → () — oldest first, as staff list them;
//! - `audit`: seq → the audit entry (postcard), immutable (issue 20: A);
//! - `audit_by_actor`, `audit_by_target`, `audit_by_action`: the actor, target or action
//!   ‖ 0 ‖ rev(seq) → () — each newest first under its prefix (ids and action names are
//!   printable ASCII, so the 0 byte ends the name unambiguously);
//! - `locations`: day ‖ driver ‖ time → the position: every driver's track. Written by a
//!   thread that follows the engine's position events in batches, best effort, like
//!   positions themselves (they are not waited for fsync in the log either). Read back
//!   as a page from a time on ([`History::locations`]) or as a bounded, evenly sampled
//!   trail over a time range ([`History::trail`]); old days pruned by retention
//!   (`history/positions.rs`);
//! - `chat_by_age`: oldest message's time ‖ trip → (): the archived trips whose rows
//!   hold chat messages, oldest first, which retention walks to rewrite each row without
//!   its expired messages (`history/chat.rs`).
//!
//! An erased user's data here goes in bounded batches ([`History::erase_positions`],
//! [`History::erase_chat`]: issue 20), written by the server's eraser, like positions
//! outside the checkpoint thread.
//!
//! How trips get here (see `journal.rs`): each checkpoint writes the trips that were
//! terminal in the checkpointed state, in the checkpoint's own redb transaction (with
//! its LSN and state); only once that transaction is durable does the writer log an
//! `Archive` command that removes them from the hot state — each only at the revision
//! the row holds (`Trip::revision`): a trip changed in between (a rating, a refund)
//! stays hot, and the next checkpoint writes and archives its new revision. So a
//! finished trip is always readable from one place or the other — never from neither,
//! never an older copy than was acknowledged — and a crash at any point leaves at worst
//! a trip in both (the hot copy wins; the next checkpoint writes it again).
//!
//! Idempotency keys and gateway event ids come the same way: the checkpoint writes those
//! older than the hot window (bounded per checkpoint) in the same transaction, and once it
//! is durable the `Archive` record drops exactly those from the hot state (each only if
//! the hot entry is still the one written: the same expiry, the same time seen). A key
//! is never in neither place while it is kept, so it can never be used again with
//! another request. The same transaction deletes rows that expired (by the expiry index,
//! bounded per checkpoint; a row that a newer entry under the same id replaced stays).
//! A keyed command or a gateway event whose id is not hot is looked up here by the
//! writer, which stamps what it finds into the command (`Command::Keyed::archived`,
//! `Command::PaymentEvent::archived`): `apply` answers from it as from a hot entry, and
//! a replay of the log needs no history.
//!
//! A command about a trip that is only here (a late rating, a refund, a payment
//! event) is not refused as unknown: the writer reads the trip back and logs it with
//! the command (`Command::Restored`), which puts it back in the hot state first.
//!
//! Guarantees: rows are written only by the checkpoint thread (positions by the tracker,
//! erasures by the eraser); reads run in their own
//! redb read transaction and never wait for it; a corrupt or foreign file refuses to
//! open (the engine then refuses to start).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispatch_storage::store::{self, Checkpoint, Order, Scan, Store, TableName, key};

use crate::alert::Alert;
use crate::audit::AuditEntry;
use crate::checkpoint::{Prepared, RowChanges};
use crate::clock::Timestamp;
use crate::command::Actor;
use crate::command::Remembered;
use crate::error::{Error, Result};
use crate::id::{AlertId, TransferId, TripId, UserId};
use crate::ledger::{AccountKey, Transfer};
use crate::state::gateway_event_kept;
use crate::trip::Trip;

// ----- issue 20: H -----
mod trips;
pub(crate) use trips::ROWS_PER_TRIP_MAX;
pub use trips::TripsPage;

// ----- issue 20: P -----
mod chat;
mod positions;

pub use chat::{CHAT_PRUNE_BATCH_MAX, ChatPruned};
pub use positions::{DAY_MS, LocationPoint, PRUNE_BATCH_MAX, TRAIL_READ_MAX, Trail};

const TRIPS: TableName = TableName::new("trips");
use crate::trip_index::{TRIPS_BY_DRIVER, TRIPS_BY_RIDER, TRIPS_BY_TIME};
const TRANSFERS: TableName = TableName::new("transfers");
const TRANSFERS_BY_ACCOUNT: TableName = TableName::new("transfers_by_account");
const IDEMPOTENCY_KEYS: TableName = TableName::new("idempotency_keys");
const IDEMPOTENCY_KEYS_BY_EXPIRY: TableName = TableName::new("idempotency_keys_by_expiry");
const GATEWAY_EVENTS: TableName = TableName::new("gateway_events");
const GATEWAY_EVENTS_BY_SEEN: TableName = TableName::new("gateway_events_by_seen");
const ALERTS: TableName = TableName::new("alerts");
const ALERTS_BY_TIME: TableName = TableName::new("alerts_by_time");
// ----- issue 20: H -----
const REPORT_DAYS: TableName = TableName::new("report_days");
// ----- issue 20: A -----
const AUDIT: TableName = TableName::new("audit");
const AUDIT_BY_ACTOR: TableName = TableName::new("audit_by_actor");
const AUDIT_BY_TARGET: TableName = TableName::new("audit_by_target");
const AUDIT_BY_ACTION: TableName = TableName::new("audit_by_action");
mod audit;
pub use audit::AuditBy;
use audit::audit_index_key;

/// Most expired keys (and, apart, event ids) one checkpoint deletes (two rows each).
pub(crate) const PURGE_MAX: usize = 200_000;

/// An idempotency key on its way to the history, as a checkpoint writes it.
pub(crate) type ArchivedKey = (Actor, String, Arc<Remembered>);

/// A gateway event id on its way to the history: gateway, event id, when first seen.
pub(crate) type ArchivedEvent = (String, String, Timestamp);

/// What leaves the hot state with one checkpoint, written in its transaction.
#[derive(Debug, Default)]
pub(crate) struct Leaving {
    /// Finished trips.
    pub(crate) trips: Vec<Arc<Trip>>,
    /// Settled transfers.
    pub(crate) transfers: Vec<Transfer>,
    /// Idempotency keys past the hot window.
    pub(crate) keys: Vec<ArchivedKey>,
    /// Gateway event ids past the hot window.
    pub(crate) events: Vec<ArchivedEvent>,
    /// Acknowledged alerts.
    pub(crate) alerts: Vec<Arc<Alert>>,
    // ----- issue 20: A -----
    /// Audit entries (four rows each).
    pub(crate) audit: Vec<Arc<AuditEntry>>,
}

/// How many idempotency keys and gateway event ids the history holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchivedCounts {
    /// Idempotency keys (expired ones count until a checkpoint purges them).
    pub keys: u64,
    /// Gateway event ids (the same way).
    pub gateway_events: u64,
}

/// The file name of the store inside a data directory: the checkpoint (`checkpoint.rs`)
/// and the history.
pub const FILE: &str = "store.redb";

/// What [`FILE`] was called while it held only the history; renamed when found.
const LEGACY_FILE: &str = "history.redb";

/// Whose trips a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripsOf {
    /// A rider's.
    Rider(UserId),
    /// A driver's.
    Driver(UserId),
    /// Everyone's (staff).
    All,
}

/// A position in a newest-first listing of trips: strictly older than this
/// `(created_at ms, trip)` pair. Opaque to callers outside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TripCursor {
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// The trip.
    pub trip: TripId,
}

impl TripCursor {
    /// The cursor just after `trip` in newest-first order.
    pub fn after(trip: &Trip) -> Self {
        TripCursor { created_ms: trip.created_at.as_millis(), trip: trip.id }
    }

    /// Whether `trip` comes after this cursor in newest-first order.
    pub fn precedes(&self, trip: &Trip) -> bool {
        (trip.created_at.as_millis(), trip.id) < (self.created_ms, self.trip)
    }
}

/// The history store of a data directory.
pub struct History {
    store: Store,
    // ----- issue 20: P -----
    /// Positions deleted by retention since the store was opened.
    pruned_positions: std::sync::atomic::AtomicU64,
    /// Chat messages removed from archived trips by retention since then.
    pruned_chat: std::sync::atomic::AtomicU64,
    /// Held by whoever writes trip rows (the checkpoint, chat retention, an erasure's
    /// chat) from the read of a row to the commit of its rewrite: the eraser runs on its
    /// own thread, and without this an older copy it read could overwrite a revision
    /// the checkpoint wrote meanwhile (or the reverse), bringing back erased words.
    trip_rows: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.store.path()).finish()
    }
}

fn store_error(context: &str, e: &store::StoreError) -> Error {
    Error::Storage(format!("{context}: {e}"))
}

/// A time as an unsigned key part, ascending (times before the epoch clamp to it).
fn time_u64(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis()).unwrap_or(0)
}

/// `principal ‖ key`: a tag byte (0 the system, 1 the admin, 2 a user and its id), then
/// the key's bytes — unambiguous, since only users carry a fixed-width id.
fn key_row(principal: Actor, k: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(9 + k.len());
    match principal {
        Actor::System => row.push(0),
        Actor::Admin => row.push(1),
        Actor::User(u) => {
            row.push(2);
            row.extend_from_slice(&key::u64_be(u.raw()));
        }
    }
    row.extend_from_slice(k.as_bytes());
    row
}

/// `len(gateway) ‖ gateway ‖ event id` (a gateway name is 1 to 32 bytes).
fn event_row(gateway: &str, event_id: &str) -> Result<Vec<u8>> {
    let len = u8::try_from(gateway.len())
        .ok()
        .filter(|n| (1..=32).contains(n))
        .ok_or_else(|| Error::invalid("a gateway name is 1-32 bytes"))?;
    Ok(key::concat(&[&[len], gateway.as_bytes(), event_id.as_bytes()]))
}

fn time_part(ms: i64) -> [u8; 8] {
    // Times before the epoch do not occur; clamp rather than wrap if one did.
    key::rev_u64_be(u64::try_from(ms).unwrap_or(0))
}

/// `owner? ‖ rev(created) ‖ rev(trip)`: ascending key order is newest first, and among
/// trips created in the same millisecond the higher id first — the order of
/// `(created_at, id)` descending that the engine's listings use.
fn index_key(owner: Option<UserId>, created_ms: i64, trip: TripId) -> Vec<u8> {
    let t = time_part(created_ms);
    let id = key::rev_u64_be(trip.raw());
    match owner {
        Some(o) => key::concat(&[&key::u64_be(o.raw()), &t, &id]),
        None => key::concat(&[&t, &id]),
    }
}

impl History {
    /// Opens (creating) the history store in the data directory `dir`. Refuses a
    /// corrupt or foreign file.
    pub fn open(dir: &Path) -> Result<Arc<History>> {
        let legacy = dir.join(LEGACY_FILE);
        if !path(dir).exists() && legacy.exists() {
            std::fs::rename(&legacy, path(dir))
                .and_then(|()| std::fs::File::open(dir)?.sync_all())
                .map_err(|e| Error::Storage(format!("cannot rename {} to {FILE}: {e}", legacy.display())))?;
        }
        let store = Store::open(path(dir)).map_err(|e| store_error("the store is unusable; refusing to start", &e))?;
        Ok(Arc::new(History {
            store,
            pruned_positions: Default::default(),
            pruned_chat: Default::default(),
            trip_rows: parking_lot::Mutex::new(()),
        }))
    }

    /// The LSN of the last checkpoint committed (see `write`), if any.
    pub fn applied_lsn(&self) -> Result<Option<u64>> {
        self.store.checkpoint_lsn().map_err(|e| store_error("cannot read the store", &e))
    }

    /// The store file underneath (the checkpoint reads its state and rows from it).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Commits `checkpoint` — its LSN, state blob and row changes (`checkpoint.rs`) — with `trips` (finished), settled `transfers`, idempotency
    /// `keys` and gateway `events` leaving the hot state at it, and deletes rows expired
    /// at `now` (at most [`PURGE_MAX`] keys and as many event ids, within the
    /// transaction's bound), in one durable transaction. Returns what the history then
    /// holds. An LSN not above the stored checkpoint's is refused.
    pub(crate) fn write(&self, checkpoint: Prepared, leaving: &Leaving, now: Timestamp) -> Result<ArchivedCounts> {
        let _rows = self.trip_rows.lock();
        let Prepared { lsn, blob: state, changes: RowChanges { mut puts, mut deletes } } = checkpoint;
        self.leaving_rows(leaving, &mut puts, &mut deletes)?;
        // Expired rows go in the same transaction, within its bound (two deletes each).
        let room = store::CHANGES_MAX.saturating_sub(puts.len() + deletes.len()) / 2;
        let now_ms = time_u64(now);
        let purged_keys = self.expired(
            IDEMPOTENCY_KEYS_BY_EXPIRY,
            IDEMPOTENCY_KEYS,
            PURGE_MAX.min(room / 2),
            |expires| expires <= now_ms,
            &mut deletes,
        )?;
        let room = room.saturating_sub(purged_keys);
        self.expired(
            GATEWAY_EVENTS_BY_SEEN,
            GATEWAY_EVENTS,
            PURGE_MAX.min(room),
            |seen| !gateway_event_kept(Timestamp::from_millis(i64::try_from(seen).unwrap_or(i64::MAX)), now),
            &mut deletes,
        )?;
        let cp = Checkpoint { lsn, state, puts, deletes, delete_ranges: Vec::new() };
        self.store.commit(&cp).map_err(|e| store_error("cannot write the checkpoint", &e))?;
        self.archived_counts()
    }

    /// Writes the rows of `leaving` in one durable transaction that leaves the checkpoint
    /// alone: a follower does this before it applies a followed `Archive`, whose items
    /// the leader's checkpoint wrote to the leader's history (issue 21). Idempotent: a
    /// trip written again replaces its rows and rollups.
    pub(crate) fn write_leaving(&self, leaving: &Leaving) -> Result<()> {
        let _rows = self.trip_rows.lock();
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        self.leaving_rows(leaving, &mut puts, &mut deletes)?;
        self.store.write_rows(&puts, &deletes).map_err(|e| store_error("cannot write archived rows", &e))
    }

    /// The rows `leaving` puts and deletes (trip rows under the `trip_rows` lock).
    fn leaving_rows(
        &self,
        leaving: &Leaving,
        puts: &mut Vec<(TableName, Vec<u8>, Vec<u8>)>,
        deletes: &mut Vec<(TableName, Vec<u8>)>,
    ) -> Result<()> {
        let Leaving { trips, transfers, keys, events, alerts, audit } = leaving;
        puts.reserve(trips.len() * 9 + transfers.len() * 3 + (keys.len() + events.len() + alerts.len()) * 2);
        for a in alerts {
            let value =
                postcard::to_allocvec(&**a).map_err(|e| Error::internal(format!("cannot encode an alert: {e}")))?;
            puts.push((ALERTS_BY_TIME, alert_key(a.raised_at, a.id), Vec::new()));
            puts.push((ALERTS, key::u64_be(a.id.raw()).to_vec(), value));
        }
        for e in audit {
            let value = postcard::to_allocvec(&**e)
                .map_err(|err| Error::internal(format!("cannot encode an audit entry: {err}")))?;
            puts.push((AUDIT_BY_ACTOR, audit_index_key(&e.actor_id, e.seq), Vec::new()));
            puts.push((AUDIT_BY_TARGET, audit_index_key(&e.target_id, e.seq), Vec::new()));
            puts.push((AUDIT_BY_ACTION, audit_index_key(&e.action, e.seq), Vec::new()));
            puts.push((AUDIT, key::u64_be(e.seq).to_vec(), value));
        }
        for (principal, k, remembered) in keys {
            let row = key_row(*principal, k);
            let expires = time_u64(remembered.expires_at);
            let mut value = key::u64_be(expires).to_vec();
            value = postcard::to_extend(&**remembered, value)
                .map_err(|e| Error::internal(format!("cannot encode an idempotency key: {e}")))?;
            puts.push((IDEMPOTENCY_KEYS_BY_EXPIRY, key::concat(&[&key::u64_be(expires), &row]), Vec::new()));
            puts.push((IDEMPOTENCY_KEYS, row, value));
        }
        for (gateway, event_id, seen_at) in events {
            let row = event_row(gateway, event_id)?;
            let seen = key::u64_be(time_u64(*seen_at));
            puts.push((GATEWAY_EVENTS_BY_SEEN, key::concat(&[&seen, &row]), Vec::new()));
            puts.push((GATEWAY_EVENTS, row, seen.to_vec()));
        }
        for t in transfers {
            let value =
                postcard::to_allocvec(t).map_err(|e| Error::internal(format!("cannot encode a transfer: {e}")))?;
            puts.push((TRANSFERS, key::u64_be(t.id.raw()).to_vec(), value));
            for account in [t.debit, t.credit] {
                puts.push((TRANSFERS_BY_ACCOUNT, statement_key(&account, t.at.as_millis(), t.id), Vec::new()));
            }
        }
        self.trip_rows(trips, puts, deletes)?;
        // Archived chat is pruned by age (retention): each trip with messages under its oldest.
        puts.extend(trips.iter().filter_map(|t| chat::index_row(t)));
        Ok(())
    }

    /// Adds to `deletes` the rows of `index` (time ‖ row key) whose time is `expired`,
    /// oldest first, at most `max` of them, each with its row in `rows` — unless that row
    /// now holds a newer entry under the same id (its value starts with another time):
    /// then only the stale index row goes. Returns how many index rows it took.
    fn expired(
        &self,
        index: TableName,
        rows: TableName,
        max: usize,
        expired: impl Fn(u64) -> bool,
        deletes: &mut Vec<(TableName, Vec<u8>)>,
    ) -> Result<usize> {
        let mut taken = 0;
        let mut after = None;
        'pages: while taken < max {
            let scan = Scan::new(Vec::new(), store::SCAN_LIMIT_MAX).after(after.take());
            let page = self.store.scan(index, &scan).map_err(|e| store_error("cannot read an expiry index", &e))?;
            for (k, _) in &page.rows {
                let (time, row) = key::take_u64_be(k)
                    .ok_or_else(|| Error::Storage(format!("a row of {} has a malformed key", index.as_str())))?;
                if taken >= max || !expired(time) {
                    break 'pages;
                }
                let current = self.store.get(rows, row).map_err(|e| store_error("cannot read the history", &e))?;
                if current.as_deref().and_then(|v| v.get(..8)) == Some(&key::u64_be(time)[..]) {
                    deletes.push((rows, row.to_vec()));
                }
                deletes.push((index, k.clone()));
                taken += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(taken)
    }

    /// What retention removed since the store was opened: positions, chat messages.
    pub fn retention_pruned(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.pruned_positions.load(Relaxed), self.pruned_chat.load(Relaxed))
    }

    /// How many idempotency keys and gateway event ids the history holds.
    pub fn archived_counts(&self) -> Result<ArchivedCounts> {
        let count = |t| self.store.len(t).map_err(|e| store_error("cannot count the history", &e));
        Ok(ArchivedCounts { keys: count(IDEMPOTENCY_KEYS)?, gateway_events: count(GATEWAY_EVENTS)? })
    }

    /// What the history keeps under `principal`'s idempotency key `k`, expired or not
    /// (the caller compares `expires_at` with its time). `None` for a key that is not
    /// valid (too long to have been stored).
    pub fn remembered(&self, principal: Actor, k: &str) -> Result<Option<Remembered>> {
        if k.len() > crate::command::IdempotencyKey::MAX_LEN {
            return Ok(None);
        }
        let bytes = self
            .store
            .get(IDEMPOTENCY_KEYS, &key_row(principal, k))
            .map_err(|e| store_error("cannot read an idempotency key", &e))?;
        bytes
            .map(|b| {
                let body = b.get(8..).unwrap_or_default();
                postcard::from_bytes(body)
                    .map_err(|e| Error::Storage(format!("a stored idempotency key does not decode: {e}")))
            })
            .transpose()
    }

    /// When the history says `gateway`'s event `event_id` was first seen, expired or not
    /// (`None` for ids too long to have been stored).
    pub fn gateway_event(&self, gateway: &str, event_id: &str) -> Result<Option<Timestamp>> {
        let Ok(row) = event_row(gateway, event_id) else { return Ok(None) };
        if event_id.len() > 255 {
            return Ok(None);
        }
        let bytes =
            self.store.get(GATEWAY_EVENTS, &row).map_err(|e| store_error("cannot read a gateway event id", &e))?;
        match bytes.as_deref().map(key::take_u64_be) {
            None => Ok(None),
            Some(Some((ms, _))) => Ok(Some(Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX)))),
            Some(None) => Err(Error::Storage("a stored gateway event id has a malformed value".into())),
        }
    }

    /// A finished trip.
    pub fn trip(&self, id: TripId) -> Result<Option<Trip>> {
        let bytes = self.store.get(TRIPS, &key::u64_be(id.raw())).map_err(|e| store_error("cannot read a trip", &e))?;
        bytes.map(|b| decode(&b)).transpose()
    }

    /// Up to `limit` (1 to 1000) finished trips of `of`, newest first, strictly after `cursor`.
    pub fn trips(&self, of: TripsOf, cursor: Option<TripCursor>, limit: usize) -> Result<Vec<Trip>> {
        let (table, prefix) = match of {
            TripsOf::Rider(u) => (TRIPS_BY_RIDER, key::u64_be(u.raw()).to_vec()),
            TripsOf::Driver(u) => (TRIPS_BY_DRIVER, key::u64_be(u.raw()).to_vec()),
            TripsOf::All => (TRIPS_BY_TIME, Vec::new()),
        };
        let owner = match of {
            TripsOf::Rider(u) | TripsOf::Driver(u) => Some(u),
            TripsOf::All => None,
        };
        let after = cursor.map(|c| index_key(owner, c.created_ms, c.trip));
        let scan = Scan::new(prefix, limit.clamp(1, store::SCAN_LIMIT_MAX)).order(Order::Ascending).after(after);
        let page = self.store.scan(table, &scan).map_err(|e| store_error("cannot list trips", &e))?;
        let mut out = Vec::with_capacity(page.rows.len());
        for (k, _) in page.rows {
            let id_bytes = k.get(k.len().saturating_sub(8)..).unwrap_or_default();
            let id = key::take_rev_u64_be(id_bytes)
                .and_then(|(raw, _)| TripId::from_raw(raw))
                .ok_or_else(|| Error::Storage("a history index row has a malformed key".into()))?;
            match self.trip(id)? {
                Some(t) => out.push(t),
                None => return Err(Error::Storage(format!("the history index names {id}, which is missing"))),
            }
        }
        Ok(out)
    }
}

/// `raised_at ‖ alert`, ascending: the oldest first, as staff list alerts.
fn alert_key(raised_at: Timestamp, id: AlertId) -> Vec<u8> {
    key::concat(&[&key::u64_be(time_u64(raised_at)), &key::u64_be(id.raw())])
}

impl History {
    /// An archived (acknowledged) alert.
    pub fn alert(&self, id: AlertId) -> Result<Option<Alert>> {
        let bytes =
            self.store.get(ALERTS, &key::u64_be(id.raw())).map_err(|e| store_error("cannot read an alert", &e))?;
        bytes
            .map(|b| {
                postcard::from_bytes(&b).map_err(|e| Error::Storage(format!("a stored alert does not decode: {e}")))
            })
            .transpose()
    }

    /// Up to `limit` (1 to 1000) archived alerts, oldest first, strictly after `after`
    /// (the `(raised_at, id)` of the last one of the previous page).
    pub fn alerts(&self, after: Option<(Timestamp, AlertId)>, limit: usize) -> Result<Vec<Alert>> {
        let scan = Scan::new(Vec::new(), limit.clamp(1, store::SCAN_LIMIT_MAX))
            .order(Order::Ascending)
            .after(after.map(|(at, id)| alert_key(at, id)));
        let page = self.store.scan(ALERTS_BY_TIME, &scan).map_err(|e| store_error("cannot list alerts", &e))?;
        let mut out = Vec::with_capacity(page.rows.len());
        for (k, _) in page.rows {
            let id = k
                .get(8..16)
                .and_then(|b| key::take_u64_be(b))
                .and_then(|(raw, _)| AlertId::from_raw(raw))
                .ok_or_else(|| Error::Storage("an alert index row has a malformed key".into()))?;
            match self.alert(id)? {
                Some(a) => out.push(a),
                None => return Err(Error::Storage(format!("the alert index names {id}, which is missing"))),
            }
        }
        Ok(out)
    }
}

fn decode(bytes: &[u8]) -> Result<Trip> {
    postcard::from_bytes(bytes).map_err(|e| Error::Storage(format!("a stored trip does not decode: {e}")))
}

/// `account ‖ rev(at) ‖ rev(id)`: ascending is newest first, as `View::statement` reads.
fn statement_key(account: &AccountKey, at_ms: i64, id: TransferId) -> Vec<u8> {
    let mut k = account_prefix(account);
    k.extend_from_slice(&time_part(at_ms));
    k.extend_from_slice(&key::rev_u64_be(id.raw()));
    k
}

/// A fixed-width encoding of an account key: kind, owner (0 for the platform), currency.
fn account_prefix(account: &AccountKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 + 3);
    k.push(account.kind as u8);
    k.extend_from_slice(&key::u64_be(account.owner.map_or(0, |u| u.raw())));
    k.extend_from_slice(account.currency.code().as_bytes());
    k
}

impl History {
    /// Up to `limit` (1 to 1000) archived transfers of `account`, newest first, strictly
    /// after `after` (`(at, id)` of the last one of the previous page).
    pub fn transfers_of(
        &self,
        account: &AccountKey,
        after: Option<(crate::clock::Timestamp, TransferId)>,
        limit: usize,
    ) -> Result<Vec<Transfer>> {
        let prefix = account_prefix(account);
        let cursor = after.map(|(at, id)| statement_key(account, at.as_millis(), id));
        let scan = Scan::new(prefix, limit.clamp(1, store::SCAN_LIMIT_MAX)).after(cursor);
        let page =
            self.store.scan(TRANSFERS_BY_ACCOUNT, &scan).map_err(|e| store_error("cannot list transfers", &e))?;
        let mut out = Vec::with_capacity(page.rows.len());
        for (k, _) in page.rows {
            let id = k
                .get(k.len().saturating_sub(8)..)
                .and_then(key::take_rev_u64_be)
                .and_then(|(raw, _)| TransferId::from_raw(raw))
                .ok_or_else(|| Error::Storage("a transfer index row has a malformed key".into()))?;
            let bytes = self
                .store
                .get(TRANSFERS, &key::u64_be(id.raw()))
                .map_err(|e| store_error("cannot read a transfer", &e))?
                .ok_or_else(|| Error::Storage(format!("the transfer index names {id}, which is missing")))?;
            out.push(
                postcard::from_bytes(&bytes)
                    .map_err(|e| Error::Storage(format!("a stored transfer does not decode: {e}")))?,
            );
        }
        Ok(out)
    }
}

/// Where the history store of the data directory `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Copies the store of the data directory `from` (which another process may be
/// writing; an older version's, under its old name, too) into the data directory `to`.
pub(crate) fn backup_file(from: &Path, to: &Path) -> Result<()> {
    let (from, to) = match [path(from), from.join(LEGACY_FILE)].into_iter().find(|p| p.exists()) {
        Some(file) => (file, path(to)),
        None => return Ok(()),
    };
    let ro = Store::open_read_only(&from).map_err(|e| store_error("cannot open the store for backup", &e))?;
    ro.backup_to(&to).map(|_| ()).map_err(|e| store_error("cannot back up the store", &e))
}

// ----- issue 20: U -----

/// The text that replaces an erased user's chat messages (the hot state's too).
pub use crate::state::ERASED_TEXT;

impl History {
    /// Replaces the text of `user`'s chat messages in up to `max` of the user's archived
    /// trips (as rider, then as driver), from `after` (a position this returned; `None`
    /// to start); returns the trips rewritten and where to go on (`None`: done).
    /// Idempotent: a trip without the user's words is not written again. A trip the
    /// checkpoint archives again meanwhile (a late rating brought it back) is written by
    /// its thread from the hot copy, which the erasure cleaned already.
    pub fn erase_chat(&self, user: UserId, after: Option<Vec<u8>>, max: usize) -> Result<(usize, Option<Vec<u8>>)> {
        let _rows = self.trip_rows.lock();
        // The position: a table byte (0 rider, 1 driver), then the index key.
        let (table_byte, after_key) = match after.as_deref().and_then(|a| a.split_first()) {
            Some((&b, rest)) => (b, (!rest.is_empty()).then(|| rest.to_vec())),
            None => (0, None),
        };
        let table = if table_byte == 0 { TRIPS_BY_RIDER } else { TRIPS_BY_DRIVER };
        let prefix = key::u64_be(user.raw()).to_vec();
        let scan = Scan::new(prefix, max.clamp(1, store::SCAN_LIMIT_MAX)).order(Order::Ascending).after(after_key);
        let page = self.store.scan(table, &scan).map_err(|e| store_error("cannot list trips", &e))?;
        let mut puts = Vec::new();
        for (k, _) in &page.rows {
            let id = key::take_rev_u64_be(k.get(k.len().saturating_sub(8)..).unwrap_or_default())
                .and_then(|(raw, _)| TripId::from_raw(raw))
                .ok_or_else(|| Error::Storage("a history index row has a malformed key".into()))?;
            let Some(mut trip) = self.trip(id)? else { continue };
            if !trip.messages.iter().any(|m| m.from_user_id == Some(user) && m.text != ERASED_TEXT) {
                continue;
            }
            for m in Arc::make_mut(&mut trip.messages).iter_mut().filter(|m| m.from_user_id == Some(user)) {
                m.text = ERASED_TEXT.into();
            }
            let value =
                postcard::to_allocvec(&trip).map_err(|e| Error::internal(format!("cannot encode a trip: {e}")))?;
            puts.push((TRIPS, key::u64_be(id.raw()).to_vec(), value));
        }
        self.store.put_rows(&puts).map_err(|e| store_error("cannot erase chat", &e))?;
        let next = match (page.next, table_byte) {
            (Some(k), b) => Some(key::concat(&[&[b], &k])),
            (None, 0) => Some(vec![1]),
            (None, _) => None,
        };
        Ok((puts.len(), next))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{ArchivedCounts, History, Leaving};
    use crate::clock::Timestamp;
    use crate::command::Remembered;
    use crate::command::{Actor, Outcome};
    use crate::state::GATEWAY_EVENT_TTL_S;

    /// A checkpoint at `lsn` that carries no state (the history's rows only).
    fn empty(lsn: u64) -> crate::checkpoint::Prepared {
        crate::checkpoint::Prepared { lsn, blob: Vec::new(), changes: Default::default() }
    }

    /// Regression guard: a key used again after it expired is a new entry under the same
    /// id; the purge of the old entry's index row must not take the new entry's row.
    #[test]
    fn the_purge_deletes_expired_entries_and_never_one_that_replaced_them() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let at = |s: i64| Timestamp::from_millis(1_700_000_000_000 + s * 1000);
        let entry = |hash: u8, expires: i64| {
            Arc::new(Remembered {
                request_hash: [hash; 32],
                outcome: Outcome::Done,
                stored_at: at(0),
                expires_at: at(expires),
            })
        };
        let key = |hash, expires| vec![(Actor::Admin, "k".to_string(), entry(hash, expires))];
        let event = |seen| vec![("sim".to_string(), "evt_1".to_string(), at(seen))];
        let counts = |keys, gateway_events| ArchivedCounts { keys, gateway_events };
        assert_eq!(
            history
                .write(empty(1), &Leaving { keys: key(1, 100), events: event(0), ..Leaving::default() }, at(10))
                .unwrap(),
            counts(1, 1)
        );
        assert_eq!(history.remembered(Actor::Admin, "k").unwrap().map(|r| r.request_hash), Some([1; 32]));
        assert_eq!(history.remembered(Actor::User(crate::id::UserId::from_raw(1).unwrap()), "k").unwrap(), None);
        assert_eq!(history.gateway_event("sim", "evt_1").unwrap(), Some(at(0)));
        // Used again after expiring (at 100): the new entry replaces the row, the old
        // index row stays until the purge.
        assert_eq!(
            history
                .write(empty(2), &Leaving { keys: key(2, 300), events: event(200), ..Leaving::default() }, at(150))
                .unwrap(),
            counts(1, 1)
        );
        // The old key's time is up: only its index row goes.
        assert_eq!(history.write(empty(3), &Leaving::default(), at(200)).unwrap(), counts(1, 1));
        assert_eq!(history.remembered(Actor::Admin, "k").unwrap().map(|r| r.request_hash), Some([2; 32]));
        assert_eq!(history.store.len(super::IDEMPOTENCY_KEYS_BY_EXPIRY).unwrap(), 1);
        // The new one's too (a key answers while `now < expires_at`).
        assert_eq!(history.write(empty(4), &Leaving::default(), at(300)).unwrap(), counts(0, 1));
        assert_eq!(history.remembered(Actor::Admin, "k").unwrap(), None);
        assert_eq!(history.store.len(super::IDEMPOTENCY_KEYS_BY_EXPIRY).unwrap(), 0);
        // The same for the event id, kept 30 days from when it was seen (that instant included).
        let ttl = i64::from(GATEWAY_EVENT_TTL_S);
        assert_eq!(history.write(empty(5), &Leaving::default(), at(ttl + 100)).unwrap(), counts(0, 1));
        assert_eq!(history.gateway_event("sim", "evt_1").unwrap(), Some(at(200)));
        assert_eq!(history.store.len(super::GATEWAY_EVENTS_BY_SEEN).unwrap(), 1);
        assert_eq!(history.write(empty(6), &Leaving::default(), at(ttl + 200)).unwrap(), counts(0, 1));
        assert_eq!(history.write(empty(7), &Leaving::default(), at(ttl + 201)).unwrap(), counts(0, 0));
        assert_eq!(history.gateway_event("sim", "evt_1").unwrap(), None);
        // Ids that cannot have been stored read as absent, never as an error.
        assert_eq!(history.remembered(Actor::Admin, &"x".repeat(2_000)).unwrap(), None);
        assert_eq!(history.gateway_event(&"g".repeat(40), "evt_1").unwrap(), None);
    }
    // ----- issue 20: U -----

    /// An erased user's positions go in bounded batches, another driver's stay; its chat in
    /// archived trips is replaced, the other party's kept, and a second pass writes nothing.
    #[test]
    fn an_erasure_takes_the_users_positions_and_archived_chat_in_batches() {
        use dispatch_domain::testkit::World;

        use crate::command::{Command, DispatchRules};
        use crate::geo::LatLng;
        use crate::history::LocationPoint;
        use crate::trip::CancelReason;

        let mut w = World::new(DispatchRules::default());
        let rider = w.rider();
        let driver = w.driver(1.0);
        let other = w.driver(2.0);
        let trip = w.trip(rider);
        w.accept(driver, trip).unwrap();
        for (who, text) in [(driver, "white car"), (rider, "ok")] {
            let post = Command::PostMessage { id: None, trip_id: trip, text: text.into(), rider_connected: None };
            w.run(Actor::User(who), post).unwrap();
        }
        let cancel = Command::CancelTrip { trip_id: trip, code: CancelReason::Other, reason: String::new() };
        w.run(Actor::User(rider), cancel).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        h.write(empty(1), &Leaving { trips: vec![w.get(trip)], ..Leaving::default() }, w.now).unwrap();
        let here = LatLng::new(30.0, 31.0).unwrap();
        let point =
            |ms: i64| LocationPoint { at: Timestamp::from_millis(ms), point: here, heading_deg: None, trip_id: None };
        let points: Vec<_> =
            (1..=2_500).map(|i| (driver, point(i))).chain((1..=10).map(|i| (other, point(i)))).collect();
        h.write_locations(&points).unwrap();

        assert_eq!(h.erase_positions(driver).unwrap(), 2_500);
        assert_eq!(h.erase_positions(driver).unwrap(), 0, "nothing left");
        assert!(h.locations(driver, Timestamp::from_millis(0), 1_000).unwrap().is_empty());
        assert_eq!(h.locations(other, Timestamp::from_millis(0), 1_000).unwrap().len(), 10);

        let erase_all = |user| {
            let (mut written, mut from) = (0, None);
            loop {
                let (n, next) = h.erase_chat(user, from, 1).unwrap();
                written += n;
                match next {
                    Some(k) => from = Some(k),
                    None => return written,
                }
            }
        };
        assert_eq!(erase_all(driver), 1);
        let texts: Vec<String> = h.trip(trip).unwrap().unwrap().messages.iter().map(|m| m.text.clone()).collect();
        assert_eq!(texts, vec![super::ERASED_TEXT.to_owned(), "ok".to_owned()]);
        assert_eq!(erase_all(driver), 0, "nothing left to write");
        w.finish();
    }
}
