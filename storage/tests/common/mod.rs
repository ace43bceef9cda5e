//! Helpers shared by the integration tests: request builders and full-store
//! consistency checks (gapless channels, gapless inboxes that resolve).

#![allow(dead_code)] // each test binary uses a different subset

use confab_storage::{
    AppendRequest, ChannelId, DeviceId, HistoryAnchor, InboxSeq, MessageLog, Seq, StoredMessage,
    UserId, MAX_PAGE_LIMIT,
};
use std::collections::HashSet;

pub fn req(
    channel: u64,
    sender: u64,
    client_msg_id: u64,
    recipients: &[u64],
    text: &str,
) -> AppendRequest {
    AppendRequest {
        channel: ChannelId(channel),
        sender: UserId(sender),
        device: DeviceId(1),
        client_msg_id,
        recipients: recipients.iter().copied().map(UserId).collect(),
        text: text.into(),
        push_to: Vec::new(),
    }
}

/// Every visible message of a channel, walking pages forward; asserts the
/// sequences are exactly 1..=last.
pub fn full_history(log: &impl MessageLog, channel: u64) -> Vec<StoredMessage> {
    let channel = ChannelId(channel);
    let last = log.last_channel_seq(channel).unwrap();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = log
            .channel_history(channel, HistoryAnchor::After(Seq(after)), MAX_PAGE_LIMIT)
            .unwrap();
        for m in &page.items {
            assert_eq!(
                m.seq,
                Seq(after + 1),
                "channel {channel} has a gap after {after}"
            );
            after = m.seq.into();
        }
        all.extend(page.items);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        after,
        last.into(),
        "channel {channel}: history ends at {after}, last seq says {last}"
    );
    all
}

/// Every visible inbox entry of a user as (inbox seq, channel, seq); asserts
/// inbox seqs are exactly 1..=last and no message appears twice.
pub fn full_inbox(log: &impl MessageLog, user: u64) -> Vec<(u64, u64, u64)> {
    let user = UserId(user);
    let last = log.last_inbox_seq(user).unwrap();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = log.inbox(user, InboxSeq(after), MAX_PAGE_LIMIT).unwrap();
        for e in &page.items {
            assert_eq!(
                e.inbox_seq,
                InboxSeq(after + 1),
                "user {user} inbox has a gap after {after}"
            );
            after = e.inbox_seq.into();
            all.push((e.inbox_seq.0, e.message.channel.0, e.message.seq.0));
        }
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        after,
        last.into(),
        "user {user}: inbox ends at {after}, last says {last}"
    );
    let distinct: HashSet<_> = all.iter().map(|&(_, c, s)| (c, s)).collect();
    assert_eq!(distinct.len(), all.len(), "user {user} got a message twice");
    all
}

/// Waits (spinning politely) until `cond` holds, failing the test after 20 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
