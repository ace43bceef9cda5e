//! The two ways a WebSocket connection fails: a refused opening handshake
//! (answered with an HTTP error response) and a broken frame stream
//! (answered with a Close frame carrying a close code).
//!
//! Each error knows its own answer ([`HandshakeError::response`],
//! [`WsError::close_code`]) so that the gateway's IO loop never has to
//! translate between them and two places cannot disagree about it.

use super::close;

/// Why an HTTP request was refused as a WebSocket opening handshake.
///
/// Every variant maps to one HTTP status; [`HandshakeError::response`]
/// renders the complete response to write before closing the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The bytes are not an HTTP/1.x request (or one we refuse to read,
    /// such as a GET with a body, whose bytes would be taken for frames).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The request uses HTTP/1.0 (or older); WebSocket needs HTTP/1.1.
    #[error("HTTP/1.1 is required")]
    HttpVersion,
    /// The request headers are longer than the configured maximum (or have
    /// more header fields than we parse).
    #[error("request headers too large")]
    TooLarge,
    /// The method is not GET.
    #[error("only GET can open a WebSocket")]
    NotGet,
    /// The request is for another path than the gateway's.
    #[error("no WebSocket endpoint at this path")]
    WrongPath,
    /// There is no `Host` header (RFC 6455 §4.1 requires one).
    #[error("missing Host header")]
    MissingHost,
    /// `Upgrade: websocket` or `Connection: Upgrade` is missing: a plain
    /// HTTP request to the WebSocket endpoint.
    #[error("this endpoint speaks WebSocket only (Upgrade: websocket)")]
    NotUpgrade,
    /// There is no `Sec-WebSocket-Key` header, or more than one.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 of 16 bytes.
    #[error("Sec-WebSocket-Key must be the base64 of 16 bytes")]
    BadKey,
    /// `Sec-WebSocket-Version` is missing or not 13, the only version.
    #[error("unsupported WebSocket version; use 13")]
    BadVersion,
    /// The client offers subprotocols, none of them `confab.v1` or
    /// `confab.v1.json`.
    #[error("no supported subprotocol; offer confab.v1 or confab.v1.json")]
    NoSupportedSubprotocol,
}

