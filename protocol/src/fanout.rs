//! Encode once, send to many: a stored message is delivered to every online
//! device of every member (up to 100 members × several devices). The fields
//! every recipient shares are encoded once into reference-counted [`Bytes`];
//! only the recipient's inbox sequence and the length prefix differ, and
//! those make a small header built on the stack. A transport
//! writes `header` and `body` with one vectored write.

use bytes::Bytes;

use crate::binary::put_message_tail;
use crate::frame::{FrameType, Message};
use crate::varint::{varint_len, write_varint, MAX_VARINT_LEN};

/// The shared part of a `Message` frame, in both encodings.
#[derive(Debug, Clone)]
pub struct SharedMessage {
    binary_tail: Bytes,
    json_tail: Bytes,
}

/// The fields of a stored message, borrowed for encoding. Serialises to the
/// JSON members of a `Message` frame after `inbox_seq`, in that order.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MessageFields<'a> {
    /// The channel.
    pub channel_id: u64,
    /// The channel sequence.
    pub seq: u64,
    /// The sender.
    pub sender_id: u64,
    /// The sender's device.
    pub sender_device: u64,
    /// The sender's client message id.
    pub client_msg_id: u64,
    /// Server time of storing, ms.
    pub timestamp_ms: u64,
    /// The text.
    pub text: &'a str,
}

impl<'a> MessageFields<'a> {
    /// The shared fields of a decoded message.
    pub fn of(m: &'a Message) -> MessageFields<'a> {
        MessageFields {
            channel_id: m.channel_id,
            seq: m.seq,
            sender_id: m.sender_id,
            sender_device: m.sender_device,
            client_msg_id: m.client_msg_id,
            timestamp_ms: m.timestamp_ms,
            text: &m.text,
        }
    }
}

/// Room for the longest header: the JSON one, 30 bytes of prefix and up to
/// 20 digits (the binary one needs at most 5 + 1 + 10).
const HEADER_CAP: usize = 56;

/// The per-recipient start of a frame: length prefix, type byte and inbox
/// sequence (binary), or `{"type":"message","inbox_seq":N` (JSON).
#[derive(Debug, Clone, Copy)]
pub struct Header {
    buf: [u8; HEADER_CAP],
    len: usize,
}

impl Header {
    /// The header bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl SharedMessage {
    /// Encodes the shared fields once.
    pub fn new(m: MessageFields<'_>) -> SharedMessage {
        let mut binary = Vec::with_capacity(m.text.len() + 40);
        put_message_tail(&mut binary, &m);
        let mut json = serde_json::to_vec(&m).expect("plain fields serialise");
        // `{...}` becomes `,...}` so it continues the recipient's header.
        json[0] = b',';
        SharedMessage {
            binary_tail: Bytes::from(binary),
            json_tail: Bytes::from(json),
        }
    }

    /// The shared binary bytes (after the per-recipient header).
    pub fn binary_body(&self) -> &Bytes {
        &self.binary_tail
    }

    /// The shared JSON bytes (after the per-recipient header).
    pub fn json_body(&self) -> &Bytes {
        &self.json_tail
    }

    /// The binary header for a recipient whose inbox sequence is `inbox_seq`.
    pub fn binary_header(&self, inbox_seq: u64) -> Header {
        let mut h = Header {
            buf: [0; HEADER_CAP],
            len: 0,
        };
        let body_len = 1 + varint_len(inbox_seq) + self.binary_tail.len();
        let mut tmp = [0u8; MAX_VARINT_LEN];
        let n = write_varint(&mut tmp, body_len as u64);
        h.buf[..n].copy_from_slice(&tmp[..n]);
        h.buf[n] = FrameType::Message.as_u8();
        let m = write_varint(&mut h.buf[n + 1..], inbox_seq);
        h.len = n + 1 + m;
        h
    }

    /// The JSON header for a recipient whose inbox sequence is `inbox_seq`.
    pub fn json_header(&self, inbox_seq: u64) -> Header {
        let mut h = Header {
            buf: [0; HEADER_CAP],
            len: 0,
        };
        let prefix = br#"{"type":"message","inbox_seq":"#;
        h.buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = inbox_seq;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let d = &digits[i..];
        h.buf[prefix.len()..prefix.len() + d.len()].copy_from_slice(d);
        h.len = prefix.len() + d.len();
        h
    }

    /// One whole binary frame for a recipient (header and body copied
    /// together, for transports that cannot write vectors).
    pub fn binary_frame(&self, inbox_seq: u64) -> Vec<u8> {
        let h = self.binary_header(inbox_seq);
        let mut v = Vec::with_capacity(h.len + self.binary_tail.len());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(&self.binary_tail);
        v
    }

    /// One whole JSON frame for a recipient.
    pub fn json_frame(&self, inbox_seq: u64) -> Vec<u8> {
        let h = self.json_header(inbox_seq);
        let mut v = Vec::with_capacity(h.len + self.json_tail.len());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(&self.json_tail);
        v
    }
}
