//! The fsync stage under `SyncPolicy::Batch`, shared by all writers: one WAL
//! fsync covers every group staged before it, whichever writer staged it, and
//! no completion leaves before the fsync that covers it has returned.

use super::shard::{deliver, Routes};
use super::{ProducerLink, WriterStats};
use crate::error::StorageError;
use crate::log::MessageLog;
use crate::model::AppendOutcome;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use tracing::error;

/// A staged group waiting for durability.
pub(super) struct SyncJob {
    pub routes: Routes,
    pub outcomes: Vec<AppendOutcome>,
}

pub(super) fn spawn<L: MessageLog>(
    log: Arc<L>,
    rx: Receiver<SyncJob>,
    links: Arc<[ProducerLink]>,
    stats: Arc<WriterStats>,
) -> Result<JoinHandle<()>, StorageError> {
    thread::Builder::new()
        .name("confab-syncer".into())
        .spawn(move || run(&*log, &rx, &links, &stats))
        .map_err(|e| StorageError::Open(format!("syncer thread: {e}")))
}

fn run<L: MessageLog>(
    log: &L,
    rx: &Receiver<SyncJob>,
    links: &[ProducerLink],
    stats: &WriterStats,
) {
    // Blocks only this thread; exits when every writer has dropped its sender.
    while let Ok(first) = rx.recv() {
        // Everything already handed over was staged before this fsync starts,
        // so one fsync makes all of it durable.
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let started = std::time::Instant::now();
        let synced = log.sync();
        stats.sync_seconds.observe(started.elapsed().as_secs_f64());
        stats.syncs.inc();
        match synced {
            Ok(()) => {
                for job in &jobs {
                    log.publish(&job.outcomes);
                }
                let results = jobs
                    .into_iter()
                    .flat_map(|job| job.routes.into_iter().zip(job.outcomes.into_iter().map(Ok)));
                deliver(links, results);
            }
            Err(err) => {
                error!(%err, "group fsync failed");
                let results = jobs
                    .into_iter()
                    .flat_map(|job| job.routes.into_iter().map(|r| (r, Err(err.clone()))))
                    .collect::<Vec<_>>();
                deliver(links, results.into_iter());
            }
        }
    }
}
