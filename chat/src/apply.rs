//! How what the session reports changes the [`App`]: API answers, SDK
//! events and the outcome of the app's own effects, each answered with the
//! effects it calls for.

use std::time::Duration;

use confab_client::{ChannelId, ClientEvent, DeviceId, Message, PresenceInfo, UserId};

use crate::api::ChannelInfo;
use crate::app::{App, Channel, ChannelKind, Screen};
use crate::conversation::merge;
use crate::unread::Unread;
use crate::update::{Effect, Update};

/// The longest wait between two tries at reading the channel list.
const DIRECTORY_RETRY_MAX: Duration = Duration::from_secs(30);

impl App {
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
            Update::DirectoryFailed(why) => {
                self.directory_failed(why);
                vec![]
            }
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
            Update::Page {
                generation,
                older,
                batch,
            } => {
                // A page for a conversation left since it was asked for
                // (even one of the same channel) belongs to no view.
                let Some(c) = self
                    .open
                    .as_mut()
                    .filter(|c| c.generation == generation && c.channel == batch.channel_id)
                else {
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
            Update::PageFailed { generation, error } => {
                if let Some(c) = self.open.as_mut().filter(|c| c.generation == generation) {
                    c.loading_older = false;
                    self.notice = Some(format!("history: {error}"));
                }
                vec![]
            }
            Update::Presence(entries) => {
                self.presence_changed(entries);
                vec![]
            }
            Update::Client(event) => self.client_event(event),
            Update::Sent { id, ack, text } => {
                self.pending.retain(|p| p.id != id);
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
            Update::SendFailed { id, error } => {
                if let Some(i) = self.pending.iter().position(|p| p.id == id) {
                    let failed = self.pending.remove(i);
                    // Given back to be sent again, unless something else is
                    // being typed already.
                    if self.input.is_empty() {
                        self.input = failed.text;
                    }
                }
                self.notice = Some(format!("not sent: {error}"));
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
            Update::LoggedOut(why) => {
                let mut fresh = App::new(Some(self.my_name.clone()), false, self.page_size);
                fresh.transport = std::mem::take(&mut self.transport);
                fresh.size = self.size;
                fresh.now = self.now;
                fresh.now_ms = self.now_ms;
                fresh.login.error = Some(why);
                *self = fresh;
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
        self.directory_stale = self.directory_pending;
        self.directory_loaded = true;
        self.directory_failures = 0;
        self.directory_retry = None;
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

    /// The channel list could not be read: tried again after a backoff
    /// while it was never read or a channel is known to be missing from it.
    fn directory_failed(&mut self, why: String) {
        self.directory_pending = false;
        self.notice = Some(format!("channel list: {why}"));
        let missing = std::mem::take(&mut self.directory_again) || self.directory_stale;
        if self.directory_loaded && !missing {
            return;
        }
        self.directory_failures = self.directory_failures.saturating_add(1);
        let backoff = Duration::from_secs(1 << (self.directory_failures - 1).min(5));
        self.directory_retry = Some(self.now + backoff.min(DIRECTORY_RETRY_MAX));
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
                    self.typing.insert((t.channel_id, t.user_id), self.now);
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
            // A read is due after a failure: it will list this channel.
            None if self.directory_retry.is_some() => self.directory_stale = true,
            // A channel made since the list was read (someone's first DM,
            // a group we were added to): read the list again, whose
            // summary of it then counts this message.
            None if !self.directory_pending => {
                self.directory_pending = true;
                self.directory_stale = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::tests::msg;

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

    fn logged_in() -> App {
        let mut app = App::new(Some("alice".into()), false, 50);
        app.apply(Update::LoggedIn {
            user_id: UserId(1),
            username: "alice".into(),
        });
        app
    }

    fn key(app: &mut App, code: ratatui::crossterm::event::KeyCode) -> Vec<Effect> {
        use ratatui::crossterm::event::{Event, KeyEvent};
        app.on_terminal(&Event::Key(KeyEvent::from(code)))
    }

    fn dm_list() -> Update {
        Update::Directory {
            channels: vec![ChannelInfo {
                channel_id: 1,
                kind: "dm".into(),
                peer_id: Some(2),
                name: None,
                member_count: 2,
            }],
            names: vec![(UserId(2), "bob".into())],
            friends: vec![],
        }
    }

    /// Alice with bob's DM open, its first page loaded.
    fn with_dm_open() -> App {
        let mut app = logged_in();
        app.apply(dm_list());
        let generation = app.generation + 1;
        app.open(ChannelId(1));
        app.apply(Update::Page {
            generation,
            older: false,
            batch: confab_client::HistoryBatch {
                request_id: 0,
                channel_id: ChannelId(1),
                messages: vec![msg(1, 2)],
                has_more: false,
            },
        });
        app
    }

    #[test]
    fn a_failed_channel_list_is_read_again_with_backoff() {
        let mut app = logged_in();
        let start = app.now;
        assert!(app.apply(Update::DirectoryFailed("down".into())).is_empty());
        assert!(app.notice.as_deref().unwrap().contains("down"));
        // A message in a channel the list lacks: the retry covers it.
        app.apply(Update::Client(ClientEvent::Message(msg(1, 2))));
        assert!(app.tick(start + Duration::from_millis(500), 0).is_empty());
        let effects = app.tick(start + Duration::from_secs(1), 0);
        assert!(effects.contains(&Effect::RefreshDirectory), "{effects:?}");
        // A second failure waits twice as long.
        app.apply(Update::DirectoryFailed("down".into()));
        let now = start + Duration::from_secs(1);
        assert!(!app
            .tick(now + Duration::from_millis(1_500), 0)
            .contains(&Effect::RefreshDirectory));
        assert!(app
            .tick(now + Duration::from_secs(2), 0)
            .contains(&Effect::RefreshDirectory));
        // Success: the list holds the channel, nothing more is read.
        let effects = app.apply(dm_list());
        assert!(!effects.contains(&Effect::RefreshDirectory), "{effects:?}");
        assert!(app.tick(now + Duration::from_secs(100), 0).is_empty());
    }

    #[test]
    fn after_a_failed_refresh_a_message_in_an_unknown_channel_reads_the_list() {
        let mut app = logged_in();
        app.apply(Update::Directory {
            channels: vec![],
            names: vec![],
            friends: vec![],
        });
        // A new channel's message: the list is read, and that read fails.
        let effects = app.apply(Update::Client(ClientEvent::Message(msg(1, 2))));
        assert!(effects.contains(&Effect::RefreshDirectory));
        app.apply(Update::DirectoryFailed("down".into()));
        // Another message there: the list is read again (not stuck behind
        // a read that will never answer).
        let mut later = msg(2, 2);
        later.channel_id = ChannelId(1);
        let now = app.now;
        let mut effects = app.apply(Update::Client(ClientEvent::Message(later)));
        effects.extend(app.tick(now + Duration::from_secs(1), 0));
        assert!(effects.contains(&Effect::RefreshDirectory), "{effects:?}");
    }

    #[test]
    fn a_page_for_a_conversation_left_since_is_dropped() {
        let mut app = logged_in();
        app.apply(dm_list());
        let first = app.open(ChannelId(1));
        let Some(Effect::LoadPage {
            generation: old, ..
        }) = first.first().cloned()
        else {
            panic!("{first:?}");
        };
        // Left and opened again before the page arrives.
        app.open = None;
        app.open(ChannelId(1));
        let page = |generation, seq| Update::Page {
            generation,
            older: false,
            batch: confab_client::HistoryBatch {
                request_id: 0,
                channel_id: ChannelId(1),
                messages: vec![msg(seq, 2)],
                has_more: false,
            },
        };
        app.apply(page(old, 7));
        let conv = app.open.as_ref().unwrap();
        assert!(!conv.loaded && conv.messages.is_empty());
        app.apply(page(conv.generation, 8));
        let conv = app.open.as_ref().unwrap();
        assert!(conv.loaded);
        assert_eq!(conv.messages.len(), 1);
    }

    #[test]
    fn a_failed_send_gives_its_text_back() {
        use ratatui::crossterm::event::KeyCode;
        let mut app = with_dm_open();
        app.input = "hello".into();
        let effects = key(&mut app, KeyCode::Enter);
        let [Effect::Send { id, .. }] = effects.as_slice() else {
            panic!("{effects:?}");
        };
        assert_eq!(app.pending.len(), 1);
        assert!(app.input.is_empty());
        app.apply(Update::SendFailed {
            id: *id,
            error: "rate limited".into(),
        });
        assert!(app.pending.is_empty());
        assert_eq!(app.input, "hello");
        assert!(app.notice.as_deref().unwrap().contains("rate limited"));
    }

    #[test]
    fn quitting_with_sends_pending_takes_a_second_press() {
        use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
        let mut app = with_dm_open();
        app.input = "hello".into();
        key(&mut app, KeyCode::Enter);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.on_terminal(&ctrl_c).is_empty());
        assert!(!app.quit);
        assert!(app.notice.as_deref().unwrap().contains("still sending"));
        assert_eq!(app.on_terminal(&ctrl_c), [Effect::Quit]);
        assert!(app.quit);
    }

    #[test]
    fn messages_in_the_open_conversation_make_one_read_per_tick() {
        let mut app = with_dm_open();
        let now = app.now;
        assert_eq!(
            app.tick(now, 0),
            [Effect::Read {
                channel: ChannelId(1),
                seq: confab_client::Seq(1)
            }]
        );
        for seq in 2..=20 {
            let mut m = msg(seq, 2);
            m.channel_id = ChannelId(1);
            let effects = app.apply(Update::Client(ClientEvent::Message(m)));
            assert!(
                !effects.iter().any(|e| matches!(e, Effect::Read { .. })),
                "{effects:?}"
            );
        }
        assert_eq!(
            app.tick(now, 0),
            [Effect::Read {
                channel: ChannelId(1),
                seq: confab_client::Seq(20)
            }]
        );
        assert!(app.tick(now, 0).is_empty());
    }

    #[test]
    fn typing_notices_are_timed_by_the_callers_clock() {
        let mut app = with_dm_open();
        let now = app.now;
        app.apply(Update::Client(ClientEvent::Typing(
            confab_client::TypingEvent {
                channel_id: ChannelId(1),
                user_id: UserId(2),
            },
        )));
        assert_eq!(app.typing_in(ChannelId(1)), ["bob"]);
        app.tick(now + crate::TYPING_SHOWN, 0);
        assert!(app.typing_in(ChannelId(1)).is_empty());
    }
}
