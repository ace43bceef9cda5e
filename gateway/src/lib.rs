//! The confab server as a library, so that integration tests and benches
//! can start its roles in-process; the `confab` binary (main.rs) is a thin
//! command-line front over it.

pub mod api;
pub mod auth;
pub mod config;
pub mod events;
pub mod gateway;
pub mod metrics;
pub mod push;
pub mod serve;
pub mod store;
pub mod tls;
pub mod ws;
