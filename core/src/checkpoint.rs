//! The checkpoint in the store: how a [`State`] is written into the data directory's
//! redb file and read back from it.
//!
//! A checkpoint at LSN `L` is one redb transaction — the same one that writes what
//! leaves the hot state at `L` (finished trips, settled transfers, old idempotency keys
//! and event ids: `history.rs`) — holding:
//! - the *state blob*: the state at `L` without the collections of [`AccountRows`]
//!   (a format byte, [`STATE_FORMAT`], then postcard), as the store's checkpoint;
//! - those collections as rows, a table each, keys and values in postcard:
//!   - `users`: user id → the user (the phone index is rebuilt from them when read back:
//!     it names every user once, under the user's role and phone, which
//!     `State::check_invariants` checks);
//!   - `otps`: phone number → its sign-in codes and attempts;
//!   - `ledger_accounts`: account key (kind, owner, currency) → its totals;
//!   - `zones`: zone id → the zone (spec, surge settings);
//!   - `trip_refs`: a trip's short reference → (trip id, booked at), the last 30 days';
//!   - `notifications`: an outbox item's id → the item (kept 7 days after it finished);
//!   - `devices`: a user → the user's push devices;
//!   - `webhook_deliveries`: (endpoint, event number) → the delivery (kept 7 days after it
//!     finished).
//!
//! The rows are written as a difference: the checkpoint thread keeps the collections as
//! the store holds them (the previous checkpoint's) and writes a put for every entry
//! added or changed since and a delete for every entry removed. The maps are persistent
//! B-trees and the diff skips the subtrees both versions share, so a checkpoint costs
//! what changed since the last one, not the number of accounts (a country's million
//! users are not rewritten every few seconds).
//!
//! Guarantees:
//! - the blob and the rows are committed together and read back in one read
//!   transaction ([`dispatch_storage::store::Store::load_checkpoint`]): a state is always
//!   one checkpoint's, never a blob of one and rows of another;
//! - the stored rows are exactly the collections of the stored state: the thread's copy
//!   of them advances only when a commit succeeded;
//! - a row or a blob that does not decode refuses the start (with the table named),
//!   rather than starting on a state that differs from what was acknowledged.

use std::sync::Arc;

use dispatch_storage::store::{self, Store, TableName};
use imbl::ordmap::DiffItem;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::state::{AccountRows, State};
use crate::zone::{Catalog, Zone};

const USERS: TableName = TableName::new("users");
const OTPS: TableName = TableName::new("otps");
const LEDGER_ACCOUNTS: TableName = TableName::new("ledger_accounts");
const ZONES: TableName = TableName::new("zones");
const REFS: TableName = TableName::new("trip_refs");
const NOTIFICATIONS: TableName = TableName::new("notifications");
const DEVICES: TableName = TableName::new("devices");
const WEBHOOK_DELIVERIES: TableName = TableName::new("webhook_deliveries");

/// Every table of the checkpoint's rows.
const TABLES: [TableName; 8] = [USERS, OTPS, LEDGER_ACCOUNTS, ZONES, REFS, NOTIFICATIONS, DEVICES, WEBHOOK_DELIVERIES];

/// The state blob's format: a format byte, then postcard of the [`State`] with the
/// collections of [`AccountRows`] empty (they are rows). Format 5 was the whole state,
/// in a snapshot file ([`LEGACY_SNAPSHOT_FORMAT`]).
pub(crate) const STATE_FORMAT: u8 = 14;

/// The format of the snapshot files that held whole states before the checkpoint moved
/// into the store: read once, when a data directory written by such a version is opened.
pub(crate) const LEGACY_SNAPSHOT_FORMAT: u8 = 5;

/// A checkpoint ready to commit: its LSN, its state blob and its row changes.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) lsn: u64,
    pub(crate) blob: Vec<u8>,
    pub(crate) changes: RowChanges,
}

/// Row changes of one checkpoint, for [`dispatch_storage::store::Checkpoint`].
#[derive(Debug, Default)]
pub(crate) struct RowChanges {
    pub(crate) puts: Vec<(TableName, Vec<u8>, Vec<u8>)>,
    pub(crate) deletes: Vec<(TableName, Vec<u8>)>,
}

