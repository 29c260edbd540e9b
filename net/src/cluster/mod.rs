//! `dispatchd` as a node of a cluster (issue 21; API.md "Cluster"): what the server adds
//! on top of `dispatch-cluster` (the shared log and the lease) and the engine's
//! follower/leader modes.
//!
//! Owns [`Node`]: this node's name, its view of the membership (who leads, how far the
//! stream goes: [`Membership`], `dispatch_cluster::Cluster` in production, a stand-in in
//! tests), the engine's [`Leadership`], the pooled client that forwards writes
//! ([`forward`]), and the counters behind the `dispatch_cluster_*` metrics; the body of
//! `GET /v1/cluster` ([`status`]); [`LeaderOnly`], which runs the payment worker only
//! while this node leads; this node's checkpoint for a peer ([`checkpoint`]) and the
//! catch-up of a node the stream was purged below ([`catch_up`]).
//!
//! Guarantees: a follower never applies a write itself: it forwards it to the leader or
//! answers `503 not_leader` with `Retry-After` ([`forward`]); side effects (gateway calls,
//! notifications, webhooks, erasures, ticks, the demo city) run only where
//! `Engine::is_leader` is true, and resume when it becomes true again; a standalone
//! node (no `[cluster]`) has no `Node` and behaves exactly as before.

pub mod catch_up;
pub mod checkpoint;
pub mod forward;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dispatch_cluster::LeaderInfo;
use dispatch_core::Leadership;
use dispatch_storage::Lsn;
use serde_json::{Value, json};

/// What a node knows of the cluster beyond its own engine: who holds the lease, how far
/// the stream goes. `dispatch_cluster::Cluster` in production.
pub trait Membership: Send + Sync {
    /// The leader the lease names now (`None`: none, or its lease lapsed).
    fn leader(&self) -> Option<LeaderInfo>;
    /// The last LSN the stream holds, as last seen.
    fn stream_last_lsn(&self) -> Lsn;
}

impl Membership for dispatch_cluster::Cluster {
    fn leader(&self) -> Option<LeaderInfo> {
        dispatch_cluster::Cluster::leader(self)
    }
    fn stream_last_lsn(&self) -> Lsn {
        dispatch_cluster::Cluster::stream_last_lsn(self)
    }
}

/// Forwarded requests, by result (`dispatch_cluster_forwarded_total{result}`).
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// The leader answered (whatever its status).
    pub ok: AtomicU64,
    /// No leader was known: answered 503 `not_leader`.
    pub no_leader: AtomicU64,
    /// The leader could not be reached or did not answer in time: 503 `not_leader`.
    pub unreachable: AtomicU64,
}

/// A node of a cluster: shared by every request and socket (`App::node`).
pub struct Node {
    /// This node's `node_id`.
    pub node_id: String,
    /// This node's `advertise_url`.
    pub advertise_url: String,
    /// Who leads, how far the stream goes.
    pub membership: Arc<dyn Membership>,
    /// The engine's handshake with the lease keeper.
    pub leadership: Arc<Leadership>,
    /// Forwarded requests, by result.
    pub forwarded: ForwardCounters,
    /// The keys forwarded requests are signed with (the token secret every node shares).
    pub keys: crate::auth::Keys,
    /// The pooled client writes are forwarded through.
    client: forward::Client,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("node_id", &self.node_id).field("advertise_url", &self.advertise_url).finish()
    }
}

impl Node {
    /// A node named `node_id`, reached at `advertise_url`.
    pub fn new(
        node_id: String,
        advertise_url: String,
        membership: Arc<dyn Membership>,
        leadership: Arc<Leadership>,
        keys: crate::auth::Keys,
    ) -> Node {
        Node {
            node_id,
            advertise_url,
            membership,
            leadership,
            keys,
            forwarded: ForwardCounters::default(),
            client: forward::client(),
        }
    }

    /// Whether this node leads now (its writer claimed the log under a granted lease).
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// The leader to forward to: `None` when no leader is known, or when the lease names
    /// this node while it does not lead yet (it must not forward to itself).
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.membership.leader().filter(|l| l.node_id != self.node_id)
    }

    /// The LSN a leader tells a follower to wait for after a forwarded write: what it
    /// applied, or the log's end if that is further (a commit is reported before or
    /// after `set_applied`: the end covers both).
    pub fn written_lsn(&self) -> Lsn {
        self.leadership.applied_lsn().max(self.leadership.log_end_lsn())
    }

    /// How far this node trails the stream, ms: 0 on the leader and on a follower that
    /// applied the whole stream as last seen; else the time since the last record it
    /// applied was written (`now_ms` is the wall clock: this is an observation, not a
    /// state input).
    pub fn lag_ms(&self, now_ms: u64) -> u64 {
        if self.is_leader() {
            return 0;
        }
        let stream = self.membership.stream_last_lsn().max(self.leadership.log_end_lsn());
        if self.leadership.applied_lsn() >= stream {
            return 0;
        }
        match self.leadership.applied_at_ms() {
            0 => 0,
            at => now_ms.saturating_sub(at),
        }
    }
}

