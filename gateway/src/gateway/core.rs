//! One core's state and its event loop. A core owns a shard of users
//! (`owner_core(user)`): their connections, their place in the live
//! message stream, their presence and who watches it. Everything here is
//! `Rc`/`RefCell`: the only ways in from outside are the core's mailbox
//! and its storage producer's completion queue, both lock-free.
//!
//! Ordering. Inbox sequences of one user are assigned by the storage
//! writers, but their completions reach the owning core along different
//! routes (whichever core produced each send), so they can arrive out of
//! order. Each online user has a release point `next`: entries are held
//! until every earlier one has arrived, then released in order to every
//! device. A device that connects replays from storage up to `next - 1`
//! while buffering what is released meanwhile, then switches to live:
//! nothing between the two is missed or sent twice.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::fanout::{MessageFields, SharedMessage};
use confab_protocol::frame::{self, Frame, PresenceInfo};
use confab_protocol::ErrorCode;
use confab_storage::writer::{Completion, Producer};
use confab_storage::{AppendRequest, ChannelId, DeviceId, UserId};
use tokio::sync::{oneshot, Notify};

use super::bus::owner_core;
use super::directory::{Cache, Invalidation};
use super::metrics::Transport;
use super::outbound::{CloseReason, OutFrame, Outbound, Priority, Pushed};
use super::push_hook::{Found, PushJob};
use super::{now_ms, Shared};
use crate::ws::Encoding;

/// A connection on this core.
pub type ConnId = u64;

/// A stored message on its way to the online devices of its recipients,
/// encoded once and shared by every core that holds a recipient.
pub struct Delivery {
    /// The encode-once body.
    pub message: SharedMessage,
    /// Author.
    pub sender: u64,
    /// Author's device (it gets a `SendAck` instead of the `Message`).
    pub sender_device: u64,
    /// The author's id for it.
    pub client_msg_id: u64,
    /// Channel and sequence.
    pub channel: u64,
    /// Channel sequence.
    pub seq: u64,
    /// Commit time.
    pub timestamp_ms: u64,
    /// (recipient, their inbox seq) for every member.
    pub entries: Vec<(u64, u64)>,
    /// Members whose push job was written with the message; `None` for a
    /// message read back from storage to fill a gap, which was pushed (or
    /// not) when it was first delivered and must not be pushed again.
    pub push_to: Option<Vec<u64>>,
}

/// What a [`TypingNotice`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The user is typing (droppable; not sent to the typist's devices).
    Typing,
    /// The user read the channel up to this sequence (sent to the other
    /// members and to the reader's other devices).
    Receipt(u64),
}

/// A typing notice or read receipt on its way to a channel's online
/// members; never stored.
pub struct TypingNotice {
    /// The channel.
    pub channel: u64,
    /// Who types or read.
    pub user: u64,
    /// The channel's members.
    pub members: Arc<[u64]>,
    /// Typing or a receipt.
    pub kind: NoticeKind,
}

/// What cores send each other.
pub enum CoreMsg {
    /// A connection authenticated on another core, moving to its owner.
    Adopt(Box<super::conn::Handover>),
    /// A stored message for local recipients.
    Deliver(Arc<Delivery>),
    /// A typing notice for local members.
    Typing(Arc<TypingNotice>),
    /// `core` starts (or stops) watching `target`'s presence.
    Watch {
        /// The watched user (owned here).
        target: u64,
        /// The watching core.
        core: usize,
        /// Start or stop.
        add: bool,
    },
    /// A watched user's presence changed.
    PresenceChanged(PresenceInfo),
    /// Which of `users` (owned here) are online.
    PresenceAsk {
        /// The users.
        users: Vec<u64>,
        /// Where to answer.
        reply: oneshot::Sender<Vec<(u64, bool)>>,
    },
    /// Cached directory facts went stale.
    Invalidate(Invalidation),
    /// A login session was revoked: close its connections.
    Revoked {
        /// The user (owned here).
        user: u64,
        /// The login session.
        session: u64,
    },
    /// A QUIC connection authenticated on another core (or this one),
    /// whose session runs here.
    AdoptQuic(Box<super::quic::QuicHandover>),
    /// Client frames for a linked session running here.
    LinkIn {
        /// The link.
        link: u64,
        /// What arrived.
        items: Vec<super::link::LinkIn>,
    },
    /// Server frames for a QUIC connection held here.
    LinkOut {
        /// The link.
        link: u64,
        /// The frames (and close).
        out: super::link::LinkOut,
    },
    /// Close every connection and stop.
    Shutdown,
}

