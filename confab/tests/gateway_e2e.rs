//! End to end over real sockets: a real gateway (thread per core), real
//! RocksDB log and storage writers, the real SQLite store and real tokens,
//! driven by tokio-tungstenite, a WebSocket client we did not write. Every
//! scenario runs on both IO backends (io_uring where the kernel allows it,
//! and epoll).

use std::sync::Arc;
use std::time::Duration;

use confab::wiring::{forward_events, StoreDirectory, TokenAuth};
use confab_directory::auth::{TokenSigner, TokenVerifier};
use confab_directory::events::EventBus;
use confab_directory::store::Store;
use confab_gateway::gateway::{make_bus, Found, Gateway, IoMode, PushJob, PushSink, Settings};
use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::{binary, ErrorCode, FrameType};
use confab_storage::writer::{WriterConfig, WriterPool};
use confab_storage::{LogConfig, MessageLog, RocksLog};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

const KEY: &[u8] = b"an end-to-end test key of at least thirty-two bytes";

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

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        self.handle.spawn(f);
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
    verifier: TokenVerifier,
    log: Arc<RocksLog>,
    gateway: Option<Gateway>,
    pool: Option<WriterPool<RocksLog>>,
    push_jobs: Arc<RecordedPushes>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(io: IoMode, tweak: impl FnOnce(&mut Settings)) -> Node {
        Node::start_with_writers(io, tweak, WriterConfig::default())
    }

    fn start_with_writers(
        io: IoMode,
        tweak: impl FnOnce(&mut Settings),
        writers: WriterConfig,
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
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
            io,
            pin_cores: false,
            presence_grace: Duration::from_millis(300),
            ..Settings::default()
        };
        tweak(&mut settings);
        let (bus, wakers) = make_bus(settings.cores);
        let (pool, producers) = WriterPool::start(log.clone(), writers, wakers).unwrap();
        let directory = Arc::new(StoreDirectory::new(store.clone(), api.handle().clone()));
        let verifier = TokenVerifier::new(KEY);
        let shared_verifier = verifier.clone();
        let push_jobs = Arc::new(RecordedPushes::default());
        let gateway = Gateway::start(
            settings,
            bus.clone(),
            producers,
            log.clone() as Arc<dyn MessageLog>,
            directory,
            Arc::new(TokenAuth(verifier)),
            push_jobs.clone(),
        )
        .unwrap();
        api.spawn(forward_events(events, bus));
        // The uring runs really run on io_uring wherever the kernel allows it.
        if io == IoMode::Uring && confab_gateway::gateway::runtime::uring_available().is_ok() {
            assert_eq!(gateway.io(), IoMode::Uring);
        }
        let url = format!("ws://{}/v1/ws", gateway.ws_addr);
        Node {
            api,
            store,
            signer: TokenSigner::new(KEY),
            verifier: shared_verifier,
            log,
            gateway: Some(gateway),
            pool: Some(pool),
            push_jobs,
            url,
            _dir: dir,
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
}

/// Push jobs raised by the gateway, as the push service would get them,
/// with the presence it was told.
#[derive(Default)]
struct RecordedPushes {
    jobs: std::sync::Mutex<Vec<(PushJob, Found)>>,
    online: std::sync::Mutex<std::collections::HashMap<u64, i64>>,
}

impl PushSink for RecordedPushes {
    fn wants_job(&self, user: u64) -> bool {
        self.online.lock().unwrap().get(&user).copied().unwrap_or(0) == 0
    }
    fn presence(&self, user: u64, online: bool) {
        *self.online.lock().unwrap().entry(user).or_default() += if online { 1 } else { -1 };
    }
    fn delivered(&self, job: PushJob, found: Found) {
        self.jobs.lock().unwrap().push((job, found));
    }
}

impl RecordedPushes {
    /// Jobs for a member found with no device connected.
    fn for_user(&self, user: u64) -> Vec<PushJob> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, f)| j.user == user && matches!(f, Found::Offline { .. }))
            .map(|(j, _)| *j)
            .collect()
    }

    fn found(&self, user: u64) -> Vec<Found> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, _)| j.user == user)
            .map(|(_, f)| *f)
            .collect()
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

struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    welcome: frame::Welcome,
}

