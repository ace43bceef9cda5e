//! What a stranger cannot do to a node's listeners from outside: hold
//! connections with half-sent or no requests, take every connection from
//! one address, or spend the descriptors the node needs. Clients bind
//! distinct loopback addresses (127.0.0.0/8) to play different peers.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use confab::config::Config;
use confab_admission::Admission;
use confab_gateway::IoMode;
use confab_storage::writer::WriterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::client::*;
use crate::common::*;

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// How long until the server closes `s` (reading and dropping whatever
/// it sends), up to `limit`; `None` if it is still open then.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// One `GET` on a fresh connection from `from`; the status code, or
/// `None` when the connection closed without an answer.
async fn get_status(from: [u8; 4], to: SocketAddr, path: &str) -> Option<u16> {
    let mut s = connect_from(from, to).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
}

fn metric(node: &TestNode, series: &str) -> u64 {
    node.node
        .metrics_text()
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn half_sent_slow_and_idle_api_requests_are_cut_off() {
    let node = TestNode::start_configured(
        IoMode::Epoll,
        |c: &mut Config| {
            c.api.header_timeout_secs = 1;
            c.api.request_timeout_secs = 2;
        },
        |_| {},
        WriterConfig::default(),
    );
    let api = node.node.api_addr;
    block_on(async {
        // Headers that never end.
        let mut slowloris = connect_from([127, 0, 0, 1], api).await;
        slowloris
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // A connection that never says anything.
        let mut silent = connect_from([127, 0, 0, 1], api).await;
        // A kept-alive connection gone idle after one answer.
        let mut idle = connect_from([127, 0, 0, 1], api).await;
        idle.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        for (what, s) in [
            ("half-sent header", &mut slowloris),
            ("silent", &mut silent),
            ("idle keep-alive", &mut idle),
        ] {
            let after = closed_within(s, Duration::from_secs(5)).await;
            let after = after.unwrap_or_else(|| panic!("{what}: still open after 5 s"));
            assert!(after < Duration::from_secs(4), "{what}: {after:?}");
        }
        // A body that never finishes is answered 408 when the request's
        // time is up, and the connection closes.
        let mut slow_body = connect_from([127, 0, 0, 1], api).await;
        slow_body
            .write_all(
                b"POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"username\"",
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(6), slow_body.read_to_end(&mut out))
            .await
            .expect("the connection closes")
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The API still answers.
        assert_eq!(get_status([127, 0, 0, 1], api, "/readyz").await, Some(200));
    });
}

#[test]
fn one_address_cannot_take_every_connection() {
    let node = TestNode::start_configured(
        IoMode::Epoll,
        |c: &mut Config| {
            c.api.max_connections_per_address = 4;
            c.api.exempt_loopback = false;
            c.gateway.max_connections_per_address = 4;
            c.gateway.exempt_loopback = false;
        },
        |_| {},
        WriterConfig::default(),
    );
    let (api, ws) = (node.node.api_addr, node.node.ws_addr);
    let alice = node.user("alice");
    block_on(async {
        const GREEDY: [u8; 4] = [127, 0, 0, 2];
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect_from(GREEDY, api).await);
            held.push(connect_from(GREEDY, ws).await);
        }
        // Let the server admit them before the next ones come.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // One more from the same address, to either port, is closed at
        // once.
        for port in [api, ws] {
            let mut extra = connect_from(GREEDY, port).await;
            let after = closed_within(&mut extra, Duration::from_secs(3)).await;
            assert!(after.is_some(), "{port}: the fifth connection stayed open");
        }
        assert_eq!(get_status(GREEDY, api, "/readyz").await, None);
        // Everyone else is served: an API request and a WebSocket session
        // from other addresses.
        assert_eq!(get_status([127, 0, 0, 3], api, "/readyz").await, Some(200));
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
        // The held connections are still open (within the header timeout).
        for s in &mut held {
            assert_eq!(closed_within(s, Duration::from_millis(50)).await, None);
        }
        assert!(
            metric(
                &node,
                "confab_connections_refused_total{listener=\"api\",reason=\"per_address\"}"
            ) >= 2
        );
        assert!(
            metric(
                &node,
                "confab_connections_refused_total{listener=\"ws\",reason=\"per_address\"}"
            ) >= 1
        );
        // Closing them gives the address its connections back.
        drop(held);
        let mut served = None;
        for _ in 0..50 {
            served = get_status(GREEDY, api, "/readyz").await;
            if served.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(served, Some(200));
    });
}

