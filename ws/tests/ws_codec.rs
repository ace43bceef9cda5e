//! The WebSocket codec over real sockets, against a client we did not
//! write: a tiny echo server built only from `confab_ws` (the
//! handshake parser, the decoder and the encoders) on a tokio
//! `TcpListener`, driven by tokio-tungstenite's client and by raw bytes.
//!
//! Unit tests check each rule in isolation; these show that the pieces
//! interoperate with a real implementation (its masking, fragmentation,
//! subprotocol checks and closing handshake) and that a malformed stream
//! really ends with the right Close frame on the wire.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use confab_ws::{
    encode_close, encode_close_empty, encode_ping, encode_pong, encode_text, parse_upgrade,
    write_header, Decoder, Encoding, Event, OpCode, Upgrade,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode as TOp};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{Error as TError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

const PATH: &str = "/v1/ws";
const MAX_REQUEST: usize = 4096;
/// The server's message limit: the 1 MiB test message fits exactly.
const MAX_MESSAGE: usize = 1 << 20;
/// No test may hang: every await on the network is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The echo server: one task per connection, reporting each accepted
/// handshake on a channel.
struct Server {
    addr: std::net::SocketAddr,
    upgrades: mpsc::UnboundedReceiver<Upgrade>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, upgrades) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = connection(sock, tx).await;
            });
        }
    });
    Server { addr, upgrades }
}

/// Serves one connection: handshake, then echo text and binary messages,
/// answer pings, report pongs as text, ping on request, close properly.
async fn connection(
    mut sock: TcpStream,
    upgrades: mpsc::UnboundedSender<Upgrade>,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    let upgrade = loop {
        match parse_upgrade(&buf, PATH, MAX_REQUEST) {
            Ok(Some(upgrade)) => break upgrade,
            Ok(None) => {
                if sock.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            Err(e) => {
                sock.write_all(&e.response()).await?;
                return linger(sock).await;
            }
        }
    };
    sock.write_all(&upgrade.response).await?;
    buf.advance(upgrade.consumed);
    let _ = upgrades.send(upgrade);

    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Event::Binary(payload))) => {
                // Header, then the payload as is: the fan-out write path.
                write_header(&mut out, OpCode::Binary, payload.len());
                out.extend_from_slice(&payload);
            }
            Ok(Some(Event::Text(payload))) if &payload[..] == b"ping me" => {
                encode_ping(b"server ping", &mut out);
            }
            Ok(Some(Event::Text(payload))) => {
                write_header(&mut out, OpCode::Text, payload.len());
                out.extend_from_slice(&payload);
            }
            Ok(Some(Event::TooBig { len, max })) => {
                encode_text(&format!("too big: {len} > {max}"), &mut out);
            }
            Ok(Some(Event::Ping(payload))) => encode_pong(&payload, &mut out),
            Ok(Some(Event::Pong(payload))) => {
                let text = format!("pong:{}", String::from_utf8_lossy(&payload));
                encode_text(&text, &mut out);
            }
            Ok(Some(Event::Close(frame))) => {
                // Echo the status code (RFC 6455 §5.5.1), then close.
                match frame {
                    Some(f) => encode_close(f.code, &f.reason, &mut out),
                    None => encode_close_empty(&mut out),
                }
                sock.write_all(&out).await?;
                return linger(sock).await;
            }
            Ok(None) => {
                if !out.is_empty() {
                    sock.write_all(&out).await?;
                    out.clear();
                }
                let want = decoder.pending_frame_len().max(buf.len() + 4096);
                buf.reserve(want - buf.len());
                if sock.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            Err(e) => {
                sock.write_all(&out).await?;
                out.clear();
                encode_close(e.close_code(), e.close_reason(), &mut out);
                sock.write_all(&out).await?;
                return linger(sock).await;
            }
        }
    }
}

