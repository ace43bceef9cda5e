//! Transports: from a socket to frames and back. The accepting core
//! tells TLS from plain HTTP on the WebSocket port, upgrades, reads and
//! verifies `Hello`, then hands the connection to its user's core
//! ([`listener`], [`upgrade`]); there the [`websocket`] session reads
//! frames into the session's handlers and its writer drains the shard's
//! outbound queue onto the [`stream`]. QUIC connections stay on the core
//! that accepted them and are linked to the user's core ([`quic`]).

pub mod buffers;
pub mod listener;
pub mod quic;
pub mod records;
pub mod runtime;
pub mod stream;
pub mod tls;
pub mod tls_accept;
pub mod upgrade;
pub mod websocket;
pub mod writer;
/// The WebSocket codec, sans-IO (its own crate, so it can be fuzzed
/// without the gateway's IO and storage).
pub use confab_ws as ws;

pub use self::runtime::IoMode;
