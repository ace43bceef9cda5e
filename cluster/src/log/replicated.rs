//! [`ReplicatedLog`]: the node's [`MessageLog`] in a cluster. A group of
//! sends is appended to the `CONFAB_LOG` stream (replicated by JetStream)
//! before anything is assigned to it; every node, this one included,
//! applies the stream in order to its own RocksDB, where sequences are
//! assigned. Since the assignment is a function of the store's state and
//! the record alone, every node assigns the same channel and inbox
//! sequences to the same message, and a node that dies takes nothing with
//! it that the stream does not hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use confab_storage::{
    AppendOutcome, AppendRequest, ChannelId, Cursor, DeviceId, HistoryAnchor, InboxEntry, InboxSeq,
    ManualClock, MessageLog, OutboxEntry, OutboxKey, Page, Seq, StorageError, StoredMessage,
    SyncPolicy, UserId,
};
use tokio::sync::mpsc;

use super::publish;
use super::record::{encode_appends, Mark};

/// The stream every node appends to and applies.
pub const LOG_STREAM: &str = "CONFAB_LOG";
/// Its one subject.
pub const LOG_SUBJECT: &str = "confab.log";

/// Largest record published: groups with more text are split (NATS's
/// default `max_payload` is 1 MiB; a single text of up to 1 MiB goes alone
/// and needs the servers' `max_payload` raised, as `scripts/cluster.sh`
/// does).
pub(crate) const MAX_RECORD_BYTES: usize = 512 * 1024;

/// Called with each message this node did not submit itself (or gave up
/// waiting on), once applied: the gateway delivers it to the devices of
/// its recipients connected here.
pub type ForeignSink = Box<dyn Fn(StoredMessage, &[(UserId, InboxSeq)]) + Send + Sync>;

/// What the applier hands a waiting publisher: its group's outcomes.
pub(crate) type GroupResult = Result<Vec<AppendOutcome>, StorageError>;

/// What publishing and applying share.
pub(crate) struct Shared {
    /// Groups this node published and waits on, by group number.
    pub waiting: Mutex<HashMap<u64, Option<GroupResult>>>,
    pub done: Condvar,
    /// The last stream sequence applied.
    pub applied: AtomicU64,
    /// The highest stream sequence the stream acknowledged to this node:
    /// beyond `applied` for long, the applier's consumer is stuck.
    pub acked: AtomicU64,
    /// Set when the applier stopped for good (a record that does not
    /// decode, a store that fails): the node must not acknowledge more.
    pub failed: OnceLock<String>,
    pub foreign: OnceLock<ForeignSink>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            waiting: Mutex::new(HashMap::new()),
            done: Condvar::new(),
            applied: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: OnceLock::new(),
            foreign: OnceLock::new(),
        }
    }

    /// Hands a group's outcome to its waiting publisher; false when nobody
    /// waits on it (another node's, or given up on).
    pub(crate) fn complete(&self, group: u64, result: GroupResult) -> Result<(), GroupResult> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match waiting.get_mut(&group) {
            Some(slot) => {
                *slot = Some(result);
                drop(waiting);
                self.done.notify_all();
                Ok(())
            }
            None => Err(result),
        }
    }

    pub(crate) fn fail(&self, why: String) {
        let _ = self.failed.set(why);
        self.done.notify_all();
    }
}

/// The replicated log over a local store `L` (RocksDB in the node).
pub struct ReplicatedLog<L: MessageLog> {
    pub(crate) inner: Arc<L>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) js: jetstream::Context,
    pub(crate) runtime: tokio::runtime::Handle,
    /// This node's hashed id, in every record it publishes.
    pub(crate) origin: u64,
    pub(crate) next_group: AtomicU64,
    pub(crate) marks: mpsc::UnboundedSender<Mark>,
    /// How long a send waits for the stream and then for its application.
    pub(crate) ack_timeout: Duration,
    /// Kept so that the store's clock is the record's, never this node's.
    pub(crate) _clock: Arc<ManualClock>,
    /// Owns the runtime the publisher and the applier run on.
    pub(crate) _runtime_owner: RuntimeOwner,
}

