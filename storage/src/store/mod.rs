//! The checkpoint and the history, in one redb file.
//!
//! Owns the store file: a [`Store`] (the engine's, the only writer) or a
//! [`ReadOnlyStore`] (a backup, a check, an admin query, in this or another process).
//! The file holds the store's own `meta` table (magic, format version, the checkpoint)
//! and the caller's tables, each a map from byte-string keys to byte-string values.
//! It knows nothing of trips: the engine names the tables ([`TableName`]), builds the
//! keys ([`key`]) and encodes the values.
//!
//! - **Checkpoint**: [`Store::commit`] writes, in one redb write transaction, a
//!   snapshot of the engine's live state with the LSN it reflects and the row changes
//!   that go with it. Recovery loads [`Store::checkpoint`] and replays only the log
//!   above its LSN.
//! - **History**: rows the engine writes when they leave its hot state (finished trips,
//!   ledger entries, idempotency keys, webhook event ids), read by [`Store::get`] and
//!   by prefix [`Store::scan`]s with cursor paging, counted by [`Store::len`], trimmed
//!   by [`Store::purge_range`] or by the deletes of a checkpoint.
//!
//! # Guarantees
//! - A commit is atomic and durable when it returns (redb `Durability::Immediate`,
//!   two-phase commit): after a crash the file holds the rows and the state of one
//!   commit — at least the newest that returned — never a mix of two. Rows are checked
//!   as they are applied; one that breaks a bound aborts the whole transaction, so a
//!   failed commit writes nothing.
//! - Checkpoint LSNs strictly increase: an older or equal one is a caller bug and is
//!   refused ([`StoreError::StaleLsn`]).
//! - Reads each run in their own redb read transaction: a consistent snapshot that
//!   never waits for, and never blocks, the writer.
//! - A file that is not ours is refused, never "repaired": random bytes, another
//!   program's redb file (no `meta`, another magic), or a newer format
//!   ([`StoreError::NotAStore`], [`StoreError::UnsupportedFormat`]). The magic is
//!   checked through a read-only open *before* the writable one whenever the file was
//!   closed cleanly, so a foreign file is not even touched; a foreign redb file left
//!   unclean by a crash is repaired by redb's open before its meta can be read (it is
//!   still refused after).
//! - A corrupt file is refused ([`StoreError::Corrupt`]): by default the open verifies
//!   the checksum of every page (redb's `check_integrity` on open, [`StoreOptions`]),
//!   because redb trusts a cleanly closed file and does not check checksums on reads:
//!   with the check off, a byte flipped inside a stored value was served as it was
//!   (tried); with it on, the open fails. The check costs about one read of the file
//!   (1.0 s for a 639 MiB store with a warm page cache, `cargo bench --bench store`).
//!   The engine refuses to start rather than serve wrong data.
//! - Every size has a bound ([`KEY_BYTES_MAX`], [`VALUE_BYTES_MAX`],
//!   [`STATE_BYTES_MAX`], [`CHANGES_MAX`], [`SCAN_LIMIT_MAX`], [`SCAN_BYTES_MAX`]),
//!   checked before anything is committed.
//!
//! # redb: what was checked (redb 4.6.0)
//! - **Another process reading a live file.** In redb's default concurrency mode
//!   (`ExclusiveWriter`) the writer locks the whole file: a second process gets
//!   `DatabaseAlreadyOpen`, even read-only (tried: an `ExclusiveWriter` writer and a
//!   `ReadOnlyDatabase` in another process). redb 4.5 added
//!   `ConcurrencyMode::SingleWriter`: one process writes and any number of other
//!   processes open the file read-only *and follow its commits* (tried the same way:
//!   the reader saw the row count grow). The store uses `SingleWriter`, so
//!   [`Store::verify`] and [`Store::open_read_only`] (then
//!   [`ReadOnlyStore::backup_to`]) work from `dispatchd backup` while the server runs.
//!   The cost: commits always take redb's two-phase path (two fsyncs), negligible for
//!   checkpoints, which are large and rare; non-durable commits are unavailable (not
//!   used). It needs byte-range file locks (Linux, macOS, Windows). A second writer
//!   (another `Store::open`, in any process) is refused with [`StoreError::Locked`].
//! - **Backups.** [`Store::backup_to`] copies every table inside one read
//!   transaction, so the copy is exactly the store as of one commit (its checkpoint
//!   and its rows agree) while commits continue. The read transaction pins the pages
//!   of that commit until the copy ends, so the live file may grow during a long
//!   backup. The copy is written under a temporary name, fsynced, linked into place
//!   (never over an existing file), the directory fsynced, then re-read and compared.
//! - **Compaction** ([`Store::compact`]) needs no transaction in progress, hence
//!   `&mut self`; redb refuses it while a read-only handle in another process has a
//!   read open.
//! - **Version.** 4.6 (workspace `rust-version` raised to 1.90 for it) rather than
//!   4.1, the newest release for Rust 1.89: 4.2–4.6 fix corrupt files being opened as
//!   an empty database or panicking instead of reporting `Corrupted`, and 4.5 brings
//!   `SingleWriter`. redb documents that an open may still panic on a file damaged
//!   outside redb (debug builds assert); opens here turn such a panic into
//!   [`StoreError::Corrupt`].
//!
//! # Layout
//! - this file: [`Store`], [`ReadOnlyStore`], [`Checkpoint`], [`StoreOptions`], the bounds;
//! - [`key`]: composite key encodings (newest-first times);
//! - [`TableName`] (`table.rs`), [`Scan`]/[`Page`] (`scan.rs`), [`StoreError`] (`error.rs`);
//! - `meta.rs`: the magic, the format and the checkpoint record;
//! - `read.rs`: the reads shared by both handles; `backup.rs`: backup and verify;
//! - `paced.rs`: the redb file backend that syncs a commit in small steps.

