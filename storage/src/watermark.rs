//! Per-key "visible up to" sequence numbers that readers clamp to.
//!
//! RocksLog writes a group without sync and fsyncs afterwards (so the next
//! group can be staged while the fsync runs); RocksDB makes such writes
//! readable immediately. The watermark is what keeps readers to the durable
//! part: it is raised only after the group's fsync. It lives apart from the
//! sequence counters so a reader never takes a lock the writer holds across
//! its commit; a stripe lock here is held for one map lookup or update.

use crate::id_hash::{mix, IdMap};
use std::sync::RwLock;

const STRIPES: usize = 64;

/// Visible-sequence map keyed by a raw id (channel or user).
pub(crate) struct Watermarks {
    stripes: Box<[RwLock<IdMap<u64, u64>>]>,
}

impl Watermarks {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| RwLock::new(IdMap::default()))
                .collect(),
        }
    }

    fn stripe(&self, id: u64) -> &RwLock<IdMap<u64, u64>> {
        &self.stripes[stripe_of(id)]
    }

    /// The visible sequence, or `None` when the key has had no write since the
    /// log was opened (everything on disk is then visible).
    pub(crate) fn get(&self, id: u64) -> Option<u64> {
        let map = self.stripe(id).read().unwrap_or_else(|e| e.into_inner());
        map.get(&id).copied()
    }

    /// Records the on-disk sequence found when the writer first loads a key,
    /// before its first write, so a reader that sees `None` knows nothing of
    /// the key is in flight.
    pub(crate) fn init(&self, id: u64, seq: u64) {
        let mut map = self.stripe(id).write().unwrap_or_else(|e| e.into_inner());
        map.entry(id).or_insert(seq);
    }

    /// Raises the visible sequences of many keys, taking each stripe once.
    pub(crate) fn raise_all(&self, updates: &[(u64, u64)]) {
        // A direct message raises three keys: locking each stripe per key is
        // cheaper than sorting.
        if updates.len() <= 8 {
            for &(id, seq) in updates {
                let mut map = self.stripe(id).write().unwrap_or_else(|e| e.into_inner());
                raise(&mut map, id, seq);
            }
            return;
        }
        // A counting sort by stripe: two passes and one allocation, where a
        // vector per stripe cost 64 allocations even for the three keys of
        // one direct message.
        let mut starts = [0usize; STRIPES + 1];
        for &(id, _) in updates {
            starts[stripe_of(id) + 1] += 1;
        }
        for i in 0..STRIPES {
            starts[i + 1] += starts[i];
        }
        let mut next = starts;
        let mut sorted = vec![(0u64, 0u64); updates.len()];
        for &(id, seq) in updates {
            let s = stripe_of(id);
            sorted[next[s]] = (id, seq);
            next[s] += 1;
        }
        for (i, stripe) in self.stripes.iter().enumerate() {
            let group = &sorted[starts[i]..starts[i + 1]];
            if group.is_empty() {
                continue;
            }
            // Poisoning cannot leave a half-raised value (each update is one
            // insert), so recovering the guard is safe.
            let mut map = stripe.write().unwrap_or_else(|e| e.into_inner());
            for &(id, seq) in group {
                raise(&mut map, id, seq);
            }
        }
    }
}

fn raise(map: &mut IdMap<u64, u64>, id: u64, seq: u64) {
    // A key without an entry was never loaded by a stage, so it is
    // unclamped already; inserting here could only hide data.
    if let Some(v) = map.get_mut(&id) {
        *v = (*v).max(seq);
    }
}

fn stripe_of(id: u64) -> usize {
    mix(id) as usize % STRIPES
}
