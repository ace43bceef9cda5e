//! Error types of the crate: one enum per failure domain so callers can match on
//! what they can act on (retry, reject the request, restart storage).

use thiserror::Error;

/// A request the store refuses before touching any state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidRequest {
    /// More recipients than a group may have.
    #[error("{count} recipients exceed the limit of {max}")]
    TooManyRecipients {
        /// Recipients in the request (after collapsing duplicates).
        count: usize,
        /// [`crate::MAX_RECIPIENTS`].
        max: usize,
    },
    /// Message text larger than the store accepts.
    #[error("text of {len} bytes exceeds the limit of {max}")]
    TextTooLong {
        /// Text length in bytes.
        len: usize,
        /// [`crate::MAX_TEXT_BYTES`].
        max: usize,
    },
}

/// Failure of a storage operation.
///
/// `Clone` because one failed group commit fails every request in the group and
/// each of them gets its own completion.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// The request was rejected; nothing was stored.
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidRequest),
    /// The storage engine reported an error.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// Bytes on disk do not decode; the store is damaged or was written by an
    /// incompatible version.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// An earlier write or sync failed, so in-memory sequence counters may no
    /// longer match the disk; the log refuses writes until it is reopened.
    #[error("log is poisoned by an earlier write failure; reopen it")]
    Poisoned,
    /// A directory or option problem when opening the store.
    #[error("cannot open store: {0}")]
    Open(String),
    /// A replicated log did not take the write in time; retrying it (with
    /// the same idempotency key) is safe.
    #[error("log unavailable: {0}")]
    Unavailable(String),
}

impl From<rocksdb::Error> for StorageError {
    fn from(err: rocksdb::Error) -> Self {
        StorageError::Engine(err.into_string())
    }
}

/// A [`crate::SyncPolicy`] string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseSyncPolicyError {
    /// Not one of `batch`, `interval:<ms>`, `none`.
    #[error("unknown sync policy {0:?}; expected \"batch\", \"interval:<ms>\" or \"none\"")]
    Unknown(String),
    /// `interval:` followed by something that is not a positive integer.
    #[error("bad interval {0:?}; expected a positive number of milliseconds")]
    BadInterval(String),
}
