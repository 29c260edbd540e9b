//! Benches of the write-ahead log, on the disk that holds the temporary directory
//! (set `DISPATCH_BENCH_DIR` to measure another one):
//! - the disk's own `fdatasync` latency for a 4 KiB append, p50/p99 printed: the floor
//!   under every commit;
//! - group commit: append + sync of batches of 1, 64 and 1024 records of 100 bytes
//!   (p50/p99 printed, throughput from criterion);
//! - replay: reading back 1,000,000 records, and recovery (open = verify every frame)
//!   followed by that read, the engine's start-up cost (page cache warm).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use dispatch_storage::{CommandLog, Wal, WalConfig};

mod common;
use common::bench_dir;

/// Latency samples taken for each printed percentile line: enough for a stable p99.
const LATENCY_SAMPLES: usize = 2_000;
/// Payload size of the group-commit and replay records (a typical command).
const RECORD_BYTES: usize = 100;
/// Records in the replay bench.
const REPLAY_RECORDS: u64 = 1_000_000;

fn print_percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} samples)",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
        samples.len()
    );
}

fn raw_fdatasync(c: &mut Criterion) {
    let dir = bench_dir();
    let mut file = File::create(dir.path().join("raw")).expect("create the raw file");
    let block = [0x5Au8; 4096];
    let mut append_and_sync = move || {
        file.write_all(&block).expect("write 4 KiB");
        file.sync_data().expect("fdatasync");
    };
    let samples = (0..LATENCY_SAMPLES)
        .map(|_| {
            let start = Instant::now();
            append_and_sync();
            start.elapsed()
        })
        .collect();
    print_percentiles("raw 4 KiB append + fdatasync", samples);
    c.bench_function("raw/append_4KiB_fdatasync", |b| b.iter(&mut append_and_sync));
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal/append_sync");
    for batch_records in [1usize, 64, 1024] {
        let dir = bench_dir();
        let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).expect("open the wal");
        let payloads: Vec<Vec<u8>> = (0..batch_records).map(|i| vec![i as u8; RECORD_BYTES]).collect();
        let batch: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let commit = |wal: &mut Wal| {
            wal.append(&batch).expect("append");
            wal.sync().expect("sync");
        };
        // Keeps the disk use of a long run bounded; outside the timed part.
        let release = |wal: &mut Wal| {
            if wal.segment_count() > 2 {
                wal.release_below(wal.durable_lsn() + 1).expect("release");
            }
        };

        let samples = (0..LATENCY_SAMPLES)
            .map(|_| {
                let start = Instant::now();
                commit(&mut wal);
                let elapsed = start.elapsed();
                release(&mut wal);
                elapsed
            })
            .collect();
        print_percentiles(&format!("append + sync of {batch_records} x {RECORD_BYTES} B"), samples);

        group.throughput(Throughput::Elements(batch_records as u64));
        group.bench_function(BenchmarkId::from_parameter(batch_records), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let start = Instant::now();
                    commit(&mut wal);
                    total += start.elapsed();
                    release(&mut wal);
                }
                total
            })
        });
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = bench_dir();
    {
        let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).expect("open the wal");
        let payloads: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8; RECORD_BYTES]).collect();
        let batch: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        while wal.last_lsn() < REPLAY_RECORDS {
            let left = (REPLAY_RECORDS - wal.last_lsn()) as usize;
            wal.append(&batch[..left.min(batch.len())]).expect("append");
            wal.sync().expect("sync");
        }
    }
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).expect("open the wal");

    let mut group = c.benchmark_group("wal/replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.bench_function("read_from_1M", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for record in wal.read_from(1).expect("read") {
                bytes += record.expect("record").payload.len();
            }
            assert_eq!(bytes, REPLAY_RECORDS as usize * RECORD_BYTES);
            black_box(bytes)
        })
    });
    drop(wal);
    group.bench_function("open_and_read_from_1M", |b| {
        b.iter(|| {
            let (wal, report) = Wal::open(dir.path(), WalConfig::default()).expect("open");
            assert_eq!(report.records, REPLAY_RECORDS);
            let count = wal.read_from(1).expect("read").count();
            black_box(count)
        })
    });
    group.finish();
}

// What criterion_main! expands to, written out: its macros generate an undocumented
// public function, which the workspace's missing_docs lint refuses.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    raw_fdatasync(&mut criterion);
    group_commit(&mut criterion);
    replay(&mut criterion);
    criterion.final_summary();
}
