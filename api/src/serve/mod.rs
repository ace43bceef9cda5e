//! The HTTP server the API (and the node's metrics endpoint) runs on: an
//! accept loop that admits connections through the node's
//! [`Gate`](confab_admission::Gate), and HTTP/1.1 connections with
//! deadlines, so that a client cannot hold a connection or a descriptor
//! by sending nothing, or sending slowly.
//!
//! - **Header size**: at most [`MAX_HEADER_BYTES`].
//! - **Header deadline**: a request's header must arrive within
//!   `header_timeout` of the connection opening, or of the previous
//!   response on a kept-alive connection; that is also how long an idle
//!   kept-alive connection stays open.
//! - **Body deadline**: a request's body must have arrived within
//!   `request_timeout` of its header; past it the client gets `408
//!   REQUEST_TIMEOUT` and the connection closes. Handlers are never cut
//!   off half-way (a signup is not left with its account made and no
//!   tokens).
//! - **Write deadline**: a response write that makes no progress for
//!   `request_timeout` (a client that stopped reading) closes the
//!   connection.
//! - **Graceful shutdown**: on the shutdown signal the listener closes,
//!   in-flight requests finish, idle connections close; a connection still
//!   busy after `request_timeout` more is dropped, so shutdown always ends.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use confab_admission::Gate;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

mod deadline;

pub use deadline::BodyTimedOut;
use deadline::{DeadlineBody, StallGuard};

/// Largest request head (request line and headers) accepted; a larger
/// one is answered `431` and the connection closed. Our requests carry a
/// token and a few short headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The deadlines of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// For a request's header (and for an idle kept-alive connection).
    pub header_timeout: Duration,
    /// For a request's body to arrive, and for a blocked response write.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits
/// for the open connections to finish their requests. Handlers see the
/// peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    gate: Gate,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Every connection task holds a receiver: `closed()` on the sender
    // resolves once the last one has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = Duration::ZERO;
                    pair
                }
                Err(e) => {
                    backoff = gate.accept_failed(&e, backoff);
                    tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        // Refused connections close at once: their descriptor is back
        // before the next accept.
        let Ok(permit) = gate.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                handle(router.clone(), peer, limits.request_timeout, req)
            });
            let io = TokioIo::new(StallGuard::new(stream, limits.request_timeout));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(MAX_HEADER_BYTES);
            let conn = builder.serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            let stopping = tokio::select! {
                _ = conn.as_mut() => false,
                stopped = stop.wait_for(|s| *s) => stopped.is_ok(),
            };
            if stopping {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.request_timeout, conn).await;
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

/// One request: the peer's address for the extractors, the body's
/// deadline, the router.
async fn handle(
    router: Router,
    peer: SocketAddr,
    body_deadline: Duration,
    req: hyper::Request<Incoming>,
) -> Result<axum::response::Response, Infallible> {
    let mut req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, body_deadline)));
    req.extensions_mut().insert(ConnectInfo(peer));
    router.oneshot(req).await
}
