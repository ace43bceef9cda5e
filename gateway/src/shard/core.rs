//! A core: its shard's state, its storage producer, and the handles to
//! what lies outside the node's cores (message log, directory, push). The
//! session's handlers and the transports reach the state only through
//! here, in short borrows that never span an `.await`; every call that can
//! make the state ask for something ends with [`Core::pump`], which does
//! what it asked.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use confab_protocol::ErrorCode;
use confab_storage::writer::{Producer, SubmitRejection};
use confab_storage::{AppendRequest, MessageLog};
use confab_types::{ChannelId, DeviceId, InboxSeq, Text, UserId};
use tokio::sync::{oneshot, Notify};

use super::conns::ConnId;
use super::mailbox;
use super::msg::{Input, Output, PushEvent, ShardMsg};
use super::pending::PendingSend;
use super::signal::Signal;
use super::state::{Opening, ShardState};
use crate::metrics::{CoreMetrics, GatewayMetrics};
use crate::ports::{Authenticator, Directory, PushSink};
use crate::settings::IoMode;
use crate::settings::Settings;

/// Work a transport hands to another core (a connection's hand-over, QUIC
/// link traffic): it runs on that core's thread, with that core.
pub struct Remote(RemoteTask);

type RemoteTask = Box<dyn FnOnce(&Rc<Core>) + Send>;

impl Remote {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce(&Rc<Core>) + Send + 'static) -> Remote {
        Remote(Box::new(f))
    }

    /// Runs it.
    pub fn run(self, core: &Rc<Core>) {
        (self.0)(core)
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote")
    }
}

/// What a core's mailbox carries.
#[derive(Debug)]
pub enum CoreMsg {
    /// For the shard's state.
    Shard(ShardMsg),
    /// For the core's transports and sessions.
    Remote(Remote),
}

/// The cores' mailboxes.
pub type Bus = mailbox::Bus<CoreMsg>;

impl mailbox::Bus<CoreMsg> {
    /// Sends a shard message to core `i`.
    pub fn send_shard(&self, i: usize, msg: ShardMsg) {
        self.send(i, CoreMsg::Shard(msg));
    }

    /// Runs `f` on core `i`.
    pub fn run_on(&self, i: usize, f: impl FnOnce(&Rc<Core>) + Send + 'static) {
        self.send(i, CoreMsg::Remote(Remote::new(f)));
    }
}

/// Where the answer to a presence question goes.
type PresenceReply = oneshot::Sender<Vec<(UserId, bool)>>;

/// What every core shares (read-only, or internally synchronised).
pub struct CoreIo {
    /// Tunables.
    pub settings: Settings,
    /// The IO backend in use.
    pub io: IoMode,
    /// Core mailboxes.
    pub bus: Bus,
    /// The message log, for reads (writes go through the producers).
    pub log: Arc<dyn MessageLog>,
    /// Relational facts.
    pub directory: Arc<dyn Directory>,
    /// Token verification.
    pub auth: Arc<dyn Authenticator>,
    /// Where push jobs go.
    pub push: Arc<dyn PushSink>,
    /// The other nodes, in a cluster.
    pub cluster: Option<Arc<dyn crate::ports::ClusterPort>>,
    /// The gateway's metrics.
    pub metrics: GatewayMetrics,
}

/// A connection's IO handles, beside its state in the shard.
#[derive(Default)]
pub struct ConnIo {
    /// Raised when the connection has frames (or its close) to write.
    pub writer: Signal,
    /// Raised when the session starts closing.
    pub closing: Signal,
    replay: RefCell<Option<oneshot::Sender<(InboxSeq, InboxSeq)>>>,
}

/// Where a waiting session's friends go (`None`: the directory failed).
type FriendsReply = oneshot::Sender<Option<Arc<[UserId]>>>;

/// Sessions waiting for their users' friends, asked for together.
#[derive(Default)]
struct FriendAsks {
    waiting: HashMap<UserId, Vec<FriendsReply>>,
    /// A task is asking (or about to): new waiters join its next batch.
    asking: bool,
}

/// A read for the blocking pool, with what its answer becomes.
type BlockingRead = Box<dyn FnOnce() -> Input + Send>;

/// Storage reads the shard asked for, taken to the blocking pool together.
#[derive(Default)]
struct Reads {
    waiting: Vec<BlockingRead>,
    /// A task is reading (or about to): new reads join its next batch.
    reading: bool,
}

/// Held by the task taking reads to the blocking pool: when it ends, even
/// by unwinding, the next read starts a batch of its own.
struct Reading(Rc<Core>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.reads.borrow_mut().reading = false;
    }
}

