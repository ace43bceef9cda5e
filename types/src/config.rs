//! The error every configuration section's `validate()` returns, so that a
//! bad value reads the same whichever role's section it is in.

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config value `{key}`: {message}")]
pub struct InvalidConfig {
    /// The key, e.g. `storage.writers`.
    pub key: &'static str,
    /// Why it was refused.
    pub message: String,
}

impl InvalidConfig {
    /// `key` is refused because of `message`.
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        InvalidConfig {
            key,
            message: message.into(),
        }
    }
}
