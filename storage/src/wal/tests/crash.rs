//! Crash tests: a crash can leave the last segment cut anywhere after its last
//! fsync, and a disk can flip bytes. For every byte offset of the last records, cut
//! (or flip) a copy of the log there, recover it, and check that the records are
//! exactly the complete ones before that offset, that every synced batch is among
//! them when only unsynced bytes were lost, and that the log goes on densely.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{
    TestResult, append_lsns, assert_records, copy_log, payload, read_all, segment_files, small_segments, write_synced,
};
use crate::error::StorageError;
use crate::log::{CommandLog, Lsn};
use crate::wal::format::{DamageKind, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::wal::{RecoveryPolicy, Wal, WalConfig};

/// Batch sizes written and synced before the crash.
const SYNCED_BATCHES: [u64; 4] = [3, 5, 1, 4];
/// Records appended after the last sync: the crash may lose any part of them.
const UNSYNCED_RECORDS: u64 = 4;
/// Synced records at the end whose bytes are cut and flipped too (a disk that lies).
const SYNCED_RECORDS_CUT: u64 = 3;

/// A log written, synced, then appended to without sync, as a crash finds it.
struct Crashed {
    dir: TempDir,
    /// The last segment.
    segment: PathBuf,
    /// Its first LSN.
    segment_first_lsn: Lsn,
    /// Its bytes.
    bytes: Vec<u8>,
    /// `frame_ends[i]`: offset in it where the frame of LSN `segment_first_lsn + i`
    /// ends.
    frame_ends: Vec<u64>,
    /// Records whose sync returned.
    synced: Lsn,
    /// Offset in the last segment up to which the bytes were synced.
    synced_end: u64,
    /// Records appended.
    appended: Lsn,
}

impl Crashed {
    fn write(config: WalConfig, earlier_records: Lsn) -> Result<Crashed, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut wal = write_synced(dir.path(), config, earlier_records)?;
        let mut next = earlier_records + 1;
        for size in SYNCED_BATCHES {
            append_lsns(&mut wal, next..=next + size - 1)?;
            wal.sync()?;
            next += size;
        }
        let synced = next - 1;
        append_lsns(&mut wal, next..=next + UNSYNCED_RECORDS - 1)?;
        let appended = next + UNSYNCED_RECORDS - 1;
        let (segment, synced_end, end) = wal.active_offsets();
        drop(wal);

        let bytes = fs::read(&segment)?;
        assert_eq!(bytes.len() as u64, end);
        let segment_first_lsn: Lsn =
            segment.file_name().and_then(|n| n.to_str()).unwrap_or_default().trim_end_matches(".wal").parse()?;
        let mut offset = SEGMENT_HEADER_BYTES as u64;
        let frame_ends = (segment_first_lsn..=appended)
            .map(|lsn| {
                offset += (FRAME_HEADER_BYTES + payload(lsn).len()) as u64;
                offset
            })
            .collect::<Vec<_>>();
        assert_eq!(frame_ends.last().copied().unwrap_or(offset), end);
        Ok(Crashed { dir, segment, segment_first_lsn, bytes, frame_ends, synced, synced_end, appended })
    }

    /// The offset in the last segment where record `lsn` starts.
    fn frame_start(&self, lsn: Lsn) -> u64 {
        match lsn.checked_sub(self.segment_first_lsn + 1) {
            Some(index) => self.frame_ends[index as usize],
            None => SEGMENT_HEADER_BYTES as u64,
        }
    }

    /// The last LSN whose frame ends at or before `offset` in the last segment (the
    /// records of earlier segments are all complete).
    fn complete_before(&self, offset: u64) -> Lsn {
        if offset < SEGMENT_HEADER_BYTES as u64 {
            return self.segment_first_lsn - 1;
        }
        let complete = self.frame_ends.iter().filter(|&&end| end <= offset).count();
        self.segment_first_lsn - 1 + complete as Lsn
    }

    /// A copy of the log whose last segment holds `bytes`.
    fn copy_with(&self, bytes: &[u8]) -> Result<(TempDir, PathBuf), std::io::Error> {
        let copy = copy_log(self.dir.path())?;
        let segment = copy.path().join(self.segment.file_name().unwrap_or_default());
        fs::write(&segment, bytes)?;
        Ok((copy, segment))
    }
}

