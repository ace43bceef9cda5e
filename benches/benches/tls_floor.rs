//! What a TLS 1.3 handshake costs in CPU, client and server each, with no
//! socket, no event loop and no confab code around it.
//!
//! Opening a `wss://` session is a ws opening plus a TLS handshake, and on
//! one machine both ends' handshakes share its cores. This bench says how
//! much of a `wss://` opening's cost no server and no client design can
//! avoid with rustls: one thread runs `N` handshakes between a rustls
//! client and a rustls server with the gateway's own `wss://` configuration
//! (`tls::websocket_config`: TLS 1.3, the node's self-signed ECDSA
//! certificate, two session tickets per connection), handing their bytes
//! over in memory, and charges each call's thread CPU to the side that
//! made it. Each handshake is a full one (no resumption), as when a device
//! connects for the first time or its ticket expired. The bench uses
//! rustls' buffered connections; the gateway drives the unbuffered API,
//! which copies a little less.
//!
//! ```text
//! cargo bench -p confab-benches --bench tls_floor
//! CONFAB_BENCH_SESSIONS=5000 cargo bench -p confab-benches --bench tls_floor
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it runs a few handshakes to
//! prove it still works.

use std::io::{Read, Write};
use std::sync::Arc;

use confab_gateway::transport::tls;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};

mod floor;
mod trusting;
use floor::{env_or, thread_cpu_ns};

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n: u64 = env_or("CONFAB_BENCH_SESSIONS", if benching { 2_000 } else { 20 });
    let dir = tempfile::tempdir().expect("tempdir");
    let id = tls::load_or_generate(None, dir.path()).expect("a certificate");
    let server_config = tls::websocket_config(&id).expect("the wss TLS config");
    let mut client_config = trusting::client(&id, b"http/1.1");
    // Every handshake a full one.
    client_config.resumption = rustls::client::Resumption::disabled();
    let client_config = Arc::new(client_config);
    let name = ServerName::try_from("localhost").expect("a server name");

    let (mut client_ns, mut server_ns) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(16 * 1024);
    for _ in 0..n {
        let t = thread_cpu_ns();
        let mut client =
            ClientConnection::new(client_config.clone(), name.clone()).expect("a client");
        client_ns += thread_cpu_ns() - t;
        let t = thread_cpu_ns();
        let mut server = ServerConnection::new(server_config.clone()).expect("a server");
        server_ns += thread_cpu_ns() - t;
        // Until both are done and the server's tickets have reached the
        // client (the gateway hands over only after sending them).
        loop {
            let t = thread_cpu_ns();
            buf.clear();
            while client.wants_write() {
                client.write_tls(&mut buf).expect("client write");
            }
            client_ns += thread_cpu_ns() - t;
            let mut moved = !buf.is_empty();
            let t = thread_cpu_ns();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).expect("server read");
                server.process_new_packets().expect("server handshake");
            }
            buf.clear();
            while server.wants_write() {
                server.write_tls(&mut buf).expect("server write");
            }
            server_ns += thread_cpu_ns() - t;
            moved |= !buf.is_empty();
            let t = thread_cpu_ns();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets().expect("client handshake");
            }
            client_ns += thread_cpu_ns() - t;
            if !moved && !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        // An application byte proves the keys agree.
        client.writer().write_all(b"c").expect("client plaintext");
        let mut wire = Vec::new();
        client.write_tls(&mut wire).expect("client write");
        server.read_tls(&mut &wire[..]).expect("server read");
        server.process_new_packets().expect("server record");
        let mut got = [0u8; 1];
        server
            .reader()
            .read_exact(&mut got)
            .expect("the client's byte");
        assert_eq!(&got, b"c");
    }
    let per = |ns: u64| ns as f64 / n as f64 / 1e3;
    println!(
        "tls_floor: {n} full TLS 1.3 handshakes (the gateway's wss config): client {:.1} µs, server {:.1} µs, both {:.1} µs per handshake",
        per(client_ns),
        per(server_ns),
        per(client_ns + server_ns)
    );
    assert!(server_ns > 0, "a handshake costs the server CPU");
}
