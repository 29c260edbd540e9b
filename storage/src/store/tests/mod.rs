//! Tests of the store through its public API: durability across reopen, the LSN
//! rule, atomicity, bounds, scans and cursors, foreign and corrupt files, backups
//! while committing, another process reading a live store, and a model test against
//! a `BTreeMap`. None of them depends on how fast the machine is.

mod backup;
mod basics;
mod files;
mod model;
mod scan;

use std::path::PathBuf;

use super::{Checkpoint, Store, TableName};

pub(super) const TRIPS: TableName = TableName::new("trips");
pub(super) const LEDGER: TableName = TableName::new("ledger");

/// A directory that is removed when the test ends, and a store path inside it.
pub(super) fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("history.redb");
    (dir, path)
}

/// A checkpoint at `lsn` whose state names the LSN.
pub(super) fn at(lsn: u64) -> Checkpoint {
    Checkpoint { lsn, state: format!("state at {lsn}").into_bytes(), ..Checkpoint::default() }
}

/// `checkpoint` with one more put.
pub(super) fn put(mut checkpoint: Checkpoint, table: TableName, key: &[u8], value: &[u8]) -> Checkpoint {
    checkpoint.puts.push((table, key.to_vec(), value.to_vec()));
    checkpoint
}

/// Every row of `table`, paging through it with the largest page.
pub(super) fn all_rows(store: &Store, table: TableName) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let scan = super::Scan::new(Vec::new(), super::SCAN_LIMIT_MAX).after(after);
        let page = store.scan(table, &scan).expect("scan");
        rows.extend(page.rows);
        match page.next {
            Some(next) => after = Some(next),
            None => return rows,
        }
    }
}
