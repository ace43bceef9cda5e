//! A one-waiter wake-up flag for a connection's task on its core.
//!
//! The shard raises a connection's signals (frames to write, the session
//! closing) from the same thread the connection's task runs on, and each
//! signal has exactly one waiter. That needs a flag and a waker slot, not
//! a `tokio::sync::Notify` with its mutex and waiter list; and it can be
//! polled by hand, which the WebSocket session's state machine needs (it
//! holds no future per wait).

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

/// Raised by the shard, taken by the connection's task. A raise with no
/// one waiting is kept until the next take.
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    /// Raises the signal, waking the task that waits for it.
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Takes the signal if it is raised; otherwise registers `cx`'s task to
    /// be woken when it is.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.raised.replace(false) {
            return Poll::Ready(());
        }
        let waker = match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        self.waker.set(Some(waker));
        Poll::Pending
    }

    /// Waits until the signal is raised, and takes it.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll_take(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker that counts its wake-ups.
    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_raise_before_the_wait_is_kept_and_taken_once() {
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let s = Signal::default();
        s.raise();
        assert!(s.poll_take(&mut cx).is_ready());
        assert!(s.poll_take(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_raise_wakes_the_registered_task_once() {
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let s = Signal::default();
        assert!(s.poll_take(&mut cx).is_pending());
        // Registering again keeps one waker, not two.
        assert!(s.poll_take(&mut cx).is_pending());
        s.raise();
        s.raise();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(s.poll_take(&mut cx).is_ready());
    }
}
