//! Writer pool tests: group commit, back-pressure, completion routing,
//! wake-ups, sharding across several writers, shutdown.

#[path = "../common/mod.rs"]
mod common;
mod gate;

use common::{full_history, full_inbox, req, wait_until};
use confab_storage::writer::{
    shard_of, Completion, Producer, SubmitRejection, Waker, WriterConfig, WriterPool,
};
use confab_storage::{
    ChannelId, InboxSeq, LogConfig, MemoryLog, MessageLog, RocksLog, Seq, StorageError, SyncPolicy,
    UserId,
};
use gate::GatedLog;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    (
        Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
        count,
    )
}

fn memory_log(policy: SyncPolicy) -> MemoryLog {
    MemoryLog::new(LogConfig {
        sync_policy: policy,
        ..LogConfig::default()
    })
}

fn memory(policy: SyncPolicy) -> Arc<MemoryLog> {
    Arc::new(memory_log(policy))
}

fn collect(producer: &mut Producer, n: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    wait_until("completions", || {
        producer.drain_into(&mut out);
        out.len() >= n
    });
    assert_eq!(out.len(), n);
    out
}

#[test]
fn group_commit_takes_everything_queued_behind_a_busy_writer() {
    let log = Arc::new(GatedLog::new(memory_log(SyncPolicy::Batch)));
    let (waker, wakes) = counting_waker();
    let config = WriterConfig {
        writers: 1,
        ..WriterConfig::default()
    };
    let (pool, mut producers) = WriterPool::start(log.clone(), config, vec![waker]).unwrap();
    let p = &mut producers[0];

    log.arm();
    p.submit(0, req(1, 1, 0, &[1, 2], "first")).unwrap();
    log.wait_entered();
    for i in 1..100 {
        p.submit(i, req(1 + i % 3, 1, i, &[1, 2], "queued"))
            .unwrap();
    }
    log.release();
    let done = collect(p, 100);
    assert!(done
        .iter()
        .all(|c| c.result.as_ref().is_ok_and(|o| !o.duplicate)));
    // One group for the request the writer was busy with, one for the 99
    // that queued meanwhile: group commit, not one write per message.
    assert_eq!(log.stage_sizes(), [1, 99]);
    let syncs = pool.stats().syncs.get();
    assert!((1..=2).contains(&syncs), "{syncs} fsyncs for 2 groups");
    // Woken once per delivered group, not per message.
    let wakes = wakes.load(Ordering::SeqCst);
    assert!((1..=2).contains(&wakes), "{wakes} wake-ups");
    assert_eq!(pool.stats().requests.get(), 100);
}

#[test]
fn a_full_queue_refuses_instead_of_blocking() {
    let log = Arc::new(GatedLog::new(memory_log(SyncPolicy::Batch)));
    let (waker, _) = counting_waker();
    let config = WriterConfig {
        writers: 1,
        queue_capacity: 4,
        ..WriterConfig::default()
    };
    let (_pool, mut producers) = WriterPool::start(log.clone(), config, vec![waker]).unwrap();
    let p = &mut producers[0];

    log.arm();
    p.submit(0, req(1, 1, 0, &[1], "in the writer")).unwrap();
    log.wait_entered();
    for i in 1..=4 {
        p.submit(i, req(1, 1, i, &[1], "queued")).unwrap();
    }
    let refused = p.submit(5, req(1, 1, 5, &[1], "one too many")).unwrap_err();
    assert_eq!(refused.reason, SubmitRejection::QueueFull);
    assert_eq!(refused.token, 5);
    assert_eq!(*refused.request, req(1, 1, 5, &[1], "one too many"));
    assert_eq!(p.outstanding(), 5);

    log.release();
    assert_eq!(collect(p, 5).len(), 5);
    // Space again once the writer drained the queue.
    p.submit(5, *refused.request).unwrap();
    let last = collect(p, 1).remove(0);
    assert_eq!((last.token, last.result.unwrap().seq.0), (5, 6));
}

