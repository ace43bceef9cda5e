//! Cursors, last-seen and what survives a reopen.

use crate::common::{full_history, full_inbox, req};
use crate::harness::{Engine, Fixture};
use confab_storage::{ChannelId, Cursor, DeviceId, InboxSeq, MessageLog, Seq, UserId};

pub fn cursors_only_move_forward<E: Engine>() {
    let f = Fixture::<E>::new();
    let (u, phone, laptop) = (UserId(1), DeviceId(1), DeviceId(2));
    assert_eq!(f.log.cursor(u, phone).unwrap(), Cursor::default());
    f.log
        .set_cursor(
            u,
            phone,
            Cursor {
                delivered: InboxSeq(5),
                read: InboxSeq(3),
            },
        )
        .unwrap();
    // A late, reordered update must not rewind either field.
    f.log
        .set_cursor(
            u,
            phone,
            Cursor {
                delivered: InboxSeq(4),
                read: InboxSeq(4),
            },
        )
        .unwrap();
    assert_eq!(
        f.log.cursor(u, phone).unwrap(),
        Cursor {
            delivered: InboxSeq(5),
            read: InboxSeq(4)
        }
    );
    assert_eq!(f.log.cursor(u, laptop).unwrap(), Cursor::default());
    assert_eq!(f.log.cursor(UserId(2), phone).unwrap(), Cursor::default());
    f.log
        .set_cursor(
            u,
            laptop,
            Cursor {
                delivered: InboxSeq(9),
                read: InboxSeq(0),
            },
        )
        .unwrap();
    assert_eq!(
        f.log.cursor(u, laptop).unwrap(),
        Cursor {
            delivered: InboxSeq(9),
            read: InboxSeq(0)
        }
    );
    assert_eq!(
        f.log.cursor(u, phone).unwrap(),
        Cursor {
            delivered: InboxSeq(5),
            read: InboxSeq(4)
        }
    );
}

pub fn last_seen_only_moves_forward<E: Engine>() {
    let f = Fixture::<E>::new();
    assert_eq!(f.log.last_seen(UserId(1)).unwrap(), None);
    f.log.set_last_seen(UserId(1), 1_000).unwrap();
    f.log.set_last_seen(UserId(1), 900).unwrap();
    assert_eq!(f.log.last_seen(UserId(1)).unwrap(), Some(1_000));
    f.log.set_last_seen(UserId(1), 2_000).unwrap();
    assert_eq!(f.log.last_seen(UserId(1)).unwrap(), Some(2_000));
    assert_eq!(f.log.last_seen(UserId(2)).unwrap(), None);
}

pub fn counters_continue_after_reopen<E: Engine>() {
    let f = Fixture::<E>::new();
    let first = f
        .log
        .append(&[req(1, 1, 1, &[1, 2], "a"), req(1, 2, 2, &[1, 2], "b")])
        .unwrap();
    f.log.append(&[req(3, 2, 3, &[2, 3], "c")]).unwrap();
    f.log
        .set_cursor(
            UserId(2),
            DeviceId(1),
            Cursor {
                delivered: InboxSeq(2),
                read: InboxSeq(1),
            },
        )
        .unwrap();
    f.log.set_last_seen(UserId(2), 77).unwrap();

    let f = f.reopen();
    assert_eq!(f.log.last_channel_seq(ChannelId(1)).unwrap(), Seq(2));
    assert_eq!(f.log.last_inbox_seq(UserId(2)).unwrap(), InboxSeq(3));
    let out = f
        .log
        .append(&[req(1, 1, 4, &[1, 2, 4], "d")])
        .unwrap()
        .remove(0);
    assert_eq!(out.seq, Seq(3));
    assert_eq!(
        out.inbox,
        [
            (UserId(1), InboxSeq(3)),
            (UserId(2), InboxSeq(4)),
            (UserId(4), InboxSeq(1))
        ]
    );
    let retry = f
        .log
        .append(&[req(1, 1, 1, &[1, 2], "a")])
        .unwrap()
        .remove(0);
    assert!(retry.duplicate);
    assert_eq!(
        (retry.seq, retry.timestamp_ms),
        (first[0].seq, first[0].timestamp_ms)
    );
    assert_eq!(
        f.log.cursor(UserId(2), DeviceId(1)).unwrap(),
        Cursor {
            delivered: InboxSeq(2),
            read: InboxSeq(1)
        }
    );
    assert_eq!(f.log.last_seen(UserId(2)).unwrap(), Some(77));

    // A second reopen right after writes that were never re-read.
    let f = f.reopen();
    assert_eq!(full_history(&f.log, 1).len(), 3);
    assert_eq!(full_inbox(&f.log, 2).len(), 4);
    let out = f
        .log
        .append(&[req(3, 3, 5, &[2, 3], "e")])
        .unwrap()
        .remove(0);
    assert_eq!(
        (out.seq, out.inbox.clone()),
        (
            Seq(2),
            vec![(UserId(2), InboxSeq(5)), (UserId(3), InboxSeq(2))]
        )
    );
}

pub fn read_marks_only_move_forward_per_channel<E: Engine>() {
    let f = Fixture::<E>::new();
    let (general, random) = (ChannelId(7), ChannelId(8));
    assert!(f.log.read_marks(general).unwrap().is_empty());
    f.log.set_read_up_to(general, UserId(2), Seq(10)).unwrap();
    f.log.set_read_up_to(general, UserId(1), Seq(4)).unwrap();
    // A late receipt never moves a mark back.
    f.log.set_read_up_to(general, UserId(2), Seq(3)).unwrap();
    f.log.set_read_up_to(random, UserId(1), Seq(99)).unwrap();
    assert_eq!(
        f.log.read_marks(general).unwrap(),
        [(UserId(1), Seq(4)), (UserId(2), Seq(10))]
    );
    assert_eq!(f.log.read_marks(random).unwrap(), [(UserId(1), Seq(99))]);
    assert!(f.log.read_marks(ChannelId(6)).unwrap().is_empty());
}
