//! The users a shard owns while they are online (or in their offline grace
//! period): their connections, their place in the live stream, and the
//! rate limits that belong to the user rather than to one device.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_types::ChannelId;
use smallvec::SmallVec;

use super::conns::ConnId;
use crate::fanout::{Delivery, InboxOrder};

/// An online (or recently online) user.
pub(crate) struct UserSlot {
    /// Connected devices.
    pub conns: SmallVec<[ConnId; 2]>,
    /// The live stream in inbox order.
    pub order: InboxOrder<Arc<Delivery>>,
    /// Bumped whenever the offline grace period (re)starts, so a timer of
    /// an earlier one does nothing.
    pub grace_gen: u64,
    /// A gap read is in flight.
    pub refilling: bool,
    /// The read of the stream's starting point in flight: its id, so that
    /// the answer to a read made for an earlier slot is told apart.
    pub reading_start: Option<u64>,
    /// Send tokens (bucket of `send_burst`, `send_rate_per_s` refill).
    tokens: f64,
    refilled: Instant,
    /// Last typing notice per channel.
    typing: SmallVec<[(ChannelId, Instant); 2]>,
}

impl UserSlot {
    /// A user who just came online, with a full send bucket.
    pub fn new(now: Instant, burst: u32) -> UserSlot {
        UserSlot {
            conns: SmallVec::new(),
            order: InboxOrder::default(),
            grace_gen: 0,
            refilling: false,
            reading_start: None,
            tokens: burst as f64,
            refilled: now,
            typing: SmallVec::new(),
        }
    }

    /// Takes a send token if one is left.
    pub fn take_send_token(&mut self, now: Instant, rate_per_s: u32, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate_per_s as f64).min(burst as f64);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a typing notice in `channel` may go out now.
    pub fn take_typing_slot(
        &mut self,
        channel: ChannelId,
        now: Instant,
        interval: Duration,
    ) -> bool {
        match self.typing.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, last)) if now.saturating_duration_since(*last) < interval => false,
            Some((_, last)) => {
                *last = now;
                true
            }
            None => {
                // A user types in few channels at once; forget stale ones.
                self.typing
                    .retain(|(_, last)| now.saturating_duration_since(*last) < interval);
                self.typing.push((channel, now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut u = UserSlot::new(t0, 3);
        assert!((0..3).all(|_| u.take_send_token(t0, 2, 3)));
        assert!(!u.take_send_token(t0, 2, 3));
        let later = t0 + Duration::from_millis(500);
        assert!(
            u.take_send_token(later, 2, 3),
            "one token back after half a second"
        );
        assert!(!u.take_send_token(later, 2, 3));
    }

    #[test]
    fn typing_is_limited_per_channel() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(2);
        let mut u = UserSlot::new(t0, 1);
        assert!(u.take_typing_slot(ChannelId(1), t0, gap));
        assert!(!u.take_typing_slot(ChannelId(1), t0 + Duration::from_secs(1), gap));
        assert!(u.take_typing_slot(ChannelId(2), t0 + Duration::from_secs(1), gap));
        assert!(u.take_typing_slot(ChannelId(1), t0 + gap, gap));
    }
}
