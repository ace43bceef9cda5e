//! What the replicated log's stream carries, encoded by hand: every node
//! decodes every record, so the format is compact, versioned and checked
//! (a record that does not decode stops the applier rather than be
//! skipped, since skipping it would make this node's state differ from the
//! others').

use bytes::{Buf, BufMut, Bytes, BytesMut};
use confab_storage::{AppendRequest, ChannelId, Cursor, DeviceId, InboxSeq, Seq, Text, UserId};

/// The only format written; a node refuses records of a later one.
const VERSION: u8 = 1;
const KIND_APPENDS: u8 = 1;
const KIND_MARKS: u8 = 2;
const MARK_READ: u8 = 1;
const MARK_LAST_SEEN: u8 = 2;
const MARK_CURSOR: u8 = 3;

/// One stream message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// One group of sends from one node, applied as one storage stage.
    Appends {
        /// The node that published it (its hashed id).
        origin: u64,
        /// The publisher's number for the group, so it can tell its own
        /// groups' outcomes from everyone else's.
        group: u64,
        /// The publisher's wall clock: the commit time every node uses,
        /// so that every node stores the same timestamps.
        timestamp_ms: u64,
        /// The sends, members and push recipients resolved by the publisher.
        requests: Vec<AppendRequest>,
    },
    /// Forward-only marks: each applies as a maximum, so order and repeats
    /// do not matter.
    Marks {
        /// The node that published them.
        origin: u64,
        /// The marks.
        marks: Vec<Mark>,
    },
}

