//! Inode numbers of our own for the backing directory's paths.
//!
//! The backing filesystem reuses inode numbers as soon as a file is gone
//! (RocksDB deletes and creates files all the time); handing those to the
//! kernel would let a new file inherit an old one's cached inode. Ours are
//! never reused: a path gets a fresh number after it is unlinked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The root's number, fixed by FUSE.
pub(crate) const ROOT: u64 = 1;

pub(crate) struct Nodes {
    by_ino: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
}

impl Nodes {
    /// `root` (the backing directory) as inode 1.
    pub(crate) fn new(root: PathBuf) -> Nodes {
        let mut nodes = Nodes {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        nodes.by_path.insert(root.clone(), ROOT);
        nodes.by_ino.insert(ROOT, root);
        nodes
    }

    pub(crate) fn path(&self, ino: u64) -> Option<&Path> {
        self.by_ino.get(&ino).map(PathBuf::as_path)
    }

    /// The number of `path`, given one if it has none.
    pub(crate) fn ino(&mut self, path: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_path.insert(path.to_owned(), ino);
        self.by_ino.insert(ino, path.to_owned());
        ino
    }

    /// `path` no longer exists; a file created there later is new.
    pub(crate) fn remove(&mut self, path: &Path) {
        if let Some(ino) = self.by_path.remove(path) {
            self.by_ino.remove(&ino);
        }
    }

    /// `from` was renamed to `to` (replacing whatever was there), with
    /// everything under it when it is a directory.
    pub(crate) fn rename(&mut self, from: &Path, to: &Path) {
        self.remove(to);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_owned(),
            };
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), ino);
            self.by_ino.insert(ino, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_never_reused_and_follow_renames() {
        let mut n = Nodes::new("/b".into());
        let a = n.ino(Path::new("/b/a"));
        assert_eq!(n.ino(Path::new("/b/a")), a);
        n.remove(Path::new("/b/a"));
        let a2 = n.ino(Path::new("/b/a"));
        assert_ne!(a, a2);
        assert_eq!(n.path(a), None);

        let d = n.ino(Path::new("/b/d"));
        let f = n.ino(Path::new("/b/d/f"));
        let t = n.ino(Path::new("/b/t"));
        n.rename(Path::new("/b/d"), Path::new("/b/t"));
        assert_eq!(n.path(d), Some(Path::new("/b/t")));
        assert_eq!(n.path(f), Some(Path::new("/b/t/f")));
        assert_eq!(n.path(t), None, "the replaced target is gone");
        // A sibling whose name merely starts with the same text stays.
        let dx = n.ino(Path::new("/b/dx"));
        n.rename(Path::new("/b/t"), Path::new("/b/u"));
        assert_eq!(n.path(dx), Some(Path::new("/b/dx")));
        assert_eq!(n.path(ROOT), Some(Path::new("/b")));
    }
}
