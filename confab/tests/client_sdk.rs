//! The client SDK (confab-client) against a real node: real gateway threads,
//! real RocksDB log and storage writers, the real SQLite store and real
//! tokens, over real sockets. The tests speak to the gateway only through
//! the SDK's public API, as an application would.
//!
//! The tests that exercise the session model (1:1, groups, catch-up,
//! history, presence, typing and receipts, refusals) run once over each
//! transport the SDK offers: plain `ws://`, `wss://` and `quic://`, each
//! against a node that serves all three, trusting the node's self-signed
//! certificate as an app pinning its server's would. One more test keeps
//! one user's devices on all three at once.
//!
//! The last test is the one the SDK exists for: a TCP proxy between a
//! client and the gateway cuts the connection again and again while both
//! users send, and the receiving side must still see every message exactly
//! once and in order, and every send must resolve exactly once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab::wiring::{forward_events, StoreDirectory, TokenAuth};
use confab_client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, ErrorCode, Events,
    HistoryAnchor, Message, SendAck, Target, TlsOptions, Transport, Welcome,
};
use confab_directory::auth::{TokenSigner, TokenVerifier};
use confab_directory::events::EventBus;
use confab_directory::store::Store;
use confab_gateway::gateway::quic::QuicSettings;
use confab_gateway::gateway::{make_bus, Gateway, IoMode, NoPush, Settings};
use confab_storage::writer::{WriterConfig, WriterPool};
use confab_storage::{LogConfig, MessageLog, RocksLog};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const KEY: &[u8] = b"an end-to-end test key of at least thirty-two bytes";
/// Longest wait for any one thing a test expects.
const PATIENCE: Duration = Duration::from_secs(20);

