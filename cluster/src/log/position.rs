//! How far this node's RocksDB has applied the replicated log, kept in a
//! small file beside it. It is written only after RocksDB was synced
//! through that point, so after any crash the node resumes at or before
//! where its store really is; replaying a record twice changes nothing
//! (sends are deduplicated by their idempotency keys, marks only move
//! forward).

use std::io;
use std::path::{Path, PathBuf};

use confab_types::write_durably;

/// The file's name in the data directory.
pub const POSITION_FILE: &str = "cluster-applied";

/// What the file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// When the stream was created (ns since the epoch, as JetStream
    /// reports it): a store built from another cluster's stream is refused.
    pub stream_created_ns: i128,
    /// The last stream sequence applied.
    pub applied: u64,
}

impl Position {
    /// Written before a cluster node creates its store, so that a store
    /// killed before it applied anything is still known as a cluster's:
    /// no stream yet, nothing applied.
    pub const UNBOUND: Position = Position {
        stream_created_ns: 0,
        applied: 0,
    };
}

/// The position file of one data directory.
#[derive(Debug, Clone)]
pub struct PositionFile {
    path: PathBuf,
}

impl PositionFile {
    /// The file in `data_dir`.
    pub fn new(data_dir: &Path) -> PositionFile {
        PositionFile {
            path: data_dir.join(POSITION_FILE),
        }
    }

    /// The recorded position; `None` when the node never applied a record.
    pub fn load(&self) -> io::Result<Option<Position>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not \"<created> <applied>\"", self.path.display()),
            )
        };
        let mut parts = text.split_whitespace();
        let created = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let applied = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Some(Position {
            stream_created_ns: created,
            applied,
        }))
    }

    /// Records `position` (replacing the file whole).
    pub fn save(&self, position: Position) -> io::Result<()> {
        let text = format!("{} {}\n", position.stream_created_ns, position.applied);
        write_durably(&self.path, text.as_bytes(), 0o600, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_position_loads_back_and_garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("confab-position-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = PositionFile::new(&dir);
        let _ = std::fs::remove_file(dir.join(POSITION_FILE));
        assert_eq!(file.load().unwrap(), None);
        let p = Position {
            stream_created_ns: 1_765_000_000_123_456_789,
            applied: 42,
        };
        file.save(p).unwrap();
        assert_eq!(file.load().unwrap(), Some(p));
        std::fs::write(dir.join(POSITION_FILE), "12\n").unwrap();
        assert_eq!(file.load().unwrap_err().kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
