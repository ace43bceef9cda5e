//! The shard's state driven alone, with a model of storage and of the
//! other shards standing in for the driver: no sockets, no runtime, a
//! clock that only moves when a test moves it. The unit tests pin the
//! delivery rules down one by one; the proptest runs random interleavings
//! of connects, disconnects, sends, storage completions, cross-shard
//! messages, replays and timeouts, and checks that every device gets its
//! inbox in order with no gap and no duplicate.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab_protocol::frame::{self, Frame};
use confab_protocol::{binary, Encoding};
use confab_storage::writer::Completion;
use confab_storage::{AppendOutcome, InboxEntry};
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, Text, UserId};

use super::*;
use crate::fanout::{CloseReason, OutFrame};
use crate::metrics::{CoreMetrics, Transport};

pub(super) const GAP: Duration = Duration::from_secs(1);
pub(super) const GRACE: Duration = Duration::from_secs(5);

pub(super) fn config(core: usize, cores: usize) -> ShardConfig {
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
pub(super) struct Log {
    pub(super) inboxes: HashMap<UserId, Vec<StoredMessage>>,
    pub(super) next_seq: HashMap<ChannelId, u64>,
}

impl Log {
    pub(super) fn last(&self, user: UserId) -> InboxSeq {
        InboxSeq(self.inboxes.get(&user).map_or(0, |v| v.len() as u64))
    }

    pub(super) fn read(&self, user: UserId, after: InboxSeq, limit: usize) -> Vec<InboxEntry> {
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
    pub(super) fn commit(
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
pub(super) struct World {
    pub(super) now: Instant,
    pub(super) shards: Vec<ShardState>,
    pub(super) log: Log,
    /// Messages between shards, per destination, in send order.
    pub(super) mail: Vec<VecDeque<ShardMsg>>,
    /// Storage completions not yet handed back, per producing shard.
    pub(super) completions: Vec<Vec<Completion>>,
    /// Replays asked for and not yet run.
    pub(super) replays: Vec<(usize, ConnId, InboxSeq, InboxSeq)>,
    /// Reads asked for and not yet answered.
    pub(super) reads: Vec<(usize, Output)>,
    /// What each connection received, by shard and connection.
    pub(super) seen: HashMap<(usize, ConnId), Received>,
    /// Presence changes published to watchers, in order.
    pub(super) presence: Vec<(ConnId, frame::PresenceInfo)>,
    /// Connections announced as closing, in order.
    pub(super) closing: Vec<(usize, ConnId)>,
    pub(super) next_id: u64,
}

/// What one connection has received.
#[derive(Default, Debug)]
pub(super) struct Received {
    pub(super) cursor: InboxSeq,
    pub(super) inbox: Vec<InboxSeq>,
    pub(super) other: Vec<Frame>,
    pub(super) closed: Option<CloseReason>,
}

pub(super) fn decode(f: &OutFrame) -> Option<Frame> {
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
    pub(super) fn new(cores: usize) -> World {
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
            closing: Vec::new(),
            next_id: 0,
        }
    }

    pub(super) fn owner(&self, user: UserId) -> usize {
        owner_core(user, self.shards.len())
    }

    /// Collects what a shard asked for.
    pub(super) fn pump(&mut self, core: usize) {
        while let Some(out) = self.shards[core].poll_output() {
            match out {
                Output::ToCore(to, msg) => self.mail[to].push_back(msg),
                Output::Wake(conn) => self.drain_conn(core, conn),
                Output::Closing(conn) => self.closing.push((core, conn)),
                Output::Replay { conn, from, to } => self.replays.push((core, conn, from, to)),
                o @ (Output::ReadLastInboxSeq { .. } | Output::ReadGap { .. }) => {
                    self.reads.push((core, o))
                }
                Output::PresenceAnswered { .. }
                | Output::SaveCursor { .. }
                | Output::SaveLastSeen { .. }
                | Output::Push(_) => {}
            }
        }
    }

    pub(super) fn drain_conn(&mut self, core: usize, conn: ConnId) {
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

    pub(super) fn connect(
        &mut self,
        user: UserId,
        device: DeviceId,
        cursor: InboxSeq,
    ) -> (usize, ConnId) {
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

    pub(super) fn disconnect(&mut self, core: usize, conn: ConnId) {
        self.shards[core].handle(self.now, Input::Closed(conn));
        self.seen.remove(&(core, conn));
        self.replays.retain(|(c, id, ..)| (*c, *id) != (core, conn));
        self.pump(core);
    }

    /// Commits a send now; its completion is handed back later.
    pub(super) fn send(
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

    pub(super) fn complete(&mut self, core: usize, i: usize) {
        let c = self.completions[core].remove(i);
        self.shards[core].handle(self.now, Input::Stored(c));
        self.pump(core);
    }

    pub(super) fn deliver_mail(&mut self, core: usize) {
        if let Some(msg) = self.mail[core].pop_front() {
            self.shards[core].handle(self.now, Input::Msg(msg));
            self.pump(core);
        }
    }

    pub(super) fn answer_read(&mut self, i: usize) {
        let (core, out) = self.reads.remove(i);
        let input = match out {
            Output::ReadLastInboxSeq { user, read } => Input::LastInboxSeq {
                user,
                read,
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
    pub(super) fn replay(&mut self, i: usize) {
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

    pub(super) fn seen_user(&self, core: usize, conn: ConnId) -> UserId {
        self.shards[core].conn_user(conn).expect("open").0
    }

    pub(super) fn tick(&mut self, d: Duration) {
        self.now += d;
        for core in 0..self.shards.len() {
            self.shards[core].handle_timeout(self.now);
            self.pump(core);
        }
    }

    /// Runs everything in flight to completion.
    pub(super) fn settle(&mut self) {
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

    pub(super) fn received(&self, core: usize, conn: ConnId) -> &Received {
        &self.seen[&(core, conn)]
    }
}

/// The inbox a connection received is consecutive from its cursor.
pub(super) fn assert_gapless(r: &Received) {
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

mod cases;
mod interleavings;
