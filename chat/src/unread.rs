//! The unread count of one channel, kept apart from the rest of the
//! state because it is the one piece whose arithmetic is easy to get wrong
//! (the same message seen twice, read marks from other devices).

use std::collections::BTreeSet;

use confab_client::{Message, UserId};

/// Which messages of a channel the user has not read: those from others
/// above the user's read mark. Counting distinct sequences (not events)
/// keeps the count right when the same message is seen twice, in the
/// summary page and again live or in the inbox replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unread {
    read_up_to: u64,
    seqs: BTreeSet<u64>,
    /// Older unread messages may lie beyond the summary page.
    more: bool,
}

impl Unread {
    /// How many unread messages are known.
    pub fn count(&self) -> usize {
        self.seqs.len()
    }

    /// Whether there may be more than [`Unread::count`] (the channel's
    /// summary page was unread all through).
    pub fn more(&self) -> bool {
        self.more
    }

    /// The user's read mark.
    pub fn read_up_to(&self) -> u64 {
        self.read_up_to
    }

    /// A message arrived.
    pub fn seen(&mut self, seq: u64, from_me: bool) {
        if !from_me && seq > self.read_up_to {
            self.seqs.insert(seq);
        }
    }

    /// The user read up to `seq` (here or on another device).
    pub fn read(&mut self, seq: u64) {
        if seq <= self.read_up_to {
            return;
        }
        self.read_up_to = seq;
        self.seqs = self.seqs.split_off(&(seq + 1));
        if self.seqs.is_empty() {
            self.more = false;
        }
    }

    /// The channel's newest page and the user's read mark from the server,
    /// merged into what is known already.
    pub fn summary(&mut self, read_up_to: u64, latest: &[Message], has_more: bool, me: UserId) {
        let oldest = latest.first().map(|m| m.seq.0);
        for m in latest {
            self.seen(m.seq.0, m.sender_id == me);
        }
        self.read(read_up_to);
        self.more = has_more && oldest.is_some_and(|s| s > self.read_up_to + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::tests::msg;

    #[test]
    fn unread_counts_distinct_messages_of_others_above_the_read_mark() {
        let me = UserId(1);
        let mut u = Unread::default();
        // The summary page: 3..=6, own message 5, read up to 3.
        let page: Vec<Message> = [(3, 2), (4, 2), (5, 1), (6, 2)]
            .iter()
            .map(|&(s, from)| msg(s, from))
            .collect();
        u.summary(3, &page, true, me);
        assert_eq!(u.count(), 2); // 4 and 6
        assert!(!u.more()); // the page reaches back to the read mark
                            // The same message again (live, or replayed) counts once.
        u.seen(6, false);
        u.seen(7, false);
        u.seen(8, true);
        assert_eq!(u.count(), 3);
        // Read on another device up to 6: only 7 is left.
        u.read(6);
        assert_eq!((u.count(), u.read_up_to()), (1, 6));
        // A mark going backwards changes nothing; a message below it is read.
        u.read(2);
        u.seen(5, false);
        assert_eq!(u.count(), 1);
        u.read(8);
        assert_eq!(u.count(), 0);
    }

    #[test]
    fn an_unread_summary_page_says_there_may_be_more() {
        let mut u = Unread::default();
        let page: Vec<Message> = (51..=100).map(|s| msg(s, 2)).collect();
        u.summary(0, &page, true, UserId(1));
        assert_eq!((u.count(), u.more()), (50, true));
        u.read(100);
        assert_eq!((u.count(), u.more()), (0, false));
    }
}
