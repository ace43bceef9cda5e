//! How many connections one node of a given size holds, from what an idle
//! connection was measured to cost.
//!
//! At the peak almost every connection is idle: a heartbeat every 30 s and
//! a few messages an hour. What binds a node's connection count is then
//! memory (the server's own per connection, plus the kernel's socket
//! objects, which no RSS shows), the CPU of their heartbeats, and open
//! files. The default costs are the transport bench's figures
//! (docs/benchmarks.md, "Memory per connection"); pass your own when you
//! have measured your build on your hardware.

use std::fmt::Write;

use serde::Serialize;

use crate::plan::group;

/// What one idle connection costs a node.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectionCost {
    /// Server user memory (RSS growth ÷ connections).
    pub user_bytes: f64,
    /// Kernel memory: socket objects and idle socket buffers.
    pub kernel_bytes: f64,
    /// Server CPU per heartbeat, in microseconds (the CPU of holding idle
    /// connections ÷ the heartbeats they sent).
    pub heartbeat_cpu_us: f64,
    /// File descriptors per connection (QUIC connections share the UDP
    /// socket).
    pub files: f64,
}

impl ConnectionCost {
    /// The transport bench's figures, 2026-12-06 (2 vCPUs): 19,000 idle
    /// connections for ws and wss (the sessions as state machines; wss
    /// with its own TLS record layer, the mean of two runs), 10,000 for
    /// QUIC. Kernel bytes are half the slab growth per loopback pair (both
    /// ends were on the box) plus the socket buffer pages charged per
    /// connection. Heartbeat CPU is the server's CPU holding the idle
    /// connections over the heartbeats they sent: ws 0.63 % and wss
    /// 1.055 % of a core for 19,000 connections (wss on a slower host,
    /// where the build before the record layer took 1.14–1.17 %), QUIC
    /// 3.37 % for 10,000 (its figure includes the SDK's QUIC keep-alives,
    /// three per heartbeat period).
    pub fn measured(transport: Transport) -> ConnectionCost {
        let per_heartbeat =
            |share_of_core: f64, connections: f64| share_of_core / (connections / 30.0) * 1e6;
        match transport {
            Transport::Ws => ConnectionCost {
                user_bytes: 2_080.0,
                kernel_bytes: 7_289.0 / 2.0,
                heartbeat_cpu_us: per_heartbeat(0.0063, 19_000.0),
                files: 1.0,
            },
            Transport::Wss => ConnectionCost {
                user_bytes: 2_973.0,
                kernel_bytes: 7_276.0 / 2.0,
                heartbeat_cpu_us: per_heartbeat(0.01055, 19_000.0),
                files: 1.0,
            },
            Transport::Quic => ConnectionCost {
                user_bytes: 38_900.0,
                kernel_bytes: 2_471.0 / 2.0 + 3_984.0,
                heartbeat_cpu_us: per_heartbeat(0.0337, 10_000.0),
                files: 0.0,
            },
        }
    }
}

/// The transport whose measured costs are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain WebSocket.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// The QUIC binary protocol.
    Quic,
}

/// A node's size and how much of it connections may use.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NodeSize {
    /// Memory of the machine.
    pub memory_gib: f64,
    /// Cores of the machine.
    pub cores: f64,
    /// Memory kept for everything but connections (the process without
    /// connections, RocksDB's caches and memtables, the page cache the
    /// log's reads need).
    pub reserved_gib: f64,
    /// Share of the cores idle connections may take (the rest is for
    /// messages).
    pub heartbeat_cpu_share: f64,
    /// The open-file limit the node runs with (`LimitNOFILE`, at most
    /// `fs.nr_open`; docs/operations.md).
    pub open_files: f64,
    /// Seconds between a connection's heartbeats.
    pub heartbeat_interval_s: f64,
}

/// Connections one node holds, by each bound.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NodeConnections {
    /// The size it is for.
    pub node: NodeSize,
    /// The costs it assumes.
    pub cost: ConnectionCost,
    /// Bound by memory.
    pub by_memory: f64,
    /// Bound by the CPU of heartbeats.
    pub by_heartbeat_cpu: f64,
    /// Bound by open files (infinite for QUIC).
    pub by_open_files: f64,
    /// The smallest of the three.
    pub holds: f64,
    /// Which one it is.
    pub bound_by: &'static str,
}

