//! The binary encoding (`confab.v1`): used on QUIC streams and WebSocket
//! binary messages.
//!
//! A frame is `varint length | type byte | fields`, where the length counts
//! the type byte and the fields. Integers are varints, booleans one byte
//! (0 or 1), strings and lists a varint count followed by their contents.
//! The decoder works on a byte slice and never performs IO: like
//! mini-redis's `Frame::check`, it answers [`DecodeError::Incomplete`] when
//! the slice ends inside a frame, and it rejects an oversize frame from its
//! length prefix alone, before any of the body is buffered.

use bytes::Bytes;
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, Text, UserId};

use crate::frame::*;
use crate::varint::{get_varint, put_varint, write_varint, MAX_VARINT_LEN};
use crate::{DecodeError, ErrorCode};

/// Default largest frame, 1.25 MiB, sized from the worst-case encoding of
/// a maximal text: in JSON every character may be written as a `\u`
/// escape, and one outside the Basic Multilingual Plane as two (12 bytes),
/// so 100,000 characters take up to 1,200,000 bytes; the rest is room for
/// the frame's other members and some whitespace. In binary the same text
/// takes at most 400,000 bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1_310_720;

const _: () = assert!(
    DEFAULT_MAX_FRAME_BYTES >= crate::limits::MAX_TEXT_CHARS * MAX_ESCAPED_CHAR_BYTES + 65_536
);

/// The most bytes one character takes in the JSON encoding: a surrogate
/// pair written as two `\u` escapes.
pub const MAX_ESCAPED_CHAR_BYTES: usize = 12;

/// Bytes reserved in front of a body for its length prefix: frames are
/// limited to `u32::MAX` bytes, which takes at most five varint bytes.
const LEN_RESERVE: usize = 5;

/// Appends the binary encoding of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    // The length is only known after the body is written; reserve the
    // longest prefix, then slide the body back if the prefix is shorter.
    out.extend_from_slice(&[0; LEN_RESERVE]);
    out.push(frame.frame_type().as_u8());
    encode_fields(frame, out);
    let body_len = out.len() - start - LEN_RESERVE;
    let mut prefix = [0u8; MAX_VARINT_LEN];
    let n = write_varint(&mut prefix, body_len as u64);
    out[start..start + n].copy_from_slice(&prefix[..n]);
    if n < LEN_RESERVE {
        out.copy_within(start + LEN_RESERVE.., start + n);
        out.truncate(out.len() - (LEN_RESERVE - n));
    }
}

/// The binary encoding of `frame` as a new vector.
pub fn encode_to_vec(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(b as u8);
}

fn put_ids(out: &mut Vec<u8>, ids: &[UserId]) {
    put_varint(out, ids.len() as u64);
    for id in ids {
        put_varint(out, id.0);
    }
}

/// Fields of a `Message` after `inbox_seq`, shared with the fan-out encoder
/// so that both produce identical bytes.
pub(crate) fn put_message_tail(out: &mut Vec<u8>, m: &StoredMessage) {
    put_message_fields(
        out,
        [
            m.channel.0,
            m.seq.0,
            m.sender.0,
            m.device.0,
            m.client_msg_id,
            m.timestamp_ms,
        ],
        &m.text,
    );
}

fn put_message_fields(out: &mut Vec<u8>, fields: [u64; 6], text: &str) {
    for v in fields {
        put_varint(out, v);
    }
    put_str(out, text);
}

fn put_message(out: &mut Vec<u8>, m: &Message) {
    put_varint(out, m.inbox_seq.0);
    put_message_fields(
        out,
        [
            m.channel_id.0,
            m.seq.0,
            m.sender_id.0,
            m.sender_device.0,
            m.client_msg_id,
            m.timestamp_ms,
        ],
        &m.text,
    );
}