async fn open(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    open_with(url, None).await
}

/// A rustls client that trusts exactly the node's certificate.
fn trusting(id: &confab_gateway::tls::Identity) -> tokio_tungstenite::Connector {
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

async fn open_with(
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

fn hello(token: &str, device: u64, cursor: u64) -> Frame {
    Frame::Hello(frame::Hello {
        min_version: confab_protocol::MIN_PROTOCOL_VERSION,
        max_version: confab_protocol::PROTOCOL_VERSION,
        token: token.into(),
        device_id: device,
        inbox_cursor: cursor,
    })
}

impl Client {
    async fn connect(node: &Node, user: u64, device: u64, cursor: u64) -> Client {
        Client::connect_via(node, &node.url, None, user, device, cursor).await
    }

    async fn connect_via(
        node: &Node,
        url: &str,
        connector: Option<tokio_tungstenite::Connector>,
        user: u64,
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

    async fn send(&mut self, f: &Frame) {
        self.ws
            .send(Ws::Binary(binary::encode_to_vec(f).into()))
            .await
            .unwrap();
    }

    async fn next_raw(&mut self) -> Option<Ws> {
        match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            Ok(_) => None,
            Err(_) => panic!("no frame within 10 s"),
        }
    }

    async fn recv(&mut self) -> Frame {
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
    async fn recv_where(&mut self, pred: impl Fn(&Frame) -> bool) -> Frame {
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
    async fn replay(&mut self) -> Vec<frame::Message> {
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
            Frame::SendAck(a) => a,
            other => panic!("expected SendAck, got {other:?}"),
        }
    }

    async fn message(&mut self) -> frame::Message {
        match self
            .recv_where(|f| matches!(f, Frame::Message(_) | Frame::Error(_)))
            .await
        {
            Frame::Message(m) => m,
            other => panic!("expected Message, got {other:?}"),
        }
    }

    async fn error(&mut self) -> frame::Error {
        match self.recv_where(|f| matches!(f, Frame::Error(_))).await {
            Frame::Error(e) => e,
            _ => unreachable!(),
        }
    }
}

fn placeholder_welcome() -> frame::Welcome {
    frame::Welcome {
        version: 0,
        user_id: 0,
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

fn both_backends(test: impl Fn(IoMode)) {
    for io in [IoMode::Epoll, IoMode::Uring] {
        test(io);
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn one_to_one_reaches_every_device_and_acks_the_sender() {
    both_backends(|io| {
        let node = Node::start(io, |_| {});
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
                (1, 1, 1, false)
            );

            let at_bob = b1.message().await;
            assert_eq!(
                (at_bob.text.as_str(), at_bob.sender_id, at_bob.seq),
                ("hello bob", alice, 1)
            );
            assert_eq!(at_bob.channel_id, ack.channel_id);
            assert_eq!(at_bob.inbox_seq, 1);
            // The sender's other device gets the message itself.
            let at_a2 = a2.message().await;
            assert_eq!(
                (at_a2.text.as_str(), at_a2.sender_device, at_a2.inbox_seq),
                ("hello bob", 1, 1)
            );

            // Bob answers in the same channel by id.
            b1.post(1, Target::Channel(ack.channel_id), "hi alice")
                .await;
            assert_eq!(b1.ack().await.seq, 2);
            for c in [&mut a1, &mut a2] {
                let m = c.message().await;
                assert_eq!((m.text.as_str(), m.seq, m.inbox_seq), ("hi alice", 2, 2));
            }
        });
    });
}

/// A frame that arrives in two parts with a pause between them longer
/// than the read loop's liveness tick (500 ms) must still be read whole.
/// On io_uring the read buffer is lent to the kernel; a read abandoned at
/// the tick took the first part of the frame with it, and the rest of the
/// stream was garbage (found by confab-loadgen sending 100,000-character
/// messages).
#[test]
fn a_frame_split_by_a_pause_is_read_whole() {
    both_backends(|io| {
        let node = Node::start(io, |_| {});
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
                text: text.clone(),
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
            assert_eq!((ack.client_msg_id, ack.seq), (1, 1));
            let m = b.message().await;
            assert_eq!(m.text, text);
            // And the stream goes on in step.
            a.post(2, Target::User(bob), "after").await;
            assert_eq!(a.ack().await.seq, 2);
            assert_eq!(b.message().await.text, "after");
        });
    });
}

#[test]
fn offline_device_gets_what_it_missed_then_live() {
    both_backends(|io| {
        let node = Node::start(io, |s| s.max_page = 3);
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
            let seqs: Vec<u64> = missed.iter().map(|m| m.inbox_seq).collect();
            assert_eq!(
                seqs,
                [3, 4, 5, 6, 7],
                "pages of 3, in order, from the cursor"
            );
            assert_eq!(missed[0].text, "m3");
            a.post(8, Target::User(bob), "live").await;
            let m = b.message().await;
            assert_eq!((m.inbox_seq, m.text.as_str()), (8, "live"));
        });
    });
}