/// One core.
pub struct Core {
    /// This core's index.
    pub id: usize,
    /// What all cores share.
    pub io: Arc<CoreIo>,
    /// This core's metrics (the same children the state counts into).
    pub metrics: CoreMetrics,
    state: RefCell<ShardState>,
    producer: RefCell<Producer>,
    conns: RefCell<HashMap<ConnId, Rc<ConnIo>>>,
    asks: RefCell<HashMap<u64, PresenceReply>>,
    friend_asks: RefCell<FriendAsks>,
    reads: RefCell<Reads>,
    next_ask: Cell<u64>,
    /// The timer the driver sleeps until; a session that makes the state
    /// want an earlier one wakes the driver through `rearm`.
    armed: Cell<Option<Instant>>,
    rearm: Notify,
}

impl Core {
    /// A core over `state`, submitting sends through `producer`.
    pub fn new(id: usize, io: Arc<CoreIo>, state: ShardState, producer: Producer) -> Rc<Core> {
        Rc::new(Core {
            id,
            io,
            metrics: state.metrics.clone(),
            state: RefCell::new(state),
            producer: RefCell::new(producer),
            conns: RefCell::default(),
            asks: RefCell::default(),
            friend_asks: RefCell::default(),
            reads: RefCell::default(),
            next_ask: Cell::new(0),
            armed: Cell::new(None),
            rearm: Notify::new(),
        })
    }

