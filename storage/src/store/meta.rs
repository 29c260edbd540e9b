//! The store's own table: what makes a redb file a dispatch store, and the checkpoint.
//!
//! Owns the `meta` table and its records:
//! - `magic` → [`MAGIC`]: tells a dispatch store from another program's redb file;
//! - `format` → [`FORMAT`] as `u32` big-endian: the layout of this table and of the
//!   checkpoint; a file with another one is refused, never converted in place;
//! - `checkpoint` → `lsn u64 ‖ state length u64` (big-endian) and `state` → the
//!   engine's state: absent together before the first checkpoint, written together
//!   by every one after.
//!
//! Guarantees: every record read from disk is checked (presence, length, value)
//! before use, and a bad one is an error naming the file, never a panic; the small
//! `checkpoint` record lets the open check the checkpoint without loading a state
//! that may be a GiB.

use std::path::Path;

use redb::{ReadTransaction, ReadableTable};

use super::StoreError;
use super::table::{self, Bytes, WriteRows};

/// The `meta` table.
pub(crate) const TABLE: Bytes<'static> = table::definition(table::META);

/// Identifies a dispatch store.
pub(crate) const MAGIC: &[u8] = b"dispatch-store";
/// The format this build reads and writes.
pub(crate) const FORMAT: u32 = 1;

pub(crate) const KEY_MAGIC: &[u8] = b"magic";
pub(crate) const KEY_FORMAT: &[u8] = b"format";
pub(crate) const KEY_CHECKPOINT: &[u8] = b"checkpoint";
pub(crate) const KEY_STATE: &[u8] = b"state";

/// The checkpoint record: where the state is and how long it must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) lsn: u64,
    pub(crate) state_bytes: u64,
}

/// Writes the magic and the format into a new store's `meta` table.
pub(crate) fn init(meta: &mut WriteRows<'_>, path: &Path) -> Result<(), StoreError> {
    meta.insert(KEY_MAGIC, MAGIC).map_err(|error| StoreError::redb("write meta", path, error))?;
    meta.insert(KEY_FORMAT, FORMAT.to_be_bytes().as_slice())
        .map_err(|error| StoreError::redb("write meta", path, error))?;
    Ok(())
}

/// Checks that the file behind `txn` is a dispatch store of our format with a
/// well-formed checkpoint record; returns that record.
pub(crate) fn check(txn: &ReadTransaction, path: &Path) -> Result<Option<Record>, StoreError> {
    let meta = match txn.open_table(TABLE) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Err(StoreError::not_a_store(path, "a redb file without dispatch's `meta` table"));
        }
        Err(error) => return Err(StoreError::redb("open meta", path, error)),
    };
    match read(&meta, KEY_MAGIC, path)? {
        Some(magic) if magic == MAGIC => {}
        Some(magic) => {
            let shown = String::from_utf8_lossy(&magic[..magic.len().min(64)]).into_owned();
            return Err(StoreError::not_a_store(path, format!("its magic is {shown:?}, not {:?}", "dispatch-store")));
        }
        None => return Err(StoreError::not_a_store(path, "its `meta` table has no magic")),
    }
    let format =
        read(&meta, KEY_FORMAT, path)?.ok_or_else(|| StoreError::corrupt(path, "the format record is missing"))?;
    let format: [u8; 4] = format
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::corrupt(path, format!("the format record is {} bytes, not 4", format.len())))?;
    let format = u32::from_be_bytes(format);
    if format != FORMAT {
        return Err(StoreError::UnsupportedFormat { path: path.to_owned(), found: format, supported: FORMAT });
    }
    record(&meta, path)
}

/// The checkpoint record, checked.
pub(crate) fn record(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    path: &Path,
) -> Result<Option<Record>, StoreError> {
    let Some(bytes) = read(meta, KEY_CHECKPOINT, path)? else {
        return match meta.get(KEY_STATE).map_err(|error| StoreError::redb("read meta", path, error))? {
            Some(_) => Err(StoreError::corrupt(path, "a checkpoint state without its record")),
            None => Ok(None),
        };
    };
    let Some((lsn, rest)) = super::key::take_u64_be(&bytes) else {
        return Err(StoreError::corrupt(path, format!("the checkpoint record is {} bytes, not 16", bytes.len())));
    };
    match super::key::take_u64_be(rest) {
        Some((state_bytes, [])) => Ok(Some(Record { lsn, state_bytes })),
        _ => Err(StoreError::corrupt(path, format!("the checkpoint record is {} bytes, not 16", bytes.len()))),
    }
}

/// The LSN of the stored checkpoint, read inside a write transaction.
pub(crate) fn checkpoint_lsn(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    path: &Path,
) -> Result<Option<u64>, StoreError> {
    Ok(record(meta, path)?.map(|record| record.lsn))
}

/// Writes the checkpoint record and state.
pub(crate) fn set_checkpoint(meta: &mut WriteRows<'_>, lsn: u64, state: &[u8], path: &Path) -> Result<(), StoreError> {
    let mut record = [0u8; 16];
    record[..8].copy_from_slice(&lsn.to_be_bytes());
    record[8..].copy_from_slice(&(state.len() as u64).to_be_bytes());
    meta.insert(KEY_CHECKPOINT, record.as_slice())
        .map_err(|error| StoreError::redb("write checkpoint", path, error))?;
    meta.insert(KEY_STATE, state).map_err(|error| StoreError::redb("write checkpoint", path, error))?;
    Ok(())
}

/// The state of `record`, checked against the length the record gives.
pub(crate) fn state(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    record: Record,
    path: &Path,
) -> Result<Vec<u8>, StoreError> {
    let state = read(meta, KEY_STATE, path)?
        .ok_or_else(|| StoreError::corrupt(path, format!("the checkpoint at lsn {} has no state", record.lsn)))?;
    if state.len() as u64 != record.state_bytes {
        return Err(StoreError::corrupt(
            path,
            format!("the checkpoint state is {} bytes, its record says {}", state.len(), record.state_bytes),
        ));
    }
    Ok(state)
}

fn read(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    path: &Path,
) -> Result<Option<Vec<u8>>, StoreError> {
    let value = meta.get(key).map_err(|error| StoreError::redb("read meta", path, error))?;
    Ok(value.map(|value| value.value().to_vec()))
}
