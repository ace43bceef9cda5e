//! Rules of docs/protocol.md checked from the client's side, over raw
//! WebSocket frames: what a client written from the document alone would
//! send and expect back.

use std::time::Duration;

use confab_gateway::IoMode;
use confab_protocol::binary::DEFAULT_MAX_FRAME_BYTES;
use confab_protocol::frame::{self, Frame, FrameType, HistoryAnchor, Target};
use confab_protocol::ErrorCode;
use confab_types::{ChannelId, Seq};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::client::*;
use crate::common::*;

type JsonWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `confab.v1.json` session of `user`, past its replay.
async fn json_session(node: &TestNode, user: confab_types::UserId, device: u64) -> JsonWs {
    let mut req = node.url().as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "confab.v1.json".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let token = node.token(user);
    let hello = format!(
        r#"{{"type":"hello","min_version":1,"max_version":1,"token":"{token}","device_id":{device},"inbox_cursor":0}}"#
    );
    ws.send(Ws::Text(hello.into())).await.unwrap();
    loop {
        let v = next_json(&mut ws).await;
        if v["type"] == "sync_batch" && v["has_more"] == false {
            return ws;
        }
    }
}

/// The next JSON frame, as a value.
async fn next_json(ws: &mut JsonWs) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame within 10 s")
            .expect("stream ended")
            .expect("stream failed");
        match m {
            Ws::Text(t) => return serde_json::from_str(&t).unwrap(),
            Ws::Ping(_) | Ws::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next JSON frame of type `ty`, skipping presence and typing pushes.
async fn next_json_of(ws: &mut JsonWs, ty: &str) -> serde_json::Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == ty {
            return v;
        }
        assert!(
            v["type"] == "presence" || v["type"] == "typing_event",
            "expected {ty}, got {v}"
        );
    }
}

/// `text` with every character written as a `\u` escape (two for a
/// character outside the Basic Multilingual Plane), as JSON allows.
fn escaped(text: &str) -> String {
    let mut out = String::new();
    for unit in text.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out
}

#[test]
fn a_maximal_text_fits_a_frame_in_either_encoding_even_fully_escaped() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        // Section 12: 100,000 characters is within the limit; written as
        // JSON with every character a surrogate pair of escapes it takes
        // 1,200,000 bytes.
        let text = "😀".repeat(100_000);
        let mut a = json_session(&node, alice, 1).await;
        let send = format!(
            r#"{{"type":"send","client_msg_id":1,"target":{{"user":{}}},"text":"{}"}}"#,
            bob.0,
            escaped(&text)
        );
        assert!(send.len() > 1_200_000 && send.len() <= DEFAULT_MAX_FRAME_BYTES);
        a.send(Ws::Text(send.into())).await.unwrap();
        let ack = next_json_of(&mut a, "send_ack").await;
        assert_eq!(
            (ack["client_msg_id"].as_u64(), ack["seq"].as_u64()),
            (Some(1), Some(1))
        );
        let m = b.message().await;
        assert_eq!(&*m.text, text.as_str());
        // The same text from a binary client: 400,000 bytes of UTF-8.
        let mut a2 = Client::connect(&node, alice, 2, 0).await;
        a2.replay().await;
        a2.post(2, Target::User(bob), &text).await;
        assert_eq!(a2.ack().await.seq, Seq(2));
        assert_eq!(&*b.message().await.text, text.as_str());
    });
}

#[test]
fn an_oversize_message_is_skipped_with_an_error_and_the_connection_stays_open() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        // Binary: a WebSocket message longer than the maximum frame.
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        a.ws.send(Ws::Binary(vec![0u8; DEFAULT_MAX_FRAME_BYTES + 100].into()))
            .await
            .unwrap();
        let e = a.error().await;
        assert_eq!(
            (e.code, e.frame_type, e.request_id),
            (ErrorCode::FrameTooLarge, 0, 0)
        );
        a.post(1, Target::User(bob), "still here").await;
        assert_eq!(a.ack().await.seq, Seq(1));

        // JSON: a text message longer than the maximum, with a text of
        // more than 100,000 characters.
        let mut j = json_session(&node, alice, 2).await;
        let big = format!(
            r#"{{"type":"send","client_msg_id":9,"target":{{"user":{}}},"text":"{}"}}"#,
            bob.0,
            escaped(&"😀".repeat(110_000))
        );
        assert!(big.len() > DEFAULT_MAX_FRAME_BYTES);
        j.send(Ws::Text(big.into())).await.unwrap();
        let e = next_json_of(&mut j, "error").await;
        assert_eq!(
            (e["code"].as_u64(), e["frame_type"].as_u64()),
            (Some(103), Some(0))
        );
        j.send(Ws::Text(r#"{"type":"heartbeat","nonce":5}"#.into()))
            .await
            .unwrap();
        let ack = next_json_of(&mut j, "heartbeat_ack").await;
        assert_eq!(ack["nonce"].as_u64(), Some(5));
        // Nothing was stored from the oversize message.
        let mut b = Client::connect(&node, bob, 1, 0).await;
        let replayed = b.replay().await;
        assert_eq!(replayed.len(), 1);
        assert_eq!(&*replayed[0].text, "still here");
    });
}

