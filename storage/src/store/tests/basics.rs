//! Commits, reads, the LSN rule, atomicity, bounds and housekeeping.

use super::super::{
    CHANGES_MAX, Checkpoint, KEY_BYTES_MAX, STATE_BYTES_MAX, Store, StoreError, VALUE_BYTES_MAX, check_len, key,
};
use super::{LEDGER, TRIPS, all_rows, at, put, scratch};

#[test]
fn a_new_store_is_empty_and_reopen_keeps_checkpoint_and_rows() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.checkpoint().unwrap(), None);
    assert_eq!(store.checkpoint_lsn().unwrap(), None);
    assert_eq!(store.get(TRIPS, b"t1").unwrap(), None);
    let checkpoint = put(put(at(10), TRIPS, b"t1", b"one"), LEDGER, b"l1", b"entry");
    store.commit(&checkpoint).unwrap();
    store.commit(&put(at(11), TRIPS, b"t2", b"two")).unwrap();
    store.close().unwrap();

    let store = Store::open(&path).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some((11, b"state at 11".to_vec())));
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(11));
    assert_eq!(store.get(TRIPS, b"t1").unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.get(TRIPS, b"t2").unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.get(LEDGER, b"l1").unwrap(), Some(b"entry".to_vec()));
    assert_eq!(store.get(LEDGER, b"t1").unwrap(), None, "tables are separate");
}

#[test]
fn an_older_or_equal_lsn_is_refused_and_changes_nothing() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    store.commit(&put(at(5), TRIPS, b"a", b"1")).unwrap();
    for lsn in [5, 4, 0] {
        let error = store.commit(&put(at(lsn), TRIPS, b"b", b"2")).unwrap_err();
        assert!(matches!(error, StoreError::StaleLsn { lsn: l, current: 5 } if l == lsn), "{error}");
    }
    assert_eq!(store.get(TRIPS, b"b").unwrap(), None);
    assert_eq!(store.checkpoint().unwrap(), Some((5, b"state at 5".to_vec())));
    store.commit(&at(6)).unwrap();
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(6));
}

#[test]
fn a_commit_that_fails_midway_writes_nothing() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    store.commit(&put(at(1), TRIPS, b"kept", b"before")).unwrap();
    // Valid changes first, a bad row last: the first ones are already in the
    // transaction when the bad one is found, and must vanish with it.
    let mut bad = put(put(at(2), TRIPS, b"new", b"row"), LEDGER, b"l", b"x");
    bad.deletes.push((TRIPS, b"kept".to_vec()));
    bad.delete_ranges.push((TRIPS, Vec::new(), vec![0xff]));
    bad.puts.push((TRIPS, vec![7; KEY_BYTES_MAX + 1], b"too long a key".to_vec()));
    let error = store.commit(&bad).unwrap_err();
    assert!(matches!(error, StoreError::TooLarge { what: "key", .. }), "{error}");
    assert_eq!(store.get(TRIPS, b"kept").unwrap(), Some(b"before".to_vec()));
    assert_eq!(store.get(TRIPS, b"new").unwrap(), None);
    assert_eq!(store.get(LEDGER, b"l").unwrap(), None);
    assert_eq!(store.checkpoint().unwrap(), Some((1, b"state at 1".to_vec())));
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(all_rows(&store, TRIPS), vec![(b"kept".to_vec(), b"before".to_vec())]);
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(1));
}

#[test]
fn every_bound_is_enforced() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let big_value = put(at(1), TRIPS, b"k", &vec![0; VALUE_BYTES_MAX + 1]);
    assert!(matches!(store.commit(&big_value), Err(StoreError::TooLarge { what: "value", .. })));
    let at_bounds = put(at(1), TRIPS, &[1; KEY_BYTES_MAX], &vec![2; VALUE_BYTES_MAX]);
    store.commit(&at_bounds).unwrap();
    let mut long_delete = at(2);
    long_delete.deletes.push((TRIPS, vec![0; KEY_BYTES_MAX + 1]));
    assert!(matches!(store.commit(&long_delete), Err(StoreError::TooLarge { what: "key", .. })));
    let mut backwards = at(2);
    backwards.delete_ranges.push((TRIPS, vec![2], vec![1]));
    assert!(matches!(store.commit(&backwards), Err(StoreError::InvalidRange { table: "trips" })));
    let mut too_many = at(2);
    too_many.deletes = vec![(TRIPS, Vec::new()); CHANGES_MAX + 1];
    assert!(matches!(store.commit(&too_many), Err(StoreError::TooLarge { .. })));
    assert!(matches!(store.get(TRIPS, &[0; KEY_BYTES_MAX + 1]), Err(StoreError::TooLarge { .. })));
    // A state over 1 GiB is not allocated here: the check is on the length alone.
    assert!(matches!(check_len("state", STATE_BYTES_MAX + 1, STATE_BYTES_MAX), Err(StoreError::TooLarge { .. })));
    assert!(check_len("state", STATE_BYTES_MAX, STATE_BYTES_MAX).is_ok());
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(1));
}

