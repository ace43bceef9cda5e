//! `confab chat`: a terminal client on the Rust SDK (confab-client), over
//! QUIC by default or WebSocket.
//!
//! The state of the client is an [`App`], changed only by terminal events
//! ([`App::on_terminal`]) and by what the network reports
//! ([`App::apply`]); both answer with [`Effect`]s that a [`Session`]
//! carries out with the HTTP API ([`Api`]) and the SDK. [`draw`] renders an
//! `App` into any ratatui backend, and [`Chat`] ties the pieces together
//! for the terminal loop ([`run`]) and the tests alike. See docs/chat.md.

mod api;
mod app;
mod apply;
mod chat;
mod conversation;
mod draw;
mod error;
mod keys;
mod options;
mod run;
mod session;
mod state_file;
mod unread;
mod update;

pub use api::{Api, ChannelInfo, Dm, Friends, Gateway, ReadMark, Tokens, User};
pub use app::{
    last_seen, App, Channel, ChannelKind, DmPrompt, Entry, Focus, LoginField, LoginForm, Screen,
    TYPING_SHOWN,
};
pub use chat::Chat;
pub use conversation::{merge, Conversation, PendingSend};
pub use draw::{draw, message_rows, printable};
pub use error::ChatError;
pub use options::{is_loopback_url, Options, TransportChoice};
pub use run::run;
pub use session::Session;
pub use state_file::{DeviceState, StateFile};
pub use unread::Unread;
pub use update::{Effect, Password, Update};
