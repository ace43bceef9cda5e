//! One writer thread: drain its queues, stage the group as one write batch,
//! then either complete it (sync policies `none`/`interval`) or hand it to the
//! syncer (`batch`) and go straight on to the next group.

use super::syncer::SyncJob;
use super::{ProducerLink, WriterInbox, WriterStats};
use crate::error::StorageError;
use crate::log::MessageLog;
use crate::model::AppendRequest;
use crossbeam_channel::Sender;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use tracing::{debug, error};

pub(super) struct Shard<L> {
    pub index: usize,
    pub log: Arc<L>,
    pub inbox: Arc<WriterInbox>,
    pub links: Arc<[ProducerLink]>,
    pub sync_tx: Option<Sender<SyncJob>>,
    pub max_group: usize,
    pub stats: Arc<WriterStats>,
}

pub(super) fn spawn<L: MessageLog>(shard: Shard<L>) -> Result<JoinHandle<()>, StorageError> {
    thread::Builder::new()
        .name(format!("confab-writer-{}", shard.index))
        .spawn(move || shard.run())
        .map_err(|e| StorageError::Open(format!("writer thread: {e}")))
}

/// Who gets each result of a group: (producer, token) in request order.
pub(super) type Routes = Vec<(usize, u64)>;

impl<L: MessageLog> Shard<L> {
    fn run(self) {
        let mut routes: Routes = Vec::new();
        let mut requests: Vec<AppendRequest> = Vec::new();
        let mut start = 0;
        loop {
            self.drain(&mut start, &mut routes, &mut requests);
            if requests.is_empty() {
                if self.inbox.stop.load(Ordering::SeqCst) {
                    // Producers were told to stop first; one more drain above
                    // found nothing, so nothing is left uncompleted.
                    break;
                }
                // Lost-wake-up argument: we publish `sleeping` and then look at
                // the queues; a producer pushes and then looks at `sleeping`.
                // With SeqCst on both sides at least one of us sees the other,
                // and an unpark that lands before park() makes park() return.
                self.inbox.sleeping.store(true, Ordering::SeqCst);
                if self.queues_empty() && !self.inbox.stop.load(Ordering::SeqCst) {
                    thread::park();
                }
                self.inbox.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            self.commit(std::mem::take(&mut routes), &mut requests);
        }
        debug!(writer = self.index, "writer stopped");
    }

    fn queues_empty(&self) -> bool {
        self.inbox.queues.iter().all(|q| q.is_empty())
    }

    /// Round-robin over producers, starting one further each time so a busy
    /// producer cannot starve the others when groups hit `max_group`.
    fn drain(&self, start: &mut usize, routes: &mut Routes, requests: &mut Vec<AppendRequest>) {
        let queues = &self.inbox.queues;
        let n = queues.len();
        for k in 0..n {
            let producer = (*start + k) % n;
            while requests.len() < self.max_group {
                match queues[producer].pop() {
                    Some(sub) => {
                        routes.push((producer, sub.token));
                        requests.push(sub.request);
                    }
                    None => break,
                }
            }
        }
        *start = (*start + 1) % n.max(1);
    }

    fn commit(&self, routes: Routes, requests: &mut Vec<AppendRequest>) {
        self.stats.groups.inc();
        self.stats.requests.inc_by(requests.len() as u64);
        let staged = self.log.stage(requests);
        requests.clear();
        match (staged, &self.sync_tx) {
            (Ok(outcomes), Some(tx)) => {
                // Pipelining: the fsync runs on the syncer thread while this
                // one drains and stages the next group.
                if let Err(returned) = tx.send(SyncJob { routes, outcomes }) {
                    error!(writer = self.index, "syncer gone; failing group");
                    let job = returned.into_inner();
                    let failed = job
                        .routes
                        .into_iter()
                        .map(|r| (r, Err(StorageError::Poisoned)));
                    deliver(&self.links, failed);
                }
            }
            (Ok(outcomes), None) => {
                self.log.publish(&outcomes);
                deliver(
                    &self.links,
                    routes.into_iter().zip(outcomes.into_iter().map(Ok)),
                );
            }
            (Err(err), _) => {
                error!(writer = self.index, %err, "group commit failed");
                deliver(
                    &self.links,
                    routes.into_iter().map(|r| (r, Err(err.clone()))),
                );
            }
        }
    }
}

/// Pushes each result onto its producer's completion queue, then wakes every
/// producer that got at least one: one wake per producer per call.
pub(super) fn deliver(
    links: &[ProducerLink],
    results: impl Iterator<
        Item = (
            (usize, u64),
            Result<crate::model::AppendOutcome, StorageError>,
        ),
    >,
) {
    let mut touched = vec![false; links.len()];
    for ((producer, token), result) in results {
        let completion = super::Completion { token, result };
        // Cannot fail: a producer never has more than max_in_flight
        // uncollected completions and the queue holds exactly that many.
        if links[producer].completions.push(completion).is_err() {
            error!(
                producer,
                token, "completion queue overflow; completion dropped"
            );
        }
        touched[producer] = true;
    }
    for (link, touched) in links.iter().zip(touched) {
        if touched {
            (link.waker)();
        }
    }
}
