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
use crate::ids::{ChannelId, DeviceId, UserId};
use std::collections::HashMap;
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
    channels: HashMap<ChannelId, ChannelCounter>,
    inboxes: HashMap<UserId, u64>,
    /// Per sending device, the highest client message id that has an
    /// idempotency entry on disk (0: none). Clients number their sends
    /// upwards, so almost every new send is above it and needs no lookup to
    /// be known new; only retries (and out-of-order ids) are looked up.
    devices: HashMap<(UserId, DeviceId), u64>,
}

pub(crate) struct Counters {
    stripes: Box<[Mutex<Stripe>]>,
}

// Channel and user ids share the stripe space; salting keeps channel 7 and
// user 7 from always colliding.
const CHANNEL_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

pub(crate) fn channel_stripe(channel: ChannelId) -> usize {
    super::mix(channel.0 ^ CHANNEL_SALT) as usize % STRIPES
}

pub(crate) fn user_stripe(user: UserId) -> usize {
    super::mix(user.0) as usize % STRIPES
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
        let mut guards: Vec<Option<MutexGuard<'_, Stripe>>> = Vec::with_capacity(STRIPES);
        for (i, stripe) in self.stripes.iter().enumerate() {
            if mask & (1 << i) == 0 {
                guards.push(None);
                continue;
            }
            // A stage that panicked with the lock held may have advanced a
            // counter without writing; the counters can no longer be trusted.
            guards.push(Some(stripe.lock().map_err(|_| StorageError::Poisoned)?));
        }
        Ok(Locked { guards })
    }
}

/// The stripes held by one stage.
pub(crate) struct Locked<'a> {
    guards: Vec<Option<MutexGuard<'a, Stripe>>>,
}

impl Locked<'_> {
    fn stripe(&mut self, index: usize) -> &mut Stripe {
        self.guards[index]
            .as_deref_mut()
            .expect("stage locks every stripe its batch touches before allocating")
    }

    /// The channel's counter, loaded with `load` on first use.
    pub(crate) fn channel(
        &mut self,
        channel: ChannelId,
        load: impl FnOnce() -> Result<ChannelCounter, StorageError>,
    ) -> Result<&mut ChannelCounter, StorageError> {
        let stripe = self.stripe(channel_stripe(channel));
        match stripe.channels.entry(channel) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(load()?)),
        }
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
        if stripe.devices.len() >= DEVICES_PER_STRIPE
            && !stripe.devices.contains_key(&(sender, device))
        {
            stripe.devices.clear();
        }
        match stripe.devices.entry((sender, device)) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(load()?)),
        }
    }

    /// The user's last inbox seq, loaded with `load` on first use.
    pub(crate) fn inbox(
        &mut self,
        user: UserId,
        load: impl FnOnce() -> Result<u64, StorageError>,
    ) -> Result<&mut u64, StorageError> {
        let stripe = self.stripe(user_stripe(user));
        match stripe.inboxes.entry(user) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(load()?)),
        }
    }
}
