//! Presence, typing and read receipts between sessions.

use std::time::Duration;

use confab_gateway::IoMode;
use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::ErrorCode;
use confab_types::{ChannelId, Seq, UserId};

use confab_storage::MessageLog;

use crate::client::*;
use crate::common::*;

#[test]
fn presence_goes_to_friends_with_debounce_and_last_seen() {
    both_backends(|io| {
        let node = TestNode::start(io, |s| s.presence_grace = Duration::from_millis(500));
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        node.befriend(alice, bob);
        block_on(async {
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            let presence = |f: &Frame| matches!(f, Frame::Presence(p) if p.request_id == 0);
            let online = |f: &Frame| matches!(f, Frame::Presence(p) if p.request_id == 0 && p.entries[0].online);
            let a = Client::connect(&node, alice, 1, 0).await;
            match b.recv_where(online).await {
                Frame::Presence(p) => {
                    assert_eq!((p.entries[0].user_id, p.entries[0].online), (alice, true))
                }
                _ => unreachable!(),
            }
            // A quick reconnect publishes nothing.
            drop(a);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            // A query sees her online.
            b.send(&Frame::PresenceQuery(frame::PresenceQuery {
                request_id: 5,
                user_ids: vec![alice],
            }))
            .await;
            match b
                .recv_where(|f| matches!(f, Frame::Presence(p) if p.request_id == 5))
                .await
            {
                Frame::Presence(p) => assert!(p.entries[0].online),
                _ => unreachable!(),
            }
            let before = confab_types::now_ms();
            drop(a);
            match b.recv_where(presence).await {
                Frame::Presence(p) => {
                    let e = p.entries[0];
                    assert_eq!(
                        (e.user_id, e.online),
                        (alice, false),
                        "the reconnect did not publish"
                    );
                    assert!(
                        e.last_seen_ms >= before,
                        "last seen is stored on going offline"
                    );
                }
                _ => unreachable!(),
            }
        });
    });
}

#[test]
fn a_silent_device_is_dropped_after_three_heartbeat_intervals() {
    let node = TestNode::start(IoMode::Epoll, |s| {
        s.heartbeat_interval = Duration::from_millis(200)
    });
    let alice = node.user("alice");
    block_on(async {
        let mut a = Client::connect(&node, alice, 1, 0).await;
        assert_eq!(a.welcome.heartbeat_interval_ms, 200);
        a.replay().await;
        let started = std::time::Instant::now();
        match a.recv_where(|f| matches!(f, Frame::Error(_))).await {
            Frame::Error(e) => assert_eq!(e.code, ErrorCode::HeartbeatTimeout),
            _ => unreachable!(),
        }
        assert!(started.elapsed() >= Duration::from_millis(550));
    });
}

#[test]
fn typing_and_read_receipts_reach_the_other_members() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        a.send(&Frame::Typing(frame::Typing { channel_id: group }))
            .await;
        match b.recv().await {
            Frame::TypingEvent(t) => assert_eq!((t.channel_id, t.user_id), (group, alice)),
            other => panic!("{other:?}"),
        }
        a.post(1, Target::Channel(group), "read me").await;
        a.ack().await;
        assert_eq!(b.message().await.seq, Seq(1));
        b.send(&Frame::Read(frame::Read {
            channel_id: group,
            seq: Seq(1),
        }))
        .await;
        match a.recv_where(|f| matches!(f, Frame::Receipt(_))).await {
            Frame::Receipt(r) => assert_eq!(
                (r.channel_id, r.user_id, r.seq),
                (ChannelId(group.into()), UserId(bob.into()), Seq(1))
            ),
            _ => unreachable!(),
        }
        // The mark is stored.
        let marks = node.node.log().read_marks(group).unwrap();
        assert_eq!(marks, [(bob, Seq(1))]);
    });
}

#[test]
fn group_presence_is_on_demand_and_strangers_stay_hidden() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
    node.group(alice, &[bob]);
    block_on(async {
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        let mut e = Client::connect(&node, eve, 1, 0).await;
        e.replay().await;
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        // A co-member (not a friend) is visible on demand...
        a.send(&Frame::PresenceQuery(frame::PresenceQuery {
            request_id: 1,
            user_ids: vec![bob, eve],
        }))
        .await;
        match a
            .recv_where(|f| matches!(f, Frame::Presence(p) if p.request_id == 1))
            .await
        {
            Frame::Presence(p) => {
                assert_eq!((p.entries[0].user_id, p.entries[0].online), (bob, true));
                // ...a stranger reads as offline and never seen.
                assert_eq!(
                    (
                        p.entries[1].user_id,
                        p.entries[1].online,
                        p.entries[1].last_seen_ms
                    ),
                    (eve, false, 0)
                );
            }
            _ => unreachable!(),
        }
    });
}
