//! The socket under a connection, over either IO backend: io_uring
//! (tokio-uring, owned-buffer reads and writes) or epoll (tokio readiness
//! with `try_read`/`try_write`). Both take `&self`, so a connection's reader
//! and writer tasks share one `Rc<Stream>` on their core without locks.
//!
//! The handshake and `Hello` always run on tokio's readiness socket (it can
//! be turned back into a std socket for the hand-over to the owning core);
//! the long-lived session socket is then adopted by the owner's backend.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::runtime::IoMode;

/// A connected socket on the current core.
pub enum Stream {
    /// Readiness-based (epoll).
    Epoll(tokio::net::TcpStream),
    /// Completion-based (io_uring).
    Uring(tokio_uring::net::TcpStream),
}

impl Stream {
    /// Adopts a std socket (handed over from the accepting core) on this
    /// core's backend.
    pub fn adopt(socket: std::net::TcpStream, mode: IoMode) -> io::Result<Stream> {
        socket.set_nonblocking(true)?;
        Ok(match mode {
            IoMode::Epoll => Stream::Epoll(tokio::net::TcpStream::from_std(socket)?),
            IoMode::Uring => Stream::Uring(tokio_uring::net::TcpStream::from_std(socket)),
        })
    }

    /// Reads what is available into `buf`'s spare capacity (reserving
    /// `min_spare` first); 0 means the peer closed.
    pub async fn read(&self, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
        buf.reserve(min_spare);
        match self {
            Stream::Epoll(s) => loop {
                s.readable().await?;
                match s.try_read_buf(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Stream::Uring(s) => {
                // The buffer is lent to the kernel for the duration of the
                // read and handed back with the result.
                // Read into the spare capacity after what is buffered: an
                // owned slice `len..capacity` of the taken buffer.
                use tokio_uring::buf::BoundedBuf;
                let owned = std::mem::take(buf);
                let (len, cap) = (owned.len(), owned.capacity());
                let (result, slice) = s.read(owned.slice(len..cap)).await;
                *buf = slice.into_inner();
                result
            }
        }
    }

    /// Writes all of `data`, handing the buffer back for reuse.
    pub async fn write_all(&self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Stream::Epoll(s) => {
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
            Stream::Uring(s) => {
                let (result, data) = s.write_all(data).await;
                (result, data)
            }
        }
    }

    /// Closes the write side so the peer sees EOF after our close frame.
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Epoll(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
            Stream::Uring(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

/// A listening socket bound with `SO_REUSEPORT`, so that every core binds
/// the same address and the kernel spreads new connections across them.
pub fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
