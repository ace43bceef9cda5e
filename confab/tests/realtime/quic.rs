//! The QUIC transport: one session model with WebSocket, typed refusals, 0-RTT resumption and connection migration.

use std::sync::Arc;
use std::time::Duration;

use confab_gateway::IoMode;
use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::{binary, ErrorCode};

use crate::client::*;
use crate::common::*;

// ---- QUIC -----------------------------------------------------------------

/// Where a frame arrived on a QUIC connection (docs/protocol.md §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Control,
    Lane,
    Datagram,
}

/// A raw QUIC client (quinn) that reads every carrier and reports where
/// each frame came from.
struct QuicClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    control: quinn::SendStream,
    frames: tokio::sync::mpsc::UnboundedReceiver<(Carrier, Frame)>,
    welcome: frame::Welcome,
}

fn quic_node(io: IoMode, id: &confab_gateway::transport::tls::Identity) -> TestNode {
    let quic = confab_gateway::transport::tls::quic_config(id).unwrap();
    TestNode::start(io, move |s| {
        s.quic = Some(confab_gateway::transport::quic::QuicSettings {
            addr: ([127, 0, 0, 1], 0).into(),
            tls: quic.clone(),
            reset_key: None,
        })
    })
}

fn quic_client_config(id: &confab_gateway::transport::tls::Identity) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.chain[0].clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"confab/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

fn spawn_frame_reader(
    mut recv: quinn::RecvStream,
    carrier: Carrier,
    tx: tokio::sync::mpsc::UnboundedSender<(Carrier, Frame)>,
) {
    tokio::spawn(async move {
        let mut reader = confab_protocol::FrameReader::new(1 << 21);
        while let Ok(Some(chunk)) = recv.read_chunk(1 << 16, true).await {
            reader.feed(&chunk.bytes);
            while let Ok(Some(f)) = reader.next_frame() {
                if tx.send((carrier, f)).is_err() {
                    return;
                }
            }
        }
    });
}

impl QuicClient {
    async fn connect(
        node: &TestNode,
        id: &confab_gateway::transport::tls::Identity,
        token: &str,
        device: u64,
        cursor: u64,
    ) -> Result<QuicClient, (Vec<Frame>, quinn::ConnectionError)> {
        let addr = node.node.quic_addr.unwrap();
        let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        endpoint.set_default_client_config(quic_client_config(id));
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut control, recv) = conn.open_bi().await.unwrap();
        let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
        spawn_frame_reader(recv, Carrier::Control, tx.clone());
        let (c, t) = (conn.clone(), tx.clone());
        tokio::spawn(async move {
            while let Ok(recv) = c.accept_uni().await {
                spawn_frame_reader(recv, Carrier::Lane, t.clone());
            }
        });
        let (c, t) = (conn.clone(), tx);
        tokio::spawn(async move {
            while let Ok(d) = c.read_datagram().await {
                if let Ok(f) = binary::decode_exact(&d, 1 << 21) {
                    let _ = t.send((Carrier::Datagram, f));
                }
            }
        });
        control
            .write_all(&binary::encode_to_vec(&hello(token, device, cursor)))
            .await
            .unwrap();
        // Frames on other carriers are not ordered with the control stream:
        // a friend's presence pushed on a datagram may overtake Welcome.
        let first = loop {
            let next = tokio::time::timeout(Duration::from_secs(10), frames.recv())
                .await
                .expect("an answer to Hello");
            match next {
                Some((Carrier::Datagram | Carrier::Lane, Frame::Presence(_))) => continue,
                other => break other,
            }
        };
        match first {
            Some((Carrier::Control, Frame::Welcome(welcome))) => Ok(QuicClient {
                endpoint,
                conn,
                control,
                frames,
                welcome,
            }),
            other => {
                let mut got: Vec<Frame> = other.into_iter().map(|(_, f)| f).collect();
                let err = conn.closed().await;
                while let Ok((_, f)) = frames.try_recv() {
                    got.push(f);
                }
                Err((got, err))
            }
        }
    }

    async fn send(&mut self, f: &Frame) {
        self.control
            .write_all(&binary::encode_to_vec(f))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> (Carrier, Frame) {
        tokio::time::timeout(Duration::from_secs(10), self.frames.recv())
            .await
            .expect("a frame within 10 s")
            .expect("connection open")
    }

    /// The next frame matching `pred`, skipping presence pushes and the
    /// replay.
    async fn recv_where(&mut self, pred: impl Fn(&Frame) -> bool) -> (Carrier, Frame) {
        loop {
            let (c, f) = self.recv().await;
            if pred(&f) {
                return (c, f);
            }
            assert!(
                matches!(f, Frame::Presence(_) | Frame::SyncBatch(_)),
                "unexpected frame {f:?}"
            );
        }
    }

    async fn replay(&mut self) -> Vec<frame::Message> {
        let mut all = Vec::new();
        loop {
            match self.recv().await {
                (Carrier::Control, Frame::SyncBatch(b)) if b.request_id == 0 => {
                    all.extend(b.messages);
                    if !b.has_more {
                        return all;
                    }
                }
                (_, Frame::Presence(_)) => {}
                other => panic!("expected the replay, got {other:?}"),
            }
        }
    }

    async fn post(&mut self, client_msg_id: u64, target: Target, text: &str) {
        self.send(&Frame::Send(frame::Send {
            client_msg_id,
            target,
            text: text.into(),
        }))
        .await;
    }

    async fn ack(&mut self) -> frame::SendAck {
        match self
            .recv_where(|f| matches!(f, Frame::SendAck(_) | Frame::Error(_)))
            .await
        {
            (Carrier::Control, Frame::SendAck(a)) => a,
            other => panic!("expected SendAck on the control stream, got {other:?}"),
        }
    }

    async fn message(&mut self) -> frame::Message {
        match self
            .recv_where(|f| matches!(f, Frame::Message(_) | Frame::Error(_)))
            .await
        {
            (Carrier::Lane, Frame::Message(m)) => m,
            other => panic!("expected a Message on a lane, got {other:?}"),
        }
    }
}

