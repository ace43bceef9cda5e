//! `confab-loadgen idle`: many idle WebSocket connections, held cheaply,
//! and what they cost the server and this process.
//!
//! The SDK is what apps embed: a connection is a reader, a driver and a
//! writer task with their buffers, which costs the load generator more
//! per connection than the server spends, so a box cannot hold as many
//! connections as its server could. An idle device needs none of that: it
//! upgrades, says `Hello`, reads its `Welcome`, then only heartbeats and
//! discards what arrives. Here each device is that and no more: one small
//! task with a 256-byte stack buffer, no heap buffer once it is up.
//! Connections are spread over loopback source addresses so that
//! ephemeral ports never run out.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use confab_protocol::frame::{Frame, Heartbeat, Hello};
use confab_protocol::{binary, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use confab_types::{DeviceId, InboxSeq};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use crate::api::Api;

/// What `idle` is asked to do.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// The HTTP API.
    pub api: String,
    /// The server's Prometheus endpoint, for its memory and CPU.
    pub metrics: String,
    /// Connections to open (one user, one device each).
    pub connections: usize,
    /// How long to hold them once open, measuring CPU.
    pub hold: Duration,
    /// Seconds between a device's heartbeats.
    pub heartbeat: Duration,
    /// Connections per loopback source address.
    pub per_source_ip: usize,
    /// Handshakes (connect, upgrade, `Hello`, `Welcome`) in flight at once.
    pub in_flight: usize,
}

/// What the connections cost.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub connections: usize,
    /// Sessions that reached `Welcome`.
    pub opened: u64,
    /// Sessions still up at the end of the hold.
    pub up_after_hold: u64,
    /// Seconds to open them all (256 handshakes in flight at most).
    pub open_seconds: f64,
    /// Sessions opened per second.
    pub opened_per_s: f64,
    /// Server RSS before and after, and the growth per connection.
    pub server_rss_before: u64,
    /// After the connections settled.
    pub server_rss_after: u64,
    /// (after − before) ÷ opened.
    pub server_bytes_per_connection: f64,
    /// This process's RSS before and after, and per connection.
    pub loadgen_rss_before: u64,
    /// After the connections settled.
    pub loadgen_rss_after: u64,
    /// (after − before) ÷ opened.
    pub loadgen_bytes_per_connection: f64,
    /// Seconds the connections were held for the CPU figures.
    pub hold_seconds: f64,
    /// Server CPU while holding them, in cores.
    pub server_cores: f64,
    /// This process's CPU while holding them, in cores.
    pub loadgen_cores: f64,
}

