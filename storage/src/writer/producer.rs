//! The handle a gateway core holds: submit appends, collect completions.
//! Neither call blocks; a full queue is reported back to the caller.

use super::{shard_of, ProducerLink, Submission, WriterInbox};
use crate::error::{InvalidRequest, StorageError};
use crate::model::{AppendOutcome, AppendRequest};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use thiserror::Error;

/// The result of one submitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The token passed to [`Producer::submit`].
    pub token: u64,
    /// Where it was stored, or why it was not.
    pub result: Result<AppendOutcome, StorageError>,
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitRejection {
    /// The target writer's queue from this producer is full: back-pressure.
    #[error("writer queue is full")]
    QueueFull,
    /// This producer has `max_in_flight` completions outstanding.
    #[error("too many requests in flight")]
    InFlightLimit,
    /// The writer pool is shutting down.
    #[error("writer pool is shut down")]
    Closed,
    /// The request breaks a storage limit.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
}

/// A refused submission, handing the request back so it need not be cloned
/// up front.
#[derive(Debug, Error)]
#[error("submission {token} refused: {reason}")]
pub struct SubmitError {
    /// Why.
    pub reason: SubmitRejection,
    /// The caller's token.
    pub token: u64,
    /// The request, untouched (boxed: refusals are rare, and an unboxed
    /// request would make every `Result` of `submit` large).
    pub request: Box<AppendRequest>,
}

/// One producing core's connection to the writer pool. `Send` but used from
/// one thread at a time (`&mut self`), which is what keeps each queue
/// single-producer.
pub struct Producer {
    id: usize,
    writers: Vec<Arc<WriterInbox>>,
    links: Arc<[ProducerLink]>,
    outstanding: usize,
    max_in_flight: usize,
    /// Held while the producer lives: the pool counts live producers by it.
    _alive: Arc<()>,
}

impl Producer {
    pub(super) fn new(
        id: usize,
        writers: Vec<Arc<WriterInbox>>,
        links: Arc<[ProducerLink]>,
        max_in_flight: usize,
        alive: Arc<()>,
    ) -> Self {
        Self {
            id,
            writers,
            links,
            outstanding: 0,
            max_in_flight,
            _alive: alive,
        }
    }

    /// This producer's index (its waker is `wakers[id]`).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Requests submitted whose completion has not been collected yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Queues `request` for the writer that owns its channel. The completion
    /// comes back through [`poll`](Self::poll) carrying `token`.
    pub fn submit(&mut self, token: u64, request: AppendRequest) -> Result<(), SubmitError> {
        let refuse = |reason, request| {
            Err(SubmitError {
                reason,
                token,
                request: Box::new(request),
            })
        };
        if let Err(invalid) = request.validate() {
            return refuse(SubmitRejection::Invalid(invalid), request);
        }
        if self.outstanding >= self.max_in_flight {
            return refuse(SubmitRejection::InFlightLimit, request);
        }
        let writer = &self.writers[shard_of(request.channel, self.writers.len())];
        if writer.stop.load(Ordering::SeqCst) {
            return refuse(SubmitRejection::Closed, request);
        }
        match writer.queues[self.id].push(Submission { token, request }) {
            Ok(()) => {
                self.outstanding += 1;
                writer.wake();
                Ok(())
            }
            Err(rejected) => refuse(SubmitRejection::QueueFull, rejected.request),
        }
    }

    /// Takes one completion, if any is ready.
    pub fn poll(&mut self) -> Option<Completion> {
        let completion = self.links[self.id].completions.pop()?;
        self.outstanding -= 1;
        Some(completion)
    }

    /// Moves every ready completion into `out`; returns how many.
    pub fn drain_into(&mut self, out: &mut Vec<Completion>) -> usize {
        let before = out.len();
        while let Some(completion) = self.poll() {
            out.push(completion);
        }
        out.len() - before
    }
}
