//! What the gateway refuses, and how: non-members, bad input, bad or revoked tokens, members removed through the API.

use confab_types::Seq;
use std::time::Duration;

use confab_gateway::IoMode;
use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::{binary, ErrorCode};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::client::*;
use crate::common::*;

#[test]
fn non_members_cannot_send_or_read_and_bad_input_is_answered() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
        let group = node.group(alice, &[bob]);
        block_on(async {
            let mut e = Client::connect(&node, eve, 1, 0).await;
            e.replay().await;
            e.post(1, Target::Channel(group), "let me in").await;
            assert_eq!(e.error().await.code, ErrorCode::ForbiddenChannel);
            e.send(&Frame::History(frame::History {
                request_id: 9,
                channel_id: group,
                anchor: frame::HistoryAnchor::Latest,
                limit: 10,
            }))
            .await;
            let err = e.error().await;
            assert_eq!((err.code, err.request_id), (ErrorCode::ForbiddenChannel, 9));
            // Too long: 100,001 characters.
            e.post(2, Target::User(alice), &"x".repeat(100_001)).await;
            assert_eq!(e.error().await.code, ErrorCode::TextTooLong);
            e.post(3, Target::User(alice), "").await;
            assert_eq!(e.error().await.code, ErrorCode::EmptyText);
            // Garbage and an unknown frame type: errors, not disconnects.
            e.ws.send(Ws::Binary(vec![0x03, 0x7f, 0x01, 0x02].into()))
                .await
                .unwrap();
            assert_eq!(e.error().await.code, ErrorCode::UnknownFrameType);
            e.ws.send(Ws::Binary(vec![0x05, 0x02, 0xff].into()))
                .await
                .unwrap();
            assert_eq!(e.error().await.code, ErrorCode::BadFrame);
            e.send(&Frame::Heartbeat(frame::Heartbeat { nonce: 77 }))
                .await;
            match e.recv().await {
                Frame::HeartbeatAck(h) => assert_eq!(h.nonce, 77),
                other => panic!("{other:?}"),
            }
            // The members are unaffected.
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            a.post(1, Target::Channel(group), "members only").await;
            assert_eq!(a.ack().await.seq, Seq(1));
        });
    });
}

#[test]
fn a_bad_token_is_refused_with_a_typed_error() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    block_on(async {
        let mut ws = open(&node.url()).await;
        ws.send(Ws::Binary(
            binary::encode_to_vec(&hello("not.a.token", 1, 0)).into(),
        ))
        .await
        .unwrap();
        let mut c = Client {
            ws,
            welcome: placeholder_welcome(),
        };
        // The error answers the `Hello` (section 9.1: frame_type 1).
        let e = c.error().await;
        assert_eq!(
            (e.code, e.frame_type, e.request_id),
            (ErrorCode::Unauthenticated, 1, 0)
        );
        match c.recv().await {
            Frame::Close(close) => assert_eq!(close.code, ErrorCode::Unauthenticated.code()),
            other => panic!("{other:?}"),
        }
        match c.next_raw().await {
            Some(Ws::Close(Some(f))) => assert_eq!(u16::from(f.code), 4200),
            other => panic!("expected a close frame, got {other:?}"),
        }
    });
}

#[test]
fn a_revoked_login_session_is_disconnected_and_refused() {
    use confab_directory::events::DirectoryEvent;
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let alice = node.user("alice");
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            // What the API does on logout: the shared verifier learns it,
            // and the store announces it to the gateway.
            node.node.verifier().revoke(alice.0 * 1000, u64::MAX);
            node.node
                .store()
                .events()
                .publish(DirectoryEvent::SessionRevoked {
                    user_id: alice.into(),
                    session_id: alice.0 * 1000,
                });
            assert_eq!(a.error().await.code, ErrorCode::TokenRevoked);
            // A new connection with the same token is refused.
            let mut ws = open(&node.url()).await;
            let hello = hello(&node.token(alice), 1, 0);
            ws.send(Ws::Binary(binary::encode_to_vec(&hello).into()))
                .await
                .unwrap();
            let mut c = Client {
                ws,
                welcome: placeholder_welcome(),
            };
            assert_eq!(c.error().await.code, ErrorCode::TokenRevoked);
        });
    });
}

#[test]
fn a_member_removed_through_the_api_can_no_longer_send() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        b.post(1, Target::Channel(group), "still here").await;
        assert_eq!(b.ack().await.seq, Seq(1));
        // The owner removes bob through the store (as the API does); the
        // gateway's cached membership is invalidated by the event.
        let (s, api) = (node.node.store().clone(), node.node.runtime().clone());
        // Off this thread: it is already inside the test's runtime.
        std::thread::spawn(move || {
            api.block_on(async move {
                s.remove_member(group.into(), alice.into(), bob.into())
                    .await
                    .unwrap()
            })
        })
        .join()
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut id = 2;
        loop {
            b.post(id, Target::Channel(group), "am I out?").await;
            match b
                .recv_where(|f| matches!(f, Frame::SendAck(_) | Frame::Error(_)))
                .await
            {
                Frame::Error(e) => {
                    assert_eq!(e.code, ErrorCode::ForbiddenChannel);
                    break;
                }
                _ => assert!(
                    std::time::Instant::now() < deadline,
                    "removal never reached the gateway"
                ),
            }
            id += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
