//! The transports behind one shape: a connection takes encoded frames to
//! write and yields decoded frames as they arrive.
//!
//! A WebSocket is driven inside the driver's own task: each poll writes
//! what is queued (one flush for all of it) and reads what has arrived,
//! without ever waiting on the socket, so a server that stops reading
//! cannot stall the session's clock (heartbeats, the silence deadline).
//! Reader and writer tasks of its own would add a task wake-up and a
//! channel operation per frame each way, buy nothing the poll does not
//! give, and hold memory per connection. A QUIC connection's several
//! carriers (control stream, lanes, datagrams) each have a reader task
//! feeding one queue, so that the driver needs to know nothing about them.

pub(crate) mod quic;
pub(crate) mod ws;

use std::time::Duration;

use confab_protocol::frame::{Close, Frame};
use confab_protocol::ErrorCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Validated;
use crate::url::Transport;

/// Frames read ahead of the driver per connection; beyond it the readers
/// wait, and the transport's flow control pushes back on the server.
const INCOMING_QUEUE: usize = 1024;

/// What the reading side of a connection reports.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A frame from the server.
    Frame(Frame),
    /// The stream can no longer be split into frames (a bad length
    /// prefix): the driver answers `Close` with `BAD_FRAME` and reconnects.
    Broken(String),
    /// The transport is gone.
    Lost {
        /// What happened, for logs and the `Disconnected` event.
        reason: String,
        /// The `Close` the server meant, recovered from the transport's
        /// own close code (WebSocket 4000 + n, QUIC application error n)
        /// for when the `Close` frame itself did not make it.
        close: Option<Close>,
    },
}

/// One live connection. Dropping it tears the transport down at once;
/// [`Connection::shutdown`] closes it gracefully.
pub(crate) enum Connection {
    /// A WebSocket, read and written by whoever polls it.
    Ws(Box<ws::Direct>),
    /// A transport served by tasks of its own (QUIC).
    Tasks(Tasks),
}

impl Connection {
    /// Queues one encoded frame (with its length prefix). Never waits; a
    /// failed write shows up as `Lost` on the incoming side.
    pub fn send(&mut self, frame: Vec<u8>) {
        match self {
            Connection::Ws(ws) => ws.send(frame),
            Connection::Tasks(t) => {
                if let Some(out) = &t.out {
                    let _ = out.send(frame);
                }
            }
        }
    }

    /// The next thing that arrived; for a WebSocket, polling this is also
    /// what writes the queued frames. Cancel-safe: nothing is taken from
    /// the transport that is not returned.
    pub async fn recv(&mut self) -> Option<Incoming> {
        match self {
            Connection::Ws(ws) => Some(std::future::poll_fn(|cx| ws.poll_recv(cx)).await),
            Connection::Tasks(t) => t.incoming.recv().await,
        }
    }

    /// What has already arrived, if anything, without waiting.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        match self {
            Connection::Ws(ws) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match ws.poll_recv(&mut cx) {
                    std::task::Poll::Ready(incoming) => Some(incoming),
                    std::task::Poll::Pending => None,
                }
            }
            Connection::Tasks(t) => t.incoming.try_recv().ok(),
        }
    }

    /// Writes what is queued, closes the transport cleanly (WebSocket close
    /// handshake, QUIC stream finish and connection close) and waits for
    /// that at most `grace`.
    pub async fn shutdown(self, grace: Duration) {
        match self {
            Connection::Ws(mut ws) => {
                let _ = tokio::time::timeout(grace, ws.close()).await;
            }
            Connection::Tasks(mut t) => {
                t.out = None;
                if let Some(writer) = t.writer.take() {
                    let abort = writer.abort_handle();
                    if tokio::time::timeout(grace, writer).await.is_err() {
                        abort.abort();
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::Ws(_) => "Connection::Ws",
            Connection::Tasks(_) => "Connection::Tasks",
        })
    }
}

/// A connection whose IO runs in tasks of its own.
pub(crate) struct Tasks {
    out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// What arrived, in order per carrier.
    incoming: mpsc::Receiver<Incoming>,
    writer: Option<JoinHandle<()>>,
    readers: Vec<JoinHandle<()>>,
    quic: quinn::Connection,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            w.abort();
        }
        for r in &self.readers {
            r.abort();
        }
        self.quic.close(0u32.into(), b"");
    }
}

/// Opens a connection to the configured server. `quic` keeps the QUIC
/// endpoint (its UDP socket) from one attempt to the next.
pub(crate) async fn connect(
    config: &Validated,
    quic: &mut Option<quinn::Endpoint>,
) -> Result<Connection, String> {
    let open = async {
        match config.url.transport {
            Transport::Ws | Transport::Wss => ws::connect(config).await,
            Transport::Quic => quic::connect(config, quic).await,
        }
    };
    match tokio::time::timeout(config.connect_timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "connecting to {} timed out after {:?}",
            config.url, config.connect_timeout
        )),
    }
}

/// The pieces a transport hands over to make a [`Connection`].
pub(crate) struct Parts {
    pub out: mpsc::UnboundedSender<Vec<u8>>,
    pub incoming: mpsc::Receiver<Incoming>,
    pub writer: JoinHandle<()>,
    pub readers: Vec<JoinHandle<()>>,
    pub quic: quinn::Connection,
}

impl From<Parts> for Connection {
    fn from(p: Parts) -> Connection {
        Connection::Tasks(Tasks {
            out: Some(p.out),
            incoming: p.incoming,
            writer: Some(p.writer),
            readers: p.readers,
            quic: p.quic,
        })
    }
}

/// The channels between a connection's tasks and the driver.
pub(crate) struct Channels {
    /// The driver's end for frames to write.
    pub out: mpsc::UnboundedSender<Vec<u8>>,
    /// The writer task's end.
    pub out_rx: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The reader tasks' end for what arrives.
    pub in_tx: mpsc::Sender<Incoming>,
    /// The driver's end.
    pub incoming: mpsc::Receiver<Incoming>,
}

pub(crate) fn channels() -> Channels {
    let (out, out_rx) = mpsc::unbounded_channel();
    let (in_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
    Channels {
        out,
        out_rx,
        in_tx,
        incoming,
    }
}

/// Takes every frame already queued after `first`, so that a burst is
/// written with one syscall.
pub(crate) fn take_batch(
    first: Vec<u8>,
    rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let mut batch = vec![first];
    let mut bytes = batch[0].len();
    // Bounded so that a long queue still yields to the runtime.
    while bytes < 256 * 1024 {
        match rx.try_recv() {
            Ok(f) => {
                bytes += f.len();
                batch.push(f);
            }
            Err(_) => break,
        }
    }
    batch
}

/// The `Close` a transport-level close code stands for: an application
/// code carrying a protocol error number. `None` for ordinary closes.
pub(crate) fn close_for_code(wire_code: u16, detail: &str) -> Option<Close> {
    (wire_code != 0 && wire_code <= 999).then(|| Close {
        code: wire_code,
        message: if detail.is_empty() {
            ErrorCode::from_code(wire_code).name().to_owned()
        } else {
            detail.to_owned()
        },
    })
}
