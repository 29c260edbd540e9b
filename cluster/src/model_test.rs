//! The model test of the election and the fencing (issue 21): three nodes, each a
//! [`Keeper`] (its [`Election`]) on an in-memory key-value store and a [`SharedLog`] on
//! one in-memory stream, with a toy writer that appends small batches while it leads and
//! follows the stream otherwise. Proptest draws interleavings of node steps (the keeper
//! or the writer first), clock advances, pauses (a node not stepped while time runs),
//! crashes and restarts, and lost acks; a calm phase then lets everyone run.
//!
//! Checked after every operation: (a) every append a node was told succeeded is in the
//! stream at its LSN, and acknowledged LSNs only grow; (b) the stream's LSNs are dense
//! from 1, never duplicated; (c) an append succeeds only for the node with the latest
//! successful claim; (d) at most one node holds the lease at any instant by its own rules.
//! After the calm phase: (e) a node leads, holding the latest claim, within
//! `lease + lease / 4` by the slowest clock (plus one tick of this model's clock), and
//! commits. The three nodes' clocks run at 0.9, 1.0 and 1.1 times real time.

use std::sync::Arc;
use std::time::Duration;

use dispatch_core::Leadership;
use dispatch_storage::{CommandLog, Lsn, StorageError};
use proptest::prelude::*;

use crate::election::Election;
use crate::keeper::Keeper;
use crate::kv::MemKv;
use crate::log::{LogShared, SharedLog};
use crate::stream::{LogStream, MemStream};

const LEASE: Duration = Duration::from_millis(400);
const TICK: Duration = Duration::from_millis(50); // LEASE / 8, the keeper's period
const NODES: usize = 3;
/// Each node's clock rate, in thousandths of real time: clocks that drift apart by up to
/// 20% (the election's rules hold within 25%).
const RATES: [u64; NODES] = [1000, 900, 1100];

/// Node `i`'s monotonic clock at real time `now`.
fn local(i: usize, now: Duration) -> Duration {
    Duration::from_micros(u64::try_from(now.as_micros()).unwrap_or(u64::MAX) / 1000 * RATES[i])
}

struct Node {
    index: usize,
    name: String,
    keeper: Keeper<Arc<MemKv>>,
    log: SharedLog<Arc<MemStream>>,
    leadership: Arc<Leadership>,
    /// The number of the successful claim this node's writer leads under.
    claim: Option<usize>,
    paused_until: Duration,
    batches: u64,
}

struct World {
    now: Duration,
    stream: Arc<MemStream>,
    kv: Arc<MemKv>,
    nodes: Vec<Option<Node>>,
    /// Every acknowledged record: (lsn, payload), in acknowledgement order.
    acked: Vec<(Lsn, Vec<u8>)>,
    /// Successful claims so far (the latest one's number).
    claims: usize,
    restarts: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Step { node: usize, keeper_first: bool },
    Advance(u64),
    Pause { node: usize, ms: u64 },
    Crash(usize),
    Restart(usize),
    LoseAck,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..NODES, any::<bool>()).prop_map(|(node, keeper_first)| Op::Step { node, keeper_first }),
        4 => (1u64..150).prop_map(Op::Advance),
        1 => (0..NODES, 100u64..1500).prop_map(|(node, ms)| Op::Pause { node, ms }),
        1 => (0..NODES).prop_map(Op::Crash),
        1 => (0..NODES).prop_map(Op::Restart),
        1 => Just(Op::LoseAck),
    ]
}

impl World {
    fn new() -> Self {
        let mut world = World {
            now: Duration::ZERO,
            stream: Arc::new(MemStream::new()),
            kv: Arc::new(MemKv::new()),
            nodes: Vec::new(),
            acked: Vec::new(),
            claims: 0,
            restarts: 0,
        };
        for i in 0..NODES {
            let node = world.start_node(i);
            world.nodes.push(Some(node));
        }
        world
    }