    /// The shard's state, for a short synchronous borrow.
    pub fn state(&self) -> RefMut<'_, ShardState> {
        self.state.borrow_mut()
    }

    /// The tunables.
    pub fn settings(&self) -> &Settings {
        &self.io.settings
    }

    /// Feeds the state and does what it asks.
    pub fn handle(self: &Rc<Self>, input: Input) {
        self.state().handle(Instant::now(), input);
        self.pump();
    }

    /// Opens a session for a user this core owns: its connection id, its
    /// IO handles, and where the replay range arrives once the user's
    /// stream position is known.
    pub fn open(
        self: &Rc<Self>,
        o: Opening,
    ) -> (ConnId, Rc<ConnIo>, oneshot::Receiver<(InboxSeq, InboxSeq)>) {
        let (tx, rx) = oneshot::channel();
        let io = Rc::new(ConnIo {
            writer: Signal::default(),
            closing: Signal::default(),
            replay: RefCell::new(Some(tx)),
        });
        let id = self.state().open(Instant::now(), o);
        self.conns.borrow_mut().insert(id, io.clone());
        self.pump();
        (id, io, rx)
    }

    /// Forgets a connection whose transport is gone.
    pub fn closed(self: &Rc<Self>, conn: ConnId) {
        self.conns.borrow_mut().remove(&conn);
        self.handle(Input::Closed(conn));
    }

    /// Does everything the state asked for, and wakes the driver if the
    /// state now wants a timer earlier than the one it sleeps until.
    pub fn pump(self: &Rc<Self>) {
        loop {
            let Some(out) = self.state().poll_output() else {
                break;
            };
            self.perform(out);
        }
        let wanted = self.state.borrow().poll_timeout();
        if let Some(t) = wanted {
            if self.armed.get().is_none_or(|armed| t < armed) {
                self.armed.set(Some(t));
                self.rearm.notify_one();
            }
        }
    }

    /// The driver sleeps until `when` (or a wake-up): what [`Core::pump`]
    /// compares against.
    pub(crate) fn arm(&self, when: Option<Instant>) {
        self.armed.set(when);
    }

    /// Resolves when a session made the state want an earlier timer.
    pub(crate) async fn rearmed(&self) {
        self.rearm.notified().await;
    }

    fn perform(self: &Rc<Self>, out: Output) {
        match out {
            Output::ToCore(core, msg) => self.io.bus.send_shard(core, msg),
            Output::Wake(conn) => {
                if let Some(io) = self.conns.borrow().get(&conn) {
                    io.writer.raise();
                    // A connection closed before its replay started stops
                    // waiting for it.
                    if self.state.borrow().is_closing(conn) {
                        io.replay.borrow_mut().take();
                    }
                }
            }
            Output::Closing(conn) => {
                if let Some(io) = self.conns.borrow().get(&conn) {
                    io.closing.raise();
                }
            }
            Output::Replay { conn, from, to } => {
                let tx = self
                    .conns
                    .borrow()
                    .get(&conn)
                    .and_then(|io| io.replay.borrow_mut().take());
                if let Some(tx) = tx {
                    let _ = tx.send((from, to));
                }
            }
            Output::ReadLastInboxSeq { user, read } => {
                let log = self.io.log.clone();
                self.read_then(
                    move || log.last_inbox_seq(user).ok(),
                    move |last| Input::LastInboxSeq { user, read, last },
                );
            }
            Output::ReadGap { user, after, limit } => {
                let log = self.io.log.clone();
                self.read_then(
                    move || log.inbox(user, after, limit).ok().map(|p| p.items),
                    move |entries| Input::GapRead { user, entries },
                );
            }
            Output::SaveCursor {
                user,
                device,
                delivered,
            } => self.save(move |log| {
                log.set_cursor(
                    user,
                    device,
                    confab_storage::Cursor {
                        delivered,
                        read: InboxSeq::ZERO,
                    },
                )
            }),
            Output::SaveLastSeen { user, at_ms } => {
                self.save(move |log| log.set_last_seen(user, at_ms))
            }
            Output::Push(PushEvent::Presence(user, online)) => self.io.push.presence(user, online),
            Output::Push(PushEvent::Delivered(job, found)) => self.io.push.delivered(job, found),
            Output::PresenceAnswered { ask, online } => {
                if let Some(tx) = self.asks.borrow_mut().remove(&ask) {
                    let _ = tx.send(online);
                }
            }
        }
    }

    /// Runs a blocking read off the core's thread and feeds its result
    /// back as an input. Reads travel in batches, one trip to the blocking
    /// pool and back per batch: while one is out, the next gathers (when
    /// many sessions open at once, each user's first device asks for one).
    fn read_then<T: Send + 'static>(
        self: &Rc<Self>,
        read: impl FnOnce() -> T + Send + 'static,
        input: impl FnOnce(T) -> Input + Send + 'static,
    ) {
        let mut reads = self.reads.borrow_mut();
        reads.waiting.push(Box::new(move || input(read())));
        if std::mem::replace(&mut reads.reading, true) {
            return;
        }
        drop(reads);
        let reading = Reading(self.clone());
        tokio::task::spawn_local(async move {
            let core = &reading.0;
            loop {
                let batch = std::mem::take(&mut core.reads.borrow_mut().waiting);
                if batch.is_empty() {
                    break;
                }
                // A read that panics is lost alone, not with its batch.
                let done = tokio::task::spawn_blocking(move || {
                    batch
                        .into_iter()
                        .filter_map(|read| std::panic::catch_unwind(AssertUnwindSafe(read)).ok())
                        .collect::<Vec<_>>()
                });
                for input in done.await.unwrap_or_default() {
                    core.handle(input);
                }
            }
        });
    }

    /// A write whose result nobody waits for (it only moves forward).
    fn save<E: std::fmt::Display>(
        &self,
        write: impl FnOnce(&dyn MessageLog) -> Result<(), E> + Send + 'static,
    ) {
        let log = self.io.log.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = write(log.as_ref()) {
                tracing::warn!(error = %e, "storage write failed");
            }
        });
    }

    /// Hands a send to storage, with every member of the channel as a
    /// recipient; the ack comes when its completion does. On refusal the
    /// error code to answer with.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        self: &Rc<Self>,
        conn: ConnId,
        sender: UserId,
        device: DeviceId,
        channel: ChannelId,
        members: &[UserId],
        client_msg_id: u64,
        text: Text,
    ) -> Result<(), ErrorCode> {
        // Decided now so the job rides the message's batch: a crash after
        // the commit cannot lose it. Empty (no allocation) in the common
        // case where everyone is online. A member online only on another
        // node is delivered there, so gets no job.
        let push = &self.io.push;
        let cluster = self.io.cluster.as_deref();
        let push_to: Vec<UserId> = members
            .iter()
            .copied()
            .filter(|&m| {
                m != sender && push.wants_job(m) && !cluster.is_some_and(|c| c.online_elsewhere(m))
            })
            .collect();
        let request = AppendRequest {
            channel,
            sender,
            device,
            client_msg_id,
            recipients: members.to_vec(),
            text: text.clone(),
            push_to: push_to.clone(),
        };
        let token = self.state().pending_send(PendingSend {
            conn,
            channel,
            sender,
            device,
            client_msg_id,
            text,
            push_to,
            submitted: Instant::now(),
        });
        match self.producer.borrow_mut().submit(token, request) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.state().cancel_send(token);
                Err(match e.reason {
                    SubmitRejection::Invalid(_) => ErrorCode::InvalidArgument,
                    _ => ErrorCode::Unavailable,
                })
            }
        }
    }

    /// Feeds every storage completion that is ready.
    pub(crate) fn collect_completions(self: &Rc<Self>) {
        let now = Instant::now();
        loop {
            let Some(c) = self.producer.borrow_mut().poll() else {
                break;
            };
            self.state().handle(now, Input::Stored(c));
        }
    }

    /// Sends in storage not yet completed.
    pub fn storage_in_flight(&self) -> usize {
        self.producer.borrow().outstanding()
    }

    /// Whether each of `users` is online, asking the cores that own them.
    pub async fn online(self: &Rc<Self>, users: &[UserId]) -> HashMap<UserId, bool> {
        let cores = self.io.bus.cores();
        let mut by_core: HashMap<usize, Vec<UserId>> = HashMap::new();
        for u in users {
            by_core
                .entry(super::owner_core(*u, cores))
                .or_default()
                .push(*u);
        }
        let mut answer = HashMap::new();
        let mut waits = Vec::new();
        for (core, list) in by_core {
            if core == self.id {
                answer.extend(self.state().online_here(&list));
                continue;
            }
            let ask = self.next_ask.get() + 1;
            self.next_ask.set(ask);
            let (tx, rx) = oneshot::channel();
            self.asks.borrow_mut().insert(ask, tx);
            self.io.bus.send_shard(
                core,
                ShardMsg::PresenceAsk {
                    users: list,
                    from: self.id,
                    ask,
                },
            );
            waits.push(rx);
        }
        for rx in waits {
            if let Ok(list) = rx.await {
                answer.extend(list);
            }
        }
        answer
    }

    /// Channel members from the cache, or the directory on a miss; `None`
    /// for no such channel.
    pub async fn members(&self, channel: ChannelId) -> Result<Option<Arc<[UserId]>>, ErrorCode> {
        if let Some(m) = self.state().cache().members(channel) {
            return Ok(Some(m));
        }
        match self.io.directory.channel_members(channel).await {
            Ok(Some(list)) => {
                self.state().cache().put_members(channel, list.clone());
                Ok(Some(list))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(ErrorCode::Unavailable),
        }
    }

    /// A user's friends from the cache, or on a miss from the directory,
    /// asked together with the other sessions of this core waiting for
    /// theirs.
    pub async fn friends(self: &Rc<Self>, user: UserId) -> Option<Arc<[UserId]>> {
        if let Some(f) = self.state().cache().friends(user) {
            return Some(f);
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut asks = self.friend_asks.borrow_mut();
            asks.waiting.entry(user).or_default().push(tx);
            !std::mem::replace(&mut asks.asking, true)
        };
        if start {
            tokio::task::spawn_local(self.clone().ask_friends());
        }
        rx.await.ok().flatten()
    }

    /// Asks the directory for the friends of every session waiting, one
    /// batch per round trip: while a batch is out, the sessions that open
    /// meanwhile gather for the next. A reconnect storm thus costs a query
    /// per few hundred sessions rather than one each.
    async fn ask_friends(self: Rc<Self>) {
        // The sessions this turn of the core opens join the first batch.
        tokio::task::yield_now().await;
        loop {
            let waiting = std::mem::take(&mut self.friend_asks.borrow_mut().waiting);
            if waiting.is_empty() {
                self.friend_asks.borrow_mut().asking = false;
                return;
            }
            let users: Vec<UserId> = waiting.keys().copied().collect();
            let found = self.io.directory.friends_of_many(users).await.ok();
            for (user, waiters) in waiting {
                let list = found.as_ref().and_then(|f| f.get(&user).cloned());
                if let Some(list) = &list {
                    self.state().cache().put_friends(user, list.clone());
                }
                for tx in waiters {
                    let _ = tx.send(list.clone());
                }
            }
        }
    }

    /// The DM channel of two users from the cache, or the directory (which
    /// creates it on first use); `None`: no such user.
    pub async fn dm(&self, a: UserId, b: UserId) -> Result<Option<ChannelId>, ErrorCode> {
        if let Some(c) = self.state().cache().dm(a, b) {
            return Ok(Some(c));
        }
        match self.io.directory.dm_channel(a, b).await {
            Ok(Some(c)) => {
                self.state().cache().put_dm(a, b, c);
                Ok(Some(c))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(ErrorCode::Unavailable),
        }
    }

    /// Sets the gauges sampled once per pass of the driver.
    pub(crate) fn publish_gauges(&self, mailbox_depth: usize) {
        let state = self.state.borrow();
        let m = &state.metrics;
        m.mailbox_depth.set(mailbox_depth as i64);
        m.storage_in_flight.set(self.storage_in_flight() as i64);
    }

    /// Connections on this core.
    pub fn connection_count(&self) -> usize {
        self.state.borrow().connection_count()
    }
}
