//! A [`MessageLog`] wrapper that can hold the writer inside `stage` (to let
//! requests pile up behind it deterministically), fail a stage, and records the
//! size of every group it was given.

use confab_storage::{
    AppendOutcome, AppendRequest, ChannelId, Cursor, DeviceId, HistoryAnchor, InboxEntry, InboxSeq,
    MessageLog, OutboxEntry, OutboxKey, Page, Seq, StorageError, StoredMessage, SyncPolicy, UserId,
};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
struct State {
    armed: bool,
    entered: bool,
    released: bool,
    fail_next: bool,
    sizes: Vec<usize>,
}

pub struct GatedLog<L> {
    inner: L,
    state: Mutex<State>,
    changed: Condvar,
}

impl<L: MessageLog> GatedLog<L> {
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    /// The next stage blocks until [`release`](Self::release).
    pub fn arm(&self) {
        let mut s = self.state.lock().unwrap();
        s.armed = true;
        s.entered = false;
        s.released = false;
    }

    pub fn wait_entered(&self) {
        let s = self.state.lock().unwrap();
        let (s, timeout) = self
            .changed
            .wait_timeout_while(s, std::time::Duration::from_secs(20), |s| !s.entered)
            .unwrap();
        assert!(
            !timeout.timed_out() && s.entered,
            "writer never reached stage"
        );
    }

    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }

    pub fn fail_next_stage(&self) {
        self.state.lock().unwrap().fail_next = true;
    }

    pub fn stage_sizes(&self) -> Vec<usize> {
        self.state.lock().unwrap().sizes.clone()
    }
}

impl<L: MessageLog> MessageLog for GatedLog<L> {
    fn sync_policy(&self) -> SyncPolicy {
        self.inner.sync_policy()
    }

    fn stage(&self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError> {
        let mut s = self.state.lock().unwrap();
        s.sizes.push(batch.len());
        if std::mem::take(&mut s.fail_next) {
            return Err(StorageError::Engine("injected failure".into()));
        }
        if s.armed {
            s.armed = false;
            s.entered = true;
            self.changed.notify_all();
            let _s = self.changed.wait_while(s, |s| !s.released).unwrap();
        } else {
            drop(s);
        }
        self.inner.stage(batch)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }

    fn publish(&self, outcomes: &[AppendOutcome]) {
        self.inner.publish(outcomes)
    }

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

    fn set_cursor(
        &self,
        user: UserId,
        device: DeviceId,
        cursor: Cursor,
    ) -> Result<(), StorageError> {
        self.inner.set_cursor(user, device, cursor)
    }

    fn cursor(&self, user: UserId, device: DeviceId) -> Result<Cursor, StorageError> {
        self.inner.cursor(user, device)
    }

    fn set_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StorageError> {
        self.inner.set_last_seen(user, at_ms)
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
        self.inner.set_read_up_to(channel, user, seq)
    }

    fn read_marks(&self, channel: ChannelId) -> Result<Vec<(UserId, Seq)>, StorageError> {
        self.inner.read_marks(channel)
    }

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
