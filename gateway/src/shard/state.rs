//! [`ShardState`]: everything one core knows about the users it owns, as
//! plain data with no sockets, no runtime and no clock of its own (quinn-
//! proto's `Connection` is the model). Its driver feeds it with
//! [`ShardState::handle`] and the session calls, drains what it asks for
//! with [`ShardState::poll_output`], and calls
//! [`ShardState::handle_timeout`] at [`ShardState::poll_timeout`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::frame::{self, Frame, FrameType};
use confab_protocol::{Encoding, ErrorCode};
use confab_types::{DeviceId, InboxSeq, UserId};

use super::cache::Cache;
use super::conns::{Conn, ConnId, Conns, Mode};
use super::encoded::encoded;
use super::msg::{Input, Output, PushEvent, ShardMsg};
use super::pending::Pending;
use super::timers::{Timer, Timers};
use super::users::UserSlot;
use super::watchers::Watchers;
use crate::fanout::{CloseReason, OutFrame, Priority, Pushed};
use crate::metrics::{CoreMetrics, Transport};
use crate::ports::{ClusterEvent, ClusterPort};

/// What a shard is configured with.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This shard's core index.
    pub core: usize,
    /// Number of cores (shards) on the node.
    pub cores: usize,
    /// Heartbeat interval announced to clients; silence for three drops
    /// the connection.
    pub heartbeat_interval: Duration,
    /// How long a user whose last device left still reads as online.
    pub presence_grace: Duration,
    /// Sustained sends per second per user.
    pub send_rate_per_s: u32,
    /// Sends allowed in a burst per user.
    pub send_burst: u32,
    /// Least time between two typing notices of a user in a channel.
    pub typing_interval: Duration,
    /// Bytes a connection may have queued before it is a slow consumer.
    pub outbound_limit_bytes: usize,
    /// How long a missing inbox entry is waited for before it is read back
    /// from storage.
    pub gap_timeout: Duration,
}

/// A session that authenticated for a user this shard owns.
#[derive(Debug, Clone)]
pub struct Opening {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The login session of the token.
    pub login: u64,
    /// The device's inbox cursor from `Hello`.
    pub cursor: InboxSeq,
    /// The transport it came on.
    pub transport: Transport,
    /// Its frames' encoding.
    pub encoding: Encoding,
}

/// The state of one shard.
pub struct ShardState {
    pub(crate) config: ShardConfig,
    pub(crate) conns: Conns,
    /// Boxed: the table is sized in powers of two and mostly touched, so
    /// its slack costs a pointer per empty bucket, not a whole slot.
    pub(crate) users: HashMap<UserId, Box<UserSlot>>,
    pub(crate) pending: Pending,
    pub(crate) watchers: Watchers,
    pub(crate) cache: Cache,
    pub(crate) timers: Timers,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) metrics: CoreMetrics,
    /// Id of the last start read asked for (see `UserSlot::reading_start`).
    start_reads: u64,
    /// Wall-clock ms at `anchor`, so that a shard reads the wall clock from
    /// the `now` it is given.
    anchor: (Instant, u64),
    stopping: bool,
    /// The other nodes of a cluster; `None` on a single node.
    pub(crate) cluster: Option<Arc<dyn ClusterPort>>,
}

impl ShardState {
    /// A shard with no users; `now` and `now_ms` anchor its wall clock.
    pub fn new(config: ShardConfig, metrics: CoreMetrics, now: Instant, now_ms: u64) -> Self {
        ShardState {
            config,
            conns: Conns::default(),
            users: HashMap::new(),
            pending: Pending::default(),
            watchers: Watchers::default(),
            cache: Cache::default(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            metrics,
            start_reads: 0,
            anchor: (now, now_ms),
            stopping: false,
            cluster: None,
        }
    }

    /// Makes this shard a part of a cluster: its presence changes, typing
    /// notices and receipts go to the other nodes too, and a user online
    /// on another node counts as online here.
    pub fn join_cluster(&mut self, cluster: Arc<dyn ClusterPort>) {
        self.cluster = Some(cluster);
    }

    /// The configuration.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// The directory cache.
    pub fn cache(&mut self) -> &mut Cache {
        &mut self.cache
    }

    /// The core that owns `user`.
    pub fn owner(&self, user: UserId) -> usize {
        super::owner_core(user, self.config.cores)
    }

    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        self.anchor.1 + now.saturating_duration_since(self.anchor.0).as_millis() as u64
    }

