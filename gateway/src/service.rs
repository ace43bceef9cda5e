//! The gateway as a service of the node: it binds its listeners, starts
//! one thread per core (each with its own io_uring or epoll runtime, its
//! own `SO_REUSEPORT` sockets and its own shard), and stops when the
//! node's shutdown watch says so: each core stops accepting, closes its
//! sessions with `GOING_AWAY`, lets them drain, and drops its storage
//! producer, which lets the storage writers finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use confab_storage::writer::{Producer, Waker};
use confab_storage::MessageLog;
use tokio::sync::watch;

use crate::metrics::GatewayMetrics;
use crate::ports::{Authenticator, ClusterPort, Directory, PushSink};
use crate::settings::Settings;
use crate::shard::{self, Bus, Core, CoreIo, ShardConfig, ShardState};
use crate::transport::{listener, quic, runtime, IoMode};

/// The node's shutdown signal: `true` once the node is stopping.
pub type ShutdownWatch = watch::Receiver<bool>;

/// How long a missing inbox entry is waited for before it is read back.
const GAP_TIMEOUT: Duration = Duration::from_secs(1);

/// What the gateway is started with, besides its settings.
pub struct Parts {
    /// The cores' mailboxes, from [`make_bus`].
    pub bus: Bus,
    /// One storage producer per core, woken through the bus.
    pub producers: Vec<Producer>,
    /// The message log, for reads.
    pub log: Arc<dyn MessageLog>,
    /// The directory.
    pub directory: Arc<dyn Directory>,
    /// Token verification.
    pub auth: Arc<dyn Authenticator>,
    /// Push.
    pub push: Arc<dyn PushSink>,
    /// Where the gateway's metrics are registered.
    pub registry: prometheus::Registry,
    /// The other nodes, in a cluster.
    pub cluster: Option<Arc<dyn ClusterPort>>,
}

/// The mailboxes, and the wakers the storage writers call when a core has
/// completions (the same batched wake-up as a mailbox push).
pub fn make_bus(cores: usize) -> (Bus, Vec<Waker>) {
    let bus = Bus::new(cores);
    let wakers = (0..cores)
        .map(|i| {
            let bus = bus.clone();
            Arc::new(move || bus.mailbox(i).wake()) as Waker
        })
        .collect();
    (bus, wakers)
}

/// A running gateway.
pub struct Gateway {
    threads: Vec<JoinHandle<()>>,
    io: IoMode,
    bus: Bus,
    /// The bound WebSocket address (the real port when 0 was asked for).
    pub ws_addr: SocketAddr,
    /// The bound QUIC address, when QUIC is on.
    pub quic_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Binds the listeners and starts one thread per core; they run until
    /// `shutdown` turns true.
    pub fn start(
        settings: Settings,
        parts: Parts,
        shutdown: ShutdownWatch,
    ) -> std::io::Result<Gateway> {
        let cores = settings.cores;
        assert_eq!(parts.bus.cores(), cores);
        assert_eq!(parts.producers.len(), cores);
        let (io, why) = runtime::choose(settings.io);
        if let Some(why) = why {
            tracing::warn!(reason = %why, "io_uring unavailable; cores run on epoll");
        }
        // Every core binds the same address; with port 0 the first bind
        // picks the port and the others join it.
        let first = listener::reuseport_listener(settings.ws_addr)?;
        let ws_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..cores {
            listeners.push(listener::reuseport_listener(ws_addr)?);
        }
        let mut udp: Vec<Option<std::net::UdpSocket>> = (0..cores).map(|_| None).collect();
        let mut quic_addr = None;
        if let Some(q) = &settings.quic {
            let group = quic::reuseport_udp_group(q.addr, cores)?;
            quic_addr = Some(group[0].local_addr()?);
            for (slot, socket) in udp.iter_mut().zip(group) {
                *slot = Some(socket);
            }
        }
        let metrics =
            GatewayMetrics::new(&parts.registry, io.label()).map_err(std::io::Error::other)?;
        let peers = quic::routing::peers(cores);
        let bus = parts.bus.clone();
        let shared = Arc::new(CoreIo {
            settings: settings.clone(),
            io,
            bus: parts.bus,
            log: parts.log,
            directory: parts.directory,
            auth: parts.auth,
            push: parts.push,
            cluster: parts.cluster,
            metrics,
        });
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::with_capacity(cores);
        for (id, ((listener, producer), udp)) in listeners
            .into_iter()
            .zip(parts.producers)
            .zip(udp)
            .enumerate()
        {
            let (shared, peers, shutdown) = (shared.clone(), peers.clone(), shutdown.clone());
            let cpu = (settings.pin_cores && !cpus.is_empty()).then(|| cpus[id % cpus.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("confab-core-{id}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        core_affinity::set_for_current(cpu);
                    }
                    let result = runtime::block_on(io, move || {
                        core_main(id, shared, producer, listener, udp, peers, shutdown)
                    });
                    if let Err(e) = result {
                        tracing::error!(core = id, error = %e, "core runtime failed");
                    }
                })?;
            threads.push(thread);
        }
        tracing::info!(addr = %ws_addr, quic = ?quic_addr, cores, io = %io, "gateway listening");
        Ok(Gateway {
            threads,
            io,
            bus,
            ws_addr,
            quic_addr,
        })
    }

    /// The IO backend in use.
    pub fn io(&self) -> IoMode {
        self.io
    }

    /// The cores' mailboxes (directory invalidations go through them).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Waits for every core to finish (after shutdown was signalled).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn shard_config(s: &Settings, core: usize) -> ShardConfig {
    ShardConfig {
        core,
        cores: s.cores,
        heartbeat_interval: s.heartbeat_interval,
        presence_grace: s.presence_grace,
        send_rate_per_s: s.send_rate_per_s,
        send_burst: s.send_burst,
        typing_interval: s.typing_interval,
        outbound_limit_bytes: s.outbound_limit_bytes,
        gap_timeout: GAP_TIMEOUT,
    }
}

async fn core_main(
    id: usize,
    io: Arc<CoreIo>,
    producer: Producer,
    listener: std::net::TcpListener,
    udp: Option<std::net::UdpSocket>,
    peers: quic::routing::Peers,
    shutdown: ShutdownWatch,
) {
    let mut state = ShardState::new(
        shard_config(&io.settings, id),
        io.metrics.core(id),
        Instant::now(),
        confab_types::now_ms(),
    );
    if let Some(cluster) = &io.cluster {
        state.join_cluster(cluster.clone());
    }
    let core = Core::new(id, io.clone(), state, producer);
    if *shutdown.borrow() {
        return;
    }
    tokio::task::spawn_local(listener::accept_loop(
        core.clone(),
        listener,
        shutdown.clone(),
    ));
    let mut endpoint = None;
    if let (Some(socket), Some(q)) = (udp, &io.settings.quic) {
        let heartbeat = io.settings.heartbeat_interval;
        match quic::endpoint(id, io.bus.cores(), socket, q, heartbeat, &peers) {
            Ok(e) => {
                tokio::task::spawn_local(quic::accept_loop(
                    core.clone(),
                    e.clone(),
                    shutdown.clone(),
                ));
                endpoint = Some(e);
            }
            Err(e) => tracing::error!(core = id, error = %e, "QUIC endpoint failed"),
        }
    }
    shard::run(core.clone(), shutdown, || quic::transport_count() > 0).await;
    if let Some(e) = endpoint {
        e.close(
            quinn::VarInt::from(confab_protocol::ErrorCode::GoingAway.code()),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), e.wait_idle()).await;
    }
}
