//! Accepting WebSocket connections: every core binds the same address
//! with `SO_REUSEPORT`, so the kernel spreads new connections over the
//! cores without a shared accept queue. The first byte of a connection
//! tells a TLS client hello (0x16) from an HTTP request, so `ws://` and
//! `wss://` share the port.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Semaphore};

use super::upgrade::{handshake, linger};
use crate::metrics::Transport;
use crate::shard::Core;

/// A listening socket bound with `SO_REUSEPORT`.
pub fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Accepts connections on this core's listener until shutdown.
pub async fn accept_loop(
    core: Rc<Core>,
    listener: std::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core = core.id, error = %e, "listener");
            return;
        }
    };
    let handshakes = Arc::new(Semaphore::new(core.settings().max_handshakes.max(1)));
    loop {
        // A connection is accepted only when a handshake slot is free;
        // until then it waits in the listen backlog.
        let slot = tokio::select! {
            slot = handshakes.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let core = core.clone();
                    tokio::task::spawn_local(async move {
                        accept_one(core, stream, peer).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Tells TLS from plain HTTP and applies the plain-text policy.
async fn accept_one(core: Rc<Core>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let settings = core.settings();
    let mut first = [0u8; 1];
    match tokio::time::timeout(settings.handshake_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] == 0x16 {
        let Some(config) = settings.tls.clone() else {
            // No TLS configured: nothing sensible can be answered to a
            // client hello; the client sees the connection close.
            return;
        };
        let accept = super::tls_accept::accept(stream, config);
        match tokio::time::timeout(settings.handshake_timeout, accept).await {
            Ok(Ok(tls)) => handshake(core, tls, Transport::Wss).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    } else if settings.plain_ws.allows(peer.ip()) {
        handshake(core, stream, Transport::Ws).await
    } else {
        let mut stream = stream;
        let body = "plain ws:// is served to loopback clients only; connect with wss://\n";
        let response = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        linger(&mut stream).await;
    }
}
