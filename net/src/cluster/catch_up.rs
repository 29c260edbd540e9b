//! A node whose data directory's checkpoint the stream no longer reaches (an empty one
//! included, once the leader purged the stream's start) catches up from a peer's
//! checkpoint (API.md "Cluster"): [`open_from_peer`].
//!
//! Owns the fetch of `GET /v1/cluster/checkpoint` from the node the lease names (signed
//! as a forwarded request is: [`super::forward::sign`]), its checks, and the swap of
//! `store.redb`.
//!
//! Guarantees:
//! - the fetched store is written to `<data dir>/store.redb.fetch`, fsynced, and
//!   replaces anything only once it is whole (its length is the announced
//!   `Content-Length`) and opens as a store with a checkpoint; a bad answer (not `200`,
//!   truncated, not a store) is an error and nothing is replaced;
//! - the operator's `store.redb` is never deleted: it is moved aside to
//!   `store.redb.stale-<unix s>` before the fetched one is renamed into place (then the
//!   directory is fsynced);
//! - the lease's holder is asked for [`LEADER_WAIT`] at most (a lease that names a node
//!   that is gone is tried again until then); the engine is opened again at most
//!   [`ATTEMPTS`] times, each after a fresh fetch, and only while it fails because the
//!   stream was purged below the checkpoint (the leader may purge again between the
//!   fetch and the open); any other failure stops start-up at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use dispatch_cluster::{Cluster, LeaderInfo};
use dispatch_core::Engine;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};

use super::checkpoint::{LSN_HEADER, PATH};
use super::forward::{FORWARDED, FORWARDED_AUTH, now_s, sign};
use crate::Error;
use crate::auth::Keys;

/// How long a node waits for the lease to name a leader it can fetch from.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Fetches (and opens after them) before start-up gives up.
pub const ATTEMPTS: u32 = 3;
/// The longest a fetch waits for the next bytes of the answer.
const IDLE: Duration = Duration::from_secs(30);
/// Between two tries while waiting for a leader.
const RETRY: Duration = Duration::from_millis(500);
/// The fetched store, before it is moved into place.
pub const FETCH_NAME: &str = "store.redb.fetch";

/// `open` failed because the stream was purged below the data directory's checkpoint:
/// fetches a newer checkpoint from the leader into `data_dir`, and opens again (see the
/// module's guarantees).
pub fn open_from_peer(
    cluster: &Cluster,
    keys: &Keys,
    data_dir: &Path,
    mut open: impl FnMut() -> Result<Engine, dispatch_core::Error>,
) -> Result<Engine, Error> {
    let me = cluster.config().node_id.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::CatchUp(format!("starting a runtime: {e}")))?;
    let mut attempt = 1;
    loop {
        let (leader, lsn) = runtime.block_on(fetch_from_leader(|| cluster.lease_holder(), &me, keys, data_dir))?;
        install(data_dir)?;
        tracing::info!(leader = %leader.node_id, checkpoint_lsn = ?lsn, attempt, "fetched a checkpoint from the leader");
        match open() {
            Ok(engine) => {
                tracing::info!(leader = %leader.node_id, "caught up from the leader's checkpoint");
                return Ok(engine);
            }
            Err(e) if e.is_released() && attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "the stream was purged again meanwhile: fetching again");
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::CatchUp(format!(
                    "the engine did not open from the checkpoint fetched from {} (attempt {attempt}): {e}",
                    leader.node_id
                )));
            }
        }
    }
}

