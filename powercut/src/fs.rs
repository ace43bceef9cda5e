//! The passthrough filesystem: every operation goes to the backing
//! directory at once; data changes are also entered in their file's undo
//! log until an fsync of that file returns.
//!
//! Metadata (create, rename, unlink, mkdir) is durable as soon as it is
//! done, as on a filesystem that journals metadata synchronously; only file
//! contents are forgotten by a cut. Attributes are never cached by the
//! kernel (a cut changes lengths behind its back), and without
//! `FOPEN_KEEP_CACHE` each open drops the kernel's cached pages of the file,
//! so a process started after a cut reads what the cut left.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::nodes::{Nodes, ROOT};
use crate::undo::Pending;
use crate::Cut;

/// Nothing is cached by the kernel: a cut changes what it would cache.
const TTL: Duration = Duration::ZERO;

enum Handle {
    File { ino: u64, file: Arc<File> },
    Dir(Vec<(u64, FileType, OsString)>),
}

#[derive(Default)]
struct Files {
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pending: HashMap<u64, Pending>,
    next_pending: u64,
}

/// What the mounted filesystem and its owner share.
pub(crate) struct Shared {
    root: PathBuf,
    nodes: Mutex<Nodes>,
    files: Mutex<Files>,
}

impl Shared {
    pub(crate) fn new(root: PathBuf) -> Shared {
        Shared {
            nodes: Mutex::new(Nodes::new(root.clone())),
            root,
            files: Mutex::new(Files::default()),
        }
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power cut: every file back to what its last fsync made durable.
    pub(crate) fn cut(&self) -> io::Result<Cut> {
        let mut files = self.files();
        let mut cut = Cut::default();
        for (_, p) in files.pending.drain() {
            cut.files += 1;
            cut.bytes += p.unsynced_bytes();
            p.roll_back()?;
        }
        Ok(cut)
    }

    /// What a cut now would take back.
    pub(crate) fn unsynced(&self) -> Cut {
        let files = self.files();
        Cut {
            files: files.pending.len() as u64,
            bytes: files.pending.values().map(Pending::unsynced_bytes).sum(),
        }
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.nodes()
            .path(ino.0)
            .map(Path::to_owned)
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    /// `path`'s attributes under its (possibly new) number.
    fn entry(&self, path: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(path).map_err(Errno::from)?;
        let ino = self.nodes().ino(path);
        Ok(attr(ino, &meta))
    }

    fn file(&self, fh: FileHandle) -> Result<(u64, Arc<File>), Errno> {
        match self.files().handles.get(&fh.0) {
            Some(Handle::File { ino, file }) => Ok((*ino, file.clone())),
            _ => Err(Errno::EBADF),
        }
    }

    fn add_handle(&self, handle: Handle) -> u64 {
        let mut files = self.files();
        files.next_fh += 1;
        let fh = files.next_fh;
        files.handles.insert(fh, handle);
        fh
    }

    /// Runs `change` on `file` with its undo log entry, creating the entry
    /// (at the file's current length) on the first unsynced change.
    fn change<R>(
        &self,
        ino: u64,
        file: &Arc<File>,
        change: impl FnOnce(&mut Pending) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut files = self.files();
        let files = &mut *files;
        let pending = match files.pending.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                files.next_pending += 1;
                let len = file.metadata()?.len();
                e.insert(Pending::new(files.next_pending, file.clone(), len))
            }
        };
        change(pending)
    }

