//! Online backups: consistent while another thread commits, never over an existing
//! file, readable by another process while the store is open.

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use super::super::{Checkpoint, Store, StoreError, key};
use super::{LEDGER, TRIPS, all_rows, at, put, scratch};

/// Checks that the backup at `path` holds exactly the rows `lsn -> lsn` for
/// 1..=its checkpoint LSN, and the state of that LSN; returns the LSN.
fn check_consistent(path: &std::path::Path) -> u64 {
    let backup = Store::open(path).unwrap();
    let (lsn, state) = backup.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(state, key::u64_be(lsn), "state and LSN come from one commit");
    let rows = all_rows(&backup, TRIPS);
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        (1..=lsn).map(|n| (key::u64_be(n).to_vec(), key::u64_be(n).to_vec())).collect();
    assert_eq!(rows, expected, "the backup at lsn {lsn} holds exactly the rows up to it");
    lsn
}

#[test]
fn a_backup_taken_while_another_thread_commits_is_one_commit() {
    let (dir, path) = scratch();
    let store = Arc::new(Store::open(&path).unwrap());
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, committed, stop) = (Arc::clone(&store), Arc::clone(&committed), Arc::clone(&stop));
        thread::spawn(move || {
            let mut lsn = 0u64;
            while !stop.load(Ordering::Acquire) {
                lsn += 1;
                let row = key::u64_be(lsn).to_vec();
                let checkpoint = Checkpoint {
                    lsn,
                    state: row.clone(),
                    puts: vec![(TRIPS, row.clone(), row)],
                    ..Checkpoint::default()
                };
                store.commit(&checkpoint).unwrap();
                committed.store(lsn, Ordering::Release);
            }
            lsn
        })
    };
    // Waits for the writer to reach `lsn`; a writer that died ends the wait (and the
    // join below reports its panic) instead of hanging the test.
    let wait_for = |lsn: u64, writer: &thread::JoinHandle<u64>| {
        while committed.load(Ordering::Acquire) < lsn && !writer.is_finished() {
            thread::yield_now();
        }
    };
    let mut seen = Vec::new();
    for round in 0..3u64 {
        wait_for(committed.load(Ordering::Acquire) + 3, &writer);
        let dest = dir.path().join(format!("backup-{round}.redb"));
        let report = store.backup_to(&dest).unwrap();
        let lsn = check_consistent(&dest);
        assert_eq!(report.checkpoint_lsn, Some(lsn));
        assert_eq!(report.tables.len(), 1);
        assert_eq!(report.tables[0].rows, lsn);
        seen.push(lsn);
    }
    // The writer must have gone on committing after the last backup started.
    wait_for(seen[2] + 3, &writer);
    stop.store(true, Ordering::Release);
    let last = writer.join().unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(last > seen[2]);
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(last));
}

#[test]
fn a_backup_is_a_whole_store_and_never_overwrites() {
    let (dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    store.commit(&put(put(at(7), TRIPS, b"t", b"trip"), LEDGER, b"l", b"entry")).unwrap();
    let dest = dir.path().join("copies").join("backup.redb");
    let report = store.backup_to(&dest).unwrap();
    assert_eq!(report, Store::verify(&dest).unwrap());
    assert_eq!(report.checkpoint_lsn, Some(7));
    assert_eq!(report.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["ledger", "trips"]);

    let before = fs::read(&dest).unwrap();
    let error = store.backup_to(&dest).unwrap_err();
    assert!(matches!(&error, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists));
    assert_eq!(fs::read(&dest).unwrap(), before);

    // A leftover of an interrupted backup is in the way and is not silently replaced.
    let other = dir.path().join("other.redb");
    fs::write(dir.path().join("other.redb.partial"), b"interrupted").unwrap();
    assert!(store.backup_to(&other).is_err());
    assert!(!other.exists());

    // A restore is opening the copy: it carries on from the checkpoint.
    let restored = Store::open(&dest).unwrap();
    assert_eq!(restored.checkpoint().unwrap(), Some((7, b"state at 7".to_vec())));
    assert_eq!(restored.get(LEDGER, b"l").unwrap(), Some(b"entry".to_vec()));
    restored.commit(&at(8)).unwrap();
}

#[test]
fn an_empty_store_backs_up() {
    let (dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let report = store.backup_to(dir.path().join("empty-backup.redb")).unwrap();
    assert_eq!(report, super::super::StoreReport::default());
}

const CHILD_STORE: &str = "DISPATCH_STORE_TEST_CHILD_STORE";
const CHILD_DEST: &str = "DISPATCH_STORE_TEST_CHILD_DEST";

/// Runs twice: as the test (the parent, which holds the store open for writing) and,
/// started by it with the variables above set, as the other process.
#[test]
fn another_process_reads_and_backs_up_the_open_store() {
    if let (Ok(path), Ok(dest)) = (std::env::var(CHILD_STORE), std::env::var(CHILD_DEST)) {
        let reader = Store::open_read_only(&path).unwrap();
        let (lsn, _) = reader.checkpoint().unwrap().unwrap();
        let trips = reader.get(TRIPS, b"t3").unwrap().unwrap();
        let report = reader.backup_to(&dest).unwrap();
        let verified = Store::verify(&path).unwrap();
        println!(
            "child: lsn={lsn} t3={} backup_rows={} verified_lsn={:?}",
            String::from_utf8_lossy(&trips),
            report.tables[0].rows,
            verified.checkpoint_lsn
        );
        return;
    }
    let (dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    for lsn in 1..=3u64 {
        store.commit(&put(at(lsn), TRIPS, format!("t{lsn}").as_bytes(), b"trip")).unwrap();
    }
    let dest = dir.path().join("from-another-process.redb");
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["store::tests::backup::another_process_reads_and_backs_up_the_open_store", "--exact", "--nocapture"])
        .env(CHILD_STORE, &path)
        .env(CHILD_DEST, &dest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("child: lsn=3 t3=trip backup_rows=3 verified_lsn=Some(3)"), "{stdout}");
    // The writer was never disturbed, and the other process's backup is whole.
    store.commit(&at(4)).unwrap();
    assert_eq!(check_rows(&dest), 3);
}

fn check_rows(path: &std::path::Path) -> usize {
    let copy = Store::open(path).unwrap();
    assert_eq!(copy.checkpoint_lsn().unwrap(), Some(3));
    all_rows(&copy, TRIPS).len()
}
