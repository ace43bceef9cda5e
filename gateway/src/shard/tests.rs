//! The shard's state driven alone, with a model of storage and of the
//! other shards standing in for the driver: no sockets, no runtime, a
//! clock that only moves when a test moves it. The unit tests pin the
//! delivery rules down one by one; the proptest runs random interleavings
//! of connects, disconnects, sends, storage completions, cross-shard
//! messages, replays and timeouts, and checks that every device gets its
//! inbox in order with no gap and no duplicate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab_protocol::frame::{self, Frame};
use confab_protocol::{binary, Encoding};
use confab_storage::writer::Completion;
use confab_storage::{AppendOutcome, InboxEntry};
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, Text, UserId};
use proptest::prelude::*;

use super::*;
use crate::fanout::{CloseReason, OutFrame, Priority};
use crate::metrics::{CoreMetrics, Transport};

const GAP: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_secs(5);

fn config(core: usize, cores: usize) -> ShardConfig {
    ShardConfig {
        core,
        cores,
        heartbeat_interval: Duration::from_secs(3600),
        presence_grace: GRACE,
        send_rate_per_s: 1000,
        send_burst: 1000,
        typing_interval: Duration::from_secs(2),
        outbound_limit_bytes: 64 << 20,
        gap_timeout: GAP,
    }
}

/// Storage as the shards see it: each user's inbox, in commit order.
#[derive(Default)]
struct Log {
    inboxes: HashMap<UserId, Vec<StoredMessage>>,
    next_seq: HashMap<ChannelId, u64>,
}

impl Log {
    fn last(&self, user: UserId) -> InboxSeq {
        InboxSeq(self.inboxes.get(&user).map_or(0, |v| v.len() as u64))
    }

    fn read(&self, user: UserId, after: InboxSeq, limit: usize) -> Vec<InboxEntry> {
        let Some(inbox) = self.inboxes.get(&user) else {
            return Vec::new();
        };
        inbox
            .iter()
            .enumerate()
            .skip(after.0 as usize)
            .take(limit)
            .map(|(i, m)| InboxEntry {
                inbox_seq: InboxSeq(i as u64 + 1),
                message: m.clone(),
            })
            .collect()
    }

    /// Commits a message to every member's inbox, as a storage writer
    /// does, and returns its outcome.
    fn commit(
        &mut self,
        sender: UserId,
        device: DeviceId,
        channel: ChannelId,
        members: &[UserId],
        id: u64,
    ) -> (StoredMessage, AppendOutcome) {
        let seq = self.next_seq.entry(channel).or_insert(0);
        *seq += 1;
        let m = StoredMessage {
            channel,
            seq: Seq(*seq),
            sender,
            device,
            client_msg_id: id,
            timestamp_ms: 1,
            text: Text::from(format!("m{id}")),
        };
        let mut inbox = Vec::new();
        for u in members {
            let list = self.inboxes.entry(*u).or_default();
            list.push(m.clone());
            inbox.push((*u, InboxSeq(list.len() as u64)));
        }
        let outcome = AppendOutcome {
            channel,
            seq: m.seq,
            timestamp_ms: 1,
            sender_inbox_seq: inbox
                .iter()
                .find(|(u, _)| *u == sender)
                .map_or(InboxSeq::ZERO, |(_, s)| *s),
            inbox,
            duplicate: false,
        };
        (m, outcome)
    }
}

/// Several shards, the log, and what is in flight between them.
struct World {
    now: Instant,
    shards: Vec<ShardState>,
    log: Log,
    /// Messages between shards, per destination, in send order.
    mail: Vec<VecDeque<ShardMsg>>,
    /// Storage completions not yet handed back, per producing shard.
    completions: Vec<Vec<Completion>>,
    /// Replays asked for and not yet run.
    replays: Vec<(usize, ConnId, InboxSeq, InboxSeq)>,
    /// Reads asked for and not yet answered.
    reads: Vec<(usize, Output)>,
    /// What each connection received, by shard and connection.
    seen: HashMap<(usize, ConnId), Received>,
    /// Presence changes published to watchers, in order.
    presence: Vec<(ConnId, frame::PresenceInfo)>,
    next_id: u64,
}

