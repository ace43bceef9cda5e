//! The WebSocket transport: the JSON subprotocol, wss:// and ws:// on one port, and the plain-text policy.

use std::sync::Arc;

use confab_gateway::IoMode;
use confab_protocol::frame::{self, Frame, Target};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::client::*;
use crate::common::*;

#[test]
fn the_json_subprotocol_speaks_the_same_frames() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let token = node.token(alice);
    block_on(async {
        let mut req = node.url().as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "confab.v1.json".parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(
            resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
            "confab.v1.json"
        );
        let hello = format!(
            r#"{{"type":"hello","min_version":1,"max_version":1,"token":"{token}","device_id":3,"inbox_cursor":0}}"#
        );
        ws.send(Ws::Text(hello.into())).await.unwrap();
        let mut texts = Vec::new();
        while texts.len() < 2 {
            match ws.next().await.unwrap().unwrap() {
                Ws::Text(t) => texts.push(t.to_string()),
                other => panic!("{other:?}"),
            }
        }
        assert!(texts[0].starts_with(r#"{"type":"welcome""#), "{}", texts[0]);
        assert!(
            texts[1].starts_with(r#"{"type":"sync_batch""#),
            "{}",
            texts[1]
        );
        let send = format!(
            r#"{{"type":"send","client_msg_id":1,"target":{{"user":{bob}}},"text":"héllo"}}"#
        );
        ws.send(Ws::Text(send.into())).await.unwrap();
        let ack = loop {
            if let Ws::Text(t) = ws.next().await.unwrap().unwrap() {
                if t.contains("send_ack") {
                    break t.to_string();
                }
            }
        };
        let ack: serde_json::Value = serde_json::from_str(&ack).unwrap();
        assert_eq!(ack["seq"], 1);
        assert_eq!(ack["duplicate"], false);
        // A binary message on the JSON subprotocol is answered, not fatal.
        ws.send(Ws::Binary(vec![1, 2, 3].into())).await.unwrap();
        loop {
            if let Ws::Text(t) = ws.next().await.unwrap().unwrap() {
                if t.contains(r#""type":"error""#) {
                    assert!(t.contains(r#""code":100"#), "BAD_FRAME expected: {t}");
                    break;
                }
            }
        }
    });
}

#[test]
fn wss_and_plain_ws_share_the_port_and_one_session_model() {
    both_backends(|io| {
        let certs = tempfile::tempdir().unwrap();
        let id = confab_gateway::transport::tls::load_or_generate(None, certs.path()).unwrap();
        let config = confab_gateway::transport::tls::websocket_config(&id).unwrap();
        let node = TestNode::start(io, move |s| s.tls = Some(config));
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        let wss = node.url().replace("ws://", "wss://");
        block_on(async {
            let mut a = Client::connect_via(&node, &wss, Some(trusting(&id)), alice, 1, 0).await;
            a.replay().await;
            // A loopback client may still use plain ws:// on the same port.
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            let count = |t: &str| node.metric("confab_connections", &[t]) as u64;
            assert_eq!(count("transport=\"wss\""), 1);
            assert_eq!(count("transport=\"ws\""), 1);
            // The largest message crosses many TLS records each way.
            let big = "é".repeat(100_000);
            a.post(1, Target::User(bob), &big).await;
            a.ack().await;
            assert_eq!(b.message().await.text, big);
            b.post(1, Target::User(alice), &big).await;
            b.ack().await;
            assert_eq!(a.message().await.text, big);
            // The client moves to new keys and asks us to do the same: the
            // session follows, and answers with its own update before its
            // next record, or the client could not read it.
            for round in 0..2 {
                match a.ws.get_mut() {
                    tokio_tungstenite::MaybeTlsStream::Rustls(tls) => {
                        tls.get_mut().1.refresh_traffic_keys().unwrap()
                    }
                    _ => panic!("the wss client is not on TLS"),
                }
                let text = format!("after key update {round}");
                a.post(2 + round, Target::User(bob), &text).await;
                a.ack().await;
                assert_eq!(b.message().await.text, text);
                b.post(2 + round, Target::User(alice), &text).await;
                b.ack().await;
                assert_eq!(a.message().await.text, text);
            }
            // Heartbeats and clean closes work over TLS too.
            a.send(&Frame::Heartbeat(frame::Heartbeat { nonce: 7 }))
                .await;
            match a.recv_where(|f| matches!(f, Frame::HeartbeatAck(_))).await {
                Frame::HeartbeatAck(h) => assert_eq!(h.nonce, 7),
                _ => unreachable!(),
            }
            a.send(&Frame::Close(frame::Close {
                code: 0,
                message: String::new(),
            }))
            .await;
            loop {
                match a.next_raw().await {
                    Some(Ws::Close(_)) | None => break,
                    Some(_) => {}
                }
            }
        });
    });
}

#[test]
fn plain_ws_can_be_refused_while_wss_is_served() {
    let certs = tempfile::tempdir().unwrap();
    let id = confab_gateway::transport::tls::load_or_generate(None, certs.path()).unwrap();
    let config = confab_gateway::transport::tls::websocket_config(&id).unwrap();
    let node = TestNode::start(IoMode::Epoll, move |s| {
        s.tls = Some(config);
        s.plain_ws = confab_gateway::PlainWs::Never;
    });
    let alice = node.user("alice");
    block_on(async {
        let mut req = node.url().as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403)
            }
            other => panic!("plain ws:// must be refused, got {:?}", other.map(|_| ())),
        }
        let wss = node.url().replace("ws://", "wss://");
        let mut a = Client::connect_via(&node, &wss, Some(trusting(&id)), alice, 1, 0).await;
        a.replay().await;
        // A client that does not trust the certificate gets no session.
        let mut req = wss.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
        let untrusting = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let refused = tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(Arc::new(untrusting))),
        )
        .await;
        assert!(refused.is_err());
        // The trusted session is unaffected.
        a.send(&Frame::Heartbeat(frame::Heartbeat { nonce: 1 }))
            .await;
        a.recv_where(|f| matches!(f, Frame::HeartbeatAck(_))).await;
    });
}
