//! The client's whole state and how it changes, without a terminal or a
//! network: [`App::apply`] takes what the session reports, the key
//! handling (keys.rs) takes what the user does, and both answer with the
//! [`Effect`]s the session is to carry out. Keeping this pure is what lets
//! the tests drive it exactly as the terminal loop does and read the
//! result from a rendered buffer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use confab_client::{
    ChannelId, ClientEvent, DeviceId, HistoryAnchor, HistoryBatch, Message, PresenceInfo, SendAck,
    Seq, Text, UserId,
};

use crate::api::ChannelInfo;

/// How long a typing notice is shown without a new one.
pub const TYPING_SHOWN: Duration = Duration::from_secs(6);
/// At most one typing notice per this long while the user types.
pub(crate) const TYPING_EVERY: Duration = Duration::from_secs(3);

/// Which screen is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Username and password.
    Login,
    /// Channel list and conversation.
    Main,
}

/// Which pane takes the keys on the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The channel list.
    Channels,
    /// The open conversation and its input line.
    Chat,
}

/// The login form's field being edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginField {
    /// The username.
    Username,
    /// The password (shown masked).
    Password,
}

/// The login screen.
#[derive(Debug, Clone)]
pub struct LoginForm {
    /// The username typed so far.
    pub username: String,
    /// The password typed so far.
    pub password: String,
    /// The field being edited.
    pub field: LoginField,
    /// Sign up instead of logging in.
    pub signup: bool,
    /// A login is in flight.
    pub busy: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// What a channel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// A conversation with one other user.
    Dm {
        /// The other user.
        peer: UserId,
    },
    /// A named group.
    Group {
        /// Its name.
        name: String,
        /// Its member count.
        members: u32,
    },
}

/// Which messages of a channel the user has not read: those from others
/// above the user's read mark. Counting distinct sequences (not events)
/// keeps the count right when the same message is seen twice, in the
/// summary page and again live or in the inbox replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unread {
    read_up_to: u64,
    seqs: BTreeSet<u64>,
    /// Older unread messages may lie beyond the summary page.
    more: bool,
}

impl Unread {
    /// How many unread messages are known.
    pub fn count(&self) -> usize {
        self.seqs.len()
    }

    /// Whether there may be more than [`Unread::count`] (the channel's
    /// summary page was unread all through).
    pub fn more(&self) -> bool {
        self.more
    }

    /// The user's read mark.
    pub fn read_up_to(&self) -> u64 {
        self.read_up_to
    }

    /// A message arrived.
    pub fn seen(&mut self, seq: u64, from_me: bool) {
        if !from_me && seq > self.read_up_to {
            self.seqs.insert(seq);
        }
    }

    /// The user read up to `seq` (here or on another device).
    pub fn read(&mut self, seq: u64) {
        if seq <= self.read_up_to {
            return;
        }
        self.read_up_to = seq;
        self.seqs = self.seqs.split_off(&(seq + 1));
        if self.seqs.is_empty() {
            self.more = false;
        }
    }

    /// The channel's newest page and the user's read mark from the server,
    /// merged into what is known already.
    pub fn summary(&mut self, read_up_to: u64, latest: &[Message], has_more: bool, me: UserId) {
        let oldest = latest.first().map(|m| m.seq.0);
        for m in latest {
            self.seen(m.seq.0, m.sender_id == me);
        }
        self.read(read_up_to);
        self.more = has_more && oldest.is_some_and(|s| s > self.read_up_to + 1);
    }
}

/// One of the user's channels.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Its id.
    pub id: ChannelId,
    /// DM or group.
    pub kind: ChannelKind,
    /// Its unread messages.
    pub unread: Unread,
}

/// The conversation on screen.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Its channel.
    pub channel: ChannelId,
    /// The messages loaded, ascending by sequence, without repeats.
    pub messages: Vec<Message>,
    /// The newest page has arrived.
    pub loaded: bool,
    /// Older messages exist on the server.
    pub has_older: bool,
    /// An older page has been asked for.
    pub loading_older: bool,
    /// How many messages are scrolled away below the bottom of the view.
    pub scroll: usize,
}

