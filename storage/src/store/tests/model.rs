//! Random sequences of puts, deletes, range deletes, commits, purges, scans and
//! reopens, checked against a `BTreeMap` per table after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::super::{Checkpoint, Order, Scan, Store, TableName};
use super::{LEDGER, TRIPS, scratch};

const TABLES: [TableName; 2] = [TRIPS, LEDGER];

#[derive(Clone, Debug)]
enum Step {
    Put { table: usize, key: Vec<u8>, value: Vec<u8> },
    Delete { table: usize, key: Vec<u8> },
    DeleteRange { table: usize, start: Vec<u8>, end: Vec<u8> },
    Commit,
    Purge { table: usize, start: Vec<u8>, end: Vec<u8> },
    Scan { table: usize, prefix: Vec<u8>, limit: usize, descending: bool },
    Reopen,
}

/// Keys over a small alphabet, so that steps hit each other's keys and prefixes.
fn small_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xffu8)], 0..4)
}

fn range() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (small_key(), small_key()).prop_map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..2usize, small_key(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(table, key, value)| Step::Put { table, key, value }),
        2 => (0..2usize, small_key()).prop_map(|(table, key)| Step::Delete { table, key }),
        1 => (0..2usize, range()).prop_map(|(table, (start, end))| Step::DeleteRange { table, start, end }),
        3 => Just(Step::Commit),
        1 => (0..2usize, range()).prop_map(|(table, (start, end))| Step::Purge { table, start, end }),
        2 => (0..2usize, small_key(), 1..4usize, any::<bool>())
            .prop_map(|(table, prefix, limit, descending)| Step::Scan { table, prefix, limit, descending }),
        1 => Just(Step::Reopen),
    ]
}

/// The committed contents of the store, and the checkpoint being assembled.
#[derive(Default)]
struct Model {
    tables: [BTreeMap<Vec<u8>, Vec<u8>>; 2],
    checkpoint: Option<(u64, Vec<u8>)>,
    pending: Checkpoint,
    next_lsn: u64,
}

impl Model {
    /// Applies the pending changes in the documented order: ranges, deletes, puts.
    fn commit(&mut self) -> Checkpoint {
        self.next_lsn += 1;
        let mut checkpoint = std::mem::take(&mut self.pending);
        checkpoint.lsn = self.next_lsn;
        checkpoint.state = format!("state {}", self.next_lsn).into_bytes();
        let index = |name: TableName| TABLES.iter().position(|t| *t == name).unwrap();
        for (table, start, end) in &checkpoint.delete_ranges {
            self.tables[index(*table)].retain(|k, _| !(k >= start && k < end));
        }
        for (table, key) in &checkpoint.deletes {
            self.tables[index(*table)].remove(key);
        }
        for (table, key, value) in &checkpoint.puts {
            self.tables[index(*table)].insert(key.clone(), value.clone());
        }
        self.checkpoint = Some((checkpoint.lsn, checkpoint.state.clone()));
        checkpoint
    }
}

/// Every page of a scan, concatenated, checking that pages respect the limit.
fn scan_all(store: &Store, table: TableName, scan: Scan) -> Vec<(Vec<u8>, Vec<u8>)> {
    let limit = scan.limit;
    let mut scan = scan;
    let mut rows = Vec::new();
    loop {
        let page = store.scan(table, &scan).unwrap();
        assert!(page.rows.len() <= limit);
        if let Some(next) = &page.next {
            assert_eq!(page.rows.len(), limit, "a short page is the last one");
            assert_eq!(page.rows.last().map(|(k, _)| k), Some(next), "the cursor is the last key");
        }
        rows.extend(page.rows);
        match page.next {
            Some(cursor) => scan = scan.after(Some(cursor)),
            None => return rows,
        }
    }
}

fn expect_equal(store: &Store, model: &Model) {
    assert_eq!(store.checkpoint().unwrap(), model.checkpoint);
    for (index, table) in TABLES.iter().enumerate() {
        let rows = scan_all(store, *table, Scan::new(Vec::new(), 1000));
        let expected: Vec<_> = model.tables[index].iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(rows, expected, "table {table}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map_of_maps(steps in proptest::collection::vec(step(), 1..40)) {
        let (_dir, path) = scratch();
        let mut store = Store::open(&path).unwrap();
        let mut model = Model::default();
        for step in steps {
            match step {
                Step::Put { table, key, value } => model.pending.puts.push((TABLES[table], key, value)),
                Step::Delete { table, key } => model.pending.deletes.push((TABLES[table], key)),
                Step::DeleteRange { table, start, end } => model.pending.delete_ranges.push((TABLES[table], start, end)),
                Step::Commit => {
                    let checkpoint = model.commit();
                    store.commit(&checkpoint).unwrap();
                    expect_equal(&store, &model);
                }
                Step::Purge { table, start, end } => {
                    let before = model.tables[table].len();
                    model.tables[table].retain(|k, _| !(*k >= start && *k < end));
                    let removed = store.purge_range(TABLES[table], &start, &end).unwrap();
                    prop_assert_eq!(removed as usize, before - model.tables[table].len());
                    expect_equal(&store, &model);
                }
                Step::Scan { table, prefix, limit, descending } => {
                    let order = if descending { Order::Descending } else { Order::Ascending };
                    let rows = scan_all(&store, TABLES[table], Scan::new(prefix.clone(), limit).order(order));
                    let mut expected: Vec<_> = model.tables[table]
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if descending {
                        expected.reverse();
                    }
                    prop_assert_eq!(rows, expected);
                }
                Step::Reopen => {
                    // What was not committed is the caller's; the store keeps what was.
                    drop(store);
                    store = Store::open(&path).unwrap();
                    expect_equal(&store, &model);
                }
            }
        }
        let checkpoint = model.commit();
        store.commit(&checkpoint).unwrap();
        drop(store);
        expect_equal(&Store::open(&path).unwrap(), &model);
    }
}
