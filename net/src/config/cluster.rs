//! `[cluster]` (API.md "Cluster"): how `dispatchd serve` joins a cluster of nodes that
//! share one command log on NATS JetStream, and the checks of those settings.
//!
//! Guarantees: without NATS URLs (no `nats_urls`, no `--cluster`) the node is one node
//! exactly as before ([`ClusterSection::resolve`] answers `None`); with them, every
//! setting is checked before anything opens a file or a connection (`node_id` is 1-64 of
//! `A-Za-z0-9_-`, `advertise_url` an `http(s)://` URL, `replicas` 1-5, `lease_ms`
//! 500-60,000, the stream a JetStream name), and a bad one stops start-up with a message
//! naming it (exit 2, like every other setting).

use serde::{Deserialize, Serialize};

/// The default `[cluster] stream`.
pub const DEFAULT_STREAM: &str = "DISPATCH";
/// The default `[cluster] replicas`.
pub const DEFAULT_REPLICAS: usize = 3;
/// The default `[cluster] lease_ms`.
pub const DEFAULT_LEASE_MS: u64 = 2000;
/// The bounds of `[cluster] replicas` (JetStream keeps at most 5 copies).
pub const REPLICAS: std::ops::RangeInclusive<usize> = 1..=5;
/// The bounds of `[cluster] lease_ms`.
pub const LEASE_MS: std::ops::RangeInclusive<u64> = 500..=60_000;

/// `[cluster]`: empty `nats_urls` (the default) is one node on its own WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// The NATS servers (`nats://host:port`), any of which will do (`--cluster`, comma
    /// separated). Empty: no cluster.
    pub nats_urls: Vec<String>,
    /// This node's name, unique in the cluster (`--node-id`).
    pub node_id: Option<String>,
    /// The URL the other nodes reach this node's HTTP API at (`--advertise`).
    pub advertise_url: Option<String>,
    /// The JetStream stream that holds the command log.
    pub stream: String,
    /// Copies of the stream JetStream keeps.
    pub replicas: usize,
    /// How long the leader lease lasts without a renewal, ms.
    pub lease_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            nats_urls: Vec::new(),
            node_id: None,
            advertise_url: None,
            stream: DEFAULT_STREAM.into(),
            replicas: DEFAULT_REPLICAS,
            lease_ms: DEFAULT_LEASE_MS,
        }
    }
}

/// `[cluster]`'s flags (`None` leaves the file's value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFlags {
    /// `--cluster nats://a:4222[,nats://b:4222…]`.
    pub cluster: Option<String>,
    /// `--node-id`.
    pub node_id: Option<String>,
    /// `--advertise`.
    pub advertise: Option<String>,
}

impl ClusterSection {
    /// This section with the flags over it.
    pub fn with_flags(mut self, flags: &ClusterFlags) -> ClusterSection {
        if let Some(urls) = &flags.cluster {
            self.nats_urls = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
        }
        if let Some(id) = &flags.node_id {
            self.node_id = Some(id.clone());
        }
        if let Some(url) = &flags.advertise {
            self.advertise_url = Some(url.clone());
        }
        self
    }

    /// The checks that hold whether or not a cluster is configured (the file's values).
    pub fn validate(&self) -> Result<(), String> {
        if !REPLICAS.contains(&self.replicas) {
            return Err(format!("cluster: replicas must be {}-{}", REPLICAS.start(), REPLICAS.end()));
        }
        if !LEASE_MS.contains(&self.lease_ms) {
            return Err(format!("cluster: lease_ms must be {}-{}", LEASE_MS.start(), LEASE_MS.end()));
        }
        if !valid_stream(&self.stream) {
            return Err("cluster: stream must be 1-64 of A-Z, a-z, 0-9, _ and -".into());
        }
        if let Some(bad) = self.nats_urls.iter().find(|u| !valid_nats_url(u)) {
            return Err(format!("cluster: {bad:?} is not a NATS URL (nats://host:port)"));
        }
        if let Some(id) = &self.node_id
            && !valid_node_id(id)
        {
            return Err(format!("cluster: node_id {id:?} must be 1-64 of A-Z, a-z, 0-9, _ and -"));
        }
        if let Some(url) = &self.advertise_url
            && !valid_advertise_url(url)
        {
            return Err(format!("cluster: advertise_url {url:?} must be an http:// or https:// URL with a host"));
        }
        Ok(())
    }

