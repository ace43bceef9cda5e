//! Fan-out: what a stored message becomes on its way out. A [`Delivery`]
//! is encoded once and shared by every core holding a recipient;
//! [`InboxOrder`] releases each user's entries in inbox order; each
//! connection's [`OutQueue`] bounds what waits for its socket. All of it is
//! plain data, driven by the shard.

mod delivery;
mod outbound;
mod release;

pub use delivery::{Delivery, Origin};
pub use outbound::{recycle as recycle_frames, CloseReason, OutFrame, OutQueue, Priority, Pushed};
pub use release::InboxOrder;
