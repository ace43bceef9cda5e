//! The connections of a shard: a slab whose ids carry a generation, so
//! that an id kept after its connection closed (a send still in storage,
//! say) can never reach the connection that reuses the slot.

use std::time::Instant;

use confab_protocol::Encoding;
use confab_types::{DeviceId, InboxSeq, UserId};

use crate::fanout::{OutFrame, OutQueue, Priority};
use crate::metrics::Transport;

/// A connection on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    slot: u32,
    gen: u32,
}

impl ConnId {
    /// The id as one number (the `session_id` of `Welcome`, with the core).
    pub fn as_u64(self) -> u64 {
        ((self.gen as u64) << 32) | self.slot as u64
    }
}

/// Where a connection's stream stands.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Waiting for the user's release point, to know where replay ends.
    Waiting,
    /// Replaying stored entries; live frames wait here in order.
    Replaying(Vec<(OutFrame, Priority)>),
    /// Live.
    Live,
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub user: UserId,
    pub device: DeviceId,
    /// The login session of its token (closed when revoked).
    pub login: u64,
    pub transport: Transport,
    pub encoding: Encoding,
    /// The device's cursor from `Hello`: replay starts after it.
    pub cursor: InboxSeq,
    pub out: OutQueue,
    pub mode: Mode,
    /// Highest inbox seq queued to the device.
    pub delivered: InboxSeq,
    /// Users whose presence this connection watches.
    pub watching: Vec<UserId>,
    /// When the client was last heard from.
    pub last_heard: Instant,
    /// A wake-up for its writer is pending (not yet taken).
    pub wake_pending: bool,
}

struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// The slab.
#[derive(Default)]
pub(crate) struct Conns {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

impl Conns {
    pub fn insert(&mut self, conn: Conn) -> ConnId {
        self.len += 1;
        if let Some(slot) = self.free.pop() {
            let s = &mut self.slots[slot as usize];
            s.gen = s.gen.wrapping_add(1);
            s.conn = Some(conn);
            return ConnId { slot, gen: s.gen };
        }
        self.slots.push(Slot {
            gen: 0,
            conn: Some(conn),
        });
        ConnId {
            slot: (self.slots.len() - 1) as u32,
            gen: 0,
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        let s = self.slots.get(id.slot as usize)?;
        (s.gen == id.gen).then_some(s.conn.as_ref()?)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.gen != id.gen {
            return None;
        }
        s.conn.as_mut()
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.gen != id.gen {
            return None;
        }
        let conn = s.conn.take()?;
        self.free.push(id.slot);
        self.len -= 1;
        Some(conn)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let id = ConnId {
                slot: i as u32,
                gen: s.gen,
            };
            s.conn.as_ref().map(|c| (id, c))
        })
    }
}
