//! RocksDB engine: [`RocksLog`] opens the column families of [`cf`] and
//! implements [`MessageLog`] on them. Staging (sequence assignment and the
//! group write) and reads live in their own files.

pub mod cf;
mod counters;
mod interval;
mod outbox;
mod read;
mod stage;

use crate::error::StorageError;
use crate::id_hash::{id_map, IdMap};
use crate::log::{LogConfig, MessageLog};
use crate::model::{
    AppendOutcome, AppendRequest, Cursor, HistoryAnchor, InboxEntry, OutboxEntry, OutboxKey, Page,
};
use crate::sync_policy::SyncPolicy;
use crate::watermark::Watermarks;
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, UserId};
use counters::Counters;
use interval::IntervalSyncer;
use rocksdb::{ColumnFamily, WriteOptions, DB};
use smallvec::SmallVec;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{error, info};

/// [`MessageLog`] on RocksDB.
pub struct RocksLog {
    // Held only for its Drop, which stops the sync thread. Declared before
    // `db` so that happens before the database is closed.
    _interval_sync: Option<IntervalSyncer>,
    db: Arc<DB>,
    config: LogConfig,
    counters: Counters,
    channel_marks: Watermarks,
    inbox_marks: Watermarks,
    poisoned: Arc<AtomicBool>,
    /// Made once: every write of the log uses the same options.
    unsynced: WriteOptions,
}

impl RocksLog {
    /// Opens (creating if missing) the log at `path`. Sequence counters are
    /// not rebuilt here: each channel's and user's counter is loaded from the
    /// last key of its prefix the first time it is written, so opening takes
    /// the same time whatever the history size.
    pub fn open(path: impl AsRef<Path>, config: LogConfig) -> Result<Self, StorageError> {
        let path = path.as_ref();
        let db = DB::open_cf_descriptors(&cf::db_options(), path, cf::descriptors(&config))
            .map_err(|e| StorageError::Open(format!("{}: {}", path.display(), e.into_string())))?;
        let db = Arc::new(db);
        let poisoned = Arc::new(AtomicBool::new(false));
        let interval = match config.sync_policy.interval() {
            Some(every) => Some(
                IntervalSyncer::start(db.clone(), every, poisoned.clone())
                    .map_err(|e| StorageError::Open(format!("WAL sync thread: {e}")))?,
            ),
            None => None,
        };
        info!(path = %path.display(), policy = %config.sync_policy, "opened message log");
        Ok(Self {
            _interval_sync: interval,
            db,
            config,
            counters: Counters::new(),
            channel_marks: Watermarks::new(),
            inbox_marks: Watermarks::new(),
            poisoned,
            unsynced: unsynced(),
        })
    }

