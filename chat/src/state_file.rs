//! What one installation remembers between runs, per user: its device id
//! and where its inbox stands. Without it a restart would either replay
//! the whole inbox (a new device id and cursor 0) or, worse, reuse client
//! message ids the server still remembers and have new sends taken for
//! retries of old ones.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ChatError;

/// Device ids stay below 2^53 so that any JSON consumer (a web client
/// reading the same ids) holds them exactly.
const DEVICE_ID_LIMIT: u64 = 1 << 53;

/// The saved state of one user's installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceState {
    /// This installation's device id, chosen at random once.
    pub device_id: u64,
    /// The inbox cursor of everything shown so far (`Events::cursor`).
    pub inbox_cursor: u64,
    /// The client message id the next send gets.
    pub next_client_msg_id: u64,
}

impl DeviceState {
    /// A new installation: a random device id in `1..2^53`, nothing seen,
    /// sends numbered from 1.
    pub fn fresh() -> DeviceState {
        DeviceState {
            device_id: rand::random_range(1..DEVICE_ID_LIMIT),
            inbox_cursor: 0,
            next_client_msg_id: 1,
        }
    }
}

/// Where one user's [`DeviceState`] lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// `dir/chat-<user>.toml`. The username must be one the API accepts
    /// (`a-z 0-9 _ . -`), which also keeps it a plain file name.
    pub fn for_user(dir: &Path, user: &str) -> Result<StateFile, ChatError> {
        let valid = !user.is_empty()
            && !user.starts_with('.')
            && user
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if !valid {
            return Err(ChatError::Usage(format!(
                "{user:?} is not a username (a-z, 0-9, '_', '.', '-')"
            )));
        }
        Ok(StateFile {
            path: dir.join(format!("chat-{user}.toml")),
        })
    }

    /// `$XDG_STATE_HOME/confab`, else `~/.local/state/confab`.
    pub fn default_dir() -> Option<PathBuf> {
        let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME").and_then(non_empty) {
            return Some(dir.join("confab"));
        }
        std::env::var_os("HOME")
            .and_then(non_empty)
            .map(|home| home.join(".local/state/confab"))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; a fresh one, saved at once, when there is none, so
    /// that the device id is fixed before it is ever used.
    pub fn load_or_create(&self) -> Result<DeviceState, ChatError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let state: DeviceState = toml::from_str(&text).map_err(|e| self.err(e))?;
                if state.device_id == 0
                    || state.device_id >= DEVICE_ID_LIMIT
                    || state.next_client_msg_id == 0
                {
                    return Err(self.err("device_id or next_client_msg_id out of range"));
                }
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = DeviceState::fresh();
                self.save(&state)?;
                Ok(state)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Replaces the file with `state`, whole or not at all.
    pub fn save(&self, state: &DeviceState) -> Result<(), ChatError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let text = toml::to_string(state).map_err(|e| self.err(e))?;
        confab_types::write_durably(&self.path, text.as_bytes(), 0o600, true)
            .map_err(|e| self.err(e))
    }

    fn err(&self, why: impl std::fmt::Display) -> ChatError {
        ChatError::StateFile {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_survives_a_round_trip_and_a_new_one_is_saved_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::for_user(&dir.path().join("nested"), "alice").unwrap();
        assert!(file.path().ends_with("nested/chat-alice.toml"));
        let first = file.load_or_create().unwrap();
        assert!(first.device_id > 0 && first.device_id < DEVICE_ID_LIMIT);
        assert_eq!((first.inbox_cursor, first.next_client_msg_id), (0, 1));
        // The fresh state was written: loading again keeps the device id.
        assert_eq!(file.load_or_create().unwrap(), first);
        let moved = DeviceState {
            inbox_cursor: 310,
            next_client_msg_id: 12,
            ..first
        };
        file.save(&moved).unwrap();
        assert_eq!(file.load_or_create().unwrap(), moved);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::for_user(dir.path(), "alice").unwrap();
        let state = file.load_or_create().unwrap();
        let mode = |f: &StateFile| std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode(&file) & 0o777, 0o600);
        file.save(&DeviceState {
            inbox_cursor: 5,
            ..state
        })
        .unwrap();
        assert_eq!(mode(&file) & 0o777, 0o600);
    }

    #[test]
    fn bad_names_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../x", "a/b", "Alice", ".hidden"] {
            assert!(StateFile::for_user(dir.path(), bad).is_err(), "{bad:?}");
        }
        let file = StateFile::for_user(dir.path(), "bob").unwrap();
        std::fs::write(
            file.path(),
            "device_id = 0\ninbox_cursor = 0\nnext_client_msg_id = 1\n",
        )
        .unwrap();
        assert!(matches!(
            file.load_or_create(),
            Err(ChatError::StateFile { .. })
        ));
        std::fs::write(file.path(), "not toml").unwrap();
        assert!(file.load_or_create().is_err());
    }
}
