//! Storage write/read throughput, next to raw RocksDB doing the same writes
//! with the same column-family options in the same run, so the log's overhead
//! is a ratio rather than a guess. Results and the command are recorded in
//! docs/benchmarks.md ("Storage").

mod common;

use common::{dm_batch, key, open_log, open_raw, DmKeys, DM_CHANNELS, RECORD_BYTES, TEXT_BYTES};
use confab_storage::writer::{Waker, WriterConfig, WriterPool};
use confab_storage::{
    cf, AppendRequest, ChannelId, DeviceId, HistoryAnchor, MessageLog, SyncPolicy, UserId,
};
use confab_types::{InboxSeq, Seq};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rocksdb::{WriteBatch, WriteOptions};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 3] = [1, 64, 1024];
const POLICIES: [SyncPolicy; 2] = [SyncPolicy::None, SyncPolicy::Batch];

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for policy in POLICIES {
        for n in BATCH_SIZES {
            group.throughput(Throughput::Elements(n as u64));
            let (_dir, log) = open_log(policy);
            let mut next = 0;
            group.bench_function(BenchmarkId::new(format!("log/sync={policy}"), n), |b| {
                b.iter_batched(
                    || dm_batch(n, &mut next),
                    |batch| black_box(log.append(&batch).unwrap()),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// Raw RocksDB baselines. `raw_record`: one put per message (the record
/// alone), the comparison the issue asks for. `raw_same_keys`: the exact key
/// set the log writes per message (record + 2 inbox pointers + idempotency
/// entry), isolating the log's own overhead from the extra data it stores.
fn raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    let record = vec![b'x'; RECORD_BYTES];
    for policy in POLICIES {
        let mut opts = WriteOptions::default();
        opts.set_sync(policy == SyncPolicy::Batch);
        for n in BATCH_SIZES {
            group.throughput(Throughput::Elements(n as u64));
            let (_dir, db) = open_raw();
            let messages = db.cf_handle(cf::MESSAGES).unwrap();
            let mut seq = 0u64;
            group.bench_function(
                BenchmarkId::new(format!("raw_record/sync={policy}"), n),
                |b| {
                    b.iter(|| {
                        let mut wb = WriteBatch::default();
                        for _ in 0..n {
                            seq += 1;
                            wb.put_cf(messages, key(seq % DM_CHANNELS, seq), &record);
                        }
                        db.write_opt(wb, &opts).unwrap();
                    })
                },
            );
            let (_dir, db) = open_raw();
            let keys = DmKeys::new(&db);
            group.bench_function(
                BenchmarkId::new(format!("raw_same_keys/sync={policy}"), n),
                |b| {
                    b.iter(|| {
                        let mut wb = WriteBatch::default();
                        for _ in 0..n {
                            seq += 1;
                            keys.put(&mut wb, seq % DM_CHANNELS, seq, &record);
                        }
                        db.write_opt(wb, &opts).unwrap();
                    })
                },
            );
        }
    }
    group.finish();
}

/// One message to a full 100-member group: 100 inbox pointers per message.
fn group_fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_100_members");
    for n in [1usize, 64] {
        group.throughput(Throughput::Elements(n as u64));
        let (_dir, log) = open_log(SyncPolicy::Batch);
        let members: Vec<UserId> = (0..100).map(UserId).collect();
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("log/sync=batch", n), |b| {
            b.iter_batched(
                || {
                    (0..n)
                        .map(|_| {
                            next += 1;
                            AppendRequest {
                                channel: ChannelId(next % 16),
                                sender: UserId(next % 100),
                                device: DeviceId(1),
                                client_msg_id: next,
                                recipients: members.clone(),
                                text: "x".repeat(TEXT_BYTES).into(),
                                push_to: Vec::new(),
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |batch| black_box(log.append(&batch).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A 50-message history page from a channel with 20,000 messages, anchored
/// at a varying point, plus a 50-entry inbox page.
fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_page_50");
    group.throughput(Throughput::Elements(50));
    let (_dir, log) = open_log(SyncPolicy::None);
    for chunk in 0..20u64 {
        let batch: Vec<_> = (0..1000u64)
            .map(|i| AppendRequest {
                channel: ChannelId(7),
                sender: UserId(1),
                device: DeviceId(1),
                client_msg_id: chunk * 1000 + i,
                recipients: vec![UserId(1), UserId(2)],
                text: "x".repeat(TEXT_BYTES).into(),
                push_to: Vec::new(),
            })
            .collect();
        log.append(&batch).unwrap();
    }
    let mut anchor = 0u64;
    group.bench_function("history", |b| {
        b.iter(|| {
            anchor = (anchor + 7919) % 19_950 + 51;
            let page = log
                .channel_history(ChannelId(7), HistoryAnchor::Before(Seq(anchor)), 50)
                .unwrap();
            assert_eq!(page.items.len(), 50);
            black_box(page)
        })
    });
    group.bench_function("inbox", |b| {
        b.iter(|| {
            anchor = (anchor + 7919) % 19_950;
            let page = log.inbox(UserId(2), InboxSeq(anchor), 50).unwrap();
            assert_eq!(page.items.len(), 50);
            black_box(page)
        })
    });
    group.finish();
}

/// End to end through the writer pool under sync=batch: one producer keeps
/// up to 16,384 requests in flight; group commit and the fsync pipeline
/// decide the rate.
fn writer_pipeline(c: &mut Criterion) {
    const MESSAGES: usize = 16_384;
    let mut group = c.benchmark_group("writer_pipeline");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    let (_dir, log) = open_log(SyncPolicy::Batch);
    let log = Arc::new(log);
    let waker: Waker = Arc::new(|| {});
    let config = WriterConfig {
        writers: 1,
        queue_capacity: MESSAGES,
        max_in_flight: MESSAGES,
        max_group: 1024,
    };
    let (_pool, mut producers) = WriterPool::start(log, config, vec![waker]).unwrap();
    let p = &mut producers[0];
    let mut next = 0u64;
    group.bench_function("sync=batch/1_writer", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let requests = dm_batch(MESSAGES, &mut next);
                let start = Instant::now();
                for (i, r) in requests.into_iter().enumerate() {
                    p.submit(i as u64, r).unwrap();
                }
                let mut done = 0;
                while done < MESSAGES {
                    match p.poll() {
                        Some(c) => {
                            c.result.unwrap();
                            done += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, append, raw, group_fan_out, reads, writer_pipeline);
criterion_main!(benches);
