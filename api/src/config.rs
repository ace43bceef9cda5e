//! The API's section of the node configuration (`[api]`), with the checks
//! types alone cannot make.

use std::net::SocketAddr;

use confab_types::InvalidConfig;
use serde::{Deserialize, Serialize};

/// The HTTP API's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// The relational store: `postgres://…` (several API nodes sharing one
    /// directory) or `sqlite:PATH`; unset, the SQLite file `confab.sqlite3`
    /// in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// HMAC key for access tokens, at least 32 bytes, the same on every node;
    /// unset, a key generated once into `data_dir/token.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// Lifetime of an access token; also how long a revoked session's
    /// tokens stay in the in-memory revocation set.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (extended on each use).
    pub refresh_token_ttl_secs: u64,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Login attempts allowed in a burst, per username and per client IP.
    pub login_burst: u32,
    /// Login attempts regained per minute, per username and per client IP.
    pub login_per_minute: u32,
    /// Signups allowed in a burst per client IP (each costs a password
    /// hash).
    pub signup_burst: u32,
    /// Signups regained per minute per client IP.
    pub signup_per_minute: u32,
    /// Connections one client address may hold open to the API at once.
    pub max_connections_per_address: u32,
    /// Whether clients on loopback addresses are spared the signup limit
    /// and the per-address connection cap (a load generator or the node's
    /// own tools on the same machine; a proxy on the same machine must
    /// then set `trust_forwarded_for`, or every client counts as loopback).
    pub exempt_loopback: bool,
    /// A request's header must arrive within this many seconds of the
    /// connection opening or of the previous response; an idle kept-alive
    /// connection closes after as long.
    pub header_timeout_secs: u64,
    /// A request's body and handler must finish within this many seconds
    /// (408 beyond).
    pub request_timeout_secs: u64,
    /// argon2id memory per password hash, in KiB.
    pub password_memory_kib: u32,
    /// argon2id passes per password hash.
    pub password_iterations: u32,
    /// Take the client IP for rate limiting from the last `X-Forwarded-For`
    /// entry (set it only behind a proxy that writes that header).
    pub trust_forwarded_for: bool,
    /// How often a node reads revocations made by other nodes.
    pub revocation_poll_secs: u64,
    /// WebSocket URL advertised by `GET /v1/gateway`; unset,
    /// `ws://<gateway.ws_addr>/v1/ws`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ws_url: Option<String>,
    /// QUIC address advertised by `GET /v1/gateway`; unset,
    /// `gateway.quic_addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_quic_addr: Option<String>,
    /// Serve the web client at `/` (off: the API alone, for a node whose
    /// users come through apps or a web client hosted elsewhere).
    pub web_client: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            addr: ([127, 0, 0, 1], 8080).into(),
            database_url: None,
            token_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            max_body_bytes: 64 * 1024,
            login_burst: 10,
            login_per_minute: 5,
            signup_burst: 5,
            signup_per_minute: 5,
            max_connections_per_address: 256,
            exempt_loopback: true,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            password_memory_kib: 19 * 1024,
            password_iterations: 2,
            trust_forwarded_for: false,
            revocation_poll_secs: 5,
            public_ws_url: None,
            public_quic_addr: None,
            web_client: true,
        }
    }
}

impl ApiConfig {
    /// Checks values that types alone do not constrain.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |key: &'static str, message: String| Err(InvalidConfig::new(key, message));
        if let Some(url) = &self.database_url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return invalid(
                    "api.database_url",
                    "must start with sqlite:, postgres:// or postgresql://".into(),
                );
            }
        }
        if let Some(secret) = &self.token_secret {
            if secret.len() < 32 {
                return invalid(
                    "api.token_secret",
                    format!("{} bytes; at least 32 are needed", secret.len()),
                );
            }
        }
        if !(1..=86_400).contains(&self.access_token_ttl_secs) {
            return invalid(
                "api.access_token_ttl_secs",
                format!("{} is outside 1..=86400", self.access_token_ttl_secs),
            );
        }
        if self.refresh_token_ttl_secs < self.access_token_ttl_secs
            || self.refresh_token_ttl_secs > 365 * 86_400
        {
            return invalid(
                "api.refresh_token_ttl_secs",
                format!(
                    "{} is outside api.access_token_ttl_secs..=31536000",
                    self.refresh_token_ttl_secs
                ),
            );
        }
        if !(1024..=16 << 20).contains(&self.max_body_bytes) {
            return invalid(
                "api.max_body_bytes",
                format!("{} is outside 1024..=16777216", self.max_body_bytes),
            );
        }
        if self.login_burst == 0 {
            return invalid("api.login_burst", "must be at least 1".into());
        }
        if self.login_per_minute == 0 {
            return invalid("api.login_per_minute", "must be at least 1".into());
        }
        if self.signup_burst == 0 {
            return invalid("api.signup_burst", "must be at least 1".into());
        }
        if self.signup_per_minute == 0 {
            return invalid("api.signup_per_minute", "must be at least 1".into());
        }
        if self.max_connections_per_address == 0 {
            return invalid(
                "api.max_connections_per_address",
                "must be at least 1".into(),
            );
        }
        if !(1..=3600).contains(&self.header_timeout_secs) {
            return invalid(
                "api.header_timeout_secs",
                format!("{} is outside 1..=3600", self.header_timeout_secs),
            );
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            return invalid(
                "api.request_timeout_secs",
                format!("{} is outside 1..=3600", self.request_timeout_secs),
            );
        }
        if !(8..=1 << 20).contains(&self.password_memory_kib) {
            return invalid(
                "api.password_memory_kib",
                format!("{} is outside 8..=1048576", self.password_memory_kib),
            );
        }
        if !(1..=16).contains(&self.password_iterations) {
            return invalid(
                "api.password_iterations",
                format!("{} is outside 1..=16", self.password_iterations),
            );
        }
        if !(1..=3600).contains(&self.revocation_poll_secs) {
            return invalid(
                "api.revocation_poll_secs",
                format!("{} is outside 1..=3600", self.revocation_poll_secs),
            );
        }
        if let Some(url) = &self.public_ws_url {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return invalid(
                    "api.public_ws_url",
                    "must start with ws:// or wss://".into(),
                );
            }
        }
        Ok(())
    }
}
