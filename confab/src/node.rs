//! A node: every role of confab in one process, started from one
//! [`Config`] and stopped by one shutdown watch. `confab serve`, the
//! integration tests and the benches all start a node here, so what they
//! run is what the binary runs.
//!
//! The storage writers and the gateway's cores run on threads of their
//! own; everything else (the HTTP API, the metrics endpoint, the push
//! worker, the directory's pool) runs on the node's runtime thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_admission::Admission;
use confab_api::serve::HttpLimits;
use confab_api::{ApiSettings, ApiState};
use confab_cluster::ReplicatedLog;
use confab_directory::auth::{TokenSigner, TokenVerifier};
use confab_directory::store::Store;
use confab_gateway::ports::{NoPush, PushSink};
use confab_gateway::transport::{quic::QuicSettings, tls};
use confab_gateway::{make_bus, Gateway, IoMode, Parts, Settings};
use confab_storage::writer::{WriterConfig, WriterPool};
use confab_storage::{LogConfig, ManualClock, MessageLog, RocksLog};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::admin::AdminSocket;
use crate::config::Config;
use crate::metrics::{self, Readiness};
use crate::service::{Service, ShutdownWatch};
use crate::services::{
    EventForwarder, GatewayService, HttpService, PushService, RevocationSync, StorageService,
};
use crate::wiring::{PushAdapter, StoreDirectory, TokenAuth};

type GatewayTweak = Box<dyn FnOnce(&mut Settings) + Send>;

/// How a node is started: its config, plus what tests may change.
pub struct NodeBuilder {
    config: Config,
    gateway: Option<GatewayTweak>,
    push: Option<Arc<dyn PushSink>>,
    writers: Option<WriterConfig>,
}

impl NodeBuilder {
    /// Changes the gateway's settings after they are made from the config
    /// (limits the config file does not expose).
    pub fn gateway(mut self, tweak: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.gateway = Some(Box::new(tweak));
        self
    }

    /// Sends push jobs to `sink` instead of the push service.
    pub fn push_sink(mut self, sink: Arc<dyn PushSink>) -> Self {
        self.push = Some(sink);
        self
    }

    /// The storage writers' queue sizes.
    pub fn writers(mut self, config: WriterConfig) -> Self {
        self.writers = Some(config);
        self
    }

    /// Starts every role; returns once they all serve.
    pub fn start(self) -> anyhow::Result<Node> {
        Node::start_with(self)
    }
}

/// A running node.
pub struct Node {
    shutdown: Arc<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    runtime: tokio::runtime::Handle,
    registry: Registry,
    store: Store,
    log: Arc<RocksLog>,
    api: ApiState,
    /// The HTTP API's address.
    pub api_addr: SocketAddr,
    /// The metrics endpoint's address.
    pub metrics_addr: SocketAddr,
    /// The WebSocket address (`ws://` and `wss://`).
    pub ws_addr: SocketAddr,
    /// The QUIC address.
    pub quic_addr: Option<SocketAddr>,
    /// The IO backend the gateway's cores run on.
    pub io: IoMode,
    /// The TLS certificate and key of `wss://` and QUIC (generated when
    /// none is configured); clients of a self-signed node trust its chain.
    pub tls: tls::Identity,
}

/// What the node's runtime thread hands back once everything serves.
struct Started {
    runtime: tokio::runtime::Handle,
    store: Store,
    api: ApiState,
    api_addr: SocketAddr,
    metrics_addr: SocketAddr,
    ws_addr: SocketAddr,
    quic_addr: Option<SocketAddr>,
    io: IoMode,
}

impl Node {
    /// A node of `config` (validated by the caller).
    pub fn builder(config: Config) -> NodeBuilder {
        NodeBuilder {
            config,
            gateway: None,
            push: None,
            writers: None,
        }
    }

    /// Starts a node of `config` as `confab serve` does.
    pub fn start(config: Config) -> anyhow::Result<Node> {
        Node::builder(config).start()
    }

