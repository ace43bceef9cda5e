//! The write half of [`RocksLog`]: turn a drained group of requests into one
//! atomic RocksDB write batch (messages, inbox pointers, idempotency entries),
//! assigning sequences under the stripe locks of [`super::counters`].

use super::counters::{channel_stripe, user_stripe, ChannelCounter};
use super::{cf, RocksLog};
use crate::codec::{self, IdempotencyRecord};
use crate::error::StorageError;
use crate::model::{AppendOutcome, AppendRequest};
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
use rocksdb::{ColumnFamily, ReadOptions, Snapshot, WriteBatch};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;

/// Messages per group whose batch-sized lists stay on the stack.
const SMALL_BATCH: usize = 4;

impl RocksLog {
    pub(super) fn stage_batch(
        &self,
        batch: &[AppendRequest],
    ) -> Result<Vec<AppendOutcome>, StorageError> {
        self.check_poisoned()?;
        for req in batch {
            req.validate()?;
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let messages_cf = self.cf(cf::MESSAGES)?;
        let inbox_cf = self.cf(cf::INBOX)?;
        let idem_cf = self.cf(cf::IDEMPOTENCY)?;
        let outbox_cf = self.cf(cf::OUTBOX)?;

        // The batch-sized lists live on the stack for the few messages a
        // group holds at modest rates.
        let recipients: SmallVec<[Cow<'_, [UserId]>; SMALL_BATCH]> =
            batch.iter().map(AppendRequest::unique_recipients).collect();
        // The sender's stripe is locked too: it serialises idempotency checks
        // of one sender across shard writers.
        let mut mask = 0u64;
        for (req, users) in batch.iter().zip(&recipients) {
            mask |= 1 << channel_stripe(req.channel);
            mask |= 1 << user_stripe(req.sender);
            for &user in users.iter() {
                mask |= 1 << user_stripe(user);
            }
        }
        let mut locked = self.counters.lock(mask)?;
        // Again under the locks: a stage that waited here for one whose
        // write failed must not move counters that are already ahead of
        // the disk.
        self.check_poisoned()?;

        let idem_keys: SmallVec<[[u8; 24]; SMALL_BATCH]> = batch
            .iter()
            .map(|r| codec::idempotency_key(r.sender, r.device, r.client_msg_id))
            .collect();
        // Every counter this batch will move is loaded before any moves: a
        // load failing half-way would otherwise leave earlier counters ahead
        // of the disk, and the next stage would leave a gap.
        //
        // Only ids at or below their device's highest id can have an entry;
        // the rest are new without a read. The high is raised as the batch
        // is walked, so a repeat within the batch is at or below it too.
        // Raising it before the write is safe: the stripe stays locked until
        // the write has landed, and a high above what is stored only costs a
        // look-up that finds nothing.
        let mut lookups: Vec<usize> = Vec::new();
        for (i, req) in batch.iter().enumerate() {
            locked.load_channel(req.channel, || self.load_channel(req.channel))?;
            for &user in recipients[i].iter() {
                locked.load_inbox(user, || self.load_inbox(user))?;
            }
            let high = locked.device_high(req.sender, req.device, || {
                self.load_device_high(idem_cf, req.sender, req.device)
            })?;
            if req.client_msg_id <= *high {
                lookups.push(i);
            } else {
                *high = req.client_msg_id;
            }
        }
        let mut earlier: SmallVec<[Option<IdempotencyRecord>; SMALL_BATCH]> =
            smallvec::smallvec![None; batch.len()];
        if !lookups.is_empty() {
            let keys = lookups.iter().map(|&i| &idem_keys[i]);
            let found =
                self.db
                    .batched_multi_get_cf_opt(idem_cf, keys, false, &ReadOptions::default());
            for (&i, found) in lookups.iter().zip(found) {
                earlier[i] = match found? {
                    Some(value) => Some(IdempotencyRecord::decode(&value)?),
                    None => None,
                };
            }
        }
        // With no id at or below its device's high, no message repeats
        // another of this batch, and the map below is never needed.
        let repeats_possible = !lookups.is_empty();

        let now = self.config.clock.now_ms();
        let window = self.config.idempotency_window_ms;
        let text_bytes: usize = batch.iter().map(|r| r.text.len()).sum();
        let mut wb = WriteBatch::with_capacity_bytes(text_bytes + batch.len() * 128);
        let mut record = Vec::new();
        let mut first_in_batch: HashMap<[u8; 24], usize> = if repeats_possible {
            HashMap::with_capacity(batch.len())
        } else {
            HashMap::new()
        };
        let mut outcomes: Vec<AppendOutcome> = Vec::with_capacity(batch.len());

        for (i, req) in batch.iter().enumerate() {
            let first = if repeats_possible {
                first_in_batch.get(&idem_keys[i]).copied()
            } else {
                None
            };
            if let Some(first) = first {
                let original = &outcomes[first];
                outcomes.push(duplicate_of(IdempotencyRecord {
                    channel: original.channel,
                    seq: original.seq.into(),
                    timestamp_ms: original.timestamp_ms,
                    sender_inbox_seq: original.sender_inbox_seq.into(),
                }));
                continue;
            }
            if let Some(rec) = earlier[i].filter(|r| !r.expired(now, window)) {
                outcomes.push(duplicate_of(rec));
                continue;
            }

            let counter = locked.channel(req.channel);
            counter.seq += 1;
            counter.timestamp_ms = counter.timestamp_ms.max(now);
            let (seq, timestamp_ms) = (counter.seq, counter.timestamp_ms);

            record.clear();
            codec::encode_record(
                &mut record,
                req.sender,
                req.device,
                req.client_msg_id,
                timestamp_ms,
                req.text.as_bytes(),
            );
            wb.put_cf(messages_cf, codec::message_key(req.channel, seq), &record);

            let pointer = codec::encode_pointer(req.channel, seq);
            let mut inbox = Vec::with_capacity(recipients[i].len());
            for &user in recipients[i].iter() {
                let last = locked.inbox(user);
                *last += 1;
                wb.put_cf(inbox_cf, codec::inbox_key(user, *last), pointer);
                inbox.push((user, InboxSeq(*last)));
            }
            let sender_inbox_seq = crate::model::sender_seq(&inbox, req.sender);
            for entry in crate::model::push_jobs(req, Seq(seq), &inbox, timestamp_ms) {
                wb.put_cf(
                    outbox_cf,
                    codec::outbox_key(entry.key),
                    codec::outbox_value(&entry),
                );
            }

            let rec = IdempotencyRecord {
                channel: req.channel,
                seq,
                timestamp_ms,
                sender_inbox_seq: sender_inbox_seq.into(),
            };
            wb.put_cf(idem_cf, idem_keys[i], rec.encode());
            if repeats_possible {
                first_in_batch.insert(idem_keys[i], i);
            }
            outcomes.push(AppendOutcome {
                channel: req.channel,
                seq: Seq(seq),
                timestamp_ms,
                inbox,
                sender_inbox_seq,
                duplicate: false,
            });
        }

        if !wb.is_empty() {
            // Counters were advanced above; if the batch did not land they are
            // ahead of the disk and the next stage would leave a gap. RocksDB
            // itself stops accepting writes after a failed WAL write, so the
            // log refuses too until it is reopened and reloads from disk.
            self.db.write_opt(wb, &self.unsynced).map_err(|err| {
                self.poison("group write", &err);
                StorageError::from(err)
            })?;
        }
        drop(locked);
        Ok(outcomes)
    }

    /// Last sequence and timestamp of a channel, from the last key of its
    /// prefix. Records the value as the channel's watermark before any write
    /// of this log touches it (see `Watermarks::init`).
    fn load_channel(&self, channel: ChannelId) -> Result<ChannelCounter, StorageError> {
        let counter = match self.last_in_prefix(self.cf(cf::MESSAGES)?, channel.0, None)? {
            Some((seq, value)) => ChannelCounter {
                seq,
                timestamp_ms: codec::record_timestamp(&value)?,
            },
            None => ChannelCounter::default(),
        };
        self.channel_marks.init(channel.0, counter.seq);
        Ok(counter)
    }

    /// The highest client message id with an idempotency entry for the
    /// device: one `seek_for_prev` to `sender | device | u64::MAX`.
    fn load_device_high(
        &self,
        idem_cf: &ColumnFamily,
        sender: UserId,
        device: DeviceId,
    ) -> Result<u64, StorageError> {
        let mut opts = ReadOptions::default();
        opts.set_total_order_seek(true);
        let lower = codec::idempotency_key(sender, device, 0);
        opts.set_iterate_lower_bound(lower.to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(idem_cf, opts);
        iter.seek_for_prev(codec::idempotency_key(sender, device, u64::MAX));
        let high = match iter.key() {
            Some(key) if key.len() == 24 && key[..16] == lower[..16] => {
                u64::from_be_bytes(key[16..].try_into().expect("8 bytes"))
            }
            _ => 0,
        };
        iter.status()?;
        Ok(high)
    }

    fn load_inbox(&self, user: UserId) -> Result<u64, StorageError> {
        let last = self
            .last_in_prefix(self.cf(cf::INBOX)?, user.0, None)?
            .map_or(0, |(seq, _)| seq);
        self.inbox_marks.init(user.0, last);
        Ok(last)
    }

    /// The highest `(suffix, value)` under an 8-byte prefix: one
    /// `seek_for_prev` to `prefix | u64::MAX`, never a scan.
    pub(super) fn last_in_prefix(
        &self,
        handle: &ColumnFamily,
        prefix: u64,
        snapshot: Option<&Snapshot<'_>>,
    ) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let mut opts = ReadOptions::default();
        opts.set_prefix_same_as_start(true);
        opts.set_iterate_lower_bound(codec::pair_key(prefix, 0).to_vec());
        if let Some(snapshot) = snapshot {
            opts.set_snapshot(snapshot);
        }
        let mut iter = self.db.raw_iterator_cf_opt(handle, opts);
        iter.seek_for_prev(codec::pair_key(prefix, u64::MAX));
        let found = match (iter.key(), iter.value()) {
            (Some(key), Some(value)) if key.starts_with(&prefix.to_be_bytes()) => {
                let (_, suffix) = codec::split_pair(key, "sequence key")?;
                Some((suffix, value.to_vec()))
            }
            _ => None,
        };
        iter.status()?;
        Ok(found)
    }
}

fn duplicate_of(rec: IdempotencyRecord) -> AppendOutcome {
    AppendOutcome {
        channel: rec.channel,
        seq: Seq(rec.seq),
        timestamp_ms: rec.timestamp_ms,
        inbox: Vec::new(),
        sender_inbox_seq: InboxSeq(rec.sender_inbox_seq),
        duplicate: true,
    }
}