    /// Writes a consistent copy of the log into `dir` (which must not
    /// exist), while it keeps serving: a RocksDB checkpoint, whose table
    /// files are hard links where `dir` is on the same filesystem. Every
    /// write that landed before the call is in it, synced or not.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        self.check_poisoned()?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Flushes memtables and compacts every column family. Expired idempotency
    /// entries are dropped here (and in background compactions); meant for
    /// maintenance tooling and tests.
    pub fn compact(&self) -> Result<(), StorageError> {
        for name in cf::ALL {
            let handle = self.cf(name)?;
            self.db.flush_cf(handle)?;
            self.db
                .compact_range_cf(handle, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// RocksDB's estimate of the keys in column family `name` (one of
    /// [`cf::ALL`]), for metrics.
    pub fn estimate_keys(&self, name: &str) -> Result<u64, StorageError> {
        let handle = self.cf(name)?;
        Ok(self
            .db
            .property_int_value_cf(handle, "rocksdb.estimate-num-keys")?
            .unwrap_or(0))
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Open(format!("column family {name} missing")))
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    fn poison(&self, what: &str, err: &rocksdb::Error) {
        error!(%err, what, "write path failed; poisoning the log");
        self.poisoned.store(true, Ordering::Release);
    }
}

/// Most messages, and most inbox entries, of a group published without
/// collapsing.
const SMALL_PUBLISH: usize = 8;

/// Writes never fsync inline: [`MessageLog::sync`] does it once per group so a
/// stripe lock is never held across an fsync.
fn unsynced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(false);
    opts
}

impl MessageLog for RocksLog {
    fn sync_policy(&self) -> SyncPolicy {
        self.config.sync_policy
    }

    fn stage(&self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StorageError> {
        self.stage_batch(batch)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.db.flush_wal(true).map_err(|err| {
            self.poison("WAL fsync", &err);
            StorageError::from(err)
        })
    }

    fn publish(&self, outcomes: &[AppendOutcome]) {
        // A small group (a message or a few to a few users: every group at
        // a modest rate) raises its marks as they are, on the stack: raising
        // keeps the maximum, so a key named twice needs no collapsing.
        let entries: usize = outcomes.iter().map(|o| o.inbox.len()).sum();
        if outcomes.len() <= SMALL_PUBLISH && entries <= SMALL_PUBLISH {
            let live = || outcomes.iter().filter(|o| !o.duplicate);
            let channels: SmallVec<[(u64, u64); SMALL_PUBLISH]> =
                live().map(|o| (o.channel.0, o.seq.into())).collect();
            let users: SmallVec<[(u64, u64); SMALL_PUBLISH]> = live()
                .flat_map(|o| o.inbox.iter().map(|&(user, seq)| (user.0, seq.into())))
                .collect();
            self.channel_marks.raise_all(&channels);
            self.inbox_marks.raise_all(&users);
            return;
        }
        // Collapse to one max per key first: a group of 1024 messages to a
        // 100-member channel touches 100 users, not 102,400 entries.
        let mut channels: IdMap<u64, u64> = id_map(outcomes.len());
        let mut users: IdMap<u64, u64> = id_map(entries.min(4 * 1024));
        // A duplicate names an older message whose own group publishes it.
        for outcome in outcomes.iter().filter(|o| !o.duplicate) {
            let v = channels.entry(outcome.channel.0).or_default();
            *v = (*v).max(outcome.seq.into());
            for &(user, seq) in &outcome.inbox {
                let v = users.entry(user.0).or_default();
                *v = (*v).max(seq.into());
            }
        }
        let channels: Vec<(u64, u64)> = channels.into_iter().collect();
        let users: Vec<(u64, u64)> = users.into_iter().collect();
        self.channel_marks.raise_all(&channels);
        self.inbox_marks.raise_all(&users);
    }

    fn channel_history(
        &self,
        channel: ChannelId,
        anchor: HistoryAnchor,
        limit: usize,
    ) -> Result<Page<StoredMessage>, StorageError> {
        self.read_history(channel, anchor, limit)
    }

    fn inbox(
        &self,
        user: UserId,
        after: InboxSeq,
        limit: usize,
    ) -> Result<Page<InboxEntry>, StorageError> {
        let after = after.0;
        self.read_inbox(user, after, limit)
    }

    fn last_channel_seq(&self, channel: ChannelId) -> Result<Seq, StorageError> {
        self.visible_last(cf::MESSAGES, &self.channel_marks, channel.0)
            .map(Seq)
    }

    fn last_inbox_seq(&self, user: UserId) -> Result<InboxSeq, StorageError> {
        self.visible_last(cf::INBOX, &self.inbox_marks, user.0)
            .map(InboxSeq)
    }

    fn set_cursor(
        &self,
        user: UserId,
        device: DeviceId,
        cursor: Cursor,
    ) -> Result<(), StorageError> {
        let key = crate::codec::cursor_key(user, device);
        let value = crate::codec::encode_cursor(cursor);
        self.db
            .merge_cf_opt(self.cf(cf::CURSORS)?, key, value, &self.unsynced)?;
        Ok(())
    }

    fn cursor(&self, user: UserId, device: DeviceId) -> Result<Cursor, StorageError> {
        let key = crate::codec::cursor_key(user, device);
        match self.db.get_pinned_cf(self.cf(cf::CURSORS)?, key)? {
            Some(value) => crate::codec::decode_cursor(&value),
            None => Ok(Cursor::default()),
        }
    }

    fn set_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StorageError> {
        let key = crate::codec::presence_key(user);
        self.db.merge_cf_opt(
            self.cf(cf::PRESENCE)?,
            key,
            at_ms.to_be_bytes(),
            &self.unsynced,
        )?;
        Ok(())
    }

    fn last_seen(&self, user: UserId) -> Result<Option<u64>, StorageError> {
        let key = crate::codec::presence_key(user);
        match self.db.get_pinned_cf(self.cf(cf::PRESENCE)?, key)? {
            Some(value) => crate::codec::decode_u64(&value, "presence").map(Some),
            None => Ok(None),
        }
    }

    fn set_read_up_to(
        &self,
        channel: ChannelId,
        user: UserId,
        seq: Seq,
    ) -> Result<(), StorageError> {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&channel.0.to_be_bytes());
        key[8..].copy_from_slice(&user.0.to_be_bytes());
        self.db.merge_cf_opt(
            self.cf(cf::RECEIPTS)?,
            key,
            seq.0.to_be_bytes(),
            &self.unsynced,
        )?;
        Ok(())
    }

    fn read_marks(&self, channel: ChannelId) -> Result<Vec<(UserId, Seq)>, StorageError> {
        let prefix = channel.0.to_be_bytes();
        let mut marks = Vec::new();
        let iter = self.db.prefix_iterator_cf(self.cf(cf::RECEIPTS)?, prefix);
        for item in iter {
            let (key, value) = item?;
            if key.len() != 16 || key[..8] != prefix {
                break;
            }
            let user = u64::from_be_bytes(key[8..].try_into().expect("16-byte key"));
            marks.push((
                UserId(user),
                Seq(crate::codec::decode_u64(&value, "receipt")?),
            ));
        }
        Ok(marks)
    }

    fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.put_outbox(entries)
    }

    fn outbox_remove(&self, keys: &[OutboxKey]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.remove_outbox(keys)
    }

    fn outbox_scan(
        &self,
        after: Option<OutboxKey>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        self.scan_outbox(after, limit)
    }
}
