//! Core-to-core mailboxes. Each core owns one multi-producer queue
//! (lock-free `SegQueue`) that every other core, the storage writers'
//! completion callback and the directory's event forwarder push into. A
//! push only wakes the owner when the mailbox was idle, so a burst of N
//! messages costs one wake-up, not N, and the owner drains everything that
//! arrived in one go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_queue::SegQueue;
use tokio::sync::Notify;

/// One core's mailbox.
pub struct Mailbox<T> {
    queue: SegQueue<T>,
    /// Set by the first push after a drain; cleared by the owner before it
    /// drains, so a push racing with the drain always leaves a wake-up.
    armed: AtomicBool,
    notify: Notify,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            queue: SegQueue::new(),
            armed: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues `msg` and wakes the owner if it may be idle.
    pub fn push(&self, msg: T) {
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
    pub fn drain(&self, mut f: impl FnMut(T)) -> usize {
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
pub struct Bus<T> {
    boxes: Arc<[Mailbox<T>]>,
}

impl<T> Clone for Bus<T> {
    fn clone(&self) -> Self {
        Bus {
            boxes: self.boxes.clone(),
        }
    }
}

impl<T> Bus<T> {
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
    pub fn mailbox(&self, i: usize) -> &Mailbox<T> {
        &self.boxes[i]
    }

    /// Sends `msg` to core `i`.
    pub fn send(&self, i: usize, msg: T) {
        self.boxes[i].push(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_takes_everything_and_rearms() {
        let m = Mailbox::default();
        m.push(1);
        m.push(2);
        let mut got = Vec::new();
        assert_eq!(m.drain(|v| got.push(v)), 2);
        assert_eq!(got, [1, 2]);
        // After a drain a new push must arm again (else the owner sleeps).
        m.push(3);
        assert!(m.armed.load(Ordering::Acquire));
        assert_eq!(m.depth(), 1);
    }
}
