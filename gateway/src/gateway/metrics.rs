//! Per-core counters. Each core is the only writer of its own block (on its
//! own cache lines), so increments are uncontended relaxed stores; the
//! scrape sums the blocks of all cores.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::ErrorCode;

/// A counter written by one core.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` (gauges).
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the store-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A fixed-bucket histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 13],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The wire errors counted by code.
const ERROR_CODES: [ErrorCode; 20] = [
    ErrorCode::BadFrame,
    ErrorCode::UnsupportedVersion,
    ErrorCode::UnknownFrameType,
    ErrorCode::FrameTooLarge,
    ErrorCode::UnexpectedFrame,
    ErrorCode::Unauthenticated,
    ErrorCode::TokenExpired,
    ErrorCode::TokenRevoked,
    ErrorCode::ForbiddenChannel,
    ErrorCode::NotFound,
    ErrorCode::TextTooLong,
    ErrorCode::EmptyText,
    ErrorCode::InvalidArgument,
    ErrorCode::GroupFull,
    ErrorCode::RateLimited,
    ErrorCode::SlowConsumer,
    ErrorCode::HeartbeatTimeout,
    ErrorCode::Internal,
    ErrorCode::Unavailable,
    ErrorCode::GoingAway,
];

/// One core's counters, padded to its own cache lines.
#[derive(Default)]
#[repr(align(128))]
pub struct CoreMetrics {
    /// Open WebSocket sessions (gauge).
    pub connections: Counter,
    /// Protocol frames received.
    pub frames_in: Counter,
    /// Protocol frames queued to clients.
    pub frames_out: Counter,
    /// Messages stored from this core's senders.
    pub messages_stored: Counter,
    /// Recipients of those messages (fan-out size sum).
    pub fanout_members: Counter,
    /// Messages and acks released to devices.
    pub deliveries: Counter,
    /// Connections closed as slow consumers.
    pub slow_consumer: Counter,
    /// Presence changes published.
    pub presence_events: Counter,
    /// Time from storage submit to completion.
    pub store_latency: Histogram,
    /// Mailbox depth at the last drain (gauge).
    queue_depth: AtomicU64,
    errors: [Counter; ERROR_CODES.len()],
}

impl CoreMetrics {
    /// Counts a wire error sent.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.errors[i].add(1);
        }
    }

    /// Records the mailbox depth.
    pub fn set_queue_depth(&self, n: u64) {
        self.queue_depth.store(n, Ordering::Relaxed);
    }
}

/// Renders the gateway's metrics in Prometheus text format.
pub fn render(out: &mut String, cores: &[Arc<CoreMetrics>], io: &str) {
    let per_core =
        |out: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&CoreMetrics) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (i, m) in cores.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{core=\"{i}\",transport=\"ws\",io=\"{io}\"}} {}",
                    f(m)
                );
            }
        };
    per_core(
        out,
        "confab_connections",
        "gauge",
        "Open sessions per core and transport.",
        &|m| m.connections.get(),
    );
    per_core(
        out,
        "confab_frames_in_total",
        "counter",
        "Protocol frames received.",
        &|m| m.frames_in.get(),
    );
    per_core(
        out,
        "confab_frames_out_total",
        "counter",
        "Protocol frames queued to clients.",
        &|m| m.frames_out.get(),
    );
    per_core(
        out,
        "confab_messages_stored_total",
        "counter",
        "Messages stored.",
        &|m| m.messages_stored.get(),
    );
    per_core(
        out,
        "confab_fanout_recipients_total",
        "counter",
        "Recipients of stored messages.",
        &|m| m.fanout_members.get(),
    );
    per_core(
        out,
        "confab_deliveries_total",
        "counter",
        "Messages and acks released to devices.",
        &|m| m.deliveries.get(),
    );
    per_core(
        out,
        "confab_slow_consumer_disconnects_total",
        "counter",
        "Connections closed because their outbound queue was full.",
        &|m| m.slow_consumer.get(),
    );
    per_core(
        out,
        "confab_presence_events_total",
        "counter",
        "Presence changes published.",
        &|m| m.presence_events.get(),
    );
    per_core(
        out,
        "confab_core_queue_depth",
        "gauge",
        "Core mailbox depth at the last drain.",
        &|m| m.queue_depth.load(Ordering::Relaxed),
    );

    let _ = writeln!(out, "# HELP confab_errors_total Wire errors sent, by code.");
    let _ = writeln!(out, "# TYPE confab_errors_total counter");
    for (i, code) in ERROR_CODES.iter().enumerate() {
        let n: u64 = cores.iter().map(|m| m.errors[i].get()).sum();
        let _ = writeln!(out, "confab_errors_total{{code=\"{}\"}} {n}", code.name());
    }

    let name = "confab_store_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a send's submission to its durable commit."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += cores
            .iter()
            .map(|m| m.store_latency.buckets[i].load(Ordering::Relaxed))
            .sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += cores
        .iter()
        .map(|m| m.store_latency.buckets[12].load(Ordering::Relaxed))
        .sum::<u64>();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let sum: u64 = cores
        .iter()
        .map(|m| m.store_latency.sum_us.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(out, "{name}_sum {}", sum as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}
