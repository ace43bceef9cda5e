//! The WebSocket opening handshake (RFC 6455 §4.2), server side, on bytes
//! the gateway has already read: no IO, no allocation until the request is
//! complete.
//!
//! httparse does the HTTP/1.1 parsing (a well-tested, zero-copy parser);
//! this module checks what RFC 6455 asks of the request, picks the
//! subprotocol and renders the `101 Switching Protocols` response.
//!
//! # Subprotocol choice
//!
//! The subprotocol fixes the encoding of every confab frame on the
//! connection: `confab.v1` is the binary encoding, `confab.v1.json` the
//! JSON one. The first entry of the client's `Sec-WebSocket-Protocol` list
//! (in the client's order, over all such headers) that we support wins. A
//! client that offers no subprotocol at all gets binary `confab.v1`, and
//! the response then carries no `Sec-WebSocket-Protocol` header (RFC 6455
//! §4.1 lets a client fail a connection whose server picked a subprotocol
//! it did not offer). A client that offers only subprotocols we do not
//! speak is refused with 400 instead of being answered in an encoding it
//! did not ask for.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use super::error::HandshakeError;

pub use confab_protocol::{
    Encoding, WS_SUBPROTOCOL_BINARY as SUBPROTOCOL_BINARY, WS_SUBPROTOCOL_JSON as SUBPROTOCOL_JSON,
};

/// The GUID RFC 6455 §1.3 appends to the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most header fields we parse in a request. Browsers send about 15; a
/// request with more is refused as too large rather than read further.
const MAX_HEADERS: usize = 64;

/// The encoding a subprotocol name selects, if we speak it. Names are
/// compared exactly: subprotocol tokens are case-sensitive.
fn from_subprotocol(name: &str) -> Option<Encoding> {
    match name {
        SUBPROTOCOL_BINARY => Some(Encoding::Binary),
        SUBPROTOCOL_JSON => Some(Encoding::Json),
        _ => None,
    }
}

/// An accepted opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request path, without the query (equal to the expected path).
    pub path: String,
    /// The query string after `?`, if the request had one (without the
    /// `?`); the gateway may read parameters from it.
    pub query: Option<String>,
    /// The chosen encoding.
    pub encoding: Encoding,
    /// Whether the client offered a subprotocol; when it did not, the
    /// encoding is the default [`Encoding::Binary`] and `response` names no
    /// subprotocol.
    pub subprotocol_offered: bool,
    /// The complete `HTTP/1.1 101 Switching Protocols` response to write,
    /// with `Sec-WebSocket-Accept` and (when the client offered one)
    /// `Sec-WebSocket-Protocol`.
    pub response: Vec<u8>,
    /// How many bytes of the buffer the request took. Any bytes after them
    /// are already WebSocket frames (a client may send them before it has
    /// read the response).
    pub consumed: usize,
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)), RFC 6455 §4.2.2.
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key);
    sha.update(ACCEPT_GUID);
    BASE64.encode(sha.finalize())
}

/// Parses an HTTP/1.1 WebSocket upgrade request from the start of `buf`.
///
/// `Ok(None)` means the request is not complete yet: read more and call
/// again with the whole buffer. The request (its head: request line and
/// headers) may take at most `max_request_bytes`; a longer one, complete
/// or not, is refused with [`HandshakeError::TooLarge`], so a slow client
/// cannot make the gateway buffer without bound.
///
/// On `Ok(Some(upgrade))`, write `upgrade.response` and treat the bytes
/// after `upgrade.consumed` as WebSocket frames. On `Err(e)`, write
/// `e.response()` and close the connection.
pub fn parse_upgrade(
    buf: &[u8],
    expected_path: &str,
    max_request_bytes: usize,
) -> Result<Option<Upgrade>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Only the first `max_request_bytes` are looked at, so the verdict does
    // not depend on how much one read brought: a request with a bad byte
    // past the limit is too large, whether it arrived in one piece or in
    // many.
    let window = &buf[..buf.len().min(max_request_bytes)];
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if window.len() >= max_request_bytes => {
            return Err(HandshakeError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::Malformed("not an HTTP/1.1 request")),
    };

    // The method and path first: a request for another resource is a 404
    // whatever its headers say.
    if req.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    let target = req.path.unwrap_or("");
    let (path, query) = split_target(target);
    if path != expected_path {
        return Err(HandshakeError::WrongPath);
    }

    let mut host = false;
    let mut upgrade = false;
    let mut connection_upgrade = false;
    let mut key: Option<&[u8]> = None;
    let mut keys = 0;
    let mut version_13 = false;
    let mut offered = false;
    let mut chosen: Option<Encoding> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = !h.value.is_empty();
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(h.value, b"upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys += 1;
            key = Some(trim(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version_13 = trim(h.value) == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            for token in h.value.split(|&b| b == b',').map(trim) {
                if token.is_empty() {
                    continue;
                }
                offered = true;
                if chosen.is_none() {
                    chosen = std::str::from_utf8(token).ok().and_then(from_subprotocol);
                }
            }
        } else if (name.eq_ignore_ascii_case("content-length") && trim(h.value) != b"0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // A body would be read as WebSocket frames; refuse it outright.
            return Err(HandshakeError::Malformed("upgrade request with a body"));
        }
    }

    if !upgrade || !connection_upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    if !version_13 {
        return Err(HandshakeError::BadVersion);
    }
    if !host {
        return Err(HandshakeError::MissingHost);
    }
    let key = match (key, keys) {
        (Some(key), 1) => key,
        _ => return Err(HandshakeError::MissingKey),
    };
    // The key is base64 of 16 random bytes: 24 characters.
    if key.len() != 24 || BASE64.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::BadKey);
    }
    let encoding = match (offered, chosen) {
        (_, Some(encoding)) => encoding,
        (false, None) => Encoding::Binary,
        (true, None) => return Err(HandshakeError::NoSupportedSubprotocol),
    };

    let mut response = Vec::with_capacity(160);
    response.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    response.extend_from_slice(accept_key(key).as_bytes());
    if offered {
        response.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        response.extend_from_slice(encoding.subprotocol().as_bytes());
    }
    response.extend_from_slice(b"\r\n\r\n");

    Ok(Some(Upgrade {
        path: path.to_owned(),
        query: query.map(str::to_owned),
        encoding,
        subprotocol_offered: offered,
        response,
        consumed,
    }))
}

