//! Pages of messages cut to fit one frame: a `SyncBatch` or
//! `HistoryBatch` of long messages carries as many as fit, and says
//! `has_more` so the client asks again from where it ends.

use confab_protocol::frame;

use crate::settings::Settings;

/// Bytes a message may take in a batch frame: its text (JSON escaping can
/// double it, hence the factor) plus the fixed fields.
fn wire_size(m: &frame::Message) -> usize {
    m.text.len() * 2 + 96
}

/// The most message bytes one batch frame may carry: within the peer's
/// frame limit and within half the outbound queue, so one page never makes
/// a healthy connection a slow consumer.
pub(super) fn batch_budget(settings: &Settings) -> usize {
    (settings.max_frame_bytes - 256).min(settings.outbound_limit_bytes / 2)
}

/// How many of `messages`, from the front, fit in `budget` (at least one).
pub(super) fn fitting(messages: &[frame::Message], budget: usize) -> usize {
    let mut used = 0;
    for (i, m) in messages.iter().enumerate() {
        used += wire_size(m);
        if used > budget && i > 0 {
            return i;
        }
    }
    messages.len()
}

/// Keeps what fits from the front; whether anything was cut.
pub(super) fn keep_front(messages: &mut Vec<frame::Message>, budget: usize) -> bool {
    let n = fitting(messages, budget);
    let cut = n < messages.len();
    messages.truncate(n);
    cut
}

/// Keeps what fits from the back (the end nearest a `Before`/`Latest`
/// anchor); whether anything was cut.
pub(super) fn keep_back(messages: &mut Vec<frame::Message>, budget: usize) -> bool {
    messages.reverse();
    let cut = keep_front(messages, budget);
    messages.reverse();
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};

    fn msg(seq: u64, chars: usize) -> frame::Message {
        frame::Message {
            inbox_seq: InboxSeq(seq),
            channel_id: ChannelId(1),
            seq: Seq(seq),
            sender_id: UserId(1),
            sender_device: DeviceId(1),
            client_msg_id: seq,
            timestamp_ms: 0,
            text: "x".repeat(chars).into(),
        }
    }

    #[test]
    fn a_page_is_cut_at_the_budget_but_never_below_one_message() {
        let mut page: Vec<_> = (1..=4).map(|i| msg(i, 100)).collect();
        assert!(keep_front(&mut page, 600));
        assert_eq!(page.iter().map(|m| m.seq.0).collect::<Vec<_>>(), [1, 2]);
        let mut page: Vec<_> = (1..=4).map(|i| msg(i, 100)).collect();
        assert!(keep_back(&mut page, 600));
        assert_eq!(page.iter().map(|m| m.seq.0).collect::<Vec<_>>(), [3, 4]);
        let mut huge = vec![msg(1, 10_000)];
        assert!(!keep_front(&mut huge, 100), "one message always goes");
        assert_eq!(huge.len(), 1);
    }
}
