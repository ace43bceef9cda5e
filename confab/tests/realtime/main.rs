//! The realtime gateway end to end over real sockets: a whole node
//! (`confab::Node`, as `confab serve` starts it) driven by clients we did
//! not write (tokio-tungstenite for WebSocket, quinn for QUIC). Every
//! scenario that depends on the IO backend runs on both (io_uring where
//! the kernel allows it, and epoll).

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod bad_input;
mod client;
mod conformance;
mod delivery;
mod presence;
mod push;
mod quic;
mod refusals;
mod websocket;
