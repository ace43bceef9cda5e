//! Per-core counters. Each core is the only writer of its own block (on its
//! own cache lines), so increments are uncontended relaxed stores; the
//! scrape sums the blocks of all cores.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::{ErrorCode, FrameType};

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

    /// Sets the value (gauges).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The transport a session arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over plain TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// QUIC.
    Quic,
}

impl Transport {
    /// Every transport, in label order.
    pub const ALL: [Transport; 3] = [Transport::Ws, Transport::Wss, Transport::Quic];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Quic => "quic",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the store-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Upper bounds of the fan-out size histogram (recipients per message;
/// groups hold at most 100 members).
pub const FANOUT_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// A fixed-bucket histogram; `N` is the number of finite buckets plus one
/// for +Inf.
pub struct Histogram<const N: usize> {
    bounds: &'static [f64],
    buckets: [AtomicU64; N],
    /// Sum of observations, in millionths of the unit.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64]) -> Self {
        debug_assert_eq!(bounds.len() + 1, N);
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation of `value` (in the histogram's unit).
    pub fn observe_value(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// Records a duration in seconds.
    pub fn observe(&self, d: Duration) {
        self.observe_value(d.as_secs_f64());
    }
}

/// Store latency: from a send's submission to its durable commit.
pub type LatencyHistogram = Histogram<13>;
/// Recipients per stored message.
pub type FanoutHistogram = Histogram<9>;

/// One core's counters, padded to its own cache lines.
#[repr(align(128))]
pub struct CoreMetrics {
    connections: [Counter; 3],
    /// Protocol frames received, by frame-type byte.
    frames_in: [Counter; 256],
    /// Messages that did not decode to a frame.
    frames_in_invalid: Counter,
    /// Protocol frames queued to clients, by frame-type byte.
    frames_out: [Counter; 256],
    /// Messages stored from this core's senders.
    pub messages_stored: Counter,
    /// Recipients per stored message.
    pub fanout: FanoutHistogram,
    /// Messages and acks released to devices.
    pub deliveries: Counter,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumer: Counter,
    /// Droppable frames (typing, presence) shed under back-pressure.
    pub shed_frames: Counter,
    /// Presence changes published.
    pub presence_events: Counter,
    /// Push jobs raised for members with no online device.
    pub push_jobs: Counter,
    /// Time from storage submit to completion.
    pub store_latency: LatencyHistogram,
    /// Mailbox depth at the last drain (gauge).
    pub queue_depth: Counter,
    /// Sends submitted to storage and not yet completed (gauge).
    pub storage_in_flight: Counter,
    /// Bytes waiting in this core's connections' outbound queues (gauge).
    pub outbound_bytes: Counter,
    errors: Vec<Counter>,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            connections: Default::default(),
            frames_in: std::array::from_fn(|_| Counter::default()),
            frames_in_invalid: Counter::default(),
            frames_out: std::array::from_fn(|_| Counter::default()),
            messages_stored: Counter::default(),
            fanout: Histogram::new(&FANOUT_BUCKETS),
            deliveries: Counter::default(),
            slow_consumer: Counter::default(),
            shed_frames: Counter::default(),
            presence_events: Counter::default(),
            push_jobs: Counter::default(),
            store_latency: Histogram::new(&LATENCY_BUCKETS),
            queue_depth: Counter::default(),
            storage_in_flight: Counter::default(),
            outbound_bytes: Counter::default(),
            errors: ErrorCode::ALL.iter().map(|_| Counter::default()).collect(),
        }
    }
}

impl CoreMetrics {
    /// Counts a wire error sent.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].add(1);
        }
    }

    /// A session opened on `transport`.
    pub fn connection_opened(&self, transport: Transport) {
        self.connections[transport.index()].add(1);
    }

    /// A session on `transport` ended.
    pub fn connection_closed(&self, transport: Transport) {
        self.connections[transport.index()].sub(1);
    }

    /// Open sessions on `transport`.
    pub fn connections(&self, transport: Transport) -> u64 {
        self.connections[transport.index()].get()
    }

    /// Counts a frame received.
    pub fn frame_in(&self, ty: FrameType) {
        self.frames_in[ty.as_u8() as usize].add(1);
    }

    /// Counts a message that was not a valid frame.
    pub fn frame_in_invalid(&self) {
        self.frames_in_invalid.add(1);
    }

    /// Counts a frame queued to a client.
    pub fn frame_out(&self, ty: FrameType) {
        self.frames_out[ty.as_u8() as usize].add(1);
    }

