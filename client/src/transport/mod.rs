//! The transports behind one shape: a connection is a queue of encoded
//! frames to write and a queue of decoded frames that arrived, each side
//! served by its own tasks.
//!
//! Keeping IO in tasks of its own means the driver never blocks on a
//! socket: a server that stops reading cannot stall the session's clock
//! (heartbeats, the silence deadline), and a QUIC connection's several
//! carriers (control stream, lanes, datagrams) all end up in the same
//! queue without the driver knowing about them.

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
#[derive(Debug)]
pub(crate) struct Connection {
    out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// What arrived, in order per carrier.
    pub incoming: mpsc::Receiver<Incoming>,
    writer: Option<JoinHandle<()>>,
    readers: Vec<JoinHandle<()>>,
    quic: Option<quinn::Connection>,
}

impl Connection {
    /// Queues one encoded frame (with its length prefix). Never waits; a
    /// dead writer shows up as `Lost` on the incoming side.
    pub fn send(&self, frame: Vec<u8>) {
        if let Some(out) = &self.out {
            let _ = out.send(frame);
        }
    }

    /// Writes what is queued, closes the transport cleanly (WebSocket close
    /// handshake, QUIC stream finish and connection close) and waits for
    /// that at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.out = None;
        if let Some(writer) = self.writer.take() {
            let abort = writer.abort_handle();
            if tokio::time::timeout(grace, writer).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            w.abort();
        }
        for r in &self.readers {
            r.abort();
        }
        if let Some(q) = &self.quic {
            q.close(0u32.into(), b"");
        }
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
    pub quic: Option<quinn::Connection>,
}

impl From<Parts> for Connection {
    fn from(p: Parts) -> Connection {
        Connection {
            out: Some(p.out),
            incoming: p.incoming,
            writer: Some(p.writer),
            readers: p.readers,
            quic: p.quic,
        }
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
/// written with one syscall (WebSocket: one flush; QUIC: one write).
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
