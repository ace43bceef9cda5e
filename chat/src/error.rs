//! The library's one error type, so that the binary can print any failure
//! of `confab chat` as one line and the tests can match on what went wrong.

use std::path::PathBuf;

/// Why `confab chat` (or one of its HTTP calls) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// A command-line value that cannot work (an unknown transport, a
    /// username that cannot name a state file).
    #[error("{0}")]
    Usage(String),
    /// The HTTP API could not be reached, or answered something that is
    /// not the JSON it documents.
    #[error("{0}")]
    Http(String),
    /// The HTTP API refused a request with one of its error codes.
    #[error("{message} ({code})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's stable error code (`INVALID_CREDENTIALS`, …).
        code: String,
        /// The API's explanation.
        message: String,
    },
    /// The per-user state file could not be read or written.
    #[error("state file {}: {why}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// The SDK refused its configuration (for example an unreadable
    /// certificate file).
    #[error(transparent)]
    Client(#[from] confab_client::ClientError),
    /// The terminal could not be set up or written.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}
