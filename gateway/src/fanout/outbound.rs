//! A connection's bounded outbound queue, as plain data: the shard pushes
//! encoded frames, the connection's writer takes everything queued in one
//! go. The bound is in bytes. When a push would exceed it, droppable frames
//! (typing, presence) already queued are shed first; if that is not
//! enough the connection is a slow consumer and is closed with
//! `SLOW_CONSUMER` (its device resumes from its cursor and loses nothing).
//!
//! An idle connection's queue owns no heap memory. Its frames live in a
//! vector lent by the core's pool while something is queued: the writer
//! takes the whole vector (a swap, no copy) and gives it back to the pool
//! once written, so busy connections reuse storage and idle ones hold none.

use bytes::Bytes;
use confab_protocol::fanout::Header;
use confab_protocol::{ErrorCode, FrameType};
use confab_types::ChannelId;

use crate::vec_pool::VecPool;

/// How a frame may be treated under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Must be delivered (messages, acks, errors) or the connection closes.
    Required,
    /// May be dropped when the queue is full (typing, presence pushes).
    Droppable,
}

/// One queued protocol frame, not yet wrapped for the transport.
#[derive(Debug, Clone)]
pub enum OutFrame {
    /// A frame encoded once, for one connection or shared by several (a
    /// typing notice goes to every member as the same bytes).
    Encoded(FrameType, Bytes),
    /// A fan-out `Message` frame: the recipient's header, then the body
    /// every recipient shares.
    Message {
        /// The message's channel (QUIC sends each channel on its lane).
        channel: ChannelId,
        /// Length prefix or JSON prefix and the recipient's inbox seq.
        header: Header,
        /// The shared body.
        body: Bytes,
    },
    /// Transport bytes written as they are (a WebSocket pong).
    Raw(Bytes),
}

impl OutFrame {
    /// Encoded length of the protocol frame.
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Encoded(_, b) | OutFrame::Raw(b) => b.len(),
            OutFrame::Message { header, body, .. } => header.as_bytes().len() + body.len(),
        }
    }

    /// Whether the frame is empty (never, for a valid frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The protocol frame type (`None` for transport bytes).
    pub fn frame_type(&self) -> Option<FrameType> {
        match self {
            OutFrame::Encoded(t, _) => Some(*t),
            OutFrame::Message { .. } => Some(FrameType::Message),
            OutFrame::Raw(_) => None,
        }
    }
}

/// Why a connection closes, and so what its last frames are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A wire error ends the session: an `Error` frame, then `Close` with
    /// the error's code.
    Error(ErrorCode, String),
    /// The client ended the session (its `Close`, or its transport's
    /// close or end): the protocol says the receiver of a `Close` sends
    /// nothing more, so only the transport closes (WebSocket answers with
    /// its own Close frame, as RFC 6455 requires; QUIC finishes the
    /// stream).
    PeerClosed,
    /// The peer broke the transport's framing (a WebSocket protocol
    /// error): only a transport-level close with this code is sent.
    BrokenFraming {
        /// The WebSocket close code (1002, 1007, 1009).
        ws_code: u16,
        /// The close reason.
        reason: &'static str,
    },
}

impl CloseReason {
    /// The wire error code the protocol-level `Close` carries (0 for a
    /// clean end); broken framing maps to `BAD_FRAME` where the transport
    /// has no framing of its own to close with (QUIC).
    pub fn code(&self) -> u16 {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::Error(code, _) => code.code(),
            CloseReason::BrokenFraming { .. } => ErrorCode::BadFrame.code(),
        }
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        match self {
            CloseReason::PeerClosed => "client closed",
            CloseReason::Error(_, m) => m,
            CloseReason::BrokenFraming { reason, .. } => reason,
        }
    }

    /// `reason` as an error with `code`.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> CloseReason {
        CloseReason::Error(code, message.into())
    }
}

/// Result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// A droppable frame was dropped (queue full).
    Dropped,
    /// The connection became a slow consumer and is closing.
    SlowConsumer,
    /// The connection is already closing; nothing queued.
    Closed,
}

/// Frames taken by, or queued for, a writer.
pub type Frames = Vec<(OutFrame, Priority)>;

/// Spare frame vectors kept per core, and the largest kept.
const SPARE_VECS: usize = 256;
const SPARE_CAPACITY: usize = 64;

thread_local! {
    static SPARE: VecPool<(OutFrame, Priority)> = const { VecPool::new(SPARE_VECS, SPARE_CAPACITY) };
}

/// An empty frame vector, from this core's pool when it has one.
fn spare() -> Frames {
    SPARE.with(VecPool::take)
}

/// Gives a written frame vector back to this core's pool (emptied; one a
/// burst grew large is freed instead).
pub fn recycle(frames: Frames) {
    SPARE.with(|pool| pool.give(frames));
}

/// The queue.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: Frames,
    bytes: usize,
    close: Option<CloseReason>,
}

