//! Capacity arithmetic: what a profile means for a whole deployment and for
//! the slice of it one machine drives.
//!
//! `plan` prints this without sending anything; `run` prints the scaled
//! slice before it starts and, at the end, redoes the node count with the
//! rates it measured instead of the profile's assumed capacity.

use std::fmt::Write;

use serde::Serialize;

use crate::profile::Profile;

/// Bytes stored per message besides its text, before compression: the
/// `messages` key (16) and record header (33), and its `idempotency`
/// entry (24 + 24). See docs/storage.md.
pub const MESSAGE_OVERHEAD_BYTES: f64 = 16.0 + 33.0 + 48.0;
/// Bytes of one inbox pointer (key 16 + value 16), one per member.
pub const INBOX_POINTER_BYTES: f64 = 32.0;

/// The full deployment at its daily peak.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Daily active users.
    pub dau: u64,
    /// Peak hour traffic over the day's mean.
    pub peak_factor: f64,
    /// Users online at the peak.
    pub peak_concurrent_users: f64,
    /// Device connections at the peak.
    pub peak_connections: f64,
    /// Messages sent per day.
    pub messages_per_day: f64,
    /// Messages per second at the peak.
    pub peak_messages_per_s: f64,
    /// Members other than the sender per message, on average.
    pub recipients_per_message: f64,
    /// Inbox pointers written per second at the peak (one per member,
    /// the sender's own included, for their other devices).
    pub peak_inbox_writes_per_s: f64,
    /// Messages pushed to connected devices per second at the peak.
    pub peak_deliveries_per_s: f64,
    /// Heartbeats per second at the peak.
    pub peak_heartbeats_per_s: f64,
    /// Typing notices plus read receipts per second at the peak.
    pub peak_signals_per_s: f64,
    /// New connections per second at the peak (session starts and
    /// reconnects).
    pub peak_connects_per_s: f64,
    /// Bytes written to the log per day, before compression.
    pub storage_bytes_per_day: f64,
    /// Gateway nodes needed, from the profile's capacity assumptions.
    pub nodes: Nodes,
}

/// Nodes needed and what binds.
#[derive(Debug, Clone, Serialize)]
pub struct Nodes {
    /// Nodes for the message rate.
    pub for_messages: u64,
    /// Nodes for the delivery rate.
    pub for_deliveries: u64,
    /// Nodes for the connections.
    pub for_connections: u64,
    /// The largest of the three (at least 1).
    pub needed: u64,
    /// Which of the three it is.
    pub bound_by: &'static str,
    /// Per-node figures used, and where they came from.
    pub node_messages_per_s: f64,
    /// Per-node deliveries per second used.
    pub node_deliveries_per_s: f64,
    /// Per-node connections used.
    pub node_connections: f64,
    /// Planned utilisation at the peak.
    pub target_utilisation: f64,
}

/// What one machine drives: the profile at `scale`.
#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    /// Share of the peak population.
    pub scale: f64,
    /// Virtual users (all online for the whole run).
    pub users: u64,
    /// Expected connections (users × mean devices).
    pub connections: f64,
    /// Messages per second offered (the scaled model, or `--rate`).
    pub messages_per_s: f64,
    /// Whether `messages_per_s` is the model's (false: `--rate`).
    pub rate_from_model: bool,
}