fn encode_fields(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Hello(f) => {
            put_varint(out, f.min_version.into());
            put_varint(out, f.max_version.into());
            put_str(out, &f.token);
            put_varint(out, f.device_id.0);
            put_varint(out, f.inbox_cursor.0);
        }
        Frame::Send(f) => {
            put_varint(out, f.client_msg_id);
            match f.target {
                Target::Channel(id) => {
                    out.push(0);
                    put_varint(out, id.0);
                }
                Target::User(id) => {
                    out.push(1);
                    put_varint(out, id.0);
                }
            }
            put_str(out, &f.text);
        }
        Frame::Sync(f) => {
            put_varint(out, f.request_id);
            put_varint(out, f.after.0);
            put_varint(out, f.limit.into());
        }
        Frame::History(f) => {
            put_varint(out, f.request_id);
            put_varint(out, f.channel_id.0);
            match f.anchor {
                HistoryAnchor::Latest => out.push(0),
                HistoryAnchor::Before(seq) => {
                    out.push(1);
                    put_varint(out, seq.0);
                }
                HistoryAnchor::After(seq) => {
                    out.push(2);
                    put_varint(out, seq.0);
                }
            }
            put_varint(out, f.limit.into());
        }
        Frame::Read(f) => {
            put_varint(out, f.channel_id.0);
            put_varint(out, f.seq.0);
        }
        Frame::Typing(f) => put_varint(out, f.channel_id.0),
        Frame::PresenceQuery(f) => {
            put_varint(out, f.request_id);
            put_ids(out, &f.user_ids);
        }
        Frame::PresenceSubscribe(f) => {
            put_varint(out, f.request_id);
            put_ids(out, &f.user_ids);
        }
        Frame::PresenceUnsubscribe(f) => put_ids(out, &f.user_ids),
        Frame::Heartbeat(f) => put_varint(out, f.nonce),
        Frame::Close(f) => {
            put_varint(out, f.code.into());
            put_str(out, &f.message);
        }
        Frame::Welcome(f) => {
            put_varint(out, f.version.into());
            put_varint(out, f.user_id.0);
            put_varint(out, f.session_id);
            put_varint(out, f.heartbeat_interval_ms.into());
            let l = &f.limits;
            for v in [
                l.max_frame_bytes,
                l.max_text_chars,
                l.max_group_members,
                l.max_page,
                l.max_presence_users,
                l.send_rate_per_s,
            ] {
                put_varint(out, v.into());
            }
        }
        Frame::SendAck(f) => {
            put_varint(out, f.client_msg_id);
            put_varint(out, f.channel_id.0);
            put_varint(out, f.seq.0);
            put_varint(out, f.inbox_seq.0);
            put_varint(out, f.timestamp_ms);
            put_bool(out, f.duplicate);
        }
        Frame::Message(m) => put_message(out, m),
        Frame::SyncBatch(f) => {
            put_varint(out, f.request_id);
            put_bool(out, f.has_more);
            put_varint(out, f.messages.len() as u64);
            for m in &f.messages {
                put_message(out, m);
            }
        }
        Frame::HistoryBatch(f) => {
            put_varint(out, f.request_id);
            put_varint(out, f.channel_id.0);
            put_bool(out, f.has_more);
            put_varint(out, f.messages.len() as u64);
            for m in &f.messages {
                put_message(out, m);
            }
        }
        Frame::Presence(f) => {
            put_varint(out, f.request_id);
            put_varint(out, f.entries.len() as u64);
            for e in &f.entries {
                put_varint(out, e.user_id.0);
                put_bool(out, e.online);
                put_varint(out, e.last_seen_ms);
            }
        }
        Frame::Receipt(f) => {
            put_varint(out, f.channel_id.0);
            put_varint(out, f.user_id.0);
            put_varint(out, f.seq.0);
        }
        Frame::TypingEvent(f) => {
            put_varint(out, f.channel_id.0);
            put_varint(out, f.user_id.0);
        }
        Frame::HeartbeatAck(f) => {
            put_varint(out, f.nonce);
            put_varint(out, f.server_time_ms);
        }
        Frame::Error(f) => {
            put_varint(out, f.code.code().into());
            put_str(out, &f.message);
            out.push(f.frame_type);
            put_varint(out, f.request_id);
        }
    }
}

