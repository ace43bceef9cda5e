//! The storage trait every engine implements, so the writer, the gateway and
//! the conformance suite never name an engine (tikv `engine_traits` style).

use crate::clock::{Clock, SystemClock};
use crate::error::StorageError;
use crate::model::{
    AppendOutcome, AppendRequest, Cursor, HistoryAnchor, InboxEntry, OutboxEntry, OutboxKey, Page,
};
use crate::sync_policy::SyncPolicy;
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, UserId};
use std::fmt;
use std::sync::Arc;

/// Default idempotency window: a retry within 24 hours of the first send is
/// answered with the first result.
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// Settings shared by every engine.
#[derive(Clone)]
pub struct LogConfig {
    /// When the WAL is fsynced relative to acknowledgements.
    pub sync_policy: SyncPolicy,
    /// How long an idempotency entry deduplicates retries.
    pub idempotency_window_ms: u64,
    /// Source of commit timestamps and of "now" for idempotency expiry.
    pub clock: Arc<dyn Clock>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            sync_policy: SyncPolicy::default(),
            idempotency_window_ms: DEFAULT_IDEMPOTENCY_WINDOW_MS,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConfig")
            .field("sync_policy", &self.sync_policy)
            .field("idempotency_window_ms", &self.idempotency_window_ms)
            .finish_non_exhaustive()
    }
}

/// The message store.
///
/// Writes go through three steps so that a writer thread can pipeline them:
/// [`stage`](Self::stage) assigns sequences and writes a group atomically
/// (not yet durable, not yet visible to readers), [`sync`](Self::sync) makes
/// everything staged so far durable, [`publish`](Self::publish) makes a
/// group visible to readers. [`append`](Self::append) does all three per
/// the configured [`SyncPolicy`] and is what direct callers use.
///
/// Concurrency contract: `stage` may be called from several threads at once
/// (the writer pool runs one per shard); sequences stay gapless per channel and
/// per user, and each user's staged inbox entries always form a prefix
/// `1..=n`, whatever interleaving happens. Reads never wait for a write.
pub trait MessageLog: Send + Sync + 'static {
    /// The durability policy this log was opened with.
    fn sync_policy(&self) -> SyncPolicy;

    /// Assigns channel and inbox sequences to `batch` and writes it as one
    /// atomic unit. Retries (across batches and within this one) are detected
    /// and stored nothing. Results are in request order. The writes are not
    /// visible to readers until [`publish`](Self::publish)ed.
    fn stage(&self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError>;

    /// Makes every write staged before this call durable (fsync of the WAL).
    fn sync(&self) -> Result<(), StorageError>;

    /// Makes staged outcomes visible to readers. Under [`SyncPolicy::Batch`]
    /// call it only after a [`sync`](Self::sync) that started after the
    /// outcomes were staged, so readers never see what a crash could lose.
    fn publish(&self, outcomes: &[AppendOutcome]);

    /// Stages, syncs (under [`SyncPolicy::Batch`]) and publishes `batch`.
    fn append(&self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError> {
        let outcomes = self.stage(batch)?;
        if self.sync_policy() == SyncPolicy::Batch {
            self.sync()?;
        }
        self.publish(&outcomes);
        Ok(outcomes)
    }

    /// A page of a channel's messages around `anchor`, at most `limit`
    /// (clamped to [`crate::MAX_PAGE_LIMIT`]), ascending.
    fn channel_history(
        &self,
        channel: ChannelId,
        anchor: HistoryAnchor,
        limit: usize,
    ) -> Result<Page<StoredMessage>, StorageError>;

    /// A user's inbox entries with inbox seq above `after`, resolved to the
    /// messages, at most `limit` (clamped to [`crate::MAX_PAGE_LIMIT`]).
    fn inbox(
        &self,
        user: UserId,
        after: InboxSeq,
        limit: usize,
    ) -> Result<Page<InboxEntry>, StorageError>;

    /// Highest visible sequence of a channel (0 when empty).
    fn last_channel_seq(&self, channel: ChannelId) -> Result<Seq, StorageError>;

    /// Highest visible inbox seq of a user (0 when empty).
    fn last_inbox_seq(&self, user: UserId) -> Result<InboxSeq, StorageError>;

    /// Records a device's cursor. Each field only moves forward: a stale or
    /// reordered update never rewinds it.
    fn set_cursor(
        &self,
        user: UserId,
        device: DeviceId,
        cursor: Cursor,
    ) -> Result<(), StorageError>;

    /// A device's cursor (zeros for a device never recorded).
    fn cursor(&self, user: UserId, device: DeviceId) -> Result<Cursor, StorageError>;

    /// Records when a user was last seen (ms since the epoch); only moves forward.
    fn set_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StorageError>;

    /// When a user was last seen, if ever.
    fn last_seen(&self, user: UserId) -> Result<Option<u64>, StorageError>;

    /// Records that `user` read `channel` up to channel sequence `seq`; the
    /// mark only moves forward.
    fn set_read_up_to(
        &self,
        channel: ChannelId,
        user: UserId,
        seq: Seq,
    ) -> Result<(), StorageError>;

    /// Every read mark of a channel, by user id.
    fn read_marks(&self, channel: ChannelId) -> Result<Vec<(UserId, Seq)>, StorageError>;

    /// Adds push jobs decided after their message was stored (a member who
    /// went offline between submit and delivery). Durable under
    /// [`SyncPolicy::Batch`] when this returns; an existing job is
    /// overwritten with the same value.
    fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StorageError>;

    /// Removes settled push jobs (sent, dropped or given up on); absent
    /// keys are ignored.
    fn outbox_remove(&self, keys: &[OutboxKey]) -> Result<(), StorageError>;

    /// Pending push jobs in key order (user, channel, seq), starting after
    /// `after` (from the first when `None`), at most `limit` (clamped to
    /// [`crate::MAX_PAGE_LIMIT`]). Jobs staged but not yet published may
    /// show; the push worker reads the outbox only when it starts.
    fn outbox_scan(
        &self,
        after: Option<OutboxKey>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StorageError>;
}
