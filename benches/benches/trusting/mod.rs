//! What the TLS floor benches share: a TLS 1.3 client that trusts the
//! node's self-signed certificate.

use std::sync::Arc;

use confab_gateway::transport::tls::Identity;

/// A TLS 1.3 client config (ring) that trusts `id` and offers `alpn`.
pub fn client(id: &Identity, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(id.chain[0].clone())
        .expect("the certificate as a root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}
