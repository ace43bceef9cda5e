//! The storage writer: threads that take appends off lock-free per-core queues,
//! group-commit them and hand completions back, so a gateway core never blocks
//! on storage.
//!
//! ```text
//!  core 0 ──submit──▶ [ArrayQueue p0→w0] ─┐            ┌─▶ [completions p0] + wake p0
//!  core 1 ──submit──▶ [ArrayQueue p1→w0] ─┼─▶ writer 0 ─┤
//!                                          │   stage()   └─▶ (Batch) syncer: fsync, publish,
//!  core 0 ──submit──▶ [ArrayQueue p0→w1] ─┴─▶ writer 1 ─┘      complete, wake once per group
//! ```
//!
//! Each producer has one bounded queue per writer (single producer, single
//! consumer in practice) and one bounded completion queue. Channels are routed
//! to writers by a hash of the channel id, so one writer owns each channel.
//! See `docs/storage.md` ("Write path").

mod producer;
mod shard;
mod syncer;

pub use producer::{Completion, Producer, SubmitError, SubmitRejection};

use crate::error::StorageError;
use crate::log::MessageLog;
use crate::model::AppendRequest;
use crate::sync_policy::SyncPolicy;
use crossbeam_queue::ArrayQueue;
use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use tracing::info;

/// Called by a writer (or the syncer) after it pushed completions for a
/// producer: once per committed group, never per message. Must not block; a
/// typical implementation writes to the core's eventfd or unparks its thread.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Writer pool settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Number of writer threads (shards); channels are spread over them by hash.
    pub writers: usize,
    /// Capacity of each producer→writer queue.
    pub queue_capacity: usize,
    /// Most requests one producer may have submitted and not yet collected
    /// the completion of; also the capacity of its completion queue, which
    /// therefore can never overflow.
    pub max_in_flight: usize,
    /// Most requests a writer puts in one group commit.
    pub max_group: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            writers: 1,
            queue_capacity: 4096,
            max_in_flight: 16384,
            max_group: 4096,
        }
    }
}

/// The writers' Prometheus series, made unregistered; the node adds them
/// to its registry with [`WriterStats::register`].
#[derive(Debug, Clone)]
pub struct WriterStats {
    /// Group commits staged.
    pub groups: IntCounter,
    /// Requests in those groups (duplicates included).
    pub requests: IntCounter,
    /// WAL fsyncs done by the syncer (each may cover several groups).
    pub syncs: IntCounter,
    /// How long each of those fsyncs took.
    pub sync_seconds: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        WriterStats {
            groups: counter(
                "confab_storage_group_commits_total",
                "Group commits staged by the storage writers.",
            ),
            requests: counter(
                "confab_storage_append_requests_total",
                "Append requests committed by the storage writers (duplicates included).",
            ),
            syncs: counter(
                "confab_storage_wal_syncs_total",
                "WAL fsyncs (each covers one or more group commits).",
            ),
            sync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "confab_storage_fsync_seconds",
                    "Duration of each WAL fsync.",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ]),
            )
            .expect("valid metric"),
        }
    }
}

impl WriterStats {
    /// Adds every series to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.groups.clone()))?;
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.syncs.clone()))?;
        registry.register(Box::new(self.sync_seconds.clone()))
    }
}

/// One request on its way to a writer.
pub(crate) struct Submission {
    pub token: u64,
    pub request: AppendRequest,
}

/// A writer's inbound side, shared with every producer.
pub(crate) struct WriterInbox {
    /// Indexed by producer id.
    pub queues: Vec<ArrayQueue<Submission>>,
    /// Set by the writer just before it parks; a producer that sees it after
    /// pushing unparks the writer (see `shard::run` for the race argument).
    pub sleeping: AtomicBool,
    pub stop: AtomicBool,
    pub thread: OnceLock<Thread>,
}