/// What a checkpoint at `lsn` commits for `state`, given the rows the store holds
/// (`stored`), and the rows the store holds once it is committed.
pub(crate) fn prepare(lsn: u64, mut state: State, stored: &AccountRows) -> Result<(Prepared, AccountRows)> {
    let rows = state.take_rows();
    let mut changes = RowChanges::default();
    diff(USERS, &stored.users, &rows.users, &mut changes)?;
    diff(OTPS, &stored.otps, &rows.otps, &mut changes)?;
    diff(LEDGER_ACCOUNTS, &stored.ledger_accounts, &rows.ledger_accounts, &mut changes)?;
    diff(REFS, &stored.refs, &rows.refs, &mut changes)?;
    diff(NOTIFICATIONS, &stored.notifications, &rows.notifications, &mut changes)?;
    diff(DEVICES, &stored.devices, &rows.devices, &mut changes)?;
    diff(WEBHOOK_DELIVERIES, &stored.webhook_deliveries, &rows.webhook_deliveries, &mut changes)?;
    if !Arc::ptr_eq(&stored.zones, &rows.zones) {
        diff_zones(&stored.zones, &rows.zones, &mut changes)?;
    }
    let blob = postcard::to_extend(&state, vec![STATE_FORMAT])
        .map_err(|e| Error::internal(format!("cannot encode the state: {e}")))?;
    Ok((Prepared { lsn, blob, changes }, rows))
}

fn encode<T: Serialize + ?Sized>(table: TableName, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::internal(format!("cannot encode a row of {}: {e}", table.as_str())))
}

fn decode<T: DeserializeOwned>(table: TableName, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::Storage(format!(
            "a row of the checkpoint's {} table does not decode ({e}); refusing to start",
            table.as_str()
        ))
    })
}

/// Puts for the entries of `new` that `old` lacks or holds otherwise, deletes for those
/// `new` lacks; shared subtrees are skipped.
fn diff<K, V>(
    table: TableName,
    old: &imbl::OrdMap<K, V>,
    new: &imbl::OrdMap<K, V>,
    changes: &mut RowChanges,
) -> Result<()>
where
    K: Ord + Clone + Serialize,
    V: Clone + PartialEq + Serialize,
{
    for item in old.diff(new) {
        match item {
            DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => {
                changes.puts.push((table, encode(table, k)?, encode(table, v)?));
            }
            DiffItem::Remove(k, _) => changes.deletes.push((table, encode(table, k)?)),
        }
    }
    Ok(())
}

/// The same for the zones (a few, in a std map: compared whole when the catalog changed).
fn diff_zones(old: &Catalog, new: &Catalog, changes: &mut RowChanges) -> Result<()> {
    for zone in new.zones() {
        if old.get(zone.id) != Some(zone) {
            changes.puts.push((ZONES, encode(ZONES, &zone.id)?, encode(ZONES, &**zone)?));
        }
    }
    for zone in old.zones() {
        if new.get(zone.id).is_none() {
            changes.deletes.push((ZONES, encode(ZONES, &zone.id)?));
        }
    }
    Ok(())
}

/// What the store holds as a checkpoint.
pub(crate) enum Stored {
    /// Nothing: no checkpoint was ever committed.
    Nothing,
    /// A state at an LSN.
    State(u64, Box<State>),
    /// An LSN with no state: a store written before the checkpoint moved into it (its
    /// state is in a snapshot file).
    Legacy,
}

