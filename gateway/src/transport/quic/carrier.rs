//! The transport core's side of a QUIC session: writes what the home core
//! sends onto the connection's carriers (docs/protocol.md §15): responses
//! on the control stream, `Message` frames on lane `channel % 8` (a
//! unidirectional stream each, so a large message in one channel never
//! holds up another), typing and presence pushes as datagrams when they
//! fit. Each carrier has its own task, so a stream waiting for flow
//! control delays only itself; credit goes back to the home core as bytes
//! are written.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use confab_protocol::binary;
use confab_protocol::frame::{self, Frame};
use quinn::{Connection, SendStream, VarInt};

use super::link::{LinkCredit, LinkOut, LinkQueue};
use crate::fanout::{CloseReason, OutFrame, Priority};
use crate::shard::error_frame;

/// Server-opened unidirectional streams carrying `Message` frames.
pub const LANES: usize = 8;

/// The lane of a channel.
pub fn lane_of(channel: u64) -> usize {
    (channel % LANES as u64) as usize
}

/// Work for one carrier task.
enum Item {
    /// Bytes of whole frames, and the credit they hold.
    Chunks(Vec<Bytes>, usize),
    /// Finish the stream (after everything before it) and wait until the
    /// peer has it all.
    Finish,
}

struct Carrier {
    queue: Rc<LinkQueue<Item>>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_carrier(open: Option<SendStream>, conn: Connection, credit: Arc<LinkCredit>) -> Carrier {
    let queue = Rc::new(LinkQueue::default());
    let q = queue.clone();
    let task = tokio::task::spawn_local(async move {
        let mut stream = match open {
            Some(s) => s,
            None => match conn.open_uni().await {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let mut items = Vec::new();
        loop {
            q.take(&mut items);
            if items.is_empty() {
                q.wait().await;
                continue;
            }
            for item in items.drain(..) {
                match item {
                    Item::Chunks(mut chunks, bytes) => {
                        let written = stream.write_all_chunks(&mut chunks).await;
                        credit.release(bytes);
                        if written.is_err() {
                            return;
                        }
                    }
                    Item::Finish => {
                        let _ = stream.finish();
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), stream.stopped()).await;
                        return;
                    }
                }
            }
        }
    });
    Carrier { queue, task }
}

/// The bytes of a close: our `Error` (for an error) then `Close`; none
/// when the client closed (the receiver of a `Close` sends nothing more).
pub fn close_bytes(reason: &CloseReason) -> Vec<u8> {
    let mut v = Vec::new();
    if *reason == CloseReason::PeerClosed {
        return v;
    }
    if let CloseReason::Error(code, message) = reason {
        binary::encode(&error_frame(*code, message, None), &mut v);
    }
    binary::encode(
        &Frame::Close(frame::Close {
            code: reason.code(),
            message: reason.message().into(),
        }),
        &mut v,
    );
    v
}

/// Writes the session's frames until it closes or the connection dies;
/// then closes the connection (with the session's close code).
pub async fn run(
    conn: Connection,
    control: SendStream,
    queue: Rc<LinkQueue<LinkOut>>,
    credit: Arc<LinkCredit>,
) {
    let control = spawn_carrier(Some(control), conn.clone(), credit.clone());
    let mut lanes: [Option<Carrier>; LANES] = Default::default();
    let mut batches = Vec::new();
    let close = 'outer: loop {
        tokio::select! {
            _ = queue.wait() => {}
            _ = conn.closed() => break 'outer None,
        }
        queue.take(&mut batches);
        for batch in batches.drain(..) {
            let mut control_chunks = Vec::new();
            let mut control_bytes = 0;
            for (frame, priority) in batch.frames {
                let len = frame.len();
                match frame {
                    OutFrame::Message {
                        channel,
                        header,
                        body,
                    } => {
                        let lane = lanes[lane_of(channel.0)].get_or_insert_with(|| {
                            spawn_carrier(None, conn.clone(), credit.clone())
                        });
                        let chunks = vec![Bytes::copy_from_slice(header.as_bytes()), body];
                        lane.queue.push_all([Item::Chunks(chunks, len)]);
                    }
                    OutFrame::Encoded(_, bytes) => {
                        if priority == Priority::Droppable
                            && conn.max_datagram_size().is_some_and(|max| len <= max)
                            && conn.send_datagram(bytes.clone()).is_ok()
                        {
                            credit.release(len);
                            continue;
                        }
                        control_bytes += len;
                        control_chunks.push(bytes);
                    }
                    // WebSocket-only transport bytes never reach a link.
                    OutFrame::Raw(_) => credit.release(len),
                }
            }
            if !control_chunks.is_empty() {
                control
                    .queue
                    .push_all([Item::Chunks(control_chunks, control_bytes)]);
            }
            if let Some(reason) = batch.close {
                break 'outer Some(reason);
            }
        }
    };
    match close {
        Some(reason) => {
            let bytes = close_bytes(&reason);
            control
                .queue
                .push_all([Item::Chunks(vec![Bytes::from(bytes)], 0), Item::Finish]);
            let _ = tokio::time::timeout(Duration::from_secs(3), control.task).await;
            conn.close(VarInt::from(reason.code()), reason.message().as_bytes());
        }
        None => control.task.abort(),
    }
    for lane in lanes.into_iter().flatten() {
        lane.task.abort();
    }
}