impl NodeConnections {
    /// The arithmetic.
    pub fn new(node: NodeSize, cost: ConnectionCost) -> NodeConnections {
        let usable = ((node.memory_gib - node.reserved_gib) * (1u64 << 30) as f64).max(0.0);
        let by_memory = usable / (cost.user_bytes + cost.kernel_bytes);
        // CPU seconds per second available for heartbeats, over the CPU
        // seconds one connection's heartbeats take per second.
        let per_connection = cost.heartbeat_cpu_us / 1e6 / node.heartbeat_interval_s;
        let by_heartbeat_cpu = node.cores * node.heartbeat_cpu_share / per_connection;
        let by_open_files = if cost.files > 0.0 {
            node.open_files / cost.files
        } else {
            f64::INFINITY
        };
        let (holds, bound_by) = [
            (by_memory, "memory"),
            (by_heartbeat_cpu, "heartbeat CPU"),
            (by_open_files, "open files"),
        ]
        .into_iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
        NodeConnections {
            node,
            cost,
            by_memory,
            by_heartbeat_cpu,
            by_open_files,
            holds: holds.floor(),
            bound_by,
        }
    }

    /// Human-readable.
    pub fn render(&self, transport: Transport) -> String {
        let (n, c) = (&self.node, &self.cost);
        let mut o = String::new();
        let _ = writeln!(
            o,
            "one node of {} GiB and {} cores holds {} idle {} connections (bound by {}):",
            n.memory_gib,
            n.cores,
            group(self.holds),
            format!("{transport:?}").to_lowercase(),
            self.bound_by
        );
        let _ = writeln!(
            o,
            "  memory         {:>14}  ({:.0} B user + {:.0} B kernel each, {} GiB kept for the rest)",
            group(self.by_memory),
            c.user_bytes,
            c.kernel_bytes,
            n.reserved_gib
        );
        let _ = writeln!(
            o,
            "  heartbeat CPU  {:>14}  ({:.1} µs per heartbeat every {} s, {:.0}% of the cores)",
            group(self.by_heartbeat_cpu),
            c.heartbeat_cpu_us,
            n.heartbeat_interval_s,
            n.heartbeat_cpu_share * 100.0
        );
        let files = if self.by_open_files.is_finite() {
            group(self.by_open_files)
        } else {
            "unbounded".into()
        };
        let _ = writeln!(
            o,
            "  open files     {:>14}  ({} per connection, limit {})",
            files,
            c.files,
            group(n.open_files)
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeSize {
        NodeSize {
            memory_gib: 64.0,
            cores: 16.0,
            reserved_gib: 8.0,
            heartbeat_cpu_share: 0.25,
            open_files: 2_000_000.0,
            heartbeat_interval_s: 30.0,
        }
    }

    #[test]
    fn memory_counts_the_kernel_too() {
        let cost = ConnectionCost {
            user_bytes: 4_096.0,
            kernel_bytes: 4_096.0,
            heartbeat_cpu_us: 1.0,
            files: 1.0,
        };
        let n = NodeConnections::new(node(), cost);
        // 56 GiB over 8 KiB each.
        assert_eq!(n.by_memory, 56.0 * 1024.0 * 1024.0 / 8.0);
        assert_eq!(n.by_open_files, 2_000_000.0);
        assert_eq!((n.holds, n.bound_by), (2_000_000.0, "open files"));
    }

    #[test]
    fn heartbeat_cpu_binds_when_heartbeats_are_dear() {
        let cost = ConnectionCost {
            user_bytes: 100.0,
            kernel_bytes: 100.0,
            // 100 µs every 30 s: 1/300,000 of a core per connection.
            heartbeat_cpu_us: 100.0,
            files: 0.0,
        };
        let n = NodeConnections::new(node(), cost);
        assert!((n.by_heartbeat_cpu - 16.0 * 0.25 * 300_000.0).abs() < 1e-3);
        assert!(
            n.by_open_files.is_infinite(),
            "QUIC uses no file per connection"
        );
        assert_eq!(n.bound_by, "heartbeat CPU");
        assert_eq!(n.holds, 1_200_000.0);
    }

    #[test]
    fn measured_ws_on_a_64_gib_node_is_bound_by_memory_or_files() {
        let n = NodeConnections::new(node(), ConnectionCost::measured(Transport::Ws));
        // About 5.7 KB a connection (2.1 of it the server's, 3.6 the
        // kernel's): some 10.5 million fit in 56 GiB, so the two million
        // open files bind first.
        assert!(
            n.by_memory > 10_000_000.0 && n.by_memory < 11_000_000.0,
            "{}",
            n.by_memory
        );
        assert_eq!(n.bound_by, "open files");
        // QUIC's keep-alives make its idle connections the dearest in CPU.
        let quic = NodeConnections::new(node(), ConnectionCost::measured(Transport::Quic));
        assert_eq!(quic.bound_by, "heartbeat CPU");
        assert!(quic.holds < n.by_memory / 4.0);
    }
}
