//! Per-key "visible up to" sequence numbers that readers clamp to.
//!
//! RocksLog writes a group without sync and fsyncs afterwards (so the next
//! group can be staged while the fsync runs); RocksDB makes such writes
//! readable immediately. The watermark is what keeps readers to the durable
//! part: it is raised only after the group's fsync. It lives apart from the
//! sequence counters so a reader never takes a lock the writer holds across
//! its commit; a stripe lock here is held for one map lookup or update.

use std::collections::HashMap;
use std::sync::RwLock;

const STRIPES: usize = 64;

/// Visible-sequence map keyed by a raw id (channel or user).
pub(crate) struct Watermarks {
    stripes: Box<[RwLock<HashMap<u64, u64>>]>,
}

impl Watermarks {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn stripe(&self, id: u64) -> &RwLock<HashMap<u64, u64>> {
        &self.stripes[crate::rocks::mix(id) as usize % STRIPES]
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
    pub(crate) fn raise_all(&self, updates: &HashMap<u64, u64>) {
        let mut by_stripe: Vec<Vec<(u64, u64)>> = vec![Vec::new(); STRIPES];
        for (&id, &seq) in updates {
            by_stripe[crate::rocks::mix(id) as usize % STRIPES].push((id, seq));
        }
        for (stripe, ups) in self.stripes.iter().zip(by_stripe) {
            if ups.is_empty() {
                continue;
            }
            // Poisoning cannot leave a half-raised value (each update is one
            // insert), so recovering the guard is safe.
            let mut map = stripe.write().unwrap_or_else(|e| e.into_inner());
            for (id, seq) in ups {
                // A key without an entry was never loaded by a stage, so it is
                // unclamped already; inserting here could only hide data.
                if let Some(v) = map.get_mut(&id) {
                    *v = (*v).max(seq);
                }
            }
        }
    }
}
