//! The lease keeper: carries out the [`Election`]'s decisions against a [`LeaseKv`] and
//! this node's [`Leadership`].
//!
//! Owns [`Keeper`] (one step: read the lease, decide, write, grant or revoke) and the
//! thread that steps it every `lease / 8` in production. Guarantees: a grant is made only
//! after the lease write succeeded, and the log's term is set before the grant (so the
//! writer's claim carries it); a revoke is made at once when the election says so; the
//! node counts as caught up only when its writer says so *and* its log consumed the
//! stream's last sequence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dispatch_core::Leadership;

use crate::LeaderInfo;
use crate::election::{Action, Election, Input};
use crate::kv::LeaseKv;
use crate::log::LogShared;

/// One node's lease keeper. See the module documentation.
pub struct Keeper<K: LeaseKv> {
    /// The decisions.
    pub election: Election,
    kv: K,
    leadership: Arc<Leadership>,
    shared: Arc<LogShared>,
    /// The writer led under the current grant.
    led: bool,
}

impl<K: LeaseKv> Keeper<K> {
    /// A keeper for a follower.
    pub fn new(election: Election, kv: K, leadership: Arc<Leadership>, shared: Arc<LogShared>) -> Self {
        Keeper { election, kv, leadership, shared, led: false }
    }

    /// One step at `now` (this node's monotonic time); `stream_last` is the stream's last
    /// sequence (`None`: unknown, so not caught up).
    pub fn step(&mut self, now: Duration, stream_last: Option<u64>) {
        let lease = self.kv.read();
        self.decide(now, lease, stream_last);
    }

    /// The production step: the leader's timer is checked before any I/O (a slow server
    /// must not delay a step-down), the stream's end is asked for only by a follower, and
    /// the decision uses the clock as it is after the reads.
    pub fn step_live(&mut self, clock: &dyn Fn() -> Duration, stream_last: &dyn Fn() -> Option<u64>) {
        let actions = self.election.expire(clock());
        self.run(clock(), actions);
        let lease = self.kv.read();
        let last = if self.election.term().is_none() { stream_last() } else { None };
        self.decide(clock(), lease, last);
    }

    fn decide(&mut self, now: Duration, lease: crate::election::Observed, stream_last: Option<u64>) {
        if self.leadership.is_leader() {
            self.led = true;
        }
        let writer_fenced = self.led && !self.leadership.is_leader() && self.election.term().is_some();
        let end_seq = self.shared.end_seq.load(Ordering::SeqCst);
        let input = Input {
            now,
            lease,
            caught_up: self.leadership.is_caught_up() && stream_last.is_some_and(|last| end_seq >= last),
            log_term: self.shared.known_term.load(Ordering::SeqCst),
            writer_fenced,
        };
        let actions = self.election.tick(&input);
        self.run(now, actions);
    }

    /// Gives the lease up if held.
    pub fn shutdown(&mut self, now: Duration) {
        let actions = self.election.shutdown(now);
        self.run(now, actions);
    }

    fn run(&mut self, now: Duration, actions: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Bid { expected_revision, value } => {
                    let result = self.kv.write(expected_revision, &value);
                    queue.extend(self.election.on_bid(now, value.term, result));
                }
                Action::Renew { expected_revision, value } => {
                    let result = self.kv.write(Some(expected_revision), &value);
                    queue.extend(self.election.on_renew(now, result));
                }
                Action::GiveUp { revision } => {
                    let _ = self.kv.delete(revision);
                }
                Action::Grant(term) => {
                    self.led = false;
                    self.shared.term.store(term, Ordering::SeqCst);
                    self.leadership.grant(term);
                }
                Action::Revoke => {
                    self.led = false;
                    self.leadership.revoke();
                }
            }
        }
    }

    /// The leader the lease names at `now`.
    pub fn leader(&self, now: Duration) -> Option<LeaderInfo> {
        self.election.leader(now).map(|v| LeaderInfo { node_id: v.node_id, url: v.url })
    }
}

