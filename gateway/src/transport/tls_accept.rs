//! The TLS handshake of a `wss://` connection, and the encrypted stream
//! its HTTP upgrade and `Hello` then run on.
//!
//! rustls' unbuffered API drives the handshake over buffers that live
//! only as long as the handshake does; once it is done the connection is
//! turned into its traffic secrets and a [`KernelConnection`], and the
//! records are ours to seal and open ([`Records`]): a session keeps no
//! rustls buffer while it is idle. Bytes the client sent past its
//! `Finished` travel on with the records, never lost.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::records::Records;

/// Handshake bytes a client may have in flight before the server answers
/// (a ClientHello with post-quantum key shares is under 2 KiB).
const MAX_HANDSHAKE_BUFFER: usize = 64 * 1024;

/// A `wss://` connection after its handshake.
pub struct TlsStream {
    tcp: TcpStream,
    records: Box<Records>,
    /// Decrypted bytes not yet read.
    plain: BytesMut,
    /// Sealed bytes not yet written.
    out: Vec<u8>,
    eof: bool,
    close_sent: bool,
}

/// Runs the server side of the TLS handshake on `tcp`.
pub async fn accept(
    mut tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<TlsStream> {
    let mut conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
    let mut incoming = vec![0u8; 4096];
    let mut filled = 0;
    let mut outgoing: Vec<u8> = Vec::new();
    let mut pending_out = 0;
    let mut plain = BytesMut::new();
    let mut nothing: [u8; 0] = [];
    loop {
        // Once the client's `Finished` is in, rustls only sends what it
        // still owes (the session tickets it queued on that `Finished`, so
        // the call that took it returned to send them): bytes after it are
        // the record layer's. Were rustls to read them, a key update among
        // them would be answered into a queue that the hand-over to the
        // record layer drops.
        let input: &mut [u8] = if conn.is_handshaking() {
            &mut incoming[..filled]
        } else {
            &mut nothing
        };
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(input);
        let mut read_more = false;
        let mut done = false;
        match state {
            Err(e) => {
                flush_alert(&mut conn, &mut tcp).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(record) = r.next_record() {
                    let record = record.map_err(io::Error::other)?;
                    discard += record.discard;
                    plain.extend_from_slice(record.payload);
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut s)) => loop {
                match s.encode(&mut outgoing[pending_out..]) {
                    Ok(n) => {
                        pending_out += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(e)) => {
                        outgoing.resize(pending_out + e.required_size, 0)
                    }
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            },
            Ok(ConnectionState::TransmitTlsData(t)) => {
                tcp.write_all(&outgoing[..pending_out]).await?;
                pending_out = 0;
                t.done();
            }
            // The server may send once its `Finished` is out; the
            // handshake ends with the client's.
            Ok(ConnectionState::WriteTraffic(_)) => done = true,
            Ok(ConnectionState::BlockedHandshake) => read_more = true,
            Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                return Err(io::ErrorKind::UnexpectedEof.into())
            }
            Ok(_) => return Err(io::Error::other("TLS handshake state not handled")),
        }
        if discard > 0 {
            incoming.copy_within(discard..filled, 0);
            filled -= discard;
        }
        if done && !conn.is_handshaking() {
            break;
        }
        if done || read_more {
            if filled == incoming.len() {
                if incoming.len() >= MAX_HANDSHAKE_BUFFER {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS handshake messages too large",
                    ));
                }
                incoming.resize(incoming.len() * 2, 0);
            }
            let n = tcp.read(&mut incoming[filled..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
        }
    }
    let (secrets, kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(io::Error::other)?;
    let mut records = Records::new(secrets.tx, secrets.rx, kernel, &incoming[..filled])?;
    // Whole records may have come with the `Finished`: open them now, or
    // they would wait for more bytes that may never come.
    let opened = records.open(&mut nothing, &mut plain)?;
    Ok(TlsStream {
        tcp,
        records: Box::new(records),
        plain,
        out: Vec::new(),
        eof: opened.closed,
        close_sent: false,
    })
}

/// Sends the alert rustls queued when it refused the handshake, so the
/// client learns why (a protocol version or cipher suite it lacks).
async fn flush_alert(conn: &mut UnbufferedServerConnection, tcp: &mut TcpStream) {
    let mut out = [0u8; 64];
    let mut len = 0;
    for _ in 0..4 {
        match conn.process_tls_records(&mut []).state {
            Ok(ConnectionState::EncodeTlsData(mut s)) => {
                if let Ok(n) = s.encode(&mut out[len..]) {
                    len += n;
                }
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                let _ = tcp.write_all(&out[..len]).await;
                t.done();
                return;
            }
            _ => return,
        }
    }
}

impl TlsStream {
    /// The socket and the record layer, for the session's core, with the
    /// plaintext read but not yet consumed. Everything written has been
    /// flushed by then.
    pub fn into_parts(self) -> io::Result<(std::net::TcpStream, Box<Records>, BytesMut)> {
        if !self.out.is_empty() {
            return Err(io::Error::other("TLS records not yet written"));
        }
        Ok((self.tcp.into_std()?, self.records, self.plain))
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                this.eof = true;
                continue;
            }
            let opened = this.records.open(&mut raw[..n], &mut this.plain);
            if this.records.wants_write() {
                // Our key update or alert: now if the socket takes it, else
                // with the next write.
                let sealed = this.records.seal(&[], &mut this.out);
                let _ = this.poll_drain(cx);
                if opened.is_ok() {
                    sealed?;
                }
            }
            if opened?.closed {
                this.eof = true;
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.records.seal(buf, &mut this.out)?;
        // Sealed is accepted: what the socket does not take now goes on
        // the next write or flush.
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.records.seal_close_notify(&mut this.out)?;
            this.close_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::net::TcpListener;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// The server's config for its generated certificate, a client's that
    /// trusts it (speaking `versions`), and a listener on loopback.
    struct Setup {
        _dir: tempfile::TempDir,
        server_config: Arc<rustls::ServerConfig>,
        client_config: rustls::ClientConfig,
        listener: TcpListener,
    }

    async fn setup(versions: &[&'static rustls::SupportedProtocolVersion]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let id = super::super::tls::load_or_generate(None, dir.path()).unwrap();
        let server_config = super::super::tls::websocket_config(&id).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(id.chain[0].clone()).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Setup {
            _dir: dir,
            server_config,
            client_config,
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    struct Pair {
        server: TlsStream,
        client: tokio_rustls::client::TlsStream<TcpStream>,
    }

    /// A real handshake on loopback: rustls' own client against ours.
    /// `early` is written by the client right after its handshake, before
    /// the server has finished its own (it may arrive with `Finished`).
    async fn pair(
        versions: &[&'static rustls::SupportedProtocolVersion],
        early: &[u8],
    ) -> io::Result<Pair> {
        let Setup {
            _dir,
            server_config,
            client_config,
            listener,
        } = setup(versions).await;
        let addr = listener.local_addr().unwrap();
        let early = early.to_vec();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
            let name = ServerName::try_from("localhost").unwrap();
            let mut c = connector.connect(name, tcp).await?;
            c.write_all(&early).await?;
            c.flush().await?;
            io::Result::Ok(c)
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let server = accept(tcp, server_config).await;
        let client = client.await.unwrap();
        Ok(Pair {
            server: server?,
            client: client?,
        })
    }

    async fn read_exactly<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        s.read_exact(&mut got).await.unwrap();
        got
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn data_crosses_both_ways_including_what_came_with_the_handshake() {
        let early = pattern(300, 1);
        let mut p = pair(&[&rustls::version::TLS13], &early).await.unwrap();
        assert_eq!(read_exactly(&mut p.server, early.len()).await, early);
        // Several records each way, read in pieces smaller than a record.
        let big = pattern(100_000, 7);
        p.client.write_all(&big).await.unwrap();
        p.client.flush().await.unwrap();
        assert_eq!(read_exactly(&mut p.server, big.len()).await, big);
        let back = pattern(70_000, 9);
        p.server.write_all(&back).await.unwrap();
        p.server.flush().await.unwrap();
        assert_eq!(read_exactly(&mut p.client, back.len()).await, back);
    }

    #[tokio::test]
    async fn key_updates_from_the_client_are_followed_and_answered() {
        let mut p = pair(&[&rustls::version::TLS13], b"").await.unwrap();
        for round in 0..3u8 {
            // rustls asks for our update too: we must answer with ours
            // before our next record, or the client cannot read it.
            p.client.get_mut().1.refresh_traffic_keys().unwrap();
            let up = pattern(5_000, round);
            p.client.write_all(&up).await.unwrap();
            p.client.flush().await.unwrap();
            assert_eq!(read_exactly(&mut p.server, up.len()).await, up);
            let down = pattern(3_000, round + 50);
            p.server.write_all(&down).await.unwrap();
            p.server.flush().await.unwrap();
            assert_eq!(read_exactly(&mut p.client, down.len()).await, down);
            assert_eq!(p.server.records.tx_updates(), u32::from(round) + 1);
        }
    }

    #[tokio::test]
    async fn our_keys_change_before_the_suites_limit() {
        let mut p = pair(&[&rustls::version::TLS13], b"").await.unwrap();
        p.server.records.tx_limit_for_tests(3);
        // 10 records of 16 KiB: three key updates on the way.
        let down = pattern(10 * 16 * 1024, 3);
        p.server.write_all(&down).await.unwrap();
        p.server.flush().await.unwrap();
        assert_eq!(read_exactly(&mut p.client, down.len()).await, down);
        assert_eq!(p.server.records.tx_updates(), 3);
        let up = pattern(1_000, 4);
        p.client.write_all(&up).await.unwrap();
        p.client.flush().await.unwrap();
        assert_eq!(read_exactly(&mut p.server, up.len()).await, up);
    }

    #[tokio::test]
    async fn many_small_parts_are_sealed_into_full_records_in_order() {
        let mut p = pair(&[&rustls::version::TLS13], b"").await.unwrap();
        // The shape of a fan-out write: headers and bodies, thousands of
        // parts, crossing record boundaries anywhere.
        let parts: Vec<Vec<u8>> = (0..3_000)
            .map(|i| pattern(1 + (i * 7) % 40, i as u8))
            .collect();
        let want: Vec<u8> = parts.concat();
        let mut wire = Vec::new();
        p.server.records.seal_parts(&parts, &mut wire).unwrap();
        let records = wire.len().div_ceil(16 * 1024 + 22);
        assert_eq!(
            wire.len(),
            want.len() + records * 22,
            "full records: 5 header + 1 type + 16 tag bytes each"
        );
        p.server.tcp.write_all(&wire).await.unwrap();
        assert_eq!(read_exactly(&mut p.client, want.len()).await, want);
    }

    #[tokio::test]
    async fn close_notify_ends_each_direction_cleanly() {
        let mut p = pair(&[&rustls::version::TLS13], b"last words")
            .await
            .unwrap();
        p.client.shutdown().await.unwrap();
        assert_eq!(read_exactly(&mut p.server, 10).await, b"last words");
        let mut rest = Vec::new();
        p.server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert!(p.server.records.peer_closed());
        p.server.write_all(b"bye").await.unwrap();
        p.server.shutdown().await.unwrap();
        let mut got = Vec::new();
        // A clean end for rustls: close_notify, not a truncation error.
        p.client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
    }

    #[tokio::test]
    async fn a_tampered_record_is_refused() {
        let mut p = pair(&[&rustls::version::TLS13], b"").await.unwrap();
        let tcp = p.client.get_mut().0;
        // A record of the right shape whose tag cannot verify.
        let mut record = vec![23, 3, 3, 0, 40];
        record.extend_from_slice(&[0xAB; 40]);
        tcp.write_all(&record).await.unwrap();
        let mut buf = [0u8; 16];
        let err = p.server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("authentication"), "{err}");
        // Nothing more is sealed after our fatal alert...
        let err = p.server.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // ...and the client was told why.
        let err = p.client.read(&mut buf).await.unwrap_err();
        assert!(err.to_string().contains("BadRecordMac"), "{err}");
    }

    #[tokio::test]
    async fn a_peer_sending_only_records_without_data_is_refused() {
        let mut p = pair(&[&rustls::version::TLS13], b"").await.unwrap();
        // Key updates are the records a well-formed client can send with
        // no data in them: a few are fine...
        for _ in 0..10 {
            p.client.get_mut().1.refresh_traffic_keys().unwrap();
        }
        p.client.write_all(b"still here").await.unwrap();
        p.client.flush().await.unwrap();
        assert_eq!(read_exactly(&mut p.server, 10).await, b"still here");
        // ...an endless run of them is not.
        for _ in 0..40 {
            p.client.get_mut().1.refresh_traffic_keys().unwrap();
        }
        p.client.flush().await.unwrap();
        let mut buf = [0u8; 16];
        let err = p.server.read(&mut buf).await.unwrap_err();
        assert!(
            err.to_string().contains("without application data"),
            "{err}"
        );
    }

    /// The client's `Finished`, its key update and its first data in one
    /// write, so that the server reads them together: the key update must
    /// reach the record layer (which answers it), not rustls (whose answer
    /// the hand-over would drop, leaving the client unable to read us).
    #[tokio::test]
    async fn a_key_update_that_comes_with_the_finished_is_answered() {
        let Setup {
            _dir,
            server_config,
            client_config,
            listener,
        } = setup(&[&rustls::version::TLS13]).await;
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            use std::io::{Read, Write};
            let name = ServerName::try_from("localhost").unwrap();
            let mut c = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
            let mut tcp = std::net::TcpStream::connect(addr)?;
            while c.is_handshaking() {
                // Only what the handshake needs goes out before it is done
                // on our side; the `Finished` it then queues is held back.
                while c.wants_write() {
                    c.write_tls(&mut tcp)?;
                }
                c.read_tls(&mut tcp)?;
                c.process_new_packets().map_err(io::Error::other)?;
            }
            c.refresh_traffic_keys().map_err(io::Error::other)?;
            c.writer().write_all(b"first words")?;
            let mut all = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut all)?;
            }
            tcp.write_all(&all)?;
            let mut got = Vec::new();
            while got.len() < 5 {
                if c.read_tls(&mut tcp)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                c.process_new_packets().map_err(io::Error::other)?;
                let mut buf = [0u8; 64];
                match c.reader().read(&mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server = accept(tcp, server_config).await.unwrap();
        assert_eq!(read_exactly(&mut server, 11).await, b"first words");
        server.write_all(b"reply").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(server.records.tx_updates(), 1, "the update was answered");
        let got = tokio::task::spawn_blocking(move || client.join().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"reply");
    }

    #[tokio::test]
    async fn a_tls12_only_client_is_refused_with_an_alert() {
        let Setup {
            _dir,
            server_config,
            client_config,
            listener,
        } = setup(&[&rustls::version::TLS12]).await;
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.map(|_| ())
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let server = accept(tcp, server_config).await;
        assert!(server.is_err(), "the server refused");
        let client = client.await.unwrap().unwrap_err();
        // The client is told why, not just cut off.
        assert!(client.to_string().contains("ProtocolVersion"), "{client}");
    }
}