/// Where a frame lies in a buffer, read from its length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameExtent {
    /// Bytes taken by the length prefix.
    pub header_len: usize,
    /// Bytes of type byte plus fields.
    pub body_len: usize,
}

impl FrameExtent {
    /// Header and body together.
    pub fn total(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// Reads the length prefix at the front of `buf`.
///
/// `Ok(None)`: the prefix itself is incomplete. `TooLarge` is reported from
/// the prefix alone; `BadVarint` (or a zero length) means the stream cannot
/// be resynchronised.
pub fn frame_extent(buf: &[u8], max_frame: usize) -> Result<Option<FrameExtent>, DecodeError> {
    let Some((len, header_len)) = get_varint(buf)? else {
        return Ok(None);
    };
    if len > max_frame as u64 {
        return Err(DecodeError::TooLarge {
            len,
            max: max_frame,
        });
    }
    if len == 0 {
        return Err(DecodeError::BadVarint);
    }
    Ok(Some(FrameExtent {
        header_len,
        body_len: len as usize,
    }))
}

/// Decodes one frame from the front of `buf`, returning it and the bytes it
/// took. [`DecodeError::Incomplete`] means `buf` holds only part of it.
/// Message texts are copied out of `buf`; [`decode_bytes`] shares them.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<(Frame, usize), DecodeError> {
    let extent = frame_extent(buf, max_frame)?.ok_or(DecodeError::Incomplete)?;
    if buf.len() < extent.total() {
        return Err(DecodeError::Incomplete);
    }
    let body = Bytes::copy_from_slice(&buf[extent.header_len..extent.total()]);
    let frame = decode_body(&body)?;
    Ok((frame, extent.total()))
}

/// Decodes a buffer that must hold exactly one frame (a WebSocket binary
/// message, a QUIC datagram).
pub fn decode_exact(buf: &[u8], max_frame: usize) -> Result<Frame, DecodeError> {
    decode_bytes(Bytes::copy_from_slice(buf), max_frame)
}

/// Decodes a buffer that must hold exactly one frame; message texts are
/// slices of `buf` (no copy).
pub fn decode_bytes(buf: Bytes, max_frame: usize) -> Result<Frame, DecodeError> {
    // A prefix the message cuts short is an incomplete frame, which
    // section 13.3 answers per frame (only a malformed prefix is fatal).
    let extent = frame_extent(&buf, max_frame)?.ok_or(DecodeError::Incomplete)?;
    if buf.len() < extent.total() {
        // The buffer is the whole frame or nothing: a frame cut short is a
        // malformed frame of its type, which an error can name.
        return Err(match buf.get(extent.header_len) {
            Some(&ty) => match FrameType::from_u8(ty) {
                Some(frame) => DecodeError::Malformed {
                    frame,
                    reason: "the frame ends early",
                },
                None => DecodeError::UnknownType(ty),
            },
            None => DecodeError::Incomplete,
        });
    }
    let frame = decode_body(&buf.slice(extent.header_len..extent.total()))?;
    if extent.total() != buf.len() {
        return Err(DecodeError::Malformed {
            frame: frame.frame_type(),
            reason: "bytes after the frame",
        });
    }
    Ok(frame)
}

/// Decodes a frame body: the type byte and the fields, without the length
/// prefix. Message texts are slices of `body`.
pub fn decode_body(body: &Bytes) -> Result<Frame, DecodeError> {
    let (&ty, fields) = body.split_first().ok_or(DecodeError::Incomplete)?;
    let ty = FrameType::from_u8(ty).ok_or(DecodeError::UnknownType(ty))?;
    let mut r = Reader {
        buf: fields,
        whole: body,
        ty,
    };
    let frame = r.frame()?;
    if !r.buf.is_empty() {
        return Err(r.malformed("bytes after the last field"));
    }
    Ok(frame)
}

/// A cursor over one frame's fields; every read is bounded by the frame.
struct Reader<'a> {
    buf: &'a [u8],
    /// The frame body `buf` lies in, for texts shared without a copy.
    whole: &'a Bytes,
    ty: FrameType,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            frame: self.ty,
            reason,
        }
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        match get_varint(self.buf).map_err(|_| self.malformed("malformed varint"))? {
            Some((v, n)) => {
                self.buf = &self.buf[n..];
                Ok(v)
            }
            None => Err(self.malformed("truncated")),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let v = self.u64()?;
        u32::try_from(v).map_err(|_| self.malformed("integer out of range"))
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let v = self.u64()?;
        u16::try_from(v).map_err(|_| self.malformed("integer out of range"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.malformed("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("boolean is neither 0 nor 1")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u64()?;
        if len > self.buf.len() as u64 {
            return Err(self.malformed("truncated"));
        }
        let (bytes, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8 { frame: self.ty })
    }

    /// A message text: checked once, then a slice of the frame.
    fn text(&mut self) -> Result<Text, DecodeError> {
        let bytes = self.bytes()?;
        Text::try_from(self.whole.slice_ref(bytes))
            .map_err(|_| DecodeError::BadUtf8 { frame: self.ty })
    }

    /// A list count, checked against the bytes left so that a hostile count
    /// cannot make us allocate more than the frame could hold.
    fn count(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        if n > (self.buf.len() / min_item_len) as u64 {
            return Err(self.malformed("list longer than the frame"));
        }
        Ok(n as usize)
    }

    fn ids(&mut self) -> Result<Vec<UserId>, DecodeError> {
        let n = self.count(1)?;
        (0..n).map(|_| self.u64().map(UserId)).collect()
    }

    fn message(&mut self) -> Result<Message, DecodeError> {
        Ok(Message {
            inbox_seq: InboxSeq(self.u64()?),
            channel_id: ChannelId(self.u64()?),
            seq: Seq(self.u64()?),
            sender_id: UserId(self.u64()?),
            sender_device: DeviceId(self.u64()?),
            client_msg_id: self.u64()?,
            timestamp_ms: self.u64()?,
            text: self.text()?,
        })
    }

    fn messages(&mut self) -> Result<Vec<Message>, DecodeError> {
        // Smallest message: seven one-byte varints and an empty string.
        let n = self.count(8)?;
        (0..n).map(|_| self.message()).collect()
    }

    fn frame(&mut self) -> Result<Frame, DecodeError> {
        Ok(match self.ty {
            FrameType::Hello => Frame::Hello(Hello {
                min_version: self.u16()?,
                max_version: self.u16()?,
                token: self.string()?,
                device_id: DeviceId(self.u64()?),
                inbox_cursor: InboxSeq(self.u64()?),
            }),
            FrameType::Send => {
                let client_msg_id = self.u64()?;
                let target = match self.u8()? {
                    0 => Target::Channel(ChannelId(self.u64()?)),
                    1 => Target::User(UserId(self.u64()?)),
                    _ => return Err(self.malformed("unknown target kind")),
                };
                Frame::Send(Send {
                    client_msg_id,
                    target,
                    text: self.text()?,
                })
            }
            FrameType::Sync => Frame::Sync(Sync {
                request_id: self.u64()?,
                after: InboxSeq(self.u64()?),
                limit: self.u32()?,
            }),
            FrameType::History => {
                let request_id = self.u64()?;
                let channel_id = ChannelId(self.u64()?);
                let anchor = match self.u8()? {
                    0 => HistoryAnchor::Latest,
                    1 => HistoryAnchor::Before(Seq(self.u64()?)),
                    2 => HistoryAnchor::After(Seq(self.u64()?)),
                    _ => return Err(self.malformed("unknown history anchor")),
                };
                Frame::History(History {
                    request_id,
                    channel_id,
                    anchor,
                    limit: self.u32()?,
                })
            }
            FrameType::Read => Frame::Read(Read {
                channel_id: ChannelId(self.u64()?),
                seq: Seq(self.u64()?),
            }),
            FrameType::Typing => Frame::Typing(Typing {
                channel_id: ChannelId(self.u64()?),
            }),
            FrameType::PresenceQuery => Frame::PresenceQuery(PresenceQuery {
                request_id: self.u64()?,
                user_ids: self.ids()?,
            }),
            FrameType::PresenceSubscribe => Frame::PresenceSubscribe(PresenceSubscribe {
                request_id: self.u64()?,
                user_ids: self.ids()?,
            }),
            FrameType::PresenceUnsubscribe => Frame::PresenceUnsubscribe(PresenceUnsubscribe {
                user_ids: self.ids()?,
            }),
            FrameType::Heartbeat => Frame::Heartbeat(Heartbeat { nonce: self.u64()? }),
            FrameType::Close => Frame::Close(Close {
                code: self.u16()?,
                message: self.string()?,
            }),
            FrameType::Welcome => Frame::Welcome(Welcome {
                version: self.u16()?,
                user_id: UserId(self.u64()?),
                session_id: self.u64()?,
                heartbeat_interval_ms: self.u32()?,
                limits: Limits {
                    max_frame_bytes: self.u32()?,
                    max_text_chars: self.u32()?,
                    max_group_members: self.u32()?,
                    max_page: self.u32()?,
                    max_presence_users: self.u32()?,
                    send_rate_per_s: self.u32()?,
                },
            }),
            FrameType::SendAck => Frame::SendAck(SendAck {
                client_msg_id: self.u64()?,
                channel_id: ChannelId(self.u64()?),
                seq: Seq(self.u64()?),
                inbox_seq: InboxSeq(self.u64()?),
                timestamp_ms: self.u64()?,
                duplicate: self.bool()?,
            }),
            FrameType::Message => Frame::Message(self.message()?),
            FrameType::SyncBatch => {
                let request_id = self.u64()?;
                let has_more = self.bool()?;
                Frame::SyncBatch(SyncBatch {
                    request_id,
                    has_more,
                    messages: self.messages()?,
                })
            }
            FrameType::HistoryBatch => {
                let request_id = self.u64()?;
                let channel_id = ChannelId(self.u64()?);
                let has_more = self.bool()?;
                Frame::HistoryBatch(HistoryBatch {
                    request_id,
                    channel_id,
                    has_more,
                    messages: self.messages()?,
                })
            }
            FrameType::Presence => {
                let request_id = self.u64()?;
                let n = self.count(3)?;
                let entries = (0..n)
                    .map(|_| {
                        Ok(PresenceInfo {
                            user_id: UserId(self.u64()?),
                            online: self.bool()?,
                            last_seen_ms: self.u64()?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                Frame::Presence(Presence {
                    request_id,
                    entries,
                })
            }
            FrameType::Receipt => Frame::Receipt(Receipt {
                channel_id: ChannelId(self.u64()?),
                user_id: UserId(self.u64()?),
                seq: Seq(self.u64()?),
            }),
            FrameType::TypingEvent => Frame::TypingEvent(TypingEvent {
                channel_id: ChannelId(self.u64()?),
                user_id: UserId(self.u64()?),
            }),
            FrameType::HeartbeatAck => Frame::HeartbeatAck(HeartbeatAck {
                nonce: self.u64()?,
                server_time_ms: self.u64()?,
            }),
            FrameType::Error => Frame::Error(Error {
                code: ErrorCode::from_code(self.u16()?),
                message: self.string()?,
                frame_type: self.u8()?,
                request_id: self.u64()?,
            }),
        })
    }
}
