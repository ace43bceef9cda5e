//! In-memory engine: the reference model the conformance suite checks RocksLog
//! against, and a test double for code built on [`MessageLog`]. One mutex
//! guards everything; it is a model of the semantics, not of the performance.

use crate::codec::{expired, IdempotencyRecord};
use crate::error::StorageError;
use crate::log::{LogConfig, MessageLog};
use crate::model::{
    AppendOutcome, AppendRequest, Cursor, HistoryAnchor, InboxEntry, OutboxEntry, OutboxKey, Page,
    MAX_PAGE_LIMIT,
};
use crate::sync_policy::SyncPolicy;
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, UserId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

type IdemKey = (UserId, DeviceId, u64);

#[derive(Default)]
struct State {
    /// Index `seq - 1`; gapless by construction.
    channels: HashMap<ChannelId, Vec<StoredMessage>>,
    /// Index `inbox_seq - 1`.
    inboxes: HashMap<UserId, Vec<(ChannelId, u64)>>,
    idempotency: HashMap<IdemKey, IdempotencyRecord>,
    /// Insertion order of idempotency entries, so expired ones are dropped from
    /// the front instead of by scanning (this is what bounds the map).
    idempotency_order: VecDeque<(u64, IdemKey)>,
    visible_channel: HashMap<ChannelId, u64>,
    visible_inbox: HashMap<UserId, u64>,
    cursors: HashMap<(UserId, DeviceId), Cursor>,
    receipts: std::collections::BTreeMap<(ChannelId, UserId), Seq>,
    last_seen: HashMap<UserId, u64>,
    outbox: std::collections::BTreeMap<OutboxKey, OutboxEntry>,
}

/// [`MessageLog`] kept in process memory.
pub struct MemoryLog {
    config: LogConfig,
    state: Mutex<State>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new(config: LogConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// Idempotency entries currently held (expired ones are dropped on the
    /// next append), so tests can check the bound.
    pub fn idempotency_entries(&self) -> usize {
        self.lock().map(|s| s.idempotency.len()).unwrap_or(0)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        // A panic mid-append may have left counters half-advanced; refusing
        // further use is the only safe answer.
        self.state.lock().map_err(|_| StorageError::Poisoned)
    }
}

impl MessageLog for MemoryLog {
    fn sync_policy(&self) -> SyncPolicy {
        self.config.sync_policy
    }

