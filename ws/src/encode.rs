//! The encoders of our unmasked server frames. Writing only a header lets
//! a fan-out payload, encoded once, follow it without a copy.

use bytes::BufMut;

use super::close;
use super::frame::{OpCode, MAX_CONTROL_PAYLOAD};

/// The length of the header [`write_header`] writes for a payload of `len`
/// bytes: 2, 4 or 10.
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    }
}

/// Writes the header of a final (FIN) server frame for a payload of `len`
/// bytes; the caller writes the payload after it. Server frames are never
/// masked. Writing only the header lets a fan-out payload, encoded once,
/// be sent to every recipient without copying it into each message.
pub fn write_header(out: &mut impl BufMut, opcode: OpCode, len: usize) {
    write_frame_header(out, true, opcode, len);
}

/// Writes a server frame header with an explicit FIN bit, for sending a
/// message in fragments: the first frame has the message's opcode, the
/// others [`OpCode::Continuation`], and only the last one has `fin`.
pub fn write_frame_header(out: &mut impl BufMut, fin: bool, opcode: OpCode, len: usize) {
    let b0 = opcode.as_u8() | if fin { 0x80 } else { 0 };
    if len < 126 {
        out.put_slice(&[b0, len as u8]);
    } else if len <= 0xFFFF {
        out.put_slice(&[b0, 126]);
        out.put_u16(len as u16);
    } else {
        out.put_slice(&[b0, 127]);
        out.put_u64(len as u64);
    }
}

/// Appends a complete binary message frame.
pub fn encode_binary(payload: &[u8], out: &mut impl BufMut) {
    write_header(out, OpCode::Binary, payload.len());
    out.put_slice(payload);
}

/// Appends a complete text message frame.
pub fn encode_text(text: &str, out: &mut impl BufMut) {
    write_header(out, OpCode::Text, text.len());
    out.put_slice(text.as_bytes());
}

/// Appends a Close frame with `code` and `reason`. A reason longer than the
/// 123 bytes a control frame leaves for it is cut at a character boundary.
/// `code` should satisfy [`close::is_valid`]: the close codes in
/// [`close`] and [`WsError::close_code`] do.
pub fn encode_close(code: u16, reason: &str, out: &mut impl BufMut) {
    debug_assert!(close::is_valid(code), "close code {code} may not be sent");
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    write_header(out, OpCode::Close, 2 + reason.len());
    out.put_u16(code);
    out.put_slice(reason);
}

/// Appends a Close frame without a status code: the answer to a client's
/// Close frame that carried none.
pub fn encode_close_empty(out: &mut impl BufMut) {
    write_header(out, OpCode::Close, 0);
}

/// Appends a Ping frame. A payload over 125 bytes is cut to 125 (a caller
/// bug: our pings carry a few bytes).
pub fn encode_ping(payload: &[u8], out: &mut impl BufMut) {
    encode_control(OpCode::Ping, payload, out);
}

/// Appends a Pong frame, the answer to a ping with the same payload (which
/// the decoder guarantees is at most 125 bytes).
pub fn encode_pong(payload: &[u8], out: &mut impl BufMut) {
    encode_control(OpCode::Pong, payload, out);
}

fn encode_control(opcode: OpCode, payload: &[u8], out: &mut impl BufMut) {
    debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    write_header(out, opcode, payload.len());
    out.put_slice(payload);
}
