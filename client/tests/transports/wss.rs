//! WebSocket over TLS against a scripted server: the certificate and the
//! server name are really checked, and a session carried over TLS behaves
//! like any other, down to a refusal said only by the close code.

use confab_client::{
    ChannelId, Client, ClientConfig, ClientEvent, DeviceId, ErrorCode, InboxSeq, Seq, Target,
    TlsOptions,
};
use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::frame::{Frame, SendAck};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::support::servers::wss_server;
use crate::support::{cert_for, enc, event, message, msg, replay, welcome};

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
