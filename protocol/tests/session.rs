//! The client session state machine keeps its promises: every message once,
//! in inbox order, no send lost across reconnects.

use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
use std::time::{Duration, Instant};

use confab_protocol::frame::*;
use confab_protocol::session::{
    reconnect_delay, ClientSession, Event, SessionConfig, SessionError, State,
};
use confab_protocol::{ErrorCode, Frame};

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 1 << 20,
        max_text_chars: 100_000,
        max_group_members: 100,
        max_page: 256,
        max_presence_users: 500,
        send_rate_per_s: 50,
    }
}

fn welcome() -> Frame {
    Frame::Welcome(Welcome {
        version: 1,
        user_id: UserId(10),
        session_id: 1,
        heartbeat_interval_ms: 1000,
        limits: limits(),
    })
}

fn msg(inbox_seq: u64, seq: u64) -> Message {
    Message {
        inbox_seq: InboxSeq(inbox_seq),
        channel_id: ChannelId(5),
        seq: Seq(seq),
        sender_id: UserId(11),
        sender_device: DeviceId(1),
        client_msg_id: seq,
        timestamp_ms: 1,
        text: format!("m{seq}").into(),
    }
}

fn drain_tx(s: &mut ClientSession) -> Vec<Frame> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn drain_events(s: &mut ClientSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn delivered(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.inbox_seq.0),
            _ => None,
        })
        .collect()
}

fn ready(cursor: u64) -> (ClientSession, Instant) {
    let mut cfg = SessionConfig::new("tok", DeviceId(77));
    cfg.inbox_cursor = InboxSeq(cursor);
    let mut s = ClientSession::new(cfg);
    let now = Instant::now();
    s.connected(now);
    drain_tx(&mut s);
    s.handle(now, welcome());
    drain_events(&mut s);
    (s, now)
}

#[test]
fn hello_carries_token_device_and_cursor() {
    let mut cfg = SessionConfig::new("secret", DeviceId(77));
    cfg.inbox_cursor = InboxSeq(41);
    let mut s = ClientSession::new(cfg);
    assert_eq!(s.state(), State::Disconnected);
    s.connected(Instant::now());
    assert_eq!(s.state(), State::Handshaking);
    match drain_tx(&mut s).as_slice() {
        [Frame::Hello(h)] => {
            assert_eq!(h.token, "secret");
            assert_eq!(h.device_id, DeviceId(77));
            assert_eq!(h.inbox_cursor, InboxSeq(41));
            assert_eq!((h.min_version, h.max_version), (1, 1));
        }
        other => panic!("{other:?}"),
    }
    s.handle(Instant::now(), welcome());
    assert_eq!(s.state(), State::Ready);
    assert!(matches!(
        drain_events(&mut s).as_slice(),
        [Event::Connected(_)]
    ));
}

#[test]
fn sends_before_welcome_go_after_it_and_acks_settle_them() {
    let mut s = ClientSession::new(SessionConfig::new("t", DeviceId(1)));
    let a = s.send(Target::Channel(ChannelId(5)), "one").unwrap();
    let b = s.send(Target::User(UserId(9)), "two").unwrap();
    assert_eq!((a, b), (1, 2));
    let now = Instant::now();
    s.connected(now);
    assert!(matches!(drain_tx(&mut s).as_slice(), [Frame::Hello(_)]));
    s.handle(now, welcome());
    let sent: Vec<u64> = drain_tx(&mut s)
        .into_iter()
        .map(|f| match f {
            Frame::Send(s) => s.client_msg_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sent, [1, 2]);
    s.handle(
        now,
        Frame::SendAck(SendAck {
            client_msg_id: 1,
            channel_id: ChannelId(5),
            seq: Seq(1),
            inbox_seq: InboxSeq(1),
            timestamp_ms: 3,
            duplicate: false,
        }),
    );
    assert_eq!(s.pending_count(), 1);
    assert_eq!(
        s.cursor(),
        InboxSeq(1),
        "our own message advances our inbox cursor"
    );
    let ev = drain_events(&mut s);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Acked(a) if a.client_msg_id == 1)));
    assert!(
        delivered(&ev).is_empty(),
        "own sends are not delivered back as messages"
    );
}

#[test]
fn duplicates_are_dropped_and_order_is_kept() {
    let (mut s, now) = ready(0);
    for m in [msg(1, 1), msg(2, 2), msg(2, 2), msg(1, 1), msg(3, 3)] {
        s.handle(now, Frame::Message(m));
    }
    assert_eq!(delivered(&drain_events(&mut s)), [1, 2, 3]);
    assert_eq!(s.cursor(), InboxSeq(3));
    assert!(drain_tx(&mut s).is_empty());
}

