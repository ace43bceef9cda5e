//! Why a push provider client could not be built. These are start-up
//! errors (a missing key file, a key of the wrong kind, a CA file that is
//! not PEM): the node refuses to start rather than run a provider that can
//! never send. What goes wrong per send is an `Outcome`, never this.

use std::path::{Path, PathBuf};

/// A provider client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A key, service-account or CA file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A private key is not PKCS#8 PEM of the kind the provider signs with
    /// (RSA for FCM, P-256 for APNs).
    #[error("bad key: {0}")]
    Key(String),
    /// A setting the provider cannot work with (an endpoint that is not a
    /// URL, a service account of the wrong type).
    #[error("push config: {0}")]
    Config(String),
    /// The TLS client could not be configured.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Signing a token failed (ring refused; not expected with a key it
    /// accepted).
    #[error("signing: {0}")]
    Sign(String),
}

impl PushError {
    /// A [`PushError::File`] for `path`.
    pub fn file(path: &Path, message: impl ToString) -> Self {
        PushError::File {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}
