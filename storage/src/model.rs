//! The values that cross the storage API: what the gateway asks to append, what
//! it gets back, and what reads return.

use crate::error::InvalidRequest;
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, Text, UserId};
use std::borrow::Cow;

/// Largest group the store fans a message out to (sender included).
pub const MAX_RECIPIENTS: usize = confab_types::MAX_GROUP_MEMBERS;

/// Largest message text in bytes; matches the protocol's 1 MiB frame limit so a
/// frame the gateway accepted always fits.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// Page sizes above this are clamped, so one read cannot pin a huge snapshot
/// range or allocate without bound.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// One message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Channel the message is posted to.
    pub channel: ChannelId,
    /// Author.
    pub sender: UserId,
    /// Device the author sent it from (scopes `client_msg_id`).
    pub device: DeviceId,
    /// Id chosen by the client; a retry with the same (sender, device, id)
    /// within the idempotency window is answered with the first result.
    pub client_msg_id: u64,
    /// Members whose inbox gets a pointer: every member of the channel, the
    /// sender included so their other devices sync. Repeats are collapsed.
    pub recipients: Vec<UserId>,
    /// The text, validated by the caller (shared, not copied).
    pub text: Text,
    /// Recipients to write a push job for (those with no device online when
    /// the message was submitted). The job rides the message's own batch,
    /// so no crash can keep one without the other. Users not among
    /// `recipients`, the sender, and repeats are ignored; a duplicate
    /// (retried) message writes none.
    pub push_to: Vec<UserId>,
}

impl AppendRequest {
    /// Checks the limits the store enforces, without touching any state.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(InvalidRequest::TextTooLong {
                len: self.text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let count = self.unique_recipients().len();
        if count > MAX_RECIPIENTS {
            return Err(InvalidRequest::TooManyRecipients {
                count,
                max: MAX_RECIPIENTS,
            });
        }
        Ok(())
    }

    /// Recipients with repeats removed, first occurrence order kept. Borrows in
    /// the common case (no repeats) so the hot path does not allocate.
    pub(crate) fn unique_recipients(&self) -> Cow<'_, [UserId]> {
        let r = &self.recipients;
        let has_repeat = if r.len() <= 8 {
            (1..r.len()).any(|i| r[..i].contains(&r[i]))
        } else {
            let mut sorted = r.clone();
            sorted.sort_unstable();
            sorted.windows(2).any(|w| w[0] == w[1])
        };
        if !has_repeat {
            return Cow::Borrowed(r);
        }
        let mut seen = std::collections::HashSet::with_capacity(r.len());
        Cow::Owned(r.iter().copied().filter(|u| seen.insert(*u)).collect())
    }
}

/// Where a stored message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The channel.
    pub channel: ChannelId,
    /// Channel sequence (gapless from 1 per channel).
    pub seq: Seq,
    /// Server commit time in ms since the epoch.
    pub timestamp_ms: u64,
    /// The inbox pointer written for each recipient: (user, inbox seq). Empty for
    /// a duplicate, since a retry fans nothing out again.
    pub inbox: Vec<(UserId, InboxSeq)>,
    /// The sender's own inbox sequence for the message (0 when the sender
    /// was not among the recipients). Kept for duplicates too, so a retried
    /// send is acknowledged exactly like the first one and the sending
    /// device's cursor lands on the same entry.
    pub sender_inbox_seq: InboxSeq,
    /// True when this request repeated an earlier (sender, device,
    /// client_msg_id); `channel`, `seq` and `timestamp_ms` are the original's.
    pub duplicate: bool,
}

/// The sender's entry among the pointers just written (0 if not a recipient).
pub(crate) fn sender_seq(inbox: &[(UserId, InboxSeq)], sender: UserId) -> InboxSeq {
    inbox
        .iter()
        .find(|(u, _)| *u == sender)
        .map_or(InboxSeq::ZERO, |&(_, s)| s)
}

