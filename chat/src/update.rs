//! The two vocabularies between the pure [`App`](crate::App) and the
//! [`Session`](crate::Session) that does its I/O: what the session reports
//! ([`Update`]) and what the app asks for ([`Effect`]).

use confab_client::{
    ChannelId, ClientEvent, HistoryAnchor, HistoryBatch, Message, PresenceInfo, SendAck, Seq, Text,
    UserId,
};

use crate::api::ChannelInfo;

/// A password on its way to the API: kept out of `Debug` output, which
/// ends up in logs and panic messages.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
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
    /// The channel list could not be read.
    DirectoryFailed(String),
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
        /// The [`Conversation::generation`](crate::Conversation::generation)
        /// it was asked for.
        generation: u64,
        /// Older than what was loaded (scrolling up), not the newest page.
        older: bool,
        /// The page.
        batch: HistoryBatch,
    },
    /// A history page could not be read.
    PageFailed {
        /// The generation it was asked for.
        generation: u64,
        /// Why.
        error: String,
    },
    /// Presence of watched users (the answer to a subscription).
    Presence(Vec<PresenceInfo>),
    /// Something happened on the SDK client's session.
    Client(ClientEvent),
    /// A message sent from here was stored.
    Sent {
        /// The app's number for the send.
        id: u64,
        /// The server's acknowledgement.
        ack: SendAck,
        /// The text sent.
        text: Text,
    },
    /// A message sent from here failed for good.
    SendFailed {
        /// The app's number for the send.
        id: u64,
        /// Why.
        error: String,
    },
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
    /// The session ended (its token could not be refreshed): back to the
    /// login screen, saying why.
    LoggedOut(String),
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
        password: Password,
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
        /// The conversation's generation, which the page carries back.
        generation: u64,
    },
    /// Send a message.
    Send {
        /// The app's number for it, which its outcome carries back.
        id: u64,
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
