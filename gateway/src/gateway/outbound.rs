//! A connection's bounded outbound queue. The core pushes encoded frames;
//! the connection's writer task takes everything queued in one go and
//! writes it with one syscall (batched writes). Fan-out frames carry the
//! shared, encode-once body as `Bytes` plus a small per-recipient header,
//! so a 100-member fan-out never re-encodes the message.
//!
//! The bound is in bytes. When a push would exceed it, droppable frames
//! (typing, presence) already queued are shed first; if that is not enough
//! the connection is a slow consumer and is closed with `SLOW_CONSUMER`
//! (its device resumes from its cursor and loses nothing).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use confab_protocol::fanout::Header;
use confab_protocol::FrameType;
use tokio::sync::Notify;

use super::metrics::CoreMetrics;

/// How a frame may be treated under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Must be delivered (messages, acks, errors) or the connection closes.
    Required,
    /// May be dropped when the queue is full (typing, presence pushes).
    Droppable,
}

/// One queued protocol frame, not yet wrapped for the transport.
#[derive(Debug)]
pub enum OutFrame {
    /// A frame encoded for this connection alone (the type is kept for
    /// metrics and for choosing a QUIC carrier).
    Owned(FrameType, Vec<u8>),
    /// A fan-out `Message` frame: per-recipient header then the shared body.
    Shared {
        /// The message's channel (QUIC sends each channel on its lane).
        channel: u64,
        /// The recipient's header (length prefix / JSON prefix + inbox seq),
        /// built on the stack.
        header: Header,
        /// The body every recipient shares.
        body: Bytes,
    },
    /// Transport bytes written as they are (a WebSocket pong).
    Raw(Vec<u8>),
}

impl OutFrame {
    /// Encoded length of the protocol frame.
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Owned(_, v) | OutFrame::Raw(v) => v.len(),
            OutFrame::Shared { header, body, .. } => header.as_bytes().len() + body.len(),
        }
    }

    /// Whether the frame is empty (never, for a valid frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The protocol frame type (`None` for transport bytes).
    pub fn frame_type(&self) -> Option<FrameType> {
        match self {
            OutFrame::Owned(t, _) => Some(*t),
            OutFrame::Shared { .. } => Some(FrameType::Message),
            OutFrame::Raw(_) => None,
        }
    }
}

/// Why a connection must close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// confab wire error code (0: normal).
    pub code: u16,
    /// Human-readable reason.
    pub message: String,
}

#[derive(Default)]
struct State {
    frames: VecDeque<(OutFrame, Priority)>,
    bytes: usize,
    close: Option<CloseReason>,
    /// A transport-level close to send instead of the protocol one (the
    /// peer broke the WebSocket framing).
    raw_close: Option<Vec<u8>>,
}

/// The queue, shared between the core (producer) and the writer task.
pub struct Outbound {
    state: RefCell<State>,
    limit: usize,
    notify: Notify,
    /// The core's metrics, whose outbound-bytes gauge follows this queue.
    metrics: Option<Arc<CoreMetrics>>,
}

/// Result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// A droppable frame was dropped (queue full).
    Dropped,
    /// The connection is a slow consumer and is being closed.
    SlowConsumer,
    /// The connection is already closing; nothing queued.
    Closed,
}

impl Outbound {
    /// A queue holding at most `limit_bytes` of frames, counted in the
    /// core's outbound-bytes gauge when `metrics` is given.
    pub fn new(limit_bytes: usize, metrics: Option<Arc<CoreMetrics>>) -> Rc<Outbound> {
        Rc::new(Outbound {
            state: RefCell::default(),
            limit: limit_bytes,
            notify: Notify::new(),
            metrics,
        })
    }

    fn gauge(&self, added: usize, removed: usize) {
        if let Some(m) = &self.metrics {
            m.outbound_bytes.add(added as u64);
            m.outbound_bytes.sub(removed as u64);
        }
    }

