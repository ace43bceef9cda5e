//! A WebSocket connection's outgoing bytes: everything the connection has
//! queued, turned into the buffers of one vectored write. Frames' small
//! WebSocket and protocol headers, and every frame below a few hundred
//! bytes, are copied into this core's scratch, cut from one chunk shared
//! by many writes: a typical write is then a single buffer and costs no
//! allocation. A larger body (a fan-out message's, shared by every
//! recipient, or a page of history) is written from where it is, never
//! copied per connection.

use bytes::{BufMut, Bytes, BytesMut};
use confab_protocol::frame::{self, Frame};
use confab_protocol::{Encoding, ErrorCode};

use super::buffers;
use super::ws::message::opcode;
use super::ws::{self, close};
use crate::fanout::{recycle_frames, CloseReason, OutFrame, Priority};
use crate::shard::error_frame;

/// Frames below this size are copied next to their header rather than
/// written as a buffer of their own: copying a few hundred bytes costs
/// less than an iovec, a reference count and a list to hold them.
const COPY_BELOW: usize = 512;

/// The buffers that write `frames` (then the close, when one was asked
/// for) as WebSocket messages. The frames' vector goes back to the core's
/// pool, and so should the returned list once written
/// ([`buffers::give_parts`]): an idle connection holds neither.
pub fn gather(
    encoding: Encoding,
    mut frames: Vec<(OutFrame, Priority)>,
    close: Option<&CloseReason>,
) -> Vec<Bytes> {
    buffers::with_scratch(|scratch| {
        let mut parts = buffers::take_parts();
        for (f, _) in frames.drain(..) {
            match f {
                OutFrame::Encoded(_, body) => {
                    ws::write_header(scratch, opcode(encoding), body.len());
                    put_body(scratch, &mut parts, body);
                }
                OutFrame::Message { header, body, .. } => {
                    let head = header.as_bytes();
                    ws::write_header(scratch, opcode(encoding), head.len() + body.len());
                    scratch.put_slice(head);
                    put_body(scratch, &mut parts, body);
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

/// Appends `body` after what `scratch` holds so far: copied when small,
/// else as a part of its own.
fn put_body(scratch: &mut BytesMut, parts: &mut Vec<Bytes>, body: Bytes) {
    if body.len() < COPY_BELOW {
        scratch.put_slice(&body);
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::fanout::SharedMessage;
    use confab_protocol::FrameType;
    use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, UserId};

    fn message(chars: usize) -> SharedMessage {
        SharedMessage::new(StoredMessage {
            channel: ChannelId(7),
            seq: Seq(42),
            sender: UserId(1),
            device: DeviceId(2),
            client_msg_id: 3,
            timestamp_ms: 1_700_000_000_000,
            text: "x".repeat(chars).into(),
        })
    }

    fn out_frame(shared: &SharedMessage, encoding: Encoding) -> OutFrame {
        OutFrame::Message {
            channel: ChannelId(7),
            header: shared.header(encoding, InboxSeq(9)),
            body: shared.body(encoding).clone(),
        }
    }

    /// What a connection must receive: each protocol frame wrapped whole.
    fn expected(encoding: Encoding, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            ws::message::wrap(&mut out, encoding, f);
        }
        out
    }

    #[test]
    fn small_frames_leave_as_one_buffer_byte_for_byte() {
        for encoding in [Encoding::Binary, Encoding::Json] {
            let ack = Bytes::from_static(b"ack-frame-bytes");
            let shared = message(30);
            let frames = vec![
                (
                    OutFrame::Encoded(FrameType::SendAck, ack.clone()),
                    Priority::Required,
                ),
                (out_frame(&shared, encoding), Priority::Required),
            ];
            let parts = gather(encoding, frames, None);
            assert_eq!(parts.len(), 1, "small frames share one buffer");
            let want = expected(
                encoding,
                &[ack.to_vec(), shared.frame(encoding, InboxSeq(9))],
            );
            assert_eq!(&parts[0][..], &want[..]);
            buffers::give_parts(parts);
        }
    }

    #[test]
    fn a_large_shared_body_is_written_from_where_it_is() {
        let encoding = Encoding::Binary;
        let shared = message(5_000);
        let frames = vec![
            (out_frame(&shared, encoding), Priority::Required),
            (
                OutFrame::Encoded(FrameType::SendAck, Bytes::from_static(b"after")),
                Priority::Required,
            ),
        ];
        let parts = gather(encoding, frames, None);
        assert_eq!(parts.len(), 3, "header, shared body, then the small frame");
        assert_eq!(
            parts[1].as_ptr(),
            shared.body(encoding).as_ptr(),
            "the body every recipient shares was copied"
        );
        let all: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let want = expected(
            encoding,
            &[shared.frame(encoding, InboxSeq(9)), b"after".to_vec()],
        );
        assert_eq!(all, want);
    }
}