/// Closes our side and drains what the client still sends, so that unread
/// bytes do not make the kernel reset the connection before the client has
/// read our last bytes.
async fn linger(mut sock: TcpStream) -> std::io::Result<()> {
    sock.shutdown().await?;
    let mut sink = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(TIMEOUT, async {
        while sock.read(&mut sink).await.unwrap_or(0) > 0 {}
    })
    .await;
    Ok(())
}

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects with tokio-tungstenite, offering `protocols` (if any); returns
/// the client and the subprotocol the server named.
async fn connect(
    server: &Server,
    protocols: Option<&str>,
) -> Result<(Client, Option<String>), TError> {
    let mut req = format!("ws://{}{}", server.addr, PATH)
        .into_client_request()
        .unwrap();
    if let Some(p) = protocols {
        req.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(p).unwrap(),
        );
    }
    let (client, resp) = tokio::time::timeout(TIMEOUT, connect_async(req))
        .await
        .expect("connect timed out")?;
    let proto = resp
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((client, proto))
}

async fn next(client: &mut Client) -> Message {
    tokio::time::timeout(TIMEOUT, client.next())
        .await
        .expect("no message in time")
        .expect("stream ended")
        .expect("client error")
}

async fn upgrade_of(server: &mut Server) -> Upgrade {
    tokio::time::timeout(TIMEOUT, server.upgrades.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn binary_subprotocol_and_binary_echo() {
    let mut server = start().await;
    let (mut client, proto) = connect(&server, Some("confab.v1")).await.unwrap();
    assert_eq!(proto.as_deref(), Some("confab.v1"));
    assert_eq!(upgrade_of(&mut server).await.encoding, Encoding::Binary);

    for len in [0usize, 1, 125, 126, 65_535, 65_536, 300_000] {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        client.send(Message::binary(data.clone())).await.unwrap();
        assert_eq!(next(&mut client).await, Message::binary(data), "len {len}");
    }
}

#[tokio::test]
async fn json_subprotocol_and_text_echo() {
    let mut server = start().await;
    let (mut client, proto) = connect(&server, Some("confab.v1.json")).await.unwrap();
    assert_eq!(proto.as_deref(), Some("confab.v1.json"));
    assert_eq!(upgrade_of(&mut server).await.encoding, Encoding::Json);

    let text = r#"{"type":"send","text":"héllo wörld 😀"}"#;
    client.send(Message::text(text)).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text(text));
}

#[tokio::test]
async fn client_order_picks_the_subprotocol() {
    let mut server = start().await;
    let (_client, proto) = connect(&server, Some("chat, confab.v1.json, confab.v1"))
        .await
        .unwrap();
    assert_eq!(proto.as_deref(), Some("confab.v1.json"));
    assert_eq!(upgrade_of(&mut server).await.encoding, Encoding::Json);
}

#[tokio::test]
async fn no_subprotocol_defaults_to_binary() {
    let mut server = start().await;
    // tungstenite would fail the connection if the server named a
    // subprotocol it did not offer.
    let (mut client, proto) = connect(&server, None).await.unwrap();
    assert_eq!(proto, None);
    let up = upgrade_of(&mut server).await;
    assert_eq!(up.encoding, Encoding::Binary);
    assert!(!up.subprotocol_offered);
    client.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next(&mut client).await, Message::binary(vec![1, 2, 3]));
}