/// The body of `GET /v1/cluster` (API.md "Cluster"). A standalone node has none: it
/// answers `404 not_found` (API-NOTES: it is no member of any cluster, and has no lease,
/// stream or lag to report).
pub fn status(node: &Node, now_ms: u64) -> Value {
    let leading = node.is_leader();
    let leader = if leading {
        Some(LeaderInfo { node_id: node.node_id.clone(), url: node.advertise_url.clone() })
    } else {
        node.leader()
    };
    json!({
        "node_id": node.node_id,
        "role": if leading { "leader" } else { "follower" },
        "leader": leader.map(|l| json!({"node_id": l.node_id, "url": l.url})),
        "applied_lsn": node.leadership.applied_lsn(),
        "stream_last_lsn": node.membership.stream_last_lsn().max(node.leadership.log_end_lsn()),
        "lag_ms": node.lag_ms(now_ms),
    })
}

/// The wall clock, ms since the epoch (lag reports only; never a state input).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The `dispatch_cluster_*` families of `/metrics` (none for a standalone node).
pub fn render_metrics(node: Option<&Node>, now_ms: u64) -> String {
    use std::fmt::Write;
    let Some(node) = node else { return String::new() };
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let leading = node.is_leader();
    family(&mut o, "dispatch_cluster_role", "gauge", "This node's role in the cluster: 1 for the current one.");
    let _ = writeln!(o, "dispatch_cluster_role{{role=\"leader\"}} {}", u8::from(leading));
    let _ = writeln!(o, "dispatch_cluster_role{{role=\"follower\"}} {}", u8::from(!leading));
    let (won, stepped_down) = node.leadership.transitions();
    let r = Ordering::Relaxed;
    // Seconds, not `_ms`: promtool refuses abbreviated units (API-NOTES).
    family(&mut o, "dispatch_cluster_lag_seconds", "gauge", "How far this node trails the stream, seconds.");
    let _ = writeln!(o, "dispatch_cluster_lag_seconds {}", node.lag_ms(now_ms) as f64 / 1000.0);
    let figures: [(&str, &str, &str, u64); 4] = [
        ("dispatch_cluster_applied_lsn", "gauge", "The last LSN this node applied.", node.leadership.applied_lsn()),
        (
            "dispatch_cluster_stream_last_lsn",
            "gauge",
            "The last LSN the shared stream holds, as last seen.",
            node.membership.stream_last_lsn().max(node.leadership.log_end_lsn()),
        ),
        ("dispatch_cluster_elections_total", "counter", "Times this node became leader.", won),
        ("dispatch_cluster_step_downs_total", "counter", "Times this node stopped leading.", stepped_down),
    ];
    for (name, kind, help, v) in figures {
        family(&mut o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "dispatch_cluster_forwarded_total",
        "counter",
        "Writes this follower forwarded to the leader, by result.",
    );
    let f = &node.forwarded;
    for (result, n) in [("ok", &f.ok), ("no_leader", &f.no_leader), ("unreachable", &f.unreachable)] {
        let _ = writeln!(o, "dispatch_cluster_forwarded_total{{result=\"{result}\"}} {}", n.load(r));
    }
    o
}

/// Sends presence report `seq` of `driver` to the leader (this node follows); the
/// leader's answer settles it in `pending` (a leader that could not be asked, or could not
/// take it now, leaves it to be sent again on the next tick).
pub fn forward_presence(
    node: &Arc<Node>,
    pending: &Arc<crate::hub::presence::PendingPresence>,
    driver: dispatch_core::UserId,
    connected: bool,
    seq: u64,
) {
    let retry = || Err(dispatch_core::Error::NotLeader("the leader could not be asked".into()));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        pending.settle(driver, seq, retry());
        return;
    };
    let (node, pending) = (Arc::clone(node), Arc::clone(pending));
    runtime.spawn(async move {
        let command = dispatch_core::Command::SetPresence { connected };
        let sent = forward::submit(&node, dispatch_core::Actor::User(driver), command).await;
        let result = match sent {
            Ok(_) => Ok(()),
            Err(r)
                if matches!(
                    r.code.as_str(),
                    "not_leader" | "overloaded" | "read_only" | "unavailable" | "internal"
                ) =>
            {
                retry()
            }
            // Refused for good (the driver is gone): taken, as the engine's own refusal is.
            Err(_) => Ok(()),
        };
        pending.settle(driver, seq, result);
    });
}

