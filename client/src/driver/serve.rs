//! The driver on a live connection: frames in, frames out, the session's
//! clock and the application's commands, until the connection ends. Kept
//! apart from the connection cycle because this loop is where exactly-once
//! delivery is won or lost: every frame read must reach the session.

use std::time::{Duration, Instant};

use confab_protocol::binary;
use confab_protocol::frame::{Close, Frame};
use confab_protocol::session::State;
use confab_protocol::ErrorCode;

use super::{Driver, End, Flow};
use crate::transport::{Connection, Incoming};

/// How long a closing client waits for its `Close` frame to be written and
/// the transport to shut down cleanly.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Frames handled per wake-up before writing and publishing, so that a
/// burst costs one pass but the clock and commands are not starved.
const FRAMES_PER_PASS: usize = 256;

impl Driver {
    /// Runs the session on a connection until it ends.
    pub(super) async fn serve(&mut self, mut conn: Connection) -> End {
        self.session.connected(Instant::now());
        loop {
            // Publishing can queue frames too (calls held until `Welcome`),
            // so it comes first: nothing may wait for the next wake-up.
            if let Some(end) = self.publish() {
                return end;
            }
            self.flush(&mut conn);
            let timeout = self.session.poll_timeout();
            let tick = async move {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                incoming = conn.recv() => {
                    let mut next = incoming;
                    for pass in 0..FRAMES_PER_PASS {
                        // Taken only when this pass will handle it: a frame
                        // taken after the last pass would be dropped.
                        if pass > 0 {
                            match conn.try_recv() {
                                Some(more) => next = Some(more),
                                None => break,
                            }
                        }
                        match next.take() {
                            Some(Incoming::Frame(frame)) => {
                                tracing::trace!(frame = frame.frame_type().name(), "received");
                                self.session.handle(Instant::now(), frame);
                                // A `Close` ended the session: nothing after
                                // it belongs to this connection.
                                if matches!(self.session.state(), State::Disconnected | State::Closed) {
                                    break;
                                }
                            }
                            Some(Incoming::Broken(why)) => {
                                tracing::warn!(%why, "the server's stream cannot be framed");
                                conn.send(binary::encode_to_vec(&Frame::Close(Close {
                                    code: ErrorCode::BadFrame.code(),
                                    message: why.clone(),
                                })));
                                conn.shutdown(CLOSE_GRACE).await;
                                return self.publish().unwrap_or(End::Lost(why));
                            }
                            Some(Incoming::Lost { reason, close }) => {
                                // The server's `Close`, if only the transport
                                // carried it: the session decides what it means.
                                if let Some(close) = close {
                                    self.session.handle(Instant::now(), Frame::Close(close));
                                }
                                // What arrived before the loss is delivered now,
                                // not after the backoff.
                                return self.publish().unwrap_or(End::Lost(reason));
                            }
                            None => {
                                let reason = "the connection's tasks ended".to_owned();
                                return self.publish().unwrap_or(End::Lost(reason));
                            }
                        }
                    }
                }
                command = self.commands.recv() => {
                    let flow = match command {
                        Some(command) => self.on_command(command),
                        None => Flow::Exit,
                    };
                    match flow {
                        Flow::Continue => {}
                        // Dropping `conn` tears the transport down unannounced.
                        Flow::Reconnect => {
                            return End::Lost("the application dropped the connection".into())
                        }
                        Flow::Exit => {
                            self.session.close();
                            self.flush(&mut conn);
                            conn.shutdown(CLOSE_GRACE).await;
                            return End::Exit;
                        }
                    }
                }
                () = tick => self.session.handle_timeout(Instant::now()),
            }
        }
    }

    /// Writes what the session (and this task) wants sent.
    fn flush(&mut self, conn: &mut Connection) {
        while let Some(frame) = self.session.poll_transmit() {
            tracing::trace!(frame = frame.frame_type().name(), "sending");
            conn.send(binary::encode_to_vec(&frame));
        }
        for frame in self.extra.drain(..) {
            conn.send(binary::encode_to_vec(&frame));
        }
    }
}
