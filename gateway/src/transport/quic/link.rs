//! A session whose transport lives on another core.
//!
//! A QUIC connection cannot move between cores (its packets arrive on the
//! accepting core's UDP socket), but a user's sessions must all run on the
//! user's home core. So the accepting core keeps the QUIC IO and the home
//! core runs the session exactly as for WebSocket; between them travel
//! decoded client frames one way ([`LinkIn`]) and encoded server frames
//! the other ([`LinkOut`]), through the same lock-free mailboxes as
//! everything else. Each end keeps its links in a per-thread registry: a
//! core is a thread, and only its own thread ever touches its links.
//!
//! Back-pressure: the home side may have at most [`CREDIT_BYTES`] in
//! flight towards the transport ([`LinkCredit`]); beyond that frames wait
//! in the session's bounded outbound queue, which closes a slow consumer
//! as on WebSocket.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use confab_protocol::{ErrorCode, Frame, FrameType};
use tokio::sync::Notify;

use crate::fanout::{CloseReason, OutFrame, Priority};

/// Bytes the home core may send towards a transport before it waits.
pub const CREDIT_BYTES: usize = 512 * 1024;

/// From the transport to the session.
#[derive(Debug)]
pub enum LinkIn {
    /// A decoded client frame.
    Frame(Frame),
    /// Bytes that were not a valid frame.
    Bad {
        /// The wire error to answer with.
        code: ErrorCode,
        /// Detail.
        message: String,
        /// The stream can no longer be read: close the session.
        fatal: bool,
        /// The type of the frame, when its body was malformed.
        frame_type: Option<FrameType>,
    },
    /// The transport is gone.
    Closed,
}

/// From the session to the transport: frames in order, and the close.
pub struct LinkOut {
    /// Frames with how they may be treated.
    pub frames: Vec<(OutFrame, Priority)>,
    /// Their encoded size (credit to give back once written).
    pub bytes: usize,
    /// Close after these frames.
    pub close: Option<CloseReason>,
}

/// Bytes in flight from the home core to a transport; shared by both.
#[derive(Default)]
pub struct LinkCredit {
    in_flight: AtomicUsize,
    freed: Notify,
    closed: AtomicBool,
}

impl LinkCredit {
    /// Waits until `bytes` more may be sent (or the transport is gone),
    /// then takes them.
    pub async fn acquire(&self, bytes: usize) {
        loop {
            let notified = self.freed.notified();
            if self.closed.load(Ordering::Acquire)
                || self.in_flight.load(Ordering::Acquire) < CREDIT_BYTES
            {
                break;
            }
            // The timeout only guards against a lost wake-up across threads.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), notified).await;
        }
        self.in_flight.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back `bytes` written by the transport.
    pub fn release(&self, bytes: usize) {
        self.in_flight.fetch_sub(bytes, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    /// The transport is gone: nobody waits for credit any more.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.freed.notify_waiters();
    }

    /// Whether the transport is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A single-thread queue with a wake-up, for one side of a link.
pub struct LinkQueue<T> {
    items: RefCell<VecDeque<T>>,
    notify: Notify,
}

impl<T> Default for LinkQueue<T> {
    fn default() -> Self {
        LinkQueue {
            items: RefCell::new(VecDeque::new()),
            notify: Notify::new(),
        }
    }
}

impl<T> LinkQueue<T> {
    /// Appends and wakes the consumer.
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) {
        self.items.borrow_mut().extend(items);
        self.notify.notify_one();
    }

    /// Takes everything queued.
    pub fn take(&self, into: &mut Vec<T>) {
        into.extend(self.items.borrow_mut().drain(..));
    }

    /// Waits for a push.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}
