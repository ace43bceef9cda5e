//! QUIC versus WebSocket, measured against the real server.
//!
//! Criterion times functions; what users of the transports care about is
//! what a running `confab serve` costs them: server memory per idle
//! connection (the target is 100,000 idle QUIC connections per
//! node) and messages per second and latency with many clients sending.
//! So this bench is a small orchestrator. For each transport it starts a
//! fresh server process (this executable re-run as `__server`, which calls
//! the same `Node` as `confab serve`), drives it from a client
//! process (this executable as `__idle` or `__load`, speaking through the
//! client SDK as an app would), and reads the server's own resident memory
//! from `/proc`. Server and clients share this machine's cores, so the
//! figures are a comparison between transports on one box, not a node's
//! capacity. With 2,000 idle connections or more, the idle clients stop
//! after the first 500 sessions while the server's memory is read, so
//! that the growth from there to all of them (what a session costs) is
//! reported beside the growth from the empty server (which also holds
//! what the first sessions warm up: caches, allocator arenas).
//!
//! ```text
//! cargo bench --workspace --bench transport
//! CONFAB_BENCH_IDLE=20000 CONFAB_BENCH_LOAD_SECS=20 cargo bench --workspace --bench transport
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it runs a small smoke version
//! (20 idle connections, 2 pairs for 1 s) unless the knobs say otherwise.
//!
//! Knobs (environment): `CONFAB_BENCH_IDLE` idle connections per transport
//! (default 10000), `CONFAB_BENCH_PAIRS` sender/receiver pairs (default
//! 50), `CONFAB_BENCH_WINDOW` sends in flight per sender (default 8),
//! `CONFAB_BENCH_LOAD_SECS` measured seconds (default 10), `CONFAB_BENCH_SYNC`
//! the log's sync policy (default `none`, so that the transports and not the
//! disk are compared), `CONFAB_BENCH_TRANSPORTS` (default `quic,wss,ws`),
//! `CONFAB_BENCH_IDLE_SECS` how long the idle connections are watched for
//! the server's CPU, then again with a canary pair sending 100 msgs/s
//! (default 35, past one 30 s heartbeat period; 0 skips both).

use confab_types::{DeviceId, UserId};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confab::config::Config;
use confab_client::{Client, ClientConfig, ClientEvent, Target, TlsOptions};
use confab_directory::auth::TokenSigner;
use confab_directory::events::EventBus;
use confab_directory::store::Store;

/// Shared by the orchestrator (which signs the tokens) and the server.
const SECRET: &str = "the transport bench's token secret, 32+ bytes";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__server") => server(Path::new(&args[2])),
        Some("__idle") => idle_clients(&args[2], Path::new(&args[3]), Path::new(&args[4])),
        Some("__load") => load_clients(&args[2], Path::new(&args[3]), Path::new(&args[4])),
        // `cargo bench` passes `--bench`: measure. `cargo test --all-targets`
        // runs this executable without it, as criterion's test mode does:
        // then a small run only proves the bench still works end to end,
        // without spending CI minutes on 30,000 idle connections.
        _ => orchestrate(args.iter().any(|a| a == "--bench")),
    }
}

/// Ports for one server: picked free now, bound by the server soon after.
struct Ports {
    api: u16,
    ws: u16,
    quic: u16,
    metrics: u16,
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server's config, written where `__server` reads it.
fn write_config(dir: &Path, ports: &Ports, sync: &str) {
    let toml = format!(
        r#"data_dir = "{dir}"
[api]
addr = "127.0.0.1:{api}"
token_secret = "{SECRET}"
[gateway]
ws_addr = "127.0.0.1:{ws}"
quic_addr = "127.0.0.1:{quic}"
pin_cores = false
send_rate_per_s = 1000000
send_burst = 1000000
[metrics]
addr = "127.0.0.1:{metrics}"
[storage]
sync = "{sync}"
"#,
        dir = dir.display(),
        api = ports.api,
        ws = ports.ws,
        quic = ports.quic,
        metrics = ports.metrics,
    );
    std::fs::write(dir.join("bench.toml"), toml).unwrap();
}

/// `__server DIR`: the real server on DIR's config until killed.
fn server(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("bench.toml")).unwrap();
    let config: Config = toml::from_str(&text).expect("bench config");
    config.validate().expect("valid bench config");
    confab::Node::start(config)
        .and_then(confab::Node::run_until_signal)
        .expect("server");
}