/// Opens, holds and measures.
pub async fn run(opts: IdleOptions) -> Result<IdleReport> {
    crate::run::raise_fd_limit(opts.connections as u64 + 1024);
    let api = Api::new(&opts.api)?;
    let discovery = api
        .discovery()
        .await
        .with_context(|| format!("is a confab server listening at {}?", opts.api))?;
    let target = WsTarget::parse(&discovery.websocket_url).await?;
    let tag = crate::run::run_tag();
    let password = format!("loadgen password {tag}");
    let accounts = api
        .signup_many(opts.connections, &format!("lg{tag}i"), &password)
        .await
        .context("signing up the idle users")?;

    let server_before = api.server_process(&opts.metrics).await?;
    let own_before = own_rss()?;
    let up = Arc::new(AtomicU64::new(0));
    let request: Arc<[u8]> = target.upgrade_request().into();
    let started = Instant::now();
    let mut opened = 0;
    let mut failures = Vec::new();
    // A window of handshakes in flight, refilled as each one finishes
    // (oldest first), so that the rate measured is the server's and not
    // the pauses of a client that waits for a whole batch.
    let mut waits = VecDeque::with_capacity(opts.in_flight);
    let mut record = |r: Result<Result<()>, oneshot::error::RecvError>| match r {
        Ok(Ok(())) => opened += 1,
        Ok(Err(e)) => failures.push(e),
        Err(_) => failures.push(anyhow!("a device task ended without a word")),
    };
    for (n, account) in accounts.iter().enumerate() {
        if waits.len() >= opts.in_flight {
            if let Some(wait) = waits.pop_front() {
                record(wait.await);
            }
        }
        let local = source_ip(n, opts.per_source_ip);
        let (ready, wait) = oneshot::channel();
        tokio::spawn(device(
            target.addr,
            local,
            request.clone(),
            account.token.clone(),
            opts.heartbeat,
            ready,
            up.clone(),
        ));
        waits.push_back(wait);
    }
    for wait in waits {
        record(wait.await);
    }
    let open_seconds = started.elapsed().as_secs_f64();
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} connections failed; the first: {first:#}",
            failures.len(),
            opts.connections
        );
    }
    // Handshake garbage gone (the node trims its heap every 10 s),
    // heartbeats going.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let server_settled = api.server_process(&opts.metrics).await?;
    let own_after = own_rss()?;
    let own_cpu = crate::cpu::own_cpu_seconds();
    let held = Instant::now();
    tokio::time::sleep(opts.hold).await;
    let hold_seconds = held.elapsed().as_secs_f64();
    let server_held = api.server_process(&opts.metrics).await?;
    let own_cpu_after = crate::cpu::own_cpu_seconds();
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / opened.max(1) as f64;
    Ok(IdleReport {
        connections: opts.connections,
        opened,
        up_after_hold: up.load(Ordering::SeqCst),
        open_seconds,
        opened_per_s: opened as f64 / open_seconds,
        server_rss_before: server_before.rss_bytes,
        server_rss_after: server_settled.rss_bytes,
        server_bytes_per_connection: per(server_settled.rss_bytes, server_before.rss_bytes),
        loadgen_rss_before: own_before,
        loadgen_rss_after: own_after,
        loadgen_bytes_per_connection: per(own_after, own_before),
        hold_seconds,
        server_cores: (server_held.cpu_seconds - server_settled.cpu_seconds) / hold_seconds,
        loadgen_cores: match (own_cpu, own_cpu_after) {
            (Some(a), Some(b)) => (b - a) / hold_seconds,
            _ => f64::NAN,
        },
    })
}

impl IdleReport {
    /// Human-readable.
    pub fn render(&self) -> String {
        format!(
            "idle: {} of {} sessions opened in {:.1} s ({:.0} per second), {} still up after {:.0} s\n\
             server: {:.0} bytes of RSS per connection ({:.1} -> {:.1} MiB), {:.2} % of a core holding them\n\
             load generator: {:.0} bytes of RSS per connection ({:.1} -> {:.1} MiB), {:.2} % of a core\n",
            self.opened,
            self.connections,
            self.open_seconds,
            self.opened_per_s,
            self.up_after_hold,
            self.hold_seconds,
            self.server_bytes_per_connection,
            self.server_rss_before as f64 / 1048576.0,
            self.server_rss_after as f64 / 1048576.0,
            self.server_cores * 100.0,
            self.loadgen_bytes_per_connection,
            self.loadgen_rss_before as f64 / 1048576.0,
            self.loadgen_rss_after as f64 / 1048576.0,
            self.loadgen_cores * 100.0,
        )
    }
}

/// Where the WebSocket endpoint is.
struct WsTarget {
    addr: SocketAddr,
    authority: String,
    path: String,
}

impl WsTarget {
    async fn parse(url: &str) -> Result<WsTarget> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| {
            anyhow!("idle connections are plain ws://; the server offers {url} to this client")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let addr = tokio::net::lookup_host(authority)
            .await?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to nothing"))?;
        Ok(WsTarget {
            addr,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The upgrade request, the same for every device.
    fn upgrade_request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: confab.v1\r\n\r\n",
            self.path, self.authority
        )
        .into_bytes()
    }
}

/// The loopback source address of connection `n`: 127.0.0.1 for the
/// first `per_ip`, then 127.0.0.2, and so on.
fn source_ip(n: usize, per_ip: usize) -> Option<IpAddr> {
    let k = (n / per_ip.max(1)) as u32;
    (k > 0).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::LOCALHOST) + k)))
}

