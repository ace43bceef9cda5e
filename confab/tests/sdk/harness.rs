//! What the SDK tests share: a node serving ws, wss and QUIC whose
//! clients trust its self-signed certificate, and waiting for events.

#![allow(dead_code)]

use confab_client::{
    Client, ClientConfig, ClientEvent, ConnectionState, DeviceId, Events, Message, TlsOptions,
    Transport, UserId, Welcome,
};
use confab_gateway::IoMode;

use crate::common::{TestNode, PATIENCE};

/// Every transport, for the tests that must hold on each.
pub const TRANSPORTS: [Transport; 3] = [Transport::Ws, Transport::Wss, Transport::Quic];

/// A node for SDK clients over one transport.
pub struct SdkNode {
    /// The node.
    pub node: TestNode,
    /// What `config` connects over.
    pub transport: Transport,
}

impl std::ops::Deref for SdkNode {
    type Target = TestNode;
    fn deref(&self) -> &TestNode {
        &self.node
    }
}

impl SdkNode {
    /// A node whose clients connect over plain WebSocket.
    pub fn start(tweak: impl FnOnce(&mut confab_gateway::Settings) + Send + 'static) -> SdkNode {
        SdkNode::on(Transport::Ws, tweak)
    }

    /// A node serving ws, wss and QUIC, whose `config` uses `transport`.
    pub fn on(
        transport: Transport,
        tweak: impl FnOnce(&mut confab_gateway::Settings) + Send + 'static,
    ) -> SdkNode {
        SdkNode {
            node: TestNode::start(IoMode::Epoll, tweak),
            transport,
        }
    }

    /// The gateway's address.
    pub fn ws_addr(&self) -> std::net::SocketAddr {
        self.node.node.ws_addr
    }

    /// The URL of `config`'s transport.
    pub fn url(&self) -> String {
        self.url_over(self.transport)
    }

    /// The URL of `transport`.
    pub fn url_over(&self, transport: Transport) -> String {
        let n = &self.node.node;
        match transport {
            Transport::Ws => format!("ws://{}/v1/ws", n.ws_addr),
            // By name: the certificate names localhost (and the loopback
            // addresses), and an app connects by name.
            Transport::Wss => format!("wss://localhost:{}/v1/ws", n.ws_addr.port()),
            Transport::Quic => format!("quic://localhost:{}", n.quic_addr.unwrap().port()),
        }
    }

    /// A client configuration for a user's device, through `url`,
    /// trusting only the node's certificate.
    pub fn config_at(&self, url: &str, user: UserId, device: u64) -> ClientConfig {
        let mut config = ClientConfig::new(url, self.token(user), DeviceId(device));
        config.tls = TlsOptions::new()
            .without_system_roots()
            .add_root_der(self.node.node.tls.chain[0].to_vec());
        config
    }

    /// The same over `config`'s transport.
    pub fn config(&self, user: UserId, device: u64) -> ClientConfig {
        self.config_at(&self.url(), user, device)
    }

    /// The same over `transport`.
    pub fn config_over(&self, transport: Transport, user: UserId, device: u64) -> ClientConfig {
        self.config_at(&self.url_over(transport), user, device)
    }
}

/// The next event, failing the test if none comes in time.
pub async fn next_event(events: &mut Events) -> ClientEvent {
    match tokio::time::timeout(PATIENCE, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the client closed"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

/// Events until `pick` takes one, skipping connection-state, presence,
/// typing and round-trip events (which come whenever they come).
pub async fn expect<T>(
    events: &mut Events,
    what: &str,
    pick: impl Fn(&ClientEvent) -> Option<T>,
) -> T {
    loop {
        let event = next_event(events).await;
        if let Some(t) = pick(&event) {
            return t;
        }
        assert!(
            matches!(
                event,
                ClientEvent::Connected(_)
                    | ClientEvent::Disconnected { .. }
                    | ClientEvent::Reconnecting { .. }
                    | ClientEvent::Presence(_)
                    | ClientEvent::Typing(_)
                    | ClientEvent::Rtt(_)
            ),
            "waiting for {what}, got {event:?}"
        );
    }
}

pub async fn connected(events: &mut Events) -> Welcome {
    expect(events, "Connected", |e| match e {
        ClientEvent::Connected(w) => Some(w.clone()),
        _ => None,
    })
    .await
}

pub async fn message(events: &mut Events) -> Message {
    expect(events, "a message", |e| match e {
        ClientEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

/// Sends typing in `channel` from `typist` until `watcher` shows a typing
/// notice; the notice. Typing notices are best effort: one sent while the
/// watcher's session is still being set up (Welcome comes before live
/// delivery starts), or before another node has it, is not delivered.
/// Repeated, as a typing user's app does.
pub async fn typing_seen(
    typist: &Client,
    channel: confab_client::ChannelId,
    watcher: &mut Events,
) -> confab_client::TypingEvent {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no typing notice");
        typist.typing(channel).unwrap();
        match tokio::time::timeout(std::time::Duration::from_millis(200), watcher.recv()).await {
            Ok(Some(ClientEvent::Typing(t))) => return t,
            Ok(None) => panic!("the watcher's client closed"),
            _ => {}
        }
    }
}

/// Starts a client and waits for its session.
pub async fn start(config: ClientConfig) -> (Client, Events) {
    let (client, mut events) = Client::connect(config).unwrap();
    connected(&mut events).await;
    assert_eq!(client.state(), ConnectionState::Connected);
    (client, events)
}

#[macro_export]
/// Runs a test once per transport, as `NAME::ws`, `NAME::wss` and
/// `NAME::quic`, so a failure names the transport.
macro_rules! over_each_transport {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[test]
            fn ws() {
                super::$name(Transport::Ws)
            }
            #[test]
            fn wss() {
                super::$name(Transport::Wss)
            }
            #[test]
            fn quic() {
                super::$name(Transport::Quic)
            }
        }
    };
}

/// `GET path` on the node's API port: the status line and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap().to_owned();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
