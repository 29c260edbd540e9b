//! Counters and latency histograms for `GET /metrics`, written in the Prometheus text
//! format by hand (no metrics crate).
//!
//! Bounds: series are keyed by route *names* (a fixed set, never a raw path) and
//! status codes, so the number of series is bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

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

    /// The text exposition, with the engine's figures.
    pub fn render(&self, engine: &dispatch_core::Engine) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# TYPE dispatch_http_requests_total counter");
        for ((route, status), n) in self.requests.lock().iter() {
            let _ = writeln!(o, "dispatch_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(o, "# TYPE dispatch_http_request_duration_seconds histogram");
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
        let _ = writeln!(o, "# TYPE dispatch_rate_limited_total counter");
        for (class, n) in self.rate_limited.lock().iter() {
            let _ = writeln!(o, "dispatch_rate_limited_total{{class=\"{class}\"}} {n}");
        }
        let r = Ordering::Relaxed;
        let gauges: [(&str, &str, i64); 6] = [
            ("dispatch_ws_sockets_open", "gauge", self.sockets_open.load(r)),
            ("dispatch_ws_offers_sent_total", "counter", clamp(self.offers_sent.load(r))),
            ("dispatch_accepts_won_total", "counter", clamp(self.accepts_won.load(r))),
            ("dispatch_accepts_lost_total", "counter", clamp(self.accepts_lost.load(r))),
            ("dispatch_ws_slow_sockets_closed_total", "counter", clamp(self.slow_sockets_closed.load(r))),
            ("dispatch_ws_location_frames_dropped_total", "counter", clamp(self.location_frames_dropped.load(r))),
        ];
        let s = engine.stats();
        let alerts_hot = engine.read(|v| v.alerts().count());
        let engine_figures: [(&str, &str, i64); 24] = [
            ("dispatch_engine_queue_depth", "gauge", clamp(engine.queue_depth() as u64)),
            ("dispatch_engine_queue_capacity", "gauge", clamp(engine.queue_capacity() as u64)),
            ("dispatch_engine_last_batch_size", "gauge", clamp(s.last_batch.load(r))),
            ("dispatch_engine_batches_total", "counter", clamp(s.batches.load(r))),
            ("dispatch_engine_commands_applied_total", "counter", clamp(s.applied.load(r))),
            ("dispatch_engine_commands_refused_total", "counter", clamp(s.refused.load(r))),
            ("dispatch_engine_overloaded_total", "counter", clamp(s.overloaded.load(r))),
            ("dispatch_engine_fsync_last_microseconds", "gauge", clamp(s.last_sync_us.load(r))),
            ("dispatch_engine_fsync_max_microseconds", "gauge", clamp(s.max_sync_us.load(r))),
            ("dispatch_engine_read_only", "gauge", i64::from(engine.is_read_only())),
            // Positions refused as implausible jumps (suspected spoofing).
            ("dispatch_engine_spoofing_suspected_total", "counter", clamp(s.spoofing_suspected.load(r))),
            // Position reports held back by the minimum interval (published later, never logged).
            ("dispatch_engine_positions_coalesced_total", "counter", clamp(s.locations_coalesced.load(r))),
            ("dispatch_engine_positions_unrecorded_total", "counter", clamp(engine.positions_lost())),
            // Batches whose write failed (each one put the engine in read-only mode).
            ("dispatch_engine_failed_batches_total", "counter", clamp(s.failed_batches.load(r))),
            ("dispatch_checkpoints_written_total", "counter", clamp(s.checkpoints.written.load(r))),
            ("dispatch_checkpoints_failed_total", "counter", clamp(s.checkpoints.failed.load(r))),
            ("dispatch_checkpoint_last_lsn", "gauge", clamp(s.checkpoints.last_lsn.load(r))),
            ("dispatch_checkpoint_last_rows", "gauge", clamp(s.checkpoints.last_rows.load(r))),
            ("dispatch_checkpoint_last_microseconds", "gauge", clamp(s.checkpoints.last_micros.load(r))),
            // Idempotency keys and gateway event ids: hot (in memory, the last 10 minutes'),
            // archived (in store.redb until they expire).
            ("dispatch_idempotency_keys_hot", "gauge", clamp(s.checkpoints.keys_hot.load(r))),
            ("dispatch_idempotency_keys_archived", "gauge", clamp(s.checkpoints.keys_archived.load(r))),
            ("dispatch_gateway_event_ids_hot", "gauge", clamp(s.checkpoints.gateway_events_hot.load(r))),
            ("dispatch_gateway_event_ids_archived", "gauge", clamp(s.checkpoints.gateway_events_archived.load(r))),
            // SOS alerts in memory: the open ones and those acknowledged since the last
            // checkpoint (which moves them to store.redb): bounded, never growing for ever.
            ("dispatch_alerts_hot", "gauge", clamp(alerts_hot as u64)),
        ];
        for (name, kind, v) in gauges.iter().chain(engine_figures.iter()) {
            let _ = writeln!(o, "# TYPE {name} {kind}\n{name} {v}");
        }
        self.transport.render(&mut o);
        // The engine's own histograms: microseconds shown as seconds, batch sizes as they are.
        histogram(&mut o, "dispatch_engine_fsync_seconds", &s.sync_us.snapshot(), 1e6);
        histogram(&mut o, "dispatch_engine_batch_commands", &s.batch_commands.snapshot(), 1.0);
        o
    }
}

/// Writes one Prometheus histogram; bounds and sum are divided by `per_unit` (1e6 to
/// show microseconds as seconds; a division rounds exactly, so `50 µs` is `0.00005`).
fn histogram(o: &mut String, name: &str, h: &dispatch_core::histogram::HistogramSnapshot, per_unit: f64) {
    let _ = writeln!(o, "# TYPE {name} histogram");
    for (bound, n) in &h.buckets {
        let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {n}", *bound as f64 / per_unit);
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum {}", h.sum as f64 / per_unit);
    let _ = writeln!(o, "{name}_count {}", h.count);
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_histograms_are_rendered_in_the_prometheus_format() {
        let h = dispatch_core::histogram::HistogramSnapshot { buckets: vec![(50, 1), (100, 3)], count: 4, sum: 400 };
        let mut o = String::new();
        histogram(&mut o, "x_seconds", &h, 1e6);
        assert_eq!(
            o,
            "# TYPE x_seconds histogram\nx_seconds_bucket{le=\"0.00005\"} 1\nx_seconds_bucket{le=\"0.0001\"} 3\n\
             x_seconds_bucket{le=\"+Inf\"} 4\nx_seconds_sum 0.0004\nx_seconds_count 4\n"
        );
    }
}
