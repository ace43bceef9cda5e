//! Every class of bad input gets its typed error, never a panic, and a bad
//! frame in a stream costs only that frame.

mod strategies;

use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::frame::*;
use confab_protocol::{json, DecodeError, ErrorCode, Frame, FrameReader};
use confab_types::UserId;
use proptest::prelude::*;

const MAX: usize = DEFAULT_MAX_FRAME_BYTES;

fn send(text: &str) -> Frame {
    Frame::Send(Send {
        client_msg_id: 7,
        target: Target::User(UserId(3)),
        text: text.into(),
    })
}

#[test]
fn every_truncation_is_incomplete() {
    let bytes = binary::encode_to_vec(&send("hello, world"));
    for cut in 0..bytes.len() {
        assert_eq!(
            binary::decode(&bytes[..cut], MAX),
            Err(DecodeError::Incomplete),
            "cut at {cut}"
        );
    }
}

#[test]
fn oversize_frame_is_rejected_from_its_prefix() {
    // Only the prefix is present: the error comes before any body arrives.
    let mut prefix = Vec::new();
    confab_protocol::varint::put_varint(&mut prefix, 2_000_000);
    let err = binary::decode(&prefix, MAX).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge {
            len: 2_000_000,
            max: MAX
        }
    );
    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
    // A small configured maximum applies to an ordinary frame.
    let bytes = binary::encode_to_vec(&send(&"a".repeat(100)));
    assert!(matches!(
        binary::decode(&bytes, 64),
        Err(DecodeError::TooLarge { max: 64, .. })
    ));
}

#[test]
fn bad_utf8_is_typed() {
    let mut bytes = binary::encode_to_vec(&send("ab"));
    let n = bytes.len();
    bytes[n - 1] = 0xff;
    let err = binary::decode(&bytes, MAX).unwrap_err();
    assert_eq!(
        err,
        DecodeError::BadUtf8 {
            frame: FrameType::Send
        }
    );
    assert_eq!(err.code(), ErrorCode::BadFrame);
    assert!(!err.is_fatal());
}

#[test]
fn unknown_type_is_typed_and_not_fatal() {
    let bytes = [0x03, 0x3f, 0x01, 0x02];
    let err = binary::decode(&bytes, MAX).unwrap_err();
    assert_eq!(err, DecodeError::UnknownType(0x3f));
    assert_eq!(err.code(), ErrorCode::UnknownFrameType);
    assert!(!err.is_fatal());
}

#[test]
fn bad_varints() {
    // In the length prefix: the stream cannot be framed any more.
    let err = binary::decode(&[0x80; 11], MAX).unwrap_err();
    assert_eq!(err, DecodeError::BadVarint);
    assert!(err.is_fatal());
    // A zero length cannot hold a type byte.
    assert!(binary::decode(&[0x00], MAX).unwrap_err().is_fatal());
    // Inside a field: only this frame is bad. Heartbeat nonce 1 encoded in two bytes.
    let err = binary::decode(&[0x03, 0x0a, 0x81, 0x00], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::Heartbeat,
            ..
        }
    ));
    assert!(!err.is_fatal());
}

#[test]
fn field_level_malformations() {
    // Truncated body inside a complete frame: Send with a string longer than the frame.
    let err = binary::decode(&[0x05, 0x02, 0x01, 0x00, 0x01, 0x09], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::Send,
            ..
        }
    ));
    // Unknown target kind.
    let err = binary::decode(&[0x05, 0x02, 0x01, 0x07, 0x01, 0x00], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::Send,
            ..
        }
    ));
    // A boolean that is neither 0 nor 1 (SendAck.duplicate).
    let err = binary::decode(&[0x07, 0x42, 1, 1, 1, 1, 1, 2], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::SendAck,
            ..
        }
    ));
    // Trailing bytes after the last field.
    let err = binary::decode(&[0x03, 0x0a, 0x05, 0x00], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::Heartbeat,
            ..
        }
    ));
    // A u16 field above 65535 (Hello.min_version).
    let err =
        binary::decode(&[0x08, 0x01, 0x80, 0x80, 0x04, 0x01, 0x00, 0x00, 0x00], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::Hello,
            ..
        }
    ));
    // A list count larger than the frame could hold: no huge allocation.
    let err = binary::decode(&[0x05, 0x09, 0xff, 0xff, 0xff, 0x0f], MAX).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            frame: FrameType::PresenceUnsubscribe,
            ..
        }
    ));
    // decode_exact refuses bytes after the frame.
    let mut two = binary::encode_to_vec(&Frame::Heartbeat(Heartbeat { nonce: 1 }));
    two.push(0x00);
    assert!(binary::decode_exact(&two, MAX).is_err());
}