/// Creates `n` users in the server's store before it starts and writes
/// `user_id token` lines for them.
fn make_users(dir: &Path, n: usize) -> PathBuf {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ids: Vec<u64> = rt.block_on(async {
        let store = Store::open(dir, None, EventBus::default()).await.unwrap();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("bench{i}");
            ids.push(
                store
                    .create_user(&name, &name, "no-password")
                    .await
                    .unwrap()
                    .id,
            );
        }
        ids
    });
    let signer = TokenSigner::new(SECRET.as_bytes());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut out = String::new();
    for id in ids {
        out.push_str(&format!("{id} {}\n", signer.issue(id, id, now, 24 * 3600)));
    }
    let path = dir.join("tokens.txt");
    std::fs::write(&path, out).unwrap();
    path
}

fn read_tokens(path: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, token) = l.split_once(' ').unwrap();
            (id.parse().unwrap(), token.to_owned())
        })
        .collect()
}

fn spawn_server(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("__server")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// A running server process, killed on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ports: Ports,
}

impl Server {
    fn start(users: usize, sync: &str) -> (Server, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports {
            api: free_tcp_port(),
            ws: free_tcp_port(),
            quic: free_udp_port(),
            metrics: free_tcp_port(),
        };
        write_config(dir.path(), &ports, sync);
        let tokens = make_users(dir.path(), users);
        let child = spawn_server(dir.path());
        let server = Server {
            child,
            dir: dir.path().to_owned(),
            _dir: dir,
            ports,
        };
        server.wait_ready();
        (server, tokens)
    }

    /// Kills the server and starts it again on the same ports and data, as
    /// a node restart does under its connected clients.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(&self.dir);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = ([127, 0, 0, 1], self.ports.api).into();
        loop {
            assert!(Instant::now() < deadline, "the server did not start");
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut reply);
                if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, transport: &str) -> String {
        match transport {
            "ws" => format!("ws://127.0.0.1:{}/v1/ws", self.ports.ws),
            "wss" => format!("wss://localhost:{}/v1/ws", self.ports.ws),
            "quic" => format!("quic://localhost:{}", self.ports.quic),
            other => panic!("unknown transport {other}"),
        }
    }

    fn cert(&self) -> PathBuf {
        let dir = self.dir.join("tls");
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "crt"))
            .expect("the server's generated certificate")
    }

    /// CPU seconds the server process has used, user and system.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th, in clock ticks (100 per second).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    /// The server process's resident memory, from the kernel.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client process, started with a role, reporting on stdout.
struct Clients {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Clients {
    fn start(
        role: &str,
        server: &Server,
        transport: &str,
        tokens: &Path,
        env: &[(&str, String)],
    ) -> Clients {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg(role)
            .arg(server.url(transport))
            .arg(server.cert())
            .arg(tokens)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Clients { child, out }
    }

