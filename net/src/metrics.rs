//! Counters and latency histograms for `GET /metrics`, written in the Prometheus text
//! format by hand (no metrics crate), with the process's own figures (`process_*`, read
//! from `/proc/self` on Linux) and `dispatch_build_info`.
//!
//! Guarantees: the exposition passes `promtool check metrics` without a word (every
//! family has `# HELP` and `# TYPE`; seconds and bytes, never micro-anything; `_total`
//! on counters only: net/tests/observability.rs runs it); a `process_*` figure the
//! platform cannot give is left out, never made up.
//!
//! Bounds: series are keyed by route *names* (a fixed set, never a raw path) and
//! status codes, so the number of series is bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use dispatch_core::alert::AlertStatus;
use parking_lot::Mutex;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS_S: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// Everything counted by the server (the engine keeps its own counters).
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    rate_limited: Mutex<BTreeMap<&'static str, u64>>,
    /// WebSockets open now.
    pub sockets_open: AtomicI64,
    /// `trip_offer` frames queued to sockets.
    pub offers_sent: AtomicU64,
    /// Accepts answered 200.
    pub accepts_won: AtomicU64,
    /// Accepts answered 409 `trip_already_assigned`.
    pub accepts_lost: AtomicU64,
    /// Sockets closed because they fell behind.
    pub slow_sockets_closed: AtomicU64,
    /// Location frames dropped for slow sockets.
    pub location_frames_dropped: AtomicU64,
    /// The transport's counters: connections, refusals, write timeouts (`crate::admission`).
    pub transport: std::sync::Arc<crate::admission::TransportCounters>,
    /// The delivery worker's counters: deliveries and failures per channel (`crate::outbox`).
    pub notifications: std::sync::Arc<crate::outbox::Counters>,
    /// The webhook worker's counters: deliveries and failures (`crate::hooks`).
    pub webhooks: std::sync::Arc<crate::hooks::Counters>,
}

impl Metrics {
    /// Counts a finished request.
    pub fn record(&self, route: &'static str, status: u16, took: Duration) {
        *self.requests.lock().entry((route, status)).or_default() += 1;
        let s = took.as_secs_f64();
        let mut l = self.latency.lock();
        let h = l.entry(route).or_default();
        for (i, b) in BUCKETS_S.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum_s += s;
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self, class: &'static str) {
        *self.rate_limited.lock().entry(class).or_default() += 1;
    }

    /// Requests refused `429` so far, all classes.
    pub fn rate_limited_total(&self) -> u64 {
        self.rate_limited.lock().values().sum()
    }

