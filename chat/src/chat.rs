//! The app and its session wired together: what the terminal loop runs
//! and what the tests drive, through the same calls, so that a test that
//! feeds keys and reads the rendered buffer exercises exactly what a user
//! at a terminal does.

use std::time::{Instant, SystemTime};

use ratatui::crossterm::event::Event;

use crate::app::App;
use crate::error::ChatError;
use crate::options::Options;
use crate::session::Session;
use crate::update::{Effect, Update};

/// A running client: state plus network.
#[derive(Debug)]
pub struct Chat {
    app: App,
    session: Session,
}

impl Chat {
    /// A client on its login screen; with a password from the environment
    /// (and a username) it logs in at once. Must run within a tokio
    /// runtime.
    pub fn new(mut options: Options) -> Result<Chat, ChatError> {
        let mut app = App::new(options.user.clone(), options.signup, options.page_size);
        app.transport = options.transport.label().into();
        // Used once, then not kept where it could outlive the login.
        let password = options.password.take();
        let mut chat = Chat {
            app,
            session: Session::new(options)?,
        };
        if let (Some(password), false) = (password, chat.app.login.username.is_empty()) {
            chat.app.login.password = password;
            let effects = chat.app.submit_login();
            chat.perform(effects);
        }
        Ok(chat)
    }

    /// The state, for drawing.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The network side (the SDK client, the state file).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.app.quit
    }

    /// A terminal event: a key, a paste, a resize.
    pub fn terminal_event(&mut self, event: &Event) {
        self.app.now = Instant::now();
        let effects = self.app.on_terminal(event);
        self.perform(effects);
    }

    /// Waits for the next update from the network and applies it.
    /// Cancel-safe.
    pub async fn step(&mut self) {
        let update = self.session.next().await;
        self.apply(update);
    }

    /// Applies one update.
    pub fn apply(&mut self, update: Update) {
        self.app.now = Instant::now();
        let effects = self.app.apply(update);
        self.perform(effects);
    }

    /// The clock moved: typing notices expire, the read mark goes out, the
    /// token is refreshed when due, the state file catches up.
    pub fn tick(&mut self) {
        let effects = self.app.tick(Instant::now(), confab_types::now_ms());
        self.perform(effects);
        self.session.tick(SystemTime::now());
        if let Err(e) = self.session.save_if_due() {
            self.app.notice = Some(e.to_string());
        }
    }

    fn perform(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            self.session.perform(effect);
        }
    }

    /// Saves the state file and closes the connection.
    pub async fn close(mut self) -> Result<(), ChatError> {
        self.session.close().await
    }
}
