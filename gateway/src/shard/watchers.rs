//! Who watches whose presence: per user owned here, the shards that have
//! a watcher (counted, so each change crosses once per shard), and per
//! user watched from here, the local connections.

use std::collections::HashMap;

use confab_types::UserId;
use smallvec::SmallVec;

use super::conns::ConnId;

/// Who watches whom.
#[derive(Default)]
pub(crate) struct Watchers {
    /// Target (owned here) → watching shard → its number of watchers.
    pub shards: HashMap<UserId, SmallVec<[(usize, u32); 2]>>,
    /// Target → connections here watching it.
    pub local: HashMap<UserId, SmallVec<[ConnId; 2]>>,
}

impl Watchers {
    /// Shard `core` starts (`add`) or stops watching `target`.
    pub fn count(&mut self, target: UserId, core: usize, add: bool) {
        let cores = self.shards.entry(target).or_default();
        match cores.iter_mut().position(|(c, _)| *c == core) {
            Some(i) if add => cores[i].1 += 1,
            Some(i) => {
                cores[i].1 -= 1;
                if cores[i].1 == 0 {
                    cores.swap_remove(i);
                }
            }
            None if add => cores.push((core, 1)),
            None => {}
        }
        if cores.is_empty() {
            self.shards.remove(&target);
        }
    }
}
