//! dispatch-cluster: the engine's command log on NATS JetStream, the leader lease, and
//! fencing (issue 21; ../shared/API.md "Cluster", DESIGN.md "Beyond one node").
//!
//! Map: [`stream`] (what the log needs of a stream, and an in-memory one), [`log`] (the
//! [`CommandLog`] on it: LSNs, fence, claim), [`kv`] and
//! [`election`] (the lease's rules, without I/O), [`keeper`] (carries them out),
//! [`jetstream`] (the NATS implementations); the model test in `model_test.rs`; the
//! tests against real servers in `tests/jetstream.rs` (`testing`, a cargo feature, starts them).
//!
//! What nats-server 2.9.10 does, as `tests/jetstream.rs` checks: a publish whose
//! `Nats-Msg-Id` was stored before is answered "duplicate" (with the first copy's
//! sequence) even when its `Nats-Expected-Last-Sequence` is stale: the id is checked first;
//! the log also handles the other order (a "wrong last sequence" whose next message is its
//! own). An expected last sequence of 0 is checked too, so two first claims of an empty
//! stream cannot both succeed.
//!
//! Owns [`Cluster`]: the connection to the NATS servers, the stream that is the command
//! log (one message per group commit), the key-value bucket that holds the leader lease,
//! and the lease keeper that grants and revokes this node's
//! [`Leadership`].
//!
//! Guarantees: a batch is durable (reported by `sync`) only after JetStream acknowledged
//! it (a quorum of `replicas` servers stored it); an append is published with the
//! stream's expected last sequence, so a deposed leader's append is refused
//! ([`StorageError::Fenced`](dispatch_storage::StorageError::Fenced)) and two leaders
//! never both commit; a follower bids for the lease only when the lease lapsed and it has
//! applied the whole stream.

#![forbid(unsafe_code)]

pub mod election;
pub mod jetstream;
pub mod keeper;
pub mod kv;
pub mod log;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod model_test;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};
use dispatch_core::{Leadership, LogOpener};
use dispatch_storage::{CommandLog, Lsn};

pub use election::{Election, LeaseValue};
pub use log::{MESSAGE_BYTES_MAX, RETAIN_RECORDS, SharedLog};

use crate::jetstream::{JsKv, JsStream};
use crate::keeper::{Keeper, KeeperThread};
use crate::log::LogShared;
use crate::stream::LogStream;

/// The command log on JetStream, as [`Cluster::log_opener`] opens it.
pub type JetStreamLog = SharedLog<JsStream>;

/// How a node joins a cluster (`[cluster]`, `--cluster`, `--node-id`, `--advertise`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS servers to connect to (`nats://host:port`), any of which will do.
    pub nats_urls: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// The URL other nodes reach this node's HTTP API at (writes are forwarded there).
    pub advertise_url: String,
    /// The JetStream stream that holds the command log (default `DISPATCH`).
    pub stream: String,
    /// Copies of the stream JetStream keeps (default 3).
    pub replicas: usize,
    /// How long the leader lease lasts without a renewal (default 2000 ms).
    pub lease_ms: u64,
    /// Records the leader's `release_below` keeps in the stream below its checkpoint
    /// (default [`RETAIN_RECORDS`]). Not a `[cluster]` key: tests lower it (dispatchd's
    /// hidden `--cluster-retain-records`) to make the stream purge quickly.
    pub retain_records: u64,
}

/// The node the lease names as leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderInfo {
    /// Its `node_id`.
    pub node_id: String,
    /// Its `advertise_url`.
    pub url: String,
}

/// `GET /v1/cluster`'s answer (API.md "Cluster").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    /// This node's `node_id`.
    pub node_id: String,
    /// `"leader"` or `"follower"`.
    pub role: &'static str,
    /// The leader the lease names (itself on the leader), `null` when none.
    pub leader: Option<LeaderInfo>,
    /// The last LSN this node applied.
    pub applied_lsn: Lsn,
    /// The last LSN the stream holds, as last seen.
    pub stream_last_lsn: Lsn,
    /// How far behind the leader this node's replica is: 0 on the leader or when caught up.
    pub lag_ms: u64,
}

/// Everything dispatch-cluster can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The NATS servers cannot be reached, or refused a request.
    #[error("nats: {0}")]
    Nats(String),
    /// A setting is out of its range.
    #[error("cluster setting: {0}")]
    Setting(String),
    /// The stream refused a publish: its last sequence is not the expected one (another
    /// writer appended). Nothing was stored.
    #[error("wrong last sequence: {0}")]
    WrongLastSequence(String),
    /// The servers cannot be reached or did not answer in time: the outcome is unknown.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A stored message is not one of the log's.
    #[error("message {seq} is malformed: {reason}")]
    Malformed {
        /// Its stream sequence.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
}

/// A node's membership of a cluster.
pub struct Cluster {
    config: ClusterConfig,
    runtime: Option<tokio::runtime::Runtime>,
    stream: JsStream,
    kv: JsKv,
    shared: Arc<LogShared>,
    keeper: Mutex<Option<KeeperThread>>,
    leader: Arc<Mutex<Option<LeaderInfo>>>,
    client: async_nats::Client,
}

