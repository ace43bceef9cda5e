//! The delivery rules, one by one.

use std::time::Duration;

use bytes::Bytes;
use confab_protocol::frame::{self, Frame};
use confab_protocol::Encoding;
use confab_types::{ChannelId, DeviceId, InboxSeq, StoredMessage, UserId};

use super::*;
use crate::fanout::{OutFrame, Priority};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const PHONE: DeviceId = DeviceId(10);
const LAPTOP: DeviceId = DeviceId(11);
const DM: ChannelId = ChannelId(7);

/// A live device: connected, its start read, its replay run.
fn live(w: &mut World, user: UserId, device: DeviceId) -> (usize, ConnId) {
    let cursor = w.log.last(user);
    let (core, conn) = w.connect(user, device, cursor);
    w.settle();
    (core, conn)
}

#[test]
fn entries_arriving_out_of_order_are_released_in_inbox_order() {
    let mut w = World::new(1);
    let (core, alice) = live(&mut w, ALICE, PHONE);
    let (_, bob) = live(&mut w, BOB, PHONE);
    for _ in 0..3 {
        w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    }
    // Storage completes them last first.
    w.complete(core, 2);
    w.complete(core, 1);
    assert!(
        w.received(core, bob).inbox.is_empty(),
        "nothing before entry 1"
    );
    w.complete(core, 0);
    assert_eq!(
        w.received(core, bob).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
    // The sender's device got acks, in its own inbox order.
    assert_eq!(
        w.received(core, alice).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
}

#[test]
fn a_missing_entry_is_read_back_after_its_timeout() {
    let mut w = World::new(2);
    let (bob_core, bob) = live(&mut w, BOB, PHONE);
    let (alice_core, alice) = live(&mut w, ALICE, PHONE);
    for _ in 0..3 {
        w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    }
    // The first completion is lost on its way (its producing core died).
    w.completions[alice_core].remove(0);
    w.complete(alice_core, 0);
    w.complete(alice_core, 0);
    while !w.mail[bob_core].is_empty() {
        w.deliver_mail(bob_core);
    }
    assert!(w.received(bob_core, bob).inbox.is_empty());
    w.tick(GAP / 2);
    assert!(w.reads.is_empty(), "not read back before the timeout");
    w.tick(GAP);
    // Both users miss entry 1 (Alice's own ack rode the lost completion).
    let gaps: Vec<(UserId, InboxSeq, usize)> = w
        .reads
        .iter()
        .map(|(_, o)| match o {
            Output::ReadGap { user, after, limit } => (*user, *after, *limit),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(gaps.contains(&(BOB, InboxSeq::ZERO, 1)), "{gaps:?}");
    assert!(gaps.contains(&(ALICE, InboxSeq::ZERO, 1)), "{gaps:?}");
    while !w.reads.is_empty() {
        w.answer_read(0);
    }
    assert_eq!(
        w.received(bob_core, bob).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
    assert_eq!(
        w.received(alice_core, alice).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
}

#[test]
fn replay_and_live_delivery_hand_over_with_no_gap_and_no_duplicate() {
    let mut w = World::new(1);
    let (core, alice) = live(&mut w, ALICE, PHONE);
    for _ in 0..5 {
        w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    }
    w.settle();
    // Bob comes online with entry 2: the replay is asked for (2, 5].
    let (_, bob) = w.connect(BOB, PHONE, InboxSeq(2));
    w.answer_read(0);
    assert!(
        matches!(w.replays.as_slice(), [(_, _, from, to)] if *from == InboxSeq(2) && *to == InboxSeq(5))
    );
    // Two more arrive live while the replay is still reading.
    w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    w.complete(core, 1);
    w.complete(core, 0);
    assert!(
        w.received(core, bob).inbox.is_empty(),
        "live entries wait for the replay"
    );
    w.replay(0);
    let r = w.received(core, bob);
    assert_eq!(r.inbox, (3..=7).map(InboxSeq).collect::<Vec<_>>());
    assert_gapless(r);
}

#[test]
fn a_quick_reconnect_publishes_no_presence_change() {
    let mut w = World::new(2);
    let (core, watcher) = live(&mut w, BOB, PHONE);
    w.shards[core].watch(w.now, watcher, &[ALICE]);
    w.pump(core);
    w.settle();
    w.presence.clear();
    let (alice_core, first) = live(&mut w, ALICE, PHONE);
    w.settle();
    assert_eq!(w.presence.len(), 1, "online once");
    assert!(w.presence[0].1.online);
    w.disconnect(alice_core, first);
    w.tick(GRACE / 2);
    let _ = live(&mut w, ALICE, LAPTOP);
    w.tick(GRACE * 2);
    w.settle();
    assert_eq!(
        w.presence.len(),
        1,
        "a reconnect inside the grace period is no change"
    );
    let conns = w.shards[alice_core].user_conns(ALICE);
    w.disconnect(alice_core, conns[0]);
    w.tick(GRACE - Duration::from_millis(1));
    w.settle_mail();
    assert_eq!(w.presence.len(), 1, "still online inside the grace period");
    w.tick(Duration::from_millis(2));
    w.settle_mail();
    assert_eq!(w.presence.len(), 2);
    let offline = w.presence[1].1;
    assert!(!offline.online);
    assert!(
        offline.last_seen_ms > 1_000_000,
        "last seen is when offline was declared"
    );
}

impl World {
    fn settle_mail(&mut self) {
        for core in 0..self.shards.len() {
            while !self.mail[core].is_empty() {
                self.deliver_mail(core);
            }
        }
    }
}

#[test]
fn a_slow_consumer_loses_ephemeral_frames_first_then_the_connection() {
    let mut w = World::new(1);
    let (core, bob) = live(&mut w, BOB, PHONE);
    let small = 2048;
    w.shards[core].config.outbound_limit_bytes = small;
    let typing = Frame::TypingEvent(frame::TypingEvent {
        channel_id: DM,
        user_id: ALICE,
    });
    let bytes = Bytes::from(Encoding::Binary.encode(&typing));
    // A stuck socket: queue without the writer taking anything.
    for _ in 0..10 {
        w.shards[core].queue(
            bob,
            OutFrame::Encoded(typing.frame_type(), bytes.clone()),
            Priority::Droppable,
        );
    }
    let big = Frame::HeartbeatAck(frame::HeartbeatAck {
        nonce: 1,
        server_time_ms: 1,
    });
    let filler = Bytes::from(vec![0u8; small / 2]);
    w.shards[core].queue(
        bob,
        OutFrame::Encoded(big.frame_type(), filler.clone()),
        Priority::Required,
    );
    assert!(!w.shards[core].is_closing(bob));
    w.shards[core].queue(
        bob,
        OutFrame::Encoded(big.frame_type(), filler.clone()),
        Priority::Required,
    );
    assert!(
        !w.shards[core].is_closing(bob),
        "typing notices were shed to make room"
    );
    w.shards[core].queue(
        bob,
        OutFrame::Encoded(big.frame_type(), filler),
        Priority::Required,
    );
    assert!(w.shards[core].is_closing(bob), "nothing left to shed");
    // The reader is told, once, even though the writer never took a wake-up.
    w.shards[core].close(bob, CloseReason::PeerClosed);
    while let Some(out) = w.shards[core].poll_output() {
        if let Output::Closing(conn) = out {
            w.closing.push((core, conn));
        }
    }
    assert_eq!(w.closing, [(core, bob)]);
    let mut frames = Vec::new();
    let close = w.shards[core].take_output(bob, &mut frames).unwrap();
    assert_eq!(
        close.unwrap().code(),
        confab_protocol::ErrorCode::SlowConsumer.code()
    );
    assert!(
        frames.iter().all(|(_, p)| *p == Priority::Required),
        "no typing notice survived"
    );
}

#[test]
fn json_is_encoded_only_for_a_json_recipient() {
    let mut w = World::new(1);
    let (core, alice) = live(&mut w, ALICE, PHONE);
    let (_, _bob) = live(&mut w, BOB, PHONE);
    w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    let c = w.completions[core].remove(0);
    let Ok(outcome) = &c.result else {
        unreachable!()
    };
    let outcome = outcome.clone();
    w.shards[core].handle(w.now, Input::Stored(c));
    let mut delivered = None;
    while let Some(out) = w.shards[core].poll_output() {
        if let Output::Wake(conn) = out {
            let mut frames = Vec::new();
            w.shards[core].take_output(conn, &mut frames);
            for (f, _) in frames {
                if let OutFrame::Message { body, .. } = f {
                    delivered = Some(body);
                }
            }
        }
    }
    let body = delivered.expect("Bob got the message");
    assert_eq!(outcome.inbox.len(), 2);
    // The body Bob got is the shared binary tail; JSON was never made.
    let d = crate::fanout::Delivery::new(
        StoredMessage {
            channel: DM,
            seq: outcome.seq,
            sender: ALICE,
            device: PHONE,
            client_msg_id: 1,
            timestamp_ms: 1,
            text: "m1".into(),
        },
        crate::fanout::Origin::Refill,
        w.now,
    );
    let _ = d.frame(Encoding::Binary, InboxSeq(1));
    assert!(!d.is_encoded(Encoding::Json));
    assert!(!body.is_empty());
}

#[test]
fn a_failed_start_read_closes_the_waiting_devices_and_the_next_device_asks_again() {
    let mut w = World::new(1);
    let (core, first) = w.connect(BOB, PHONE, InboxSeq::ZERO);
    let (_, second) = w.connect(BOB, LAPTOP, InboxSeq::ZERO);
    assert_eq!(
        w.reads.len(),
        1,
        "one read for the user, not one per device"
    );
    let Some((_, Output::ReadLastInboxSeq { read, .. })) = w.reads.pop() else {
        panic!("a start read was asked for");
    };
    w.shards[core].handle(
        w.now,
        Input::LastInboxSeq {
            user: BOB,
            read,
            last: None,
        },
    );
    w.pump(core);
    for conn in [first, second] {
        let closed = w.received(core, conn).closed.clone();
        assert_eq!(
            closed.map(|c| c.code()),
            Some(confab_protocol::ErrorCode::Unavailable.code())
        );
    }
    assert!(w.replays.is_empty());
    // Storage is back: a device that connects now gets its stream.
    let (_, third) = w.connect(BOB, DeviceId(12), InboxSeq::ZERO);
    assert_eq!(w.reads.len(), 1, "asked again: {:?}", w.reads);
    w.answer_read(0);
    assert_eq!(w.replays.len(), 1);
    w.replay(0);
    assert!(w.received(core, third).closed.is_none());
}

#[test]
fn a_start_read_made_for_an_earlier_slot_does_not_start_the_stream_of_the_next() {
    let mut w = World::new(1);
    // The user's first device asks where the stream starts, and leaves
    // before the answer; the user goes offline (the grace period passes).
    let (core, first) = w.connect(ALICE, PHONE, InboxSeq::ZERO);
    w.disconnect(core, first);
    w.tick(Duration::from_secs(5));
    // Back, with a read of its own; the first read is answered only now,
    // then a message is stored, then the second read is answered (it sees
    // the message).
    let (_, conn) = w.connect(ALICE, PHONE, InboxSeq::ZERO);
    assert_eq!(w.reads.len(), 2, "the new slot asked again");
    w.answer_read(0);
    let (channel, members) = (ChannelId(102), [ALICE, BOB, UserId(3)]);
    w.send(ALICE, PHONE, conn, channel, &members);
    w.answer_read(0);
    w.settle();
    let r = w.received(core, conn);
    assert_gapless(r);
    assert_eq!(r.inbox.last().copied(), Some(w.log.last(ALICE)));
}