#[test]
fn a_hole_is_held_then_filled_by_sync() {
    let (mut s, now) = ready(0);
    s.handle(now, Frame::Message(msg(1, 1)));
    s.handle(now, Frame::Message(msg(3, 3)));
    s.handle(now, Frame::Message(msg(4, 4)));
    assert_eq!(delivered(&drain_events(&mut s)), [1]);
    // Within the grace period nothing is asked for: entry 2 may be just behind.
    assert!(drain_tx(&mut s)
        .iter()
        .all(|f| !matches!(f, Frame::Sync(_))));
    let deadline = s.poll_timeout().unwrap();
    assert!(deadline <= now + Duration::from_millis(250));
    s.handle_timeout(now + Duration::from_millis(300));
    let sync = drain_tx(&mut s)
        .into_iter()
        .find_map(|f| match f {
            Frame::Sync(q) => Some(q),
            _ => None,
        })
        .expect("a Sync for the hole");
    assert_eq!(sync.after, InboxSeq(1));
    // The answer overlaps what is held: each message still comes out once.
    s.handle(
        now,
        Frame::SyncBatch(SyncBatch {
            request_id: sync.request_id,
            messages: vec![msg(2, 2), msg(3, 3), msg(4, 4)],
            has_more: false,
        }),
    );
    assert_eq!(delivered(&drain_events(&mut s)), [2, 3, 4]);
    assert_eq!(s.cursor(), InboxSeq(4));
}

#[test]
fn a_hole_closed_in_time_needs_no_sync() {
    let (mut s, now) = ready(0);
    s.handle(now, Frame::Message(msg(2, 2)));
    s.handle(now + Duration::from_millis(10), Frame::Message(msg(1, 1)));
    assert_eq!(delivered(&drain_events(&mut s)), [1, 2]);
    s.handle_timeout(now + Duration::from_millis(400));
    assert!(drain_tx(&mut s)
        .iter()
        .all(|f| !matches!(f, Frame::Sync(_))));
}

#[test]
fn reconnect_resends_unacked_with_the_same_ids_and_resumes_from_the_cursor() {
    let (mut s, now) = ready(0);
    s.handle(now, Frame::Message(msg(1, 1)));
    assert_eq!(delivered(&drain_events(&mut s)), [1]);
    let id = s
        .send(Target::Channel(ChannelId(5)), "lost in transit")
        .unwrap();
    assert!(matches!(drain_tx(&mut s).as_slice(), [Frame::Send(_)]));
    // The connection dies before the ack.
    s.disconnected();
    assert_eq!(s.state(), State::Disconnected);
    assert_eq!(s.pending_count(), 1);
    s.connected(now);
    match drain_tx(&mut s).as_slice() {
        [Frame::Hello(h)] => assert_eq!(h.inbox_cursor, InboxSeq(1)),
        other => panic!("{other:?}"),
    }
    s.handle(now, welcome());
    match drain_tx(&mut s).as_slice() {
        [Frame::Send(f)] => {
            assert_eq!(f.client_msg_id, id);
            assert_eq!(f.text, "lost in transit");
        }
        other => panic!("{other:?}"),
    }
    // The server had stored it: the replay carries it and the ack says duplicate.
    s.handle(
        now,
        Frame::SyncBatch(SyncBatch {
            request_id: 0,
            messages: vec![msg(1, 1), msg(2, 2)],
            has_more: false,
        }),
    );
    s.handle(
        now,
        Frame::SendAck(SendAck {
            client_msg_id: id,
            channel_id: ChannelId(5),
            seq: Seq(2),
            inbox_seq: InboxSeq(2),
            timestamp_ms: 1,
            duplicate: true,
        }),
    );
    let ev = drain_events(&mut s);
    assert_eq!(
        delivered(&ev),
        [2],
        "entry 1 was already delivered before the drop"
    );
    assert_eq!(s.pending_count(), 0);
    assert_eq!(s.cursor(), InboxSeq(2));
}

