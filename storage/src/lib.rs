//! confab's message store: the write-optimised log behind chat history.
//!
//! Chat history is kept forever and written far more often than it is read, so
//! the crate is shaped around the write path:
//!
//! * [`MessageLog`] is the storage trait (no RocksDB types in it), implemented by
//!   [`RocksLog`] for production and [`MemoryLog`] as the reference model that the
//!   conformance suite holds both to.
//! * [`writer::WriterPool`] runs the storage writer threads that drain lock-free
//!   per-core queues, group-commit everything they drained in one write batch and
//!   hand completions back through per-producer lock-free queues.
//!
//! The byte-level layout, column-family tuning, durability policy and the
//! multi-writer inbox ordering argument are written up in `docs/storage.md`.

mod clock;
mod codec;
mod error;
mod id_hash;
mod log;
mod memory;
mod model;
mod rocks;
mod sync_policy;
mod watermark;
pub mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, Text, UserId};
pub use error::{InvalidRequest, ParseSyncPolicyError, StorageError};
pub use log::{LogConfig, MessageLog, DEFAULT_IDEMPOTENCY_WINDOW_MS};
pub use memory::MemoryLog;
pub use model::{
    AppendOutcome, AppendRequest, Cursor, HistoryAnchor, InboxEntry, OutboxEntry, OutboxKey, Page,
    MAX_PAGE_LIMIT, MAX_RECIPIENTS, MAX_TEXT_BYTES,
};
pub use rocks::{cf, RocksLog};
pub use sync_policy::SyncPolicy;
