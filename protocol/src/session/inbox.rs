//! Inbox ordering, where "no gap, no duplicate" is kept: entries are
//! delivered in inbox order exactly once, those beyond a hole are held, and
//! a hole that outlives its grace period is filled with a `Sync`.

use std::time::Instant;

use confab_types::InboxSeq;

use super::{ClientSession, Event, Held, State, FILL_GRACE, MAX_HELD, SYNC_PAGE};
use crate::frame::{Frame, Sync};

impl ClientSession {
    /// Delivers an entry that continues the cursor (and whatever it
    /// unblocks), holds one beyond a hole, and drops one already seen.
    pub(super) fn deliver_or_hold(&mut self, inbox_seq: InboxSeq, entry: Held) {
        if inbox_seq == InboxSeq::ZERO || inbox_seq <= self.cursor {
            return;
        }
        if inbox_seq > self.cursor.next() {
            self.held.entry(inbox_seq).or_insert(entry);
            while self.held.len() > MAX_HELD {
                self.held.pop_last();
            }
            return;
        }
        self.step(entry);
        while let Some(next) = self.held.remove(&self.cursor.next()) {
            self.step(next);
        }
        if self.held.is_empty() {
            self.hole_since = None;
        }
    }

    fn step(&mut self, entry: Held) {
        self.cursor = self.cursor.next();
        if let Held::Message(m) = entry {
            self.events.push_back(Event::Message(m));
        }
    }

    /// A hole exists when something is held beyond the cursor: once it has
    /// outlived the grace period, ask for the missing entries unless a
    /// request is already out.
    pub(super) fn fill_if_needed(&mut self, now: Instant) {
        if self.held.is_empty() || self.filling.is_some() || self.state != State::Ready {
            return;
        }
        let since = *self.hole_since.get_or_insert(now);
        if now >= since + FILL_GRACE {
            self.request_fill();
        }
    }

    pub(super) fn request_fill(&mut self) {
        self.hole_since = None;
        let request_id = self.request_id();
        self.filling = Some(request_id);
        self.outbox.push_back(Frame::Sync(Sync {
            request_id,
            after: self.cursor,
            limit: SYNC_PAGE,
        }));
    }
}