    /// Frames of type `ty` queued to clients so far.
    pub fn frames_out_of(&self, ty: FrameType) -> u64 {
        self.frames_out[ty.as_u8() as usize].get()
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    cores: &[Arc<CoreMetrics>],
    pick: impl Fn(&CoreMetrics) -> &Histogram<N>,
) {
    header(out, name, "histogram", help);
    let bounds = pick(&cores[0]).bounds;
    let mut cumulative = 0u64;
    for i in 0..N {
        cumulative += cores
            .iter()
            .map(|m| pick(m).buckets[i].load(Ordering::Relaxed))
            .sum::<u64>();
        match bounds.get(i) {
            Some(b) => {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let sum: u64 = cores
        .iter()
        .map(|m| pick(m).sum_micros.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(out, "{name}_sum {}", sum as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Renders the gateway's metrics in Prometheus text format.
pub fn render(out: &mut String, cores: &[Arc<CoreMetrics>], io: &str) {
    if cores.is_empty() {
        return;
    }
    let per_core =
        |out: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&CoreMetrics) -> u64| {
            header(out, name, kind, help);
            for (i, m) in cores.iter().enumerate() {
                let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", f(m));
            }
        };

    header(
        out,
        "confab_connections",
        "gauge",
        "Open sessions per core and transport.",
    );
    for (i, m) in cores.iter().enumerate() {
        for t in Transport::ALL {
            let _ = writeln!(
                out,
                "confab_connections{{core=\"{i}\",transport=\"{}\",io=\"{io}\"}} {}",
                t.label(),
                m.connections(t)
            );
        }
    }

    for (name, help, pick) in [
        (
            "confab_frames_in_total",
            "Protocol frames received, by type.",
            (|m: &CoreMetrics| &m.frames_in) as fn(&CoreMetrics) -> &[Counter; 256],
        ),
        (
            "confab_frames_out_total",
            "Protocol frames queued to clients, by type.",
            |m: &CoreMetrics| &m.frames_out,
        ),
    ] {
        header(out, name, "counter", help);
        for ty in FrameType::ALL {
            let n: u64 = cores
                .iter()
                .map(|m| pick(m)[ty.as_u8() as usize].get())
                .sum();
            if n > 0 {
                let _ = writeln!(out, "{name}{{type=\"{}\"}} {n}", ty.name());
            }
        }
        if name == "confab_frames_in_total" {
            let n: u64 = cores.iter().map(|m| m.frames_in_invalid.get()).sum();
            let _ = writeln!(out, "{name}{{type=\"invalid\"}} {n}");
        }
    }

    per_core(
        out,
        "confab_messages_stored_total",
        "counter",
        "Messages stored from senders on this core.",
        &|m| m.messages_stored.get(),
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
        "confab_presence_events_total",
        "counter",
        "Presence changes published.",
        &|m| m.presence_events.get(),
    );
    per_core(
        out,
        "confab_push_jobs_total",
        "counter",
        "Push jobs raised for members with no online device.",
        &|m| m.push_jobs.get(),
    );
    per_core(
        out,
        "confab_shed_frames_total",
        "counter",
        "Typing and presence frames dropped because a connection's queue was full.",
        &|m| m.shed_frames.get(),
    );

    header(
        out,
        "confab_slow_consumer_disconnects_total",
        "counter",
        "Connections closed as slow consumers, by reason.",
    );
    let n: u64 = cores.iter().map(|m| m.slow_consumer.get()).sum();
    let _ = writeln!(
        out,
        "confab_slow_consumer_disconnects_total{{reason=\"outbound_queue_full\"}} {n}"
    );

    header(
        out,
        "confab_queue_depth",
        "gauge",
        "Queue depths per core: the core's mailbox (at its last drain), sends in flight to storage, bytes waiting in connections' outbound queues.",
    );
    for (i, m) in cores.iter().enumerate() {
        for (queue, v) in [
            ("mailbox", m.queue_depth.get()),
            ("storage_in_flight", m.storage_in_flight.get()),
            ("outbound_bytes", m.outbound_bytes.get()),
        ] {
            let _ = writeln!(
                out,
                "confab_queue_depth{{core=\"{i}\",queue=\"{queue}\"}} {v}"
            );
        }
    }

    header(
        out,
        "confab_errors_total",
        "counter",
        "Wire errors sent, by code.",
    );
    for (i, code) in ErrorCode::ALL.iter().enumerate() {
        let n: u64 = cores.iter().map(|m| m.errors[i].get()).sum();
        let _ = writeln!(out, "confab_errors_total{{code=\"{}\"}} {n}", code.name());
    }

    histogram(
        out,
        "confab_store_latency_seconds",
        "Time from a send's submission to its durable commit.",
        cores,
        |m| &m.store_latency,
    );
    histogram(
        out,
        "confab_fanout_recipients",
        "Recipients (channel members) per stored message.",
        cores,
        |m| &m.fanout,
    );
}
