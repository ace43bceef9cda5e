//! The worker's exchange with the durable outbox: reloading what a previous
//! run left and writing or deleting jobs in batches. Kept apart because it
//! is the only place the worker blocks on storage.

use tokio::time::Instant;
use tracing::warn;

use super::Worker;
use crate::metrics::Source;

impl Worker {
    /// Loads every job the outbox holds (left by a previous run).
    pub(super) async fn recover(&mut self) -> Result<usize, confab_storage::StorageError> {
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

    /// Writes late jobs and deletes settled ones, each in one batch.
    pub(super) async fn flush(&mut self) {
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
}