    fn start_with(b: NodeBuilder) -> anyhow::Result<Node> {
        let config = b.config;
        raise_open_file_limit();
        crate::heap_trim::start(crate::heap_trim::INTERVAL);
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let log_dir = config.data_dir.join("log");
        let opened = Instant::now();
        let fresh = !log_dir.exists();
        // In a cluster the store's clock is the replicated log's: every
        // node stores a message with the time its record carries.
        let clock = Arc::new(ManualClock::new(confab_types::now_ms()));
        let mut log_config = LogConfig {
            sync_policy: config.storage.sync,
            ..LogConfig::default()
        };
        if config.cluster.enabled() {
            log_config.clock = clock.clone();
        }
        if fresh && config.cluster.enabled() {
            // Before the store exists: one killed while this node waits
            // for JetStream is still a cluster node's when it restarts.
            use confab_cluster::log::position::{Position, PositionFile};
            PositionFile::new(&config.data_dir)
                .save(Position::UNBOUND)
                .context("writing the cluster log position")?;
        }
        let log = RocksLog::open(&log_dir, log_config)
            .with_context(|| format!("opening message log {}", log_dir.display()))?;
        info!(path = %log_dir.display(), sync = %config.storage.sync,
              elapsed_ms = opened.elapsed().as_millis() as u64, "message log open");
        let log = Arc::new(log);
        let replicated = if config.cluster.enabled() {
            let node_id = crate::cluster::node_id(&config);
            Some(
                confab_cluster::open_log(
                    &config.cluster,
                    &node_id,
                    log.clone(),
                    clock,
                    &config.data_dir,
                    fresh,
                )
                .context("joining the cluster's replicated log")?,
            )
        } else {
            None
        };
        let shared_log: Arc<dyn MessageLog> = match &replicated {
            Some(r) => r.clone(),
            None => log.clone(),
        };

        let identity = tls::load_or_generate(
            config
                .tls
                .cert_path
                .as_deref()
                .zip(config.tls.key_path.as_deref()),
            &config.data_dir,
        )
        .context("setting up TLS")?;
        if identity.generated {
            info!(cert = %identity.cert_path.display(),
                  "generated a self-signed TLS certificate (for localhost); clients must trust this file, \
                   or set tls.cert_path and tls.key_path");
        }
        let mut settings = config.gateway.settings();
        // After the open-file limit was raised: the budget is what it
        // allows, less a reserve.
        settings.admission = Admission::from_open_file_limit();
        settings.tls = Some(tls::websocket_config(&identity).context("TLS for wss://")?);
        settings.quic = Some(QuicSettings {
            addr: config.gateway.quic_addr,
            tls: tls::quic_config(&identity).context("TLS for QUIC")?,
            reset_key: Some(Arc::new(
                confab_gateway::transport::quic::reset_key::load_or_create(&config.data_dir)
                    .context("the QUIC stateless reset key")?,
            )),
        });
        if let Some(tweak) = b.gateway {
            tweak(&mut settings);
        }

        let registry = metrics::registry().context("metrics registry")?;
        let (bus, wakers) = make_bus(settings.cores);
        let writers = b.writers.unwrap_or(WriterConfig {
            writers: config.storage.writers,
            ..WriterConfig::default()
        });
        let (storage, producers): (Box<dyn Service>, _) = match &replicated {
            Some(r) => {
                let (pool, producers) = WriterPool::start(r.clone(), writers, wakers)
                    .context("starting storage writers")?;
                pool.stats()
                    .register(&registry)
                    .context("registering storage metrics")?;
                (Box::new(StorageService(pool)), producers)
            }
            None => {
                let (pool, producers) = WriterPool::start(log.clone(), writers, wakers)
                    .context("starting storage writers")?;
                pool.stats()
                    .register(&registry)
                    .context("registering storage metrics")?;
                (Box::new(StorageService(pool)), producers)
            }
        };
        settings
            .admission
            .register(&registry)
            .context("registering admission metrics")?;
        info!(
            connections = settings.admission.budget(),
            "connection budget (the open-file limit less a reserve)"
        );

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shutdown = Arc::new(shutdown_tx);
        let ready = Readiness::default();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let web_client = config.api.web_client;
        let roles = Roles {
            config,
            settings,
            push: b.push,
            log: log.clone(),
            shared_log,
            replicated,
            registry: registry.clone(),
            ready: ready.clone(),
        };
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("confab-node".into())
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the node runtime")?;
                runtime.block_on(async move {
                    let mut services: Vec<Box<dyn Service>> = vec![storage];
                    match roles
                        .start(bus, producers, shutdown_rx.clone(), &mut services)
                        .await
                    {
                        Ok(started) => {
                            let _ = started_tx.send(Ok(started));
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            let _ = stop.send(true);
                        }
                    }
                    run_all(services, stop, shutdown_rx, ready).await
                })
            })
            .context("starting the node thread")?;
        let started = match started_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                return Err(match thread.join() {
                    Ok(Err(e)) => e,
                    _ => anyhow::anyhow!("the node thread ended while starting"),
                })
            }
        };
        info!(api = %started.api_addr, metrics = %started.metrics_addr, ws = %started.ws_addr,
              quic = ?started.quic_addr, "confab serving");
        if web_client {
            info!("web client: http://{}/", started.api_addr);
        }
        Ok(Node {
            shutdown,
            thread: Some(thread),
            runtime: started.runtime,
            registry,
            store: started.store,
            log,
            api: started.api,
            api_addr: started.api_addr,
            metrics_addr: started.metrics_addr,
            ws_addr: started.ws_addr,
            quic_addr: started.quic_addr,
            io: started.io,
            tls: identity,
        })
    }

    /// The node's runtime (the directory's pool lives on it).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The directory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The message log.
    pub fn log(&self) -> &Arc<RocksLog> {
        &self.log
    }

    /// Signs access tokens with the node's key.
    pub fn signer(&self) -> &TokenSigner {
        self.api.signer()
    }

    /// Verifies access tokens (clones share its revocation set).
    pub fn verifier(&self) -> &TokenVerifier {
        self.api.verifier()
    }

    /// Every metric, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        metrics::render(&self.registry)
    }

    /// Stops the node on SIGTERM or SIGINT (a second SIGINT exits at once)
    /// and waits for it to finish.
    pub fn run_until_signal(self) -> anyhow::Result<()> {
        let stop = self.shutdown.clone();
        self.runtime.spawn(async move {
            if let Err(e) = shutdown_signal().await {
                error!("{e:#}");
            }
            info!("shutdown requested: draining connections");
            let _ = stop.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                warn!("second interrupt: exiting now");
                std::process::exit(130);
            }
        });
        self.wait()
    }

    /// Stops every service (the gateway closes its sessions with
    /// GOING_AWAY and drains, the storage writers commit what they
    /// accepted) and waits for them.
    pub fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.wait()
    }

    fn wait(mut self) -> anyhow::Result<()> {
        let thread = self.thread.take().expect("joined once");
        let result = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the node thread panicked"))?;
        info!("shutdown complete");
        result
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.shutdown.send(true);
            let _ = thread.join();
        }
    }
}