impl HandshakeError {
    /// The HTTP status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::Malformed(_)
            | HandshakeError::MissingHost
            | HandshakeError::MissingKey
            | HandshakeError::BadKey
            | HandshakeError::NoSupportedSubprotocol => 400,
            HandshakeError::WrongPath => 404,
            HandshakeError::NotGet => 405,
            HandshakeError::NotUpgrade | HandshakeError::BadVersion => 426,
            HandshakeError::TooLarge => 431,
            HandshakeError::HttpVersion => 505,
        }
    }

    /// The complete HTTP response refusing the handshake: status line,
    /// headers the status calls for, and the error's text as a short
    /// plain-text body. The connection is to be closed after writing it
    /// (the response says `Connection: close`).
    pub fn response(&self) -> Vec<u8> {
        let status = self.status();
        let reason = match status {
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "HTTP Version Not Supported",
        };
        // Headers the status requires: 405 names the allowed method, 426
        // names what to upgrade to (RFC 7231 §6.5.15; a client that sent
        // the wrong version learns the right one, RFC 6455 §4.2.2).
        let (extra, connection) = match self {
            HandshakeError::NotGet => ("Allow: GET\r\n", "close"),
            HandshakeError::NotUpgrade => ("Upgrade: websocket\r\n", "Upgrade, close"),
            HandshakeError::BadVersion => ("Sec-WebSocket-Version: 13\r\n", "close"),
            _ => ("", "close"),
        };
        let body = format!("{self}\n");
        format!(
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// Why a client's frame stream was rejected: the connection is to be
/// closed with [`WsError::close_code`] (RFC 6455 §7.1.7, "fail the WebSocket
/// connection"). None of these can be skipped over, because either the
/// stream can no longer be split into frames or the message is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// RSV1–3 are set, but no extension was negotiated (we offer none).
    #[error("reserved bits set ({0:#x})")]
    ReservedBits(u8),
    /// An opcode RFC 6455 reserves (3–7, 0xB–0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A client frame without a mask (RFC 6455 §5.1: the server must close).
    #[error("client frame is not masked")]
    Unmasked,
    /// A control frame (close, ping, pong) without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with a payload over 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    /// A 64-bit payload length with its most significant bit set.
    #[error("payload length has its high bit set")]
    LengthOverflow,
    /// A payload length not in its shortest encoding (RFC 6455 §5.2).
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new message before the fragmented one was finished")]
    ExpectedContinuation,
    /// A text message that is not valid UTF-8 (detected as early as the
    /// fragment that breaks it).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A Close frame with a one-byte payload (a code needs two).
    #[error("close frame payload of one byte")]
    CloseTooShort,
    /// A Close frame with a code that may not be sent (see
    /// [`close::is_valid`]).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A Close frame whose reason is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// `decode` was called again after it had returned an error.
    #[error("decoder already failed")]
    Failed,
}

impl WsError {
    /// The close code to send before closing the connection: 1007 for bad
    /// UTF-8, 1002 for everything else.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 | WsError::InvalidCloseReason => close::INVALID_PAYLOAD,
            _ => close::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the Close frame (well under the 123 bytes a close
    /// reason may take), naming the class of error without echoing any of
    /// the peer's bytes.
    pub fn close_reason(&self) -> &'static str {
        match self {
            WsError::ReservedBits(_) => "reserved bits set",
            WsError::ReservedOpcode(_) => "reserved opcode",
            WsError::Unmasked => "client frames must be masked",
            WsError::FragmentedControl => "fragmented control frame",
            WsError::ControlTooLong(_) => "control frame too long",
            WsError::LengthOverflow => "payload length overflow",
            WsError::NonMinimalLength => "payload length not minimal",
            WsError::UnexpectedContinuation => "unexpected continuation frame",
            WsError::ExpectedContinuation => "expected continuation frame",
            WsError::InvalidUtf8 => "invalid UTF-8 in text message",
            WsError::CloseTooShort => "close payload too short",
            WsError::InvalidCloseCode(_) => "invalid close code",
            WsError::InvalidCloseReason => "invalid UTF-8 in close reason",
            WsError::Failed => "protocol error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: HandshakeError) -> String {
        String::from_utf8(e.response()).unwrap()
    }

    #[test]
    fn handshake_responses_are_complete_http_messages() {
        let all = [
            HandshakeError::Malformed("x"),
            HandshakeError::HttpVersion,
            HandshakeError::TooLarge,
            HandshakeError::NotGet,
            HandshakeError::WrongPath,
            HandshakeError::MissingHost,
            HandshakeError::NotUpgrade,
            HandshakeError::MissingKey,
            HandshakeError::BadKey,
            HandshakeError::BadVersion,
            HandshakeError::NoSupportedSubprotocol,
        ];
        for e in all {
            let r = text(e);
            let status_line = format!("HTTP/1.1 {} ", e.status());
            assert!(r.starts_with(&status_line), "{r}");
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
            assert!(head.contains("\r\nConnection: "), "{head}");
            assert_eq!(body, format!("{e}\n"));
            // Parses as a complete HTTP response.
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut resp = httparse::Response::new(&mut headers);
            let n = resp.parse(r.as_bytes()).unwrap().unwrap();
            assert_eq!(resp.code, Some(e.status()));
            assert_eq!(n + body.len(), r.len());
        }
    }

    #[test]
    fn handshake_statuses_and_required_headers() {
        assert_eq!(
            text(HandshakeError::BadVersion),
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 38\r\n\
             Connection: close\r\n\r\nunsupported WebSocket version; use 13\n"
        );
        let r = text(HandshakeError::NotUpgrade);
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"));
        assert!(r.contains("\r\nConnection: Upgrade, close\r\n"));
        let r = text(HandshakeError::NotGet);
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"));
        assert!(text(HandshakeError::WrongPath).starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(HandshakeError::TooLarge)
            .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text(HandshakeError::NoSupportedSubprotocol).starts_with("HTTP/1.1 400 "));
        assert!(text(HandshakeError::HttpVersion).starts_with("HTTP/1.1 505 "));
    }

    #[test]
    fn ws_errors_map_to_close_codes_and_short_reasons() {
        assert_eq!(WsError::Unmasked.close_code(), 1002);
        assert_eq!(WsError::ReservedBits(0x40).close_code(), 1002);
        assert_eq!(WsError::InvalidCloseCode(1005).close_code(), 1002);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        assert_eq!(WsError::InvalidCloseReason.close_code(), 1007);
        assert!(WsError::NonMinimalLength.close_reason().len() <= 123);
    }
}
