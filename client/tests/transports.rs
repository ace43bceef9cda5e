//! The TLS transports against minimal scripted servers over real sockets:
//! QUIC with the stream layout of docs/protocol.md section 15 (control
//! stream, lanes that overtake each other, frames split across writes,
//! datagrams, a connection closed by its application error code), and
//! WebSocket over TLS with certificate and server-name checks.
//!
//! The gateway-facing tests are gateway/tests/client_sdk.rs; these exist
//! because the gateway does not serve QUIC and wss yet, and because a
//! scripted server can misbehave in exactly the ways the client must
//! survive.

use std::sync::Arc;
use std::time::Duration;

use confab_client::{
    ChannelId, Client, ClientConfig, ClientError, ClientEvent, ConnectionState, DeviceId,
    ErrorCode, Events, InboxSeq, Message, Seq, Target, TlsOptions, UserId,
};
use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::frame::{
    Close, Error as ErrorFrame, Frame, Limits, SendAck, SyncBatch, TypingEvent, Welcome,
};
use confab_protocol::FrameReader;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_tungstenite::tungstenite::Message as Ws;

const PATIENCE: Duration = Duration::from_secs(10);

struct Cert {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    /// The certificate as a PEM file, as `confab serve` writes it.
    pem_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn cert_for(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("cert.pem");
    std::fs::write(&pem_file, ck.cert.pem()).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
        pem_file,
        _dir: dir,
    }
}

fn server_tls(cert: &Cert, alpn: &[u8]) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
    .unwrap();
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    config
}

fn welcome() -> Frame {
    Frame::Welcome(Welcome {
        version: 1,
        user_id: UserId(10),
        session_id: 77,
        heartbeat_interval_ms: 15_000,
        limits: Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES as u32,
            max_text_chars: 100_000,
            max_group_members: 100,
            max_page: 256,
            max_presence_users: 500,
            send_rate_per_s: 50,
        },
    })
}

fn replay(messages: Vec<confab_protocol::frame::Message>) -> Frame {
    Frame::SyncBatch(SyncBatch {
        request_id: 0,
        has_more: false,
        messages,
    })
}

fn msg(inbox_seq: u64, channel_id: u64, text: &str) -> confab_protocol::frame::Message {
    confab_protocol::frame::Message {
        inbox_seq: InboxSeq(inbox_seq),
        channel_id: ChannelId(channel_id),
        seq: Seq(inbox_seq),
        sender_id: UserId(42),
        sender_device: DeviceId(1),
        client_msg_id: inbox_seq,
        timestamp_ms: 1_700_000_000_000,
        text: text.into(),
    }
}

fn enc(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        binary::encode(f, &mut out);
    }
    out
}

