//! WebSocket framing (RFC 6455 §5) for the server side: the frame types
//! shared by the decoder of the client's masked frames ([`super::decode`])
//! and the encoders of our unmasked ones ([`super::encode`]), all on
//! buffers the gateway owns.
//!
//! # Why our own frame parser
//!
//! The gateway reads into a [`BytesMut`] (io_uring hands back owned
//! buffers) and must not copy a payload more than once: the decoder
//! unmasks the payload in place and splits it off the read buffer, so a
//! single-frame message costs no allocation beyond that split. The header
//! is 2–14 bytes with a handful of rules; tungstenite's `FrameHeader::parse`
//! reads through an `io::Cursor`, reports a reserved opcode only once the
//! whole header has arrived, and accepts over-long length encodings and
//! lengths with the high bit set, which RFC 6455 forbids. Parsing the
//! header here keeps the checks strict and lets every failure come back
//! as a [`WsError`] with its close code. It also keeps the codec
//! independent of the tungstenite client the tests drive it with, so the
//! two cannot share a bug.
//!
//! # What a decoder holds
//!
//! The gateway keeps one [`Decoder`] per connection, so its state is small:
//! the limit, a cursor of validated UTF-8, and the fragments of an
//! unfinished message (an empty [`BytesMut`] holds no allocation). A
//! fragmented message is copied once, into that buffer, and handed over
//! whole when its last fragment arrives, so the buffer does not outlive the
//! message. Control frames in between are returned as they come.

use bytes::Bytes;

/// Longest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest frame header a server writes (no mask): 2 + 8 bytes.
pub const MAX_HEADER_LEN: usize = 10;

/// A frame's opcode (RFC 6455 §5.2), without the reserved values, which
/// the decoder rejects and the encoders cannot produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: a further fragment of a text or binary message.
    Continuation,
    /// 0x1: a text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping; answered with a pong carrying the same payload.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// The opcode's 4-bit value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit value; `None` for reserved values.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// The payload of a Close frame that carried a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code, one that may be sent ([`is_valid`](super::close::is_valid)).
    pub code: u16,
    /// The reason, valid UTF-8, at most 123 bytes.
    pub reason: String,
}

/// A complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A binary message (a confab frame when the encoding is binary).
    Binary(Bytes),
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A ping; answer with a pong carrying the same payload
    /// ([`encode_pong`](super::encode::encode_pong)).
    Ping(Bytes),
    /// A pong (an answer to our ping, or an unsolicited heartbeat).
    Pong(Bytes),
    /// The client starts or answers the closing handshake; `None` when the
    /// frame carried no status code. Answer with a Close frame and close
    /// the connection. The decoder ignores whatever follows.
    Close(Option<CloseFrame>),
    /// A message longer than the decoder's maximum: `len` is its length
    /// as far as it is known (the fragments so far and the frame that
    /// went over). Its bytes are discarded as they arrive; the message
    /// after it is decoded normally.
    TooBig {
        /// The message's length so far, in bytes.
        len: u64,
        /// The decoder's maximum.
        max: usize,
    },
}
