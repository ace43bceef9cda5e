//! A WebSocket connection's first steps, on whichever core accepted it:
//! the HTTP upgrade, then `Hello` (version, token), then the hand-over of
//! the socket, with the bytes already read and the decoder's state, to
//! the core that owns the user.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use confab_protocol::frame::{self, Frame, FrameType};
use confab_protocol::{Encoding, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::records::Records;
use super::tls_accept::TlsStream;
use super::websocket::Handover;
use super::ws::message::{decode_frame, wrap};
use super::ws::{self, close, Decoder, Event};
use crate::metrics::Transport;
use crate::session::Hello;
use crate::shard::{decode_error_frame, owner_core, Core};

/// A stream the handshake runs on: plain TCP, or TLS over it; either can
/// be taken apart for the hand-over.
pub(super) trait HandshakeStream: AsyncRead + AsyncWrite + Unpin {
    /// The socket, the TLS record layer (if any) and plaintext decrypted
    /// but not yet read.
    fn into_parts(self) -> std::io::Result<(std::net::TcpStream, Option<Box<Records>>, BytesMut)>;
}

impl HandshakeStream for tokio::net::TcpStream {
    fn into_parts(self) -> std::io::Result<(std::net::TcpStream, Option<Box<Records>>, BytesMut)> {
        Ok((self.into_std()?, None, BytesMut::new()))
    }
}

impl HandshakeStream for TlsStream {
    fn into_parts(self) -> std::io::Result<(std::net::TcpStream, Option<Box<Records>>, BytesMut)> {
        // Ciphertext of a record not yet whole travels inside the records.
        let (socket, records, plain) = TlsStream::into_parts(self)?;
        Ok((socket, Some(records), plain))
    }
}

/// Writes an `Error` and a close to a connection that never became a
/// session; `answering` is the type of the frame refused (`Hello`, or
/// whatever came instead), when it is known.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    encoding: Encoding,
    code: ErrorCode,
    why: &str,
    answering: Option<FrameType>,
) {
    let mut out = Vec::new();
    wrap(
        &mut out,
        encoding,
        &encoding.encode(&decode_error_frame(code, why, answering)),
    );
    let close_frame = Frame::Close(frame::Close {
        code: code.code(),
        message: why.into(),
    });
    wrap(&mut out, encoding, &encoding.encode(&close_frame));
    ws::encode_close(close::app_close_code(code.code()), why, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    linger(stream).await;
}

/// Shuts the write side and reads until the client closes (or a second
/// passes): dropping a socket with unread bytes makes the kernel send a
/// reset that can destroy our close frame before the client reads it.
pub(super) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Upgrades, reads and verifies `Hello`, and hands the connection over.
pub(super) async fn handshake<S: HandshakeStream>(
    core: Rc<Core>,
    mut stream: S,
    transport: Transport,
    permit: confab_admission::Permit,
) {
    let settings = core.settings();
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let mut buf = BytesMut::with_capacity(1024);
    let upgrade = loop {
        match ws::parse_upgrade(&buf, &settings.ws_path, 8192) {
            Ok(Some(u)) => break u,
            Ok(None) => {}
            Err(e) => {
                let _ = stream.write_all(&e.response()).await;
                return;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    };
    if stream.write_all(&upgrade.response).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    buf.advance(upgrade.consumed);
    let encoding = upgrade.encoding;
    let max = settings.max_frame_bytes;
    let mut decoder = Decoder::new(max + 64);
    let hello = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Event::Ping(p))) => {
                let mut out = Vec::new();
                ws::encode_pong(&p, &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                continue;
            }
            Ok(Some(Event::Pong(_))) => continue,
            Ok(Some(Event::Close(_))) => {
                let mut out = Vec::new();
                ws::encode_close(close::NORMAL, "", &mut out);
                let _ = stream.write_all(&out).await;
                return;
            }
            Ok(Some(Event::TooBig { len, .. })) => {
                let why = format!("message of at least {len} bytes exceeds the maximum of {max}");
                return refuse(&mut stream, encoding, ErrorCode::FrameTooLarge, &why, None).await;
            }
            Ok(Some(ev)) => match decode_frame(encoding, ev, max) {
                Ok(Frame::Hello(h)) => break h,
                Ok(f) => {
                    let why = "the first frame must be Hello";
                    let (code, ty) = (ErrorCode::UnexpectedFrame, Some(f.frame_type()));
                    return refuse(&mut stream, encoding, code, why, ty).await;
                }
                Err(e) => {
                    let why = e.to_string();
                    return refuse(&mut stream, encoding, e.code(), &why, e.frame_type()).await;
                }
            },
            Ok(None) => {}
            Err(e) => {
                let mut out = Vec::new();
                ws::encode_close(e.close_code(), e.close_reason(), &mut out);
                let _ = stream.write_all(&out).await;
                return;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    };
    let hello = match Hello::verify(&core, &hello, transport, encoding) {
        Ok(h) => h,
        Err((code, why)) => {
            return refuse(&mut stream, encoding, code, why, Some(FrameType::Hello)).await
        }
    };
    let Ok((socket, tls, unread)) = stream.into_parts() else {
        return;
    };
    buf.extend_from_slice(&unread);
    let user = hello.user;
    let handover = Handover {
        socket,
        tls,
        buf,
        decoder,
        hello,
        permit,
    };
    // The session always runs as a task of its own, on its user's core,
    // and this one ends: the session's task is sized for the session
    // alone, not for the TLS and upgrade states that came before it.
    let owner = owner_core(user, core.io.bus.cores());
    if owner == core.id {
        super::websocket::spawn(core, handover);
    } else {
        core.io.bus.run_on(owner, move |core| {
            super::websocket::spawn(core.clone(), handover);
        });
    }
}