async fn next_event(events: &mut Events) -> ClientEvent {
    match tokio::time::timeout(PATIENCE, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the client closed"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

/// The next event that is not a heartbeat round trip.
async fn event(events: &mut Events) -> ClientEvent {
    loop {
        match next_event(events).await {
            ClientEvent::Rtt(_) => {}
            e => return e,
        }
    }
}

async fn message(events: &mut Events) -> Message {
    match event(events).await {
        ClientEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Reads client frames from the control stream, skipping keep-alives and
/// hole-filling syncs (which the client may send whenever it likes).
struct Control {
    recv: quinn::RecvStream,
    reader: FrameReader,
}

impl Control {
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = self.reader.next_frame().unwrap() {
                if matches!(f, Frame::Heartbeat(_) | Frame::Sync(_)) {
                    continue;
                }
                return f;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.recv.read_chunk(4096, true))
                .await
                .expect("a frame in time")
                .unwrap()
                .expect("the control stream stays open");
            self.reader.feed(&chunk.bytes);
        }
    }
}

/// Accepts one QUIC connection and its control stream, reads `Hello`.
async fn accept_quic(
    server: &quinn::Endpoint,
) -> (
    quinn::Connection,
    quinn::SendStream,
    Control,
    confab_protocol::frame::Hello,
) {
    let incoming = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .expect("a connection in time")
        .unwrap();
    let conn = incoming.await.unwrap();
    let (send, recv) = conn.accept_bi().await.unwrap();
    let mut control = Control {
        recv,
        reader: FrameReader::new(DEFAULT_MAX_FRAME_BYTES),
    };
    let hello = match control.frame().await {
        Frame::Hello(h) => h,
        other => panic!("expected Hello, got {other:?}"),
    };
    (conn, send, control, hello)
}

fn quic_server(cert: &Cert) -> quinn::Endpoint {
    let tls = server_tls(cert, confab_protocol::ALPN);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).unwrap()
}

#[tokio::test]
async fn quic_uses_the_control_stream_lanes_and_datagrams_and_resumes() {
    let cert = cert_for("localhost");
    let server = quic_server(&cert);
    let port = server.local_addr().unwrap().port();
    let mut config = ClientConfig::new(format!("quic://127.0.0.1:{port}"), "tok", DeviceId(3));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_pem_file(&cert.pem_file)
        .server_name("localhost");
    let (client, mut events) = Client::connect(config).unwrap();

    // The control stream: Hello first, answered there.
    let (conn, mut ctl, mut control, hello) = accept_quic(&server).await;
    assert_eq!(
        (
            hello.token.as_str(),
            hello.device_id.0,
            hello.inbox_cursor.0
        ),
        ("tok", 3, 0)
    );
    ctl.write_all(&enc(&[welcome(), replay(vec![msg(1, 8, "replayed")])]))
        .await
        .unwrap();
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Connected(_)
    ));
    assert_eq!(message(&mut events).await.text, "replayed");

    // Two lanes (channels 1 and 2); lane 2's message (inbox 3) overtakes
    // lane 1's (inbox 2), whose frame arrives in two pieces.
    let mut lane1 = conn.open_uni().await.unwrap();
    let mut lane2 = conn.open_uni().await.unwrap();
    lane2
        .write_all(&enc(&[Frame::Message(msg(3, 2, "second"))]))
        .await
        .unwrap();
    let first = enc(&[Frame::Message(msg(2, 1, "first"))]);
    let (head, tail) = first.split_at(5);
    lane1.write_all(head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    lane1.write_all(tail).await.unwrap();
    assert_eq!(message(&mut events).await.text, "first");
    assert_eq!(message(&mut events).await.text, "second");
    // Several frames in one write.
    lane1
        .write_all(&enc(&[
            Frame::Message(msg(4, 1, "third")),
            Frame::Message(msg(5, 1, "fourth")),
        ]))
        .await
        .unwrap();
    assert_eq!(message(&mut events).await.inbox_seq, InboxSeq(4));
    assert_eq!(message(&mut events).await.inbox_seq, InboxSeq(5));

    // A typing notice as a datagram.
    let typing = Frame::TypingEvent(TypingEvent {
        channel_id: ChannelId(1),
        user_id: UserId(42),
    });
    conn.send_datagram(enc(&[typing]).into()).unwrap();
    match event(&mut events).await {
        ClientEvent::Typing(t) => assert_eq!((t.channel_id.0, t.user_id.0), (1, 42)),
        other => panic!("expected typing, got {other:?}"),
    }

    // A send goes out on the control stream; its ack comes back there.
    let sent = client.send(Target::Channel(ChannelId(1)), "hi");
    let send = match control.frame().await {
        Frame::Send(s) => s,
        other => panic!("expected Send, got {other:?}"),
    };
    assert_eq!((send.client_msg_id, &*send.text), (1, "hi"));
    ctl.write_all(&enc(&[Frame::SendAck(SendAck {
        client_msg_id: 1,
        channel_id: ChannelId(1),
        seq: Seq(6),
        inbox_seq: InboxSeq(6),
        timestamp_ms: 1,
        duplicate: false,
    })]))
    .await
    .unwrap();
    assert_eq!(sent.await.unwrap().seq, Seq(6));

    // The connection vanishes without a Close frame: the client reconnects
    // and resumes after everything it has, its own ack included.
    conn.close(0u32.into(), b"");
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Disconnected { .. }
    ));
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Reconnecting { attempt: 1, .. }
    ));
    let (conn, mut ctl, _control, hello) = accept_quic(&server).await;
    assert_eq!(hello.inbox_cursor, InboxSeq(6));
    assert_eq!(events.cursor(), InboxSeq(6));
    ctl.write_all(&enc(&[welcome(), replay(vec![msg(7, 1, "missed")])]))
        .await
        .unwrap();
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Connected(_)
    ));
    assert_eq!(message(&mut events).await.inbox_seq, InboxSeq(7));

    // The server drops the session for a revoked token and the `Close`
    // frame is lost with the connection: the application error code says
    // enough, and the client stops reconnecting.
    conn.close(202u32.into(), b"revoked");
    match event(&mut events).await {
        ClientEvent::Refused { code, .. } => assert_eq!(code, ErrorCode::TokenRevoked),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(client.state(), ConnectionState::Refused);
    let nothing = tokio::time::timeout(Duration::from_millis(600), server.accept()).await;
    assert!(nothing.is_err(), "a refused client does not reconnect");
    client.close().await;
}

