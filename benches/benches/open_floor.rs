//! The kernel's floor under opening a session: what a loopback TCP
//! connection and the four messages of a WebSocket session's opening cost,
//! with no confab code in the way.
//!
//! Opening a ws session is a TCP connect and accept, then the upgrade
//! request, the `101` response, `Hello` and `Welcome`, each one write and
//! one read. `confab-loadgen idle` measures what that costs end to end,
//! server and load generator each; this says how much of it no server and
//! no client design can avoid on this kernel. One thread owns both ends:
//! round after round it opens `N` sessions phase by phase (every client
//! connects, then the listener accepts every one, then every client writes
//! its request, ...), timing each phase on the thread's own CPU clock and
//! charging it to the side whose syscalls ran it, so the figures hold no
//! wake-up, no context switch and no event loop (and no `epoll_ctl`, which
//! a real event loop adds on both sides). On loopback the writer's syscall
//! also runs the receiver's half of the stack (softirq), and `connect` runs
//! the whole three-way handshake, so the client side carries more than it
//! would across a network. The sessions are closed after each round,
//! outside the clock.
//!
//! ```text
//! cargo bench -p confab-benches --bench open_floor
//! CONFAB_BENCH_SESSIONS=2000 CONFAB_BENCH_ROUNDS=20 cargo bench -p confab-benches --bench open_floor
//! ```
//!
//! Message sizes default to those of a binary-encoded opening against
//! `confab serve`: the load generator's 194-byte upgrade request, the
//! server's 164-byte `101`, a `Hello` of about 185 bytes (most of it the
//! 155-character access token) and a `Welcome` of about 50, WebSocket
//! headers included; `CONFAB_BENCH_SIZES` (`request,response,hello,welcome`)
//! overrides them. Under `cargo test` (no `--bench` argument) it opens a
//! few sessions to prove it still works.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

mod floor;
use floor::{env_or, thread_cpu_ns};

/// The four messages of an opening, in bytes.
struct Sizes {
    request: usize,
    response: usize,
    hello: usize,
    welcome: usize,
}

/// CPU per session, in nanoseconds, by side.
#[derive(Default)]
struct Floor {
    client_ns: u64,
    server_ns: u64,
    sessions: u64,
}

/// Opens `n` sessions phase by phase and adds their CPU to `floor`.
fn round(listener: &TcpListener, addr: SocketAddr, n: usize, sizes: &Sizes, floor: &mut Floor) {
    let request = vec![b'r'; sizes.request];
    let response = vec![b'h'; sizes.response];
    let hello = vec![0x82_u8; sizes.hello];
    let welcome = vec![0x82_u8; sizes.welcome];
    let mut buf = vec![
        0_u8;
        sizes
            .request
            .max(sizes.response)
            .max(sizes.hello)
            .max(sizes.welcome)
    ];

    let t0 = thread_cpu_ns();
    let mut clients: Vec<TcpStream> = (0..n)
        .map(|_| {
            let c = TcpStream::connect(addr).expect("connect loopback");
            c.set_nodelay(true).unwrap();
            c
        })
        .collect();
    let t1 = thread_cpu_ns();
    let mut servers: Vec<TcpStream> = (0..n)
        .map(|_| {
            let (s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    let t2 = thread_cpu_ns();
    for c in clients.iter_mut() {
        c.write_all(&request).expect("write request");
    }
    let t3 = thread_cpu_ns();
    for s in servers.iter_mut() {
        s.read_exact(&mut buf[..sizes.request])
            .expect("loopback read");
        s.write_all(&response).expect("write response");
    }
    let t4 = thread_cpu_ns();
    for c in clients.iter_mut() {
        c.read_exact(&mut buf[..sizes.response])
            .expect("loopback read");
        c.write_all(&hello).expect("write hello");
    }
    let t5 = thread_cpu_ns();
    for s in servers.iter_mut() {
        s.read_exact(&mut buf[..sizes.hello])
            .expect("loopback read");
        s.write_all(&welcome).expect("write welcome");
    }
    let t6 = thread_cpu_ns();
    for c in clients.iter_mut() {
        c.read_exact(&mut buf[..sizes.welcome])
            .expect("loopback read");
    }
    let t7 = thread_cpu_ns();
    floor.client_ns += (t1 - t0) + (t3 - t2) + (t5 - t4) + (t7 - t6);
    floor.server_ns += (t2 - t1) + (t4 - t3) + (t6 - t5);
    floor.sessions += n as u64;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_or("CONFAB_BENCH_SESSIONS", if full { 2000 } else { 8 });
    let rounds = env_or("CONFAB_BENCH_ROUNDS", if full { 20 } else { 2 });
    let sizes: Vec<usize> = std::env::var("CONFAB_BENCH_SIZES")
        .unwrap_or_else(|_| "194,164,185,50".into())
        .split(',')
        .map(|b| b.trim().parse().expect("CONFAB_BENCH_SIZES: numbers"))
        .collect();
    let [request, response, hello, welcome] = sizes[..] else {
        panic!("CONFAB_BENCH_SIZES: request,response,hello,welcome");
    };
    let sizes = Sizes {
        request,
        response,
        hello,
        welcome,
    };
    // A backlog that holds a whole round: every client connects before the
    // listener accepts any.
    let listener = {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind loopback");
        socket.listen(n as i32 + 64).expect("listen");
        TcpListener::from(socket)
    };
    let addr = listener.local_addr().unwrap();
    let warmup = (rounds / 10).max(1);
    let mut floor = Floor::default();
    for r in 0..warmup + rounds {
        let mut this = Floor::default();
        round(&listener, addr, n, &sizes, &mut this);
        if r >= warmup {
            floor.client_ns += this.client_ns;
            floor.server_ns += this.server_ns;
            floor.sessions += this.sessions;
        }
    }
    // Every session was opened and both sides' syscalls ran; a zero here
    // means the clock did not move.
    assert!(
        floor.client_ns > 0 && floor.server_ns > 0,
        "no CPU time measured"
    );
    let per = |ns: u64| ns as f64 / floor.sessions as f64 / 1000.0;
    println!(
        "open_floor: {n} sessions per round, {rounds} rounds, messages of {request}/{response}/{hello}/{welcome} bytes"
    );
    println!("client µs/session | server µs/session | both µs/session");
    println!(
        "{:.2} | {:.2} | {:.2}",
        per(floor.client_ns),
        per(floor.server_ns),
        per(floor.client_ns + floor.server_ns)
    );
}