/// What the roles are started from, on the node's runtime.
struct Roles {
    config: Config,
    settings: Settings,
    push: Option<Arc<dyn PushSink>>,
    /// The local store (backups go through it).
    log: Arc<RocksLog>,
    /// What the roles read and write: the local store, or the cluster's
    /// replicated log over it.
    shared_log: Arc<dyn MessageLog>,
    replicated: Option<Arc<ReplicatedLog<RocksLog>>>,
    registry: Registry,
    ready: Readiness,
}

impl Roles {
    async fn start(
        self,
        bus: confab_gateway::shard::Bus,
        producers: Vec<confab_storage::writer::Producer>,
        shutdown: ShutdownWatch,
        services: &mut Vec<Box<dyn Service>>,
    ) -> anyhow::Result<Started> {
        let Roles {
            config,
            settings,
            push,
            log,
            shared_log,
            replicated,
            registry,
            ready,
        } = self;
        let api_settings = ApiSettings::from_config(
            &config.api,
            config.gateway.ws_addr,
            config.gateway.quic_addr,
            config.gateway.plain_ws,
        );
        let api = ApiState::open(
            &config.api,
            &config.data_dir,
            api_settings,
            shared_log.clone(),
        )
        .await
        .context("starting the HTTP API")?;
        info!(backend = ?api.store().backend(), "directory store open");

        let push_sink: Arc<dyn PushSink> = match push {
            Some(sink) => sink,
            None if config.push.enabled => {
                let providers =
                    confab_push::providers(&config.push).context("setting up push providers")?;
                if providers.is_empty() {
                    info!("push service off (no provider in [push])");
                    Arc::new(NoPush)
                } else {
                    let names: Vec<&str> = providers.values().map(|p| p.name()).collect();
                    info!(providers = ?names, preview = config.push.include_preview, "push service on");
                    let (service, worker) = confab_push::start(
                        &config.push,
                        shared_log.clone(),
                        api.store().clone(),
                        providers,
                        &registry,
                        shutdown.clone(),
                    )
                    .context("starting the push service")?;
                    services.push(Box::new(PushService(worker)));
                    Arc::new(PushAdapter(service))
                }
            }
            None => {
                info!("push service off (push.enabled = false)");
                Arc::new(NoPush)
            }
        };

        let ws_addr = settings.ws_addr;
        let admission = settings.admission.clone();
        let (relay_port, relay) = if config.cluster.enabled() {
            let (port, relay) = crate::cluster_relay::relay(bus.clone(), config.cluster.ttl());
            (Some(port), Some(relay))
        } else {
            (None, None)
        };
        let gateway = Gateway::start(
            settings,
            Parts {
                bus: bus.clone(),
                producers,
                log: shared_log.clone(),
                directory: Arc::new(StoreDirectory::new(
                    api.store().clone(),
                    tokio::runtime::Handle::current(),
                )),
                auth: Arc::new(TokenAuth(api.verifier().clone())),
                push: push_sink,
                registry: registry.clone(),
                cluster: relay_port.map(|p| p as Arc<dyn confab_gateway::ports::ClusterPort>),
            },
            shutdown.clone(),
        )
        .with_context(|| format!("starting the gateway on {ws_addr}"))?;
        let (ws_addr, quic_addr, io) = (gateway.ws_addr, gateway.quic_addr, gateway.io());
        api.gateway_bound(
            ws_addr,
            quic_addr.filter(|_| config.api.public_quic_addr.is_none()),
        );
        services.push(Box::new(GatewayService(gateway)));
        if let Some(replicated) = &replicated {
            let bus = bus.clone();
            replicated.on_foreign(Box::new(move |message, inbox| {
                confab_gateway::shard::deliver_stored(&bus, message, inbox)
            }));
        }
        let cluster_bus = bus.clone();
        services.push(Box::new(EventForwarder {
            events: api.store().events().clone(),
            bus,
        }));

        let api_listener = TcpListener::bind(config.api.addr)
            .await
            .with_context(|| format!("binding api.addr {}", config.api.addr))?;
        let metrics_listener = TcpListener::bind(config.metrics.addr)
            .await
            .with_context(|| format!("binding metrics.addr {}", config.metrics.addr))?;
        let (api_addr, metrics_addr) = (api_listener.local_addr()?, metrics_listener.local_addr()?);
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(config.api.header_timeout_secs),
            request_timeout: Duration::from_secs(config.api.request_timeout_secs),
        };
        services.push(Box::new(HttpService {
            name: "api",
            listener: api_listener,
            router: {
                let router = metrics::health_routes(ready);
                let router = if config.api.web_client {
                    router.merge(confab_web::routes())
                } else {
                    router
                };
                router.merge(confab_api::router(api.clone()))
            },
            // Behind a proxy every connection comes from the proxy's
            // address: capping it would cap the whole service.
            gate: admission.gate(
                "api",
                if config.api.trust_forwarded_for {
                    u32::MAX
                } else {
                    config.api.max_connections_per_address
                },
                config.api.exempt_loopback,
            ),
            limits,
        }));
        services.push(Box::new(HttpService {
            name: "metrics",
            listener: metrics_listener,
            router: metrics::metrics_routes(registry),
            gate: admission.gate("metrics", METRICS_CONNECTIONS_PER_ADDRESS, false),
            limits,
        }));
        services.push(Box::new(RevocationSync(api.clone())));
        // Without the socket (a data directory whose path is too long for
        // one, say) the node still serves; only an online backup needs it.
        match AdminSocket::bind(&config.data_dir, log.clone(), api.store().clone()) {
            Ok(admin) => services.push(Box::new(admin)),
            Err(e) => warn!(
                "no admin socket ({e:#}): `confab backup` works only while the node is stopped"
            ),
        }
        if config.cluster.enabled() {
            let cluster =
                crate::cluster::join(&config, &api, ws_addr, quic_addr, admission.clone()).await?;
            let (membership, me) = cluster.member();
            services.push(Box::new(crate::cluster_directory::DirectoryRelay {
                events: api.store().events().clone(),
                bus: cluster_bus,
                verifier: api.verifier().clone(),
                access_token_ttl_secs: config.api.access_token_ttl_secs,
                membership: membership.clone(),
                origin: me.origin(),
            }));
            if let Some(relay) = relay {
                services.push(Box::new(relay.joined(membership, me)));
            }
            services.push(Box::new(cluster));
        }
        Ok(Started {
            runtime: tokio::runtime::Handle::current(),
            store: api.store().clone(),
            api,
            api_addr,
            metrics_addr,
            ws_addr,
            quic_addr,
            io,
        })
    }
}

