//! Mixing and hashing of the integer ids the write path keys its maps by.
//!
//! The sequence counters, the watermarks and `publish`'s per-group maxima are
//! looked up several times per stored message. With std's SipHash those
//! look-ups were a visible share of the log's own CPU in profiles
//! (docs/benchmarks.md, storage profiles). User and channel ids are assigned by
//! the server; device ids are named by clients (in their `Hello`), but a
//! client cannot see the seed, which is random per map, so it cannot pick
//! ids that collide. One seeded splitmix round per word is then enough.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A 64-bit mixer (splitmix64 finaliser) so sequential ids spread evenly over
/// stripes, writer shards and hash buckets.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A `HashMap` keyed by server-assigned ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, IdHashBuilder>;

/// An empty [`IdMap`] with room for `capacity` entries.
pub(crate) fn id_map<K, V>(capacity: usize) -> IdMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, IdHashBuilder::default())
}

/// Builds [`IdHasher`]s that share one random seed.
#[derive(Clone)]
pub(crate) struct IdHashBuilder {
    seed: u64,
}

impl Default for IdHashBuilder {
    fn default() -> Self {
        // RandomState draws its keys from the OS once per thread and then
        // steps them, so this costs a few nanoseconds, not a syscall.
        Self {
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
        }
    }
}

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.seed)
    }
}

/// One splitmix round per 64-bit word written.
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only ids (u64 newtypes and tuples of them) key these maps; this
        // keeps any other key type correct, not fast.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_types::{DeviceId, UserId};
    use std::hash::Hash;

    fn hash_of<T: Hash>(builder: &IdHashBuilder, value: T) -> u64 {
        builder.hash_one(value)
    }

    #[test]
    fn tuples_hash_by_order_and_sequential_ids_spread_over_buckets() {
        let b = IdHashBuilder::default();
        assert_ne!(
            hash_of(&b, (UserId(1), DeviceId(2))),
            hash_of(&b, (UserId(2), DeviceId(1))),
            "a tuple's fields must not commute"
        );
        // hashbrown picks a bucket from the low bits and a 7-bit tag from
        // the top ones: 4096 sequential ids must spread over both. (An
        // identity hash would fill the buckets evenly and put every tag at
        // 0.) The bounds sit far above the means (4 and 32): a uniformly
        // random hash exceeds one in about one run in 20 million.
        let (mut buckets, mut tags) = (vec![0u32; 1024], vec![0u32; 128]);
        for id in 0..4096u64 {
            let h = hash_of(&b, UserId(id));
            buckets[(h % 1024) as usize] += 1;
            tags[(h >> 57) as usize] += 1;
        }
        let (fullest, most_tagged) = (*buckets.iter().max().unwrap(), *tags.iter().max().unwrap());
        assert!(fullest <= 24, "fullest bucket {fullest} (mean 4)");
        assert!(most_tagged <= 72, "commonest tag {most_tagged} (mean 32)");
    }

    #[test]
    fn maps_are_seeded_independently() {
        let (a, b) = (IdHashBuilder::default(), IdHashBuilder::default());
        assert_ne!(hash_of(&a, 7u64), hash_of(&b, 7u64));
    }
}
