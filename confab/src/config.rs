//! The node's configuration: a TOML file, then `CONFAB_*` environment
//! variables, then command-line flags, each overriding the one before.
//! Unknown keys are errors, so a typo never silently falls back to a
//! default (pingora-style config structs with `validate()`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use confab_api::config::ApiConfig;
use confab_cluster::ClusterConfig;
use confab_gateway::config::{GatewayConfig, TlsConfig};
use confab_push::config::PushConfig;
use confab_storage::SyncPolicy;
use confab_types::InvalidConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
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
    pub push: PushConfig,
    /// Membership of a cluster on NATS (docs/cluster.md); empty: alone.
    pub cluster: ClusterConfig,
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
            push: PushConfig::default(),
            cluster: ClusterConfig::default(),
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
            return Err(InvalidConfig::new("data_dir", "must not be empty").into());
        }
        if !(1..=64).contains(&self.storage.writers) {
            return Err(InvalidConfig::new(
                "storage.writers",
                format!("{} is outside 1..=64", self.storage.writers),
            )
            .into());
        }
        self.api.validate()?;
        self.gateway.validate()?;
        self.tls.validate()?;
        self.push.validate()?;
        self.cluster.validate()?;
        // Every node of a cluster must see the same accounts and channels
        // and accept the same tokens.
        if self.cluster.enabled()
            && !self
                .api
                .database_url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        {
            return Err(InvalidConfig::new(
                "api.database_url",
                "a cluster's nodes share one PostgreSQL directory (postgres://…); \
                 each node's SQLite would be a directory of its own",
            )
            .into());
        }
        if self.cluster.enabled() && self.api.token_secret.is_none() {
            return Err(InvalidConfig::new(
                "api.token_secret",
                "a cluster's nodes must sign tokens with one shared key",
            )
            .into());
        }
        if self.cluster.enabled()
            && self.gateway.ws_addr.ip().is_unspecified()
            && self.api.public_ws_url.is_none()
        {
            return Err(InvalidConfig::new(
                "api.public_ws_url",
                "a cluster node listening on a wildcard address must say where other nodes' clients reach it",
            )
            .into());
        }
        let addrs = [
            ("api.addr", self.api.addr),
            ("gateway.ws_addr", self.gateway.ws_addr),
            ("metrics.addr", self.metrics.addr),
        ];
        for (i, (key, a)) in addrs.iter().enumerate() {
            for (other, b) in &addrs[i + 1..] {
                if a == b && a.port() != 0 {
                    return Err(
                        InvalidConfig::new(key, format!("{a} is also used by {other}")).into(),
                    );
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
    use confab_gateway::PlainWs;

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
                Err(ConfigError::Invalid(InvalidConfig { key: k, .. })) => assert_eq!(k, key),
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
            Err(ConfigError::Invalid(InvalidConfig {
                key: "storage.writers",
                ..
            }))
        ));
        let mut c = Config::default();
        c.metrics.addr = c.api.addr;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid(InvalidConfig {
                key: "api.addr",
                ..
            }))
        ));
    }

    #[test]
    fn a_cluster_node_must_say_where_it_is_reached() {
        let c = Config::from_toml(
            "[cluster]\nnats = [\"nats://10.0.0.1:4222\"]\nnode_id = \"n1\"\n\
             [gateway]\nws_addr = \"0.0.0.0:8081\"\n\
             [api]\ndatabase_url = \"postgres://db/confab\"\n\
             token_secret = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        assert!(c.cluster.enabled());
        let mut own_directory = c.clone();
        own_directory.api.database_url = None;
        match own_directory.validate() {
            Err(ConfigError::Invalid(InvalidConfig { key, .. })) => {
                assert_eq!(key, "api.database_url")
            }
            other => panic!("{other:?}"),
        }
        let mut own_key = c.clone();
        own_key.api.token_secret = None;
        match own_key.validate() {
            Err(ConfigError::Invalid(InvalidConfig { key, .. })) => {
                assert_eq!(key, "api.token_secret")
            }
            other => panic!("{other:?}"),
        }
        match c.validate() {
            Err(ConfigError::Invalid(InvalidConfig { key, .. })) => {
                assert_eq!(key, "api.public_ws_url")
            }
            other => panic!("{other:?}"),
        }
        let mut ok = c.clone();
        ok.api.public_ws_url = Some("wss://chat.example.com/v1/ws".into());
        ok.validate().unwrap();
        let mut bad = ok;
        bad.cluster.nats = vec!["10.0.0.1:4222".into()];
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Invalid(InvalidConfig {
                key: "cluster.nats",
                ..
            }))
        ));
        assert!(
            Config::from_toml("[cluster]\nnat = []\n").is_err(),
            "unknown keys refused"
        );
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
            Err(ConfigError::Invalid(InvalidConfig {
                key: "tls.cert_path",
                ..
            }))
        ));
        assert!(Config::from_toml("[gateway]\nplain_ws = \"sometimes\"\n").is_err());
    }
}
