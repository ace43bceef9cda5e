//! The server address: one URL picks the transport, so an application can
//! switch between WebSocket, WebSocket over TLS and QUIC by configuration
//! alone. A small parser of our own instead of the `url` crate, because the
//! three shapes we accept are narrow and a general parser would accept far
//! more than we can serve (user info, fragments, other schemes).

use std::fmt;

use crate::error::ClientError;

/// Path the gateway serves WebSocket sessions on (docs/protocol.md 2.2).
pub const DEFAULT_WS_PATH: &str = "/v1/ws";

/// Which transport a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `ws://`: WebSocket over plain TCP (subprotocol `confab.v1`).
    Ws,
    /// `wss://`: WebSocket over TLS.
    Wss,
    /// `quic://`: QUIC with ALPN `confab/1` (always TLS 1.3).
    Quic,
}

impl Transport {
    /// Whether the transport runs over TLS (and so needs trusted roots).
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Wss | Transport::Quic)
    }

    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Quic => "quic",
        }
    }

    /// The port used when the URL names none: 80 for `ws`, 443 for `wss`
    /// and `quic` (the conventional ports a public deployment listens on;
    /// `confab serve` itself defaults to 8081 and 8443, so local URLs name
    /// their port).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Ws => 80,
            Transport::Wss | Transport::Quic => 443,
        }
    }
}

/// A parsed server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// The transport the scheme names.
    pub transport: Transport,
    /// Host name or IP address, without brackets for IPv6.
    pub host: String,
    /// Port (the transport's default when the URL has none).
    pub port: u16,
    /// For WebSocket, the path and query sent in the request (always
    /// starting with `/`; [`DEFAULT_WS_PATH`] when the URL has none). Empty
    /// for QUIC, which has no path.
    pub path: String,
}

impl ServerUrl {
    /// Parses `ws://host[:port][/path]`, `wss://host[:port][/path]` or
    /// `quic://host[:port]`.
    pub fn parse(url: &str) -> Result<ServerUrl, ClientError> {
        let bad = |why: &str| ClientError::InvalidUrl(format!("{url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected ws://, wss:// or quic://"))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            "quic" => Transport::Quic,
            _ => return Err(bad("the scheme must be ws, wss or quic")),
        };
        if rest.contains('#') {
            return Err(bad("a fragment means nothing here"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad(
                "user info is not supported (the token goes in the config)",
            ));
        }
        let (host, port) = split_host_port(authority).map_err(&bad)?;
        let port = match port {
            Some(p) => p,
            None => transport.default_port(),
        };
        let path = match transport {
            Transport::Quic => {
                if !path.is_empty() && path != "/" {
                    return Err(bad("a quic:// URL has no path"));
                }
                String::new()
            }
            Transport::Ws | Transport::Wss => {
                if path.is_empty() {
                    DEFAULT_WS_PATH.to_owned()
                } else if path.starts_with('?') {
                    format!("/{path}")
                } else {
                    path.to_owned()
                }
            }
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the path holds whitespace or control characters"));
        }
        Ok(ServerUrl {
            transport,
            host,
            port,
            path,
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.transport.scheme(),
            self.authority(),
            self.path
        )
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
        };
        (host, port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("an IPv6 address must be written in brackets")
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("the host is empty");
        }
        if !host.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("the host must start with a letter or digit");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if !host.chars().all(allowed) {
            return Err("the host holds characters a host name cannot have");
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err("the port must be a number from 1 to 65535"),
            Ok(n) => Some(n),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> ServerUrl {
        ServerUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn err(url: &str) -> String {
        match ServerUrl::parse(url) {
            Err(ClientError::InvalidUrl(why)) => why,
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn websocket_urls_keep_their_path_and_default_to_v1_ws() {
        let u = ok("ws://127.0.0.1:8081/v1/ws");
        assert_eq!(
            (u.transport, u.host.as_str(), u.port, u.path.as_str()),
            (Transport::Ws, "127.0.0.1", 8081, "/v1/ws")
        );
        let u = ok("ws://localhost:8081");
        assert_eq!(u.path, DEFAULT_WS_PATH);
        let u = ok("WSS://Chat.Example.com/custom/ws?x=1");
        assert_eq!(
            (u.transport, u.host.as_str(), u.port, u.path.as_str()),
            (Transport::Wss, "chat.example.com", 443, "/custom/ws?x=1")
        );
        assert_eq!(ok("ws://h?x=1").path, "/?x=1");
        assert_eq!(ok("ws://h").port, 80);
    }

    #[test]
    fn quic_urls_have_no_path() {
        let u = ok("quic://127.0.0.1:8443");
        assert_eq!(
            (u.transport, u.port, u.path.as_str()),
            (Transport::Quic, 8443, "")
        );
        assert_eq!(ok("quic://chat.example.com/").port, 443);
        assert!(err("quic://h:8443/v1/ws").contains("no path"));
        assert!(Transport::Quic.is_tls() && Transport::Wss.is_tls() && !Transport::Ws.is_tls());
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let u = ok("quic://[::1]:8443");
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.authority(), "[::1]:8443");
        assert_eq!(u.to_string(), "quic://[::1]:8443");
        assert_eq!(ok("ws://[fe80::1]").port, 80);
        assert!(err("ws://::1:80").contains("brackets"));
        assert!(err("ws://[::1").contains("unclosed"));
        assert!(err("ws://[nope]:80").contains("IPv6"));
        assert!(err("ws://[::1]x").contains("junk"));
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        assert!(err("127.0.0.1:8081").contains("expected"));
        assert!(err("http://127.0.0.1:8080").contains("scheme"));
        assert!(err("ws://").contains("empty"));
        assert!(err("ws://:8081/v1/ws").contains("empty"));
        assert!(err("ws://h:0").contains("port"));
        assert!(err("ws://h:70000").contains("port"));
        assert!(err("ws://h:x").contains("port"));
        assert!(err("ws://user:pw@h:1").contains("user info"));
        assert!(err("ws://h:1/a#b").contains("fragment"));
        assert!(err("ws://h:1/a b").contains("whitespace"));
        assert!(err("ws://-h:1").contains("start"));
        assert!(err("ws://h%41:1").contains("characters"));
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "ws://127.0.0.1:8081/v1/ws",
            "wss://chat.example.com:443/v1/ws",
            "quic://localhost:8443",
        ] {
            assert_eq!(ok(url).to_string(), url);
            assert_eq!(ok(&ok(url).to_string()), ok(url));
        }
    }
}
