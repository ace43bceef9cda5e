//! The key of QUIC stateless resets, kept across restarts.
//!
//! A client whose server process died keeps sending to its address with
//! connection ids the new process does not know. The new process answers
//! each such packet with a stateless reset, which the client accepts only
//! if its token (an HMAC of the connection id under this key) is the one
//! the old process gave it. With the key kept in the data directory the
//! tokens match, and the client drops the dead connection at its next
//! packet and reconnects; with a fresh key it would wait out its idle
//! timeout (tens of seconds) first.

use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

/// The key's bytes (HMAC-SHA256, as quinn's default key).
pub const RESET_KEY_LEN: usize = 64;

/// The file in the data directory.
pub const RESET_KEY_FILE: &str = "quic-reset.key";

/// Reads the key from `data_dir`, making and saving one (owner-only) the
/// first time.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<[u8; RESET_KEY_LEN]> {
    let path = data_dir.join(RESET_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; RESET_KEY_LEN];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| std::io::Error::other("no randomness for the QUIC reset key"))?;
            // Whole or absent after a crash, and never replaced: a process
            // that lost a race to create it reads the winner's.
            match confab_types::write_durably(&path, &key, 0o600, false) {
                Ok(()) => Ok(key),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    parse(&path, &std::fs::read(&path)?)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> std::io::Result<[u8; RESET_KEY_LEN]> {
    bytes.try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} holds {} bytes, not {RESET_KEY_LEN}; remove it to make a new key",
                path.display(),
                bytes.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_read_back_alike() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_ne!(first, [0u8; RESET_KEY_LEN]);
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(RESET_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another directory, another key.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), first);
    }

    #[test]
    fn a_damaged_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESET_KEY_FILE), b"short").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            std::fs::read(dir.path().join(RESET_KEY_FILE)).unwrap(),
            b"short"
        );
    }
}
