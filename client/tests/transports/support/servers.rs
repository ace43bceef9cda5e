//! Minimal scripted servers, one per transport, each accepting a client
//! over a real socket and handing the test the server's end after the
//! client's `Hello`: the tests then play the server frame by frame,
//! including the ways a real server or network can misbehave.

use std::sync::Arc;

use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::frame::Frame;
use confab_protocol::FrameReader;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as Ws;

use super::{server_tls, Cert, PATIENCE};

/// Reads client frames from the control stream, skipping keep-alives and
/// hole-filling syncs (which the client may send whenever it likes).
pub(crate) struct Control {
    recv: quinn::RecvStream,
    reader: FrameReader,
}

impl Control {
    pub(crate) async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = self.reader.next_frame().unwrap() {
                if matches!(f, Frame::Heartbeat(_) | Frame::Sync(_)) {
                    continue;
                }
                return f;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.recv.read_chunk(4096, true))
                .await
                .expect("a frame in time")
                .unwrap()
                .expect("the control stream stays open");
            self.reader.feed(&chunk.bytes);
        }
    }
}

/// Accepts one QUIC connection and its control stream, reads `Hello`.
pub(crate) async fn accept_quic(
    server: &quinn::Endpoint,
) -> (
    quinn::Connection,
    quinn::SendStream,
    Control,
    confab_protocol::frame::Hello,
) {
    let incoming = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .expect("a connection in time")
        .unwrap();
    let conn = incoming.await.unwrap();
    let (send, recv) = conn.accept_bi().await.unwrap();
    let mut control = Control {
        recv,
        reader: FrameReader::new(DEFAULT_MAX_FRAME_BYTES),
    };
    let hello = match control.frame().await {
        Frame::Hello(h) => h,
        other => panic!("expected Hello, got {other:?}"),
    };
    (conn, send, control, hello)
}

pub(crate) fn quic_server(cert: &Cert) -> quinn::Endpoint {
    let tls = server_tls(cert, confab_protocol::ALPN);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).unwrap()
}

/// A one-connection wss server: TLS, then a WebSocket that accepts
/// `confab.v1`, then `script` with the Hello already read.
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
pub(crate) async fn wss_server<F, Fut>(cert: &Cert, script: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: FnOnce(
            tokio_tungstenite::WebSocketStream<
                tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
            >,
            confab_protocol::frame::Hello,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, b"")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            // A client that does not trust us fails the TLS handshake;
            // wait for one that does.
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(
                tls,
                |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                 mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    assert_eq!(req.uri().path(), "/v1/ws");
                    let offered = req.headers().get("Sec-WebSocket-Protocol").unwrap();
                    assert_eq!(offered, "confab.v1");
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
                    Ok(resp)
                },
            )
            .await
            .unwrap();
            let hello = match ws.next().await.unwrap().unwrap() {
                Ws::Binary(b) => match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                    Frame::Hello(h) => h,
                    other => panic!("expected Hello, got {other:?}"),
                },
                other => panic!("expected a binary message, got {other:?}"),
            };
            script(ws, hello).await;
            return;
        }
    });
    (port, task)
}

/// A plain-WebSocket server for one connection: accepts `confab.v1`,
/// reads the `Hello`, then runs `script`.
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
pub(crate) async fn ws_server<F, Fut>(script: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_hdr_async(
            tcp,
            |_req: &tokio_tungstenite::tungstenite::handshake::server::Request,
             mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", "confab.v1".parse().unwrap());
                Ok(resp)
            },
        )
        .await
        .unwrap();
        match ws.next().await.unwrap().unwrap() {
            Ws::Binary(b) => assert!(matches!(
                binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap(),
                Frame::Hello(_)
            )),
            other => panic!("expected a binary message, got {other:?}"),
        }
        script(ws).await;
    });
    (port, task)
}
