//! The replicated message log (docs/cluster.md, "The log"): a JetStream
//! stream every node appends its groups of sends to and applies, in the
//! stream's order, to its own RocksDB.
//!
//! - [`record`]: what the stream carries.
//! - [`replicated`]: the [`confab_storage::MessageLog`] the node's writers
//!   and readers use; appends go to the stream, reads to the local store.
//! - `applier`: follows the stream into the local store.
//! - `publish`: one record appended, sent again until the stream takes it.
//! - [`position`]: how far the local store has applied it.

mod applier;
pub mod position;
mod publish;
pub mod record;
pub mod replicated;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use confab_storage::{ManualClock, MessageLog};
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::applier::Applier;
use self::position::{Position, PositionFile};
use self::record::{Mark, Record};
use self::replicated::{RuntimeOwner, Shared, LOG_STREAM, LOG_SUBJECT};
use crate::{ClusterConfig, MembershipError};

pub use self::replicated::{ForeignSink, ReplicatedLog};

/// How long a send waits for the stream's acknowledgement and its
/// application here before it is answered `UNAVAILABLE` (and retried by
/// the client with the same id).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the replicated log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// NATS could not be reached.
    #[error(transparent)]
    Connect(#[from] MembershipError),
    /// JetStream refused to create or describe the stream.
    #[error("the {LOG_STREAM} stream: {0}")]
    Stream(String),
    /// The position file could not be read.
    #[error("the log position: {0}")]
    Position(#[from] std::io::Error),
    /// The local store was built from another stream than the cluster's.
    #[error(
        "this data directory was built from another {LOG_STREAM} stream (created at {mine} ns, \
         the cluster's at {theirs} ns): start the node on an empty data directory"
    )]
    OtherStream {
        /// The recorded creation time.
        mine: i128,
        /// The cluster's.
        theirs: i128,
    },
    /// The local store holds data that did not come from the stream.
    #[error(
        "this data directory holds messages of a node that was not in a cluster; \
         a cluster node starts on an empty one"
    )]
    NotFromStream,
    /// Applying the stream stopped.
    #[error("catching up with the {LOG_STREAM} stream: {0}")]
    CatchUp(String),
}

