//! The push worker: one task that owns every pending job. Jobs are grouped
//! per (member, channel); a group waits `collapse_ms` for more before one
//! notification carrying the count goes to each of the member's devices.
//! Transient failures are retried with backoff and jitter until the oldest
//! job of the group is `max_age_secs` old; a settled group's jobs are
//! deleted from the outbox. On start the worker reloads the outbox, so a
//! restart (or a crash) delays pending pushes but loses none.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use confab_storage::{ChannelId, HistoryAnchor, MessageLog, OutboxEntry, OutboxKey, Seq};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::backoff;
use super::metrics::{PushMetrics, Source};
use super::online::OnlineSet;
use super::provider::{Notification, Outcome, Preview, Provider, PREVIEW_CHARS};
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

    /// Loads every job the outbox holds (left by a previous run).
    async fn recover(&mut self) -> Result<usize, confab_storage::StorageError> {
        let mut after = None;
        let mut total = 0;
        loop {
            let log = self.ctx.log.clone();
            let page = tokio::task::spawn_blocking(move || log.outbox_scan(after, 1000))
                .await
                .map_err(|e| confab_storage::StorageError::Engine(e.to_string()))??;
            let Some(last) = page.last() else { break };
            after = Some(last.key);
            total += page.len();
            let now = Instant::now();
            for entry in page {
                self.add(entry, now);
            }
        }
        self.metrics().created(Source::Recovered, total as u64);
        self.refresh_gauges();
        Ok(total)
    }

    fn add(&mut self, entry: OutboxEntry, due: Instant) {
        let key = (entry.key.user.0, entry.key.channel.0);
        match self.groups.get_mut(&key) {
            Some(group) => {
                if group.entries.insert(entry.key.seq, entry).is_none() {
                    self.pending_jobs += 1;
                    // New content: every device hears the new count, even
                    // one that got the previous one.
                    group.done.clear();
                }
            }
            None => {
                let mut entries = BTreeMap::new();
                entries.insert(entry.key.seq, entry);
                self.pending_jobs += 1;
                self.groups.insert(
                    key,
                    Group {
                        entries,
                        due,
                        attempt: 0,
                        done: HashSet::new(),
                        in_flight: false,
                    },
                );
                self.schedule.insert((due, key));
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Job(entry, durable) => {
                if !durable {
                    self.late.push(entry);
                }
                self.add(entry, Instant::now() + self.pacing.collapse);
            }
            Event::Settle(key) => {
                self.settled.push(key);
                let gk = (key.user.0, key.channel.0);
                if let Some(group) = self.groups.get_mut(&gk) {
                    if group.entries.remove(&key.seq).is_some() {
                        self.pending_jobs -= 1;
                        self.ctx.metrics.dropped("none", "online", 1);
                    }
                    if group.entries.is_empty() && !group.in_flight {
                        self.remove_group(gk);
                    }
                }
            }
            Event::Online(user) => self.user_online(user),
        }
    }

    /// A device of `user` connected: it syncs everything pending, so the
    /// jobs are settled unsent and the counts start again from zero.
    fn user_online(&mut self, user: u64) {
        let keys: Vec<GroupKey> = self
            .groups
            .range((user, 0)..=(user, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.drop_group(key, "online");
        }
        let badges: Vec<GroupKey> = self
            .badges
            .range((user, 0)..=(user, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in badges {
            self.badges.remove(&key);
        }
    }

    fn remove_group(&mut self, key: GroupKey) -> Option<Group> {
        let group = self.groups.remove(&key)?;
        self.schedule.remove(&(group.due, key));
        Some(group)
    }

    /// Settles every job of a group without a notification. An attempt in
    /// flight finds its group gone and only settles what it covered.
    fn drop_group(&mut self, key: GroupKey, reason: &'static str) {
        let Some(group) = self.remove_group(key) else {
            return;
        };
        if group.in_flight {
            // Its result still arrives and must not count as a free slot
            // twice: keep an empty placeholder until then.
            self.groups.insert(
                key,
                Group {
                    entries: BTreeMap::new(),
                    due: group.due,
                    attempt: 0,
                    done: HashSet::new(),
                    in_flight: true,
                },
            );
        }
        let n = group.entries.len();
        self.pending_jobs -= n;
        self.metrics().dropped("none", reason, n as u64);
        self.settled.extend(group.entries.values().map(|e| e.key));
    }

    /// Writes late jobs and deletes settled ones, each in one batch.
    async fn flush(&mut self) {
        if !self.late.is_empty() {
            let late = std::mem::take(&mut self.late);
            let log = self.ctx.log.clone();
            match tokio::task::spawn_blocking(move || log.outbox_put(&late)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "could not store late push jobs; they are kept in memory")
                }
                Err(e) => warn!(error = %e, "storing late push jobs panicked"),
            }
        }
        if !self.settled.is_empty() {
            let settled = std::mem::take(&mut self.settled);
            let log = self.ctx.log.clone();
            match tokio::task::spawn_blocking(move || log.outbox_remove(&settled)).await {
                Ok(Ok(())) => {}
                // The jobs come back on the next start; a device then gets
                // the same collapsed notification once more.
                Ok(Err(e)) => warn!(error = %e, "could not delete settled push jobs"),
                Err(e) => warn!(error = %e, "deleting settled push jobs panicked"),
            }
        }
    }

    fn start_due(
        &mut self,
        tasks: &mut JoinSet<Finished>,
        running: &mut HashMap<tokio::task::Id, GroupKey>,
    ) {
        let now = Instant::now();
        let now_ms = now_ms();
        while self.in_flight < self.pacing.concurrency {
            let Some(&(due, key)) = self.schedule.first() else {
                break;
            };
            if due > now {
                break;
            }
            self.schedule.remove(&(due, key));
            if self.online.contains(key.0) {
                self.drop_group(key, "online");
                continue;
            }
            let max_age = self.pacing.max_age_ms;
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let expired: Vec<Seq> = group
                .entries
                .values()
                .filter(|e| now_ms.saturating_sub(e.timestamp_ms) > max_age)
                .map(|e| e.key.seq)
                .collect();
            settle(&mut group.entries, &expired, &mut self.settled);
            if !expired.is_empty() {
                self.pending_jobs -= expired.len();
                self.ctx
                    .metrics
                    .dropped("none", "expired", expired.len() as u64);
            }
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let Some((_, &newest)) = group.entries.last_key_value() else {
                self.groups.remove(&key);
                continue;
            };
            let notified = self.badges.get(&key).map_or(0, |b| b.0);
            let attempt = Attempt {
                user: key.0,
                channel: key.1,
                newest,
                count: notified.saturating_add(group.entries.len() as u32),
                skip: group.done.clone(),
            };
            let covered: Vec<Seq> = group.entries.keys().copied().collect();
            group.in_flight = true;
            self.in_flight += 1;
            let ctx = self.ctx.clone();
            let handle = tasks.spawn(async move {
                let verdict = attempt_group(&ctx, attempt).await;
                Finished {
                    key,
                    covered,
                    verdict,
                }
            });
            running.insert(handle.id(), key);
        }
    }

    fn on_finished(&mut self, f: Finished) {
        self.in_flight -= 1;
        let key = f.key;
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        group.in_flight = false;
        match f.verdict {
            Verdict::Dropped(reason) => {
                let n = settle(&mut group.entries, &f.covered, &mut self.settled);
                self.pending_jobs -= n;
                self.ctx.metrics.dropped("none", reason, n as u64);
            }
            Verdict::Tried { done, sent, retry } => {
                group.done.extend(done);
                if let Some(floor) = retry {
                    if !group.entries.is_empty() {
                        group.attempt += 1;
                        self.retry_later(key, floor);
                        return;
                    }
                }
                let n = settle(&mut group.entries, &f.covered, &mut self.settled);
                self.pending_jobs -= n;
                if sent {
                    let badge = self.badges.entry(key).or_insert((0, 0));
                    badge.0 = badge.0.saturating_add(n as u32);
                    badge.1 = now_ms();
                }
            }
        }
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        if group.entries.is_empty() {
            self.groups.remove(&key);
        } else {
            // Messages that arrived during the attempt: a fresh round.
            group.attempt = 0;
            group.done.clear();
            group.due = Instant::now() + self.pacing.collapse;
            self.schedule.insert((group.due, key));
        }
    }

    fn retry_later(&mut self, key: GroupKey, floor: Option<Duration>) {
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        group.in_flight = false;
        let delay = backoff::delay(
            self.pacing.retry_base,
            self.pacing.retry_max,
            group.attempt.max(1),
            floor,
        );
        group.due = Instant::now() + delay;
        self.schedule.insert((group.due, key));
        debug!(
            user = key.0,
            channel = key.1,
            attempt = group.attempt,
            ?delay,
            "push retry scheduled"
        );
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

/// Takes `seqs` out of a group's pending jobs and queues their outbox
/// deletion; returns how many were still pending (an `Online` event may
/// have settled some meanwhile).
fn settle(
    entries: &mut BTreeMap<Seq, OutboxEntry>,
    seqs: &[Seq],
    settled: &mut Vec<OutboxKey>,
) -> usize {
    let before = settled.len();
    settled.extend(
        seqs.iter()
            .filter_map(|seq| entries.remove(seq))
            .map(|e| e.key),
    );
    settled.len() - before
}

/// One notification round: devices, mute check, then each device through
/// its provider.
async fn attempt_group(ctx: &Ctx, a: Attempt) -> Verdict {
    let store_retry = |e: confab_directory::store::StoreError| {
        warn!(error = %e, "push: directory lookup failed; retrying");
        Verdict::Tried {
            done: Vec::new(),
            sent: false,
            retry: Some(None),
        }
    };
    // Devices first: most users of a busy node have none registered, and
    // then the mute lookup is saved.
    let devices = match ctx.store.devices(a.user).await {
        Ok(d) => d,
        Err(e) => return store_retry(e),
    };
    let devices: Vec<_> = devices
        .into_iter()
        .filter(|d| d.push_invalid_at.is_none())
        .collect();
    if devices.is_empty() {
        return Verdict::Dropped("no_device");
    }
    match ctx.store.is_muted(a.channel, a.user).await {
        Ok(true) => return Verdict::Dropped("muted"),
        Ok(false) => {}
        Err(e) => return store_retry(e),
    }
    let preview = if ctx.include_preview {
        preview(ctx, &a.newest).await
    } else {
        None
    };
    let n = Notification {
        user: a.user,
        channel: a.channel,
        seq: a.newest.key.seq.0,
        count: a.count,
        sender: a.newest.sender.0,
        timestamp_ms: a.newest.timestamp_ms,
        collapse_id: format!("confab-{}", a.channel),
        preview,
    };
    let mut done = Vec::new();
    let mut sent = false;
    let mut retry: Option<Option<Duration>> = None;
    for device in devices.iter().filter(|d| !a.skip.contains(&d.id)) {
        let Some(provider) = ctx.providers.get(&device.platform) else {
            ctx.metrics
                .dropped(device.platform.as_str(), "no_provider", 1);
            done.push(device.id);
            continue;
        };
        let name = provider.name();
        let outcome = {
            let Ok(_permit) = ctx.permits.acquire().await else {
                break;
            };
            provider.send(&device.push_token, &n).await
        };
        match outcome {
            Outcome::Sent => {
                ctx.metrics.sent(name);
                sent = true;
                done.push(device.id);
            }
            Outcome::Unregistered => {
                ctx.metrics.failed(name, "unregistered");
                done.push(device.id);
                match ctx
                    .store
                    .mark_push_token_dead(device.platform, &device.push_token)
                    .await
                {
                    Ok(_) => info!(
                        user = a.user,
                        device = device.id,
                        provider = name,
                        "push token is dead; device marked"
                    ),
                    Err(e) => warn!(error = %e, "could not mark a dead push token"),
                }
            }
            Outcome::Rejected { reason, detail } => {
                ctx.metrics.failed(name, reason);
                warn!(user = a.user, device = device.id, provider = name, reason, %detail, "push rejected");
                done.push(device.id);
            }
            Outcome::Retry { after, reason } => {
                ctx.metrics.retried(name, reason);
                debug!(
                    user = a.user,
                    device = device.id,
                    provider = name,
                    reason,
                    "push failed transiently"
                );
                let floor = match (retry.flatten(), after) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                retry = Some(floor);
            }
        }
    }
    Verdict::Tried { done, sent, retry }
}

/// The newest message's sender name and the start of its text.
async fn preview(ctx: &Ctx, newest: &OutboxEntry) -> Option<Preview> {
    let log = ctx.log.clone();
    let (channel, seq) = (newest.key.channel, newest.key.seq);
    let page = tokio::task::spawn_blocking(move || {
        log.channel_history(ChannelId(channel.0), HistoryAnchor::After(seq.prev()), 1)
    })
    .await
    .ok()?
    .ok()?;
    let message = page.items.into_iter().next()?;
    let body: String = message.text.chars().take(PREVIEW_CHARS).collect();
    let title = match ctx.store.user(newest.sender.0).await {
        Ok(Some(u)) => u.display_name,
        _ => String::new(),
    };
    Some(Preview { title, body })
}
