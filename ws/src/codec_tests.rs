//! The codec against RFC 6455's examples and rules: every length
//! encoding, fragments, control frames in between, malformed frames with
//! their close codes, oversize messages refused from their headers, and a
//! round trip through the encoders.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::decode::*;
use super::encode::*;
use super::error::WsError;
use super::frame::*;

/// A masked client frame, encoded here independently of the server
/// encoder (with a chosen length encoding for the edge cases).
fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const FIN: u8 = 0x80;

fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(if fin { FIN | op } else { op }, payload, KEY)
}

/// Decodes everything in `bytes`, returning the events and the error
/// that stopped decoding, if any.
fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> (Vec<Event>, Option<WsError>) {
    let mut buf = BytesMut::from(bytes);
    let mut events = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

/// Feeds `bytes` one at a time, as a slow socket would.
fn decode_bytewise(dec: &mut Decoder, bytes: &[u8]) -> (Vec<Event>, Option<WsError>) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for &b in bytes {
        buf.put_u8(b);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

fn error_of(bytes: &[u8], max: usize) -> WsError {
    let (_, err) = decode_all(&mut Decoder::new(max), bytes);
    let err = err.expect("an error");
    // Byte-at-a-time feeding fails the same way.
    let (_, err2) = decode_bytewise(&mut Decoder::new(max), bytes);
    assert_eq!(err2, Some(err));
    err
}

#[test]
fn rfc_examples_decode() {
    // RFC 6455 §5.7: a masked "Hello" from a client.
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (events, err) = decode_all(&mut Decoder::new(1024), &bytes);
    assert_eq!(err, None);
    assert_eq!(events, vec![Event::Text(Bytes::from_static(b"Hello"))]);
    // A masked ping with "Hello".
    let ping = client_frame(0x89, b"Hello", KEY);
    let (events, _) = decode_all(&mut Decoder::new(1024), &ping);
    assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"Hello"))]);
}

#[test]
fn single_frame_message_is_split_from_the_read_buffer() {
    let msg = vec![7u8; 300];
    let mut bytes = frame(true, 2, &msg);
    bytes.extend_from_slice(&frame(true, 1, b"tail"));
    let mut buf = BytesMut::from(&bytes[..]);
    let mut dec = Decoder::new(1024);
    let Some(Event::Binary(payload)) = dec.decode(&mut buf).unwrap() else {
        panic!("binary expected");
    };
    assert_eq!(&payload[..], &msg[..]);
    // The rest of the buffer is the next frame, untouched.
    assert_eq!(&buf[..], &frame(true, 1, b"tail")[..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Event::Text(Bytes::from_static(b"tail")))
    );
    assert!(buf.is_empty());
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
}

#[test]
fn all_length_encodings_decode() {
    for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 200_000] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let (events, err) = decode_all(&mut Decoder::new(1 << 20), &frame(true, 2, &msg));
        assert_eq!(err, None, "len {len}");
        assert_eq!(events, vec![Event::Binary(Bytes::from(msg))], "len {len}");
    }
}

#[test]
fn fragments_with_interleaved_control_frames() {
    let mut bytes = frame(false, 1, "héllo ".as_bytes());
    bytes.extend(frame(true, 9, b"p1"));
    bytes.extend(frame(false, 0, b"w"));
    bytes.extend(frame(true, 0xA, b""));
    bytes.extend(frame(true, 0, "örld".as_bytes()));
    bytes.extend(frame(false, 2, &[1, 2]));
    bytes.extend(frame(true, 0, &[3]));
    let want = vec![
        Event::Ping(Bytes::from_static(b"p1")),
        Event::Pong(Bytes::new()),
        Event::Text(Bytes::from("héllo wörld")),
        Event::Binary(Bytes::from_static(&[1, 2, 3])),
    ];
    let mut dec = Decoder::new(1024);
    assert_eq!(decode_all(&mut dec, &bytes), (want.clone(), None));
    assert!(!dec.in_message());
    assert_eq!(
        decode_bytewise(&mut Decoder::new(1024), &bytes),
        (want, None)
    );
}

#[test]
fn text_split_inside_a_character_across_fragments() {
    let text = "€uro 😀";
    let raw = text.as_bytes();
    // Split inside the 3-byte € and inside the 4-byte emoji.
    let mut bytes = frame(false, 1, &raw[..1]);
    bytes.extend(frame(false, 0, &raw[1..2]));
    bytes.extend(frame(false, 0, &raw[2..raw.len() - 2]));
    bytes.extend(frame(true, 0, &raw[raw.len() - 2..]));
    let (events, err) = decode_all(&mut Decoder::new(1024), &bytes);
    assert_eq!(err, None);
    assert_eq!(events, vec![Event::Text(Bytes::from(text))]);
}

