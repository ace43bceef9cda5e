//! A stored message on its way to the online devices of its recipients.
//! It is made once, on the core whose sender stored it (or on the core
//! that read it back to fill a gap), and shared by `Arc` with every core
//! that holds a recipient. Its frame body is encoded at most once per
//! encoding, and only when a recipient speaks that encoding.

use std::time::Instant;

use confab_protocol::fanout::SharedMessage;
use confab_protocol::Encoding;
use confab_types::{InboxSeq, StoredMessage, UserId};

use super::outbound::OutFrame;

/// Where a delivery came from, which decides whether it may raise push
/// jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Just stored; `push_to` are the members whose push job was written
    /// with the message (they had no device online at submit).
    Stored {
        /// Members with a job in the outbox.
        push_to: Vec<UserId>,
    },
    /// Read back from storage to fill a gap: it was pushed (or not) when
    /// it was first delivered and must not be pushed again.
    Refill,
}

/// A stored message, encoded lazily for fan-out.
#[derive(Debug)]
pub struct Delivery {
    shared: SharedMessage,
    /// Just stored, or read back.
    pub origin: Origin,
    /// When the storage completion reached the gateway: delivery latency
    /// counts from here.
    pub committed: Instant,
}

impl Delivery {
    /// A delivery of `message`.
    pub fn new(message: StoredMessage, origin: Origin, committed: Instant) -> Delivery {
        Delivery {
            shared: SharedMessage::new(message),
            origin,
            committed,
        }
    }

    /// The message.
    pub fn message(&self) -> &StoredMessage {
        self.shared.message()
    }

    /// Whether a push job may follow this delivery to `user`, and whether
    /// the outbox already holds it.
    pub fn push_job(&self, user: UserId) -> Option<bool> {
        match &self.origin {
            Origin::Stored { push_to } if user != self.message().sender => {
                Some(push_to.contains(&user))
            }
            _ => None,
        }
    }

    /// The `Message` frame for a recipient whose inbox seq is `inbox_seq`:
    /// a small header of its own and the body every recipient shares.
    pub fn frame(&self, encoding: Encoding, inbox_seq: InboxSeq) -> OutFrame {
        OutFrame::Message {
            channel: self.message().channel,
            header: self.shared.header(encoding, inbox_seq),
            body: self.shared.body(encoding).clone(),
        }
    }

    /// Whether the body in `encoding` was encoded (tests: JSON only when a
    /// JSON recipient exists).
    pub fn is_encoded(&self, encoding: Encoding) -> bool {
        self.shared.is_encoded(encoding)
    }
}