#[test]
fn reconnecting_mid_stream_loses_and_repeats_nothing() {
    both_backends(|io| {
        let node = Node::start(io, |s| s.send_burst = 1000);
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
                    seen.push(m.inbox_seq);
                    cursor = m.inbox_seq;
                }
                // Take a few live messages, then drop the connection.
                for _ in 0..25 {
                    if cursor >= N {
                        break;
                    }
                    let m = b.message().await;
                    seen.push(m.inbox_seq);
                    cursor = m.inbox_seq;
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
        let node = Node::start(io, |_| {});
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
        let node = Node::start_with_writers(
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
                texts.push(b.message().await.text);
            }
            texts.sort();
            texts.dedup();
            assert_eq!(texts.len(), 20);
        });
    });
}

#[test]
fn a_hundred_member_group_reaches_everyone() {
    let node = Node::start(IoMode::Epoll, |_| {});
    let users: Vec<u64> = (0..100).map(|i| node.user(&format!("member{i}"))).collect();
    let group = node.group(users[0], &users[1..]);
    block_on(async {
        let mut clients = Vec::new();
        for u in &users {
            let mut c = Client::connect(&node, *u, 1, 0).await;
            c.replay().await;
            clients.push(c);
        }
        clients[0]
            .post(1, Target::Channel(group), "all hands")
            .await;
        assert_eq!(clients[0].ack().await.seq, 1);
        for c in clients.iter_mut().skip(1) {
            let m = c.message().await;
            assert_eq!((m.channel_id, m.text.as_str()), (group, "all hands"));
        }
    });
}

#[test]
fn non_members_cannot_send_or_read_and_bad_input_is_answered() {
    both_backends(|io| {
        let node = Node::start(io, |_| {});
        let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
        let group = node.group(alice, &[bob]);
        block_on(async {
            let mut e = Client::connect(&node, eve, 1, 0).await;
            e.replay().await;
            e.post(1, Target::Channel(group), "let me in").await;
            assert_eq!(e.error().await.code, ErrorCode::ForbiddenChannel);
            e.send(&Frame::History(frame::History {
                request_id: 9,
                channel_id: group,
                anchor: frame::HistoryAnchor::Latest,
                limit: 10,
            }))
            .await;
            let err = e.error().await;
            assert_eq!((err.code, err.request_id), (ErrorCode::ForbiddenChannel, 9));
            // Too long: 100,001 characters.
            e.post(2, Target::User(alice), &"x".repeat(100_001)).await;
            assert_eq!(e.error().await.code, ErrorCode::TextTooLong);
            e.post(3, Target::User(alice), "").await;
            assert_eq!(e.error().await.code, ErrorCode::EmptyText);
            // Garbage and an unknown frame type: errors, not disconnects.
            e.ws.send(Ws::Binary(vec![0x03, 0x7f, 0x01, 0x02].into()))
                .await
                .unwrap();
            assert_eq!(e.error().await.code, ErrorCode::UnknownFrameType);
            e.ws.send(Ws::Binary(vec![0x05, 0x02, 0xff].into()))
                .await
                .unwrap();
            assert_eq!(e.error().await.code, ErrorCode::BadFrame);
            e.send(&Frame::Heartbeat(frame::Heartbeat { nonce: 77 }))
                .await;
            match e.recv().await {
                Frame::HeartbeatAck(h) => assert_eq!(h.nonce, 77),
                other => panic!("{other:?}"),
            }
            // The members are unaffected.
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            a.post(1, Target::Channel(group), "members only").await;
            assert_eq!(a.ack().await.seq, 1);
        });
    });
}

