//! The stateless HTTP API under `/v1`: accounts and tokens, profiles,
//! devices, friends, DMs, groups, history over HTTP and service discovery.
//!
//! Stateless means that everything durable is in the [`Store`] (and the
//! message log), so any number of API nodes can run behind a load balancer;
//! the only per-node memory is the login rate limiter and the token
//! verifier's revocation set, which every node refreshes from the store.
//!
//! Endpoints are grouped one file per resource; each file documents its
//! routes, and [`openapi`] describes all of them (served at
//! `/v1/openapi.json`, and written up with examples in docs/api.md).

mod accounts;
mod channels;
pub mod config;
mod devices;
mod discovery;
mod dms;
mod error;
mod extract;
mod friends;
mod groups;
mod history;
mod me;
mod mute;
pub mod openapi;
pub mod ratelimit;
mod receipts;
pub mod serve;
mod users;
pub mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use axum::Router;
use confab_storage::MessageLog;
pub use confab_types::PlainWs;
pub use discovery::{ClusterGateway, ClusterView};

pub use error::{ApiError, ApiResult};
pub use extract::{Auth, ClientIp, Ids, JsonBody, QueryParams};

use crate::config::ApiConfig;
use confab_directory::auth::{
    load_or_create_secret, PasswordError, PasswordParams, Passwords, SecretError, TokenSigner,
    TokenVerifier, TOKEN_KEY_FILE,
};
use confab_directory::events::EventBus;
use confab_directory::store::{Store, StoreError};
use ratelimit::{IpLimiter, LoginLimiter, RateLimit};

/// Now in Unix seconds (the API's clock for tokens).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the discovery endpoint advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// A fixed WebSocket URL (`api.public_ws_url`), or `None` to derive it
    /// from `ws_addr`.
    pub websocket_url: Option<String>,
    /// The gateway's WebSocket listen address.
    pub ws_addr: SocketAddr,
    /// The QUIC address to advertise.
    pub quic_addr: String,
    /// Which clients the gateway serves plain `ws://` to; discovery
    /// advertises `ws://` only to those.
    pub plain_ws: PlainWs,
}

/// The API's tunables (see `ApiConfig` for what each means).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Access token lifetime.
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_token_ttl_secs: u64,
    /// Request body limit in bytes.
    pub max_body_bytes: usize,
    /// Login bucket shape, per username and per IP.
    pub login_limit: RateLimit,
    /// Signup bucket shape, per IP.
    pub signup_limit: RateLimit,
    /// Whether loopback clients are spared the signup limit.
    pub exempt_loopback: bool,
    /// argon2id cost.
    pub password: PasswordParams,
    /// Whether to read the client IP from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// How often to read other nodes' revocations.
    pub revocation_poll: Duration,
    /// Service discovery.
    pub discovery: DiscoverySettings,
}

impl ApiSettings {
    /// The settings `[api]` asks for, advertising the gateway at `ws_addr`
    /// and `quic_addr` unless the section names public addresses, and plain
    /// `ws://` to the clients `plain_ws` says the gateway serves it to.
    pub fn from_config(
        api: &ApiConfig,
        ws_addr: SocketAddr,
        quic_addr: SocketAddr,
        plain_ws: PlainWs,
    ) -> Self {
        ApiSettings {
            access_token_ttl_secs: api.access_token_ttl_secs,
            refresh_token_ttl_secs: api.refresh_token_ttl_secs,
            max_body_bytes: api.max_body_bytes,
            login_limit: RateLimit {
                burst: api.login_burst,
                per_minute: api.login_per_minute,
            },
            signup_limit: RateLimit {
                burst: api.signup_burst,
                per_minute: api.signup_per_minute,
            },
            exempt_loopback: api.exempt_loopback,
            password: PasswordParams {
                memory_kib: api.password_memory_kib,
                iterations: api.password_iterations,
            },
            trust_forwarded_for: api.trust_forwarded_for,
            revocation_poll: Duration::from_secs(api.revocation_poll_secs),
            discovery: DiscoverySettings {
                websocket_url: api.public_ws_url.clone(),
                ws_addr,
                quic_addr: api
                    .public_quic_addr
                    .clone()
                    .unwrap_or_else(|| quic_addr.to_string()),
                plain_ws,
            },
        }
    }
}