/// The API side's runtime (where the store's pool lives), driven by its
/// own thread as `confab serve` drives it.
struct ApiRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiRuntime {
    fn start() -> ApiRuntime {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tx.send(rt.handle().clone()).unwrap();
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        ApiRuntime {
            handle: rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `f` here while the API thread drives the runtime's timers and
    /// IO (sqlx futures are not always `Send`, so they cannot be spawned).
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

struct Node {
    api: ApiRuntime,
    store: Store,
    signer: TokenSigner,
    gateway: Option<Gateway>,
    pool: Option<WriterPool<RocksLog>>,
    ws_addr: SocketAddr,
    quic_addr: SocketAddr,
    /// What `config` connects over.
    transport: Transport,
    /// The node's self-signed certificate (DER), trusted by the clients.
    cert: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// Every transport, for the tests that must hold on each.
const TRANSPORTS: [Transport; 3] = [Transport::Ws, Transport::Wss, Transport::Quic];

impl Node {
    /// A node whose clients connect over plain WebSocket.
    fn start(tweak: impl FnOnce(&mut Settings)) -> Node {
        Node::on(Transport::Ws, tweak)
    }

    /// A node serving ws, wss and QUIC, whose `config` uses `transport`.
    fn on(transport: Transport, tweak: impl FnOnce(&mut Settings)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let id = confab_gateway::tls::load_or_generate(None, &dir.path().join("tls")).unwrap();
        let api = ApiRuntime::start();
        let events = EventBus::default();
        let (path, ev) = (dir.path().to_owned(), events.clone());
        let store = api
            .block_on(async move { Store::open(&path, None, ev).await })
            .unwrap();
        let log = Arc::new(RocksLog::open(dir.path().join("log"), LogConfig::default()).unwrap());
        let mut settings = Settings {
            ws_addr: ([127, 0, 0, 1], 0).into(),
            cores: 2,
            io: IoMode::Epoll,
            pin_cores: false,
            presence_grace: Duration::from_millis(300),
            tls: Some(confab_gateway::tls::websocket_config(&id).unwrap()),
            quic: Some(QuicSettings {
                addr: ([127, 0, 0, 1], 0).into(),
                tls: confab_gateway::tls::quic_config(&id).unwrap(),
            }),
            ..Settings::default()
        };
        tweak(&mut settings);
        let (bus, wakers) = make_bus(settings.cores);
        let (pool, producers) =
            WriterPool::start(log.clone(), WriterConfig::default(), wakers).unwrap();
        let directory = Arc::new(StoreDirectory::new(store.clone(), api.handle.clone()));
        let gateway = Gateway::start(
            settings,
            bus.clone(),
            producers,
            log as Arc<dyn MessageLog>,
            directory,
            Arc::new(TokenAuth(TokenVerifier::new(KEY))),
            Arc::new(NoPush),
        )
        .unwrap();
        api.handle.spawn(forward_events(events, bus));
        let ws_addr = gateway.ws_addr;
        let quic_addr = gateway.quic_addr.unwrap();
        Node {
            api,
            store,
            signer: TokenSigner::new(KEY),
            gateway: Some(gateway),
            pool: Some(pool),
            ws_addr,
            quic_addr,
            transport,
            cert: id.chain[0].to_vec(),
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        self.url_over(self.transport)
    }

    fn url_over(&self, transport: Transport) -> String {
        match transport {
            Transport::Ws => format!("ws://{}/v1/ws", self.ws_addr),
            // By name: the certificate names localhost (and the loopback
            // addresses), and an app connects by name.
            Transport::Wss => format!("wss://localhost:{}/v1/ws", self.ws_addr.port()),
            Transport::Quic => format!("quic://localhost:{}", self.quic_addr.port()),
        }
    }

    fn user(&self, name: &str) -> u64 {
        let (s, name) = (self.store.clone(), name.to_owned());
        self.api
            .block_on(async move { s.create_user(&name, &name, "not-a-real-hash").await })
            .unwrap()
            .id
    }

    fn token(&self, user: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.signer.issue(user, user * 1000, now, 3600)
    }

    fn group(&self, owner: u64, members: &[u64]) -> u64 {
        let (s, members) = (self.store.clone(), members.to_vec());
        self.api
            .block_on(async move { s.create_group(owner, "group", &members).await })
            .unwrap()
            .id
    }

    fn befriend(&self, a: u64, b: u64) {
        let s = self.store.clone();
        let accepted = self.api.block_on(async move {
            s.request_friend(a, b).await.unwrap();
            s.accept_friend(b, a).await.unwrap()
        });
        assert!(accepted);
    }

    /// A client configuration for a user's device, through `url`,
    /// trusting only the node's certificate.
    fn config_at(&self, url: &str, user: u64, device: u64) -> ClientConfig {
        let mut config = ClientConfig::new(url, self.token(user), confab_storage::DeviceId(device));
        config.tls = TlsOptions::new()
            .without_system_roots()
            .add_root_der(self.cert.clone());
        config
    }

    fn config(&self, user: u64, device: u64) -> ClientConfig {
        self.config_at(&self.url(), user, device)
    }

    fn config_over(&self, transport: Transport, user: u64, device: u64) -> ClientConfig {
        self.config_at(&self.url_over(transport), user, device)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown();
        }
        if let Some(p) = self.pool.take() {
            p.shutdown();
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The next event, failing the test if none comes in time.
async fn next_event(events: &mut Events) -> ClientEvent {
    match tokio::time::timeout(PATIENCE, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the client closed"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

/// Events until `pick` takes one, skipping connection-state, presence,
/// typing and round-trip events (which come whenever they come).
async fn expect<T>(events: &mut Events, what: &str, pick: impl Fn(&ClientEvent) -> Option<T>) -> T {
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

async fn connected(events: &mut Events) -> Welcome {
    expect(events, "Connected", |e| match e {
        ClientEvent::Connected(w) => Some(w.clone()),
        _ => None,
    })
    .await
}

async fn message(events: &mut Events) -> Message {
    expect(events, "a message", |e| match e {
        ClientEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

/// Starts a client and waits for its session.
async fn start(config: ClientConfig) -> (Client, Events) {
    let (client, mut events) = Client::connect(config).unwrap();
    connected(&mut events).await;
    assert_eq!(client.state(), ConnectionState::Connected);
    (client, events)
}

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

over_each_transport!(one_to_one_reaches_every_device_and_resolves_the_send);
fn one_to_one_reaches_every_device_and_resolves_the_send(transport: Transport) {
    let node = Node::on(transport, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let (a1, mut a1_events) = start(node.config(alice, 1)).await;
        let (_a2, mut a2_events) = start(node.config(alice, 2)).await;
        let (b7, mut b7_events) = start(node.config(bob, 7)).await;
        let (_b8, mut b8_events) = start(node.config(bob, 8)).await;
        assert_eq!(a1.user_id(), Some(alice));

        let first_id = a1.next_client_msg_id();
        let ack = a1.send(Target::User(confab_storage::UserId(bob)), "hello bob").await.unwrap();
        assert_eq!(
            (ack.client_msg_id, ack.seq, ack.inbox_seq, ack.duplicate),
            (first_id, 1, 1, false)
        );
        assert_eq!(a1.next_client_msg_id(), first_id + 1);
        for events in [&mut b7_events, &mut b8_events] {
            let m = message(events).await;
            assert_eq!(
                (m.text.as_str(), m.sender_id, m.sender_device, m.seq),
                ("hello bob", alice, 1, 1)
            );
            assert_eq!((m.channel_id, m.inbox_seq), (ack.channel_id, 1));
        }
        // The sender's other device gets the message itself.
        let m = message(&mut a2_events).await;
        assert_eq!((m.text.as_str(), m.sender_device), ("hello bob", 1));

        // Bob answers in the channel by id; the sending device never sees
        // its own message as an event, so alice's next one is bob's.
        let reply = b7
            .send(Target::Channel(ack.channel_id), "hi alice")
            .await
            .unwrap();
        assert_eq!(reply.seq, confab_storage::Seq(2));
        for events in [&mut a1_events, &mut a2_events, &mut b8_events] {
            let m = message(events).await;
            assert_eq!((m.text.as_str(), m.seq, m.inbox_seq), ("hi alice", 2, 2));
        }
        assert_eq!(a1_events.cursor(), confab_storage::InboxSeq(2));
        assert_eq!(a1.cursor(), confab_storage::InboxSeq(2));

        // Text the protocol forbids is refused locally; nothing is sent.
        let empty = a1.send(Target::User(confab_storage::UserId(bob)), "").await;
        assert_eq!(empty, Err(ClientError::InvalidText(ErrorCode::EmptyText)));
        let long = a1.send(Target::User(confab_storage::UserId(bob)), "x".repeat(100_001)).await;
        assert_eq!(long, Err(ClientError::InvalidText(ErrorCode::TextTooLong)));
    });
}

over_each_transport!(a_group_message_reaches_every_member_and_strangers_are_refused);
fn a_group_message_reaches_every_member_and_strangers_are_refused(transport: Transport) {
    let node = Node::on(transport, |_| {});
    let (alice, bob, carol, eve) = (
        node.user("alice"),
        node.user("bob"),
        node.user("carol"),
        node.user("eve"),
    );
    let group = node.group(alice, &[bob, carol]);
    block_on(async {
        let (a, _a_events) = start(node.config(alice, 1)).await;
        let (_b, mut b_events) = start(node.config(bob, 1)).await;
        let (_c, mut c_events) = start(node.config(carol, 1)).await;
        let (e, _e_events) = start(node.config(eve, 1)).await;
        let ack = a.send(Target::Channel(confab_storage::ChannelId(group)), "all hands").await.unwrap();
        assert_eq!((ack.channel_id, ack.seq), (group, 1));
        for events in [&mut b_events, &mut c_events] {
            let m = message(events).await;
            assert_eq!(
                (m.channel_id, m.seq, m.sender_id, m.text.as_str()),
                (group, 1, alice, "all hands")
            );
        }
        // A non-member's send fails for good, with the server's code.
        match e.send(Target::Channel(confab_storage::ChannelId(group)), "let me in").await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::ForbiddenChannel),
            other => panic!("expected FORBIDDEN_CHANNEL, got {other:?}"),
        }
    });
}

over_each_transport!(an_offline_device_catches_up_from_its_cursor_then_goes_live);
fn an_offline_device_catches_up_from_its_cursor_then_goes_live(transport: Transport) {
    // Small pages, so the catch-up spans several replay batches.
    let node = Node::on(transport, |s| s.max_page = 3);
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let (a, _a_events) = start(node.config(alice, 1)).await;
        for i in 1..=7 {
            a.send(Target::User(confab_storage::UserId(bob)), format!("m{i}")).await.unwrap();
        }
        // Bob's device had seen the first two before it went offline.
        let mut config = node.config(bob, 1);
        config.inbox_cursor = confab_storage::InboxSeq(2);
        let (_b, mut b_events) = Client::connect(config).unwrap();
        let mut texts = Vec::new();
        for _ in 3..=7 {
            let m = message(&mut b_events).await;
            texts.push((m.inbox_seq, m.text));
        }
        let expected: Vec<(u64, String)> = (3..=7).map(|i| (i, format!("m{i}"))).collect();
        assert_eq!(texts, expected, "in order, from the cursor, once each");
        assert_eq!(b_events.cursor(), confab_storage::InboxSeq(7));
        a.send(Target::User(confab_storage::UserId(bob)), "live").await.unwrap();
        let m = message(&mut b_events).await;
        assert_eq!((m.inbox_seq, m.text.as_str()), (8, "live"));
        assert_eq!(b_events.cursor(), confab_storage::InboxSeq(8));

        // A new device of bob's gets the whole inbox.
        let (_b2, mut b2_events) = Client::connect(node.config(bob, 2)).unwrap();
        for i in 1..=8 {
            assert_eq!(message(&mut b2_events).await.inbox_seq, confab_storage::InboxSeq(i));
        }
    });
}

over_each_transport!(history_pages_through_a_channel);
fn history_pages_through_a_channel(transport: Transport) {
    let node = Node::on(transport, |_| {});
    let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let (a, _a_events) = start(node.config(alice, 1)).await;
        for i in 1..=5 {
            a.send(Target::Channel(confab_storage::ChannelId(group)), format!("h{i}"))
                .await
                .unwrap();
        }
        // A call made before the session is up is sent once it is, at
        // once (not at the next heartbeat).
        let (b, _b_events) = Client::connect(node.config(bob, 1)).unwrap();
        let early = tokio::time::timeout(
            Duration::from_secs(5),
            b.history(confab_storage::ChannelId(group), HistoryAnchor::Latest, 1),
        )
        .await
        .expect("answered without waiting for a heartbeat")
        .unwrap();
        assert_eq!(early.messages[0].seq, confab_storage::Seq(5));
        let seqs = |batch: &confab_client::HistoryBatch| -> Vec<u64> {
            batch.messages.iter().map(|m| m.seq).collect()
        };
        let latest = b.history(confab_storage::ChannelId(group), HistoryAnchor::Latest, 3).await.unwrap();
        assert_eq!((seqs(&latest), latest.has_more), (vec![3, 4, 5], true));
        assert_eq!(latest.messages[0].text, "h3");
        let older = b.history(confab_storage::ChannelId(group), HistoryAnchor::Before(confab_storage::Seq(3)), 3).await.unwrap();
        assert_eq!((seqs(&older), older.has_more), (vec![1, 2], false));
        let newer = b.history(confab_storage::ChannelId(group), HistoryAnchor::After(confab_storage::Seq(3)), 10).await.unwrap();
        assert_eq!(seqs(&newer), vec![4, 5]);
        // A non-member reads nothing.
        let (e, _e_events) = start(node.config(eve, 1)).await;
        match e.history(confab_storage::ChannelId(group), HistoryAnchor::Latest, 3).await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::ForbiddenChannel),
            other => panic!("expected FORBIDDEN_CHANNEL, got {other:?}"),
        }
    });
}

over_each_transport!(presence_is_queried_and_followed_by_subscription);
fn presence_is_queried_and_followed_by_subscription(transport: Transport) {
    let node = Node::on(transport, |s| s.presence_grace = Duration::from_millis(200));
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    node.befriend(alice, bob);
    block_on(async {
        let (b, mut b_events) = start(node.config(bob, 1)).await;
        let now = b.presence_subscribe(vec![confab_storage::UserId(alice)]).await.unwrap();
        assert_eq!((now[0].user_id, now[0].online), (alice, false));
        let (a, _a_events) = start(node.config(alice, 1)).await;
        let online = expect(&mut b_events, "alice online", |e| match e {
            ClientEvent::Presence(p) if p.iter().any(|p| p.user_id == confab_storage::UserId(alice) && p.online) => {
                Some(())
            }
            _ => None,
        });
        online.await;
        let asked = b.presence_query(vec![confab_storage::UserId(alice)]).await.unwrap();
        assert!(asked[0].online);
        // She leaves: after the grace period the change is pushed.
        a.close().await;
        expect(&mut b_events, "alice offline", |e| match e {
            ClientEvent::Presence(p)
                if p.iter()
                    .any(|p| p.user_id == confab_storage::UserId(alice) && !p.online && p.last_seen_ms > 0) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    });
}

over_each_transport!(typing_and_read_receipts_reach_the_other_members);
fn typing_and_read_receipts_reach_the_other_members(transport: Transport) {
    let node = Node::on(transport, |s| s.typing_interval = Duration::from_millis(20));
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let (a, mut a_events) = start(node.config(alice, 1)).await;
        let (b, mut b_events) = start(node.config(bob, 1)).await;
        // Typing notices are best effort: one sent while bob's session is
        // still being set up (Welcome comes before live delivery starts)
        // is simply not delivered. Repeat it, as a typing user's app does.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let typing = loop {
            assert!(tokio::time::Instant::now() < deadline, "no typing notice");
            a.typing(confab_storage::ChannelId(group)).unwrap();
            match tokio::time::timeout(Duration::from_millis(200), b_events.recv()).await {
                Ok(Some(ClientEvent::Typing(t))) => break t,
                Ok(None) => panic!("bob's client closed"),
                _ => {}
            }
        };
        assert_eq!((typing.channel_id, typing.user_id), (group, alice));
        let ack = a.send(Target::Channel(confab_storage::ChannelId(group)), "read me").await.unwrap();
        assert_eq!(message(&mut b_events).await.seq, ack.seq);
        b.read(confab_storage::ChannelId(group), ack.seq).unwrap();
        let receipt = expect(&mut a_events, "a receipt", |e| match e {
            ClientEvent::Receipt(r) => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (receipt.channel_id, receipt.user_id, receipt.seq),
            (group, bob, 1)
        );
    });
}

over_each_transport!(a_refused_token_stops_reconnecting_until_a_new_one_is_set);
fn a_refused_token_stops_reconnecting_until_a_new_one_is_set(transport: Transport) {
    let node = Node::on(transport, |_| {});
    let alice = node.user("alice");
    let good = node.token(alice);
    block_on(async {
        let mut config = node.config(alice, 1);
        config.token = "not.a.token".into();
        let (client, mut events) = Client::connect(config).unwrap();
        match next_event(&mut events).await {
            ClientEvent::Refused { code, .. } => assert_eq!(code, ErrorCode::Unauthenticated),
            other => panic!("expected Refused, got {other:?}"),
        }
        assert_eq!(client.state(), ConnectionState::Refused);
        // No reconnect attempts follow: nothing happens for a while.
        let quiet = tokio::time::timeout(Duration::from_millis(1500), events.recv()).await;
        assert!(quiet.is_err(), "the client kept going: {quiet:?}");
        assert_eq!(client.state(), ConnectionState::Refused);
        // Calls fail with the refusal instead of waiting forever.
        match client.history(confab_storage::ChannelId(1), HistoryAnchor::Latest, 1).await {
            Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Unauthenticated),
            other => panic!("{other:?}"),
        }
        match client.send(Target::User(confab_storage::UserId(alice)), "hi").await {
            Err(ClientError::Refused { .. }) => {}
            other => panic!("{other:?}"),
        }
        // A new token brings it back at once.
        client.set_token(good).unwrap();
        let welcome = connected(&mut events).await;
        assert_eq!(welcome.user_id, confab_storage::UserId(alice));
        assert_eq!(client.state(), ConnectionState::Connected);
    });
}

over_each_transport!(close_ends_the_events_and_fails_later_calls);
fn close_ends_the_events_and_fails_later_calls(transport: Transport) {
    let node = Node::on(transport, |_| {});
    let alice = node.user("alice");
    block_on(async {
        let (client, mut events) = start(node.config(alice, 1)).await;
        let other = client.clone();
        client.close().await;
        assert_eq!(other.state(), ConnectionState::Closed);
        loop {
            match next_event(&mut events).await {
                ClientEvent::Closed => break,
                ClientEvent::Rtt(_) => {}
                e => panic!("unexpected {e:?}"),
            }
        }
        assert!(events.recv().await.is_none());
        assert_eq!(
            other.send(Target::User(confab_storage::UserId(alice)), "late").await,
            Err(ClientError::Closed)
        );
        assert_eq!(
            other.presence_query(vec![confab_storage::UserId(alice)]).await,
            Err(ClientError::Closed)
        );
    });
}

#[test]
fn one_users_devices_on_every_transport_see_one_stream() {
    let node = Node::start(|_| {});
    let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
    let group = node.group(alice, &[bob, carol]);
    block_on(async {
        // Alice on all three transports at once, bob on QUIC, carol on wss.
        let mut alices = Vec::new();
        for (device, t) in (1..).zip(TRANSPORTS) {
            alices.push(start(node.config_over(t, alice, device)).await);
        }
        let (b, mut b_events) = start(node.config_over(Transport::Quic, bob, 1)).await;
        let (_c, mut c_events) = start(node.config_over(Transport::Wss, carol, 1)).await;

        // Each of alice's devices sends in turn; everyone else sees every
        // message once, in channel order, whatever carried it.
        for (i, (client, _)) in alices.iter().enumerate() {
            let ack = client
                .send(Target::Channel(confab_storage::ChannelId(group)), format!("from device {}", i + 1))
                .await
                .unwrap();
            assert_eq!(ack.seq, confab_storage::Seq(i as u64 + 1));
        }
        let reply = b.send(Target::Channel(confab_storage::ChannelId(group)), "bob here").await.unwrap();
        assert_eq!(reply.seq, confab_storage::Seq(4));
        let texts = |sender_device: u64| format!("from device {sender_device}");
        for events in [&mut b_events, &mut c_events] {
            for seq in 1..=3 {
                let m = message(events).await;
                assert_eq!((m.seq, m.text), (seq, texts(seq)));
            }
        }
        assert_eq!(message(&mut c_events).await.text, "bob here");
        for (i, (_, events)) in alices.iter_mut().enumerate() {
            let device = i as u64 + 1;
            let mut seen = Vec::new();
            while seen.len() < 3 {
                let m = message(events).await;
                // A device never gets its own send back as an event.
                assert_ne!((m.sender_id, m.sender_device), (alice, device));
                seen.push(m.seq);
            }
            let expected: Vec<u64> = (1..=4).filter(|&s| s != device).collect();
            assert_eq!(seen, expected, "device {device} over {:?}", TRANSPORTS[i]);
            assert_eq!(events.cursor(), confab_storage::InboxSeq(4));
        }
    });
}

/// A TCP proxy that can cut every connection through it at once, as a
/// flaky network would: both sockets are dropped wherever the bytes are,
/// often in the middle of a frame. It can also hold back what the server
/// sends (a stalled downlink: the client's frames still get through, the
/// answers do not), or everything (a silent network).
struct Proxy {
    addr: SocketAddr,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    hold_down: Arc<AtomicBool>,
    hold_up: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (hold_down, hold_up) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (registry, down, up) = (pipes.clone(), hold_down.clone(), hold_up.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = inbound.into_split();
                let (server_read, server_write) = outbound.into_split();
                let (down, up) = (down.clone(), up.clone());
                let pipe = tokio::spawn(async move {
                    tokio::join!(
                        pump(client_read, server_write, up),
                        pump(server_read, client_write, down)
                    );
                });
                registry.lock().unwrap().push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            pipes,
            accept,
            hold_down,
            hold_up,
        }
    }

    /// Cuts every live connection; returns how many there were.
    fn cut(&self) -> usize {
        let pipes: Vec<AbortHandle> = self.pipes.lock().unwrap().drain(..).collect();
        let live = pipes.iter().filter(|p| !p.is_finished()).count();
        for p in pipes {
            p.abort();
        }
        live
    }

    /// Holds back (or releases) what the server sends.
    fn hold_downlink(&self, hold: bool) {
        self.hold_down.store(hold, Ordering::SeqCst);
    }

    /// Holds back (or releases) what the client sends.
    fn hold_uplink(&self, hold: bool) {
        self.hold_up.store(hold, Ordering::SeqCst);
    }
}

/// Copies one direction, keeping what it read while `hold` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hold: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while hold.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[test]
fn cutting_connections_mid_stream_loses_and_repeats_nothing() {
    const N: u64 = 300; // alice -> bob, alice connected directly
    const M: u64 = 100; // bob -> alice, bob behind the cutting proxy
    const CUTS: usize = 12;
    let node = Node::start(|s| {
        s.send_burst = 1000;
        s.send_rate_per_s = 1000;
    });
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let proxy = Proxy::start(node.ws_addr).await;
        let (a, mut a_events) = start(node.config(alice, 1)).await;
        let proxied = format!("ws://{}/v1/ws", proxy.addr);
        let (b, mut b_events) = start(node.config_at(&proxied, bob, 1)).await;

        // Both send while the proxy cuts bob's connection over and over.
        // Every send is a future of its own; each must resolve exactly once.
        let a_sender = a.clone();
        let alice_sends = tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 1..=N {
                pending.push(a_sender.send(Target::User(confab_storage::UserId(bob)), body("a", i, 2_000)));
                if i % 5 == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let mut acks = Vec::new();
            for f in pending {
                acks.push(f.await);
            }
            acks
        });
        let b_sender = b.clone();
        let bob_sends = tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 1..=M {
                pending.push(b_sender.send(Target::User(confab_storage::UserId(alice)), body("b", i, 8_000)));
                // Bursts, so that sends are in flight when a cut comes.
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            let mut acks = Vec::new();
            for f in pending {
                acks.push(f.await);
            }
            acks
        });
        let b_watch = b.clone();
        let cutter = tokio::spawn(async move {
            let mut cuts = 0;
            let mut live_cut = 0;
            while cuts < CUTS {
                // Wait for the session to be back, then let traffic flow a
                // little (a varying time) before cutting it again.
                while b_watch.state() != ConnectionState::Connected {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let jitter = rand_ms(20, 200);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                live_cut += proxy.cut();
                cuts += 1;
                // The client notices before the next round starts.
                while b_watch.state() == ConnectionState::Connected {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (cuts, live_cut, proxy)
        });

        // Bob's view: alice's N messages, each once, in order.
        let mut at_bob: Vec<Message> = Vec::new();
        let mut disconnects_mid_stream = 0;
        while (at_bob.len() as u64) < N {
            match next_event(&mut b_events).await {
                ClientEvent::Message(m) => at_bob.push(m),
                ClientEvent::Disconnected { .. } => disconnects_mid_stream += 1,
                ClientEvent::Connected(_)
                | ClientEvent::Reconnecting { .. }
                | ClientEvent::Rtt(_)
                | ClientEvent::Presence(_) => {}
                other => panic!("unexpected at bob: {other:?}"),
            }
        }
        // Alice's view: bob's M messages, each once, in order.
        let mut at_alice: Vec<Message> = Vec::new();
        while (at_alice.len() as u64) < M {
            at_alice.push(message(&mut a_events).await);
        }

        let (cuts, live_cut, _proxy) = cutter.await.unwrap();
        let alice_acks = alice_sends.await.unwrap();
        let bob_acks = bob_sends.await.unwrap();

        let texts = |ms: &[Message]| {
            ms.iter()
                .map(|m| m.text.split(':').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let expected_at_bob: Vec<String> = (1..=N).map(|i| format!("a{i}")).collect();
        assert_eq!(
            texts(&at_bob),
            expected_at_bob,
            "bob: every message once, in order"
        );
        assert!(at_bob.iter().all(|m| m.sender_id == confab_storage::UserId(alice)));
        assert!(
            at_bob.windows(2).all(|w| w[0].inbox_seq < w[1].inbox_seq),
            "inbox order"
        );
        let expected_at_alice: Vec<String> = (1..=M).map(|i| format!("b{i}")).collect();
        assert_eq!(
            texts(&at_alice),
            expected_at_alice,
            "alice: every message once, in order"
        );

        // Every send resolved, successfully, once; stored once each (the
        // channel sequences of all acks are exactly 1..=N+M).
        let ok = |acks: Vec<Result<SendAck, ClientError>>| -> Vec<SendAck> {
            acks.into_iter()
                .map(|r| r.expect("every send succeeds"))
                .collect()
        };
        let (alice_acks, bob_acks) = (ok(alice_acks), ok(bob_acks));
        assert_eq!(alice_acks.len() as u64, N);
        assert_eq!(bob_acks.len() as u64, M);
        let seqs: BTreeSet<u64> = alice_acks.iter().chain(&bob_acks).map(|a| a.seq).collect();
        assert_eq!(seqs, (1..=N + M).collect::<BTreeSet<u64>>());
        let bob_ids: BTreeSet<u64> = bob_acks.iter().map(|a| a.client_msg_id).collect();
        assert_eq!(bob_ids.len() as u64, M, "one ack per send");
        // The cuts cut live sessions, most while messages were flowing.
        assert_eq!((cuts, live_cut), (CUTS, CUTS));
        assert!(
            disconnects_mid_stream >= CUTS / 2,
            "only {disconnects_mid_stream} cuts came while bob was receiving"
        );

        // Bob's cursor ends past everything in his inbox: alice's messages
        // and his own (whose acks move it without an event). Nothing else
        // arrives but the rest of the cuts' disconnects.
        let mut disconnects = disconnects_mid_stream;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout(Duration::from_millis(100), b_events.recv()).await {
                Ok(Some(ClientEvent::Message(m))) => panic!("an extra message at bob: {m:?}"),
                Ok(Some(ClientEvent::Disconnected { .. })) => disconnects += 1,
                Ok(Some(_)) => {}
                Ok(None) => panic!("bob's client closed"),
                Err(_) if b_events.cursor() >= confab_storage::InboxSeq(N + M) => break,
                Err(_) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "bob's cursor stuck at {}",
                    b_events.cursor()
                ),
            }
        }
        assert_eq!(disconnects, CUTS, "one disconnect per cut, no other");
        eprintln!(
            "STATS dup_acks={} mid={}",
            bob_acks.iter().filter(|a| a.duplicate).count(),
            disconnects_mid_stream
        );
        assert_eq!(b_events.cursor(), confab_storage::InboxSeq(N + M));
        assert_eq!(b.cursor(), confab_storage::InboxSeq(N + M));
    });
}

/// A message text: a name (`a17`) padded to `len` bytes, so that frames
/// are long enough to be cut in the middle.
fn body(who: &str, i: u64, len: usize) -> String {
    let mut text = format!("{who}{i}:");
    text.extend(std::iter::repeat_n('.', len.saturating_sub(text.len())));
    text
}

/// A pseudo-random number of milliseconds in `lo..hi`, from the clock (the
/// cut times only need to vary, not to be unpredictable).
fn rand_ms(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    lo + nanos % (hi - lo)
}

#[test]
fn sends_whose_acks_were_lost_resolve_once_and_are_stored_once() {
    const K: u64 = 20;
    let node = Node::start(|_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let proxy = Proxy::start(node.ws_addr).await;
        let (_a, mut a_events) = start(node.config(alice, 1)).await;
        let proxied = format!("ws://{}/v1/ws", proxy.addr);
        let (b, mut b_events) = start(node.config_at(&proxied, bob, 1)).await;
        // Bob's sends reach the server, but nothing comes back.
        proxy.hold_downlink(true);
        let pending: Vec<_> = (1..=K)
            .map(|i| b.send(Target::User(confab_storage::UserId(alice)), format!("b{i}")))
            .collect();
        // Stored: alice has them all.
        for i in 1..=K {
            assert_eq!(message(&mut a_events).await.text, format!("b{i}"));
        }
        // The connection dies with every ack in it.
        proxy.cut();
        proxy.hold_downlink(false);
        // After the reconnect the replay holds bob's own messages and the
        // retransmitted sends are answered as duplicates: each future
        // resolves once, with the original sequence, and bob's events show
        // none of his own messages.
        for (i, f) in (1..=K).zip(pending) {
            let ack = f.await.unwrap();
            assert_eq!((ack.seq, ack.duplicate), (i, true));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while b_events.cursor() < confab_storage::InboxSeq(K) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cursor {}",
                b_events.cursor()
            );
            if let Ok(Some(ClientEvent::Message(m))) =
                tokio::time::timeout(Duration::from_millis(50), b_events.recv()).await
            {
                panic!("bob's own message came back as an event: {m:?}");
            }
        }
        // Nothing was stored twice.
        let extra = tokio::time::timeout(Duration::from_millis(300), message(&mut a_events)).await;
        assert!(extra.is_err(), "alice got a message twice: {extra:?}");
    });
}

#[test]
fn a_silent_server_is_left_and_the_session_resumes() {
    let node = Node::start(|s| s.heartbeat_interval = Duration::from_millis(200));
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let proxy = Proxy::start(node.ws_addr).await;
        let (a, _a_events) = start(node.config(alice, 1)).await;
        let proxied = format!("ws://{}/v1/ws", proxy.addr);
        let (_b, mut b_events) = start(node.config_at(&proxied, bob, 1)).await;
        // The network goes quiet both ways, without closing anything.
        proxy.hold_downlink(true);
        proxy.hold_uplink(true);
        a.send(Target::User(confab_storage::UserId(bob)), "while you were away")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let reason = expect(&mut b_events, "the silence to be noticed", |e| match e {
            ClientEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains("silent"), "{reason}");
        // Three heartbeat intervals of silence (from the last frame).
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        proxy.cut();
        proxy.hold_downlink(false);
        proxy.hold_uplink(false);
        let m = message(&mut b_events).await;
        assert_eq!((m.text.as_str(), m.inbox_seq), ("while you were away", 1));
    });
}
