//! The read half of [`RocksLog`]: history and inbox pages from a RocksDB
//! snapshot, clamped to the published watermarks. Nothing here takes a lock
//! the writer holds across its commit.
//!
//! Order matters: the snapshot is taken *before* the watermark is read. A key
//! with no watermark yet had no write since open when the watermark was read,
//! so no write of it can be in the earlier snapshot either; a key with one is
//! clamped to it.

use super::{cf, RocksLog};
use crate::codec;
use crate::error::StorageError;
use crate::model::{HistoryAnchor, InboxEntry, Page, MAX_PAGE_LIMIT};
use crate::watermark::Watermarks;
use confab_types::{ChannelId, InboxSeq, Seq, StoredMessage, UserId};
use rocksdb::{ColumnFamily, DBRawIterator, ReadOptions, Snapshot};

/// An iterator over `prefix | lo ..= prefix | hi` of one column family.
fn bounded<'a>(
    snapshot: &'a Snapshot<'a>,
    handle: &ColumnFamily,
    prefix: u64,
    lo: u64,
    hi: u64,
) -> DBRawIterator<'a> {
    let mut opts = ReadOptions::default();
    opts.set_prefix_same_as_start(true);
    opts.set_iterate_lower_bound(codec::pair_key(prefix, lo).to_vec());
    // Exclusive upper bound: the key after `prefix | hi`, i.e. the next prefix
    // when `hi` is u64::MAX (unbounded for the very last prefix).
    match hi.checked_add(1) {
        Some(next) => opts.set_iterate_upper_bound(codec::pair_key(prefix, next).to_vec()),
        None => {
            if let Some(next_prefix) = prefix.checked_add(1) {
                opts.set_iterate_upper_bound(next_prefix.to_be_bytes().to_vec());
            }
        }
    }
    snapshot.raw_iterator_cf_opt(handle, opts)
}

/// Collected `(suffix, value)` pairs and whether another entry followed.
type Collected = (Vec<(u64, Vec<u8>)>, bool);

fn collect(
    iter: &mut DBRawIterator<'_>,
    limit: usize,
    forward: bool,
) -> Result<Collected, StorageError> {
    let mut out = Vec::with_capacity(limit.min(64));
    while out.len() < limit && iter.valid() {
        if let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let (_, suffix) = codec::split_pair(key, "sequence key")?;
            out.push((suffix, value.to_vec()));
        }
        if forward {
            iter.next();
        } else {
            iter.prev();
        }
    }
    let has_more = iter.valid();
    iter.status()?;
    Ok((out, has_more))
}

impl RocksLog {
    pub(super) fn read_history(
        &self,
        channel: ChannelId,
        anchor: HistoryAnchor,
        limit: usize,
    ) -> Result<Page<StoredMessage>, StorageError> {
        let limit = limit.min(MAX_PAGE_LIMIT);
        let snapshot = self.db.snapshot();
        let top = self.channel_marks.get(channel.0).unwrap_or(u64::MAX);
        let handle = self.cf(cf::MESSAGES)?;
        let (entries, has_more, ascending) = match anchor {
            HistoryAnchor::Latest | HistoryAnchor::Before(_) => {
                let hi = match anchor {
                    HistoryAnchor::Before(seq) => match seq.0.checked_sub(1) {
                        Some(below) => below.min(top),
                        None => return Ok(empty()),
                    },
                    _ => top,
                };
                let mut iter = bounded(&snapshot, handle, channel.0, 0, hi);
                iter.seek_for_prev(codec::message_key(channel, hi));
                let (entries, more) = collect(&mut iter, limit, false)?;
                (entries, more, false)
            }
            HistoryAnchor::After(seq) => {
                if seq >= Seq(top) {
                    return Ok(empty());
                }
                let mut iter = bounded(&snapshot, handle, channel.0, seq.0 + 1, top);
                iter.seek(codec::message_key(channel, seq.0 + 1));
                let (entries, more) = collect(&mut iter, limit, true)?;
                (entries, more, true)
            }
        };
        let mut items = entries
            .into_iter()
            .map(|(seq, value)| codec::decode_record(channel, seq, &value))
            .collect::<Result<Vec<_>, _>>()?;
        if !ascending {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    pub(super) fn read_inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Page<InboxEntry>, StorageError> {
        let limit = limit.min(MAX_PAGE_LIMIT);
        let snapshot = self.db.snapshot();
        let top = self.inbox_marks.get(user.0).unwrap_or(u64::MAX);
        if after >= top {
            return Ok(empty());
        }
        let mut iter = bounded(&snapshot, self.cf(cf::INBOX)?, user.0, after + 1, top);
        iter.seek(codec::inbox_key(user, after + 1));
        let (entries, has_more) = collect(&mut iter, limit, true)?;
        drop(iter);
        if entries.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                has_more,
            });
        }

        let pointers = entries
            .iter()
            .map(|(inbox_seq, value)| Ok((*inbox_seq, codec::decode_pointer(value)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        let keys: Vec<[u8; 16]> = pointers
            .iter()
            .map(|(_, (c, s))| codec::message_key(*c, *s))
            .collect();
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snapshot);
        let values = self
            .db
            .batched_multi_get_cf_opt(self.cf(cf::MESSAGES)?, &keys, false, &opts);
        let mut items = Vec::with_capacity(pointers.len());
        for ((inbox_seq, (channel, seq)), value) in pointers.into_iter().zip(values) {
            // The pointer and the message were written in one batch, so a
            // missing message means damage, not a race.
            let value = value?.ok_or_else(|| StorageError::Corrupt {
                what: "inbox pointer",
                detail: format!("user {user} inbox {inbox_seq} points at missing {channel}/{seq}"),
            })?;
            items.push(InboxEntry {
                inbox_seq: InboxSeq(inbox_seq),
                message: codec::decode_record(channel, seq, &value)?,
            });
        }
        Ok(Page { items, has_more })
    }

    /// Highest visible sequence under a prefix: the watermark, or the disk's
    /// last key for a prefix not written since open.
    pub(super) fn visible_last(
        &self,
        name: &'static str,
        marks: &Watermarks,
        prefix: u64,
    ) -> Result<u64, StorageError> {
        let snapshot = self.db.snapshot();
        if let Some(visible) = marks.get(prefix) {
            return Ok(visible);
        }
        Ok(self
            .last_in_prefix(self.cf(name)?, prefix, Some(&snapshot))?
            .map_or(0, |(seq, _)| seq))
    }
}

fn empty<T>() -> Page<T> {
    Page {
        items: Vec::new(),
        has_more: false,
    }
}