/// Opens the replicated log over `inner`, whose [`confab_storage::LogConfig`]
/// clock must be `clock`, and applies the stream up to its end as it is
/// now before returning, so that the node serves from a current store.
/// `fresh` says whether `inner` was created empty just now.
pub fn open<L: MessageLog>(
    config: &ClusterConfig,
    node_id: &str,
    inner: Arc<L>,
    clock: Arc<ManualClock>,
    data_dir: &std::path::Path,
    fresh: bool,
) -> Result<Arc<ReplicatedLog<L>>, LogError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("confab-log")
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (js, stream, created, last) = runtime.block_on(async {
        let client = crate::connect::connect(config, node_id).await?;
        let js = jetstream::new(client);
        let (stream, created, last) = crate::patience::patiently(
            &format!("opening {LOG_STREAM}"),
            |_| true,
            || async {
                let mut stream = js
                    .get_or_create_stream(stream::Config {
                        name: LOG_STREAM.to_owned(),
                        description: Some(
                            "confab's messages and marks, in the order every node applies them"
                                .to_owned(),
                        ),
                        subjects: vec![LOG_SUBJECT.to_owned()],
                        num_replicas: config.replicas,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let info = stream.info().await.map_err(|e| e.to_string())?;
                let (created, last) = (
                    info.created.unix_timestamp_nanos(),
                    info.state.last_sequence,
                );
                Ok::<_, String>((stream, created, last))
            },
        )
        .await
        .map_err(LogError::Stream)?;
        Ok::<_, LogError>((js, stream, created, last))
    })?;

    let position = PositionFile::new(data_dir);
    let start = match position.load()? {
        Some(Position::UNBOUND) => 0,
        Some(p) if p.stream_created_ns != created => {
            return Err(LogError::OtherStream {
                mine: p.stream_created_ns,
                theirs: created,
            })
        }
        Some(p) => p.applied,
        None if !fresh => return Err(LogError::NotFromStream),
        None => 0,
    };
    if start == 0 {
        // Bound to this stream at once: a node killed before its first
        // save must find its store its own when it comes back.
        position.save(Position {
            stream_created_ns: created,
            applied: 0,
        })?;
    }
    let shared = Arc::new(Shared::new());
    shared.applied.store(start, Ordering::Release);
    let origin = origin_of(node_id);
    let (marks_tx, marks_rx) = mpsc::unbounded_channel();
    handle.spawn(
        Applier {
            inner: inner.clone(),
            shared: shared.clone(),
            clock: clock.clone(),
            origin,
            position,
            stream_created_ns: created,
        }
        .run(stream),
    );
    handle.spawn(publish_marks(js.clone(), origin, marks_rx));

    let began = Instant::now();
    let mut reported = began;
    loop {
        let applied = shared.applied.load(Ordering::Acquire);
        if applied >= last {
            break;
        }
        if let Some(why) = shared.failed.get() {
            return Err(LogError::CatchUp(why.clone()));
        }
        if reported.elapsed() >= Duration::from_secs(5) {
            info!(applied, of = last, "catching up with the replicated log");
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    info!(
        from = start,
        to = last,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "replicated log applied; following it"
    );

    Ok(Arc::new(ReplicatedLog {
        inner,
        shared,
        js,
        runtime: handle,
        origin,
        next_group: AtomicU64::new(1),
        marks: marks_tx,
        ack_timeout: ACK_TIMEOUT,
        _clock: clock,
        _runtime_owner: RuntimeOwner(Some(runtime)),
    }))
}

/// A node's id as carried in records: a hash, so records stay small.
/// Group numbers restart with the process, so the start time is in it too:
/// a restarted node never mistakes its previous life's groups for its own.
fn origin_of(node_id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
    let mut h =
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(node_id.as_bytes());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// How long the marks publisher gathers after the first mark before it
/// appends them as one record. Nobody waits on a mark (this node applied it
/// already), and each record is an append replicated three times and
/// applied by every node: read marks come with most deliveries.
const MARKS_GATHER: Duration = Duration::from_millis(50);

/// Most marks in one record.
const MAX_MARKS: usize = 4096;

/// Publishes the marks set on this node, gathered and batched, retrying
/// until the stream takes them.
async fn publish_marks(js: jetstream::Context, origin: u64, mut rx: mpsc::UnboundedReceiver<Mark>) {
    let mut batch = Vec::new();
    let mut published = 0u64;
    while rx.recv_many(&mut batch, MAX_MARKS).await > 0 {
        let until = tokio::time::Instant::now() + MARKS_GATHER;
        while batch.len() < MAX_MARKS {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(mark)) => batch.push(mark),
                _ => break,
            }
        }
        let payload = Record::Marks {
            origin,
            marks: coalesce(std::mem::take(&mut batch)),
        }
        .encode();
        let id = format!("m{origin:x}-{published}");
        published += 1;
        loop {
            let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
            match publish::append(&js, &id, &payload, deadline).await {
                Ok(_) => break,
                Err(e) => warn!(error = %e, "publishing read marks and cursors; retrying"),
            }
        }
    }
}

/// Keeps one mark per key, the furthest: each applies as a maximum, so
/// the others change nothing.
fn coalesce(marks: Vec<Mark>) -> Vec<Mark> {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        Read(u64, u64),
        LastSeen(u64),
        Cursor(u64, u64),
    }
    let mut kept: HashMap<Key, usize> = HashMap::with_capacity(marks.len());
    let mut out: Vec<Mark> = Vec::with_capacity(marks.len());
    for mark in marks {
        let key = match mark {
            Mark::Read { channel, user, .. } => Key::Read(channel.0, user.0),
            Mark::LastSeen { user, .. } => Key::LastSeen(user.0),
            Mark::Cursor { user, device, .. } => Key::Cursor(user.0, device.0),
        };
        match kept.entry(key) {
            Entry::Vacant(v) => {
                v.insert(out.len());
                out.push(mark);
            }
            Entry::Occupied(o) => {
                let held = &mut out[*o.get()];
                *held = match (*held, mark) {
                    (
                        Mark::Read {
                            channel,
                            user,
                            seq: a,
                        },
                        Mark::Read { seq: b, .. },
                    ) => Mark::Read {
                        channel,
                        user,
                        seq: a.max(b),
                    },
                    (Mark::LastSeen { user, at_ms: a }, Mark::LastSeen { at_ms: b, .. }) => {
                        Mark::LastSeen {
                            user,
                            at_ms: a.max(b),
                        }
                    }
                    (
                        Mark::Cursor {
                            user,
                            device,
                            cursor: a,
                        },
                        Mark::Cursor { cursor: b, .. },
                    ) => Mark::Cursor {
                        user,
                        device,
                        cursor: confab_storage::Cursor {
                            delivered: a.delivered.max(b.delivered),
                            read: a.read.max(b.read),
                        },
                    },
                    (held, _) => held,
                };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_storage::{ChannelId, Seq, UserId};

    #[test]
    fn repeated_marks_coalesce_to_the_furthest() {
        let read = |user, seq| Mark::Read {
            channel: ChannelId(1),
            user: UserId(user),
            seq: Seq(seq),
        };
        let marks = vec![
            read(1, 5),
            read(2, 3),
            read(1, 9),
            read(1, 7),
            Mark::LastSeen {
                user: UserId(1),
                at_ms: 10,
            },
            Mark::LastSeen {
                user: UserId(1),
                at_ms: 4,
            },
        ];
        assert_eq!(
            coalesce(marks),
            vec![
                read(1, 9),
                read(2, 3),
                Mark::LastSeen {
                    user: UserId(1),
                    at_ms: 10
                }
            ]
        );
    }
}
