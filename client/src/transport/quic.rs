//! QUIC (`quic://`), ALPN `confab/1`, with the stream layout of
//! docs/protocol.md section 15: the client opens the first bidirectional
//! stream as the control stream and writes every frame there; the server
//! answers on it, sends `Message` frames on up to eight unidirectional
//! lanes it opens, and may send typing and presence notices as datagrams.
//!
//! Every carrier gets its own reader task and its own `FrameReader`
//! (streams are split by length prefix independently); all of them feed
//! the same queue. Lanes may overtake each other; ordering by inbox
//! sequence is the session's job, exactly as on WebSocket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::{binary, FrameReader};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{channels, close_for_code, take_batch, Channels, Connection, Incoming, Parts};
use crate::config::Validated;

/// Largest read asked of quinn at once.
const READ_CHUNK: usize = 64 * 1024;
/// How long a closing client waits for the server to close the connection
/// after its `Close` frame (the server closes after flushing), before
/// closing it itself.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub(crate) async fn connect(
    config: &Validated,
    endpoint: &mut Option<quinn::Endpoint>,
) -> Result<Connection, String> {
    let url = &config.url;
    let tls = config
        .tls
        .as_ref()
        .ok_or_else(|| "quic:// without TLS settings".to_owned())?;
    let addr = tokio::net::lookup_host(url.authority())
        .await
        .map_err(|e| format!("resolving {}: {e}", url.authority()))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", url.authority()))?;
    let ep = client_endpoint(endpoint, addr, config.local_ip, tls.quic.clone())?;
    let connecting = ep
        .connect(addr, &tls.server_name_str())
        .map_err(|e| format!("QUIC connect to {addr}: {e}"))?;
    // With a ticket from an earlier connection the control stream opens in
    // 0-RTT and the Hello rides the first flight. Only the Hello: the
    // driver sends nothing else before the Welcome, which comes after the
    // handshake. If the server rejects the early data (it restarted, or
    // its ticket cache evicted ours), the Hello was lost: the connection
    // is reported lost and the reconnect makes a full handshake with the
    // fresh ticket this one brought.
    let (conn, zero_rtt) = match connecting.into_0rtt() {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => (
            connecting
                .await
                .map_err(|e| format!("QUIC handshake with {addr}: {e}"))?,
            None,
        ),
    };
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("opening the control stream: {e}"))?;
    tracing::debug!(%addr, "QUIC connection open");
    let Channels {
        out,
        out_rx,
        in_tx,
        incoming,
    } = channels();
    let max = config.max_frame_bytes;
    let writer = tokio::spawn(write_loop(conn.clone(), send, out_rx, in_tx.clone()));
    let control = tokio::spawn(read_control(recv, in_tx.clone(), max));
    let lanes = tokio::spawn(accept_lanes(conn.clone(), in_tx.clone(), max));
    let datagrams = tokio::spawn(read_datagrams(conn.clone(), in_tx.clone(), max));
    let mut readers = vec![control, lanes, datagrams];
    if let Some(accepted) = zero_rtt {
        readers.push(tokio::spawn(async move {
            if !accepted.await {
                tracing::debug!(%addr, "0-RTT rejected; reconnecting");
                let _ = in_tx
                    .send(Incoming::Lost {
                        reason: "the server rejected 0-RTT data".into(),
                        close: None,
                    })
                    .await;
            }
        }));
    }
    Ok(Parts {
        out,
        incoming,
        writer,
        readers,
        quic: conn,
    }
    .into())
}

/// The endpoint (one UDP socket) kept across reconnects, replaced only
/// when the server's address family changes.
fn client_endpoint(
    slot: &mut Option<quinn::Endpoint>,
    addr: SocketAddr,
    local_ip: Option<IpAddr>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<quinn::Endpoint, String> {
    if let Some(ep) = slot {
        let same_family = ep
            .local_addr()
            .map(|l| l.is_ipv4() == addr.is_ipv4())
            .unwrap_or(false);
        if same_family {
            return Ok(ep.clone());
        }
    }
    let bind: SocketAddr = if let Some(ip) = local_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        SocketAddr::new(ip, 0)
    } else if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut ep = quinn::Endpoint::client(bind).map_err(|e| format!("QUIC socket: {e}"))?;
    ep.set_default_client_config(client_config(tls)?);
    *slot = Some(ep.clone());
    Ok(ep)
}

