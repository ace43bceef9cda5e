//! The client SDK (confab-client) against a real node: real gateway threads,
//! real RocksDB log and storage writers, the real SQLite store and real
//! tokens, over real sockets. The tests speak to the gateway only through
//! the SDK's public API, as an application would.
//!
//! The tests that exercise the session model (1:1, groups, catch-up,
//! history, presence, typing and receipts, refusals) run once over each
//! transport the SDK offers: plain `ws://`, `wss://` and `quic://`, each
//! against a node that serves all three, trusting the node's self-signed
//! certificate as an app pinning its server's would. One more test keeps
//! one user's devices on all three at once.
//!
//! `web` drives the web client the node serves in real headless Chromium
//! (`webdriver` is its WebDriver client).
//!
//! The terminal client (`confab chat`, crate confab-chat) is tested here
//! too (chat.rs): it is an SDK application, driven by key events and read
//! off its rendered screen.
//!
//! The last test is the one the SDK exists for: a TCP proxy between a
//! client and the gateway cuts the connection again and again while both
//! users send, and the receiving side must still see every message exactly
//! once and in order, and every send must resolve exactly once.

#[path = "../common/mod.rs"]
mod common;

#[macro_use]
mod harness;
mod backup;
mod chat;
mod cluster;
mod devices;
mod network;
mod session;
mod web;
mod webdriver;
