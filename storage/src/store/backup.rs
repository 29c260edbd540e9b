//! Online backups and read-only checks of store files.
//!
//! Owns the copy of a store into a new file and the walk that checks one. Guarantees:
//! - a backup is the store as of exactly one commit — every table is copied inside the
//!   one read transaction the caller opened — so its checkpoint LSN and its rows agree
//!   while the writer goes on committing;
//! - a backup never overwrites anything and never appears half-written under its
//!   name: it is written as `<dest>.partial`, fsynced, linked to `dest` (which fails
//!   if `dest` appeared meanwhile), and the directory fsynced; on failure the partial
//!   file is removed;
//! - a backup is reported only after it has been re-read from disk and found to hold
//!   what was copied ([`StoreReport`] equality: tables, row counts, bytes, checkpoint);
//! - [`verify`] reads every row of every table without writing, and refuses a file
//!   whose meta, table names or row sizes dispatch-storage could not have written.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use redb::{Database, Durability, ReadTransaction, ReadableTable};

use super::table::{self, META};
use super::{KEY_BYTES_MAX, Store, StoreError, VALUE_BYTES_MAX, meta, parent, publish, sibling};

/// Bytes copied per write transaction of the copy: bounds the copy's memory whatever
/// the size of a table.
const COPY_CHUNK_BYTES: usize = 64 * 1024 * 1024;

/// What a store file holds, as found by [`Store::verify`] or a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreReport {
    /// The LSN of its checkpoint, `None` before the first one.
    pub checkpoint_lsn: Option<u64>,
    /// The size of the checkpoint's state.
    pub state_bytes: u64,
    /// The caller's tables, by name.
    pub tables: Vec<TableReport>,
}

/// One table of a [`StoreReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Its name.
    pub name: String,
    /// How many rows it holds.
    pub rows: u64,
    /// Key and value bytes of those rows.
    pub bytes: u64,
}

/// Copies the store read by `txn` (living at `source`) into a new store at `dest`.
pub(crate) fn backup(txn: &ReadTransaction, source: &Path, dest: &Path) -> Result<StoreReport, StoreError> {
    let record = meta::check(txn, source)?;
    match fs::symlink_metadata(dest) {
        Ok(_) => {
            let exists = io::Error::new(io::ErrorKind::AlreadyExists, "a backup never replaces a file");
            return Err(StoreError::io("back up to", dest, exists));
        }
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(StoreError::io("stat", dest, error)),
        Err(_) => {}
    }
    let dir = parent(dest);
    fs::create_dir_all(dir).map_err(|error| StoreError::io("create directory", dir, error))?;
    let tmp = sibling(dest, ".partial")?;
    File::create_new(&tmp)
        .map_err(|error| StoreError::io("create (a leftover of an interrupted backup must be removed)", &tmp, error))?;
    let copied = copy(txn, record, source, &tmp).and_then(|copied| publish(&tmp, dest).map(|()| copied));
    let copied = match copied {
        Ok(copied) => copied,
        Err(error) => {
            // The copy failed; the error that says why matters more than a failed cleanup.
            let _ = fs::remove_file(&tmp);
            return Err(error);
        }
    };
    let found = Store::verify(dest)?;
    if found != copied {
        return Err(StoreError::corrupt(
            dest,
            format!("the backup reads back as {found:?}, but {copied:?} was copied"),
        ));
    }
    Ok(found)
}

fn copy(
    txn: &ReadTransaction,
    record: Option<meta::Record>,
    source: &Path,
    tmp: &Path,
) -> Result<StoreReport, StoreError> {
    // The copy is private until it is linked into place: redb's default, exclusive mode.
    let out = Database::create(tmp).map_err(|error| StoreError::redb("create", tmp, error))?;
    let mut report = StoreReport::default();
    for handle in txn.list_tables().map_err(|error| StoreError::redb("list tables", source, error))? {
        let name = redb::TableHandle::name(&handle).to_owned();
        table::check_stored(&name).map_err(|error| StoreError::not_a_store(source, error.to_string()))?;
        let copied = copy_table(txn, &out, &name, source, tmp)?;
        if name != META {
            report.tables.push(copied);
        }
    }
    report.tables.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(record) = record {
        report.checkpoint_lsn = Some(record.lsn);
        report.state_bytes = record.state_bytes;
    }
    // One durable commit makes the non-durable chunks before it durable too.
    let last = out.begin_write().map_err(|error| StoreError::redb("begin write", tmp, error))?;
    last.commit().map_err(|error| StoreError::redb("commit", tmp, error))?;
    out.close().map_err(|error| StoreError::redb("close", tmp, error))?;
    Ok(report)
}

