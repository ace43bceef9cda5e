//! Sequence assignment, timestamps, fan-out, validation and visibility.

use crate::common::{full_history, full_inbox, req};
use crate::harness::{Engine, Fixture, START_MS};
use confab_storage::{
    ChannelId, HistoryAnchor, InboxSeq, InvalidRequest, MessageLog, Seq, StorageError, UserId,
    MAX_RECIPIENTS,
};
use std::sync::Arc;

pub fn sequences_start_at_one_and_are_gapless_per_channel<E: Engine>() {
    let f = Fixture::<E>::new();
    let first = f
        .log
        .append(&[
            req(1, 1, 1, &[1], "a"),
            req(2, 1, 2, &[1], "x"),
            req(1, 1, 3, &[1], "b"),
        ])
        .unwrap();
    assert_eq!(
        first
            .iter()
            .map(|o| (o.channel.0, o.seq.0))
            .collect::<Vec<_>>(),
        [(1, 1), (2, 1), (1, 2)]
    );
    let second = f.log.append(&[req(1, 1, 4, &[1], "c")]).unwrap();
    assert_eq!(
        (second[0].channel.0, second[0].seq.0, second[0].duplicate),
        (1, 3, false)
    );

    let texts: Vec<_> = full_history(&f.log, 1)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
    assert_eq!(f.log.last_channel_seq(ChannelId(1)).unwrap(), Seq(3));
    assert_eq!(f.log.last_channel_seq(ChannelId(2)).unwrap(), Seq(1));
    assert_eq!(f.log.last_channel_seq(ChannelId(3)).unwrap(), Seq(0));
}

pub fn timestamps_come_from_the_clock_and_never_go_backwards<E: Engine>() {
    let f = Fixture::<E>::new();
    let a = f.log.append(&[req(1, 1, 1, &[], "a")]).unwrap();
    f.clock.advance(1_000);
    let b = f.log.append(&[req(1, 1, 2, &[], "b")]).unwrap();
    // NTP steps the clock back: channel 1 keeps its order, channel 2 (no
    // history) takes the clock as is.
    f.clock.set(START_MS - 5_000);
    let c = f
        .log
        .append(&[req(1, 1, 3, &[], "c"), req(2, 1, 4, &[], "d")])
        .unwrap();
    assert_eq!(a[0].timestamp_ms, START_MS);
    assert_eq!(b[0].timestamp_ms, START_MS + 1_000);
    assert_eq!(c[0].timestamp_ms, START_MS + 1_000);
    assert_eq!(c[1].timestamp_ms, START_MS - 5_000);
    let stored: Vec<_> = full_history(&f.log, 1)
        .iter()
        .map(|m| m.timestamp_ms)
        .collect();
    assert_eq!(stored, [START_MS, START_MS + 1_000, START_MS + 1_000]);
}

pub fn fan_out_reaches_every_recipient_including_sender<E: Engine>() {
    let f = Fixture::<E>::new();
    let out = f.log.append(&[req(10, 1, 1, &[1, 2, 3], "hello")]).unwrap();
    assert_eq!(
        out[0].inbox,
        [
            (UserId(1), InboxSeq(1)),
            (UserId(2), InboxSeq(1)),
            (UserId(3), InboxSeq(1))
        ]
    );
    // User 2 is also in channel 20: its inbox seq continues there.
    let out = f.log.append(&[req(20, 4, 2, &[4, 2], "other")]).unwrap();
    assert_eq!(
        out[0].inbox,
        [(UserId(4), InboxSeq(1)), (UserId(2), InboxSeq(2))]
    );

    for user in [1, 3] {
        let inbox = f.log.inbox(UserId(user), InboxSeq(0), 10).unwrap();
        assert_eq!(inbox.items.len(), 1);
        assert_eq!(inbox.items[0].message.text, "hello");
        assert_eq!(inbox.items[0].message.sender, UserId(1));
    }
    assert_eq!(full_inbox(&f.log, 2), [(1, 10, 1), (2, 20, 1)]);
    assert_eq!(full_inbox(&f.log, 4), [(1, 20, 1)]);
    assert_eq!(f.log.last_inbox_seq(UserId(2)).unwrap(), InboxSeq(2));
    assert!(full_inbox(&f.log, 5).is_empty());
}

pub fn repeated_recipients_get_one_pointer<E: Engine>() {
    let f = Fixture::<E>::new();
    let out = f
        .log
        .append(&[req(1, 1, 1, &[2, 1, 2, 2, 1], "x")])
        .unwrap();
    assert_eq!(
        out[0].inbox,
        [(UserId(2), InboxSeq(1)), (UserId(1), InboxSeq(1))]
    );
    assert_eq!(full_inbox(&f.log, 2).len(), 1);
}

