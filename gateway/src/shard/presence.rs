//! Presence publish-subscribe between shards. The shard that owns a user
//! is the one place that knows whether they are online; shards whose
//! connections watch the user register once per shard (not per
//! connection), and the owner sends each change once to each of them.
//! The offline grace period (a debounce: a reconnect within it publishes
//! nothing) is kept by the owner with a timer.

use std::time::Instant;

use bytes::Bytes;
use confab_protocol::frame::{self, Frame, PresenceInfo};
use confab_protocol::Encoding;
use confab_types::UserId;
use smallvec::SmallVec;

use super::conns::ConnId;
use super::encoded::encoded;
use super::msg::ShardMsg;
use super::state::ShardState;
use crate::fanout::{OutFrame, Priority};

impl ShardState {
    /// Makes `conn` watch the presence of `targets`.
    pub fn watch(&mut self, now: Instant, conn: ConnId, targets: &[UserId]) {
        let me = self.config.core;
        for &t in targets {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if c.watching.contains(&t) {
                continue;
            }
            c.watching.push(t);
            let list = self.watchers.local.entry(t).or_default();
            list.push(conn);
            if list.len() == 1 {
                let owner = self.owner(t);
                let msg = ShardMsg::Watch {
                    target: t,
                    core: me,
                    add: true,
                };
                self.send_to_core(now, owner, msg);
            }
        }
    }

    /// Stops `conn` watching `target`.
    pub fn unwatch(&mut self, now: Instant, conn: ConnId, target: UserId) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.watching.retain(|t| *t != target);
        }
        self.unwatch_one(now, conn, target);
    }

    pub(crate) fn unwatch_one(&mut self, now: Instant, conn: ConnId, target: UserId) {
        let Some(list) = self.watchers.local.get_mut(&target) else {
            return;
        };
        let before = list.len();
        list.retain(|c| *c != conn);
        if list.len() == before || !list.is_empty() {
            return;
        }
        self.watchers.local.remove(&target);
        let (me, owner) = (self.config.core, self.owner(target));
        let msg = ShardMsg::Watch {
            target,
            core: me,
            add: false,
        };
        self.send_to_core(now, owner, msg);
    }

    /// Tells every shard watching `info.user_id` (owned here).
    pub(crate) fn publish_presence(&mut self, now: Instant, info: PresenceInfo) {
        self.metrics.presence_events.inc();
        let cores: SmallVec<[usize; 4]> = self
            .watchers
            .shards
            .get(&info.user_id)
            .map(|m| m.iter().map(|(c, _)| *c).collect())
            .unwrap_or_default();
        for core in cores {
            self.send_to_core(now, core, ShardMsg::PresenceChanged(info));
        }
    }

    /// Queues a presence change to the connections here that watch it.
    pub(crate) fn presence_local(&mut self, info: PresenceInfo) {
        let Some(list) = self.watchers.local.get(&info.user_id) else {
            return;
        };
        let list = list.clone();
        let frame = Frame::Presence(frame::Presence {
            request_id: 0,
            entries: vec![info],
        });
        let mut encoded = Encoded::default();
        for id in list {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            let bytes = encoded.get(c.encoding, &frame);
            self.push_frame(
                id,
                OutFrame::Encoded(frame.frame_type(), bytes),
                Priority::Droppable,
            );
        }
    }

    /// Which of `users` are online here.
    pub fn online_here(&self, users: &[UserId]) -> Vec<(UserId, bool)> {
        users
            .iter()
            .map(|u| (*u, self.is_online_anywhere(*u)))
            .collect()
    }
}

/// A frame encoded at most once per encoding, for the many connections
/// that get the same bytes.
#[derive(Default)]
pub(crate) struct Encoded {
    binary: Option<Bytes>,
    json: Option<Bytes>,
}

impl Encoded {
    pub fn get(&mut self, encoding: Encoding, frame: &Frame) -> Bytes {
        let slot = match encoding {
            Encoding::Binary => &mut self.binary,
            Encoding::Json => &mut self.json,
        };
        slot.get_or_insert_with(|| encoded(encoding, frame)).clone()
    }
}
