//! Joining, heartbeating in, watching and leaving `confab_nodes`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tracing::{info, warn};

use crate::{ClusterConfig, NodeInfo};

/// The KV bucket of live nodes.
pub const NODES_BUCKET: &str = "confab_nodes";

/// Why the node could not join or keep up its entry.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// A configured URL does not parse.
    #[error("cluster.nats: {url:?}: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// No NATS server answered.
    #[error("connecting to NATS ({urls}): {message}")]
    Connect {
        /// The servers tried.
        urls: String,
        /// What failed.
        message: String,
    },
    /// JetStream refused an operation on the bucket.
    #[error("{what} in {NODES_BUCKET}: {message}")]
    Bucket {
        /// What was being done.
        what: &'static str,
        /// What JetStream said.
        message: String,
    },
}

fn bucket(what: &'static str) -> impl Fn(String) -> MembershipError {
    move |message| MembershipError::Bucket { what, message }
}

/// This node's membership: its entry, and its view of every live node.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    store: kv::Store,
    me: String,
    ttl: Duration,
    heartbeat: Duration,
    /// Every node seen, with when its entry was last written as this node
    /// saw it. A discovery request reads it; heartbeats rewrite it.
    view: RwLock<HashMap<String, (NodeInfo, Instant)>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.inner.me)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Connects to NATS, makes sure the bucket exists, writes this node's
    /// entry and starts following the others'. Call it on the runtime that
    /// is to carry the heartbeats.
    /// A bucket JetStream cannot serve yet (while it elects a leader) is
    /// waited for.
    pub async fn join(config: &ClusterConfig, me: NodeInfo) -> Result<Membership, MembershipError> {
        crate::patience::patiently(
            "joining the cluster",
            |e| matches!(e, MembershipError::Bucket { .. }),
            || Self::join_once(config, me.clone()),
        )
        .await
    }

    async fn join_once(
        config: &ClusterConfig,
        me: NodeInfo,
    ) -> Result<Membership, MembershipError> {
        let client = crate::connect::connect(config, &me.node_id).await?;
        let js = async_nats::jetstream::new(client.clone());
        let store = match js.get_key_value(NODES_BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                let created = js
                    .create_key_value(kv::Config {
                        bucket: NODES_BUCKET.to_owned(),
                        description: "confab's live nodes and their load".to_owned(),
                        history: 1,
                        // Entries outlive the TTL a little, so that a node's
                        // death is decided by its silence, not by the stream.
                        max_age: config.ttl() * 2,
                        num_replicas: config.replicas,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => store,
                    // Another node created it at the same moment.
                    Err(_) => js
                        .get_key_value(NODES_BUCKET)
                        .await
                        .map_err(|e| bucket("opening the bucket")(e.to_string()))?,
                }
            }
        };
        let membership = Membership {
            inner: Arc::new(Inner {
                client,
                store,
                me: me.node_id.clone(),
                ttl: config.ttl(),
                heartbeat: config.heartbeat(),
                view: RwLock::new(HashMap::new()),
            }),
        };
        membership.write(&me).await?;
        membership.note(me);
        membership.follow().await?;
        info!(node = %membership.inner.me, "joined the cluster");
        Ok(membership)
    }

    /// The connection to NATS, for the node's other traffic.
    pub fn client(&self) -> async_nats::Client {
        self.inner.client.clone()
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.inner.me
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        self.inner.heartbeat
    }

    /// The live nodes, least loaded first (ties by name, so that every
    /// node orders them alike).
    pub fn live(&self) -> Vec<NodeInfo> {
        let now = Instant::now();
        let view = self.inner.view.read().expect("view");
        let mut live: Vec<NodeInfo> = view
            .values()
            .filter(|(_, seen)| self.alive(*seen, now))
            .map(|(info, _)| info.clone())
            .collect();
        live.sort_by(|a, b| {
            a.connections
                .cmp(&b.connections)
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        live
    }

    /// How many live nodes there are, this one included.
    pub fn live_count(&self) -> usize {
        let now = Instant::now();
        let view = self.inner.view.read().expect("view");
        view.values()
            .filter(|(_, seen)| self.alive(*seen, now))
            .count()
    }

    /// Whether a node whose entry was last written at `seen` is alive.
    fn alive(&self, seen: Instant, now: Instant) -> bool {
        now.duration_since(seen) < self.inner.ttl
    }

    /// Rewrites this node's entry (with its current load): the heartbeat.
    pub async fn beat(&self, me: NodeInfo) -> Result<(), MembershipError> {
        self.write(&me).await?;
        self.note(me);
        Ok(())
    }

    /// Deletes this node's entry: the others drop it at once rather than
    /// after the TTL.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        self.inner
            .store
            .delete(NodeInfo::key(&self.inner.me))
            .await
            .map_err(|e| bucket("deleting this node's entry")(e.to_string()))?;
        info!(node = %self.inner.me, "left the cluster");
        Ok(())
    }

    async fn write(&self, me: &NodeInfo) -> Result<(), MembershipError> {
        let value = Bytes::from(serde_json::to_vec(me).expect("plain struct"));
        self.inner
            .store
            .put(NodeInfo::key(&me.node_id), value)
            .await
            .map_err(|e| bucket("writing this node's entry")(e.to_string()))?;
        Ok(())
    }

    fn note(&self, info: NodeInfo) {
        let mut view = self.inner.view.write().expect("view");
        view.insert(info.node_id.clone(), (info, Instant::now()));
    }

    /// Follows the bucket: every entry now, then every change.
    async fn follow(&self) -> Result<(), MembershipError> {
        let mut watch = self
            .inner
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| bucket("watching")(e.to_string()))?;
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        warn!("cluster view: {e}");
                        continue;
                    }
                };
                let Some(id) = entry.key.strip_prefix("node.") else {
                    continue;
                };
                match entry.operation {
                    kv::Operation::Put => match serde_json::from_slice::<NodeInfo>(&entry.value) {
                        Ok(info) if info.node_id == id => me.note(info),
                        _ => warn!(key = %entry.key, "cluster view: an entry that is not a node's"),
                    },
                    kv::Operation::Delete | kv::Operation::Purge => {
                        me.inner.view.write().expect("view").remove(id);
                    }
                }
            }
        });
        Ok(())
    }
}
