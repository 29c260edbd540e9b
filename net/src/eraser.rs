//! The eraser (issue 20: U): finishes the erasures the state queued
//! (`State::erasures`, made by `POST /v1/admin/users/{id}/erase`) outside the state — the
//! user's document files, position track and the chat of archived trips — then logs
//! `Command::ErasureFinished`, which takes the user off the queue.
//!
//! Guarantees: crash-safe and idempotent — the queue is in the state (logged and
//! checkpointed), every step here can run again with the same result (a file already gone,
//! a position range already empty, a trip whose chat is already replaced), and the user
//! leaves the queue only after every step succeeded, so after a restart an unfinished
//! erasure resumes from the start; each history step is one bounded transaction
//! ([`ERASE_BATCH`] rows), begun `SETTLE_MS` after the erasure, once positions reported
//! before it are written; a document file another application still holds (the same
//! bytes) is kept; the writer's path pays nothing (this runs on blocking threads).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dispatch_core::clock::Clock;
use dispatch_core::engine::EraseStep;
use dispatch_core::user::Erasure;
use dispatch_core::{Actor, Command, Engine, UserId};
use tokio::sync::watch;

/// Rows (positions, archived trips) one history step erases at most.
pub const ERASE_BATCH: usize = 1_000;

/// How often the eraser looks at the queue.
const POLL: Duration = Duration::from_millis(200);

/// How long after an erasure the eraser starts on it: the position tracker writes what it
/// received at most a second later (`dispatch_core`'s tracker), so positions reported just
/// before the erasure are in the history by then, and erased with the rest.
const SETTLE_MS: i64 = 2_000;

/// Runs until `shutdown` turns `true`.
pub async fn run(engine: Arc<Engine>, data_dir: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let mut done_here = std::collections::HashSet::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let queue = engine.read(|v| Arc::clone(v.erasures()));
        let now = dispatch_core::clock::SystemClock.now();
        let leading = engine.is_leader();
        // A follower's local erasures done, kept while the queue still names them.
        done_here.retain(|u| queue.contains_key(u));
        for (&user, erasure) in queue.iter().filter(|(_, e)| now.millis_since(e.at) >= SETTLE_MS) {
            if !leading && done_here.contains(&user) {
                continue;
            }
            let (engine, dir, erasure) = (Arc::clone(&engine), data_dir.clone(), erasure.clone());
            let done = tokio::task::spawn_blocking(move || finish(&engine, &dir, user, &erasure, leading)).await;
            match done {
                Ok(Ok(())) if !leading => {
                    done_here.insert(user);
                }
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(user = %user, error = %e, "an erasure could not finish; retrying"),
                Err(e) => tracing::warn!(user = %user, error = %e, "the eraser's task failed; retrying"),
            }
        }
    }
}

/// Erases what `erasure` left outside the state, then (`log`: on the node that leads)
/// takes `user` off the queue.
pub fn finish(engine: &Engine, data_dir: &Path, user: UserId, erasure: &Erasure, log: bool) -> Result<(), String> {
    // A walk of every application: on a snapshot, which holds no lock while it walks.
    let view = engine.snapshot();
    for hash in &erasure.documents {
        let held = view.applications().iter().any(|a| a.documents.values().any(|d| d.sha256 == *hash));
        if !held {
            crate::documents::remove(data_dir, hash).map_err(|e| format!("cannot remove a document: {e}"))?;
        }
    }
    let mut step = EraseStep::Positions;
    while step != EraseStep::Done {
        step = engine.erase_history_step(user, step, ERASE_BATCH).map_err(|e| e.to_string())?;
    }
    if log {
        engine.submit(Actor::System, Command::ErasureFinished { user_id: user }).map_err(|e| e.to_string())?;
    }
    Ok(())
}