/// Runs something (the payment worker) only while this node leads: started when
/// `is_leader` turns true, stopped when it turns false, looked at every `every`.
pub struct LeaderOnly {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl LeaderOnly {
    /// Watches `is_leader`; `start` builds the thing when leadership begins and the
    /// returned `stop` ends it when leadership ends (and at [`LeaderOnly::stop`]).
    pub fn start<T: Send + 'static>(
        is_leader: impl Fn() -> bool + Send + 'static,
        every: Duration,
        start: impl Fn() -> Option<T> + Send + 'static,
        stop: impl Fn(T) + Send + 'static,
    ) -> std::io::Result<LeaderOnly> {
        let flag = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&flag);
        let handle = std::thread::Builder::new().name("dispatch-leader-only".into()).spawn(move || {
            let mut running: Option<T> = None;
            while !stopping.load(Ordering::Relaxed) {
                let leading = is_leader();
                if leading && running.is_none() {
                    running = start();
                } else if !leading && let Some(t) = running.take() {
                    stop(t);
                }
                std::thread::sleep(every);
            }
            if let Some(t) = running.take() {
                stop(t);
            }
        })?;
        Ok(LeaderOnly { stop: flag, handle: Some(handle) })
    }

    /// Stops watching, and stops what runs.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A membership a test sets by hand.
    #[derive(Default)]
    pub(crate) struct FakeMembership {
        pub leader: Mutex<Option<LeaderInfo>>,
        pub last: AtomicU64,
    }

    impl Membership for FakeMembership {
        fn leader(&self) -> Option<LeaderInfo> {
            self.leader.lock().clone()
        }
        fn stream_last_lsn(&self) -> Lsn {
            self.last.load(Ordering::SeqCst)
        }
    }

    pub(crate) fn node(id: &str, leader: Option<(&str, &str)>) -> (Node, Arc<FakeMembership>) {
        let m = Arc::new(FakeMembership::default());
        *m.leader.lock() = leader.map(|(n, u)| LeaderInfo { node_id: n.into(), url: u.into() });
        let node = Node::new(
            id.into(),
            format!("http://{id}.invalid"),
            Arc::clone(&m) as Arc<dyn Membership>,
            Arc::new(Leadership::new()),
            crate::auth::Keys::new(&[9u8; 32], "admin-token-0123456789abcdef"),
        );
        (node, m)
    }

    #[test]
    fn a_node_never_forwards_to_itself_and_names_itself_when_it_leads() {
        let (n, m) = node("n1", Some(("n1", "http://n1")));
        assert_eq!(n.leader(), None, "the lease names this node, which does not lead yet");
        *m.leader.lock() = Some(LeaderInfo { node_id: "n2".into(), url: "http://n2".into() });
        assert_eq!(n.leader().map(|l| l.node_id), Some("n2".into()));
        n.leadership.set_leading(true);
        let s = status(&n, 0);
        assert_eq!(s["role"], "leader");
        assert_eq!(s["leader"]["node_id"], "n1");
        assert_eq!(s["lag_ms"], 0);
        n.leadership.set_leading(false);
        let s = status(&n, 0);
        assert_eq!((s["role"].as_str(), s["leader"]["url"].as_str()), (Some("follower"), Some("http://n2")));
        *m.leader.lock() = None;
        assert!(status(&n, 0)["leader"].is_null());
    }

    #[test]
    fn a_follower_lags_by_the_age_of_its_last_record_until_it_catches_up() {
        let (n, m) = node("n2", Some(("n1", "http://n1")));
        n.leadership.set_applied(5, 1_000);
        m.last.store(9, Ordering::SeqCst);
        assert_eq!(n.lag_ms(4_000), 3_000);
        n.leadership.set_applied(9, 3_900);
        assert_eq!(n.lag_ms(4_000), 0);
        m.last.store(10, Ordering::SeqCst);
        n.leadership.set_leading(true);
        assert_eq!(n.lag_ms(9_000), 0, "a leader does not lag");
    }

    #[test]
    fn the_metrics_name_the_role_and_count_forwards() {
        let (n, _) = node("n2", None);
        n.forwarded.unreachable.fetch_add(2, Ordering::Relaxed);
        let text = render_metrics(Some(&n), 0);
        assert!(text.contains("dispatch_cluster_role{role=\"follower\"} 1"), "{text}");
        assert!(text.contains("dispatch_cluster_role{role=\"leader\"} 0"));
        assert!(text.contains("dispatch_cluster_forwarded_total{result=\"unreachable\"} 2"));
        assert!(text.contains("# TYPE dispatch_cluster_step_downs_total counter"));
        assert!(render_metrics(None, 0).is_empty());
        // promtool's lint, where it is installed (net/tests/observability.rs requires it
        // for the whole exposition of a standalone node).
        if let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
        }
    }

    #[test]
    fn leader_only_work_starts_and_stops_with_leadership() {
        let leading = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicU64::new(0));
        let (l, r1, r2) = (Arc::clone(&leading), Arc::clone(&running), Arc::clone(&running));
        let gate = LeaderOnly::start(
            move || l.load(Ordering::SeqCst),
            Duration::from_millis(1),
            move || Some(r1.fetch_add(1, Ordering::SeqCst)),
            move |_| {
                r2.fetch_add(100, Ordering::SeqCst);
            },
        )
        .unwrap();
        let wait = |want: u64| {
            while running.load(Ordering::SeqCst) != want {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(running.load(Ordering::SeqCst), 0, "nothing runs on a follower");
        leading.store(true, Ordering::SeqCst);
        wait(1);
        leading.store(false, Ordering::SeqCst);
        wait(101);
        leading.store(true, Ordering::SeqCst);
        wait(102);
        gate.stop();
        assert_eq!(running.load(Ordering::SeqCst), 202, "stopping the gate stops what runs");
    }
}
