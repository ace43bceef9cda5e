//! The realtime gateway: thread-per-core WebSocket and QUIC sessions,
//! delivery in inbox order, presence and typing. Read the modules in the
//! order a message travels:
//!
//! - [`transport`]: socket → frame. Accept, TLS sniffing, the WebSocket
//!   upgrade and codec, QUIC, the io_uring and epoll backends, the writer.
//! - [`session`]: frame → request. One handler per request frame.
//! - [`shard`]: the core's users, as sans-IO state ([`shard::ShardState`])
//!   with a thin driver: its mailbox, its storage producer (the storage
//!   writers commit to the log and complete back here).
//! - [`fanout`]: a stored message encoded once, released in inbox order,
//!   queued per connection, then back to [`transport`]'s writer → socket.
//!
//! [`service`] starts the cores and stops them with the node; [`ports`]
//! is what the gateway needs from the rest of the node (directory, token
//! verification, push), implemented by the `confab` binary.

pub mod config;
pub mod fanout;
pub mod metrics;
pub mod ports;
pub mod service;
pub mod session;
pub mod settings;
pub mod shard;
pub mod transport;
mod vec_pool;

pub use self::service::{make_bus, Gateway, Parts, ShutdownWatch};
pub use self::settings::{IoMode, PlainWs, Settings};