#[test]
fn close_frames() {
    let mut dec = Decoder::new(1024);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ✓".as_bytes());
    let mut bytes = frame(true, 8, &payload);
    // Anything after a Close is ignored.
    bytes.extend(frame(true, 2, b"late"));
    let (events, err) = decode_all(&mut dec, &bytes);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![Event::Close(Some(CloseFrame {
            code: 1000,
            reason: "bye ✓".into()
        }))]
    );
    assert!(dec.is_closed());
    let mut more = BytesMut::from(&frame(true, 2, b"x")[..]);
    assert_eq!(dec.decode(&mut more), Ok(None));
    assert!(more.is_empty());

    let (events, _) = decode_all(&mut Decoder::new(10), &frame(true, 8, b""));
    assert_eq!(events, vec![Event::Close(None)]);
    let (events, _) = decode_all(&mut Decoder::new(10), &frame(true, 8, &[0x0F, 0xA1]));
    assert_eq!(
        events,
        vec![Event::Close(Some(CloseFrame {
            code: 4001,
            reason: String::new()
        }))]
    );
}

#[test]
fn malformed_frames_fail_with_their_close_code() {
    let max = 1000;
    let code = |bytes: &[u8]| {
        let e = error_of(bytes, max);
        (e, e.close_code())
    };
    // Unmasked client frame.
    assert_eq!(code(&[0x81, 0x02, b'h', b'i']), (WsError::Unmasked, 1002));
    // RSV bits.
    for rsv in [0x40, 0x20, 0x10] {
        assert_eq!(
            code(&frame(true, 1 | rsv, b"x")),
            (WsError::ReservedBits(rsv), 1002)
        );
    }
    // Reserved opcodes, data and control.
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            code(&frame(true, op, b"")),
            (WsError::ReservedOpcode(op), 1002)
        );
    }
    // Fragmented control frames.
    for op in [8, 9, 0xA] {
        assert_eq!(
            code(&frame(false, op, b"")),
            (WsError::FragmentedControl, 1002)
        );
    }
    // Control frame over 125 bytes (and one of exactly 125 is fine).
    assert_eq!(
        code(&frame(true, 9, &[0; 126])),
        (WsError::ControlTooLong(126), 1002)
    );
    let (events, err) = decode_all(&mut Decoder::new(max), &frame(true, 9, &[0; 125]));
    assert_eq!((events.len(), err), (1, None));
    // Continuation with no message started.
    assert_eq!(
        code(&frame(true, 0, b"x")),
        (WsError::UnexpectedContinuation, 1002)
    );
    // New data frame while a fragmented message is unfinished.
    for op in [1, 2] {
        let mut bytes = frame(false, 2, b"a");
        bytes.extend(frame(true, op, b"b"));
        assert_eq!(code(&bytes), (WsError::ExpectedContinuation, 1002));
    }
    // Invalid UTF-8 in a single-frame text message.
    assert_eq!(
        code(&frame(true, 1, &[b'a', 0xFF])),
        (WsError::InvalidUtf8, 1007)
    );
    // Invalid UTF-8 split across fragments: the first fragment ends in
    // the lead byte of a 3-byte sequence, the next one breaks it.
    let mut bytes = frame(false, 1, &[b'a', 0xE2]);
    bytes.extend(frame(true, 0, b"b"));
    assert_eq!(code(&bytes), (WsError::InvalidUtf8, 1007));
    // Invalid UTF-8 fails at the fragment that has it, before the
    // message is finished.
    assert_eq!(
        code(&frame(false, 1, &[b'a', 0xFF])),
        (WsError::InvalidUtf8, 1007)
    );
    // A message that ends in an unfinished character.
    let mut bytes = frame(false, 1, b"ok");
    bytes.extend(frame(true, 0, &[0xF0, 0x9F]));
    assert_eq!(code(&bytes), (WsError::InvalidUtf8, 1007));
    // Invalid close codes.
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            code(&frame(true, 8, &bad.to_be_bytes())),
            (WsError::InvalidCloseCode(bad), 1002),
            "close code {bad}"
        );
    }
    // Close reason not UTF-8.
    assert_eq!(
        code(&frame(true, 8, &[0x03, 0xE8, 0xC3, 0x28])),
        (WsError::InvalidCloseReason, 1007)
    );
    // One-byte close payload.
    assert_eq!(code(&frame(true, 8, &[3])), (WsError::CloseTooShort, 1002));
    // 64-bit length with the high bit set.
    let mut bytes = vec![0x82, 0xFF];
    bytes.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    assert_eq!(code(&bytes), (WsError::LengthOverflow, 1002));
    // Lengths not in their shortest form.
    let mut bytes = vec![0x82, 0xFE, 0x00, 0x05];
    bytes.extend_from_slice(&KEY);
    assert_eq!(code(&bytes), (WsError::NonMinimalLength, 1002));
    let mut bytes = vec![0x82, 0xFF];
    bytes.extend_from_slice(&0xFFFFu64.to_be_bytes());
    assert_eq!(code(&bytes), (WsError::NonMinimalLength, 1002));
}

