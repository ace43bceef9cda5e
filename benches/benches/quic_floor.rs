//! What quinn-proto itself holds for an idle server-side QUIC connection,
//! with no runtime, no socket and no confab task around it.
//!
//! The gateway's QUIC sessions cost far more server memory than its
//! WebSocket ones, and most of it is quinn's. quinn is a runtime wrapper
//! around quinn-proto, the sans-IO QUIC state machine; a server could
//! drive quinn-proto directly (as the gateway drives its own shard state)
//! and keep only what quinn-proto keeps. This bench says how much that is:
//! one thread runs a quinn-proto client endpoint and a server endpoint
//! with the gateway's own TLS and transport configuration, hands every
//! datagram from one to the other in memory, and opens `N` connections the
//! way a confab client does (handshake, one bidirectional stream, a
//! `Hello`-sized write, a `Welcome`-sized answer), then lets a few seconds
//! of simulated time pass so that acknowledgements, the handshake's keys
//! and its timers are done with. The client side is then dropped, and what
//! the heap still holds, less what it held before the first connection, is
//! the server's cost: its connections, the endpoint's tables, and the TLS
//! session cache's resumption tickets, all counted by a counting global
//! allocator (requested bytes, and the allocator's usable size, which is
//! closer to what RSS sees).
//!
//! ```text
//! cargo bench -p confab-benches --bench quic_floor
//! CONFAB_BENCH_SESSIONS=5000 cargo bench -p confab-benches --bench quic_floor
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it opens a few connections to
//! prove it still works.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use confab_gateway::transport::quic::transport_config;
use confab_gateway::transport::tls;
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig,
    Event, ServerConfig, StreamEvent, TransportConfig,
};

mod floor;
mod trusting;
use floor::env_or;

/// Counts the heap's live bytes and allocations.
struct Counting;

static REQUESTED: AtomicIsize = AtomicIsize::new(0);
static USABLE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
fn usable(ptr: *mut u8) -> isize {
    // SAFETY: `ptr` is a live block from the system allocator (glibc's
    // malloc), which is what `malloc_usable_size` takes.
    unsafe { libc::malloc_usable_size(ptr.cast()) as isize }
}

