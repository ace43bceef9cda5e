//! Service discovery: `GET /v1/gateway` (also `GET /v1/discovery`) tells a
//! client where to open its WebSocket or QUIC connection.
//!
//! A one-node deployment advertises itself. The answer already has the
//! shape for several gateways: `websocket_url`/`quic_addr` at the top are
//! the one to use now, `gateways` lists every candidate in order of
//! preference, so a later version can choose by load or by user shard
//! without changing clients. No authentication: a client may ask before
//! logging in. Only what the node serves to the asking client is
//! advertised: plain `ws://` only where the gateway's `plain_ws` policy
//! lets that client use it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Serialize;

use super::extract::ClientIp;
use super::{ApiState, DiscoverySettings};

/// One gateway's addresses.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GatewayEndpoint {
    /// The URL to connect to: `ws://host:port/v1/ws` where the gateway
    /// serves this client plain `ws://`, else `wss://…`.
    pub websocket_url: String,
    /// The same port over TLS: `wss://host:port/v1/ws`.
    pub secure_websocket_url: String,
    /// `host:port` (UDP) for QUIC.
    pub quic_addr: String,
}

/// The discovery answer.
#[derive(Debug, Serialize)]
pub struct Discovery {
    websocket_url: String,
    secure_websocket_url: String,
    quic_addr: String,
    gateways: Vec<GatewayEndpoint>,
}

/// The host part of a `Host` header (`example.com:8080` → `example.com`,
/// `[::1]:8080` → `[::1]`).
fn host_only(host: &str) -> Option<&str> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    if host.starts_with('[') {
        return host.find(']').map(|end| &host[..=end]);
    }
    Some(host.split(':').next().unwrap_or(host))
}

