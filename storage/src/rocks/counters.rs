//! In-memory "last assigned" sequence counters, striped by id.
//!
//! A stage locks every stripe its batch touches (ascending order, so two
//! stages can never deadlock) and keeps them locked until its write batch is
//! in the WAL and memtable. That makes "allocate a sequence" and "write it"
//! one step per key: whoever allocates seq k+1 for a user does so after k was
//! written, so each key's written entries are always a prefix 1..=n, in
//! memory, in the WAL, and after crash recovery. Fsync happens after the
//! stripes are released.

use crate::error::StorageError;
use crate::id_hash::{mix, IdMap};
use confab_types::{ChannelId, DeviceId, UserId};
use std::collections::hash_map::Entry;
use std::sync::{Mutex, MutexGuard};

/// 64 so a batch's stripe set fits one `u64` mask.
pub(crate) const STRIPES: usize = 64;

/// Last sequence and timestamp of a channel (the timestamp keeps a channel's
/// commit times non-decreasing across clock steps).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ChannelCounter {
    pub seq: u64,
    pub timestamp_ms: u64,
}

/// Devices whose highest stored client message id a stripe remembers; past
/// it the stripe forgets them all (they are reloaded by one seek each on
/// next use). 64 stripes of this keep about a million devices, some 48 MB.
const DEVICES_PER_STRIPE: usize = 16 * 1024;

#[derive(Default)]
pub(crate) struct Stripe {
    channels: IdMap<ChannelId, ChannelCounter>,
    inboxes: IdMap<UserId, u64>,
    /// Per sending device, the highest client message id that has an
    /// idempotency entry on disk (0: none). Clients number their sends
    /// upwards, so almost every new send is above it and needs no lookup to
    /// be known new; only retries (and out-of-order ids) are looked up.
    devices: IdMap<(UserId, DeviceId), u64>,
}

pub(crate) struct Counters {
    stripes: Box<[Mutex<Stripe>]>,
}

// Channel and user ids share the stripe space; salting keeps channel 7 and
// user 7 from always colliding.
const CHANNEL_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

pub(crate) fn channel_stripe(channel: ChannelId) -> usize {
    mix(channel.0 ^ CHANNEL_SALT) as usize % STRIPES
}

pub(crate) fn user_stripe(user: UserId) -> usize {
    mix(user.0) as usize % STRIPES
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Stripe::default()))
                .collect(),
        }
    }

    /// Locks the stripes whose bits are set in `mask`, lowest first.
    pub(crate) fn lock(&self, mask: u64) -> Result<Locked<'_>, StorageError> {
        let mut guards: [Option<MutexGuard<'_, Stripe>>; STRIPES] = std::array::from_fn(|_| None);
        let mut rest = mask;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            // A stage that panicked with the lock held may have advanced a
            // counter without writing; the counters can no longer be trusted.
            let mut guard = self.stripes[i].lock().map_err(|_| StorageError::Poisoned)?;
            // Forgotten here, between stages, never half-way through one: a
            // stage raises device highs as it goes and relies on them to see
            // a repeat within its own batch. A stage may add up to its batch
            // size above the bound before the next one trims.
            if guard.devices.len() >= DEVICES_PER_STRIPE {
                guard.devices.clear();
            }
            guards[i] = Some(guard);
        }
        Ok(Locked { guards })
    }
}

/// The stripes held by one stage.
pub(crate) struct Locked<'a> {
    guards: [Option<MutexGuard<'a, Stripe>>; STRIPES],
}

impl Locked<'_> {
    fn stripe(&mut self, index: usize) -> &mut Stripe {
        self.guards[index]
            .as_deref_mut()
            .expect("stage locks every stripe its batch touches before allocating")
    }

    /// Loads the channel's counter with `load` unless it is loaded already.
    /// A stage loads every counter it will move before moving any, so a
    /// failed load never leaves another counter ahead of the disk.
    pub(crate) fn load_channel(
        &mut self,
        channel: ChannelId,
        load: impl FnOnce() -> Result<ChannelCounter, StorageError>,
    ) -> Result<(), StorageError> {
        if let Entry::Vacant(e) = self.stripe(channel_stripe(channel)).channels.entry(channel) {
            e.insert(load()?);
        }
        Ok(())
    }

    /// The counter of a channel loaded by [`Self::load_channel`].
    pub(crate) fn channel(&mut self, channel: ChannelId) -> &mut ChannelCounter {
        self.stripe(channel_stripe(channel))
            .channels
            .get_mut(&channel)
            .expect("stage loads every channel counter before moving any")
    }

    /// The highest client message id stored for a sender's device (kept in
    /// the sender's stripe), loaded with `load` on first use.
    pub(crate) fn device_high(
        &mut self,
        sender: UserId,
        device: DeviceId,
        load: impl FnOnce() -> Result<u64, StorageError>,
    ) -> Result<&mut u64, StorageError> {
        let stripe = self.stripe(user_stripe(sender));
        match stripe.devices.entry((sender, device)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => Ok(e.insert(load()?)),
        }
    }

    /// Loads the user's last inbox seq with `load` unless it is loaded
    /// already (see [`Self::load_channel`]).
    pub(crate) fn load_inbox(
        &mut self,
        user: UserId,
        load: impl FnOnce() -> Result<u64, StorageError>,
    ) -> Result<(), StorageError> {
        if let Entry::Vacant(e) = self.stripe(user_stripe(user)).inboxes.entry(user) {
            e.insert(load()?);
        }
        Ok(())
    }

    /// The last inbox seq of a user loaded by [`Self::load_inbox`].
    pub(crate) fn inbox(&mut self, user: UserId) -> &mut u64 {
        self.stripe(user_stripe(user))
            .inboxes
            .get_mut(&user)
            .expect("stage loads every inbox counter before moving any")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_highs_are_forgotten_between_stages_never_during_one() {
        let counters = Counters::new();
        let user = UserId(1);
        let mask = 1 << user_stripe(user);
        let mut locked = counters.lock(mask).unwrap();
        for d in 0..DEVICES_PER_STRIPE as u64 + 10 {
            *locked.device_high(user, DeviceId(d), || Ok(0)).unwrap() = d + 1;
        }
        // Past the bound within one stage: a high raised earlier in the
        // stage is still there (the stage relies on it to see repeats).
        assert_eq!(
            *locked.device_high(user, DeviceId(0), || Ok(999)).unwrap(),
            1
        );
        drop(locked);
        // The next stage starts from an emptied stripe: memory stays bounded
        // and the high is reloaded from disk.
        let mut locked = counters.lock(mask).unwrap();
        assert_eq!(
            *locked.device_high(user, DeviceId(0), || Ok(999)).unwrap(),
            999
        );
    }
}