impl Conversation {
    fn new(channel: ChannelId) -> Conversation {
        Conversation {
            channel,
            messages: Vec::new(),
            loaded: false,
            has_older: false,
            loading_older: false,
            scroll: 0,
        }
    }
}

/// The "open a DM with…" prompt (Ctrl-N).
#[derive(Debug, Clone, Default)]
pub struct DmPrompt {
    /// The username typed so far.
    pub input: String,
    /// The lookup is in flight.
    pub busy: bool,
    /// Why the last lookup failed.
    pub error: Option<String>,
}

/// A line of the channel list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A channel.
    Channel(ChannelId),
    /// A friend without a DM yet (Enter opens one).
    Friend(UserId),
}

/// What the session reports to the app: API answers, SDK events and the
/// outcome of the app's own effects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Update {
    /// Logged in and connecting to the gateway.
    LoggedIn {
        /// The account.
        user_id: UserId,
        /// Its username.
        username: String,
    },
    /// The login (or signup) failed.
    LoginFailed(String),
    /// The channel list, the names of DM peers and friends, and the friends.
    Directory {
        /// The user's channels.
        channels: Vec<ChannelInfo>,
        /// Usernames by id.
        names: Vec<(UserId, String)>,
        /// Accepted friends.
        friends: Vec<UserId>,
    },
    /// Usernames looked up for senders not known yet.
    Names(Vec<(UserId, String)>),
    /// A channel's newest page and the user's read mark, for its unread
    /// count.
    Summary {
        /// The channel.
        channel: ChannelId,
        /// The user's read mark in it.
        read_up_to: Seq,
        /// Its newest messages.
        latest: Vec<Message>,
        /// Older ones exist.
        has_more: bool,
    },
    /// A history page of the open conversation.
    Page {
        /// Older than what was loaded (scrolling up), not the newest page.
        older: bool,
        /// The page.
        batch: HistoryBatch,
    },
    /// A history page could not be read.
    PageFailed {
        /// The channel.
        channel: ChannelId,
        /// Why.
        error: String,
    },
    /// Presence of watched users (the answer to a subscription).
    Presence(Vec<PresenceInfo>),
    /// Something happened on the SDK client's session.
    Client(ClientEvent),
    /// A message sent from here was stored.
    Sent {
        /// The server's acknowledgement.
        ack: SendAck,
        /// The text sent.
        text: Text,
    },
    /// A message sent from here failed for good.
    SendFailed(String),
    /// The DM asked for (by username or from the friends list) exists.
    DmOpened {
        /// Its channel.
        channel: ChannelId,
        /// The other user.
        peer: UserId,
        /// Their username.
        peer_name: String,
    },
    /// The DM asked for could not be opened.
    DmFailed(String),
    /// Something failed that the user should hear about.
    Failed(String),
}

/// What the app asks the session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Log in (or sign up), then connect.
    Login {
        /// The username.
        username: String,
        /// The password.
        password: String,
        /// Create the account first.
        signup: bool,
    },
    /// Read the channel list and friends again.
    RefreshDirectory,
    /// Read a channel's newest page and the user's read mark.
    Summarize(ChannelId),
    /// Read a page of the open conversation.
    LoadPage {
        /// The channel.
        channel: ChannelId,
        /// Which page.
        anchor: HistoryAnchor,
        /// How many messages.
        limit: u32,
    },
    /// Send a message.
    Send {
        /// Where.
        channel: ChannelId,
        /// What.
        text: String,
    },
    /// Tell the channel the user is typing.
    Typing(ChannelId),
    /// Mark a channel read.
    Read {
        /// The channel.
        channel: ChannelId,
        /// Up to and including this sequence.
        seq: Seq,
    },
    /// Open the DM with the user of this exact username.
    OpenDmByName(String),
    /// Open the DM with this user.
    OpenDmWith(UserId),
    /// Follow these users' presence.
    Watch(Vec<UserId>),
    /// Look up these users' names.
    LookupUsers(Vec<UserId>),
    /// Stop.
    Quit,
}