/// Recovers `dir` and checks it holds exactly `1..=expected_last`, then that an
/// append lands at `expected_last + 1` and survives another reopen.
fn check_recovers_exactly(dir: &Path, config: &WalConfig, expected_last: Lsn) -> TestResult {
    let (mut wal, report) = Wal::open(dir, config.clone())?;
    assert_eq!(report.last_lsn, expected_last);
    assert_eq!((wal.last_lsn(), wal.durable_lsn()), (expected_last, expected_last));
    assert_records(&read_all(&wal, 1)?, 1, expected_last);

    assert_eq!(append_lsns(&mut wal, expected_last + 1..=expected_last + 1)?, expected_last + 1);
    wal.sync()?;
    drop(wal);
    let (wal, report) = Wal::open(dir, config.clone())?;
    assert!(report.is_clean(), "{report:?}");
    assert_records(&read_all(&wal, 1)?, 1, expected_last + 1);
    Ok(())
}

fn cut_at_every_offset(crashed: &Crashed, config: &WalConfig, from: u64) -> TestResult {
    for cut in from..=crashed.bytes.len() as u64 {
        let (copy, _) = crashed.copy_with(&crashed.bytes[..cut as usize])?;
        let expected = crashed.complete_before(cut);
        if cut >= crashed.synced_end {
            assert!(expected >= crashed.synced, "cut {cut} lost synced records");
        }
        check_recovers_exactly(copy.path(), config, expected).map_err(|e| format!("cut at byte {cut}: {e}"))?;
    }
    Ok(())
}

#[test]
fn a_cut_at_any_byte_of_the_last_records_recovers_exactly_the_complete_prefix() -> TestResult {
    let config = WalConfig::default();
    let crashed = Crashed::write(config.clone(), 0)?;
    assert_eq!(crashed.appended, crashed.synced + UNSYNCED_RECORDS);
    let first_cut = crashed.frame_start(crashed.synced - SYNCED_RECORDS_CUT + 1);
    cut_at_every_offset(&crashed, &config, first_cut)?;

    // The report says what was cut.
    let cut = crashed.frame_ends[crashed.frame_ends.len() - 2] + 5;
    let (copy, _) = crashed.copy_with(&crashed.bytes[..cut as usize])?;
    let (_, report) = Wal::open(copy.path(), config)?;
    assert_eq!(report.truncated_bytes, 5);
    assert_eq!(report.last_lsn, crashed.appended - 1);
    let damage = report.damage.ok_or("no damage reported")?;
    assert_eq!(damage.offset, cut - 5);
    assert_eq!(damage.kind, DamageKind::ShortFrameHeader { bytes_left: 5 });
    Ok(())
}

#[test]
fn a_cut_at_any_byte_of_the_last_segment_after_rotation_recovers_the_complete_prefix() -> TestResult {
    let config = small_segments();
    let crashed = Crashed::write(config.clone(), 150)?;
    assert!(crashed.segment_first_lsn > 1, "the log rotated");
    // From byte 0: a torn header drops the segment, the previous one ends the log.
    cut_at_every_offset(&crashed, &config, 0)?;

    let (copy, _) = crashed.copy_with(&crashed.bytes[..10])?;
    let (_, report) = Wal::open(copy.path(), config)?;
    assert_eq!(report.dropped_segments, 1);
    assert_eq!(report.last_lsn, crashed.segment_first_lsn - 1);
    assert_eq!(report.damage.map(|d| d.kind), Some(DamageKind::TornHeader));
    Ok(())
}

