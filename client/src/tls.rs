//! TLS for `wss://` and `quic://`: which roots to trust and which name to
//! check, turned into one rustls configuration per transport.
//!
//! rustls runs on the ring provider only (the workspace never builds
//! aws-lc). There is deliberately no way to skip certificate verification:
//! a development server (`confab serve` without a configured certificate)
//! writes its self-signed certificate into its data directory, and a client
//! trusts exactly that file with [`TlsOptions::add_root_pem_file`]. Anyone
//! who really needs another policy can pass a complete rustls
//! configuration with [`TlsOptions::with_rustls_config`], and owns the
//! consequences.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::error::ClientError;

/// Certificate bundles of the common Unix systems, tried in order when
/// system roots are wanted and `SSL_CERT_FILE` names none.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL, CentOS
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, macOS, the BSDs
];

/// How the client verifies the server on TLS transports (`wss://`,
/// `quic://`). Ignored for `ws://`.
///
/// By default it trusts the system's root certificates (the PEM bundle
/// named by `SSL_CERT_FILE`, or the first of the usual Unix bundle paths
/// that exists) plus the roots added here, and checks the certificate
/// against the URL's host.
#[derive(Clone, Default)]
pub struct TlsOptions {
    no_system_roots: bool,
    root_files: Vec<PathBuf>,
    roots: Vec<CertificateDer<'static>>,
    server_name: Option<String>,
    custom: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("system_roots", &!self.no_system_roots)
            .field("root_files", &self.root_files)
            .field("roots", &self.roots.len())
            .field("server_name", &self.server_name)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// The defaults: system roots, the URL's host as the server name.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Also trusts every certificate in a PEM file, for example the
    /// self-signed certificate `confab serve` writes into its data
    /// directory. The file is read by [`Client::connect`], which fails with
    /// [`ClientError::Tls`] if it is unreadable or holds no certificate.
    ///
    /// [`Client::connect`]: crate::Client::connect
    pub fn add_root_pem_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.root_files.push(path.into());
        self
    }

    /// Also trusts one DER-encoded certificate.
    pub fn add_root_der(mut self, der: impl Into<Vec<u8>>) -> TlsOptions {
        self.roots.push(CertificateDer::from(der.into()));
        self
    }

    /// Trusts only the roots added here, not the system's.
    pub fn without_system_roots(mut self) -> TlsOptions {
        self.no_system_roots = true;
        self
    }

    /// Checks the server's certificate against this name instead of the
    /// URL's host (for example when connecting by IP address to a server
    /// whose certificate names `localhost`).
    pub fn server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }

    /// Uses this rustls configuration as it is, instead of building one
    /// from the roots above (which are then ignored). The SDK only sets its
    /// ALPN protocols (`confab/1` on QUIC, none on WebSocket). QUIC needs
    /// TLS 1.3 in it.
    pub fn with_rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> TlsOptions {
        self.custom = Some(config);
        self
    }

    /// Reads the roots and builds the two rustls configurations; done once
    /// per client, so reconnects do not read files again.
    pub(crate) fn build(&self, host: &str) -> Result<BuiltTls, ClientError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| ClientError::Tls(format!("invalid server name {name:?}: {e}")))?;
        let base = match &self.custom {
            Some(config) => (**config).clone(),
            None => {
                let roots = self.root_store()?;
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth()
            }
        };
        let mut ws = base.clone();
        ws.alpn_protocols.clear();
        let mut quic = base;
        quic.alpn_protocols = vec![confab_protocol::ALPN.to_vec()];
        // Reconnects resume with 0-RTT: the Hello goes out with the first
        // flight. Only the Hello does: everything else waits for the
        // Welcome, which the server sends after the handshake completes.
        quic.enable_early_data = true;
        Ok(BuiltTls {
            server_name,
            ws: Arc::new(ws),
            quic: Arc::new(quic),
        })
    }

    fn root_store(&self) -> Result<RootCertStore, ClientError> {
        let mut store = RootCertStore::empty();
        if !self.no_system_roots {
            if let Some(bundle) = system_bundle() {
                // A broken entry in the system bundle should not stop the
                // client: keep the ones that parse.
                let certs = CertificateDer::pem_file_iter(&bundle)
                    .map(|it| it.filter_map(Result::ok).collect::<Vec<_>>())
                    .unwrap_or_default();
                let (added, ignored) = store.add_parsable_certificates(certs);
                tracing::debug!(bundle = %bundle.display(), added, ignored, "system roots");
            } else {
                tracing::debug!("no system certificate bundle found");
            }
        }
        for path in &self.root_files {
            for cert in read_pem_certs(path)? {
                store.add(cert).map_err(|e| {
                    ClientError::Tls(format!("{}: unusable certificate: {e}", path.display()))
                })?;
            }
        }
        for cert in &self.roots {
            store
                .add(cert.clone())
                .map_err(|e| ClientError::Tls(format!("unusable root certificate: {e}")))?;
        }
        if store.is_empty() {
            return Err(ClientError::Tls(
                "no trusted root certificate: add the server's certificate with \
                 TlsOptions::add_root_pem_file (a development server writes it into its \
                 data directory)"
                    .into(),
            ));
        }
        Ok(store)
    }
}