impl Plan {
    /// The deployment arithmetic of `profile`, with per-node capacity
    /// `capacity` (the profile's own unless a run measured better).
    pub fn new(profile: &Profile) -> Plan {
        let p = &profile.population;
        let t = &profile.traffic;
        let peak_factor = profile.peak_factor();
        let devices = profile.mean_devices();
        let dau = p.dau as f64;
        let peak_concurrent_users = dau * p.peak_concurrent_ratio;
        let peak_connections = peak_concurrent_users * devices;
        let messages_per_day = dau * t.messages_per_user_per_day;
        let peak_messages_per_s = messages_per_day / 86_400.0 * peak_factor;
        let share = t.one_to_one_share;
        let recipients = share + (1.0 - share) * (profile.mean_group_size() - 1.0);
        // A recipient is online with the peak's concurrency; the sender is
        // online by definition and their other devices get the message too.
        let deliveries_per_message =
            recipients * p.peak_concurrent_ratio * devices + (devices - 1.0);
        let peak_deliveries_per_s = peak_messages_per_s * deliveries_per_message;
        let storage_bytes_per_day = messages_per_day
            * (profile.mean_message_chars() + MESSAGE_OVERHEAD_BYTES)
            + messages_per_day * (recipients + 1.0) * INBOX_POINTER_BYTES;
        let session_starts_per_s = dau * p.sessions_per_day / 86_400.0 * peak_factor * devices;
        let reconnects_per_s = peak_connections * t.reconnects_per_device_hour / 3600.0;
        let plan = Plan {
            dau: p.dau,
            peak_factor,
            peak_concurrent_users,
            peak_connections,
            messages_per_day,
            peak_messages_per_s,
            recipients_per_message: recipients,
            peak_inbox_writes_per_s: peak_messages_per_s * (recipients + 1.0),
            peak_deliveries_per_s,
            peak_heartbeats_per_s: peak_connections / t.heartbeat_interval_s as f64,
            peak_signals_per_s: peak_messages_per_s * t.typing_per_message
                + peak_deliveries_per_s * t.read_receipts_per_message,
            peak_connects_per_s: session_starts_per_s + reconnects_per_s,
            storage_bytes_per_day,
            nodes: Nodes::default_for(),
        };
        let c = profile.capacity;
        plan.with_capacity(
            c.node_messages_per_s,
            c.node_deliveries_per_s,
            c.node_connections,
            c.target_utilisation,
        )
    }

    /// The same plan with other per-node figures.
    pub fn with_capacity(
        mut self,
        messages_per_s: f64,
        deliveries_per_s: f64,
        connections: f64,
        utilisation: f64,
    ) -> Plan {
        let need = |demand: f64, per_node: f64| -> u64 {
            if per_node <= 0.0 {
                return u64::MAX;
            }
            // Less a hair, so that 25.000000000000004 nodes are 25.
            (demand / (per_node * utilisation) - 1e-9).ceil().max(1.0) as u64
        };
        let for_messages = need(self.peak_messages_per_s, messages_per_s);
        let for_deliveries = need(self.peak_deliveries_per_s, deliveries_per_s);
        let for_connections = need(self.peak_connections, connections);
        let (needed, bound_by) = [
            (for_messages, "messages"),
            (for_deliveries, "deliveries"),
            (for_connections, "connections"),
        ]
        .into_iter()
        .max_by_key(|(n, _)| *n)
        .unwrap();
        self.nodes = Nodes {
            for_messages,
            for_deliveries,
            for_connections,
            needed,
            bound_by,
            node_messages_per_s: messages_per_s,
            node_deliveries_per_s: deliveries_per_s,
            node_connections: connections,
            target_utilisation: utilisation,
        };
        self
    }

    /// The slice one machine drives at `scale`, with an optional rate
    /// override.
    pub fn slice(&self, profile: &Profile, scale: f64, rate: Option<f64>) -> Slice {
        let users = (self.peak_concurrent_users * scale).ceil().max(2.0) as u64;
        Slice {
            scale,
            users,
            connections: users as f64 * profile.mean_devices(),
            messages_per_s: rate.unwrap_or(self.peak_messages_per_s * scale),
            rate_from_model: rate.is_none(),
        }
    }

