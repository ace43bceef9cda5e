//! Cluster membership on NATS (docs/cluster.md, "Membership and leases").
//!
//! A node started with `--cluster` registers itself (its addresses and its
//! load) in the JetStream KV bucket `confab_nodes`, rewrites its entry on
//! every heartbeat, watches the bucket to know every live node, and deletes
//! its entry when it leaves. A node whose entry has not been rewritten for
//! the TTL is dead to the others, whether or not NATS has aged its entry
//! out yet. Discovery (`GET /v1/gateway`) answers from this view with the
//! least-loaded live node.

mod config;
mod connect;
pub mod events;
pub mod log;
mod membership;
mod node_info;
mod patience;

pub use config::ClusterConfig;
pub use log::{open as open_log, ForeignSink, LogError, ReplicatedLog};
pub use membership::{Membership, MembershipError, NODES_BUCKET};
pub use node_info::NodeInfo;
