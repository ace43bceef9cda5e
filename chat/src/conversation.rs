//! The conversation on screen: the messages loaded, the history paging
//! state, and the sends from here not yet acknowledged.

use confab_client::{ChannelId, Message};

/// The conversation on screen.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Its channel.
    pub channel: ChannelId,
    /// Which opening of a conversation this is: history pages asked for
    /// an earlier one (another channel, or this one before it was left)
    /// carry another number and are dropped.
    pub generation: u64,
    /// The messages loaded, ascending by sequence, without repeats.
    pub messages: Vec<Message>,
    /// The newest page has arrived.
    pub loaded: bool,
    /// Older messages exist on the server.
    pub has_older: bool,
    /// An older page has been asked for.
    pub loading_older: bool,
    /// How many messages are scrolled away below the bottom of the view.
    pub scroll: usize,
}

impl Conversation {
    pub(crate) fn new(channel: ChannelId, generation: u64) -> Conversation {
        Conversation {
            channel,
            generation,
            messages: Vec::new(),
            loaded: false,
            has_older: false,
            loading_older: false,
            scroll: 0,
        }
    }
}

/// A message sent from here that the server has not acknowledged yet. The
/// SDK keeps it and sends it again after a reconnect; it is shown as
/// "sending…" until its acknowledgement arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    /// The app's own number for it, which its outcome carries back.
    pub id: u64,
    /// Where it goes.
    pub channel: ChannelId,
    /// What it says.
    pub text: String,
}

/// Merges `incoming` into `messages` (both ascending by sequence), keeping
/// one copy of each sequence: a page and live messages overlap freely.
pub fn merge(messages: &mut Vec<Message>, incoming: Vec<Message>) {
    if incoming.is_empty() {
        return;
    }
    let appends = messages
        .last()
        .is_none_or(|last| incoming.first().is_some_and(|f| f.seq > last.seq));
    messages.extend(incoming);
    if !appends {
        messages.sort_by_key(|m| m.seq);
        messages.dedup_by_key(|m| m.seq);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use confab_client::{DeviceId, InboxSeq, Seq, Text, UserId};

    pub(crate) fn msg(seq: u64, sender: u64) -> Message {
        Message {
            inbox_seq: InboxSeq(0),
            channel_id: ChannelId(1),
            seq: Seq(seq),
            sender_id: UserId(sender),
            sender_device: DeviceId(1),
            client_msg_id: seq,
            timestamp_ms: 0,
            text: Text::from(format!("m{seq}")),
        }
    }

    #[test]
    fn merging_keeps_one_copy_in_order() {
        let mut v = vec![msg(5, 2), msg(6, 2)];
        merge(&mut v, vec![msg(7, 2)]);
        merge(&mut v, vec![msg(1, 2), msg(2, 2), msg(5, 2)]);
        merge(&mut v, vec![msg(6, 2)]);
        let seqs: Vec<u64> = v.iter().map(|m| m.seq.0).collect();
        assert_eq!(seqs, [1, 2, 5, 6, 7]);
    }
}