#[tokio::test]
async fn a_refused_quic_hello_is_reported_once() {
    let cert = cert_for("localhost");
    let server = quic_server(&cert);
    let port = server.local_addr().unwrap().port();
    let mut config = ClientConfig::new(format!("quic://127.0.0.1:{port}"), "expired", DeviceId(3));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_der(cert.der.to_vec())
        .server_name("localhost");
    let (client, mut events) = Client::connect(config).unwrap();
    let (conn, mut ctl, _control, hello) = accept_quic(&server).await;
    assert_eq!(hello.token, "expired");
    ctl.write_all(&enc(&[
        Frame::Error(ErrorFrame {
            code: ErrorCode::TokenExpired,
            message: "expired".into(),
            frame_type: 1,
            request_id: 0,
        }),
        Frame::Close(Close {
            code: ErrorCode::TokenExpired.code(),
            message: "expired".into(),
        }),
    ]))
    .await
    .unwrap();
    match event(&mut events).await {
        ClientEvent::Refused { code, message } => {
            assert_eq!(
                (code, message.as_str()),
                (ErrorCode::TokenExpired, "expired")
            )
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    conn.close(201u32.into(), b"");
    // One report, no reconnect.
    let quiet = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert_eq!(
        client.send(Target::User(UserId(1)), "x").await,
        Err(ClientError::Refused {
            code: ErrorCode::TokenExpired,
            message: "expired".into()
        })
    );
}

/// A one-connection wss server: TLS, then a WebSocket that accepts
/// `confab.v1`, then `script` with the Hello already read.
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn wss_server<F, Fut>(cert: &Cert, script: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: FnOnce(
            tokio_tungstenite::WebSocketStream<
                tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
            >,
            confab_protocol::frame::Hello,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, b"")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            // A client that does not trust us fails the TLS handshake;
            // wait for one that does.
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(
                tls,
                |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                 mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    assert_eq!(req.uri().path(), "/v1/ws");
                    let offered = req.headers().get("Sec-WebSocket-Protocol").unwrap();
                    assert_eq!(offered, "confab.v1");
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
                    Ok(resp)
                },
            )
            .await
            .unwrap();
            let hello = match ws.next().await.unwrap().unwrap() {
                Ws::Binary(b) => match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                    Frame::Hello(h) => h,
                    other => panic!("expected Hello, got {other:?}"),
                },
                other => panic!("expected a binary message, got {other:?}"),
            };
            script(ws, hello).await;
            return;
        }
    });
    (port, task)
}