#[test]
fn oversize_message_is_reported_from_the_header_and_skipped() {
    let max = 1000;
    // Only the header is there: the report comes before any payload.
    let mut bytes = vec![0x82, 0xFE];
    bytes.extend_from_slice(&1001u16.to_be_bytes());
    bytes.extend_from_slice(&KEY);
    let mut dec = Decoder::new(max);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Event::TooBig { len: 1001, max }))
    );
    assert!(buf.is_empty());
    assert_eq!(dec.pending_frame_len(), 0);
    // Its payload is discarded as it comes, in pieces, then the next
    // message is decoded.
    let payload = vec![9u8; 1001];
    for chunk in payload.chunks(300) {
        buf.extend_from_slice(chunk);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }
    buf.extend_from_slice(&frame(true, 2, b"next"));
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Event::Binary(Bytes::from_static(b"next"))))
    );
    // A huge announced length is reported the same way.
    let mut bytes = vec![0x82, 0xFF];
    bytes.extend_from_slice(&(1u64 << 40).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    let (events, err) = decode_all(&mut Decoder::new(max), &bytes);
    assert_eq!(events, vec![Event::TooBig { len: 1 << 40, max }]);
    assert_eq!(err, None);
    // Exactly the maximum is fine.
    let (events, err) = decode_all(&mut Decoder::new(max), &frame(true, 2, &[1; 1000]));
    assert_eq!((events.len(), err), (1, None));
}

#[test]
fn oversize_message_is_skipped_across_fragments() {
    let max = 1000;
    let mut bytes = frame(false, 1, &[b'a'; 600]);
    bytes.extend(frame(true, 9, b"ping in between"));
    bytes.extend(frame(false, 0, &[b'b'; 401]));
    bytes.extend(frame(true, 9, b"another"));
    // Later fragments are discarded whatever they hold, even bytes that
    // are not UTF-8.
    bytes.extend(frame(true, 0, &[0xFF; 50]));
    bytes.extend(frame(true, 1, b"after"));
    let mut dec = Decoder::new(max);
    let (events, err) = decode_bytewise(&mut dec, &bytes);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Event::Ping(Bytes::from_static(b"ping in between")),
            Event::TooBig { len: 1001, max },
            Event::Ping(Bytes::from_static(b"another")),
            Event::Text(Bytes::from_static(b"after")),
        ]
    );
    assert!(!dec.in_message());
    // The skipped message's sequence rules still hold: a new message
    // while it is unfinished breaks the stream.
    let mut bytes = frame(false, 2, &[0; 1001]);
    bytes.extend(frame(true, 2, b"x"));
    let (events, err) = decode_all(&mut Decoder::new(max), &bytes);
    assert_eq!(events, vec![Event::TooBig { len: 1001, max }]);
    assert_eq!(err, Some(WsError::ExpectedContinuation));
    // Fragments adding up to exactly the maximum are fine.
    let mut bytes = frame(false, 2, &[0; 600]);
    bytes.extend(frame(true, 0, &[0; 400]));
    let (events, err) = decode_all(&mut Decoder::new(max), &bytes);
    assert_eq!((events.len(), err), (1, None));
}

