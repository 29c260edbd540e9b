//! The schemas of the cluster's operations (issue 21): `GET /v1/cluster`'s answer and
//! `GET /readyz`'s `role` query.

use serde_json::{Value, json};

use super::schemas::*;

pub(super) fn cluster_out() -> Value {
    let leader = obj(&[("node_id", string()), ("url", string())], &["node_id", "url"]);
    obj(
        &[
            ("node_id", string()),
            ("role", enumeration(&["leader", "follower"])),
            ("leader", nullable(leader)),
            ("applied_lsn", uint()),
            ("stream_last_lsn", uint()),
            ("lag_ms", uint()),
        ],
        &["node_id", "role", "leader", "applied_lsn", "stream_last_lsn", "lag_ms"],
    )
}

pub(super) fn readyz_query() -> Vec<Value> {
    vec![q(
        "role",
        json!({"type": "string", "enum": ["leader"]}),
        false,
        "`leader`: ready only while this node leads its cluster (a load balancer's pool of the leader).",
    )]
}
