//! What the gateway needs from the relational store (who is in a channel,
//! which channel joins two users, who is whose friend) and the per-core
//! cache in front of it. The store answers on the API's runtime; a core
//! asks only on a cache miss, never per message, and drops entries when the
//! API announces a change (in-process `DirectoryEvent`s now, a cluster bus
//! later).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// A boxed, sendable future (the store runs on another runtime).
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a directory lookup failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// The relational facts the gateway reads.
pub trait Directory: Send + Sync + 'static {
    /// Members of a channel; `None` if there is no such channel.
    fn channel_members(&self, channel: u64) -> BoxFut<Result<Option<Arc<[u64]>>, DirectoryError>>;
    /// The 1:1 channel of `a` and `b`, created on first use; `None` if `b`
    /// does not exist.
    fn dm_channel(&self, a: u64, b: u64) -> BoxFut<Result<Option<u64>, DirectoryError>>;
    /// A user's accepted friends.
    fn friends(&self, user: u64) -> BoxFut<Result<Arc<[u64]>, DirectoryError>>;
    /// Everyone who shares a channel (DM or group) with `user`: whose
    /// presence they may ask for on demand.
    fn co_members(&self, user: u64) -> BoxFut<Result<Arc<[u64]>, DirectoryError>>;
}

/// Verifies bearer tokens locally (signature, expiry, revocation list in
/// memory): no round trip per connection.
pub trait Authenticator: Send + Sync + 'static {
    /// The (user, login session) a token belongs to, or the wire error to
    /// answer with.
    fn verify(&self, token: &str) -> Result<(u64, u64), confab_protocol::ErrorCode>;
}

/// A change that invalidates cached directory facts.
#[derive(Debug, Clone)]
pub enum Invalidation {
    /// A channel's membership changed.
    Channel(u64),
    /// A user's friend list changed.
    Friends(u64),
    /// Events were missed: drop everything.
    All,
}

/// One core's cache.
#[derive(Default)]
pub struct Cache {
    members: HashMap<u64, Rc<[u64]>>,
    dms: HashMap<(u64, u64), u64>,
    friends: HashMap<u64, Rc<[u64]>>,
}

impl Cache {
    /// Cached members of a channel.
    pub fn members(&self, channel: u64) -> Option<Rc<[u64]>> {
        self.members.get(&channel).cloned()
    }

    /// Caches a channel's members.
    pub fn put_members(&mut self, channel: u64, members: &[u64]) -> Rc<[u64]> {
        let rc: Rc<[u64]> = members.into();
        self.members.insert(channel, rc.clone());
        rc
    }

    /// Cached DM channel of a pair.
    pub fn dm(&self, a: u64, b: u64) -> Option<u64> {
        self.dms.get(&(a.min(b), a.max(b))).copied()
    }

    /// Caches a DM channel (pairs never change channel).
    pub fn put_dm(&mut self, a: u64, b: u64, channel: u64) {
        self.dms.insert((a.min(b), a.max(b)), channel);
    }

    /// Cached friends of a user.
    pub fn friends(&self, user: u64) -> Option<Rc<[u64]>> {
        self.friends.get(&user).cloned()
    }

    /// Caches a user's friends.
    pub fn put_friends(&mut self, user: u64, friends: &[u64]) -> Rc<[u64]> {
        let rc: Rc<[u64]> = friends.into();
        self.friends.insert(user, rc.clone());
        rc
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
