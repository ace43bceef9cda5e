//! The socket under a connection, over either IO backend: io_uring
//! (tokio-uring vectored writes) or epoll (tokio readiness with
//! `try_write_vectored`), with an optional TLS 1.3 record layer
//! ([`super::records`], over the core's buffers) for `wss://`. Reads are readiness-based
//! on both backends: a connection waits for data holding no buffer and
//! then reads into its core's buffers ([`super::buffers`]). An io_uring
//! read must own its buffer for as long as it waits, i.e. one buffer per
//! idle connection, and tokio-uring 0.5 has neither provided-buffer rings
//! nor a poll operation to wait without one, so the io_uring backend
//! waits on the core's reactor (the same epoll that wakes its ring) and
//! reads with a plain `recv`. All
//! methods take `&self`, so a session and the write it has in flight
//! share one `Rc<Stream>` on their core without locks; a session has at
//! most one write in flight, so TLS records leave in the order they were
//! sealed.
//!
//! The HTTP upgrade, the TLS handshake and `Hello` always run on tokio's
//! readiness socket (it can be turned back into a std socket for the
//! hand-over to the owning core); the long-lived session socket is then
//! adopted by the owner's backend, with the TLS state that came with it.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::buffers;
use super::records::Records;
use super::runtime::IoMode;

/// A connected socket on the current core.
pub enum Socket {
    /// Readiness-based (epoll).
    Epoll(tokio::net::TcpStream),
    /// Completion-based writes (io_uring); reads wait on `ready`.
    Uring {
        /// Read readiness from the core's reactor. Declared first so that
        /// it is dropped (deregistered) before `stream` closes the socket.
        ready: AsyncFd<Descriptor>,
        /// The socket's owner, for the io_uring writes.
        stream: tokio_uring::net::TcpStream,
    },
}

/// A socket's descriptor, owned elsewhere (by the io_uring stream beside
/// it), registered with the reactor for readiness only.
pub struct Descriptor(RawFd);

impl AsRawFd for Descriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// TLS state of a `wss://` session. It holds no buffer of its own between
/// reads and writes (but for a record not yet whole): ciphertext and
/// plaintext pass through the core's.
struct Tls {
    records: RefCell<Records>,
    /// The record layer has records of its own to send (an alert, a key
    /// update): the session must write even with no frames queued.
    flush_wanted: Cell<bool>,
}

/// A session's transport stream: the socket, with TLS for `wss://`.
pub struct Stream {
    sock: Socket,
    /// Boxed: a plain connection should not carry a TLS state's room.
    tls: Option<Box<Tls>>,
}

