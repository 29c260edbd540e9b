//! Fault tests: a full disk on write, a failing fsync, a failing truncate, create or
//! delete, injected through the WAL's I/O layer. Each checks what the caller sees
//! (disk full or not, poisoned or not) and that the log on disk stays consistent.

use std::fs;
use std::sync::PoisonError;

use super::{TestResult, append_lsns, assert_records, read_all, segment_files, small_segments, write_synced};
use crate::error::StorageError;
use crate::log::CommandLog;
use crate::wal::io::{Countdown, FaultPlan};
use crate::wal::{Wal, WalConfig};

fn arm(wal: &Wal, change: impl FnOnce(&mut FaultPlan)) {
    let faults = wal.faults();
    let mut plan = faults.lock().unwrap_or_else(PoisonError::into_inner);
    change(&mut plan);
}

fn disarm(wal: &Wal) {
    arm(wal, |plan| *plan = FaultPlan::default());
}

fn assert_poisoned_disk_full<T: std::fmt::Debug>(result: Result<T, StorageError>) {
    match result {
        Err(error) => assert!(error.is_poisoned() && error.is_disk_full(), "{error}"),
        Ok(value) => panic!("expected a poisoned log, got {value:?}"),
    }
}

#[test]
fn a_short_write_on_a_full_disk_is_cut_off_and_the_retry_lands_at_the_same_lsn() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), WalConfig::default(), 10)?;
    append_lsns(&mut wal, 11..=12)?; // appended, not synced
    let (segment, _, end) = wal.active_offsets();
    arm(&wal, |plan| {
        plan.writes = Countdown::once_after(0);
        plan.partial_write_bytes = 21;
    });

    let error = append_lsns(&mut wal, 13..=15).err().ok_or("the write should fail")?;
    assert!(error.is_disk_full(), "{error}");
    assert!(!error.is_poisoned() && !wal.is_poisoned());
    // The partial batch is gone, and the cut synced what came before it.
    assert_eq!(fs::metadata(&segment)?.len(), end);
    assert_eq!((wal.last_lsn(), wal.durable_lsn()), (12, 12));

    assert_eq!(append_lsns(&mut wal, 13..=15)?, 13);
    wal.sync()?;
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), WalConfig::default())?;
    assert!(report.is_clean(), "{report:?}");
    assert_records(&read_all(&wal, 1)?, 1, 15);
    Ok(())
}

#[test]
fn a_disk_that_stays_full_fails_every_append_until_space_returns() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), WalConfig::default(), 5)?;
    arm(&wal, |plan| {
        plan.writes = Countdown::always_after(0);
        plan.partial_write_bytes = 3;
    });
    for _ in 0..3 {
        let error = append_lsns(&mut wal, 6..=6).err().ok_or("the write should fail")?;
        assert!(error.is_disk_full() && !error.is_poisoned(), "{error}");
        assert_records(&read_all(&wal, 1)?, 1, 5);
    }
    disarm(&wal);
    assert_eq!(append_lsns(&mut wal, 6..=6)?, 6);
    assert_eq!(wal.sync()?, 6);
    assert_records(&read_all(&wal, 1)?, 1, 6);
    Ok(())
}

#[test]
fn an_error_other_than_a_full_disk_is_not_reported_as_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), WalConfig::default(), 2)?;
    arm(&wal, |plan| {
        plan.writes = Countdown::once_after(0);
        plan.error_kind = std::io::ErrorKind::Other;
    });
    let error = append_lsns(&mut wal, 3..=3).err().ok_or("the write should fail")?;
    assert!(!error.is_disk_full(), "{error}");
    Ok(())
}

