//! Which users have a device connected to this node, shared by every
//! gateway core: the sender's core asks it per recipient whether a push job
//! must ride the message's batch. Sharded by user id so the cores' lookups
//! and the rare connect/disconnect updates seldom meet on one lock.

use std::collections::HashMap;
use std::sync::RwLock;

const SHARDS: usize = 64;

/// Connected users, with their count of cores holding a device.
pub struct OnlineSet {
    shards: Box<[RwLock<HashMap<u64, u32>>]>,
}

impl Default for OnlineSet {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl OnlineSet {
    fn shard(&self, user: u64) -> &RwLock<HashMap<u64, u32>> {
        // Ids are sequential; a multiplicative hash spreads neighbours.
        let h = user.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.shards[h as usize % SHARDS]
    }

    /// Whether `user` has a device connected.
    pub fn contains(&self, user: u64) -> bool {
        let shard = self.shard(user).read().unwrap_or_else(|e| e.into_inner());
        shard.contains_key(&user)
    }

    /// A core got `user`'s first device (`true`) or lost its last (`false`).
    pub fn update(&self, user: u64, online: bool) {
        let mut shard = self.shard(user).write().unwrap_or_else(|e| e.into_inner());
        if online {
            *shard.entry(user).or_default() += 1;
        } else if let Some(n) = shard.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cores_and_forgets_at_zero() {
        let set = OnlineSet::default();
        assert!(!set.contains(7));
        set.update(7, true);
        set.update(7, true);
        set.update(7, false);
        assert!(set.contains(7));
        set.update(7, false);
        assert!(!set.contains(7));
        // A stray "offline" never underflows or marks anyone online.
        set.update(8, false);
        assert!(!set.contains(8));
    }
}
