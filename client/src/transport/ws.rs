//! WebSocket (`ws://`) and WebSocket over TLS (`wss://`), subprotocol
//! `confab.v1`: one binary message per frame, length prefix included.
//!
//! TLS is done here with tokio-rustls rather than through tungstenite's
//! TLS features, which would bring their own root-store and crypto-provider
//! choices; this way both transports share one rustls configuration policy
//! (ring, the roots from `TlsOptions`).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use confab_protocol::binary;
use confab_protocol::frame::Close;
use futures_util::{Sink, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::{close_for_code, Connection, Incoming};
use crate::config::Validated;
use crate::url::Transport;

/// A byte stream the WebSocket runs over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// Application close codes are 4000 + the protocol's error number
/// (docs/protocol.md, gateway `ws::close`).
const APP_CLOSE_BASE: u16 = 4000;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 8 * 1024;

/// Connects from `local_ip` when it is set and the server has an address
/// of its family (otherwise as `TcpStream::connect` would), trying each
/// resolved address in turn.
async fn tcp_connect(authority: String, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = local_ip else {
        return TcpStream::connect(authority).await;
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(authority).await?.collect();
    let same_family: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() == ip.is_ipv4())
        .collect();
    if same_family.is_empty() {
        return TcpStream::connect(&addrs[..]).await;
    }
    let mut last_err = None;
    for addr in same_family {
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(ip, 0))?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one address was tried"))
}

pub(crate) async fn connect(config: &Validated) -> Result<Connection, String> {
    let url = &config.url;
    let tcp = tcp_connect(url.authority(), config.local_ip)
        .await
        .map_err(|e| format!("TCP connect to {}: {e}", url.authority()))?;
    // Frames are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match (url.transport, &config.tls) {
        (Transport::Wss, Some(tls)) => {
            let connector = tokio_rustls::TlsConnector::from(tls.ws.clone());
            let stream = connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", url.authority()))?;
            Box::new(stream)
        }
        (Transport::Wss, None) => return Err("wss:// without TLS settings".into()),
        _ => Box::new(tcp),
    };
    let mut request = url
        .to_string()
        .into_client_request()
        .map_err(|e| format!("WebSocket request for {url}: {e}"))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        confab_protocol::WS_SUBPROTOCOL_BINARY
            .parse()
            .expect("a valid header value"),
    );
    // One message is one frame: allow the frame limit plus the prefix.
    let limit = config.max_frame_bytes + 16;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        // tungstenite zero-fills the free part of its read buffer before
        // every read; at its 128 KiB default that memset cost more than
        // everything else the client does per frame. Frames are small:
        // read them 8 KiB at a time (larger ones take several reads).
        .read_buffer_size(READ_BUFFER);
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, io, Some(ws_config))
        .await
        .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if chosen != Some(confab_protocol::WS_SUBPROTOCOL_BINARY) {
        return Err(format!(
            "{url} did not accept subprotocol {} (answered {chosen:?})",
            confab_protocol::WS_SUBPROTOCOL_BINARY
        ));
    }
    tracing::debug!(%url, "WebSocket open");
    Ok(Connection::Ws(Box::new(Direct {
        ws,
        out: VecDeque::new(),
        max_frame: config.max_frame_bytes,
        lost: false,
    })))
}

/// A WebSocket driven by the task that polls it: frames to write wait in
/// `out` until the next poll, which writes them all and flushes once.
pub(crate) struct Direct {
    ws: Ws,
    out: VecDeque<Vec<u8>>,
    max_frame: usize,
    /// `Lost` was reported: nothing more comes.
    lost: bool,
}

impl Direct {
    /// Queues one encoded frame for the next poll.
    pub fn send(&mut self, frame: Vec<u8>) {
        self.out.push_back(frame);
    }

    /// Writes what is queued as far as the socket takes it, then returns
    /// the next frame that arrived, or the end of the connection.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Incoming> {
        if self.lost {
            return Poll::Pending;
        }
        if let Err(e) = self.poll_write(cx) {
            return self.end(Incoming::Lost {
                reason: format!("WebSocket write: {e}"),
                close: None,
            });
        }
        loop {
            let msg = match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    return self.end(Incoming::Lost {
                        reason: format!("WebSocket read: {e}"),
                        close: None,
                    })
                }
                None => {
                    return self.end(Incoming::Lost {
                        reason: "the server closed the connection".into(),
                        close: None,
                    })
                }
            };
            match msg {
                WsMessage::Binary(bytes) => match binary::decode_exact(&bytes, self.max_frame) {
                    Ok(frame) => return Poll::Ready(Incoming::Frame(frame)),
                    Err(e) if e.is_fatal() => {
                        return self.end(Incoming::Broken(format!("bad frame: {e}")))
                    }
                    // One bad frame from the server is skipped, as the
                    // protocol asks (docs/protocol.md 13.3).
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping a malformed frame from the server")
                    }
                },
                WsMessage::Text(_) => {
                    tracing::warn!("skipping a text message on the binary subprotocol")
                }
                WsMessage::Close(frame) => {
                    let (code, detail) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return self.end(Incoming::Lost {
                        reason: format!("the server closed the WebSocket ({code} {detail})"),
                        close: app_close(code, &detail),
                    });
                }
                // Pings are answered by tungstenite itself (the pong goes
                // out with the next flush).
                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
            }
        }
    }

    fn end(&mut self, last: Incoming) -> Poll<Incoming> {
        self.lost = true;
        Poll::Ready(last)
    }

    /// Hands every queued frame to tungstenite and flushes: one socket
    /// write for a burst. `Ok` while the socket only needs time.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), WsError> {
        while !self.out.is_empty() {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
            let frame = self.out.pop_front().expect("not empty");
            Pin::new(&mut self.ws).start_send(WsMessage::Binary(frame.into()))?;
        }
        // Also what tungstenite queued itself (a pong, a close reply).
        match Pin::new(&mut self.ws).poll_flush(cx) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes what is queued, then the close handshake.
    pub async fn close(&mut self) {
        let written = std::future::poll_fn(|cx| match self.poll_write(cx) {
            Err(_) => Poll::Ready(false),
            Ok(()) if self.out.is_empty() => Poll::Ready(true),
            Ok(()) => Poll::Pending,
        })
        .await;
        if written {
            let _ = self.ws.close(None).await;
        }
    }
}

fn app_close(code: u16, detail: &str) -> Option<Close> {
    if code > APP_CLOSE_BASE && code < APP_CLOSE_BASE + 1000 {
        close_for_code(code - APP_CLOSE_BASE, detail)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_close_codes_map_back_to_protocol_errors() {
        let c = app_close(4200, "").unwrap();
        assert_eq!(c.code, 200);
        assert_eq!(c.message, "UNAUTHENTICATED");
        assert_eq!(app_close(4401, "slow").unwrap().message, "slow");
        assert!(app_close(1000, "").is_none());
        assert!(app_close(1001, "").is_none());
        assert!(app_close(4000, "").is_none());
        assert!(app_close(5000, "").is_none());
    }
}
