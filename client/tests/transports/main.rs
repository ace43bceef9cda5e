//! The TLS transports against minimal scripted servers over real sockets:
//! QUIC with the stream layout of docs/protocol.md section 15 (control
//! stream, lanes that overtake each other, frames split across writes,
//! datagrams, a connection closed by its application error code), and
//! WebSocket over TLS with certificate and server-name checks.
//!
//! The gateway-facing tests are gateway/tests/client_sdk.rs; these exist
//! because the gateway does not serve QUIC and wss yet, and because a
//! scripted server can misbehave in exactly the ways the client must
//! survive.

mod burst;
mod local_ip;
mod quic;
mod support;
mod wss;
