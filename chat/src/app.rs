//! The client's whole state and how it changes, without a terminal or a
//! network: [`App::apply`] takes what the session reports, the key
//! handling (keys.rs) takes what the user does, and both answer with the
//! [`Effect`]s the session is to carry out. Keeping this pure (the clock
//! too comes from the caller) is what lets the tests drive it exactly as
//! the terminal loop does and read the result from a rendered buffer.
//!
//! This file holds the state and what the views and keys ask of it;
//! apply.rs how updates change it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use confab_client::{ChannelId, HistoryAnchor, PresenceInfo, Seq, UserId};

use crate::conversation::{Conversation, PendingSend};
use crate::unread::Unread;
use crate::update::{Effect, Password};

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
#[derive(Clone)]
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

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("field", &self.field)
            .field("signup", &self.signup)
            .field("busy", &self.busy)
            .field("error", &self.error)
            .finish()
    }
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
    /// Sends made here and not acknowledged yet, oldest first.
    pub pending: Vec<PendingSend>,
    pub(crate) esc_pending: bool,
    /// A quit key was pressed with sends pending: the next one quits.
    pub(crate) quit_armed: bool,
    pub(crate) last_typing_sent: Option<Instant>,
    pub(crate) next_send_id: u64,
    pub(crate) generation: u64,
    /// The read mark to send at the next tick: one `Read` however many
    /// messages arrive in between.
    pub(crate) read_due: Option<(ChannelId, Seq)>,
    pub(crate) directory_pending: bool,
    pub(crate) directory_again: bool,
    /// The channel list has been read at least once.
    pub(crate) directory_loaded: bool,
    /// A message came from a channel the list lacks, and no read of the
    /// list since has succeeded.
    pub(crate) directory_stale: bool,
    /// Failed reads of the channel list in a row, for the backoff.
    pub(crate) directory_failures: u32,
    /// When to read the channel list again after a failure.
    pub(crate) directory_retry: Option<Instant>,
    pub(crate) watched: HashSet<UserId>,
    pub(crate) names_pending: HashSet<UserId>,
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
            pending: Vec::new(),
            esc_pending: false,
            quit_armed: false,
            last_typing_sent: None,
            next_send_id: 1,
            generation: 0,
            read_due: None,
            directory_pending: false,
            directory_again: false,
            directory_loaded: false,
            directory_stale: false,
            directory_failures: 0,
            directory_retry: None,
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
            password: Password(form.password.clone()),
            signup: form.signup,
        }]
    }

    /// The clock moved: typing notices expire, the read mark due goes
    /// out, a failed read of the channel list is retried when its backoff
    /// is over.
    pub fn tick(&mut self, now: Instant, now_ms: u64) -> Vec<Effect> {
        self.now = now;
        self.now_ms = now_ms;
        self.typing
            .retain(|_, at| now.saturating_duration_since(*at) < TYPING_SHOWN);
        let mut effects = Vec::new();
        if let Some((channel, seq)) = self.read_due.take() {
            effects.push(Effect::Read { channel, seq });
        }
        if self.directory_retry.is_some_and(|at| at <= now) && !self.directory_pending {
            self.directory_retry = None;
            self.directory_pending = true;
            effects.push(Effect::RefreshDirectory);
        }
        effects
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

    pub(crate) fn channel_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
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
        self.generation += 1;
        self.open = Some(Conversation::new(channel, self.generation));
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
            generation: self.generation,
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

    pub(crate) fn maybe_load_older(&mut self) -> Vec<Effect> {
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
            generation: c.generation,
        }]
    }

    /// The open conversation is on screen: everything in it is read. The
    /// mark goes out at the next tick, so that a burst of messages makes
    /// one `Read` frame, not one each.
    pub(crate) fn mark_read(&mut self) -> Vec<Effect> {
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
                self.read_due = Some((channel, last));
                vec![]
            }
            _ => vec![],
        }
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

    #[test]
    fn debug_output_hides_the_password() {
        let mut app = App::new(Some("alice".into()), false, 50);
        app.login.password = "hunter2-secret".into();
        for shown in [format!("{:?}", app.login), format!("{app:?}")] {
            assert!(!shown.contains("hunter2-secret"), "{shown}");
            assert!(shown.contains("<hidden>"), "{shown}");
        }
        let effects = app.submit_login();
        let shown = format!("{effects:?}");
        assert!(!shown.contains("hunter2-secret") && shown.contains("<hidden>"));
    }
}