#[test]
fn a_bad_token_is_refused_with_a_typed_error() {
    let node = Node::start(IoMode::Epoll, |_| {});
    block_on(async {
        let mut ws = open(&node.url).await;
        ws.send(Ws::Binary(
            binary::encode_to_vec(&hello("not.a.token", 1, 0)).into(),
        ))
        .await
        .unwrap();
        let mut c = Client {
            ws,
            welcome: placeholder_welcome(),
        };
        assert_eq!(c.error().await.code, ErrorCode::Unauthenticated);
        match c.recv().await {
            Frame::Close(close) => assert_eq!(close.code, ErrorCode::Unauthenticated.code()),
            other => panic!("{other:?}"),
        }
        match c.next_raw().await {
            Some(Ws::Close(Some(f))) => assert_eq!(u16::from(f.code), 4200),
            other => panic!("expected a close frame, got {other:?}"),
        }
    });
}

#[test]
fn presence_goes_to_friends_with_debounce_and_last_seen() {
    both_backends(|io| {
        let node = Node::start(io, |s| s.presence_grace = Duration::from_millis(500));
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        node.befriend(alice, bob);
        block_on(async {
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            let presence = |f: &Frame| matches!(f, Frame::Presence(p) if p.request_id == 0);
            let online = |f: &Frame| matches!(f, Frame::Presence(p) if p.request_id == 0 && p.entries[0].online);
            let a = Client::connect(&node, alice, 1, 0).await;
            match b.recv_where(online).await {
                Frame::Presence(p) => {
                    assert_eq!((p.entries[0].user_id, p.entries[0].online), (alice, true))
                }
                _ => unreachable!(),
            }
            // A quick reconnect publishes nothing.
            drop(a);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            // A query sees her online.
            b.send(&Frame::PresenceQuery(frame::PresenceQuery {
                request_id: 5,
                user_ids: vec![alice],
            }))
            .await;
            match b
                .recv_where(|f| matches!(f, Frame::Presence(p) if p.request_id == 5))
                .await
            {
                Frame::Presence(p) => assert!(p.entries[0].online),
                _ => unreachable!(),
            }
            let before = confab_gateway::gateway::now_ms();
            drop(a);
            match b.recv_where(presence).await {
                Frame::Presence(p) => {
                    let e = p.entries[0];
                    assert_eq!(
                        (e.user_id, e.online),
                        (alice, false),
                        "the reconnect did not publish"
                    );
                    assert!(
                        e.last_seen_ms >= before,
                        "last seen is stored on going offline"
                    );
                }
                _ => unreachable!(),
            }
        });
    });
}

#[test]
fn a_silent_device_is_dropped_after_three_heartbeat_intervals() {
    let node = Node::start(IoMode::Epoll, |s| {
        s.heartbeat_interval = Duration::from_millis(200)
    });
    let alice = node.user("alice");
    block_on(async {
        let mut a = Client::connect(&node, alice, 1, 0).await;
        assert_eq!(a.welcome.heartbeat_interval_ms, 200);
        a.replay().await;
        let started = std::time::Instant::now();
        match a.recv_where(|f| matches!(f, Frame::Error(_))).await {
            Frame::Error(e) => assert_eq!(e.code, ErrorCode::HeartbeatTimeout),
            _ => unreachable!(),
        }
        assert!(started.elapsed() >= Duration::from_millis(550));
    });
}

#[test]
fn typing_and_read_receipts_reach_the_other_members() {
    let node = Node::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        a.send(&Frame::Typing(frame::Typing { channel_id: group }))
            .await;
        match b.recv().await {
            Frame::TypingEvent(t) => assert_eq!((t.channel_id, t.user_id), (group, alice)),
            other => panic!("{other:?}"),
        }
        a.post(1, Target::Channel(group), "read me").await;
        a.ack().await;
        assert_eq!(b.message().await.seq, 1);
        b.send(&Frame::Read(frame::Read {
            channel_id: group,
            seq: 1,
        }))
        .await;
        match a.recv_where(|f| matches!(f, Frame::Receipt(_))).await {
            Frame::Receipt(r) => assert_eq!((r.channel_id, r.user_id, r.seq), (group, bob, 1)),
            _ => unreachable!(),
        }
        // The mark is stored.
        let marks = node
            .log
            .read_marks(confab_storage::ChannelId(group))
            .unwrap();
        assert_eq!(marks, [(confab_storage::UserId(bob), 1)]);
    });
}