    fn start_node(&mut self, i: usize) -> Node {
        self.restarts += 1;
        let name = format!("n{i}");
        let shared = Arc::new(LogShared::default());
        let log = match SharedLog::open(Arc::clone(&self.stream), "M", &name, Arc::clone(&shared), 0) {
            Ok(log) => log,
            Err(e) => panic!("open {name}: {e}"),
        };
        let leadership = Arc::new(Leadership::new());
        let election = Election::new(&name, &format!("http://{name}"), LEASE);
        let keeper = Keeper::new(election, Arc::clone(&self.kv), Arc::clone(&leadership), shared);
        Node { index: i, name, keeper, log, leadership, claim: None, paused_until: Duration::ZERO, batches: 0 }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Step { node, keeper_first } => self.step(node, keeper_first),
            Op::Advance(ms) => self.now += Duration::from_millis(ms),
            Op::Pause { node, ms } => {
                if let Some(Some(n)) = self.nodes.get_mut(node) {
                    n.paused_until = self.now + Duration::from_millis(ms);
                }
            }
            Op::Crash(node) => self.nodes[node] = None,
            Op::Restart(node) => {
                if self.nodes[node].is_none() {
                    let fresh = self.start_node(node);
                    self.nodes[node] = Some(fresh);
                }
            }
            Op::LoseAck => self.stream.lose_next_ack(),
        }
    }

    fn step(&mut self, i: usize, keeper_first: bool) {
        let now = local(i, self.now);
        let last = self.stream.bounds().ok().map(|b| b.last);
        let Some(mut node) = self.nodes[i].take() else { return };
        if node.paused_until <= self.now {
            if keeper_first {
                node.keeper.step_live(&|| now, &|| last);
                self.write(&mut node);
            } else {
                self.write(&mut node);
                node.keeper.step_live(&|| now, &|| last);
            }
        }
        self.nodes[i] = Some(node);
    }

    /// The toy writer: what the engine's writer does with its log and its leadership.
    fn write(&mut self, node: &mut Node) {
        let l = &node.leadership;
        if l.is_leader() && !l.is_granted() {
            l.set_leading(false);
            node.claim = None;
        }
        if l.is_leader() {
            node.batches += 1;
            let payloads: Vec<Vec<u8>> =
                (0..1 + node.batches % 3).map(|k| format!("{}:{}:{k}", node.name, node.batches).into_bytes()).collect();
            let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            let first = match node.log.append(&refs) {
                Ok(first) => first,
                Err(e) => panic!("{}: append refused while leading: {e}", node.name),
            };
            match node.log.sync() {
                Ok(end) => {
                    // (c): only the latest claim commits.
                    assert_eq!(
                        node.claim,
                        Some(self.claims),
                        "{}: an append under an older claim succeeded",
                        node.name
                    );
                    assert_eq!(end, first + payloads.len() as u64 - 1);
                    for (k, p) in payloads.into_iter().enumerate() {
                        self.acked.push((first + k as u64, p));
                    }
                    l.set_applied(end, 0);
                }
                Err(StorageError::Fenced { .. }) => {
                    l.set_leading(false);
                    node.claim = None;
                    if let Err(e) = node.log.reopen() {
                        panic!("{}: reopen: {e}", node.name);
                    }
                }
                Err(e) => panic!("{}: sync failed unexpectedly: {e}", node.name),
            }
            return;
        }
        match node.log.follow(node.log.durable_lsn(), Duration::ZERO) {
            Ok(records) => {
                if let Some(r) = records.last() {
                    l.set_applied(r.lsn, 0);
                }
                l.set_log_end(node.log.durable_lsn(), true);
            }
            Err(e) => panic!("{}: follow: {e}", node.name),
        }
        if l.is_granted() {
            match node.log.claim() {
                Ok(()) => {
                    self.claims += 1;
                    node.claim = Some(self.claims);
                    l.set_leading(true);
                }
                Err(StorageError::Fenced { .. }) => {}
                Err(e) => panic!("{}: claim: {e}", node.name),
            }
        }
    }

    /// (a), (b) and (d).
    fn check(&self) {
        let mut expected = 1;
        let mut stored = std::collections::BTreeMap::new();
        for (seq, m) in self.stream.messages() {
            assert_eq!(m.first_lsn, expected, "message {seq}: LSNs not dense");
            let records = match m.records() {
                Ok(records) => records,
                Err(e) => panic!("message {seq}: {e}"),
            };
            for p in records {
                assert!(stored.insert(expected, p).is_none(), "lsn {expected} twice");
                expected += 1;
            }
        }
        let mut previous = 0;
        for (lsn, payload) in &self.acked {
            assert!(*lsn > previous, "acknowledged LSNs went back: {lsn} after {previous}");
            previous = *lsn;
            assert_eq!(stored.get(lsn), Some(payload), "acknowledged lsn {lsn} lost or changed");
        }
        let holders =
            self.nodes.iter().flatten().filter(|n| n.keeper.election.holds_lease(local(n.index, self.now))).count();
        assert!(holders <= 1, "{holders} nodes hold the lease at {:?}", self.now);
    }

    /// The node that leads with the latest claim and holds the lease, if any.
    fn leader(&self) -> Option<&Node> {
        self.nodes.iter().flatten().find(|n| {
            n.leadership.is_leader()
                && n.claim == Some(self.claims)
                && n.keeper.election.holds_lease(local(n.index, self.now))
        })
    }

    /// Everyone up, stepped every TICK: (e).
    fn calm(&mut self) {
        for i in 0..NODES {
            match &mut self.nodes[i] {
                Some(node) => node.paused_until = Duration::ZERO,
                None => {
                    let fresh = self.start_node(i);
                    self.nodes[i] = Some(fresh);
                }
            }
        }
        let start = self.now;
        // In real time: the slowest clock stretches a lease by 1000 / 900.
        let bound = (LEASE + LEASE / 4) * 10 / 9 + TICK;
        loop {
            for i in 0..NODES {
                self.step(i, true);
                self.check();
            }
            if self.leader().is_some() {
                break;
            }
            assert!(self.now - start <= bound, "no leader {:?} after everyone came back", self.now - start);
            self.now += TICK;
        }
        let acked = self.acked.len();
        for _ in 0..3 {
            for i in 0..NODES {
                self.step(i, true);
                self.check();
            }
            self.now += TICK;
        }
        assert!(self.acked.len() > acked, "the leader commits");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn elections_and_fencing_keep_the_log_safe_and_live(ops in proptest::collection::vec(op(), 0..120)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check();
        }
        world.calm();
    }
}

#[test]
fn a_paused_leader_that_resumes_commits_nothing() {
    let mut world = World::new();
    // n0 becomes leader.
    for _ in 0..3 {
        world.step(0, true);
        world.now += TICK;
    }
    assert!(world.nodes[0].as_ref().is_some_and(|n| n.leadership.is_leader()), "n0 leads");
    let acked = world.acked.len();
    assert!(acked > 0);
    // n0 pauses; n1 takes over after the lease.
    world.apply(&Op::Pause { node: 0, ms: 10_000 });
    while world.leader().is_none_or(|n| n.name != "n1") {
        world.step(1, true);
        world.check();
        world.now += TICK;
        assert!(world.now < Duration::from_secs(20), "n1 never took over");
    }
    // n0 resumes with its writer first (its keeper has not yet noticed anything).
    let mut n0 = world.nodes[0].take().unwrap_or_else(|| panic!("n0 is there"));
    n0.paused_until = Duration::ZERO;
    let before = world.acked.len();
    world.write(&mut n0);
    assert_eq!(world.acked.len(), before, "the deposed leader's append was fenced");
    assert!(!n0.leadership.is_leader());
    world.nodes[0] = Some(n0);
    world.check();
    world.step(0, true);
    world.step(1, true);
    world.check();
}
