//! The gateway's metrics, in the node's Prometheus registry. Families are
//! registered once; each core resolves its own children (label
//! `core="i"`) when it starts, so a core's increments touch only its own
//! counters and never look a label up on the hot path.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use confab_protocol::{ErrorCode, FrameType};

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
}

/// Upper bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Upper bounds of the fan-out size histogram (recipients per message;
/// groups hold at most 100 members).
const FANOUT_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// The families, registered once per node.
#[derive(Clone)]
pub struct GatewayMetrics {
    connections: IntGaugeVec,
    frames_in: IntCounterVec,
    frames_out: IntCounterVec,
    messages_stored: IntCounterVec,
    deliveries: IntCounterVec,
    presence_events: IntCounterVec,
    push_jobs: IntCounterVec,
    shed_frames: IntCounterVec,
    slow_consumers: IntCounterVec,
    queue_depth: IntGaugeVec,
    errors: IntCounterVec,
    store_latency: HistogramVec,
    delivery_latency: HistogramVec,
    fanout: HistogramVec,
    io: &'static str,
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let v = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let v = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        &["core"],
    )?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

impl GatewayMetrics {
    /// Registers the gateway's families in `r`; `io` labels the connection
    /// gauge with the IO backend in use.
    pub fn new(r: &Registry, io: &'static str) -> prometheus::Result<Self> {
        Ok(GatewayMetrics {
            connections: gauge(r, "confab_connections", "Open sessions per core and transport.", &["core", "transport", "io"])?,
            frames_in: counter(r, "confab_frames_in_total", "Protocol frames received, by type (\"invalid\": not a frame).", &["core", "type"])?,
            frames_out: counter(r, "confab_frames_out_total", "Protocol frames queued to clients, by type.", &["core", "type"])?,
            messages_stored: counter(r, "confab_messages_stored_total", "Messages stored from senders on this core.", &["core"])?,
            deliveries: counter(r, "confab_deliveries_total", "Messages and acks released to devices.", &["core"])?,
            presence_events: counter(r, "confab_presence_events_total", "Presence changes published.", &["core"])?,
            push_jobs: counter(r, "confab_push_jobs_total", "Push jobs raised for members with no online device.", &["core"])?,
            shed_frames: counter(r, "confab_shed_frames_total", "Typing and presence frames dropped because a connection's queue was full.", &["core"])?,
            slow_consumers: counter(r, "confab_slow_consumer_disconnects_total", "Connections closed as slow consumers, by reason.", &["core", "reason"])?,
            queue_depth: gauge(r, "confab_queue_depth", "Queue depths per core: the mailbox (at its last drain), sends in flight to storage, bytes waiting in connections' outbound queues.", &["core", "queue"])?,
            errors: counter(r, "confab_errors_total", "Wire errors sent, by code.", &["core", "code"])?,
            store_latency: histogram(r, "confab_store_latency_seconds", "Time from a send's submission to its storage completion (durable under sync=batch).", &LATENCY_BUCKETS)?,
            delivery_latency: histogram(r, "confab_delivery_latency_seconds", "Time from a message's storage completion to its queueing on a recipient's connection.", &LATENCY_BUCKETS)?,
            fanout: histogram(r, "confab_fanout_recipients", "Recipients (channel members) per stored message.", &FANOUT_BUCKETS)?,
            io,
        })
    }

