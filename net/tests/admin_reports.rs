//! The staff trip list's filters and the reports (issue 20, API.md v1.1 "Back office"):
//! a completed, a cancelled and an expired trip, listed by status, zone, rider, driver and
//! creation time and counted in the revenue and trips reports (JSON and CSV) while hot,
//! then the same answers once a checkpoint has moved them to the history, after a refund
//! of an archived trip, and after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use hyper::Method;
use serde_json::{Value, json};

use common::*;

/// Few records between checkpoints; trips expire after 3 s with no driver.
const CONFIG: &str = "[store]\ncheckpoint_every_records = 20\n[dispatch]\ntimeout_s = 3\n";

/// The hot trips of `status` (`GET /v1/admin/stats` counts the view's).
async fn hot(s: &Server, status: &str) -> u64 {
    s.get("/v1/admin/stats", ADMIN).await.expect(200)["trips"][status].as_u64().unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The sum of `field` over a report's items.
fn total(report: &Value, field: &str) -> i64 {
    report["items"].as_array().unwrap().iter().map(|i| i[field].as_i64().unwrap_or(0)).sum()
}

struct City {
    zone: String,
    rider: Value,
    driver: Value,
    /// Completed, cancelled by its rider, expired.
    trips: [Value; 3],
    fare: i64,
    /// Refunded of the completed trip.
    refunded: i64,
}

/// Every filter answers the same while the trips are hot and once they are archived.
async fn check_list(s: &Server, c: &City) {
    let [done, cancelled, expired] = &c.trips;
    let list = |q: String| async move { ids(&s.get(&format!("/v1/admin/trips?{q}"), ADMIN).await.expect(200)) };
    assert_eq!(list("status=completed".into()).await, vec![id(done)]);
    assert_eq!(list("status=cancelled".into()).await, vec![id(cancelled)]);
    assert_eq!(list("status=expired".into()).await, vec![id(expired)]);
    assert_eq!(list(format!("zone_id={}", c.zone)).await, vec![id(cancelled), id(done), id(expired)]);
    assert_eq!(list(format!("zone_id={}&status=expired", c.zone)).await, vec![id(expired)]);
    assert_eq!(list(format!("rider_id={}", id(&c.rider))).await, vec![id(done)]);
    assert_eq!(list(format!("rider_id={}&status=cancelled", id(&c.rider))).await, Vec::<String>::new());
    assert_eq!(list(format!("driver_id={}", id(&c.driver))).await, vec![id(done)]);
    let created = done["created_at"].as_str().unwrap();
    assert_eq!(list(format!("from={created}")).await, vec![id(cancelled), id(done)]);
    assert_eq!(list(format!("to={created}")).await, vec![id(expired)]);
    assert_eq!(list(format!("from={created}&to={}", cancelled["created_at"].as_str().unwrap())).await, vec![id(done)]);
    assert_eq!(list("from=2000-01-01&to=2000-01-02".into()).await, Vec::<String>::new());
    // Paged: one at a time, newest first.
    let first = s.get("/v1/admin/trips?limit=1", ADMIN).await.expect(200);
    assert_eq!(ids(&first), vec![id(cancelled)]);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(list(format!("limit=1&cursor={cursor}")).await, vec![id(done)]);
    // Bad filters are refused, naming the parameter.
    for (q, param) in [
        ("status=lost", "status"),
        ("zone_id=nope", "zone_id"),
        ("rider_id=x", "rider_id"),
        ("driver_id=x", "driver_id"),
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
    ] {
        let r = s.get(&format!("/v1/admin/trips?{q}"), ADMIN).await;
        r.expect_error(400, "invalid_request");
        assert!(r.text.contains(&format!("\"param\":\"{param}\"")), "{q}: {}", r.text);
    }
}

async fn check_reports(s: &Server, c: &City) {
    let (_, rider) = user(s, "rider", 900 + rand_suffix()).await;
    s.get("/v1/admin/reports/trips", &rider).await.expect_error(403, "forbidden");
    for group in ["day", "week", "month"] {
        let trips = s.get(&format!("/v1/admin/reports/trips?group={group}"), ADMIN).await.expect(200);
        assert_eq!(
            ["requested", "completed", "cancelled_by_rider", "cancelled_by_driver", "expired"]
                .map(|f| total(&trips, f)),
            [3, 1, 1, 0, 1],
            "{group}: {trips}"
        );
        let item = &trips["items"][0];
        assert!(item["period_start"].as_str().unwrap().ends_with("T00:00:00.000Z"), "{item}");
        assert!(item["match_p50_s"].as_u64().is_some_and(|s| (1..=60).contains(&s)), "{item}");
        let revenue = s.get(&format!("/v1/admin/reports/revenue?group={group}"), ADMIN).await.expect(200);
        assert_eq!(revenue["items"][0]["currency"], "EGP", "{revenue}");
        assert_eq!(total(&revenue, "trips_completed"), 1);
        assert_eq!(total(&revenue, "gross_minor"), c.fare);
        // 15 % commission, rounded half up.
        assert_eq!(total(&revenue, "commission_minor"), (c.fare * 1500 + 5000) / 10_000);
        assert_eq!((total(&revenue, "refunded_minor"), total(&revenue, "cancel_fees_minor")), (c.refunded, 0));
    }
    let zone = s.get(&format!("/v1/admin/reports/trips?zone_id={}", c.zone), ADMIN).await.expect(200);
    assert_eq!(total(&zone, "requested"), 3);
    let other = s.get("/v1/admin/reports/trips?zone_id=zon_00000000000000000001", ADMIN).await;
    if other.status == 200 {
        assert_eq!(total(&other.expect(200), "requested"), 0);
    }
    let old = s.get("/v1/admin/reports/revenue?from=2001-01-01&to=2001-02-01", ADMIN).await.expect(200);
    assert_eq!(old["items"], json!([]));
    // CSV: a header row and the same columns.
    let csv = s.call_with(Method::GET, "/v1/admin/reports/revenue", Some(ADMIN), None, &[("accept", "text/csv")]).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = csv.text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "period_start,currency,trips_completed,gross_minor,commission_minor,discount_minor,refunded_minor,cancel_fees_minor"
        )
    );
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!((row[1], row[2], row[3]), ("EGP", "1", c.fare.to_string().as_str()));
    let csv = s
        .call_with(Method::GET, "/v1/admin/reports/trips?group=month", Some(ADMIN), None, &[("accept", "text/csv")])
        .await;
    assert!(csv.text.starts_with("period_start,requested,completed,cancelled_by_rider,cancelled_by_driver,expired,match_p50_s,match_p95_s\r\n"), "{}", csv.text);
    // Bad parameters.
    for (q, param) in [
        ("group=year", "group"),
        ("from=2020-01-01&to=2024-01-01", "to"),
        ("from=2024-01-02&to=2024-01-01", "to"),
        ("from=noon", "from"),
        ("zone_id=x", "zone_id"),
    ] {
        let r = s.get(&format!("/v1/admin/reports/trips?{q}"), ADMIN).await;
        r.expect_error(400, "invalid_request");
        assert!(r.text.contains(&format!("\"param\":\"{param}\"")), "{q}: {}", r.text);
    }
}

