//! Checkpoint snapshots: the engine's whole state at an LSN, in one immutable file.
//!
//! The engine's checkpoints now live in the store ([`crate::store`]: the state and its
//! account rows in one transaction); it reads these files only to open a data directory
//! an older version wrote, and removes them after its first checkpoint there.
//!
//! Owns the snapshot files of a directory, named `snapshot-<lsn:020>.bin`, each
//! `magic (8) | format u32 | lsn u64 | len u64 | crc32c(lsn, len, payload) u32 | payload`.
//! The payload is opaque (the engine's encoded state).
//!
//! Guarantees:
//! - a snapshot is written to a temporary name, fsynced, renamed into place and the
//!   directory fsynced: after a crash it is either whole or absent, never torn;
//! - a file, once named, never changes, so another process (a backup) can copy it
//!   while the engine runs — the reason snapshots are files and not rows of a
//!   database that holds an exclusive lock on its file;
//! - [`latest`] returns the newest snapshot whose checksum holds, and refuses
//!   (never skips) a damaged newest one: starting from an older snapshot would need
//!   WAL records that may already be released, so a damaged checkpoint stops the
//!   start with a clear error instead of serving wrong data;
//! - [`prune`] deletes every snapshot older than a given LSN, after a newer one is durable.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::log::Lsn;

const MAGIC: &[u8; 8] = b"dspsnap\0";
const FORMAT: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;
/// Largest snapshot accepted: a country's live state is a few hundred MiB at most;
/// a larger `len` in a header is damage, not an allocation to attempt.
pub const SNAPSHOT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

fn name(lsn: Lsn) -> String {
    format!("snapshot-{lsn:020}.bin")
}

fn lsn_of(path: &Path) -> Option<Lsn> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".bin")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse().ok() } else { None }
}