    /// Registers a connection and starts its stream: the replay is asked
    /// for with [`Output::Replay`] once the user's release point is known.
    pub fn open(&mut self, now: Instant, o: Opening) -> ConnId {
        let id = self.conns.insert(Conn {
            user: o.user,
            device: o.device,
            login: o.login,
            transport: o.transport,
            encoding: o.encoding,
            cursor: o.cursor,
            out: Default::default(),
            mode: Mode::Waiting,
            delivered: InboxSeq::ZERO,
            watching: Vec::new(),
            last_heard: now,
            wake_pending: false,
        });
        self.metrics.connection_opened(o.transport);
        self.timers
            .at(now + self.silence_limit(), Timer::Heartbeat(id));
        let burst = self.config.send_burst;
        let mut came_online = false;
        let slot = self.users.entry(o.user).or_insert_with(|| {
            came_online = true;
            Box::new(UserSlot::new(now, burst))
        });
        // A reconnect inside the grace period cancels the pending offline.
        slot.grace_gen += 1;
        let first_device = slot.conns.is_empty();
        slot.conns.push(id);
        let start = slot.order.released_upto();
        // The first device of a user (or the next one after a failed read)
        // asks where the user's stream starts.
        let read_start = start.is_none() && slot.reading_start.is_none();
        if read_start {
            self.start_reads += 1;
            slot.reading_start = Some(self.start_reads);
        }
        if first_device {
            self.outputs
                .push_back(Output::Push(PushEvent::Presence(o.user, true)));
        }
        if read_start {
            self.outputs.push_back(Output::ReadLastInboxSeq {
                user: o.user,
                read: self.start_reads,
            });
        }
        if came_online {
            let info = frame::PresenceInfo {
                user_id: o.user,
                online: true,
                last_seen_ms: 0,
            };
            if let Some(cluster) = &self.cluster {
                cluster.publish(ClusterEvent::Presence(info));
            }
            self.publish_presence(now, info);
        }
        if let Some(target) = start {
            self.start_replay(id, target);
        }
        id
    }

    fn silence_limit(&self) -> Duration {
        self.config.heartbeat_interval * 3
    }