#[test]
fn the_json_subprotocol_speaks_the_same_frames() {
    let node = Node::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let token = node.token(alice);
    block_on(async {
        let mut req = node.url.as_str().into_client_request().unwrap();
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
fn a_slow_consumer_is_cut_off_and_resumes_without_loss() {
    const N: u64 = 300;
    let node = Node::start(IoMode::Epoll, |s| {
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
        let cursor = seen.last().copied().unwrap_or(0);
        let mut b = Client::connect(&node, bob, 1, cursor).await;
        seen.extend(b.replay().await.iter().map(|m| m.inbox_seq));
        assert_eq!(seen, (1..=N).collect::<Vec<_>>());
    });
}

#[test]
fn a_revoked_login_session_is_disconnected_and_refused() {
    use confab_directory::events::DirectoryEvent;
    both_backends(|io| {
        let node = Node::start(io, |_| {});
        let alice = node.user("alice");
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            // What the API does on logout: the shared verifier learns it,
            // and the store announces it to the gateway.
            node.verifier.revoke(alice * 1000, u64::MAX);
            node.store.events().publish(DirectoryEvent::SessionRevoked {
                user_id: alice,
                session_id: alice * 1000,
            });
            assert_eq!(a.error().await.code, ErrorCode::TokenRevoked);
            // A new connection with the same token is refused.
            let mut ws = open(&node.url).await;
            let hello = hello(&node.token(alice), 1, 0);
            ws.send(Ws::Binary(binary::encode_to_vec(&hello).into()))
                .await
                .unwrap();
            let mut c = Client {
                ws,
                welcome: placeholder_welcome(),
            };
            assert_eq!(c.error().await.code, ErrorCode::TokenRevoked);
        });
    });
}

#[test]
fn group_presence_is_on_demand_and_strangers_stay_hidden() {
    let node = Node::start(IoMode::Epoll, |_| {});
    let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
    node.group(alice, &[bob]);
    block_on(async {
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        let mut e = Client::connect(&node, eve, 1, 0).await;
        e.replay().await;
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        // A co-member (not a friend) is visible on demand...
        a.send(&Frame::PresenceQuery(frame::PresenceQuery {
            request_id: 1,
            user_ids: vec![bob, eve],
        }))
        .await;
        match a
            .recv_where(|f| matches!(f, Frame::Presence(p) if p.request_id == 1))
            .await
        {
            Frame::Presence(p) => {
                assert_eq!((p.entries[0].user_id, p.entries[0].online), (bob, true));
                // ...a stranger reads as offline and never seen.
                assert_eq!(
                    (
                        p.entries[1].user_id,
                        p.entries[1].online,
                        p.entries[1].last_seen_ms
                    ),
                    (eve, false, 0)
                );
            }
            _ => unreachable!(),
        }
    });
}

#[test]
fn a_member_removed_through_the_api_can_no_longer_send() {
    let node = Node::start(IoMode::Epoll, |_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    block_on(async {
        let mut b = Client::connect(&node, bob, 1, 0).await;
        b.replay().await;
        b.post(1, Target::Channel(group), "still here").await;
        assert_eq!(b.ack().await.seq, 1);
        // The owner removes bob through the store (as the API does); the
        // gateway's cached membership is invalidated by the event.
        let (s, api) = (node.store.clone(), node.api.handle().clone());
        // Off this thread: it is already inside the test's runtime.
        std::thread::spawn(move || {
            api.block_on(async move { s.remove_member(group, alice, bob).await.unwrap() })
        })
        .join()
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut id = 2;
        loop {
            b.post(id, Target::Channel(group), "am I out?").await;
            match b
                .recv_where(|f| matches!(f, Frame::SendAck(_) | Frame::Error(_)))
                .await
            {
                Frame::Error(e) => {
                    assert_eq!(e.code, ErrorCode::ForbiddenChannel);
                    break;
                }
                _ => assert!(
                    std::time::Instant::now() < deadline,
                    "removal never reached the gateway"
                ),
            }
            id += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn push_jobs_are_raised_only_for_members_with_no_connected_device() {
    both_backends(|io| {
        let node = Node::start(io, |_| {});
        let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
        let group = node.group(alice, &[alice, bob, carol]);
        let metrics = node.gateway.as_ref().unwrap().metrics();
        let open_ws = |m: &[Arc<confab_gateway::gateway::CoreMetrics>]| -> u64 {
            m.iter()
                .map(|c| c.connections(confab_gateway::gateway::Transport::Ws))
                .sum()
        };
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            a.post(1, Target::Channel(group), "first").await;
            let ack = a.ack().await;
            b.message().await;
            for _ in 0..200 {
                if !node.push_jobs.for_user(carol).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Carol has no device: one job, for her alone (not for the
            // sender, not for Bob, who is connected).
            let jobs = node.push_jobs.for_user(carol);
            assert_eq!(jobs.len(), 1);
            assert_eq!(
                (
                    jobs[0].channel,
                    jobs[0].seq,
                    jobs[0].sender,
                    jobs[0].inbox_seq
                ),
                (group, ack.seq, alice, 1)
            );
            assert!(node.push_jobs.for_user(bob).is_empty());
            assert!(node.push_jobs.for_user(alice).is_empty());
            // Carol was offline at submit time, so her job rode the
            // message's batch into the outbox; Bob's and Alice's did not.
            assert_eq!(
                node.push_jobs.found(carol),
                [Found::Offline { durable: true }]
            );
            assert!(node.push_jobs.found(bob).is_empty());
            let outbox = node.log.outbox_scan(None, 100).unwrap();
            assert_eq!(outbox.len(), 1);
            assert_eq!((outbox[0].key.user.0, outbox[0].key.seq), (carol, ack.seq));

            // Bob's only device leaves: the next message wakes him too.
            drop(b);
            for _ in 0..200 {
                if open_ws(&metrics) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(open_ws(&metrics), 1, "only Alice is connected");
            a.post(2, Target::Channel(group), "second").await;
            a.ack().await;
            // The ack comes from Alice's core; Bob's may handle the
            // delivery a moment later.
            for _ in 0..200 {
                if node.push_jobs.for_user(bob).len() + node.push_jobs.for_user(carol).len() >= 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(node.push_jobs.for_user(bob).len(), 1);
            assert_eq!(node.push_jobs.for_user(carol).len(), 2);
            assert!(node.push_jobs.for_user(alice).is_empty());
            // Bob's core told the push side the moment his last device left.
            assert_eq!(
                node.push_jobs.found(bob),
                [Found::Offline { durable: true }]
            );
            assert_eq!(node.log.outbox_scan(None, 100).unwrap().len(), 3);
        });

        // The scrape shows frames by type, the fan-out sizes and the jobs.
        let mut text = String::new();
        confab_gateway::gateway::metrics::render(&mut text, &metrics, "test");
        let value = |line: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {line} in\n{text}"))
        };
        assert_eq!(value("confab_frames_in_total{type=\"send\"}"), 2);
        assert_eq!(value("confab_frames_in_total{type=\"hello\"}"), 2);
        assert_eq!(value("confab_frames_out_total{type=\"send_ack\"}"), 2);
        assert_eq!(value("confab_frames_out_total{type=\"message\"}"), 1);
        assert_eq!(value("confab_fanout_recipients_bucket{le=\"3\"}"), 2);
        assert_eq!(value("confab_fanout_recipients_bucket{le=\"2\"}"), 0);
        let jobs: u64 = text
            .lines()
            .filter(|l| l.starts_with("confab_push_jobs_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(jobs, 3);
    });
}

#[test]
fn wss_and_plain_ws_share_the_port_and_one_session_model() {
    both_backends(|io| {
        let certs = tempfile::tempdir().unwrap();
        let id = confab_gateway::tls::load_or_generate(None, certs.path()).unwrap();
        let config = confab_gateway::tls::websocket_config(&id).unwrap();
        let node = Node::start(io, |s| s.tls = Some(config.clone()));
        let (alice, bob) = (node.user("alice"), node.user("bob"));
        let wss = node.url.replace("ws://", "wss://");
        let metrics = node.gateway.as_ref().unwrap().metrics();
        block_on(async {
            let mut a = Client::connect_via(&node, &wss, Some(trusting(&id)), alice, 1, 0).await;
            a.replay().await;
            // A loopback client may still use plain ws:// on the same port.
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            let count = |t| -> u64 { metrics.iter().map(|m| m.connections(t)).sum() };
            assert_eq!(count(confab_gateway::gateway::Transport::Wss), 1);
            assert_eq!(count(confab_gateway::gateway::Transport::Ws), 1);
            // The largest message crosses many TLS records each way.
            let big = "é".repeat(100_000);
            a.post(1, Target::User(bob), &big).await;
            a.ack().await;
            assert_eq!(b.message().await.text, big);
            b.post(1, Target::User(alice), &big).await;
            b.ack().await;
            assert_eq!(a.message().await.text, big);
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
    let id = confab_gateway::tls::load_or_generate(None, certs.path()).unwrap();
    let config = confab_gateway::tls::websocket_config(&id).unwrap();
    let node = Node::start(IoMode::Epoll, |s| {
        s.tls = Some(config.clone());
        s.plain_ws = confab_gateway::gateway::PlainWs::Never;
    });
    let alice = node.user("alice");
    block_on(async {
        let mut req = node.url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403)
            }
            other => panic!("plain ws:// must be refused, got {:?}", other.map(|_| ())),
        }
        let wss = node.url.replace("ws://", "wss://");
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

fn quic_node(io: IoMode, id: &confab_gateway::tls::Identity) -> Node {
    let quic = confab_gateway::tls::quic_config(id).unwrap();
    Node::start(io, |s| {
        s.quic = Some(confab_gateway::gateway::quic::QuicSettings {
            addr: ([127, 0, 0, 1], 0).into(),
            tls: quic.clone(),
        })
    })
}

fn quic_client_config(id: &confab_gateway::tls::Identity) -> quinn::ClientConfig {
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
        node: &Node,
        id: &confab_gateway::tls::Identity,
        token: &str,
        device: u64,
        cursor: u64,
    ) -> Result<QuicClient, (Vec<Frame>, quinn::ConnectionError)> {
        let addr = node.gateway.as_ref().unwrap().quic_addr.unwrap();
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
        let first = tokio::time::timeout(Duration::from_secs(10), frames.recv())
            .await
            .expect("an answer to Hello");
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
        let id = confab_gateway::tls::load_or_generate(None, certs.path()).unwrap();
        let node = quic_node(io, &id);
        let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
        node.befriend(alice, bob);
        let group = node.group(alice, &[alice, bob, carol]);
        let outsider = node.group(carol, &[carol]);
        let metrics = node.gateway.as_ref().unwrap().metrics();
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
            let quic: u64 = metrics
                .iter()
                .map(|m| m.connections(confab_gateway::gateway::Transport::Quic))
                .sum();
            assert_eq!(quic, 2);

            // Bob -> Alice: both of her devices, in the same order.
            b.post(1, Target::User(alice), "to both devices").await;
            let ack = b.ack().await;
            let on_quic = a_quic.message().await;
            let on_ws = a_ws.message().await;
            assert_eq!(on_quic, on_ws);
            assert_eq!(
                (on_quic.seq, on_quic.text.as_str()),
                (ack.seq, "to both devices")
            );

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
    let id = confab_gateway::tls::load_or_generate(None, certs.path()).unwrap();
    let node = quic_node(IoMode::Epoll, &id);
    block_on(async {
        let (frames, err) = match QuicClient::connect(&node, &id, "not-a-token", 1, 0).await {
            Ok(_) => panic!("a bad token must not get a session"),
            Err(e) => e,
        };
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Unauthenticated)),
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
    let id = confab_gateway::tls::load_or_generate(None, certs.path()).unwrap();
    let node = quic_node(IoMode::Epoll, &id);
    let alice = node.user("alice");
    block_on(async {
        let addr = node.gateway.as_ref().unwrap().quic_addr.unwrap();
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
        let id = confab_gateway::tls::load_or_generate(None, certs.path()).unwrap();
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
