//! The run's report: one JSON object for scripts (`--json`), a
//! self-contained HTML page with plots for people (`--html`), and a text
//! summary on stdout.
//!
//! The HTML draws its plots as inline SVG, so the file opens in any
//! browser with no network and no scripts.

use std::fmt::Write;

use serde::Serialize;

use crate::cpu::{us, CpuCost};
use crate::ledger::ErrorCounts;
use crate::plan::{Nodes, Plan, Slice};
use crate::profile::Profile;
use crate::run::TransportChoice;
use crate::stats::{Second, Summary};

/// The fresh-device sync at the end of a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SyncCheck {
    /// Users whose inbox was synced.
    pub users: u64,
    /// Messages they received.
    pub messages: u64,
    /// Messages that should have arrived and did not.
    pub missing: u64,
    /// Messages that arrived twice.
    pub duplicated: u64,
    /// Holes in a channel's sequence.
    pub gaps: u64,
    /// Time from connecting to holding the whole inbox.
    pub latency: Summary,
}

/// Every channel's stored history read back at the end of a run (with
/// `--check-history`): each acknowledged message must be there exactly
/// once, under gapless sequences from 1.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HistoryCheck {
    /// Channels read.
    pub channels: u64,
    /// Messages found.
    pub messages: u64,
    /// Acknowledged messages found in no channel's history.
    pub missing: u64,
    /// Messages found more than once.
    pub duplicated: u64,
    /// Sequences missing between 1 and a channel's last.
    pub gaps: u64,
}

/// What the run measured, as handed to [`Report::build`].
pub struct Inputs {
    pub profile: Profile,
    pub plan: Plan,
    pub slice: Slice,
    pub transport: TransportChoice,
    pub urls: Vec<String>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub setup_s: f64,
    pub connect_s: f64,
    pub users: u64,
    pub channels: u64,
    pub connections: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub measured_acked: u64,
    pub measured_delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub gaps: u64,
    pub out_of_order: u64,
    pub corrupted: u64,
    pub errors: ErrorCounts,
    pub reconnects: u64,
    pub forced_reconnects: u64,
    pub token_refreshes: u64,
    pub ack: Summary,
    pub delivery: Summary,
    pub connect: Summary,
    pub ack_cdf: Vec<(u64, f64)>,
    pub delivery_cdf: Vec<(u64, f64)>,
    pub timeline: Vec<Second>,
    pub sync: SyncCheck,
    pub history: Option<HistoryCheck>,
    pub lost_acked_unix_ms: Vec<u64>,
    pub server_rss_bytes: Option<u64>,
    pub server_rss_before_connect: Option<u64>,
    pub server_rss_connected: Option<u64>,
    pub cpu: CpuCost,
    pub server_fsync_p99_us: Option<u64>,
}

/// What this node's measured rates imply for the full profile.
#[derive(Debug, Clone, Serialize)]
pub struct Extrapolation {
    /// The full service's peak messages per second.
    pub peak_messages_per_s: f64,
    /// Its peak deliveries per second.
    pub peak_deliveries_per_s: f64,
    /// Its peak connections.
    pub peak_connections: f64,
    /// Its storage per day, bytes before compression.
    pub storage_bytes_per_day: f64,
    /// Nodes needed if one node does what this run measured. The run's
    /// rates are what it offered and the server kept up with; they are a
    /// node's capacity only if the run pushed the server to its limit
    /// (raise `--rate` until latency breaks).
    pub nodes: Nodes,
}

/// The whole report (the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: String,
    pub transport: TransportChoice,
    pub urls: Vec<String>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub setup_s: f64,
    pub connect_s: f64,
    pub users: u64,
    pub channels: u64,
    pub connections: u64,
    pub offered_msgs_per_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub gaps: u64,
    pub out_of_order: u64,
    pub corrupted: u64,
    pub errors: ErrorCounts,
    pub errors_total: u64,
    /// Connections lost, forced ones included.
    pub reconnects: u64,
    /// Connection drops the churn asked for (one asked for while the
    /// device is still handling the last one changes nothing).
    pub forced_reconnects: u64,
    /// Access tokens refreshed through the API during the run.
    pub token_refreshes: u64,
    pub msgs_per_s: f64,
    pub deliveries_per_s: f64,
    pub ack_p50_us: u64,
    pub ack_p99_us: u64,
    pub ack_p999_us: u64,
    pub delivery_p50_us: u64,
    pub delivery_p99_us: u64,
    pub delivery_p999_us: u64,
    pub connect_p50_us: u64,
    pub connect_p99_us: u64,
    pub sync_p50_us: u64,
    pub sync_p99_us: u64,
    pub ack: Summary,
    pub delivery: Summary,
    pub connect: Summary,
    pub sync: SyncCheck,
    /// Channel histories read back, when the run was asked to.
    pub history: Option<HistoryCheck>,
    /// When each acknowledged message missing from the histories was
    /// acknowledged (ms since the Unix epoch): what the crash cycles hold
    /// against the moments of their power cuts.
    #[serde(skip)]
    pub lost_acked_unix_ms: Vec<u64>,
    pub server_rss_bytes: Option<u64>,
    /// (RSS with every device connected − RSS before) / connections.
    pub server_bytes_per_connection: Option<u64>,
    /// Both sides' CPU over the measured window, and per message.
    #[serde(flatten)]
    pub cpu: CpuCost,
    /// The server's WAL fsync p99 over the measured window (from its
    /// histogram's buckets; None when it did not fsync).
    pub server_fsync_p99_us: Option<u64>,
    pub capacity: Extrapolation,
    pub timeline: Vec<Second>,
    pub ack_cdf: Vec<(u64, f64)>,
    pub delivery_cdf: Vec<(u64, f64)>,
    pub passed: bool,
}

