//! The realtime gateway: thread-per-core WebSocket and QUIC sessions,
//! delivery in inbox order, presence and typing. It reaches the directory,
//! token verification and push through the traits in
//! [`gateway::directory`] and [`gateway::push_hook`], which the `confab`
//! binary implements over the other roles' crates.

pub mod config;
pub mod gateway;
pub mod tls;
pub mod ws;
