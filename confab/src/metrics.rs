//! The node's Prometheus registry and the process-level endpoints:
//! `/metrics` (every role's series, gathered and encoded by the
//! `prometheus` crate), `/healthz` and `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::process_metrics::ProcessCollector;

/// A registry with the standard process series (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, …) and the build
/// info; the roles add theirs as they start.
pub fn registry() -> prometheus::Result<Registry> {
    let r = Registry::new();
    r.register(Box::new(ProcessCollector::new()?))?;
    let build = IntGaugeVec::new(
        Opts::new("confab_build_info", "Build of the running confab."),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    r.register(Box::new(build))?;
    Ok(r)
}

/// Every series of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding gathered families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Whether the node is serving (false while it starts and once it stops).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets it.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `/healthz` and `/readyz`, merged into the API's router.
pub fn health_routes(ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ready)
}

async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    if ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// `/metrics`.
pub fn metrics_routes(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
}

async fn scrape(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&registry),
    )
}