    fn start_replay(&mut self, id: ConnId, target: InboxSeq) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !matches!(c.mode, Mode::Waiting) || c.out.is_closing() {
            return;
        }
        c.mode = Mode::Replaying(Vec::new());
        let from = c.cursor.min(target);
        self.outputs.push_back(Output::Replay {
            conn: id,
            from,
            to: target,
        });
    }

    /// The client was heard from (any frame, ping or pong).
    pub fn heard(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.last_heard = now;
        }
    }

    /// Who a connection belongs to.
    pub fn conn_user(&self, conn: ConnId) -> Option<(UserId, DeviceId, Encoding)> {
        self.conns.get(conn).map(|c| (c.user, c.device, c.encoding))
    }

    /// Takes one of `user`'s send tokens (`send_burst` at once,
    /// `send_rate_per_s` sustained); false when none is left.
    pub fn take_send_token(&mut self, user: UserId, now: Instant) -> bool {
        let (rate, burst) = (self.config.send_rate_per_s, self.config.send_burst);
        self.users
            .get_mut(&user)
            .is_some_and(|slot| slot.take_send_token(now, rate, burst))
    }

    /// Whether a typing notice of `user` in `channel` may go out now.
    pub fn take_typing_slot(
        &mut self,
        user: UserId,
        channel: confab_types::ChannelId,
        now: Instant,
    ) -> bool {
        let interval = self.config.typing_interval;
        self.users
            .get_mut(&user)
            .is_some_and(|slot| slot.take_typing_slot(channel, now, interval))
    }

    /// Connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether `user` has a connection here.
    pub fn is_online(&self, user: UserId) -> bool {
        self.users.contains_key(&user)
    }

    /// Whether `user` is online here or, in a cluster, on another node.
    pub fn is_online_anywhere(&self, user: UserId) -> bool {
        self.is_online(user)
            || self
                .cluster
                .as_ref()
                .is_some_and(|c| c.online_elsewhere(user))
    }

    /// Queues an encoded frame to one connection.
    pub fn queue(&mut self, conn: ConnId, frame: OutFrame, priority: Priority) {
        self.push_frame(conn, frame, priority);
    }

    /// Encodes `frame` in the connection's encoding and queues it (answers,
    /// acks, errors).
    pub fn send(&mut self, conn: ConnId, frame: &Frame) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let bytes = encoded(c.encoding, frame);
        self.push_frame(
            conn,
            OutFrame::Encoded(frame.frame_type(), bytes),
            Priority::Required,
        );
    }

    /// Answers `answering` with an `Error` (counted).
    pub fn send_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        answering: Option<&Frame>,
    ) {
        self.metrics.error(code);
        self.send(conn, &error_frame(code, message, answering));
    }

    /// Answers bytes that did not decode: the frame's type when the
    /// failure was in the body of a known type, request id 0.
    pub fn send_decode_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        frame_type: Option<FrameType>,
    ) {
        self.metrics.error(code);
        self.send(conn, &decode_error_frame(code, message, frame_type));
    }

    /// Closes a connection after what is queued.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let was_closing = c.out.is_closing();
        c.out.close(reason);
        if !was_closing {
            self.outputs.push_back(Output::Closing(conn));
        }
        self.wake(conn);
    }

    /// Whether a connection is closing (or gone).
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_none_or(|c| c.out.is_closing())
    }

    /// Bytes waiting in a connection's queue.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.conns.get(conn).map_or(0, |c| c.out.queued_bytes())
    }

    /// The writer takes what is queued; the close reason once asked for.
    /// `None` when the connection is gone.
    pub fn take_output(
        &mut self,
        conn: ConnId,
        into: &mut Vec<(OutFrame, Priority)>,
    ) -> Option<Option<CloseReason>> {
        let c = self.conns.get_mut(conn)?;
        c.wake_pending = false;
        let (close, taken) = c.out.take(into);
        self.metrics.outbound_bytes.sub(taken as i64);
        Some(close)
    }

    /// Pushes a frame, keeping the counters and waking the writer.
    pub(crate) fn push_frame(&mut self, conn: ConnId, frame: OutFrame, priority: Priority) -> bool {
        let limit = self.config.outbound_limit_bytes;
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        let ty = frame.frame_type();
        let (pushed, delta) = c.out.push(frame, priority, limit);
        self.metrics.outbound_bytes.add(delta as i64);
        match pushed {
            Pushed::Queued => {
                if let Some(ty) = ty {
                    self.metrics.frame_out(ty);
                }
            }
            Pushed::Dropped => self.metrics.shed_frames.inc(),
            Pushed::SlowConsumer => {
                self.metrics.slow_consumers.inc();
                self.outputs.push_back(Output::Closing(conn));
            }
            Pushed::Closed => return false,
        }
        self.wake(conn);
        pushed == Pushed::Queued
    }

    pub(crate) fn wake(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            if !c.wake_pending && c.out.has_work() {
                c.wake_pending = true;
                self.outputs.push_back(Output::Wake(conn));
            }
        }
    }

    /// Feeds an event from outside the session.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Msg(msg) => self.handle_msg(now, msg),
            Input::Stored(c) => self.stored(now, c),
            Input::LastInboxSeq { user, read, last } => self.user_start(now, user, read, last),
            Input::GapRead { user, entries } => self.gap_read(now, user, entries),
            Input::ReplayDone { conn, upto } => self.go_live(conn, upto),
            Input::Closed(conn) => self.detach(now, conn),
            Input::Shutdown => self.shutdown(),
        }
    }

    fn handle_msg(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Deliver { delivery, entries } => self.deliver_local(now, &delivery, &entries),
            ShardMsg::Typing(t) => self.typing_local(&t),
            ShardMsg::Receipt(r) => self.receipt_local(&r),
            ShardMsg::Watch { target, core, add } => self.watchers.count(target, core, add),
            ShardMsg::PresenceChanged(info) => self.presence_local(info),
            ShardMsg::PresenceAsk { users, from, ask } => {
                let online = users
                    .iter()
                    .map(|u| (*u, self.is_online_anywhere(*u)))
                    .collect();
                self.send_to_core(now, from, ShardMsg::PresenceAnswer { ask, online });
            }
            ShardMsg::PresenceAnswer { ask, online } => {
                self.outputs
                    .push_back(Output::PresenceAnswered { ask, online });
            }
            ShardMsg::Invalidate(inv) => self.cache.invalidate(&inv),
            ShardMsg::Revoked { user, session } => {
                let ids: Vec<ConnId> = self.user_conns(user);
                for id in ids {
                    if self.conns.get(id).is_some_and(|c| c.login == session) {
                        self.close(
                            id,
                            CloseReason::error(ErrorCode::TokenRevoked, "session revoked"),
                        );
                    }
                }
            }
        }
    }

    /// Sends `msg` to shard `core`, handling it in place when that is this
    /// shard.
    pub(crate) fn send_to_core(&mut self, now: Instant, core: usize, msg: ShardMsg) {
        if core == self.config.core {
            self.handle_msg(now, msg);
        } else {
            self.outputs.push_back(Output::ToCore(core, msg));
        }
    }

    pub(crate) fn user_conns(&self, user: UserId) -> Vec<ConnId> {
        self.users
            .get(&user)
            .map(|s| s.conns.to_vec())
            .unwrap_or_default()
    }

    /// The user's stream starts after `last`; `None`: storage failed, and
    /// the connections that waited for it are closed (a later connect asks
    /// again).
    fn user_start(&mut self, now: Instant, user: UserId, read: u64, last: Option<InboxSeq>) {
        match self.users.get_mut(&user) {
            Some(slot) if slot.reading_start == Some(read) => slot.reading_start = None,
            // Asked for an earlier slot of this user (who went offline and
            // came back while it was in flight): the slot now has a read
            // of its own coming, made after it existed, which is what the
            // start must be (`InboxOrder::start`). Applied, this answer
            // would start the stream a second time, or too early.
            _ => return,
        }
        let Some(last) = last else {
            for id in self.user_conns(user) {
                self.close(
                    id,
                    CloseReason::error(ErrorCode::Unavailable, "storage unavailable"),
                );
            }
            return;
        };
        let Some(mut slot) = self.users.remove(&user) else {
            return;
        };
        let was_stalled = slot.order.stalled_since().is_some();
        let mut released = Vec::new();
        slot.order
            .start(last, now, |seq, d| released.push((seq, d)));
        self.after_offer(now, user, &mut slot, was_stalled);
        let conns = slot.conns.clone();
        self.users.insert(user, slot);
        // Replay first: entries released from here on wait in the
        // connections' buffers until their replay is done.
        for &id in &conns {
            self.start_replay(id, last);
        }
        for (seq, d) in released {
            self.release(now, user, &conns, seq, &d);
        }
    }

    /// Ends a replay: frames released meanwhile go out in order.
    fn go_live(&mut self, conn: ConnId, upto: InboxSeq) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.delivered = c.delivered.max(upto);
        if let Mode::Replaying(buffer) = std::mem::replace(&mut c.mode, Mode::Live) {
            for (f, p) in buffer {
                if !self.push_frame(conn, f, p) && self.is_closing(conn) {
                    break;
                }
            }
        }
    }

    /// Forgets a connection whose transport is gone.
    fn detach(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
        self.metrics.outbound_bytes.sub(c.out.queued_bytes() as i64);
        self.metrics.connection_closed(c.transport);
        for target in &c.watching {
            self.unwatch_one(now, conn, *target);
        }
        if c.delivered > InboxSeq::ZERO {
            self.outputs.push_back(Output::SaveCursor {
                user: c.user,
                device: c.device,
                delivered: c.delivered,
            });
        }
        let grace = if self.stopping {
            Duration::ZERO
        } else {
            self.config.presence_grace
        };
        if let Some(slot) = self.users.get_mut(&c.user) {
            slot.conns.retain(|x| *x != conn);
            if slot.conns.is_empty() {
                slot.grace_gen += 1;
                let gen = slot.grace_gen;
                // Push cares about devices, not the presence grace: a
                // message arriving now wakes the phone.
                self.outputs
                    .push_back(Output::Push(PushEvent::Presence(c.user, false)));
                self.timers.at(now + grace, Timer::Grace(c.user, gen));
            }
        }
    }

    /// Closes every connection with `GOING_AWAY`.
    fn shutdown(&mut self) {
        self.stopping = true;
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.close(
                id,
                CloseReason::error(ErrorCode::GoingAway, "server shutting down"),
            );
        }
    }

    /// Whether [`Input::Shutdown`] was handled.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Heartbeat(id) => self.check_heartbeat(now, id),
                Timer::Grace(user, gen) => self.grace_over(now, user, gen),
                Timer::Gap(user) => self.check_gap(now, user),
            }
        }
    }

    fn check_heartbeat(&mut self, now: Instant, id: ConnId) {
        let limit = self.silence_limit();
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if c.out.is_closing() {
            return;
        }
        let deadline = c.last_heard + limit;
        if deadline <= now {
            self.metrics.error(ErrorCode::HeartbeatTimeout);
            self.close(
                id,
                CloseReason::error(ErrorCode::HeartbeatTimeout, "no heartbeat"),
            );
        } else {
            self.timers.at(deadline, Timer::Heartbeat(id));
        }
    }

    fn grace_over(&mut self, now: Instant, user: UserId, gen: u64) {
        match self.users.get(&user) {
            Some(slot) if slot.conns.is_empty() && slot.grace_gen == gen => {
                self.users.remove(&user);
            }
            _ => return,
        }
        let at_ms = self.wall_ms(now);
        self.outputs.push_back(Output::SaveLastSeen { user, at_ms });
        let info = frame::PresenceInfo {
            user_id: user,
            online: false,
            last_seen_ms: at_ms,
        };
        if let Some(cluster) = &self.cluster {
            cluster.publish(ClusterEvent::Presence(info));
            // Still online on another node: the watchers here see no change.
            if cluster.online_elsewhere(user) {
                return;
            }
        }
        self.publish_presence(now, info);
    }
}

/// An `Error` frame answering bytes that did not decode: `frame_type` is
/// the type of a frame whose body was malformed (0 when there is none, as
/// for an unknown type or an oversize frame); the request id could not be
/// read.
pub fn decode_error_frame(code: ErrorCode, message: &str, frame_type: Option<FrameType>) -> Frame {
    Frame::Error(frame::Error {
        code,
        message: message.into(),
        frame_type: frame_type.map_or(0, FrameType::as_u8),
        request_id: 0,
    })
}

/// An `Error` frame answering `answering` (its type and request id), or
/// no frame in particular.
pub fn error_frame(code: ErrorCode, message: &str, answering: Option<&Frame>) -> Frame {
    Frame::Error(frame::Error {
        code,
        message: message.into(),
        frame_type: answering.map_or(0, |f| f.frame_type().as_u8()),
        request_id: answering.map_or(0, Frame::request_id),
    })
}
