//! The directory: who exists and who may talk to whom. Accounts and
//! profiles, login sessions with their access and refresh tokens, devices
//! and push tokens, friendships, channels and their members, all in one
//! relational store (SQLite embedded, PostgreSQL when several nodes share
//! it). Every committed change is announced on an [`events::EventBus`] so
//! that the gateway's per-core caches never have to ask per message.
//!
//! The HTTP API writes here; the gateway and the push worker read here
//! through adapters the `confab` binary wires in. This crate imports
//! neither.

pub mod auth;
pub mod events;
pub mod store;
