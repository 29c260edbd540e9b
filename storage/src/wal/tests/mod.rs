//! Tests of the WAL through its public surface (plus two test-only accessors: the
//! fault plan and the active segment's offsets).
//!
//! - this file: helpers, appends and reads, rotation, release, refusals;
//! - `crash`: cuts and flipped bytes at every offset of the last records;
//! - `faults`: a full disk and failing fsyncs, injected through the I/O layer;
//! - `model`: property tests against what was synced, and against `MemLog`.

mod crash;
mod faults;
mod model;

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::StorageError;
use crate::log::{CommandLog, Lsn, Record};
use crate::wal::format::{SEGMENT_HEADER_BYTES, encode_segment_header, segment_file_name};
use crate::wal::{RecoveryPolicy, SEGMENT_BYTES_MIN, Wal, WalConfig};

pub(super) type TestResult = Result<(), Box<dyn Error>>;

/// The payload of record `lsn` in these tests: 1 to 90 bytes, all depending on `lsn`.
pub(super) fn payload(lsn: Lsn) -> Vec<u8> {
    let len = 1 + (lsn * 37 % 90) as usize;
    (0..len).map(|i| (lsn as usize).wrapping_mul(31).wrapping_add(i * 7) as u8).collect()
}

/// Appends the records `lsns` (payloads from [`payload`]) as one batch.
pub(super) fn append_lsns(log: &mut dyn CommandLog, lsns: std::ops::RangeInclusive<Lsn>) -> Result<Lsn, StorageError> {
    let payloads: Vec<Vec<u8>> = lsns.map(payload).collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    log.append(&slices)
}

pub(super) fn read_all(log: &dyn CommandLog, from: Lsn) -> Result<Vec<Record>, StorageError> {
    log.read_from(from)?.collect()
}

/// Checks that `records` are exactly `first..=last` with the test payloads.
pub(super) fn assert_records(records: &[Record], first: Lsn, last: Lsn) {
    let lsns: Vec<Lsn> = records.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (first..=last).collect::<Vec<_>>());
    for record in records {
        assert_eq!(record.payload, payload(record.lsn), "payload of lsn {}", record.lsn);
    }
}

pub(super) fn small_segments() -> WalConfig {
    WalConfig { segment_bytes_max: SEGMENT_BYTES_MIN, ..WalConfig::default() }
}

/// The segment files of `dir`, in name (= LSN) order.
pub(super) fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "wal"));
    files.sort();
    Ok(files)
}

/// A copy of the segment files of `dir` in a new directory.
pub(super) fn copy_log(dir: &Path) -> Result<TempDir, std::io::Error> {
    let copy = tempfile::tempdir()?;
    for file in segment_files(dir)? {
        if let Some(name) = file.file_name() {
            fs::copy(&file, copy.path().join(name))?;
        }
    }
    Ok(copy)
}

/// Writes records `1..=count` in batches of 1 to 7, syncing each, into `dir`.
pub(super) fn write_synced(dir: &Path, config: WalConfig, count: Lsn) -> Result<Wal, Box<dyn Error>> {
    let (mut wal, _) = Wal::open(dir, config)?;
    let mut next = 1;
    while next <= count {
        let last = (next + next % 7).min(count);
        assert_eq!(append_lsns(&mut wal, next..=last)?, next);
        assert_eq!(wal.sync()?, last);
        next = last + 1;
    }
    Ok(wal)
}

