//! The gateway-facing half of the push service: answers the cores'
//! "should a job ride this message?" from the shared [`OnlineSet`] and
//! forwards what they find at delivery to the worker over an unbounded
//! channel (a core never waits on push).

use std::sync::Arc;

use confab_storage::{ChannelId, OutboxEntry, OutboxKey, UserId};
use tokio::sync::mpsc;

use super::metrics::{PushMetrics, Source};
use super::online::OnlineSet;
use crate::gateway::{Found, PushJob, PushSink};

/// What the cores tell the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// A job to notify; `durable` when the outbox already holds it.
    Job(OutboxEntry, bool),
    /// A job written at submit whose member turned out to be online.
    Settle(OutboxKey),
    /// A user's first device connected: pending jobs are moot.
    Online(u64),
}

/// [`PushSink`] of a node running the push worker.
pub struct PushService {
    pub(super) online: Arc<OnlineSet>,
    pub(super) tx: mpsc::UnboundedSender<Event>,
    pub(super) metrics: Arc<PushMetrics>,
}

impl PushService {
    /// The service's metrics.
    pub fn metrics(&self) -> Arc<PushMetrics> {
        self.metrics.clone()
    }
}

impl PushSink for PushService {
    fn wants_job(&self, user: u64) -> bool {
        !self.online.contains(user)
    }

    fn presence(&self, user: u64, online: bool) {
        self.online.update(user, online);
        if online {
            // A stopped worker has nothing left to cancel.
            let _ = self.tx.send(Event::Online(user));
        }
    }

    fn delivered(&self, job: PushJob, found: Found) {
        let entry = OutboxEntry {
            key: OutboxKey {
                user: UserId(job.user),
                channel: ChannelId(job.channel),
                seq: job.seq,
            },
            inbox_seq: job.inbox_seq,
            sender: UserId(job.sender),
            timestamp_ms: job.timestamp_ms,
        };
        let event = match found {
            Found::Offline { durable } => {
                let source = if durable {
                    Source::Message
                } else {
                    Source::Late
                };
                self.metrics.created(source, 1);
                Event::Job(entry, durable)
            }
            Found::OnlineAfterAll => Event::Settle(entry.key),
        };
        let _ = self.tx.send(event);
    }
}