/// The outbox entries a stored request writes: one per member of
/// `push_to` that got an inbox pointer, never the sender.
pub(crate) fn push_jobs<'a>(
    req: &'a AppendRequest,
    seq: Seq,
    inbox: &'a [(UserId, InboxSeq)],
    timestamp_ms: u64,
) -> impl Iterator<Item = OutboxEntry> + 'a {
    req.push_to
        .iter()
        .enumerate()
        .filter(move |&(i, &user)| user != req.sender && !req.push_to[..i].contains(&user))
        .filter_map(move |(_, &user)| {
            let &(_, inbox_seq) = inbox.iter().find(|(u, _)| *u == user)?;
            Some(OutboxEntry {
                key: OutboxKey {
                    user,
                    channel: req.channel,
                    seq,
                },
                inbox_seq,
                sender: req.sender,
                timestamp_ms,
            })
        })
}

/// One entry of a user's inbox, resolved to the message it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Position in the user's inbox (gapless from 1).
    pub inbox_seq: InboxSeq,
    /// The message.
    pub message: StoredMessage,
}

/// A page of results in ascending sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Whether more items exist past this page in the direction read (older
    /// for [`HistoryAnchor::Latest`]/[`HistoryAnchor::Before`], newer for
    /// [`HistoryAnchor::After`] and inbox reads).
    pub has_more: bool,
}

/// Where a channel history page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryAnchor {
    /// The newest messages.
    Latest,
    /// Messages with a sequence strictly below this one, newest of them first
    /// in what is selected (the page itself is still ascending).
    Before(Seq),
    /// Messages with a sequence strictly above this one.
    After(Seq),
}

/// Where a push job sits in the outbox: one per (recipient, message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxKey {
    /// The member to notify.
    pub user: UserId,
    /// The message's channel.
    pub channel: ChannelId,
    /// The message's channel sequence.
    pub seq: Seq,
}

/// A pending push job: a stored message for a member who had no device
/// online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Which job.
    pub key: OutboxKey,
    /// The message's place in the member's inbox.
    pub inbox_seq: InboxSeq,
    /// The message's author.
    pub sender: UserId,
    /// When the message was stored (ms since the epoch): the job's age.
    pub timestamp_ms: u64,
}

/// A device's position in its user's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Highest inbox seq delivered to the device.
    pub delivered: InboxSeq,
    /// Highest inbox seq the user has read on the device.
    pub read: InboxSeq,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(recipients: Vec<u64>, text_len: usize) -> AppendRequest {
        AppendRequest {
            channel: ChannelId(1),
            sender: UserId(1),
            device: DeviceId(1),
            client_msg_id: 1,
            recipients: recipients.into_iter().map(UserId).collect(),
            text: "x".repeat(text_len).into(),
            push_to: Vec::new(),
        }
    }

    #[test]
    fn repeats_are_collapsed_in_first_seen_order() {
        let small = request(vec![3, 1, 3, 2, 1], 0);
        assert_eq!(
            &*small.unique_recipients(),
            &[UserId(3), UserId(1), UserId(2)]
        );
        let mut many: Vec<u64> = (0..20).collect();
        many.push(5);
        let large = request(many, 0);
        assert_eq!(large.unique_recipients().len(), 20);
        assert!(matches!(
            request(vec![1, 2, 3], 0).unique_recipients(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn limits_are_enforced_after_collapsing_repeats() {
        assert!(request((0..100).collect(), MAX_TEXT_BYTES)
            .validate()
            .is_ok());
        let mut with_repeats: Vec<u64> = (0..100).collect();
        with_repeats.extend(0..50);
        assert!(request(with_repeats, 0).validate().is_ok());
        assert_eq!(
            request((0..101).collect(), 0).validate(),
            Err(InvalidRequest::TooManyRecipients {
                count: 101,
                max: MAX_RECIPIENTS
            })
        );
        assert_eq!(
            request(vec![1], MAX_TEXT_BYTES + 1).validate(),
            Err(InvalidRequest::TextTooLong {
                len: MAX_TEXT_BYTES + 1,
                max: MAX_TEXT_BYTES
            })
        );
    }
}