    /// The text exposition, with the engine's figures. Every family has `# HELP` and
    /// `# TYPE`; names and values are in base units (seconds, bytes); counters, and only
    /// counters, end in `_total` (`promtool check metrics` finds nothing to say).
    pub fn render(&self, engine: &dispatch_core::Engine) -> String {
        let mut o = String::new();
        family(&mut o, "dispatch_http_requests_total", "counter", "HTTP requests answered, by route name and status.");
        for ((route, status), n) in self.requests.lock().iter() {
            let _ = writeln!(o, "dispatch_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        family(
            &mut o,
            "dispatch_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its answer, by route name.",
        );
        for (route, h) in self.latency.lock().iter() {
            for (i, b) in BUCKETS_S.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "dispatch_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "dispatch_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(o, "dispatch_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum_s);
            let _ = writeln!(o, "dispatch_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        family(&mut o, "dispatch_rate_limited_total", "counter", "Requests refused 429 rate_limited, by limit class.");
        for (class, n) in self.rate_limited.lock().iter() {
            let _ = writeln!(o, "dispatch_rate_limited_total{{class=\"{class}\"}} {n}");
        }
        let r = Ordering::Relaxed;
        let server: [Figure; 6] = [
            ("dispatch_ws_sockets_open", "gauge", "WebSockets open now.", self.sockets_open.load(r) as f64),
            (
                "dispatch_ws_offers_sent_total",
                "counter",
                "trip_offer frames queued to sockets.",
                self.offers_sent.load(r) as f64,
            ),
            ("dispatch_accepts_won_total", "counter", "Trip accepts answered 200.", self.accepts_won.load(r) as f64),
            (
                "dispatch_accepts_lost_total",
                "counter",
                "Trip accepts answered 409 trip_already_assigned (another driver won).",
                self.accepts_lost.load(r) as f64,
            ),
            (
                "dispatch_ws_slow_sockets_closed_total",
                "counter",
                "WebSockets closed because they fell behind.",
                self.slow_sockets_closed.load(r) as f64,
            ),
            (
                "dispatch_ws_location_frames_dropped_total",
                "counter",
                "Location frames dropped for slow sockets.",
                self.location_frames_dropped.load(r) as f64,
            ),
        ];
        let s = engine.stats();
        // One walk of the view's alerts, under its read lock (they are few: open ones and
        // those acknowledged since the last checkpoint).
        let (alerts_hot, alerts_open) = engine.read(|v| {
            v.alerts().fold((0u64, 0u64), |(hot, open), a| (hot + 1, open + u64::from(a.status == AlertStatus::Open)))
        });
        // The payments given up on, as `GET /v1/admin/payments/dead-letters` finds them:
        // a walk of the hot trips on a snapshot, which holds no lock while it walks.
        let dead_letters =
            engine.read_snapshot(|v| v.trips().filter(|t| t.payment.dead_letter.is_some()).count()) as f64;
        let us = |a: &AtomicU64| a.load(r) as f64 / 1e6;
        let n = |a: &AtomicU64| a.load(r) as f64;
        let engine_figures: [Figure; 27] = [
            (
                "dispatch_engine_queue_depth",
                "gauge",
                "Commands waiting for the engine's writer.",
                engine.queue_depth() as f64,
            ),
            (
                "dispatch_engine_queue_capacity",
                "gauge",
                "Commands the writer's queue holds before requests are refused 503 overloaded.",
                engine.queue_capacity() as f64,
            ),
            (
                "dispatch_engine_last_batch_size",
                "gauge",
                "Commands in the last batch the writer committed.",
                n(&s.last_batch),
            ),
            ("dispatch_engine_batches_total", "counter", "Batches the writer committed.", n(&s.batches)),
            ("dispatch_engine_commands_applied_total", "counter", "Commands applied.", n(&s.applied)),
            ("dispatch_engine_commands_refused_total", "counter", "Commands refused by the rules.", n(&s.refused)),
            (
                "dispatch_engine_overloaded_total",
                "counter",
                "Commands refused because the writer's queue was full.",
                n(&s.overloaded),
            ),
            ("dispatch_engine_fsync_last_seconds", "gauge", "Duration of the last WAL sync.", us(&s.last_sync_us)),
            ("dispatch_engine_fsync_max_seconds", "gauge", "Longest WAL sync since start.", us(&s.max_sync_us)),
            (
                "dispatch_engine_read_only",
                "gauge",
                "1 while the engine refuses writes after a failed WAL write (503 read_only), else 0.",
                f64::from(u8::from(engine.is_read_only())),
            ),
            (
                "dispatch_engine_spoofing_suspected_total",
                "counter",
                "Positions refused as implausible jumps (suspected spoofing).",
                n(&s.spoofing_suspected),
            ),
            (
                "dispatch_engine_positions_coalesced_total",
                "counter",
                "Position reports held back by the minimum interval (published later, never logged).",
                n(&s.locations_coalesced),
            ),
            (
                "dispatch_engine_positions_unrecorded_total",
                "counter",
                "Position reports lost before they were recorded.",
                engine.positions_lost() as f64,
            ),
            (
                "dispatch_engine_failed_batches_total",
                "counter",
                "Batches whose write failed (each one put the engine in read-only mode).",
                n(&s.failed_batches),
            ),
            ("dispatch_checkpoints_written_total", "counter", "Checkpoints written.", n(&s.checkpoints.written)),
            ("dispatch_checkpoints_failed_total", "counter", "Checkpoints that failed.", n(&s.checkpoints.failed)),
            (
                "dispatch_checkpoint_last_lsn",
                "gauge",
                "WAL position of the last checkpoint.",
                n(&s.checkpoints.last_lsn),
            ),
            ("dispatch_checkpoint_last_rows", "gauge", "Rows the last checkpoint wrote.", n(&s.checkpoints.last_rows)),
            (
                "dispatch_checkpoint_last_duration_seconds",
                "gauge",
                "How long the last checkpoint took.",
                us(&s.checkpoints.last_micros),
            ),
            (
                "dispatch_idempotency_keys_hot",
                "gauge",
                "Idempotency keys in memory (the last 10 minutes').",
                n(&s.checkpoints.keys_hot),
            ),
            (
                "dispatch_idempotency_keys_archived",
                "gauge",
                "Idempotency keys archived in store.redb until they expire.",
                n(&s.checkpoints.keys_archived),
            ),
            (
                "dispatch_gateway_event_ids_hot",
                "gauge",
                "Payment gateway event ids in memory.",
                n(&s.checkpoints.gateway_events_hot),
            ),
            (
                "dispatch_gateway_event_ids_archived",
                "gauge",
                "Payment gateway event ids archived in store.redb until they expire.",
                n(&s.checkpoints.gateway_events_archived),
            ),
            (
                "dispatch_alerts_hot",
                "gauge",
                "SOS alerts in memory: the open ones and those acknowledged since the last checkpoint.",
                alerts_hot as f64,
            ),
            ("dispatch_alerts_open", "gauge", "SOS alerts open: raised and not yet acknowledged.", alerts_open as f64),
            (
                "dispatch_payment_dead_letters",
                "gauge",
                "Card payments given up on after every retry (GET /v1/admin/payments/dead-letters).",
                dead_letters,
            ),
            (
                "dispatch_process_fd_limit",
                "gauge",
                "The soft RLIMIT_NOFILE the connection budget is sized from.",
                self.transport.fd_limit.load(r) as f64,
            ),
        ];
        for (name, kind, help, v) in server.iter().chain(engine_figures.iter()) {
            family(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
        self.transport.render(&mut o);
        // The engine's own histograms: microseconds shown as seconds, batch sizes as they are.
        histogram(&mut o, "dispatch_engine_fsync_seconds", "Duration of each WAL sync.", &s.sync_us.snapshot(), 1e6);
        histogram(
            &mut o,
            "dispatch_engine_batch_commands",
            "Commands answered per committed batch.",
            &s.batch_commands.snapshot(),
            1.0,
        );
        self.render_notifications(&mut o, engine);
        self.render_webhooks(&mut o, engine);
        render_retention_and_shedding(&mut o, engine);
        family(&mut o, "dispatch_build_info", "gauge", "Always 1; the labels name the build that is running.");
        let _ = writeln!(o, "dispatch_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        process::render(&mut o);
        o
    }
}

impl Metrics {
    /// The outbox: its depth and the age of its oldest pending item (from the view), the
    /// worker's deliveries and failures per channel.
    fn render_notifications(&self, o: &mut String, engine: &dispatch_core::Engine) {
        use dispatch_core::outbox::Channel;
        queue_gauges(
            o,
            "dispatch_notifications",
            crate::outbox::queue(engine),
            "Notifications in the outbox waiting to be sent.",
            "Age of the oldest notification waiting to be sent (0 when none is).",
        );
        family(
            o,
            "dispatch_notifications_delivered_total",
            "counter",
            "Notifications a provider accepted, by channel.",
        );
        for c in Channel::ALL {
            let _ = writeln!(
                o,
                "dispatch_notifications_delivered_total{{channel=\"{}\"}} {}",
                c.as_str(),
                self.notifications.delivered(c)
            );
        }
        family(
            o,
            "dispatch_notifications_failed_total",
            "counter",
            "Notification sends that failed (to be retried or given up), by channel.",
        );
        for c in Channel::ALL {
            let _ = writeln!(
                o,
                "dispatch_notifications_failed_total{{channel=\"{}\"}} {}",
                c.as_str(),
                self.notifications.failed(c)
            );
        }
    }
}

impl Metrics {
    /// The webhook deliveries: how many are pending and the age of the oldest event
    /// waiting, the worker's deliveries and failures.
    fn render_webhooks(&self, o: &mut String, engine: &dispatch_core::Engine) {
        queue_gauges(
            o,
            "dispatch_webhooks",
            crate::hooks::queue(engine),
            "Webhook deliveries waiting to be made.",
            "Age of the oldest event whose delivery is waiting (0 when none is).",
        );
        family(o, "dispatch_webhooks_delivered_total", "counter", "Webhook deliveries an endpoint took (2xx).");
        let _ = writeln!(o, "dispatch_webhooks_delivered_total {}", self.webhooks.delivered());
        family(
            o,
            "dispatch_webhooks_failed_total",
            "counter",
            "Webhook tries that failed (to be retried or given up).",
        );
        let _ = writeln!(o, "dispatch_webhooks_failed_total {}", self.webhooks.failed());
    }
}

/// A delivery queue's two gauges: `<prefix>_pending` and
/// `<prefix>_oldest_pending_age_seconds` (0 when nothing waits), from `(pending, oldest)`.
fn queue_gauges(
    o: &mut String,
    prefix: &str,
    (pending, oldest): (usize, Option<dispatch_core::clock::Timestamp>),
    pending_help: &str,
    age_help: &str,
) {
    use dispatch_core::clock::Clock;
    let now = dispatch_core::clock::SystemClock.now();
    let age_s = oldest.map_or(0.0, |t| (now.millis_since(t).max(0) as f64) / 1000.0);
    family(o, &format!("{prefix}_pending"), "gauge", pending_help);
    let _ = writeln!(o, "{prefix}_pending {pending}");
    family(o, &format!("{prefix}_oldest_pending_age_seconds"), "gauge", age_help);
    let _ = writeln!(o, "{prefix}_oldest_pending_age_seconds {age_s}");
}

// ----- issue 20: P -----
/// Retention (rows pruned from the history, by kind) and per-zone load shedding (commands
/// refused because their zone held its share of the writer's queue: one series per zone of
/// the catalog, so the label set is bounded by the zones that exist).
fn render_retention_and_shedding(o: &mut String, engine: &dispatch_core::Engine) {
    let (positions, chat) = engine.retention_pruned();
    family(
        o,
        "dispatch_retention_pruned_total",
        "counter",
        "History rows removed by retention since start: positions, and chat messages of archived trips.",
    );
    let _ = writeln!(o, "dispatch_retention_pruned_total{{kind=\"positions\"}} {positions}");
    let _ = writeln!(o, "dispatch_retention_pruned_total{{kind=\"chat\"}} {chat}");
    let shed = engine.zone_shed();
    let zones: Vec<_> = engine.read(|v| v.catalog().zones().map(|z| z.id).collect());
    family(
        o,
        "dispatch_zone_shed_total",
        "counter",
        "Commands refused 503 overloaded because their zone held its share of the writer's queue.",
    );
    for zone in zones {
        let n = shed.iter().find(|(z, _)| *z == zone).map_or(0, |(_, n)| *n);
        let _ = writeln!(o, "dispatch_zone_shed_total{{zone=\"{zone}\"}} {n}");
    }
}

/// One figure of a family without labels: name, type, help, value.
type Figure = (&'static str, &'static str, &'static str, f64);

/// Writes a family's `# HELP` and `# TYPE` lines (`help` is plain text: no backslash or
/// line break to escape).
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    debug_assert!(!help.contains(['\\', '\n']), "{name}: HELP text needs no escaping");
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one Prometheus histogram; bounds and sum are divided by `per_unit` (1e6 to
/// show microseconds as seconds; a division rounds exactly, so `50 µs` is `0.00005`).
fn histogram(o: &mut String, name: &str, help: &str, h: &dispatch_core::histogram::HistogramSnapshot, per_unit: f64) {
    family(o, name, "histogram", help);
    for (bound, n) in &h.buckets {
        let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {n}", *bound as f64 / per_unit);
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum {}", h.sum as f64 / per_unit);
    let _ = writeln!(o, "{name}_count {}", h.count);
}

/// The process's figures, as the Prometheus client libraries name them.
mod process {
    use std::fmt::Write;

    use super::family;

    /// What `/proc/self/stat` says (`proc(5)`), in its own units.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Stat {
        /// User and system CPU time, clock ticks.
        pub cpu_ticks: u64,
        /// Start time, clock ticks after boot.
        pub start_ticks: u64,
        /// Virtual memory size, bytes.
        pub vsize_bytes: u64,
        /// Resident set size, pages.
        pub rss_pages: u64,
    }

    /// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
    /// may hold spaces and parentheses itself: fields are counted after the last `)`.
    pub(super) fn parse_stat(line: &str) -> Option<Stat> {
        let (_, rest) = line.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `f[0]` is field 3 (the state): field k is `f[k - 3]`.
        let field = |k: usize| f.get(k - 3).and_then(|v| v.parse::<u64>().ok());
        Some(Stat {
            cpu_ticks: field(14)?.checked_add(field(15)?)?,
            start_ticks: field(22)?,
            vsize_bytes: field(23)?,
            rss_pages: field(24)?,
        })
    }

    /// The boot time, Unix seconds, from `/proc/stat`'s `btime` line.
    pub(super) fn parse_btime(text: &str) -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
    }

    /// Writes the `process_*` families the platform can give (Linux: all six; elsewhere
    /// `process_max_fds` only).
    pub(super) fn render(o: &mut String) {
        #[cfg(target_os = "linux")]
        linux(o);
        #[cfg(unix)]
        {
            // `None` is "unlimited": no number to give.
            if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
                family(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
                let _ = writeln!(o, "process_max_fds {max}");
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn linux(o: &mut String) {
        let ticks = rustix::param::clock_ticks_per_second();
        let stat = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(parse_stat);
        if let (Some(st), true) = (stat, ticks > 0) {
            let per_tick = |t: u64| t as f64 / ticks as f64;
            family(o, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
            let _ = writeln!(o, "process_cpu_seconds_total {}", per_tick(st.cpu_ticks));
            family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
            let _ = writeln!(o, "process_virtual_memory_bytes {}", st.vsize_bytes);
            let page = rustix::param::page_size() as u64;
            family(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            let _ = writeln!(o, "process_resident_memory_bytes {}", st.rss_pages.saturating_mul(page));
            if let Some(boot) = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_btime) {
                family(
                    o,
                    "process_start_time_seconds",
                    "gauge",
                    "Start time of the process since unix epoch in seconds.",
                );
                let _ = writeln!(o, "process_start_time_seconds {}", boot as f64 + per_tick(st.start_ticks));
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor is among them, as in the Go client's count.
            family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
            let _ = writeln!(o, "process_open_fds {}", fds.count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_histograms_are_rendered_in_the_prometheus_format() {
        let h = dispatch_core::histogram::HistogramSnapshot { buckets: vec![(50, 1), (100, 3)], count: 4, sum: 400 };
        let mut o = String::new();
        histogram(&mut o, "x_seconds", "X.", &h, 1e6);
        assert_eq!(
            o,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"0.00005\"} 1\n\
             x_seconds_bucket{le=\"0.0001\"} 3\nx_seconds_bucket{le=\"+Inf\"} 4\nx_seconds_sum 0.0004\n\
             x_seconds_count 4\n"
        );
    }

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a `)` of its own; utime 1500, stime 500,
        // starttime 12345, vsize 104857600, rss 2560 pages.
        let line = "4242 (dis patchd) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1500 500 0 0 20 0 9 0 \
                    12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0";
        let st = process::parse_stat(line).unwrap();
        assert_eq!(
            st,
            process::Stat { cpu_ticks: 2000, start_ticks: 12345, vsize_bytes: 104_857_600, rss_pages: 2560 }
        );
        assert_eq!(process::parse_stat("4242 (cut short) S 1 2"), None);
        assert_eq!(process::parse_stat("no parenthesis"), None);
        assert_eq!(process::parse_btime("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"), Some(1_700_000_000));
        assert_eq!(process::parse_btime("cpu 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_are_read_from_proc_on_linux() {
        let mut o = String::new();
        process::render(&mut o);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value: f64 = o
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("no {name} in {o}"))
                .parse()
                .unwrap();
            assert!(value >= 0.0, "{name} {value}");
            assert!(o.contains(&format!("# HELP {name} ")), "{o}");
        }
        let rss: f64 =
            o.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap().parse().unwrap();
        assert!(rss > 1e5, "a test process holds more than 100 kB: {rss}");
    }
}
