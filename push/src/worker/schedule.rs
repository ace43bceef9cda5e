//! When groups are attempted and what follows an attempt: starting due
//! groups within the concurrency bound, expiring jobs past their maximum
//! age, and the retry policy (backoff with a provider's floor) after a
//! transient failure.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use confab_storage::{OutboxEntry, OutboxKey, Seq};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::debug;

use super::attempt::attempt_group;
use super::{Attempt, Finished, GroupKey, Verdict, Worker};
use crate::backoff;
use confab_types::now_ms;

impl Worker {
    pub(super) fn start_due(
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

    pub(super) fn on_finished(&mut self, f: Finished) {
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

    pub(super) fn retry_later(&mut self, key: GroupKey, floor: Option<Duration>) {
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
