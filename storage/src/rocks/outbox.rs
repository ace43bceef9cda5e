//! The push outbox of [`RocksLog`]: late jobs, settled jobs and the scan the
//! push worker recovers from. Jobs decided at submit time are written by
//! `stage` in the message's own batch.

use super::{cf, RocksLog};
use crate::codec;
use crate::error::StorageError;
use crate::model::{OutboxEntry, OutboxKey, MAX_PAGE_LIMIT};
use crate::sync_policy::SyncPolicy;
use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

impl RocksLog {
    pub(super) fn put_outbox(&self, entries: &[OutboxEntry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let handle = self.cf(cf::OUTBOX)?;
        let mut wb = WriteBatch::default();
        for entry in entries {
            wb.put_cf(
                handle,
                codec::outbox_key(entry.key),
                codec::outbox_value(entry),
            );
        }
        let mut opts = WriteOptions::default();
        // A late job has no message batch to ride; under `batch` it is
        // fsynced itself so the promise "a restart loses no pending push"
        // holds for it too.
        opts.set_sync(self.config.sync_policy == SyncPolicy::Batch);
        self.db.write_opt(wb, &opts)?;
        Ok(())
    }

    pub(super) fn remove_outbox(&self, keys: &[OutboxKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let handle = self.cf(cf::OUTBOX)?;
        let mut wb = WriteBatch::default();
        for &key in keys {
            wb.delete_cf(handle, codec::outbox_key(key));
        }
        // Not fsynced: losing a removal to a crash re-sends one collapsed
        // notification, which the device replaces in place.
        self.db.write_opt(wb, &WriteOptions::default())?;
        Ok(())
    }

    pub(super) fn scan_outbox(
        &self,
        after: Option<OutboxKey>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        let limit = limit.min(MAX_PAGE_LIMIT);
        let mut opts = ReadOptions::default();
        opts.set_total_order_seek(true);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf::OUTBOX)?, opts);
        match after {
            Some(key) => {
                let raw = codec::outbox_key(key);
                iter.seek(raw);
                if iter.key() == Some(&raw[..]) {
                    iter.next();
                }
            }
            None => iter.seek_to_first(),
        }
        let mut out = Vec::with_capacity(limit.min(64));
        while out.len() < limit {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            out.push(codec::decode_outbox(key, value)?);
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }
}