    /// Human-readable.
    pub fn render(&self, profile: &Profile, slice: Option<&Slice>) -> String {
        let mut o = String::new();
        let n = &self.nodes;
        let _ = writeln!(o, "profile {}: {}", profile.name, profile.description);
        let _ = writeln!(o, "full service at the daily peak:");
        let _ = writeln!(
            o,
            "  daily active users      {:>16}",
            group(self.dau as f64)
        );
        let _ = writeln!(o, "  peak factor             {:>16.2}", self.peak_factor);
        let _ = writeln!(
            o,
            "  concurrent users        {:>16}",
            group(self.peak_concurrent_users)
        );
        let _ = writeln!(
            o,
            "  connections             {:>16}",
            group(self.peak_connections)
        );
        let _ = writeln!(
            o,
            "  messages/day            {:>16}",
            group(self.messages_per_day)
        );
        let _ = writeln!(
            o,
            "  messages/s              {:>16}",
            group(self.peak_messages_per_s)
        );
        let _ = writeln!(
            o,
            "  inbox writes/s          {:>16}",
            group(self.peak_inbox_writes_per_s)
        );
        let _ = writeln!(
            o,
            "  deliveries/s            {:>16}",
            group(self.peak_deliveries_per_s)
        );
        let _ = writeln!(
            o,
            "  heartbeats/s            {:>16}",
            group(self.peak_heartbeats_per_s)
        );
        let _ = writeln!(
            o,
            "  typing+receipts/s       {:>16}",
            group(self.peak_signals_per_s)
        );
        let _ = writeln!(
            o,
            "  connects/s              {:>16}",
            group(self.peak_connects_per_s)
        );
        let _ = writeln!(
            o,
            "  storage/day             {:>12.1} GiB (before compression)",
            self.storage_bytes_per_day / (1u64 << 30) as f64
        );
        let _ = writeln!(
            o,
            "nodes needed: {} (bound by {}; messages {}, deliveries {}, connections {})",
            n.needed, n.bound_by, n.for_messages, n.for_deliveries, n.for_connections
        );
        let _ = writeln!(
            o,
            "  per node: {} msgs/s, {} deliveries/s, {} connections, planned at {:.0}% use",
            group(n.node_messages_per_s),
            group(n.node_deliveries_per_s),
            group(n.node_connections),
            n.target_utilisation * 100.0
        );
        if let Some(s) = slice {
            let _ = writeln!(
                o,
                "this machine at scale {}: {} users, ~{} connections, {} msgs/s ({})",
                s.scale,
                s.users,
                group(s.connections),
                group(s.messages_per_s),
                if s.rate_from_model {
                    "the model's rate"
                } else {
                    "--rate"
                }
            );
        }
        o
    }
}

impl Nodes {
    fn default_for() -> Nodes {
        Nodes {
            for_messages: 0,
            for_deliveries: 0,
            for_connections: 0,
            needed: 0,
            bound_by: "",
            node_messages_per_s: 0.0,
            node_deliveries_per_s: 0.0,
            node_connections: 0.0,
            target_utilisation: 0.0,
        }
    }
}

/// `12345678.9` → `12,345,679`.
pub(crate) fn group(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dau50m_arithmetic() {
        let profile = Profile::load("dau50m").unwrap();
        let plan = Plan::new(&profile);
        // 50M × 40 messages a day.
        assert_eq!(plan.messages_per_day, 2.0e9);
        // The mean is 2e9 / 86400 = 23,148/s; the curve's peak is 1.9 over
        // a mean of 23.05 / 24.
        let expected = 2.0e9 / 86_400.0 * 1.9 / (23.05 / 24.0);
        assert!((plan.peak_messages_per_s - expected).abs() < 1.0);
        // 5M users online with 1.5 devices each.
        assert!((plan.peak_connections - 7.5e6).abs() < 1.0);
        // 7.5M connections at 500k per node used to 60% need 25 nodes.
        assert_eq!(plan.nodes.for_connections, 25);
        assert_eq!(plan.nodes.needed, 25);
        assert_eq!(plan.nodes.bound_by, "connections");
        let slice = plan.slice(&profile, 0.001, None);
        assert_eq!(slice.users, 5000);
        assert!((slice.messages_per_s - plan.peak_messages_per_s / 1000.0).abs() < 1e-6);
    }

    #[test]
    fn measured_capacity_changes_the_node_count() {
        let profile = Profile::load("dau50m").unwrap();
        let plan = Plan::new(&profile).with_capacity(1000.0, 1e9, 1e9, 1.0);
        assert_eq!(
            plan.nodes.for_messages,
            plan.peak_messages_per_s.ceil() as u64 / 1000 + 1
        );
        assert_eq!(plan.nodes.bound_by, "messages");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(12_345_678.9), "12,345,679");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(1000.0), "1,000");
    }
}
