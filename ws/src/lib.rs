//! confab's WebSocket layer (RFC 6455), sans-IO: it turns bytes the
//! gateway has read into handshake decisions and events, and events into
//! bytes to write, and never touches a socket (so it is fuzzed on its own,
//! see `fuzz/`). The thread-per-core IO loops
//! (io_uring or epoll) own the buffers and drive it.
//!
//! # How a connection uses it
//!
//! 1. Read until [`parse_upgrade`] returns an [`Upgrade`]; write its
//!    `response` (or, on error, [`HandshakeError::response`] and close).
//!    Keep the bytes after `consumed`: they may already be frames.
//! 2. Read into a `BytesMut` and call [`Decoder::decode`] until it returns
//!    `Ok(None)`; [`Decoder::pending_frame_len`] says how far to grow the
//!    buffer for a large frame.
//! 3. Answer [`Event::Ping`] with [`encode_pong`]; answer [`Event::Close`]
//!    with a Close frame and close the socket.
//! 4. On a [`WsError`], write [`encode_close`] with [`WsError::close_code`]
//!    and [`WsError::close_reason`], then close. (Shut down the write side
//!    and drain what the client still sends for a moment before dropping
//!    the socket, or unread bytes make the kernel send a reset that can
//!    destroy the Close frame before the client reads it.)
//! 5. Send messages with [`write_header`] followed by the payload: a
//!    fan-out payload is encoded once and only the header is per socket.
//!
//! # What it enforces
//!
//! Masked client frames, zero RSV bits (no extension is negotiated),
//! known opcodes, unfragmented control frames of at most 125 bytes,
//! continuation rules, shortest length encodings, a maximum message size
//! checked from frame headers (before a payload is buffered, fragments
//! added up; an oversize message is reported and skipped), UTF-8 of text
//! messages (checked fragment by fragment), and valid close codes and
//! reasons. Each failure has its close code: 1002 protocol error, 1007
//! invalid payload.
//!
//! # Subprotocols and close codes
//!
//! `confab.v1` selects the binary encoding and `confab.v1.json` the JSON
//! one; a client that offers none gets binary (see [`handshake`]). Besides
//! the standard close codes, confab closes with `4000 + n` for wire error
//! number `n` (for example 4401 for `SLOW_CONSUMER`), see [`close`].

pub mod close;
#[cfg(test)]
mod codec_tests;
pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod message;

pub use decode::{unmask, Decoder};
pub use encode::{
    encode_binary, encode_close, encode_close_empty, encode_ping, encode_pong, encode_text,
    header_len, write_frame_header, write_header,
};
pub use error::{HandshakeError, WsError};
pub use frame::{CloseFrame, Event, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
pub use handshake::{
    accept_key, parse_upgrade, Encoding, Upgrade, SUBPROTOCOL_BINARY, SUBPROTOCOL_JSON,
};
