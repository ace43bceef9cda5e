//! The session model over each transport the SDK offers (ws, wss, QUIC): 1:1, groups, catch-up, history, presence, typing and receipts, refusals, close.

use std::time::Duration;

use confab_client::{
    ChannelId, Client, ClientError, ClientEvent, ConnectionState, DeviceId, ErrorCode,
    HistoryAnchor, InboxSeq, Seq, Target, Transport, UserId,
};

use crate::common::*;
use crate::harness::*;

over_each_transport!(one_to_one_reaches_every_device_and_resolves_the_send);
fn one_to_one_reaches_every_device_and_resolves_the_send(transport: Transport) {
    let node = SdkNode::on(transport, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let (a1, mut a1_events) = start(node.config(alice, 1)).await;
        let (_a2, mut a2_events) = start(node.config(alice, 2)).await;
        let (b7, mut b7_events) = start(node.config(bob, 7)).await;
        let (_b8, mut b8_events) = start(node.config(bob, 8)).await;
        assert_eq!(a1.user_id(), Some(alice));

        let first_id = a1.next_client_msg_id();
        let ack = a1.send(Target::User(bob), "hello bob").await.unwrap();
        assert_eq!(
            (ack.client_msg_id, ack.seq, ack.inbox_seq, ack.duplicate),
            (first_id, Seq(1), InboxSeq(1), false)
        );
        assert_eq!(a1.next_client_msg_id(), first_id + 1);
        for events in [&mut b7_events, &mut b8_events] {
            let m = message(events).await;
            assert_eq!(
                (&*m.text, m.sender_id, m.sender_device, m.seq),
                ("hello bob", UserId(alice.into()), DeviceId(1), Seq(1))
            );
            assert_eq!(
                (m.channel_id, m.inbox_seq),
                (ChannelId(ack.channel_id.into()), InboxSeq(1))
            );
        }
        // The sender's other device gets the message itself.
        let m = message(&mut a2_events).await;
        assert_eq!((&*m.text, m.sender_device), ("hello bob", DeviceId(1)));

        // Bob answers in the channel by id; the sending device never sees
        // its own message as an event, so alice's next one is bob's.
        let reply = b7
            .send(Target::Channel(ack.channel_id), "hi alice")
            .await
            .unwrap();
        assert_eq!(reply.seq, Seq(2));
        for events in [&mut a1_events, &mut a2_events, &mut b8_events] {
            let m = message(events).await;
            assert_eq!(
                (&*m.text, m.seq, m.inbox_seq),
                ("hi alice", Seq(2), InboxSeq(2))
            );
        }
        assert_eq!(a1_events.cursor(), InboxSeq(2));
        assert_eq!(a1.cursor(), InboxSeq(2));

        // Text the protocol forbids is refused locally; nothing is sent.
        let empty = a1.send(Target::User(bob), "").await;
        assert_eq!(empty, Err(ClientError::InvalidText(ErrorCode::EmptyText)));
        let long = a1.send(Target::User(bob), "x".repeat(100_001)).await;
        assert_eq!(long, Err(ClientError::InvalidText(ErrorCode::TextTooLong)));

        // The longest text allowed (200 KB in two-byte characters) arrives
        // whole: its frame spans many of the client's socket reads.
        let longest = "é".repeat(100_000);
        let ack = a1.send(Target::User(bob), longest.clone()).await.unwrap();
        assert_eq!(ack.seq, Seq(3));
        let m = message(&mut b8_events).await;
        assert_eq!(m.seq, Seq(3));
        assert!(*m.text == *longest, "the long text arrived changed");
    });
}

over_each_transport!(a_group_message_reaches_every_member_and_strangers_are_refused);
fn a_group_message_reaches_every_member_and_strangers_are_refused(transport: Transport) {
    let node = SdkNode::on(transport, |_| {});
    let (alice, bob, carol, eve) = (
        node.user("alice"),
        node.user("bob"),
        node.user("carol"),
        node.user("eve"),
    );
    let group = node.group(alice, &[bob, carol]);
    block_on(async {
        let (a, _a_events) = start(node.config(alice, 1)).await;
        let (_b, mut b_events) = start(node.config(bob, 1)).await;
        let (_c, mut c_events) = start(node.config(carol, 1)).await;
        let (e, _e_events) = start(node.config(eve, 1)).await;
        let ack = a.send(Target::Channel(group), "all hands").await.unwrap();
        assert_eq!((ack.channel_id, ack.seq), (ChannelId(group.into()), Seq(1)));
        for events in [&mut b_events, &mut c_events] {
            let m = message(events).await;
            assert_eq!(
                (m.channel_id, m.seq, m.sender_id, &*m.text),
                (
                    ChannelId(group.into()),
                    Seq(1),
                    UserId(alice.into()),
                    "all hands"
                )
            );
        }
        // A non-member's send fails for good, with the server's code.
        match e.send(Target::Channel(group), "let me in").await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::ForbiddenChannel),
            other => panic!("expected FORBIDDEN_CHANNEL, got {other:?}"),
        }
    });
}