    /// Sends the clients a request line (the idle clients answer `count`).
    fn ask(&mut self, request: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the clients print.
    fn line(&mut self) -> String {
        let mut line = String::new();
        assert!(
            self.out.read_line(&mut line).unwrap() > 0,
            "the clients exited"
        );
        line.trim().to_owned()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Pages of socket buffer memory the kernel has charged to TCP and UDP
/// (the `mem` fields of `/proc/net/sockstat`), machine-wide.
fn kernel_socket_pages() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("TCP:") || l.starts_with("UDP:"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "mem")?;
            fields.get(at + 1)?.parse::<u64>().ok()
        })
        .sum()
}

/// The slab caches a socket's kernel objects live in: the socket itself,
/// its inode, its open file, its epoll registration.
const SOCKET_SLABS: [&str; 7] = [
    "TCP",
    "UDP",
    "sock_inode_cache",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
    "tcp_bind_bucket",
];

/// Bytes of the objects in use in [`SOCKET_SLABS`], machine-wide;
/// `None` where `/proc/slabinfo` is not readable (it needs root).
fn socket_slab_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if !SOCKET_SLABS.contains(f.first()?) {
                    return None;
                }
                let active: u64 = f.get(1)?.parse().ok()?;
                let size: u64 = f.get(3)?.parse().ok()?;
                Some(active * size)
            })
            .sum(),
    )
}

