//! `confab serve`: opens the data directory, starts the storage writers and
//! the HTTP listeners, and shuts all of it down in order on SIGTERM/SIGINT
//! (a second SIGINT exits at once).
//!
//! The roles that later issues add (the thread-per-core WebSocket/QUIC
//! gateway, the API's endpoints, push) start here too, so that one command
//! runs a whole node on embedded defaults.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use confab_storage::writer::{WriterConfig, WriterPool, WriterStats};
use confab_storage::{LogConfig, MessageLog, RocksLog};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use confab_api::{self as api, ApiSettings, ApiState};
use confab_gateway::gateway::{make_bus, CoreMetrics, Gateway, IoMode, NoPush, PushSink};

use crate::config::Config;
use crate::metrics;
use crate::wiring::{forward_events, PushAdapter, StoreDirectory, TokenAuth};

/// What the HTTP handlers see of the node.
struct Node {
    started: Instant,
    storage: Arc<WriterStats>,
    gateway: Vec<Arc<CoreMetrics>>,
    io: IoMode,
    push: Option<Arc<confab_push::PushMetrics>>,
    ready: AtomicBool,
}

/// Runs the node until a shutdown signal.
pub fn run(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let log_dir = config.data_dir.join("log");
    let opened = Instant::now();
    let log = RocksLog::open(
        &log_dir,
        LogConfig {
            sync_policy: config.storage.sync,
            ..LogConfig::default()
        },
    )
    .with_context(|| format!("opening message log {}", log_dir.display()))?;
    info!(path = %log_dir.display(), sync = %config.storage.sync,
          elapsed_ms = opened.elapsed().as_millis() as u64, "message log open");
    let log = Arc::new(log);

    // TLS for wss:// (and QUIC): configured, or self-signed in the data dir.
    let identity = confab_gateway::tls::load_or_generate(
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
    } else {
        info!(cert = %identity.cert_path.display(), "TLS certificate loaded");
    }

    // One storage producer per gateway core; the writers wake a core
    // through its mailbox when its completions are ready.
    let mut settings = config.gateway.settings();
    settings.tls =
        Some(confab_gateway::tls::websocket_config(&identity).context("TLS for wss://")?);
    settings.quic = Some(confab_gateway::gateway::quic::QuicSettings {
        addr: config.gateway.quic_addr,
        tls: confab_gateway::tls::quic_config(&identity).context("TLS for QUIC")?,
    });
    let (bus, wakers) = make_bus(settings.cores);
    let (pool, producers) = WriterPool::start(
        log.clone(),
        WriterConfig {
            writers: config.storage.writers,
            ..WriterConfig::default()
        },
        wakers,
    )
    .context("starting storage writers")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let result = runtime.block_on(async {
        // The API's store (SQLite or PostgreSQL, migrated), token key and
        // revocations; the gateway shares its store, verifier and events.
        let api_settings = ApiSettings::from_config(
            &config.api,
            config.gateway.ws_addr,
            config.gateway.quic_addr,
        );
        let api = ApiState::open(
            &config.api,
            &config.data_dir,
            api_settings,
            log.clone() as Arc<dyn MessageLog>,
        )
        .await
        .context("starting the HTTP API")?;
        info!(backend = ?api.store().backend(), "directory store open");
        let directory = Arc::new(StoreDirectory::new(
            api.store().clone(),
            tokio::runtime::Handle::current(),
        ));
        // Push: built before the gateway so that no delivery finds it
        // missing; its worker reloads what the outbox holds.
        let mut push_metrics = None;
        let providers = if config.push.enabled {
            confab_push::providers(&config.push).context("setting up push providers")?
        } else {
            Default::default()
        };
        let (push_sink, push_worker): (Arc<dyn PushSink>, _) = if !providers.is_empty() {
            let names: Vec<&str> = providers.values().map(|p| p.name()).collect();
            info!(providers = ?names, preview = config.push.include_preview, "push service on");
            let (service, worker) = confab_push::start(
                &config.push,
                log.clone() as Arc<dyn MessageLog>,
                api.store().clone(),
                providers,
            );
            push_metrics = Some(service.metrics());
            (Arc::new(PushAdapter(service)), Some(worker))
        } else {
            // Nothing could be sent: write no jobs at all.
            info!("push service off (push.enabled = false, or no provider in [push])");
            (Arc::new(NoPush), None)
        };
        let gateway = Gateway::start(
            settings,
            bus.clone(),
            producers,
            log.clone() as Arc<dyn MessageLog>,
            directory,
            Arc::new(TokenAuth(api.verifier().clone())),
            push_sink,
        )
        .with_context(|| format!("starting the gateway on {}", config.gateway.ws_addr))?;
        tokio::spawn(forward_events(api.store().events().clone(), bus));
        let node = Arc::new(Node {
            started: Instant::now(),
            storage: pool.stats_handle(),
            gateway: gateway.metrics(),
            io: gateway.io(),
            push: push_metrics,
            ready: AtomicBool::new(false),
        });
        let served = serve_http(&config, node, api).await;
        // Close every session (going away) while this runtime still
        // answers the cores' directory lookups.
        tokio::task::spawn_blocking(move || gateway.shutdown())
            .await
            .context("stopping the gateway")?;
        info!("gateway stopped");
        if let Some(worker) = push_worker {
            // Pending jobs stay in the outbox for the next start.
            worker.shutdown().await;
        }
        served
    });
    drop(runtime);

    // Stop the writers last: everything accepted before the signal is
    // committed (and fsynced under `sync = "batch"`) before we exit.
    pool.shutdown();
    info!("storage writers flushed; shutdown complete");
    result
}

async fn serve_http(config: &Config, node: Arc<Node>, api_state: ApiState) -> anyhow::Result<()> {
    let api = TcpListener::bind(config.api.addr)
        .await
        .with_context(|| format!("binding api.addr {}", config.api.addr))?;
    let metrics_listener = TcpListener::bind(config.metrics.addr)
        .await
        .with_context(|| format!("binding metrics.addr {}", config.metrics.addr))?;
    info!(api = %api.local_addr()?, metrics = %metrics_listener.local_addr()?,
          data_dir = %config.data_dir.display(), "confab serving");

    let (stop_tx, stop_rx) = watch::channel(false);
    let api_app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(node.clone())
        .merge(api::router(api_state.clone()));
    // Revocations made by other API nodes sharing the store.
    tokio::spawn(api_state.run_revocation_sync());
    let metrics_app = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(node.clone());

    let api_task = tokio::spawn(
        // Connect info: the login rate limiter keys on the client IP.
        axum::serve(
            api,
            api_app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait_for(stop_rx.clone()))
        .into_future(),
    );
    let metrics_task = tokio::spawn(
        axum::serve(metrics_listener, metrics_app)
            .with_graceful_shutdown(wait_for(stop_rx))
            .into_future(),
    );
    node.ready.store(true, Ordering::Release);

    shutdown_signal().await?;
    node.ready.store(false, Ordering::Release);
    info!("shutdown requested: draining connections");
    let _ = stop_tx.send(true);
    // A second Ctrl-C while draining exits at once.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("second interrupt: exiting now");
            std::process::exit(130);
        }
    });
    api_task.await??;
    metrics_task.await??;
    Ok(())
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
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

async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    if node.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn render_metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], {
        let mut text = metrics::render(node.started, &node.storage);
        confab_gateway::gateway::metrics::render(&mut text, &node.gateway, &node.io.to_string());
        if let Some(push) = &node.push {
            push.render(&mut text);
        }
        text
    })
}

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