over_each_transport!(an_offline_device_catches_up_from_its_cursor_then_goes_live);
fn an_offline_device_catches_up_from_its_cursor_then_goes_live(transport: Transport) {
    // Small pages, so the catch-up spans several replay batches.
    let node = SdkNode::on(transport, |s| s.max_page = 3);
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let (a, _a_events) = start(node.config(alice, 1)).await;
        for i in 1..=7 {
            a.send(Target::User(bob), format!("m{i}")).await.unwrap();
        }
        // Bob's device had seen the first two before it went offline.
        let mut config = node.config(bob, 1);
        config.inbox_cursor = InboxSeq(2);
        let (_b, mut b_events) = Client::connect(config).unwrap();
        let mut texts = Vec::new();
        for _ in 3..=7 {
            let m = message(&mut b_events).await;
            texts.push((m.inbox_seq.0, m.text.to_string()));
        }
        let expected: Vec<(u64, String)> = (3..=7).map(|i| (i, format!("m{i}"))).collect();
        assert_eq!(texts, expected, "in order, from the cursor, once each");
        assert_eq!(b_events.cursor(), InboxSeq(7));
        a.send(Target::User(bob), "live").await.unwrap();
        let m = message(&mut b_events).await;
        assert_eq!((m.inbox_seq, &*m.text), (InboxSeq(8), "live"));
        assert_eq!(b_events.cursor(), InboxSeq(8));

        // A new device of bob's gets the whole inbox.
        let (_b2, mut b2_events) = Client::connect(node.config(bob, 2)).unwrap();
        for i in 1..=8 {
            assert_eq!(message(&mut b2_events).await.inbox_seq, InboxSeq(i));
        }
    });
}

over_each_transport!(history_pages_through_a_channel);
fn history_pages_through_a_channel(transport: Transport) {
    let node = SdkNode::on(transport, |_| {});
    let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let (a, _a_events) = start(node.config(alice, 1)).await;
        for i in 1..=5 {
            a.send(Target::Channel(group), format!("h{i}"))
                .await
                .unwrap();
        }
        // A call made before the session is up is sent once it is, at
        // once (not at the next heartbeat).
        let (b, _b_events) = Client::connect(node.config(bob, 1)).unwrap();
        let early = tokio::time::timeout(
            Duration::from_secs(5),
            b.history(group, HistoryAnchor::Latest, 1),
        )
        .await
        .expect("answered without waiting for a heartbeat")
        .unwrap();
        assert_eq!(early.messages[0].seq, Seq(5));
        let seqs = |batch: &confab_client::HistoryBatch| -> Vec<u64> {
            batch.messages.iter().map(|m| m.seq.0).collect()
        };
        let latest = b.history(group, HistoryAnchor::Latest, 3).await.unwrap();
        assert_eq!((seqs(&latest), latest.has_more), (vec![3, 4, 5], true));
        assert_eq!(latest.messages[0].text, "h3");
        let older = b
            .history(group, HistoryAnchor::Before(Seq(3)), 3)
            .await
            .unwrap();
        assert_eq!((seqs(&older), older.has_more), (vec![1, 2], false));
        let newer = b
            .history(group, HistoryAnchor::After(Seq(3)), 10)
            .await
            .unwrap();
        assert_eq!(seqs(&newer), vec![4, 5]);
        // A non-member reads nothing.
        let (e, _e_events) = start(node.config(eve, 1)).await;
        match e.history(group, HistoryAnchor::Latest, 3).await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::ForbiddenChannel),
            other => panic!("expected FORBIDDEN_CHANNEL, got {other:?}"),
        }
    });
}