/// One forward-only mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A user read a channel up to a sequence.
    Read {
        /// The channel.
        channel: ChannelId,
        /// The reader.
        user: UserId,
        /// Read up to here.
        seq: Seq,
    },
    /// When a user was last seen.
    LastSeen {
        /// The user.
        user: UserId,
        /// ms since the epoch.
        at_ms: u64,
    },
    /// Where one device of a user stands.
    Cursor {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
        /// Its cursor.
        cursor: Cursor,
    },
}

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable log record: {0}")]
pub struct RecordError(pub &'static str);

/// Encodes an `Appends` record straight from the writer's group, without
/// copying it into a [`Record`] first.
pub fn encode_appends(
    origin: u64,
    group: u64,
    timestamp_ms: u64,
    requests: &[AppendRequest],
) -> Bytes {
    let mut out = BytesMut::with_capacity(appends_len_hint(requests));
    out.put_u8(VERSION);
    out.put_u8(KIND_APPENDS);
    out.put_u64_le(origin);
    out.put_u64_le(group);
    out.put_u64_le(timestamp_ms);
    out.put_u32_le(requests.len() as u32);
    for r in requests {
        out.put_u64_le(r.channel.0);
        out.put_u64_le(r.sender.0);
        out.put_u64_le(r.device.0);
        out.put_u64_le(r.client_msg_id);
        put_users(&mut out, &r.recipients);
        put_users(&mut out, &r.push_to);
        out.put_u32_le(r.text.len() as u32);
        out.put_slice(r.text.as_bytes());
    }
    out.freeze()
}

fn appends_len_hint(requests: &[AppendRequest]) -> usize {
    30 + requests
        .iter()
        .map(|r| 40 + 8 * (r.recipients.len() + r.push_to.len()) + r.text.len())
        .sum::<usize>()
}

impl Record {
    /// The bytes published.
    pub fn encode(&self) -> Bytes {
        let (origin, marks) = match self {
            Record::Appends {
                origin,
                group,
                timestamp_ms,
                requests,
            } => return encode_appends(*origin, *group, *timestamp_ms, requests),
            Record::Marks { origin, marks } => (origin, marks),
        };
        let mut out = BytesMut::with_capacity(16 + 33 * marks.len());
        out.put_u8(VERSION);
        out.put_u8(KIND_MARKS);
        out.put_u64_le(*origin);
        out.put_u32_le(marks.len() as u32);
        for m in marks {
            match *m {
                Mark::Read { channel, user, seq } => {
                    out.put_u8(MARK_READ);
                    out.put_u64_le(channel.0);
                    out.put_u64_le(user.0);
                    out.put_u64_le(seq.into());
                }
                Mark::LastSeen { user, at_ms } => {
                    out.put_u8(MARK_LAST_SEEN);
                    out.put_u64_le(user.0);
                    out.put_u64_le(at_ms);
                }
                Mark::Cursor {
                    user,
                    device,
                    cursor,
                } => {
                    out.put_u8(MARK_CURSOR);
                    out.put_u64_le(user.0);
                    out.put_u64_le(device.0);
                    out.put_u64_le(cursor.delivered.into());
                    out.put_u64_le(cursor.read.into());
                }
            }
        }
        out.freeze()
    }

    /// Decodes a stream message; texts share `bytes` rather than copy it.
    pub fn decode(mut bytes: Bytes) -> Result<Record, RecordError> {
        let version = take_u8(&mut bytes)?;
        if version != VERSION {
            return Err(RecordError("unknown version"));
        }
        match take_u8(&mut bytes)? {
            KIND_APPENDS => {
                let origin = take_u64(&mut bytes)?;
                let group = take_u64(&mut bytes)?;
                let timestamp_ms = take_u64(&mut bytes)?;
                let count = take_u32(&mut bytes)? as usize;
                // Each request takes at least 40 bytes: a count beyond
                // what is left is corrupt, not a reason to allocate.
                if count > bytes.remaining() / 40 {
                    return Err(RecordError("request count beyond the record"));
                }
                let mut requests = Vec::with_capacity(count);
                for _ in 0..count {
                    let channel = ChannelId(take_u64(&mut bytes)?);
                    let sender = UserId(take_u64(&mut bytes)?);
                    let device = DeviceId(take_u64(&mut bytes)?);
                    let client_msg_id = take_u64(&mut bytes)?;
                    let recipients = take_users(&mut bytes)?;
                    let push_to = take_users(&mut bytes)?;
                    let len = take_u32(&mut bytes)? as usize;
                    if len > bytes.remaining() {
                        return Err(RecordError("text beyond the record"));
                    }
                    let text = Text::try_from(bytes.split_to(len))
                        .map_err(|_| RecordError("text is not UTF-8"))?;
                    requests.push(AppendRequest {
                        channel,
                        sender,
                        device,
                        client_msg_id,
                        recipients,
                        text,
                        push_to,
                    });
                }
                done(&bytes)?;
                Ok(Record::Appends {
                    origin,
                    group,
                    timestamp_ms,
                    requests,
                })
            }
            KIND_MARKS => {
                let origin = take_u64(&mut bytes)?;
                let count = take_u32(&mut bytes)? as usize;
                if count > bytes.remaining() / 17 {
                    return Err(RecordError("mark count beyond the record"));
                }
                let mut marks = Vec::with_capacity(count);
                for _ in 0..count {
                    marks.push(match take_u8(&mut bytes)? {
                        MARK_READ => Mark::Read {
                            channel: ChannelId(take_u64(&mut bytes)?),
                            user: UserId(take_u64(&mut bytes)?),
                            seq: Seq::from(take_u64(&mut bytes)?),
                        },
                        MARK_LAST_SEEN => Mark::LastSeen {
                            user: UserId(take_u64(&mut bytes)?),
                            at_ms: take_u64(&mut bytes)?,
                        },
                        MARK_CURSOR => Mark::Cursor {
                            user: UserId(take_u64(&mut bytes)?),
                            device: DeviceId(take_u64(&mut bytes)?),
                            cursor: Cursor {
                                delivered: InboxSeq::from(take_u64(&mut bytes)?),
                                read: InboxSeq::from(take_u64(&mut bytes)?),
                            },
                        },
                        _ => return Err(RecordError("unknown mark")),
                    });
                }
                done(&bytes)?;
                Ok(Record::Marks { origin, marks })
            }
            _ => Err(RecordError("unknown kind")),
        }
    }
}

fn put_users(out: &mut BytesMut, users: &[UserId]) {
    out.put_u16_le(users.len() as u16);
    for u in users {
        out.put_u64_le(u.0);
    }
}

fn take_users(bytes: &mut Bytes) -> Result<Vec<UserId>, RecordError> {
    let n = take_u16(bytes)? as usize;
    if n * 8 > bytes.remaining() {
        return Err(RecordError("user list beyond the record"));
    }
    Ok((0..n).map(|_| UserId(bytes.get_u64_le())).collect())
}

fn take_u8(bytes: &mut Bytes) -> Result<u8, RecordError> {
    bytes.try_get_u8().map_err(|_| RecordError("truncated"))
}

fn take_u16(bytes: &mut Bytes) -> Result<u16, RecordError> {
    bytes.try_get_u16_le().map_err(|_| RecordError("truncated"))
}

fn take_u32(bytes: &mut Bytes) -> Result<u32, RecordError> {
    bytes.try_get_u32_le().map_err(|_| RecordError("truncated"))
}

fn take_u64(bytes: &mut Bytes) -> Result<u64, RecordError> {
    bytes.try_get_u64_le().map_err(|_| RecordError("truncated"))
}

fn done(bytes: &Bytes) -> Result<(), RecordError> {
    if bytes.has_remaining() {
        return Err(RecordError("trailing bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: u64, text: &str) -> AppendRequest {
        AppendRequest {
            channel: ChannelId(7),
            sender: UserId(1),
            device: DeviceId(3),
            client_msg_id: i,
            recipients: vec![UserId(1), UserId(2), UserId(9)],
            text: Text::from(text.to_string()),
            push_to: vec![UserId(9)],
        }
    }

    #[test]
    fn appends_and_marks_come_back_as_they_went() {
        let appends = Record::Appends {
            origin: 11,
            group: 12,
            timestamp_ms: 1_765_000_000_000,
            requests: vec![request(1, "héllo"), request(2, &"x".repeat(100_000))],
        };
        assert_eq!(Record::decode(appends.encode()).unwrap(), appends);
        let marks = Record::Marks {
            origin: 11,
            marks: vec![
                Mark::Read {
                    channel: ChannelId(7),
                    user: UserId(2),
                    seq: Seq::from(40),
                },
                Mark::LastSeen {
                    user: UserId(2),
                    at_ms: 99,
                },
                Mark::Cursor {
                    user: UserId(2),
                    device: DeviceId(5),
                    cursor: Cursor {
                        delivered: InboxSeq::from(10),
                        read: InboxSeq::from(8),
                    },
                },
            ],
        };
        assert_eq!(Record::decode(marks.encode()).unwrap(), marks);
    }

    #[test]
    fn every_truncation_and_a_bad_text_are_refused() {
        let bytes = Record::Appends {
            origin: 1,
            group: 2,
            timestamp_ms: 3,
            requests: vec![request(1, "hi")],
        }
        .encode();
        for len in 0..bytes.len() {
            assert!(
                Record::decode(bytes.slice(..len)).is_err(),
                "prefix of {len}"
            );
        }
        let mut extra = bytes.to_vec();
        extra.push(0);
        assert_eq!(
            Record::decode(extra.into()),
            Err(RecordError("trailing bytes"))
        );
        let mut bad = bytes.to_vec();
        let at = bad.len() - 2;
        bad[at] = 0xff;
        assert_eq!(
            Record::decode(bad.into()),
            Err(RecordError("text is not UTF-8"))
        );
        let mut future = bytes.to_vec();
        future[0] = 2;
        assert_eq!(
            Record::decode(future.into()),
            Err(RecordError("unknown version"))
        );
    }
}
