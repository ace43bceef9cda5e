//! A node is a set of services that start together and stop together on
//! one shutdown watch (pingora's `Service` and `ShutdownWatch`). When the
//! watch turns true every service stops taking new work, drains what it
//! holds, and returns; the node waits for all of them. Services that
//! depend on others drain after them by what they wait for, not by a
//! second signal: the storage writers stop once the gateway's cores have
//! dropped their producers.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

/// The node's shutdown signal: `true` once the node is stopping.
pub type ShutdownWatch = watch::Receiver<bool>;

/// A future a service runs as.
pub type ServiceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One part of a node.
pub trait Service: Send {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Runs until `shutdown` turns true and the service has drained.
    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture;
}

/// Waits until the watch turns true (or its sender is gone).
pub async fn stopped(mut shutdown: ShutdownWatch) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