over_each_transport!(presence_is_queried_and_followed_by_subscription);
fn presence_is_queried_and_followed_by_subscription(transport: Transport) {
    let node = SdkNode::on(transport, |s| s.presence_grace = Duration::from_millis(200));
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    node.befriend(alice, bob);
    block_on(async {
        let (b, mut b_events) = start(node.config(bob, 1)).await;
        let now = b.presence_subscribe(vec![alice]).await.unwrap();
        assert_eq!((now[0].user_id, now[0].online), (alice, false));
        let (a, _a_events) = start(node.config(alice, 1)).await;
        let online = expect(&mut b_events, "alice online", |e| match e {
            ClientEvent::Presence(p) if p.iter().any(|p| p.user_id == alice && p.online) => {
                Some(())
            }
            _ => None,
        });
        online.await;
        let asked = b.presence_query(vec![alice]).await.unwrap();
        assert!(asked[0].online);
        // She leaves: after the grace period the change is pushed.
        a.close().await;
        expect(&mut b_events, "alice offline", |e| match e {
            ClientEvent::Presence(p)
                if p.iter()
                    .any(|p| p.user_id == alice && !p.online && p.last_seen_ms > 0) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    });
}

over_each_transport!(typing_and_read_receipts_reach_the_other_members);
fn typing_and_read_receipts_reach_the_other_members(transport: Transport) {
    let node = SdkNode::on(transport, |s| s.typing_interval = Duration::from_millis(20));
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let (a, mut a_events) = start(node.config(alice, 1)).await;
        let (b, mut b_events) = start(node.config(bob, 1)).await;
        let typing = typing_seen(&a, group, &mut b_events).await;
        assert_eq!((typing.channel_id, typing.user_id), (group, alice));
        let ack = a.send(Target::Channel(group), "read me").await.unwrap();
        assert_eq!(message(&mut b_events).await.seq, ack.seq);
        b.read(group, ack.seq).unwrap();
        let receipt = expect(&mut a_events, "a receipt", |e| match e {
            ClientEvent::Receipt(r) => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (receipt.channel_id, receipt.user_id, receipt.seq),
            (ChannelId(group.into()), UserId(bob.into()), Seq(1))
        );
    });
}

over_each_transport!(a_refused_token_stops_reconnecting_until_a_new_one_is_set);
fn a_refused_token_stops_reconnecting_until_a_new_one_is_set(transport: Transport) {
    let node = SdkNode::on(transport, |_| {});
    let alice = node.user("alice");
    let good = node.token(alice);
    block_on(async {
        let mut config = node.config(alice, 1);
        config.token = "not.a.token".into();
        let (client, mut events) = Client::connect(config).unwrap();
        match next_event(&mut events).await {
            ClientEvent::Refused { code, .. } => assert_eq!(code, ErrorCode::Unauthenticated),
            other => panic!("expected Refused, got {other:?}"),
        }
        assert_eq!(client.state(), ConnectionState::Refused);
        // No reconnect attempts follow: nothing happens for a while.
        let quiet = tokio::time::timeout(Duration::from_millis(1500), events.recv()).await;
        assert!(quiet.is_err(), "the client kept going: {quiet:?}");
        assert_eq!(client.state(), ConnectionState::Refused);
        // Calls fail with the refusal instead of waiting forever.
        match client.history(ChannelId(1), HistoryAnchor::Latest, 1).await {
            Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Unauthenticated),
            other => panic!("{other:?}"),
        }
        match client.send(Target::User(alice), "hi").await {
            Err(ClientError::Refused { .. }) => {}
            other => panic!("{other:?}"),
        }
        // A new token brings it back at once.
        client.set_token(good).unwrap();
        let welcome = connected(&mut events).await;
        assert_eq!(welcome.user_id, alice);
        assert_eq!(client.state(), ConnectionState::Connected);
    });
}

over_each_transport!(close_ends_the_events_and_fails_later_calls);
fn close_ends_the_events_and_fails_later_calls(transport: Transport) {
    let node = SdkNode::on(transport, |_| {});
    let alice = node.user("alice");
    block_on(async {
        let (client, mut events) = start(node.config(alice, 1)).await;
        let other = client.clone();
        client.close().await;
        assert_eq!(other.state(), ConnectionState::Closed);
        loop {
            match next_event(&mut events).await {
                ClientEvent::Closed => break,
                ClientEvent::Rtt(_) => {}
                e => panic!("unexpected {e:?}"),
            }
        }
        assert!(events.recv().await.is_none());
        assert_eq!(
            other.send(Target::User(alice), "late").await,
            Err(ClientError::Closed)
        );
        assert_eq!(
            other.presence_query(vec![alice]).await,
            Err(ClientError::Closed)
        );
    });
}
