//! One single-threaded runtime per core, on io_uring where the kernel (and
//! the container's seccomp profile) allows it, else a tokio current-thread
//! runtime on epoll. Either way each core runs a `LocalSet`, so the core's
//! state is plain `Rc`/`RefCell` and nothing on the hot path is shared
//! between threads.

use std::future::Future;
use std::io;

pub use crate::settings::IoMode;

/// Whether io_uring can be set up here: containers often block the
/// `io_uring_setup` syscall, and old kernels lack it.
pub fn uring_available() -> Result<(), io::Error> {
    std::thread::spawn(|| tokio_uring::Runtime::new(&tokio_uring::builder()).map(drop))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
}

/// The mode to run with: the requested one, unless io_uring was asked for
/// and is unavailable, in which case epoll (and the reason, to be logged).
pub fn choose(requested: IoMode) -> (IoMode, Option<String>) {
    match requested {
        IoMode::Epoll => (IoMode::Epoll, None),
        IoMode::Uring => match uring_available() {
            Ok(()) => (IoMode::Uring, None),
            Err(e) => (IoMode::Epoll, Some(e.to_string())),
        },
    }
}

/// Runs `make()`'s future to completion on the current thread with the
/// given backend.
pub fn block_on<F, Fut>(mode: IoMode, make: F) -> io::Result<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    match mode {
        IoMode::Epoll => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            Ok(local.block_on(&rt, make()))
        }
        IoMode::Uring => {
            let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
            Ok(rt.block_on(make()))
        }
    }
}
