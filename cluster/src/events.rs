//! Events nodes tell each other over core NATS (subject `confab.events`,
//! never stored): typing notices, read receipts and presence changes,
//! batched as one NATS message per wake-up of the publishing task. Every
//! node takes every batch, since a user's devices and watchers may be on
//! any node.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use confab_types::{ChannelId, Seq, UserId};

/// The subject of event batches.
pub const EVENTS_SUBJECT: &str = "confab.events";

const VERSION: u8 = 1;
const TYPING: u8 = 1;
const RECEIPT: u8 = 2;
const PRESENCE: u8 = 3;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member of a channel types.
    Typing {
        /// The channel.
        channel: ChannelId,
        /// Who types.
        user: UserId,
        /// The channel's members.
        members: Vec<UserId>,
    },
    /// A member read a channel up to a sequence.
    Receipt {
        /// The channel.
        channel: ChannelId,
        /// Who read.
        user: UserId,
        /// Up to here.
        seq: Seq,
        /// The channel's members.
        members: Vec<UserId>,
    },
    /// A user's devices on the publishing node came (the first) or went
    /// (the last, after the grace period).
    Presence {
        /// The user.
        user: UserId,
        /// Whether any device of theirs is on the publishing node.
        online: bool,
        /// When they were last seen there (ms since the epoch; 0 when online).
        last_seen_ms: u64,
    },
}

/// A batch from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The publishing node's id and start time (`node@ms`), so that a
    /// restarted node's batches are told from its previous life's.
    pub origin: String,
    /// The events, in the order they happened there.
    pub events: Vec<Event>,
}

/// A batch that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable event batch: {0}")]
pub struct BatchError(pub &'static str);

impl Batch {
    /// The bytes published.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + self.origin.len() + 40 * self.events.len());
        out.put_u8(VERSION);
        out.put_u8(self.origin.len().min(255) as u8);
        out.put_slice(&self.origin.as_bytes()[..self.origin.len().min(255)]);
        out.put_u32_le(self.events.len() as u32);
        for e in &self.events {
            match e {
                Event::Typing {
                    channel,
                    user,
                    members,
                } => {
                    out.put_u8(TYPING);
                    out.put_u64_le(channel.0);
                    out.put_u64_le(user.0);
                    put_users(&mut out, members);
                }
                Event::Receipt {
                    channel,
                    user,
                    seq,
                    members,
                } => {
                    out.put_u8(RECEIPT);
                    out.put_u64_le(channel.0);
                    out.put_u64_le(user.0);
                    out.put_u64_le(seq.0);
                    put_users(&mut out, members);
                }
                Event::Presence {
                    user,
                    online,
                    last_seen_ms,
                } => {
                    out.put_u8(PRESENCE);
                    out.put_u64_le(user.0);
                    out.put_u8(u8::from(*online));
                    out.put_u64_le(*last_seen_ms);
                }
            }
        }
        out.freeze()
    }

    /// Decodes a batch.
    pub fn decode(mut b: Bytes) -> Result<Batch, BatchError> {
        let short = || BatchError("truncated");
        if b.try_get_u8().map_err(|_| short())? != VERSION {
            return Err(BatchError("unknown version"));
        }
        let len = b.try_get_u8().map_err(|_| short())? as usize;
        if b.remaining() < len {
            return Err(short());
        }
        let origin = String::from_utf8(b.split_to(len).to_vec())
            .map_err(|_| BatchError("origin is not UTF-8"))?;
        let count = b.try_get_u32_le().map_err(|_| short())? as usize;
        // Each event takes at least 18 bytes (a presence change).
        if count > b.remaining() / 18 {
            return Err(BatchError("event count beyond the batch"));
        }
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let u64_ = |b: &mut Bytes| b.try_get_u64_le().map_err(|_| short());
            events.push(match b.try_get_u8().map_err(|_| short())? {
                TYPING => Event::Typing {
                    channel: ChannelId(u64_(&mut b)?),
                    user: UserId(u64_(&mut b)?),
                    members: take_users(&mut b)?,
                },
                RECEIPT => Event::Receipt {
                    channel: ChannelId(u64_(&mut b)?),
                    user: UserId(u64_(&mut b)?),
                    seq: Seq(u64_(&mut b)?),
                    members: take_users(&mut b)?,
                },
                PRESENCE => Event::Presence {
                    user: UserId(u64_(&mut b)?),
                    online: b.try_get_u8().map_err(|_| short())? != 0,
                    last_seen_ms: u64_(&mut b)?,
                },
                _ => return Err(BatchError("unknown event")),
            });
        }
        if b.has_remaining() {
            return Err(BatchError("trailing bytes"));
        }
        Ok(Batch { origin, events })
    }
}

/// Member lists are most of a batch (a receipt in a group of 100 carries
/// 100 ids), and ids of one channel's members are close to each other:
/// each id goes as the zigzag varint of its difference from the one before,
/// one or two bytes instead of eight for most.
fn put_users(out: &mut BytesMut, users: &[UserId]) {
    let users = &users[..users.len().min(u16::MAX as usize)];
    out.put_u16_le(users.len() as u16);
    let mut prev = 0u64;
    for u in users {
        let delta = u.0.wrapping_sub(prev) as i64;
        put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
        prev = u.0;
    }
}

fn take_users(b: &mut Bytes) -> Result<Vec<UserId>, BatchError> {
    let n = b.try_get_u16_le().map_err(|_| BatchError("truncated"))? as usize;
    if n > b.remaining() {
        return Err(BatchError("user list beyond the batch"));
    }
    let mut users = Vec::with_capacity(n);
    let mut prev = 0u64;
    for _ in 0..n {
        let z = take_varint(b)?;
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        prev = prev.wrapping_add(delta as u64);
        users.push(UserId(prev));
    }
    Ok(users)
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn take_varint(b: &mut Bytes) -> Result<u64, BatchError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b.try_get_u8().map_err(|_| BatchError("truncated"))?;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(BatchError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_comes_back_as_it_went_and_every_truncation_is_refused() {
        let batch = Batch {
            origin: "node-1@1765000000000".into(),
            events: vec![
                Event::Typing {
                    channel: ChannelId(3),
                    user: UserId(1),
                    members: vec![
                        UserId(1),
                        UserId(2),
                        UserId(u64::MAX),
                        UserId(0),
                        UserId(77),
                    ],
                },
                Event::Receipt {
                    channel: ChannelId(3),
                    user: UserId(2),
                    seq: Seq(17),
                    members: vec![UserId(1), UserId(2)],
                },
                Event::Presence {
                    user: UserId(2),
                    online: false,
                    last_seen_ms: 1_765_000_000_123,
                },
            ],
        };
        let bytes = batch.encode();
        assert_eq!(Batch::decode(bytes.clone()).unwrap(), batch);
        for len in 0..bytes.len() {
            assert!(
                Batch::decode(bytes.slice(..len)).is_err(),
                "prefix of {len}"
            );
        }
    }
}