#[test]
fn a_failed_sync_poisons_the_log_until_reopen_cuts_back_to_what_was_durable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), WalConfig::default(), 10)?;
    append_lsns(&mut wal, 11..=14)?;
    arm(&wal, |plan| plan.syncs = Countdown::once_after(0));

    let error = wal.sync().err().ok_or("the sync should fail")?;
    assert!(error.is_disk_full() && !error.is_poisoned(), "{error}");
    assert!(wal.is_poisoned());
    assert_eq!((wal.last_lsn(), wal.durable_lsn()), (14, 10));
    // Every call now fails, saying the disk was full, even with the fault gone.
    assert_poisoned_disk_full(wal.sync());
    assert_poisoned_disk_full(append_lsns(&mut wal, 15..=15));
    assert_poisoned_disk_full(wal.read_from(1).map(|_| ()));
    assert_poisoned_disk_full(wal.release_below(1));

    // Records 11..=14 are in the page cache, but their sync failed: never acknowledged,
    // they must not come back.
    let report = wal.reopen()?;
    assert!(!wal.is_poisoned());
    assert_eq!(report.last_lsn, 10);
    assert!(report.truncated_bytes > 0);
    assert_eq!((wal.last_lsn(), wal.durable_lsn()), (10, 10));
    assert_eq!(append_lsns(&mut wal, 11..=11)?, 11);
    wal.sync()?;
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), WalConfig::default())?;
    assert!(report.is_clean());
    assert_records(&read_all(&wal, 1)?, 1, 11);
    Ok(())
}

#[test]
fn a_reopen_while_fsync_still_fails_keeps_the_log_poisoned() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), WalConfig::default(), 3)?;
    append_lsns(&mut wal, 4..=4)?;
    arm(&wal, |plan| plan.syncs = Countdown::always_after(0));
    assert!(wal.sync().is_err());
    for _ in 0..2 {
        let error = wal.reopen().err().ok_or("reopen should fail")?;
        assert!(error.is_disk_full(), "{error}");
        assert!(wal.is_poisoned());
        assert_poisoned_disk_full(wal.sync());
    }
    disarm(&wal);
    let report = wal.reopen()?;
    assert_eq!(report.last_lsn, 3);
    assert_eq!(append_lsns(&mut wal, 4..=4)?, 4);
    wal.sync()?;
    assert_records(&read_all(&wal, 1)?, 1, 4);
    Ok(())
}

#[test]
fn a_write_failure_that_cannot_be_cut_off_poisons_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), WalConfig::default(), 4)?;
    arm(&wal, |plan| {
        plan.writes = Countdown::once_after(0);
        plan.partial_write_bytes = 9;
        plan.set_lens = Countdown::once_after(0);
    });
    let error = append_lsns(&mut wal, 5..=6).err().ok_or("the write should fail")?;
    assert!(error.is_disk_full(), "{error}");
    assert!(wal.is_poisoned());
    assert_poisoned_disk_full(append_lsns(&mut wal, 5..=6));

    // The 9 stray bytes are still in the file; reopening cuts them.
    let report = wal.reopen()?;
    assert_eq!((report.last_lsn, report.truncated_bytes), (4, 9));
    assert_eq!(append_lsns(&mut wal, 5..=6)?, 5);
    wal.sync()?;
    assert_records(&read_all(&wal, 1)?, 1, 6);
    Ok(())
}

/// Fills the active segment of a small-segment log until the next append rotates.
fn full_segment_log(dir: &std::path::Path) -> Result<Wal, Box<dyn std::error::Error>> {
    let mut wal = write_synced(dir, small_segments(), 1)?;
    let mut next = 2;
    while wal.active_offsets().2 < small_segments().segment_bytes_max {
        append_lsns(&mut wal, next..=next)?;
        wal.sync()?;
        next += 1;
    }
    assert_eq!(wal.segment_count(), 1);
    Ok(wal)
}