fn snapshot(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, std::io::Error> {
    segment_files(dir)?.into_iter().map(|path| fs::read(&path).map(|bytes| (path, bytes))).collect()
}

#[test]
fn a_new_directory_starts_an_empty_log_at_lsn_1() -> TestResult {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("nested").join("wal");
    let (wal, report) = Wal::open(&dir, WalConfig::default())?;
    assert_eq!((report.records, report.first_lsn, report.last_lsn), (0, 1, 0));
    assert!(report.is_clean() && report.damage.is_none());
    assert_eq!((wal.last_lsn(), wal.durable_lsn(), wal.first_lsn()), (0, 0, 1));
    assert_eq!(segment_files(&dir)?, vec![dir.join("00000000000000000001.wal")]);
    assert_eq!(read_all(&wal, 1)?, vec![]);
    Ok(())
}

#[test]
fn records_read_back_only_once_synced_and_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default())?;
    assert_eq!(append_lsns(&mut wal, 1..=3)?, 1);
    assert_eq!((wal.last_lsn(), wal.durable_lsn()), (3, 0));
    assert_eq!(read_all(&wal, 1)?, vec![]);
    assert_eq!(wal.sync()?, 3);
    assert_eq!(append_lsns(&mut wal, 4..=4)?, 4);
    assert_records(&read_all(&wal, 0)?, 1, 3);
    assert_records(&read_all(&wal, 2)?, 2, 3);
    assert_eq!(read_all(&wal, 4)?, vec![]);
    wal.sync()?;
    drop(wal);

    let (wal, report) = Wal::open(dir.path(), WalConfig::default())?;
    assert!(report.is_clean());
    assert_eq!((report.records, report.last_lsn), (4, 4));
    assert_eq!((wal.last_lsn(), wal.durable_lsn()), (4, 4));
    assert_records(&read_all(&wal, 1)?, 1, 4);
    Ok(())
}

#[test]
fn empty_payloads_and_the_largest_record_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default())?;
    let largest = vec![0xA5u8; crate::RECORD_BYTES_MAX];
    wal.append(&[b"", &largest, b"x"])?;
    wal.sync()?;
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), WalConfig::default())?;
    let records = read_all(&wal, 1)?;
    let payloads: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b""[..], &largest[..], &b"x"[..]]);
    Ok(())
}

#[test]
fn a_refused_batch_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default())?;
    append_lsns(&mut wal, 1..=2)?;
    let too_big = vec![0u8; crate::RECORD_BYTES_MAX + 1];
    assert!(matches!(wal.append(&[b"ok", &too_big]), Err(StorageError::RecordTooLarge { .. })));
    assert!(matches!(wal.append(&[]), Err(StorageError::InvalidBatch { .. })));
    assert_eq!(wal.last_lsn(), 2);
    assert_eq!(append_lsns(&mut wal, 3..=3)?, 3);
    wal.sync()?;
    assert_records(&read_all(&wal, 1)?, 1, 3);
    Ok(())
}

#[test]
fn invalid_segment_sizes_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    for segment_bytes_max in [0, SEGMENT_BYTES_MIN - 1, super::SEGMENT_BYTES_MAX + 1] {
        let config = WalConfig { segment_bytes_max, ..WalConfig::default() };
        assert!(matches!(Wal::open(dir.path(), config), Err(StorageError::InvalidConfig { .. })));
    }
    Ok(())
}

#[test]
fn one_fdatasync_per_sync_and_none_when_nothing_is_new() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default())?;
    let faults = wal.faults();
    let syncs = || faults.lock().map(|plan| plan.file_syncs).unwrap_or(u64::MAX);
    let before = syncs();
    append_lsns(&mut wal, 1..=100)?;
    append_lsns(&mut wal, 101..=200)?;
    assert_eq!(syncs(), before);
    wal.sync()?;
    assert_eq!(syncs(), before + 1);
    wal.sync()?;
    assert_eq!(syncs(), before + 1);
    Ok(())
}

#[test]
fn segments_rotate_at_the_configured_size_and_reopen_whole() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = small_segments();
    let wal = write_synced(dir.path(), config.clone(), 300)?;
    let segments = wal.segment_count();
    assert!(segments >= 5, "{segments} segments");
    drop(wal);

    let files = segment_files(dir.path())?;
    assert_eq!(files.len(), segments);
    let (wal, report) = Wal::open(dir.path(), config)?;
    assert!(report.is_clean());
    assert_eq!((report.segments, report.last_lsn), (segments, 300));
    let records = read_all(&wal, 1)?;
    assert_records(&records, 1, 300);

    // Each file is named after its first record, and every closed segment reached the
    // limit before the next began, exceeding it by at most one batch.
    let largest_batch = 8 * (16 + 90) as u64;
    for (index, file) in files.iter().enumerate() {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let first: Lsn = name.trim_end_matches(".wal").parse()?;
        let header = fs::read(file)?;
        assert_eq!(&header[..SEGMENT_HEADER_BYTES], &encode_segment_header(first)[..]);
        let len = header.len() as u64;
        if index + 1 < files.len() {
            assert!(len >= SEGMENT_BYTES_MIN && len < SEGMENT_BYTES_MIN + largest_batch, "{len}");
        }
    }
    // Reads starting inside any segment.
    for from in [1, 17, 150, 299, 300, 301] {
        assert_records(&read_all(&wal, from)?, from, 300);
    }
    Ok(())
}

