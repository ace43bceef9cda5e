//! The confab server as a library: the node that `confab serve` runs,
//! made of the other crates' roles, so that integration tests and benches
//! start exactly what the binary starts. It holds no role of its own, only
//! the configuration file, the wiring between roles and the process-level
//! endpoints.

pub mod config;
pub mod metrics;
pub mod serve;
pub mod wiring;