/// The TLS settings ready for connecting.
#[derive(Debug, Clone)]
pub(crate) struct BuiltTls {
    /// The name the certificate is checked against.
    pub server_name: ServerName<'static>,
    /// For `wss://` (no ALPN: the WebSocket handshake negotiates).
    pub ws: Arc<rustls::ClientConfig>,
    /// For `quic://` (ALPN `confab/1`).
    pub quic: Arc<rustls::ClientConfig>,
}

impl BuiltTls {
    /// The server name as a string, as quinn wants it.
    pub fn server_name_str(&self) -> String {
        self.server_name.to_str().into_owned()
    }
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ClientError::Tls(format!(
            "{}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn system_bundle() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        let file = PathBuf::from(file);
        if file.is_file() {
            return Some(file);
        }
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap()
    }

    #[test]
    fn a_pem_file_and_der_bytes_become_roots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, self_signed("localhost").cert.pem()).unwrap();
        let der = self_signed("other").cert.der().to_vec();
        let tls = TlsOptions::new()
            .without_system_roots()
            .add_root_pem_file(&path)
            .add_root_der(der);
        assert_eq!(tls.root_store().unwrap().len(), 2);
        let built = tls.build("localhost").unwrap();
        assert_eq!(built.server_name_str(), "localhost");
        assert_eq!(built.quic.alpn_protocols, vec![b"confab/1".to_vec()]);
        assert!(built.ws.alpn_protocols.is_empty());
    }

    #[test]
    fn the_server_name_can_be_overridden_and_must_be_valid() {
        let der = self_signed("localhost").cert.der().to_vec();
        let tls = TlsOptions::new()
            .without_system_roots()
            .add_root_der(der)
            .server_name("localhost");
        assert_eq!(
            tls.build("127.0.0.1").unwrap().server_name_str(),
            "localhost"
        );
        let ip = TlsOptions {
            server_name: None,
            ..tls.clone()
        };
        assert_eq!(
            ip.build("127.0.0.1").unwrap().server_name_str(),
            "127.0.0.1"
        );
        let bad = tls.server_name("not a name!");
        assert!(matches!(bad.build("h"), Err(ClientError::Tls(m)) if m.contains("server name")));
    }

    #[test]
    fn unusable_roots_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = TlsOptions::new()
            .add_root_pem_file(&missing)
            .build("h")
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(m) if m.contains("missing.pem")));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = TlsOptions::new()
            .add_root_pem_file(&empty)
            .build("h")
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(m) if m.contains("no PEM certificate")));
        let err = TlsOptions::new()
            .without_system_roots()
            .build("h")
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(m) if m.contains("no trusted root")));
        let err = TlsOptions::new()
            .without_system_roots()
            .add_root_der(b"not der".to_vec())
            .build("h")
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(m) if m.contains("unusable")));
    }
}
