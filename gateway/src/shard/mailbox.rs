//! Core-to-core mailboxes. Each core owns one multi-producer queue
//! (lock-free `SegQueue`) that every other core, the storage writers'
//! completion callback and the directory's event forwarder push into. A
//! push only wakes the owner when the mailbox was idle, so a burst of N
//! messages costs one wake-up, not N, and the owner drains everything that
//! arrived in one go.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_queue::SegQueue;
use tokio::sync::Notify;

use super::core::Core;
use super::msg::ShardMsg;

/// Work a transport hands to another core (a connection's hand-over, QUIC
/// link traffic): it runs on that core's thread, with that core.
pub struct Remote(RemoteTask);

type RemoteTask = Box<dyn FnOnce(&Rc<Core>) + Send>;

impl Remote {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce(&Rc<Core>) + Send + 'static) -> Remote {
        Remote(Box::new(f))
    }

    /// Runs it.
    pub fn run(self, core: &Rc<Core>) {
        (self.0)(core)
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote")
    }
}

/// What a core's mailbox carries.
#[derive(Debug)]
pub enum CoreMsg {
    /// For the shard's state.
    Shard(ShardMsg),
    /// For the core's transports and sessions.
    Remote(Remote),
}

/// One core's mailbox.
pub struct Mailbox {
    queue: SegQueue<CoreMsg>,
    /// Set by the first push after a drain; cleared by the owner before it
    /// drains, so a push racing with the drain always leaves a wake-up.
    armed: AtomicBool,
    notify: Notify,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            queue: SegQueue::new(),
            armed: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }
}

impl Mailbox {
    /// Queues `msg` and wakes the owner if it may be idle.
    pub fn push(&self, msg: CoreMsg) {
        self.queue.push(msg);
        self.wake();
    }

    /// Wakes the owner (also used by the storage writers when completions
    /// are ready) unless a wake-up is already pending.
    pub fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits until something was pushed or woken since the last drain.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Takes everything queued now. Disarms first: a push after this point
    /// re-arms and notifies, so nothing is left waiting without a wake-up.
    pub fn drain(&self, mut f: impl FnMut(CoreMsg)) -> usize {
        self.armed.store(false, Ordering::Release);
        let mut n = 0;
        while let Some(msg) = self.queue.pop() {
            f(msg);
            n += 1;
        }
        n
    }

    /// Messages waiting (for the queue-depth gauge).
    pub fn depth(&self) -> usize {
        self.queue.len()
    }
}

/// Every core's mailbox, indexed by core.
#[derive(Clone)]
pub struct Bus {
    boxes: Arc<[Mailbox]>,
}

impl Bus {
    /// A bus for `cores` cores.
    pub fn new(cores: usize) -> Self {
        Bus {
            boxes: (0..cores).map(|_| Mailbox::default()).collect(),
        }
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.boxes.len()
    }

    /// Core `i`'s mailbox.
    pub fn mailbox(&self, i: usize) -> &Mailbox {
        &self.boxes[i]
    }

    /// Sends `msg` to core `i`.
    pub fn send(&self, i: usize, msg: CoreMsg) {
        self.boxes[i].push(msg);
    }

    /// Sends a shard message to core `i`.
    pub fn send_shard(&self, i: usize, msg: ShardMsg) {
        self.send(i, CoreMsg::Shard(msg));
    }

    /// Runs `f` on core `i`.
    pub fn run_on(&self, i: usize, f: impl FnOnce(&Rc<Core>) + Send + 'static) {
        self.send(i, CoreMsg::Remote(Remote::new(f)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Invalidation;

    #[test]
    fn drain_takes_everything_and_rearms() {
        let m = Mailbox::default();
        m.push(CoreMsg::Shard(ShardMsg::Invalidate(Invalidation::All)));
        m.push(CoreMsg::Shard(ShardMsg::Invalidate(Invalidation::All)));
        assert_eq!(m.drain(|_| {}), 2);
        // After a drain a new push must arm again (else the owner sleeps).
        m.push(CoreMsg::Shard(ShardMsg::Invalidate(Invalidation::All)));
        assert!(m.armed.load(Ordering::Acquire));
        assert_eq!(m.depth(), 1);
    }
}
