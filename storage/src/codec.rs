//! Hand-written byte encodings of every key and value (layout tables in
//! `docs/storage.md`). Fixed-width big-endian integers make RocksDB's bytewise
//! order equal numeric order, so a channel's or a user's entries form one
//! contiguous key range; values are fixed headers so the hot path never runs a
//! general-purpose serializer.

use crate::error::StorageError;
use crate::model::{Cursor, OutboxEntry, OutboxKey};
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, UserId};

/// Bytes of the shared 8-byte prefix (channel id or user id) that the prefix
/// extractors and bloom filters work on.
pub(crate) const PREFIX_LEN: usize = 8;

/// Version tag leading every message record, so the header can grow later
/// without guessing at old bytes.
const RECORD_V1: u8 = 1;

/// version(1) + sender(8) + device(8) + client_msg_id(8) + timestamp_ms(8).
pub(crate) const RECORD_HEADER_LEN: usize = 33;

fn be(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(raw)
}

/// Two big-endian u64s: the layout of message, inbox and cursor keys.
pub(crate) fn pair_key(prefix: u64, suffix: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&prefix.to_be_bytes());
    key[8..].copy_from_slice(&suffix.to_be_bytes());
    key
}

/// Inverse of [`pair_key`].
pub(crate) fn split_pair(key: &[u8], what: &'static str) -> Result<(u64, u64), StorageError> {
    if key.len() != 16 {
        return Err(corrupt(
            what,
            format!("key of {} bytes, expected 16", key.len()),
        ));
    }
    Ok((be(&key[..8]), be(&key[8..])))
}

/// `channel | seq` in the messages column family.
pub(crate) fn message_key(channel: ChannelId, seq: u64) -> [u8; 16] {
    pair_key(channel.0, seq)
}

/// `user | inbox_seq` in the inbox column family.
pub(crate) fn inbox_key(user: UserId, inbox_seq: u64) -> [u8; 16] {
    pair_key(user.0, inbox_seq)
}

/// `user | device` in the cursors column family.
pub(crate) fn cursor_key(user: UserId, device: DeviceId) -> [u8; 16] {
    pair_key(user.0, device.0)
}

/// `user` in the presence column family.
pub(crate) fn presence_key(user: UserId) -> [u8; 8] {
    user.0.to_be_bytes()
}

/// `sender | device | client_msg_id` in the idempotency column family.
pub(crate) fn idempotency_key(sender: UserId, device: DeviceId, client_msg_id: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&sender.0.to_be_bytes());
    key[8..16].copy_from_slice(&device.0.to_be_bytes());
    key[16..].copy_from_slice(&client_msg_id.to_be_bytes());
    key
}

/// `user | channel | seq` in the outbox column family: a user's jobs are
/// adjacent, and within them a channel's, in message order.
pub(crate) fn outbox_key(key: OutboxKey) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&key.user.0.to_be_bytes());
    out[8..16].copy_from_slice(&key.channel.0.to_be_bytes());
    out[16..].copy_from_slice(&key.seq.0.to_be_bytes());
    out
}

/// `inbox_seq | sender | timestamp_ms`, the outbox value.
pub(crate) fn outbox_value(entry: &OutboxEntry) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&entry.inbox_seq.0.to_be_bytes());
    out[8..16].copy_from_slice(&entry.sender.0.to_be_bytes());
    out[16..].copy_from_slice(&entry.timestamp_ms.to_be_bytes());
    out
}

/// Inverse of [`outbox_key`] and [`outbox_value`].
pub(crate) fn decode_outbox(key: &[u8], value: &[u8]) -> Result<OutboxEntry, StorageError> {
    if key.len() != 24 || value.len() != 24 {
        return Err(corrupt(
            "outbox entry",
            format!(
                "{}-byte key, {}-byte value, expected 24 and 24",
                key.len(),
                value.len()
            ),
        ));
    }
    Ok(OutboxEntry {
        key: OutboxKey {
            user: UserId(be(&key[..8])),
            channel: ChannelId(be(&key[8..16])),
            seq: Seq(be(&key[16..])),
        },
        inbox_seq: InboxSeq(be(&value[..8])),
        sender: UserId(be(&value[8..16])),
        timestamp_ms: be(&value[16..]),
    })
}