#[tokio::test]
async fn unsupported_subprotocol_is_refused() {
    let server = start().await;
    match connect(&server, Some("chat.v9, superchat")).await {
        Err(TError::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let body = resp.body().as_deref().unwrap_or_default();
            assert!(String::from_utf8_lossy(body).contains("confab.v1"));
        }
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn one_mebibyte_message_sent_in_fragments() {
    let server = start().await;
    let (mut client, _) = connect(&server, Some("confab.v1")).await.unwrap();
    let data: Vec<u8> = (0..MAX_MESSAGE).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<&[u8]> = data.chunks(64 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let op = if i == 0 { Data::Binary } else { Data::Continue };
        let fin = i == chunks.len() - 1;
        let frame = Frame::message(chunk.to_vec(), TOp::Data(op), fin);
        client.send(Message::Frame(frame)).await.unwrap();
        if i == 3 {
            // A ping in the middle of the message is answered at once.
            client
                .send(Message::Ping(b"mid".to_vec().into()))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        next(&mut client).await,
        Message::Pong(b"mid".to_vec().into())
    );
    assert_eq!(next(&mut client).await, Message::binary(data));

    // Text fragments split inside multi-byte characters.
    let text = "€€€ 😀😀 done";
    let raw = text.as_bytes();
    let cuts = [0, 1, 5, 9, 13, raw.len()];
    for w in cuts.windows(2) {
        let op = if w[0] == 0 {
            Data::Text
        } else {
            Data::Continue
        };
        let frame = Frame::message(raw[w[0]..w[1]].to_vec(), TOp::Data(op), w[1] == raw.len());
        client.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(next(&mut client).await, Message::text(text));
}

#[tokio::test]
async fn ping_pong_both_ways() {
    let server = start().await;
    let (mut client, _) = connect(&server, None).await.unwrap();
    client
        .send(Message::Ping(b"abc".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Message::Pong(b"abc".to_vec().into())
    );

    // The server pings; tungstenite answers with a pong by itself, which
    // the server decodes and reports back as text.
    client.send(Message::text("ping me")).await.unwrap();
    assert_eq!(
        next(&mut client).await,
        Message::Ping(b"server ping".to_vec().into())
    );
    assert_eq!(next(&mut client).await, Message::text("pong:server ping"));
}

#[tokio::test]
async fn closing_handshake_echoes_the_code() {
    let server = start().await;
    let (mut client, _) = connect(&server, None).await.unwrap();
    client
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    match next(&mut client).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // The server then closes the connection.
    let end = tokio::time::timeout(TIMEOUT, client.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
}

/// The next data message, skipping pongs.
async fn next_data(client: &mut Client) -> Message {
    loop {
        match next(client).await {
            Message::Pong(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn oversize_message_is_skipped_and_the_connection_goes_on() {
    let server = start().await;
    let (mut client, _) = connect(&server, None).await.unwrap();
    client
        .send(Message::binary(vec![0u8; MAX_MESSAGE + 1]))
        .await
        .unwrap();
    client.send(Message::binary(vec![7u8; 3])).await.unwrap();
    assert_eq!(
        next_data(&mut client).await,
        Message::text(format!("too big: {} > {MAX_MESSAGE}", MAX_MESSAGE + 1))
    );
    assert_eq!(next_data(&mut client).await, Message::binary(vec![7u8; 3]));
}

#[tokio::test]
async fn oversize_message_across_fragments_is_skipped_whole() {
    let server = start().await;
    let (mut client, _) = connect(&server, None).await.unwrap();
    for (i, op) in [Data::Text, Data::Continue, Data::Continue, Data::Continue]
        .into_iter()
        .enumerate()
    {
        let frame = Frame::message(vec![b'a'; MAX_MESSAGE / 2], TOp::Data(op), i == 3);
        client.send(Message::Frame(frame)).await.unwrap();
        if i == 1 {
            // A control frame in the middle of the skipped message is
            // still answered.
            client
                .send(Message::Ping(b"mid".to_vec().into()))
                .await
                .unwrap();
        }
    }
    client.send(Message::text("after")).await.unwrap();
    // Two halves fit exactly; the third fragment goes over.
    assert_eq!(
        next_data(&mut client).await,
        Message::text(format!(
            "too big: {} > {MAX_MESSAGE}",
            MAX_MESSAGE + MAX_MESSAGE / 2
        ))
    );
    assert_eq!(next_data(&mut client).await, Message::text("after"));
}

// ---- Raw bytes over a real socket -------------------------------------

const KEY: [u8; 4] = [0xA1, 0x02, 0xB3, 0x04];

fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![b0, 0x80 | payload.len() as u8];
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

fn raw_request(extra: &str) -> String {
    format!(
        "GET {PATH} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Writes `bytes` on a new connection and reads everything the server
/// sends until it closes.
async fn raw_exchange(server: &Server, bytes: &[u8]) -> Vec<u8> {
    let mut sock = TcpStream::connect(server.addr).await.unwrap();
    sock.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(TIMEOUT, sock.read_to_end(&mut got))
        .await
        .expect("server did not close")
        .unwrap();
    got
}

/// Splits the server's bytes into the HTTP response head and what follows.
fn split_response(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP response")
        + 4;
    (
        String::from_utf8(bytes[..end].to_vec()).unwrap(),
        &bytes[end..],
    )
}

/// A raw handshake followed by `frames`; returns the server's frames.
async fn after_handshake(server: &Server, frames: &[u8]) -> Vec<u8> {
    let mut bytes = raw_request("").into_bytes();
    // Sent in the same write as the request: the server must keep the
    // bytes after the request for the codec.
    bytes.extend_from_slice(frames);
    let got = raw_exchange(server, &bytes).await;
    let (head, rest) = split_response(&got);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    rest.to_vec()
}

/// The close code of a server Close frame at the end of `frames`.
fn close_code_at_end(frames: &[u8]) -> u16 {
    // Server frames here are short: 2-byte headers.
    let mut at = 0;
    loop {
        assert!(at + 2 <= frames.len(), "no close frame in {frames:?}");
        let (b0, len) = (frames[at], frames[at + 1] as usize);
        assert!(len < 126, "unexpected long frame");
        if b0 == 0x88 {
            assert!(len >= 2);
            assert_eq!(at + 2 + len, frames.len(), "bytes after the close frame");
            let reason = &frames[at + 4..at + 2 + len];
            assert!(std::str::from_utf8(reason).is_ok());
            return u16::from_be_bytes([frames[at + 2], frames[at + 3]]);
        }
        at += 2 + len;
    }
}

#[tokio::test]
async fn pipelined_frames_after_the_request_are_decoded() {
    let server = start().await;
    let mut frames = masked(0x81, b"early");
    frames.extend(masked(0x88, &1000u16.to_be_bytes()));
    let got = after_handshake(&server, &frames).await;
    let mut want = Vec::new();
    encode_text("early", &mut want);
    encode_close(1000, "", &mut want);
    assert_eq!(got, want);
}

#[tokio::test]
async fn raw_malformed_frames_get_the_right_close_code() {
    let server = start().await;
    let unmasked = vec![0x82, 0x03, 1, 2, 3];
    let rsv = masked(0xC1, b"x");
    let reserved_opcode = masked(0x83, b"");
    let fragmented_ping = masked(0x09, b"");
    let mut long_ping = vec![0x89, 0xFE, 0x00, 0x7E];
    long_ping.extend_from_slice(&KEY);
    long_ping.extend_from_slice(&[0; 126]);
    let lone_continuation = masked(0x80, b"x");
    let mut new_message_mid_fragment = masked(0x01, b"a");
    new_message_mid_fragment.extend(masked(0x81, b"b"));
    let bad_utf8 = masked(0x81, &[b'o', b'k', 0xC0, 0xAF]);
    let mut bad_utf8_fragments = masked(0x01, &[0xE2, 0x82]);
    bad_utf8_fragments.extend(masked(0x80, b"x"));
    let bad_close_code = masked(0x88, &1005u16.to_be_bytes());
    let bad_close_reason = masked(0x88, &[0x03, 0xE8, 0xFF]);
    let mut high_bit = vec![0x82, 0xFF];
    high_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
    high_bit.extend_from_slice(&KEY);

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, confab_ws::close::PROTOCOL_ERROR),
        ("rsv bits", rsv, 1002),
        ("reserved opcode", reserved_opcode, 1002),
        ("fragmented ping", fragmented_ping, 1002),
        ("126-byte ping", long_ping, 1002),
        ("lone continuation", lone_continuation, 1002),
        ("new message mid-fragment", new_message_mid_fragment, 1002),
        ("bad utf-8", bad_utf8, confab_ws::close::INVALID_PAYLOAD),
        ("bad utf-8 across fragments", bad_utf8_fragments, 1007),
        ("close code 1005", bad_close_code, 1002),
        ("close reason not utf-8", bad_close_reason, 1007),
        ("64-bit length high bit", high_bit, 1002),
    ];
    for (name, frames, code) in cases {
        let got = after_handshake(&server, &frames).await;
        assert_eq!(close_code_at_end(&got), code, "{name}");
    }
}

#[tokio::test]
async fn raw_handshake_refusals() {
    let server = start().await;
    let cases: Vec<(String, &str)> = vec![
        (
            raw_request("").replace(PATH, "/nope"),
            "HTTP/1.1 404 Not Found\r\n",
        ),
        (
            raw_request("").replace("Version: 13", "Version: 12"),
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n",
        ),
        (
            raw_request("").replace("GET", "PUT"),
            "HTTP/1.1 405 Method Not Allowed\r\n",
        ),
        (
            raw_request(&format!("X-Big: {}\r\n", "b".repeat(MAX_REQUEST))),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
        (
            "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n",
        ),
    ];
    for (req, want) in cases {
        let got = raw_exchange(&server, req.as_bytes()).await;
        let (head, body) = split_response(&got);
        assert!(head.starts_with(want), "{head:?} for {req:?}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
