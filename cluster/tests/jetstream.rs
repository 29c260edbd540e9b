//! The log and the lease against real nats-server processes (`testing::nats_cluster`):
//! round trips, fencing by a second writer's claim, follow, purge, the answer to a
//! retried publish, the lease's hand-over, and an R3 stream that survives one server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dispatch_cluster::jetstream::JsStream;
use dispatch_cluster::stream::{Bounds, LogMessage, LogStream, Published, StreamError};
use dispatch_cluster::testing::{NatsCluster, nats_cluster};
use dispatch_cluster::{Cluster, ClusterConfig, RETAIN_RECORDS, SharedLog};
use dispatch_core::Leadership;
use dispatch_storage::{CommandLog, StorageError};

fn config(urls: Vec<String>, node: &str, replicas: usize) -> ClusterConfig {
    ClusterConfig {
        nats_urls: urls,
        node_id: node.into(),
        advertise_url: format!("http://{node}.test"),
        stream: "DISPATCH".into(),
        replicas,
        lease_ms: 1000,
        retain_records: RETAIN_RECORDS,
    }
}

/// Connects, retrying while a fresh cluster elects its JetStream leaders.
fn connect(urls: Vec<String>, node: &str, replicas: usize) -> Cluster {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Cluster::connect(config(urls.clone(), node, replicas)) {
            Ok(cluster) => return cluster,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {node}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("connect {node}: {e}"),
        }
    }
}

fn one_server() -> (NatsCluster, Vec<String>) {
    let servers = nats_cluster(1);
    let urls = servers.urls();
    (servers, urls)
}

fn records(log: &dyn CommandLog, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for record in log.read_from(from).expect("read_from") {
        let record = record.expect("record");
        out.push((record.lsn, record.payload));
    }
    out
}

#[test]
fn append_sync_read_round_trip_and_big_batches_split() {
    let (_servers, urls) = one_server();
    let cluster = connect(urls, "n1", 1);
    let mut log = cluster.open_log(0).expect("open");
    assert!(matches!(log.append(&[b"x"]), Err(StorageError::Fenced { .. })), "no append before a claim");
    log.claim().expect("claim");
    assert_eq!(log.append(&[b"a", b"b"]).expect("append"), 1);
    assert_eq!(log.append(&[b"c"]).expect("append"), 3);
    assert_eq!(log.durable_lsn(), 0, "nothing is durable before sync");
    assert_eq!(log.sync().expect("sync"), 3);
    // Three records of 500 KiB: one message each (800 KiB per message at most).
    let big = vec![7u8; 500 * 1024];
    let before = cluster.stream().bounds().expect("bounds").last;
    assert_eq!(log.append(&[&big, &big, &big]).expect("append"), 4);
    assert_eq!(log.sync().expect("sync"), 6);
    assert_eq!(cluster.stream().bounds().expect("bounds").last, before + 3);
    let got = records(&log, 0);
    assert_eq!(got.len(), 6);
    assert_eq!(got[..3], [(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())]);
    assert!(got[3..].iter().all(|(_, p)| p == &big));
    assert_eq!(records(&log, 5).iter().map(|r| r.0).collect::<Vec<_>>(), vec![5, 6]);
    // A reopened log (a restart) sees the same.
    let again = cluster.open_log(2).expect("open");
    assert_eq!(again.durable_lsn(), 6);
    assert_eq!(records(&again, 3).len(), 4);
}

#[test]
fn a_second_writer_claiming_fences_the_first_and_follow_sees_its_appends() {
    let (_servers, urls) = one_server();
    let one = connect(urls.clone(), "n1", 1);
    let two = connect(urls, "n2", 1);
    let mut a = one.open_log(0).expect("open a");
    let mut b = two.open_log(0).expect("open b");
    a.claim().expect("a claims");
    a.append(&[b"1", b"2"]).expect("append");
    a.sync().expect("sync");
    // b is behind: its claim is fenced until it follows.
    assert!(matches!(b.claim(), Err(StorageError::Fenced { .. })));
    let seen = b.follow(0, Duration::from_millis(500)).expect("follow");
    assert_eq!(seen.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![1, 2]);
    b.claim().expect("b claims");
    a.append(&[b"3"]).expect("append is buffered");
    assert!(matches!(a.sync(), Err(StorageError::Fenced { .. })), "a's next sync is fenced");
    assert!(matches!(a.append(&[b"3"]), Err(StorageError::Fenced { .. })), "and stays fenced");
    b.append(&[b"3b"]).expect("append");
    assert_eq!(b.sync().expect("sync"), 3);
    let followed = a.follow(2, Duration::from_millis(500)).expect("a follows");
    assert_eq!(followed.len(), 1);
    assert_eq!((followed[0].lsn, followed[0].payload.as_slice()), (3, &b"3b"[..]));
    assert!(a.follow(3, Duration::from_millis(50)).expect("nothing more").is_empty());
}

