//! Accepting WebSocket connections: every core binds the same address
//! with `SO_REUSEPORT`, so the kernel spreads new connections over the
//! cores without a shared accept queue. The first byte of a connection
//! tells a TLS client hello (0x16) from an HTTP request, so `ws://` and
//! `wss://` share the port. Each connection is admitted through the
//! node's [`Gate`] first (its budget, the per-address cap), and holds its
//! permit for as long as it lives.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use confab_admission::{Gate, Permit};
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
    let settings = core.settings();
    let handshakes = Arc::new(Semaphore::new(settings.max_handshakes.max(1)));
    let gate: Gate = settings.admission.gate(
        "ws",
        settings.max_connections_per_address,
        settings.exempt_loopback,
    );
    let mut backoff = Duration::ZERO;
    let handshaking = Rc::new(Handshaking::default());
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
                    backoff = Duration::ZERO;
                    // A refused connection closes at once, so its
                    // descriptor is free before the next accept.
                    let Ok(permit) = gate.admit(peer.ip()) else {
                        continue;
                    };
                    // One address may not hold many of the core's
                    // handshake slots with connections that say nothing.
                    let exempt = settings.exempt_loopback && peer.ip().is_loopback();
                    let Some(turn) = handshaking.clone().enter(peer.ip(), exempt) else {
                        gate.count_refusal("handshakes_per_address");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let core = core.clone();
                    tokio::task::spawn_local(async move {
                        accept_one(core, stream, peer, permit).await;
                        drop(turn);
                        drop(slot);
                    });
                }
                Err(e) => {
                    backoff = gate.accept_failed(&e, backoff);
                    tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Handshakes one address may have in progress on one core at once (of
/// the core's `max_handshakes`).
const HANDSHAKES_PER_ADDRESS: u32 = 8;

/// This core's handshakes in progress, by client address.
#[derive(Default)]
struct Handshaking(RefCell<HashMap<IpAddr, u32>>);

/// One handshake's place in [`Handshaking`], given back when it ends.
struct Turn(Rc<Handshaking>, IpAddr);

impl Handshaking {
    fn enter(self: Rc<Self>, ip: IpAddr, exempt: bool) -> Option<Option<Turn>> {
        if exempt {
            return Some(None);
        }
        let key = confab_admission::address_key(ip);
        let mut map = self.0.borrow_mut();
        let n = map.entry(key).or_insert(0);
        if *n >= HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *n += 1;
        drop(map);
        Some(Some(Turn(self, key)))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut map = self.0 .0.borrow_mut();
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Tells TLS from plain HTTP and applies the plain-text policy.
async fn accept_one(
    core: Rc<Core>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: Permit,
) {
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
            Ok(Ok(tls)) => handshake(core, tls, Transport::Wss, permit).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    } else if settings.plain_ws.allows(peer.ip()) {
        handshake(core, stream, Transport::Ws, permit).await
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
