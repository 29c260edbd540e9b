//! The reads both handles share, each inside one redb read transaction.
//!
//! Owns the mapping from the row API to redb tables. Guarantees: a table that was
//! never written reads as empty (reads never create tables); a read transaction is a
//! snapshot of one commit and never blocks or waits for the writer; what comes back
//! from disk is checked before use (see `meta.rs` for the checkpoint).

use std::path::Path;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableError};

use super::scan::{self, Order, Page, Scan};
use super::table::ReadRows;
use super::{KEY_BYTES_MAX, StoreError, TableName, check_len, meta};

/// Starts a read transaction on `db`.
pub(crate) fn begin(db: &impl ReadableDatabase, path: &Path) -> Result<ReadTransaction, StoreError> {
    db.begin_read().map_err(|error| StoreError::redb("begin read", path, error))
}

/// The table `name`, or `None` if it was never created.
fn open(txn: &ReadTransaction, path: &Path, name: TableName) -> Result<Option<ReadRows>, StoreError> {
    match txn.open_table(name.definition()) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(StoreError::redb("open table", path, error)),
    }
}

pub(crate) fn table_exists(txn: &ReadTransaction, path: &Path, name: TableName) -> Result<bool, StoreError> {
    open(txn, path, name).map(|table| table.is_some())
}

pub(crate) fn get(
    txn: &ReadTransaction,
    path: &Path,
    name: TableName,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    check_len("key", key.len(), KEY_BYTES_MAX)?;
    let Some(table) = open(txn, path, name)? else {
        return Ok(None);
    };
    let value = table.get(key).map_err(|error| StoreError::redb("get", path, error))?;
    Ok(value.map(|value| value.value().to_vec()))
}

pub(crate) fn len(txn: &ReadTransaction, path: &Path, name: TableName) -> Result<u64, StoreError> {
    match open(txn, path, name)? {
        Some(table) => table.len().map_err(|error| StoreError::redb("count", path, error)),
        None => Ok(0),
    }
}

pub(crate) fn scan(txn: &ReadTransaction, path: &Path, name: TableName, scan: &Scan) -> Result<Page, StoreError> {
    let Some((start, end)) = scan.range()? else {
        return Ok(Page::default());
    };
    let Some(table) = open(txn, path, name)? else {
        return Ok(Page::default());
    };
    let end = end.as_ref().map(Vec::as_slice);
    let range = table.range::<&[u8]>((start, end)).map_err(|error| StoreError::redb("scan", path, error))?;
    let fail = |error| StoreError::redb("scan", path, error);
    match scan.order {
        Order::Ascending => scan::collect(scan, range.map(|row| row.map(owned).map_err(fail))),
        Order::Descending => scan::collect(scan, range.rev().map(|row| row.map(owned).map_err(fail))),
    }
}

/// Calls `row` with every row of `table` (none for a table never written), in key
/// order; stops at the first error `row` returns.
pub(crate) fn for_each<E>(
    txn: &ReadTransaction,
    path: &Path,
    name: TableName,
    row: &mut impl FnMut(TableName, &[u8], &[u8]) -> Result<(), E>,
) -> Result<Result<(), E>, StoreError> {
    let Some(table) = open(txn, path, name)? else {
        return Ok(Ok(()));
    };
    let rows = table.iter().map_err(|error| StoreError::redb("scan", path, error))?;
    for item in rows {
        let (key, value) = item.map_err(|error| StoreError::redb("scan", path, error))?;
        if let Err(e) = row(name, key.value(), value.value()) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

fn owned(
    (key, value): (redb::AccessGuard<'_, &'static [u8]>, redb::AccessGuard<'_, &'static [u8]>),
) -> (Vec<u8>, Vec<u8>) {
    (key.value().to_vec(), value.value().to_vec())
}

pub(crate) fn checkpoint_lsn(txn: &ReadTransaction, path: &Path) -> Result<Option<u64>, StoreError> {
    let meta = txn.open_table(meta::TABLE).map_err(|error| StoreError::redb("open meta", path, error))?;
    meta::checkpoint_lsn(&meta, path)
}

pub(crate) fn checkpoint(txn: &ReadTransaction, path: &Path) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let meta = txn.open_table(meta::TABLE).map_err(|error| StoreError::redb("open meta", path, error))?;
    let Some(record) = meta::record(&meta, path)? else {
        return Ok(None);
    };
    Ok(Some((record.lsn, meta::state(&meta, record, path)?)))
}