#[test]
fn a_rotation_that_cannot_create_a_segment_fails_cleanly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = full_segment_log(dir.path())?;
    let last = wal.last_lsn();
    arm(&wal, |plan| plan.creates = Countdown::once_after(0));
    let error = append_lsns(&mut wal, last + 1..=last + 1).err().ok_or("should fail")?;
    assert!(error.is_disk_full() && !wal.is_poisoned(), "{error}");
    assert_eq!((wal.segment_count(), wal.last_lsn()), (1, last));
    assert_eq!(segment_files(dir.path())?.len(), 1);

    assert_eq!(append_lsns(&mut wal, last + 1..=last + 1)?, last + 1);
    wal.sync()?;
    assert_eq!(wal.segment_count(), 2);
    assert_records(&read_all(&wal, 1)?, 1, last + 1);
    Ok(())
}

#[test]
fn a_rotation_whose_header_write_fails_removes_the_new_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = full_segment_log(dir.path())?;
    let last = wal.last_lsn();
    arm(&wal, |plan| {
        plan.writes = Countdown::once_after(0);
        plan.partial_write_bytes = 7;
    });
    let error = append_lsns(&mut wal, last + 1..=last + 1).err().ok_or("should fail")?;
    assert!(error.is_disk_full() && !wal.is_poisoned(), "{error}");
    assert_eq!(segment_files(dir.path())?.len(), 1);
    assert_eq!(append_lsns(&mut wal, last + 1..=last + 1)?, last + 1);
    wal.sync()?;
    assert_records(&read_all(&wal, 1)?, 1, last + 1);
    Ok(())
}

#[test]
fn a_rotation_whose_directory_fsync_fails_poisons_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = full_segment_log(dir.path())?;
    let last = wal.last_lsn();
    // Everything is synced, so the rotation's fsyncs are: the new segment, then the
    // directory.
    arm(&wal, |plan| plan.syncs = Countdown::once_after(1));
    let error = append_lsns(&mut wal, last + 1..=last + 1).err().ok_or("should fail")?;
    assert!(error.is_disk_full() && wal.is_poisoned(), "{error}");

    let report = wal.reopen()?;
    assert_eq!(report.last_lsn, last);
    assert_eq!(append_lsns(&mut wal, last + 1..=last + 3)?, last + 1);
    wal.sync()?;
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), small_segments())?;
    assert!(report.is_clean());
    assert_records(&read_all(&wal, 1)?, 1, last + 3);
    Ok(())
}

#[test]
fn a_rotation_syncs_the_closed_segment_first() -> TestResult {
    // Only the last segment may end in a torn write: unsynced records of a full
    // segment are made durable before the next segment is created.
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), small_segments(), 1)?;
    let mut next = 2;
    while wal.active_offsets().2 < small_segments().segment_bytes_max {
        append_lsns(&mut wal, next..=next)?;
        next += 1;
    }
    assert_eq!(wal.durable_lsn(), 1);
    append_lsns(&mut wal, next..=next)?;
    assert_eq!(wal.segment_count(), 2);
    assert_eq!(wal.durable_lsn(), next - 1);
    Ok(())
}

#[test]
fn a_failed_delete_in_release_below_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), small_segments(), 200)?;
    let files = segment_files(dir.path())?;
    let first = wal.first_lsn();
    arm(&wal, |plan| plan.removes = Countdown::once_after(0));
    let error = wal.release_below(201).err().ok_or("should fail")?;
    assert!(error.is_disk_full() && !wal.is_poisoned(), "{error}");
    assert_eq!(wal.first_lsn(), first);
    assert_eq!(segment_files(dir.path())?, files);
    assert_records(&read_all(&wal, 1)?, 1, 200);

    wal.release_below(201)?;
    assert_eq!(segment_files(dir.path())?.len(), 1);
    Ok(())
}

#[test]
fn a_failed_directory_fsync_in_release_below_poisons_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut wal = write_synced(dir.path(), small_segments(), 200)?;
    arm(&wal, |plan| plan.syncs = Countdown::once_after(0));
    assert!(wal.release_below(201).is_err());
    assert!(wal.is_poisoned());
    let report = wal.reopen()?;
    assert_eq!(report.last_lsn, 200);
    assert_records(&read_all(&wal, report.first_lsn)?, report.first_lsn, 200);
    Ok(())
}
