//! One way to reach the cluster's NATS servers, for membership and for the
//! replicated log alike.

use std::time::Duration;

use async_nats::ServerAddr;

use crate::{ClusterConfig, MembershipError};

/// How long a node waits for NATS before it gives up starting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to any of the configured servers (the client moves to another
/// when the one it is on goes away).
pub(crate) async fn connect(
    config: &ClusterConfig,
    node_id: &str,
) -> Result<async_nats::Client, MembershipError> {
    let mut addrs = Vec::new();
    for url in &config.nats {
        addrs.push(
            url.parse::<ServerAddr>()
                .map_err(|e| MembershipError::BadUrl {
                    url: url.clone(),
                    message: e.to_string(),
                })?,
        );
    }
    let urls = config.nats.join(", ");
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        async_nats::ConnectOptions::new()
            .name(format!("confab {node_id}"))
            // A node's broadcasts (events, directory changes) are for the
            // others: the server need not send them back.
            .no_echo()
            .connect(addrs),
    )
    .await
    .map_err(|_| MembershipError::Connect {
        urls: urls.clone(),
        message: format!("no answer within {CONNECT_TIMEOUT:?}"),
    })?
    .map_err(|e| MembershipError::Connect {
        urls,
        message: e.to_string(),
    })
}