#[test]
fn pending_frame_len_announces_a_large_frame() {
    let bytes = frame(true, 2, &[5; 70_000]);
    let mut dec = Decoder::new(1 << 20);
    let mut buf = BytesMut::from(&bytes[..100]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(dec.pending_frame_len(), bytes.len());
    buf.extend_from_slice(&bytes[100..]);
    assert!(matches!(dec.decode(&mut buf), Ok(Some(Event::Binary(_)))));
    assert_eq!(dec.pending_frame_len(), 0);
}

#[test]
fn unmask_matches_the_bytewise_definition() {
    for len in 0..40 {
        let data: Vec<u8> = (0..len as u8).collect();
        let mut fast = data.clone();
        unmask(&mut fast, KEY);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}

#[test]
fn server_frames_have_exact_headers() {
    let mut out = Vec::new();
    write_header(&mut out, OpCode::Binary, 5);
    assert_eq!(out, [0x82, 5]);
    out.clear();
    write_header(&mut out, OpCode::Text, 126);
    assert_eq!(out, [0x81, 126, 0, 126]);
    out.clear();
    write_header(&mut out, OpCode::Binary, 0x10000);
    assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    out.clear();
    write_frame_header(&mut out, false, OpCode::Text, 1);
    assert_eq!(out, [0x01, 1]);
    for len in [0, 125, 126, 0xFFFF, 0x10000] {
        let mut out = BytesMut::new();
        write_header(&mut out, OpCode::Binary, len);
        assert_eq!(out.len(), header_len(len));
        assert!(out.len() <= MAX_HEADER_LEN);
    }

    let mut out = Vec::new();
    encode_close(1000, "bye", &mut out);
    assert_eq!(out, [0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
    out.clear();
    encode_close_empty(&mut out);
    assert_eq!(out, [0x88, 0]);
    out.clear();
    encode_pong(b"hi", &mut out);
    assert_eq!(out, [0x8A, 2, b'h', b'i']);
    out.clear();
    encode_ping(b"", &mut out);
    assert_eq!(out, [0x89, 0]);
    out.clear();
    encode_text("é", &mut out);
    assert_eq!(out, [0x81, 2, 0xC3, 0xA9]);
    out.clear();
    encode_binary(&[9], &mut out);
    assert_eq!(out, [0x82, 1, 9]);
}

#[test]
fn close_reason_is_cut_at_a_character_boundary() {
    let mut out = Vec::new();
    let reason = "é".repeat(100); // 200 bytes
    encode_close(1008, &reason, &mut out);
    assert_eq!(out[1] as usize, out.len() - 2);
    assert!(out.len() - 2 <= MAX_CONTROL_PAYLOAD);
    // 122 bytes of reason: 61 characters, the 123rd byte would split one.
    assert_eq!(out.len() - 4, 122);
    assert!(std::str::from_utf8(&out[4..]).is_ok());
}

#[test]
fn decoder_state_is_small() {
    // One per connection: keep it to a few dozen bytes.
    assert!(
        std::mem::size_of::<Decoder>() <= 64,
        "{}",
        std::mem::size_of::<Decoder>()
    );
}

/// A client-side message to encode in the round-trip property.
#[derive(Debug, Clone)]
enum Msg {
    Binary(Vec<u8>),
    Text(String),
    Ping(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Msg::Binary),
        ".{0,200}".prop_map(Msg::Text),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Msg::Ping),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Encode messages as masked client frames (random keys, data
    /// messages cut into random fragments with pings in between), feed
    /// the stream in random chunks and get the same messages back.
    #[test]
    fn round_trip(
        msgs in proptest::collection::vec(msg(), 1..8),
        cuts in proptest::collection::vec(any::<u16>(), 0..6),
        chunk in 1usize..700,
        keys in proptest::collection::vec(any::<[u8; 4]>(), 1..16),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        let mut k = 0;
        let mut key = || { k += 1; keys[k % keys.len()] };
        for m in &msgs {
            match m {
                Msg::Ping(p) => {
                    stream.extend(client_frame(0x89, p, key()));
                    want.push(Event::Ping(Bytes::from(p.clone())));
                }
                Msg::Binary(_) | Msg::Text(_) => {
                    let (op, data, event) = match m {
                        Msg::Binary(b) => (2, b.clone(), Event::Binary(Bytes::from(b.clone()))),
                        Msg::Text(t) => (1, t.as_bytes().to_vec(), Event::Text(Bytes::from(t.clone()))),
                        Msg::Ping(_) => unreachable!(),
                    };
                    // Fragment boundaries anywhere, even mid-character.
                    let mut at: Vec<usize> = cuts.iter().map(|&c| c as usize % (data.len() + 1)).collect();
                    at.retain(|&a| a < data.len());
                    at.sort_unstable();
                    at.dedup();
                    let mut start = 0;
                    let mut first = true;
                    for &end in at.iter().chain(std::iter::once(&data.len())) {
                        let fin = end == data.len();
                        let b0 = (if first { op } else { 0 }) | if fin { 0x80 } else { 0 };
                        stream.extend(client_frame(b0, &data[start..end], key()));
                        if !fin && end % 3 == 0 {
                            // A control frame between fragments.
                            stream.extend(client_frame(0x8A, b"hb", key()));
                            want.push(Event::Pong(Bytes::from_static(b"hb")));
                        }
                        start = end;
                        first = false;
                    }
                    want.push(event);
                }
            }
        }
        let mut dec = Decoder::new(1 << 16);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(e) = dec.decode(&mut buf).unwrap() {
                got.push(e);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert!(!dec.in_message());
        prop_assert_eq!(got, want);
    }

    /// Arbitrary bytes never panic the decoder, in one piece or fed
    /// byte by byte, and both ways agree.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let whole = decode_all(&mut Decoder::new(256), &bytes);
        let bytewise = decode_bytewise(&mut Decoder::new(256), &bytes);
        prop_assert_eq!(whole, bytewise);
    }
}
