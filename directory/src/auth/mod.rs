//! Authentication: access tokens, refresh tokens and password hashes.
//!
//! * An **access token** is a compact JWT signed with HMAC-SHA256 (`HS256`),
//!   carrying the user id (`sub`), the session id (`jti`), `iat` and `exp`.
//!   [`TokenVerifier`] checks it with no database round trip: signature,
//!   expiry, and an in-memory set of revoked sessions. The API feeds that
//!   set as soon as it revokes a session (same process), and every node
//!   polls the store for revocations made by other nodes.
//! * A **refresh token** is 256 random bits, stored only as its SHA-256 in
//!   the session's row, exchanged for a new pair on each use (rotation); a
//!   replayed refresh token revokes its session.
//! * Passwords are hashed with **argon2id** ([`Passwords`]).
//!
//! The HMAC key is `api.token_secret` from the config, or 32 random bytes
//! generated once into `data_dir/token.key` (mode 0600). Every node of a
//! deployment must use the same key.

mod password;
mod refresh;
mod secret;
mod token;

pub use password::{PasswordError, PasswordParams, Passwords};
pub use refresh::{hash_refresh_token, new_refresh_token, MAX_REFRESH_TOKEN_LEN};
pub use secret::{load_or_create_secret, SecretError, MIN_SECRET_BYTES, TOKEN_KEY_FILE};
pub use token::{Claims, TokenSigner, TokenVerifier, MAX_TOKEN_LEN};

/// Why an access token was refused. All of them mean HTTP 401; the
/// distinction tells a client whether refreshing can help (only after
/// `Expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a token of ours (wrong shape, encoding or algorithm).
    #[error("malformed access token")]
    Malformed,
    /// The signature does not match: forged, or signed with another key.
    #[error("invalid access token signature")]
    BadSignature,
    /// Past its `exp`.
    #[error("access token expired")]
    Expired,
    /// Its session was revoked (logout, refresh token reuse).
    #[error("access token revoked")]
    Revoked,
}