fn check_config(config: &ClusterConfig) -> Result<(), ClusterError> {
    let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if config.nats_urls.is_empty() {
        return Err(ClusterError::Setting("nats_urls: at least one server".into()));
    }
    if !name_ok(&config.node_id) {
        return Err(ClusterError::Setting("node_id: letters, digits, '-' and '_' only".into()));
    }
    if !name_ok(&config.stream) {
        return Err(ClusterError::Setting("stream: letters, digits, '-' and '_' only".into()));
    }
    if !(1..=5).contains(&config.replicas) {
        return Err(ClusterError::Setting("replicas: 1 to 5".into()));
    }
    if !(100..=60_000).contains(&config.lease_ms) {
        return Err(ClusterError::Setting("lease_ms: 100 to 60000".into()));
    }
    Ok(())
}

impl Cluster {
    /// Connects to the NATS servers, creates the stream and the lease bucket if they are
    /// missing (with `replicas` copies), and returns the cluster handle. Runs its own
    /// small tokio runtime: the engine's writer is a plain thread and blocks on it.
    pub fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        check_config(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dispatch-nats")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Nats(format!("starting the NATS runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let setup = config.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = tx.send(setup_nats(setup).await);
        });
        let (client, context, stream, store) =
            rx.recv().map_err(|_| ClusterError::Nats("the NATS runtime stopped".into()))??;
        let subject = format!("{}.log", config.stream);
        let stream = JsStream::new(handle.clone(), context, stream, subject);
        let kv = JsKv::new(handle, store, Duration::from_millis(config.lease_ms));
        Ok(Cluster {
            config,
            runtime: Some(runtime),
            stream,
            kv,
            shared: Arc::new(LogShared::default()),
            keeper: Mutex::new(None),
            leader: Arc::new(Mutex::new(None)),
            client,
        })
    }

    /// The command log for `EngineConfig::log`: the stream, read from the LSN after the
    /// data directory's checkpoint.
    pub fn log_opener(&self) -> LogOpener {
        let stream = self.stream.clone();
        let name = self.config.stream.clone();
        let node = self.config.node_id.clone();
        let shared = Arc::clone(&self.shared);
        let retain = self.config.retain_records;
        Box::new(move |checkpoint| {
            let log = SharedLog::open(stream, &name, &node, shared, checkpoint)?.with_retain(retain);
            Ok(Box::new(log) as Box<dyn CommandLog>)
        })
    }

    /// A [`JetStreamLog`] on this cluster's stream, opened at its end (tests and tools;
    /// the engine uses [`log_opener`](Self::log_opener)). Each has its own view and claim.
    pub fn open_log(&self, checkpoint: Lsn) -> Result<JetStreamLog, dispatch_storage::StorageError> {
        SharedLog::open(
            self.stream.clone(),
            &self.config.stream,
            &self.config.node_id,
            Arc::clone(&self.shared),
            checkpoint,
        )
        .map(|log| log.with_retain(self.config.retain_records))
    }

    /// The stream under the log (tests and tools).
    pub fn stream(&self) -> JsStream {
        self.stream.clone()
    }

    /// Starts the lease keeper: it watches the lease, bids when it lapsed and
    /// `leadership` reports this node caught up, renews it every `lease_ms / 4` while
    /// held, and grants or revokes `leadership` accordingly.
    pub fn start(&self, leadership: Arc<Leadership>) -> Result<(), ClusterError> {
        let mut slot = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(ClusterError::Setting("the lease keeper is already running".into()));
        }
        let lease = Duration::from_millis(self.config.lease_ms);
        let election = Election::new(&self.config.node_id, &self.config.advertise_url, lease);
        let keeper = Keeper::new(election, self.kv.clone(), leadership, Arc::clone(&self.shared));
        let stream = self.stream.clone();
        let thread =
            KeeperThread::spawn(keeper, lease, move || stream.bounds().ok().map(|b| b.last), Arc::clone(&self.leader))
                .map_err(|e| ClusterError::Nats(format!("starting the lease keeper: {e}")))?;
        *slot = Some(thread);
        Ok(())
    }

    /// The leader the lease names now (`None`: no leader, or its lease lapsed).
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.leader.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The node the lease key names now, read from the bucket without the lease keeper
    /// (a node catching up from a peer's checkpoint before its engine can open). Unlike
    /// [`leader`](Self::leader) this does not know whether the holder's lease lapsed: a
    /// caller must expect the node it names to be gone. `None`: no lease, or the read
    /// failed.
    pub fn lease_holder(&self) -> Option<LeaderInfo> {
        use crate::kv::LeaseKv;
        match self.kv.read() {
            election::Observed::Held { value, .. } => Some(LeaderInfo { node_id: value.node_id, url: value.url }),
            _ => None,
        }
    }

    /// This node's settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The last LSN the stream holds, as last seen.
    pub fn stream_last_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `GET /v1/cluster`'s answer for this node.
    pub fn status(&self, leadership: &Leadership) -> ClusterStatus {
        let leading = leadership.is_leader();
        let applied_lsn = leadership.applied_lsn();
        let stream_last_lsn = self.stream_last_lsn().max(leadership.log_end_lsn());
        // How long this node has had records in the stream it has not applied (0 on the
        // leader, which applies before it writes).
        let behind_since = self.shared.behind_since_ms.load(std::sync::atomic::Ordering::SeqCst);
        let lag_ms = if leading || behind_since == 0 { 0 } else { log::unix_ms().saturating_sub(behind_since) };
        let leader = if leading {
            Some(LeaderInfo { node_id: self.config.node_id.clone(), url: self.config.advertise_url.clone() })
        } else {
            self.leader()
        };
        ClusterStatus {
            node_id: self.config.node_id.clone(),
            role: if leading { "leader" } else { "follower" },
            leader,
            applied_lsn,
            stream_last_lsn,
            lag_ms,
        }
    }

    /// Leaves the cluster: a leader gives up its lease at once (a follower takes over
    /// without waiting for it to lapse), and the connection closes.
    pub fn shutdown(&self) {
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut keeper) = keeper {
            keeper.stop();
        }
        let client = self.client.clone();
        if let Some(runtime) = &self.runtime {
            let _ = jetstream::block(runtime.handle(), async move { client.drain().await });
        }
    }
}

