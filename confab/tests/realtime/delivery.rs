//! Messages end to end: every device of every member, in order, once; replay after a reconnect; retries and back-pressure; slow consumers.

use std::time::Duration;

use confab_gateway::IoMode;
use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::{binary, ErrorCode, FrameType};
use confab_types::{DeviceId, InboxSeq, Seq, UserId};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as Ws;

use confab_storage::writer::WriterConfig;

use crate::client::*;
use crate::common::*;

#[test]
fn one_to_one_reaches_every_device_and_acks_the_sender() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a1 = Client::connect(&node, alice, 1, 0).await;
            assert!(a1.replay().await.is_empty());
            let mut a2 = Client::connect(&node, alice, 2, 0).await;
            assert!(a2.replay().await.is_empty());
            let mut b1 = Client::connect(&node, bob, 7, 0).await;
            assert!(b1.replay().await.is_empty());

            a1.post(1, Target::User(bob), "hello bob").await;
            let ack = a1.ack().await;
            assert_eq!(
                (ack.client_msg_id, ack.seq, ack.inbox_seq, ack.duplicate),
                (1, Seq(1), InboxSeq(1), false)
            );

            let at_bob = b1.message().await;
            assert_eq!(
                (&*at_bob.text, at_bob.sender_id, at_bob.seq),
                ("hello bob", UserId(alice.into()), Seq(1))
            );
            assert_eq!(at_bob.channel_id, ack.channel_id);
            assert_eq!(at_bob.inbox_seq, InboxSeq(1));
            // The sender's other device gets the message itself.
            let at_a2 = a2.message().await;
            assert_eq!(
                (&*at_a2.text, at_a2.sender_device, at_a2.inbox_seq),
                ("hello bob", DeviceId(1), InboxSeq(1))
            );

            // Bob answers in the same channel by id.
            b1.post(1, Target::Channel(ack.channel_id), "hi alice")
                .await;
            assert_eq!(b1.ack().await.seq, Seq(2));
            for c in [&mut a1, &mut a2] {
                let m = c.message().await;
                assert_eq!(
                    (&*m.text, m.seq, m.inbox_seq),
                    ("hi alice", Seq(2), InboxSeq(2))
                );
            }
        });
    });
}

/// A frame that arrives in two parts with a long pause between them must
/// still be read whole: whatever the reader does while it waits (a timer,
/// a close notification), the first part must not be lost, or every frame
/// after it is garbage. A 100,000-character message, as apps send them.
#[test]
fn a_frame_split_by_a_pause_is_read_whole() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            assert!(a.replay().await.is_empty());
            let mut b = Client::connect(&node, bob, 1, 0).await;
            assert!(b.replay().await.is_empty());
            let text = "y".repeat(99_000);
            let payload = binary::encode_to_vec(&Frame::Send(frame::Send {
                client_msg_id: 1,
                target: Target::User(bob),
                text: text.clone().into(),
            }));
            // A masked binary frame with a 64-bit length, as a browser
            // sends it; written by hand so that it can be cut in two.
            let mask = [0x37, 0xfa, 0x21, 0x3d];
            let mut wire = vec![0x82, 0x80 | 127];
            wire.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            wire.extend_from_slice(&mask);
            wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            use tokio::io::AsyncWriteExt;
            let tcp = a.ws.get_mut();
            let cut = wire.len() / 3;
            tcp.write_all(&wire[..cut]).await.unwrap();
            tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            let tcp = a.ws.get_mut();
            tcp.write_all(&wire[cut..]).await.unwrap();
            tcp.flush().await.unwrap();
            let ack = a.ack().await;
            assert_eq!((ack.client_msg_id, ack.seq), (1, Seq(1)));
            let m = b.message().await;
            assert_eq!(m.text, text);
            // And the stream goes on in step.
            a.post(2, Target::User(bob), "after").await;
            assert_eq!(a.ack().await.seq, Seq(2));
            assert_eq!(b.message().await.text, "after");
        });
    });
}