#[tokio::test]
async fn wss_checks_the_certificate_and_carries_the_session() {
    let cert = cert_for("localhost");
    let (port, server) = wss_server(&cert, |mut ws, hello| async move {
        assert_eq!(hello.inbox_cursor, InboxSeq(0));
        for f in [welcome(), replay(vec![msg(1, 5, "over tls")])] {
            ws.send(Ws::Binary(enc(&[f]).into())).await.unwrap();
        }
        // The client's send, then its ack.
        let send = loop {
            match ws.next().await.unwrap().unwrap() {
                Ws::Binary(b) => match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                    Frame::Send(s) => break s,
                    Frame::Heartbeat(_) => {}
                    other => panic!("expected Send, got {other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        let ack = Frame::SendAck(SendAck {
            client_msg_id: send.client_msg_id,
            channel_id: ChannelId(5),
            seq: Seq(2),
            inbox_seq: InboxSeq(2),
            timestamp_ms: 1,
            duplicate: false,
        });
        ws.send(Ws::Binary(enc(&[ack]).into())).await.unwrap();
        // Drop the session for an expired token with only the WebSocket
        // close code (4000 + 201) to say so.
        let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4201.into(),
            reason: "expired".into(),
        };
        let _ = ws.close(Some(close)).await;
    })
    .await;

    // By IP, the certificate (for "localhost") does not match: refused by
    // TLS, reported, retried — never silently accepted.
    let url = format!("wss://127.0.0.1:{port}/v1/ws");
    let mut config = ClientConfig::new(&url, "tok", DeviceId(1));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_pem_file(&cert.pem_file);
    let (wrong, mut wrong_events) = Client::connect(config.clone()).unwrap();
    match event(&mut wrong_events).await {
        ClientEvent::Disconnected { reason } => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("expected a failed attempt, got {other:?}"),
    }
    wrong.close().await;

    // With the server name overridden it connects.
    config.tls = config.tls.server_name("localhost");
    let (client, mut events) = Client::connect(config).unwrap();
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Connected(_)
    ));
    assert_eq!(message(&mut events).await.text, "over tls");
    let ack = client
        .send(Target::Channel(ChannelId(5)), "hello")
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(2));
    match event(&mut events).await {
        ClientEvent::Refused { code, message } => {
            assert_eq!(
                (code, message.as_str()),
                (ErrorCode::TokenExpired, "expired")
            )
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(client.cursor(), InboxSeq(2));
    server.await.unwrap();
    client.close().await;
    // Draining the events brings the application's cursor past the ack.
    while events.recv().await.is_some() {}
    assert_eq!(events.cursor(), InboxSeq(2));
}

#[tokio::test]
async fn calls_made_before_welcome_go_out_right_after_it() {
    let cert = cert_for("localhost");
    let server = quic_server(&cert);
    let port = server.local_addr().unwrap().port();
    let mut config = ClientConfig::new(format!("quic://127.0.0.1:{port}"), "tok", DeviceId(3));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_der(cert.der.to_vec())
        .server_name("localhost");
    let (client, mut events) = Client::connect(config).unwrap();
    // Made while connecting: they wait for the session.
    client.read(ChannelId(4), Seq(9)).unwrap();
    let history = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .history(ChannelId(4), confab_client::HistoryAnchor::Latest, 10)
                .await
        })
    };
    let (_conn, mut ctl, mut control, _hello) = accept_quic(&server).await;
    // Welcome alone, nothing after it: the held calls must not wait for
    // another frame (or the next heartbeat) to be sent.
    ctl.write_all(&enc(&[welcome()])).await.unwrap();
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Connected(_)
    ));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let f = tokio::time::timeout(Duration::from_secs(2), control.frame())
            .await
            .expect("the held calls go out with the Welcome");
        seen.push(f);
    }
    let request_id = seen
        .iter()
        .find_map(|f| match f {
            Frame::History(h) => Some(h.request_id),
            _ => None,
        })
        .expect("the history request");
    assert!(seen
        .iter()
        .any(|f| matches!(f, Frame::Read(r) if (r.channel_id, r.seq) == (ChannelId(4), Seq(9)))));
    let page = Frame::HistoryBatch(confab_protocol::frame::HistoryBatch {
        request_id,
        channel_id: ChannelId(4),
        has_more: false,
        messages: vec![],
    });
    ctl.write_all(&enc(&[page])).await.unwrap();
    let page = history.await.unwrap().unwrap();
    assert_eq!((page.channel_id.0, page.has_more), (4, false));
    client.close().await;
}

/// A load generator spreads connections over several loopback addresses;
/// both transports must really connect from the one configured.
#[tokio::test]
async fn connections_come_from_the_configured_local_ip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config =
        ClientConfig::new(format!("ws://127.0.0.1:{port}/v1/ws"), "token", DeviceId(1));
    config.local_ip = Some([127, 0, 0, 2].into());
    let (ws_client, _events) = Client::connect(config).unwrap();
    let (_tcp, peer) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("a TCP connection in time")
        .unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");

    let cert = cert_for("localhost");
    let server = quic_server(&cert);
    let port = server.local_addr().unwrap().port();
    let mut config = ClientConfig::new(format!("quic://localhost:{port}"), "token", DeviceId(1));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_pem_file(&cert.pem_file);
    config.local_ip = Some([127, 0, 0, 3].into());
    let (quic_client, _events) = Client::connect(config).unwrap();
    let incoming = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .expect("a QUIC connection in time")
        .unwrap();
    assert_eq!(incoming.remote_address().ip().to_string(), "127.0.0.3");
    drop(incoming);
    drop((ws_client, quic_client));
}