#[test]
fn changes_apply_ranges_then_deletes_then_puts() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let mut first = at(1);
    for k in [b"a1", b"a2", b"a3", b"b1"] {
        first = put(first, TRIPS, k, b"old");
    }
    store.commit(&first).unwrap();
    let mut second = put(put(at(2), TRIPS, b"a2", b"new"), TRIPS, b"b1", b"newer");
    second.delete_ranges.push((TRIPS, b"a".to_vec(), b"b".to_vec()));
    second.deletes.push((TRIPS, b"b1".to_vec()));
    second.deletes.push((TRIPS, b"absent".to_vec()));
    store.commit(&second).unwrap();
    assert_eq!(all_rows(&store, TRIPS), vec![(b"a2".to_vec(), b"new".to_vec()), (b"b1".to_vec(), b"newer".to_vec())]);
}

/// Retention's batches: each removes at most its bound, oldest keys first, and the
/// batches together remove exactly the range; `write_rows` deletes and puts at once.
#[test]
fn a_bounded_purge_removes_the_first_rows_of_the_range_and_no_more() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let mut rows = at(1);
    for t in 0..10u64 {
        rows = put(rows, LEDGER, &key::u64_be(t), b"");
    }
    store.commit(&rows).unwrap();
    let keys = |store: &Store| -> Vec<u64> {
        all_rows(store, LEDGER).iter().map(|(k, _)| key::take_u64_be(k).unwrap().0).collect()
    };
    assert_eq!(store.purge_range_max(LEDGER, &key::u64_be(0), &key::u64_be(7), 3).unwrap(), 3);
    assert_eq!(keys(&store), (3..10).collect::<Vec<_>>());
    assert_eq!(store.purge_range_max(LEDGER, &key::u64_be(0), &key::u64_be(7), 3).unwrap(), 3);
    assert_eq!(store.purge_range_max(LEDGER, &key::u64_be(0), &key::u64_be(7), 3).unwrap(), 1);
    assert_eq!(store.purge_range_max(LEDGER, &key::u64_be(0), &key::u64_be(7), 3).unwrap(), 0);
    assert_eq!(keys(&store), (7..10).collect::<Vec<_>>());
    assert_eq!(store.purge_range_max(LEDGER, &key::u64_be(0), &key::u64_be(9), 0).unwrap(), 0);
    assert!(matches!(store.purge_range_max(LEDGER, b"b", b"a", 1), Err(StoreError::InvalidRange { .. })));
    store
        .write_rows(&[(LEDGER, key::u64_be(1).to_vec(), b"v".to_vec())], &[(LEDGER, key::u64_be(8).to_vec())])
        .unwrap();
    assert_eq!(keys(&store), vec![1, 7, 9]);
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(1), "housekeeping leaves the checkpoint alone");
}

#[test]
fn purge_range_removes_exactly_the_range_and_reports_how_many() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let mut rows = at(1);
    for expiry in 0..10u64 {
        rows = put(rows, LEDGER, &key::concat(&[&key::u64_be(expiry), b"idem"]), b"");
    }
    store.commit(&rows).unwrap();
    assert_eq!(store.purge_range(LEDGER, &key::u64_be(0), &key::u64_be(4)).unwrap(), 4);
    assert_eq!(store.purge_range(LEDGER, &key::u64_be(0), &key::u64_be(4)).unwrap(), 0);
    assert_eq!(store.purge_range(LEDGER, &key::u64_be(5), &key::u64_be(5)).unwrap(), 0);
    assert_eq!(store.purge_range(TRIPS, b"", &[0xff]).unwrap(), 0, "a table never written");
    assert!(matches!(store.purge_range(LEDGER, b"b", b"a"), Err(StoreError::InvalidRange { .. })));
    let left: Vec<u64> =
        all_rows(&store, LEDGER).iter().map(|(k, _)| key::take_u64_be(k).map(|(expiry, _)| expiry).unwrap()).collect();
    assert_eq!(left, (4..10).collect::<Vec<_>>());
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(1), "housekeeping leaves the checkpoint alone");
    drop(store);
    assert_eq!(all_rows(&Store::open(&path).unwrap(), LEDGER).len(), 6);
}

