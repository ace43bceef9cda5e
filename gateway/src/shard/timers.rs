//! A shard's timers, all in one heap: no task or timer per connection.
//! Entries are never cancelled; each one re-checks, when it fires, whether
//! what it guards still holds (a heartbeat timer of a connection that has
//! since been heard from re-arms itself for the new deadline).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use confab_types::UserId;

use super::conns::ConnId;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Has the connection been silent for three heartbeat intervals?
    Heartbeat(ConnId),
    /// The user's offline grace period (generation `gen`) is over.
    Grace(UserId, u64),
    /// Has the user's stream waited on a missing entry long enough to read
    /// it back?
    Gap(UserId),
}

/// The heap.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub fn at(&mut self, when: Instant, timer: Timer) {
        self.heap.push(Reverse((when, timer)));
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// A timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse((_, timer))| timer),
            _ => None,
        }
    }
}