/// Where a live connection stands.
enum Mode {
    /// Replaying stored entries; live frames wait here in order.
    Replaying(Vec<(OutFrame, Priority)>),
    /// Live.
    Live,
}

struct Conn {
    user: u64,
    device: u64,
    login: u64,
    transport: Transport,
    encoding: Encoding,
    out: Rc<Outbound>,
    mode: Mode,
    /// Highest inbox seq sent to the device.
    delivered: u64,
    /// Users whose presence this connection watches.
    watching: Vec<u64>,
}

/// An online (or recently online) user owned by this core.
struct UserSlot {
    conns: Vec<ConnId>,
    /// Next inbox seq to release; 0 while its starting point is read.
    next: u64,
    /// Arrivals while `next` is unknown.
    early: Vec<(u64, Arc<Delivery>)>,
    /// Arrivals ahead of `next`.
    ahead: BTreeMap<u64, Arc<Delivery>>,
    /// When `ahead` last stopped draining (gap repair after a timeout).
    stalled_since: Option<Instant>,
    ready: Rc<Notify>,
    /// Bumped whenever the offline grace period (re)starts.
    grace_gen: u64,
    /// Send rate limiter.
    tokens: f64,
    refilled: Instant,
    /// Last typing notice per channel (rate limit).
    typing: HashMap<u64, Instant>,
}

struct PendingSend {
    conn: ConnId,
    sender: u64,
    client_msg_id: u64,
    sender_device: u64,
    text: String,
    push_to: Vec<u64>,
    submitted: Instant,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    users: HashMap<u64, UserSlot>,
    pending: HashMap<u64, PendingSend>,
    next_token: u64,
    next_conn: ConnId,
    cache: Cache,
    /// target (owned here) → watching core → number of its watchers.
    watchers: HashMap<u64, HashMap<usize, u32>>,
    /// target → local connections watching it.
    watching: HashMap<u64, Vec<ConnId>>,
    stopping: bool,
}

/// One core.
pub struct Core {
    /// Index of this core.
    pub id: usize,
    /// What all cores share.
    pub shared: Arc<Shared>,
    /// Cross-core links of QUIC sessions, both ends.
    pub links: super::quic::Links,
    state: RefCell<State>,
    producer: RefCell<Producer>,
}

/// Outcome of attaching a device.
pub enum Attach {
    /// The user's stream position is known: replay up to this inbox seq.
    Ready(u64),
    /// The caller must read the user's last inbox seq and call
    /// [`Core::user_ready`].
    Init,
    /// Another connection is reading it; wait on this and try again.
    Wait(Rc<Notify>),
}

/// Encodes `frame` for one connection, keeping its type.
pub fn out_frame(encoding: Encoding, frame: &Frame) -> OutFrame {
    OutFrame::Owned(frame.frame_type(), encode(encoding, frame))
}

/// Encodes `frame` in the connection's encoding.
pub fn encode(encoding: Encoding, frame: &Frame) -> Vec<u8> {
    match encoding {
        Encoding::Binary => confab_protocol::binary::encode_to_vec(frame),
        Encoding::Json => {
            let mut v = Vec::new();
            confab_protocol::json::encode_into(frame, &mut v);
            v
        }
    }
}

/// An `Error` frame.
pub fn error_frame(
    code: ErrorCode,
    message: impl Into<String>,
    answering: Option<&Frame>,
) -> Frame {
    Frame::Error(frame::Error {
        code,
        message: message.into(),
        frame_type: answering.map_or(0, |f| f.frame_type().as_u8()),
        request_id: answering.map_or(0, Frame::request_id),
    })
}

impl Core {
    /// A core with its storage producer.
    pub fn new(id: usize, shared: Arc<Shared>, producer: Producer) -> Rc<Core> {
        Rc::new(Core {
            id,
            shared,
            links: Default::default(),
            state: RefCell::new(State {
                next_conn: 1,
                next_token: 1,
                ..State::default()
            }),
            producer: RefCell::new(producer),
        })
    }

    fn metrics(&self) -> &super::CoreMetrics {
        &self.shared.metrics[self.id]
    }