/// A connection keeps bytes of its own only while a frame is unfinished;
/// everything else is read into its core's shared buffer. Frames that
/// arrive a byte at a time, and a frame's tail arriving in one write with
/// the next whole frame, must come out whole and in order, on both
/// backends, while another connection on the same cores keeps talking.
#[test]
fn frames_dribbled_a_byte_at_a_time_or_run_together_are_read_in_order() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            assert!(a.replay().await.is_empty());
            let mut b = Client::connect(&node, bob, 1, 0).await;
            assert!(b.replay().await.is_empty());
            let mut c = Client::connect(&node, carol, 1, 0).await;
            assert!(c.replay().await.is_empty());
            let wire = |id: u64, text: &str| {
                let payload = binary::encode_to_vec(&Frame::Send(frame::Send {
                    client_msg_id: id,
                    target: Target::User(bob),
                    text: text.into(),
                }));
                let mask = [0x11, 0x22, 0x33, 0x44];
                let mut w = vec![0x82];
                if payload.len() < 126 {
                    w.push(0x80 | payload.len() as u8);
                } else {
                    w.push(0x80 | 126);
                    w.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                }
                w.extend_from_slice(&mask);
                w.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                w
            };
            let first = wire(1, &"a".repeat(300));
            let second = wire(2, &"b".repeat(200));
            let third = wire(3, "c");
            use tokio::io::AsyncWriteExt;
            // The first frame a byte at a time, header included, while
            // Carol's connection reads and writes on the same cores.
            for (i, byte) in first[..first.len() - 10].iter().enumerate() {
                let tcp = a.ws.get_mut();
                tcp.write_all(&[*byte]).await.unwrap();
                tcp.flush().await.unwrap();
                if i % 50 == 0 {
                    c.post(100 + i as u64, Target::User(bob), "between").await;
                    c.ack().await;
                    assert_eq!(b.message().await.text, "between");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Its tail, the second whole frame and half of the third in one
            // write; the rest of the third after a pause.
            let mut run = first[first.len() - 10..].to_vec();
            run.extend_from_slice(&second);
            run.extend_from_slice(&third[..4]);
            let tcp = a.ws.get_mut();
            tcp.write_all(&run).await.unwrap();
            tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tcp = a.ws.get_mut();
            tcp.write_all(&third[4..]).await.unwrap();
            tcp.flush().await.unwrap();
            for (id, text) in [(1, "a".repeat(300)), (2, "b".repeat(200)), (3, "c".into())] {
                let ack = a.ack().await;
                assert_eq!(ack.client_msg_id, id);
                assert_eq!(b.message().await.text, text);
            }
        });
    });
}

#[test]
fn offline_device_gets_what_it_missed_then_live() {
    both_backends(|io| {
        let node = TestNode::start(io, |s| s.max_page = 3);
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            for i in 1..=7 {
                a.post(i, Target::User(bob), &format!("m{i}")).await;
                a.ack().await;
            }
            // Bob's device had seen the first two.
            let mut b = Client::connect(&node, bob, 1, 2).await;
            let missed = b.replay().await;
            let seqs: Vec<u64> = missed.iter().map(|m| m.inbox_seq.0).collect();
            assert_eq!(
                seqs,
                [3, 4, 5, 6, 7],
                "pages of 3, in order, from the cursor"
            );
            assert_eq!(missed[0].text, "m3");
            a.post(8, Target::User(bob), "live").await;
            let m = b.message().await;
            assert_eq!((m.inbox_seq, &*m.text), (InboxSeq(8), "live"));
        });
    });
}

