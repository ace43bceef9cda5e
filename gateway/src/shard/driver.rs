//! The loop of a core's thread around its shard: drain the mailbox and the
//! storage completions, run the timers that are due, do what the state
//! asked, then sleep until a push, a completion's wake-up, the next timer
//! or shutdown. Everything that arrived meanwhile is handled in one pass,
//! so a burst costs one wake-up.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::core::Core;
use super::core::CoreMsg;
use super::msg::Input;

/// How long a stopping core waits for its connections to flush their
/// close frames.
const DRAIN: Duration = Duration::from_secs(3);

/// Runs `core` until `shutdown` says stop, then closes every connection
/// with `GOING_AWAY` and keeps serving (link traffic, the last writes)
/// until they are gone and `busy` (the core's transports) says nothing is
/// left, or [`DRAIN`] has passed.
pub async fn run(core: Rc<Core>, mut shutdown: watch::Receiver<bool>, busy: impl Fn() -> bool) {
    let mut stopping_since: Option<Instant> = None;
    let mut msgs = Vec::new();
    loop {
        let mailbox = core.io.bus.mailbox(core.id);
        mailbox.drain(|m| msgs.push(m));
        let now = Instant::now();
        for m in msgs.drain(..) {
            match m {
                CoreMsg::Shard(msg) => core.state().handle(now, Input::Msg(msg)),
                CoreMsg::Remote(task) => task.run(&core),
            }
        }
        core.collect_completions();
        core.state().handle_timeout(Instant::now());
        core.pump();
        core.publish_gauges(mailbox.depth());

        // A dropped watch means the node is gone: stop as well.
        let told = *shutdown.borrow() || shutdown.has_changed().is_err();
        if stopping_since.is_none() && told {
            stopping_since = Some(Instant::now());
            core.handle(Input::Shutdown);
        }
        if let Some(since) = stopping_since {
            if (core.connection_count() == 0 && !busy()) || since.elapsed() > DRAIN {
                return;
            }
        }
        let timer = core.state().poll_timeout();
        // While stopping, poll the connection count now and then too.
        let wake_by = match (timer, stopping_since) {
            (Some(t), Some(_)) => Some(t.min(Instant::now() + Duration::from_millis(20))),
            (None, Some(_)) => Some(Instant::now() + Duration::from_millis(20)),
            (t, None) => t,
        };
        core.arm(wake_by);
        tokio::select! {
            _ = mailbox.wait() => {}
            _ = sleep_until(wake_by) => {}
            _ = core.rearmed() => {}
            _ = shutdown.changed(), if stopping_since.is_none() => {}
        }
    }
}

/// Sleeps until `when`, or for ever when there is no `when`.
pub async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