#[cfg(feature = "testing")]
impl Cluster {
    /// Leaves the cluster as a crash would (tests and benches of failover): the lease
    /// keeper stops without giving the lease up, so the other nodes take over only once
    /// it lapsed.
    pub fn crash(self) {
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut keeper) = keeper {
            keeper.abandon();
        }
        drop(self);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside another runtime's thread panics; this does not.
            runtime.shutdown_background();
        }
    }
}

async fn setup_nats(
    config: ClusterConfig,
) -> Result<(async_nats::Client, Context, Stream, async_nats::jetstream::kv::Store), ClusterError> {
    let nats = |what: &str, e: &dyn std::fmt::Display| ClusterError::Nats(format!("{what}: {e}"));
    let client = async_nats::ConnectOptions::new()
        .name(format!("dispatch-{}", config.node_id))
        .connection_timeout(Duration::from_secs(5))
        .connect(config.nats_urls.as_slice())
        .await
        .map_err(|e| nats("connecting", &e))?;
    let context = async_nats::jetstream::new(client.clone());
    let stream = match context.get_stream(&config.stream).await {
        Ok(mut stream) => {
            let info = stream.info().await.map_err(|e| nats("stream info", &e))?;
            if info.config.num_replicas != config.replicas {
                tracing::warn!(
                    stream = %config.stream,
                    replicas = info.config.num_replicas,
                    configured = config.replicas,
                    "the stream exists with another number of replicas; using it as it is"
                );
            }
            stream
        }
        Err(_) => {
            let stream_config = StreamConfig {
                name: config.stream.clone(),
                subjects: vec![format!("{}.log", config.stream)],
                storage: StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            match context.create_stream(stream_config).await {
                Ok(stream) => stream,
                // Another node created it meanwhile.
                Err(create) => {
                    context.get_stream(&config.stream).await.map_err(|_| nats("creating the stream", &create))?
                }
            }
        }
    };
    let bucket = format!("{}_lease", config.stream);
    let store = match context.get_key_value(&bucket).await {
        Ok(store) => store,
        Err(_) => {
            // The bucket's stream, as the client's `create_key_value` would make it: that
            // call first asks for the account's info, which async-nats 0.52 cannot parse
            // from a 2.9 server.
            let kv_stream = StreamConfig {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                storage: StorageType::File,
                num_replicas: config.replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            if let Err(create) = context.create_stream(kv_stream).await {
                tracing::debug!(error = %create, "creating the lease bucket (perhaps another node did)");
            }
            context.get_key_value(&bucket).await.map_err(|e| nats("creating the lease bucket", &e))?
        }
    };
    Ok((client, context, stream, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        ClusterConfig {
            nats_urls: vec!["nats://127.0.0.1:1".into()],
            node_id: "n1".into(),
            advertise_url: "http://127.0.0.1:8081".into(),
            stream: "DISPATCH".into(),
            replicas: 3,
            lease_ms: 2000,
            retain_records: RETAIN_RECORDS,
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(check_config(&config()).is_ok());
        for broken in [
            ClusterConfig { nats_urls: vec![], ..config() },
            ClusterConfig { node_id: "a.b".into(), ..config() },
            ClusterConfig { stream: "".into(), ..config() },
            ClusterConfig { replicas: 0, ..config() },
            ClusterConfig { lease_ms: 10, ..config() },
        ] {
            assert!(matches!(check_config(&broken), Err(ClusterError::Setting(_))), "{broken:?}");
        }
    }

    #[test]
    fn status_serializes_as_the_api_says() {
        let status = ClusterStatus {
            node_id: "n1".into(),
            role: "follower",
            leader: None,
            applied_lsn: 3,
            stream_last_lsn: 5,
            lag_ms: 12,
        };
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"node_id":"n1","role":"follower","leader":null,"applied_lsn":3,"stream_last_lsn":5,"lag_ms":12})
        );
    }
}
