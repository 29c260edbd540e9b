//! Files that are not ours, not ours any more, or damaged: refused with a clear
//! message and left as they were.

use std::fs;

use redb::{Database, ReadableTable, TableDefinition};

use super::super::meta::{FORMAT, KEY_CHECKPOINT, KEY_FORMAT, KEY_MAGIC, MAGIC, TABLE};
use super::super::{Store, StoreError, StoreOptions};
use super::{TRIPS, at, put, scratch};

const BYTES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

/// Opens `path`, expecting a refusal, and checks the file is byte for byte unchanged.
fn refused(path: &std::path::Path) -> StoreError {
    let before = fs::read(path).unwrap();
    let error = Store::open(path).expect_err("the open must be refused");
    assert_eq!(fs::read(path).unwrap(), before, "a refused file is left as it was");
    assert!(Store::open_read_only(path).is_err());
    assert!(Store::verify(path).is_err());
    error
}

/// A redb file whose `meta` table holds `records`.
fn redb_file(path: &std::path::Path, records: &[(&[u8], &[u8])]) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(BYTES).unwrap();
        for (k, v) in records {
            meta.insert(*k, *v).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn random_bytes_are_not_a_store() {
    let (_dir, path) = scratch();
    let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(&path, noise).unwrap();
    let error = refused(&path);
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error}");
    assert!(error.to_string().contains("is not a dispatch store"), "{error}");
}

#[test]
fn an_empty_file_and_a_directory_are_not_stores() {
    let (dir, path) = scratch();
    fs::write(&path, b"").unwrap();
    assert!(matches!(refused(&path), StoreError::NotAStore { .. }));
    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error}");
}

#[test]
fn another_programs_redb_file_is_refused() {
    let (dir, path) = scratch();
    // A redb file with no `meta` table at all.
    let db = Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(TableDefinition::<u64, u64>::new("accounts")).unwrap().insert(1, 2).unwrap();
    txn.commit().unwrap();
    drop(db);
    let error = refused(&path);
    assert!(matches!(error, StoreError::NotAStore { .. }) && error.to_string().contains("meta"), "{error}");

    // A `meta` table with another magic.
    let other = dir.path().join("other.redb");
    redb_file(&other, &[(KEY_MAGIC, b"someone-else"), (KEY_FORMAT, &FORMAT.to_be_bytes())]);
    let error = refused(&other);
    assert!(matches!(error, StoreError::NotAStore { .. }) && error.to_string().contains("someone-else"), "{error}");

    // A `meta` table of other types.
    let typed = dir.path().join("typed.redb");
    let db = Database::create(&typed).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(TableDefinition::<&str, u64>::new("meta")).unwrap().insert("magic", 1).unwrap();
    txn.commit().unwrap();
    drop(db);
    assert!(matches!(refused(&typed), StoreError::NotAStore { .. }));
}

#[test]
fn a_newer_format_is_refused_not_converted() {
    let (_dir, path) = scratch();
    redb_file(&path, &[(KEY_MAGIC, MAGIC), (KEY_FORMAT, &(FORMAT + 1).to_be_bytes())]);
    let error = refused(&path);
    assert!(
        matches!(error, StoreError::UnsupportedFormat { found, supported, .. } if found == FORMAT + 1 && supported == FORMAT)
    );
}

#[test]
fn a_malformed_meta_record_is_corruption() {
    let (dir, path) = scratch();
    redb_file(&path, &[(KEY_MAGIC, MAGIC), (KEY_FORMAT, b"\x00\x01")]);
    assert!(matches!(refused(&path), StoreError::Corrupt { .. }));
    let short = dir.path().join("short.redb");
    redb_file(&short, &[(KEY_MAGIC, MAGIC), (KEY_FORMAT, &FORMAT.to_be_bytes()), (KEY_CHECKPOINT, &[0; 9])]);
    let error = refused(&short);
    assert!(matches!(error, StoreError::Corrupt { .. }) && error.to_string().contains("not 16"), "{error}");
}

#[test]
fn a_state_of_the_wrong_length_is_corruption() {
    let (_dir, path) = scratch();
    Store::open(&path).unwrap().commit(&at(3)).unwrap();
    // Rewrite the record so that it promises one byte more than the state holds.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(TABLE).unwrap();
        let state_bytes = meta.get(b"state".as_slice()).unwrap().unwrap().value().len() as u64;
        let record = [3u64.to_be_bytes(), (state_bytes + 1).to_be_bytes()].concat();
        meta.insert(KEY_CHECKPOINT, record.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let store = Store::open(&path).unwrap();
    assert!(matches!(store.checkpoint(), Err(StoreError::Corrupt { .. })));
    drop(store);
    assert!(matches!(Store::verify(&path), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_damaged_page_stops_the_open() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let marker = b"the value to damage ".repeat(200);
    store.commit(&put(at(1), TRIPS, b"victim", &marker)).unwrap();
    store.close().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let mut flipped = 0;
    let mut at_byte = 0;
    while let Some(found) = bytes[at_byte..].windows(marker.len()).position(|w| w == marker.as_slice()) {
        bytes[at_byte + found + 100] ^= 0x20;
        flipped += 1;
        at_byte += found + marker.len();
    }
    assert!(flipped > 0, "the value is stored in the clear");
    fs::write(&path, &bytes).unwrap();
    let error = Store::open(&path).expect_err("a damaged store must not open");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.is_bad_file());
}

#[test]
fn a_leftover_of_an_interrupted_creation_is_replaced_and_directories_are_made() {
    let (dir, _) = scratch();
    let path = dir.path().join("nested").join("history.redb");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(dir.path().join("nested").join("history.redb.init"), b"half-made").unwrap();
    let store = Store::open_with(&path, &StoreOptions { verify_on_open: false, ..StoreOptions::default() }).unwrap();
    store.commit(&at(1)).unwrap();
    assert!(!dir.path().join("nested").join("history.redb.init").exists());
    let deeper = dir.path().join("a").join("b").join("history.redb");
    Store::open(&deeper).unwrap();
    assert!(deeper.exists());
}

/// A store written in sync steps far smaller than its commits (4 KiB: every page a step)
/// reads back the same after a reopen that verifies every page, and its state with it.
#[test]
fn a_store_written_in_small_sync_steps_reads_back_whole() {
    let (_dir, path) = scratch();
    let options = StoreOptions { sync_step_bytes: Some(4096), ..StoreOptions::default() };
    let mut checkpoint = at(7);
    checkpoint.state = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    for i in 0..500u32 {
        checkpoint = put(checkpoint, TRIPS, &i.to_be_bytes(), &[(i % 256) as u8; 1024]);
    }
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        (0..500u32).map(|i| (i.to_be_bytes().to_vec(), vec![(i % 256) as u8; 1024])).collect();
    {
        let store = Store::open_with(&path, &options).unwrap();
        store.commit(&checkpoint).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(super::all_rows(&store, TRIPS), expected);
    let (lsn, state) = store.checkpoint().unwrap().unwrap();
    assert_eq!((lsn, state), (7, checkpoint.state));
}
