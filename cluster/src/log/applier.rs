//! The applier: follows `CONFAB_LOG` from where this node's store stands
//! and applies every record in stream order, on one task, so that every
//! node's store passes through the same states. The publishers of this
//! node's groups get their outcomes from here; other nodes' messages go to
//! the gateway for delivery.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use confab_storage::{ManualClock, MessageLog, StorageError, StoredMessage};
use futures_util::StreamExt;
use tracing::{error, warn};

use super::position::{Position, PositionFile};
use super::record::{Mark, Record};
use super::replicated::Shared;

/// How often the position is saved (after syncing the store): the most
/// a restart replays.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How often the applier checks that it keeps up with what the stream
/// acknowledged to this node.
const STALL_CHECK: Duration = Duration::from_millis(250);

/// Checks in a row without progress while behind before the consumer is
/// replaced.
const STALLED_CHECKS: u32 = 2;

/// How long one request for a consumer waits. A request sent to a server
/// that died is never answered, and the client's own timeout (5 s) would
/// hold every send of this node that long; JetStream answers in
/// milliseconds when it can.
const CREATE_ATTEMPT: Duration = Duration::from_secs(1);

/// The wait before asking again after a refusal (no stream leader yet).
const CREATE_PAUSE: Duration = Duration::from_millis(200);

/// What the applier needs.
pub(crate) struct Applier<L: MessageLog> {
    pub inner: Arc<L>,
    pub shared: Arc<Shared>,
    pub clock: Arc<ManualClock>,
    pub origin: u64,
    pub position: PositionFile,
    pub stream_created_ns: i128,
}

impl<L: MessageLog> Applier<L> {
    /// Runs until the runtime stops or a record cannot be applied.
    pub(crate) async fn run(self, stream: Stream) {
        let mut saved = self.shared.applied.load(Ordering::Acquire);
        let mut tick = tokio::time::interval(SAVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = tokio::time::interval(STALL_CHECK);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let from = self.shared.applied.load(Ordering::Acquire) + 1;
            let messages = tokio::time::timeout(CREATE_ATTEMPT, async {
                stream
                    .create_consumer(pull::OrderedConfig {
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: from,
                        },
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .messages()
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            let mut messages = match messages {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    warn!(error = %e, "following the replicated log; retrying");
                    tokio::time::sleep(CREATE_PAUSE).await;
                    continue;
                }
                Err(_) => {
                    warn!("following the replicated log: no answer in time; retrying");
                    continue;
                }
            };
            let mut still = 0u32;
            let mut seen = self.shared.applied.load(Ordering::Acquire);
            loop {
                tokio::select! {
                    next = messages.next() => match next {
                        Some(Ok(message)) => {
                            let seq = match message.info() {
                                Ok(info) => info.stream_sequence,
                                Err(e) => {
                                    warn!(error = %e, "a log message without its sequence");
                                    break;
                                }
                            };
                            if let Err(why) = self.apply(seq, message.payload.clone()) {
                                error!(seq, error = %why, "the replicated log cannot be applied; \
                                       this node acknowledges no more sends");
                                self.shared.fail(why);
                                return;
                            }
                        }
                        Some(Err(e)) => {
                            warn!(error = %e, "following the replicated log; resuming");
                            break;
                        }
                        None => break,
                    },
                    _ = tick.tick() => saved = self.save(saved),
                    // The stream took appends this consumer has not brought:
                    // its server is gone or its leader moved, and the
                    // client would only notice after missed heartbeats.
                    // A new consumer resumes at once from where this stopped.
                    _ = watch.tick() => {
                        let applied = self.shared.applied.load(Ordering::Acquire);
                        let behind = self.shared.acked.load(Ordering::Acquire) > applied;
                        still = if behind && applied == seen { still + 1 } else { 0 };
                        seen = applied;
                        if still >= STALLED_CHECKS {
                            warn!(applied, "the replicated log's consumer stalled; resuming");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Applies one record (a repeat of one already applied is skipped).
    fn apply(&self, seq: u64, payload: bytes::Bytes) -> Result<(), String> {
        if seq <= self.shared.applied.load(Ordering::Acquire) {
            return Ok(());
        }
        let record = Record::decode(payload).map_err(|e| e.to_string())?;
        tokio::task::block_in_place(|| match record {
            Record::Appends {
                origin,
                group,
                timestamp_ms,
                mut requests,
            } => {
                let mine = origin == self.origin;
                if !mine {
                    // Push jobs are the publisher's to send.
                    for r in &mut requests {
                        r.push_to.clear();
                    }
                }
                self.clock.set(timestamp_ms);
                let result = self.inner.stage(&requests);
                if let Ok(outcomes) = &result {
                    self.inner.publish(outcomes);
                }
                let result = match result {
                    // A refusal every node makes alike: the sends' publisher
                    // answers it; the state is unchanged.
                    Err(StorageError::Invalid(e)) => Err(StorageError::Invalid(e)),
                    Err(e) => return Err(format!("storing record {seq}: {e}")),
                    Ok(o) => Ok(o),
                };
                let unclaimed = if mine {
                    self.shared.complete(group, result).err()
                } else {
                    Some(result)
                };
                self.shared.applied.store(seq, Ordering::Release);
                if let (Some(Ok(outcomes)), Some(sink)) = (unclaimed, self.shared.foreign.get()) {
                    for (req, outcome) in requests.into_iter().zip(outcomes) {
                        if outcome.duplicate {
                            continue;
                        }
                        let message = StoredMessage {
                            channel: outcome.channel,
                            seq: outcome.seq,
                            sender: req.sender,
                            device: req.device,
                            client_msg_id: req.client_msg_id,
                            timestamp_ms: outcome.timestamp_ms,
                            text: req.text,
                        };
                        sink(message, &outcome.inbox);
                    }
                }
                Ok(())
            }
            Record::Marks { origin, marks } => {
                if origin != self.origin {
                    for mark in marks {
                        let applied = match mark {
                            Mark::Read { channel, user, seq } => {
                                self.inner.set_read_up_to(channel, user, seq)
                            }
                            Mark::LastSeen { user, at_ms } => self.inner.set_last_seen(user, at_ms),
                            Mark::Cursor {
                                user,
                                device,
                                cursor,
                            } => self.inner.set_cursor(user, device, cursor),
                        };
                        if let Err(e) = applied {
                            return Err(format!("applying a mark of record {seq}: {e}"));
                        }
                    }
                }
                self.shared.applied.store(seq, Ordering::Release);
                Ok(())
            }
        })
    }

    /// Syncs the store and records how far it is, if it moved.
    fn save(&self, saved: u64) -> u64 {
        let applied = self.shared.applied.load(Ordering::Acquire);
        if applied == saved {
            return saved;
        }
        let done = tokio::task::block_in_place(|| {
            self.inner.sync().map_err(|e| e.to_string())?;
            self.position
                .save(Position {
                    stream_created_ns: self.stream_created_ns,
                    applied,
                })
                .map_err(|e| e.to_string())
        });
        match done {
            Ok(()) => applied,
            Err(e) => {
                warn!(error = %e, "saving the replicated log's position");
                saved
            }
        }
    }
}