    /// The cluster to join: `None` without NATS URLs (one node, as before); with them,
    /// every setting checked, `node_id` and `advertise_url` required.
    pub fn resolve(&self) -> Result<Option<dispatch_cluster::ClusterConfig>, String> {
        self.validate()?;
        if self.nats_urls.is_empty() {
            if self.node_id.is_some() || self.advertise_url.is_some() {
                return Err("cluster: node_id and advertise_url need nats_urls (--cluster)".into());
            }
            return Ok(None);
        }
        let node_id = self.node_id.clone().ok_or("cluster: a cluster node needs node_id (--node-id)")?;
        let advertise_url =
            self.advertise_url.clone().ok_or("cluster: a cluster node needs advertise_url (--advertise)")?;
        Ok(Some(dispatch_cluster::ClusterConfig {
            nats_urls: self.nats_urls.clone(),
            node_id,
            advertise_url: advertise_url.trim_end_matches('/').to_owned(),
            stream: self.stream.clone(),
            replicas: self.replicas,
            lease_ms: self.lease_ms,
            retain_records: dispatch_cluster::RETAIN_RECORDS,
        }))
    }
}

/// `[A-Za-z0-9_-]{1,64}`: a node's name (it is also sent in headers and metrics).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A JetStream stream name this server accepts: the node id's alphabet.
fn valid_stream(name: &str) -> bool {
    valid_node_id(name)
}

/// `nats://host[:port]` (or `tls://`), nothing else.
fn valid_nats_url(url: &str) -> bool {
    let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://"));
    rest.and_then(|r| r.parse::<hyper::Uri>().ok().map(|_| r))
        .is_some_and(|r| !r.is_empty() && !r.contains('/') && !r.starts_with(':'))
}

/// An `http://` or `https://` URL with a host (a path is refused: requests are forwarded
/// to the URL's origin).
fn valid_advertise_url(url: &str) -> bool {
    let Ok(uri) = url.trim_end_matches('/').parse::<hyper::Uri>() else { return false };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some_and(|h| !h.is_empty())
        && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(cluster: &str, node: &str, advertise: &str) -> ClusterFlags {
        ClusterFlags { cluster: Some(cluster.into()), node_id: Some(node.into()), advertise: Some(advertise.into()) }
    }

    #[test]
    fn without_nats_urls_the_node_is_standalone() {
        assert_eq!(ClusterSection::default().resolve(), Ok(None));
        let lone = ClusterSection { node_id: Some("n1".into()), ..ClusterSection::default() };
        assert!(lone.resolve().unwrap_err().contains("need nats_urls"));
    }

    #[test]
    fn flags_override_the_file_and_the_defaults_fill_the_rest() {
        let file = ClusterSection {
            nats_urls: vec!["nats://x:1".into()],
            node_id: Some("file".into()),
            ..ClusterSection::default()
        };
        let c = file
            .with_flags(&flags("nats://a:4222, nats://b:4222", "n1", "http://127.0.0.1:8081/"))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(c.nats_urls, vec!["nats://a:4222", "nats://b:4222"]);
        assert_eq!((c.node_id.as_str(), c.advertise_url.as_str()), ("n1", "http://127.0.0.1:8081"));
        assert_eq!((c.stream.as_str(), c.replicas, c.lease_ms), ("DISPATCH", 3, 2000));
    }

    #[test]
    fn every_setting_is_checked_with_a_message_naming_it() {
        let good = ClusterSection::default().with_flags(&flags("nats://a:4222", "n-1_x", "https://node1.example"));
        assert!(good.resolve().is_ok());
        let cases: Vec<(ClusterSection, &str)> = vec![
            (ClusterSection { node_id: Some(String::new()), ..good.clone() }, "node_id"),
            (ClusterSection { node_id: Some("n 1".into()), ..good.clone() }, "node_id"),
            (ClusterSection { node_id: Some("n".repeat(65)), ..good.clone() }, "node_id"),
            (ClusterSection { node_id: None, ..good.clone() }, "node_id"),
            (ClusterSection { advertise_url: Some("ftp://x".into()), ..good.clone() }, "advertise_url"),
            (ClusterSection { advertise_url: Some("127.0.0.1:8081".into()), ..good.clone() }, "advertise_url"),
            (ClusterSection { advertise_url: Some("http://x/api".into()), ..good.clone() }, "advertise_url"),
            (ClusterSection { advertise_url: None, ..good.clone() }, "advertise_url"),
            (ClusterSection { replicas: 0, ..good.clone() }, "replicas"),
            (ClusterSection { replicas: 6, ..good.clone() }, "replicas"),
            (ClusterSection { lease_ms: 499, ..good.clone() }, "lease_ms"),
            (ClusterSection { lease_ms: 60_001, ..good.clone() }, "lease_ms"),
            (ClusterSection { stream: "a.b".into(), ..good.clone() }, "stream"),
            (ClusterSection { nats_urls: vec!["http://a:4222".into()], ..good.clone() }, "NATS URL"),
        ];
        for (bad, names) in cases {
            let e = bad.resolve().unwrap_err();
            assert!(e.contains(names), "{bad:?}: {e}");
        }
        for ok in [1, 5] {
            assert!(ClusterSection { replicas: ok, ..good.clone() }.resolve().is_ok());
        }
        for ok in [500, 60_000] {
            assert!(ClusterSection { lease_ms: ok, ..good.clone() }.resolve().is_ok());
        }
    }
}
