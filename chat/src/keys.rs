//! The key bindings: how a terminal event changes the [`App`] and which
//! [`Effect`]s it asks for. The terminal loop and the tests feed events
//! through [`App::on_terminal`] alike.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{App, DmPrompt, Entry, Focus, LoginField, Screen};
use crate::conversation::PendingSend;
use crate::update::Effect;

impl App {
    /// Handles one terminal event (a key, a paste, a resize). The caller
    /// sets [`App::now`] first.
    pub fn on_terminal(&mut self, event: &Event) -> Vec<Effect> {
        match event {
            Event::Resize(w, h) => {
                self.size = (*w, *h);
                vec![]
            }
            Event::Key(key) if key.kind != KeyEventKind::Release => self.on_key(*key),
            Event::Paste(text) => {
                for c in text.chars().filter(|c| !c.is_control()) {
                    self.type_char(c);
                }
                vec![]
            }
            _ => vec![],
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return self.quit();
        }
        if std::mem::take(&mut self.esc_pending) && key.code == KeyCode::Char('q') && !ctrl {
            return self.quit();
        }
        if key.code != KeyCode::Esc {
            self.quit_armed = false;
        }
        if key.code == KeyCode::Esc {
            self.esc_pending = true;
            self.dm_prompt = None;
            return vec![];
        }
        match self.screen {
            Screen::Login => self.login_key(key, ctrl),
            Screen::Main if self.dm_prompt.is_some() => self.prompt_key(key),
            Screen::Main => self.main_key(key, ctrl),
        }
    }

    /// Quits, unless sends are still waiting for their acknowledgement:
    /// closing drops them, so that takes a second press.
    fn quit(&mut self) -> Vec<Effect> {
        if !self.pending.is_empty() && !std::mem::take(&mut self.quit_armed) {
            self.quit_armed = true;
            let n = self.pending.len();
            let (what, them) = if n == 1 {
                ("message is", "it")
            } else {
                ("messages are", "them")
            };
            self.notice = Some(format!(
                "{n} {what} still sending: quit again to drop {them}"
            ));
            return vec![];
        }
        self.quit = true;
        vec![Effect::Quit]
    }

    fn login_key(&mut self, key: KeyEvent, ctrl: bool) -> Vec<Effect> {
        let form = &mut self.login;
        match key.code {
            KeyCode::Char('s') if ctrl => form.signup = !form.signup,
            KeyCode::F(2) => form.signup = !form.signup,
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
                form.field = match form.field {
                    LoginField::Username => LoginField::Password,
                    LoginField::Password => LoginField::Username,
                }
            }
            KeyCode::Enter => {
                if form.field == LoginField::Username && form.password.is_empty() {
                    form.field = LoginField::Password;
                } else {
                    return self.submit_login();
                }
            }
            KeyCode::Backspace => {
                match form.field {
                    LoginField::Username => form.username.pop(),
                    LoginField::Password => form.password.pop(),
                };
            }
            KeyCode::Char(c) if !ctrl => self.type_char(c),
            _ => {}
        }
        vec![]
    }

    fn prompt_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(prompt) = self.dm_prompt.as_mut() else {
            return vec![];
        };
        match key.code {
            KeyCode::Enter if !prompt.input.is_empty() && !prompt.busy => {
                prompt.busy = true;
                prompt.error = None;
                return vec![Effect::OpenDmByName(prompt.input.clone())];
            }
            KeyCode::Backspace => {
                prompt.input.pop();
            }
            KeyCode::Char(c) => self.type_char(c),
            _ => {}
        }
        vec![]
    }

    fn main_key(&mut self, key: KeyEvent, ctrl: bool) -> Vec<Effect> {
        let page = crate::draw::message_rows(self.size)
            .saturating_sub(1)
            .max(1);
        match key.code {
            KeyCode::Char('n') if ctrl => {
                self.dm_prompt = Some(DmPrompt::default());
                vec![]
            }
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Channels if self.open.is_some() => Focus::Chat,
                    _ => Focus::Channels,
                };
                vec![]
            }
            KeyCode::PageUp => self.scroll_up(page),
            KeyCode::PageDown => {
                self.scroll_down(page);
                vec![]
            }
            _ => match self.focus {
                Focus::Channels => self.list_key(key),
                Focus::Chat => self.chat_key(key, ctrl),
            },
        }
    }

    fn list_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let entries = self.entries();
        match key.code {
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(entries.len().saturating_sub(1))
            }
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = entries.len().saturating_sub(1),
            KeyCode::Enter | KeyCode::Right => match entries.get(self.selected) {
                Some(Entry::Channel(id)) => return self.open(*id),
                Some(Entry::Friend(user)) => return vec![Effect::OpenDmWith(*user)],
                None if key.code == KeyCode::Right && self.open.is_some() => {
                    self.focus = Focus::Chat
                }
                None => {}
            },
            _ => {}
        }
        vec![]
    }

    fn chat_key(&mut self, key: KeyEvent, ctrl: bool) -> Vec<Effect> {
        match key.code {
            KeyCode::Left => self.focus = Focus::Channels,
            KeyCode::Up => return self.scroll_up(1),
            KeyCode::Down => self.scroll_down(1),
            KeyCode::End => self.scroll_down(usize::MAX),
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Enter => {
                let text = self.input.trim();
                if let (Some(channel), false) = (self.open_channel(), text.is_empty()) {
                    let text = text.to_owned();
                    self.input.clear();
                    self.last_typing_sent = None;
                    if let Some(c) = self.open.as_mut() {
                        c.scroll = 0;
                    }
                    let id = self.next_send_id;
                    self.next_send_id += 1;
                    self.pending.push(PendingSend {
                        id,
                        channel,
                        text: text.clone(),
                    });
                    return vec![Effect::Send { id, channel, text }];
                }
            }
            KeyCode::Char(c) if !ctrl => {
                self.type_char(c);
                let due = self
                    .last_typing_sent
                    .is_none_or(|t| self.now.duration_since(t) >= super::app::TYPING_EVERY);
                if let (Some(channel), true) = (self.open_channel(), due) {
                    self.last_typing_sent = Some(self.now);
                    return vec![Effect::Typing(channel)];
                }
            }
            _ => {}
        }
        vec![]
    }

    /// A character into whatever input has the focus.
    fn type_char(&mut self, c: char) {
        if let Some(p) = self.dm_prompt.as_mut() {
            p.input.push(c);
            return;
        }
        match (self.screen, self.login.field) {
            (Screen::Login, LoginField::Username) => self.login.username.push(c),
            (Screen::Login, LoginField::Password) => self.login.password.push(c),
            (Screen::Main, _) if self.focus == Focus::Chat => self.input.push(c),
            _ => {}
        }
    }
}