#[test]
fn errors_carry_the_type_of_the_frame_they_answer() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let alice = node.user("alice");
    block_on(async {
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        // A `Send` whose text length runs past the end of the frame.
        a.ws.send(Ws::Binary(vec![0x05, 0x02, 0x01, 0x00, 0x01, 0x09].into()))
            .await
            .unwrap();
        let e = a.error().await;
        assert_eq!((e.code, e.frame_type), (ErrorCode::BadFrame, 2));
        // A message that ends inside a `Heartbeat`: still a `Heartbeat`.
        a.ws.send(Ws::Binary(vec![0x03, 0x0a].into()))
            .await
            .unwrap();
        let e = a.error().await;
        assert_eq!((e.code, e.frame_type), (ErrorCode::BadFrame, 0x0a));
        // An unknown type has no type to name.
        a.ws.send(Ws::Binary(vec![0x03, 0x3f, 0x01, 0x02].into()))
            .await
            .unwrap();
        let e = a.error().await;
        assert_eq!((e.code, e.frame_type), (ErrorCode::UnknownFrameType, 0));
        // A valid frame in the wrong place names its own type.
        a.send(&hello(&node.token(alice), 1, 0)).await;
        let e = a.error().await;
        assert_eq!(
            (e.code, e.frame_type),
            (ErrorCode::UnexpectedFrame, FrameType::Hello.as_u8())
        );
    });
}

#[test]
fn a_bad_length_prefix_ends_the_session_with_close_100() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let alice = node.user("alice");
    block_on(async {
        // A length of 0, and a length prefix of 11 bytes (section 13.3).
        let eleven = vec![0x80u8; 10]
            .into_iter()
            .chain([0x01])
            .collect::<Vec<_>>();
        for bytes in [vec![0x00], eleven] {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            a.ws.send(Ws::Binary(bytes.clone().into())).await.unwrap();
            let close = loop {
                match a.recv().await {
                    Frame::Close(c) => break c,
                    Frame::Error(e) => assert_eq!(e.code, ErrorCode::BadFrame),
                    other => panic!("{bytes:?}: expected Close, got {other:?}"),
                }
            };
            assert_eq!(close.code, ErrorCode::BadFrame.code(), "{bytes:?}");
            // Then the transport closes.
            loop {
                match a.next_raw().await {
                    None | Some(Ws::Close(_)) => break,
                    Some(Ws::Ping(_) | Ws::Pong(_)) => {}
                    Some(other) => panic!("{bytes:?}: data after Close: {other:?}"),
                }
            }
        }
    });
}

#[test]
fn zero_limits_and_the_replay_request_id_are_invalid_arguments() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        let sync = |request_id, limit| {
            Frame::Sync(frame::Sync {
                request_id,
                after: confab_types::InboxSeq(0),
                limit,
            })
        };
        let cases = [
            (sync(7, 0), FrameType::Sync, 7),
            (sync(0, 10), FrameType::Sync, 0),
            (
                Frame::History(frame::History {
                    request_id: 8,
                    channel_id: group,
                    anchor: HistoryAnchor::Latest,
                    limit: 0,
                }),
                FrameType::History,
                8,
            ),
        ];
        for (f, ty, request_id) in cases {
            a.send(&f).await;
            let e = a.error().await;
            assert_eq!(
                (e.code, e.frame_type, e.request_id),
                (ErrorCode::InvalidArgument, ty.as_u8(), request_id),
                "{f:?}"
            );
        }
        // A limit of 1 is a valid page.
        a.send(&sync(9, 1)).await;
        match a.recv().await {
            Frame::SyncBatch(b) => assert_eq!(b.request_id, 9),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_clients_close_is_not_answered_with_a_close() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let alice = node.user("alice");
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            a.send(&Frame::Close(frame::Close {
                code: 0,
                message: String::new(),
            }))
            .await;
            // Section 7.11: the receiver closes its side and sends nothing
            // more; only the WebSocket closing handshake follows.
            loop {
                match a.next_raw().await {
                    None | Some(Ws::Close(_)) => break,
                    Some(Ws::Ping(_) | Ws::Pong(_)) => {}
                    Some(other) => panic!("the server answered Close with {other:?}"),
                }
            }
        });
    });
}

#[test]
fn an_unknown_channel_is_answered_as_one_the_user_is_not_in() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
    let group = node.group(alice, &[bob]);
    let unknown = ChannelId(group.0 + 1_000_000);
    block_on(async {
        let mut e = Client::connect(&node, eve, 1, 0).await;
        e.replay().await;
        let mut answers = Vec::new();
        for channel in [group, unknown] {
            e.post(1, Target::Channel(channel), "hi").await;
            let send = e.error().await;
            e.send(&Frame::History(frame::History {
                request_id: 2,
                channel_id: channel,
                anchor: HistoryAnchor::Latest,
                limit: 5,
            }))
            .await;
            let history = e.error().await;
            e.send(&Frame::Read(frame::Read {
                channel_id: channel,
                seq: Seq(1),
            }))
            .await;
            let read = e.error().await;
            answers.push([send, history, read]);
        }
        for e in &answers[0] {
            assert_eq!(e.code, ErrorCode::ForbiddenChannel, "{e:?}");
        }
        // Word for word the same: an outsider cannot tell which exists.
        assert_eq!(answers[0], answers[1]);
    });
}
