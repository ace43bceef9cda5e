//! Our WebSocket decoder against tungstenite's (server role, no limits),
//! on the same client bytes: where both go on, they must decode the same
//! messages; where one stops with a protocol error the other must stop
//! there too, except for the rules we are deliberately stricter about
//! (length encodings not in their shortest form, a 64-bit length with the
//! high bit set, close codes RFC 6455 does not allow on the wire and close
//! payloads of one byte or with a reason that is not UTF-8), which
//! tungstenite does not check,
//! and for input cut short inside a frame header that we already know to
//! be bad.
#![no_main]

use std::io::{Cursor, Read, Write};

use bytes::BytesMut;
use confab_ws::{Decoder, Event, WsError};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

/// Far bigger than any input the fuzzer makes, so only an announced
/// length can be over it; both sides get the same limit.
const MAX: usize = 1 << 24;

/// A client's bytes to read; what the server writes back is dropped.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A decoded data message, or the close.
#[derive(Debug, PartialEq)]
enum Seen {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Close,
}

/// How a side stopped.
#[derive(Debug, PartialEq)]
enum End {
    /// Out of input (a frame may be unfinished).
    Input,
    /// After a close.
    Closed,
    /// At a frame it refused: a protocol error (ours: which), or a
    /// message announced over the limit (`None` on our side too; both
    /// sides may check a bad header's rules in a different order).
    Broken(Option<WsError>),
}

fn ours(data: &[u8]) -> (Vec<Seen>, End) {
    let mut dec = Decoder::new(MAX);
    let mut buf = BytesMut::from(data);
    let mut seen = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(Event::Text(t))) => seen.push(Seen::Text(t.to_vec())),
            Ok(Some(Event::Binary(b))) => seen.push(Seen::Binary(b.to_vec())),
            Ok(Some(Event::Close(_))) => {
                seen.push(Seen::Close);
                return (seen, End::Closed);
            }
            Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
            Ok(Some(Event::TooBig { .. })) => return (seen, End::Broken(None)),
            Ok(None) => return (seen, End::Input),
            Err(e) => return (seen, End::Broken(Some(e))),
        }
    }
}

fn theirs(data: &[u8]) -> (Vec<Seen>, End) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX))
        .max_frame_size(Some(MAX));
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(data.to_vec())), Role::Server, Some(config));
    let mut seen = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => seen.push(Seen::Text(t.as_bytes().to_vec())),
            Ok(Message::Binary(b)) => seen.push(Seen::Binary(b.to_vec())),
            Ok(Message::Close(_)) => {
                seen.push(Seen::Close);
                return (seen, End::Closed);
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Err(Error::Io(_) | Error::ConnectionClosed | Error::AlreadyClosed) => {
                return (seen, End::Input)
            }
            Err(Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
                return (seen, End::Input)
            }
            Err(_) => return (seen, End::Broken(None)),
        }
    }
}

/// Rules only we enforce: tungstenite goes on where we stop.
fn stricter(e: &WsError) -> bool {
    matches!(
        e,
        WsError::NonMinimalLength
            | WsError::LengthOverflow
            | WsError::InvalidCloseCode(_)
            | WsError::InvalidCloseReason
            | WsError::CloseTooShort
    )
}

fuzz_target!(|data: &[u8]| {
    let (a, a_end) = ours(data);
    let (b, b_end) = theirs(data);
    let common = a.len().min(b.len());
    assert_eq!(a[..common], b[..common], "different messages");
    match (&a_end, &b_end) {
        // We stopped at a rule of ours: tungstenite may have gone on.
        (End::Broken(Some(e)), _) if stricter(e) => {}
        // We check each header rule as soon as its byte arrives, where
        // tungstenite waits for the whole header: with the input cut short
        // we may have stopped where it still waits for more.
        (End::Broken(_), End::Input) => assert_eq!(a.len(), b.len(), "ours {a_end:?}"),
        // Otherwise both decoded the same and stopped alike: a protocol
        // error on both sides, the input running out on both, or a close.
        _ => {
            assert_eq!(a.len(), b.len(), "one side decoded more: ours {a_end:?}, theirs {b_end:?}");
            assert_eq!(
                std::mem::discriminant(&a_end),
                std::mem::discriminant(&b_end),
                "ours {a_end:?}, theirs {b_end:?}"
            );
        }
    }
});
