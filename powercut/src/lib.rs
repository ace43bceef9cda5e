//! A filesystem for simulating power loss.
//!
//! A process killed with SIGKILL leaves everything it wrote in the page
//! cache, where the kernel keeps it: kill -9 cannot show whether a program
//! waits for the fsync that makes a write durable before it promises
//! anything. This crate mounts a FUSE passthrough filesystem over a backing
//! directory and remembers, per file, what every write since that file's
//! last fsync replaced. [`PowerCut::cut`] puts all of it back, so the
//! backing directory holds exactly what the fsyncs made durable, as a disk
//! would after the power went off (in the style of Jepsen's LazyFS).
//!
//! The model: file contents are durable only through `fsync`/`fdatasync`
//! of that file; metadata (creating, renaming, unlinking) is durable at
//! once. A file created and never synced comes back empty. Writes are
//! forgotten whole (no torn sectors).
//!
//! Mounting needs `/dev/fuse` and the right to mount (root: the mount is
//! made with mount(2), no `fusermount` helper).

mod fs;
mod nodes;
mod undo;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption};

/// What a power cut took back (or would).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Files with unsynced changes.
    pub files: u64,
    /// Unsynced bytes: written past each file's durable end, plus those
    /// whose overwrite was undone.
    pub bytes: u64,
}

/// Why the filesystem could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The backing directory is not a directory we can use.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The kernel refused the mount (no `/dev/fuse`, or not allowed).
    #[error(
        "mounting the power-cut filesystem on {path}: {source} \
         (needs /dev/fuse and the right to mount, i.e. root)"
    )]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The mounted filesystem; unmounted on drop.
pub struct PowerCut {
    shared: Arc<fs::Shared>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl PowerCut {
    /// Mounts the filesystem of `backing` on `mountpoint` (both existing
    /// directories).
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<PowerCut, MountError> {
        let root = backing
            .canonicalize()
            .and_then(|p| {
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(io::Error::from(io::ErrorKind::NotADirectory))
                }
            })
            .map_err(|source| MountError::Backing {
                path: backing.to_owned(),
                source,
            })?;
        let shared = Arc::new(fs::Shared::new(root));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("confab-powercut".into()),
            MountOption::Subtype("powercut".into()),
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        // A thread blocked in a backing fsync does not hold up the others.
        config.n_threads = Some(4);
        config.clone_fd = true;
        let session = fuser::spawn_mount(fs::PowerCutFs(shared.clone()), mountpoint, &config)
            .map_err(|source| MountError::Mount {
                path: mountpoint.to_owned(),
                source,
            })?;
        Ok(PowerCut {
            shared,
            session: Some(session),
            mountpoint: mountpoint.to_owned(),
        })
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The power cut: every file goes back to what its last fsync made
    /// durable. Call it with no process writing through the mount (kill
    /// them and wait for them first): a write that lands after the cut
    /// starts the next epoch.
    pub fn cut(&self) -> io::Result<Cut> {
        self.shared.cut()
    }

    /// What a cut now would take back.
    pub fn unsynced(&self) -> Cut {
        self.shared.unsynced()
    }

    /// Unmounts, reporting a failure to (drop does the same, silently).
    pub fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