#[test]
fn heartbeats_and_silence() {
    let (mut s, now) = ready(0);
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, now + Duration::from_secs(1));
    s.handle_timeout(t);
    let nonce = match drain_tx(&mut s).as_slice() {
        [Frame::Heartbeat(h)] => h.nonce,
        other => panic!("{other:?}"),
    };
    s.handle(
        t + Duration::from_millis(20),
        Frame::HeartbeatAck(HeartbeatAck {
            nonce,
            server_time_ms: 0,
        }),
    );
    assert!(drain_events(&mut s).contains(&Event::HeartbeatRtt(Duration::from_millis(20))));
    // Then the server goes silent for three intervals.
    let last = t + Duration::from_millis(20);
    s.handle_timeout(last + Duration::from_millis(2999));
    assert_eq!(s.state(), State::Ready);
    s.handle_timeout(last + Duration::from_secs(3));
    assert_eq!(s.state(), State::Disconnected);
    assert!(drain_events(&mut s).contains(&Event::TimedOut));
}

#[test]
fn handshake_times_out() {
    let mut s = ClientSession::new(SessionConfig::new("t", DeviceId(1)));
    let now = Instant::now();
    s.connected(now);
    let deadline = s.poll_timeout().unwrap();
    s.handle_timeout(deadline);
    assert_eq!(s.state(), State::Disconnected);
    assert!(drain_events(&mut s).contains(&Event::TimedOut));
}

#[test]
fn send_errors_fail_or_retry_by_code() {
    let (mut s, now) = ready(0);
    let forbidden = s.send(Target::Channel(ChannelId(6)), "no").unwrap();
    let limited = s.send(Target::Channel(ChannelId(5)), "later").unwrap();
    drain_tx(&mut s);
    let err = |code, id| {
        Frame::Error(Error {
            code,
            message: "x".into(),
            frame_type: FrameType::Send.as_u8(),
            request_id: id,
        })
    };
    s.handle(now, err(ErrorCode::ForbiddenChannel, forbidden));
    s.handle(now, err(ErrorCode::RateLimited, limited));
    let ev = drain_events(&mut s);
    assert!(ev.iter().any(|e| matches!(e,
        Event::SendFailed { client_msg_id, code: ErrorCode::ForbiddenChannel, .. } if *client_msg_id == forbidden)));
    assert_eq!(s.pending_count(), 1, "the rate-limited send is kept");
    let retry_at = s.poll_timeout().unwrap();
    assert!(retry_at > now);
    s.handle_timeout(retry_at);
    let resent: Vec<_> = drain_tx(&mut s)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Send(f) => Some(f.client_msg_id),
            _ => None,
        })
        .collect();
    assert_eq!(resent, [limited]);
}

#[test]
fn auth_refusal_closes_until_a_new_token() {
    let mut s = ClientSession::new(SessionConfig::new("expired", DeviceId(1)));
    let now = Instant::now();
    s.connected(now);
    drain_tx(&mut s);
    s.handle(
        now,
        Frame::Error(Error {
            code: ErrorCode::TokenExpired,
            message: "expired".into(),
            frame_type: FrameType::Hello.as_u8(),
            request_id: 0,
        }),
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(
        s.send(Target::User(UserId(1)), "x"),
        Err(SessionError::Closed)
    );
    s.connected(now);
    assert!(drain_tx(&mut s).is_empty(), "no Hello with a refused token");
    s.set_token("fresh");
    s.connected(now);
    assert!(matches!(drain_tx(&mut s).as_slice(), [Frame::Hello(h)] if h.token == "fresh"));
}

#[test]
fn local_validation() {
    let mut cfg = SessionConfig::new("t", DeviceId(1));
    cfg.max_pending = 2;
    let mut s = ClientSession::new(cfg);
    assert_eq!(
        s.send(Target::User(UserId(1)), "a".repeat(100_001)),
        Err(SessionError::InvalidText(ErrorCode::TextTooLong))
    );
    assert_eq!(
        s.send(Target::User(UserId(1)), ""),
        Err(SessionError::InvalidText(ErrorCode::EmptyText))
    );
    s.send(Target::User(UserId(1)), "a").unwrap();
    s.send(Target::User(UserId(1)), "b").unwrap();
    assert_eq!(
        s.send(Target::User(UserId(1)), "c"),
        Err(SessionError::TooManyPending(2))
    );
    // Queries need a live session.
    assert_eq!(s.history(ChannelId(5), HistoryAnchor::Latest, 10), None);
}

#[test]
fn reconnect_delay_grows_with_jitter_and_a_cap() {
    for attempt in 1..20 {
        let lo = reconnect_delay(attempt, 0);
        let hi = reconnect_delay(attempt, u64::MAX - 1);
        assert!(lo <= hi);
        assert!(hi <= Duration::from_secs(30));
        assert!(lo >= Duration::from_millis(125));
    }
    assert!(reconnect_delay(4, 0) > reconnect_delay(1, 0));
    assert_eq!(reconnect_delay(30, 0), Duration::from_secs(15));
}
