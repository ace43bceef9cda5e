//! confab's frames as WebSocket messages: binary messages for
//! `confab.v1`, text messages for `confab.v1.json`, one frame each.

use confab_protocol::frame::Frame;
use confab_protocol::{DecodeError, Encoding};

use super::{write_header, Event, OpCode};

/// The WebSocket opcode of an encoding's messages.
pub fn opcode(encoding: Encoding) -> OpCode {
    match encoding {
        Encoding::Binary => OpCode::Binary,
        Encoding::Json => OpCode::Text,
    }
}

/// Wraps an encoded protocol frame as one WebSocket message.
pub fn wrap(out: &mut Vec<u8>, encoding: Encoding, frame: &[u8]) {
    write_header(out, opcode(encoding), frame.len());
    out.extend_from_slice(frame);
}

/// A WebSocket message as a protocol frame.
pub fn decode_frame(encoding: Encoding, event: Event, max: usize) -> Result<Frame, DecodeError> {
    match (encoding, event) {
        (Encoding::Binary, Event::Binary(b)) => confab_protocol::binary::decode_bytes(b, max),
        (Encoding::Json, Event::Text(t)) => confab_protocol::json::decode(&t, max),
        (Encoding::Binary, _) => Err(DecodeError::Json(
            "a text message on the binary subprotocol confab.v1".into(),
        )),
        _ => Err(DecodeError::Json(
            "a binary message on the JSON subprotocol confab.v1.json".into(),
        )),
    }
}
