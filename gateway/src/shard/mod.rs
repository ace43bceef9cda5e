//! The shard: one core's users and everything about them.
//!
//! A node's users are sharded over its cores (`owner_core`); all devices
//! of a user, their place in the live stream, their presence and their
//! rate limits live on one shard. [`ShardState`] is that state as plain
//! data, with no sockets, no runtime and no `.await`: fed by
//! [`ShardState::handle`] and the session's calls, drained by
//! [`ShardState::poll_output`], timed by [`ShardState::poll_timeout`].
//! [`Core`] is the thin driver around it on the core's thread: its
//! mailbox, its storage producer, and the IO the state asks for.

mod cache;
mod conns;
mod core;
mod deliver;
mod driver;
mod encoded;
mod mailbox;
mod msg;
mod pending;
mod presence;
mod signal;
mod state;
mod timers;
mod users;
mod watchers;

#[cfg(test)]
mod tests;

pub use self::cache::Cache;
pub use self::conns::ConnId;
pub use self::core::{Bus, ConnIo, Core, CoreIo, CoreMsg, Remote};
pub use self::deliver::{deliver_event, deliver_stored};
pub use self::driver::{run, sleep_until};
pub use self::mailbox::Mailbox;
pub use self::msg::{Entries, Input, Output, PushEvent, ReadReceipt, ShardMsg, TypingNotice};
pub use self::pending::PendingSend;
pub use self::signal::Signal;
pub use self::state::{decode_error_frame, error_frame, Opening, ShardConfig, ShardState};

use confab_types::UserId;
use smallvec::SmallVec;

/// The core that owns `user`. A multiplicative hash spreads sequential ids
/// evenly.
pub fn owner_core(user: UserId, cores: usize) -> usize {
    let h = user.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) % cores as u64) as usize
}

/// The cores owning `users`, each once, in order.
pub(crate) fn owner_cores(users: &[UserId], cores: usize) -> SmallVec<[usize; 8]> {
    let mut owners: SmallVec<[usize; 8]> = users.iter().map(|u| owner_core(*u, cores)).collect();
    owners.sort_unstable();
    owners.dedup();
    owners
}

/// A message's inbox entries split by the core owning each user (few
/// cores per message: a linear search beats a map).
pub(crate) fn entries_by_core(
    inbox: &[(UserId, confab_types::InboxSeq)],
    cores: usize,
) -> SmallVec<[(usize, msg::Entries); 4]> {
    let mut by_core: SmallVec<[(usize, msg::Entries); 4]> = SmallVec::new();
    for &(user, seq) in inbox {
        let core = owner_core(user, cores);
        match by_core.iter_mut().find(|(c, _)| *c == core) {
            Some((_, entries)) => entries.push((user, seq)),
            None => by_core.push((core, smallvec::smallvec![(user, seq)])),
        }
    }
    by_core
}
