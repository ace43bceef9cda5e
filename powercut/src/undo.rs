//! What a power cut takes back from one file: the bytes each unsynced change
//! overwrote, newest last, and the length the file had when it was last
//! made durable.
//!
//! Changes go straight to the backing file (so reads need no overlay); the
//! undo steps let a cut put back exactly what the last fsync left. A step
//! keeps only the bytes that existed under the range it changed: appending
//! costs nothing, so a log that only appends (RocksDB's WAL, its SST files)
//! costs no memory here however much it writes between fsyncs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The bytes one change replaced.
struct Step {
    offset: u64,
    old: Vec<u8>,
}

/// A file's changes since its last fsync.
pub(crate) struct Pending {
    /// Tells this entry from a later one for the same file (an fsync's
    /// mark must not apply to an entry created after it).
    pub(crate) id: u64,
    file: Arc<File>,
    /// The length the last fsync made durable.
    durable_len: u64,
    /// The length now.
    len: u64,
    steps: Vec<Step>,
    /// Bytes held in `steps`.
    held: u64,
}

/// Where an fsync started: the steps it covers and the length it makes
/// durable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    id: u64,
    steps: usize,
    len: u64,
}

impl Pending {
    /// A file with no unsynced change yet, `len` bytes long.
    pub(crate) fn new(id: u64, file: Arc<File>, len: u64) -> Pending {
        Pending {
            id,
            file,
            durable_len: len,
            len,
            steps: Vec::new(),
            held: 0,
        }
    }

    /// Keeps what a write of `len` bytes at `offset` is about to replace;
    /// call just before the write, under the same lock.
    pub(crate) fn before_write(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.saturating_add(len).min(self.len);
        if end > offset {
            self.keep(offset, end)?;
        }
        self.len = self.len.max(offset.saturating_add(len));
        Ok(())
    }

    /// Keeps what setting the length to `new_len` is about to cut off.
    pub(crate) fn before_set_len(&mut self, new_len: u64) -> io::Result<()> {
        if new_len < self.len {
            self.keep(new_len, self.len)?;
        }
        self.len = new_len;
        Ok(())
    }

    /// A preallocation that may grow the file (zeros past the old end).
    pub(crate) fn grown_to(&mut self, len: u64) {
        self.len = self.len.max(len);
    }

    fn keep(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut old = vec![0; (to - from) as usize];
        let mut read = 0;
        while read < old.len() {
            match self.file.read_at(&mut old[read..], from + read as u64)? {
                0 => break,
                n => read += n,
            }
        }
        old.truncate(read);
        self.held += old.len() as u64;
        self.steps.push(Step { offset: from, old });
        Ok(())
    }

    /// An fsync starts now.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            id: self.id,
            steps: self.steps.len(),
            len: self.len,
        }
    }

    /// The fsync that started at `mark` returned: what it covered is
    /// durable. Whether nothing unsynced is left.
    pub(crate) fn synced(&mut self, mark: Mark) -> bool {
        if mark.id != self.id {
            return false;
        }
        for step in self.steps.drain(..mark.steps) {
            self.held -= step.old.len() as u64;
        }
        self.durable_len = mark.len;
        self.steps.is_empty() && self.len == self.durable_len
    }

    /// Bytes of unsynced data a cut would take back (writes past the
    /// durable end plus the bytes held to undo overwrites).
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.len.saturating_sub(self.durable_len) + self.held
    }

    /// The power cut: puts back every byte the unsynced changes replaced,
    /// newest first, then the durable length.
    pub(crate) fn roll_back(self) -> io::Result<()> {
        for step in self.steps.iter().rev() {
            self.file.write_all_at(&step.old, step.offset)?;
        }
        self.file.set_len(self.durable_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8]) -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content)
            .unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, Arc::new(f))
    }

    fn contents(f: &File) -> Vec<u8> {
        let len = f.metadata().unwrap().len() as usize;
        let mut out = vec![0; len];
        f.read_exact_at(&mut out, 0).unwrap();
        out
    }

    fn write(p: &mut Pending, f: &File, at: u64, data: &[u8]) {
        p.before_write(at, data.len() as u64).unwrap();
        f.write_all_at(data, at).unwrap();
    }

    fn set_len(p: &mut Pending, f: &File, len: u64) {
        p.before_set_len(len).unwrap();
        f.set_len(len).unwrap();
    }

    #[test]
    fn a_cut_restores_overwrites_appends_and_truncations() {
        let (_d, f) = file(b"0123456789");
        let mut p = Pending::new(1, f.clone(), 10);
        write(&mut p, &f, 2, b"ab");
        write(&mut p, &f, 8, b"XYZW");
        set_len(&mut p, &f, 4);
        write(&mut p, &f, 6, b"q");
        write(&mut p, &f, 3, b"!!!!!!!!!!!!!!");
        assert_ne!(contents(&f), b"0123456789");
        p.roll_back().unwrap();
        assert_eq!(contents(&f), b"0123456789");
    }

    #[test]
    fn appends_hold_no_bytes() {
        let (_d, f) = file(b"abc");
        let mut p = Pending::new(1, f.clone(), 3);
        for i in 0..100u64 {
            write(&mut p, &f, 3 + i * 10, b"0123456789");
        }
        assert_eq!(p.held, 0);
        assert_eq!(p.unsynced_bytes(), 1000);
        p.roll_back().unwrap();
        assert_eq!(contents(&f), b"abc");
    }

    #[test]
    fn an_fsync_keeps_what_it_covered_and_only_that() {
        let (_d, f) = file(b"");
        let mut p = Pending::new(1, f.clone(), 0);
        write(&mut p, &f, 0, b"durable!");
        let mark = p.mark();
        // Written while the fsync runs: not covered by it.
        write(&mut p, &f, 4, b"LATE");
        write(&mut p, &f, 8, b"tail");
        assert!(!p.synced(mark));
        p.roll_back().unwrap();
        assert_eq!(contents(&f), b"durable!");
    }

    #[test]
    fn a_mark_of_an_older_entry_is_ignored() {
        let (_d, f) = file(b"");
        let old = Pending::new(1, f.clone(), 0);
        let mark = old.mark();
        let mut p = Pending::new(2, f.clone(), 0);
        write(&mut p, &f, 0, b"x");
        assert!(!p.synced(mark));
        p.roll_back().unwrap();
        assert_eq!(contents(&f), b"");
    }

    #[test]
    fn a_fully_synced_entry_says_so() {
        let (_d, f) = file(b"ab");
        let mut p = Pending::new(1, f.clone(), 2);
        write(&mut p, &f, 0, b"cd");
        write(&mut p, &f, 2, b"ef");
        let mark = p.mark();
        assert!(p.synced(mark));
        assert_eq!(p.unsynced_bytes(), 0);
    }
}