impl Report {
    /// Derives the rates, the extrapolation and the verdict.
    pub fn build(i: Inputs) -> Report {
        let msgs_per_s = i.measured_acked as f64 / i.duration_s;
        let deliveries_per_s = i.measured_delivered as f64 / i.duration_s;
        let util = i.profile.capacity.target_utilisation;
        // A run that sent nothing says nothing about message capacity:
        // keep the profile's figure for that term.
        let or_profile =
            |measured: f64, assumed: f64| if measured > 0.0 { measured } else { assumed };
        let measured_plan = i.plan.clone().with_capacity(
            or_profile(msgs_per_s, i.profile.capacity.node_messages_per_s),
            or_profile(deliveries_per_s, i.profile.capacity.node_deliveries_per_s),
            or_profile(i.connections as f64, i.profile.capacity.node_connections),
            util,
        );
        let per_conn = match (i.server_rss_before_connect, i.server_rss_connected) {
            (Some(a), Some(b)) if i.connections > 0 => Some(b.saturating_sub(a) / i.connections),
            _ => None,
        };
        let errors_total = i.errors.values().sum();
        let passed = i.lost == 0
            && i.duplicated == 0
            && i.gaps == 0
            && i.out_of_order == 0
            && i.corrupted == 0
            && errors_total == 0;
        Report {
            profile: i.profile.name.clone(),
            transport: i.transport,
            urls: i.urls,
            duration_s: i.duration_s,
            warmup_s: i.warmup_s,
            setup_s: i.setup_s,
            connect_s: i.connect_s,
            users: i.users,
            channels: i.channels,
            connections: i.connections,
            offered_msgs_per_s: i.slice.messages_per_s,
            sent: i.sent,
            acked: i.acked,
            delivered: i.delivered,
            expected_deliveries: i.expected_deliveries,
            lost: i.lost,
            duplicated: i.duplicated,
            gaps: i.gaps,
            out_of_order: i.out_of_order,
            corrupted: i.corrupted,
            errors: i.errors,
            errors_total,
            reconnects: i.reconnects,
            forced_reconnects: i.forced_reconnects,
            token_refreshes: i.token_refreshes,
            msgs_per_s,
            deliveries_per_s,
            ack_p50_us: i.ack.p50_us,
            ack_p99_us: i.ack.p99_us,
            ack_p999_us: i.ack.p999_us,
            delivery_p50_us: i.delivery.p50_us,
            delivery_p99_us: i.delivery.p99_us,
            delivery_p999_us: i.delivery.p999_us,
            connect_p50_us: i.connect.p50_us,
            connect_p99_us: i.connect.p99_us,
            sync_p50_us: i.sync.latency.p50_us,
            sync_p99_us: i.sync.latency.p99_us,
            ack: i.ack,
            delivery: i.delivery,
            connect: i.connect,
            sync: i.sync,
            history: i.history,
            lost_acked_unix_ms: i.lost_acked_unix_ms,
            server_rss_bytes: i.server_rss_bytes,
            server_bytes_per_connection: per_conn,
            cpu: i.cpu,
            server_fsync_p99_us: i.server_fsync_p99_us,
            capacity: Extrapolation {
                peak_messages_per_s: i.plan.peak_messages_per_s,
                peak_deliveries_per_s: i.plan.peak_deliveries_per_s,
                peak_connections: i.plan.peak_connections,
                storage_bytes_per_day: i.plan.storage_bytes_per_day,
                nodes: measured_plan.nodes,
            },
            timeline: i.timeline,
            ack_cdf: i.ack_cdf,
            delivery_cdf: i.delivery_cdf,
            passed,
        }
    }

