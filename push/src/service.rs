//! The gateway-facing half of the push service: answers the cores'
//! "should a job ride this message?" from the shared [`OnlineSet`] and
//! forwards what they find at delivery to the worker over an unbounded
//! channel (a core never waits on push).

use std::sync::Arc;

use confab_storage::{OutboxEntry, OutboxKey};
use tokio::sync::mpsc;

use super::metrics::{PushMetrics, Source};
use super::online::OnlineSet;

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

/// The gateway-facing handle of a node running the push worker. Every
/// method is called on a gateway core and returns at once.
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

    /// Whether a job for `user` should ride a message's storage batch now:
    /// no device of theirs is connected to any core.
    pub fn wants_job(&self, user: u64) -> bool {
        !self.online.contains(user)
    }

    /// `user`'s first device connected (`true`) or last one left
    /// (`false`) on one core.
    pub fn device_presence(&self, user: u64, online: bool) {
        self.online.update(user, online);
        if online {
            // A stopped worker has nothing left to cancel.
            let _ = self.tx.send(Event::Online(user));
        }
    }

    /// A stored message reached a member with no device connected:
    /// notify them. `durable`: the outbox already holds the job (written
    /// with the message); otherwise the member went offline between submit
    /// and delivery and the worker stores it first.
    pub fn member_offline(&self, entry: OutboxEntry, durable: bool) {
        let source = if durable {
            Source::Message
        } else {
            Source::Late
        };
        self.metrics.created(source, 1);
        let _ = self.tx.send(Event::Job(entry, durable));
    }

    /// A job written with a message found its member online after all:
    /// settle it unsent.
    pub fn member_online_after_all(&self, key: OutboxKey) {
        let _ = self.tx.send(Event::Settle(key));
    }
}