/// What one connection has received.
#[derive(Default, Debug)]
struct Received {
    cursor: InboxSeq,
    inbox: Vec<InboxSeq>,
    other: Vec<Frame>,
    closed: Option<CloseReason>,
}

fn decode(f: &OutFrame) -> Option<Frame> {
    let bytes = match f {
        OutFrame::Encoded(_, b) => b.clone(),
        OutFrame::Message { header, body, .. } => {
            let mut v = header.as_bytes().to_vec();
            v.extend_from_slice(body);
            Bytes::from(v)
        }
        OutFrame::Raw(_) => return None,
    };
    Some(binary::decode_bytes(bytes, 1 << 24).expect("the shard encodes valid frames"))
}

impl World {
    fn new(cores: usize) -> World {
        let now = Instant::now();
        World {
            now,
            shards: (0..cores)
                .map(|c| {
                    ShardState::new(
                        config(c, cores),
                        CoreMetrics::unregistered(),
                        now,
                        1_000_000,
                    )
                })
                .collect(),
            log: Log::default(),
            mail: (0..cores).map(|_| VecDeque::new()).collect(),
            completions: (0..cores).map(|_| Vec::new()).collect(),
            replays: Vec::new(),
            reads: Vec::new(),
            seen: HashMap::new(),
            presence: Vec::new(),
            next_id: 0,
        }
    }

    fn owner(&self, user: UserId) -> usize {
        owner_core(user, self.shards.len())
    }

    /// Collects what a shard asked for.
    fn pump(&mut self, core: usize) {
        while let Some(out) = self.shards[core].poll_output() {
            match out {
                Output::ToCore(to, msg) => self.mail[to].push_back(msg),
                Output::Wake(conn) => self.drain_conn(core, conn),
                Output::Replay { conn, from, to } => self.replays.push((core, conn, from, to)),
                o @ (Output::ReadLastInboxSeq(_) | Output::ReadGap { .. }) => {
                    self.reads.push((core, o))
                }
                Output::PresenceAnswered { .. }
                | Output::SaveCursor { .. }
                | Output::SaveLastSeen { .. }
                | Output::Push(_) => {}
            }
        }
    }

    fn drain_conn(&mut self, core: usize, conn: ConnId) {
        let mut frames = Vec::new();
        let Some(close) = self.shards[core].take_output(conn, &mut frames) else {
            return;
        };
        let r = self.seen.entry((core, conn)).or_default();
        for (f, _) in &frames {
            match decode(f) {
                Some(Frame::Message(m)) => r.inbox.push(m.inbox_seq),
                Some(Frame::SendAck(a)) => r.inbox.push(a.inbox_seq),
                Some(Frame::SyncBatch(b)) => r.inbox.extend(b.messages.iter().map(|m| m.inbox_seq)),
                Some(Frame::Presence(p)) => {
                    for e in p.entries {
                        self.presence.push((conn, e));
                    }
                }
                Some(other) => r.other.push(other),
                None => {}
            }
        }
        if close.is_some() {
            r.closed = close;
        }
    }

    fn connect(&mut self, user: UserId, device: DeviceId, cursor: InboxSeq) -> (usize, ConnId) {
        let core = self.owner(user);
        let conn = self.shards[core].open(
            self.now,
            Opening {
                user,
                device,
                login: 1,
                cursor,
                transport: Transport::Ws,
                encoding: Encoding::Binary,
            },
        );
        self.seen.insert(
            (core, conn),
            Received {
                cursor,
                ..Received::default()
            },
        );
        self.pump(core);
        (core, conn)
    }

    fn disconnect(&mut self, core: usize, conn: ConnId) {
        self.shards[core].handle(self.now, Input::Closed(conn));
        self.seen.remove(&(core, conn));
        self.replays.retain(|(c, id, ..)| (*c, *id) != (core, conn));
        self.pump(core);
    }

