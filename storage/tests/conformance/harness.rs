//! How the suite opens and reopens each engine, plus the per-case fixture.

use confab_storage::{LogConfig, ManualClock, MemoryLog, MessageLog, RocksLog, SyncPolicy};
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

/// An engine under test.
pub trait Engine {
    type Log: MessageLog;
    fn open(dir: &Path, config: LogConfig) -> Self::Log;
    /// Closes and reopens. An in-memory engine has nothing to reopen from, so
    /// it keeps the same instance: the case then checks in-process behaviour.
    fn reopen(log: Self::Log, dir: &Path, config: LogConfig) -> Self::Log;
}

pub struct Memory;
pub struct Rocks;

impl Engine for Memory {
    type Log = MemoryLog;
    fn open(_: &Path, config: LogConfig) -> MemoryLog {
        MemoryLog::new(config)
    }
    fn reopen(log: MemoryLog, _: &Path, _: LogConfig) -> MemoryLog {
        log
    }
}

impl Engine for Rocks {
    type Log = RocksLog;
    fn open(dir: &Path, config: LogConfig) -> RocksLog {
        RocksLog::open(dir, config).expect("open RocksLog")
    }
    fn reopen(log: RocksLog, dir: &Path, config: LogConfig) -> RocksLog {
        drop(log);
        RocksLog::open(dir, config).expect("reopen RocksLog")
    }
}

/// A log in a fresh directory with a hand-driven clock.
pub struct Fixture<E: Engine> {
    pub log: E::Log,
    pub clock: Arc<ManualClock>,
    pub config: LogConfig,
    dir: TempDir,
}

pub const START_MS: u64 = 1_700_000_000_000;

impl<E: Engine> Fixture<E> {
    pub fn new() -> Self {
        Self::with_window(confab_storage::DEFAULT_IDEMPOTENCY_WINDOW_MS)
    }

    pub fn with_window(idempotency_window_ms: u64) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let config = LogConfig {
            sync_policy: SyncPolicy::Batch,
            idempotency_window_ms,
            clock: clock.clone(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let log = E::open(dir.path(), config.clone());
        Self {
            log,
            clock,
            config,
            dir,
        }
    }

    pub fn reopen(self) -> Self {
        let Self {
            log,
            clock,
            config,
            dir,
        } = self;
        let log = E::reopen(log, dir.path(), config.clone());
        Self {
            log,
            clock,
            config,
            dir,
        }
    }
}
