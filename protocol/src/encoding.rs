//! The two encodings of the same frames: binary (`confab.v1`, QUIC and
//! WebSocket binary messages) and JSON (`confab.v1.json`, WebSocket text
//! messages), chosen per connection.

use crate::frame::Frame;
use crate::{binary, json, WS_SUBPROTOCOL_BINARY, WS_SUBPROTOCOL_JSON};

/// A connection's frame encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `confab.v1`: length-prefixed binary frames.
    Binary,
    /// `confab.v1.json`: one JSON object per message.
    Json,
}

impl Encoding {
    /// The WebSocket subprotocol that selects this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Binary => WS_SUBPROTOCOL_BINARY,
            Encoding::Json => WS_SUBPROTOCOL_JSON,
        }
    }

    /// `frame` in this encoding.
    pub fn encode(self, frame: &Frame) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(frame, &mut v);
        v
    }

    /// Appends `frame` in this encoding to `out` (a buffer kept for reuse
    /// costs no allocation once grown).
    pub fn encode_into(self, frame: &Frame, out: &mut Vec<u8>) {
        match self {
            Encoding::Binary => binary::encode(frame, out),
            Encoding::Json => json::encode_into(frame, out),
        }
    }
}