    /// The text summary.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} over {:?}: {} users, {} connections, {:.0} s measured after {:.0} s warm-up",
            self.profile,
            self.transport,
            self.users,
            self.connections,
            self.duration_s,
            self.warmup_s
        );
        let _ = writeln!(
            o,
            "sent {} acked {} delivered {} (of {} owed)  {:.0} msgs/s  {:.0} deliveries/s",
            self.sent,
            self.acked,
            self.delivered,
            self.expected_deliveries,
            self.msgs_per_s,
            self.deliveries_per_s
        );
        let _ = writeln!(
            o,
            "ack µs p50 {} p99 {} p99.9 {}   delivery µs p50 {} p99 {} p99.9 {}   connect µs p50 {} p99 {}",
            self.ack_p50_us,
            self.ack_p99_us,
            self.ack_p999_us,
            self.delivery_p50_us,
            self.delivery_p99_us,
            self.delivery_p999_us,
            self.connect_p50_us,
            self.connect_p99_us
        );
        let _ = writeln!(
            o,
            "sync: {} users, {} messages, p50 {} µs",
            self.sync.users, self.sync.messages, self.sync_p50_us
        );
        if let Some(h) = &self.history {
            let _ = writeln!(
                o,
                "history: {} channels, {} messages, missing {} duplicated {} gaps {}",
                h.channels, h.messages, h.missing, h.duplicated, h.gaps
            );
        }
        let _ = writeln!(
            o,
            "reconnects {} ({} forced by churn)  token refreshes {}",
            self.reconnects, self.forced_reconnects, self.token_refreshes
        );
        let _ = writeln!(
            o,
            "lost {} duplicated {} gaps {} out-of-order {} corrupted {} errors {} {:?}",
            self.lost,
            self.duplicated,
            self.gaps,
            self.out_of_order,
            self.corrupted,
            self.errors_total,
            self.errors
        );
        let c = &self.cpu;
        let _ = writeln!(
            o,
            "CPU µs per message: server {} (per delivery {}), load generator {}   cores busy: server {}, load generator {}",
            us(c.server_cpu_us_per_msg),
            us(c.server_cpu_us_per_delivery),
            us(c.loadgen_cpu_us_per_msg),
            cores(c.server_cores),
            cores(c.loadgen_cores)
        );
        if c.others_cpu_us_per_msg.is_some() {
            let _ = writeln!(
                o,
                "CPU µs per message of the other processes (--pids): {}",
                us(c.others_cpu_us_per_msg)
            );
        }
        if let Some(f) = self.server_fsync_p99_us {
            let _ = writeln!(o, "server fsync p99 {f} µs");
        }
        if let Some(rss) = self.server_rss_bytes {
            let _ = write!(o, "server RSS {:.1} MiB", rss as f64 / (1u64 << 20) as f64);
            if let Some(b) = self.server_bytes_per_connection {
                let _ = write!(o, ", {b} bytes per connection");
            }
            let _ = writeln!(o);
        }
        let n = &self.capacity.nodes;
        let _ = writeln!(
            o,
            "at this run's rates the full profile needs {} nodes (bound by {})",
            n.needed, n.bound_by
        );
        let _ = writeln!(o, "{}", if self.passed { "PASSED" } else { "FAILED" });
        o
    }

    /// The self-contained HTML page.
    pub fn html(&self) -> String {
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        let mut o = String::new();
        let _ = write!(
            o,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>confab-loadgen: {}</title>\
             <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}\
             td,th{{padding:2px 10px;text-align:right}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}\
             svg{{background:#fff;border:1px solid #ccc}}</style></head><body>",
            esc(&self.profile)
        );
        let _ = write!(
            o,
            "<h1>confab-loadgen: {} over {:?} — {}</h1>",
            esc(&self.profile),
            self.transport,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        let _ = write!(o, "<table>");
        for (k, v) in [
            ("users", self.users.to_string()),
            ("connections", self.connections.to_string()),
            ("measured seconds", format!("{:.0}", self.duration_s)),
            ("messages/s", format!("{:.0}", self.msgs_per_s)),
            ("deliveries/s", format!("{:.0}", self.deliveries_per_s)),
            (
                "ack p50 / p99 / p99.9 µs",
                format!(
                    "{} / {} / {}",
                    self.ack_p50_us, self.ack_p99_us, self.ack_p999_us
                ),
            ),
            (
                "delivery p50 / p99 / p99.9 µs",
                format!(
                    "{} / {} / {}",
                    self.delivery_p50_us, self.delivery_p99_us, self.delivery_p999_us
                ),
            ),
            (
                "server CPU µs per message / per delivery",
                format!(
                    "{} / {}",
                    us(self.cpu.server_cpu_us_per_msg),
                    us(self.cpu.server_cpu_us_per_delivery)
                ),
            ),
            (
                "load generator CPU µs per message",
                us(self.cpu.loadgen_cpu_us_per_msg),
            ),
            (
                "cores busy: server / load generator",
                format!(
                    "{} / {}",
                    cores(self.cpu.server_cores),
                    cores(self.cpu.loadgen_cores)
                ),
            ),
            (
                "lost / duplicated / gaps",
                format!("{} / {} / {}", self.lost, self.duplicated, self.gaps),
            ),
            ("errors", format!("{} {:?}", self.errors_total, self.errors)),
            (
                "server RSS",
                self.server_rss_bytes
                    .map(|b| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64))
                    .unwrap_or_else(|| "not read".into()),
            ),
            (
                "nodes for the full profile",
                format!(
                    "{} ({})",
                    self.capacity.nodes.needed, self.capacity.nodes.bound_by
                ),
            ),
        ] {
            let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
        }
        let _ = write!(o, "</table><h2>Latency (cumulative distribution)</h2>");
        o.push_str(&cdf_svg(&[
            ("send → ack", "#1f77b4", &self.ack_cdf),
            ("send → delivery", "#d62728", &self.delivery_cdf),
        ]));
        let _ = write!(o, "<h2>Throughput per second</h2>");
        let t = &self.timeline;
        o.push_str(&line_svg(&[
            (
                "acked msgs/s",
                "#1f77b4",
                t.iter().map(|s| (s.t as f64, s.acked as f64)).collect(),
            ),
            (
                "deliveries/s",
                "#2ca02c",
                t.iter().map(|s| (s.t as f64, s.delivered as f64)).collect(),
            ),
        ]));
        let _ = write!(o, "<h2>Connections</h2>");
        o.push_str(&line_svg(&[(
            "connected devices",
            "#9467bd",
            t.iter()
                .map(|s| (s.t as f64, s.connections as f64))
                .collect(),
        )]));
        let _ = write!(o, "<h2>Report</h2><pre>{}</pre></body></html>", esc(&json));
        o
    }
}