#[test]
fn reconnecting_mid_stream_loses_and_repeats_nothing() {
    both_backends(|io| {
        let node = TestNode::start(io, |s| s.send_burst = 1000);
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        const N: u64 = 300;
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            let sender = tokio::spawn(async move {
                for i in 1..=N {
                    a.post(i, Target::User(bob), &format!("m{i}")).await;
                    if i % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                let mut acked = 0;
                while acked < N {
                    if let Frame::SendAck(_) = a.recv().await {
                        acked += 1;
                    }
                }
            });
            let mut seen: Vec<u64> = Vec::new();
            let mut cursor = 0;
            while cursor < N {
                let mut b = Client::connect(&node, bob, 1, cursor).await;
                for m in b.replay().await {
                    seen.push(m.inbox_seq.into());
                    cursor = m.inbox_seq.into();
                }
                // Take a few live messages, then drop the connection.
                for _ in 0..25 {
                    if cursor >= N {
                        break;
                    }
                    let m = b.message().await;
                    seen.push(m.inbox_seq.into());
                    cursor = m.inbox_seq.into();
                }
                drop(b);
            }
            sender.await.unwrap();
            let expected: Vec<u64> = (1..=N).collect();
            assert_eq!(seen, expected, "every inbox entry exactly once, in order");
        });
    });
}

#[test]
fn a_retried_send_is_acked_again_and_delivered_once() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            a.post(42, Target::User(bob), "once").await;
            let first = a.ack().await;
            a.post(42, Target::User(bob), "once").await;
            let retry = a.ack().await;
            assert!(retry.duplicate);
            assert_eq!(
                (retry.seq, retry.inbox_seq, retry.channel_id),
                (first.seq, first.inbox_seq, first.channel_id)
            );
            a.post(43, Target::User(bob), "twice").await;
            a.ack().await;
            assert_eq!(b.message().await.text, "once");
            assert_eq!(
                b.message().await.text,
                "twice",
                "the retry was not delivered again"
            );
        });
    });
}

#[test]
fn a_send_refused_under_back_pressure_names_itself_and_can_be_retried() {
    both_backends(|io| {
        // One send in storage per core at a time: the rest of a burst is
        // refused with UNAVAILABLE until the first is acked.
        let writers = WriterConfig {
            max_in_flight: 1,
            queue_capacity: 1,
            ..WriterConfig::default()
        };
        let node = TestNode::start_with_writers(
            io,
            |s| {
                s.send_rate_per_s = 100_000;
                s.send_burst = 100_000;
            },
            writers,
        );
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            let mut waiting: std::collections::BTreeSet<u64> = (1..=20).collect();
            let mut acked = Vec::new();
            let mut refusals = 0;
            while !waiting.is_empty() {
                for &id in &waiting {
                    a.post(id, Target::User(bob), &format!("m{id}")).await;
                }
                // One answer per send: its ack, or a refusal that says
                // which send it refuses (so the client retries that one).
                let mut refused = Vec::new();
                for _ in 0..waiting.len() {
                    match a
                        .recv_where(|f| matches!(f, Frame::SendAck(_) | Frame::Error(_)))
                        .await
                    {
                        Frame::SendAck(ack) => {
                            assert!(waiting.contains(&ack.client_msg_id), "{ack:?}");
                            acked.push(ack.client_msg_id);
                        }
                        Frame::Error(e) => {
                            assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
                            assert_eq!(e.frame_type, FrameType::Send.as_u8(), "{e:?}");
                            assert!(waiting.contains(&e.request_id), "{e:?}");
                            refused.push(e.request_id);
                        }
                        _ => unreachable!(),
                    }
                }
                refusals += refused.len();
                for id in &acked {
                    waiting.remove(id);
                }
                assert_eq!(waiting.len(), refused.len(), "every send was answered once");
            }
            assert!(refusals > 0, "the burst met back-pressure");
            assert_eq!(acked.len(), 20);
            // Bob gets each message once.
            let mut texts: Vec<String> = Vec::new();
            for _ in 0..20 {
                texts.push(b.message().await.text.to_string());
            }
            texts.sort();
            texts.dedup();
            assert_eq!(texts.len(), 20);
        });
    });
}