fn copy_table(
    txn: &ReadTransaction,
    out: &Database,
    name: &str,
    source: &Path,
    tmp: &Path,
) -> Result<TableReport, StoreError> {
    let from =
        txn.open_table(table::definition(name)).map_err(|error| StoreError::redb("open table", source, error))?;
    let mut rows = from.iter().map_err(|error| StoreError::redb("read table", source, error))?;
    let mut report = TableReport { name: name.to_owned(), rows: 0, bytes: 0 };
    loop {
        let mut write = out.begin_write().map_err(|error| StoreError::redb("begin write", tmp, error))?;
        write.set_durability(Durability::None).map_err(|error| StoreError::redb("set durability", tmp, error))?;
        let mut chunk_bytes = 0usize;
        let mut done = false;
        {
            let mut to = write
                .open_table(table::definition(name))
                .map_err(|error| StoreError::redb("open table", tmp, error))?;
            while chunk_bytes < COPY_CHUNK_BYTES {
                let Some(row) = rows.next() else {
                    done = true;
                    break;
                };
                let (key, value) = row.map_err(|error| StoreError::redb("read table", source, error))?;
                let (key, value) = (key.value(), value.value());
                to.insert(key, value).map_err(|error| StoreError::redb("write table", tmp, error))?;
                report.rows += 1;
                report.bytes += (key.len() + value.len()) as u64;
                chunk_bytes += key.len() + value.len();
            }
        }
        write.commit().map_err(|error| StoreError::redb("commit", tmp, error))?;
        if done {
            return Ok(report);
        }
    }
}

/// Checks everything a read can check in the store read by `txn`.
pub(crate) fn verify(txn: &ReadTransaction, path: &Path) -> Result<StoreReport, StoreError> {
    let record = meta::check(txn, path)?;
    let mut report = StoreReport::default();
    let meta_table = txn.open_table(meta::TABLE).map_err(|error| StoreError::redb("open meta", path, error))?;
    if let Some(record) = record {
        meta::state(&meta_table, record, path)?;
        report.checkpoint_lsn = Some(record.lsn);
        report.state_bytes = record.state_bytes;
    }
    for row in meta_table.iter().map_err(|error| StoreError::redb("read meta", path, error))? {
        let (key, _) = row.map_err(|error| StoreError::redb("read meta", path, error))?;
        let key = key.value();
        if ![meta::KEY_MAGIC, meta::KEY_FORMAT, meta::KEY_CHECKPOINT, meta::KEY_STATE].contains(&key) {
            let shown = String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned();
            return Err(StoreError::corrupt(path, format!("unknown meta record {shown:?}")));
        }
    }
    if txn.list_multimap_tables().map_err(|error| StoreError::redb("list tables", path, error))?.next().is_some() {
        return Err(StoreError::not_a_store(path, "it holds a multimap table, which dispatch never writes"));
    }
    for handle in txn.list_tables().map_err(|error| StoreError::redb("list tables", path, error))? {
        let name = redb::TableHandle::name(&handle).to_owned();
        if name == META {
            continue;
        }
        table::check_stored(&name).map_err(|error| StoreError::not_a_store(path, error.to_string()))?;
        report.tables.push(walk(txn, path, name)?);
    }
    report.tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

fn walk(txn: &ReadTransaction, path: &Path, name: String) -> Result<TableReport, StoreError> {
    let table =
        txn.open_table(table::definition(&name)).map_err(|error| StoreError::redb("open table", path, error))?;
    let mut report = TableReport { name, rows: 0, bytes: 0 };
    for row in table.iter().map_err(|error| StoreError::redb("read table", path, error))? {
        let (key, value) = row.map_err(|error| StoreError::redb("read table", path, error))?;
        let (key, value) = (key.value(), value.value());
        if key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX {
            return Err(StoreError::corrupt(
                path,
                format!("table {} holds a row of {} + {} bytes, above the bounds", report.name, key.len(), value.len()),
            ));
        }
        report.rows += 1;
        report.bytes += (key.len() + value.len()) as u64;
    }
    Ok(report)
}
