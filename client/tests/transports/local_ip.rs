//! The configured local address is honoured by both socket kinds (TCP for
//! WebSocket, UDP for QUIC), checked from the server's side of a real
//! connection, since a wrong source address is invisible to the client.

use confab_client::{Client, ClientConfig, DeviceId, TlsOptions};

use crate::support::servers::quic_server;
use crate::support::{cert_for, PATIENCE};

/// A load generator spreads connections over several loopback addresses;
/// both transports must really connect from the one configured.
#[tokio::test]
async fn connections_come_from_the_configured_local_ip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config =
        ClientConfig::new(format!("ws://127.0.0.1:{port}/v1/ws"), "token", DeviceId(1));
    config.local_ip = Some([127, 0, 0, 2].into());
    let (ws_client, _events) = Client::connect(config).unwrap();
    let (_tcp, peer) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("a TCP connection in time")
        .unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");

    let cert = cert_for("localhost");
    let server = quic_server(&cert);
    let port = server.local_addr().unwrap().port();
    let mut config = ClientConfig::new(format!("quic://localhost:{port}"), "token", DeviceId(1));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_pem_file(&cert.pem_file);
    config.local_ip = Some([127, 0, 0, 3].into());
    let (quic_client, _events) = Client::connect(config).unwrap();
    let incoming = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .expect("a QUIC connection in time")
        .unwrap();
    assert_eq!(incoming.remote_address().ip().to_string(), "127.0.0.3");
    drop(incoming);
    drop((ws_client, quic_client));
}
