//! The gateway's tunables, fixed when it starts: what `[gateway]` sets,
//! plus the limits the protocol announces in `Welcome`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::frame::Limits;
pub use confab_types::PlainWs;

use serde::{Deserialize, Serialize};

/// The gateway's tunables, fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// WebSocket listen address.
    pub ws_addr: SocketAddr,
    /// WebSocket path.
    pub ws_path: String,
    /// Number of cores (threads).
    pub cores: usize,
    /// Requested IO backend (epoll is used when io_uring is unavailable).
    pub io: IoMode,
    /// Pin core threads to CPUs where allowed.
    pub pin_cores: bool,
    /// Time allowed from TCP accept to a verified `Hello`.
    pub handshake_timeout: Duration,
    /// WebSocket handshakes (TLS, upgrade, `Hello`) a core runs at once;
    /// further connections wait in the listen backlog. Bounds what a
    /// reconnect storm allocates at once: handshake state is short-lived,
    /// and thousands of them interleaved with the sessions that stay
    /// leave the heap fragmented after they are freed (19,000 sessions
    /// opened all at once held 3,483 bytes each with no bound, about
    /// 1,800 with 64 per core, as many as when opened 512 at a time). A
    /// client that stalls its handshake holds a slot for at most
    /// `handshake_timeout`.
    pub max_handshakes: usize,
    /// Heartbeat interval announced in `Welcome`; silence for three drops
    /// the device.
    pub heartbeat_interval: Duration,
    /// How long a user whose last device left still reads as online (a
    /// reconnect within it publishes nothing).
    pub presence_grace: Duration,
    /// Largest protocol frame.
    pub max_frame_bytes: usize,
    /// Longest text in characters.
    pub max_text_chars: usize,
    /// Most entries per batch.
    pub max_page: u32,
    /// Most users per presence request.
    pub max_presence_users: u32,
    /// Sustained sends per second per user.
    pub send_rate_per_s: u32,
    /// Sends allowed in a burst per user.
    pub send_burst: u32,
    /// Least time between two typing notices of a user in a channel.
    pub typing_interval: Duration,
    /// Bytes a connection may have queued before it is a slow consumer.
    pub outbound_limit_bytes: usize,
    /// TLS for `wss://` on the WebSocket port (told apart from plain HTTP
    /// by the first byte); `None` serves plain `ws://` only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Who may use plain `ws://`.
    pub plain_ws: PlainWs,
    /// The node's connection admission (its budget is shared with the
    /// API's listener).
    pub admission: confab_admission::Admission,
    /// WebSocket connections one client address may hold open at once.
    pub max_connections_per_address: u32,
    /// Whether loopback clients are spared `max_connections_per_address`.
    pub exempt_loopback: bool,
    /// The QUIC transport; `None` serves WebSocket only.
    pub quic: Option<QuicSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ws_addr: ([127, 0, 0, 1], 8081).into(),
            ws_path: "/v1/ws".into(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            io: IoMode::Uring,
            pin_cores: true,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 64,
            heartbeat_interval: Duration::from_secs(30),
            presence_grace: Duration::from_secs(5),
            max_frame_bytes: confab_protocol::binary::DEFAULT_MAX_FRAME_BYTES,
            max_text_chars: confab_protocol::limits::MAX_TEXT_CHARS,
            max_page: 200,
            max_presence_users: 500,
            send_rate_per_s: 20,
            send_burst: 50,
            typing_interval: Duration::from_secs(2),
            outbound_limit_bytes: 4 << 20,
            tls: None,
            plain_ws: PlainWs::Loopback,
            admission: confab_admission::Admission::new(usize::MAX),
            max_connections_per_address: 10_000,
            exempt_loopback: true,
            quic: None,
        }
    }
}

impl Settings {
    /// The limits announced in `Welcome`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes as u32,
            max_text_chars: self.max_text_chars as u32,
            max_group_members: 100,
            max_page: self.max_page,
            max_presence_users: self.max_presence_users,
            send_rate_per_s: self.send_rate_per_s,
        }
    }
}

/// The QUIC settings every core shares.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// UDP listen address.
    pub addr: SocketAddr,
    /// TLS (ALPN `confab/1`, TLS 1.3).
    pub tls: Arc<rustls::ServerConfig>,
    /// The stateless reset key ([`crate::transport::quic::reset_key`]);
    /// `None`: a new one per start, so clients of a previous process
    /// notice only at their idle timeout.
    pub reset_key: Option<Arc<[u8; crate::transport::quic::reset_key::RESET_KEY_LEN]>>,
}

/// Which IO backend the cores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// io_uring through tokio-uring.
    Uring,
    /// epoll through a tokio current-thread runtime.
    Epoll,
}

impl IoMode {
    /// The metric label and config value.
    pub fn label(self) -> &'static str {
        match self {
            IoMode::Uring => "uring",
            IoMode::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uring" => Ok(IoMode::Uring),
            "epoll" => Ok(IoMode::Epoll),
            other => Err(format!(
                "unknown io mode `{other}` (expected uring or epoll)"
            )),
        }
    }
}