#[test]
fn quic_and_websocket_devices_share_one_session_model() {
    both_backends(|io| {
        let certs = tempfile::tempdir().unwrap();
        let id = confab_gateway::transport::tls::load_or_generate(None, certs.path()).unwrap();
        let node = quic_node(io, &id);
        let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
        node.befriend(alice, bob);
        let group = node.group(alice, &[alice, bob, carol]);
        let outsider = node.group(carol, &[carol]);
        block_on(async {
            // Alice: one device on QUIC, one on WebSocket. Bob on QUIC.
            let mut a_quic = QuicClient::connect(&node, &id, &node.token(alice), 1, 0)
                .await
                .unwrap();
            assert_eq!(a_quic.welcome.user_id, alice);
            a_quic.replay().await;
            let mut a_ws = Client::connect(&node, alice, 2, 0).await;
            a_ws.replay().await;
            let mut b = QuicClient::connect(&node, &id, &node.token(bob), 1, 0)
                .await
                .unwrap();
            b.replay().await;
            let quic = node.metric("confab_connections", &["transport=\"quic\""]) as u64;
            assert_eq!(quic, 2);

            // Bob -> Alice: both of her devices, in the same order.
            b.post(1, Target::User(alice), "to both devices").await;
            let ack = b.ack().await;
            let on_quic = a_quic.message().await;
            let on_ws = a_ws.message().await;
            assert_eq!(on_quic, on_ws);
            assert_eq!((on_quic.seq, &*on_quic.text), (ack.seq, "to both devices"));

            // Alice on QUIC -> group: her WebSocket device and Bob get it.
            a_quic.post(1, Target::Channel(group), "group hello").await;
            let ack = a_quic.ack().await;
            assert_eq!(ack.channel_id, group);
            assert_eq!(a_ws.message().await.text, "group hello");
            assert_eq!(b.message().await.text, "group hello");

            // Typing goes as a datagram; a large message on its lane.
            b.send(&Frame::Typing(frame::Typing { channel_id: group }))
                .await;
            let (carrier, f) = a_quic
                .recv_where(|f| matches!(f, Frame::TypingEvent(_)))
                .await;
            assert_eq!(carrier, Carrier::Datagram);
            assert!(matches!(f, Frame::TypingEvent(t) if t.user_id == bob));
            let big = "q".repeat(100_000);
            b.post(2, Target::Channel(group), &big).await;
            b.ack().await;
            assert_eq!(a_quic.message().await.text, big);
            assert_eq!(a_ws.message().await.text, big);

            // Bad input gets a typed error on the control stream, and the
            // session goes on.
            b.post(3, Target::Channel(outsider), "not mine").await;
            match b.recv_where(|f| matches!(f, Frame::Error(_))).await {
                (Carrier::Control, Frame::Error(e)) => {
                    assert_eq!(e.code, ErrorCode::ForbiddenChannel)
                }
                other => panic!("{other:?}"),
            }
            b.control
                .write_all(&[0x03, 0x7f, 0x00, 0x00])
                .await
                .unwrap();
            match b.recv_where(|f| matches!(f, Frame::Error(_))).await {
                (_, Frame::Error(e)) => assert_eq!(e.code, ErrorCode::UnknownFrameType),
                _ => unreachable!(),
            }
            b.post(4, Target::User(alice), "still here").await;
            b.ack().await;
            assert_eq!(a_quic.message().await.text, "still here");

            // Presence of a QUIC user reaches a friend; a clean Close.
            b.send(&Frame::Close(frame::Close {
                code: 0,
                message: String::new(),
            }))
            .await;
            let closed = b.conn.closed().await;
            assert!(
                matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(0)),
                "{closed:?}"
            );
            // The receiver of a Close sends nothing more (section 7.11).
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Ok((_, f)) = b.frames.try_recv() {
                assert!(!matches!(f, Frame::Close(_)), "Close answered with {f:?}");
            }
            let (_, f) = a_quic
                .recv_where(|f| matches!(f, Frame::Presence(p) if p.entries.iter().any(|e| e.user_id == bob && !e.online)))
                .await;
            assert!(matches!(f, Frame::Presence(_)));
            a_quic.endpoint.close(quinn::VarInt::from_u32(0), b"");
        });
    });
}

