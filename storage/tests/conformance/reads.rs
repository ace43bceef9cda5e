//! History and inbox pagination: direction, limits, boundaries, `has_more`.

use crate::common::req;
use crate::harness::{Engine, Fixture};
use confab_storage::{ChannelId, HistoryAnchor, InboxSeq, MessageLog, Seq, UserId, MAX_PAGE_LIMIT};

fn seqs(log: &impl MessageLog, anchor: HistoryAnchor, limit: usize) -> (Vec<u64>, bool) {
    let page = log.channel_history(ChannelId(1), anchor, limit).unwrap();
    (page.items.iter().map(|m| m.seq.0).collect(), page.has_more)
}

fn with_messages<E: Engine>(n: u64) -> Fixture<E> {
    let f = Fixture::<E>::new();
    let batch: Vec<_> = (1..=n)
        .map(|i| req(1, 1, i, &[1], &format!("m{i}")))
        .collect();
    f.log.append(&batch).unwrap();
    f
}

pub fn empty_channel_and_inbox_read_as_empty<E: Engine>() {
    let f = Fixture::<E>::new();
    for anchor in [
        HistoryAnchor::Latest,
        HistoryAnchor::Before(Seq(10)),
        HistoryAnchor::After(Seq(0)),
    ] {
        for limit in [0, 1, 50] {
            assert_eq!(
                seqs(&f.log, anchor, limit),
                (vec![], false),
                "{anchor:?} limit {limit}"
            );
        }
    }
    let inbox = f.log.inbox(UserId(1), InboxSeq(0), 50).unwrap();
    assert!(inbox.items.is_empty() && !inbox.has_more);
}

pub fn history_pages_walk_both_directions<E: Engine>() {
    let f = with_messages::<E>(25);
    // Backwards from the newest, as a client scrolling up does.
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Latest, 10),
        ((16..=25).collect(), true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(16)), 10),
        ((6..=15).collect(), true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(6)), 10),
        ((1..=5).collect(), false)
    );
    // Forwards from the start, as a catching-up client does.
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(0)), 10),
        ((1..=10).collect(), true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(10)), 10),
        ((11..=20).collect(), true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(20)), 10),
        ((21..=25).collect(), false)
    );
    let page = f
        .log
        .channel_history(ChannelId(1), HistoryAnchor::After(Seq(20)), 1)
        .unwrap();
    assert_eq!(page.items[0].text, "m21");
}

pub fn history_page_boundaries_are_exact<E: Engine>() {
    let f = with_messages::<E>(25);
    // A page that ends exactly at the last/first message has nothing more.
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Latest, 25),
        ((1..=25).collect(), false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Latest, 24),
        ((2..=25).collect(), true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Latest, 26),
        ((1..=25).collect(), false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(20)), 5),
        ((21..=25).collect(), false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(20)), 4),
        ((21..=24).collect(), true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(6)), 5),
        ((1..=5).collect(), false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(6)), 4),
        ((2..=5).collect(), true)
    );
    // Anchors at and past the ends.
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(1)), 10),
        (vec![], false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(0)), 10),
        (vec![], false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(25)), 10),
        (vec![], false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(u64::MAX)), 10),
        (vec![], false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(u64::MAX)), 3),
        (vec![23, 24, 25], true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(1_000)), 3),
        (vec![23, 24, 25], true)
    );
    // Limit 0 returns nothing but still says whether anything is there.
    assert_eq!(seqs(&f.log, HistoryAnchor::Latest, 0), (vec![], true));
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(24)), 0),
        (vec![], true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(25)), 0),
        (vec![], false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(2)), 0),
        (vec![], true)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Before(Seq(1)), 0),
        (vec![], false)
    );
    // Neighbouring channels never leak into a page.
    f.log
        .append(&[req(0, 1, 900, &[1], "below"), req(2, 1, 901, &[1], "above")])
        .unwrap();
    assert_eq!(
        seqs(&f.log, HistoryAnchor::Latest, 100),
        ((1..=25).collect(), false)
    );
    assert_eq!(
        seqs(&f.log, HistoryAnchor::After(Seq(0)), 100),
        ((1..=25).collect(), false)
    );
}

pub fn page_limit_is_capped<E: Engine>() {
    let n = MAX_PAGE_LIMIT as u64 + 5;
    let f = with_messages::<E>(n);
    let (latest, more) = seqs(&f.log, HistoryAnchor::Latest, usize::MAX);
    assert_eq!(latest, (6..=n).collect::<Vec<_>>());
    assert!(more);
    let inbox = f.log.inbox(UserId(1), InboxSeq(0), usize::MAX).unwrap();
    assert_eq!(inbox.items.len(), MAX_PAGE_LIMIT);
    assert!(inbox.has_more);
}

pub fn inbox_pages_resolve_messages<E: Engine>() {
    let f = Fixture::<E>::new();
    for i in 0..7u64 {
        let channel = if i % 2 == 0 { 1 } else { 2 };
        f.log
            .append(&[req(channel, 9, i, &[9, 5], &format!("t{i}"))])
            .unwrap();
    }
    let page = f.log.inbox(UserId(5), InboxSeq(0), 3).unwrap();
    assert!(page.has_more);
    let got: Vec<_> = page
        .items
        .iter()
        .map(|e| (e.inbox_seq.0, e.message.channel.0, e.message.seq.0))
        .collect();
    assert_eq!(got, [(1, 1, 1), (2, 2, 1), (3, 1, 2)]);
    assert_eq!(page.items[2].message.text, "t2");
    assert_eq!(page.items[2].message.client_msg_id, 2);

    let page = f.log.inbox(UserId(5), InboxSeq(3), 4).unwrap();
    assert!(!page.has_more, "page ending on the last entry");
    assert_eq!(
        page.items.iter().map(|e| e.inbox_seq.0).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    assert_eq!(page.items[3].message.text, "t6");
    let page = f.log.inbox(UserId(5), InboxSeq(3), 3).unwrap();
    assert!(page.has_more);
    let page = f.log.inbox(UserId(5), InboxSeq(7), 10).unwrap();
    assert!(page.items.is_empty() && !page.has_more);
    let page = f.log.inbox(UserId(5), InboxSeq(0), 0).unwrap();
    assert!(page.items.is_empty() && page.has_more);
    let page = f.log.inbox(UserId(5), InboxSeq(6), 0).unwrap();
    assert!(page.items.is_empty() && page.has_more);
}
