//! The stateful gateway: one thread per core, each with its own runtime
//! (io_uring or epoll), its own `SO_REUSEPORT` WebSocket listener and its
//! own shard of users. Cores reach each other and the storage writer only
//! through lock-free queues ([`bus`], the writer's producers); see
//! docs/architecture.md for the topology.

pub mod bus;
pub mod conn;
pub mod core;
pub mod directory;
pub mod link;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod push_hook;
pub mod quic;
pub mod runtime;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use confab_protocol::fanout::{MessageFields, SharedMessage};
use confab_protocol::frame::{self, Limits};
use confab_storage::writer::{Producer, Waker};
use confab_storage::{MessageLog, StoredMessage, UserId};
use tokio::sync::Notify;

pub use self::core::CoreMsg;
use self::core::{Core, Delivery};
pub use self::directory::{Authenticator, Directory};
pub use self::metrics::{CoreMetrics, Transport};
pub use self::push_hook::{Found, NoPush, PushJob, PushSink};
pub use self::runtime::IoMode;

/// The gateway's tunables, fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// WebSocket listen address.
    pub ws_addr: SocketAddr,
    /// WebSocket path.
    pub ws_path: String,
    /// Number of cores (threads).
    pub cores: usize,
    /// Requested IO backend (epoll is used when io_uring is unavailable).
    pub io: IoMode,
    /// Pin core threads to CPUs where allowed.
    pub pin_cores: bool,
    /// Time allowed from TCP accept to a verified `Hello`.
    pub handshake_timeout: Duration,
    /// Heartbeat interval announced in `Welcome`; silence for three drops
    /// the device.
    pub heartbeat_interval: Duration,
    /// How long a user whose last device left still reads as online (a
    /// reconnect within it publishes nothing).
    pub presence_grace: Duration,
    /// Largest protocol frame.
    pub max_frame_bytes: usize,
    /// Longest text in characters.
    pub max_text_chars: usize,
    /// Most entries per batch.
    pub max_page: u32,
    /// Most users per presence request.
    pub max_presence_users: u32,
    /// Sustained sends per second per user.
    pub send_rate_per_s: u32,
    /// Sends allowed in a burst per user.
    pub send_burst: u32,
    /// Least time between two typing notices of a user in a channel.
    pub typing_interval: Duration,
    /// Bytes a connection may have queued before it is a slow consumer.
    pub outbound_limit_bytes: usize,
    /// TLS for `wss://` on the WebSocket port (told apart from plain HTTP
    /// by the first byte); `None` serves plain `ws://` only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Who may use plain `ws://`.
    pub plain_ws: PlainWs,
    /// The QUIC transport; `None` serves WebSocket only.
    pub quic: Option<quic::QuicSettings>,
}

/// Who may connect with plain `ws://` (unencrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlainWs {
    /// Clients on loopback addresses only (development on one machine).
    Loopback,
    /// Everyone (behind a TLS-terminating proxy, say).
    Always,
    /// No one: TLS is required.
    Never,
}

impl PlainWs {
    /// Whether a client at `ip` may connect without TLS.
    pub fn allows(self, ip: std::net::IpAddr) -> bool {
        match self {
            PlainWs::Always => true,
            PlainWs::Never => false,
            PlainWs::Loopback => match ip {
                std::net::IpAddr::V4(v4) => v4.is_loopback(),
                std::net::IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            },
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ws_addr: ([127, 0, 0, 1], 8081).into(),
            ws_path: "/v1/ws".into(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            io: IoMode::Uring,
            pin_cores: true,
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            presence_grace: Duration::from_secs(5),
            max_frame_bytes: confab_protocol::binary::DEFAULT_MAX_FRAME_BYTES,
            max_text_chars: confab_protocol::limits::MAX_TEXT_CHARS,
            max_page: 200,
            max_presence_users: 500,
            send_rate_per_s: 20,
            send_burst: 50,
            typing_interval: Duration::from_secs(2),
            outbound_limit_bytes: 4 << 20,
            tls: None,
            plain_ws: PlainWs::Loopback,
            quic: None,
        }
    }
}

impl Settings {
    /// The limits announced in `Welcome`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes as u32,
            max_text_chars: self.max_text_chars as u32,
            max_group_members: 100,
            max_page: self.max_page,
            max_presence_users: self.max_presence_users,
            send_rate_per_s: self.send_rate_per_s,
        }
    }
}