#[test]
fn a_flipped_byte_in_the_last_records_stops_recovery_before_the_damaged_record() -> TestResult {
    let config = WalConfig::default();
    let crashed = Crashed::write(config.clone(), 0)?;
    let first = crashed.frame_start(crashed.synced - SYNCED_RECORDS_CUT + 1);
    for offset in first..crashed.bytes.len() as u64 {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bytes = crashed.bytes.clone();
            bytes[offset as usize] ^= mask;
            let (copy, _) = crashed.copy_with(&bytes)?;
            let (wal, report) = Wal::open(copy.path(), config.clone())?;
            let expected = crashed.complete_before(offset);
            let context = format!("byte {offset} ^ {mask:#x}: {report:?}");
            assert_eq!(report.last_lsn, expected, "{context}");
            assert!(report.damage.is_some(), "{context}");
            assert_eq!(
                report.truncated_bytes,
                crashed.bytes.len() as u64 - crashed.frame_start(expected + 1),
                "{context}"
            );
            // Exactly the original payloads: the damaged one is never returned.
            assert_records(&read_all(&wal, 1)?, 1, expected);
        }
    }
    Ok(())
}

#[test]
fn an_absurd_length_is_damage_not_an_allocation() -> TestResult {
    let config = WalConfig::default();
    let crashed = Crashed::write(config.clone(), 0)?;
    let victim = crashed.appended - 1;
    let at = crashed.frame_start(victim) as usize;
    let cases = [
        (u32::MAX, DamageKind::LenTooLarge { len: u32::MAX.into() }),
        (crate::RECORD_BYTES_MAX as u32 + 1, DamageKind::LenTooLarge { len: crate::RECORD_BYTES_MAX as u64 + 1 }),
        (
            crate::RECORD_BYTES_MAX as u32,
            DamageKind::ShortPayload {
                len: crate::RECORD_BYTES_MAX as u64,
                bytes_left: crashed.bytes.len() as u64 - at as u64 - FRAME_HEADER_BYTES as u64,
            },
        ),
    ];
    for (len, kind) in cases {
        let mut bytes = crashed.bytes.clone();
        bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        let (copy, _) = crashed.copy_with(&bytes)?;
        let (wal, report) = Wal::open(copy.path(), config.clone())?;
        assert_eq!(report.last_lsn, victim - 1);
        let damage = report.damage.ok_or("no damage reported")?;
        assert_eq!((damage.offset, damage.kind), (at as u64, kind));
        assert_records(&read_all(&wal, 1)?, 1, victim - 1);
    }
    Ok(())
}

#[test]
fn a_zero_filled_tail_is_cut() -> TestResult {
    // What a file system may show after a crash that extended the file but lost the
    // data blocks.
    let config = WalConfig::default();
    let crashed = Crashed::write(config.clone(), 0)?;
    let mut bytes = crashed.bytes.clone();
    bytes.extend_from_slice(&[0u8; 4096]);
    let (copy, _) = crashed.copy_with(&bytes)?;
    let (_, report) = Wal::open(copy.path(), config.clone())?;
    assert_eq!(report.truncated_bytes, 4096);
    assert_eq!(report.damage.map(|d| d.kind), Some(DamageKind::BadChecksum));
    check_recovers_exactly(copy.path(), &config, crashed.appended)
}

#[test]
fn a_record_from_another_position_is_out_of_sequence() -> TestResult {
    // A well-formed frame with the wrong LSN (here: a copy of an earlier record).
    let config = WalConfig::default();
    let crashed = Crashed::write(config.clone(), 0)?;
    let mut bytes = crashed.bytes.clone();
    let start = crashed.frame_start(1) as usize;
    let end = crashed.frame_start(2) as usize;
    bytes.extend_from_slice(&crashed.bytes[start..end]);
    let (copy, _) = crashed.copy_with(&bytes)?;
    let (_, report) = Wal::open(copy.path(), config)?;
    assert_eq!(report.last_lsn, crashed.appended);
    assert_eq!(
        report.damage.map(|d| d.kind),
        Some(DamageKind::LsnOutOfSequence { expected: crashed.appended + 1, found: 1 })
    );
    Ok(())
}