impl Stream {
    /// Adopts a std socket (handed over from the accepting core) on this
    /// core's backend, with the TLS session established there, if any.
    pub fn adopt(
        socket: std::net::TcpStream,
        mode: IoMode,
        tls: Option<Box<Records>>,
    ) -> io::Result<Stream> {
        socket.set_nonblocking(true)?;
        let sock = match mode {
            IoMode::Epoll => Socket::Epoll(tokio::net::TcpStream::from_std(socket)?),
            IoMode::Uring => {
                let stream = tokio_uring::net::TcpStream::from_std(socket);
                Socket::Uring {
                    ready: register_readable(&stream)?,
                    stream,
                }
            }
        };
        Ok(Stream {
            sock,
            tls: tls.map(|records| {
                let flush = records.wants_write();
                Box::new(Tls {
                    records: RefCell::new(*records),
                    flush_wanted: Cell::new(flush),
                })
            }),
        })
    }

    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether TLS has records to send that no frame write has carried yet.
    pub fn wants_flush(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.flush_wanted.get())
    }

    /// Runs `read` (which reads with [`try_read`](Self::try_read)) once
    /// the socket has something to read (or its end); `Pending`, with the
    /// task registered for readiness, while it has not. When `read` finds
    /// nothing after all (`WouldBlock`) it waits again. Nothing is
    /// borrowed while waiting, so a connection that waits here owns no
    /// read buffer.
    pub fn poll_read_with<T>(
        &self,
        cx: &mut Context<'_>,
        mut read: impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match &self.sock {
                Socket::Epoll(s) => {
                    ready!(s.poll_read_ready(cx))?;
                    // `try_read` clears the readiness when it finds nothing.
                    match read() {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => return Poll::Ready(r),
                    }
                }
                Socket::Uring { ready, .. } => {
                    let mut guard = ready!(ready.poll_read_ready(cx))?;
                    match guard.try_io(|_| read()) {
                        Ok(r) => return Poll::Ready(r),
                        Err(_would_block) => continue,
                    }
                }
            }
        }
    }

    /// Reads what is there into `dst` without waiting; 0 means the peer
    /// closed, `WouldBlock` that nothing is there yet. With TLS, `dst` gets
    /// plaintext: ciphertext is read (through the core's scratch) until a
    /// record gives some or the socket runs dry.
    pub fn try_read(&self, dst: &mut BytesMut) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.sock.try_read(dst);
        };
        if tls.records.borrow().peer_closed() {
            return Ok(0);
        }
        loop {
            let read = buffers::with_raw(|raw| {
                let n = self.sock.try_read_slice(raw)?;
                if n == 0 {
                    return Ok(None);
                }
                let mut records = tls.records.borrow_mut();
                let opened = records.open(&mut raw[..n], dst);
                if records.wants_write() {
                    tls.flush_wanted.set(true);
                }
                opened.map(Some)
            })?;
            match read {
                // The peer closed without `close_notify` (a record cut
                // short is simply dropped: nothing of it was delivered).
                None => return Ok(0),
                Some(o) if o.plaintext > 0 => return Ok(o.plaintext),
                Some(o) if o.closed => return Ok(0),
                // Only part of a record so far, or a record with no
                // application data (a key update): read on.
                Some(_) => {}
            }
        }
    }

    /// Writes every byte of `parts`, in order, with as few syscalls as the
    /// socket takes. With TLS the parts are sealed into full records
    /// first (with any record the record layer owes ahead of them).
    pub async fn write_parts(&self, parts: Vec<Bytes>) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return self.sock.write_parts(parts).await;
        };
        // The parts go with the closure: released once sealed, before the
        // write waits.
        self.write_sealed(tls, move |records, wire| {
            let sealed = records.seal_parts(&parts, wire);
            buffers::give_parts(parts);
            sealed
        })
        .await
    }

    /// Writes all of `data`, handing the buffer back for reuse. With TLS,
    /// `data` is sealed first (with any record the record layer owes
    /// ahead of it); empty `data` then just flushes those.
    pub async fn write_all(&self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let Some(tls) = &self.tls else {
            if data.is_empty() {
                return (Ok(()), data);
            }
            return self.sock.write_all(data).await;
        };
        let result = self
            .write_sealed(tls, |records, wire| records.seal(&data, wire))
            .await;
        (result, data)
    }

    /// Seals records into one of the core's write buffers (the borrow of
    /// the record layer ends before the write waits) and writes them.
    async fn write_sealed(
        &self,
        tls: &Tls,
        seal: impl FnOnce(&mut Records, &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut wire = buffers::take_vec();
        tls.flush_wanted.set(false);
        let sealed = seal(&mut tls.records.borrow_mut(), &mut wire);
        let result = match sealed {
            Ok(()) => {
                let (result, w) = self.sock.write_all(wire).await;
                wire = w;
                result
            }
            Err(e) => Err(e),
        };
        buffers::give_vec(wire);
        result
    }

    /// Ends our direction: TLS `close_notify`, then the TCP write side, so
    /// the peer sees a clean end after our close frame.
    pub async fn close_write(&self) {
        if let Some(tls) = &self.tls {
            let _ = self
                .write_sealed(tls, |records, wire| records.seal_close_notify(wire))
                .await;
        }
        let _ = match &self.sock {
            Socket::Epoll(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Socket::Uring { stream, .. } => stream.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Socket {
    /// A non-blocking read into `dst`'s spare room (never zero-filled on
    /// the epoll backend).
    fn try_read(&self, dst: &mut BytesMut) -> io::Result<usize> {
        match self {
            Socket::Epoll(s) => s.try_read_buf(dst),
            Socket::Uring { stream, .. } => buffers::with_raw(|raw| {
                let n = uring_recv(stream, raw)?;
                dst.extend_from_slice(&raw[..n]);
                Ok(n)
            }),
        }
    }

    /// A non-blocking read into an initialised slice.
    fn try_read_slice(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Epoll(s) => s.try_read(buf),
            Socket::Uring { stream, .. } => uring_recv(stream, buf),
        }
    }

    /// Writes every byte of `parts`; the list goes back to the core's pool.
    async fn write_parts(&self, mut parts: Vec<Bytes>) -> io::Result<()> {
        parts.retain(|p| !p.is_empty());
        let result = match self {
            Socket::Epoll(s) => epoll_write_parts(s, &mut parts).await,
            Socket::Uring { stream, .. } => uring_write_parts(stream, &mut parts).await,
        };
        buffers::give_parts(parts);
        result
    }

    async fn write_all(&self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Socket::Epoll(s) => {
                let mut off = 0;
                while off < data.len() {
                    if let Err(e) = s.writable().await {
                        return (Err(e), data);
                    }
                    match s.try_write(&data[off..]) {
                        Ok(n) => off += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return (Err(e), data),
                    }
                }
                (Ok(()), data)
            }
            Socket::Uring { stream, .. } => {
                let (result, data) = stream.write_all(data).await;
                (result, data)
            }
        }
    }
}

/// Registers the io_uring stream's socket with the core's reactor for
/// read readiness.
#[allow(unsafe_code)]
fn register_readable(stream: &tokio_uring::net::TcpStream) -> io::Result<AsyncFd<Descriptor>> {
    let fd = Descriptor(stream.as_raw_fd());
    // SAFETY: the descriptor stays open and keeps referring to this socket
    // for the `AsyncFd`'s whole life: both live in one `Socket::Uring`,
    // whose `ready` field is dropped (deregistered) before `stream`, the
    // socket's owner, closes it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// A non-blocking `recv` on the io_uring backend's socket, for reads that
/// readiness said will not wait.
#[allow(unsafe_code)]
fn uring_recv(stream: &tokio_uring::net::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the descriptor belongs to `stream`, which is borrowed for the
    // whole call, so it stays open (and is not reused) while it is used.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let sock = socket2::SockRef::from(&fd);
    // The socket is non-blocking (`Stream::adopt`), so this never waits.
    (&*sock).read(buf)
}

/// Most buffers handed to one `writev` (the kernel's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 1024;
/// Most buffers per `writev` on the epoll backend, whose iovecs are built
/// on the stack.
const EPOLL_IOVECS: usize = 64;

/// Writes `parts` on a readiness socket, leaving `parts` empty once done.
async fn epoll_write_parts(s: &tokio::net::TcpStream, parts: &mut Vec<Bytes>) -> io::Result<()> {
    while !parts.is_empty() {
        s.writable().await?;
        let mut slices = [io::IoSlice::new(&[]); EPOLL_IOVECS];
        let n = parts.len().min(EPOLL_IOVECS);
        for (slice, part) in slices.iter_mut().zip(parts.iter()) {
            *slice = io::IoSlice::new(part);
        }
        let written = match s.try_write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        advance(parts, written);
    }
    Ok(())
}

/// Writes `parts` with io_uring, leaving `parts` empty once done (or
/// holding what is left on an error). One buffer (the usual write: small
/// frames share the scratch) goes as a plain write, which needs no iovecs
/// allocated.
async fn uring_write_parts(
    s: &tokio_uring::net::TcpStream,
    parts: &mut Vec<Bytes>,
) -> io::Result<()> {
    if parts.len() == 1 {
        let one = parts.pop().expect("one part");
        let (result, _) = s.write_all(one).await;
        return result;
    }
    while !parts.is_empty() {
        let rest = if parts.len() > MAX_IOVECS {
            parts.split_off(MAX_IOVECS)
        } else {
            Vec::new()
        };
        let (result, mut back) = s.writev(std::mem::take(parts)).await;
        back.extend(rest);
        *parts = back;
        let written = result?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(parts, written);
    }
    Ok(())
}

/// Drops the first `n` bytes of `parts`.
fn advance(parts: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for p in parts.iter_mut() {
        if n == 0 {
            break;
        }
        if n >= p.len() {
            n -= p.len();
            done += 1;
        } else {
            p.advance(n);
            n = 0;
        }
    }
    parts.drain(..done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_written_parts_and_cuts_into_the_next() {
        let mut parts = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ];
        advance(&mut parts, 5);
        assert_eq!(parts, [Bytes::from_static(b"fg"), Bytes::from_static(b"h")]);
        advance(&mut parts, 3);
        assert!(parts.is_empty());
    }
}