/// Splits a request target into path and query. The absolute form
/// (`http://host/path`), which HTTP/1.1 servers must accept, is reduced to
/// its path.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = match target.find("://") {
        Some(i) if !target.starts_with('/') => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        _ => target,
    };
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Whether a comma-separated header value holds `token`, ignoring case
/// (`Connection: keep-alive, Upgrade` from Firefox holds `upgrade`).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// `value` without leading and trailing spaces and tabs.
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/ws";
    const MAX: usize = 8192;

    /// The RFC 6455 §1.3 example request, with extra headers spliced in.
    fn request(extra: &str) -> String {
        format!(
            "GET /v1/ws HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn accept(req: &str) -> Upgrade {
        parse_upgrade(req.as_bytes(), PATH, MAX)
            .expect("accepted")
            .expect("complete")
    }

    fn refuse(req: &str) -> HandshakeError {
        parse_upgrade(req.as_bytes(), PATH, MAX).expect_err("refused")
    }

    #[test]
    fn the_verdict_does_not_depend_on_how_the_request_arrived() {
        // A bad byte past the size limit: too large, whole or in pieces
        // (found by the http_upgrade fuzz target).
        let mut req = b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 3000));
        req.extend_from_slice(b"\x01\r\n\r\n");
        assert_eq!(
            parse_upgrade(&req, "/v1/ws", 2048),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(
            parse_upgrade(&req[..2048], "/v1/ws", 2048),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(parse_upgrade(&req[..2047], "/v1/ws", 2048), Ok(None));
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_binary_subprotocol_with_exact_response() {
        let req = request("Sec-WebSocket-Protocol: confab.v1\r\n");
        let up = accept(&req);
        assert_eq!(up.encoding, Encoding::Binary);
        assert!(up.subprotocol_offered);
        assert_eq!(up.path, "/v1/ws");
        assert_eq!(up.query, None);
        assert_eq!(up.consumed, req.len());
        assert_eq!(
            String::from_utf8(up.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: confab.v1\r\n\r\n"
        );
    }

    #[test]
    fn accepts_json_subprotocol() {
        let up = accept(&request("Sec-WebSocket-Protocol: confab.v1.json\r\n"));
        assert_eq!(up.encoding, Encoding::Json);
        assert!(String::from_utf8(up.response)
            .unwrap()
            .ends_with("\r\nSec-WebSocket-Protocol: confab.v1.json\r\n\r\n"));
    }

    #[test]
    fn first_supported_subprotocol_in_client_order_wins() {
        let up = accept(&request(
            "Sec-WebSocket-Protocol: chat, confab.v1.json , confab.v1\r\n",
        ));
        assert_eq!(up.encoding, Encoding::Json);
        // Across several headers, in order.
        let up = accept(&request(
            "Sec-WebSocket-Protocol: x.v2\r\nSec-WebSocket-Protocol: confab.v1,confab.v1.json\r\n",
        ));
        assert_eq!(up.encoding, Encoding::Binary);
        // Names are case-sensitive tokens.
        assert_eq!(
            refuse(&request("Sec-WebSocket-Protocol: CONFAB.V1\r\n")),
            HandshakeError::NoSupportedSubprotocol
        );
    }

    #[test]
    fn no_subprotocol_defaults_to_binary_without_naming_it() {
        let up = accept(&request(""));
        assert_eq!(up.encoding, Encoding::Binary);
        assert!(!up.subprotocol_offered);
        assert_eq!(
            String::from_utf8(up.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn only_unsupported_subprotocols_are_refused() {
        let e = refuse(&request("Sec-WebSocket-Protocol: chat, superchat\r\n"));
        assert_eq!(e, HandshakeError::NoSupportedSubprotocol);
        assert!(e.response().starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn header_names_and_tokens_ignore_case_and_lists() {
        let req = "GET /v1/ws?device=7 HTTP/1.1\r\nhost: a\r\nupgrade: WebSocket\r\n\
                   connection: keep-alive, upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   sec-websocket-version:   13 \r\n\r\n";
        let up = accept(req);
        assert_eq!(up.path, "/v1/ws");
        assert_eq!(up.query.as_deref(), Some("device=7"));
    }

    #[test]
    fn absolute_form_target_is_reduced_to_its_path() {
        let req = request("").replace("GET /v1/ws ", "GET http://server.example.com/v1/ws ");
        assert_eq!(accept(&req).path, "/v1/ws");
    }

    #[test]
    fn bytes_after_the_request_are_left_for_the_codec() {
        let req = request("");
        let mut buf = req.clone().into_bytes();
        buf.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let up = parse_upgrade(&buf, PATH, MAX).unwrap().unwrap();
        assert_eq!(up.consumed, req.len());
        assert_eq!(&buf[up.consumed..], &[0x81, 0x80, 1, 2, 3, 4]);
    }

    #[test]
    fn partial_requests_need_more_bytes() {
        let req = request("Sec-WebSocket-Protocol: confab.v1\r\n");
        for end in 0..req.len() {
            assert_eq!(
                parse_upgrade(&req.as_bytes()[..end], PATH, MAX),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
        assert!(parse_upgrade(req.as_bytes(), PATH, MAX).unwrap().is_some());
    }

    #[test]
    fn oversize_requests_are_refused_complete_or_not() {
        let padding = format!("X-Padding: {}\r\n", "a".repeat(300));
        let req = request(&padding);
        let max = 200;
        // Partial, already past the limit.
        assert_eq!(
            parse_upgrade(&req.as_bytes()[..max], PATH, max),
            Err(HandshakeError::TooLarge)
        );
        // Partial under the limit: still waiting.
        assert_eq!(
            parse_upgrade(&req.as_bytes()[..max - 1], PATH, max),
            Ok(None)
        );
        // Complete but over the limit.
        assert_eq!(
            parse_upgrade(req.as_bytes(), PATH, req.len() - 1),
            Err(HandshakeError::TooLarge)
        );
        assert!(parse_upgrade(req.as_bytes(), PATH, req.len()).is_ok());
        // Too many header fields.
        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(refuse(&request(&many)), HandshakeError::TooLarge);
        let e = HandshakeError::TooLarge.response();
        assert!(e.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn refusals_name_the_problem() {
        let ok = request("");
        let cases: Vec<(String, HandshakeError, &str)> = vec![
            (
                ok.replace("GET ", "POST "),
                HandshakeError::NotGet,
                "HTTP/1.1 405 ",
            ),
            (
                ok.replace("/v1/ws", "/v2/ws"),
                HandshakeError::WrongPath,
                "HTTP/1.1 404 ",
            ),
            (
                ok.replace("/v1/ws", "/v1/ws/x"),
                HandshakeError::WrongPath,
                "HTTP/1.1 404 ",
            ),
            (
                ok.replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::HttpVersion,
                "HTTP/1.1 505 ",
            ),
            (
                ok.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::NotUpgrade,
                "HTTP/1.1 426 ",
            ),
            (
                ok.replace("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::NotUpgrade,
                "HTTP/1.1 426 ",
            ),
            (
                ok.replace("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::NotUpgrade,
                "HTTP/1.1 426 ",
            ),
            (
                ok.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                HandshakeError::BadVersion,
                "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n",
            ),
            (
                ok.replace("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::BadVersion,
                "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n",
            ),
            (
                ok.replace("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHost,
                "HTTP/1.1 400 ",
            ),
            (
                ok.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::MissingKey,
                "HTTP/1.1 400 ",
            ),
            (
                request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
                HandshakeError::MissingKey,
                "HTTP/1.1 400 ",
            ),
            (
                ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::BadKey,
                "HTTP/1.1 400 ",
            ),
            (
                ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!!!"),
                HandshakeError::BadKey,
                "HTTP/1.1 400 ",
            ),
            (
                request("Content-Length: 5\r\n"),
                HandshakeError::Malformed("upgrade request with a body"),
                "HTTP/1.1 400 ",
            ),
            (
                "HELLO\0 world\r\n\r\n".to_owned(),
                HandshakeError::Malformed("not an HTTP/1.1 request"),
                "HTTP/1.1 400 ",
            ),
        ];
        for (req, want, prefix) in cases {
            let got = refuse(&req);
            assert_eq!(got, want, "{req:?}");
            let resp = String::from_utf8(got.response()).unwrap();
            assert!(resp.starts_with(prefix), "{resp:?} for {req:?}");
        }
        // Content-Length: 0 is harmless.
        assert!(parse_upgrade(request("Content-Length: 0\r\n").as_bytes(), PATH, MAX).is_ok());
    }

    #[test]
    fn token_helpers() {
        assert_eq!(trim(b" \tab c\t "), b"ab c");
        assert_eq!(trim(b"   "), b"");
        assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"upgrades", b"upgrade"));
        assert_eq!(split_target("/a?b=c?d"), ("/a", Some("b=c?d")));
        assert_eq!(split_target("ws://h"), ("/", None));
    }
}