#[test]
fn in_flight_limit_holds_until_completions_are_collected() {
    let log = memory(SyncPolicy::None);
    let (waker, _) = counting_waker();
    let config = WriterConfig {
        writers: 2,
        max_in_flight: 3,
        ..WriterConfig::default()
    };
    let (pool, mut producers) = WriterPool::start(log, config, vec![waker]).unwrap();
    let p = &mut producers[0];
    for i in 0..3 {
        p.submit(i, req(i, 1, i, &[1], "x")).unwrap();
    }
    // Completions may already sit in the queue; they still count until polled.
    wait_until("three commits", || pool.stats().requests.get() == 3);
    let refused = p.submit(3, req(3, 1, 3, &[1], "x")).unwrap_err();
    assert_eq!(refused.reason, SubmitRejection::InFlightLimit);
    assert!(p.poll().is_some());
    p.submit(3, *refused.request).unwrap();
    assert_eq!(collect(p, 3).len(), 3);
    assert_eq!(pool.stats().syncs.get(), 0, "policy none never fsyncs");
}

#[test]
fn invalid_requests_are_refused_at_submit() {
    let (waker, _) = counting_waker();
    let (_pool, mut producers) = WriterPool::start(
        memory(SyncPolicy::Batch),
        WriterConfig::default(),
        vec![waker],
    )
    .unwrap();
    let recipients: Vec<u64> = (0..101).collect();
    let refused = producers[0]
        .submit(1, req(1, 1, 1, &recipients, "x"))
        .unwrap_err();
    assert!(matches!(refused.reason, SubmitRejection::Invalid(_)));
    assert_eq!(producers[0].outstanding(), 0);
}

#[test]
fn completions_go_back_to_the_submitting_producer() {
    const PRODUCERS: usize = 3;
    const EACH: u64 = 200;
    let log = memory(SyncPolicy::Batch);
    let counters: Vec<_> = (0..PRODUCERS).map(|_| counting_waker()).collect();
    let wakers = counters.iter().map(|(w, _)| w.clone()).collect();
    let config = WriterConfig {
        writers: 3,
        ..WriterConfig::default()
    };
    let (pool, producers) = WriterPool::start(log, config, wakers).unwrap();
    std::thread::scope(|s| {
        for (id, mut p) in producers.into_iter().enumerate() {
            s.spawn(move || {
                let base = id as u64 * 1_000_000;
                for i in 0..EACH {
                    let client_id = base + i;
                    p.submit(client_id, req(i % 11, id as u64, client_id, &[1, 2], "x"))
                        .unwrap();
                }
                let done = collect(&mut p, EACH as usize);
                let tokens: HashSet<u64> = done.iter().map(|c| c.token).collect();
                assert_eq!(tokens, (base..base + EACH).collect::<HashSet<_>>());
                assert!(done
                    .iter()
                    .all(|c| c.result.as_ref().is_ok_and(|o| !o.duplicate)));
            });
        }
    });
    for (i, (_, wakes)) in counters.iter().enumerate() {
        let wakes = wakes.load(Ordering::SeqCst);
        assert!(wakes >= 1, "producer {i} never woken");
        assert!(wakes <= pool.stats().groups.get() as usize);
    }
}

#[test]
fn duplicates_through_the_writer_get_the_original_result() {
    let log = Arc::new(GatedLog::new(memory_log(SyncPolicy::Batch)));
    let (waker, _) = counting_waker();
    let (_pool, mut producers) =
        WriterPool::start(log.clone(), WriterConfig::default(), vec![waker]).unwrap();
    let p = &mut producers[0];
    log.arm();
    p.submit(1, req(5, 1, 77, &[1], "x")).unwrap();
    log.wait_entered();
    // Same client id twice in the next group: a retry racing the original.
    p.submit(2, req(5, 1, 77, &[1], "x")).unwrap();
    p.submit(3, req(5, 1, 78, &[1], "y")).unwrap();
    p.submit(4, req(5, 1, 78, &[1], "y")).unwrap();
    log.release();
    let mut done = collect(p, 4);
    done.sort_by_key(|c| c.token);
    let got: Vec<_> = done
        .iter()
        .map(|c| {
            let o = c.result.as_ref().unwrap();
            (o.seq.0, o.duplicate)
        })
        .collect();
    assert_eq!(got, [(1, false), (1, true), (2, false), (2, true)]);
}