mod backup;
mod error;
pub mod key;
mod meta;
mod paced;
mod read;
mod scan;
mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::{self, File};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, WriteTransaction};

use table::WriteRows;

pub use backup::{StoreReport, TableReport};
pub use error::StoreError;
pub use paced::SYNC_STEP_BYTES;
pub use scan::{Order, Page, SCAN_BYTES_MAX, SCAN_LIMIT_MAX, Scan};
pub use table::{TABLE_NAME_BYTES_MAX, TableName};

/// Longest key: composite keys are a few 8-byte ids and times; 1 KiB leaves room for
/// string ids and bounds what a cursor coming from outside can make the store compare.
pub const KEY_BYTES_MAX: usize = 1024;

/// Largest row value: a finished trip with its route is a few KiB; 16 MiB catches a
/// runaway encoder long before it hurts, and bounds a page of scan results.
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest state snapshot: a country's live state is a few hundred MiB; redb's own
/// limit for one value is 3 GiB.
pub const STATE_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// Most row changes (puts, deletes and range deletes) in one checkpoint: bounds the
/// size of one redb write transaction (about 1.2 GiB at 300-byte rows). Sized for the
/// engine's checkpoints, which must write every account row changed since the last one
/// (they cannot be split: the rows and the state go together) besides what leaves the
/// hot state.
pub const CHANGES_MAX: usize = 4_000_000;

const _: () = assert!(KEY_BYTES_MAX < VALUE_BYTES_MAX && VALUE_BYTES_MAX < STATE_BYTES_MAX);
const _: () = assert!(STATE_BYTES_MAX < 3 * 1024 * 1024 * 1024, "redb refuses values of 3 GiB and more");

