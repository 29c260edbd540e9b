//! Driver documents on disk: files under `<data dir>/documents/`, named by the SHA-256
//! of their bytes (the state records only that hash, with the kind, media type and size).
//!
//! Guarantees: a file appears under its hash name only whole and durable — the bytes go
//! to a temporary name in the same directory, are synced, renamed, and the directory is
//! synced — so a crash never leaves a half file under a hash name (a temporary file may
//! be left; backups skip it); the same bytes are stored once; a read checks the bytes
//! against their hash, so a damaged or missing file is an error, never served as the
//! document. Everything here blocks: callers run it on a blocking thread.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dispatch_core::DOCUMENTS_DIR;

/// Temporary files of uploads in progress start with this.
const TMP_PREFIX: &str = ".tmp-";

/// A number that makes each temporary name of this process unique.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

fn hex(hash: &[u8; 32]) -> String {
    crate::hex::hex(hash)
}

/// Where the documents of `data_dir` are.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DOCUMENTS_DIR)
}

/// Stores `bytes` under their hash in `data_dir`'s documents, durably; returns the hash.
pub fn store(data_dir: &Path, bytes: &[u8]) -> io::Result<[u8; 32]> {
    let hash = sha256(bytes);
    let dir = dir(data_dir);
    fs::create_dir_all(&dir)?;
    let target = dir.join(hex(&hash));
    if target.is_file() {
        return Ok(hash);
    }
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{TMP_PREFIX}{}-{}-{n}", hex(&hash), std::process::id()));
    let written = (|| {
        let mut f = File::options().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| hash)
}

/// The bytes stored under `hash` in `data_dir`'s documents, checked against it.
pub fn read(data_dir: &Path, hash: &[u8; 32]) -> io::Result<Vec<u8>> {
    let path = dir(data_dir).join(hex(hash));
    let bytes = fs::read(&path)?;
    if sha256(&bytes) != *hash {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} does not match its hash", path.display())));
    }
    Ok(bytes)
}

// ----- issue 20: U -----

/// Removes the file of `hash` from `data_dir`'s documents, durably (the directory is
/// synced); a file already gone is no error (an erasure that resumes after a crash).
pub fn remove(data_dir: &Path, hash: &[u8; 32]) -> io::Result<()> {
    let dir = dir(data_dir);
    match fs::remove_file(dir.join(hex(hash))) {
        Ok(()) => File::open(&dir)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_stored_once_by_hash_and_read_back_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let h = store(tmp.path(), b"%PDF-1.4 hello").unwrap();
        assert_eq!(store(tmp.path(), b"%PDF-1.4 hello").unwrap(), h);
        let names: Vec<String> =
            fs::read_dir(dir(tmp.path())).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, vec![hex(&h)], "one file, under its hash, no temporary left");
        assert_eq!(read(tmp.path(), &h).unwrap(), b"%PDF-1.4 hello");
        fs::write(dir(tmp.path()).join(hex(&h)), b"tampered").unwrap();
        assert_eq!(read(tmp.path(), &h).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(read(tmp.path(), &[0; 32]).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
