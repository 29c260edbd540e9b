//! Benches of the checkpoint and history store (redb), on the disk that holds the
//! temporary directory (set `DISPATCH_BENCH_DIR` to measure another one):
//! - `store_commit/10k_rows_300b_plus_2mib_state`: one checkpoint, durable when it
//!   returns: 10,000 new history rows of 300 bytes, one for each of 10,000 riders (so
//!   spread over the whole table), and a 2 MiB state blob; `10k_clustered_rows_...`:
//!   the same with keys that sort together (time first);
//! - `store_read/scan_50_newest_of_1m`: one page of a rider's history, 50 rows newest
//!   first, from a table of 1,000,000 rows (10,000 riders × 100 trips, keys
//!   `rider ‖ rev(time) ‖ trip`), page cache warm;
//! - `store_read/get_of_1m`: one row by key from the same table;
//! - `store_open/*_1m_rows`: opening that store (about 400 MiB) with and without the
//!   check of every page's checksum that a default open does.

use std::cell::Cell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use dispatch_storage::store::{Checkpoint, Scan, Store, StoreOptions, TableName, key};

mod common;
use common::bench_dir;

const TRIPS_BY_RIDER: TableName = TableName::new("trips_by_rider");
/// Rows per checkpoint in the commit bench, and their size.
const COMMIT_ROWS: u64 = 10_000;
const ROW_BYTES: usize = 300;
const STATE_BYTES: usize = 2 * 1024 * 1024;
/// The history table of the read benches: riders × trips each.
const RIDERS: u64 = 10_000;
const TRIPS_PER_RIDER: u64 = 100;
/// Rows per commit while filling it.
const FILL_ROWS_PER_COMMIT: u64 = 100_000;
const PAGE_ROWS: usize = 50;

/// The key of row `i` of checkpoint `lsn`.
type RowKey = fn(u64, u64) -> Vec<u8>;

fn trip_key(rider: u64, n: u64) -> Vec<u8> {
    let time = 1_700_000_000 + n * 600;
    key::concat(&[&key::u64_be(rider), &key::rev_u64_be(time), &key::u64_be(rider * TRIPS_PER_RIDER + n)])
}

fn bench_commit(c: &mut Criterion) {
    let lsn = Cell::new(0u64);
    let state = vec![0x5a; STATE_BYTES];
    let mut group = c.benchmark_group("store_commit");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(COMMIT_ROWS));
    // Scattered: each checkpoint's rows belong to 10,000 different riders, so they land
    // all over the table (the `trips_by_rider` index); clustered: they sort together (a
    // table keyed by time, like the ledger by transfer id).
    let layouts: [(&str, RowKey); 2] = [
        ("10k_rows_300b_plus_2mib_state", |lsn, i| trip_key(i, lsn)),
        ("10k_clustered_rows_300b_plus_2mib_state", |lsn, i| key::concat(&[&key::u64_be(lsn), &key::u64_be(i)])),
    ];
    for (name, row_key) in layouts {
        let dir = bench_dir();
        let store = Store::open(dir.path().join("commit.redb")).expect("open the store");
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    lsn.set(lsn.get() + 1);
                    let puts = (0..COMMIT_ROWS)
                        .map(|i| (TRIPS_BY_RIDER, row_key(lsn.get(), i), vec![(i % 251) as u8; ROW_BYTES]))
                        .collect();
                    Checkpoint { lsn: lsn.get(), state: state.clone(), puts, ..Checkpoint::default() }
                },
                |checkpoint| store.commit(&checkpoint).expect("commit"),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// Fills a store with RIDERS × TRIPS_PER_RIDER rows; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("history.redb");
    let store = Store::open(&path).expect("open the store");
    let rows = (0..RIDERS).flat_map(|rider| (0..TRIPS_PER_RIDER).map(move |n| (rider, n)));
    let mut checkpoint = Checkpoint::default();
    for (at, (rider, n)) in rows.enumerate() {
        checkpoint.puts.push((TRIPS_BY_RIDER, trip_key(rider, n), vec![(n % 251) as u8; ROW_BYTES]));
        if (at as u64 + 1).is_multiple_of(FILL_ROWS_PER_COMMIT) {
            checkpoint.lsn = at as u64 + 1;
            store.commit(&checkpoint).expect("fill");
            checkpoint = Checkpoint::default();
        }
    }
    store.close().expect("close");
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("history store: {} rows, {:.0} MiB", RIDERS * TRIPS_PER_RIDER, bytes as f64 / (1024.0 * 1024.0));
    path
}

fn bench_read(c: &mut Criterion, path: &Path) {
    let store = Store::open(path).expect("open the store");
    let first = store.scan(TRIPS_BY_RIDER, &Scan::new(key::u64_be(7), PAGE_ROWS)).expect("scan");
    assert_eq!(first.rows.len(), PAGE_ROWS);
    assert_eq!(first.rows[0].0, trip_key(7, TRIPS_PER_RIDER - 1), "newest first");
    let rider = Cell::new(0u64);
    let mut group = c.benchmark_group("store_read");
    group.bench_function("scan_50_newest_of_1m", |b| {
        b.iter(|| {
            rider.set((rider.get() + 7919) % RIDERS);
            let scan = Scan::new(key::u64_be(rider.get()), PAGE_ROWS);
            black_box(store.scan(TRIPS_BY_RIDER, &scan).expect("scan"))
        });
    });
    group.bench_function("get_of_1m", |b| {
        b.iter(|| {
            rider.set((rider.get() + 7919) % RIDERS);
            let row = trip_key(rider.get(), rider.get() % TRIPS_PER_RIDER);
            black_box(store.get(TRIPS_BY_RIDER, &row).expect("get"))
        });
    });
    group.finish();
}

fn bench_open(c: &mut Criterion, path: &Path) {
    let mut group = c.benchmark_group("store_open");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for (name, verify_on_open) in [("verified_1m_rows", true), ("unverified_1m_rows", false)] {
        let options = StoreOptions { verify_on_open, ..StoreOptions::default() };
        group.bench_function(name, |b| {
            b.iter(|| Store::open_with(path, &options).expect("open").close().expect("close"));
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_commit(&mut c);
    let dir = bench_dir();
    let path = fill(dir.path());
    bench_read(&mut c, &path);
    bench_open(&mut c, &path);
    c.final_summary();
}