    /// Commits a send now; its completion is handed back later.
    fn send(
        &mut self,
        sender: UserId,
        device: DeviceId,
        conn: ConnId,
        channel: ChannelId,
        members: &[UserId],
    ) {
        self.next_id += 1;
        let id = self.next_id;
        let core = self.owner(sender);
        let (m, outcome) = self.log.commit(sender, device, channel, members, id);
        let token = self.shards[core].pending_send(PendingSend {
            conn,
            channel,
            sender,
            device,
            client_msg_id: id,
            text: m.text,
            push_to: Vec::new(),
            submitted: self.now,
        });
        self.completions[core].push(Completion {
            token,
            result: Ok(outcome),
        });
    }

    fn complete(&mut self, core: usize, i: usize) {
        let c = self.completions[core].remove(i);
        self.shards[core].handle(self.now, Input::Stored(c));
        self.pump(core);
    }

    fn deliver_mail(&mut self, core: usize) {
        if let Some(msg) = self.mail[core].pop_front() {
            self.shards[core].handle(self.now, Input::Msg(msg));
            self.pump(core);
        }
    }

    fn answer_read(&mut self, i: usize) {
        let (core, out) = self.reads.remove(i);
        let input = match out {
            Output::ReadLastInboxSeq(user) => Input::LastInboxSeq {
                user,
                last: Some(self.log.last(user)),
            },
            Output::ReadGap { user, after, limit } => Input::GapRead {
                user,
                entries: Some(self.log.read(user, after, limit)),
            },
            _ => unreachable!(),
        };
        self.shards[core].handle(self.now, input);
        self.pump(core);
    }

    /// Runs a replay as the session does: the stored entries in
    /// `(from, to]` as `SyncBatch` frames, then live.
    fn replay(&mut self, i: usize) {
        let (core, conn, from, to) = self.replays.remove(i);
        let user = self.seen_user(core, conn);
        let messages: Vec<frame::Message> = self
            .log
            .read(user, from, from.distance_to(to) as usize)
            .into_iter()
            .map(|e| frame::Message::stored(e.inbox_seq, e.message))
            .collect();
        self.shards[core].send(
            conn,
            &Frame::SyncBatch(frame::SyncBatch {
                request_id: 0,
                has_more: false,
                messages,
            }),
        );
        self.shards[core].handle(self.now, Input::ReplayDone { conn, upto: to });
        self.pump(core);
    }

    fn seen_user(&self, core: usize, conn: ConnId) -> UserId {
        self.shards[core].conn_user(conn).expect("open").0
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        for core in 0..self.shards.len() {
            self.shards[core].handle_timeout(self.now);
            self.pump(core);
        }
    }

    /// Runs everything in flight to completion.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            for core in 0..self.shards.len() {
                while !self.completions[core].is_empty() {
                    self.complete(core, 0);
                    busy = true;
                }
                while !self.mail[core].is_empty() {
                    self.deliver_mail(core);
                    busy = true;
                }
            }
            while !self.reads.is_empty() {
                self.answer_read(0);
                busy = true;
            }
            while !self.replays.is_empty() {
                self.replay(0);
                busy = true;
            }
            if !busy {
                self.tick(GAP * 2);
                if self.reads.is_empty() && self.mail.iter().all(|m| m.is_empty()) {
                    return;
                }
            }
        }
        panic!("the world never settled");
    }

    fn received(&self, core: usize, conn: ConnId) -> &Received {
        &self.seen[&(core, conn)]
    }
}

/// The inbox a connection received is consecutive from its cursor.
fn assert_gapless(r: &Received) {
    let mut want = r.cursor.next();
    for seq in &r.inbox {
        assert_eq!(
            *seq, want,
            "received {:?} after cursor {:?}",
            r.inbox, r.cursor
        );
        want = want.next();
    }
}

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const PHONE: DeviceId = DeviceId(10);
const LAPTOP: DeviceId = DeviceId(11);
const DM: ChannelId = ChannelId(7);

/// A live device: connected, its start read, its replay run.
fn live(w: &mut World, user: UserId, device: DeviceId) -> (usize, ConnId) {
    let cursor = w.log.last(user);
    let (core, conn) = w.connect(user, device, cursor);
    w.settle();
    (core, conn)
}

