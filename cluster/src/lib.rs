//! dispatch-cluster: the engine's command log on NATS JetStream, the leader lease, and
//! fencing (issue 21; ../shared/API.md "Cluster", DESIGN.md "Beyond one node").
//!
//! Owns [`Cluster`]: the connection to the NATS servers, the stream that is the command
//! log (one message per group commit), the key-value bucket that holds the leader lease,
//! and the lease keeper that grants and revokes this node's
//! [`Leadership`](dispatch_core::Leadership).
//!
//! Guarantees: a batch is durable (reported by `sync`) only after JetStream acknowledged
//! it (a quorum of `replicas` servers stored it); an append is published with the
//! stream's expected last sequence, so a deposed leader's append is refused
//! ([`StorageError::Fenced`](dispatch_storage::StorageError::Fenced)) and two leaders
//! never both commit; a follower bids for the lease only when the lease lapsed and it has
//! applied the whole stream.

#![forbid(unsafe_code)]

use std::sync::Arc;

use dispatch_core::{Leadership, LogOpener};
use dispatch_storage::Lsn;

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
}

/// The node the lease names as leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderInfo {
    /// Its `node_id`.
    pub node_id: String,
    /// Its `advertise_url`.
    pub url: String,
}

/// Everything dispatch-cluster can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The NATS servers cannot be reached, or refused a request.
    #[error("nats: {0}")]
    Nats(String),
    /// A setting is out of its range.
    #[error("cluster setting: {0}")]
    Setting(String),
}

/// A node's membership of a cluster.
pub struct Cluster {
    config: ClusterConfig,
}

impl Cluster {
    /// Connects to the NATS servers, creates the stream and the lease bucket if they are
    /// missing (with `replicas` copies), and returns the cluster handle. Runs its own
    /// small tokio runtime: the engine's writer is a plain thread and blocks on it.
    pub fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        Err(ClusterError::Setting(format!("not built yet for {}", config.node_id)))
    }

    /// The command log for `EngineConfig::log`: the stream, read from the LSN after the
    /// data directory's checkpoint.
    pub fn log_opener(&self) -> LogOpener {
        Box::new(|_| Err(dispatch_storage::StorageError::Unavailable { reason: "not built yet".into() }))
    }

    /// Starts the lease keeper: it watches the lease, bids when it lapsed and
    /// `leadership` reports this node caught up, renews it every `lease_ms / 4` while
    /// held, and grants or revokes `leadership` accordingly.
    pub fn start(&self, leadership: Arc<Leadership>) -> Result<(), ClusterError> {
        let _ = leadership;
        Err(ClusterError::Setting("not built yet".into()))
    }

    /// The leader the lease names now (`None`: no leader, or its lease lapsed).
    pub fn leader(&self) -> Option<LeaderInfo> {
        None
    }

    /// This node's settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The last LSN the stream holds, as last seen.
    pub fn stream_last_lsn(&self) -> Lsn {
        0
    }

    /// Leaves the cluster: a leader gives up its lease at once (a follower takes over
    /// without waiting for it to lapse), and the connection closes.
    pub fn shutdown(&self) {}
}