/// Runs every service until the shutdown watch turns true and all have
/// drained. A service that fails while the node runs stops the node.
async fn run_all(
    services: Vec<Box<dyn Service>>,
    stop: Arc<watch::Sender<bool>>,
    shutdown: ShutdownWatch,
    ready: Readiness,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for service in services {
        let name = service.name();
        let watch = shutdown.clone();
        set.spawn(async move { (name, service.run(watch).await) });
    }
    ready.set(!*shutdown.borrow());
    let mut not_ready = shutdown.clone();
    let ready_flag = ready.clone();
    tokio::spawn(async move {
        let _ = not_ready.wait_for(|s| *s).await;
        ready_flag.set(false);
    });
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let (name, result) = joined.map_err(|e| anyhow::anyhow!("a service panicked: {e}"))?;
        if let Err(e) = result {
            error!(service = name, "{e:#}");
            let _ = stop.send(true);
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        r = tokio::signal::ctrl_c() => { r.context("installing the SIGINT handler")?; info!("SIGINT") }
    }
    Ok(())
}

/// A scraper needs one or two connections; a few more leave room for a
/// person with curl.
const METRICS_CONNECTIONS_PER_ADDRESS: u32 = 16;

/// Every connection holds a descriptor, and the usual soft limit (1024) is
/// far below what a node serves: raise it to the hard limit, which only
/// the administrator can move.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 65_536 => warn!(
            open_files = n,
            "the open-file limit caps this node's connections; raise the hard limit (ulimit -Hn, LimitNOFILE=)"
        ),
        Ok(n) => info!(open_files = n, "open-file limit"),
        Err(e) => warn!("could not raise the open-file limit: {e}"),
    }
}
