//! Keeps QUIC connection migration working across `SO_REUSEPORT` sockets.
//!
//! Every core binds its own UDP socket on the QUIC port and the kernel
//! picks the socket by hashing the client's address. When a phone changes
//! network its address changes, the hash changes, and its packets may land
//! on another core's socket, whose endpoint does not know the connection.
//! So every connection id a core issues starts with that core's index
//! ([`CoreCids`]), and each core's socket ([`RoutedSocket`]) hands a
//! short-header packet carrying another core's id to that core's socket
//! through a lock-free queue, where it is received as if it had arrived
//! there. Long-header packets (the handshake) are never moved: QUIC allows
//! no migration before the handshake is confirmed, so they keep arriving
//! where the connection was accepted.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_queue::SegQueue;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, ConnectionId, ConnectionIdGenerator, UdpPoller};
use rand::RngCore;

/// Length of the connection ids we issue.
pub const CID_LEN: usize = 8;

/// Issues connection ids whose first byte names the core.
pub struct CoreCids {
    core: u8,
}

impl CoreCids {
    /// Ids for `core` (cores are numbered below 256).
    pub fn new(core: usize) -> CoreCids {
        CoreCids { core: core as u8 }
    }
}

impl ConnectionIdGenerator for CoreCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        rand::rng().fill_bytes(&mut bytes[1..]);
        bytes[0] = self.core;
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The core a datagram belongs to, when it is a short-header packet whose
/// connection id one of ours issued.
pub fn owner_of(datagram: &[u8], cores: usize) -> Option<usize> {
    let first = *datagram.first()?;
    // Long header (bit 7): handshake packets stay where they land.
    if first & 0x80 != 0 || datagram.len() < 1 + CID_LEN {
        return None;
    }
    let core = datagram[1] as usize;
    (core < cores).then_some(core)
}

/// A datagram moved here from another core's socket.
struct Moved {
    from: SocketAddr,
    dst_ip: Option<IpAddr>,
    ecn: Option<EcnCodepoint>,
    bytes: Vec<u8>,
}

/// The sockets of every core (each sets its own slot once its runtime has
/// made it), so each can reach the others.
pub type Peers = Arc<Vec<OnceLock<Arc<RoutedSocket>>>>;

/// Empty slots for `cores` sockets.
pub fn peers(cores: usize) -> Peers {
    Arc::new((0..cores).map(|_| OnceLock::new()).collect())
}

/// One core's UDP socket, which forwards other cores' packets to them.
pub struct RoutedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    core: usize,
    cores: usize,
    peers: Peers,
    moved_in: SegQueue<Moved>,
    /// The endpoint driver's waker, for datagrams moved here.
    waker: Mutex<Option<Waker>>,
}

impl fmt::Debug for RoutedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedSocket")
            .field("core", &self.core)
            .finish()
    }
}

impl RoutedSocket {
    /// Wraps core `core`'s socket; `peers` is filled with every core's
    /// socket once all are made.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, core: usize, cores: usize, peers: Peers) -> Self {
        RoutedSocket {
            inner,
            core,
            cores,
            peers,
            moved_in: SegQueue::new(),
            waker: Mutex::new(None),
        }
    }

    fn deliver(&self, m: Moved) {
        self.moved_in.push(m);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    /// Hands every segment of a received buffer to `core`.
    fn forward(&self, core: usize, data: &[u8], meta: &RecvMeta) {
        let Some(peer) = self.peers.get(core).and_then(|p| p.get()) else {
            return;
        };
        let stride = meta.stride.max(1);
        for segment in data[..meta.len].chunks(stride) {
            peer.deliver(Moved {
                from: meta.addr,
                dst_ip: meta.dst_ip,
                ecn: meta.ecn,
                bytes: segment.to_vec(),
            });
        }
    }

    /// Fills `bufs`/`meta` from datagrams moved here; how many.
    fn take_moved(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut n = 0;
        while n < bufs.len() {
            let Some(m) = self.moved_in.pop() else { break };
            let len = m.bytes.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&m.bytes[..len]);
            meta[n] = RecvMeta {
                addr: m.from,
                len,
                stride: len,
                ecn: m.ecn,
                dst_ip: m.dst_ip,
            };
            n += 1;
        }
        n
    }
}

impl AsyncUdpSocket for RoutedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        {
            let mut w = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        let moved = self.take_moved(bufs, meta);
        if moved > 0 {
            return Poll::Ready(Ok(moved));
        }
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            if self.cores == 1 {
                return Poll::Ready(Ok(n));
            }
            // Keep ours, compacting them to the front; forward the rest.
            let mut kept = 0;
            for i in 0..n {
                let owner = owner_of(&bufs[i][..meta[i].len], self.cores);
                match owner {
                    Some(core) if core != self.core => {
                        self.forward(core, &bufs[i], &meta[i]);
                    }
                    _ => {
                        if kept != i {
                            let len = meta[i].len;
                            let (head, tail) = bufs.split_at_mut(i);
                            head[kept][..len].copy_from_slice(&tail[0][..len]);
                            meta[kept] = meta[i];
                        }
                        kept += 1;
                    }
                }
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_header_packets_name_their_core_and_handshakes_stay() {
        let mut gen = CoreCids::new(3);
        let cid = gen.generate_cid();
        assert_eq!(cid.len(), CID_LEN);
        assert_eq!(cid[0], 3);
        let mut short = vec![0x40];
        short.extend_from_slice(&cid);
        short.extend_from_slice(&[0; 20]);
        assert_eq!(owner_of(&short, 4), Some(3));
        // A core index beyond the node's cores is not ours to route.
        assert_eq!(owner_of(&short, 2), None);
        let mut long = short.clone();
        long[0] = 0xc0;
        assert_eq!(owner_of(&long, 4), None, "long headers are never moved");
        assert_eq!(owner_of(&[0x40, 1], 4), None, "too short to hold a CID");
    }
}
