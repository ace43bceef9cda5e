//! Directory changes between the nodes of a cluster: every change this
//! node's directory commits (members, friends, revoked sessions) is
//! published on `confab.directory`, and the other nodes' changes are
//! applied here as if made here, so that no node keeps serving from a stale
//! cache or to a revoked session. The shared database stays the truth; a
//! lost event costs what a stale cache costs until the next change or
//! revocation poll.

use anyhow::Context;
use confab_cluster::Membership;
use confab_directory::auth::TokenVerifier;
use confab_directory::events::{DirectoryEvent, EventBus};
use confab_gateway::shard::Bus;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use crate::service::{stopped, Service, ServiceFuture, ShutdownWatch};

/// The subject of directory changes.
pub const DIRECTORY_SUBJECT: &str = "confab.directory";

/// One change as it crosses NATS.
#[derive(Debug, Serialize, Deserialize)]
struct Change {
    origin: String,
    event: DirectoryEvent,
}

/// The relay of one node.
pub struct DirectoryRelay {
    /// This node's directory changes.
    pub events: EventBus,
    /// Where other nodes' changes are applied.
    pub bus: Bus,
    /// Refuses sessions revoked elsewhere at once.
    pub verifier: TokenVerifier,
    /// How long a revoked session's tokens could still be valid.
    pub access_token_ttl_secs: u64,
    /// The cluster.
    pub membership: Membership,
    /// This node's life (`node@started`).
    pub origin: String,
}

impl Service for DirectoryRelay {
    fn name(&self) -> &'static str {
        "cluster directory"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            let client = self.membership.client();
            let mut incoming = client
                .subscribe(DIRECTORY_SUBJECT)
                .await
                .with_context(|| format!("subscribing to {DIRECTORY_SUBJECT}"))?;
            let mut local = self.events.subscribe();
            let stop = stopped(shutdown);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    event = local.recv() => match event {
                        Ok(event) => {
                            let change = Change { origin: self.origin.clone(), event };
                            let bytes = serde_json::to_vec(&change).expect("serialisable");
                            if let Err(e) = client.publish(DIRECTORY_SUBJECT, bytes.into()).await {
                                warn!(error = %e, "publishing a directory change");
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            warn!(missed = n, "directory changes not published to the cluster");
                        }
                        Err(RecvError::Closed) => break,
                    },
                    Some(message) = incoming.next() => {
                        let change: Change = match serde_json::from_slice(&message.payload) {
                            Ok(c) => c,
                            Err(e) => {
                                warn!(error = %e, "an undecodable directory change");
                                continue;
                            }
                        };
                        if change.origin == self.origin {
                            continue;
                        }
                        if let DirectoryEvent::SessionRevoked { session_id, .. } = change.event {
                            let until = confab_types::now_ms() / 1000 + self.access_token_ttl_secs;
                            self.verifier.revoke(session_id, until);
                        }
                        crate::wiring::apply_event(&self.bus, &change.event);
                    }
                }
            }
            Ok(())
        })
    }
}
