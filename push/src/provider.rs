//! The one interface every push provider (FCM, APNs, webhook) implements, and
//! what the worker hands it: a notification already collapsed per channel,
//! already stripped of message text unless the operator asked for previews.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use confab_directory::store::Platform;

/// What one device is told about one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The recipient.
    pub user: u64,
    /// The channel with new messages.
    pub channel: u64,
    /// The newest message's channel sequence (what a tap opens at).
    pub seq: u64,
    /// Messages waiting in this channel since the user was last online:
    /// the number shown, updated in place by later notifications of the
    /// same `collapse_id` rather than repeated.
    pub count: u32,
    /// Author of the newest message.
    pub sender: u64,
    /// When the newest message was stored (ms since the epoch).
    pub timestamp_ms: u64,
    /// Same for every notification of this channel, so the device replaces
    /// the previous one (`apns-collapse-id`, FCM `collapse_key`/`tag`).
    pub collapse_id: String,
    /// Sender name and text; `None` unless `push.include_preview` is on.
    pub preview: Option<Preview>,
}

/// The optional human-readable part of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// Who wrote (display name).
    pub title: String,
    /// The text, cut to at most `PREVIEW_CHARS` characters.
    pub body: String,
}

/// Longest preview body, in characters.
pub const PREVIEW_CHARS: usize = 120;

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it.
    Sent,
    /// The provider says the token is dead (app uninstalled, token rotated):
    /// never send to it again.
    Unregistered,
    /// A transient failure (5xx, timeout, connection error, 429): try again,
    /// no sooner than `after` when the provider said so (Retry-After).
    Retry {
        /// The provider's own delay, if it gave one.
        after: Option<Duration>,
        /// Metric label: `status_503`, `timeout`, `connect`, `rate_limited`…
        reason: &'static str,
    },
    /// A permanent refusal of this request (bad payload, bad credentials,
    /// wrong topic): retrying would fail the same way.
    Rejected {
        /// Metric label: `bad_request`, `auth`, `status_403`…
        reason: &'static str,
        /// The provider's words, for the log.
        detail: String,
    },
}

/// A boxed send future; providers are used as trait objects.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One push provider.
pub trait Provider: Send + Sync + 'static {
    /// The device platform it serves.
    fn platform(&self) -> Platform;
    /// Metric label: `fcm`, `apns`, `webhook`.
    fn name(&self) -> &'static str;
    /// Delivers `n` to the device with `token`. Never panics on provider
    /// answers; every failure is an [`Outcome`].
    fn send<'a>(&'a self, token: &'a str, n: &'a Notification) -> SendFuture<'a>;
}
