//! The QUIC transport against a scripted server: the control stream,
//! lanes that overtake each other, frames split across writes, datagrams,
//! connections closed by their application error code, and calls made
//! before the session exists. QUIC's stream layout is the client's most
//! intricate framing, so it gets the most tests.

use std::time::Duration;

use confab_client::{
    ChannelId, Client, ClientConfig, ClientError, ClientEvent, ConnectionState, DeviceId,
    ErrorCode, InboxSeq, Seq, Target, TlsOptions, UserId,
};
use confab_protocol::frame::{Close, Error as ErrorFrame, Frame, SendAck, TypingEvent};

use crate::support::servers::{accept_quic, quic_server};
use crate::support::{cert_for, enc, event, message, msg, replay, welcome};

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
