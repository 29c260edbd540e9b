//! Opening a WAL directory: recovery.
//!
//! Owns the decision of what survives a crash. It scans the segments in LSN order,
//! verifies every frame, and keeps the longest valid prefix of the log; it then cuts
//! the torn tail, deletes what follows, and makes the result durable.
//!
//! Guarantees:
//! - the kept records are exactly the frames before the first short, torn,
//!   out-of-sequence or badly summed one: never a damaged payload, never a gap;
//! - a file with another program's magic, or a format version this build does not
//!   read, is refused and left untouched, wherever it is;
//! - under [`RecoveryPolicy::Strict`] damage followed by a later segment is refused
//!   and nothing is changed: the WAL syncs a segment before creating the next, so
//!   only the last segment can end in a torn write, and damage anywhere else is
//!   media corruption that must not silently cost acknowledged records;
//! - the scan is planned first and acted on after, so a refusal changes nothing,
//!   and a crash during the repair leaves a state that recovery repairs again;
//! - when it returns, everything kept is durable (fdatasync) and so is the directory.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::log::Lsn;
use crate::wal::RecoveryPolicy;
use crate::wal::format::{
    DamageKind, Frame, FrameReader, SEGMENT_HEADER_BYTES, SegmentHeader, encode_segment_header,
    parse_segment_file_name, segment_file_name,
};
use crate::wal::io::Io;

/// What recovery found and what it dropped. Log it: a non-zero `truncated_bytes` or
/// `dropped_segments` after a clean shutdown means something is wrong with the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in the log after recovery (at least 1: the one appends go to).
    pub segments: usize,
    /// Records in the log after recovery (`last_lsn - first_lsn + 1`).
    pub records: u64,
    /// The lowest LSN stored: records below it were released.
    pub first_lsn: Lsn,
    /// The last LSN in the log (`first_lsn - 1` when it holds no record).
    pub last_lsn: Lsn,
    /// Bytes cut from the end of the last kept segment (a torn tail, or on
    /// [`Wal::reopen`](crate::Wal::reopen) records that were never synced).
    pub truncated_bytes: u64,
    /// Segment files deleted after the cut.
    pub dropped_segments: usize,
    /// Bytes of those files.
    pub dropped_bytes: u64,
    /// The first damage found, if the log did not end cleanly.
    pub damage: Option<Damage>,
}

impl RecoveryReport {
    /// True when nothing was cut or dropped.
    pub fn is_clean(&self) -> bool {
        self.truncated_bytes == 0 && self.dropped_segments == 0
    }
}

/// Where recovery found the first damaged bytes, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset of the damaged frame (0 for a segment header or a gap).
    pub offset: u64,
    /// What was wrong.
    pub kind: DamageKind,
}

/// A segment of the recovered log: its first LSN, file and the end of its frames.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub(crate) first_lsn: Lsn,
    pub(crate) path: PathBuf,
    /// Where its last verified frame ends.
    pub(crate) end_offset: u64,
}

/// The recovered log, ready for appends.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segments before the last, oldest first.
    pub(crate) closed: Vec<SegmentInfo>,
    /// The last segment, which appends go to.
    pub(crate) active: SegmentInfo,
    /// It, open for reading and writing.
    pub(crate) active_file: File,
    /// The last LSN in the log; everything up to it is durable.
    pub(crate) last_lsn: Lsn,
    pub(crate) report: RecoveryReport,
}

/// A segment file found in the directory.
struct Listed {
    name_lsn: Lsn,
    path: PathBuf,
}

/// A kept segment, as scanned.
struct Scanned {
    info: SegmentInfo,
    file_len: u64,
}