/// What every core shares (read-only, or internally synchronised).
pub struct Shared {
    /// Tunables.
    pub settings: Settings,
    /// The IO backend actually in use.
    pub io: IoMode,
    /// Core mailboxes.
    pub bus: bus::Bus<CoreMsg>,
    /// The message log, for reads (writes go through the producers).
    pub log: Arc<dyn MessageLog>,
    /// Relational facts.
    pub directory: Arc<dyn Directory>,
    /// Token verification.
    pub auth: Arc<dyn Authenticator>,
    /// Where push jobs for members with no connected device go.
    pub push: Arc<dyn PushSink>,
    /// Per-core counters, summed at scrape time.
    pub metrics: Vec<Arc<CoreMetrics>>,
    /// Stop accepting.
    pub stop: Arc<Notify>,
    stopping: AtomicBool,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The bound WebSocket address (the real port when 0 was asked for).
    pub ws_addr: SocketAddr,
    /// The bound QUIC address, when QUIC is on.
    pub quic_addr: Option<SocketAddr>,
}

pub use confab_types::now_ms;

/// A stored message as a wire `Message`.
pub fn stored_to_wire(inbox_seq: u64, m: StoredMessage) -> frame::Message {
    frame::Message {
        inbox_seq,
        channel_id: m.channel.0,
        seq: m.seq,
        sender_id: m.sender.0,
        sender_device: m.device.0,
        client_msg_id: m.client_msg_id,
        timestamp_ms: m.timestamp_ms,
        text: String::from_utf8(m.text)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The mailboxes, and the wakers the storage writer calls when a core has
/// completions (the same batched wake-up as a mailbox push).
pub fn make_bus(cores: usize) -> (bus::Bus<CoreMsg>, Vec<Waker>) {
    let bus = bus::Bus::new(cores);
    let wakers = (0..cores)
        .map(|i| {
            let mailbox = bus.mailbox(i).clone();
            Arc::new(move || mailbox.wake()) as Waker
        })
        .collect();
    (bus, wakers)
}

impl Gateway {
    /// Binds the listeners and starts one thread per core. `producers[i]`
    /// is core `i`'s storage queue; `bus` comes from [`make_bus`] with the
    /// same core count.
    pub fn start(
        settings: Settings,
        bus: bus::Bus<CoreMsg>,
        producers: Vec<Producer>,
        log: Arc<dyn MessageLog>,
        directory: Arc<dyn Directory>,
        auth: Arc<dyn Authenticator>,
        push: Arc<dyn PushSink>,
    ) -> std::io::Result<Gateway> {
        let cores = settings.cores;
        assert_eq!(bus.cores(), cores);
        assert_eq!(producers.len(), cores);
        let (io, why) = runtime::choose(settings.io);
        if let Some(why) = why {
            tracing::warn!(reason = %why, "io_uring unavailable; cores run on epoll");
        }
        // Every core binds the same address; with port 0 the first bind
        // picks the port and the others join it.
        let first = net::reuseport_listener(settings.ws_addr)?;
        let ws_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..cores {
            listeners.push(net::reuseport_listener(ws_addr)?);
        }
        // The same for QUIC's UDP port.
        let mut udp: Vec<Option<std::net::UdpSocket>> = (0..cores).map(|_| None).collect();
        let mut quic_addr = None;
        if let Some(q) = &settings.quic {
            let first = quic::reuseport_udp(q.addr)?;
            let addr = first.local_addr()?;
            udp[0] = Some(first);
            for slot in udp.iter_mut().skip(1) {
                *slot = Some(quic::reuseport_udp(addr)?);
            }
            quic_addr = Some(addr);
        }
        let peers = quic::routing::peers(cores);
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            io,
            bus,
            log,
            directory,
            auth,
            push,
            metrics: (0..cores)
                .map(|_| Arc::new(CoreMetrics::default()))
                .collect(),
            stop: Arc::new(Notify::new()),
            stopping: AtomicBool::new(false),
        });
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::with_capacity(cores);
        for (id, ((listener, producer), udp)) in
            listeners.into_iter().zip(producers).zip(udp).enumerate()
        {
            let shared = shared.clone();
            let peers = peers.clone();
            let cpu = (settings.pin_cores && !cpus.is_empty()).then(|| cpus[id % cpus.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("confab-core-{id}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        core_affinity::set_for_current(cpu);
                    }
                    let result = runtime::block_on(io, move || {
                        core_main(id, shared, producer, listener, udp, peers)
                    });
                    if let Err(e) = result {
                        tracing::error!(core = id, error = %e, "core runtime failed");
                    }
                })?;
            threads.push(thread);
        }
        tracing::info!(addr = %ws_addr, quic = ?quic_addr, cores, io = %io, "gateway listening");
        Ok(Gateway {
            shared,
            threads,
            ws_addr,
            quic_addr,
        })
    }

    /// The IO backend in use.
    pub fn io(&self) -> IoMode {
        self.shared.io
    }

    /// Per-core counters (for /metrics).
    pub fn metrics(&self) -> Vec<Arc<CoreMetrics>> {
        self.shared.metrics.clone()
    }

    /// A handle the API uses to tell cores about directory changes.
    pub fn bus(&self) -> bus::Bus<CoreMsg> {
        self.shared.bus.clone()
    }

    /// Stops accepting, closes every connection with "going away", and
    /// waits for the cores to finish.
    pub fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stop.notify_waiters();
        for i in 0..self.shared.bus.cores() {
            self.shared.bus.send(i, CoreMsg::Shutdown);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

async fn core_main(
    id: usize,
    shared: Arc<Shared>,
    producer: Producer,
    listener: std::net::TcpListener,
    udp: Option<std::net::UdpSocket>,
    peers: quic::routing::Peers,
) {
    let core = Core::new(id, shared.clone(), producer);
    if shared.stopping.load(Ordering::Acquire) {
        return;
    }
    let accept = tokio::task::spawn_local(conn::accept_loop(core.clone(), listener));
    let mut endpoint = None;
    let mut quic_accept = None;
    if let (Some(socket), Some(q)) = (udp, &shared.settings.quic) {
        let cores = shared.bus.cores();
        let heartbeat = shared.settings.heartbeat_interval;
        match quic::endpoint(id, cores, socket, q, heartbeat, &peers) {
            Ok(e) => {
                quic_accept = Some(tokio::task::spawn_local(quic::accept_loop(
                    core.clone(),
                    e.clone(),
                )));
                endpoint = Some(e);
            }
            Err(e) => tracing::error!(core = id, error = %e, "QUIC endpoint failed"),
        }
    }
    let repair = tokio::task::spawn_local(repair_gaps(core.clone()));
    core.clone().run().await;
    accept.abort();
    if let Some(a) = quic_accept {
        a.abort();
    }
    repair.abort();
    // Let connections flush their close frames; QUIC connections held here
    // still get their sessions' last frames from the other cores.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while (core.connection_count() > 0 || core.links.transport_count() > 0)
        && tokio::time::Instant::now() < deadline
    {
        core.drain_links();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(e) = endpoint {
        e.close(
            quinn::VarInt::from(confab_protocol::ErrorCode::GoingAway.code()),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), e.wait_idle()).await;
    }
}

/// An online user's release point waits for every earlier inbox entry. If
/// one has not arrived within a second (its producing core lost it, say),
/// read it back from storage so the stream moves on without a gap.
async fn repair_gaps(core: Rc<Core>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        for (user, next, first_ahead) in core.stalled(Duration::from_secs(1)) {
            let log = core.shared.log.clone();
            let want = (first_ahead - next) as usize;
            let page =
                tokio::task::spawn_blocking(move || log.inbox(UserId(user), next - 1, want)).await;
            let Ok(Ok(page)) = page else { continue };
            tracing::debug!(
                user,
                next,
                found = page.items.len(),
                "filled a delivery gap from storage"
            );
            let entries = page
                .items
                .into_iter()
                .map(|e| {
                    let m = &e.message;
                    let text = String::from_utf8_lossy(&m.text);
                    let d = Delivery {
                        message: SharedMessage::new(MessageFields {
                            channel_id: m.channel.0,
                            seq: m.seq,
                            sender_id: m.sender.0,
                            sender_device: m.device.0,
                            client_msg_id: m.client_msg_id,
                            timestamp_ms: m.timestamp_ms,
                            text: &text,
                        }),
                        sender: m.sender.0,
                        sender_device: m.device.0,
                        client_msg_id: m.client_msg_id,
                        channel: m.channel.0,
                        seq: m.seq,
                        timestamp_ms: m.timestamp_ms,
                        entries: vec![(user, e.inbox_seq)],
                        push_to: None,
                    };
                    (e.inbox_seq, Arc::new(d))
                })
                .collect();
            core.fill(user, entries);
        }
    }
}
