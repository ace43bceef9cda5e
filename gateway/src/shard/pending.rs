//! Sends handed to storage whose completion has not come back yet. They
//! outlive their connection: a stored message is delivered to everyone
//! even if its sender dropped meanwhile.

use std::collections::HashMap;
use std::time::Instant;

use confab_types::{ChannelId, DeviceId, Text, UserId};

use super::conns::ConnId;

/// One send in storage.
#[derive(Debug)]
pub struct PendingSend {
    /// Where its ack or error goes.
    pub conn: ConnId,
    /// The channel.
    pub channel: ChannelId,
    /// The author.
    pub sender: UserId,
    /// The author's device.
    pub device: DeviceId,
    /// The client's id for it.
    pub client_msg_id: u64,
    /// The text (shared with the storage request, not copied).
    pub text: Text,
    /// Members whose push job rides the message's batch.
    pub push_to: Vec<UserId>,
    /// When it was submitted (store latency).
    pub submitted: Instant,
}

/// The sends in storage, by token.
#[derive(Default)]
pub(crate) struct Pending {
    sends: HashMap<u64, PendingSend>,
    next_token: u64,
}

impl Pending {
    /// Keeps `send` under a new token.
    pub fn insert(&mut self, send: PendingSend) -> u64 {
        self.next_token += 1;
        self.sends.insert(self.next_token, send);
        self.next_token
    }

    /// Takes the send of `token`.
    pub fn remove(&mut self, token: u64) -> Option<PendingSend> {
        self.sends.remove(&token)
    }

    /// Sends in storage.
    pub fn len(&self) -> usize {
        self.sends.len()
    }
}
