//! proptest strategies producing every frame with arbitrary field values,
//! shared by the round-trip and robustness tests.

use confab_protocol::frame::*;
use confab_protocol::{ErrorCode, Frame};
use confab_types::Text;
use proptest::collection::vec;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,40}",
        1 => "[\\u{0}-\\u{10ffff}]{0,200}",
        1 => Just("\"quotes\" \\ backslash \n newline \u{7f} \u{2028}".to_string()),
    ]
}

fn id<T: From<u64> + std::fmt::Debug>() -> impl Strategy<Value = T> {
    prop_oneof![0..200u64, any::<u64>()].prop_map(T::from)
}

fn msg_text() -> impl Strategy<Value = Text> {
    text().prop_map(Text::from)
}

fn message() -> impl Strategy<Value = Message> {
    (id(), id(), id(), id(), id(), id(), id(), msg_text()).prop_map(
        |(
            inbox_seq,
            channel_id,
            seq,
            sender_id,
            sender_device,
            client_msg_id,
            timestamp_ms,
            text,
        )| {
            Message {
                inbox_seq,
                channel_id,
                seq,
                sender_id,
                sender_device,
                client_msg_id,
                timestamp_ms,
                text,
            }
        },
    )
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        proptest::sample::select(ErrorCode::ALL).boxed(),
        // Numbers this version does not know survive as Unknown.
        (600u16..u16::MAX).prop_map(ErrorCode::from_code).boxed(),
    ]
}

/// Any frame.
pub fn frame() -> impl Strategy<Value = Frame> {
    let target = prop_oneof![id().prop_map(Target::Channel), id().prop_map(Target::User)];
    let anchor = prop_oneof![
        Just(HistoryAnchor::Latest),
        id().prop_map(HistoryAnchor::Before),
        id().prop_map(HistoryAnchor::After)
    ];
    let limits = any::<[u32; 6]>().prop_map(|l| Limits {
        max_frame_bytes: l[0],
        max_text_chars: l[1],
        max_group_members: l[2],
        max_page: l[3],
        max_presence_users: l[4],
        send_rate_per_s: l[5],
    });
    prop_oneof![
        (any::<u16>(), any::<u16>(), text(), id(), id()).prop_map(|(a, b, token, d, c)| {
            Frame::Hello(Hello {
                min_version: a,
                max_version: b,
                token,
                device_id: d,
                inbox_cursor: c,
            })
        }),
        (id(), target, msg_text()).prop_map(|(client_msg_id, target, text)| Frame::Send(Send {
            client_msg_id,
            target,
            text
        })),
        (id(), id(), any::<u32>()).prop_map(|(request_id, after, limit)| Frame::Sync(Sync {
            request_id,
            after,
            limit
        })),
        (id(), id(), anchor, any::<u32>()).prop_map(|(request_id, channel_id, anchor, limit)| {
            Frame::History(History {
                request_id,
                channel_id,
                anchor,
                limit,
            })
        }),
        (id(), id()).prop_map(|(channel_id, seq)| Frame::Read(Read { channel_id, seq })),
        id().prop_map(|channel_id| Frame::Typing(Typing { channel_id })),
        (id(), vec(id(), 0..20)).prop_map(|(request_id, user_ids)| {
            Frame::PresenceQuery(PresenceQuery {
                request_id,
                user_ids,
            })
        }),
        (id(), vec(id(), 0..20)).prop_map(|(request_id, user_ids)| {
            Frame::PresenceSubscribe(PresenceSubscribe {
                request_id,
                user_ids,
            })
        }),
        vec(id(), 0..20)
            .prop_map(|user_ids| Frame::PresenceUnsubscribe(PresenceUnsubscribe { user_ids })),
        id().prop_map(|nonce| Frame::Heartbeat(Heartbeat { nonce })),
        (any::<u16>(), text()).prop_map(|(code, message)| Frame::Close(Close { code, message })),
        (any::<u16>(), id(), id(), any::<u32>(), limits).prop_map(|(v, u, s, h, limits)| {
            Frame::Welcome(Welcome {
                version: v,
                user_id: u,
                session_id: s,
                heartbeat_interval_ms: h,
                limits,
            })
        }),
        (id(), id(), id(), id(), id(), any::<bool>()).prop_map(|(c, ch, s, i, t, d)| {
            Frame::SendAck(SendAck {
                client_msg_id: c,
                channel_id: ch,
                seq: s,
                inbox_seq: i,
                timestamp_ms: t,
                duplicate: d,
            })
        }),
        message().prop_map(Frame::Message),
        (id(), vec(message(), 0..5), any::<bool>()).prop_map(|(request_id, messages, has_more)| {
            Frame::SyncBatch(SyncBatch {
                request_id,
                messages,
                has_more,
            })
        }),
        (id(), id(), vec(message(), 0..5), any::<bool>()).prop_map(|(r, c, messages, has_more)| {
            Frame::HistoryBatch(HistoryBatch {
                request_id: r,
                channel_id: c,
                messages,
                has_more,
            })
        }),
        (id(), vec((id(), any::<bool>(), id()), 0..10)).prop_map(|(request_id, e)| {
            Frame::Presence(Presence {
                request_id,
                entries: e
                    .into_iter()
                    .map(|(user_id, online, last_seen_ms)| PresenceInfo {
                        user_id,
                        online,
                        last_seen_ms,
                    })
                    .collect(),
            })
        }),
        (id(), id(), id()).prop_map(|(channel_id, user_id, seq)| Frame::Receipt(Receipt {
            channel_id,
            user_id,
            seq
        })),
        (id(), id()).prop_map(|(channel_id, user_id)| Frame::TypingEvent(TypingEvent {
            channel_id,
            user_id
        })),
        (id(), id()).prop_map(|(nonce, server_time_ms)| Frame::HeartbeatAck(HeartbeatAck {
            nonce,
            server_time_ms
        })),
        (error_code(), text(), any::<u8>(), id()).prop_map(|(code, message, frame_type, r)| {
            Frame::Error(Error {
                code,
                message,
                frame_type,
                request_id: r,
            })
        }),
    ]
}
