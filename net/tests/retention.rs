//! Black-box tests of retention and per-zone load shedding on a real `dispatchd` (issue
//! 20): `[retention] positions_days` reaches the engine (positions older than it are pruned
//! after a restart whose clock is days later: `--clock-offset-s`), both figures are in
//! `/metrics`, and the new keys are checked at start. The pruning itself (exact days,
//! bounded batches, chat of archived trips, resuming after a restart) and the zone shares
//! (a stalled writer, one zone shed while others go on) are pinned by dispatch-core's
//! tests, which control the clock and the log.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_older_than_positions_days_are_pruned_by_the_engine() {
    let config = Some("[retention]\npositions_days = 1\n");
    let mut s = Server::start(&[], config);
    let zone = s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let zone_id = zone["id"].as_str().unwrap().to_owned();
    online_driver(&s, 1, HERE).await;
    assert_eq!(s.metric("dispatch_retention_pruned_total{kind=\"positions\"}").await, 0.0);
    assert_eq!(s.metric("dispatch_retention_pruned_total{kind=\"chat\"}").await, 0.0);
    assert_eq!(s.metric(&format!("dispatch_zone_shed_total{{zone=\"{zone_id}\"}}")).await, 0.0);
    // A clean stop writes the positions still waiting for the tracker.
    s.sigterm();
    assert!(s.wait_exit().success());

    // Three days later, by the engine's clock: the day-old track goes by itself.
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s = Server::start_in(dir, &["--clock-offset-s", "259200"], config);
    let start = std::time::Instant::now();
    while s.metric("dispatch_retention_pruned_total{kind=\"positions\"}").await < 1.0 {
        assert!(start.elapsed() < WAIT, "the old positions were never pruned");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_zone_share_keys_are_checked_at_start() {
    for bad in [
        "[retention]\npositions_days = 0\n",
        "[retention]\npositions_days = 3651\n",
        "[limits]\nzone_queue_share_pct = 0\n",
        "[limits]\nzone_queue_share_pct = 101\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dispatch.toml");
        std::fs::write(&path, bad).unwrap();
        let out = std::process::Command::new(dispatchd_bin())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .env("DISPATCH_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was taken");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("positions_days") || said.contains("zone_queue_share_pct"), "{bad}: {said}");
    }
}
