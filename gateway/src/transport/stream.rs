//! The socket under a connection, over either IO backend: io_uring
//! (tokio-uring, owned-buffer reads and vectored writes) or epoll (tokio
//! readiness with `try_read`/`try_write_vectored`), with an optional TLS
//! layer (rustls, driven sans-IO over our own buffers) for `wss://`. All
//! methods take `&self`, so a connection's reader and writer tasks share
//! one `Rc<Stream>` on their core without locks; only the writer task ever
//! writes to the socket, so TLS records leave in the order rustls made
//! them.
//!
//! The HTTP upgrade, the TLS handshake and `Hello` always run on tokio's
//! readiness socket (it can be turned back into a std socket for the
//! hand-over to the owning core); the long-lived session socket is then
//! adopted by the owner's backend, with the TLS state that came with it.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};

use super::runtime::IoMode;

/// A connected socket on the current core.
pub enum Socket {
    /// Readiness-based (epoll).
    Epoll(tokio::net::TcpStream),
    /// Completion-based (io_uring).
    Uring(tokio_uring::net::TcpStream),
}

/// TLS state of a `wss://` session.
struct Tls {
    conn: RefCell<rustls::ServerConnection>,
    /// Ciphertext read from the socket, reused across reads.
    raw: RefCell<BytesMut>,
    /// Ciphertext to send, reused across writes.
    wire: RefCell<Vec<u8>>,
    /// Plaintext gathered from a write's parts, reused across writes.
    plain: RefCell<Vec<u8>>,
    /// rustls has records of its own to send (an alert, a key update):
    /// the writer task must flush even with no frames queued.
    flush_wanted: Cell<bool>,
}

/// A session's transport stream: the socket, with TLS for `wss://`.
pub struct Stream {
    sock: Socket,
    tls: Option<Tls>,
}

/// Plaintext moved out of rustls per read call at most.
const TLS_READ_CHUNK: usize = 64 * 1024;
/// Plaintext handed to rustls per record batch on writes.
const TLS_WRITE_CHUNK: usize = 16 * 1024;