    /// Removes `name` from `parent` with `remove` (a file or a directory);
    /// a file created there later gets a new number.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(&Path) -> io::Result<()>,
    ) -> Result<(), Errno> {
        let path = self.child(parent, name)?;
        remove(&path)?;
        self.nodes().remove(&path);
        Ok(())
    }

    fn set_len(&self, ino: u64, file: &Arc<File>, len: u64) -> io::Result<()> {
        // Opening with O_TRUNC an empty or new file changes nothing.
        if !self.files().pending.contains_key(&ino) && file.metadata()?.len() == len {
            return Ok(());
        }
        self.change(ino, file, |p| {
            p.before_set_len(len)?;
            file.set_len(len)
        })
    }

    fn open_file(&self, path: &Path, flags: i32, create: Option<u32>) -> io::Result<File> {
        let mut options = OpenOptions::new();
        // Writable handles can read too: the undo log reads what a write
        // replaces.
        match flags & libc::O_ACCMODE {
            libc::O_WRONLY | libc::O_RDWR => options.read(true).write(true),
            _ => options.read(true),
        };
        if let Some(mode) = create {
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            } else {
                options.create(true);
            }
            options.mode(mode);
        }
        // O_APPEND is the kernel's business (it sends the offset); O_TRUNC
        // goes through the undo log.
        options.custom_flags(flags & libc::O_NOFOLLOW);
        options.open(path)
    }
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos as u32)
    } else {
        UNIX_EPOCH
    }
}

fn kind(t: std::fs::FileType) -> FileType {
    FileType::from_std(t).unwrap_or(FileType::RegularFile)
}

fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(m.file_type()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

fn timestamp(t: Option<TimeOrNow>) -> rustix::fs::Timespec {
    match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            rustix::fs::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos().into(),
            }
        }
    }
}

