//! One shard's cache of directory facts: channel members, DM channels,
//! friend lists. Filled on a miss, dropped on an [`Invalidation`] (the
//! directory announces every change), never consulted across shards.

use std::collections::HashMap;
use std::sync::Arc;

use confab_types::{ChannelId, UserId};

use crate::ports::Invalidation;

/// The cache.
#[derive(Default)]
pub struct Cache {
    members: HashMap<ChannelId, Arc<[UserId]>>,
    dms: HashMap<(UserId, UserId), ChannelId>,
    friends: HashMap<UserId, Arc<[UserId]>>,
}

impl Cache {
    /// Cached members of a channel.
    pub fn members(&self, channel: ChannelId) -> Option<Arc<[UserId]>> {
        self.members.get(&channel).cloned()
    }

    /// Caches a channel's members.
    pub fn put_members(&mut self, channel: ChannelId, members: Arc<[UserId]>) {
        self.members.insert(channel, members);
    }

    /// Cached DM channel of a pair.
    pub fn dm(&self, a: UserId, b: UserId) -> Option<ChannelId> {
        self.dms.get(&(a.min(b), a.max(b))).copied()
    }

    /// Caches a DM channel (a pair never changes channel).
    pub fn put_dm(&mut self, a: UserId, b: UserId, channel: ChannelId) {
        self.dms.insert((a.min(b), a.max(b)), channel);
    }

    /// Cached friends of a user.
    pub fn friends(&self, user: UserId) -> Option<Arc<[UserId]>> {
        self.friends.get(&user).cloned()
    }

    /// Caches a user's friends.
    pub fn put_friends(&mut self, user: UserId, friends: Arc<[UserId]>) {
        self.friends.insert(user, friends);
    }

    /// Drops what `inv` makes stale.
    pub fn invalidate(&mut self, inv: &Invalidation) {
        match inv {
            Invalidation::Channel(c) => {
                self.members.remove(c);
            }
            Invalidation::Friends(u) => {
                self.friends.remove(u);
            }
            Invalidation::All => {
                self.members.clear();
                self.friends.clear();
            }
        }
    }
}
