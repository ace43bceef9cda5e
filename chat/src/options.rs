//! What `confab chat` is started with: the library's side of the command
//! line, so that the binary only parses flags and the tests build the same
//! value directly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::ChatError;

/// Which transport the SDK connects over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// QUIC (`quic://`, the gateway's `quic_addr`).
    #[default]
    Quic,
    /// WebSocket as the gateway advertises it (`websocket_url`: plain on
    /// loopback, TLS elsewhere).
    Ws,
    /// WebSocket over TLS (`secure_websocket_url`).
    Wss,
}

impl TransportChoice {
    /// The name used on the command line and in the status line.
    pub fn label(self) -> &'static str {
        match self {
            TransportChoice::Quic => "quic",
            TransportChoice::Ws => "ws",
            TransportChoice::Wss => "wss",
        }
    }
}

impl std::fmt::Display for TransportChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for TransportChoice {
    type Err = ChatError;

    fn from_str(s: &str) -> Result<TransportChoice, ChatError> {
        match s {
            "quic" => Ok(TransportChoice::Quic),
            "ws" => Ok(TransportChoice::Ws),
            "wss" => Ok(TransportChoice::Wss),
            other => Err(ChatError::Usage(format!(
                "unknown transport {other:?} (quic, ws or wss)"
            ))),
        }
    }
}

/// How to start the client.
#[derive(Clone)]
pub struct Options {
    /// The username to log in as (prefilled on the login screen).
    pub user: Option<String>,
    /// The password, when it came from the environment: the client then
    /// logs in at once instead of asking.
    pub password: Option<String>,
    /// The HTTP API's base URL.
    pub api: String,
    /// The transport to the gateway.
    pub transport: TransportChoice,
    /// A PEM file of the certificate to trust for QUIC and wss (beside the
    /// system roots); `None` trusts the data directory's generated
    /// certificate when there is one and the API is on a loopback address.
    pub ca: Option<PathBuf>,
    /// The node's data directory (for its generated certificate).
    pub data_dir: PathBuf,
    /// Start on the signup form instead of the login form.
    pub signup: bool,
    /// Where the per-user state files live.
    pub state_dir: PathBuf,
    /// Messages per history page.
    pub page_size: u32,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("api", &self.api)
            .field("transport", &self.transport)
            .field("ca", &self.ca)
            .field("data_dir", &self.data_dir)
            .field("signup", &self.signup)
            .field("state_dir", &self.state_dir)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Options {
    /// The defaults of the command line: the API on `127.0.0.1:8080`, QUIC,
    /// `confab serve`'s default data directory, state under
    /// [`StateFile::default_dir`](crate::StateFile::default_dir) (or
    /// `./.confab-state` where neither `XDG_STATE_HOME` nor `HOME` is set).
    pub fn new() -> Options {
        Options {
            user: None,
            password: None,
            api: "http://127.0.0.1:8080".into(),
            transport: TransportChoice::Quic,
            ca: None,
            data_dir: PathBuf::from("./confab-data"),
            signup: false,
            state_dir: crate::StateFile::default_dir()
                .unwrap_or_else(|| PathBuf::from("./.confab-state")),
            page_size: 100,
        }
    }

    /// The certificate file to trust: `--ca`, else the node's generated
    /// one in the data directory if it exists, but only for a node on this
    /// machine (a loopback API URL). Whoever can write a `confab-data`
    /// directory where the client happens to run must not thereby vouch
    /// for a remote server: that takes `--ca` or the system roots.
    pub fn ca_file(&self) -> Option<PathBuf> {
        if let Some(ca) = &self.ca {
            return Some(ca.clone());
        }
        if !is_loopback_url(&self.api) {
            return None;
        }
        let generated = self.data_dir.join("tls").join("self-signed.crt");
        generated.exists().then_some(generated)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

/// Whether `url`'s host is a loopback address: `localhost`, 127.0.0.0/8
/// or `::1` (bracketed in a URL). Anything unparsable is not.
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        },
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart_from_the_rest() {
        for yes in [
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "https://127.0.0.1/v1",
        ] {
            assert!(is_loopback_url(yes), "{yes}");
        }
        for no in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://[::2]:80",
            "http://[::1",
            "127.0.0.1:8080",
            "http://evil.com@127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_url(no), "{no}");
        }
    }

    #[test]
    fn the_generated_certificate_is_trusted_only_for_a_loopback_api() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls").join("self-signed.crt");
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        std::fs::write(&cert, "not read here").unwrap();
        let mut o = Options {
            data_dir: dir.path().to_owned(),
            ..Options::new()
        };
        o.api = "http://127.0.0.1:8080".into();
        assert_eq!(o.ca_file(), Some(cert.clone()));
        o.api = "http://chat.example.com:8080".into();
        assert_eq!(o.ca_file(), None);
        o.ca = Some("/etc/confab/ca.pem".into());
        assert_eq!(o.ca_file(), Some("/etc/confab/ca.pem".into()));
    }
}
