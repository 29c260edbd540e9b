//! What a process spent, read from Linux's `/proc`: CPU time (user + system) and resident
//! memory (now and at its peak). The load generator reads its own and its `--spawn`ed
//! server's, so a run says how much of the two cores each took.
//!
//! Guarantees: never panics; `None` where `/proc` is missing (not Linux) or unreadable.

use std::time::Duration;

/// One process's CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// User + system CPU time since the process started.
    pub cpu: Duration,
    /// Resident set now, bytes.
    pub rss: u64,
    /// Resident set at its peak, bytes.
    pub peak_rss: u64,
}

impl Usage {
    /// The process `pid` (`None`: this one).
    pub fn of(pid: Option<u32>) -> Option<Usage> {
        let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        parse(&stat, &status, rustix::param::clock_ticks_per_second())
    }

    /// CPU time over `wall`, as a share of one core (1.0: one core busy all along).
    pub fn cores(&self, wall: Duration) -> f64 {
        self.cpu.as_secs_f64() / wall.as_secs_f64().max(f64::EPSILON)
    }

    /// In words: `CPU 12.3 s, RSS 456 MiB (peak 789 MiB)`.
    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "CPU {:.1} s, RSS {:.0} MiB (peak {:.0} MiB)",
            self.cpu.as_secs_f64(),
            mib(self.rss),
            mib(self.peak_rss)
        )
    }
}

/// Parses `/proc/<pid>/stat` (utime and stime, fields 14 and 15, in clock ticks) and
/// `/proc/<pid>/status` (`VmRSS`, `VmHWM`, in kB).
fn parse(stat: &str, status: &str, ticks_per_second: u64) -> Option<Usage> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state): utime is field 14, stime 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse::<u64>().ok().map(|k| k * 1024)
    };
    let cpu = Duration::from_secs_f64(ticks as f64 / ticks_per_second.max(1) as f64);
    Some(Usage { cpu, rss: kb("VmRSS:")?, peak_rss: kb("VmHWM:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory_even_with_a_strange_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 150 0 0 20 0 4 0 1000 100000 50 0";
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t4\n";
        let u = parse(stat, status, 100).expect("parses");
        assert_eq!(u.cpu, Duration::from_secs(4));
        assert_eq!(u.rss, 1024 * 1024);
        assert_eq!(u.peak_rss, 2048 * 1024);
        assert!((u.cores(Duration::from_secs(8)) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn refuses_what_is_not_proc() {
        assert_eq!(parse("garbage", "", 100), None);
        assert_eq!(parse("1 (x) S 1 2 3", "VmRSS: 1 kB\nVmHWM: 1 kB\n", 100), None);
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let u = Usage::of(None).expect("this process");
            assert!(u.rss > 0 && u.peak_rss >= u.rss);
        }
    }
}
