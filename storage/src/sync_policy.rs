//! The durability knob: when is an append acknowledged relative to fsync.

use crate::error::ParseSyncPolicyError;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When the write-ahead log is fsynced, and therefore what an acknowledgement
/// promises. See `docs/storage.md` ("Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// The WAL is fsynced once per group commit, before any completion of that
    /// group is sent: an acknowledged message survives power loss.
    #[default]
    Batch,
    /// Completions are sent as soon as the group is written; a background
    /// thread fsyncs the WAL every this many milliseconds, so a power loss can
    /// lose up to that window of acknowledged messages (a process crash loses
    /// nothing: the WAL is already in the OS page cache).
    Interval(u64),
    /// Never fsync explicitly; durability is left to the OS write-back.
    None,
}

impl SyncPolicy {
    /// The interval for [`SyncPolicy::Interval`].
    pub fn interval(self) -> Option<Duration> {
        match self {
            SyncPolicy::Interval(ms) => Some(Duration::from_millis(ms)),
            _ => None,
        }
    }
}

impl FromStr for SyncPolicy {
    type Err = ParseSyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "batch" => Ok(SyncPolicy::Batch),
            "none" => Ok(SyncPolicy::None),
            _ => match s.strip_prefix("interval:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(SyncPolicy::Interval(ms)),
                    _ => Err(ParseSyncPolicyError::BadInterval(ms.to_string())),
                },
                None => Err(ParseSyncPolicyError::Unknown(s.to_string())),
            },
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Batch => f.write_str("batch"),
            SyncPolicy::Interval(ms) => write!(f, "interval:{ms}"),
            SyncPolicy::None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips() {
        for (text, policy) in [
            ("batch", SyncPolicy::Batch),
            ("none", SyncPolicy::None),
            ("interval:250", SyncPolicy::Interval(250)),
        ] {
            assert_eq!(text.parse::<SyncPolicy>(), Ok(policy));
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(" batch ".parse::<SyncPolicy>(), Ok(SyncPolicy::Batch));
    }

    #[test]
    fn rejects_bad_strings_with_typed_errors() {
        assert_eq!(
            "always".parse::<SyncPolicy>(),
            Err(ParseSyncPolicyError::Unknown("always".into()))
        );
        for bad in ["interval:", "interval:0", "interval:-5", "interval:1s"] {
            assert!(matches!(
                bad.parse::<SyncPolicy>(),
                Err(ParseSyncPolicyError::BadInterval(_))
            ));
        }
    }

    #[test]
    fn default_is_batch() {
        assert_eq!(SyncPolicy::default(), SyncPolicy::Batch);
        assert_eq!(
            SyncPolicy::Interval(5).interval(),
            Some(Duration::from_millis(5))
        );
        assert_eq!(SyncPolicy::Batch.interval(), None);
    }
}