/// Asks the node `holder` names (never this one, `me`) for its checkpoint until one
/// answers well or [`LEADER_WAIT`] passed; returns who answered and the checkpoint's LSN.
pub async fn fetch_from_leader(
    holder: impl Fn() -> Option<LeaderInfo>,
    me: &str,
    keys: &Keys,
    data_dir: &Path,
) -> Result<(LeaderInfo, Option<u64>), Error> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let client = super::forward::client();
    let mut last = String::from("the lease named no other node");
    loop {
        if let Some(leader) = holder().filter(|l| l.node_id != me) {
            tracing::info!(leader = %leader.node_id, url = %leader.url, "fetching a checkpoint");
            match fetch(&client, keys, me, &leader.url, data_dir).await {
                Ok(lsn) => return Ok((leader, lsn)),
                Err(e) => {
                    tracing::warn!(leader = %leader.node_id, error = %e, "the checkpoint could not be fetched");
                    last = format!("{}: {e}", leader.node_id);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::CatchUp(format!(
                "no checkpoint fetched from a leader within {} s ({last})",
                LEADER_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Where the fetched store is written.
pub fn fetch_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FETCH_NAME)
}

/// Fetches `url`'s checkpoint into [`fetch_path`], fsynced and checked; returns its LSN.
/// On any failure the partial file is removed.
pub async fn fetch(
    client: &super::forward::Client,
    keys: &Keys,
    me: &str,
    url: &str,
    data_dir: &Path,
) -> Result<Option<u64>, String> {
    let to = fetch_path(data_dir);
    let result = fetch_into(client, keys, me, url, &to).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&to);
    }
    result
}

async fn fetch_into(
    client: &super::forward::Client,
    keys: &Keys,
    me: &str,
    url: &str,
    to: &Path,
) -> Result<Option<u64>, String> {
    use std::io::Write;
    let request_id = format!("req_{}", crate::hex::random_hex(8));
    let sig = sign(keys, now_s(), me, "GET", PATH, &request_id);
    let mut req = Request::builder().method("GET").uri(format!("{}{PATH}", url.trim_end_matches('/')));
    for (name, value) in [(FORWARDED, me), (FORWARDED_AUTH, sig.as_str()), ("x-request-id", request_id.as_str())] {
        let value = HeaderValue::from_str(value).map_err(|e| format!("a header: {e}"))?;
        req = req.header(HeaderName::from_static(name), value);
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| format!("the leader's URL is unusable: {e}"))?;
    let resp = tokio::time::timeout(IDLE, client.request(req))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("unreachable: {e}"))?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = tokio::time::timeout(IDLE, resp.into_body().collect()).await;
        let said = body.ok().and_then(|b| b.ok()).map(|b| b.to_bytes()).unwrap_or_default();
        let said = String::from_utf8_lossy(said.get(..said.len().min(300)).unwrap_or_default()).into_owned();
        return Err(format!("answered {status}: {said}"));
    }
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let announced: Option<u64> = header(CONTENT_LENGTH.as_str());
    let announced_lsn: Option<u64> = header(LSN_HEADER);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)
        .map_err(|e| format!("{}: {e}", to.display()))?;
    let mut body = resp.into_body();
    let mut got: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => return Err(format!("the answer stalled after {got} bytes")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("the answer broke off after {got} bytes: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            got += data.len() as u64;
            file.write_all(&data).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    match announced {
        Some(n) if n != got => return Err(format!("truncated: {got} bytes of {n}")),
        None => return Err("the answer has no Content-Length: it cannot be checked whole".into()),
        _ => {}
    }
    file.sync_all().map_err(|e| format!("fsync {}: {e}", to.display()))?;
    drop(file);
    let store = dispatch_storage::store::Store::open_read_only(to).map_err(|e| format!("not a store: {e}"))?;
    let checkpoint = store.checkpoint().map_err(|e| format!("the store's checkpoint does not read: {e}"))?;
    let Some((lsn, _)) = checkpoint else { return Err("the store holds no checkpoint".into()) };
    if announced_lsn.is_some_and(|a| a != lsn) {
        return Err(format!("the store's checkpoint is at {lsn}, the answer said {announced_lsn:?}"));
    }
    Ok(Some(lsn))
}

/// Moves `store.redb` (if any) aside to `store.redb.stale-<unix s>` and the fetched one
/// into its place, then fsyncs the directory.
pub fn install(data_dir: &Path) -> Result<(), Error> {
    let fail = |what: &str, path: &Path, e: std::io::Error| Error::CatchUp(format!("{what} {}: {e}", path.display()));
    let store = dispatch_core::history::path(data_dir);
    let fetched = fetch_path(data_dir);
    if store.exists() {
        let mut stale = data_dir.join(format!("store.redb.stale-{}", now_s()));
        let mut n = 1;
        while stale.exists() {
            stale = data_dir.join(format!("store.redb.stale-{}-{n}", now_s()));
            n += 1;
        }
        std::fs::rename(&store, &stale).map_err(|e| fail("moving aside", &store, e))?;
        tracing::warn!(kept = %stale.display(), "the data directory's store was moved aside");
    }
    std::fs::rename(&fetched, &store).map_err(|e| fail("moving into place", &fetched, e))?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(|e| fail("fsync", data_dir, e))?;
    tracing::info!(store = %store.display(), "the fetched checkpoint is in place");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use std::sync::Arc;

    fn keys() -> Keys {
        Keys::new(&[9u8; 32], "admin-token-0123456789abcdef")
    }

    /// A store with a checkpoint, as bytes (the copy a leader would send).
    fn a_store() -> Vec<u8> {
        let (dir, engine) = super::super::checkpoint::tests::engine_with_a_checkpoint();
        let copy = super::super::checkpoint::take(dir.path()).unwrap();
        drop(engine);
        let mut bytes = Vec::new();
        let mut file = copy.into_file();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        bytes
    }

    /// A stand-in peer that answers every request with `status` and `body`, streamed as
    /// a node streams its checkpoint; `lie`: it announces twice the length and breaks
    /// off (a truncated answer). Checks the request is signed.
    async fn peer(status: StatusCode, body: Vec<u8>, lie: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let file_dir = Arc::new(tempfile::tempdir().unwrap());
        std::fs::write(file_dir.path().join("body"), &body).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let file_dir = Arc::clone(&file_dir);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let file = std::fs::File::open(file_dir.path().join("body")).unwrap();
                        let len = file.metadata().unwrap().len() * if lie { 2 } else { 1 };
                        async move {
                            let rid = req.headers()["x-request-id"].to_str().unwrap().to_owned();
                            let signed =
                                super::super::forward::trusted(&keys(), req.headers(), now_s(), "GET", PATH, &rid);
                            assert_eq!(signed.as_deref(), Some("n2"));
                            let copy = super::super::checkpoint::Copy::of(file, len, None);
                            let mut r =
                                super::super::checkpoint::into_streaming(super::super::checkpoint::answer(copy));
                            *r.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
                });
            }
        });
        url
    }

    fn dir_with_old_store() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("store.redb"), b"the operator's").unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn bad_answers_replace_nothing_and_leave_no_fetch_behind() {
        let good = a_store();
        let cases = [
            (StatusCode::FORBIDDEN, b"{\"error\":{}}".to_vec(), false, &["403"][..]),
            (StatusCode::OK, b"not a redb file at all".to_vec(), false, &["not a store"]),
            // Cut before or after the head was flushed: either way, not taken.
            (StatusCode::OK, good.get(..good.len() / 2).unwrap().to_vec(), true, &["broke off", "unreachable"]),
        ];
        let client = super::super::forward::client();
        for (status, body, lie, said) in cases {
            let url = peer(status, body, lie).await;
            let dir = dir_with_old_store();
            let e = fetch(&client, &keys(), "n2", &url, dir.path()).await.unwrap_err();
            assert!(said.iter().any(|s| e.contains(s)), "{said:?}: {e}");
            assert_eq!(names(dir.path()), ["store.redb"], "{said:?}");
            assert_eq!(std::fs::read(dir.path().join("store.redb")).unwrap(), b"the operator's");
        }
    }

    #[tokio::test]
    async fn a_good_answer_is_fetched_then_installed_with_the_old_store_kept() {
        let good = a_store();
        let url = peer(StatusCode::OK, good.clone(), false).await;
        let dir = dir_with_old_store();
        let client = super::super::forward::client();
        let lsn = fetch(&client, &keys(), "n2", &url, dir.path()).await.unwrap();
        assert!(lsn.is_some());
        install(dir.path()).unwrap();
        let names = names(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[1].starts_with("store.redb.stale-"), "{names:?}");
        assert_eq!(std::fs::read(dir.path().join(&names[1])).unwrap(), b"the operator's");
        assert_eq!(std::fs::read(dir.path().join("store.redb")).unwrap(), good);
    }

    #[tokio::test]
    async fn without_another_node_to_ask_the_wait_ends_in_an_error() {
        tokio::time::pause();
        let dir = tempfile::tempdir().unwrap();
        let me = || Some(LeaderInfo { node_id: "n2".into(), url: "http://127.0.0.1:1".into() });
        let e = fetch_from_leader(me, "n2", &keys(), dir.path()).await.unwrap_err();
        assert!(e.to_string().contains("named no other node"), "{e}");
    }
}
