//! What the benches share (`mod common;` in each): where their data directories go, and
//! how latency samples are summarised. Each bench uses the part it needs.
#![allow(dead_code)]

use std::time::Duration;

/// A temporary directory for a bench's data: under `DISPATCH_BENCH_DIR` when it is set
/// (to measure another disk than the system temp dir), else the system temp dir.
pub fn bench_dir() -> tempfile::TempDir {
    let result = match std::env::var_os("DISPATCH_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    };
    result.expect("create a temporary directory for the bench")
}

/// The `p` quantile (0 to 1) of `sorted`, which must not be empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints one line: `name`, the p50, p99 and max of `samples`, and a rate if given.
pub fn summary(name: &str, mut samples: Vec<Duration>, per_s: Option<f64>) {
    samples.sort();
    let rate = per_s.map_or(String::new(), |r| format!("{r:>12.0} /s"));
    println!(
        "{name:<48} p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?} {rate}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}
