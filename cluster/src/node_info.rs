//! What a node tells the cluster about itself: where clients reach it and
//! how loaded it is. Stored as JSON under `node.<id>` in `confab_nodes`.

use serde::{Deserialize, Serialize};

/// One node's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name.
    pub node_id: String,
    /// `ws://host:port/v1/ws` as clients reach it.
    pub websocket_url: String,
    /// The same port over TLS.
    pub secure_websocket_url: String,
    /// `host:port` (UDP) for QUIC; empty when QUIC is off.
    pub quic_addr: String,
    /// Open connections: the load discovery balances.
    pub connections: u64,
    /// When the node started (ms since the Unix epoch).
    pub started_at_ms: u64,
}

impl NodeInfo {
    /// The KV key of a node.
    pub fn key(node_id: &str) -> String {
        format!("node.{node_id}")
    }

    /// This life of the node (`node@started_at_ms`): what its broadcasts
    /// are signed with, so that a restarted node's are told from its
    /// previous life's.
    pub fn origin(&self) -> String {
        format!("{}@{}", self.node_id, self.started_at_ms)
    }
}