    fn stage(&self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError> {
        for req in batch {
            req.validate()?;
        }
        let now = self.config.clock.now_ms();
        let window = self.config.idempotency_window_ms;
        let mut state = self.lock()?;
        let state = &mut *state;

        while let Some(&(ts, key)) = state.idempotency_order.front() {
            if !expired(ts, now, window) {
                break;
            }
            state.idempotency_order.pop_front();
            // The key may have been re-stored since; only drop the entry this
            // queue slot describes.
            if state
                .idempotency
                .get(&key)
                .is_some_and(|r| r.timestamp_ms == ts)
            {
                state.idempotency.remove(&key);
            }
        }

        let mut outcomes = Vec::with_capacity(batch.len());
        for req in batch {
            let key = (req.sender, req.device, req.client_msg_id);
            if let Some(rec) = state
                .idempotency
                .get(&key)
                .filter(|r| !r.expired(now, window))
            {
                outcomes.push(AppendOutcome {
                    channel: rec.channel,
                    seq: Seq(rec.seq),
                    timestamp_ms: rec.timestamp_ms,
                    inbox: Vec::new(),
                    sender_inbox_seq: InboxSeq(rec.sender_inbox_seq),
                    duplicate: true,
                });
                continue;
            }
            let log = state.channels.entry(req.channel).or_default();
            let seq = log.len() as u64 + 1;
            // Never let a channel's timestamps go backwards across a clock step.
            let timestamp_ms = log.last().map_or(now, |m| m.timestamp_ms.max(now));
            log.push(StoredMessage {
                channel: req.channel,
                seq: Seq(seq),
                sender: req.sender,
                device: req.device,
                client_msg_id: req.client_msg_id,
                timestamp_ms,
                text: req.text.clone(),
            });
            let recipients = req.unique_recipients();
            let mut inbox = Vec::with_capacity(recipients.len());
            for &user in recipients.iter() {
                let entries = state.inboxes.entry(user).or_default();
                entries.push((req.channel, seq));
                inbox.push((user, InboxSeq(entries.len() as u64)));
            }
            let sender_inbox_seq = crate::model::sender_seq(&inbox, req.sender);
            for entry in crate::model::push_jobs(req, Seq(seq), &inbox, timestamp_ms) {
                state.outbox.insert(entry.key, entry);
            }
            let rec = IdempotencyRecord {
                channel: req.channel,
                seq,
                timestamp_ms,
                sender_inbox_seq: sender_inbox_seq.into(),
            };
            state.idempotency.insert(key, rec);
            state.idempotency_order.push_back((timestamp_ms, key));
            outcomes.push(AppendOutcome {
                channel: req.channel,
                seq: Seq(seq),
                timestamp_ms,
                inbox,
                sender_inbox_seq,
                duplicate: false,
            });
        }
        Ok(outcomes)
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn publish(&self, outcomes: &[AppendOutcome]) {
        let Ok(mut state) = self.lock() else { return };
        for outcome in outcomes.iter().filter(|o| !o.duplicate) {
            let v = state.visible_channel.entry(outcome.channel).or_default();
            *v = (*v).max(outcome.seq.into());
            for &(user, inbox_seq) in &outcome.inbox {
                let v = state.visible_inbox.entry(user).or_default();
                *v = (*v).max(inbox_seq.into());
            }
        }
    }

    fn channel_history(
        &self,
        channel: ChannelId,
        anchor: HistoryAnchor,
        limit: usize,
    ) -> Result<Page<StoredMessage>, StorageError> {
        let limit = limit.min(MAX_PAGE_LIMIT);
        let state = self.lock()?;
        let visible = state.visible_channel.get(&channel).copied().unwrap_or(0);
        let log = state
            .channels
            .get(&channel)
            .map_or(&[][..], |l| &l[..visible as usize]);
        let (from, to, has_more) = match anchor {
            HistoryAnchor::Latest | HistoryAnchor::Before(_) => {
                let end = match anchor {
                    HistoryAnchor::Before(seq) => (seq.0.saturating_sub(1) as usize).min(log.len()),
                    _ => log.len(),
                };
                let start = end.saturating_sub(limit);
                (start, end, start > 0)
            }
            HistoryAnchor::After(seq) => {
                let start = (seq.0 as usize).min(log.len());
                let end = start.saturating_add(limit).min(log.len());
                (start, end, end < log.len())
            }
        };
        Ok(Page {
            items: log[from..to].to_vec(),
            has_more,
        })
    }

    fn inbox(
        &self,
        user: UserId,
        after: InboxSeq,
        limit: usize,
    ) -> Result<Page<InboxEntry>, StorageError> {
        let after = after.0;
        let limit = limit.min(MAX_PAGE_LIMIT);
        let state = self.lock()?;
        let visible = state.visible_inbox.get(&user).copied().unwrap_or(0) as usize;
        let entries = state.inboxes.get(&user).map_or(&[][..], |e| &e[..visible]);
        let start = (after.min(entries.len() as u64)) as usize;
        let end = start.saturating_add(limit).min(entries.len());
        let mut items = Vec::with_capacity(end - start);
        for (i, &(channel, seq)) in entries[start..end].iter().enumerate() {
            let message = state
                .channels
                .get(&channel)
                .and_then(|log| log.get(seq as usize - 1))
                .cloned()
                .ok_or_else(|| StorageError::Corrupt {
                    what: "inbox pointer",
                    detail: format!("points at missing {channel}/{seq}"),
                })?;
            items.push(InboxEntry {
                inbox_seq: InboxSeq((start + i) as u64 + 1),
                message,
            });
        }
        Ok(Page {
            items,
            has_more: end < entries.len(),
        })
    }

    fn last_channel_seq(&self, channel: ChannelId) -> Result<Seq, StorageError> {
        Ok(self
            .lock()?
            .visible_channel
            .get(&channel)
            .copied()
            .map_or(Seq::ZERO, Seq))
    }

    fn last_inbox_seq(&self, user: UserId) -> Result<InboxSeq, StorageError> {
        Ok(InboxSeq(
            self.lock()?.visible_inbox.get(&user).copied().unwrap_or(0),
        ))
    }

    fn set_cursor(
        &self,
        user: UserId,
        device: DeviceId,
        cursor: Cursor,
    ) -> Result<(), StorageError> {
        let mut state = self.lock()?;
        let stored = state.cursors.entry((user, device)).or_default();
        stored.delivered = stored.delivered.max(cursor.delivered);
        stored.read = stored.read.max(cursor.read);
        Ok(())
    }

    fn cursor(&self, user: UserId, device: DeviceId) -> Result<Cursor, StorageError> {
        Ok(self
            .lock()?
            .cursors
            .get(&(user, device))
            .copied()
            .unwrap_or_default())
    }

    fn set_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StorageError> {
        let mut state = self.lock()?;
        let stored = state.last_seen.entry(user).or_default();
        *stored = (*stored).max(at_ms);
        Ok(())
    }

    fn last_seen(&self, user: UserId) -> Result<Option<u64>, StorageError> {
        Ok(self.lock()?.last_seen.get(&user).copied())
    }

    fn set_read_up_to(
        &self,
        channel: ChannelId,
        user: UserId,
        seq: Seq,
    ) -> Result<(), StorageError> {
        let mut state = self.lock()?;
        let mark = state.receipts.entry((channel, user)).or_default();
        *mark = (*mark).max(seq);
        Ok(())
    }

    fn read_marks(&self, channel: ChannelId) -> Result<Vec<(UserId, Seq)>, StorageError> {
        Ok(self
            .lock()?
            .receipts
            .range((channel, UserId(0))..=(channel, UserId(u64::MAX)))
            .map(|((_, u), s)| (*u, *s))
            .collect())
    }

    fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StorageError> {
        let mut state = self.lock()?;
        for entry in entries {
            state.outbox.insert(entry.key, *entry);
        }
        Ok(())
    }

    fn outbox_remove(&self, keys: &[OutboxKey]) -> Result<(), StorageError> {
        let mut state = self.lock()?;
        for key in keys {
            state.outbox.remove(key);
        }
        Ok(())
    }

    fn outbox_scan(
        &self,
        after: Option<OutboxKey>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        use std::ops::Bound;
        let state = self.lock()?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(state
            .outbox
            .range((start, Bound::Unbounded))
            .take(limit.min(MAX_PAGE_LIMIT))
            .map(|(_, e)| *e)
            .collect())
    }
}