/// The client's state.
#[derive(Debug)]
pub struct App {
    /// The screen up.
    pub screen: Screen,
    /// The pane with the keys.
    pub focus: Focus,
    /// The login form.
    pub login: LoginForm,
    /// The logged-in user.
    pub me: Option<UserId>,
    /// Their username.
    pub my_name: String,
    /// The transport's name, for the status line.
    pub transport: String,
    /// The user's channels, as the API lists them.
    pub channels: Vec<Channel>,
    /// Accepted friends.
    pub friends: Vec<UserId>,
    /// Usernames by id.
    pub names: HashMap<UserId, String>,
    /// Presence of watched users.
    pub presence: HashMap<UserId, PresenceInfo>,
    /// The selected line of the channel list.
    pub selected: usize,
    /// The conversation on screen.
    pub open: Option<Conversation>,
    /// The message being typed.
    pub input: String,
    /// Who was last seen typing where, and when.
    pub typing: HashMap<(ChannelId, UserId), Instant>,
    /// The Ctrl-N prompt, while it is up.
    pub dm_prompt: Option<DmPrompt>,
    /// The connection's state, for the status line.
    pub connection: String,
    /// The last failure to tell the user about.
    pub notice: Option<String>,
    /// The user asked to quit.
    pub quit: bool,
    /// The terminal's size (columns, rows).
    pub size: (u16, u16),
    /// The time of the last event, for typing notices.
    pub now: Instant,
    /// The wall clock of the last tick, ms since the Unix epoch, for "last
    /// seen".
    pub now_ms: u64,
    /// Messages per history page.
    pub page_size: u32,
    /// Inbox messages received this run, live or replayed (how far the
    /// resumed cursor spared a replay shows here).
    pub inbox_messages: u64,
    pub(crate) esc_pending: bool,
    pub(crate) last_typing_sent: Option<Instant>,
    directory_pending: bool,
    directory_again: bool,
    watched: HashSet<UserId>,
    names_pending: HashSet<UserId>,
}

impl App {
    /// The login screen, with the username prefilled.
    pub fn new(username: Option<String>, signup: bool, page_size: u32) -> App {
        let field = if username.is_some() {
            LoginField::Password
        } else {
            LoginField::Username
        };
        App {
            screen: Screen::Login,
            focus: Focus::Channels,
            login: LoginForm {
                username: username.unwrap_or_default(),
                password: String::new(),
                field,
                signup,
                busy: false,
                error: None,
            },
            me: None,
            my_name: String::new(),
            transport: String::new(),
            channels: Vec::new(),
            friends: Vec::new(),
            names: HashMap::new(),
            presence: HashMap::new(),
            selected: 0,
            open: None,
            input: String::new(),
            typing: HashMap::new(),
            dm_prompt: None,
            connection: "not connected".into(),
            notice: None,
            quit: false,
            size: (80, 24),
            now: Instant::now(),
            now_ms: confab_types::now_ms(),
            page_size: page_size.max(1),
            inbox_messages: 0,
            esc_pending: false,
            last_typing_sent: None,
            directory_pending: false,
            directory_again: false,
            watched: HashSet::new(),
            names_pending: HashSet::new(),
        }
    }

    /// Submits the login form (Enter, or at start with a password from the
    /// environment).
    pub fn submit_login(&mut self) -> Vec<Effect> {
        let form = &mut self.login;
        if form.busy {
            return vec![];
        }
        if form.username.is_empty() {
            form.field = LoginField::Username;
            form.error = Some("enter a username".into());
            return vec![];
        }
        if form.password.is_empty() {
            form.field = LoginField::Password;
            form.error = Some("enter a password".into());
            return vec![];
        }
        form.busy = true;
        form.error = None;
        vec![Effect::Login {
            username: form.username.clone(),
            password: form.password.clone(),
            signup: form.signup,
        }]
    }