    /// The event loop: drains the mailbox and storage completions whenever
    /// either has something, until shutdown.
    pub async fn run(self: Rc<Self>) {
        let mailbox = self.shared.bus.mailbox(self.id).clone();
        let mut completions = Vec::new();
        loop {
            let mut msgs = Vec::new();
            mailbox.drain(|m| msgs.push(m));
            for m in msgs {
                if let CoreMsg::Shutdown = m {
                    self.shutdown();
                    return;
                }
                self.handle(m);
            }
            completions.clear();
            while let Some(c) = self.producer.borrow_mut().poll() {
                completions.push(c);
            }
            for c in completions.drain(..) {
                self.complete(c);
            }
            let m = self.metrics();
            m.queue_depth.set(mailbox.depth() as u64);
            m.storage_in_flight
                .set(self.producer.borrow().outstanding() as u64);
            mailbox.wait().await;
        }
    }

    /// After shutdown: only link traffic is still handled, so QUIC
    /// connections held here get their sessions' last frames.
    pub fn drain_links(self: &Rc<Self>) {
        let mailbox = self.shared.bus.mailbox(self.id).clone();
        let mut msgs = Vec::new();
        mailbox.drain(|m| msgs.push(m));
        for m in msgs {
            match m {
                CoreMsg::LinkIn { link, items } => self.links.deliver_in(link, items),
                CoreMsg::LinkOut { link, out } => self.links.deliver_out(link, out),
                _ => {}
            }
        }
    }

