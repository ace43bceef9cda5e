//! The push worker: one task that owns every pending job. Jobs are grouped
//! per (member, channel); a group waits `collapse_ms` for more before one
//! notification carrying the count goes to each of the member's devices.
//! Transient failures are retried with backoff and jitter until the oldest
//! job of the group is `max_age_secs` old; a settled group's jobs are
//! deleted from the outbox. On start the worker reloads the outbox, so a
//! restart (or a crash) delays pending pushes but loses none.
//!
//! The loop and the state it owns live here; the grouping of jobs
//! (`groups`), when groups are attempted and retried (`schedule`), the
//! outbox reads and writes (`outbox`) and one round of sends (`attempt`)
//! each have their own file.

mod attempt;
mod groups;
mod outbox;
mod schedule;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use confab_storage::{MessageLog, OutboxEntry, OutboxKey, Seq};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::metrics::PushMetrics;
use super::online::OnlineSet;
use super::provider::Provider;
use super::service::Event;
use confab_directory::store::{Platform, Store};
use confab_types::now_ms;

/// The worker's pacing, from `[push]`.
#[derive(Debug, Clone)]
pub(super) struct Pacing {
    pub collapse: Duration,
    pub max_age_ms: u64,
    pub concurrency: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// What an attempt needs, shared with its task.
pub(super) struct Ctx {
    pub store: Store,
    pub log: Arc<dyn MessageLog>,
    pub providers: HashMap<Platform, Arc<dyn Provider>>,
    pub metrics: Arc<PushMetrics>,
    /// Bounds sends in flight over all groups.
    pub permits: Semaphore,
    pub include_preview: bool,
}

type GroupKey = (u64, u64);

struct Group {
    /// Pending jobs by channel sequence.
    entries: BTreeMap<Seq, OutboxEntry>,
    due: Instant,
    /// Failed attempts of the current content.
    attempt: u32,
    /// Devices already notified of the current content (a retry goes only
    /// to the others).
    done: HashSet<u64>,
    in_flight: bool,
}

/// One notification round of a group.
struct Attempt {
    user: u64,
    channel: u64,
    newest: OutboxEntry,
    count: u32,
    skip: HashSet<u64>,
}

enum Verdict {
    /// Settled without a notification (`muted`, `no_device`).
    Dropped(&'static str),
    /// Every device was tried.
    Tried {
        /// Devices that need no further attempt (sent, dead, refused).
        done: Vec<u64>,
        /// Whether any device accepted.
        sent: bool,
        /// Some device failed transiently: retry no sooner than this floor.
        retry: Option<Option<Duration>>,
    },
}

struct Finished {
    key: GroupKey,
    /// The sequences the notification covered.
    covered: Vec<Seq>,
    verdict: Verdict,
}

pub(super) struct Worker {
    pub pacing: Pacing,
    pub ctx: Arc<Ctx>,
    pub online: Arc<OnlineSet>,
    pub rx: mpsc::UnboundedReceiver<Event>,
    groups: BTreeMap<GroupKey, Group>,
    /// Groups not in flight, by when they are due.
    schedule: BTreeSet<(Instant, GroupKey)>,
    /// Messages already notified per (user, channel) since the user was
    /// last online: the count grows across notifications, not per burst.
    badges: BTreeMap<GroupKey, (u32, u64)>,
    in_flight: usize,
    pending_jobs: usize,
    late: Vec<OutboxEntry>,
    settled: Vec<OutboxKey>,
}

impl Worker {
    pub(super) fn new(
        pacing: Pacing,
        ctx: Arc<Ctx>,
        online: Arc<OnlineSet>,
        rx: mpsc::UnboundedReceiver<Event>,
    ) -> Self {
        Self {
            pacing,
            ctx,
            online,
            rx,
            groups: BTreeMap::new(),
            schedule: BTreeSet::new(),
            badges: BTreeMap::new(),
            in_flight: 0,
            pending_jobs: 0,
            late: Vec::new(),
            settled: Vec::new(),
        }
    }

    fn metrics(&self) -> &PushMetrics {
        &self.ctx.metrics
    }

    /// Runs until `stop` turns true or every sender is gone.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        match self.recover().await {
            Ok(0) => {}
            Ok(n) => info!(jobs = n, "push outbox recovered"),
            Err(e) => {
                warn!(error = %e, "reading the push outbox failed; pending jobs wait for a restart")
            }
        }
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, GroupKey> = HashMap::new();
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.flush().await;
            self.start_due(&mut tasks, &mut running);
            let next = self.schedule.first().map(|(t, _)| *t);
            let wake = async move {
                match next {
                    // Groups wait for a free slot, not a busy loop.
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let at_capacity = self.in_flight >= self.pacing.concurrency;
            tokio::select! {
                event = self.rx.recv() => {
                    let Some(event) = event else { break };
                    self.on_event(event);
                    // Drain what else is queued so one flush covers it.
                    for _ in 0..4096 {
                        match self.rx.try_recv() {
                            Ok(event) => self.on_event(event),
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    match done {
                        Ok((id, finished)) => {
                            running.remove(&id);
                            self.on_finished(finished);
                        }
                        Err(e) => {
                            warn!(error = %e, "a push attempt failed to run");
                            if let Some(key) = running.remove(&e.id()) {
                                self.in_flight -= 1;
                                self.retry_later(key, None);
                            }
                        }
                    }
                }
                _ = wake, if !at_capacity => {}
                _ = gauges.tick() => self.refresh_gauges(),
                _ = stop.changed() => break,
            }
        }
        self.flush().await;
        tasks.shutdown().await;
        debug!("push worker stopped");
    }

    fn refresh_gauges(&mut self) {
        let now = now_ms();
        let oldest = self
            .groups
            .values()
            .filter_map(|g| g.entries.values().next())
            .map(|e| e.timestamp_ms)
            .min()
            .map_or(0, |t| now.saturating_sub(t));
        self.metrics().set_depth(self.pending_jobs as u64, oldest);
        // Counts of users who stayed away longer than a job may wait are
        // forgotten; their next notification counts from zero.
        let max_age = self.pacing.max_age_ms;
        self.badges
            .retain(|_, (_, touched)| now.saturating_sub(*touched) <= max_age);
    }
}
