//! `bench`: the fixed load scenarios of `make bench`, each against a
//! freshly started release server, and the rewrite of the load
//! generator's section of docs/benchmarks.md with what they measured.
//!
//! The scenarios are the ones the mission's targets are stated in: the
//! highest 1:1 message rate whose ack p99 stays within 10 ms (with
//! `sync = batch` and with `sync = none`), latency at half that rate,
//! deliveries per second in 100-member groups, the transports side by side
//! and server memory per idle connection. Server and load generator share
//! the machine, so the figures are what one box does, not what a node does
//! behind a separate load fleet.
//!
//! This file holds what the command is given and the markers of the
//! section it owns; the work is split by concern: `server` starts and
//! stops the server under test, `search` runs steps and finds the highest
//! sustained rate, `scenarios` runs each scenario in turn, and `markdown`
//! writes the section and splices it into the document.

mod markdown;
mod scenarios;
mod search;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use markdown::{machine, replace_marked, replace_section, today};
pub use scenarios::bench;

/// Start of the section `bench` rewrites.
pub const BEGIN: &str =
    "<!-- loadgen:begin: rewritten by `make bench`; edit outside these markers -->";
/// End of that section.
pub const END: &str = "<!-- loadgen:end -->";

/// What `bench` was asked to do.
pub struct BenchOptions {
    /// The `confab` binary to start.
    pub confab: PathBuf,
    /// Where each run's JSON report goes.
    pub reports: PathBuf,
    /// Measured seconds per step.
    pub seconds: f64,
    /// Idle connections to hold.
    pub idle_connections: u64,
}
