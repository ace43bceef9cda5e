//! A user's live stream in inbox order.
//!
//! Inbox sequences of one user are assigned by the storage writers, but
//! their completions reach the user's shard along different routes
//! (whichever core produced each send), so they can arrive out of order.
//! Each online user has a release point `next`: entries are held until
//! every earlier one has arrived, then released in order. Until the
//! starting point is known (it is read from storage when the user's first
//! device connects) arrivals wait aside. An entry below `next` was already
//! released (or replayed) and is ignored, so nothing goes out twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use confab_types::InboxSeq;

/// The release point of one user; `T` is what an entry carries.
#[derive(Debug)]
pub struct InboxOrder<T> {
    /// Next inbox seq to release; `ZERO` while the start is being read.
    next: InboxSeq,
    /// Arrivals while the start is unknown.
    early: Vec<(InboxSeq, T)>,
    /// Arrivals ahead of `next`.
    ahead: BTreeMap<InboxSeq, T>,
    /// Since when `ahead` has waited on a missing entry.
    stalled_since: Option<Instant>,
}

impl<T> Default for InboxOrder<T> {
    fn default() -> Self {
        InboxOrder {
            next: InboxSeq::ZERO,
            early: Vec::new(),
            ahead: BTreeMap::new(),
            stalled_since: None,
        }
    }
}

impl<T> InboxOrder<T> {
    /// Whether the starting point is known.
    pub fn is_started(&self) -> bool {
        self.next != InboxSeq::ZERO
    }

    /// The last entry released (or covered by the starting point); `None`
    /// while the start is unknown.
    pub fn released_upto(&self) -> Option<InboxSeq> {
        self.is_started().then(|| self.next.prev())
    }

    /// The stream starts after `last`, the user's last stored inbox seq as
    /// read after the user's slot existed: anything that arrived before
    /// the read is covered by it, anything later is released live.
    pub fn start(&mut self, last: InboxSeq, now: Instant, release: impl FnMut(InboxSeq, T)) {
        self.next = last.next();
        for (seq, item) in std::mem::take(&mut self.early) {
            if seq > last {
                self.ahead.insert(seq, item);
            }
        }
        self.release(now, release);
    }

    /// Offers an arrival; whatever is now next in line is released, in
    /// order, through `release`.
    pub fn offer(
        &mut self,
        seq: InboxSeq,
        item: T,
        now: Instant,
        release: impl FnMut(InboxSeq, T),
    ) {
        if !self.is_started() {
            self.early.push((seq, item));
            return;
        }
        if seq < self.next {
            return;
        }
        if seq == self.next && self.ahead.is_empty() {
            // The common case, in order: no map node for it.
            let mut release = release;
            self.next = seq.next();
            release(seq, item);
            return;
        }
        self.ahead.entry(seq).or_insert(item);
        self.release(now, release);
    }

    fn release(&mut self, now: Instant, mut release: impl FnMut(InboxSeq, T)) {
        while let Some(item) = self.ahead.remove(&self.next) {
            let seq = self.next;
            self.next = seq.next();
            release(seq, item);
        }
        self.stalled_since = if self.ahead.is_empty() {
            None
        } else {
            self.stalled_since.or(Some(now))
        };
    }

    /// When the stream has waited `after` on a missing entry: the gap to
    /// read back, `(released up to, first entry held)`.
    pub fn gap(&self, now: Instant, after: Duration) -> Option<(InboxSeq, InboxSeq)> {
        let since = self.stalled_since?;
        let first = *self.ahead.keys().next()?;
        (now.saturating_duration_since(since) >= after).then(|| (self.next.prev(), first))
    }

    /// When a gap started waiting, if one is.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(order: &mut InboxOrder<u64>, seq: u64, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        order.offer(InboxSeq(seq), seq, now, |s, v| {
            assert_eq!(s.0, v);
            out.push(v)
        });
        out
    }

    #[test]
    fn out_of_order_arrivals_are_released_in_order_once() {
        let now = Instant::now();
        let mut o = InboxOrder::default();
        assert!(
            released(&mut o, 3, now).is_empty(),
            "held until the start is known"
        );
        let mut got = Vec::new();
        o.start(InboxSeq(1), now, |_, v| got.push(v));
        assert!(got.is_empty(), "2 is missing");
        assert_eq!(released(&mut o, 4, now), Vec::<u64>::new());
        assert_eq!(o.gap(now, Duration::ZERO), Some((InboxSeq(1), InboxSeq(3))));
        assert_eq!(released(&mut o, 2, now), vec![2, 3, 4]);
        assert_eq!(o.gap(now, Duration::ZERO), None);
        assert_eq!(released(&mut o, 3, now), Vec::<u64>::new(), "never twice");
        assert_eq!(released(&mut o, 5, now), vec![5]);
        assert_eq!(o.released_upto(), Some(InboxSeq(5)));
    }

    #[test]
    fn entries_covered_by_the_start_are_dropped() {
        let now = Instant::now();
        let mut o = InboxOrder::default();
        released(&mut o, 1, now);
        released(&mut o, 2, now);
        let mut got = Vec::new();
        o.start(InboxSeq(2), now, |_, v| got.push(v));
        assert!(
            got.is_empty(),
            "both were stored before the read: replay has them"
        );
        assert_eq!(released(&mut o, 3, now), vec![3]);
    }

    #[test]
    fn a_gap_is_reported_only_after_waiting() {
        let t0 = Instant::now();
        let mut o = InboxOrder::default();
        o.start(InboxSeq::ZERO, t0, |_, _: u64| {});
        released(&mut o, 2, t0);
        assert_eq!(o.gap(t0, Duration::from_secs(1)), None);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            o.gap(later, Duration::from_secs(1)),
            Some((InboxSeq(0), InboxSeq(2)))
        );
    }
}
