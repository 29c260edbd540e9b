//! How fast this machine's caches forget: the time of a dependent read of a random line of a
//! working set, right after the previous read and after an idle gap (the thread spinning on
//! the clock, touching nothing else).
//!
//! On a machine of its own, a working set that fits the caches stays there while its thread
//! waits. On a shared VM the core's caches are also the neighbours', so the lines a thread
//! last touched tens of microseconds ago may be back in memory, and what a latency bench
//! that waits between operations measures is that as much as the code. `geo_churn` waits
//! 200 µs between queries; this bench says what that costs a read here, so its figures can
//! be read against the machine and not only against the code.
//!
//! Each working set (`CACHE_DECAY_MIB`, default `1,5,16`: the L2 of one core, the drivers'
//! index of 100,000, more than the L2s together) is a random cycle of 64-byte lines; a
//! sample is 20 reads along it, each needing the one before, timed together; 20,000
//! samples a gap at most (fewer for the longer gaps). Printed per working set and gap: the
//! read's p50 and p90.
//!
//! Run: `cargo bench --bench cache_decay`
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A cache line, as the reads see it: the index of the next line of the cycle, and padding.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Line {
    next: usize,
}

/// Gaps between samples, microseconds.
const GAPS_US: [u64; 5] = [0, 2, 20, 200, 2_000];
/// Dependent reads per sample.
const READS: usize = 20;

fn main() {
    // `cargo bench` passes `--bench`; a name filter that is not ours skips the run.
    let skip = std::env::args().skip(1).any(|a| !a.starts_with('-') && !"cache_decay".contains(a.as_str()));
    if skip {
        return;
    }
    let sizes: Vec<usize> = std::env::var("CACHE_DECAY_MIB")
        .unwrap_or_else(|_| "1,5,16".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    for mib in sizes {
        let lines = (mib << 20) / std::mem::size_of::<Line>();
        if lines < 2 {
            continue;
        }
        // One cycle through every line, in a random order (Sattolo's shuffle).
        let mut order: Vec<usize> = (0..lines).collect();
        for i in (1..lines).rev() {
            order.swap(i, rng.random_range(0..i));
        }
        let mut set = vec![Line { next: 0 }; lines];
        for w in 0..lines {
            set[order[w]].next = order[(w + 1) % lines];
        }
        let mut at = order[0];
        // Once round the cycle, so the first samples do not pay for the first touch.
        for _ in 0..lines {
            at = set[at].next;
        }
        for gap_us in GAPS_US {
            let gap = Duration::from_micros(gap_us);
            let count = (20_000 / (1 + gap_us as usize / 20)).max(200);
            let mut samples: Vec<Duration> = Vec::with_capacity(count);
            for _ in 0..count {
                let idle = Instant::now();
                while idle.elapsed() < gap {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                for _ in 0..READS {
                    at = set[at].next;
                }
                samples.push(t.elapsed());
            }
            samples.sort();
            let per_read = |p: f64| common::percentile(&samples, p).as_nanos() as f64 / READS as f64;
            let name = format!("cache_decay/{mib}MiB/gap_{gap_us}us");
            println!("{name:<32} a dependent read p50 {:>5.0} ns  p90 {:>5.0} ns", per_read(0.5), per_read(0.9));
        }
        black_box(at);
    }
}
