//! The QUIC transport (docs/protocol.md §15): a quinn endpoint on every
//! core, on a shared `SO_REUSEPORT` UDP port, inside the core's own
//! runtime. A connection stays on the core that accepted it; once its
//! `Hello` is verified its session runs on the user's home core, linked to
//! the connection through the mailboxes ([`home`], [`carrier`], [`link`]).
//! Connection ids name their core so that a migrated client's packets
//! find their way back ([`routing`]).

pub mod carrier;
pub mod home;
pub mod link;
pub mod reset_key;
pub mod routing;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::binary;
use confab_protocol::frame::{self, Frame, FrameType};
use confab_protocol::{Encoding, ErrorCode, FrameReader};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::watch;

use self::home::QuicHandover;
use self::link::{LinkCredit, LinkIn, LinkOut, LinkQueue};
use crate::metrics::Transport;
use crate::session::Hello;
pub use crate::settings::QuicSettings;
use crate::shard::{decode_error_frame, owner_core, Core};

/// QUIC application error code for streams a client may not open.
pub const STREAM_REFUSED: u32 = 0x10;

/// Bytes read from the control stream per call.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// QUIC connections held on this core, by link id: where the frames
    /// their sessions send are queued.
    static TRANSPORTS: RefCell<HashMap<u64, Rc<LinkQueue<LinkOut>>>> = RefCell::default();
    static NEXT_LINK: Cell<u64> = const { Cell::new(0) };
}

/// A link id unique on the node: the core in the high bits.
fn next_link(core: usize) -> u64 {
    let n = NEXT_LINK.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    ((core as u64) << 48) | n
}

/// A batch from a session for a QUIC connection held here (dropped if the
/// connection is gone).
pub fn deliver_out(link: u64, out: LinkOut) {
    let queue = TRANSPORTS.with(|t| t.borrow().get(&link).cloned());
    if let Some(q) = queue {
        q.push_all([out]);
    }
}

/// QUIC connections held on this core.
pub fn transport_count() -> usize {
    TRANSPORTS.with(|t| t.borrow().len())
}

/// One UDP socket per core on `addr`, all bound with `SO_REUSEPORT`.
///
/// For port 0 the port is picked by a socket bound without reuse flags
/// first (and closed before the group binds it): Linux's automatic UDP
/// port choice treats a port held by another process's (or another node's)
/// `SO_REUSEPORT` sockets of the same user as free, and a group joined by
/// strangers spreads their packets over our sockets and ours over theirs,
/// so QUIC handshakes there time out. TCP's automatic choice avoids such
/// ports; UDP's does not.
pub fn reuseport_udp_group(
    addr: SocketAddr,
    n: usize,
) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let addr = if addr.port() == 0 {
        std::net::UdpSocket::bind(addr)?.local_addr()?
    } else {
        addr
    };
    (0..n.max(1)).map(|_| reuseport_udp(addr)).collect()
}

/// A UDP socket bound with `SO_REUSEPORT`.
fn reuseport_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Transport limits sized for many mostly idle connections: one client
/// stream (control), small receive windows, an idle timeout past the
/// heartbeat deadline.
pub fn transport_config(heartbeat: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(64 * 1024));
    t.receive_window(VarInt::from_u32(128 * 1024));
    t.send_window(1 << 20);
    // quinn sends datagrams only when it may receive them; clients have
    // nothing to send that way, so a token buffer (never read) will do.
    t.datagram_receive_buffer_size(Some(1500));
    t.datagram_send_buffer_size(64 * 1024);
    let idle = heartbeat * 3 + Duration::from_secs(10);
    t.max_idle_timeout(idle.try_into().ok());
    t
}

/// Makes this core's endpoint (on its thread: the socket joins this
/// core's reactor) and publishes its socket to the other cores.
pub fn endpoint(
    core: usize,
    cores: usize,
    socket: std::net::UdpSocket,
    quic: &QuicSettings,
    heartbeat: Duration,
    peers: &routing::Peers,
) -> std::io::Result<quinn::Endpoint> {
    use quinn::Runtime;
    let runtime = Arc::new(quinn::TokioRuntime);
    let inner = runtime.wrap_udp_socket(socket)?;
    let routed = Arc::new(routing::RoutedSocket::new(
        inner,
        core,
        cores,
        peers.clone(),
    ));
    let _ = peers[core].set(routed.clone());
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(quic.tls.clone())
        .map_err(std::io::Error::other)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(heartbeat)));
    server.migration(true);
    let mut endpoint_config = match &quic.reset_key {
        // Every core alike: a packet of the previous process is routed
        // by its connection id to whichever core made it.
        Some(key) => quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &key[..],
        ))),
        None => quinn::EndpointConfig::default(),
    };
    endpoint_config.cid_generator(move || Box::new(routing::CoreCids::new(core)));
    quinn::Endpoint::new_with_abstract_socket(endpoint_config, Some(server), routed, runtime)
}

/// Accepts connections on this core's endpoint until shutdown.
pub async fn accept_loop(
    core: Rc<Core>,
    endpoint: quinn::Endpoint,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    tokio::task::spawn_local(serve(core.clone(), incoming));
                }
                None => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Refuses a session before it starts: `Error` (answering the frame of
/// type `answering`, when known) and `Close` on the control stream, then
/// the connection closes with the error code.
async fn refuse(
    conn: &Connection,
    mut send: SendStream,
    code: ErrorCode,
    why: &str,
    answering: Option<FrameType>,
) {
    let mut v = Vec::new();
    binary::encode(&decode_error_frame(code, why, answering), &mut v);
    let close = Frame::Close(frame::Close {
        code: code.code(),
        message: why.into(),
    });
    binary::encode(&close, &mut v);
    if send.write_all(&v).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    }
    conn.close(VarInt::from(code.code()), why.as_bytes());
}