#[allow(unsafe_code)]
// SAFETY: every call forwards to the system allocator unchanged; the
// counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            REQUESTED.fetch_add(layout.size() as isize, Ordering::Relaxed);
            USABLE.fetch_add(usable(p), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        USABLE.fetch_sub(usable(ptr), Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = usable(ptr);
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            REQUESTED.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            USABLE.fetch_add(usable(p) - before, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap's live requested bytes, usable bytes and blocks.
fn heap() -> [isize; 3] {
    [
        REQUESTED.load(Ordering::Relaxed),
        USABLE.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
    ]
}

/// A confab client's `Hello` (most of it the access token) and the
/// server's `Welcome`, in bytes, as in the opening-floor bench.
const HELLO: usize = 185;
const WELCOME: usize = 50;

/// A datagram in flight: source, destination, bytes.
type Datagram = (SocketAddr, SocketAddr, BytesMut);

/// One end: an endpoint and its connections.
struct Side {
    endpoint: Endpoint,
    /// Boxed, as a server's slab would hold them: a map of 6 KB values
    /// would count its spare capacity as the connections' cost.
    conns: HashMap<ConnectionHandle, Box<Connection>>,
    /// Stream bytes each connection has read.
    read: HashMap<ConnectionHandle, usize>,
}

impl Side {
    fn new(endpoint: Endpoint) -> Side {
        Side {
            endpoint,
            conns: HashMap::new(),
            read: HashMap::new(),
        }
    }

    /// Passes the connections' endpoint events to the endpoint and back,
    /// and collects their datagrams, each from the address `source` gives
    /// its connection; says whether anything moved.
    fn transmit(
        &mut self,
        now: Instant,
        source: impl Fn(ConnectionHandle) -> SocketAddr,
        out: &mut Vec<Datagram>,
    ) -> bool {
        let mut buf = Vec::with_capacity(1500);
        let mut moved = false;
        for (&ch, conn) in self.conns.iter_mut() {
            while let Some(ev) = conn.poll_endpoint_events() {
                if let Some(back) = self.endpoint.handle_event(ch, ev) {
                    conn.handle_event(back);
                }
            }
            while let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
                out.push((source(ch), t.destination, BytesMut::from(&buf[..t.size])));
                buf.clear();
                moved = true;
            }
        }
        moved
    }

    /// Takes datagrams: the server's endpoint accepts new connections, and
    /// what it answers itself goes to `replies`.
    fn receive(&mut self, now: Instant, datagrams: Vec<Datagram>, replies: &mut Vec<Datagram>) {
        let mut buf = Vec::with_capacity(1500);
        for (from, to, data) in datagrams {
            match self.endpoint.handle(now, from, None, None, data, &mut buf) {
                Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                    if let Some(conn) = self.conns.get_mut(&ch) {
                        conn.handle_event(ev);
                    }
                }
                Some(DatagramEvent::NewConnection(incoming)) => {
                    match self.endpoint.accept(incoming, now, &mut buf, None) {
                        Ok((ch, conn)) => {
                            self.conns.insert(ch, Box::new(conn));
                        }
                        Err(e) => panic!("accept: {:?}", e.cause),
                    }
                }
                Some(DatagramEvent::Response(t)) => {
                    replies.push((to, t.destination, BytesMut::from(&buf[..t.size])));
                }
                None => {}
            }
            buf.clear();
        }
    }

    /// Runs each connection's application: the client writes `Hello` once
    /// connected, the server answers the first `HELLO` bytes it reads with
    /// `WELCOME` bytes; both read whatever arrives.
    fn application(&mut self, client: bool) {
        for (&ch, conn) in self.conns.iter_mut() {
            while let Some(ev) = conn.poll() {
                match ev {
                    Event::Connected if client => {
                        let id = conn.streams().open(Dir::Bi).expect("a stream");
                        let n = conn.send_stream(id).write(&[0x82; HELLO]).expect("write");
                        assert_eq!(n, HELLO);
                    }
                    Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) if !client => {
                        conn.streams().accept(Dir::Bi).expect("the client's stream");
                    }
                    Event::ConnectionLost { reason } => panic!("connection lost: {reason}"),
                    _ => {}
                }
            }
            // Streams are few (one per connection): read each that has data.
            let id = quinn_proto::StreamId::new(quinn_proto::Side::Client, Dir::Bi, 0);
            let mut got = 0;
            if let Ok(mut chunks) = conn.recv_stream(id).read(true) {
                while let Ok(Some(chunk)) = chunks.next(usize::MAX) {
                    got += chunk.bytes.len();
                }
                let _ = chunks.finalize();
            }
            if got > 0 {
                let total = self.read.entry(ch).or_insert(0);
                let first = *total < HELLO;
                *total += got;
                if !client && first && *total >= HELLO {
                    let n = conn.send_stream(id).write(&[0x82; WELCOME]).expect("write");
                    assert_eq!(n, WELCOME);
                }
            }
        }
    }

    /// Runs the timers due by `now`; the next one after, if any.
    fn timers(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for conn in self.conns.values_mut() {
            if let Some(t) = conn.poll_timeout() {
                if t <= now {
                    conn.handle_timeout(now);
                }
            }
            if let Some(t) = conn.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }
}

/// The address of client `i`: one per connection, spread over 127/8.
fn client_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 40_000 + (i >> 16) as u16)
}