/// Reads the checkpoint back from `store`: the blob and every row, in one read
/// transaction, assembled into the state (its spatial index rebuilt).
pub(crate) fn load(store: &Store) -> Result<Stored> {
    let mut rows = AccountRows::default();
    let mut zones: Vec<Arc<Zone>> = Vec::new();
    // A row that does not decode is most likely a checkpoint of another version: the
    // blob's format byte, read after the rows, says so by name. So the first row error
    // is kept (and the rest skipped) until the format has been checked.
    let mut row_error: Option<Error> = None;
    let loaded = store
        .load_checkpoint(&TABLES, |table, k, v| -> Result<()> {
            if row_error.is_some() {
                return Ok(());
            }
            let decoded = (|| -> Result<()> {
                if table == USERS {
                    rows.users.insert(decode(table, k)?, decode(table, v)?);
                } else if table == OTPS {
                    rows.otps.insert(decode(table, k)?, decode(table, v)?);
                } else if table == LEDGER_ACCOUNTS {
                    rows.ledger_accounts.insert(decode(table, k)?, decode(table, v)?);
                } else if table == REFS {
                    rows.refs.insert(decode(table, k)?, decode(table, v)?);
                } else if table == NOTIFICATIONS {
                    rows.notifications.insert(decode(table, k)?, decode(table, v)?);
                } else if table == DEVICES {
                    rows.devices.insert(decode(table, k)?, decode(table, v)?);
                } else if table == WEBHOOK_DELIVERIES {
                    rows.webhook_deliveries.insert(decode(table, k)?, decode(table, v)?);
                } else {
                    zones.push(Arc::new(decode(table, v)?));
                }
                Ok(())
            })();
            row_error = decoded.err();
            Ok(())
        })
        .map_err(|e| store_error("cannot read the checkpoint; refusing to start", &e))??;
    let Some((lsn, blob)) = loaded else {
        return match row_error {
            Some(e) => Err(e),
            None => Ok(Stored::Nothing),
        };
    };
    if blob.is_empty() {
        return match row_error {
            Some(e) => Err(e),
            None => Ok(Stored::Legacy),
        };
    }
    let mut state = decode_state(&blob, STATE_FORMAT)?;
    if let Some(e) = row_error {
        return Err(e);
    }
    rows.zones = Arc::new(Catalog::from_zones(zones));
    for user in rows.users.values() {
        // An erased user has no phone (issue 20: U): its number may belong to someone new.
        if user.erased_at.is_none() {
            rows.phones.insert((user.role, user.phone.clone()), user.id);
        }
    }
    state.put_rows(rows);
    Ok(Stored::State(lsn, Box::new(state)))
}

/// Decodes a state blob, which must be in `format`.
pub(crate) fn decode_state(bytes: &[u8], format: u8) -> Result<State> {
    match bytes.split_first() {
        Some((&f, body)) if f == format => postcard::from_bytes(body)
            .map_err(|e| Error::Storage(format!("the checkpoint does not decode ({e}); refusing to start"))),
        Some((f, _)) => Err(Error::Storage(format!(
            "the checkpoint has format {f}, this version reads {format}; refusing to start"
        ))),
        None => Err(Error::Storage("the checkpoint is empty; refusing to start".into())),
    }
}