/// A plain-WebSocket server for one connection: accepts `confab.v1`,
/// reads the `Hello`, then runs `script`.
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn ws_server<F, Fut>(script: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_hdr_async(
            tcp,
            |_req: &tokio_tungstenite::tungstenite::handshake::server::Request,
             mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
                Ok(resp)
            },
        )
        .await
        .unwrap();
        match ws.next().await.unwrap().unwrap() {
            Ws::Binary(b) => assert!(matches!(
                binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap(),
                Frame::Hello(_)
            )),
            other => panic!("expected a binary message, got {other:?}"),
        }
        script(ws).await;
    });
    (port, task)
}

/// A burst of frames far larger than one pass of the client's driver
/// (256 frames) and than its read-ahead queue (1024): every one of them
/// must be handled. The driver used to take one frame too many at the end
/// of a full pass and drop it; a dropped `Message` was refetched through a
/// hole-filling `Sync`, but a dropped `SendAck` left its send waiting for
/// ever (found by the load generator at 100-member fan-out). Whether a
/// pass ends with frames still queued depends on the reader outrunning
/// the driver, so the burst is long: tens of thousands of frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_acks_and_messages_loses_no_frame() {
    const SENDS: u64 = 5_000;
    /// Messages from someone else after each ack.
    const OTHERS: u64 = 3;
    const STEP: u64 = OTHERS + 1;
    let (port, server) = ws_server(|mut ws| async move {
        ws.send(Ws::Binary(enc(&[welcome()]).into())).await.unwrap();
        let mut ids = Vec::new();
        while ids.len() < SENDS as usize {
            match ws.next().await.unwrap().unwrap() {
                Ws::Binary(b) => match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                    Frame::Send(s) => ids.push(s.client_msg_id),
                    Frame::Heartbeat(_) => {}
                    other => panic!("expected Send, got {other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        // Every ack, each followed by messages from someone else, written
        // at once: the inbox runs 1, 2, … without a hole.
        for (i, id) in ids.iter().enumerate() {
            let base = i as u64 * STEP;
            let ack = Frame::SendAck(SendAck {
                client_msg_id: *id,
                channel_id: ChannelId(5),
                seq: Seq(base + 1),
                inbox_seq: InboxSeq(base + 1),
                timestamp_ms: 1,
                duplicate: false,
            });
            ws.feed(Ws::Binary(enc(&[ack]).into())).await.unwrap();
            for k in 2..=STEP {
                let m = msg(base + k, 5, "from someone else");
                ws.feed(Ws::Binary(enc(&[Frame::Message(m)]).into()))
                    .await
                    .unwrap();
            }
        }
        ws.flush().await.unwrap();
        // A client that missed a frame asks for it again (after 250 ms);
        // this one must not have to.
        loop {
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(Ws::Binary(b)))) => {
                    match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                        Frame::Heartbeat(_) | Frame::Close(_) => {}
                        other => panic!("the client asked for {other:?}: a frame was lost"),
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return,
            }
        }
    })
    .await;

    let mut config = ClientConfig::new(format!("ws://127.0.0.1:{port}/v1/ws"), "tok", DeviceId(1));
    config.max_pending_sends = SENDS as usize;
    let (client, mut events) = Client::connect(config).unwrap();
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Connected(_)
    ));
    let sends: Vec<_> = (0..SENDS)
        .map(|i| client.send(Target::Channel(ChannelId(5)), format!("mine {i}")))
        .collect();
    let acks = tokio::time::timeout(PATIENCE, futures_util::future::join_all(sends))
        .await
        .expect("every send is answered");
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.unwrap().seq, Seq(i as u64 * STEP + 1));
    }
    let mut expected = 1;
    for _ in 0..SENDS * OTHERS {
        expected += 1;
        if expected % STEP == 1 {
            expected += 1;
        }
        let m = message(&mut events).await;
        assert_eq!(m.inbox_seq, InboxSeq(expected), "in order, none missing");
    }
    assert_eq!(client.cursor(), InboxSeq(SENDS * STEP));
    client.close().await;
    server.await.unwrap();
}