/// Splits the frames out of what the reader holds.
fn drain(reader: &mut FrameReader, into: &mut Vec<LinkIn>) -> bool {
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => into.push(LinkIn::Frame(f)),
            Ok(None) => return true,
            Err(e) => {
                let fatal = e.is_fatal();
                into.push(LinkIn::Bad {
                    code: e.code(),
                    message: e.to_string(),
                    fatal,
                    frame_type: e.frame_type(),
                });
                if fatal {
                    return false;
                }
            }
        }
    }
}

/// One QUIC connection on the core that accepted it.
async fn serve(core: Rc<Core>, incoming: quinn::Incoming) {
    let settings = core.settings().clone();
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    // 0-RTT is accepted, but nothing is acted on before the handshake
    // completes (below), so replayed early data can never start a session.
    let (conn, handshake) = match connecting.into_0rtt() {
        Ok((conn, done)) => (conn, Some(done)),
        Err(connecting) => match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(conn)) => (conn, None),
            _ => return,
        },
    };
    let (send, mut recv) = match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
        Ok(Ok(pair)) => pair,
        _ => {
            conn.close(VarInt::from_u32(0), b"no control stream");
            return;
        }
    };
    let mut reader = FrameReader::new(settings.max_frame_bytes);
    let hello = loop {
        match reader.next_frame() {
            Ok(Some(Frame::Hello(h))) => break h,
            Ok(Some(f)) => {
                return refuse(
                    &conn,
                    send,
                    ErrorCode::UnexpectedFrame,
                    "the first frame must be Hello",
                    Some(f.frame_type()),
                )
                .await
            }
            Err(e) => return refuse(&conn, send, e.code(), &e.to_string(), e.frame_type()).await,
            Ok(None) => {}
        }
        match tokio::time::timeout_at(deadline, recv.read_chunk(READ_CHUNK, true)).await {
            Ok(Ok(Some(chunk))) => reader.feed(&chunk.bytes),
            _ => {
                conn.close(VarInt::from_u32(0), b"no Hello");
                return;
            }
        }
    };
    if let Some(done) = handshake {
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            conn.close(VarInt::from_u32(0), b"handshake timed out");
            return;
        }
    }
    let hello = match Hello::verify(&core, &hello, Transport::Quic, Encoding::Binary) {
        Ok(h) => h,
        Err((code, why)) => return refuse(&conn, send, code, why, Some(FrameType::Hello)).await,
    };
    let mut early = Vec::new();
    let readable = drain(&mut reader, &mut early);
    let link = next_link(core.id);
    let credit = Arc::new(LinkCredit::default());
    let queue = Rc::new(LinkQueue::<LinkOut>::default());
    TRANSPORTS.with(|t| t.borrow_mut().insert(link, queue.clone()));
    let home = owner_core(hello.user, core.io.bus.cores());
    let handover = QuicHandover {
        link,
        transport_core: core.id,
        credit: credit.clone(),
        hello,
        early,
    };
    core.io
        .bus
        .run_on(home, move |core| home::adopt(core, handover));
    let reading = readable
        .then(|| tokio::task::spawn_local(read_control(core.clone(), link, home, recv, reader)));
    let refusing = tokio::task::spawn_local(refuse_streams(conn.clone()));
    carrier::run(conn.clone(), send, queue, credit.clone()).await;
    TRANSPORTS.with(|t| t.borrow_mut().remove(&link));
    credit.close();
    refusing.abort();
    if let Some(r) = reading {
        r.abort();
    }
    // Whatever ended it, the session learns that the transport is gone.
    core.io
        .bus
        .run_on(home, move |_| home::deliver_in(link, vec![LinkIn::Closed]));
}

/// Reads client frames from the control stream and passes them to the
/// session's home core, a batch per read.
async fn read_control(
    core: Rc<Core>,
    link: u64,
    home: usize,
    mut recv: RecvStream,
    mut reader: FrameReader,
) {
    loop {
        let chunk = recv.read_chunk(READ_CHUNK, true).await;
        let mut items = Vec::new();
        let go_on = match chunk {
            Ok(Some(chunk)) => {
                reader.feed(&chunk.bytes);
                drain(&mut reader, &mut items)
            }
            _ => {
                items.push(LinkIn::Closed);
                false
            }
        };
        if !items.is_empty() {
            core.io
                .bus
                .run_on(home, move |_| home::deliver_in(link, items));
        }
        if !go_on {
            return;
        }
    }
}

/// Streams a client may not open are refused (docs/protocol.md §15).
async fn refuse_streams(conn: Connection) {
    let code = VarInt::from_u32(STREAM_REFUSED);
    loop {
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((mut s, mut r)) => {
                    let _ = s.reset(code);
                    let _ = r.stop(code);
                }
                Err(_) => return,
            },
            uni = conn.accept_uni() => match uni {
                Ok(mut r) => {
                    let _ = r.stop(code);
                }
                Err(_) => return,
            },
        }
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    #[test]
    fn a_group_on_port_0_gets_a_port_no_one_else_holds() {
        // Strangers' SO_REUSEPORT sockets on automatically chosen ports.
        let strangers: Vec<std::net::UdpSocket> = (0..300)
            .map(|_| reuseport_udp(([127, 0, 0, 1], 0).into()).unwrap())
            .collect();
        let theirs: std::collections::HashSet<u16> = strangers
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        for _ in 0..300 {
            let group = reuseport_udp_group(([127, 0, 0, 1], 0).into(), 2).unwrap();
            let port = group[0].local_addr().unwrap().port();
            assert_eq!(group[1].local_addr().unwrap().port(), port);
            assert!(
                !theirs.contains(&port),
                "port {port} is shared with a stranger"
            );
        }
    }
}
