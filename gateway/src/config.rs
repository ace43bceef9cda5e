//! The gateway's sections of the node configuration (`[gateway]` and
//! `[tls]`), with the checks types alone cannot make, and the runtime
//! [`Settings`] they become.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use confab_types::InvalidConfig;
use serde::{Deserialize, Serialize};

use crate::settings::IoMode;
use crate::settings::{PlainWs, Settings};

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
    /// WebSocket connections one client address may hold open at once
    /// (carrier NAT puts many phones behind one address: keep it high).
    pub max_connections_per_address: u32,
    /// Whether clients on loopback addresses are spared that cap (a load
    /// generator on the node's own machine).
    pub exempt_loopback: bool,
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
    pub fn settings(&self) -> Settings {
        Settings {
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
            max_connections_per_address: self.max_connections_per_address,
            exempt_loopback: self.exempt_loopback,
            ..Settings::default()
        }
    }

    /// Checks values that types alone do not constrain.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |key: &'static str, message: String| Err(InvalidConfig::new(key, message));
        if self.max_connections_per_address == 0 {
            return invalid(
                "gateway.max_connections_per_address",
                "must be at least 1".into(),
            );
        }
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

impl Default for GatewayConfig {
    fn default() -> Self {
        let d = Settings::default();
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
            max_connections_per_address: d.max_connections_per_address,
            exempt_loopback: d.exempt_loopback,
        }
    }
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
    /// Checks that the certificate and key come together.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.cert_path.is_some() != self.key_path.is_some() {
            return Err(InvalidConfig::new(
                "tls.cert_path",
                "tls.cert_path and tls.key_path go together: set both or neither",
            ));
        }
        Ok(())
    }
}