pub fn invalid_requests_store_nothing<E: Engine>() {
    let f = Fixture::<E>::new();
    let too_many: Vec<u64> = (1..=MAX_RECIPIENTS as u64 + 1).collect();
    let err = f
        .log
        .append(&[req(1, 1, 1, &[1], "fine"), req(1, 1, 2, &too_many, "x")])
        .unwrap_err();
    assert_eq!(
        err,
        StorageError::Invalid(InvalidRequest::TooManyRecipients {
            count: MAX_RECIPIENTS + 1,
            max: MAX_RECIPIENTS
        })
    );
    // The batch is atomic: the valid request was not stored either, and its
    // client id is still free.
    assert_eq!(f.log.last_channel_seq(ChannelId(1)).unwrap(), Seq(0));
    let out = f.log.append(&[req(1, 1, 1, &[1], "fine")]).unwrap();
    assert_eq!((out[0].seq.0, out[0].duplicate), (1, false));
    let exactly_max: Vec<u64> = (1..=MAX_RECIPIENTS as u64).collect();
    assert_eq!(
        f.log.append(&[req(1, 1, 3, &exactly_max, "ok")]).unwrap()[0]
            .inbox
            .len(),
        MAX_RECIPIENTS
    );
}

pub fn staged_writes_stay_invisible_until_published<E: Engine>() {
    let f = Fixture::<E>::new();
    f.log.append(&[req(1, 1, 1, &[1, 2], "published")]).unwrap();
    // Channel 2 and user 3 have never been written: the "no watermark yet"
    // path must not expose staged data either.
    let staged = f
        .log
        .stage(&[req(1, 1, 2, &[1, 2], "a"), req(2, 3, 3, &[3, 1], "b")])
        .unwrap();
    assert_eq!(staged[0].seq, Seq(2));
    assert_eq!(f.log.last_channel_seq(ChannelId(1)).unwrap(), Seq(1));
    assert_eq!(f.log.last_channel_seq(ChannelId(2)).unwrap(), Seq(0));
    assert_eq!(f.log.last_inbox_seq(UserId(3)).unwrap(), InboxSeq(0));
    assert_eq!(
        f.log
            .channel_history(ChannelId(1), HistoryAnchor::Latest, 10)
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        !f.log
            .channel_history(ChannelId(1), HistoryAnchor::After(Seq(0)), 10)
            .unwrap()
            .has_more
    );
    assert!(f
        .log
        .channel_history(ChannelId(2), HistoryAnchor::Latest, 10)
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        f.log.inbox(UserId(1), InboxSeq(0), 10).unwrap().items.len(),
        1
    );
    assert!(f
        .log
        .inbox(UserId(3), InboxSeq(0), 10)
        .unwrap()
        .items
        .is_empty());

    f.log.sync().unwrap();
    f.log.publish(&staged);
    assert_eq!(full_history(&f.log, 1).len(), 2);
    assert_eq!(full_history(&f.log, 2).len(), 1);
    assert_eq!(full_inbox(&f.log, 1).len(), 3);
    assert_eq!(full_inbox(&f.log, 3).len(), 1);
}

/// Several threads append to their own channels whose members overlap, as
/// shard writers do, while a "device" of a shared user follows its inbox with a
/// cursor. The device must never skip an entry (it would if it could see seq
/// k+1 before k), and every inbox must end gapless.
pub fn concurrent_appends_keep_every_inbox_gapless<E: Engine>() {
    let f = Fixture::<E>::new();
    let log = Arc::new(f.log);
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 120;
    let shared = [1u64, 2, 3];
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let log = log.clone();
            s.spawn(move || {
                let mut id = 0;
                while id < PER_THREAD {
                    let batch: Vec<_> = (0..(1 + id % 7).min(PER_THREAD - id))
                        .map(|k| {
                            let n = id + k;
                            let channel = 100 + t * 10 + n % 3;
                            req(
                                channel,
                                1 + n % 3,
                                t * 1_000_000 + n,
                                &[1, 2, 3, 50 + t],
                                "m",
                            )
                        })
                        .collect();
                    id += batch.len() as u64;
                    log.append(&batch).unwrap();
                }
            });
        }
        let log = log.clone();
        s.spawn(move || {
            let total = THREADS * PER_THREAD;
            let mut cursor = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while cursor < total {
                assert!(
                    std::time::Instant::now() < deadline,
                    "device stuck at {cursor}"
                );
                let page = log.inbox(UserId(1), InboxSeq(cursor), 64).unwrap();
                for e in page.items {
                    assert_eq!(
                        e.inbox_seq,
                        InboxSeq(cursor + 1),
                        "device would skip inbox entries"
                    );
                    cursor = e.inbox_seq.into();
                }
                std::thread::yield_now();
            }
        });
    });
    let total = (THREADS * PER_THREAD) as usize;
    for user in shared {
        assert_eq!(full_inbox(&*log, user).len(), total);
    }
    for t in 0..THREADS {
        assert_eq!(full_inbox(&*log, 50 + t).len(), PER_THREAD as usize);
        let per_channel: usize = (0..3)
            .map(|k| full_history(&*log, 100 + t * 10 + k).len())
            .sum();
        assert_eq!(per_channel, PER_THREAD as usize);
    }
}