impl OutQueue {
    /// Queues `frame` within `limit` bytes (see the module comment). The
    /// second value is the change in queued bytes, for a gauge.
    pub fn push(&mut self, frame: OutFrame, priority: Priority, limit: usize) -> (Pushed, isize) {
        if self.close.is_some() {
            return (Pushed::Closed, 0);
        }
        let len = frame.len();
        let before = self.bytes;
        if self.bytes + len > limit {
            if priority == Priority::Droppable {
                return (Pushed::Dropped, 0);
            }
            // Shed what may be shed before giving up on the connection.
            if self.frames.iter().any(|(_, p)| *p == Priority::Droppable) {
                self.frames.retain(|(_, p)| *p == Priority::Required);
                self.bytes = self.frames.iter().map(|(f, _)| f.len()).sum();
            }
            // One frame larger than the whole budget still goes out on an
            // otherwise empty queue: a 100,000-character message must be
            // deliverable to a healthy connection.
            if self.bytes + len > limit && !self.frames.is_empty() {
                self.close = Some(CloseReason::error(
                    ErrorCode::SlowConsumer,
                    "outbound queue full",
                ));
                return (Pushed::SlowConsumer, self.bytes as isize - before as isize);
            }
        }
        self.bytes += len;
        if self.frames.capacity() == 0 {
            self.frames = spare();
        }
        self.frames.push((frame, priority));
        (Pushed::Queued, self.bytes as isize - before as isize)
    }

    /// Asks for a close after what is queued (the first reason wins).
    pub fn close(&mut self, reason: CloseReason) {
        if self.close.is_none() {
            self.close = Some(reason);
        }
    }

    /// Whether a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.close.is_some()
    }

    /// Whether anything (frames or a close) waits for the writer.
    pub fn has_work(&self) -> bool {
        !self.frames.is_empty() || self.close.is_some()
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// Moves every queued frame into `into` and returns the close reason,
    /// if one was asked for (the writer sends it after these frames). The
    /// second value is the bytes taken, for a gauge. The queue keeps no
    /// storage: give `into` to [`recycle`] once written.
    pub fn take(&mut self, into: &mut Frames) -> (Option<CloseReason>, usize) {
        if into.is_empty() {
            std::mem::swap(&mut self.frames, into);
        } else {
            into.append(&mut self.frames);
        }
        recycle(std::mem::take(&mut self.frames));
        let taken = std::mem::take(&mut self.bytes);
        (self.close.clone(), taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> OutFrame {
        OutFrame::Encoded(FrameType::Message, Bytes::from(vec![0; n]))
    }

    #[test]
    fn droppable_frames_go_first_then_slow_consumer() {
        let mut q = OutQueue::default();
        assert_eq!(q.push(frame(40), Priority::Required, 100).0, Pushed::Queued);
        assert_eq!(
            q.push(frame(40), Priority::Droppable, 100).0,
            Pushed::Queued
        );
        // Full for a droppable frame: dropped, connection fine.
        assert_eq!(
            q.push(frame(40), Priority::Droppable, 100).0,
            Pushed::Dropped
        );
        // A required frame sheds the droppable one and fits.
        assert_eq!(
            q.push(frame(50), Priority::Required, 100),
            (Pushed::Queued, 10)
        );
        assert_eq!(q.queued_bytes(), 90);
        // Nothing left to shed: slow consumer.
        assert_eq!(
            q.push(frame(50), Priority::Required, 100).0,
            Pushed::SlowConsumer
        );
        assert_eq!(q.push(frame(1), Priority::Required, 100).0, Pushed::Closed);
        let mut out = Vec::new();
        let (reason, taken) = q.take(&mut out);
        assert_eq!(reason.unwrap().code(), ErrorCode::SlowConsumer.code());
        assert_eq!(taken, 90);
        assert_eq!(
            out.len(),
            2,
            "what was queued before the overflow still goes out"
        );
    }

    #[test]
    fn an_oversize_frame_passes_an_empty_queue() {
        let mut q = OutQueue::default();
        assert_eq!(
            q.push(frame(1000), Priority::Required, 100).0,
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame(1), Priority::Required, 100).0,
            Pushed::SlowConsumer
        );
    }

    #[test]
    fn an_idle_queue_holds_no_memory_and_the_first_close_wins() {
        let mut q = OutQueue::default();
        assert_eq!(q.frames.capacity(), 0);
        assert!(!q.has_work());
        q.close(CloseReason::PeerClosed);
        q.close(CloseReason::error(ErrorCode::GoingAway, "later"));
        assert!(q.has_work());
        let (reason, _) = q.take(&mut Vec::new());
        assert_eq!(reason, Some(CloseReason::PeerClosed));
    }

    #[test]
    fn a_drained_queue_gives_its_storage_back() {
        let mut q = OutQueue::default();
        q.push(frame(10), Priority::Required, 100);
        q.push(frame(10), Priority::Droppable, 100);
        assert!(q.frames.capacity() > 0);
        let mut taken = Vec::new();
        let (_, bytes) = q.take(&mut taken);
        assert_eq!((taken.len(), bytes), (2, 20));
        assert_eq!(q.frames.capacity(), 0, "an idle queue must own nothing");
        // Written and recycled, the storage serves the next push.
        let cap = taken.capacity();
        recycle(taken);
        q.push(frame(10), Priority::Required, 100);
        assert_eq!(q.frames.capacity(), cap);
    }
}