    /// The clock moved: typing notices expire.
    pub fn tick(&mut self, now: Instant, now_ms: u64) {
        self.now = now;
        self.now_ms = now_ms;
        self.typing
            .retain(|_, at| now.duration_since(*at) < TYPING_SHOWN);
    }

    /// The lines of the channel list: channels, then friends without a DM.
    pub fn entries(&self) -> Vec<Entry> {
        let with_dm: HashSet<UserId> = self
            .channels
            .iter()
            .filter_map(|c| match c.kind {
                ChannelKind::Dm { peer } => Some(peer),
                ChannelKind::Group { .. } => None,
            })
            .collect();
        self.channels
            .iter()
            .map(|c| Entry::Channel(c.id))
            .chain(
                self.friends
                    .iter()
                    .filter(|f| !with_dm.contains(f))
                    .map(|f| Entry::Friend(*f)),
            )
            .collect()
    }

    /// A channel by id.
    pub fn channel(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    fn channel_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
        self.channels.iter_mut().find(|c| c.id == id)
    }

    /// A user's name, or a placeholder while it is looked up.
    pub fn name_of(&self, user: UserId) -> String {
        if Some(user) == self.me && !self.my_name.is_empty() {
            return self.my_name.clone();
        }
        self.names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| format!("user {user}"))
    }

    /// A channel's title: the peer's username for a DM, the group's name.
    pub fn title(&self, channel: &Channel) -> String {
        match &channel.kind {
            ChannelKind::Dm { peer } => self.name_of(*peer),
            ChannelKind::Group { name, .. } => name.clone(),
        }
    }

    /// Who is typing in `channel` now.
    pub fn typing_in(&self, channel: ChannelId) -> Vec<String> {
        let mut who: Vec<String> = self
            .typing
            .iter()
            .filter(|((c, _), at)| {
                *c == channel && self.now.saturating_duration_since(**at) < TYPING_SHOWN
            })
            .map(|((_, u), _)| self.name_of(*u))
            .collect();
        who.sort();
        who
    }

    /// The open conversation's channel.
    pub fn open_channel(&self) -> Option<ChannelId> {
        self.open.as_ref().map(|c| c.channel)
    }

    /// Opens a channel: its newest page is read, and it is marked read as
    /// soon as it shows.
    pub(crate) fn open(&mut self, channel: ChannelId) -> Vec<Effect> {
        self.focus = Focus::Chat;
        if self.open_channel() == Some(channel) {
            return self.mark_read();
        }
        self.open = Some(Conversation::new(channel));
        if let Some(i) = self
            .entries()
            .iter()
            .position(|e| *e == Entry::Channel(channel))
        {
            self.selected = i;
        }
        vec![Effect::LoadPage {
            channel,
            anchor: HistoryAnchor::Latest,
            limit: self.page_size,
        }]
    }

    /// Scrolls the conversation up by `n` messages; an older page is asked
    /// for once the oldest loaded message is within a screen of the view.
    pub(crate) fn scroll_up(&mut self, n: usize) -> Vec<Effect> {
        if let Some(c) = self.open.as_mut() {
            c.scroll = (c.scroll + n).min(c.messages.len().saturating_sub(1));
        }
        self.maybe_load_older()
    }

    /// Scrolls the conversation down by `n` messages.
    pub(crate) fn scroll_down(&mut self, n: usize) {
        if let Some(c) = self.open.as_mut() {
            c.scroll = c.scroll.saturating_sub(n);
        }
    }

    fn maybe_load_older(&mut self) -> Vec<Effect> {
        let rows = crate::draw::message_rows(self.size);
        let limit = self.page_size;
        let Some(c) = self.open.as_mut() else {
            return vec![];
        };
        let above = c.messages.len().saturating_sub(c.scroll);
        if !c.loaded || !c.has_older || c.loading_older || above > rows {
            return vec![];
        }
        let Some(first) = c.messages.first() else {
            return vec![];
        };
        c.loading_older = true;
        vec![Effect::LoadPage {
            channel: c.channel,
            anchor: HistoryAnchor::Before(first.seq),
            limit,
        }]
    }

    /// The open conversation is on screen: everything in it is read.
    fn mark_read(&mut self) -> Vec<Effect> {
        if self.screen != Screen::Main {
            return vec![];
        }
        let Some(c) = self.open.as_ref().filter(|c| c.loaded) else {
            return vec![];
        };
        let (channel, Some(last)) = (c.channel, c.messages.last().map(|m| m.seq)) else {
            return vec![];
        };
        match self.channel_mut(channel) {
            Some(ch) if ch.unread.read_up_to() < last.0 => {
                ch.unread.read(last.0);
                vec![Effect::Read { channel, seq: last }]
            }
            _ => vec![],
        }
    }

    /// Applies what the session reports.
    pub fn apply(&mut self, update: Update) -> Vec<Effect> {
        match update {
            Update::LoggedIn { user_id, username } => {
                self.me = Some(user_id);
                self.my_name = username;
                self.screen = Screen::Main;
                self.login.busy = false;
                self.login.password.clear();
                self.connection = "connecting".into();
                self.directory_pending = true;
                vec![Effect::RefreshDirectory]
            }
            Update::LoginFailed(why) => {
                self.login.busy = false;
                self.login.error = Some(why);
                vec![]
            }
            Update::Directory {
                channels,
                names,
                friends,
            } => self.directory(channels, names, friends),
            Update::Names(names) => {
                for (id, name) in names {
                    self.names_pending.remove(&id);
                    self.names.insert(id, name);
                }
                vec![]
            }
            Update::Summary {
                channel,
                read_up_to,
                latest,
                has_more,
            } => {
                let me = self.me.unwrap_or(UserId(0));
                if let Some(c) = self.channel_mut(channel) {
                    c.unread.summary(read_up_to.0, &latest, has_more, me);
                }
                let mut effects = self.unknown_senders(&latest);
                effects.extend(self.mark_read());
                effects
            }
            Update::Page { older, batch } => {
                let Some(c) = self.open.as_mut().filter(|c| c.channel == batch.channel_id) else {
                    return vec![];
                };
                if older {
                    c.loading_older = false;
                    c.has_older = batch.has_more;
                } else {
                    c.loaded = true;
                    c.has_older = batch.has_more;
                }
                let mut effects = self.unknown_senders(&batch.messages);
                if let Some(c) = self.open.as_mut() {
                    merge(&mut c.messages, batch.messages);
                }
                effects.extend(self.mark_read());
                effects.extend(self.maybe_load_older());
                effects
            }
            Update::PageFailed { channel, error } => {
                if let Some(c) = self.open.as_mut().filter(|c| c.channel == channel) {
                    c.loading_older = false;
                }
                self.notice = Some(format!("history: {error}"));
                vec![]
            }
            Update::Presence(entries) => {
                self.presence_changed(entries);
                vec![]
            }
            Update::Client(event) => self.client_event(event),
            Update::Sent { ack, text } => {
                let me = self.me.unwrap_or(UserId(0));
                let message = Message {
                    inbox_seq: ack.inbox_seq,
                    channel_id: ack.channel_id,
                    seq: ack.seq,
                    sender_id: me,
                    sender_device: DeviceId(0),
                    client_msg_id: ack.client_msg_id,
                    timestamp_ms: ack.timestamp_ms,
                    text,
                };
                self.message(message)
            }
            Update::SendFailed(why) => {
                self.notice = Some(format!("not sent: {why}"));
                vec![]
            }
            Update::DmOpened {
                channel,
                peer,
                peer_name,
            } => {
                self.dm_prompt = None;
                self.names.insert(peer, peer_name);
                let mut effects = self.watch(&[peer]);
                if self.channel(channel).is_none() {
                    self.channels.push(Channel {
                        id: channel,
                        kind: ChannelKind::Dm { peer },
                        unread: Unread::default(),
                    });
                }
                effects.extend(self.open(channel));
                effects
            }
            Update::DmFailed(why) => match self.dm_prompt.as_mut() {
                Some(p) => {
                    p.busy = false;
                    p.error = Some(why);
                    vec![]
                }
                None => {
                    self.notice = Some(why);
                    vec![]
                }
            },
            Update::Failed(why) => {
                self.notice = Some(why);
                vec![]
            }
        }
    }

    fn directory(
        &mut self,
        channels: Vec<ChannelInfo>,
        names: Vec<(UserId, String)>,
        friends: Vec<UserId>,
    ) -> Vec<Effect> {
        self.directory_pending = std::mem::take(&mut self.directory_again);
        self.names.extend(names);
        self.friends = friends;
        let mut effects = Vec::new();
        let mut peers = self.friends.clone();
        let mut list = Vec::with_capacity(channels.len());
        for info in channels {
            let id = ChannelId(info.channel_id);
            let kind = match info.peer_id {
                Some(peer) if info.kind == "dm" => ChannelKind::Dm { peer: UserId(peer) },
                _ => ChannelKind::Group {
                    name: info.name.unwrap_or_else(|| format!("channel {id}")),
                    members: info.member_count,
                },
            };
            if let ChannelKind::Dm { peer } = kind {
                peers.push(peer);
            }
            let unread = match self.channel(id) {
                Some(known) => known.unread.clone(),
                None => {
                    effects.push(Effect::Summarize(id));
                    Unread::default()
                }
            };
            list.push(Channel { id, kind, unread });
        }
        self.channels = list;
        self.selected = self.selected.min(self.entries().len().saturating_sub(1));
        effects.extend(self.watch(&peers));
        if self.directory_pending {
            effects.push(Effect::RefreshDirectory);
        }
        effects
    }

    fn watch(&mut self, users: &[UserId]) -> Vec<Effect> {
        let new: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|u| Some(*u) != self.me && self.watched.insert(*u))
            .collect();
        if new.is_empty() {
            vec![]
        } else {
            vec![Effect::Watch(new)]
        }
    }

    fn unknown_senders(&mut self, messages: &[Message]) -> Vec<Effect> {
        let mut unknown = Vec::new();
        for m in messages {
            let u = m.sender_id;
            if Some(u) != self.me && !self.names.contains_key(&u) && self.names_pending.insert(u) {
                unknown.push(u);
            }
        }
        if unknown.is_empty() {
            vec![]
        } else {
            vec![Effect::LookupUsers(unknown)]
        }
    }

    fn presence_changed(&mut self, entries: Vec<PresenceInfo>) {
        for p in entries {
            self.presence.insert(p.user_id, p);
        }
    }

    fn client_event(&mut self, event: ClientEvent) -> Vec<Effect> {
        match event {
            ClientEvent::Connected(welcome) => {
                self.me = Some(welcome.user_id);
                self.connection = format!("connected over {}", self.transport);
                vec![]
            }
            ClientEvent::Message(m) => {
                self.inbox_messages += 1;
                self.message(m)
            }
            ClientEvent::Receipt(r) => {
                if Some(r.user_id) == self.me {
                    if let Some(c) = self.channel_mut(r.channel_id) {
                        c.unread.read(r.seq.0);
                    }
                }
                vec![]
            }
            ClientEvent::Presence(entries) => {
                self.presence_changed(entries);
                vec![]
            }
            ClientEvent::Typing(t) => {
                if Some(t.user_id) != self.me {
                    self.typing
                        .insert((t.channel_id, t.user_id), Instant::now());
                }
                vec![]
            }
            ClientEvent::Disconnected { reason } => {
                self.connection = format!("disconnected: {reason}");
                vec![]
            }
            ClientEvent::Reconnecting { attempt, delay } => {
                self.connection = format!(
                    "reconnecting in {:.1} s (attempt {attempt})",
                    delay.as_secs_f32()
                );
                vec![]
            }
            ClientEvent::Refused { code, message } => {
                self.connection = format!("refused: {code}: {message}");
                vec![]
            }
            ClientEvent::SendFailed { error, .. } => {
                self.notice = Some(format!("not sent: {error}"));
                vec![]
            }
            ClientEvent::ServerError(e) => {
                self.notice = Some(format!("server: {}: {}", e.code, e.message));
                vec![]
            }
            ClientEvent::Closed => {
                self.connection = "closed".into();
                vec![]
            }
            _ => vec![],
        }
    }

    /// A message arrived (live, replayed, or our own acknowledged send).
    fn message(&mut self, m: Message) -> Vec<Effect> {
        let from_me = Some(m.sender_id) == self.me;
        self.typing.remove(&(m.channel_id, m.sender_id));
        let mut effects = self.unknown_senders(std::slice::from_ref(&m));
        match self.channels.iter_mut().find(|c| c.id == m.channel_id) {
            Some(c) => c.unread.seen(m.seq.0, from_me),
            // A channel made since the list was read (someone's first DM,
            // a group we were added to): read the list again, whose
            // summary of it then counts this message.
            None if !self.directory_pending => {
                self.directory_pending = true;
                effects.push(Effect::RefreshDirectory);
            }
            // The list on its way may have been read before this channel
            // existed: read it once more when it arrives.
            None => self.directory_again = true,
        }
        if let Some(c) = self.open.as_mut().filter(|c| c.channel == m.channel_id) {
            // Kept in view where the user scrolled to.
            if c.scroll > 0 {
                c.scroll += 1;
            }
            merge(&mut c.messages, vec![m]);
        }
        effects.extend(self.mark_read());
        effects
    }
}

