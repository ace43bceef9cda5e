//! The push outbox: jobs ride the message's batch, are never written for the
//! sender or for a retried message, survive a reopen, and page in key order.

use crate::common::req;
use crate::harness::{Engine, Fixture, START_MS};
use confab_storage::{ChannelId, InboxSeq, MessageLog, OutboxEntry, OutboxKey, Seq, UserId};

fn key(user: u64, channel: u64, seq: u64) -> OutboxKey {
    OutboxKey {
        user: UserId(user),
        channel: ChannelId(channel),
        seq: Seq(seq),
    }
}

fn all(log: &impl MessageLog) -> Vec<OutboxEntry> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = log.outbox_scan(after, 2).unwrap();
        if page.is_empty() {
            return out;
        }
        after = page.last().map(|e| e.key);
        out.extend(page);
    }
}

pub fn jobs_are_written_with_the_message<E: Engine>() {
    let f = Fixture::<E>::new();
    let mut r = req(7, 1, 1, &[1, 2, 3, 4], "hi");
    // The sender, a repeat and a non-member are all ignored.
    r.push_to = [1, 3, 2, 3, 99].map(UserId).to_vec();
    let out = f.log.append(&[r]).unwrap();
    let inbox_of = |u: u64| out[0].inbox.iter().find(|(x, _)| x.0 == u).unwrap().1;
    assert_eq!(
        all(&f.log),
        vec![
            OutboxEntry {
                key: key(2, 7, 1),
                inbox_seq: inbox_of(2),
                sender: UserId(1),
                timestamp_ms: START_MS,
            },
            OutboxEntry {
                key: key(3, 7, 1),
                inbox_seq: inbox_of(3),
                sender: UserId(1),
                timestamp_ms: START_MS,
            },
        ]
    );
}

pub fn a_retried_message_writes_no_second_job<E: Engine>() {
    let f = Fixture::<E>::new();
    let mut r = req(7, 1, 1, &[1, 2], "hi");
    r.push_to = vec![UserId(2)];
    f.log.append(&[r.clone()]).unwrap();
    f.log.outbox_remove(&[key(2, 7, 1)]).unwrap();
    let again = f.log.append(&[r]).unwrap();
    assert!(again[0].duplicate);
    assert!(all(&f.log).is_empty(), "a retry re-raised a settled job");
}

pub fn jobs_survive_a_reopen_until_removed<E: Engine>() {
    let f = Fixture::<E>::new();
    for id in 1..=3 {
        let mut r = req(5, 1, id, &[1, 2], "m");
        r.push_to = vec![UserId(2)];
        f.log.append(&[r]).unwrap();
    }
    let late = OutboxEntry {
        key: key(1, 5, 3),
        inbox_seq: InboxSeq(3),
        sender: UserId(2),
        timestamp_ms: START_MS + 5,
    };
    f.log.outbox_put(&[late]).unwrap();
    f.log.outbox_remove(&[key(2, 5, 2), key(9, 9, 9)]).unwrap();

    let f = f.reopen();
    let keys: Vec<OutboxKey> = all(&f.log).iter().map(|e| e.key).collect();
    assert_eq!(keys, vec![key(1, 5, 3), key(2, 5, 1), key(2, 5, 3)]);
    assert_eq!(all(&f.log)[0], late);
}

pub fn scan_pages_in_key_order<E: Engine>() {
    let f = Fixture::<E>::new();
    let entries: Vec<OutboxEntry> = [(3, 1, 1), (1, 2, 9), (1, 2, 10), (1, 10, 1), (2, 1, 1)]
        .iter()
        .map(|&(u, c, s)| OutboxEntry {
            key: key(u, c, s),
            inbox_seq: InboxSeq(s),
            sender: UserId(42),
            timestamp_ms: START_MS,
        })
        .collect();
    f.log.outbox_put(&entries).unwrap();
    let keys: Vec<OutboxKey> = all(&f.log).iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        vec![
            key(1, 2, 9),
            key(1, 2, 10),
            key(1, 10, 1),
            key(2, 1, 1),
            key(3, 1, 1)
        ]
    );
    let page = f.log.outbox_scan(Some(key(1, 2, 9)), 1).unwrap();
    assert_eq!(page[0].key, key(1, 2, 10));
    // Starting after a key that is not stored still resumes in order.
    let page = f.log.outbox_scan(Some(key(1, 5, 0)), 10).unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page[0].key, key(1, 10, 1));
}