#[test]
fn release_below_deletes_whole_segments_entirely_below() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = small_segments();
    let mut wal = write_synced(dir.path(), config.clone(), 300)?;
    let files = segment_files(dir.path())?;
    let firsts: Vec<Lsn> =
        files.iter().filter_map(|f| f.file_name()?.to_str()?.trim_end_matches(".wal").parse().ok()).collect();

    // One below the start of the third segment: the first segment goes, the second
    // (which holds that LSN) stays.
    wal.release_below(firsts[2] - 1)?;
    assert_eq!(segment_files(dir.path())?, files[1..].to_vec());
    assert_eq!(wal.first_lsn(), firsts[1]);
    wal.release_below(firsts[2])?;
    assert_eq!(segment_files(dir.path())?, files[2..].to_vec());
    assert_eq!(wal.first_lsn(), firsts[2]);
    assert!(matches!(
        read_all(&wal, firsts[2] - 1),
        Err(StorageError::Released { first_available, .. }) if first_available == firsts[2]
    ));
    assert_records(&read_all(&wal, firsts[2])?, firsts[2], 300);
    assert!(matches!(wal.release_below(302), Err(StorageError::InvalidLsn { lsn: 302, .. })));
    drop(wal);

    let (mut wal, report) = Wal::open(dir.path(), config)?;
    assert!(report.is_clean());
    assert_eq!((report.first_lsn, report.last_lsn), (firsts[2], 300));
    assert_eq!(report.records, 300 - firsts[2] + 1);
    // Releasing everything keeps the active segment, and the log goes on.
    wal.release_below(301)?;
    assert_eq!(segment_files(dir.path())?, files[files.len() - 1..].to_vec());
    assert_eq!(append_lsns(&mut wal, 301..=301)?, 301);
    wal.sync()?;
    assert_records(&read_all(&wal, 301)?, 301, 301);
    Ok(())
}

#[test]
fn a_segment_with_another_programs_magic_is_refused_and_left_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(segment_file_name(1));
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(4096, 7);
    fs::write(&path, &sqlite)?;
    let error = Wal::open(dir.path(), WalConfig::default()).err();
    assert!(matches!(&error, Some(StorageError::ForeignFile { path: p, .. }) if *p == path), "{error:?}");
    assert_eq!(fs::read(&path)?, sqlite);
    Ok(())
}

#[test]
fn a_foreign_file_after_a_valid_log_is_refused_under_any_policy() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(write_synced(dir.path(), WalConfig::default(), 10)?);
    fs::write(dir.path().join(segment_file_name(11)), b"#!/bin/sh\necho hello\n")?;
    let before = snapshot(dir.path())?;
    for recovery_policy in [RecoveryPolicy::Strict, RecoveryPolicy::TruncateAtDamage] {
        let config = WalConfig { recovery_policy, ..WalConfig::default() };
        let error = Wal::open(dir.path(), config).err();
        assert!(matches!(error, Some(StorageError::ForeignFile { .. })), "{error:?}");
        assert_eq!(snapshot(dir.path())?, before);
    }
    Ok(())
}

#[test]
fn a_newer_format_version_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(write_synced(dir.path(), WalConfig::default(), 3)?);
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = fs::read(&path)?;
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes)?;
    let error = Wal::open(dir.path(), WalConfig::default()).err();
    assert!(matches!(error, Some(StorageError::UnsupportedFormat { version: 2, supported: 1, .. })), "{error:?}");
    assert_eq!(fs::read(&path)?, bytes);
    Ok(())
}

#[test]
fn other_files_in_the_directory_are_ignored() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(write_synced(dir.path(), WalConfig::default(), 3)?);
    fs::write(dir.path().join("README"), b"hello")?;
    fs::write(dir.path().join("1.wal"), b"not ours by name")?;
    let (wal, report) = Wal::open(dir.path(), WalConfig::default())?;
    assert!(report.is_clean());
    assert_records(&read_all(&wal, 1)?, 1, 3);
    assert_eq!(fs::read(dir.path().join("README"))?, b"hello");
    Ok(())
}
