//! What a cluster of nodes on the replicated log (docs/cluster.md) needs
//! for a profile's peak, from the per-message costs measured on a loopback
//! cluster (`scripts/cluster_bench.sh`; docs/benchmarks.md, "Cluster").
//!
//! Every node applies every message and relays every typing notice and
//! receipt, so a node's share of that work does not fall as nodes are
//! added: the measured cost that each added node adds per message is what
//! each node spends per message of the whole cluster. The cluster's
//! message rate is therefore bounded by one node's cores, whatever the
//! node count; the plan says whether the profile fits under that bound.

use std::fmt::Write;

use serde::Serialize;

use crate::plan::{group, Plan};

/// Costs measured with `scripts/cluster_bench.sh` (dau50m mix, 200 msgs/s,
/// 1,000 users, 2026-12-07, 2-vCPU VM; docs/benchmarks.md, "Cluster").
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClusterCost {
    /// CPU each node spends per message of the cluster: applying it,
    /// relaying its typing and receipts (the rise in all nodes' CPU per
    /// message from each node added: (4,930 − 2,659) / 2).
    pub node_cpu_us_per_msg: f64,
    /// The NATS servers' CPU per message with one node (three servers,
    /// R=3).
    pub nats_base_cpu_us_per_msg: f64,
    /// What each further node adds to the NATS servers per message
    /// (its consumer and its share of the events): (2,629 − 2,003) / 2.
    pub nats_cpu_us_per_msg_per_node: f64,
}

impl ClusterCost {
    /// The figures of the last measurement.
    pub fn measured() -> ClusterCost {
        ClusterCost {
            node_cpu_us_per_msg: 1_136.0,
            nats_base_cpu_us_per_msg: 2_003.0,
            nats_cpu_us_per_msg_per_node: 313.0,
        }
    }
}

/// Bytes of one send in the log besides its text: the record's per-send
/// fields (40) and one 8-byte id per member; a record's own 30 bytes are
/// shared by its group and left out.
const RECORD_BYTES_PER_SEND: f64 = 40.0;

/// The cluster a plan needs.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterPlan {
    /// The costs used.
    pub cost: ClusterCost,
    /// Nodes, from the connection, message and delivery plan.
    pub nodes: u64,
    /// Cores every node spends applying and relaying at the peak.
    pub node_cores_for_log: f64,
    /// Cores a node has for it at the planned utilisation.
    pub node_cores_available: f64,
    /// Whether the profile's peak fits the replicated log.
    pub fits: bool,
    /// The highest cluster-wide message rate the log carries on such nodes.
    pub max_messages_per_s: f64,
    /// Cores the NATS servers spend at the peak, all together.
    pub nats_cores: f64,
    /// NATS servers of `node_cores` cores at the planned utilisation (at
    /// least three, for R=3).
    pub nats_servers: u64,
    /// Bytes the stream takes per day, all three replicas.
    pub stream_bytes_per_day: f64,
}

impl ClusterPlan {
    /// The cluster for `plan` on nodes (and NATS servers) of `node_cores`.
    pub fn new(plan: &Plan, mean_text_bytes: f64, node_cores: f64) -> ClusterPlan {
        let cost = ClusterCost::measured();
        let m = plan.peak_messages_per_s;
        let util = plan.nodes.target_utilisation;
        let nodes = plan.nodes.needed;
        let node_cores_for_log = m * cost.node_cpu_us_per_msg / 1e6;
        let node_cores_available = node_cores * util;
        let nats_cores = m
            * (cost.nats_base_cpu_us_per_msg
                + nodes.saturating_sub(1) as f64 * cost.nats_cpu_us_per_msg_per_node)
            / 1e6;
        let nats_servers = ((nats_cores / node_cores_available).ceil() as u64).max(3);
        let per_send =
            RECORD_BYTES_PER_SEND + mean_text_bytes + 8.0 * (plan.recipients_per_message + 1.0);
        ClusterPlan {
            cost,
            nodes,
            node_cores_for_log,
            node_cores_available,
            fits: node_cores_for_log <= node_cores_available,
            max_messages_per_s: node_cores_available / cost.node_cpu_us_per_msg * 1e6,
            nats_cores,
            nats_servers,
            stream_bytes_per_day: plan.messages_per_day * per_send * 3.0,
        }
    }

    /// Human-readable.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "cluster on the replicated log (docs/cluster.md), from measured costs:"
        );
        let _ = writeln!(
            o,
            "  every node applies and relays every message: {:.1} cores each at the peak \
             ({} µs per message), of {:.1} available",
            self.node_cores_for_log,
            group(self.cost.node_cpu_us_per_msg),
            self.node_cores_available
        );
        if self.fits {
            let _ = writeln!(o, "  fits: {} nodes", self.nodes);
        } else {
            let _ = writeln!(
                o,
                "  does not fit: the log carries at most {} msgs/s on such nodes, whatever \
                 their number; this peak needs the partitioned log (not built)",
                group(self.max_messages_per_s)
            );
        }
        let _ = writeln!(
            o,
            "  NATS: {:.1} cores at the peak ({} µs per message with one node, {} more per \
             further node) = {} servers",
            self.nats_cores,
            group(self.cost.nats_base_cpu_us_per_msg),
            group(self.cost.nats_cpu_us_per_msg_per_node),
            self.nats_servers
        );
        let _ = writeln!(
            o,
            "  stream: {:.1} GiB/day over its 3 replicas (kept whole until snapshots are built)",
            self.stream_bytes_per_day / (1u64 << 30) as f64
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn the_dau50m_peak_is_beyond_the_replicated_log_and_a_small_one_fits() {
        let big = Profile::load("dau50m").unwrap();
        let plan = Plan::new(&big);
        let c = ClusterPlan::new(&plan, big.mean_message_chars(), 16.0);
        // 45,794 msgs/s × 1,136 µs = 52 cores per node, of 9.6.
        assert!(!c.fits);
        assert!((c.node_cores_for_log - plan.peak_messages_per_s * 1.136e-3).abs() < 1e-6);
        assert!((c.max_messages_per_s - 9.6 / 1.136e-3).abs() < 1.0);
        assert!(c.nats_servers >= 3);
        let small = Profile::load("smoke").unwrap();
        let plan = Plan::new(&small);
        let c = ClusterPlan::new(&plan, small.mean_message_chars(), 16.0);
        assert!(c.fits);
        assert_eq!(c.nats_servers, 3);
    }
}