    /// Core `core`'s children.
    pub fn core(&self, core: usize) -> CoreMetrics {
        let c = core.to_string();
        let c = c.as_str();
        CoreMetrics {
            connections: Transport::ALL
                .map(|t| self.connections.with_label_values(&[c, t.label(), self.io])),
            frames_in: FrameType::ALL
                .iter()
                .map(|t| self.frames_in.with_label_values(&[c, t.name()]))
                .collect(),
            frames_in_invalid: self.frames_in.with_label_values(&[c, "invalid"]),
            frames_out: FrameType::ALL
                .iter()
                .map(|t| self.frames_out.with_label_values(&[c, t.name()]))
                .collect(),
            messages_stored: self.messages_stored.with_label_values(&[c]),
            deliveries: self.deliveries.with_label_values(&[c]),
            presence_events: self.presence_events.with_label_values(&[c]),
            push_jobs: self.push_jobs.with_label_values(&[c]),
            shed_frames: self.shed_frames.with_label_values(&[c]),
            slow_consumers: self
                .slow_consumers
                .with_label_values(&[c, "outbound_queue_full"]),
            mailbox_depth: self.queue_depth.with_label_values(&[c, "mailbox"]),
            storage_in_flight: self
                .queue_depth
                .with_label_values(&[c, "storage_in_flight"]),
            outbound_bytes: self.queue_depth.with_label_values(&[c, "outbound_bytes"]),
            errors: ErrorCode::ALL
                .iter()
                .map(|e| self.errors.with_label_values(&[c, e.name()]))
                .collect(),
            store_latency: self.store_latency.with_label_values(&[c]),
            delivery_latency: self.delivery_latency.with_label_values(&[c]),
            fanout: self.fanout.with_label_values(&[c]),
        }
    }
}

/// One core's children of the families.
#[derive(Clone)]
pub struct CoreMetrics {
    connections: [IntGauge; 3],
    frames_in: Vec<IntCounter>,
    frames_in_invalid: IntCounter,
    frames_out: Vec<IntCounter>,
    /// Messages stored from this core's senders.
    pub messages_stored: IntCounter,
    /// Messages and acks released to devices.
    pub deliveries: IntCounter,
    /// Presence changes published.
    pub presence_events: IntCounter,
    /// Push jobs raised for members with no online device.
    pub push_jobs: IntCounter,
    /// Droppable frames shed under back-pressure.
    pub shed_frames: IntCounter,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumers: IntCounter,
    /// Mailbox depth at the last drain.
    pub mailbox_depth: IntGauge,
    /// Sends in storage not yet completed.
    pub storage_in_flight: IntGauge,
    /// Bytes waiting in this core's connections' outbound queues.
    pub outbound_bytes: IntGauge,
    errors: Vec<IntCounter>,
    /// Submission to completion of a send.
    pub store_latency: Histogram,
    /// Completion to queueing on a recipient's connection.
    pub delivery_latency: Histogram,
    /// Recipients per stored message.
    pub fanout: Histogram,
}

fn type_index(ty: FrameType) -> usize {
    FrameType::ALL.iter().position(|t| *t == ty).unwrap_or(0)
}

impl CoreMetrics {
    /// Children of a registry of their own (tests).
    pub fn unregistered() -> CoreMetrics {
        GatewayMetrics::new(&Registry::new(), "test")
            .expect("fresh registry")
            .core(0)
    }

    /// Counts a wire error sent.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].inc();
        }
    }

    /// A session opened on `transport`.
    pub fn connection_opened(&self, transport: Transport) {
        self.connections[transport as usize].inc();
    }

    /// A session on `transport` ended.
    pub fn connection_closed(&self, transport: Transport) {
        self.connections[transport as usize].dec();
    }

    /// Open sessions on `transport`.
    pub fn connections(&self, transport: Transport) -> i64 {
        self.connections[transport as usize].get()
    }

    /// Counts a frame received.
    pub fn frame_in(&self, ty: FrameType) {
        self.frames_in[type_index(ty)].inc();
    }

    /// Counts a message that was not a valid frame.
    pub fn frame_in_invalid(&self) {
        self.frames_in_invalid.inc();
    }

    /// Counts a frame queued to a client.
    pub fn frame_out(&self, ty: FrameType) {
        self.frames_out[type_index(ty)].inc();
    }

    /// Frames of type `ty` queued so far.
    pub fn frames_out_of(&self, ty: FrameType) -> u64 {
        self.frames_out[type_index(ty)].get()
    }
}
