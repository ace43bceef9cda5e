//! Retried sends: answered with the first result, storing nothing new, for as
//! long as the idempotency window.

use crate::common::{full_history, full_inbox, req};
use crate::harness::{Engine, Fixture};
use confab_storage::{ChannelId, DeviceId, InboxSeq, MessageLog, Seq};

pub fn retry_across_batches_returns_first_result<E: Engine>() {
    let f = Fixture::<E>::new();
    let first = f
        .log
        .append(&[req(1, 7, 42, &[7, 8], "original")])
        .unwrap()
        .remove(0);
    f.log.append(&[req(1, 8, 1, &[7, 8], "reply")]).unwrap();
    f.clock.advance(60_000);
    // A retry carries the same client id; even a different text (a buggy
    // client) must not create a second message.
    let retry = f
        .log
        .append(&[req(1, 7, 42, &[7, 8], "changed")])
        .unwrap()
        .remove(0);
    assert!(retry.duplicate);
    assert_eq!(
        (retry.channel, retry.seq, retry.timestamp_ms),
        (first.channel, first.seq, first.timestamp_ms)
    );
    assert!(retry.inbox.is_empty());
    // The retry is acknowledged with the sender's original inbox entry, so
    // the sending device's cursor lands where the first ack would have put it.
    assert_eq!(first.sender_inbox_seq, InboxSeq(1));
    assert_eq!(retry.sender_inbox_seq, first.sender_inbox_seq);
    let history = full_history(&f.log, 1);
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].text, "original");
    assert_eq!(full_inbox(&f.log, 8).len(), 2);
}

pub fn retry_within_a_batch_is_detected<E: Engine>() {
    let f = Fixture::<E>::new();
    let out = f
        .log
        .append(&[
            req(1, 7, 1, &[7], "a"),
            req(1, 7, 2, &[7], "b"),
            req(1, 7, 1, &[7], "a"),
            req(1, 7, 1, &[7], "a"),
        ])
        .unwrap();
    let summary: Vec<_> = out.iter().map(|o| (o.seq.0, o.duplicate)).collect();
    assert_eq!(summary, [(1, false), (2, false), (1, true), (1, true)]);
    let sender_seqs: Vec<_> = out.iter().map(|o| o.sender_inbox_seq.0).collect();
    assert_eq!(sender_seqs, [1, 2, 1, 1]);
    assert_eq!(full_history(&f.log, 1).len(), 2);
    assert_eq!(full_inbox(&f.log, 7).len(), 2);
}

/// Within one batch, ids that go down (a new one below an earlier id, a
/// repeat after other devices' sends) are told apart from new ids as well
/// as across batches: the fast path that skips look-ups for rising ids
/// must not skip these.
pub fn falling_ids_within_a_batch_are_told_apart<E: Engine>() {
    let f = Fixture::<E>::new();
    let phone = |id: u64, text: &str| {
        let mut r = req(1, 7, id, &[7, 8], text);
        r.device = DeviceId(2);
        r
    };
    let out = f
        .log
        .append(&[
            req(1, 7, 5, &[7, 8], "laptop 5"),
            phone(9, "phone 9"),
            req(1, 7, 9, &[7, 8], "laptop 9"),
            req(1, 8, 9, &[7, 8], "bob 9"),
            req(1, 7, 7, &[7, 8], "laptop 7, below 9, new"),
            phone(9, "phone 9 again"),
            req(1, 7, 5, &[7, 8], "laptop 5 again"),
            req(1, 7, 7, &[7, 8], "laptop 7 again"),
        ])
        .unwrap();
    let summary: Vec<_> = out.iter().map(|o| (o.seq.0, o.duplicate)).collect();
    assert_eq!(
        summary,
        [
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (5, false),
            (2, true),
            (1, true),
            (5, true)
        ]
    );
    assert_eq!(full_history(&f.log, 1).len(), 5);
    assert_eq!(full_inbox(&f.log, 8).len(), 5);
    // The next batch still sees every stored id, the out-of-order 7 too.
    let next = f
        .log
        .append(&[
            req(1, 7, 7, &[7, 8], "again"),
            req(1, 7, 10, &[7, 8], "ten"),
        ])
        .unwrap();
    let summary: Vec<_> = next.iter().map(|o| (o.seq.0, o.duplicate)).collect();
    assert_eq!(summary, [(5, true), (6, false)]);
}