fn cores(v: Option<f64>) -> String {
    v.map(|c| format!("{c:.2}")).unwrap_or_else(|| "–".into())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plotted series: its name, its colour and its points.
type Series<'a, P> = (&'a str, &'a str, P);

const W: f64 = 900.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// Latency CDFs on a log-scaled x axis.
fn cdf_svg(series: &[Series<&Vec<(u64, f64)>>]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    let lx = |us: f64| PAD + (us.max(1.0).log10() / max.log10()) * (W - 2.0 * PAD);
    let ly = |q: f64| H - PAD + -(q * (H - 2.0 * PAD));
    let mut o = format!("<svg width=\"{W}\" height=\"{H}\" xmlns=\"http://www.w3.org/2000/svg\">");
    axes(&mut o);
    let mut decade = 1.0;
    while decade <= max {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            lx(decade),
            H - PAD + 15.0,
            label_us(decade)
        );
        decade *= 10.0;
    }
    for q in [0.5, 0.9, 0.99, 1.0] {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{q}</text>",
            PAD - 4.0,
            ly(q) + 4.0
        );
    }
    for (k, (name, color, points)) in series.iter().enumerate() {
        let xy = points.iter().map(|&(us, q)| (lx(us as f64), ly(q)));
        polyline(&mut o, k, name, color, xy);
    }
    o.push_str("</svg>");
    o
}

/// Lines over time.
fn line_svg(series: &[Series<Vec<(f64, f64)>>]) -> String {
    let max_x = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let lx = |x: f64| PAD + x / max_x * (W - 2.0 * PAD);
    let ly = |y: f64| H - PAD - y / max_y * (H - 2.0 * PAD);
    let mut o = format!("<svg width=\"{W}\" height=\"{H}\" xmlns=\"http://www.w3.org/2000/svg\">");
    axes(&mut o);
    let _ = write!(
        o,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.0}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.0} s</text>",
        PAD - 4.0,
        PAD + 4.0,
        max_y,
        W - PAD,
        H - PAD + 15.0,
        max_x
    );
    for (k, (name, color, points)) in series.iter().enumerate() {
        let xy = points.iter().map(|&(x, y)| (lx(x), ly(y)));
        polyline(&mut o, k, name, color, xy);
    }
    o.push_str("</svg>");
    o
}

/// Series `k`'s line through points already in plot coordinates, and its
/// label in the top-left corner.
fn polyline(
    o: &mut String,
    k: usize,
    name: &str,
    color: &str,
    xy: impl Iterator<Item = (f64, f64)>,
) {
    let pts: Vec<String> = xy.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        o,
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" fill=\"{color}\" font-size=\"12\">{}</text>",
        pts.join(" "),
        PAD + 10.0,
        PAD + 15.0 * k as f64,
        esc(name)
    );
}

fn axes(o: &mut String) {
    let _ = write!(
        o,
        "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#333\"/>",
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
}

fn label_us(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{:.0} s", u / 1e6),
        u if u >= 1e3 => format!("{:.0} ms", u / 1e3),
        u => format!("{u:.0} µs"),
    }
}