/// One idle device: connects, upgrades, says `Hello`, reports once its
/// `Welcome` (or why not) arrived, then heartbeats and discards until the
/// server closes.
async fn device(
    addr: SocketAddr,
    local: Option<IpAddr>,
    request: Arc<[u8]>,
    token: String,
    heartbeat: Duration,
    ready: oneshot::Sender<Result<()>>,
    up: Arc<AtomicU64>,
) {
    let mut sock = match open(addr, local, &request, token).await {
        Ok(sock) => sock,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    up.fetch_add(1, Ordering::SeqCst);
    let _ = ready.send(Ok(()));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut sink = [0u8; 256];
    let mut nonce = 0;
    loop {
        tokio::select! {
            read = sock.read(&mut sink) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tick.tick() => {
                nonce += 1;
                let frame = masked(&binary::encode_to_vec(&Frame::Heartbeat(Heartbeat { nonce })));
                if sock.write_all(&frame).await.is_err() {
                    break;
                }
            }
        }
    }
    up.fetch_sub(1, Ordering::SeqCst);
}

/// Connects and runs the session's opening; the socket once `Welcome` came.
async fn open(
    addr: SocketAddr,
    local: Option<IpAddr>,
    request: &[u8],
    token: String,
) -> Result<TcpStream> {
    let mut sock = match local {
        Some(ip) => {
            let s = TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(ip, 0))?;
            s.connect(addr).await
        }
        None => TcpStream::connect(addr).await,
    }
    .with_context(|| format!("connecting to {addr} from {local:?}"))?;
    sock.set_nodelay(true)?;
    sock.write_all(request).await?;
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 8192 || read_more(&mut sock, &mut buf).await? == 0 {
            bail!("no upgrade response");
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        let line =
            String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == b'\r').unwrap_or(0)])
                .into_owned();
        bail!("upgrade refused: {line}");
    }
    buf.drain(..head_end);
    let hello = Frame::Hello(Hello {
        min_version: MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        token,
        device_id: DeviceId(1),
        inbox_cursor: InboxSeq(0),
    });
    sock.write_all(&masked(&binary::encode_to_vec(&hello)))
        .await?;
    loop {
        while let Some((payload, used)) = server_frame(&buf)? {
            let frame = binary::decode_exact(payload, 1 << 20)
                .map_err(|e| anyhow!("undecodable frame from the server: {e}"))?;
            buf.drain(..used);
            match frame {
                Frame::Welcome(_) => return Ok(sock),
                Frame::Error(e) => bail!("Hello refused: {} ({})", e.message, e.code),
                Frame::Close(c) => bail!("closed before Welcome: {} ({})", c.message, c.code),
                _ => {}
            }
        }
        if read_more(&mut sock, &mut buf).await? == 0 {
            bail!("the server closed before Welcome");
        }
    }
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize> {
    let mut chunk = [0u8; 512];
    let n = sock.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// A client-to-server WebSocket binary message (masked, as clients must).
fn masked(payload: &[u8]) -> Vec<u8> {
    let mask: [u8; 4] = rand::random();
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x82);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The first whole server frame in `buf` (servers do not mask): its
/// payload and the bytes it took, or `None` if it is not all there yet.
fn server_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        bail!("the server masked a frame");
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into()?) as usize, 10),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some((&buf[header..header + len], header + len)))
}

/// This process's resident memory, in bytes.
fn own_rss() -> Result<u64> {
    let stat = procfs::process::Process::myself()?.stat()?;
    Ok(stat.rss * procfs::page_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_masked_and_parsed_at_every_length_form() {
        for len in [0, 125, 126, 70_000] {
            let payload = vec![7u8; len];
            let m = masked(&payload);
            assert_eq!(m[0], 0x82);
            assert_ne!(m[1] & 0x80, 0, "client frames must be masked");
            // A server frame of the same payload: the client's header
            // without the mask bit and key.
            let header_len = m.len() - len - 4;
            let mut server = m[..header_len].to_vec();
            server[1] &= 0x7f;
            server.extend_from_slice(&payload);
            let (got, used) = server_frame(&server).unwrap().unwrap();
            assert_eq!((got.len(), used), (len, server.len()));
            assert!(server_frame(&server[..server.len() - 1]).unwrap().is_none() || len == 0);
        }
    }

    #[test]
    fn source_addresses_spread_connections() {
        assert_eq!(source_ip(0, 20_000), None);
        assert_eq!(source_ip(19_999, 20_000), None);
        assert_eq!(
            source_ip(20_000, 20_000),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            source_ip(45_000, 20_000),
            Some("127.0.0.3".parse().unwrap())
        );
    }
}