pub fn client_ids_are_scoped_by_sender_and_device<E: Engine>() {
    let f = Fixture::<E>::new();
    let mut other_device = req(1, 7, 5, &[7], "from phone");
    other_device.device = DeviceId(2);
    let out = f
        .log
        .append(&[
            req(1, 7, 5, &[7], "from laptop"),
            other_device,
            req(1, 8, 5, &[8], "other user"),
        ])
        .unwrap();
    assert!(out.iter().all(|o| !o.duplicate));
    assert_eq!(f.log.last_channel_seq(ChannelId(1)).unwrap(), Seq(3));
}

pub fn entries_expire_after_the_window<E: Engine>() {
    let f = Fixture::<E>::with_window(10_000);
    let first = f.log.append(&[req(1, 7, 42, &[7], "a")]).unwrap().remove(0);
    f.clock.advance(9_999);
    let inside = f.log.append(&[req(1, 7, 42, &[7], "a")]).unwrap().remove(0);
    assert!(inside.duplicate);
    assert_eq!(inside.seq, first.seq);
    f.clock.advance(1);
    // Past the window the id is free again: the bound on what is remembered.
    let after = f.log.append(&[req(1, 7, 42, &[7], "a")]).unwrap().remove(0);
    assert!(!after.duplicate);
    assert_eq!(after.seq, Seq(2));
    // ...and the new entry starts a new window.
    f.clock.advance(5_000);
    let again = f.log.append(&[req(1, 7, 42, &[7], "a")]).unwrap().remove(0);
    assert!(again.duplicate);
    assert_eq!(again.seq, Seq(2));
}

pub fn retry_after_reopen_keeps_history_visible<E: Engine>() {
    let f = Fixture::<E>::new();
    f.log
        .append(&[
            req(1, 7, 1, &[7], "a"),
            req(1, 7, 2, &[7], "b"),
            req(1, 7, 3, &[7], "c"),
        ])
        .unwrap();
    let f = f.reopen();
    // The first write after reopen is a retry: it must not make the log
    // forget (or hide) the history it did not have to load.
    let retry = f.log.append(&[req(1, 7, 1, &[7], "a")]).unwrap().remove(0);
    assert_eq!((retry.seq.0, retry.duplicate), (1, true));
    assert_eq!(f.log.last_channel_seq(ChannelId(1)).unwrap(), Seq(3));
    assert_eq!(full_history(&f.log, 1).len(), 3);
    assert_eq!(
        f.log.append(&[req(1, 7, 4, &[7], "d")]).unwrap()[0].seq,
        Seq(4)
    );
    assert_eq!(full_inbox(&f.log, 7).len(), 4);
}

/// Clients number sends upwards, but a retry reuses an older id and ids may
/// arrive out of order (two connections of one device, a client restored
/// from a backup). Each must be told apart from a new send whatever the
/// order, before and after a reopen, and other devices' ids never interfere.
pub fn ids_below_the_devices_highest_are_still_checked<E: Engine>() {
    let f = Fixture::<E>::new();
    let stored: Vec<u64> = f
        .log
        .append(&[req(1, 7, 10, &[7], "ten"), req(1, 7, 20, &[7], "twenty")])
        .unwrap()
        .iter()
        .map(|o| o.seq.0)
        .collect();
    assert_eq!(stored, [1, 2]);
    // Below the highest id but never used: new.
    let fifteen = f.log.append(&[req(1, 7, 15, &[7], "fifteen")]).unwrap();
    assert_eq!((fifteen[0].seq.0, fifteen[0].duplicate), (3, false));
    // Retries of the highest, of one below it, of the out-of-order one.
    for (id, seq) in [(20, 2), (10, 1), (15, 3)] {
        let out = f.log.append(&[req(1, 7, id, &[7], "again")]).unwrap();
        assert_eq!((out[0].seq.0, out[0].duplicate), (seq, true), "id {id}");
    }
    let f = f.reopen();
    // After a reopen nothing is remembered in memory: the same answers.
    let out = f
        .log
        .append(&[
            req(1, 7, 15, &[7], "again"),
            req(1, 7, 12, &[7], "twelve"),
            req(1, 7, 21, &[7], "twenty-one"),
            req(1, 7, 20, &[7], "again"),
        ])
        .unwrap();
    let summary: Vec<_> = out.iter().map(|o| (o.seq.0, o.duplicate)).collect();
    assert_eq!(summary, [(3, true), (4, false), (5, false), (2, true)]);
    // Another device of the same user, and another user, start afresh.
    let mut other_device = req(1, 7, 12, &[7], "phone");
    other_device.device = DeviceId(2);
    let out = f
        .log
        .append(&[other_device, req(1, 8, 12, &[8], "bob")])
        .unwrap();
    assert!(out.iter().all(|o| !o.duplicate));
    assert_eq!(full_history(&f.log, 1).len(), 7);
}