    fn handle(self: &Rc<Self>, msg: CoreMsg) {
        match msg {
            CoreMsg::Adopt(h) => {
                tokio::task::spawn_local(super::conn::session(self.clone(), *h));
            }
            CoreMsg::AdoptQuic(h) => super::quic::home::adopt(self, *h),
            CoreMsg::LinkIn { link, items } => self.links.deliver_in(link, items),
            CoreMsg::LinkOut { link, out } => self.links.deliver_out(link, out),
            CoreMsg::Deliver(d) => self.deliver_local(&d),
            CoreMsg::Typing(t) => self.typing_local(&t),
            CoreMsg::Watch { target, core, add } => {
                let mut st = self.state.borrow_mut();
                let cores = st.watchers.entry(target).or_default();
                let n = cores.entry(core).or_default();
                if add {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        cores.remove(&core);
                    }
                    if cores.is_empty() {
                        st.watchers.remove(&target);
                    }
                }
            }
            CoreMsg::PresenceChanged(info) => self.presence_local(info),
            CoreMsg::PresenceAsk { users, reply } => {
                let st = self.state.borrow();
                let answer = users
                    .iter()
                    .map(|u| (*u, st.users.contains_key(u)))
                    .collect();
                let _ = reply.send(answer);
            }
            CoreMsg::Invalidate(inv) => self.state.borrow_mut().cache.invalidate(&inv),
            CoreMsg::Revoked { user, session } => {
                let st = self.state.borrow();
                for c in st
                    .conns
                    .values()
                    .filter(|c| c.user == user && c.login == session)
                {
                    c.out.close(CloseReason {
                        code: ErrorCode::TokenRevoked.code(),
                        message: "session revoked".into(),
                    });
                }
            }
            CoreMsg::Shutdown => self.shutdown(),
        }
    }

    /// Registers a connection of `user`; see [`Attach`].
    pub fn attach(
        &self,
        user: u64,
        device: u64,
        login: u64,
        transport: Transport,
        encoding: Encoding,
        out: Rc<Outbound>,
    ) -> (ConnId, Attach) {
        let mut st = self.state.borrow_mut();
        let id = st.next_conn;
        st.next_conn += 1;
        st.conns.insert(
            id,
            Conn {
                user,
                device,
                login,
                transport,
                encoding,
                out,
                mode: Mode::Replaying(Vec::new()),
                delivered: 0,
                watching: Vec::new(),
            },
        );
        let mut published_online = false;
        let slot = st.users.entry(user).or_insert_with(|| {
            published_online = true;
            UserSlot {
                conns: Vec::new(),
                next: 0,
                early: Vec::new(),
                ahead: BTreeMap::new(),
                stalled_since: None,
                ready: Rc::new(Notify::new()),
                grace_gen: 0,
                tokens: 0.0,
                refilled: Instant::now(),
                typing: HashMap::new(),
            }
        });
        // A reconnect inside the grace period cancels the pending offline.
        slot.grace_gen += 1;
        let first_device = slot.conns.is_empty();
        slot.conns.push(id);
        let attach = if published_online {
            Attach::Init
        } else {
            Self::attach_state(slot)
        };
        if published_online {
            slot.tokens = self.shared.settings.send_burst as f64;
        }
        drop(st);
        if first_device {
            self.shared.push.presence(user, true);
        }
        self.metrics().connection_opened(transport);
        if published_online {
            self.publish_presence(PresenceInfo {
                user_id: user,
                online: true,
                last_seen_ms: 0,
            });
        }
        (id, attach)
    }

    fn attach_state(slot: &UserSlot) -> Attach {
        if slot.next == 0 {
            Attach::Wait(slot.ready.clone())
        } else {
            Attach::Ready(slot.next - 1)
        }
    }

    /// Re-checks a waiting attach.
    pub fn attach_retry(&self, user: u64) -> Attach {
        match self.state.borrow().users.get(&user) {
            Some(slot) => Self::attach_state(slot),
            // Every connection left meanwhile; the caller's is gone too.
            None => Attach::Ready(0),
        }
    }

    /// The user's stream starts after `last` (their last stored inbox seq,
    /// read after the slot existed, so anything that arrived before the
    /// read is covered by it).
    pub fn user_ready(&self, user: u64, last: u64) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let Some(slot) = st.users.get_mut(&user) else {
            return;
        };
        slot.next = last + 1;
        for (seq, d) in std::mem::take(&mut slot.early) {
            if seq > last {
                slot.ahead.insert(seq, d);
            }
        }
        slot.ready.notify_waiters();
        Self::release(&mut st.conns, slot, user, self.metrics());
    }

    /// Ends a replay: frames released meanwhile go out in order.
    pub fn go_live(&self, conn: ConnId, replayed_upto: u64) {
        let mut st = self.state.borrow_mut();
        let Some(c) = st.conns.get_mut(&conn) else {
            return;
        };
        c.delivered = c.delivered.max(replayed_upto);
        if let Mode::Replaying(buffer) = std::mem::replace(&mut c.mode, Mode::Live) {
            for (f, p) in buffer {
                if push(&c.out, f, p, self.metrics()) {
                    break;
                }
            }
        }
    }

    /// Removes a connection; returns its delivered cursor for persisting.
    pub fn detach(self: &Rc<Self>, conn: ConnId) -> Option<(u64, u64, u64)> {
        let mut st = self.state.borrow_mut();
        let c = st.conns.remove(&conn)?;
        let unwatch: Vec<u64> = c.watching.clone();
        let mut start_grace = None;
        if let Some(slot) = st.users.get_mut(&c.user) {
            slot.conns.retain(|x| *x != conn);
            if slot.conns.is_empty() {
                slot.grace_gen += 1;
                start_grace = Some(slot.grace_gen);
            }
        }
        let stopping = st.stopping;
        drop(st);
        if start_grace.is_some() {
            // Push cares about devices, not the presence grace period: a
            // message arriving now wakes the phone.
            self.shared.push.presence(c.user, false);
        }
        for target in unwatch {
            self.unwatch(conn, target);
        }
        self.metrics().connection_closed(c.transport);
        if let Some(gen) = start_grace {
            let core = self.clone();
            let user = c.user;
            let grace = if stopping {
                Duration::ZERO
            } else {
                self.shared.settings.presence_grace
            };
            tokio::task::spawn_local(async move {
                tokio::time::sleep(grace).await;
                core.grace_over(user, gen).await;
            });
        }
        Some((c.user, c.device, c.delivered))
    }

    async fn grace_over(self: Rc<Self>, user: u64, gen: u64) {
        {
            let mut st = self.state.borrow_mut();
            match st.users.get(&user) {
                Some(slot) if slot.conns.is_empty() && slot.grace_gen == gen => {
                    st.users.remove(&user);
                }
                _ => return,
            }
        }
        let at = now_ms();
        let log = self.shared.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.set_last_seen(UserId(user), at)).await;
        self.publish_presence(PresenceInfo {
            user_id: user,
            online: false,
            last_seen_ms: at,
        });
    }

    /// Whether `user` may send now (token bucket: `send_rate_per_s`
    /// sustained, `send_burst` at once).
    pub fn take_send_token(&self, user: u64) -> bool {
        let mut st = self.state.borrow_mut();
        let Some(slot) = st.users.get_mut(&user) else {
            return false;
        };
        let now = Instant::now();
        let rate = self.shared.settings.send_rate_per_s as f64;
        let burst = self.shared.settings.send_burst as f64;
        slot.tokens =
            (slot.tokens + now.duration_since(slot.refilled).as_secs_f64() * rate).min(burst);
        slot.refilled = now;
        if slot.tokens >= 1.0 {
            slot.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a typing notice from `user` in `channel` may go out now.
    pub fn take_typing_slot(&self, user: u64, channel: u64) -> bool {
        let mut st = self.state.borrow_mut();
        let Some(slot) = st.users.get_mut(&user) else {
            return false;
        };
        let now = Instant::now();
        match slot.typing.get(&channel) {
            Some(last) if now.duration_since(*last) < self.shared.settings.typing_interval => false,
            _ => {
                slot.typing.insert(channel, now);
                true
            }
        }
    }

    /// Queues a frame to one connection (answers, acks, errors).
    pub fn send_to(&self, conn: ConnId, frame: &Frame) {
        let st = self.state.borrow();
        if let Some(c) = st.conns.get(&conn) {
            push(
                &c.out,
                out_frame(c.encoding, frame),
                Priority::Required,
                self.metrics(),
            );
        }
    }

    /// Cached channel members.
    pub fn cached_members(&self, channel: u64) -> Option<Rc<[u64]>> {
        self.state.borrow().cache.members(channel)
    }

    /// Caches channel members.
    pub fn cache_members(&self, channel: u64, members: &[u64]) -> Rc<[u64]> {
        self.state.borrow_mut().cache.put_members(channel, members)
    }

    /// Cached DM channel.
    pub fn cached_dm(&self, a: u64, b: u64) -> Option<u64> {
        self.state.borrow().cache.dm(a, b)
    }

    /// Caches a DM channel.
    pub fn cache_dm(&self, a: u64, b: u64, channel: u64) {
        self.state.borrow_mut().cache.put_dm(a, b, channel)
    }

    /// Cached friends.
    pub fn cached_friends(&self, user: u64) -> Option<Rc<[u64]>> {
        self.state.borrow().cache.friends(user)
    }

    /// Caches friends.
    pub fn cache_friends(&self, user: u64, friends: &[u64]) -> Rc<[u64]> {
        self.state.borrow_mut().cache.put_friends(user, friends)
    }

    /// Hands a send to the storage writer. On refusal the error code to
    /// answer with.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        conn: ConnId,
        sender: u64,
        device: u64,
        channel: u64,
        members: &[u64],
        client_msg_id: u64,
        text: String,
    ) -> Result<(), ErrorCode> {
        let mut st = self.state.borrow_mut();
        let token = st.next_token;
        st.next_token += 1;
        // Decided now so the job rides the message's batch: a crash after
        // the commit cannot lose it. Empty (no allocation) in the common
        // case where everyone is online.
        let push = &self.shared.push;
        let push_to: Vec<u64> = members
            .iter()
            .copied()
            .filter(|&m| m != sender && push.wants_job(m))
            .collect();
        let request = AppendRequest {
            channel: ChannelId(channel),
            sender: UserId(sender),
            device: DeviceId(device),
            client_msg_id,
            recipients: members.iter().map(|m| UserId(*m)).collect(),
            text: text.as_bytes().to_vec(),
            push_to: push_to.iter().map(|&m| UserId(m)).collect(),
        };
        match self.producer.borrow_mut().submit(token, request) {
            Ok(()) => {
                st.pending.insert(
                    token,
                    PendingSend {
                        conn,
                        sender,
                        client_msg_id,
                        sender_device: device,
                        text,
                        push_to,
                        submitted: Instant::now(),
                    },
                );
                Ok(())
            }
            Err(e) => {
                use confab_storage::writer::SubmitRejection;
                Err(match e.reason {
                    SubmitRejection::Invalid(_) => ErrorCode::InvalidArgument,
                    _ => ErrorCode::Unavailable,
                })
            }
        }
    }

    fn complete(&self, c: Completion) {
        // Pending sends outlive their connection: a stored message is
        // delivered to everyone even if its sender dropped meanwhile.
        let Some(p) = self.state.borrow_mut().pending.remove(&c.token) else {
            return;
        };
        let m = self.metrics();
        m.store_latency.observe(p.submitted.elapsed());
        let outcome = match c.result {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "storage refused a send");
                self.send_to(
                    p.conn,
                    &error_frame(ErrorCode::Internal, "storage error", None),
                );
                m.error(ErrorCode::Internal);
                return;
            }
        };
        if outcome.duplicate {
            self.send_to(
                p.conn,
                &Frame::SendAck(frame::SendAck {
                    client_msg_id: p.client_msg_id,
                    channel_id: outcome.channel.0,
                    seq: outcome.seq,
                    inbox_seq: outcome.sender_inbox_seq,
                    timestamp_ms: outcome.timestamp_ms,
                    duplicate: true,
                }),
            );
            return;
        }
        m.messages_stored.add(1);
        m.fanout.observe_value(outcome.inbox.len() as f64);
        let sender = p.sender;
        let delivery = Arc::new(Delivery {
            message: SharedMessage::new(MessageFields {
                channel_id: outcome.channel.0,
                seq: outcome.seq,
                sender_id: sender,
                sender_device: p.sender_device,
                client_msg_id: p.client_msg_id,
                timestamp_ms: outcome.timestamp_ms,
                text: &p.text,
            }),
            sender,
            sender_device: p.sender_device,
            client_msg_id: p.client_msg_id,
            channel: outcome.channel.0,
            seq: outcome.seq,
            timestamp_ms: outcome.timestamp_ms,
            entries: outcome.inbox.iter().map(|(u, s)| (u.0, *s)).collect(),
            push_to: Some(p.push_to),
        });
        self.route(delivery);
    }

    /// Sends a delivery to every core that owns one of its recipients.
    pub fn route(&self, delivery: Arc<Delivery>) {
        let cores = self.shared.bus.cores();
        let mut mask = vec![false; cores];
        for (u, _) in &delivery.entries {
            mask[owner_core(*u, cores)] = true;
        }
        for (core, hit) in mask.into_iter().enumerate() {
            if !hit {
                continue;
            }
            if core == self.id {
                self.deliver_local(&delivery);
            } else {
                self.shared
                    .bus
                    .send(core, CoreMsg::Deliver(delivery.clone()));
            }
        }
    }

    fn deliver_local(&self, d: &Arc<Delivery>) {
        let cores = self.shared.bus.cores();
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        for &(user, seq) in &d.entries {
            if owner_core(user, cores) != self.id {
                continue;
            }
            // No device connected (a user in the offline grace period has
            // none either): the push service may wake them.
            let connected = st.users.get(&user).is_some_and(|s| !s.conns.is_empty());
            if let (Some(push_to), true) = (&d.push_to, user != d.sender) {
                let durable = push_to.contains(&user);
                let found = if !connected {
                    self.metrics().push_jobs.add(1);
                    Some(Found::Offline { durable })
                } else {
                    durable.then_some(Found::OnlineAfterAll)
                };
                if let Some(found) = found {
                    let job = PushJob {
                        user,
                        channel: d.channel,
                        seq: d.seq,
                        inbox_seq: seq,
                        sender: d.sender,
                        timestamp_ms: d.timestamp_ms,
                    };
                    self.shared.push.delivered(job, found);
                }
            }
            let Some(slot) = st.users.get_mut(&user) else {
                continue;
            };
            if slot.next == 0 {
                slot.early.push((seq, d.clone()));
                continue;
            }
            if seq < slot.next {
                continue;
            }
            slot.ahead.insert(seq, d.clone());
            Self::release(&mut st.conns, slot, user, self.metrics());
        }
    }

    /// Releases every entry that is next in line.
    fn release(
        conns: &mut HashMap<ConnId, Conn>,
        slot: &mut UserSlot,
        user: u64,
        m: &super::CoreMetrics,
    ) {
        while let Some(d) = slot.ahead.remove(&slot.next) {
            let seq = slot.next;
            slot.next += 1;
            for id in &slot.conns {
                let Some(c) = conns.get_mut(id) else { continue };
                let frame = if user == d.sender && c.device == d.sender_device {
                    out_frame(
                        c.encoding,
                        &Frame::SendAck(frame::SendAck {
                            client_msg_id: d.client_msg_id,
                            channel_id: d.channel,
                            seq: d.seq,
                            inbox_seq: seq,
                            timestamp_ms: d.timestamp_ms,
                            duplicate: false,
                        }),
                    )
                } else {
                    match c.encoding {
                        Encoding::Binary => OutFrame::Shared {
                            channel: d.channel,
                            header: d.message.binary_header(seq),
                            body: d.message.binary_body().clone(),
                        },
                        Encoding::Json => OutFrame::Shared {
                            channel: d.channel,
                            header: d.message.json_header(seq),
                            body: d.message.json_body().clone(),
                        },
                    }
                };
                m.deliveries.add(1);
                match &mut c.mode {
                    Mode::Replaying(buf) => buf.push((frame, Priority::Required)),
                    Mode::Live => {
                        if !push(&c.out, frame, Priority::Required, m) {
                            c.delivered = seq;
                        }
                    }
                }
            }
        }
        slot.stalled_since = if slot.ahead.is_empty() {
            None
        } else {
            slot.stalled_since.or(Some(Instant::now()))
        };
    }

    /// Users whose release point has waited on a missing entry longer than
    /// `after`: (user, next, first entry held back).
    pub fn stalled(&self, after: Duration) -> Vec<(u64, u64, u64)> {
        let st = self.state.borrow();
        st.users
            .iter()
            .filter_map(|(u, s)| {
                let since = s.stalled_since?;
                let first = *s.ahead.keys().next()?;
                (since.elapsed() >= after).then_some((*u, s.next, first))
            })
            .collect()
    }

    /// Offers entries read back from storage to fill a gap.
    pub fn fill(&self, user: u64, entries: Vec<(u64, Arc<Delivery>)>) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let Some(slot) = st.users.get_mut(&user) else {
            return;
        };
        for (seq, d) in entries {
            if seq >= slot.next {
                slot.ahead.entry(seq).or_insert(d);
            }
        }
        Self::release(&mut st.conns, slot, user, self.metrics());
    }

    /// Relays a typing notice or receipt to every core holding a member.
    pub fn route_notice(&self, notice: Arc<TypingNotice>) {
        let cores = self.shared.bus.cores();
        let mut mask = vec![false; cores];
        for u in notice.members.iter() {
            mask[owner_core(*u, cores)] = true;
        }
        for (core, hit) in mask.into_iter().enumerate() {
            if hit && core == self.id {
                self.typing_local(&notice);
            } else if hit {
                self.shared.bus.send(core, CoreMsg::Typing(notice.clone()));
            }
        }
    }

    fn typing_local(&self, t: &TypingNotice) {
        let cores = self.shared.bus.cores();
        let st = self.state.borrow();
        let (frame, priority) = match t.kind {
            NoticeKind::Typing => (
                Frame::TypingEvent(frame::TypingEvent {
                    channel_id: t.channel,
                    user_id: t.user,
                }),
                Priority::Droppable,
            ),
            NoticeKind::Receipt(seq) => (
                Frame::Receipt(frame::Receipt {
                    channel_id: t.channel,
                    user_id: t.user,
                    seq,
                }),
                Priority::Required,
            ),
        };
        let mut encoded: [Option<Vec<u8>>; 2] = [None, None];
        for u in t.members.iter() {
            if (*u == t.user && t.kind == NoticeKind::Typing) || owner_core(*u, cores) != self.id {
                continue;
            }
            let Some(slot) = st.users.get(u) else {
                continue;
            };
            for id in &slot.conns {
                let Some(c) = st.conns.get(id) else { continue };
                if !matches!(c.mode, Mode::Live) {
                    continue;
                }
                let i = matches!(c.encoding, Encoding::Json) as usize;
                let bytes = encoded[i]
                    .get_or_insert_with(|| encode(c.encoding, &frame))
                    .clone();
                push(
                    &c.out,
                    OutFrame::Owned(frame.frame_type(), bytes),
                    priority,
                    self.metrics(),
                );
            }
        }
    }

    /// Makes `conn` watch `targets`' presence.
    pub fn watch(&self, conn: ConnId, targets: &[u64]) {
        let cores = self.shared.bus.cores();
        let mut st = self.state.borrow_mut();
        let mut first = Vec::new();
        for &t in targets {
            let Some(c) = st.conns.get_mut(&conn) else {
                return;
            };
            if c.watching.contains(&t) {
                continue;
            }
            c.watching.push(t);
            let list = st.watching.entry(t).or_default();
            list.push(conn);
            if list.len() == 1 {
                first.push(t);
            }
        }
        drop(st);
        for t in first {
            let msg = CoreMsg::Watch {
                target: t,
                core: self.id,
                add: true,
            };
            let owner = owner_core(t, cores);
            if owner == self.id {
                self.handle_watch_local(msg);
            } else {
                self.shared.bus.send(owner, msg);
            }
        }
    }

    fn handle_watch_local(&self, msg: CoreMsg) {
        if let CoreMsg::Watch { target, core, add } = msg {
            let mut st = self.state.borrow_mut();
            let cores = st.watchers.entry(target).or_default();
            let n = cores.entry(core).or_default();
            if add {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    cores.remove(&core);
                }
                if cores.is_empty() {
                    st.watchers.remove(&target);
                }
            }
        }
    }

    /// Stops `conn` watching `target`.
    pub fn unwatch(&self, conn: ConnId, target: u64) {
        let cores = self.shared.bus.cores();
        let mut st = self.state.borrow_mut();
        if let Some(c) = st.conns.get_mut(&conn) {
            c.watching.retain(|t| *t != target);
        }
        let last = match st.watching.get_mut(&target) {
            Some(list) => {
                list.retain(|c| *c != conn);
                list.is_empty()
            }
            None => false,
        };
        if !last {
            return;
        }
        st.watching.remove(&target);
        drop(st);
        let msg = CoreMsg::Watch {
            target,
            core: self.id,
            add: false,
        };
        let owner = owner_core(target, cores);
        if owner == self.id {
            self.handle_watch_local(msg);
        } else {
            self.shared.bus.send(owner, msg);
        }
    }

    fn publish_presence(&self, info: PresenceInfo) {
        self.metrics().presence_events.add(1);
        let targets: Vec<usize> = self
            .state
            .borrow()
            .watchers
            .get(&info.user_id)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for core in targets {
            if core == self.id {
                self.presence_local(info);
            } else {
                self.shared.bus.send(core, CoreMsg::PresenceChanged(info));
            }
        }
    }

    fn presence_local(&self, info: PresenceInfo) {
        let st = self.state.borrow();
        let Some(list) = st.watching.get(&info.user_id) else {
            return;
        };
        let frame = Frame::Presence(frame::Presence {
            request_id: 0,
            entries: vec![info],
        });
        for id in list {
            if let Some(c) = st.conns.get(id) {
                push(
                    &c.out,
                    out_frame(c.encoding, &frame),
                    Priority::Droppable,
                    self.metrics(),
                );
            }
        }
    }

    /// Whether each of `users` is online, asking their owning cores.
    pub async fn online(&self, users: &[u64]) -> HashMap<u64, bool> {
        let cores = self.shared.bus.cores();
        let mut by_core: HashMap<usize, Vec<u64>> = HashMap::new();
        for u in users {
            by_core.entry(owner_core(*u, cores)).or_default().push(*u);
        }
        let mut answer = HashMap::new();
        let mut waits = Vec::new();
        for (core, list) in by_core {
            if core == self.id {
                let st = self.state.borrow();
                for u in list {
                    answer.insert(u, st.users.contains_key(&u));
                }
            } else {
                let (tx, rx) = oneshot::channel();
                self.shared.bus.send(
                    core,
                    CoreMsg::PresenceAsk {
                        users: list,
                        reply: tx,
                    },
                );
                waits.push(rx);
            }
        }
        for rx in waits {
            if let Ok(list) = rx.await {
                answer.extend(list);
            }
        }
        answer
    }

    /// Closes every connection (going away) and stops accepting.
    pub fn shutdown(&self) {
        let mut st = self.state.borrow_mut();
        st.stopping = true;
        for c in st.conns.values() {
            c.out.close(CloseReason {
                code: ErrorCode::GoingAway.code(),
                message: "server shutting down".into(),
            });
        }
    }

    /// Whether the core is shutting down.
    pub fn stopping(&self) -> bool {
        self.state.borrow().stopping
    }

    /// Connections currently on this core.
    pub fn connection_count(&self) -> usize {
        self.state.borrow().conns.len()
    }
}

/// Pushes a frame; on overflow the connection is being closed as a slow
/// consumer. Returns true when the connection is closing.
pub(super) fn push(
    out: &Outbound,
    frame: OutFrame,
    priority: Priority,
    m: &super::CoreMetrics,
) -> bool {
    if let Some(ty) = frame.frame_type() {
        m.frame_out(ty);
    }
    match out.push(frame, priority) {
        Pushed::Queued => false,
        Pushed::Dropped => {
            m.shed_frames.add(1);
            false
        }
        Pushed::SlowConsumer => {
            m.slow_consumer.add(1);
            true
        }
        Pushed::Closed => true,
    }
}