/// How a [`Store`] is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Verify the checksum of every page when opening (redb's `check_integrity`):
    /// reads the whole file, so an open costs about one sequential read of it. Turn
    /// off only where a restart must not wait for that and the medium is trusted.
    pub verify_on_open: bool,
    /// redb's page cache. The hot state lives in the engine, so this serves history
    /// reads and the write path; redb's default (1 GiB) is more than that needs.
    pub cache_bytes: usize,
    /// Sync what a commit writes every this many bytes (`store/paced.rs`); `None`
    /// leaves the syncs to redb (one per commit phase). Default
    /// [`SYNC_STEP_BYTES`]: keeps a checkpoint from stalling the WAL on a shared disk.
    pub sync_step_bytes: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { verify_on_open: true, cache_bytes: 256 * 1024 * 1024, sync_step_bytes: Some(SYNC_STEP_BYTES) }
    }
}

/// One checkpoint: the engine's state at `lsn` and the row changes that go with it,
/// written atomically by [`Store::commit`].
///
/// Changes are applied in this order: `delete_ranges`, then `deletes`, then `puts`
/// (a later put of the same key wins) — so a put always survives a delete of the
/// same key in the same checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The LSN of the last log record the state reflects; above the stored one.
    pub lsn: u64,
    /// The engine's encoded state, at most [`STATE_BYTES_MAX`] bytes.
    pub state: Vec<u8>,
    /// `(table, key, value)` rows to insert or replace.
    pub puts: Vec<(TableName, Vec<u8>, Vec<u8>)>,
    /// `(table, key)` rows to remove (absent keys are ignored).
    pub deletes: Vec<(TableName, Vec<u8>)>,
    /// `(table, start, end)`: remove every key in `start..end` (end exclusive).
    pub delete_ranges: Vec<(TableName, Vec<u8>, Vec<u8>)>,
}

/// A stored checkpoint, as read back: its LSN and its state.
pub type StoredCheckpoint = (u64, Vec<u8>);

/// The engine's handle on its store file: the only writer (see the module docs).
pub struct Store {
    /// The open redb database, in `SingleWriter` mode so other processes can read.
    db: Database,
    /// Where it lives, for error messages and backups.
    path: PathBuf,
}

/// A read-only handle on a store file, which may be open for writing in another
/// process at the same time; each read sees the newest commit.
pub struct ReadOnlyStore {
    /// The open redb database, read-only, in the writer's `SingleWriter` mode.
    db: ReadOnlyDatabase,
    /// Where it lives.
    path: PathBuf,
}

