//! Who may use plain `ws://`: the gateway enforces it, and the API's
//! discovery advertises `ws://` only to the clients it allows.

/// Who may connect with plain `ws://` (unencrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlainWs {
    /// Clients on loopback addresses only (development on one machine).
    Loopback,
    /// Everyone (behind a TLS-terminating proxy, say).
    Always,
    /// No one: TLS is required.
    Never,
}

impl PlainWs {
    /// Whether a client at `ip` may connect without TLS.
    pub fn allows(self, ip: std::net::IpAddr) -> bool {
        match self {
            PlainWs::Always => true,
            PlainWs::Never => false,
            PlainWs::Loopback => match ip {
                std::net::IpAddr::V4(v4) => v4.is_loopback(),
                std::net::IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            },
        }
    }
}