/// Answers a request that returns nothing but success or an error.
fn answer(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// The filesystem handed to fuser; the owner keeps the same [`Shared`].
pub(crate) struct PowerCutFs(pub(crate) Arc<Shared>);

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.child(parent, name).and_then(|p| self.0.entry(&p)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let meta = match fh.map(|fh| self.0.file(fh)) {
            Some(Ok((_, file))) => file.metadata().map_err(Errno::from),
            _ => self
                .0
                .path(ino)
                .and_then(|p| std::fs::symlink_metadata(p).map_err(Errno::from)),
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = (|| -> Result<Metadata, Errno> {
            let path = self.0.path(ino)?;
            if let Some(len) = size {
                let file = match fh.map(|fh| self.0.file(fh)) {
                    Some(Ok((_, file))) => file,
                    _ => Arc::new(OpenOptions::new().read(true).write(true).open(&path)?),
                };
                self.0.set_len(ino.0, &file, len)?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                rustix::fs::chownat(
                    rustix::fs::CWD,
                    &path,
                    uid.map(rustix::fs::Uid::from_raw),
                    gid.map(rustix::fs::Gid::from_raw),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io::Error::from)?;
            }
            if atime.is_some() || mtime.is_some() {
                let times = rustix::fs::Timestamps {
                    last_access: timestamp(atime),
                    last_modification: timestamp(mtime),
                };
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    &path,
                    &times,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io::Error::from)?;
            }
            Ok(std::fs::symlink_metadata(&path)?)
        })();
        match result {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.0.child(parent, name).and_then(|path| {
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&path)?;
            self.0.entry(&path)
        });
        match result {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(
            reply,
            self.0.remove(parent, name, |p| std::fs::remove_file(p)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(
            reply,
            self.0.remove(parent, name, |p| std::fs::remove_dir(p)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = (|| -> Result<(), Errno> {
            let from = self.0.child(parent, name)?;
            let to = self.0.child(newparent, newname)?;
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &from,
                rustix::fs::CWD,
                &to,
                rustix::fs::RenameFlags::from_bits_retain(flags.bits()),
            )
            .map_err(io::Error::from)?;
            let mut nodes = self.0.nodes();
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                let parked = from.with_extension("powercut-exchange");
                nodes.rename(&from, &parked);
                nodes.rename(&to, &from);
                nodes.rename(&parked, &to);
            } else {
                nodes.rename(&from, &to);
            }
            Ok(())
        })();
        answer(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = (|| -> Result<u64, Errno> {
            let path = self.0.path(ino)?;
            let file = Arc::new(self.0.open_file(&path, flags.0, None)?);
            if flags.0 & libc::O_TRUNC != 0 {
                self.0.set_len(ino.0, &file, 0)?;
            }
            Ok(self.0.add_handle(Handle::File { ino: ino.0, file }))
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = (|| -> Result<(FileAttr, u64), Errno> {
            let path = self.0.child(parent, name)?;
            let file = Arc::new(
                self.0
                    .open_file(&path, flags, Some(mode & !umask & 0o7777))?,
            );
            let ino = self.0.nodes().ino(&path);
            if flags & libc::O_TRUNC != 0 {
                self.0.set_len(ino, &file, 0)?;
            }
            let a = attr(ino, &file.metadata()?);
            Ok((a, self.0.add_handle(Handle::File { ino, file })))
        })();
        match result {
            Ok((a, fh)) => {
                reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.0.file(fh).and_then(|(_, file)| {
            let mut buf = vec![0; size as usize];
            let mut read = 0;
            while read < buf.len() {
                match file.read_at(&mut buf[read..], offset + read as u64)? {
                    0 => break,
                    n => read += n,
                }
            }
            buf.truncate(read);
            Ok(buf)
        });
        match result {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.0.file(fh).and_then(|(ino, file)| {
            self.0
                .change(ino, &file, |p| {
                    p.before_write(offset, data.len() as u64)?;
                    file.write_all_at(data, offset)
                })
                .map_err(Errno::from)
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.files().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.0.file(fh).and_then(|(ino, file)| {
            // What is written before the fsync starts is what it covers;
            // writes that land while it runs stay unsynced.
            let mark = self.0.files().pending.get(&ino).map(Pending::mark);
            if datasync {
                file.sync_data()?;
            } else {
                file.sync_all()?;
            }
            if let Some(mark) = mark {
                let mut files = self.0.files();
                if files.pending.get_mut(&ino).is_some_and(|p| p.synced(mark)) {
                    files.pending.remove(&ino);
                }
            }
            Ok(())
        });
        answer(reply, result);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = (|| -> Result<u64, Errno> {
            let path = self.0.path(ino)?;
            let mut entries = Vec::new();
            let parent = path
                .parent()
                .filter(|_| ino.0 != ROOT)
                .map_or(ROOT, |p| self.0.nodes().ino(p));
            entries.push((ino.0, FileType::Directory, OsString::from(".")));
            entries.push((parent, FileType::Directory, OsString::from("..")));
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                let child = self.0.nodes().ino(&entry.path());
                entries.push((child, kind(entry.file_type()?), entry.file_name()));
            }
            Ok(self.0.add_handle(Handle::Dir(entries)))
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let files = self.0.files();
        let Some(Handle::Dir(entries)) = files.handles.get(&fh.0) else {
            drop(files);
            reply.error(Errno::EBADF);
            return;
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        drop(files);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.0.files().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata is durable as soon as it is done (module comment).
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.0.root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from(io::Error::from(e))),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Preallocation only: modes that change data (punching holes,
        // zeroing, collapsing) would need their bytes kept first, and no
        // user of this layer asks for them.
        if mode != 0 && mode != libc::FALLOC_FL_KEEP_SIZE {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let result = self.0.file(fh).and_then(|(ino, file)| {
            self.0
                .change(ino, &file, |p| {
                    rustix::fs::fallocate(
                        &*file,
                        rustix::fs::FallocateFlags::from_bits_retain(mode as u32),
                        offset,
                        length,
                    )
                    .map_err(io::Error::from)?;
                    if mode == 0 {
                        p.grown_to(offset.saturating_add(length));
                    }
                    Ok(())
                })
                .map_err(Errno::from)
        });
        answer(reply, result);
    }

    // No extended attributes. ENOSYS, as fuser's defaults, but without
    // their warning: the kernel asks for `security.capability` before the
    // first write and, told ENOSYS, never asks again.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }
}