#[test]
fn purged_records_are_released() {
    let (_servers, urls) = one_server();
    let cluster = connect(urls, "n1", 1);
    let mut log = cluster.open_log(0).expect("open");
    log.claim().expect("claim");
    let record = [0u8; 1];
    let batch = vec![&record[..]; 65_536];
    while log.durable_lsn() < RETAIN_RECORDS + 100_000 {
        log.append(&batch).expect("append");
        log.sync().expect("sync");
    }
    let end = log.durable_lsn();
    log.release_below(end + 1).expect("release");
    let first = cluster.stream().bounds().expect("bounds").first;
    assert!(first > 1, "something was purged");
    assert!(matches!(log.read_from(1), Err(StorageError::Released { .. })));
    // The last RETAIN_RECORDS records are still there.
    let from = end + 1 - RETAIN_RECORDS;
    let mut reader = log.read_from(from).expect("read");
    assert_eq!(reader.next().map(|r| r.map(|r| r.lsn).ok()), Some(Some(from)));
    // A node whose checkpoint is below what is kept cannot open the log.
    assert!(matches!(cluster.open_log(10), Err(StorageError::Released { .. })));
}

/// Stores a publish but loses its ack once, as a timeout would.
struct LosesFirstAck {
    inner: JsStream,
    lost: std::sync::atomic::AtomicBool,
}

impl LogStream for LosesFirstAck {
    fn publish(&self, message: &LogMessage, expected_last: u64) -> Result<Published, StreamError> {
        let result = self.inner.publish(message, expected_last);
        if !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) && !message.claim {
            return Err(StreamError::Unavailable("ack lost (test)".into()));
        }
        result
    }
    fn get(&self, seq: u64) -> Result<Option<LogMessage>, StreamError> {
        self.inner.get(seq)
    }
    fn bounds(&self) -> Result<Bounds, StreamError> {
        self.inner.bounds()
    }
    fn purge_below(&self, seq: u64) -> Result<(), StreamError> {
        self.inner.purge_below(seq)
    }
}

#[test]
fn a_retried_publish_is_answered_as_a_duplicate_and_stored_once() {
    let (_servers, urls) = one_server();
    let cluster = connect(urls, "n1", 1);
    let stream = cluster.stream();
    let last = stream.bounds().expect("bounds").last;
    let message = LogMessage {
        first_lsn: 1,
        count: 1,
        node: "n1".into(),
        term: 1,
        claim: false,
        msg_id: "n1-1-1".into(),
        payload: postcard::to_allocvec(&vec![b"x".to_vec()]).expect("encode"),
    };
    assert_eq!(stream.publish(&message, last), Ok(Published::Stored(last + 1)));
    // The same id again with the now stale expected last sequence: what does 2.9 say?
    let again = stream.publish(&message, last);
    eprintln!("retried publish with a stale expected last sequence: {again:?}");
    assert_eq!(again, Ok(Published::Duplicate(last + 1)), "nats-server checks the id before the sequence");
    // A different id with the stale sequence is fenced.
    let other = LogMessage { msg_id: "n1-1-1-other".into(), ..message.clone() };
    assert!(matches!(stream.publish(&other, last), Err(StreamError::WrongLastSequence(_))));
    // An expected last sequence of 0 is checked too (2.9.10), so two first claims of an
    // empty stream cannot both succeed.
    let zero = LogMessage { msg_id: "zero".into(), ..message.clone() };
    assert!(matches!(stream.publish(&zero, 0), Err(StreamError::WrongLastSequence(_))));

    // Through the log: the first ack is lost, the retry succeeds, one copy is stored.
    let lossy = LosesFirstAck { inner: stream.clone(), lost: Default::default() };
    let shared = Arc::new(dispatch_cluster::log::LogShared::default());
    let mut log = SharedLog::open(lossy, "DISPATCH", "n2", shared, 0).expect("open");
    let _ = log.follow(0, Duration::ZERO);
    log.claim().expect("claim");
    let first = log.append(&[b"y"]).expect("append");
    let before = stream.bounds().expect("bounds").last;
    assert_eq!(log.sync().expect("sync after a lost ack"), first);
    assert_eq!(stream.bounds().expect("bounds").last, before + 1, "stored once");
}

