//! A WebSocket connection's outgoing bytes: everything the connection has
//! queued, turned into the buffers of one vectored write. Each frame's
//! small WebSocket and protocol headers go into this core's scratch
//! buffer; a fan-out message's body, shared by every recipient, is always
//! written from where it is, never copied per connection, and so is any
//! other frame of a connection's own that is not small (a page of
//! history, say).

use bytes::{BufMut, Bytes, BytesMut};
use confab_protocol::frame::{self, Frame};
use confab_protocol::{Encoding, ErrorCode};

use super::buffers;
use super::ws::message::opcode;
use super::ws::{self, close};
use crate::fanout::{recycle_frames, CloseReason, OutFrame, Priority};
use crate::shard::error_frame;

/// A connection's own frames (acks, answers) below this size are copied
/// next to their header rather than written as a buffer of their own.
const COPY_BELOW: usize = 256;

/// The buffers that write `frames` (then the close, when one was asked
/// for) as WebSocket messages. The frames' vector goes back to the core's
/// pool: an idle connection holds none.
pub fn gather(
    encoding: Encoding,
    mut frames: Vec<(OutFrame, Priority)>,
    close: Option<&CloseReason>,
) -> Vec<Bytes> {
    buffers::with_scratch(|scratch| {
        let mut parts = Vec::with_capacity(frames.len() * 2 + 1);
        for (f, _) in frames.drain(..) {
            match f {
                OutFrame::Encoded(_, body) => {
                    ws::write_header(scratch, opcode(encoding), body.len());
                    if body.len() < COPY_BELOW {
                        scratch.put_slice(&body);
                    } else {
                        put_part(scratch, &mut parts, body);
                    }
                }
                OutFrame::Message { header, body, .. } => {
                    let head = header.as_bytes();
                    ws::write_header(scratch, opcode(encoding), head.len() + body.len());
                    scratch.put_slice(head);
                    put_part(scratch, &mut parts, body);
                }
                OutFrame::Raw(bytes) => scratch.put_slice(&bytes),
            }
        }
        recycle_frames(frames);
        if let Some(reason) = close {
            put_close(scratch, encoding, reason);
        }
        if !scratch.is_empty() {
            parts.push(scratch.split().freeze());
        }
        parts
    })
}

/// Appends `body` as a part of its own, after what `scratch` holds so far.
fn put_part(scratch: &mut BytesMut, parts: &mut Vec<Bytes>, body: Bytes) {
    if !scratch.is_empty() {
        parts.push(scratch.split().freeze());
    }
    parts.push(body);
}

/// A protocol frame as one WebSocket message.
fn put_frame(out: &mut BytesMut, encoding: Encoding, frame: &Frame) {
    let bytes = encoding.encode(frame);
    ws::write_header(out, opcode(encoding), bytes.len());
    out.put_slice(&bytes);
}

/// The last frames of a closing connection.
fn put_close(out: &mut BytesMut, encoding: Encoding, reason: &CloseReason) {
    let ws_code = match reason {
        CloseReason::BrokenFraming { ws_code, reason } => {
            ws::encode_close(*ws_code, reason, out);
            return;
        }
        CloseReason::PeerClosed => {
            ws::encode_close(close::NORMAL, "", out);
            return;
        }
        CloseReason::Error(code, message) => {
            put_frame(out, encoding, &error_frame(*code, message, None));
            if *code == ErrorCode::GoingAway {
                close::GOING_AWAY
            } else {
                close::app_close_code(code.code())
            }
        }
    };
    let close_frame = Frame::Close(frame::Close {
        code: reason.code(),
        message: reason.message().into(),
    });
    put_frame(out, encoding, &close_frame);
    ws::encode_close(ws_code, reason.message(), out);
}