/// The keeper's thread (production): steps every `lease / 8`.
pub(crate) struct KeeperThread {
    stop: Arc<AtomicBool>,
    /// Stop as a crash would: without giving the lease up (tests and benches of failover).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    abandon: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeeperThread {
    pub(crate) fn spawn<K: LeaseKv>(
        mut keeper: Keeper<K>,
        lease: Duration,
        stream_last: impl Fn() -> Option<u64> + Send + 'static,
        leader: Arc<std::sync::Mutex<Option<LeaderInfo>>>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let abandon = Arc::new(AtomicBool::new(false));
        let abandoning = Arc::clone(&abandon);
        let thread = std::thread::Builder::new().name("dispatch-lease".into()).spawn(move || {
            let start = Instant::now();
            let period = (lease / 8).max(Duration::from_millis(5));
            while !stopping.load(Ordering::SeqCst) {
                keeper.step_live(&|| start.elapsed(), &stream_last);
                let named = keeper.leader(start.elapsed());
                *leader.lock().unwrap_or_else(|p| p.into_inner()) = named;
                std::thread::sleep(period);
            }
            if !abandoning.load(Ordering::SeqCst) {
                keeper.shutdown(start.elapsed());
            }
            *leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
        })?;
        Ok(KeeperThread { stop, abandon, thread: Some(thread) })
    }

    /// Stops the keeper without giving the lease up, as a crash would: the other nodes
    /// must see it lapse.
    #[cfg(feature = "testing")]
    pub(crate) fn abandon(&mut self) {
        self.abandon.store(true, Ordering::SeqCst);
        self.stop();
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for KeeperThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::Observed;
    use crate::kv::MemKv;

    fn keeper(kv: &Arc<MemKv>, node: &str, leadership: &Arc<Leadership>) -> Keeper<Arc<MemKv>> {
        let election = Election::new(node, "u", Duration::from_millis(400));
        Keeper::new(election, Arc::clone(kv), Arc::clone(leadership), Arc::default())
    }

    #[test]
    fn only_a_caught_up_node_is_granted_and_a_fenced_writer_gives_the_lease_up() {
        let kv = Arc::new(MemKv::new());
        let leadership = Arc::new(Leadership::new());
        let mut k = keeper(&kv, "a", &leadership);
        k.step(Duration::ZERO, Some(0));
        assert!(!leadership.is_granted(), "the writer has not said it is caught up");
        leadership.set_log_end(0, true);
        k.step(Duration::from_millis(1), None);
        assert!(!leadership.is_granted(), "the stream's end is unknown");
        k.step(Duration::from_millis(2), Some(0));
        assert!(leadership.is_granted());
        assert_eq!(leadership.term(), 1);
        assert_eq!(k.shared.term.load(Ordering::SeqCst), 1, "the log publishes under the grant's term");
        assert_eq!(k.leader(Duration::from_millis(2)).map(|l| l.node_id), Some("a".to_string()));
        // The writer leads, then is fenced: the keeper deletes the lease and revokes.
        leadership.set_leading(true);
        k.step(Duration::from_millis(3), Some(0));
        leadership.set_leading(false);
        k.step(Duration::from_millis(4), Some(0));
        assert!(!leadership.is_granted());
        assert!(matches!(kv.read(), Observed::Deleted { .. }));
    }

    #[test]
    fn shutdown_deletes_a_held_lease() {
        let kv = Arc::new(MemKv::new());
        let leadership = Arc::new(Leadership::new());
        leadership.set_log_end(0, true);
        let mut k = keeper(&kv, "a", &leadership);
        k.step(Duration::ZERO, Some(0));
        assert!(leadership.is_granted());
        k.shutdown(Duration::from_millis(1));
        assert!(!leadership.is_granted());
        assert!(matches!(kv.read(), Observed::Deleted { .. }));
    }
}
