//! The push provider clients against local fake providers: a Google OAuth
//! token endpoint and FCM HTTP v1 (TLS), APNs (TLS, HTTP/2 only) and a
//! webhook relay (plain HTTP). Each fake checks every request the way the
//! real provider documents it (paths, headers, signed tokens, JSON shape)
//! and answers with the provider's documented bodies; each test asserts the
//! exact `Outcome` for each scripted answer and how many requests were made.

mod apns;
mod fake;
mod fcm;
mod http;
mod webhook;