fn orchestrate(measure: bool) {
    let (idle, pairs, secs) = if measure {
        (10_000, 50, 10)
    } else {
        (20, 2, 1)
    };
    let idle: usize = env_or("CONFAB_BENCH_IDLE", idle);
    let pairs: usize = env_or("CONFAB_BENCH_PAIRS", pairs);
    let window: usize = env_or("CONFAB_BENCH_WINDOW", 8);
    let secs: u64 = env_or("CONFAB_BENCH_LOAD_SECS", secs);
    let sync: String = env_or("CONFAB_BENCH_SYNC", "none".to_owned());
    let transports: String = env_or("CONFAB_BENCH_TRANSPORTS", "quic,wss,ws".to_owned());
    let idle_secs: u64 = env_or("CONFAB_BENCH_IDLE_SECS", if measure { 35 } else { 0 });
    println!(
        "transport bench: {} cores, {idle} idle connections, {pairs} pairs x {window} in flight for {secs} s, sync = {sync}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for transport in transports.split(',') {
        if idle > 0 {
            // Two users more than the idle ones: the canary pair.
            let (mut server, tokens) = Server::start(idle + 2, &sync);
            let all = std::fs::read_to_string(&tokens).unwrap();
            let lines: Vec<&str> = all.lines().collect();
            let (idle_tokens, canary_tokens) = (
                tokens.with_extension("idle"),
                tokens.with_extension("canary"),
            );
            std::fs::write(&idle_tokens, lines[..idle].join("\n")).unwrap();
            std::fs::write(&canary_tokens, lines[idle..].join("\n")).unwrap();
            // Settle: the runtimes, RocksDB and the pools are all up.
            std::thread::sleep(Duration::from_secs(2));
            let before = server.rss_bytes();
            let kernel_before = kernel_socket_pages();
            let slab_before = socket_slab_bytes();
            let first_n = if idle >= 2_000 { 500 } else { 0 };
            let started = Instant::now();
            let mut clients = Clients::start(
                "__idle",
                &server,
                transport,
                &idle_tokens,
                &[("CONFAB_BENCH_IDLE_FIRST", first_n.to_string())],
            );
            let first_line = clients.line();
            let paused = Instant::now();
            let first = if first_n > 0 {
                std::thread::sleep(Duration::from_secs(5));
                Some(server.rss_bytes())
            } else {
                None
            };
            let paused_for = paused.elapsed();
            assert_eq!(first_line, format!("first {first_n}"));
            clients.ask("more");
            let ready = clients.line();
            let connect_s = (started.elapsed() - paused_for).as_secs_f64();
            // Let handshake garbage go and heartbeats start.
            std::thread::sleep(Duration::from_secs(5));
            let after = server.rss_bytes();
            let kernel_after = kernel_socket_pages();
            let slab_after = socket_slab_bytes();
            let n: u64 = ready.strip_prefix("ready ").unwrap().parse().unwrap();
            println!(
                "idle/{transport}: {n} connections in {connect_s:.1} s; server RSS {:.1} -> {:.1} MiB: {} bytes per connection",
                before as f64 / 1048576.0,
                after as f64 / 1048576.0,
                after.saturating_sub(before) / n
            );
            if let Some(first) = first {
                println!(
                    "idle/{transport}: server RSS {:.1} MiB with the first {first_n}, {:.1} MiB with all {n}: {} bytes per connection beyond the first {first_n}",
                    first as f64 / 1048576.0,
                    after as f64 / 1048576.0,
                    after.saturating_sub(first) / (n - first_n as u64).max(1)
                );
            }
            // Socket buffers are the kernel's, not in any RSS. On loopback
            // both ends are on this box, so this is per client/server pair.
            let page = 4096;
            println!(
                "idle/{transport}: kernel socket buffers (TCP + UDP mem pages, /proc/net/sockstat) {} -> {} pages: {} bytes per connection, both ends",
                kernel_before,
                kernel_after,
                kernel_after.saturating_sub(kernel_before) * page / n
            );
            if idle_secs > 0 {
                // Heartbeats and liveness only: what holding them costs.
                let cpu = server.cpu_seconds();
                std::thread::sleep(Duration::from_secs(idle_secs));
                let cores = (server.cpu_seconds() - cpu) / idle_secs as f64;
                println!(
                    "idle/{transport}: server CPU holding {n} idle connections over {idle_secs} s: {:.2} % of a core",
                    cores * 100.0
                );
                // A pair chatting at 100 msgs/s among them.
                let env = [
                    ("CONFAB_BENCH_WINDOW", "1".to_owned()),
                    ("CONFAB_BENCH_LOAD_SECS", idle_secs.to_string()),
                    ("CONFAB_BENCH_PACE_US", "10000".to_owned()),
                ];
                let mut canary = Clients::start("__load", &server, transport, &canary_tokens, &env);
                println!(
                    "idle/{transport}: canary pair at 100 msgs/s: {}",
                    canary.line()
                );
                drop(canary);
            }
            // Every connection at once: the node restarts under them and
            // the SDK reconnects each with its backoff. TCP clients see the
            // restart at once; QUIC clients only when their idle timeout
            // runs out (the new process cannot reset the old connections),
            // so QUIC is left out.
            if idle_secs > 0 && transport != "quic" {
                let settled = server.rss_bytes();
                let restarted = Instant::now();
                server.restart();
                let mut dropped = false;
                let back = loop {
                    clients.ask("count");
                    let connected: u64 = clients.line().parse().unwrap();
                    dropped |= connected < n;
                    let waited = restarted.elapsed();
                    if (dropped && connected >= n)
                        || (!dropped && waited > Duration::from_secs(10))
                        || waited > Duration::from_secs(120)
                    {
                        break connected;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                let storm_s = restarted.elapsed().as_secs_f64();
                // Past the node's next heap trim (every 10 s), which gives
                // the storm's freed handshake state back.
                std::thread::sleep(Duration::from_secs(15));
                let after_storm = server.rss_bytes();
                println!(
                    "idle/{transport}: reconnect storm after a restart: {back} of {n} sessions back in {storm_s:.1} s; server RSS {:.1} MiB (before the restart {:.1})",
                    after_storm as f64 / 1048576.0,
                    settled as f64 / 1048576.0,
                );
            }
            if let (Some(b), Some(a)) = (slab_before, slab_after) {
                println!(
                    "idle/{transport}: kernel socket objects (slab: {}) {:.1} -> {:.1} MiB: {} bytes per connection, both ends",
                    SOCKET_SLABS.join(", "),
                    b as f64 / 1048576.0,
                    a as f64 / 1048576.0,
                    a.saturating_sub(b) / n
                );
            }
        }
        if pairs > 0 && secs > 0 {
            let (server, tokens) = Server::start(pairs * 2, &sync);
            let env = [
                ("CONFAB_BENCH_WINDOW", window.to_string()),
                ("CONFAB_BENCH_LOAD_SECS", secs.to_string()),
            ];
            let mut clients = Clients::start("__load", &server, transport, &tokens, &env);
            println!("load/{transport}: {}", clients.line());
        }
    }
}

fn client_config(url: &str, cert: &Path, user: u64, token: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url, token, DeviceId(user));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_pem_file(cert);
    config.connect_timeout = Duration::from_secs(60);
    config
}

/// Waits for a client's session.
async fn connected(events: &mut confab_client::Events) {
    loop {
        match events.recv().await {
            Some(ClientEvent::Connected(_)) => return,
            Some(ClientEvent::Refused { code, message }) => panic!("refused: {code:?} {message}"),
            Some(_) => {}
            None => panic!("client closed before connecting"),
        }
    }
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `__idle URL CERT TOKENS`: connects one device per user, prints
/// `ready N` once every session is up, then idles (heartbeats only) until
/// stdin closes, answering each `count` line on stdin with the number of
/// sessions up at that moment (they reconnect by themselves when the
/// server restarts).
fn idle_clients(url: &str, cert: &Path, tokens: &Path) {
    let users = read_tokens(tokens);
    let rt = client_runtime();
    let up = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut clients = Vec::with_capacity(users.len());
        // The first sessions, then (once the orchestrator has read the
        // server's memory) the rest: the growth between the two is what a
        // session costs, without what the server's first sessions warm up.
        let first: usize = env_or("CONFAB_BENCH_IDLE_FIRST", 0usize).min(users.len());
        // A few hundred handshakes at a time, as a reconnect storm would
        // arrive, rather than all at once.
        let chunks = users[..first].chunks(256).map(|c| (c, false));
        let mut chunks: Vec<_> = chunks.collect();
        chunks.push((&users[..0], true));
        chunks.extend(users[first..].chunks(256).map(|c| (c, false)));
        for (chunk, pause) in chunks {
            if pause {
                println!("first {first}");
                std::io::stdout().flush().unwrap();
                tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).unwrap();
                })
                .await
                .unwrap();
                continue;
            }
            let mut pending = Vec::new();
            for (user, token) in chunk {
                let (client, mut events) =
                    Client::connect(client_config(url, cert, *user, token)).unwrap();
                let up = up.clone();
                pending.push(tokio::spawn(async move {
                    connected(&mut events).await;
                    up.fetch_add(1, Ordering::SeqCst);
                    // Keep draining so the SDK never backs up, counting the
                    // session down and up again across reconnects.
                    // (`Disconnected` also reports each failed reconnect
                    // attempt, so only a session that was up counts down.)
                    tokio::spawn(async move {
                        let mut is_up = true;
                        while let Some(event) = events.recv().await {
                            match event {
                                ClientEvent::Connected(_) if !is_up => {
                                    is_up = true;
                                    up.fetch_add(1, Ordering::SeqCst);
                                }
                                ClientEvent::Disconnected { .. } if is_up => {
                                    is_up = false;
                                    up.fetch_sub(1, Ordering::SeqCst);
                                }
                                _ => {}
                            }
                        }
                    });
                }));
                clients.push(client);
            }
            for p in pending {
                p.await.unwrap();
            }
        }
        println!("ready {}", clients.len());
        std::io::stdout().flush().unwrap();
        let up = up.clone();
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
                if line.trim() == "count" {
                    println!("{}", up.load(Ordering::SeqCst));
                    std::io::stdout().flush().unwrap();
                }
                line.clear();
            }
        })
        .await
        .unwrap();
    });
}