fn client_config(tls: Arc<rustls::ClientConfig>) -> Result<quinn::ClientConfig, String> {
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| format!("TLS configuration unusable for QUIC (TLS 1.3 needed): {e}"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // The server opens no bidirectional streams (section 15), and at most
    // eight lanes.
    transport.max_concurrent_bidi_streams(0u32.into());
    transport.max_concurrent_uni_streams(16u32.into());
    // The session heartbeats at the server's interval; QUIC keep-alives
    // keep NAT bindings and the idle timer alive between them.
    transport.keep_alive_interval(Some(Duration::from_secs(10)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

async fn write_loop(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    lost: mpsc::Sender<Incoming>,
) {
    while let Some(first) = rx.recv().await {
        let batch = take_batch(first, &mut rx).concat();
        if let Err(e) = send.write_all(&batch).await {
            let _ = lost
                .send(Incoming::Lost {
                    reason: format!("QUIC write: {e}"),
                    close: None,
                })
                .await;
            return;
        }
    }
    // Closing: our last frame was `Close`. The server closes the connection
    // once it has read it; give it a moment, then close it ourselves.
    let _ = send.finish();
    let _ = tokio::time::timeout(CLOSE_WAIT, conn.closed()).await;
    conn.close(0u32.into(), b"");
}

/// Reads the control stream; its end, or the connection's, is the end of
/// the session's transport.
async fn read_control(mut recv: quinn::RecvStream, tx: mpsc::Sender<Incoming>, max_frame: usize) {
    let end = match read_stream(&mut recv, &tx, max_frame).await {
        StreamEnd::Finished => Incoming::Lost {
            reason: "the server finished the control stream".into(),
            close: None,
        },
        StreamEnd::Broken(why) => Incoming::Broken(why),
        StreamEnd::Gone => return,
        StreamEnd::Failed(e) => lost_from(e),
    };
    let _ = tx.send(end).await;
}

/// Accepts the server's lanes and reads each in a task of its own; the
/// lane tasks die with this one (the `JoinSet` aborts them when dropped).
async fn accept_lanes(conn: quinn::Connection, tx: mpsc::Sender<Incoming>, max_frame: usize) {
    let mut lanes = JoinSet::new();
    while let Ok(mut recv) = conn.accept_uni().await {
        let tx = tx.clone();
        lanes.spawn(async move {
            match read_stream(&mut recv, &tx, max_frame).await {
                // A lane lives as long as the connection; if it ends or is
                // reset anyway, the other carriers carry on and the session
                // repairs any hole with `Sync`.
                StreamEnd::Finished | StreamEnd::Gone | StreamEnd::Failed(_) => {}
                StreamEnd::Broken(why) => {
                    let _ = tx.send(Incoming::Broken(why)).await;
                }
            }
        });
        // Reap finished lanes so the set does not grow.
        while lanes.try_join_next().is_some() {}
    }
    // The connection is gone; the control stream reader reports it.
    lanes.join_all().await;
}

/// Typing notices and pushed presence: one frame per datagram. A bad
/// datagram is skipped; datagrams carry nothing that must not be lost.
async fn read_datagrams(conn: quinn::Connection, tx: mpsc::Sender<Incoming>, max_frame: usize) {
    while let Ok(datagram) = conn.read_datagram().await {
        match binary::decode_exact(&datagram, max_frame) {
            Ok(frame) => {
                if tx.send(Incoming::Frame(frame)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "skipping a malformed datagram"),
        }
    }
}

enum StreamEnd {
    /// The server finished the stream.
    Finished,
    /// A bad length prefix: the stream cannot be framed any more.
    Broken(String),
    /// The driver stopped listening.
    Gone,
    /// The stream or the connection failed.
    Failed(quinn::ReadError),
}

async fn read_stream(
    recv: &mut quinn::RecvStream,
    tx: &mpsc::Sender<Incoming>,
    max_frame: usize,
) -> StreamEnd {
    let mut reader = FrameReader::new(max_frame);
    loop {
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => reader.feed(&chunk.bytes),
            Ok(None) => return StreamEnd::Finished,
            Err(e) => return StreamEnd::Failed(e),
        }
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    if tx.send(Incoming::Frame(frame)).await.is_err() {
                        return StreamEnd::Gone;
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => return StreamEnd::Broken(format!("bad frame: {e}")),
                Err(e) => tracing::warn!(error = %e, "skipping a malformed frame from the server"),
            }
        }
    }
}

/// Describes a failed read, recovering the server's `Close` from an
/// application close code when the frame itself was lost with the
/// connection (quinn drops unread stream data once a connection closes).
fn lost_from(e: quinn::ReadError) -> Incoming {
    let err = match e {
        quinn::ReadError::ConnectionLost(err) => err,
        other => {
            return Incoming::Lost {
                reason: format!("control stream: {other}"),
                close: None,
            }
        }
    };
    let close = match &err {
        quinn::ConnectionError::ApplicationClosed(app) => {
            let code = u64::from(app.error_code);
            u16::try_from(code)
                .ok()
                .and_then(|c| close_for_code(c, &String::from_utf8_lossy(&app.reason)))
        }
        _ => None,
    };
    Incoming::Lost {
        reason: format!("QUIC connection lost: {err}"),
        close,
    }
}
