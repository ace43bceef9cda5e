//! What a client is started with, and the checks that run before anything
//! touches the network, so that a typo fails in `Client::connect` and not
//! as an endless reconnect loop.

use confab_types::{DeviceId, InboxSeq};
use std::net::IpAddr;
use std::time::Duration;

use confab_protocol::binary::DEFAULT_MAX_FRAME_BYTES;

use crate::error::ClientError;
use crate::tls::{BuiltTls, TlsOptions};
use crate::url::ServerUrl;

/// How a [`Client`](crate::Client) connects and resumes.
///
/// Build one with [`ClientConfig::new`] and set the other fields as needed:
///
/// ```
/// use confab_client::{ClientConfig, DeviceId, InboxSeq};
///
/// let mut config = ClientConfig::new("ws://127.0.0.1:8081/v1/ws", "token", DeviceId(7));
/// config.inbox_cursor = InboxSeq(42); // saved from the last run
/// config.first_client_msg_id = 1_000; // likewise
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server: `ws://host:port/v1/ws`, `wss://host:port/v1/ws` or
    /// `quic://host:port` (see [`ServerUrl::parse`]).
    pub url: String,
    /// Bearer access token from the HTTP API (`POST /v1/login`). Replace it
    /// with [`Client::set_token`](crate::Client::set_token) after a refresh.
    pub token: String,
    /// This installation's device id (from `POST /v1/devices`, or any id
    /// stable per installation).
    pub device_id: DeviceId,
    /// The inbox cursor saved from the last run ([`Events::cursor`]); 0 for
    /// a new device, which then receives its whole inbox.
    ///
    /// [`Events::cursor`]: crate::Events::cursor
    pub inbox_cursor: InboxSeq,
    /// The first client message id this client uses. Ids must stay unique
    /// per device for the life of the installation, so save
    /// [`Client::next_client_msg_id`](crate::Client::next_client_msg_id)
    /// and pass it back here. Must not be 0.
    pub first_client_msg_id: u64,
    /// TLS settings for `wss://` and `quic://`.
    pub tls: TlsOptions,
    /// Most sends waiting for their acknowledgement at once; beyond it
    /// [`Client::send`](crate::Client::send) fails with
    /// [`ClientError::TooManyPending`].
    pub max_pending_sends: usize,
    /// How long one connection attempt (TCP or QUIC, TLS and WebSocket
    /// handshakes) may take before it counts as failed.
    pub connect_timeout: Duration,
    /// Largest frame accepted from the server, in bytes; at least the
    /// protocol's default of 1 MiB, and at least what the server announces
    /// in `Welcome.limits.max_frame_bytes`.
    pub max_frame_bytes: usize,
    /// The local address connections come from (the port is picked by the
    /// system); `None` lets the system choose. One source address reaches
    /// one server port through at most ~28,000 ephemeral ports, so a load
    /// generator holding more connections spreads them over several
    /// loopback addresses (127.0.0.x). Ignored for a server of the other
    /// address family.
    pub local_ip: Option<IpAddr>,
    /// Other servers of the same cluster (same forms as `url`). After an
    /// attempt on the current server fails (a node that died or stopped),
    /// the next attempt goes to the next of `url` and these, in turn; the
    /// session resumes from its cursor wherever it lands, and unacknowledged
    /// sends go again with their ids.
    pub fallback_urls: Vec<String>,
}

