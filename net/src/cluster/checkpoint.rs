//! `GET /v1/cluster/checkpoint`'s answer: this node's `store.redb` (its checkpoint and
//! its history) for a peer that must catch up from a newer checkpoint than the stream
//! still reaches ([`super::catch_up`]).
//!
//! Owns the copy ([`take`]: the store's online backup, as of one redb read transaction,
//! into a temporary file of the data directory) and its streaming ([`into_streaming`]:
//! the listener turns an answer that carries a [`Streamed`] copy into a body read in
//! chunks by a blocking thread).
//!
//! Guarantees: the copy is consistent (one commit of the store, taken while the engine
//! goes on committing) and read back by the backup before it is offered; its temporary
//! name is gone before the answer starts (the open descriptor keeps its bytes until the
//! stream ends or the client goes), so nothing is left in the data directory whatever
//! happens to the transfer (a crash during the backup itself leaves a
//! `store.redb.serve-*`, removed at the next start: [`remove_leftovers`]); the file is never held in memory — at most
//! [`CHUNKS_IN_FLIGHT`] chunks of [`CHUNK_BYTES`]; the answer's `Content-Length` is the
//! copy's size, so a truncated transfer is seen by the peer.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use dispatch_storage::Lsn;
use http_body_util::{Either, Full};
use hyper::Response;
use hyper::body::{Frame, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use crate::http::Resp;

/// The endpoint's path.
pub const PATH: &str = "/v1/cluster/checkpoint";
/// The answer's header naming the copy's checkpoint LSN.
pub const LSN_HEADER: &str = "x-dispatch-checkpoint-lsn";
/// Bytes read from the copy at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks read ahead of the socket.
pub const CHUNKS_IN_FLIGHT: usize = 4;
/// How a copy's temporary name starts.
const TMP_PREFIX: &str = "store.redb.serve-";

/// A copy of the store, open, its temporary name already removed.
#[derive(Debug)]
pub struct Copy {
    file: File,
    /// Its size, bytes.
    pub len: u64,
    /// Its checkpoint's LSN (`None`: the store holds no checkpoint yet).
    pub lsn: Option<Lsn>,
}

impl Copy {
    /// The open copy.
    pub fn into_file(self) -> File {
        self.file
    }

    /// `file` offered as a copy of `len` bytes (tests: a length that lies truncates).
    #[cfg(test)]
    pub(crate) fn of(file: File, len: u64, lsn: Option<Lsn>) -> Copy {
        Copy { file, len, lsn }
    }
}

/// Copies the store of the data directory `data_dir` (blocking: run it off the
/// runtime's threads).
pub fn take(data_dir: &Path) -> Result<Copy, String> {
    let store = dispatch_core::history::path(data_dir);
    let tmp: PathBuf = data_dir.join(format!("{TMP_PREFIX}{}", crate::hex::random_hex(8)));
    let copied = dispatch_storage::store::Store::open_read_only(&store)
        .and_then(|ro| ro.backup_to(&tmp))
        .map_err(|e| format!("the store could not be copied: {e}"));
    let opened = copied.and_then(|report| {
        let file = File::open(&tmp).map_err(|e| format!("the copy could not be opened: {e}"))?;
        let len = file.metadata().map_err(|e| format!("the copy could not be read: {e}"))?.len();
        Ok(Copy { file, len, lsn: report.checkpoint_lsn })
    });
    // Whatever happened: the name goes now (an open copy keeps its bytes until closed).
    if let Err(e) = std::fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), error = %e, "a checkpoint copy could not be removed");
    }
    opened
}

/// Removes the temporary copies a process stopped mid-copy left in `data_dir` (a
/// copy's name is removed as soon as it is open: only a crash during the backup leaves
/// one). Returns how many went.
pub fn remove_leftovers(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TMP_PREFIX) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The answer's copy, riding in its extensions from the handler to the listener
/// (extensions must be `Clone`; the first to take it streams it).
#[derive(Debug, Clone)]
pub struct Streamed(Arc<Mutex<Option<Copy>>>);

/// `200` with `copy` to be streamed: `application/octet-stream`, its length, its LSN.
pub fn answer(copy: Copy) -> Resp {
    let mut resp = Resp::new(Full::new(Bytes::new()));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Some(lsn) = copy.lsn {
        h.insert(LSN_HEADER, HeaderValue::from(lsn));
    }
    resp.extensions_mut().insert(Streamed(Arc::new(Mutex::new(Some(copy)))));
    resp
}

/// What the listener sends: an answer whole, or a copy streamed from its file.
pub type Body = Either<Full<Bytes>, FileBody>;

