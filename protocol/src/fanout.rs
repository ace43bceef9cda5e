//! Encode once, send to many: a stored message is delivered to every online
//! device of every member (up to 100 members × several devices). The fields
//! every recipient shares are encoded once per encoding, when the first
//! recipient speaking that encoding needs them, into reference-counted
//! [`Bytes`]; only the recipient's inbox sequence and the length prefix
//! differ, and those make a small header built on the stack. A transport
//! writes `header` and `body` with one vectored write.

use std::sync::OnceLock;

use bytes::Bytes;
use confab_types::{InboxSeq, StoredMessage};

use crate::binary::put_message_tail;
use crate::frame::FrameType;
use crate::varint::{varint_len, write_varint, MAX_VARINT_LEN};
use crate::Encoding;

/// A stored message with its shared frame bodies, encoded lazily.
#[derive(Debug)]
pub struct SharedMessage {
    message: StoredMessage,
    binary_tail: OnceLock<Bytes>,
    json_tail: OnceLock<Bytes>,
}

/// The JSON members of a `Message` frame after `inbox_seq`, in order.
#[derive(serde::Serialize)]
struct JsonTail<'a> {
    channel_id: u64,
    seq: u64,
    sender_id: u64,
    sender_device: u64,
    client_msg_id: u64,
    timestamp_ms: u64,
    text: &'a str,
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
    /// Wraps `message`; nothing is encoded yet.
    pub fn new(message: StoredMessage) -> SharedMessage {
        SharedMessage {
            message,
            binary_tail: OnceLock::new(),
            json_tail: OnceLock::new(),
        }
    }

    /// The message.
    pub fn message(&self) -> &StoredMessage {
        &self.message
    }

    /// Whether the body in `encoding` has been encoded.
    pub fn is_encoded(&self, encoding: Encoding) -> bool {
        match encoding {
            Encoding::Binary => self.binary_tail.get().is_some(),
            Encoding::Json => self.json_tail.get().is_some(),
        }
    }

    /// The shared bytes after the per-recipient header, encoded on first
    /// use.
    pub fn body(&self, encoding: Encoding) -> &Bytes {
        match encoding {
            Encoding::Binary => self.binary_tail.get_or_init(|| {
                let mut binary = Vec::with_capacity(self.message.text.len() + 40);
                put_message_tail(&mut binary, &self.message);
                Bytes::from(binary)
            }),
            Encoding::Json => self.json_tail.get_or_init(|| {
                let m = &self.message;
                let tail = JsonTail {
                    channel_id: m.channel.0,
                    seq: m.seq.0,
                    sender_id: m.sender.0,
                    sender_device: m.device.0,
                    client_msg_id: m.client_msg_id,
                    timestamp_ms: m.timestamp_ms,
                    text: &m.text,
                };
                let mut json = serde_json::to_vec(&tail).expect("plain fields serialise");
                // `{...}` becomes `,...}` so it continues the recipient's
                // header.
                json[0] = b',';
                Bytes::from(json)
            }),
        }
    }

    /// The header for a recipient whose inbox sequence is `inbox_seq`.
    pub fn header(&self, encoding: Encoding, inbox_seq: InboxSeq) -> Header {
        match encoding {
            Encoding::Binary => self.binary_header(inbox_seq),
            Encoding::Json => json_header(inbox_seq),
        }
    }

    fn binary_header(&self, inbox_seq: InboxSeq) -> Header {
        let mut h = Header {
            buf: [0; HEADER_CAP],
            len: 0,
        };
        let tail = self.body(Encoding::Binary);
        let body_len = 1 + varint_len(inbox_seq.0) + tail.len();
        let mut tmp = [0u8; MAX_VARINT_LEN];
        let n = write_varint(&mut tmp, body_len as u64);
        h.buf[..n].copy_from_slice(&tmp[..n]);
        h.buf[n] = FrameType::Message.as_u8();
        let m = write_varint(&mut h.buf[n + 1..], inbox_seq.0);
        h.len = n + 1 + m;
        h
    }

    /// One whole frame for a recipient (header and body copied together,
    /// for transports that cannot write vectors).
    pub fn frame(&self, encoding: Encoding, inbox_seq: InboxSeq) -> Vec<u8> {
        let h = self.header(encoding, inbox_seq);
        let body = self.body(encoding);
        let mut v = Vec::with_capacity(h.len + body.len());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(body);
        v
    }
}

fn json_header(inbox_seq: InboxSeq) -> Header {
    let mut h = Header {
        buf: [0; HEADER_CAP],
        len: 0,
    };
    let prefix = br#"{"type":"message","inbox_seq":"#;
    h.buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = inbox_seq.0;
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