/// Opens `n` connections and says what the server side holds for them:
/// [requested bytes, usable bytes, blocks] per connection.
fn measure(n: usize, settle: Duration) -> [f64; 3] {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = tls::load_or_generate(None, dir.path()).expect("a certificate");
    let server_addr: SocketAddr = "127.0.0.1:4433".parse().unwrap();
    let client_tls = trusting::client(&id, tls::QUIC_ALPN);
    let mut client_config = ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).expect("QUIC TLS"),
    ));
    // As the SDK's: QUIC keep-alives between the session's heartbeats.
    let mut client_transport = TransportConfig::default();
    client_transport.keep_alive_interval(Some(Duration::from_secs(10)));
    client_config.transport_config(Arc::new(client_transport));

    let mut now = Instant::now();
    let mut client = Side::new(Endpoint::new(
        Arc::new(EndpointConfig::default()),
        None,
        false,
        None,
    ));
    let crypto = QuicServerConfig::try_from(tls::quic_config(&id).expect("the QUIC TLS config"))
        .expect("QUIC TLS");
    let mut server_config = ServerConfig::with_crypto(Arc::new(crypto));
    server_config.transport_config(Arc::new(transport_config(Duration::from_secs(30))));
    server_config.migration(true);
    let mut server = Side::new(Endpoint::new(
        Arc::new(EndpointConfig::default()),
        Some(Arc::new(server_config)),
        false,
        None,
    ));
    // The session cache's table is the node's, whatever its connections.
    let before = heap();

    let mut addr_of = HashMap::new();
    for i in 0..n {
        let (ch, conn) = client
            .endpoint
            .connect(now, client_config.clone(), server_addr, "localhost")
            .expect("connect");
        client.conns.insert(ch, Box::new(conn));
        addr_of.insert(ch, client_addr(i));
    }
    let by_addr: HashMap<SocketAddr, ConnectionHandle> =
        addr_of.iter().map(|(&ch, &a)| (a, ch)).collect();

    let end = now + settle;
    loop {
        let mut out = Vec::new();
        // Client datagrams carry the client's own address as their source.
        let mut moved = client.transmit(now, |ch| addr_of[&ch], &mut out);
        let mut replies = Vec::new();
        server.receive(now, out, &mut replies);
        server.application(false);
        moved |= server.transmit(now, |_| server_addr, &mut replies);
        // Server datagrams go to the client whose address they name.
        for (_, to, data) in replies {
            let ch = by_addr[&to];
            let mut buf = Vec::new();
            if let Some(DatagramEvent::ConnectionEvent(h, ev)) =
                client
                    .endpoint
                    .handle(now, server_addr, None, None, data, &mut buf)
            {
                assert_eq!(h, ch, "a datagram for the connection at its address");
                client
                    .conns
                    .get_mut(&h)
                    .expect("the client")
                    .handle_event(ev);
            }
        }
        client.application(true);
        if moved {
            continue;
        }
        // Nothing in flight: the clock jumps to the next timer.
        let next = [client.timers(now), server.timers(now)]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= end => now = t.max(now),
            _ => break,
        }
    }
    let welcomed = client.read.values().filter(|&&b| b >= WELCOME).count();
    assert_eq!(welcomed, n, "every client read its Welcome");
    assert!(
        server.conns.values().all(|c| !c.is_handshaking()),
        "every handshake is done"
    );
    drop(client);
    let after = heap();
    let per = |i: usize| (after[i] - before[i]) as f64 / n as f64;
    let result = [per(0), per(1), per(2)];
    drop(server);
    result
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n = env_or("CONFAB_BENCH_SESSIONS", if benching { 2_000 } else { 20 });
    let settle = Duration::from_secs(env_or("CONFAB_BENCH_SETTLE_S", 5));
    println!(
        "size_of::<quinn_proto::Connection>() = {} bytes",
        std::mem::size_of::<Connection>()
    );
    let [requested, usable, blocks] = measure(n, settle);
    println!(
        "quic_floor: {n} idle server connections, {} s of simulated time after opening: \
         {requested:.0} bytes requested, {usable:.0} bytes usable, {blocks:.1} heap blocks per connection",
        settle.as_secs()
    );
    assert!(requested > 0.0, "an open connection holds memory");
}