impl Stream {
    /// Adopts a std socket (handed over from the accepting core) on this
    /// core's backend, with the TLS session established there, if any.
    pub fn adopt(
        socket: std::net::TcpStream,
        mode: IoMode,
        tls: Option<rustls::ServerConnection>,
    ) -> io::Result<Stream> {
        socket.set_nonblocking(true)?;
        let sock = match mode {
            IoMode::Epoll => Socket::Epoll(tokio::net::TcpStream::from_std(socket)?),
            IoMode::Uring => Socket::Uring(tokio_uring::net::TcpStream::from_std(socket)),
        };
        Ok(Stream {
            sock,
            tls: tls.map(|conn| Tls {
                conn: RefCell::new(conn),
                raw: RefCell::new(BytesMut::new()),
                wire: RefCell::new(Vec::new()),
                plain: RefCell::new(Vec::new()),
                flush_wanted: Cell::new(false),
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

    /// Reads what is available into `buf` (reserving `min_spare` first);
    /// 0 means the peer closed.
    pub async fn read(&self, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.sock.read(buf, min_spare).await;
        };
        loop {
            // Plaintext rustls already holds comes first.
            match drain_plaintext(&mut tls.conn.borrow_mut(), buf, min_spare)? {
                Drained::Bytes(n) => return Ok(n),
                Drained::Closed => return Ok(0),
                Drained::Nothing => {}
            }
            let mut raw = std::mem::take(&mut *tls.raw.borrow_mut());
            raw.clear();
            let read = self.sock.read(&mut raw, 16 * 1024 + 256).await;
            let result = match read {
                Ok(0) => Ok(Some(0)),
                Ok(_) => feed(tls, &raw, buf, min_spare),
                Err(e) => Err(e),
            };
            if raw.capacity() > 64 * 1024 {
                raw = BytesMut::new();
            }
            *tls.raw.borrow_mut() = raw;
            match result? {
                Some(n) => return Ok(n),
                None => continue,
            }
        }
    }

    /// Writes every byte of `parts`, in order, with as few syscalls as the
    /// socket takes. With TLS the parts are encrypted first (and any
    /// records rustls wants to send go with them).
    pub async fn write_parts(&self, parts: Vec<Bytes>) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return self.sock.write_parts(parts).await;
        };
        // One plaintext run, so rustls makes full records rather than one
        // per part (it copies into the records anyway).
        let mut plain = std::mem::take(&mut *tls.plain.borrow_mut());
        plain.clear();
        for p in &parts {
            plain.extend_from_slice(p);
        }
        let (result, mut plain) = self.write_all(plain).await;
        if plain.capacity() > 256 * 1024 {
            plain = Vec::new();
        }
        *tls.plain.borrow_mut() = plain;
        result
    }

    /// Writes all of `data`, handing the buffer back for reuse. With TLS,
    /// `data` is encrypted first (and any records rustls wants to send go
    /// with it); empty `data` then just flushes those.
    pub async fn write_all(&self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let Some(tls) = &self.tls else {
            if data.is_empty() {
                return (Ok(()), data);
            }
            return self.sock.write_all(data).await;
        };
        let mut wire = std::mem::take(&mut *tls.wire.borrow_mut());
        wire.clear();
        if let Err(e) = encrypt(tls, &data, &mut wire) {
            return (Err(e), data);
        }
        let (result, mut wire) = self.sock.write_all(wire).await;
        if wire.capacity() > 256 * 1024 {
            wire = Vec::new();
        }
        *tls.wire.borrow_mut() = wire;
        (result, data)
    }

    /// Ends our direction: TLS `close_notify`, then the TCP write side, so
    /// the peer sees a clean end after our close frame.
    pub async fn close_write(&self) {
        if let Some(tls) = &self.tls {
            tls.conn.borrow_mut().send_close_notify();
            let (_, _) = self.write_all(Vec::new()).await;
        }
        let _ = match &self.sock {
            Socket::Epoll(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Socket::Uring(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

enum Drained {
    Bytes(usize),
    Nothing,
    Closed,
}

/// Moves decrypted bytes from rustls into `buf`.
fn drain_plaintext(
    conn: &mut rustls::ServerConnection,
    buf: &mut BytesMut,
    min_spare: usize,
) -> io::Result<Drained> {
    let want = min_spare.clamp(4096, TLS_READ_CHUNK);
    let start = buf.len();
    buf.resize(start + want, 0);
    let result = conn.reader().read(&mut buf[start..]);
    match result {
        Ok(0) => {
            buf.truncate(start);
            Ok(Drained::Closed)
        }
        Ok(n) => {
            buf.truncate(start + n);
            Ok(Drained::Bytes(n))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            buf.truncate(start);
            Ok(Drained::Nothing)
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Feeds ciphertext to rustls, moving plaintext out as it appears (so its
/// bounded plaintext buffer never fills). `Some(n)`: bytes added to `buf`.
fn feed(
    tls: &Tls,
    mut raw: &[u8],
    buf: &mut BytesMut,
    min_spare: usize,
) -> io::Result<Option<usize>> {
    let mut conn = tls.conn.borrow_mut();
    let mut got = 0;
    while !raw.is_empty() {
        conn.read_tls(&mut raw)?;
        conn.process_new_packets().map_err(io::Error::other)?;
        loop {
            match drain_plaintext(&mut conn, buf, min_spare)? {
                Drained::Bytes(n) => got += n,
                Drained::Closed => return Ok(Some(got)),
                Drained::Nothing => break,
            }
        }
    }
    if conn.wants_write() {
        tls.flush_wanted.set(true);
    }
    Ok((got > 0).then_some(got))
}

/// Encrypts `data` (and whatever rustls has pending) into `wire`.
fn encrypt(tls: &Tls, data: &[u8], wire: &mut Vec<u8>) -> io::Result<()> {
    let mut conn = tls.conn.borrow_mut();
    tls.flush_wanted.set(false);
    for chunk in data.chunks(TLS_WRITE_CHUNK) {
        conn.writer().write_all(chunk)?;
        while conn.wants_write() {
            conn.write_tls(wire)?;
        }
    }
    while conn.wants_write() {
        conn.write_tls(wire)?;
    }
    Ok(())
}

impl Socket {
    async fn read(&self, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
        buf.reserve(min_spare);
        match self {
            Socket::Epoll(s) => loop {
                s.readable().await?;
                match s.try_read_buf(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Socket::Uring(s) => {
                // The buffer is lent to the kernel for the duration of the
                // read and handed back with the result: an owned slice
                // `len..capacity` of the taken buffer.
                use tokio_uring::buf::BoundedBuf;
                let owned = std::mem::take(buf);
                let (len, cap) = (owned.len(), owned.capacity());
                let (result, slice) = s.read(owned.slice(len..cap)).await;
                *buf = slice.into_inner();
                result
            }
        }
    }

    async fn write_parts(&self, mut parts: Vec<Bytes>) -> io::Result<()> {
        parts.retain(|p| !p.is_empty());
        while !parts.is_empty() {
            let n = match self {
                Socket::Epoll(s) => {
                    s.writable().await?;
                    let slices: Vec<io::IoSlice<'_>> = parts
                        .iter()
                        .take(MAX_IOVECS)
                        .map(|p| io::IoSlice::new(p))
                        .collect();
                    match s.try_write_vectored(&slices) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
                Socket::Uring(s) => {
                    let rest = if parts.len() > MAX_IOVECS {
                        parts.split_off(MAX_IOVECS)
                    } else {
                        Vec::new()
                    };
                    let (result, mut back) = s.writev(parts).await;
                    back.extend(rest);
                    parts = back;
                    result?
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            advance(&mut parts, n);
        }
        Ok(())
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
            Socket::Uring(s) => {
                let (result, data) = s.write_all(data).await;
                (result, data)
            }
        }
    }
}

/// Most buffers handed to one `writev` (the kernel's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 1024;

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