impl WriterInbox {
    pub(crate) fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// A producer's outbound side, shared with every writer and the syncer.
pub(crate) struct ProducerLink {
    pub completions: ArrayQueue<Completion>,
    pub waker: Waker,
}

/// Which shard owns `channel` among `writers`.
pub fn shard_of(channel: crate::ChannelId, writers: usize) -> usize {
    (crate::id_hash::mix(channel.0) % writers.max(1) as u64) as usize
}

/// The running writer threads (and the fsync stage under
/// [`SyncPolicy::Batch`]). Dropping it stops them after they have committed
/// and completed everything already queued.
pub struct WriterPool<L: MessageLog> {
    log: Arc<L>,
    inboxes: Vec<Arc<WriterInbox>>,
    writers: Vec<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
    /// One clone per live producer.
    alive: Arc<()>,
}

impl<L: MessageLog> WriterPool<L> {
    /// Starts the writers over `log`, with one [`Producer`] per entry of
    /// `wakers` (producer `i` is woken through `wakers[i]`).
    pub fn start(
        log: Arc<L>,
        config: WriterConfig,
        wakers: Vec<Waker>,
    ) -> Result<(Self, Vec<Producer>), StorageError> {
        let writers = config.writers.max(1);
        let capacity = config.queue_capacity.max(1);
        let max_in_flight = config.max_in_flight.max(1);
        let links: Arc<[ProducerLink]> = wakers
            .into_iter()
            .map(|waker| ProducerLink {
                completions: ArrayQueue::new(max_in_flight),
                waker,
            })
            .collect();
        let inboxes: Vec<Arc<WriterInbox>> = (0..writers)
            .map(|_| {
                Arc::new(WriterInbox {
                    queues: (0..links.len())
                        .map(|_| ArrayQueue::new(capacity))
                        .collect(),
                    sleeping: AtomicBool::new(false),
                    stop: AtomicBool::new(false),
                    thread: OnceLock::new(),
                })
            })
            .collect();
        let stats = Arc::new(WriterStats::default());

        let (sync_tx, syncer) = if log.sync_policy() == SyncPolicy::Batch {
            let (tx, rx) = crossbeam_channel::unbounded();
            let handle = syncer::spawn(log.clone(), rx, links.clone(), stats.clone())?;
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };

        let mut handles = Vec::with_capacity(writers);
        for (index, inbox) in inboxes.iter().enumerate() {
            let handle = shard::spawn(shard::Shard {
                index,
                log: log.clone(),
                inbox: inbox.clone(),
                links: links.clone(),
                sync_tx: sync_tx.clone(),
                max_group: config.max_group.max(1),
                stats: stats.clone(),
            })?;
            let _ = inbox.thread.set(handle.thread().clone());
            handles.push(handle);
        }
        // The writers hold the only senders now, so the syncer exits once the
        // last writer has.
        drop(sync_tx);

        let alive = Arc::new(());
        let producers = links
            .iter()
            .enumerate()
            .map(|(id, _)| {
                Producer::new(
                    id,
                    inboxes.clone(),
                    links.clone(),
                    max_in_flight,
                    alive.clone(),
                )
            })
            .collect();
        info!(writers, producers = links.len(), policy = %log.sync_policy(), "storage writers started");
        Ok((
            Self {
                log,
                inboxes,
                writers: handles,
                syncer,
                stats,
                alive,
            },
            producers,
        ))
    }

    /// The log the writers commit to (for reads).
    pub fn log(&self) -> &Arc<L> {
        &self.log
    }

    /// Commit counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// A shared handle on the commit counters, for readers that outlive a
    /// borrow of the pool (a metrics endpoint).
    pub fn stats_handle(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Producers not yet dropped. A node stops its writers once this is
    /// zero: every core that could submit is gone, so everything accepted
    /// gets committed (and fsynced under `sync = "batch"`).
    pub fn producers_alive(&self) -> usize {
        Arc::strong_count(&self.alive) - 1
    }

    /// Stops the writers after they drain their queues, then the syncer after
    /// it completes what they handed it. Requests submitted concurrently with
    /// shutdown may be rejected as closed or dropped uncompleted; stop the
    /// producers first.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for inbox in &self.inboxes {
            inbox.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = inbox.thread.get() {
                thread.unpark();
            }
        }
        for handle in self.writers.drain(..) {
            let _ = handle.join();
        }
        if let Some(handle) = self.syncer.take() {
            let _ = handle.join();
        }
    }
}

impl<L: MessageLog> Drop for WriterPool<L> {
    fn drop(&mut self) {
        self.stop();
    }
}
