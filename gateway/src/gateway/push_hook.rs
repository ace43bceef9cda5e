//! Where the gateway hands off a stored message for a member who has no
//! connected device: the owning core knows (it holds the user's
//! connections), so it raises a push job there, without blocking, for the
//! push service to deliver (or not, per its rules).

/// A stored message that reached a member with no device online.
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

/// Receives push jobs. Called on a core thread: implementations must only
/// queue the job, never block.
pub trait PushSink: Send + Sync + 'static {
    /// A job for a member with no connected device.
    fn offline_delivery(&self, job: PushJob);
}

/// Raises nothing (the jobs are still counted in the core metrics).
pub struct NoPush;

impl PushSink for NoPush {
    fn offline_delivery(&self, _job: PushJob) {}
}
