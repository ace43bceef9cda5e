//! The node's configuration: a TOML file, then `CONFAB_*` environment
//! variables, then command-line flags, each overriding the one before.
//! Unknown keys are errors, so a typo never silently falls back to a
//! default (pingora-style config structs with `validate()`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use confab_storage::SyncPolicy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::gateway::{IoMode, PlainWs, Settings as GatewaySettings};

/// Why a configuration was refused; printed on one line, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where, on one line.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid config value `{key}`: {message}")]
    Invalid {
        /// The key, e.g. `storage.writers`.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where RocksDB, SQLite and generated keys live.
    pub data_dir: PathBuf,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The stateful gateway (WebSocket and QUIC).
    pub gateway: GatewayConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The message log.
    pub storage: StorageConfig,
    /// TLS for `wss://` and QUIC.
    pub tls: TlsConfig,
    /// Push notifications for members with no device online.
    pub push: crate::push::config::PushConfig,
}

/// Where the TLS certificate and key are. Unset, a self-signed pair is
/// generated into `<data_dir>/tls/` on first start and reused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
}

impl TlsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_path.is_some() != self.key_path.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls.cert_path",
                message: "tls.cert_path and tls.key_path go together: set both or neither".into(),
            });
        }
        Ok(())
    }
}

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
}

/// The gateway's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// WebSocket listen address.
    pub ws_addr: SocketAddr,
    /// QUIC listen address (UDP).
    pub quic_addr: SocketAddr,
    /// Gateway threads (one runtime each); 0 means one per CPU.
    pub cores: usize,
    /// `uring` (io_uring, falling back to epoll where the kernel or the
    /// container refuses it) or `epoll`.
    pub io: IoMode,
    /// Pin each core thread to a CPU where the host allows it.
    pub pin_cores: bool,
    /// Heartbeat interval announced to clients; a device silent for three
    /// intervals is dropped.
    pub heartbeat_interval_ms: u64,
    /// A user whose last device left stays online this long, so a quick
    /// reconnect publishes nothing.
    pub presence_grace_ms: u64,
    /// Bytes a connection may have queued before it is closed as a slow
    /// consumer.
    pub outbound_limit_bytes: usize,
    /// Sustained sends per second per user.
    pub send_rate_per_s: u32,
    /// Sends a user may make in a burst.
    pub send_burst: u32,
    /// Who may use plain `ws://` on `ws_addr` (TLS clients are told apart
    /// by their first byte): `loopback` (default), `always` or `never`.
    pub plain_ws: PlainWs,
}

impl GatewayConfig {
    /// The core count to run with.
    pub fn effective_cores(&self) -> usize {
        if self.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.cores
        }
    }

    /// The gateway's runtime settings.
    pub fn settings(&self) -> GatewaySettings {
        GatewaySettings {
            ws_addr: self.ws_addr,
            cores: self.effective_cores(),
            io: self.io,
            pin_cores: self.pin_cores,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            presence_grace: Duration::from_millis(self.presence_grace_ms),
            outbound_limit_bytes: self.outbound_limit_bytes,
            send_rate_per_s: self.send_rate_per_s,
            send_burst: self.send_burst,
            plain_ws: self.plain_ws,
            ..GatewaySettings::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, message: String| Err(ConfigError::Invalid { key, message });
        if self.cores > 1024 {
            return invalid(
                "gateway.cores",
                format!("{} is outside 0..=1024", self.cores),
            );
        }
        if !(100..=600_000).contains(&self.heartbeat_interval_ms) {
            return invalid(
                "gateway.heartbeat_interval_ms",
                format!("{} is outside 100..=600000", self.heartbeat_interval_ms),
            );
        }
        if self.presence_grace_ms > 600_000 {
            return invalid(
                "gateway.presence_grace_ms",
                format!("{} is outside 0..=600000", self.presence_grace_ms),
            );
        }
        // A connection must be able to hold at least one largest frame.
        if !(2 << 20..=1 << 30).contains(&self.outbound_limit_bytes) {
            return invalid(
                "gateway.outbound_limit_bytes",
                format!(
                    "{} is outside 2097152..=1073741824",
                    self.outbound_limit_bytes
                ),
            );
        }
        if self.send_rate_per_s == 0 || self.send_burst == 0 {
            return invalid(
                "gateway.send_rate_per_s",
                "send_rate_per_s and send_burst must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// The metrics endpoint's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Listen address for `/metrics`.
    pub addr: SocketAddr,
}

/// The message log's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `batch` (fsync once per group commit before acks), `interval:<ms>`
    /// or `none`.
    #[serde(serialize_with = "display_string", deserialize_with = "from_string")]
    pub sync: SyncPolicy,
    /// Storage writer threads; channels are sharded across them.
    pub writers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./confab-data"),
            api: ApiConfig::default(),
            gateway: GatewayConfig::default(),
            metrics: MetricsConfig::default(),
            storage: StorageConfig::default(),
            tls: TlsConfig::default(),
            push: crate::push::config::PushConfig::default(),
        }
    }
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
            password_memory_kib: 19 * 1024,
            password_iterations: 2,
            trust_forwarded_for: false,
            revocation_poll_secs: 5,
            public_ws_url: None,
            public_quic_addr: None,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let d = GatewaySettings::default();
        GatewayConfig {
            ws_addr: ([127, 0, 0, 1], 8081).into(),
            quic_addr: ([127, 0, 0, 1], 8443).into(),
            cores: 0,
            io: IoMode::Uring,
            pin_cores: true,
            heartbeat_interval_ms: d.heartbeat_interval.as_millis() as u64,
            presence_grace_ms: d.presence_grace.as_millis() as u64,
            outbound_limit_bytes: d.outbound_limit_bytes,
            send_rate_per_s: d.send_rate_per_s,
            send_burst: d.send_burst,
            plain_ws: d.plain_ws,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: ([127, 0, 0, 1], 9090).into(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            sync: SyncPolicy::default(),
            writers: 1,
        }
    }
}

