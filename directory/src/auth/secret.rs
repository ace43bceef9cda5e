//! The HMAC key for access tokens when the config gives none: generated once
//! into the data directory, readable by the server's user only, so that
//! tokens survive a restart and `make run` needs no set-up.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// The key file's name inside the data directory.
pub const TOKEN_KEY_FILE: &str = "token.key";

/// Shortest key accepted, from the file or the config (HMAC-SHA256's block
/// of entropy).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing it failed.
    #[error("token key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// It does not hold a hex key of at least [`MIN_SECRET_BYTES`].
    #[error("token key {path}: expected at least {MIN_SECRET_BYTES} bytes as hex")]
    Invalid {
        /// The file.
        path: PathBuf,
    },
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, SecretError> {
    let text = fs::read_to_string(path).map_err(|source| SecretError::Io {
        path: path.to_owned(),
        source,
    })?;
    let key = decode_hex(&text).ok_or_else(|| SecretError::Invalid {
        path: path.to_owned(),
    })?;
    if key.len() < MIN_SECRET_BYTES {
        return Err(SecretError::Invalid {
            path: path.to_owned(),
        });
    }
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "token key is readable by other users; chmod 600 it");
        }
    }
    Ok(key)
}

/// Reads the key at `path`, or creates it (32 random bytes as hex, mode
/// 0600) when it does not exist. Two processes racing to create it end up
/// with the same key: the file is moved into place only if it is still
/// absent, and the loser reads the winner's.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let io_err = |source| SecretError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::metadata(path) {
        Ok(_) => return read(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut key = vec![0u8; MIN_SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // Whole or absent after a crash: an empty key file would keep the
    // node from starting.
    match confab_types::write_durably(path, format!("{hex}\n").as_bytes(), 0o600, false) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new access token key");
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_private_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_KEY_FILE);
        let a = load_or_create_secret(&path).unwrap();
        assert_eq!(a.len(), MIN_SECRET_BYTES);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_secret(&path).unwrap(), a);
    }

    #[test]
    fn a_short_or_garbled_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_KEY_FILE);
        fs::write(&path, "abcd\n").unwrap();
        assert!(matches!(
            load_or_create_secret(&path),
            Err(SecretError::Invalid { .. })
        ));
        fs::write(&path, "zz".repeat(40)).unwrap();
        assert!(matches!(
            load_or_create_secret(&path),
            Err(SecretError::Invalid { .. })
        ));
    }
}
