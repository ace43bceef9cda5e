//! confab's wire protocol, sans IO.
//!
//! Everything a peer needs to speak `confab.v1` and nothing that touches a
//! socket or a clock, following quinn-proto: the gateway, the client SDK,
//! the load generator and the fuzzers all drive the same code, each with
//! its own IO. The full byte-level specification is docs/protocol.md.
//!
//! - [`frame`]: the frames, one type each.
//! - [`binary`]: the length-prefixed binary encoding (QUIC, WebSocket binary).
//! - [`json`]: the JSON encoding (WebSocket text, subprotocol `confab.v1.json`).
//! - [`reader`]: splits a byte stream into frames, owning the buffer.
//! - [`fanout`]: encodes a message once for every recipient.
//! - [`Encoding`]: binary or JSON, chosen per connection.
//! - [`session`]: the client's session state machine.
//! - [`limits`]: text length rules and version negotiation.

pub mod binary;
mod encoding;
mod error;
pub mod fanout;
pub mod frame;
pub mod json;
pub mod limits;
pub mod reader;
pub mod session;
pub mod varint;

pub use encoding::Encoding;
pub use error::{DecodeError, ErrorCode};
pub use frame::{Frame, FrameType, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
pub use reader::FrameReader;

/// WebSocket subprotocol for the binary encoding.
pub const WS_SUBPROTOCOL_BINARY: &str = "confab.v1";
/// WebSocket subprotocol for the JSON encoding.
pub const WS_SUBPROTOCOL_JSON: &str = "confab.v1.json";
/// ALPN protocol id on QUIC.
pub const ALPN: &[u8] = b"confab/1";