/// Merges `incoming` into `messages` (both ascending by sequence), keeping
/// one copy of each sequence: a page and live messages overlap freely.
pub fn merge(messages: &mut Vec<Message>, incoming: Vec<Message>) {
    if incoming.is_empty() {
        return;
    }
    let appends = messages
        .last()
        .is_none_or(|last| incoming.first().is_some_and(|f| f.seq > last.seq));
    messages.extend(incoming);
    if !appends {
        messages.sort_by_key(|m| m.seq);
        messages.dedup_by_key(|m| m.seq);
    }
}

/// "online", "last seen 5 min ago" and the like.
pub fn last_seen(p: Option<&PresenceInfo>, now_ms: u64) -> String {
    match p {
        None => String::new(),
        Some(p) if p.online => "online".into(),
        Some(p) if p.last_seen_ms == 0 => "offline".into(),
        Some(p) => {
            let secs = now_ms.saturating_sub(p.last_seen_ms) / 1000;
            match secs {
                0..60 => "last seen just now".into(),
                60..3600 => format!("last seen {} min ago", secs / 60),
                3600..86_400 => format!("last seen {} h ago", secs / 3600),
                _ => format!("last seen {} d ago", secs / 86_400),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_client::InboxSeq;

    fn msg(seq: u64, sender: u64) -> Message {
        Message {
            inbox_seq: InboxSeq(0),
            channel_id: ChannelId(1),
            seq: Seq(seq),
            sender_id: UserId(sender),
            sender_device: DeviceId(1),
            client_msg_id: seq,
            timestamp_ms: 0,
            text: Text::from(format!("m{seq}")),
        }
    }

    #[test]
    fn unread_counts_distinct_messages_of_others_above_the_read_mark() {
        let me = UserId(1);
        let mut u = Unread::default();
        // The summary page: 3..=6, own message 5, read up to 3.
        let page: Vec<Message> = [(3, 2), (4, 2), (5, 1), (6, 2)]
            .iter()
            .map(|&(s, from)| msg(s, from))
            .collect();
        u.summary(3, &page, true, me);
        assert_eq!(u.count(), 2); // 4 and 6
        assert!(!u.more()); // the page reaches back to the read mark
                            // The same message again (live, or replayed) counts once.
        u.seen(6, false);
        u.seen(7, false);
        u.seen(8, true);
        assert_eq!(u.count(), 3);
        // Read on another device up to 6: only 7 is left.
        u.read(6);
        assert_eq!((u.count(), u.read_up_to()), (1, 6));
        // A mark going backwards changes nothing; a message below it is read.
        u.read(2);
        u.seen(5, false);
        assert_eq!(u.count(), 1);
        u.read(8);
        assert_eq!(u.count(), 0);
    }

    #[test]
    fn an_unread_summary_page_says_there_may_be_more() {
        let mut u = Unread::default();
        let page: Vec<Message> = (51..=100).map(|s| msg(s, 2)).collect();
        u.summary(0, &page, true, UserId(1));
        assert_eq!((u.count(), u.more()), (50, true));
        u.read(100);
        assert_eq!((u.count(), u.more()), (0, false));
    }

    #[test]
    fn a_channel_list_read_before_a_new_channel_is_read_again() {
        let mut app = App::new(Some("alice".into()), false, 50);
        let login = app.apply(Update::LoggedIn {
            user_id: UserId(1),
            username: "alice".into(),
        });
        assert_eq!(login, [Effect::RefreshDirectory]);
        // Bob's first message arrives while that list is on its way.
        let effects = app.apply(Update::Client(ClientEvent::Message(msg(1, 2))));
        assert!(!effects.contains(&Effect::RefreshDirectory));
        let directory = |channels: Vec<ChannelInfo>| Update::Directory {
            channels,
            names: vec![(UserId(2), "bob".into())],
            friends: vec![],
        };
        // The list read before the DM existed: read it again.
        assert_eq!(app.apply(directory(vec![])), [Effect::RefreshDirectory]);
        let dm = ChannelInfo {
            channel_id: 1,
            kind: "dm".into(),
            peer_id: Some(2),
            name: None,
            member_count: 2,
        };
        let effects = app.apply(directory(vec![dm]));
        assert!(
            effects.contains(&Effect::Summarize(ChannelId(1))),
            "{effects:?}"
        );
        assert!(
            effects.contains(&Effect::Watch(vec![UserId(2)])),
            "{effects:?}"
        );
        assert!(!effects.contains(&Effect::RefreshDirectory));
        assert_eq!(app.title(&app.channels[0]), "bob");
    }

    #[test]
    fn merging_keeps_one_copy_in_order() {
        let mut v = vec![msg(5, 2), msg(6, 2)];
        merge(&mut v, vec![msg(7, 2)]);
        merge(&mut v, vec![msg(1, 2), msg(2, 2), msg(5, 2)]);
        merge(&mut v, vec![msg(6, 2)]);
        let seqs: Vec<u64> = v.iter().map(|m| m.seq.0).collect();
        assert_eq!(seqs, [1, 2, 5, 6, 7]);
    }

    #[test]
    fn last_seen_reads_like_a_person_would_say_it() {
        let p = |online, last_seen_ms| PresenceInfo {
            user_id: UserId(2),
            online,
            last_seen_ms,
        };
        let now = 10_000_000;
        assert_eq!(last_seen(Some(&p(true, 0)), now), "online");
        assert_eq!(last_seen(Some(&p(false, 0)), now), "offline");
        assert_eq!(
            last_seen(Some(&p(false, now - 5_000)), now),
            "last seen just now"
        );
        assert_eq!(
            last_seen(Some(&p(false, now - 300_000)), now),
            "last seen 5 min ago"
        );
        assert_eq!(
            last_seen(Some(&p(false, now - 7_200_000)), now),
            "last seen 2 h ago"
        );
        assert_eq!(last_seen(None, now), "");
    }
}