impl Default for ApiSettings {
    /// The defaults of `[api]`, advertising a gateway on its default ports.
    fn default() -> Self {
        ApiSettings::from_config(
            &ApiConfig::default(),
            ([127, 0, 0, 1], 8081).into(),
            ([127, 0, 0, 1], 8443).into(),
            PlainWs::Loopback,
        )
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiInitError {
    /// The store could not be opened or migrated.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// The token key could not be read or created.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The password hashing parameters are unusable.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// Everything the handlers share; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    log: Arc<dyn MessageLog>,
    signer: TokenSigner,
    verifier: TokenVerifier,
    passwords: Passwords,
    limiter: LoginLimiter,
    signups: IpLimiter,
    settings: ApiSettings,
    /// Where the gateway listens once it does (its configured port may
    /// be 0); discovery advertises this over the configured addresses.
    bound: std::sync::OnceLock<DiscoverySettings>,
    /// The cluster's live nodes, when this node is in one.
    cluster: std::sync::OnceLock<Arc<dyn ClusterView>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.inner.store)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over an open store and log, signing tokens with `token_key`.
    pub fn new(
        store: Store,
        log: Arc<dyn MessageLog>,
        token_key: &[u8],
        settings: ApiSettings,
    ) -> Result<ApiState, PasswordError> {
        Ok(ApiState {
            inner: Arc::new(Inner {
                store,
                log,
                signer: TokenSigner::new(token_key),
                verifier: TokenVerifier::new(token_key),
                passwords: Passwords::new(settings.password)?,
                limiter: LoginLimiter::new(settings.login_limit),
                signups: IpLimiter::new(settings.signup_limit),
                settings,
                bound: std::sync::OnceLock::new(),
                cluster: std::sync::OnceLock::new(),
            }),
        })
    }

    /// A node's API per its configuration: opens the store (running
    /// migrations), loads or creates the token key, and loads recent
    /// revocations into the verifier.
    pub async fn open(
        config: &ApiConfig,
        data_dir: &Path,
        settings: ApiSettings,
        log: Arc<dyn MessageLog>,
    ) -> Result<ApiState, ApiInitError> {
        let store = Store::open(
            data_dir,
            config.database_url.as_deref(),
            EventBus::default(),
        )
        .await?;
        let key = match &config.token_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => load_or_create_secret(&data_dir.join(TOKEN_KEY_FILE))?,
        };
        let state = ApiState::new(store, log, &key, settings)?;
        state.sync_revocations().await?;
        Ok(state)
    }

    /// The relational store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The directory event bus (the store's).
    pub fn events(&self) -> &EventBus {
        self.inner.store.events()
    }