#[test]
fn len_counts_the_rows_of_one_table_as_of_the_last_commit() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.len(LEDGER).unwrap(), 0, "a table never written");
    let mut rows = at(1);
    for i in 0..7u64 {
        rows = put(rows, LEDGER, &key::u64_be(i), b"v");
    }
    rows = put(rows, TRIPS, b"t", b"v");
    store.commit(&rows).unwrap();
    assert_eq!((store.len(LEDGER).unwrap(), store.len(TRIPS).unwrap()), (7, 1));
    let mut second = put(at(2), LEDGER, &key::u64_be(3), b"replaced");
    second.deletes.push((LEDGER, key::u64_be(0).to_vec()));
    second.deletes.push((LEDGER, b"absent".to_vec()));
    store.commit(&second).unwrap();
    assert_eq!(store.len(LEDGER).unwrap(), 6, "a replaced row counts once, an absent delete not at all");
    store.purge_range(LEDGER, &key::u64_be(1), &key::u64_be(3)).unwrap();
    assert_eq!(store.len(LEDGER).unwrap(), 4);
}

#[test]
fn a_second_writer_is_refused_while_the_store_is_open() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let error = Store::open(&path).expect_err("a second writable open");
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    drop(store);
    Store::open(&path).unwrap();
}

#[test]
fn a_read_only_handle_follows_the_writers_commits() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    store.commit(&put(at(1), TRIPS, b"a", b"1")).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.checkpoint().unwrap(), Some((1, b"state at 1".to_vec())));
    store.commit(&put(at(2), TRIPS, b"b", b"2")).unwrap();
    assert_eq!(reader.checkpoint().unwrap().map(|(lsn, _)| lsn), Some(2));
    assert_eq!(reader.get(TRIPS, b"b").unwrap(), Some(b"2".to_vec()));
    let report = Store::verify(&path).unwrap();
    assert_eq!(report.checkpoint_lsn, Some(2));
    assert_eq!(report.tables.iter().map(|t| (t.name.as_str(), t.rows)).collect::<Vec<_>>(), vec![("trips", 2)]);
}

#[test]
fn compaction_keeps_every_row() {
    let (_dir, path) = scratch();
    let mut store = Store::open(&path).unwrap();
    let mut rows = at(1);
    for i in 0..2000u64 {
        rows = put(rows, TRIPS, &key::u64_be(i), &[7; 300]);
    }
    store.commit(&rows).unwrap();
    store.purge_range(TRIPS, &key::u64_be(0), &key::u64_be(1900)).unwrap();
    store.compact().unwrap();
    assert_eq!(all_rows(&store, TRIPS).len(), 100);
    assert_eq!(store.checkpoint_lsn().unwrap(), Some(1));
}

#[test]
fn an_empty_state_and_a_commit_without_rows_are_fine() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    store.commit(&Checkpoint { lsn: 0, ..Checkpoint::default() }).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some((0, Vec::new())));
}

#[test]
fn rows_put_outside_a_checkpoint_leave_it_alone_and_respect_the_bounds() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    store.commit(&put(at(3), TRIPS, b"a", b"1")).unwrap();
    store.put_rows(&[(LEDGER, b"p1".to_vec(), b"x".to_vec()), (LEDGER, b"p2".to_vec(), b"y".to_vec())]).unwrap();
    assert_eq!(store.get(LEDGER, b"p2").unwrap(), Some(b"y".to_vec()));
    assert_eq!(store.checkpoint().unwrap(), Some((3, b"state at 3".to_vec())), "the checkpoint is untouched");
    let too_long = vec![0u8; KEY_BYTES_MAX + 1];
    assert!(store.put_rows(&[(LEDGER, b"p3".to_vec(), b"z".to_vec()), (LEDGER, too_long, b"z".to_vec())]).is_err());
    assert_eq!(store.get(LEDGER, b"p3").unwrap(), None, "all or nothing");
}
