//! The push service's Prometheus series. Jobs (one per member and message)
//! are counted when created and when dropped unsent; notifications (one per
//! device and collapsed group) when sent, failed or retried, by provider and
//! reason. Registered in the node's registry when the service starts.

use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};

/// Where a job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Written with its message (member offline at submit).
    Message,
    /// Written at delivery (member went offline in between).
    Late,
    /// Found in the outbox when the worker started.
    Recovered,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Message => "message",
            Source::Late => "late",
            Source::Recovered => "recovered",
        }
    }
}

/// Counters and gauges of the push service.
#[derive(Clone)]
pub struct PushMetrics {
    created: IntCounterVec,
    sent: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    dropped: IntCounterVec,
    depth: IntGauge,
    oldest: Gauge,
}

impl PushMetrics {
    /// The push series, not yet in any registry.
    pub fn new() -> PushMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        PushMetrics {
            created: counter(
                "confab_push_jobs_created_total",
                "Push jobs (member x message) that reached the push worker, by source.",
                &["source"],
            ),
            sent: counter(
                "confab_push_notifications_sent_total",
                "Notifications a provider accepted.",
                &["provider"],
            ),
            failed: counter(
                "confab_push_notifications_failed_total",
                "Notifications given up on, by provider and reason.",
                &["provider", "reason"],
            ),
            retried: counter(
                "confab_push_notifications_retried_total",
                "Notification attempts that failed transiently and were scheduled again.",
                &["provider", "reason"],
            ),
            dropped: counter(
                "confab_push_jobs_dropped_total",
                "Push jobs settled without a notification, by reason.",
                &["provider", "reason"],
            ),
            depth: IntGauge::new(
                "confab_push_outbox_depth",
                "Push jobs pending in the outbox.",
            )
            .expect("valid metric"),
            oldest: Gauge::new(
                "confab_push_oldest_job_age_seconds",
                "Age of the oldest pending push job.",
            )
            .expect("valid metric"),
        }
    }

    /// Adds every series to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for c in [
            &self.created,
            &self.sent,
            &self.failed,
            &self.retried,
            &self.dropped,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(self.depth.clone()))?;
        registry.register(Box::new(self.oldest.clone()))
    }

    /// A job entered the worker.
    pub fn created(&self, source: Source, n: u64) {
        self.created.with_label_values(&[source.label()]).inc_by(n);
    }

    /// A notification the provider accepted.
    pub fn sent(&self, provider: &'static str) {
        self.sent.with_label_values(&[provider]).inc();
    }

    /// A notification given up on (`unregistered`, `bad_request`, …).
    pub fn failed(&self, provider: &'static str, reason: &'static str) {
        self.failed.with_label_values(&[provider, reason]).inc();
    }

    /// A notification to be tried again.
    pub fn retried(&self, provider: &'static str, reason: &'static str) {
        self.retried.with_label_values(&[provider, reason]).inc();
    }

    /// `n` jobs settled without a notification; `provider` is `none` when
    /// no device was chosen yet (online, muted, expired, no device).
    pub fn dropped(&self, provider: &'static str, reason: &'static str, n: u64) {
        self.dropped
            .with_label_values(&[provider, reason])
            .inc_by(n);
    }

    /// Pending jobs and the age of the oldest (0 when none).
    pub fn set_depth(&self, depth: u64, oldest_age_ms: u64) {
        self.depth.set(depth as i64);
        self.oldest.set(oldest_age_ms as f64 / 1000.0);
    }
}

impl Default for PushMetrics {
    fn default() -> Self {
        PushMetrics::new()
    }
}
