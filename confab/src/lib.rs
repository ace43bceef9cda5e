//! The confab server as a library: the [`node::Node`] that `confab serve`
//! runs, made of the other crates' roles, so that integration tests and
//! benches start exactly what the binary starts. It holds no role of its
//! own: the configuration file, the wiring between roles, the services
//! that start and stop them together, and the process-level endpoints.

pub mod admin;
pub mod backup;
pub mod cluster;
mod cluster_directory;
mod cluster_relay;
pub mod config;
pub mod heap_trim;
pub mod metrics;
pub mod node;
pub mod process_metrics;
pub mod service;
mod services;
pub mod wiring;

pub use node::{Node, NodeBuilder};