/// Shuts the log's runtime down without waiting when the log is dropped
/// (dropping a runtime inside another one's task would panic).
pub(crate) struct RuntimeOwner(pub Option<tokio::runtime::Runtime>);

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl<L: MessageLog> ReplicatedLog<L> {
    /// Where messages of other nodes go once applied here. Set once, when
    /// the gateway is up; before that nothing is connected to deliver to.
    pub fn on_foreign(&self, sink: ForeignSink) {
        let _ = self.shared.foreign.set(sink);
    }

    /// The last stream sequence this node applied.
    pub fn applied(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// The local store.
    pub fn local(&self) -> &Arc<L> {
        &self.inner
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> StorageError {
        StorageError::Unavailable(what.to_string())
    }

    /// Publishes one record of `requests` and waits until this node applied
    /// it. On a timeout the group is forgotten: if the stream did take it,
    /// the applier delivers it like another node's, and the client's retry
    /// with the same `client_msg_id` is answered as a duplicate.
    fn append_group(&self, requests: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError> {
        if let Some(why) = self.shared.failed.get() {
            return Err(self.unavailable(why));
        }
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        let payload = encode_appends(self.origin, group, confab_types::now_ms(), requests);
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, None);
        let deadline = Instant::now() + self.ack_timeout;
        let js = self.js.clone();
        let id = format!("g{:x}-{group}", self.origin);
        let acked = self
            .runtime
            .block_on(async move { publish::append(&js, &id, &payload, deadline.into()).await });
        let result = match acked {
            Ok(seq) => {
                self.shared.acked.fetch_max(seq, Ordering::AcqRel);
                self.wait_applied(group, deadline)
            }
            Err(e) => Err(self.unavailable(format!("appending to {LOG_STREAM}: {e}"))),
        };
        if result.is_err() {
            self.shared
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&group);
        }
        result
    }

    fn wait_applied(
        &self,
        group: u64,
        deadline: Instant,
    ) -> Result<Vec<AppendOutcome>, StorageError> {
        let mut waiting = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(slot) = waiting.get_mut(&group) {
                if let Some(result) = slot.take() {
                    waiting.remove(&group);
                    return result;
                }
            }
            if let Some(why) = self.shared.failed.get() {
                return Err(self.unavailable(why));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.unavailable("stored in the stream but not yet applied here"));
            }
            waiting = self
                .shared
                .done
                .wait_timeout(waiting, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn mark(&self, mark: Mark) {
        // The publisher task only stops with the log.
        let _ = self.marks.send(mark);
    }
}

/// Splits `batch` into runs whose texts stay under the record limit (a
/// text above it goes alone).
fn runs(batch: &[AppendRequest]) -> impl Iterator<Item = &[AppendRequest]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= batch.len() {
            return None;
        }
        let mut end = start;
        let mut bytes = 0;
        while end < batch.len() {
            let size = batch[end].text.len() + 64 + 8 * batch[end].recipients.len();
            if end > start && bytes + size > MAX_RECORD_BYTES {
                break;
            }
            bytes += size;
            end += 1;
        }
        let run = &batch[start..end];
        start = end;
        Some(run)
    })
}

impl<L: MessageLog> MessageLog for ReplicatedLog<L> {
    /// An acknowledged send is in the replicated stream: nothing local
    /// needs syncing first, so the writers complete as soon as `stage`
    /// returns.
    fn sync_policy(&self) -> SyncPolicy {
        SyncPolicy::None
    }

    fn stage(&self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError> {
        for req in batch {
            req.validate()?;
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for run in runs(batch) {
            outcomes.extend(self.append_group(run)?);
        }
        Ok(outcomes)
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The applier already made what it applied visible.
    fn publish(&self, _outcomes: &[AppendOutcome]) {}

    fn channel_history(
        &self,
        channel: ChannelId,
        anchor: HistoryAnchor,
        limit: usize,
    ) -> Result<Page<StoredMessage>, StorageError> {
        self.inner.channel_history(channel, anchor, limit)
    }

    fn inbox(
        &self,
        user: UserId,
        after: InboxSeq,
        limit: usize,
    ) -> Result<Page<InboxEntry>, StorageError> {
        self.inner.inbox(user, after, limit)
    }

    fn last_channel_seq(&self, channel: ChannelId) -> Result<Seq, StorageError> {
        self.inner.last_channel_seq(channel)
    }

    fn last_inbox_seq(&self, user: UserId) -> Result<InboxSeq, StorageError> {
        self.inner.last_inbox_seq(user)
    }

    /// Applied here at once, and on every node when its record is.
    fn set_cursor(
        &self,
        user: UserId,
        device: DeviceId,
        cursor: Cursor,
    ) -> Result<(), StorageError> {
        self.inner.set_cursor(user, device, cursor)?;
        self.mark(Mark::Cursor {
            user,
            device,
            cursor,
        });
        Ok(())
    }

    fn cursor(&self, user: UserId, device: DeviceId) -> Result<Cursor, StorageError> {
        self.inner.cursor(user, device)
    }

    fn set_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StorageError> {
        self.inner.set_last_seen(user, at_ms)?;
        self.mark(Mark::LastSeen { user, at_ms });
        Ok(())
    }

    fn last_seen(&self, user: UserId) -> Result<Option<u64>, StorageError> {
        self.inner.last_seen(user)
    }

    fn set_read_up_to(
        &self,
        channel: ChannelId,
        user: UserId,
        seq: Seq,
    ) -> Result<(), StorageError> {
        self.inner.set_read_up_to(channel, user, seq)?;
        self.mark(Mark::Read { channel, user, seq });
        Ok(())
    }

    fn read_marks(&self, channel: ChannelId) -> Result<Vec<(UserId, Seq)>, StorageError> {
        self.inner.read_marks(channel)
    }

    /// Push jobs stay with the node that took the send (every node
    /// applying them would push each one once per node).
    fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StorageError> {
        self.inner.outbox_put(entries)
    }

    fn outbox_remove(&self, keys: &[OutboxKey]) -> Result<(), StorageError> {
        self.inner.outbox_remove(keys)
    }

    fn outbox_scan(
        &self,
        after: Option<OutboxKey>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        self.inner.outbox_scan(after, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_storage::Text;

    fn req(len: usize) -> AppendRequest {
        AppendRequest {
            channel: ChannelId(1),
            sender: UserId(1),
            device: DeviceId(1),
            client_msg_id: 1,
            recipients: vec![UserId(1), UserId(2)],
            text: Text::from("x".repeat(len)),
            push_to: Vec::new(),
        }
    }

    #[test]
    fn groups_split_under_the_record_limit_and_big_texts_go_alone() {
        let batch = vec![
            req(10),
            req(10),
            req(400_000),
            req(400_000),
            req(900_000),
            req(5),
        ];
        let lens: Vec<usize> = runs(&batch).map(<[_]>::len).collect();
        assert_eq!(lens, vec![3, 1, 1, 1]);
        assert_eq!(lens.iter().sum::<usize>(), batch.len());
        assert_eq!(runs(&[]).count(), 0);
    }
}