fn rand_suffix() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trip_list_and_the_reports_answer_from_hot_trips_and_from_the_history() {
    let s = Server::start(&[], Some(CONFIG));
    let zone = id(&s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201));
    let (rider, rider_token) = user(&s, "rider", 1).await;
    let (_, other) = user(&s, "rider", 2).await;
    let (_, late) = user(&s, "rider", 3).await;
    // No driver yet: this one expires.
    let expired = create_trip(&s, &late).await;
    let deadline = std::time::Instant::now() + WAIT;
    while hot(&s, "expired").await == 0 {
        assert!(std::time::Instant::now() < deadline, "the trip never expired");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (driver, driver_token) = online_driver(&s, 4, HERE).await;
    let done = create_trip(&s, &rider_token).await;
    let t = id(&done);
    s.post(&format!("/v1/trips/{t}/accept"), &driver_token, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{t}/arrived"), &driver_token, json!({})).await.expect(200);
    let code = done["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{t}/start"), &driver_token, json!({"pickup_code": code})).await.expect(200);
    let completed = s.post(&format!("/v1/trips/{t}/complete"), &driver_token, json!({})).await.expect(200);
    let fare = completed["fare"]["final_minor"].as_i64().unwrap();
    // Created a millisecond later at least, so the order is certain.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cancelled = create_trip(&s, &other).await;
    s.post(&format!("/v1/trips/{}/cancel", id(&cancelled)), &other, json!({"reason_code": "changed_mind"}))
        .await
        .expect(200);
    let mut city = City { zone, rider, driver, trips: [done, cancelled, expired], fare, refunded: 0 };

    // Hot: straight after the trips ended.
    check_list(&s, &city).await;
    check_reports(&s, &city).await;

    // Records go by until checkpoints wrote the three trips and the writer archived them.
    archived(&s, 100).await;
    // Archived: the same answers, each trip counted once.
    check_list(&s, &city).await;
    check_reports(&s, &city).await;

    // A refund after the trip was archived brings it back to the hot state (the archived
    // copy stays until the next checkpoint writes the new revision): counted once, with
    // the refund, before and after.
    let t = id(&city.trips[0]);
    s.post(&format!("/v1/admin/trips/{t}/refund"), ADMIN, json!({"amount_minor": 100, "reason": "detour"}))
        .await
        .expect(201);
    city.refunded = 100;
    check_reports(&s, &city).await;
    archived(&s, 2_000).await;
    check_reports(&s, &city).await;
    check_list(&s, &city).await;

    // The rollups and the indexes are in the store: a restart reads them back.
    let mut s = s;
    s.sigterm();
    assert!(s.wait_exit().success());
    let data = s.data_dir();
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(&data, dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &[], Some(CONFIG));
    check_list(&s, &city).await;
    check_reports(&s, &city).await;
}

/// Sends records (users numbered from `n`) until no finished trip is hot.
async fn archived(s: &Server, n: u32) {
    let deadline = std::time::Instant::now() + WAIT;
    for n in n.. {
        if hot(s, "completed").await + hot(s, "cancelled").await + hot(s, "expired").await == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the finished trips never left the hot state");
        user(s, "rider", n).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
