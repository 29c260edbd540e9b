//! `GET /v1/cluster` (a node's role, its leader, how far it applied the shared log) and
//! the cluster-internal `POST /v1/cluster/commands` (the commands a follower's sockets
//! take — a location, a chat message, a presence report — applied by the leader) and
//! `GET /v1/cluster/checkpoint` (this node's store, for a peer that catches up).
//!
//! Guarantees: a standalone node answers `GET /v1/cluster` `404 not_found` (it is in no
//! cluster; API-NOTES); `POST /v1/cluster/commands` runs only a request another node of
//! this cluster signed (the pipeline refused anything else `403`; so does
//! `GET /v1/cluster/checkpoint`), only the commands a
//! socket may send (`cluster::forward::forwardable`), and only on the leader (a follower
//! answered `503 not_leader` before this runs).

use dispatch_core::{Actor, Command, Outcome};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use crate::http::{ApiError, Resp, json_response};

/// The body of `POST /v1/cluster/commands`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Forwarded {
    actor: Actor,
    command: Command,
}

impl Ctx<'_> {
    /// `GET /v1/cluster`.
    pub(super) fn cluster_status(&self) -> Result<Resp, ApiError> {
        let node = self.app.node.as_ref().ok_or_else(|| ApiError::not_found("cluster"))?;
        Ok(json_response(StatusCode::OK, &crate::cluster::status(node, crate::cluster::now_ms())))
    }

    /// `GET /v1/cluster/checkpoint`: this node's store as of one commit, streamed by the
    /// listener (`cluster::checkpoint`).
    pub(super) async fn cluster_checkpoint(&self) -> Result<Resp, ApiError> {
        self.app.node.as_ref().ok_or_else(|| ApiError::not_found("cluster"))?;
        if !self.forwarded {
            return Err(ApiError::new("forbidden", "cluster-internal: only the cluster's nodes may call this"));
        }
        let dir = self.app.config.store.data_dir.clone();
        let copy = tokio::task::spawn_blocking(move || crate::cluster::checkpoint::take(&dir))
            .await
            .map_err(|e| ApiError::new("internal", format!("the checkpoint copy stopped: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "a checkpoint for a peer could not be copied");
                ApiError::new("unavailable", e)
            })?;
        tracing::info!(bytes = copy.len, checkpoint_lsn = ?copy.lsn, "sending a checkpoint to a peer");
        Ok(crate::cluster::checkpoint::answer(copy))
    }

    /// `POST /v1/cluster/commands`.
    pub(super) async fn cluster_commands(&mut self) -> Result<Resp, ApiError> {
        let node = self.app.node.clone().ok_or_else(|| ApiError::not_found("cluster"))?;
        if !self.forwarded {
            return Err(ApiError::new("forbidden", "cluster-internal: only the cluster's nodes may call this"));
        }
        let f: Forwarded =
            serde_json::from_slice(&self.body).map_err(|e| ApiError::invalid(format!("a forwarded command: {e}")))?;
        if !crate::cluster::forward::forwardable(&f.command) {
            return Err(ApiError::new("forbidden", "only a socket's commands are forwarded"));
        }
        let outcome = self.app.submit(f.actor, f.command).await?;
        let message = match &outcome {
            Outcome::Message(m) => crate::render::message(m),
            _ => Value::Null,
        };
        Ok(json_response(StatusCode::OK, &json!({"lsn": node.written_lsn(), "message": message})))
    }
}