impl Store {
    /// Opens the store at `path` with the default [`StoreOptions`], creating it (and
    /// its directory) if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with(path, &StoreOptions::default())
    }

    /// Opens the store at `path`, creating it if it does not exist. Refuses a file
    /// that is not a dispatch store, is in another format, or is corrupt.
    pub fn open_with(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref().to_owned();
        match fs::metadata(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => create(&path, options)?,
            Err(error) => return Err(StoreError::io("stat", &path, error)),
            Ok(metadata) if !metadata.is_file() => return Err(StoreError::not_a_store(&path, "not a regular file")),
            Ok(metadata) if metadata.len() == 0 => {
                return Err(StoreError::not_a_store(
                    &path,
                    "an empty file (stores are created whole, under another name, so this is not one of them)",
                ));
            }
            Ok(_) => {}
        }
        // Read the magic without writing whenever redb allows it (see the module docs).
        // Every read of a file not yet known good runs guarded: redb may panic on a page
        // damaged outside it (seen here reading the meta table of a corrupted file).
        match guarded(&path, "reading it", || open_read_only_db(&path, options)) {
            Ok(db) => {
                guarded(&path, "reading its meta table", || meta::check(&read::begin(&db, &path)?, &path))?;
                drop(db);
            }
            Err(StoreError::NeedsRecovery { .. }) => {}
            Err(error) => return Err(error),
        }
        let db = guarded(&path, "opening it", || open_db(&path, options, false))?;
        guarded(&path, "reading its meta table", || meta::check(&read::begin(&db, &path)?, &path))?;
        Ok(Store { db, path })
    }

    /// Opens the store at `path` read-only, with the store's own checks of magic and
    /// format; works while a [`Store`] has it open, in this process or another.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<ReadOnlyStore, StoreError> {
        let path = path.as_ref().to_owned();
        let db = guarded(&path, "reading it", || open_read_only_db(&path, &StoreOptions::default()))?;
        guarded(&path, "reading its meta table", || meta::check(&read::begin(&db, &path)?, &path))?;
        Ok(ReadOnlyStore { db, path })
    }

    /// Checks the store at `path` without writing to it: magic, format, checkpoint
    /// record, table names, and every row read back within its bounds. Works while a
    /// [`Store`] has the file open (the report is then as of one recent commit).
    /// Page checksums are verified by [`Store::open`], which a restore goes through.
    pub fn verify(path: impl AsRef<Path>) -> Result<StoreReport, StoreError> {
        let path = path.as_ref();
        guarded(path, "verifying it", || {
            let db = open_read_only_db(path, &StoreOptions::default())?;
            backup::verify(&read::begin(&db, path)?, path)
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `checkpoint` in one transaction: its rows, its state and its LSN, all
    /// or nothing, durable when this returns. Refuses an LSN not above the stored one.
    pub fn commit(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let changes = checkpoint.puts.len() + checkpoint.deletes.len() + checkpoint.delete_ranges.len();
        if changes > CHANGES_MAX {
            return Err(StoreError::TooLarge { what: "changes in one checkpoint", size: changes, max: CHANGES_MAX });
        }
        check_len("state", checkpoint.state.len(), STATE_BYTES_MAX)?;
        let txn = self.db.begin_write().map_err(|error| self.fail("begin write", error))?;
        // On any error the transaction is dropped, which aborts it: nothing is written.
        self.apply(&txn, checkpoint)?;
        txn.commit().map_err(|error| self.fail("commit", error))
    }

    fn apply(&self, txn: &WriteTransaction, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut meta = txn.open_table(meta::TABLE).map_err(|error| self.fail("open meta", error))?;
        if let Some(current) = meta::checkpoint_lsn(&meta, &self.path)?
            && checkpoint.lsn <= current
        {
            return Err(StoreError::StaleLsn { lsn: checkpoint.lsn, current });
        }
        let mut tables = Tables::new(txn, &self.path);
        for (table, start, end) in &checkpoint.delete_ranges {
            check_range(*table, start, end)?;
            if start < end {
                tables
                    .get(*table)?
                    .retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| false)
                    .map_err(|error| self.fail("delete range", error))?;
            }
        }
        for (table, key) in &checkpoint.deletes {
            check_len("key", key.len(), KEY_BYTES_MAX)?;
            tables.get(*table)?.remove(key.as_slice()).map_err(|error| self.fail("delete", error))?;
        }
        for (table, key, value) in &checkpoint.puts {
            check_len("key", key.len(), KEY_BYTES_MAX)?;
            check_len("value", value.len(), VALUE_BYTES_MAX)?;
            tables.get(*table)?.insert(key.as_slice(), value.as_slice()).map_err(|error| self.fail("put", error))?;
        }
        meta::set_checkpoint(&mut meta, checkpoint.lsn, &checkpoint.state, &self.path)
    }

    /// Inserts or replaces `puts` in one durable transaction that leaves the checkpoint
    /// alone: for rows that do not come from the log (a driver's position history,
    /// best effort by design). All or nothing, checked against the same bounds.
    pub fn put_rows(&self, puts: &[(TableName, Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        self.write_rows(puts, &[])
    }

    /// Deletes `deletes`, then inserts or replaces `puts`, in one durable transaction that
    /// leaves the checkpoint alone: housekeeping of rows whose only writer is the caller's
    /// thread (retention rewriting archived rows). All or nothing, within the same bounds.
    pub fn write_rows(
        &self,
        puts: &[(TableName, Vec<u8>, Vec<u8>)],
        deletes: &[(TableName, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let changes = puts.len() + deletes.len();
        if changes > CHANGES_MAX {
            return Err(StoreError::TooLarge { what: "rows in one write", size: changes, max: CHANGES_MAX });
        }
        if changes == 0 {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|error| self.fail("begin write", error))?;
        {
            let mut tables = Tables::new(&txn, &self.path);
            for (table, key) in deletes {
                check_len("key", key.len(), KEY_BYTES_MAX)?;
                tables.get(*table)?.remove(key.as_slice()).map_err(|error| self.fail("delete", error))?;
            }
            for (table, key, value) in puts {
                check_len("key", key.len(), KEY_BYTES_MAX)?;
                check_len("value", value.len(), VALUE_BYTES_MAX)?;
                tables
                    .get(*table)?
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(|error| self.fail("put", error))?;
            }
        }
        txn.commit().map_err(|error| self.fail("commit", error))
    }

    /// The stored checkpoint: its LSN and state, or `None` before the first commit.
    pub fn checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        read::checkpoint(&read::begin(&self.db, &self.path)?, &self.path)
    }

    /// The stored checkpoint (its LSN and state, `None` before the first commit) and
    /// every row of `tables`, handed to `row`, all read in one read transaction: the rows
    /// are exactly those committed with that state, whatever commits meanwhile. The
    /// outer error is the store's, the inner one the first that `row` returned (the read
    /// stops there).
    pub fn load_checkpoint<E>(
        &self,
        tables: &[TableName],
        mut row: impl FnMut(TableName, &[u8], &[u8]) -> Result<(), E>,
    ) -> Result<Result<Option<StoredCheckpoint>, E>, StoreError> {
        let txn = read::begin(&self.db, &self.path)?;
        let Some(checkpoint) = read::checkpoint(&txn, &self.path)? else {
            return Ok(Ok(None));
        };
        for &table in tables {
            if let Err(e) = read::for_each(&txn, &self.path, table, &mut row)? {
                return Ok(Err(e));
            }
        }
        Ok(Ok(Some(checkpoint)))
    }

    /// The LSN of the stored checkpoint, without reading the state.
    pub fn checkpoint_lsn(&self) -> Result<Option<u64>, StoreError> {
        read::checkpoint_lsn(&read::begin(&self.db, &self.path)?, &self.path)
    }

    /// The value stored under `key` in `table`, if any.
    pub fn get(&self, table: TableName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        read::get(&read::begin(&self.db, &self.path)?, &self.path, table, key)
    }

    /// One page of the rows of `table` whose keys start with `scan.prefix`.
    pub fn scan(&self, table: TableName, scan: &Scan) -> Result<Page, StoreError> {
        read::scan(&read::begin(&self.db, &self.path)?, &self.path, table, scan)
    }

    /// How many rows `table` holds (0 for a table never written): redb keeps the count
    /// in the table's root, so this reads no rows.
    pub fn len(&self, table: TableName) -> Result<u64, StoreError> {
        read::len(&read::begin(&self.db, &self.path)?, &self.path, table)
    }

    /// Removes every row of `table` with a key in `start..end` (end exclusive), in its
    /// own transaction, durable when this returns; returns how many were removed.
    /// Housekeeping (expired idempotency keys by expiry): its cost is proportional to
    /// the rows removed, and nothing is committed when there are none.
    pub fn purge_range(&self, table: TableName, start: &[u8], end: &[u8]) -> Result<u64, StoreError> {
        check_range(table, start, end)?;
        self.purge(table, start, end, usize::MAX)
    }

    /// Removes the first `max` rows (at most) of `table` with a key in `start..end` (end
    /// exclusive), in key order, in its own transaction, durable when this returns;
    /// returns how many were removed. The transaction's size is bounded by `max` whatever
    /// the range holds (retention deletes old rows in batches, so no transaction holds
    /// the file's one writer for long); nothing is committed when there are none.
    pub fn purge_range_max(&self, table: TableName, start: &[u8], end: &[u8], max: usize) -> Result<u64, StoreError> {
        check_range(table, start, end)?;
        if max > CHANGES_MAX {
            return Err(StoreError::TooLarge { what: "rows in one purge", size: max, max: CHANGES_MAX });
        }
        self.purge(table, start, end, max)
    }

    /// The first `max` rows of `table` in `start..end` removed in one transaction (none
    /// committed when there are none): [`Store::purge_range`] and
    /// [`Store::purge_range_max`].
    fn purge(&self, table: TableName, start: &[u8], end: &[u8], max: usize) -> Result<u64, StoreError> {
        if max == 0 || start >= end || !read::table_exists(&read::begin(&self.db, &self.path)?, &self.path, table)? {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(|error| self.fail("begin write", error))?;
        let mut removed = 0u64;
        {
            let mut rows = txn.open_table(table.definition()).map_err(|error| self.fail("open table", error))?;
            // Only the rows read from the iterator are removed (redb's `ExtractIf`).
            let extracted = rows
                .extract_from_if::<&[u8], _>(start..end, |_, _| true)
                .map_err(|error| self.fail("purge range", error))?;
            for row in extracted.take(max) {
                row.map_err(|error| self.fail("purge range", error))?;
                removed += 1;
            }
        }
        if removed == 0 {
            txn.abort().map_err(|error| self.fail("abort", error))?;
        } else {
            txn.commit().map_err(|error| self.fail("commit", error))?;
        }
        Ok(removed)
    }

    /// Copies the store, as of one commit, into a new store file at `dest` while
    /// commits go on; see the module docs. Refuses to overwrite anything. Returns what
    /// the copy holds, read back from it.
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<StoreReport, StoreError> {
        backup::backup(&read::begin(&self.db, &self.path)?, &self.path, dest.as_ref())
    }

    /// Gives the space of deleted rows back to the file system. Returns whether
    /// anything moved. Refused while a read transaction is open (here or in a reader
    /// process).
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        let path = self.path.clone();
        self.db.compact().map_err(|error| StoreError::redb("compact", &path, error))
    }

    /// Closes the store, reporting what dropping it would ignore.
    pub fn close(self) -> Result<(), StoreError> {
        self.db.close().map_err(|error| StoreError::redb("close", &self.path, error))
    }

    fn fail(&self, op: &'static str, error: impl Into<redb::Error>) -> StoreError {
        StoreError::redb(op, &self.path, error)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ReadOnlyStore {
    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest checkpoint: its LSN and state, or `None` before the first commit.
    pub fn checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        read::checkpoint(&read::begin(&self.db, &self.path)?, &self.path)
    }

    /// The value stored under `key` in `table`, if any.
    pub fn get(&self, table: TableName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        read::get(&read::begin(&self.db, &self.path)?, &self.path, table, key)
    }

    /// One page of the rows of `table` whose keys start with `scan.prefix`.
    pub fn scan(&self, table: TableName, scan: &Scan) -> Result<Page, StoreError> {
        read::scan(&read::begin(&self.db, &self.path)?, &self.path, table, scan)
    }

    /// Copies the store, as of one commit, into a new store file at `dest`, as
    /// [`Store::backup_to`] does, while another process goes on committing.
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<StoreReport, StoreError> {
        backup::backup(&read::begin(&self.db, &self.path)?, &self.path, dest.as_ref())
    }
}

/// The caller's tables opened so far in one write transaction (redb refuses to open
/// the same table twice in one transaction, and reopening per row would be slow).
struct Tables<'txn> {
    txn: &'txn WriteTransaction,
    path: &'txn Path,
    open: BTreeMap<TableName, WriteRows<'txn>>,
}

impl<'txn> Tables<'txn> {
    fn new(txn: &'txn WriteTransaction, path: &'txn Path) -> Self {
        Tables { txn, path, open: BTreeMap::new() }
    }

    fn get(&mut self, name: TableName) -> Result<&mut WriteRows<'txn>, StoreError> {
        match self.open.entry(name) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let table = self
                    .txn
                    .open_table(name.definition())
                    .map_err(|error| StoreError::redb("open table", self.path, error))?;
                Ok(entry.insert(table))
            }
        }
    }
}

fn check_len(what: &'static str, size: usize, max: usize) -> Result<(), StoreError> {
    if size > max { Err(StoreError::TooLarge { what, size, max }) } else { Ok(()) }
}

fn check_range(table: TableName, start: &[u8], end: &[u8]) -> Result<(), StoreError> {
    check_len("range start", start.len(), KEY_BYTES_MAX)?;
    check_len("range end", end.len(), KEY_BYTES_MAX)?;
    if start > end { Err(StoreError::InvalidRange { table: table.as_str() }) } else { Ok(()) }
}

fn builder(options: &StoreOptions) -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .set_cache_size(options.cache_bytes)
        .set_check_integrity_on_open(options.verify_on_open);
    builder
}

