//! The node as a member of a cluster (docs/cluster.md): it joins with its
//! addresses, rewrites its entry with its load on every heartbeat, leaves
//! when it stops, and discovery answers from the cluster's view.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use confab_admission::Admission;
use confab_api::{ApiState, ClusterGateway, ClusterView};
use confab_cluster::{Membership, NodeInfo};
use tracing::warn;

use crate::config::Config;
use crate::service::{stopped, Service, ServiceFuture, ShutdownWatch};

/// The heartbeat and the clean leave.
pub struct ClusterService {
    membership: Membership,
    me: NodeInfo,
    admission: Admission,
}

/// Joins the cluster of `config.cluster` and points discovery at it.
pub async fn join(
    config: &Config,
    api: &ApiState,
    ws_addr: SocketAddr,
    quic_addr: Option<SocketAddr>,
    admission: Admission,
) -> anyhow::Result<ClusterService> {
    let node_id = node_id(config);
    // Other nodes' clients are sent here: the advertised URL, or the
    // bound address (validate() refuses a wildcard without one).
    let (websocket_url, secure_websocket_url) = match &config.api.public_ws_url {
        Some(url) if url.starts_with("wss://") => (url.clone(), url.clone()),
        Some(url) => (url.clone(), url.replacen("ws://", "wss://", 1)),
        None => (
            format!("ws://{ws_addr}/v1/ws"),
            format!("wss://{ws_addr}/v1/ws"),
        ),
    };
    let quic_addr = match (&config.api.public_quic_addr, quic_addr) {
        (Some(public), _) => public.clone(),
        (None, Some(bound)) => bound.to_string(),
        (None, None) => String::new(),
    };
    let me = NodeInfo {
        node_id,
        websocket_url,
        secure_websocket_url,
        quic_addr,
        connections: admission.open() as u64,
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let membership = Membership::join(&config.cluster, me.clone())
        .await
        .context("joining the cluster")?;
    api.join_cluster(std::sync::Arc::new(View(membership.clone())));
    warn!(
        "cluster mode: a node's pending push jobs wait for it to restart \
         (docs/cluster.md, \"Not built yet\")"
    );
    Ok(ClusterService {
        membership,
        me,
        admission,
    })
}

/// This node's name in the cluster: configured, or the host name.
pub fn node_id(config: &Config) -> String {
    match &config.cluster.node_id {
        Some(id) => id.clone(),
        None => host_name(),
    }
}

/// The host name, as a node id: the characters a KV key allows.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        "node".to_owned()
    } else {
        id
    }
}

impl Service for ClusterService {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            let ClusterService {
                membership,
                mut me,
                admission,
            } = *self;
            let mut tick = tokio::time::interval(membership.heartbeat());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stop = stopped(shutdown);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tick.tick() => {
                        me.connections = admission.open() as u64;
                        if let Err(e) = membership.beat(me.clone()).await {
                            warn!("cluster heartbeat: {e}");
                        }
                    }
                }
            }
            // Leaving first sends no new client here while the node drains.
            if let Err(e) = membership.leave().await {
                warn!("leaving the cluster: {e}");
            }
            Ok(())
        })
    }
}

impl ClusterService {
    /// The node's membership and its entry, for the relay.
    pub fn member(&self) -> (Membership, NodeInfo) {
        (self.membership.clone(), self.me.clone())
    }
}

struct View(Membership);

impl ClusterView for View {
    fn gateways(&self) -> Vec<ClusterGateway> {
        self.0
            .live()
            .into_iter()
            .map(|n| ClusterGateway {
                websocket_url: n.websocket_url,
                secure_websocket_url: n.secure_websocket_url,
                quic_addr: n.quic_addr,
            })
            .collect()
    }
}
