//! The push service's Prometheus series. Jobs (one per member and message)
//! are counted when created and when dropped unsent; notifications (one per
//! device and collapsed group) when sent, failed or retried, by provider and
//! reason. Updated by the one worker task and read at scrape time, so a
//! plain mutex over small maps costs nothing on any message path; the
//! counter the gateway cores bump is an atomic.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// Counters and gauges of the push service.
#[derive(Default)]
pub struct PushMetrics {
    created: [AtomicU64; 3],
    by_label: Mutex<Labelled>,
    depth: AtomicU64,
    oldest_ms: AtomicU64,
}

#[derive(Default)]
struct Labelled {
    sent: BTreeMap<&'static str, u64>,
    failed: BTreeMap<(&'static str, &'static str), u64>,
    retried: BTreeMap<(&'static str, &'static str), u64>,
    dropped: BTreeMap<(&'static str, &'static str), u64>,
}

impl PushMetrics {
    /// A job entered the worker.
    pub fn created(&self, source: Source, n: u64) {
        self.created[source as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn with(&self, f: impl FnOnce(&mut Labelled)) {
        // A panic elsewhere must not stop the counting.
        let mut l = self.by_label.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut l);
    }

    /// A notification the provider accepted.
    pub fn sent(&self, provider: &'static str) {
        self.with(|l| *l.sent.entry(provider).or_default() += 1);
    }

    /// A notification given up on (`unregistered`, `bad_request`, …).
    pub fn failed(&self, provider: &'static str, reason: &'static str) {
        self.with(|l| *l.failed.entry((provider, reason)).or_default() += 1);
    }

    /// A notification to be tried again.
    pub fn retried(&self, provider: &'static str, reason: &'static str) {
        self.with(|l| *l.retried.entry((provider, reason)).or_default() += 1);
    }

    /// `n` jobs settled without a notification; `provider` is `none` when
    /// no device was chosen yet (online, muted, expired, no device).
    pub fn dropped(&self, provider: &'static str, reason: &'static str, n: u64) {
        self.with(|l| *l.dropped.entry((provider, reason)).or_default() += n);
    }

    /// Pending jobs and the age of the oldest (0 when none).
    pub fn set_depth(&self, depth: u64, oldest_age_ms: u64) {
        self.depth.store(depth, Ordering::Relaxed);
        self.oldest_ms.store(oldest_age_ms, Ordering::Relaxed);
    }

    /// Appends the series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        head(
            out,
            "confab_push_jobs_created_total",
            "counter",
            "Push jobs (member x message) that reached the push worker, by source.",
        );
        for (i, source) in ["message", "late", "recovered"].iter().enumerate() {
            let v = self.created[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "confab_push_jobs_created_total{{source=\"{source}\"}} {v}"
            );
        }
        let l = self.by_label.lock().unwrap_or_else(|e| e.into_inner());
        head(
            out,
            "confab_push_notifications_sent_total",
            "counter",
            "Notifications a provider accepted.",
        );
        for (p, v) in &l.sent {
            let _ = writeln!(
                out,
                "confab_push_notifications_sent_total{{provider=\"{p}\"}} {v}"
            );
        }
        for (name, help, map) in [
            (
                "confab_push_notifications_failed_total",
                "Notifications given up on, by provider and reason.",
                &l.failed,
            ),
            (
                "confab_push_notifications_retried_total",
                "Notification attempts that failed transiently and were scheduled again.",
                &l.retried,
            ),
            (
                "confab_push_jobs_dropped_total",
                "Push jobs settled without a notification, by reason.",
                &l.dropped,
            ),
        ] {
            head(out, name, "counter", help);
            for ((p, r), v) in map {
                let _ = writeln!(out, "{name}{{provider=\"{p}\",reason=\"{r}\"}} {v}");
            }
        }
        drop(l);
        head(
            out,
            "confab_push_outbox_depth",
            "gauge",
            "Push jobs pending in the outbox.",
        );
        let _ = writeln!(
            out,
            "confab_push_outbox_depth {}",
            self.depth.load(Ordering::Relaxed)
        );
        head(
            out,
            "confab_push_oldest_job_age_seconds",
            "gauge",
            "Age of the oldest pending push job.",
        );
        let _ = writeln!(
            out,
            "confab_push_oldest_job_age_seconds {}",
            self.oldest_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
}