/// Latencies in microseconds, one vector per kind, sorted at the end.
#[derive(Default)]
struct Samples {
    ack: Vec<u64>,
    delivery: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `__load URL CERT TOKENS`: users pair up (2i sends to 2i+1 in their DM),
/// each sender keeps WINDOW sends in flight for the measured seconds, and
/// every message carries its send time so the receiver can time delivery.
/// Prints one summary line.
fn load_clients(url: &str, cert: &Path, tokens: &Path) {
    let users = read_tokens(tokens);
    let window: usize = env_or("CONFAB_BENCH_WINDOW", 8);
    let secs: u64 = env_or("CONFAB_BENCH_LOAD_SECS", 10);
    // Open loop: each sender sends one message per this many µs (0: as
    // fast as acks come back).
    let pace_us: u64 = env_or("CONFAB_BENCH_PACE_US", 0);
    let rt = client_runtime();
    let epoch = Instant::now();
    let samples = Arc::new(Mutex::new(Samples::default()));
    let (acked, delivered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for pair in users.chunks(2) {
            let [(sender_id, sender_token), (receiver_id, receiver_token)] = pair else {
                continue;
            };
            let (sender, mut sender_events) =
                Client::connect(client_config(url, cert, *sender_id, sender_token)).unwrap();
            let (_receiver, mut receiver_events) =
                Client::connect(client_config(url, cert, *receiver_id, receiver_token)).unwrap();
            connected(&mut sender_events).await;
            connected(&mut receiver_events).await;
            tokio::spawn(async move { while sender_events.recv().await.is_some() {} });
            let (s, d, m) = (samples.clone(), delivered.clone(), measuring.clone());
            tasks.push(tokio::spawn(async move {
                let _keep = _receiver;
                let mut local = Vec::new();
                while let Some(event) = receiver_events.recv().await {
                    if let ClientEvent::Message(msg) = event {
                        let sent: u64 = msg.text[..20].parse().unwrap();
                        if m.load(Ordering::Relaxed) {
                            local.push((epoch.elapsed().as_nanos() as u64 - sent) / 1000);
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                        if local.len() >= 256 || !m.load(Ordering::Relaxed) {
                            s.lock().unwrap().delivery.append(&mut local);
                        }
                    }
                }
                s.lock().unwrap().delivery.append(&mut local);
            }));
            let receiver = *receiver_id;
            for _ in 0..window {
                let (sender, s, a, m, stop) = (
                    sender.clone(),
                    samples.clone(),
                    acked.clone(),
                    measuring.clone(),
                    stop.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut local = Vec::new();
                    let mut pace = (pace_us > 0).then(|| {
                        let mut i = tokio::time::interval(Duration::from_micros(pace_us));
                        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        i
                    });
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(pace) = &mut pace {
                            pace.tick().await;
                        }
                        let sent = epoch.elapsed().as_nanos() as u64;
                        // 100 bytes: the timestamp, then filler.
                        let text = format!("{sent:020}{}", "x".repeat(80));
                        sender.send(Target::User(UserId(receiver)), text).await.unwrap();
                        if m.load(Ordering::Relaxed) {
                            local.push((epoch.elapsed().as_nanos() as u64 - sent) / 1000);
                            a.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    s.lock().unwrap().ack.append(&mut local);
                }));
            }
        }
        // One second of warm-up, then the measured window.
        tokio::time::sleep(Duration::from_secs(1)).await;
        measuring.store(true, Ordering::SeqCst);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        measuring.store(false, Ordering::SeqCst);
        let elapsed = started.elapsed().as_secs_f64();
        let (acks, deliveries) = (acked.load(Ordering::SeqCst), delivered.load(Ordering::SeqCst));
        stop.store(true, Ordering::SeqCst);
        // Let the senders' last acks land, then report.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut s = std::mem::take(&mut *samples.lock().unwrap());
        s.ack.sort_unstable();
        s.delivery.sort_unstable();
        println!(
            "{:.0} msgs/s acked, {:.0} deliveries/s; ack p50 {} us p99 {} us; delivery p50 {} us p99 {} us ({} acks, {} deliveries sampled)",
            acks as f64 / elapsed,
            deliveries as f64 / elapsed,
            percentile(&s.ack, 0.50),
            percentile(&s.ack, 0.99),
            percentile(&s.delivery, 0.50),
            percentile(&s.delivery, 0.99),
            s.ack.len(),
            s.delivery.len(),
        );
        std::io::stdout().flush().unwrap();
        for t in tasks {
            t.abort();
        }
    });
}
