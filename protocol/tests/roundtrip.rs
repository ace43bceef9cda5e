//! Every frame survives both encodings unchanged, however its bytes are
//! split in transit.

mod strategies;

use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::fanout::SharedMessage;
use confab_protocol::Encoding;
use confab_protocol::{json, Frame, FrameReader, FrameType};
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, UserId};
use proptest::prelude::*;

const MAX: usize = DEFAULT_MAX_FRAME_BYTES;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn binary_round_trip(frame in strategies::frame()) {
        let bytes = binary::encode_to_vec(&frame);
        let (decoded, used) = binary::decode(&bytes, MAX).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(binary::decode_exact(&bytes, MAX).unwrap(), frame);
    }

    #[test]
    fn json_round_trip(frame in strategies::frame()) {
        let text = json::encode(&frame);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(value["type"].as_str().unwrap(), frame.frame_type().name());
        prop_assert_eq!(json::decode(text.as_bytes(), MAX).unwrap(), frame);
    }

    #[test]
    fn both_encodings_agree(frame in strategies::frame()) {
        let from_binary = binary::decode_exact(&binary::encode_to_vec(&frame), MAX).unwrap();
        let from_json = json::decode(json::encode(&from_binary).as_bytes(), MAX).unwrap();
        prop_assert_eq!(from_json, frame);
    }

    /// A stream of frames fed to the reader in arbitrary chunks comes out
    /// whole and in order.
    #[test]
    fn reader_reassembles_any_split(
        frames in proptest::collection::vec(strategies::frame(), 1..8),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            binary::encode(f, &mut stream);
        }
        let mut reader = FrameReader::new(MAX);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        while pos < stream.len() {
            let end = (pos + cut.next().unwrap()).min(stream.len());
            reader.feed(&stream[pos..end]);
            pos = end;
            while let Some(f) = reader.next_frame().unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(out, frames);
        prop_assert_eq!(reader.buffered(), 0);
    }

    /// The fan-out encoder's header + shared body is byte-for-byte the
    /// frame the general encoder writes, in both encodings.
    #[test]
    fn fanout_matches_the_encoders(frame in strategies::frame()) {
        if let Frame::Message(m) = frame {
            let shared = SharedMessage::new(m.to_stored());
            let bin = shared.frame(Encoding::Binary, m.inbox_seq);
            prop_assert_eq!(&bin, &binary::encode_to_vec(&Frame::Message(m.clone())));
            let js = shared.frame(Encoding::Json, m.inbox_seq);
            prop_assert_eq!(json::decode(&js, MAX).unwrap(), Frame::Message(m));
        }
    }
}

#[test]
fn fanout_shares_one_body_across_recipients() {
    let shared = SharedMessage::new(StoredMessage {
        channel: ChannelId(7),
        seq: Seq(42),
        sender: UserId(1),
        device: DeviceId(2),
        client_msg_id: 3,
        timestamp_ms: 1_700_000_000_000,
        text: "x".repeat(100_000).into(),
    });
    assert!(
        !shared.is_encoded(Encoding::Binary),
        "nothing is encoded before it is needed"
    );
    let body = shared.body(Encoding::Binary).clone();
    // Cloning for another recipient shares the allocation, it does not copy.
    assert_eq!(body.as_ptr(), shared.body(Encoding::Binary).as_ptr());
    assert!(
        !shared.is_encoded(Encoding::Json),
        "no JSON recipient, no JSON body"
    );
    for inbox_seq in [1u64, 127, 128, 1 << 40] {
        let mut frame = shared
            .header(Encoding::Binary, InboxSeq(inbox_seq))
            .as_bytes()
            .to_vec();
        frame.extend_from_slice(&body);
        match binary::decode_bytes(frame.into(), MAX).unwrap() {
            Frame::Message(m) => {
                assert_eq!(m.inbox_seq, InboxSeq(inbox_seq));
                assert_eq!(m.seq, Seq(42));
                assert_eq!(m.text.len(), 100_000);
            }
            other => panic!("decoded {other:?}"),
        }
    }
}

/// Byte-level examples published in docs/protocol.md.
#[test]
fn documented_examples() {
    use confab_protocol::frame::*;
    let send = Frame::Send(Send {
        client_msg_id: 1,
        target: Target::Channel(ChannelId(300)),
        text: "hi".into(),
    });
    assert_eq!(
        binary::encode_to_vec(&send),
        [0x08, 0x02, 0x01, 0x00, 0xac, 0x02, 0x02, b'h', b'i']
    );
    assert_eq!(
        json::encode(&send),
        r#"{"type":"send","client_msg_id":1,"target":{"channel":300},"text":"hi"}"#
    );
    // Welcome (section 8.1), with the server's default heartbeat and frame
    // maximum.
    let welcome = Frame::Welcome(Welcome {
        version: 1,
        user_id: UserId(10),
        session_id: 77,
        heartbeat_interval_ms: 30_000,
        limits: Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES as u32,
            max_text_chars: 100_000,
            max_group_members: 100,
            max_page: 256,
            max_presence_users: 500,
            send_rate_per_s: 50,
        },
    });
    assert_eq!(
        binary::encode_to_vec(&welcome),
        [
            0x13, 0x41, 0x01, 0x0a, 0x4d, 0xb0, 0xea, 0x01, 0x80, 0x80, 0x50, 0xa0, 0x8d, 0x06,
            0x64, 0x80, 0x02, 0xf4, 0x03, 0x32
        ]
    );
    assert_eq!(
        json::encode(&welcome),
        r#"{"type":"welcome","version":1,"user_id":10,"session_id":77,"heartbeat_interval_ms":30000,"limits":{"max_frame_bytes":1310720,"max_text_chars":100000,"max_group_members":100,"max_page":256,"max_presence_users":500,"send_rate_per_s":50}}"#
    );
    let hb = Frame::Heartbeat(Heartbeat { nonce: 5 });
    assert_eq!(binary::encode_to_vec(&hb), [0x02, 0x0a, 0x05]);
    let err = Frame::Error(Error {
        code: confab_protocol::ErrorCode::TextTooLong,
        message: "".into(),
        frame_type: FrameType::Send.as_u8(),
        request_id: 1,
    });
    // 301 = 0xad 0x02 as a varint.
    assert_eq!(
        binary::encode_to_vec(&err),
        [0x06, 0x4a, 0xad, 0x02, 0x00, 0x02, 0x01]
    );
    assert_eq!(
        json::encode(&err),
        r#"{"type":"error","code":301,"message":"","frame_type":2,"request_id":1}"#
    );
    let hello = Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        token: "t".into(),
        device_id: DeviceId(9),
        inbox_cursor: InboxSeq(0),
    });
    assert_eq!(
        binary::encode_to_vec(&hello),
        [0x07, 0x01, 0x01, 0x01, 0x01, b't', 0x09, 0x00]
    );
}

#[test]
fn every_frame_type_has_a_distinct_byte_and_name() {
    let mut bytes = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for &t in FrameType::ALL {
        assert!(bytes.insert(t.as_u8()));
        assert!(names.insert(t.name()));
        assert_eq!(FrameType::from_u8(t.as_u8()), Some(t));
        assert!(t.is_client_frame() || t.is_server_frame());
    }
    assert!(FrameType::Close.is_client_frame() && FrameType::Close.is_server_frame());
    assert!(!FrameType::Welcome.is_client_frame());
    assert!(!FrameType::Send.is_server_frame());
}
