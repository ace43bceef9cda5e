//! The node's services: each wraps one role's start-up product and turns
//! the node's shutdown watch into that role's way of stopping.

use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use confab_admission::Gate;
use confab_api::serve::HttpLimits;
use confab_api::ApiState;
use confab_gateway::Gateway;
use confab_push::PushWorker;
use confab_storage::writer::WriterPool;
use confab_storage::MessageLog;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::service::{stopped, Service, ServiceFuture, ShutdownWatch};

/// How long the storage writers wait for the gateway's cores to let go of
/// their producers before stopping anyway.
const PRODUCERS_GRACE: Duration = Duration::from_secs(10);

/// The storage writers: they outlive the cores that submit to them.
pub struct StorageService<L: MessageLog>(pub WriterPool<L>);

impl<L: MessageLog> Service for StorageService<L> {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            stopped(shutdown).await;
            let pool = self.0;
            let since = Instant::now();
            while pool.producers_alive() > 0 && since.elapsed() < PRODUCERS_GRACE {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if pool.producers_alive() > 0 {
                warn!(
                    producers = pool.producers_alive(),
                    "storage stops with producers still alive"
                );
            }
            // Everything accepted is committed (and fsynced under
            // sync = "batch") before this returns.
            tokio::task::spawn_blocking(move || pool.shutdown())
                .await
                .context("stopping the storage writers")?;
            info!("storage writers flushed");
            Ok(())
        })
    }
}

/// The gateway's cores: they watch the shutdown themselves (stop
/// accepting, close with GOING_AWAY, drain); this waits for their threads.
pub struct GatewayService(pub Gateway);

impl Service for GatewayService {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            stopped(shutdown).await;
            let gateway = self.0;
            tokio::task::spawn_blocking(move || gateway.join())
                .await
                .context("stopping the gateway")?;
            info!("gateway stopped");
            Ok(())
        })
    }
}

/// An HTTP listener (the API, or the metrics endpoint) with graceful
/// shutdown: in-flight requests finish, new connections are refused.
pub struct HttpService {
    /// For logs.
    pub name: &'static str,
    /// The bound listener.
    pub listener: TcpListener,
    /// What it serves.
    pub router: Router,
    /// Who may connect.
    pub gate: Gate,
    /// Deadlines of each connection.
    pub limits: HttpLimits,
}

impl Service for HttpService {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            let name = self.name;
            confab_api::serve::serve(
                self.listener,
                self.router,
                self.gate,
                self.limits,
                stopped(shutdown),
            )
            .await
            .with_context(|| format!("serving {name}"))
        })
    }
}

/// The push worker: it stops on the same watch; pending jobs stay in the
/// outbox for the next start.
pub struct PushService(pub PushWorker);

impl Service for PushService {
    fn name(&self) -> &'static str {
        "push"
    }

    fn run(self: Box<Self>, _shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            self.0.stopped().await;
            Ok(())
        })
    }
}

/// Revocations made by other nodes sharing the store, read periodically.
pub struct RevocationSync(pub ApiState);

impl Service for RevocationSync {
    fn name(&self) -> &'static str {
        "revocations"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            tokio::select! {
                _ = self.0.run_revocation_sync() => {}
                _ = stopped(shutdown) => {}
            }
            Ok(())
        })
    }
}

/// Directory events forwarded to the gateway's cores.
pub struct EventForwarder {
    /// The directory's events.
    pub events: confab_directory::events::EventBus,
    /// The cores.
    pub bus: confab_gateway::shard::Bus,
}

impl Service for EventForwarder {
    fn name(&self) -> &'static str {
        "directory-events"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            crate::wiring::forward_events(self.events, self.bus, shutdown).await;
            Ok(())
        })
    }
}