/// Appends a message record (header + text) to `out`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    sender: UserId,
    device: DeviceId,
    client_msg_id: u64,
    timestamp_ms: u64,
    text: &[u8],
) {
    out.reserve(RECORD_HEADER_LEN + text.len());
    out.push(RECORD_V1);
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&device.0.to_be_bytes());
    out.extend_from_slice(&client_msg_id.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(text);
}

/// Decodes a record stored under (`channel`, `seq`).
pub(crate) fn decode_record(
    channel: ChannelId,
    seq: u64,
    value: &[u8],
) -> Result<StoredMessage, StorageError> {
    if value.len() < RECORD_HEADER_LEN {
        return Err(corrupt(
            "message",
            format!("record of {} bytes", value.len()),
        ));
    }
    if value[0] != RECORD_V1 {
        return Err(corrupt(
            "message",
            format!("unknown record version {}", value[0]),
        ));
    }
    Ok(StoredMessage {
        channel,
        seq: Seq(seq),
        sender: UserId(be(&value[1..])),
        device: DeviceId(be(&value[9..])),
        client_msg_id: be(&value[17..]),
        timestamp_ms: be(&value[25..]),
        text: confab_types::Text::try_from(value[RECORD_HEADER_LEN..].to_vec())
            .map_err(|_| corrupt("message", format!("{channel}/{seq}: text is not UTF-8")))?,
    })
}

/// Timestamp of a record without decoding the rest (recovery only needs it).
pub(crate) fn record_timestamp(value: &[u8]) -> Result<u64, StorageError> {
    if value.len() < RECORD_HEADER_LEN || value[0] != RECORD_V1 {
        return Err(corrupt("message", "bad record header".to_string()));
    }
    Ok(be(&value[25..]))
}

/// Inbox pointer value: `channel | seq`.
pub(crate) fn encode_pointer(channel: ChannelId, seq: u64) -> [u8; 16] {
    pair_key(channel.0, seq)
}

/// Inverse of [`encode_pointer`].
pub(crate) fn decode_pointer(value: &[u8]) -> Result<(ChannelId, u64), StorageError> {
    let (channel, seq) = split_pair(value, "inbox pointer")?;
    Ok((ChannelId(channel), seq))
}

/// What an idempotency entry remembers about the first append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub channel: ChannelId,
    pub seq: u64,
    pub timestamp_ms: u64,
    pub sender_inbox_seq: u64,
}

impl IdempotencyRecord {
    /// `channel | seq | timestamp_ms | sender_inbox_seq`.
    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.channel.0.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[24..].copy_from_slice(&self.sender_inbox_seq.to_be_bytes());
        out
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, StorageError> {
        if value.len() != 32 {
            return Err(corrupt(
                "idempotency",
                format!("value of {} bytes", value.len()),
            ));
        }
        Ok(Self {
            channel: ChannelId(be(value)),
            seq: be(&value[8..]),
            timestamp_ms: be(&value[16..]),
            sender_inbox_seq: be(&value[24..]),
        })
    }

    /// Whether the entry no longer deduplicates at time `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64, window_ms: u64) -> bool {
        expired(self.timestamp_ms, now_ms, window_ms)
    }
}

/// An idempotency entry written at `timestamp_ms` stops deduplicating once the
/// window has fully elapsed.
pub(crate) fn expired(timestamp_ms: u64, now_ms: u64, window_ms: u64) -> bool {
    now_ms >= timestamp_ms.saturating_add(window_ms)
}