#[test]
fn a_hundred_member_group_reaches_everyone() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let users: Vec<UserId> = (0..100).map(|i| node.user(&format!("member{i}"))).collect();
    let group = node.group(users[0], &users[1..]);
    block_on(async {
        let mut clients = Vec::new();
        for u in &users {
            let mut c = Client::connect(&node, UserId((*u).into()), 1, 0).await;
            c.replay().await;
            clients.push(c);
        }
        clients[0]
            .post(1, Target::Channel(group), "all hands")
            .await;
        assert_eq!(clients[0].ack().await.seq, Seq(1));
        for c in clients.iter_mut().skip(1) {
            let m = c.message().await;
            assert_eq!((m.channel_id, &*m.text), (group, "all hands"));
        }
    });
}

#[test]
fn a_slow_consumer_is_cut_off_and_resumes_without_loss() {
    const N: u64 = 300;
    let node = TestNode::start(IoMode::Epoll, |s| {
        s.outbound_limit_bytes = 256 * 1024;
        s.send_burst = 1000;
        s.send_rate_per_s = 1000;
    });
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let text = "y".repeat(20_000);
    block_on(async {
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        // Bob's client stops reading while 6 MB head his way.
        for i in 1..=N {
            a.post(i, Target::User(bob), &text).await;
        }
        for _ in 1..=N {
            a.ack().await;
        }
        let mut seen = Vec::new();
        let closed = loop {
            match b.next_raw().await {
                Some(Ws::Binary(bytes)) => match binary::decode_exact(&bytes, 1 << 21).unwrap() {
                    Frame::Message(m) => seen.push(m.inbox_seq),
                    Frame::Error(e) => assert_eq!(e.code, ErrorCode::SlowConsumer),
                    Frame::Close(c) => assert_eq!(c.code, ErrorCode::SlowConsumer.code()),
                    other => panic!("{other:?}"),
                },
                Some(Ws::Close(Some(f))) => break u16::from(f.code),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(closed, 4401);
        assert!(
            (seen.len() as u64) < N,
            "the connection was cut before the end"
        );
        // Resume from the cursor: everything else, nothing twice.
        let cursor = seen.last().copied().unwrap_or(InboxSeq(0));
        let mut b = Client::connect(&node, bob, 1, cursor.into()).await;
        seen.extend(b.replay().await.iter().map(|m| m.inbox_seq));
        assert_eq!(seen, (1..=N).map(InboxSeq).collect::<Vec<_>>());
    });
}

/// Frames are answered in the order they were sent, also when one of them
/// must wait for the directory: a send to a user the core has never
/// looked up (always a directory query: unknown users are not cached),
/// pipelined in one write with a heartbeat and a send the cache can
/// answer, gets its error before the heartbeat's answer, and the last
/// send is stored after it.
#[test]
fn pipelined_frames_are_answered_in_order_when_one_waits_for_the_directory() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            assert!(a.replay().await.is_empty());
            // The DM channel and its members, now in the core's cache.
            a.post(1, Target::User(bob), "first").await;
            let channel = a.ack().await.channel_id;

            let frames = [
                Frame::Send(frame::Send {
                    client_msg_id: 2,
                    target: Target::User(UserId(999_999)),
                    text: "to nobody".into(),
                }),
                Frame::Heartbeat(frame::Heartbeat { nonce: 77 }),
                Frame::Send(frame::Send {
                    client_msg_id: 3,
                    target: Target::Channel(channel),
                    text: "after".into(),
                }),
            ];
            for f in &frames {
                a.ws.feed(Ws::Binary(binary::encode_to_vec(f).into()))
                    .await
                    .unwrap();
            }
            a.ws.flush().await.unwrap();

            let mut seen = Vec::new();
            while seen.len() < 3 {
                match a.recv().await {
                    Frame::Error(e) => {
                        assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
                        assert_eq!(e.request_id, 2, "{e:?}");
                        seen.push("error");
                    }
                    Frame::HeartbeatAck(h) => {
                        assert_eq!(h.nonce, 77);
                        seen.push("heartbeat");
                    }
                    Frame::SendAck(ack) => {
                        assert_eq!((ack.client_msg_id, ack.seq), (3, Seq(2)));
                        seen.push("ack");
                    }
                    Frame::Presence(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(seen, ["error", "heartbeat", "ack"]);
        });
    });
}