#[test]
fn shutdown_completes_everything_already_queued() {
    let log = memory(SyncPolicy::Batch);
    let (waker, _) = counting_waker();
    let (pool, mut producers) =
        WriterPool::start(log.clone(), WriterConfig::default(), vec![waker]).unwrap();
    for i in 0..500 {
        producers[0].submit(i, req(1, 1, i, &[1], "x")).unwrap();
    }
    pool.shutdown();
    let mut done = Vec::new();
    producers[0].drain_into(&mut done);
    assert_eq!(done.len(), 500);
    assert_eq!(log.last_channel_seq(ChannelId(1)).unwrap(), Seq(500));
    let refused = producers[0]
        .submit(500, req(1, 1, 500, &[1], "late"))
        .unwrap_err();
    assert_eq!(refused.reason, SubmitRejection::Closed);
}

#[test]
fn a_failed_group_fails_every_request_in_it() {
    let log = Arc::new(GatedLog::new(memory_log(SyncPolicy::Batch)));
    log.fail_next_stage();
    let (waker, _) = counting_waker();
    let (_pool, mut producers) =
        WriterPool::start(log.clone(), WriterConfig::default(), vec![waker]).unwrap();
    producers[0].submit(1, req(1, 1, 1, &[1], "x")).unwrap();
    let done = collect(&mut producers[0], 1);
    assert!(matches!(done[0].result, Err(StorageError::Engine(_))));
}

/// Several writers, channels spread over them, users shared between channels
/// of different writers, on RocksDB with fsync per group. A device of a shared
/// user follows its inbox the whole time and must never have to skip.
#[test]
fn sharded_writers_keep_shared_inboxes_gapless_and_ordered() {
    const WRITERS: usize = 4;
    const PRODUCERS: usize = 2;
    const PER_PRODUCER: u64 = 1_500;
    const CHANNELS: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(RocksLog::open(dir.path(), LogConfig::default()).unwrap());
    let shards: HashSet<usize> = (0..CHANNELS)
        .map(|c| shard_of(ChannelId(c), WRITERS))
        .collect();
    assert!(shards.len() >= 3, "channels should spread over the writers");

    let wakers = (0..PRODUCERS)
        .map(|_| {
            let w: Waker = Arc::new(|| {});
            w
        })
        .collect();
    let config = WriterConfig {
        writers: WRITERS,
        queue_capacity: 64,
        ..WriterConfig::default()
    };
    let (pool, producers) = WriterPool::start(log.clone(), config, wakers).unwrap();
    let total = PRODUCERS as u64 * PER_PRODUCER;
    std::thread::scope(|s| {
        for (id, mut p) in producers.into_iter().enumerate() {
            s.spawn(move || {
                let mut done = Vec::new();
                for i in 0..PER_PRODUCER {
                    let client_id = id as u64 * 1_000_000 + i;
                    let channel = (i * 7 + id as u64) % CHANNELS;
                    // Users 1 and 2 are in every channel; 100+c only in c.
                    let mut request =
                        req(channel, 1 + i % 2, client_id, &[1, 2, 100 + channel], "m");
                    loop {
                        match p.submit(client_id, request) {
                            Ok(()) => break,
                            Err(e) => {
                                assert!(matches!(
                                    e.reason,
                                    SubmitRejection::QueueFull | SubmitRejection::InFlightLimit
                                ));
                                request = *e.request;
                                p.drain_into(&mut done);
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                wait_until("all completions", || {
                    p.drain_into(&mut done);
                    done.len() as u64 == PER_PRODUCER
                });
                assert!(done.iter().all(|c| c.result.is_ok()));
            });
        }
        let log = log.clone();
        s.spawn(move || {
            let mut cursor = 0;
            wait_until("device to catch up", || {
                let page = log.inbox(UserId(2), InboxSeq(cursor), 100).unwrap();
                for e in page.items {
                    assert_eq!(
                        e.inbox_seq,
                        InboxSeq(cursor + 1),
                        "device would skip inbox entries"
                    );
                    cursor = e.inbox_seq.into();
                }
                cursor == total
            });
        });
    });
    let groups = pool.stats().groups.get();
    drop(pool);
    assert!(
        groups < total,
        "{groups} groups for {total} requests: no group commit"
    );
    for user in [1, 2] {
        assert_eq!(full_inbox(&*log, user).len() as u64, total);
    }
    let mut stored = 0;
    for c in 0..CHANNELS {
        let history = full_history(&*log, c);
        assert_eq!(full_inbox(&*log, 100 + c).len(), history.len());
        stored += history.len() as u64;
    }
    assert_eq!(stored, total);
}
