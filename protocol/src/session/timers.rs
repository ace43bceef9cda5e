//! The session's clock: the caller asks when to wake it and wakes it then,
//! so heartbeats, the silence deadline, send retries and the grace period
//! before filling a hole all run without a timer of the session's own.

use std::time::{Duration, Instant};

use super::{ClientSession, Event, State, DEFAULT_HEARTBEAT, FILL_GRACE};
use crate::frame::{Frame, Heartbeat};

impl ClientSession {
    /// When [`ClientSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        match self.state {
            State::Handshaking => {
                if let Some(t) = self.handshake_started {
                    earliest(t + 3 * DEFAULT_HEARTBEAT);
                }
            }
            State::Ready => {
                if let Some(t) = self.last_received {
                    earliest(t + 3 * self.heartbeat);
                }
                if let Some(t) = self.last_heartbeat {
                    earliest(t + self.heartbeat);
                }
                for p in self.pending.values() {
                    if let Some(t) = p.retry_at {
                        earliest(t);
                    }
                }
                if let (Some(t), None) = (self.hole_since, self.filling) {
                    earliest(t + FILL_GRACE);
                }
            }
            State::Disconnected | State::Closed => {}
        }
        at
    }

    /// Acts on the clock: heartbeats, the silence deadline, send retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Handshaking => {
                if self
                    .handshake_started
                    .is_some_and(|t| now >= t + 3 * DEFAULT_HEARTBEAT)
                {
                    self.timed_out();
                }
            }
            State::Ready => {
                if self
                    .last_received
                    .is_some_and(|t| now >= t + 3 * self.heartbeat)
                {
                    self.timed_out();
                    return;
                }
                if self
                    .last_heartbeat
                    .is_none_or(|t| now >= t + self.heartbeat)
                {
                    let nonce = self.request_id();
                    self.heartbeats_out.insert(nonce, now);
                    // Only the newest few matter for round-trip times.
                    while self.heartbeats_out.len() > 8 {
                        self.heartbeats_out.pop_first();
                    }
                    self.last_heartbeat = Some(now);
                    self.outbox.push_back(Frame::Heartbeat(Heartbeat { nonce }));
                }
                for p in self.pending.values_mut() {
                    if p.retry_at.is_some_and(|t| now >= t) {
                        p.retry_at = None;
                        p.attempts += 1;
                        self.outbox.push_back(Frame::Send(p.frame.clone()));
                    }
                }
                self.fill_if_needed(now);
            }
            State::Disconnected | State::Closed => {}
        }
    }

    fn timed_out(&mut self) {
        self.disconnected();
        self.events.push_back(Event::TimedOut);
    }
}

/// How long to wait before reconnect attempt `attempt` (1-based):
/// exponential from 250 ms, capped at 30 s, with jitter taken from `random`
/// so that clients dropped together do not return together. Pass any
/// random number; the function itself has no source of randomness.
pub fn reconnect_delay(attempt: u32, random: u64) -> Duration {
    let base_ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(7));
    let cap_ms = base_ms.min(30_000);
    // Half fixed, half random: never immediately, never all at once.
    let half = cap_ms / 2;
    Duration::from_millis(half + random % (half + 1))
}
