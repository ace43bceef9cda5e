//! A WebSocket test client we did not write (tokio-tungstenite) speaking
//! the binary encoding: it sends frames and reads what the server answers.

use std::sync::Arc;
use std::time::Duration;

use confab_protocol::binary;
use confab_protocol::frame::{self, Frame, Target};
use confab_types::{DeviceId, InboxSeq, UserId};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::common::TestNode;

pub struct Client {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub welcome: frame::Welcome,
}

pub async fn open(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    open_with(url, None).await
}

/// A rustls client that trusts exactly the node's certificate.
pub fn trusting(id: &confab_gateway::transport::tls::Identity) -> tokio_tungstenite::Connector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.chain[0].clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_tungstenite::Connector::Rustls(Arc::new(config))
}

pub async fn open_with(
    url: &str,
    connector: Option<tokio_tungstenite::Connector>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector)
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "confab.v1"
    );
    ws
}

pub fn hello(token: &str, device: u64, cursor: u64) -> Frame {
    Frame::Hello(frame::Hello {
        min_version: confab_protocol::MIN_PROTOCOL_VERSION,
        max_version: confab_protocol::PROTOCOL_VERSION,
        token: token.into(),
        device_id: DeviceId(device),
        inbox_cursor: InboxSeq(cursor),
    })
}

impl Client {
    pub async fn connect(node: &TestNode, user: UserId, device: u64, cursor: u64) -> Client {
        Client::connect_via(node, &node.url(), None, user, device, cursor).await
    }

    pub async fn connect_via(
        node: &TestNode,
        url: &str,
        connector: Option<tokio_tungstenite::Connector>,
        user: UserId,
        device: u64,
        cursor: u64,
    ) -> Client {
        let mut ws = open_with(url, connector).await;
        ws.send(Ws::Binary(
            binary::encode_to_vec(&hello(&node.token(user), device, cursor)).into(),
        ))
        .await
        .unwrap();
        let mut c = Client {
            ws,
            welcome: placeholder_welcome(),
        };
        match c.recv().await {
            Frame::Welcome(w) => c.welcome = w,
            other => panic!("expected Welcome, got {other:?}"),
        }
        assert_eq!(c.welcome.user_id, user);
        c
    }

    pub async fn send(&mut self, f: &Frame) {
        self.ws
            .send(Ws::Binary(binary::encode_to_vec(f).into()))
            .await
            .unwrap();
    }

    pub async fn next_raw(&mut self) -> Option<Ws> {
        match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            Ok(_) => None,
            Err(_) => panic!("no frame within 10 s"),
        }
    }

    pub async fn recv(&mut self) -> Frame {
        loop {
            match self.next_raw().await {
                Some(Ws::Binary(b)) => {
                    return binary::decode_exact(&b, 1 << 21).unwrap_or_else(|e| {
                        panic!(
                            "undecodable frame ({e}): {} bytes, starts {:?}",
                            b.len(),
                            &b[..b.len().min(16)]
                        )
                    })
                }
                Some(Ws::Ping(_)) | Some(Ws::Pong(_)) => continue,
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// Frames until `pred` matches, skipping presence and typing pushes.
    pub async fn recv_where(&mut self, pred: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            let f = self.recv().await;
            if pred(&f) {
                return f;
            }
            assert!(
                matches!(
                    f,
                    Frame::Presence(_) | Frame::TypingEvent(_) | Frame::SyncBatch(_)
                ),
                "unexpected frame {f:?}"
            );
        }
    }

    /// The replay after Welcome: every SyncBatch with request id 0 up to
    /// the one with has_more false.
    pub async fn replay(&mut self) -> Vec<frame::Message> {
        let mut all = Vec::new();
        loop {
            match self.recv().await {
                Frame::SyncBatch(b) if b.request_id == 0 => {
                    all.extend(b.messages);
                    if !b.has_more {
                        return all;
                    }
                }
                Frame::Presence(_) => {}
                other => panic!("expected the replay, got {other:?}"),
            }
        }
    }

    pub async fn post(&mut self, client_msg_id: u64, target: Target, text: &str) {
        self.send(&Frame::Send(frame::Send {
            client_msg_id,
            target,
            text: text.into(),
        }))
        .await;
    }

    pub async fn ack(&mut self) -> frame::SendAck {
        match self
            .recv_where(|f| matches!(f, Frame::SendAck(_) | Frame::Error(_)))
            .await
        {
            Frame::SendAck(a) => a,
            other => panic!("expected SendAck, got {other:?}"),
        }
    }

    pub async fn message(&mut self) -> frame::Message {
        match self
            .recv_where(|f| matches!(f, Frame::Message(_) | Frame::Error(_)))
            .await
        {
            Frame::Message(m) => m,
            other => panic!("expected Message, got {other:?}"),
        }
    }

    pub async fn error(&mut self) -> frame::Error {
        match self.recv_where(|f| matches!(f, Frame::Error(_))).await {
            Frame::Error(e) => e,
            _ => unreachable!(),
        }
    }
}

pub fn placeholder_welcome() -> frame::Welcome {
    frame::Welcome {
        version: 0,
        user_id: UserId(0),
        session_id: 0,
        heartbeat_interval_ms: 0,
        limits: frame::Limits {
            max_frame_bytes: 0,
            max_text_chars: 0,
            max_group_members: 0,
            max_page: 0,
            max_presence_users: 0,
            send_rate_per_s: 0,
        },
    }
}
