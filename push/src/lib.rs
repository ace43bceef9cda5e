//! Push notifications for members with no device online: the outbox the
//! storage writes in the same batch as the message, the worker that drains
//! it, and the provider clients (FCM, APNs, webhook). See `docs/push.md`.

pub mod apns;
pub mod backoff;
pub mod config;
pub mod error;
pub mod fcm;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod online;
pub mod provider;
mod service;
pub mod webhook;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use confab_storage::MessageLog;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use self::config::PushConfig;
pub use self::error::PushError;
pub use self::metrics::PushMetrics;
use self::provider::Provider;
pub use self::service::PushService;
use confab_directory::store::{Platform, Store};

/// The running worker.
pub struct PushWorker {
    task: JoinHandle<()>,
}

impl PushWorker {
    /// Waits for the worker to stop (after the shutdown watch it was
    /// started with turned true); pending jobs stay in the outbox for the
    /// next start.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The provider clients `config` names, by platform.
pub fn providers(config: &PushConfig) -> Result<HashMap<Platform, Arc<dyn Provider>>, PushError> {
    let http = http::HttpClient::new(
        config.ca_file.as_deref(),
        Duration::from_millis(config.request_timeout_ms),
    )?;
    let mut out: HashMap<Platform, Arc<dyn Provider>> = HashMap::new();
    if let Some(fcm) = &config.fcm {
        out.insert(Platform::Fcm, Arc::new(fcm::Fcm::new(fcm, http.clone())?));
    }
    if let Some(apns) = &config.apns {
        out.insert(
            Platform::Apns,
            Arc::new(apns::Apns::new(apns, http.clone())?),
        );
    }
    if let Some(webhook) = &config.webhook {
        out.insert(
            Platform::Webhook,
            Arc::new(webhook::Webhook::new(webhook, http.clone())),
        );
    }
    Ok(out)
}

/// Starts the push service on the current tokio runtime: the [`PushService`]
/// to hand the gateway, and the worker draining the outbox (starting with
/// whatever a previous run left in it) until `shutdown` turns true. Its
/// metrics go into `registry`.
pub fn start(
    config: &PushConfig,
    log: Arc<dyn MessageLog>,
    store: Store,
    providers: HashMap<Platform, Arc<dyn Provider>>,
    registry: &prometheus::Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(Arc<PushService>, PushWorker), PushError> {
    let metrics = Arc::new(PushMetrics::new());
    metrics
        .register(registry)
        .map_err(|e| PushError::Config(format!("registering push metrics: {e}")))?;
    let online = Arc::new(online::OnlineSet::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(worker::Ctx {
        store,
        log,
        providers,
        metrics: metrics.clone(),
        permits: Semaphore::new(config.concurrency),
        include_preview: config.include_preview,
    });
    let pacing = worker::Pacing {
        collapse: Duration::from_millis(config.collapse_ms),
        max_age_ms: config.max_age_secs.saturating_mul(1000),
        concurrency: config.concurrency,
        retry_base: Duration::from_millis(config.retry_base_ms),
        retry_max: Duration::from_millis(config.retry_max_ms),
    };
    let task = tokio::spawn(worker::Worker::new(pacing, ctx, online.clone(), rx).run(shutdown));
    let service = Arc::new(PushService {
        online,
        tx,
        metrics,
    });
    Ok((service, PushWorker { task }))
}
