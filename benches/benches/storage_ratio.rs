//! The message log against raw RocksDB writing the same keys, measured as
//! pairs: the two alternate in short rounds and each round gives one
//! ratio.
//!
//! Criterion (benches/storage.rs) measures one benchmark after another,
//! minutes apart. On a VM whose speed drifts, the ratio of two such
//! figures carries the drift: two runs on 2026-12-02 gave 67 % and 89 %
//! for the same row (docs/benchmarks.md). Here a round is a fraction of a
//! second of each, in alternating order, so a slow minute slows both
//! sides of the rounds it covers, and the median of the rounds' ratios is
//! the log's cost. The spread of the ratios is printed with it.
//!
//! `cargo bench -p confab-benches --bench storage_ratio` measures; under
//! `cargo test` (no `--bench`) it runs a few tiny rounds so the code stays
//! exercised without spending CI time. Row names after `--bench` pick rows
//! (`-- --bench none/1 batch/1024`), for profiling one of them.

mod common;

use common::{dm_batch, median, open_log, open_raw, DmKeys, DM_CHANNELS, RECORD_BYTES};
use confab_storage::{MessageLog, RocksLog, SyncPolicy};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::time::{Duration, Instant};

/// Raw RocksDB writing the same four keys per message as the log, with the
/// log's column-family options.
struct Raw {
    _dir: tempfile::TempDir,
    db: DB,
    opts: WriteOptions,
    seq: u64,
    record: Vec<u8>,
}

impl Raw {
    fn open(policy: SyncPolicy) -> Raw {
        let (dir, db) = open_raw();
        let mut opts = WriteOptions::default();
        opts.set_sync(policy == SyncPolicy::Batch);
        Raw {
            _dir: dir,
            db,
            opts,
            seq: 0,
            record: vec![b'x'; RECORD_BYTES],
        }
    }

    /// Writes `count` messages in batches of `n`; returns the time taken.
    fn write(&mut self, count: usize, n: usize) -> Duration {
        let keys = DmKeys::new(&self.db);
        let start = Instant::now();
        for _ in 0..count / n {
            let mut wb = WriteBatch::default();
            for _ in 0..n {
                self.seq += 1;
                keys.put(&mut wb, self.seq % DM_CHANNELS, self.seq, &self.record);
            }
            self.db.write_opt(wb, &self.opts).unwrap();
        }
        start.elapsed()
    }
}

/// The log under test.
struct Log {
    _dir: tempfile::TempDir,
    log: RocksLog,
    next_id: u64,
}

impl Log {
    fn open(policy: SyncPolicy) -> Log {
        let (dir, log) = open_log(policy);
        Log {
            _dir: dir,
            log,
            next_id: 0,
        }
    }

    /// Appends `count` messages in `append` calls of `n`; returns the time
    /// the calls took (building the requests is not timed, as in the
    /// criterion bench).
    fn write(&mut self, count: usize, n: usize) -> Duration {
        let requests = dm_batch(count, &mut self.next_id);
        let start = Instant::now();
        for batch in requests.chunks(n) {
            std::hint::black_box(self.log.append(batch).unwrap());
        }
        start.elapsed()
    }
}

/// Messages per round: a few tenths of a second of work at this VM's rates.
fn per_round(policy: SyncPolicy, n: usize, measuring: bool) -> usize {
    if !measuring {
        return n * 4;
    }
    match (policy, n) {
        (SyncPolicy::Batch, 1) => 1_024,
        (SyncPolicy::Batch, 64) => 8_192,
        _ => 16_384,
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds = if measuring { 21 } else { 2 };
    println!(
        "| sync | batch | log msgs/s | same keys msgs/s | log / same keys (median of {rounds}) | lowest – highest round |"
    );
    println!("|---|---|---|---|---|---|");
    for policy in [SyncPolicy::None, SyncPolicy::Batch] {
        for n in [1usize, 64, 1024] {
            let name = format!("{policy}/{n}");
            if !filters.is_empty() && !filters.contains(&name) {
                continue;
            }
            let count = per_round(policy, n, measuring);
            let mut log = Log::open(policy);
            let mut raw = Raw::open(policy);
            // Warm-up: memtables, file handles, the first WAL segment.
            log.write(count, n);
            raw.write(count, n);
            let (mut ratios, mut log_rates, mut raw_rates) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let (t_log, t_raw) = if round % 2 == 0 {
                    let l = log.write(count, n);
                    (l, raw.write(count, n))
                } else {
                    let r = raw.write(count, n);
                    (log.write(count, n), r)
                };
                let log_rate = count as f64 / t_log.as_secs_f64();
                let raw_rate = count as f64 / t_raw.as_secs_f64();
                log_rates.push(log_rate);
                raw_rates.push(raw_rate);
                ratios.push(log_rate / raw_rate);
            }
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            println!(
                "| {policy} | {n} | {:.1} k | {:.1} k | {:.0} % | {:.0} – {:.0} % |",
                median(&mut log_rates) / 1e3,
                median(&mut raw_rates) / 1e3,
                median(&mut ratios) * 100.0,
                lo * 100.0,
                hi * 100.0,
            );
            assert!(
                ratios.iter().all(|r| r.is_finite() && *r > 0.0),
                "every round wrote something"
            );
        }
    }
}
