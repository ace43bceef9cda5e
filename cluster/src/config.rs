//! `[cluster]` in the config file: where NATS is and how this node is
//! known to the others.

use std::time::Duration;

use confab_types::InvalidConfig;
use serde::{Deserialize, Serialize};

/// The cluster settings. With no `nats` URL the node runs alone, without
/// NATS, exactly as a node always has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS servers (`nats://host:port`); all of a cluster's servers,
    /// so that the node reconnects to another when one is lost.
    pub nats: Vec<String>,
    /// This node's name in the cluster; unset, the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// How often the node rewrites its entry, in milliseconds.
    pub heartbeat_ms: u64,
    /// After how long without a rewrite a node is dead, in milliseconds.
    pub ttl_ms: u64,
    /// Replicas of the cluster's JetStream buckets (3 in production: the
    /// loss of one NATS server then loses nothing; 1 for a single server).
    pub replicas: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: Vec::new(),
            node_id: None,
            heartbeat_ms: 2_000,
            ttl_ms: 6_000,
            replicas: 3,
        }
    }
}

impl ClusterConfig {
    /// Whether the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// The time after which a silent node is dead.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        for url in &self.nats {
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                return Err(InvalidConfig::new(
                    "cluster.nats",
                    format!("{url:?} is not a nats:// or tls:// URL"),
                ));
            }
        }
        if let Some(id) = &self.node_id {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(InvalidConfig::new(
                    "cluster.node_id",
                    "must be 1 to 64 characters of A-Z a-z 0-9 - _ (it is a KV key)",
                ));
            }
        }
        if self.heartbeat_ms < 100 {
            return Err(InvalidConfig::new(
                "cluster.heartbeat_ms",
                "must be at least 100",
            ));
        }
        if self.ttl_ms < 2 * self.heartbeat_ms {
            return Err(InvalidConfig::new(
                "cluster.ttl_ms",
                "must be at least two heartbeats, or one late heartbeat kills a node",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(InvalidConfig::new(
                "cluster.replicas",
                "must be 1 to 5 (JetStream's limit)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_nats_urls_is_alone() {
        let c = ClusterConfig::default();
        assert!(!c.enabled());
        c.validate().unwrap();
    }

    #[test]
    fn bad_settings_are_refused_with_their_key() {
        let bad = [
            (
                "cluster.nats",
                ClusterConfig {
                    nats: vec!["http://x".into()],
                    ..Default::default()
                },
            ),
            (
                "cluster.node_id",
                ClusterConfig {
                    node_id: Some("a.b".into()),
                    ..Default::default()
                },
            ),
            (
                "cluster.heartbeat_ms",
                ClusterConfig {
                    heartbeat_ms: 10,
                    ..Default::default()
                },
            ),
            (
                "cluster.ttl_ms",
                ClusterConfig {
                    ttl_ms: 3_000,
                    ..Default::default()
                },
            ),
            (
                "cluster.replicas",
                ClusterConfig {
                    replicas: 0,
                    ..Default::default()
                },
            ),
        ];
        for (key, c) in bad {
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }
}