#[test]
fn the_lease_goes_to_one_node_and_moves_at_once_on_shutdown() {
    let (_servers, urls) = one_server();
    let one = connect(urls.clone(), "n1", 1);
    let two = connect(urls, "n2", 1);
    let _a = one.open_log(0).expect("open");
    let _b = two.open_log(0).expect("open");
    let (la, lb) = (Arc::new(Leadership::new()), Arc::new(Leadership::new()));
    for l in [&la, &lb] {
        l.set_log_end(0, true);
    }
    one.start(Arc::clone(&la)).expect("start");
    two.start(Arc::clone(&lb)).expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(la.is_granted() || lb.is_granted()) {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = (la.is_granted(), la.term().max(lb.term()));
    std::thread::sleep(Duration::from_millis(1500)); // past the hold time: renewals keep it
    assert!(la.is_granted() ^ lb.is_granted(), "exactly one node holds the lease");
    assert_eq!((la.is_granted(), la.term().max(lb.term())), first, "the same node, in the same term");
    let (leader, leader_l, follower, follower_l) =
        if la.is_granted() { (&one, &la, &two, &lb) } else { (&two, &lb, &one, &la) };
    assert_eq!(follower.leader().map(|l| l.node_id), Some(leader.config().node_id.clone()));
    let term = leader_l.term();
    leader.shutdown();
    assert!(!leader_l.is_granted(), "shutdown revokes");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !follower_l.is_granted() {
        assert!(Instant::now() < deadline, "the follower never took over");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(follower_l.term() > term);
}

#[test]
fn an_r3_stream_keeps_acknowledging_with_one_server_down() {
    let mut servers = nats_cluster(3);
    let cluster = connect(servers.urls(), "n1", 3);
    let mut log = cluster.open_log(0).expect("open");
    log.claim().expect("claim");
    log.append(&[b"before"]).expect("append");
    assert_eq!(log.sync().expect("sync"), 1);
    servers.kill(0);
    // The client reconnects to another server and the stream's group elects a new leader
    // if s0 led it: until then calls are Unavailable (never Fenced: nobody else writes).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_error = None;
    while Instant::now() < deadline {
        let attempt = (|| {
            log.reopen()?;
            if !log.is_claimed() {
                log.claim()?;
            }
            log.append(&[b"after"])?;
            log.sync()
        })();
        match attempt {
            Ok(lsn) => {
                assert_eq!(lsn, 2);
                last_error = None;
                break;
            }
            Err(e @ StorageError::Unavailable { .. }) => {
                eprintln!("while the cluster recovers: {e}");
                last_error = Some(e);
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("sync with one server of three down: {e}"),
        }
    }
    assert!(last_error.is_none(), "no acknowledged append with two servers of three: {last_error:?}");
    assert_eq!(records(&log, 1).len(), 2);
}

#[test]
fn the_log_opener_works_from_inside_another_tokio_runtime_and_status_names_the_leader() {
    let (_servers, urls) = one_server();
    let outer = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // dispatchd opens its engine (and so the log) from its own async main: blocking on
    // the cluster's runtime from there must neither panic nor deadlock, nor must dropping
    // the cluster there.
    outer.block_on(async move {
        let cluster = connect(urls, "n1", 1);
        let mut log = (cluster.log_opener())(0).expect("open through the opener");
        log.claim().expect("claim");
        log.append(&[b"a"]).expect("append");
        assert_eq!(log.sync().expect("sync"), 1);
        let leadership = Arc::new(Leadership::new());
        leadership.set_log_end(1, true);
        leadership.set_applied(1, 0);
        cluster.start(Arc::clone(&leadership)).expect("start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !leadership.is_granted() {
            assert!(Instant::now() < deadline, "never granted");
            std::thread::sleep(Duration::from_millis(10));
        }
        let follower = cluster.status(&leadership);
        assert_eq!((follower.role, follower.lag_ms), ("follower", 0), "granted is not leading");
        leadership.set_leading(true);
        let status = cluster.status(&leadership);
        assert_eq!(status.role, "leader");
        assert_eq!(status.leader.map(|l| l.node_id), Some("n1".to_string()));
        assert_eq!((status.applied_lsn, status.stream_last_lsn, status.lag_ms), (1, 1, 0));
        drop(log);
        drop(cluster);
    });
}
