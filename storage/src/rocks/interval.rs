//! Background WAL fsync for [`crate::SyncPolicy::Interval`]: acknowledgements
//! do not wait for it, so it bounds (rather than removes) what a power loss can
//! take.

use rocksdb::DB;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tracing::error;

pub(crate) struct IntervalSyncer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl IntervalSyncer {
    pub(crate) fn start(
        db: Arc<DB>,
        every: Duration,
        poisoned: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = thread::Builder::new()
            .name("confab-wal-sync".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Acquire) {
                    thread::park_timeout(every);
                    if let Err(err) = db.flush_wal(true) {
                        // Same rule as a failed group fsync: the WAL state is
                        // unknown, so stop accepting writes.
                        error!(%err, "interval WAL sync failed; poisoning the log");
                        poisoned.store(true, Ordering::Release);
                        return;
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for IntervalSyncer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}