/// A log of several segments with a flipped payload byte in the first.
fn damaged_in_the_middle() -> Result<(TempDir, Vec<PathBuf>, Lsn), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    drop(write_synced(dir.path(), small_segments(), 200)?);
    let files = segment_files(dir.path())?;
    assert!(files.len() >= 3);
    let mut bytes = fs::read(&files[0])?;
    // The payload of the second record: header, frame of lsn 1, frame header of lsn 2.
    let at = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + payload(1).len() + FRAME_HEADER_BYTES;
    bytes[at] ^= 0x10;
    fs::write(&files[0], &bytes)?;
    Ok((dir, files, 1))
}

#[test]
fn damage_before_a_later_segment_is_refused_under_the_strict_policy() -> TestResult {
    let (dir, files, _) = damaged_in_the_middle()?;
    let before: Vec<Vec<u8>> = files.iter().map(fs::read).collect::<Result<_, _>>()?;
    let error = Wal::open(dir.path(), WalConfig::default()).err();
    assert!(matches!(&error, Some(StorageError::Corrupt { path, .. }) if *path == files[0]), "{error:?}");
    // Nothing was changed.
    assert_eq!(segment_files(dir.path())?, files);
    let after: Vec<Vec<u8>> = files.iter().map(fs::read).collect::<Result<_, _>>()?;
    assert_eq!(after, before);
    Ok(())
}

#[test]
fn damage_before_a_later_segment_is_cut_there_under_truncate_at_damage() -> TestResult {
    let (dir, files, last_good) = damaged_in_the_middle()?;
    let config = WalConfig { recovery_policy: RecoveryPolicy::TruncateAtDamage, ..small_segments() };
    let (wal, report) = Wal::open(dir.path(), config.clone())?;
    assert_eq!(report.last_lsn, last_good);
    assert_eq!(report.dropped_segments, files.len() - 1);
    assert_eq!(report.damage.map(|d| d.kind), Some(DamageKind::BadChecksum));
    assert_eq!(segment_files(dir.path())?, files[..1].to_vec());
    drop(wal);
    check_recovers_exactly(dir.path(), &config, last_good)
}

#[test]
fn a_missing_middle_segment_is_refused_or_cut_by_policy() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(write_synced(dir.path(), small_segments(), 200)?);
    let files = segment_files(dir.path())?;
    fs::remove_file(&files[1])?;
    let error = Wal::open(dir.path(), small_segments()).err();
    assert!(matches!(error, Some(StorageError::Corrupt { .. })), "{error:?}");
    assert_eq!(segment_files(dir.path())?.len(), files.len() - 1);

    let config = WalConfig { recovery_policy: RecoveryPolicy::TruncateAtDamage, ..small_segments() };
    let (wal, report) = Wal::open(dir.path(), config)?;
    assert!(matches!(report.damage.map(|d| d.kind), Some(DamageKind::SegmentGap { .. })));
    assert_eq!(report.dropped_segments, files.len() - 2);
    assert_eq!(segment_files(dir.path())?, files[..1].to_vec());
    assert_records(&read_all(&wal, 1)?, 1, report.last_lsn);
    Ok(())
}

#[test]
fn a_segment_renamed_to_another_position_is_refused() -> TestResult {
    // Its header says it starts at lsn 1; its new name says 5.
    let dir = tempfile::tempdir()?;
    drop(write_synced(dir.path(), WalConfig::default(), 10)?);
    let files = segment_files(dir.path())?;
    let renamed = dir.path().join(crate::wal::format::segment_file_name(5));
    fs::rename(&files[0], &renamed)?;
    let bytes = fs::read(&renamed)?;
    let error = Wal::open(dir.path(), WalConfig::default()).err();
    assert!(matches!(&error, Some(StorageError::Corrupt { path, offset: 0, .. }) if *path == renamed), "{error:?}");
    assert_eq!(fs::read(&renamed)?, bytes);
    Ok(())
}