/// `resp` as the listener sends it: its own body, or the copy it carries read in chunks.
pub fn into_streaming(resp: Resp) -> Response<Body> {
    let copy = resp.extensions().get::<Streamed>().and_then(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).take());
    let Some(copy) = copy else { return resp.map(Either::Left) };
    let (mut parts, _) = resp.into_parts();
    parts.extensions.remove::<Streamed>();
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(copy.len));
    parts.headers.remove(hyper::header::CONTENT_ENCODING);
    Response::from_parts(parts, Either::Right(FileBody::spawn(copy)))
}

/// A file's bytes, read by a blocking thread into a bounded channel.
#[derive(Debug)]
pub struct FileBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    left: u64,
}

impl FileBody {
    /// Starts reading `copy` (on tokio's blocking pool; a plain thread outside a runtime).
    fn spawn(copy: Copy) -> FileBody {
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let len = copy.len;
        let read = move || {
            let mut file = copy.file;
            loop {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                match file.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        // The client went away: stop reading (the copy closes with `file`).
                        if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(read)),
            Err(_) => drop(std::thread::Builder::new().name("dispatch-checkpoint".into()).spawn(read)),
        }
        FileBody { rx, left: len }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.left = self.left.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.left > 0 => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the checkpoint copy ended early",
            )))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn copy_of(bytes: &[u8]) -> (tempfile::TempDir, Copy) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, Copy { file, len: bytes.len() as u64, lsn: Some(7) })
    }

    #[tokio::test]
    async fn a_copy_streams_whole_in_chunks_with_its_length_and_lsn() {
        let bytes: Vec<u8> = (0..(CHUNK_BYTES * 3 + 5)).map(|i| (i % 251) as u8).collect();
        let (_dir, copy) = copy_of(&bytes);
        let resp = into_streaming(answer(copy));
        assert_eq!(resp.headers()[CONTENT_LENGTH], bytes.len().to_string().as_str());
        assert_eq!(resp.headers()[LSN_HEADER], "7");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/octet-stream");
        assert!(resp.extensions().get::<Streamed>().is_none());
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= CHUNK_BYTES);
            got.extend_from_slice(&data);
            frames += 1;
        }
        assert_eq!(got, bytes);
        assert_eq!(frames, 4);
    }

    #[tokio::test]
    async fn a_copy_shorter_than_announced_ends_in_an_error() {
        let (_dir, mut copy) = copy_of(b"abc");
        copy.len = 10;
        let body = into_streaming(answer(copy)).into_body();
        assert!(body.collect().await.is_err(), "a truncated copy must not look whole");
    }

    #[test]
    fn an_answer_without_a_copy_goes_as_it_is() {
        let resp = into_streaming(crate::http::json_response(hyper::StatusCode::OK, &serde_json::json!({"a": 1})));
        assert!(matches!(resp.body(), Either::Left(_)));
    }

    /// A data directory whose engine took a checkpoint, and the engine, still open.
    pub(crate) fn engine_with_a_checkpoint() -> (tempfile::TempDir, dispatch_core::Engine) {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let mut config = dispatch_core::EngineConfig::default().with_data_dir(dir.path());
        config.checkpoint_every_records = 10;
        let engine = dispatch_core::Engine::open(config).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut n = 0;
        while engine.stats().checkpoints.written.load(Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint was taken");
            n += 1;
            let new = dispatch_core::NewUser {
                id: None,
                role: dispatch_core::Role::Rider,
                name: format!("u{n}"),
                phone: format!("+2010{n:08}"),
                vehicle: None,
            };
            engine.create_user(dispatch_core::Actor::Admin, new).unwrap();
        }
        (dir, engine)
    }

    #[test]
    fn the_copy_is_a_store_with_the_checkpoint_and_leaves_no_file_behind() {
        let (dir, engine) = engine_with_a_checkpoint();
        let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        let mut copy = take(dir.path()).unwrap();
        let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after, "the temporary name is gone");
        let mut bytes = Vec::new();
        copy.file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, copy.len);
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("store.redb"), &bytes).unwrap();
        let ro = dispatch_storage::store::Store::open_read_only(out.path().join("store.redb")).unwrap();
        assert!(copy.lsn.is_some_and(|lsn| lsn >= 10), "{:?}", copy.lsn);
        assert_eq!(ro.checkpoint().unwrap().map(|(lsn, _)| lsn), copy.lsn);
        drop(engine);
        assert!(take(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn only_a_copys_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["store.redb", "store.redb.stale-1", "store.redb.serve-0a1b", "store.redb.serve-ff"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_leftovers(dir.path()), 2);
        let mut left: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["store.redb", "store.redb.stale-1"]);
        assert_eq!(remove_leftovers(&dir.path().join("missing")), 0);
    }
}