/// `addr` as a host to connect to: a wildcard listen address (0.0.0.0,
/// [::]) is replaced by the host the client used to reach the API.
fn advertised(addr: SocketAddr, request_host: Option<&str>) -> String {
    if addr.ip().is_unspecified() {
        let host = request_host.unwrap_or("localhost");
        format!("{host}:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// This node's gateway, as seen by a client at `client` that reached the
/// API at `request_host`.
pub fn endpoint(
    settings: &DiscoverySettings,
    request_host: Option<&str>,
    client: IpAddr,
) -> GatewayEndpoint {
    let host = advertised(settings.ws_addr, request_host);
    let scheme = if settings.plain_ws.allows(client) {
        "ws"
    } else {
        "wss"
    };
    let websocket_url = settings
        .websocket_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{host}/v1/ws"));
    let secure_websocket_url = match &settings.websocket_url {
        Some(url) if url.starts_with("wss://") => url.clone(),
        _ => format!("wss://{host}/v1/ws"),
    };
    let quic_addr = match settings.quic_addr.parse::<SocketAddr>() {
        Ok(addr) => advertised(addr, request_host),
        Err(_) => settings.quic_addr.clone(),
    };
    GatewayEndpoint {
        websocket_url,
        secure_websocket_url,
        quic_addr,
    }
}

/// One live node of a cluster, as the cluster's membership knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGateway {
    /// `ws://host:port/v1/ws`.
    pub websocket_url: String,
    /// `wss://host:port/v1/ws`.
    pub secure_websocket_url: String,
    /// `host:port` for QUIC.
    pub quic_addr: String,
}

/// The live nodes of the cluster this node belongs to.
pub trait ClusterView: Send + Sync {
    /// Every live node's gateway, in order of preference (least loaded
    /// first); empty when the view is not known yet.
    fn gateways(&self) -> Vec<ClusterGateway>;
}

/// A cluster node's gateway as advertised to `client`: plain `ws://` only
/// where the gateways' `plain_ws` policy lets that client use it.
fn cluster_endpoint(
    g: ClusterGateway,
    plain_ws: crate::PlainWs,
    client: IpAddr,
) -> GatewayEndpoint {
    GatewayEndpoint {
        websocket_url: if plain_ws.allows(client) {
            g.websocket_url
        } else {
            g.secure_websocket_url.clone()
        },
        secure_websocket_url: g.secure_websocket_url,
        quic_addr: g.quic_addr,
    }
}

/// Where to connect: in a cluster, the least-loaded live node first and
/// every live node in `gateways`; alone, this node.
pub async fn gateway(
    State(state): State<ApiState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Json<Discovery> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_only);
    let settings = state.discovery();
    let mut gateways: Vec<GatewayEndpoint> = state
        .cluster()
        .map(|view| view.gateways())
        .unwrap_or_default()
        .into_iter()
        .map(|g| cluster_endpoint(g, settings.plain_ws, client))
        .collect();
    if gateways.is_empty() {
        gateways.push(endpoint(settings, host, client));
    }
    let me = gateways[0].clone();
    Json(Discovery {
        websocket_url: me.websocket_url,
        secure_websocket_url: me.secure_websocket_url,
        quic_addr: me.quic_addr,
        gateways,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PlainWs;

    fn settings(ws: &str, quic: &str) -> DiscoverySettings {
        DiscoverySettings {
            websocket_url: None,
            ws_addr: ws.parse().unwrap(),
            quic_addr: quic.into(),
            plain_ws: PlainWs::Loopback,
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

    #[test]
    fn concrete_addresses_are_advertised_as_they_are() {
        let e = endpoint(
            &settings("127.0.0.1:8081", "127.0.0.1:8443"),
            Some("api.example"),
            LOCAL,
        );
        assert_eq!(e.websocket_url, "ws://127.0.0.1:8081/v1/ws");
        assert_eq!(e.secure_websocket_url, "wss://127.0.0.1:8081/v1/ws");
        assert_eq!(e.quic_addr, "127.0.0.1:8443");
    }

    #[test]
    fn wildcard_addresses_take_the_host_the_client_used() {
        let e = endpoint(
            &settings("0.0.0.0:8081", "[::]:8443"),
            Some("chat.example"),
            REMOTE,
        );
        // Plain ws:// is loopback-only: a remote client is sent to wss://.
        assert_eq!(e.websocket_url, "wss://chat.example:8081/v1/ws");
        assert_eq!(e.secure_websocket_url, "wss://chat.example:8081/v1/ws");
        assert_eq!(e.quic_addr, "chat.example:8443");
        assert_eq!(host_only("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_only("chat.example:8080"), Some("chat.example"));
        assert_eq!(host_only(" "), None);
    }

    #[test]
    fn a_configured_public_url_wins() {
        let mut s = settings("0.0.0.0:8081", "quic.example:443");
        s.websocket_url = Some("wss://chat.example/v1/ws".into());
        let e = endpoint(&s, None, REMOTE);
        assert_eq!(e.websocket_url, "wss://chat.example/v1/ws");
        assert_eq!(e.quic_addr, "quic.example:443");
    }

    #[test]
    fn plain_ws_is_advertised_only_to_the_clients_it_is_served_to() {
        let mut s = settings("0.0.0.0:8081", "0.0.0.0:8443");
        let url = |s: &DiscoverySettings, ip| endpoint(s, Some("h"), ip).websocket_url;
        assert_eq!(url(&s, LOCAL), "ws://h:8081/v1/ws");
        assert_eq!(url(&s, REMOTE), "wss://h:8081/v1/ws");
        s.plain_ws = PlainWs::Never;
        assert_eq!(url(&s, LOCAL), "wss://h:8081/v1/ws");
        s.plain_ws = PlainWs::Always;
        assert_eq!(url(&s, REMOTE), "ws://h:8081/v1/ws");
        // The secure URL is always there: every node serves wss://.
        assert_eq!(
            endpoint(&s, Some("h"), REMOTE).secure_websocket_url,
            "wss://h:8081/v1/ws"
        );
    }
}