/// Recovers the log in `dir` (created if missing).
///
/// With `keep_through`, the log is also cut after that LSN, and it is an error if it
/// does not reach it: [`Wal::reopen`](crate::Wal::reopen) passes the last LSN it had
/// synced, so records whose sync failed never resurface and acknowledged ones are
/// known to be there.
pub(crate) fn recover(
    dir: &Path,
    policy: RecoveryPolicy,
    io: &Io,
    keep_through: Option<Lsn>,
) -> Result<Recovered, StorageError> {
    ensure_dir(dir, io)?;
    let listed = list_segments(dir)?;

    // Plan: scan without changing anything.
    let mut kept: Vec<Scanned> = Vec::new();
    let mut next_lsn: Option<Lsn> = None;
    let mut damage: Option<(usize, Damage)> = None;
    let mut payload = Vec::new();
    for (index, segment) in listed.iter().enumerate() {
        if let Some(expected) = next_lsn
            && segment.name_lsn != expected
        {
            let kind = DamageKind::SegmentGap { expected, found: segment.name_lsn };
            damage = Some((index, damage_at(&segment.path, 0, kind)));
            break;
        }
        let file = File::open(&segment.path).map_err(|e| StorageError::io("open segment", &segment.path, e))?;
        let file_len = file.metadata().map_err(|e| StorageError::io("stat segment", &segment.path, e))?.len();
        let (header, mut frames) =
            FrameReader::open(file, file_len).map_err(|e| StorageError::io("read segment header", &segment.path, e))?;
        match check_header(&segment.path, segment.name_lsn, header)? {
            HeaderState::Valid => {}
            HeaderState::Torn => {
                let kind = DamageKind::TornHeader;
                damage = Some((index, damage_at(&segment.path, 0, kind)));
                break;
            }
        }
        let mut expected = segment.name_lsn;
        let mut damaged = false;
        loop {
            if keep_through.is_some_and(|keep| expected > keep) {
                break;
            }
            match frames.next(expected, &mut payload).map_err(|e| StorageError::io("read segment", &segment.path, e))? {
                Frame::Record { .. } => {
                    expected = expected.checked_add(1).ok_or_else(|| StorageError::Corrupt {
                        path: segment.path.clone(),
                        offset: frames.offset(),
                        reason: "lsn overflow".to_owned(),
                    })?;
                }
                Frame::End => break,
                Frame::Damaged { offset, kind } => {
                    damage = Some((index, damage_at(&segment.path, offset, kind)));
                    damaged = true;
                    break;
                }
            }
        }
        kept.push(Scanned {
            info: SegmentInfo { first_lsn: segment.name_lsn, path: segment.path.clone(), end_offset: frames.offset() },
            file_len,
        });
        next_lsn = Some(expected);
        let cut_here = frames.offset() < file_len;
        if damaged || cut_here {
            break;
        }
    }

    // Check: refuse before anything is changed.
    if let Some((index, found)) = &damage {
        // Segments after the damaged one; a gap dooms the segment that does not
        // continue the log, which may itself hold acknowledged records.
        let gap = matches!(found.kind, DamageKind::SegmentGap { .. });
        let later = listed.len() - index - usize::from(!gap);
        if later > 0 && policy == RecoveryPolicy::Strict {
            return Err(StorageError::Corrupt {
                path: found.segment.clone(),
                offset: found.offset,
                reason: format!(
                    "{}, and {later} later segment(s) follow: not a torn tail left by a \
                     crash, so cutting here would discard acknowledged records. Refusing; \
                     RecoveryPolicy::TruncateAtDamage cuts the log here",
                    found.kind
                ),
            });
        }
    }
    let base_lsn = listed.first().map_or(1, |segment| segment.name_lsn);
    let last_lsn = next_lsn.unwrap_or(base_lsn) - 1;
    if let Some(keep) = keep_through
        && last_lsn < keep
    {
        let path = kept.last().map_or_else(|| dir.to_path_buf(), |s| s.info.path.clone());
        return Err(StorageError::Corrupt {
            path,
            offset: kept.last().map_or(0, |s| s.info.end_offset),
            reason: format!(
                "the log on disk ends at lsn {last_lsn}, but lsn {keep} was synced: \
                 acknowledged records are missing"
            ),
        });
    }
    let doomed = &listed[kept.len()..];
    for segment in doomed {
        refuse_foreign(&segment.path)?;
    }

    // Act: delete what follows the cut (newest first, so a crash here leaves a prefix
    // that recovery cuts again) and make that durable, then cut the last kept segment
    // and make it durable.
    let mut dropped_bytes = 0u64;
    for segment in doomed.iter().rev() {
        let len = fs::metadata(&segment.path).map_err(|e| StorageError::io("stat segment", &segment.path, e))?.len();
        io.remove_file(&segment.path).map_err(|e| StorageError::io("delete segment", &segment.path, e))?;
        dropped_bytes += len;
    }
    if !doomed.is_empty() {
        // Durable before the cut below: a deleted segment must not come back behind
        // a log that was shortened.
        io.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))?;
    }
    let (closed, active, active_file, truncated_bytes) = match kept.pop() {
        Some(last) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&last.info.path)
                .map_err(|e| StorageError::io("open segment", &last.info.path, e))?;
            let truncated_bytes = last.file_len - last.info.end_offset;
            if truncated_bytes > 0 {
                io.set_len(&file, last.info.end_offset)
                    .map_err(|e| StorageError::io("truncate segment", &last.info.path, e))?;
            }
            // Also makes durable what a crashed process left in the page cache, so
            // that every recovered record really is durable.
            io.sync_data(&file).map_err(|e| StorageError::io("fdatasync", &last.info.path, e))?;
            io.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))?;
            let closed = kept.into_iter().map(|s| s.info).collect();
            (closed, last.info, file, truncated_bytes)
        }
        None => {
            let (file, path) = create_segment(io, dir, base_lsn).map_err(CreateFailure::into_error)?;
            let active = SegmentInfo { first_lsn: base_lsn, path, end_offset: SEGMENT_HEADER_BYTES as u64 };
            (Vec::new(), active, file, 0)
        }
    };
    let first_lsn = closed.first().unwrap_or(&active).first_lsn;
    let report = RecoveryReport {
        segments: closed.len() + 1,
        records: last_lsn + 1 - first_lsn,
        first_lsn,
        last_lsn,
        truncated_bytes,
        dropped_segments: doomed.len(),
        dropped_bytes,
        damage: damage.map(|(_, found)| found),
    };
    Ok(Recovered { closed, active, active_file, last_lsn, report })
}