#[test]
fn entries_arriving_out_of_order_are_released_in_inbox_order() {
    let mut w = World::new(1);
    let (core, alice) = live(&mut w, ALICE, PHONE);
    let (_, bob) = live(&mut w, BOB, PHONE);
    for _ in 0..3 {
        w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    }
    // Storage completes them last first.
    w.complete(core, 2);
    w.complete(core, 1);
    assert!(
        w.received(core, bob).inbox.is_empty(),
        "nothing before entry 1"
    );
    w.complete(core, 0);
    assert_eq!(
        w.received(core, bob).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
    // The sender's device got acks, in its own inbox order.
    assert_eq!(
        w.received(core, alice).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
}

#[test]
fn a_missing_entry_is_read_back_after_its_timeout() {
    let mut w = World::new(2);
    let (bob_core, bob) = live(&mut w, BOB, PHONE);
    let (alice_core, alice) = live(&mut w, ALICE, PHONE);
    for _ in 0..3 {
        w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    }
    // The first completion is lost on its way (its producing core died).
    w.completions[alice_core].remove(0);
    w.complete(alice_core, 0);
    w.complete(alice_core, 0);
    while !w.mail[bob_core].is_empty() {
        w.deliver_mail(bob_core);
    }
    assert!(w.received(bob_core, bob).inbox.is_empty());
    w.tick(GAP / 2);
    assert!(w.reads.is_empty(), "not read back before the timeout");
    w.tick(GAP);
    // Both users miss entry 1 (Alice's own ack rode the lost completion).
    let gaps: Vec<(UserId, InboxSeq, usize)> = w
        .reads
        .iter()
        .map(|(_, o)| match o {
            Output::ReadGap { user, after, limit } => (*user, *after, *limit),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(gaps.contains(&(BOB, InboxSeq::ZERO, 1)), "{gaps:?}");
    assert!(gaps.contains(&(ALICE, InboxSeq::ZERO, 1)), "{gaps:?}");
    while !w.reads.is_empty() {
        w.answer_read(0);
    }
    assert_eq!(
        w.received(bob_core, bob).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
    assert_eq!(
        w.received(alice_core, alice).inbox,
        [InboxSeq(1), InboxSeq(2), InboxSeq(3)]
    );
}

#[test]
fn replay_and_live_delivery_hand_over_with_no_gap_and_no_duplicate() {
    let mut w = World::new(1);
    let (core, alice) = live(&mut w, ALICE, PHONE);
    for _ in 0..5 {
        w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    }
    w.settle();
    // Bob comes online with entry 2: the replay is asked for (2, 5].
    let (_, bob) = w.connect(BOB, PHONE, InboxSeq(2));
    w.answer_read(0);
    assert!(
        matches!(w.replays.as_slice(), [(_, _, from, to)] if *from == InboxSeq(2) && *to == InboxSeq(5))
    );
    // Two more arrive live while the replay is still reading.
    w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    w.complete(core, 1);
    w.complete(core, 0);
    assert!(
        w.received(core, bob).inbox.is_empty(),
        "live entries wait for the replay"
    );
    w.replay(0);
    let r = w.received(core, bob);
    assert_eq!(r.inbox, (3..=7).map(InboxSeq).collect::<Vec<_>>());
    assert_gapless(r);
}

#[test]
fn a_quick_reconnect_publishes_no_presence_change() {
    let mut w = World::new(2);
    let (core, watcher) = live(&mut w, BOB, PHONE);
    w.shards[core].watch(w.now, watcher, &[ALICE]);
    w.pump(core);
    w.settle();
    w.presence.clear();
    let (alice_core, first) = live(&mut w, ALICE, PHONE);
    w.settle();
    assert_eq!(w.presence.len(), 1, "online once");
    assert!(w.presence[0].1.online);
    w.disconnect(alice_core, first);
    w.tick(GRACE / 2);
    let _ = live(&mut w, ALICE, LAPTOP);
    w.tick(GRACE * 2);
    w.settle();
    assert_eq!(
        w.presence.len(),
        1,
        "a reconnect inside the grace period is no change"
    );
    let conns = w.shards[alice_core].user_conns(ALICE);
    w.disconnect(alice_core, conns[0]);
    w.tick(GRACE - Duration::from_millis(1));
    w.settle_mail();
    assert_eq!(w.presence.len(), 1, "still online inside the grace period");
    w.tick(Duration::from_millis(2));
    w.settle_mail();
    assert_eq!(w.presence.len(), 2);
    let offline = w.presence[1].1;
    assert!(!offline.online);
    assert!(
        offline.last_seen_ms > 1_000_000,
        "last seen is when offline was declared"
    );
}

impl World {
    fn settle_mail(&mut self) {
        for core in 0..self.shards.len() {
            while !self.mail[core].is_empty() {
                self.deliver_mail(core);
            }
        }
    }
}

#[test]
fn a_slow_consumer_loses_ephemeral_frames_first_then_the_connection() {
    let mut w = World::new(1);
    let (core, bob) = live(&mut w, BOB, PHONE);
    let small = 2048;
    w.shards[core].config.outbound_limit_bytes = small;
    let typing = Frame::TypingEvent(frame::TypingEvent {
        channel_id: DM,
        user_id: ALICE,
    });
    let bytes = Bytes::from(Encoding::Binary.encode(&typing));
    // A stuck socket: queue without the writer taking anything.
    for _ in 0..10 {
        w.shards[core].queue(
            bob,
            OutFrame::Encoded(typing.frame_type(), bytes.clone()),
            Priority::Droppable,
        );
    }
    let big = Frame::HeartbeatAck(frame::HeartbeatAck {
        nonce: 1,
        server_time_ms: 1,
    });
    let filler = Bytes::from(vec![0u8; small / 2]);
    w.shards[core].queue(
        bob,
        OutFrame::Encoded(big.frame_type(), filler.clone()),
        Priority::Required,
    );
    assert!(!w.shards[core].is_closing(bob));
    w.shards[core].queue(
        bob,
        OutFrame::Encoded(big.frame_type(), filler.clone()),
        Priority::Required,
    );
    assert!(
        !w.shards[core].is_closing(bob),
        "typing notices were shed to make room"
    );
    w.shards[core].queue(
        bob,
        OutFrame::Encoded(big.frame_type(), filler),
        Priority::Required,
    );
    assert!(w.shards[core].is_closing(bob), "nothing left to shed");
    let mut frames = Vec::new();
    let close = w.shards[core].take_output(bob, &mut frames).unwrap();
    assert_eq!(
        close.unwrap().code(),
        confab_protocol::ErrorCode::SlowConsumer.code()
    );
    assert!(
        frames.iter().all(|(_, p)| *p == Priority::Required),
        "no typing notice survived"
    );
}

#[test]
fn json_is_encoded_only_for_a_json_recipient() {
    let mut w = World::new(1);
    let (core, alice) = live(&mut w, ALICE, PHONE);
    let (_, _bob) = live(&mut w, BOB, PHONE);
    w.send(ALICE, PHONE, alice, DM, &[ALICE, BOB]);
    let c = w.completions[core].remove(0);
    let Ok(outcome) = &c.result else {
        unreachable!()
    };
    let outcome = outcome.clone();
    w.shards[core].handle(w.now, Input::Stored(c));
    let mut delivered = None;
    while let Some(out) = w.shards[core].poll_output() {
        if let Output::Wake(conn) = out {
            let mut frames = Vec::new();
            w.shards[core].take_output(conn, &mut frames);
            for (f, _) in frames {
                if let OutFrame::Message { body, .. } = f {
                    delivered = Some(body);
                }
            }
        }
    }
    let body = delivered.expect("Bob got the message");
    assert_eq!(outcome.inbox.len(), 2);
    // The body Bob got is the shared binary tail; JSON was never made.
    let d = crate::fanout::Delivery::new(
        StoredMessage {
            channel: DM,
            seq: outcome.seq,
            sender: ALICE,
            device: PHONE,
            client_msg_id: 1,
            timestamp_ms: 1,
            text: "m1".into(),
        },
        crate::fanout::Origin::Refill,
        w.now,
    );
    let _ = d.frame(Encoding::Binary, InboxSeq(1));
    assert!(!d.is_encoded(Encoding::Json));
    assert!(!body.is_empty());
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Connect(u8, u8),
    Disconnect(u8),
    Send(u8, u8),
    Complete(u8),
    Mail(u8),
    Read,
    Replay(u8),
    Tick(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0u8..4, 0u8..2).prop_map(|(u, d)| Step::Connect(u, d)),
        1 => any::<u8>().prop_map(Step::Disconnect),
        4 => (0u8..4, 0u8..4).prop_map(|(u, c)| Step::Send(u, c)),
        4 => any::<u8>().prop_map(Step::Complete),
        4 => any::<u8>().prop_map(Step::Mail),
        2 => Just(Step::Read),
        2 => any::<u8>().prop_map(Step::Replay),
        1 => (0u16..2500).prop_map(Step::Tick),
    ]
}

/// Channels of the random runs: two DMs and two groups over four users.
fn members(channel: u8) -> (ChannelId, Vec<UserId>) {
    let all = [UserId(1), UserId(2), UserId(3), UserId(4)];
    match channel {
        0 => (ChannelId(100), vec![all[0], all[1]]),
        1 => (ChannelId(101), vec![all[2], all[3]]),
        2 => (ChannelId(102), all[..3].to_vec()),
        _ => (ChannelId(103), all.to_vec()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the interleaving, every connection receives its user's
    /// inbox consecutively from its cursor, and once everything in flight
    /// has landed, every connection has all of it.
    #[test]
    fn every_device_gets_its_inbox_in_order_with_no_gap_or_duplicate(
        cores in 1usize..=3,
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut w = World::new(cores);
        // Devices remember the last entry they received: their cursor.
        let mut cursors: BTreeMap<(UserId, DeviceId), InboxSeq> = BTreeMap::new();
        let mut open: Vec<(usize, ConnId, UserId, DeviceId)> = Vec::new();
        for s in steps {
            match s {
                Step::Connect(u, d) => {
                    let (user, device) = (UserId(u as u64 + 1), DeviceId(d as u64 + 1));
                    if open.iter().any(|(.., ou, od)| (*ou, *od) == (user, device)) {
                        continue;
                    }
                    let cursor = cursors.get(&(user, device)).copied().unwrap_or_default();
                    let (core, conn) = w.connect(user, device, cursor);
                    open.push((core, conn, user, device));
                }
                Step::Disconnect(i) if !open.is_empty() => {
                    let (core, conn, user, device) = open.remove(i as usize % open.len());
                    let r = w.received(core, conn);
                    assert_gapless(r);
                    let last = r.inbox.last().copied().unwrap_or(r.cursor);
                    cursors.insert((user, device), last);
                    w.disconnect(core, conn);
                }
                Step::Send(u, c) => {
                    let (channel, ms) = members(c);
                    let sender = ms[u as usize % ms.len()];
                    let Some(&(_, conn, _, device)) = open.iter().find(|(.., ou, _)| *ou == sender) else {
                        continue;
                    };
                    w.send(sender, device, conn, channel, &ms);
                }
                Step::Complete(i) => {
                    let busy: Vec<usize> = (0..cores).filter(|c| !w.completions[*c].is_empty()).collect();
                    if let Some(&core) = busy.get(i as usize % busy.len().max(1)) {
                        let n = w.completions[core].len();
                        w.complete(core, i as usize % n);
                    }
                }
                Step::Mail(i) => w.deliver_mail(i as usize % cores),
                Step::Read if !w.reads.is_empty() => w.answer_read(0),
                Step::Replay(i) if !w.replays.is_empty() => {
                    let n = w.replays.len();
                    w.replay(i as usize % n);
                }
                Step::Tick(ms) => w.tick(Duration::from_millis(ms as u64)),
                _ => {}
            }
            for (core, conn, ..) in &open {
                assert_gapless(w.received(*core, *conn));
            }
        }
        w.settle();
        for (core, conn, user, _) in &open {
            let r = w.received(*core, *conn);
            assert_gapless(r);
            let last = r.inbox.last().copied().unwrap_or(r.cursor);
            prop_assert_eq!(last, w.log.last(*user), "connection {:?} of {:?} is behind", conn, user);
            prop_assert!(r.closed.is_none());
        }
    }
}
