//! The async Rust client SDK for confab.
//!
//! One API over every transport the gateway speaks, chosen by URL:
//!
//! | URL | Transport |
//! |---|---|
//! | `ws://host:port/v1/ws` | WebSocket, subprotocol `confab.v1` (binary) |
//! | `wss://host:port/v1/ws` | the same over TLS (rustls, ring) |
//! | `quic://host:port` | QUIC, ALPN `confab/1`, the stream layout of docs/protocol.md §15 |
//!
//! A [`Client`] runs one background task that drives the protocol crate's
//! sans-IO [`ClientSession`](confab_protocol::session::ClientSession) over
//! the transport. It reconnects with jittered exponential backoff, resumes
//! from the inbox cursor, and retransmits unacknowledged sends with their
//! original client message ids, so the application sees every message
//! exactly once and in order, and every send resolves exactly once, however
//! often the connection drops. When the server refuses the credentials it
//! stops reconnecting and says so ([`ClientEvent::Refused`]) until
//! [`Client::set_token`] gives it a new token.
//!
//! Over WebSocket that task is the only one: it reads and writes the socket
//! itself, so a frame is never handed over to another task or thread.
//! Over QUIC each of the connection's carriers (the control stream, the
//! lanes, the datagrams) has a reader task of its own.
//!
//! ```no_run
//! use confab_client::{Client, ClientConfig, ClientEvent, DeviceId, Target, UserId};
//!
//! # async fn run(token: String, bob: UserId) -> Result<(), confab_client::ClientError> {
//! let (client, mut events) =
//!     Client::connect(ClientConfig::new("ws://127.0.0.1:8081/v1/ws", token, DeviceId(1)))?;
//! let ack = client.send(Target::User(bob), "hello").await?;
//! println!("stored as #{} in channel {}", ack.seq, ack.channel_id);
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::Message(m) = event {
//!         println!("{}: {}", m.sender_id, m.text);
//!         // Persist events.cursor() and client.next_client_msg_id() here
//!         // to resume after a restart without a gap or a repeat.
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! For TLS transports the client trusts the system roots plus whatever
//! [`TlsOptions`] adds; there is no option to skip verification (trust a
//! development server's self-signed certificate file instead).

mod client;
mod config;
mod driver;
mod error;
mod event;
mod requests;
mod tls;
mod transport;
mod url;

pub use client::{Client, SendFuture};
pub use config::ClientConfig;
pub use error::ClientError;
pub use event::{ClientEvent, ConnectionState, Events};
pub use tls::TlsOptions;
pub use url::{ServerUrl, Transport, DEFAULT_WS_PATH};

pub use confab_protocol::frame::{
    Error as ServerError, HistoryAnchor, HistoryBatch, Limits, Message, PresenceInfo, Receipt,
    SendAck, Target, TypingEvent, Welcome,
};
pub use confab_protocol::ErrorCode;
pub use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, Text, UserId};