    /// Queues a frame.
    pub fn push(&self, frame: OutFrame, priority: Priority) -> Pushed {
        let mut s = self.state.borrow_mut();
        if s.close.is_some() {
            return Pushed::Closed;
        }
        let len = frame.len();
        if s.bytes + len > self.limit {
            if priority == Priority::Droppable {
                return Pushed::Dropped;
            }
            // Shed what may be shed before giving up on the connection.
            let before = s.frames.len();
            s.frames.retain(|(_, p)| *p == Priority::Required);
            if s.frames.len() != before {
                let kept = s.frames.iter().map(|(f, _)| f.len()).sum();
                self.gauge(0, s.bytes - kept);
                s.bytes = kept;
            }
            // One frame larger than the whole budget still goes out on an
            // otherwise empty queue: a 100,000-character message must be
            // deliverable to a healthy connection.
            if s.bytes + len > self.limit && !s.frames.is_empty() {
                s.close = Some(CloseReason {
                    code: confab_protocol::ErrorCode::SlowConsumer.code(),
                    message: "outbound queue full".into(),
                });
                drop(s);
                self.notify.notify_one();
                return Pushed::SlowConsumer;
            }
        }
        s.bytes += len;
        self.gauge(len, 0);
        s.frames.push_back((frame, priority));
        drop(s);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// Asks the writer to flush what is queued, then close with `reason`.
    pub fn close(&self, reason: CloseReason) {
        let mut s = self.state.borrow_mut();
        if s.close.is_none() {
            s.close = Some(reason);
        }
        drop(s);
        self.notify.notify_one();
    }

    /// Closes with transport bytes of the caller's (a WebSocket close
    /// frame with a protocol-error code) instead of a protocol `Close`.
    pub fn push_raw_close(&self, raw: Vec<u8>) {
        let mut s = self.state.borrow_mut();
        s.raw_close = Some(raw);
        if s.close.is_none() {
            s.close = Some(CloseReason {
                code: u16::MAX,
                message: String::new(),
            });
        }
        drop(s);
        self.notify.notify_one();
    }

    /// The transport-level close, if one was set.
    pub fn take_raw_close(&self) -> Option<Vec<u8>> {
        self.state.borrow_mut().raw_close.take()
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.state.borrow().close.is_some()
    }

    /// Takes every queued frame with its priority (and the close reason
    /// once frames are out).
    pub fn take(&self, into: &mut Vec<(OutFrame, Priority)>) -> Option<CloseReason> {
        let mut s = self.state.borrow_mut();
        into.extend(s.frames.drain(..));
        self.gauge(0, s.bytes);
        s.bytes = 0;
        s.close.clone()
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.state.borrow().bytes
    }

    /// Wakes the writer with nothing queued (the transport has bytes of
    /// its own to flush).
    pub fn nudge(&self) {
        self.notify.notify_one();
    }

    /// Waits for a push or a close.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let bytes = self.state.get_mut().bytes;
        self.gauge(0, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> OutFrame {
        OutFrame::Owned(FrameType::Message, vec![0; n])
    }

    #[test]
    fn droppable_frames_go_first_then_slow_consumer() {
        let q = Outbound::new(100, None);
        assert_eq!(q.push(frame(40), Priority::Required), Pushed::Queued);
        assert_eq!(q.push(frame(40), Priority::Droppable), Pushed::Queued);
        // Full for a droppable frame: dropped, connection fine.
        assert_eq!(q.push(frame(40), Priority::Droppable), Pushed::Dropped);
        // A required frame sheds the droppable one and fits.
        assert_eq!(q.push(frame(50), Priority::Required), Pushed::Queued);
        assert_eq!(q.queued_bytes(), 90);
        // Nothing left to shed: slow consumer.
        assert_eq!(q.push(frame(50), Priority::Required), Pushed::SlowConsumer);
        assert_eq!(q.push(frame(1), Priority::Required), Pushed::Closed);
        let mut out = Vec::new();
        let reason = q.take(&mut out).unwrap();
        assert_eq!(reason.code, confab_protocol::ErrorCode::SlowConsumer.code());
        assert_eq!(
            out.len(),
            2,
            "what was queued before the overflow still goes out"
        );
    }

    #[test]
    fn the_core_gauge_follows_the_queued_bytes() {
        let m = Arc::new(CoreMetrics::default());
        let q = Outbound::new(100, Some(m.clone()));
        q.push(frame(30), Priority::Required);
        q.push(frame(30), Priority::Droppable);
        assert_eq!(m.outbound_bytes.get(), 60);
        // Shedding the droppable frame gives its bytes back.
        q.push(frame(60), Priority::Required);
        assert_eq!(m.outbound_bytes.get(), 90);
        let mut out = Vec::new();
        q.take(&mut out);
        assert_eq!(m.outbound_bytes.get(), 0);
        q.push(frame(10), Priority::Required);
        drop(q);
        assert_eq!(
            m.outbound_bytes.get(),
            0,
            "a dropped queue releases its bytes"
        );
    }

    #[test]
    fn an_oversize_frame_passes_an_empty_queue() {
        let q = Outbound::new(100, None);
        assert_eq!(q.push(frame(1000), Priority::Required), Pushed::Queued);
        assert_eq!(q.push(frame(1), Priority::Required), Pushed::SlowConsumer);
    }
}