    /// The access token verifier; clones share its revocation set, so hand
    /// one to the gateway and it sees the API's revocations at once.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.inner.verifier
    }

    /// The access token signer.
    pub fn signer(&self) -> &TokenSigner {
        &self.inner.signer
    }

    /// The password hasher.
    pub fn passwords(&self) -> &Passwords {
        &self.inner.passwords
    }

    /// The message log read by the history endpoint.
    pub fn log(&self) -> &Arc<dyn MessageLog> {
        &self.inner.log
    }

    /// The settings in force.
    pub fn settings(&self) -> &ApiSettings {
        &self.inner.settings
    }

    /// Tells discovery where the gateway listens now that it does: the
    /// WebSocket address, and the QUIC address unless a public one is
    /// configured (`None`). Only the first call counts.
    pub fn gateway_bound(&self, ws_addr: SocketAddr, quic_addr: Option<SocketAddr>) {
        let mut d = self.inner.settings.discovery.clone();
        d.ws_addr = ws_addr;
        if let Some(q) = quic_addr {
            d.quic_addr = q.to_string();
        }
        let _ = self.inner.bound.set(d);
    }

    /// Makes discovery answer from the cluster's live nodes. Only the
    /// first call counts.
    pub fn join_cluster(&self, view: Arc<dyn ClusterView>) {
        let _ = self.inner.cluster.set(view);
    }

    /// The cluster's view, when this node is in one.
    pub fn cluster(&self) -> Option<&dyn ClusterView> {
        self.inner.cluster.get().map(|v| v.as_ref())
    }

    /// What discovery advertises: the gateway's bound addresses once
    /// known, else the configured ones.
    pub fn discovery(&self) -> &DiscoverySettings {
        self.inner
            .bound
            .get()
            .unwrap_or(&self.inner.settings.discovery)
    }

    pub(crate) fn signup_limiter(&self) -> &IpLimiter {
        &self.inner.signups
    }

    pub(crate) fn limiter(&self) -> &LoginLimiter {
        &self.inner.limiter
    }

    /// Revokes a session in the verifier until its last token has expired.
    pub(crate) fn forget_session_tokens(&self, session_id: u64, revoked_at: u64) {
        let until = revoked_at + self.inner.settings.access_token_ttl_secs + 1;
        self.inner.verifier.revoke(session_id, until);
    }

    /// Copies revocations recorded in the store (by any node) within the
    /// last access token lifetime into the verifier, and forgets those whose
    /// tokens have all expired. Returns how many are in force.
    pub async fn sync_revocations(&self) -> Result<usize, StoreError> {
        let now = now();
        let ttl = self.inner.settings.access_token_ttl_secs;
        for r in self
            .inner
            .store
            .revocations_since(now.saturating_sub(ttl + 1))
            .await?
        {
            self.forget_session_tokens(r.session_id, r.revoked_at);
        }
        self.inner.verifier.prune(now);
        Ok(self.inner.verifier.revoked_count())
    }

    /// Runs [`sync_revocations`](Self::sync_revocations) every
    /// `revocation_poll`, forever; spawn it on the API's runtime.
    pub async fn run_revocation_sync(self) {
        let mut tick = tokio::time::interval(self.inner.settings.revocation_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.sync_revocations().await {
                tracing::warn!("reading revocations: {e}");
            }
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Every `/v1` route, with the body limit and JSON 404/405 answers. Serve
/// it with `into_make_service_with_connect_info::<SocketAddr>()` so that
/// login rate limiting sees client IPs.
pub fn router(state: ApiState) -> Router {
    let limit = state.settings().max_body_bytes;
    Router::new()
        .route("/v1/signup", post(accounts::signup))
        .route("/v1/login", post(accounts::login))
        .route("/v1/token/refresh", post(accounts::refresh))
        .route("/v1/logout", post(accounts::logout))
        .route("/v1/me", get(me::get_me).patch(me::patch_me))
        .route("/v1/users", get(users::search))
        .route("/v1/users/{user_id}", get(users::get_user))
        .route("/v1/devices", get(devices::list).post(devices::register))
        .route(
            "/v1/devices/{device_id}",
            axum::routing::delete(devices::unregister),
        )
        .route("/v1/friends", get(friends::list))
        .route(
            "/v1/friends/{user_id}",
            post(friends::request).delete(friends::remove),
        )
        .route("/v1/friends/{user_id}/accept", post(friends::accept))
        .route("/v1/friends/{user_id}/decline", post(friends::decline))
        .route("/v1/dms", post(dms::open))
        .route("/v1/groups", post(groups::create))
        .route("/v1/groups/{channel_id}", patch(groups::rename))
        .route("/v1/groups/{channel_id}/members", post(groups::add_members))
        .route(
            "/v1/groups/{channel_id}/members/{user_id}",
            patch(groups::set_role).delete(groups::remove_member),
        )
        .route("/v1/groups/{channel_id}/leave", post(groups::leave))
        .route("/v1/channels", get(channels::list))
        .route("/v1/channels/{channel_id}", get(channels::get_channel))
        .route("/v1/channels/{channel_id}/members", get(channels::members))
        .route("/v1/channels/{channel_id}/messages", get(history::messages))
        .route(
            "/v1/channels/{channel_id}/receipts",
            get(receipts::receipts),
        )
        .route(
            "/v1/channels/{channel_id}/mute",
            get(mute::get_mute).put(mute::set_mute),
        )
        .route("/v1/gateway", get(discovery::gateway))
        .route("/v1/discovery", get(discovery::gateway))
        .route("/v1/openapi.json", get(openapi::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