fn damage_at(segment: &Path, offset: u64, kind: DamageKind) -> Damage {
    Damage { segment: segment.to_path_buf(), offset, kind }
}

enum HeaderState {
    Valid,
    Torn,
}

/// Refuses foreign, unsupported and renamed segments; tells a valid header from a
/// torn one.
fn check_header(path: &Path, name_lsn: Lsn, header: SegmentHeader) -> Result<HeaderState, StorageError> {
    match header {
        SegmentHeader::Valid { first_lsn } if first_lsn == name_lsn => Ok(HeaderState::Valid),
        SegmentHeader::Valid { first_lsn } => Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!(
                "the header says the segment starts at lsn {first_lsn} but its name says \
                 {name_lsn}: a renamed or misplaced file"
            ),
        }),
        SegmentHeader::Torn => Ok(HeaderState::Torn),
        SegmentHeader::Foreign { reason } => Err(StorageError::ForeignFile { path: path.to_path_buf(), reason }),
        SegmentHeader::Unsupported { version } => Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            version,
            supported: crate::wal::format::SEGMENT_FORMAT_VERSION,
        }),
    }
}

/// Before a segment is deleted: it must be ours (or torn), never another program's.
fn refuse_foreign(path: &Path) -> Result<(), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io("open segment", path, e))?;
    let len = file.metadata().map_err(|e| StorageError::io("stat segment", path, e))?.len();
    let (header, _) = FrameReader::open(file, len).map_err(|e| StorageError::io("read segment header", path, e))?;
    let name_lsn = path.file_name().and_then(|name| name.to_str()).and_then(parse_segment_file_name).unwrap_or(0);
    match check_header(path, name_lsn, header)? {
        HeaderState::Valid | HeaderState::Torn => Ok(()),
    }
}

/// Creates the directory if it does not exist, durably.
fn ensure_dir(dir: &Path, io: &Io) -> Result<(), StorageError> {
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(StorageError::io(
            "open wal directory",
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| StorageError::io("create wal directory", dir, e))?;
            let parent = match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            io.sync_dir(parent).map_err(|e| StorageError::io("fsync directory", parent, e))
        }
        Err(e) => Err(StorageError::io("open wal directory", dir, e)),
    }
}

/// The segment files in `dir`, in LSN order. Files with other names are ignored.
fn list_segments(dir: &Path) -> Result<Vec<Listed>, StorageError> {
    let mut listed = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list wal directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list wal directory", dir, e))?;
        let name = entry.file_name();
        let Some(name_lsn) = name.to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        let path = entry.path();
        if name_lsn == 0 {
            return Err(StorageError::ForeignFile { path, reason: "the name says lsn 0; lsns start at 1".to_owned() });
        }
        listed.push(Listed { name_lsn, path });
    }
    listed.sort_by_key(|segment| segment.name_lsn);
    Ok(listed)
}

/// Why creating a segment failed, and whether the disk is left as it was.
pub(crate) enum CreateFailure {
    /// Nothing was left behind: the log can go on with its current segment.
    Clean(StorageError),
    /// An fsync failed, or a half-made file could not be removed: the log must be
    /// poisoned and recovered.
    Unclean(StorageError),
}

impl CreateFailure {
    pub(crate) fn into_error(self) -> StorageError {
        match self {
            CreateFailure::Clean(error) | CreateFailure::Unclean(error) => error,
        }
    }
}

/// Creates the segment whose first record will be `first_lsn`: the file, its header,
/// fdatasync, and fsync of the directory, so that the segment exists after a crash
/// before any record is written to it.
pub(crate) fn create_segment(io: &Io, dir: &Path, first_lsn: Lsn) -> Result<(File, PathBuf), CreateFailure> {
    let path = dir.join(segment_file_name(first_lsn));
    let mut file =
        io.create_new(&path).map_err(|e| CreateFailure::Clean(StorageError::io("create segment", &path, e)))?;
    if let Err(e) = io.write_at(&mut file, 0, &encode_segment_header(first_lsn)) {
        let error = StorageError::io("write segment header", &path, e);
        drop(file);
        return match io.remove_file(&path) {
            Ok(()) => Err(CreateFailure::Clean(error)),
            Err(_) => Err(CreateFailure::Unclean(error)),
        };
    }
    io.sync_data(&file).map_err(|e| CreateFailure::Unclean(StorageError::io("fdatasync", &path, e)))?;
    io.sync_dir(dir).map_err(|e| CreateFailure::Unclean(StorageError::io("fsync directory", dir, e)))?;
    Ok((file, path))
}
