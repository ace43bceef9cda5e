//! The gateway's view of the rest of the node: the relational [`Store`]
//! as a [`Directory`], the API's [`TokenVerifier`] as an
//! [`Authenticator`], the push service as a [`PushSink`], and the
//! directory event bus forwarded to every core as cache invalidations.
//! The directory speaks plain `u64` ids (they are SQL integers); the
//! conversion to the gateway's typed ids happens here and nowhere else.
//!
//! Store queries run on the node's runtime (where sqlx's pool lives); a
//! core awaits the answer without blocking its thread.

use std::sync::Arc;

use confab_directory::auth::{AuthError, TokenVerifier};
use confab_directory::events::{DirectoryEvent, EventBus};
use confab_directory::store::{Store, StoreError};
use confab_gateway::ports::{
    Authenticator, BoxFut, Directory, DirectoryError, Found, FriendLists, Invalidation, PushJob,
    PushSink,
};
use confab_gateway::shard::{owner_core, Bus, ShardMsg};
use confab_protocol::ErrorCode;
use confab_push::PushService;
use confab_storage::{ChannelId, OutboxEntry, OutboxKey, UserId};
use confab_types::now_ms;
use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// The relational store, answered on the node's runtime.
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
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = self.runtime.spawn(f(self.store.clone()));
        Box::pin(async move {
            task.await
                .map_err(|e| DirectoryError(e.to_string()))?
                .map_err(|e| DirectoryError(e.to_string()))
        })
    }
}

fn users(ids: Vec<u64>) -> Arc<[UserId]> {
    ids.into_iter().map(UserId).collect()
}

impl Directory for StoreDirectory {
    fn channel_members(
        &self,
        channel: ChannelId,
    ) -> BoxFut<Result<Option<Arc<[UserId]>>, DirectoryError>> {
        self.run(move |s| async move { Ok(s.channel_members(channel.0).await?.map(users)) })
    }

    fn dm_channel(
        &self,
        a: UserId,
        b: UserId,
    ) -> BoxFut<Result<Option<ChannelId>, DirectoryError>> {
        self.run(move |s| async move {
            match s.dm_channel(a.0, b.0).await {
                Ok(c) => Ok(Some(ChannelId(c))),
                Err(StoreError::UnknownUser(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn co_members(&self, user: UserId) -> BoxFut<Result<Arc<[UserId]>, DirectoryError>> {
        self.run(move |s| async move {
            let mut all = Vec::new();
            for summary in s.user_channels(user.0).await? {
                if let Some(members) = s.channel_members(summary.channel.id).await? {
                    all.extend(members);
                }
            }
            all.sort_unstable();
            all.dedup();
            Ok(users(all))
        })
    }

    fn friends_of_many(&self, asked: Vec<UserId>) -> BoxFut<Result<FriendLists, DirectoryError>> {
        self.run(move |s| async move {
            let ids: Vec<u64> = asked.iter().map(|u| u.0).collect();
            let found = s.friends_of_many(&ids).await?;
            Ok(found
                .into_iter()
                .map(|(user, friends)| (UserId(user), users(friends)))
                .collect())
        })
    }
}

/// The API's token verifier as the gateway's authenticator; clones share
/// the revocation set, so a logout through the API is seen at once.
pub struct TokenAuth(pub TokenVerifier);

impl Authenticator for TokenAuth {
    fn verify(&self, token: &str) -> Result<(UserId, u64), ErrorCode> {
        match self.0.verify(token, now_ms() / 1000) {
            Ok(claims) => Ok((UserId(claims.user_id), claims.session_id)),
            Err(AuthError::Expired) => Err(ErrorCode::TokenExpired),
            Err(AuthError::Revoked) => Err(ErrorCode::TokenRevoked),
            Err(AuthError::Malformed | AuthError::BadSignature) => Err(ErrorCode::Unauthenticated),
        }
    }
}

/// The push service as the gateway's push sink.
pub struct PushAdapter(pub Arc<PushService>);

impl PushSink for PushAdapter {
    fn wants_job(&self, user: UserId) -> bool {
        self.0.wants_job(user.0)
    }

    fn presence(&self, user: UserId, online: bool) {
        self.0.device_presence(user.0, online);
    }

    fn delivered(&self, job: PushJob, found: Found) {
        let entry = OutboxEntry {
            key: OutboxKey {
                user: job.user,
                channel: job.channel,
                seq: job.seq,
            },
            inbox_seq: job.inbox_seq,
            sender: job.sender,
            timestamp_ms: job.timestamp_ms,
        };
        match found {
            Found::Offline { durable } => self.0.member_offline(entry, durable),
            Found::OnlineAfterAll => self.0.member_online_after_all(entry.key),
        }
    }
}

/// Forwards directory events to every core as invalidations, until the
/// bus closes or the node stops.
pub async fn forward_events(events: EventBus, bus: Bus, mut shutdown: watch::Receiver<bool>) {
    let mut rx = events.subscribe();
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match event {
            Ok(event) => apply_event(&bus, &event),
            // Missed events: nothing cached can be trusted.
            Err(RecvError::Lagged(_)) => invalidate_all(&bus, Invalidation::All),
            Err(RecvError::Closed) => return,
        }
    }
}

fn invalidate_all(bus: &Bus, inv: Invalidation) {
    for core in 0..bus.cores() {
        bus.send_shard(core, ShardMsg::Invalidate(inv.clone()));
    }
}

/// What a directory change means to the cores: cached members or friends
/// dropped, a revoked session's connections closed. Changes made on other
/// nodes of a cluster come here too.
pub fn apply_event(bus: &Bus, event: &DirectoryEvent) {
    match *event {
        DirectoryEvent::MembershipChanged { channel_id, .. } => {
            invalidate_all(bus, Invalidation::Channel(ChannelId(channel_id)))
        }
        DirectoryEvent::FriendshipChanged { a, b, .. } => {
            invalidate_all(bus, Invalidation::Friends(UserId(a)));
            invalidate_all(bus, Invalidation::Friends(UserId(b)));
        }
        // A logout ends the session's open connections too.
        DirectoryEvent::SessionRevoked {
            user_id,
            session_id,
        } => {
            let user = UserId(user_id);
            bus.send_shard(
                owner_core(user, bus.cores()),
                ShardMsg::Revoked {
                    user,
                    session: session_id,
                },
            );
        }
        DirectoryEvent::DevicesChanged { .. } => {}
    }
}