impl ClientConfig {
    /// A configuration with default limits, a new device's cursor (0) and
    /// client message ids from 1.
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        device_id: DeviceId,
    ) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            token: token.into(),
            device_id,
            inbox_cursor: InboxSeq(0),
            first_client_msg_id: 1,
            tls: TlsOptions::default(),
            max_pending_sends: 1024,
            connect_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 << 20,
            local_ip: None,
            fallback_urls: Vec::new(),
        }
    }

    /// Checks every field and prepares the transport settings (reads the
    /// TLS roots once, for all reconnects).
    pub(crate) fn validate(&self) -> Result<Validated, ClientError> {
        let url = ServerUrl::parse(&self.url)?;
        let bad = |why: &str| Err(ClientError::InvalidConfig(why.to_owned()));
        if self.token.is_empty() {
            return bad("the token is empty");
        }
        if self.token.chars().any(char::is_control) {
            return bad("the token holds control characters");
        }
        if self.first_client_msg_id == 0 {
            return bad("first_client_msg_id must not be 0 (0 is not a valid client message id)");
        }
        if self.max_pending_sends == 0 {
            return bad("max_pending_sends must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must not be zero");
        }
        if self.max_frame_bytes < DEFAULT_MAX_FRAME_BYTES {
            return bad("max_frame_bytes must be at least the protocol's default of 1 MiB");
        }
        let tls_for = |url: &ServerUrl| -> Result<Option<BuiltTls>, ClientError> {
            if url.transport.is_tls() {
                Ok(Some(self.tls.build(&url.host)?))
            } else {
                Ok(None)
            }
        };
        let tls = tls_for(&url)?;
        let mut servers = vec![(url.clone(), tls.clone())];
        for other in &self.fallback_urls {
            let other = ServerUrl::parse(other)?;
            let tls = tls_for(&other)?;
            servers.push((other, tls));
        }
        Ok(Validated {
            url,
            tls,
            servers,
            connect_timeout: self.connect_timeout,
            max_frame_bytes: self.max_frame_bytes,
            local_ip: self.local_ip,
        })
    }
}

/// What the transports need, checked.
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    /// The server the next attempt goes to.
    pub url: ServerUrl,
    pub tls: Option<BuiltTls>,
    /// `url` and the fallbacks, in turn.
    pub servers: Vec<(ServerUrl, Option<BuiltTls>)>,
    pub connect_timeout: Duration,
    pub max_frame_bytes: usize,
    pub local_ip: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::Transport;

    fn invalid(config: &ClientConfig) -> String {
        match config.validate() {
            Err(ClientError::InvalidConfig(why)) => why,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_websocket_config_needs_no_tls() {
        let v = ClientConfig::new("ws://127.0.0.1:8081/v1/ws", "t", DeviceId(1))
            .validate()
            .unwrap();
        assert_eq!(v.url.transport, Transport::Ws);
        assert!(v.tls.is_none());
        assert_eq!(v.max_frame_bytes, 16 << 20);
    }

    #[test]
    fn tls_transports_build_their_tls_config() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        for url in ["wss://localhost:8444/v1/ws", "quic://localhost:8443"] {
            let mut c = ClientConfig::new(url, "t", DeviceId(1));
            c.tls = TlsOptions::new()
                .without_system_roots()
                .add_root_der(cert.cert.der().to_vec());
            let v = c.validate().unwrap();
            assert!(v.url.transport.is_tls());
            assert_eq!(v.tls.unwrap().server_name_str(), "localhost");
            // Without any root the TLS transports refuse to start.
            c.tls = TlsOptions::new().without_system_roots();
            assert!(matches!(c.validate(), Err(ClientError::Tls(_))));
        }
    }

    #[test]
    fn bad_values_are_refused_before_connecting() {
        let base = ClientConfig::new("ws://h:1", "t", DeviceId(1));
        assert!(matches!(
            ClientConfig::new("tcp://h:1", "t", DeviceId(1)).validate(),
            Err(ClientError::InvalidUrl(_))
        ));
        let mut c = base.clone();
        c.token = String::new();
        assert!(invalid(&c).contains("token"));
        c.token = "a\nb".into();
        assert!(invalid(&c).contains("control"));
        let mut c = base.clone();
        c.first_client_msg_id = 0;
        assert!(invalid(&c).contains("first_client_msg_id"));
        let mut c = base.clone();
        c.max_pending_sends = 0;
        assert!(invalid(&c).contains("max_pending_sends"));
        let mut c = base.clone();
        c.connect_timeout = Duration::ZERO;
        assert!(invalid(&c).contains("connect_timeout"));
        let mut c = base.clone();
        c.max_frame_bytes = 1000;
        assert!(invalid(&c).contains("max_frame_bytes"));
    }
}