fn checksum(lsn: Lsn, payload: &[u8]) -> u32 {
    let mut head = [0u8; 16];
    head[..8].copy_from_slice(&lsn.to_le_bytes());
    head[8..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Every snapshot file in `dir`, oldest first.
fn list(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, StorageError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(Lsn, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| StorageError::io("list snapshots", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| lsn_of(&p).map(|l| (l, p)))
        .collect();
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Writes the snapshot of the state at `lsn` into `dir` (created if missing),
/// durably and atomically. Returns its path.
pub fn write(dir: &Path, lsn: Lsn, payload: &[u8]) -> Result<PathBuf, StorageError> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create snapshot dir", dir, e))?;
    let path = dir.join(name(lsn));
    let tmp = dir.join(format!("{}.tmp", name(lsn)));
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&lsn.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&checksum(lsn, payload).to_le_bytes());
    let mut file = File::create(&tmp).map_err(|e| StorageError::io("create snapshot", &tmp, e))?;
    file.write_all(&header)
        .and_then(|()| file.write_all(payload))
        .map_err(|e| StorageError::io("write snapshot", &tmp, e))?;
    file.sync_all().map_err(|e| StorageError::io("fsync snapshot", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename snapshot", &tmp, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads one snapshot file, checking magic, format, LSN, length and checksum.
pub fn read(path: &Path) -> Result<(Lsn, Vec<u8>), StorageError> {
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt { path: path.to_owned(), offset, reason };
    let mut file = File::open(path).map_err(|e| StorageError::io("open snapshot", path, e))?;
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact(&mut header).map_err(|_| corrupt(0, "snapshot shorter than its header".into()))?;
    if &header[..8] != MAGIC {
        return Err(corrupt(0, "not a dispatch snapshot (bad magic)".into()));
    }
    let word = |r: std::ops::Range<usize>| -> [u8; 8] { header[r].try_into().unwrap_or([0; 8]) };
    let format = u32::from_le_bytes(header[8..12].try_into().unwrap_or([0; 4]));
    if format != FORMAT {
        return Err(corrupt(8, format!("snapshot format {format} is not {FORMAT}")));
    }
    let lsn = u64::from_le_bytes(word(12..20));
    let len = u64::from_le_bytes(word(20..28));
    let crc = u32::from_le_bytes(header[28..32].try_into().unwrap_or([0; 4]));
    if Some(lsn) != lsn_of(path) {
        return Err(corrupt(12, format!("snapshot says LSN {lsn}, its name says otherwise")));
    }
    if len > SNAPSHOT_BYTES_MAX {
        return Err(corrupt(20, format!("snapshot length {len} is over the {SNAPSHOT_BYTES_MAX} maximum")));
    }
    let mut payload = Vec::new();
    file.read_to_end(&mut payload).map_err(|e| StorageError::io("read snapshot", path, e))?;
    if payload.len() as u64 != len {
        return Err(corrupt(HEADER_BYTES as u64, format!("snapshot holds {} bytes, header says {len}", payload.len())));
    }
    if checksum(lsn, &payload) != crc {
        return Err(corrupt(HEADER_BYTES as u64, "snapshot checksum does not match".into()));
    }
    Ok((lsn, payload))
}

/// The newest snapshot in `dir`, if any. A damaged newest snapshot is an error.
pub fn latest(dir: &Path) -> Result<Option<(Lsn, Vec<u8>)>, StorageError> {
    match list(dir)?.pop() {
        Some((_, path)) => read(&path).map(Some),
        None => Ok(None),
    }
}

/// The path of the newest snapshot in `dir`, if any (for backups).
pub fn latest_path(dir: &Path) -> Result<Option<PathBuf>, StorageError> {
    Ok(list(dir)?.pop().map(|(_, p)| p))
}

/// Deletes every snapshot with an LSN below `lsn`, and leftover temporary files.
pub fn prune(dir: &Path, lsn: Lsn) -> Result<usize, StorageError> {
    let mut deleted = 0;
    for (l, path) in list(dir)? {
        if l < lsn {
            fs::remove_file(&path).map_err(|e| StorageError::io("delete snapshot", &path, e))?;
            deleted += 1;
        }
    }
    // A crash while writing a snapshot leaves its temporary file: never read, only
    // in the way. Those below `lsn` belong to writes that can no longer finish.
    let leftovers: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| StorageError::io("list snapshots", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .filter(|p| p.file_stem().and_then(|s| lsn_of(Path::new(s))).is_some_and(|l| l < lsn))
        .collect();
    for path in leftovers {
        fs::remove_file(&path).map_err(|e| StorageError::io("delete a temporary snapshot", &path, e))?;
        deleted += 1;
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_latest_prune() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest(dir.path()).unwrap(), None);
        write(dir.path(), 10, b"ten").unwrap();
        write(dir.path(), 250, b"two fifty").unwrap();
        assert_eq!(latest(dir.path()).unwrap(), Some((250, b"two fifty".to_vec())));
        // What a crash in the middle of writing the snapshot of LSN 100 leaves behind.
        let torn = dir.path().join(format!("{}.tmp", name(100)));
        fs::write(&torn, b"half a snap").unwrap();
        let later = dir.path().join(format!("{}.tmp", name(300)));
        fs::write(&later, b"being written").unwrap();
        assert_eq!(prune(dir.path(), 250).unwrap(), 2);
        assert!(!torn.exists(), "a temporary file of a write that can no longer finish is removed");
        assert!(later.exists(), "one above the checkpoint is left alone");
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        assert_eq!(read(&dir.path().join(name(250))).unwrap().1, b"two fifty");
    }

    #[test]
    fn every_damage_is_refused_never_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, b"old").unwrap();
        let path = write(dir.path(), 7, b"state of the city").unwrap();
        let good = fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            assert!(latest(dir.path()).is_err(), "a flip at byte {at} went unnoticed");
        }
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(latest(dir.path()).is_err(), "a cut at byte {cut} went unnoticed");
        }
        fs::write(&path, &good).unwrap();
        fs::rename(&path, dir.path().join(name(8))).unwrap();
        assert!(latest(dir.path()).is_err(), "a renamed snapshot is refused");
    }
}