fn store_error(context: &str, e: &store::StoreError) -> Error {
    Error::Storage(format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dispatch_domain::testkit::{CAIRO, World};

    use super::*;
    use crate::command::DispatchRules;
    use crate::geo::LatLng;
    use crate::history::{History, Leaving};
    use crate::state::AccountRows;

    /// A diff after a few writes to a large shared map names exactly those entries.
    #[test]
    fn a_diff_of_shared_maps_is_what_changed() {
        let old: imbl::OrdMap<u64, u64> = (0..100_000u64).map(|i| (i, i)).collect();
        let mut new = old.clone();
        new.insert(5, 50);
        new.remove(&70_000);
        new.insert(200_000, 1);
        let mut changes = RowChanges::default();
        diff(USERS, &old, &new, &mut changes).unwrap();
        let puts: Vec<(u64, u64)> = changes
            .puts
            .iter()
            .map(|(_, k, v)| (postcard::from_bytes(k).unwrap(), postcard::from_bytes(v).unwrap()))
            .collect();
        assert_eq!(puts, vec![(5, 50), (200_000, 1)]);
        let deletes: Vec<u64> = changes.deletes.iter().map(|(_, k)| postcard::from_bytes(k).unwrap()).collect();
        assert_eq!(deletes, vec![70_000]);
        let mut none = RowChanges::default();
        diff(USERS, &new, &new.clone(), &mut none).unwrap();
        assert!(none.puts.is_empty() && none.deletes.is_empty());
    }

    /// A checkpoint of another version is refused by its format, by name, even when its
    /// rows (read before the blob's format byte) no longer decode either.
    #[test]
    fn a_checkpoint_of_another_version_is_refused_by_name_before_its_rows() {
        let mut w = World::new(DispatchRules::default());
        w.rider();
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let (mut prepared, _) = prepare(10, w.state.copy_for_checkpoint(), &AccountRows::default()).unwrap();
        prepared.blob[0] = STATE_FORMAT - 1;
        for (table, _, v) in &mut prepared.changes.puts {
            if *table == USERS {
                v.truncate(3);
            }
        }
        history.write(prepared, &Leaving::default(), w.now).unwrap();
        let Err(e) = load(history.store()) else { panic!("an old checkpoint was read") };
        let said = e.to_string();
        assert!(said.contains(&format!("format {}", STATE_FORMAT - 1)), "{said}");
        assert!(said.contains(&format!("reads {STATE_FORMAT}")), "{said}");
        w.finish();
    }

    /// A checkpoint keeps accounts and zones as rows: the first writes them all, the next
    /// only what changed since (here: one new rider, one row); read back from the store,
    /// blob and rows are the state, its index rebuilt.
    #[test]
    fn a_checkpoint_writes_only_the_changed_account_rows_and_reads_back_the_state() {
        let mut w = World::new(DispatchRules::default());
        for _ in 0..200 {
            w.rider();
        }
        let driver = w.driver(1.0);
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let tables = |c: &RowChanges| -> BTreeMap<&'static str, usize> {
            let mut n = BTreeMap::new();
            for (t, _, _) in &c.puts {
                *n.entry(t.as_str()).or_default() += 1;
            }
            n
        };

        let (prepared, stored) = prepare(10, w.state.copy_for_checkpoint(), &AccountRows::default()).unwrap();
        let first = tables(&prepared.changes);
        assert_eq!(first.get("users"), Some(&201), "{first:?}");
        assert_eq!(first.get("zones"), Some(&1), "{first:?}");
        assert!(prepared.changes.deletes.is_empty());
        history.write(prepared, &Leaving::default(), w.now).unwrap();
        let Stored::State(10, back) = load(history.store()).unwrap() else { panic!("no checkpoint") };
        assert_eq!(*back, w.state);
        let here = LatLng::new(CAIRO.0, CAIRO.1).unwrap();
        assert_eq!(back.drivers_near(here, 5_000.0, 1).unwrap()[0].0.id, driver, "the index is rebuilt");

        let newcomer = w.rider();
        let (prepared, _) = prepare(11, w.state.copy_for_checkpoint(), &stored).unwrap();
        assert_eq!(tables(&prepared.changes), BTreeMap::from([("users", 1)]));
        assert!(prepared.changes.deletes.is_empty());
        history.write(prepared, &Leaving::default(), w.now).unwrap();
        let Stored::State(11, back) = load(history.store()).unwrap() else { panic!("no checkpoint") };
        assert!(back.user(newcomer).is_some());
        assert_eq!(*back, w.state);
        w.finish();
    }

    /// A checkpoint that fails to commit leaves the thread's copy of the stored rows where
    /// it was: the next one, diffed against that copy, writes what both intervals changed.
    #[test]
    fn after_a_failed_checkpoint_the_next_writes_both_intervals_changes() {
        let mut w = World::new(DispatchRules::default());
        w.rider();
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let (prepared, stored) = prepare(5, w.state.copy_for_checkpoint(), &AccountRows::default()).unwrap();
        history.write(prepared, &Leaving::default(), w.now).unwrap();
        let lost = w.rider();
        // At an LSN the store already holds: refused, and nothing of it is written.
        let (refused, _) = prepare(5, w.state.copy_for_checkpoint(), &stored).unwrap();
        assert!(history.write(refused, &Leaving::default(), w.now).is_err());
        let Stored::State(5, back) = load(history.store()).unwrap() else { panic!("no checkpoint") };
        assert!(back.user(lost).is_none());
        let later = w.rider();
        let (prepared, _) = prepare(9, w.state.copy_for_checkpoint(), &stored).unwrap();
        assert_eq!(prepared.changes.puts.len(), 2, "two users");
        history.write(prepared, &Leaving::default(), w.now).unwrap();
        let Stored::State(9, back) = load(history.store()).unwrap() else { panic!("no checkpoint") };
        assert!(back.user(lost).is_some() && back.user(later).is_some());
        assert_eq!(*back, w.state);
        back.check_invariants().unwrap();
        w.finish();
    }
}