/// Cursor value: `delivered | read`.
pub(crate) fn encode_cursor(cursor: Cursor) -> [u8; 16] {
    pair_key(cursor.delivered.into(), cursor.read.into())
}

/// Inverse of [`encode_cursor`].
pub(crate) fn decode_cursor(value: &[u8]) -> Result<Cursor, StorageError> {
    let (delivered, read) = split_pair(value, "cursor")?;
    Ok(Cursor {
        delivered: InboxSeq(delivered),
        read: InboxSeq(read),
    })
}

/// Last-seen value: ms since the epoch.
pub(crate) fn decode_u64(value: &[u8], what: &'static str) -> Result<u64, StorageError> {
    if value.len() != 8 {
        return Err(corrupt(what, format!("value of {} bytes", value.len())));
    }
    Ok(be(value))
}

fn corrupt(what: &'static str, detail: String) -> StorageError {
    StorageError::Corrupt { what, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn record_round_trips(
            channel: u64, seq: u64, sender: u64, device: u64, id: u64, ts: u64,
            text in ".{0,100}",
        ) {
            let mut buf = Vec::new();
            encode_record(&mut buf, UserId(sender), DeviceId(device), id, ts, text.as_bytes());
            prop_assert_eq!(buf.len(), RECORD_HEADER_LEN + text.len());
            prop_assert_eq!(record_timestamp(&buf).unwrap(), ts);
            let msg = decode_record(ChannelId(channel), seq, &buf).unwrap();
            prop_assert_eq!(msg, StoredMessage {
                channel: ChannelId(channel), seq: Seq(seq), sender: UserId(sender),
                device: DeviceId(device), client_msg_id: id, timestamp_ms: ts, text: text.into(),
            });
        }

        #[test]
        fn key_order_is_numeric_order(a: (u64, u64), b: (u64, u64)) {
            // The whole layout relies on this: a prefix's entries are contiguous
            // and sorted by sequence.
            prop_assert_eq!(pair_key(a.0, a.1).cmp(&pair_key(b.0, b.1)), a.cmp(&b));
        }

        #[test]
        fn small_values_round_trip(channel: u64, seq: u64, ts: u64, d: u64, r: u64) {
            let rec = IdempotencyRecord { channel: ChannelId(channel), seq, timestamp_ms: ts, sender_inbox_seq: seq / 2 };
            prop_assert_eq!(IdempotencyRecord::decode(&rec.encode()).unwrap(), rec);
            prop_assert_eq!(decode_pointer(&encode_pointer(ChannelId(channel), seq)).unwrap(),
                (ChannelId(channel), seq));
            let cursor = Cursor { delivered: InboxSeq(d), read: InboxSeq(r) };
            prop_assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        }
    }

    #[test]
    fn damaged_bytes_are_reported_not_misread() {
        assert!(decode_record(ChannelId(1), 1, &[RECORD_V1; 10]).is_err());
        let mut buf = Vec::new();
        encode_record(&mut buf, UserId(1), DeviceId(1), 1, 1, b"hi");
        buf[0] = 9;
        assert!(decode_record(ChannelId(1), 1, &buf).is_err());
        assert!(IdempotencyRecord::decode(&[0; 31]).is_err());
        assert!(decode_pointer(&[0; 15]).is_err());
        assert!(decode_u64(&[0; 7], "presence").is_err());
    }

    #[test]
    fn expiry_is_at_the_window_edge() {
        let rec = IdempotencyRecord {
            channel: ChannelId(1),
            seq: 1,
            timestamp_ms: 1_000,
            sender_inbox_seq: 1,
        };
        assert!(!rec.expired(1_000, 500));
        assert!(!rec.expired(1_499, 500));
        assert!(rec.expired(1_500, 500));
        let late = IdempotencyRecord {
            timestamp_ms: u64::MAX - 1,
            ..rec
        };
        assert!(!late.expired(u64::MAX - 1, 500));
    }
}