fn display_string<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn from_string<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl ApiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, message: String| Err(ConfigError::Invalid { key, message });
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

impl Config {
    /// Reads a TOML file (missing keys take their defaults).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is one line with the line number.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            // Newlines before the span, plus one: right also when the span
            // starts a line (`lines()` would not count that line yet).
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let msg = e.message().replace('\n', " ");
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })
    }

    /// Checks values that types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "data_dir",
                message: "must not be empty".into(),
            });
        }
        if !(1..=64).contains(&self.storage.writers) {
            return Err(ConfigError::Invalid {
                key: "storage.writers",
                message: format!("{} is outside 1..=64", self.storage.writers),
            });
        }
        self.api.validate()?;
        self.gateway.validate()?;
        self.tls.validate()?;
        self.push.validate()?;
        let addrs = [
            ("api.addr", self.api.addr),
            ("gateway.ws_addr", self.gateway.ws_addr),
            ("metrics.addr", self.metrics.addr),
        ];
        for (i, (key, a)) in addrs.iter().enumerate() {
            for (other, b) in &addrs[i + 1..] {
                if a == b && a.port() != 0 {
                    return Err(ConfigError::Invalid {
                        key,
                        message: format!("{a} is also used by {other}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ports() {
        let c = Config::default();
        assert_eq!(c.api.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.gateway.ws_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(c.gateway.quic_addr.to_string(), "127.0.0.1:8443");
        assert_eq!(c.metrics.addr.to_string(), "127.0.0.1:9090");
        assert_eq!(c.data_dir, PathBuf::from("./confab-data"));
        assert_eq!(c.storage.sync, SyncPolicy::Batch);
        c.validate().unwrap();
    }

    #[test]
    fn partial_file_keeps_defaults_and_round_trips() {
        let c = Config::from_toml("[storage]\nsync = \"interval:5\"\nwriters = 2\n").unwrap();
        assert_eq!(c.storage.writers, 2);
        assert_eq!(c.api, ApiConfig::default());
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_their_line() {
        let e = Config::from_toml("data_dir = \"x\"\n[api]\nadr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("adr"), "{e}");
        let e = Config::from_toml("[storage]\nsync = \"sometimes\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("sometimes"), "{e}");
        let e = Config::from_toml("[metrics]\naddr = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn api_settings_have_safe_defaults_and_are_checked() {
        let c = Config::from_toml(
            "[api]\ndatabase_url = \"postgres://u@localhost/confab\"\nlogin_burst = 3\n",
        )
        .unwrap();
        assert_eq!(
            c.api.database_url.as_deref(),
            Some("postgres://u@localhost/confab")
        );
        assert_eq!(c.api.login_burst, 3);
        assert_eq!(c.api.access_token_ttl_secs, 900);
        c.validate().unwrap();
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);

        let refused = |edit: fn(&mut ApiConfig), key: &str| {
            let mut c = Config::default();
            edit(&mut c.api);
            match c.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        };
        refused(
            |a| a.database_url = Some("mysql://x".into()),
            "api.database_url",
        );
        refused(
            |a| a.token_secret = Some("short".into()),
            "api.token_secret",
        );
        refused(|a| a.access_token_ttl_secs = 0, "api.access_token_ttl_secs");
        refused(
            |a| a.refresh_token_ttl_secs = 10,
            "api.refresh_token_ttl_secs",
        );
        refused(|a| a.max_body_bytes = 10, "api.max_body_bytes");
        refused(|a| a.login_burst = 0, "api.login_burst");
        refused(|a| a.login_per_minute = 0, "api.login_per_minute");
        refused(|a| a.password_memory_kib = 4, "api.password_memory_kib");
        refused(|a| a.password_iterations = 0, "api.password_iterations");
        refused(|a| a.revocation_poll_secs = 0, "api.revocation_poll_secs");
        refused(
            |a| a.public_ws_url = Some("http://x".into()),
            "api.public_ws_url",
        );
        let mut ok = Config::default();
        ok.api.token_secret = Some("x".repeat(32));
        ok.api.database_url = Some("sqlite:/tmp/x.db".into());
        ok.api.public_ws_url = Some("wss://chat.example.com/v1/ws".into());
        ok.validate().unwrap();
    }

    #[test]
    fn validate_catches_ranges_and_clashes() {
        let mut c = Config::default();
        c.storage.writers = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "storage.writers",
                ..
            })
        ));
        let mut c = Config::default();
        c.metrics.addr = c.api.addr;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "api.addr",
                ..
            })
        ));
    }

    #[test]
    fn tls_and_plain_ws_keys_parse_and_a_lone_cert_is_refused() {
        let c = Config::from_toml(
            "[tls]\ncert_path = \"/etc/c.pem\"\nkey_path = \"/etc/k.pem\"\n[gateway]\nplain_ws = \"never\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.gateway.plain_ws, PlainWs::Never);
        assert_eq!(c.gateway.settings().plain_ws, PlainWs::Never);
        assert_eq!(Config::default().gateway.plain_ws, PlainWs::Loopback);
        let c = Config::from_toml("[tls]\ncert_path = \"/etc/c.pem\"\n").unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "tls.cert_path",
                ..
            })
        ));
        assert!(Config::from_toml("[gateway]\nplain_ws = \"sometimes\"\n").is_err());
    }
}
