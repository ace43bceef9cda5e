//! The gateway's view of the rest of the node: the relational [`Store`]
//! as a [`Directory`], the API's [`TokenVerifier`] as an
//! [`Authenticator`], the push service as a [`PushSink`], and the
//! directory event bus forwarded to every core as cache invalidations.
//!
//! Store queries run on the API's runtime (where sqlx's pool lives); a
//! core awaits the answer without blocking its thread.

use std::sync::Arc;

use confab_protocol::ErrorCode;
use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;

use confab_directory::auth::{AuthError, TokenVerifier};
use confab_directory::events::{DirectoryEvent, EventBus};
use confab_directory::store::{Store, StoreError};
use confab_gateway::gateway::bus::{owner_core, Bus};
use confab_gateway::gateway::directory::{
    Authenticator, BoxFut, Directory, DirectoryError, Invalidation,
};
use confab_gateway::gateway::{CoreMsg, Found, PushJob, PushSink};
use confab_push::PushService;
use confab_storage::{ChannelId, OutboxEntry, OutboxKey, UserId};
use confab_types::now_ms;

/// The relational store, answered on the API runtime.
pub struct StoreDirectory {
    store: Store,
    runtime: Handle,
}

impl StoreDirectory {
    /// Wraps `store`, whose pool lives on `runtime`.
    pub fn new(store: Store, runtime: Handle) -> Self {
        StoreDirectory { store, runtime }
    }

    fn run<T, F>(
        &self,
        f: impl FnOnce(Store) -> F + Send + 'static,
    ) -> BoxFut<Result<T, DirectoryError>>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, DirectoryError>> + Send + 'static,
    {
        let task = self.runtime.spawn(f(self.store.clone()));
        Box::pin(async move { task.await.map_err(|e| DirectoryError(e.to_string()))? })
    }
}

fn err(e: StoreError) -> DirectoryError {
    DirectoryError(e.to_string())
}

impl Directory for StoreDirectory {
    fn channel_members(&self, channel: u64) -> BoxFut<Result<Option<Arc<[u64]>>, DirectoryError>> {
        self.run(move |s| async move {
            Ok(s.channel_members(channel)
                .await
                .map_err(err)?
                .map(Arc::from))
        })
    }

    fn dm_channel(&self, a: u64, b: u64) -> BoxFut<Result<Option<u64>, DirectoryError>> {
        self.run(move |s| async move {
            match s.dm_channel(a, b).await {
                Ok(c) => Ok(Some(c)),
                Err(StoreError::UnknownUser(_)) => Ok(None),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn co_members(&self, user: u64) -> BoxFut<Result<Arc<[u64]>, DirectoryError>> {
        self.run(move |s| async move {
            let mut all = Vec::new();
            for summary in s.user_channels(user).await.map_err(err)? {
                if let Some(members) = s.channel_members(summary.channel.id).await.map_err(err)? {
                    all.extend(members);
                }
            }
            all.sort_unstable();
            all.dedup();
            Ok(Arc::from(all))
        })
    }

    fn friends(&self, user: u64) -> BoxFut<Result<Arc<[u64]>, DirectoryError>> {
        self.run(move |s| async move { Ok(Arc::from(s.friends(user).await.map_err(err)?)) })
    }
}

/// The API's token verifier as the gateway's authenticator; clones share
/// the revocation set, so a logout through the API is seen at once.
pub struct TokenAuth(pub TokenVerifier);

impl Authenticator for TokenAuth {
    fn verify(&self, token: &str) -> Result<(u64, u64), ErrorCode> {
        match self.0.verify(token, now_ms() / 1000) {
            Ok(claims) => Ok((claims.user_id, claims.session_id)),
            Err(AuthError::Expired) => Err(ErrorCode::TokenExpired),
            Err(AuthError::Revoked) => Err(ErrorCode::TokenRevoked),
            Err(AuthError::Malformed | AuthError::BadSignature) => Err(ErrorCode::Unauthenticated),
        }
    }
}

/// Forwards directory events to every core as invalidations until the bus
/// closes. Run it on the API runtime.
pub async fn forward_events(events: EventBus, bus: Bus<CoreMsg>) {
    let mut rx = events.subscribe();
    let all = |inv: Invalidation| {
        for core in 0..bus.cores() {
            bus.send(core, CoreMsg::Invalidate(inv.clone()));
        }
    };
    loop {
        match rx.recv().await {
            Ok(DirectoryEvent::MembershipChanged { channel_id, .. }) => {
                all(Invalidation::Channel(channel_id))
            }
            Ok(DirectoryEvent::FriendshipChanged { a, b, .. }) => {
                all(Invalidation::Friends(a));
                all(Invalidation::Friends(b));
            }
            // A logout ends the session's open connections too.
            Ok(DirectoryEvent::SessionRevoked {
                user_id,
                session_id,
            }) => {
                let core = owner_core(user_id, bus.cores());
                bus.send(
                    core,
                    CoreMsg::Revoked {
                        user: user_id,
                        session: session_id,
                    },
                );
            }
            Ok(_) => {}
            // Missed events: nothing cached can be trusted.
            Err(RecvError::Lagged(_)) => all(Invalidation::All),
            Err(RecvError::Closed) => return,
        }
    }
}

/// The push service as the gateway's push sink.
pub struct PushAdapter(pub Arc<PushService>);

impl PushSink for PushAdapter {
    fn wants_job(&self, user: u64) -> bool {
        self.0.wants_job(user)
    }

    fn presence(&self, user: u64, online: bool) {
        self.0.device_presence(user, online);
    }

    fn delivered(&self, job: PushJob, found: Found) {
        let entry = OutboxEntry {
            key: OutboxKey {
                user: UserId(job.user),
                channel: ChannelId(job.channel),
                seq: job.seq,
            },
            inbox_seq: job.inbox_seq,
            sender: UserId(job.sender),
            timestamp_ms: job.timestamp_ms,
        };
        match found {
            Found::Offline { durable } => self.0.member_offline(entry, durable),
            Found::OnlineAfterAll => self.0.member_online_after_all(entry.key),
        }
    }
}