#[test]
fn a_bad_token_over_quic_gets_a_typed_error_and_close() {
    let certs = tempfile::tempdir().unwrap();
    let id = confab_gateway::transport::tls::load_or_generate(None, certs.path()).unwrap();
    let node = quic_node(IoMode::Epoll, &id);
    block_on(async {
        let (frames, err) = match QuicClient::connect(&node, &id, "not-a-token", 1, 0).await {
            Ok(_) => panic!("a bad token must not get a session"),
            Err(e) => e,
        };
        assert!(
            frames.iter().any(|f| matches!(f, Frame::Error(e)
                if e.code == ErrorCode::Unauthenticated && e.frame_type == 1)),
            "{frames:?}"
        );
        assert!(
            frames.iter().any(|f| matches!(f, Frame::Close(_))),
            "{frames:?}"
        );
        match err {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(
                    c.error_code,
                    quinn::VarInt::from(ErrorCode::Unauthenticated.code())
                )
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A returning QUIC client resumes with 0-RTT: its Hello rides the first
/// flight and the server accepts the early data (rustls refuses it with
/// stateless tickets, so this needs the node's resumption cache).
#[test]
fn a_returning_quic_client_resumes_with_0rtt() {
    let certs = tempfile::tempdir().unwrap();
    let id = confab_gateway::transport::tls::load_or_generate(None, certs.path()).unwrap();
    let node = quic_node(IoMode::Epoll, &id);
    let alice = node.user("alice");
    block_on(async {
        let addr = node.node.quic_addr.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(id.chain[0].clone()).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"confab/1".to_vec()];
        tls.enable_early_data = true;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let token = node.token(alice);

        // Once with a full handshake, to get a ticket.
        let connecting = endpoint.connect(addr, "localhost").unwrap();
        let connecting = match connecting.into_0rtt() {
            Ok(_) => panic!("no ticket yet, so no 0-RTT"),
            Err(c) => c,
        };
        let conn = connecting.await.unwrap();
        let (mut control, recv) = conn.open_bi().await.unwrap();
        let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
        spawn_frame_reader(recv, Carrier::Control, tx);
        control
            .write_all(&binary::encode_to_vec(&hello(&token, 1, 0)))
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), frames.recv()).await;
        assert!(
            matches!(first, Ok(Some((_, Frame::Welcome(_))))),
            "{first:?}"
        );
        // The ticket comes after the handshake; give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(0u32.into(), b"bye");

        // Again: the Hello goes out as 0-RTT data, and is answered.
        let connecting = endpoint.connect(addr, "localhost").unwrap();
        let Ok((conn, accepted)) = connecting.into_0rtt() else {
            panic!("the first connection left a ticket that allows 0-RTT");
        };
        let (mut control, recv) = conn.open_bi().await.unwrap();
        let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
        spawn_frame_reader(recv, Carrier::Control, tx);
        control
            .write_all(&binary::encode_to_vec(&hello(&token, 1, 0)))
            .await
            .unwrap();
        assert!(accepted.await, "the node accepted the early data");
        let first = tokio::time::timeout(Duration::from_secs(10), frames.recv()).await;
        match first {
            Ok(Some((_, Frame::Welcome(w)))) => assert_eq!(w.user_id, alice),
            other => panic!("expected Welcome, got {other:?}"),
        }
        conn.close(0u32.into(), b"bye");
    });
}

#[test]
fn a_quic_session_survives_the_client_changing_address() {
    both_backends(|io| {
        let certs = tempfile::tempdir().unwrap();
        let id = confab_gateway::transport::tls::load_or_generate(None, certs.path()).unwrap();
        let node = quic_node(io, &id);
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        block_on(async {
            let mut a = QuicClient::connect(&node, &id, &node.token(alice), 1, 0)
                .await
                .unwrap();
            a.replay().await;
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            let session = a.welcome.session_id;
            // Each rebind is a new source port: the kernel's SO_REUSEPORT
            // hash sends some of them to the other core's socket, whose
            // routing must hand the packets back.
            for i in 1..=12u64 {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                a.endpoint.rebind(socket).unwrap();
                b.post(i, Target::User(alice), &format!("after move {i}"))
                    .await;
                b.ack().await;
                let m = a.message().await;
                assert_eq!(m.text, format!("after move {i}"));
                a.post(i, Target::User(bob), &format!("from move {i}"))
                    .await;
                a.ack().await;
                assert_eq!(b.message().await.text, format!("from move {i}"));
            }
            assert_eq!(a.welcome.session_id, session);
            assert!(
                a.conn.close_reason().is_none(),
                "the same connection all along"
            );
        });
    });
}