#[test]
fn reader_skips_a_bad_frame_and_goes_on() {
    let good = Frame::Heartbeat(Heartbeat { nonce: 1 });
    let mut stream = Vec::new();
    binary::encode(&good, &mut stream);
    stream.extend_from_slice(&[0x03, 0x3f, 0x01, 0x02]); // unknown type
    stream.extend_from_slice(&[0x04, 0x02, 0x01, 0x00, 0x01]); // truncated Send body
    binary::encode(&good, &mut stream);
    let mut reader = FrameReader::new(MAX);
    reader.feed(&stream);
    assert_eq!(reader.next_frame(), Ok(Some(good.clone())));
    assert_eq!(reader.next_frame(), Err(DecodeError::UnknownType(0x3f)));
    assert!(matches!(
        reader.next_frame(),
        Err(DecodeError::Malformed { .. })
    ));
    assert_eq!(reader.next_frame(), Ok(Some(good)));
    assert_eq!(reader.next_frame(), Ok(None));
}

#[test]
fn reader_discards_an_oversize_frame_without_buffering_it() {
    let max = 1024;
    let mut reader = FrameReader::new(max);
    let big = binary::encode_to_vec(&send(&"x".repeat(100_000)));
    // The prefix and a first chunk arrive: the error is immediate.
    reader.feed(&big[..100]);
    assert!(matches!(
        reader.next_frame(),
        Err(DecodeError::TooLarge { .. })
    ));
    // The rest arrives in chunks and is dropped, never buffered.
    for chunk in big[100..].chunks(4096) {
        reader.feed(chunk);
        assert_eq!(reader.buffered(), 0);
        assert_eq!(reader.next_frame(), Ok(None));
    }
    assert!(reader.capacity() <= 4096);
    // The connection goes on with the next frame.
    let hb = Frame::Heartbeat(Heartbeat { nonce: 9 });
    reader.feed(&binary::encode_to_vec(&hb));
    assert_eq!(reader.next_frame(), Ok(Some(hb)));
}

#[test]
fn reader_breaks_on_an_unframeable_stream() {
    let mut reader = FrameReader::new(MAX);
    reader.feed(&[0xff; 12]);
    let err = reader.next_frame().unwrap_err();
    assert!(err.is_fatal());
    // It stays broken rather than misreading what follows as frames.
    reader.feed(&binary::encode_to_vec(&Frame::Heartbeat(Heartbeat {
        nonce: 1,
    })));
    assert!(reader.next_frame().unwrap_err().is_fatal());
}

#[test]
fn reader_memory_shrinks_after_a_large_frame() {
    let mut reader = FrameReader::new(MAX);
    let big = binary::encode_to_vec(&send(&"y".repeat(200_000)));
    for chunk in big.chunks(16 * 1024) {
        reader.feed(chunk);
    }
    assert!(reader.capacity() >= big.len());
    assert!(matches!(reader.next_frame(), Ok(Some(Frame::Send(_)))));
    assert!(reader.capacity() <= 4096, "capacity {}", reader.capacity());
}

#[test]
fn json_errors_are_typed() {
    // Unknown type: a newer client, answered with UNKNOWN_FRAME_TYPE.
    let err = json::decode(br#"{"type":"teleport","to":"mars"}"#, MAX).unwrap_err();
    assert_eq!(err, DecodeError::UnknownJsonType("teleport".into()));
    assert_eq!(err.code(), ErrorCode::UnknownFrameType);
    // Missing field, unknown field, wrong field type, not JSON, not an object.
    for bad in [
        &br#"{"type":"heartbeat"}"#[..],
        br#"{"type":"heartbeat","nonce":1,"extra":2}"#,
        br#"{"type":"heartbeat","nonce":"one"}"#,
        br#"{"type":"heartbeat","nonce":-1}"#,
        br#"{"type":"send","client_msg_id":1,"target":{"planet":3},"text":"x"}"#,
        br#"{"nonce":1}"#,
        b"not json",
        b"[1,2,3]",
        b"",
    ] {
        let err = json::decode(bad, MAX).unwrap_err();
        assert!(
            matches!(err, DecodeError::Json(_)),
            "{:?}: {err:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(err.code(), ErrorCode::BadFrame);
    }
    // Not UTF-8.
    assert!(matches!(
        json::decode(b"{\"type\":\"\xff\"}", MAX),
        Err(DecodeError::Json(_))
    ));
    // Oversize, rejected before parsing.
    let big = format!(
        r#"{{"type":"heartbeat","nonce":1,"pad":"{}"}}"#,
        "x".repeat(2000)
    );
    assert!(matches!(
        json::decode(big.as_bytes(), 1000),
        Err(DecodeError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Arbitrary bytes never panic either decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = binary::decode(&bytes, MAX);
        let _ = json::decode(&bytes, MAX);
        let mut reader = FrameReader::new(256);
        reader.feed(&bytes);
        for _ in 0..bytes.len() + 1 {
            match reader.next_frame() {
                Ok(None) => break,
                Err(e) if e.is_fatal() => break,
                _ => {}
            }
        }
    }

    /// Flipping any byte of a valid frame gives a frame or a typed error,
    /// never a panic.
    #[test]
    fn corrupted_frames_never_panic(
        frame in strategies::frame(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = binary::encode_to_vec(&frame);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = binary::decode(&bytes, MAX);
        let mut text = json::encode(&frame).into_bytes();
        let j = pos.index(text.len());
        text[j] = byte;
        let _ = json::decode(&text, MAX);
    }
}