/// Opens (`create`: creates if missing) the store file for writing, through a
/// [`PacedFile`](paced::PacedFile).
fn open_db(path: &Path, options: &StoreOptions, create: bool) -> Result<Database, StoreError> {
    let what = if create { "create" } else { "open" };
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|error| StoreError::io(what, path, error))?;
    let backend =
        paced::PacedFile::new(file, options.sync_step_bytes).map_err(|error| StoreError::redb(what, path, error))?;
    // redb initialises an empty file and opens a valid one; `open_with` refuses an
    // empty file before this, and `create` only passes the new temporary file.
    builder(options).create_with_backend(backend).map_err(|error| StoreError::redb(what, path, error))
}

fn open_read_only_db(path: &Path, options: &StoreOptions) -> Result<ReadOnlyDatabase, StoreError> {
    guarded(path, "opening it read-only", || {
        builder(options).open_read_only(path).map_err(|error| StoreError::redb("open read-only", path, error))
    })
}

/// Creates a new store at `path`: initialised under a temporary name, fsynced, then
/// linked into place (which fails rather than replace a file that appeared meanwhile),
/// so a crash never leaves a half-made store under the real name.
fn create(path: &Path, options: &StoreOptions) -> Result<(), StoreError> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(|error| StoreError::io("create directory", dir, error))?;
    let tmp = sibling(path, ".init")?;
    // A leftover of an interrupted creation: no other program uses this name.
    match fs::remove_file(&tmp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(StoreError::io("remove leftover", &tmp, error));
        }
        _ => {}
    }
    let db = open_db(&tmp, options, true)?;
    let txn = db.begin_write().map_err(|error| StoreError::redb("begin write", &tmp, error))?;
    {
        let mut table = txn.open_table(meta::TABLE).map_err(|error| StoreError::redb("create meta", &tmp, error))?;
        meta::init(&mut table, &tmp)?;
    }
    txn.commit().map_err(|error| StoreError::redb("commit", &tmp, error))?;
    db.close().map_err(|error| StoreError::redb("close", &tmp, error))?;
    publish(&tmp, path)
}

/// Makes the finished file `tmp` appear as `path`: fsync it, link it (never over an
/// existing file), drop the temporary name, fsync the directory.
fn publish(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    File::open(tmp).and_then(|file| file.sync_all()).map_err(|error| StoreError::io("fsync", tmp, error))?;
    fs::hard_link(tmp, path).map_err(|error| StoreError::io("link into place", path, error))?;
    fs::remove_file(tmp).map_err(|error| StoreError::io("remove temporary name", tmp, error))?;
    sync_dir(parent(path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(|error| StoreError::io("fsync directory", dir, error))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> Result<PathBuf, StoreError> {
    let Some(name) = path.file_name() else {
        return Err(StoreError::io("name", path, io::Error::new(io::ErrorKind::InvalidInput, "no file name")));
    };
    let mut name = name.to_owned();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

/// Runs `work` on a file of unknown provenance, turning a panic inside redb into
/// [`StoreError::Corrupt`]: redb documents that it may panic on a file damaged outside
/// it, and a damaged file must stop the start with a message, not a crash.
fn guarded<T>(path: &Path, doing: &str, work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(StoreError::corrupt(path, format!("redb panicked while {doing}: {message}")))
    })
}
