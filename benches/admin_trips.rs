//! The staff trip list over a large history (issue 20): `History::find_trips` filtered by
//! a rare status (`expired`, 1 trip in 1,000) over a history of 50,000 trips and one of
//! 5,000,000, which should answer in the same time (the indexes make a page cost O(page)
//! rows, whatever the history holds). Also: a page deep in the list (by cursor), status
//! with a zone, and status with a creation-time range (the middle half).
//!
//! The histories are built through the history's checkpoint write path
//! (`History::import_trips`: the trip rows, their index rows and the report rollups, in
//! batches of 50,000 trips a transaction), not through the API. Each size prints the fill
//! time, the store's size, and p50/p99 of each query (page of 20, page cache warm).
//!
//! Run: `cargo bench --bench admin_trips` (long: the 5,000,000-trip fill takes minutes
//! and about 5 GB of disk; `DISPATCH_BENCH_DIR` picks the disk, `DISPATCH_BENCH_TRIPS` the
//! large size, e.g. `500000`). Not run in CI.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use dispatch::scenario::{ensure_zone, near_center, ride_from, user};
use dispatch_core::clock::Timestamp;
use dispatch_core::history::History;
use dispatch_core::id::{TripId, UserId, ZoneId};
use dispatch_core::trip::{CancelReason, Cancellation, CancelledBy};
use dispatch_core::trip_index::TripQuery;
use dispatch_core::{Engine, EngineConfig, Role, Trip, TripStatus};

mod common;
use common::{bench_dir, percentile};

const BATCH: u64 = 50_000;
const PAGE: usize = 20;
const QUERIES: usize = 2_000;
const ZONES: u64 = 20;
const BASE_MS: i64 = 1_750_000_000_000;
/// One trip every 6 s: 5,000,000 trips span about a year.
const STEP_MS: i64 = 6_000;

fn template() -> Trip {
    let engine = Engine::open(EngineConfig::default()).unwrap();
    ensure_zone(&engine).unwrap();
    let rider = user(&engine, Role::Rider, 1).unwrap();
    let trip = engine.create_trip(rider, ride_from(near_center(0.0, 0.0).unwrap()).unwrap()).unwrap();
    (*trip).clone()
}

/// Trip `i`: expired one in 1,000, cancelled by its rider one in 20, else completed.
fn trip(template: &Trip, i: u64) -> Arc<Trip> {
    let mut t = template.clone();
    let created = Timestamp::from_millis(BASE_MS + i as i64 * STEP_MS);
    let ended = Timestamp::from_millis(created.as_millis() + 1_200_000);
    t.id = TripId::from_raw(i + 1).unwrap();
    t.zone_id = ZoneId::from_raw(1 + i % ZONES).unwrap();
    t.rider_id = UserId::from_raw(1 + i % 200_000).unwrap();
    t.created_at = created;
    t.searching_since = created;
    t.updated_at = ended;
    t.ended_at = Some(ended);
    if i % 1000 == 999 {
        t.status = TripStatus::Expired;
    } else if i % 20 == 7 {
        t.status = TripStatus::Cancelled;
        t.cancellation =
            Some(Cancellation { by: CancelledBy::Rider, code: CancelReason::Other, reason: String::new(), at: ended });
    } else {
        t.status = TripStatus::Completed;
        t.driver_id = UserId::from_raw(1_000_000 + i % 50_000);
        t.accepted_at = Some(Timestamp::from_millis(created.as_millis() + 4_000 + (i % 50) as i64 * 1000));
        t.fare.final_minor = Some(t.fare.estimate_minor);
        t.fare.final_breakdown = Some(t.fare.estimate_breakdown);
    }
    Arc::new(t)
}

fn time_query(name: &str, history: &History, q: &TripQuery, cursor: Option<(i64, TripId)>) {
    let mut samples = Vec::with_capacity(QUERIES);
    let mut rows = 0;
    for _ in 0..QUERIES {
        let start = Instant::now();
        let page = history.find_trips(q, cursor, PAGE).unwrap();
        samples.push(start.elapsed());
        assert_eq!(page.trips.len(), PAGE, "{name}: a full page");
        rows = page.rows_read;
    }
    samples.sort();
    println!(
        "  {name:<40} p50 {:>9.1?}  p99 {:>9.1?}  rows read {rows}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
}

fn run(n: u64, template: &Trip) {
    let dir = bench_dir();
    let history = History::open(dir.path()).unwrap();
    let start = Instant::now();
    let mut lsn = 0;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let batch: Vec<Arc<Trip>> = (i..end).map(|k| trip(template, k)).collect();
        lsn += 1;
        history.import_trips(lsn, &batch).unwrap();
        i = end;
    }
    let fill = start.elapsed();
    let bytes = std::fs::metadata(dispatch_core::history::path(dir.path())).map(|m| m.len()).unwrap_or(0);
    println!(
        "{n} trips: filled in {fill:.1?} ({:.0} trips/s), store {} MiB",
        n as f64 / fill.as_secs_f64(),
        bytes >> 20
    );
    let expired = TripQuery { status: Some(TripStatus::Expired), ..TripQuery::default() };
    time_query("expired, first page", &history, &expired, None);
    // A cursor in the middle of the history.
    let mid = n / 2;
    let cursor = Some((BASE_MS + mid as i64 * STEP_MS, TripId::from_raw(mid + 1).unwrap()));
    time_query("expired, page at the middle", &history, &expired, cursor);
    let zone = TripQuery { zone: ZoneId::from_raw(1 + 999 % ZONES), ..expired };
    time_query("expired in one zone", &history, &zone, None);
    // The middle half of the history's time span.
    let span_ms = n as i64 * STEP_MS;
    let ranged = TripQuery {
        from: Some(Timestamp::from_millis(BASE_MS + span_ms / 4)),
        to: Some(Timestamp::from_millis(BASE_MS + 3 * span_ms / 4)),
        status: Some(TripStatus::Cancelled),
        ..TripQuery::default()
    };
    time_query("cancelled, the middle half of the span", &history, &ranged, None);
    drop(history);
}

fn main() {
    let big = std::env::var("DISPATCH_BENCH_TRIPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000_000);
    let template = template();
    println!("admin trip list, pages of {PAGE}, {QUERIES} queries each");
    run(50_000, &template);
    run(big, &template);
}
