//! The SDK's one error type. Transport failures never surface here: the
//! background task reconnects and reports them as events, so a call fails
//! only when waiting longer cannot help (bad input, a refusal for good, or a
//! closed client).

use confab_protocol::ErrorCode;

/// Why a call on the client failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL does not parse or names an unsupported scheme.
    #[error("invalid server URL {0}")]
    InvalidUrl(String),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The TLS settings could not be used (an unreadable or malformed
    /// certificate, an invalid server name).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The text breaks the protocol's rules (empty, or longer than the
    /// server's `max_text_chars`); nothing was sent.
    #[error("invalid text: {0}")]
    InvalidText(ErrorCode),
    /// Too many sends are waiting for their acknowledgement; wait for some
    /// to resolve.
    #[error("{0} sends are already waiting for their ack")]
    TooManyPending(usize),
    /// The server refused the request for good (for example
    /// `FORBIDDEN_CHANNEL` or `NOT_FOUND`); sending it again will not help.
    #[error("refused by the server: {code}: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// The server refused the session's credentials or protocol version;
    /// the client does not reconnect until [`Client::set_token`] gives it
    /// a new token.
    ///
    /// [`Client::set_token`]: crate::Client::set_token
    #[error("the server refused the session: {code}: {message}")]
    Refused {
        /// The error code (`UNAUTHENTICATED`, `TOKEN_EXPIRED`,
        /// `TOKEN_REVOKED` or `UNSUPPORTED_VERSION`).
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// The client was closed (by [`Client::close`] or by dropping every
    /// handle) before the call completed. For a send, the outcome is
    /// unknown: it may have been stored.
    ///
    /// [`Client::close`]: crate::Client::close
    #[error("the client is closed")]
    Closed,
}
