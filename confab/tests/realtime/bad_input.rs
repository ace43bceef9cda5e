//! The bad-input matrix: malformed, truncated, oversized, mistyped and
//! out-of-order input on every surface a stranger reaches (the HTTP API,
//! the WebSocket handshake, WebSocket framing, both encodings, every
//! request type), each answered with its typed error or its documented
//! close, while a canary pair keeps chatting on the same node: every
//! canary message is acknowledged and delivered, in order, throughout.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab::config::Config;
use confab_gateway::IoMode;
use confab_protocol::frame::{self, Frame, HistoryAnchor, Target};
use confab_protocol::{binary, ErrorCode};
use confab_storage::writer::WriterConfig;
use confab_types::{ChannelId, UserId};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::client::*;
use crate::common::*;

/// Where the attacks come from: not the canary's address.
const STRANGER: [u8; 4] = [127, 0, 0, 66];

async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `raw` on a fresh connection and reads the answer until the
/// server closes: its status and, for a JSON error body, its `code`.
async fn http(to: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = connect_from(STRANGER, to).await;
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let code = text
        .split_once("\"code\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(c, _)| c.to_owned())
        .unwrap_or_default();
    (status, code)
}

fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// A masked client frame.
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session of `user` on `subprotocol`, past `Welcome` and its replay.
async fn session(node: &TestNode, user: UserId, device: u64, json: bool) -> WsStream {
    let mut req = node.url().as_str().into_client_request().unwrap();
    let proto = if json { "confab.v1.json" } else { "confab.v1" };
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello = hello(&node.token(user), device, 0);
    let msg = if json {
        Ws::Text(confab_protocol::json::encode(&hello).into())
    } else {
        Ws::Binary(binary::encode_to_vec(&hello).into())
    };
    ws.send(msg).await.unwrap();
    loop {
        if let Frame::SyncBatch(b) = next_frame(&mut ws).await.expect("a replay") {
            if !b.has_more {
                return ws;
            }
        }
    }
}

/// The next protocol frame (either encoding); `None` once the server
/// closed the WebSocket, with its close status then in the error.
async fn next_frame(ws: &mut WsStream) -> Result<Frame, Option<u16>> {
    loop {
        let m = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("an answer in time");
        match m {
            Some(Ok(Ws::Binary(b))) => return Ok(binary::decode_exact(&b, 1 << 21).unwrap()),
            Some(Ok(Ws::Text(t))) => {
                return Ok(confab_protocol::json::decode(t.as_bytes(), 1 << 21).unwrap())
            }
            Some(Ok(Ws::Close(c))) => return Err(c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// What the server must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An `Error` with this code and frame type; the session goes on.
    Error(ErrorCode, u8),
    /// `Close` with this code, then the WebSocket closes with this status.
    Close(ErrorCode, u16),
    /// Only a WebSocket close with this status (broken WebSocket framing).
    WsClose(u16),
}

/// What to send on a session.
enum Input {
    Message(Ws),
    Raw(Vec<u8>),
}

async fn check_session_case(
    node: &TestNode,
    user: UserId,
    name: &str,
    json: bool,
    input: Input,
    expect: Expect,
) {
    let mut ws = session(node, user, 100, json).await;
    match input {
        Input::Message(m) => ws.send(m).await.unwrap(),
        Input::Raw(bytes) => {
            let tcp = match ws.get_mut() {
                tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
                _ => unreachable!("plain ws"),
            };
            tcp.write_all(&bytes).await.unwrap();
        }
    }
    match expect {
        Expect::Error(code, ty) => {
            let e = loop {
                match next_frame(&mut ws).await {
                    Ok(Frame::Error(e)) => break e,
                    Ok(Frame::Presence(_)) => continue,
                    other => panic!("{name}: expected Error {code:?}, got {other:?}"),
                }
            };
            assert_eq!((e.code, e.frame_type), (code, ty), "{name}: {e:?}");
            // The session goes on.
            let hb = Frame::Heartbeat(frame::Heartbeat { nonce: 4242 });
            let msg = if json {
                Ws::Text(confab_protocol::json::encode(&hb).into())
            } else {
                Ws::Binary(binary::encode_to_vec(&hb).into())
            };
            ws.send(msg).await.unwrap();
            loop {
                match next_frame(&mut ws).await {
                    Ok(Frame::HeartbeatAck(a)) if a.nonce == 4242 => break,
                    Ok(Frame::Presence(_)) => continue,
                    other => panic!("{name}: the session did not go on: {other:?}"),
                }
            }
        }
        Expect::Close(code, status) => {
            let mut closed_with = None;
            loop {
                match next_frame(&mut ws).await {
                    Ok(Frame::Error(e)) => assert_eq!(e.code, code, "{name}"),
                    Ok(Frame::Close(c)) => closed_with = Some(c.code),
                    Ok(Frame::Presence(_)) => {}
                    Ok(other) => panic!("{name}: expected Close, got {other:?}"),
                    Err(ws_status) => {
                        assert_eq!(closed_with, Some(code.code()), "{name}");
                        assert_eq!(ws_status, Some(status), "{name}");
                        break;
                    }
                }
            }
        }
        Expect::WsClose(status) => match next_frame(&mut ws).await {
            Err(ws_status) => assert_eq!(ws_status, Some(status), "{name}"),
            Ok(f) => panic!("{name}: expected a WebSocket close, got {f:?}"),
        },
    }
}

/// The canary: `a` sends to `b` every 20 ms until told to stop; every
/// send is acknowledged and arrives in order. Returns the acks' latencies.
async fn canary(node: &TestNode, a: UserId, b: UserId, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut sender = Client::connect(node, a, 1, 0).await;
    sender.replay().await;
    let mut receiver = Client::connect(node, b, 1, 0).await;
    receiver.replay().await;
    let mut latencies = Vec::new();
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let sent = Instant::now();
        sender
            .post(id, Target::User(b), &format!("canary {id}"))
            .await;
        let ack = sender.ack().await;
        latencies.push(sent.elapsed());
        assert_eq!(ack.client_msg_id, id);
        let m = receiver.message().await;
        assert_eq!(
            &*m.text,
            format!("canary {id}").as_str(),
            "in order, none lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

#[test]
fn every_class_of_bad_input_gets_its_answer_and_the_canary_keeps_chatting() {
    let node = TestNode::start_configured(
        IoMode::Epoll,
        |c: &mut Config| {
            c.api.header_timeout_secs = 1;
            c.api.max_connections_per_address = 20;
            c.api.exempt_loopback = false;
            c.gateway.max_connections_per_address = 20;
            c.gateway.exempt_loopback = false;
        },
        |_| {},
        WriterConfig::default(),
    );
    let (api, ws_addr) = (node.node.api_addr, node.node.ws_addr);
    let (alice, bob, eve) = (node.user("alice"), node.user("bob"), node.user("eve"));
    let group = node.group(alice, &[bob]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut classes = 0;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let canary = {
            let stop = stop.clone();
            let node = &node;
            async move { canary(node, alice, bob, stop).await }
        };
        let attacks = async {
            // ---- HTTP API ----------------------------------------------
            let json = "Content-Type: application/json";
            let bearer = format!("Authorization: Bearer {}", node.token(eve));
            let huge_header = format!("X-Filler: {}", "a".repeat(100_000));
            let http_cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
                ("request line", b"GARBAGE\r\n\r\n".to_vec(), 400, ""),
                (
                    "header too large",
                    request("GET", "/readyz", &[huge_header.as_str()], b""),
                    431,
                    "",
                ),
                (
                    "not JSON",
                    request("POST", "/v1/signup", &[json], b"{nope"),
                    400,
                    "MALFORMED_JSON",
                ),
                (
                    "wrong type",
                    request(
                        "POST",
                        "/v1/signup",
                        &[json],
                        br#"{"username":5,"password":"password-1"}"#,
                    ),
                    400,
                    "INVALID_REQUEST",
                ),
                (
                    "unknown field",
                    request(
                        "POST",
                        "/v1/login",
                        &[json],
                        br#"{"username":"a","password":"b","admin":true}"#,
                    ),
                    400,
                    "INVALID_REQUEST",
                ),
                (
                    "body too large",
                    request("POST", "/v1/signup", &[json], &vec![b' '; 70_000]),
                    413,
                    "PAYLOAD_TOO_LARGE",
                ),
                (
                    "no content type",
                    request("POST", "/v1/login", &[], b"{}"),
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                ),
                (
                    "id overflow",
                    request("GET", "/v1/users/18446744073709551616", &[&bearer], b""),
                    400,
                    "INVALID_PARAMETER",
                ),
                (
                    "signed id",
                    request("GET", "/v1/users/+5", &[&bearer], b""),
                    400,
                    "INVALID_PARAMETER",
                ),
                (
                    "unknown route",
                    request("GET", "/v1/teleport", &[], b""),
                    404,
                    "NOT_FOUND",
                ),
                (
                    "wrong method",
                    request("DELETE", "/v1/signup", &[], b""),
                    405,
                    "METHOD_NOT_ALLOWED",
                ),
                (
                    "forged token",
                    request("GET", "/v1/me", &["Authorization: Bearer abc.def.ghi"], b""),
                    401,
                    "INVALID_TOKEN",
                ),
                (
                    "half-sent header",
                    b"GET /readyz HTTP/1.1\r\nHost: x\r\n".to_vec(),
                    0,
                    "",
                ),
            ];
            for (name, raw, status, code) in http_cases {
                let (got_status, got_code) = http(api, &raw).await;
                assert_eq!((got_status, got_code.as_str()), (status, code), "HTTP {name}");
                classes += 1;
            }

            // ---- WebSocket handshake -----------------------------------
            let upgrade = |path: &str, extra: &str| {
                format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Version: 13\r\n{extra}\r\n"
                )
            };
            let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
            let handshake_cases: Vec<(&str, String, u16)> = vec![
                ("wrong path", upgrade("/v2/ws", key), 404),
                ("no key", upgrade("/v1/ws", ""), 400),
                (
                    "bad version",
                    upgrade("/v1/ws", key).replace("Version: 13", "Version: 12"),
                    426,
                ),
                (
                    "unknown subprotocol",
                    upgrade("/v1/ws", &format!("{key}Sec-WebSocket-Protocol: mqtt\r\n")),
                    400,
                ),
                (
                    "too large",
                    upgrade("/v1/ws", &format!("{key}X-Filler: {}\r\n", "b".repeat(9000))),
                    431,
                ),
                ("not GET", "POST /v1/ws HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), 405),
            ];
            for (name, raw, status) in handshake_cases {
                let (got, _) = http(ws_addr, raw.as_bytes()).await;
                assert_eq!(got, status, "handshake {name}");
                classes += 1;
            }

            // ---- WebSocket framing, and both encodings -------------------
            use Expect::*;
            let bin = |bytes: &[u8]| Input::Message(Ws::Binary(bytes.to_vec().into()));
            let text = |t: &str| Input::Message(Ws::Text(t.to_owned().into()));
            let send_to = |channel: ChannelId, text: &str| {
                Frame::Send(frame::Send {
                    client_msg_id: 9,
                    target: Target::Channel(channel),
                    text: text.into(),
                })
            };
            let enc = |f: &Frame| Input::Message(Ws::Binary(binary::encode_to_vec(f).into()));
            let unknown = ChannelId(group.0 + 1_000_000);
            let cases: Vec<(&str, bool, Input, Expect)> = vec![
                ("unmasked frame", false, Input::Raw(vec![0x82, 0x01, 0x00]), WsClose(1002)),
                ("reserved bits", false, Input::Raw(masked(0xC2, b"x")), WsClose(1002)),
                ("reserved opcode", false, Input::Raw(masked(0x83, b"")), WsClose(1002)),
                ("fragmented ping", false, Input::Raw(masked(0x09, b"")), WsClose(1002)),
                ("text not UTF-8", true, Input::Raw(masked(0x81, &[0xC0, 0xAF])), WsClose(1007)),
                (
                    "oversize message",
                    false,
                    bin(&vec![0u8; 1_400_000]),
                    Error(ErrorCode::FrameTooLarge, 0),
                ),
                ("unknown type", false, bin(&[0x03, 0x3f, 0x01, 0x02]), Error(ErrorCode::UnknownFrameType, 0)),
                ("truncated body", false, bin(&[0x05, 0x02, 0x01, 0x00, 0x01, 0x09]), Error(ErrorCode::BadFrame, 2)),
                ("trailing bytes", false, bin(&[0x03, 0x0a, 0x05, 0x00]), Error(ErrorCode::BadFrame, 0x0a)),
                ("non-minimal varint", false, bin(&[0x03, 0x0a, 0x81, 0x00]), Error(ErrorCode::BadFrame, 0x0a)),
                ("u16 overflow", false, bin(&[0x08, 0x01, 0x80, 0x80, 0x04, 0x01, 0x00, 0x00, 0x00]), Error(ErrorCode::BadFrame, 1)),
                ("list count too large", false, bin(&[0x05, 0x09, 0xff, 0xff, 0xff, 0x0f]), Error(ErrorCode::BadFrame, 9)),
                ("string not UTF-8", false, bin(&[0x07, 0x02, 0x01, 0x00, 0x01, 0x02, 0xC0, 0xAF]), Error(ErrorCode::BadFrame, 2)),
                ("zero length prefix", false, bin(&[0x00]), Close(ErrorCode::BadFrame, 4100)),
                ("11-byte length prefix", false, bin(&[0x80; 11]), Close(ErrorCode::BadFrame, 4100)),
                ("not JSON", true, text("not json"), Error(ErrorCode::BadFrame, 0)),
                ("unknown JSON type", true, text(r#"{"type":"teleport"}"#), Error(ErrorCode::UnknownFrameType, 0)),
                ("negative integer", true, text(r#"{"type":"heartbeat","nonce":-1}"#), Error(ErrorCode::BadFrame, 0)),
                ("missing field", true, text(r#"{"type":"heartbeat"}"#), Error(ErrorCode::BadFrame, 0)),
                ("duplicate member", true, text(r#"{"type":"heartbeat","nonce":1,"nonce":2}"#), Error(ErrorCode::BadFrame, 0)),
                ("binary on JSON", true, bin(&[1, 2, 3]), Error(ErrorCode::BadFrame, 0)),
                // ---- every request type, with arguments it refuses ----
                ("second Hello", false, enc(&hello(&node.token(eve), 1, 0)), Error(ErrorCode::UnexpectedFrame, 1)),
                (
                    "server frame from a client",
                    false,
                    enc(&Frame::HeartbeatAck(frame::HeartbeatAck { nonce: 1, server_time_ms: 0 })),
                    Error(ErrorCode::UnexpectedFrame, 0x49),
                ),
                ("send to an unknown channel", false, enc(&send_to(unknown, "hi")), Error(ErrorCode::ForbiddenChannel, 2)),
                ("send to a channel not joined", false, enc(&send_to(group, "hi")), Error(ErrorCode::ForbiddenChannel, 2)),
                ("send empty text", false, enc(&send_to(group, "")), Error(ErrorCode::EmptyText, 2)),
                ("send text too long", false, enc(&send_to(group, &"x".repeat(100_001))), Error(ErrorCode::TextTooLong, 2)),
                (
                    "send to an unknown user",
                    false,
                    enc(&Frame::Send(frame::Send { client_msg_id: 3, target: Target::User(UserId(u64::MAX)), text: "x".into() })),
                    Error(ErrorCode::NotFound, 2),
                ),
                (
                    "sync limit 0",
                    false,
                    enc(&Frame::Sync(frame::Sync { request_id: 1, after: confab_types::InboxSeq(0), limit: 0 })),
                    Error(ErrorCode::InvalidArgument, 3),
                ),
                (
                    "sync request id 0",
                    false,
                    enc(&Frame::Sync(frame::Sync { request_id: 0, after: confab_types::InboxSeq(0), limit: 5 })),
                    Error(ErrorCode::InvalidArgument, 3),
                ),
                (
                    "history limit 0",
                    false,
                    enc(&Frame::History(frame::History { request_id: 2, channel_id: group, anchor: HistoryAnchor::Latest, limit: 0 })),
                    Error(ErrorCode::InvalidArgument, 4),
                ),
                (
                    "history of an unknown channel",
                    false,
                    enc(&Frame::History(frame::History { request_id: 2, channel_id: unknown, anchor: HistoryAnchor::Latest, limit: 5 })),
                    Error(ErrorCode::ForbiddenChannel, 4),
                ),
                (
                    "read of an unknown channel",
                    false,
                    enc(&Frame::Read(frame::Read { channel_id: unknown, seq: confab_types::Seq(1) })),
                    Error(ErrorCode::ForbiddenChannel, 5),
                ),
                (
                    "typing in an unknown channel",
                    false,
                    enc(&Frame::Typing(frame::Typing { channel_id: unknown })),
                    Error(ErrorCode::ForbiddenChannel, 6),
                ),
                (
                    "presence query too large",
                    false,
                    enc(&Frame::PresenceQuery(frame::PresenceQuery { request_id: 4, user_ids: (0..501).map(UserId).collect() })),
                    Error(ErrorCode::InvalidArgument, 7),
                ),
                (
                    "presence subscription too large",
                    false,
                    enc(&Frame::PresenceSubscribe(frame::PresenceSubscribe { request_id: 5, user_ids: (0..501).map(UserId).collect() })),
                    Error(ErrorCode::InvalidArgument, 8),
                ),
            ];
            for (name, json, input, expect) in cases {
                check_session_case(&node, eve, name, json, input, expect).await;
                classes += 1;
            }

            // ---- out of order: a request before Hello --------------------
            let mut raw = open(&node.url()).await;
            raw.send(Ws::Binary(binary::encode_to_vec(&send_to(group, "early")).into()))
                .await
                .unwrap();
            match next_frame(&mut raw).await {
                Ok(Frame::Error(e)) => assert_eq!(e.code, ErrorCode::UnexpectedFrame),
                other => panic!("request before Hello: {other:?}"),
            }
            classes += 1;

            // ---- thousands of half-open connections from one peer --------
            let mut held = Vec::new();
            for _ in 0..200 {
                if let Ok(s) =
                    tokio::time::timeout(Duration::from_secs(2), connect_from(STRANGER, ws_addr))
                        .await
                {
                    held.push(s);
                }
            }
            assert!(held.len() > 20, "only {} connections opened", held.len());
            // At most the cap stay open; the canary and everyone else are
            // served meanwhile.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut open_ones = 0;
            for s in &mut held {
                let mut b = [0u8; 1];
                let read = tokio::time::timeout(Duration::from_millis(5), s.read(&mut b)).await;
                if read.is_err() {
                    open_ones += 1;
                }
            }
            assert!(open_ones <= 20, "{open_ones} half-open connections kept");
            let mut other = Client::connect(&node, eve, 2, 0).await;
            other.replay().await;
            drop(held);
            classes += 1;

            stop.store(true, Ordering::Relaxed);
        };
        let (latencies, ()) = tokio::join!(canary, attacks);
        assert!(classes >= 57, "{classes} classes");
        let mut sorted = latencies.clone();
        sorted.sort();
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        eprintln!(
            "bad input: {classes} classes; canary {} messages, ack p50 {:?}, p99 {:?}, max {:?}",
            sorted.len(),
            sorted[sorted.len() / 2],
            p99,
            sorted.last().unwrap()
        );
        assert!(sorted.len() >= 10, "the canary kept chatting");
    });
}
