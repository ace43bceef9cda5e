//! Where the gateway meets the push service. The owning core of a user
//! knows whether any of their devices is connected, so it tells the push
//! service when the first device comes and the last one goes; a sender's
//! core asks, per recipient, whether a push job should ride the message's
//! storage batch; and the core that delivers a stored message reports what
//! it found, without blocking, so the service can send, keep or settle the
//! job.

/// A stored message that reached a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushJob {
    /// The member to wake.
    pub user: u64,
    /// The message's channel.
    pub channel: u64,
    /// Its sequence in the channel.
    pub seq: u64,
    /// Its place in the member's inbox.
    pub inbox_seq: u64,
    /// Who sent it.
    pub sender: u64,
    /// When it was stored (ms since the epoch).
    pub timestamp_ms: u64,
}

/// What the delivering core found for a member of a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No device connected. `durable`: the job is already in the outbox
    /// (written with the message); otherwise the member went offline
    /// between submit and delivery and the service must store it.
    Offline {
        /// Whether the outbox already holds the job.
        durable: bool,
    },
    /// A device is connected, but the outbox holds a job written at submit
    /// time (the member came online in between): settle it unsent.
    OnlineAfterAll,
}

/// Receives presence transitions and push jobs. Called on core threads:
/// implementations must never block.
pub trait PushSink: Send + Sync + 'static {
    /// Whether a job for `user` should be written with a message now: they
    /// have no device connected to any core.
    fn wants_job(&self, user: u64) -> bool;
    /// `user`'s first device connected (`true`) or last one left (`false`).
    fn presence(&self, user: u64, online: bool);
    /// A stored message reached `job.user`, who is not its sender.
    fn delivered(&self, job: PushJob, found: Found);
}

/// Push off: no job is written or raised (deliveries to members with no
/// device are still counted in the core metrics).
pub struct NoPush;

impl PushSink for NoPush {
    fn wants_job(&self, _user: u64) -> bool {
        false
    }
    fn presence(&self, _user: u64, _online: bool) {}
    fn delivered(&self, _job: PushJob, _found: Found) {}
}