#[test]
fn the_connection_budget_refuses_at_accept_and_recovers() {
    // A budget of 6 connections for the whole node.
    let node = TestNode::start_with_writers(
        IoMode::Epoll,
        |s| s.admission = Admission::new(6),
        WriterConfig::default(),
    );
    let api = node.node.api_addr;
    block_on(async {
        let mut held = Vec::new();
        for i in 0..6u8 {
            held.push(connect_from([127, 0, 1, i], api).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Over the budget: closed at once, not left waiting in the backlog.
        let mut over = connect_from([127, 0, 2, 1], api).await;
        let after = closed_within(&mut over, Duration::from_secs(3)).await;
        assert!(after.is_some(), "a connection over the budget stayed open");
        assert!(
            metric(
                &node,
                "confab_connections_refused_total{listener=\"api\",reason=\"budget\"}"
            ) >= 1
        );
        drop(held);
        let mut served = None;
        for _ in 0..50 {
            served = get_status([127, 0, 2, 1], api, "/readyz").await;
            if served.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(served, Some(200));
    });
}

#[test]
fn silent_connections_from_one_address_cannot_take_the_handshake_slots() {
    let node = TestNode::start_configured(
        IoMode::Epoll,
        |c: &mut Config| c.gateway.exempt_loopback = false,
        |_| {},
        WriterConfig::default(),
    );
    let ws = node.node.ws_addr;
    let alice = node.user("alice");
    block_on(async {
        // More silent connections than the node's handshake slots allow
        // one address (8 per core, 2 cores).
        let mut silent = Vec::new();
        for _ in 0..40 {
            silent.push(connect_from([127, 0, 0, 4], ws).await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut still_open = 0;
        for s in &mut silent {
            if closed_within(s, Duration::from_millis(20)).await.is_none() {
                still_open += 1;
            }
        }
        assert!(still_open <= 16, "{still_open} silent handshakes held");
        assert!(
            metric(
                &node,
                "confab_connections_refused_total{listener=\"ws\",reason=\"handshakes_per_address\"}"
            ) >= 24
        );
        // Someone else's session starts at once.
        let mut a = Client::connect(&node, alice, 1, 0).await;
        a.replay().await;
    });
}

#[test]
fn a_client_that_stops_reading_its_responses_is_cut_off() {
    let node = TestNode::start_configured(
        IoMode::Epoll,
        |c: &mut Config| c.api.request_timeout_secs = 1,
        |_| {},
        WriterConfig::default(),
    );
    let api = node.node.api_addr;
    block_on(async {
        // How big one answer is.
        let mut one = connect_from([127, 0, 0, 1], api).await;
        one.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = Vec::new();
        one.read_to_end(&mut body).await.unwrap();
        // Far more answers than the socket buffers hold, never read.
        let n = (64 << 20) / body.len() + 1;
        let mut s = connect_from([127, 0, 0, 1], api).await;
        let req = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(n);
        let (mut rd, mut wr) = s.split();
        let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(&req)).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        // The server gave up on the stalled writes and closed: what the
        // buffers held arrives, then the end, well short of every answer.
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection is still open");
        assert!(
            got.len() < n * body.len() / 2,
            "{} of {} bytes",
            got.len(),
            n * body.len()
        );
    });
}
