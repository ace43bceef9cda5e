//! Paired A/B runs of RocksDB options on the log's write pattern.
//!
//! A tuning choice in `confab_storage::cf` (docs/storage.md, "Column
//! families and tuning") is kept with a measurement behind it. This bench
//! writes the log's four keys per direct message into two raw RocksDBs,
//! one with the log's options and one with a named change, alternating in
//! short rounds as `storage_ratio` does, and prints the median of the
//! per-round ratios (change / log's options).
//!
//! ```sh
//! cargo bench -p confab-benches --bench cf_options -- --bench [--channels N] VARIANT...
//! ```
//!
//! Variants:
//! - `memtable-bloom`: the memtable blooms that `messages`, `inbox` and
//!   `idempotency` no longer have (prefix blooms, whole-key on idempotency).
//! - `insert-hints`: RocksDB's `memtable_insert_with_hint_prefix_extractor`
//!   on the 8-byte prefix of `messages` and `inbox`, which remembers the
//!   last insert position per prefix.
//! - `half-buffers`: the write buffers of `messages` and `inbox` halved.
//! - `no-pipelined`: pipelined writes off (the log turns them on).
//! - `unordered-write`: RocksDB's `unordered_write` (which needs pipelined
//!   writes off): writers insert into the memtable without waiting for
//!   each other's order, snapshots give way.
//! - `hash-skiplist`: a hash of skip lists by the 8-byte prefix as the
//!   memtable of `messages` and `inbox` instead of one skip list (no
//!   concurrent memtable writes with it).
//! - `vector`: an unsorted vector as the memtable of `messages` and `inbox`
//!   (sorted when read or flushed: cheap inserts, costly recent reads).
//!
//! `--batch N` writes N messages per write batch (default 1,024): small
//! batches are what the writer commits at low rates, where the cost per
//! write (WAL record, write-group hand-over) counts more than the memtable.
//!
//! `--channels N` spreads the messages over N channels (default 4096, as in
//! the other storage benches), each message's channel picked at random, so
//! a large N shows a workload where most messages open a prefix the
//! memtable has not seen. Under `cargo test` (no `--bench`) each variant
//! runs two tiny rounds, which keeps the bench compiling and working.

mod common;

use common::{median, open_raw_with, DmKeys, DM_CHANNELS, RECORD_BYTES};
use confab_storage::cf;
use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use std::time::{Duration, Instant};

const VARIANTS: [&str; 7] = [
    "memtable-bloom",
    "insert-hints",
    "half-buffers",
    "no-pipelined",
    "unordered-write",
    "hash-skiplist",
    "vector",
];

/// Changes the log's options of column family `name` as `variant` says.
fn tweak(variant: &str, name: &str, opts: &mut Options) {
    let write_heavy = name == cf::MESSAGES || name == cf::INBOX;
    match variant {
        "memtable-bloom" => {
            opts.set_memtable_prefix_bloom_ratio(0.1);
            if name == cf::IDEMPOTENCY {
                opts.set_memtable_whole_key_filtering(true);
            }
        }
        // Only settable through an options string. The copy keeps the
        // table factory and prefix extractor (shared by RocksDB), which is
        // all these two column families carry: idempotency is left out, as
        // its compaction filter is owned by the Rust options it would leave.
        "insert-hints" if write_heavy => {
            *opts = opts
                .get_options_from_string(
                    "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.8",
                )
                .unwrap();
        }
        "half-buffers" if name == cf::MESSAGES => opts.set_write_buffer_size(64 << 20),
        "half-buffers" if name == cf::INBOX => opts.set_write_buffer_size(32 << 20),
        "hash-skiplist" if write_heavy => {
            opts.set_memtable_factory(rocksdb::MemtableFactory::HashSkipList {
                bucket_count: 1 << 20,
                height: 4,
                branching_factor: 4,
            });
        }
        "vector" if write_heavy => {
            opts.set_memtable_factory(rocksdb::MemtableFactory::Vector);
        }
        "insert-hints" | "half-buffers" | "hash-skiplist" | "vector" => {}
        "no-pipelined" | "unordered-write" => {}
        other => panic!("unknown variant {other}; known: {VARIANTS:?}"),
    }
}

/// Changes the log's database options as `variant` says.
fn tweak_db(variant: &str, opts: &mut Options) {
    match variant {
        "no-pipelined" => opts.set_enable_pipelined_write(false),
        "unordered-write" => {
            opts.set_enable_pipelined_write(false);
            opts.set_unordered_write(true);
        }
        // Only the skip list takes concurrent inserts.
        "hash-skiplist" | "vector" => opts.set_allow_concurrent_memtable_write(false),
        _ => {}
    }
}

/// One raw RocksDB and the messages it has written.
struct Side {
    _dir: tempfile::TempDir,
    db: DB,
    opts: WriteOptions,
    seq: u64,
    channels: u64,
    record: Vec<u8>,
}

impl Side {
    fn open(variant: Option<&str>, sync: bool, channels: u64) -> Side {
        let (dir, db) = open_raw_with(
            |name, opts| {
                if let Some(v) = variant {
                    tweak(v, name, opts)
                }
            },
            |opts| {
                if let Some(v) = variant {
                    tweak_db(v, opts)
                }
            },
        );
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        Side {
            _dir: dir,
            db,
            opts,
            seq: 0,
            channels,
            record: vec![b'x'; RECORD_BYTES],
        }
    }

    fn write(&mut self, count: usize, n: usize) -> Duration {
        let keys = DmKeys::new(&self.db);
        let start = Instant::now();
        for _ in 0..count / n {
            let mut wb = WriteBatch::default();
            for _ in 0..n {
                self.seq += 1;
                let channel = splitmix(self.seq) % self.channels;
                keys.put(&mut wb, channel, self.seq, &self.record);
            }
            self.db.write_opt(wb, &self.opts).unwrap();
        }
        start.elapsed()
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let measuring = args.iter().any(|a| a == "--bench");
    let mut channels = DM_CHANNELS;
    let mut batch = 1024;
    let mut variants = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--channels" => {
                channels = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &u64| n > 0)
                    .expect("--channels takes a positive number");
            }
            "--batch" => {
                batch = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .expect("--batch takes a positive number");
            }
            a if a.starts_with("--") => {}
            v => variants.push(v.to_string()),
        }
    }
    if variants.is_empty() {
        variants = VARIANTS.iter().map(|v| v.to_string()).collect();
    }
    // Small batches with fsync are slow: fewer messages per round.
    let (rounds, count) = if measuring {
        (21, (batch * 16).clamp(1_024, 16_384))
    } else {
        (2, 64)
    };
    println!("{channels} channels, {batch} messages per write batch, median of {rounds} rounds");
    println!("| variant | sync | log's options msgs/s | variant msgs/s | variant / log's options | lowest – highest round |");
    println!("|---|---|---|---|---|---|");
    for variant in &variants {
        for sync in [false, true] {
            let n = if measuring { batch } else { 16 };
            let mut base = Side::open(None, sync, channels);
            let mut changed = Side::open(Some(variant), sync, channels);
            base.write(count, n);
            changed.write(count, n);
            let (mut ratios, mut base_rates, mut changed_rates) = (vec![], vec![], vec![]);
            for round in 0..rounds {
                let (tb, tc) = if round % 2 == 0 {
                    let b = base.write(count, n);
                    (b, changed.write(count, n))
                } else {
                    let c = changed.write(count, n);
                    (base.write(count, n), c)
                };
                let (rb, rc) = (
                    count as f64 / tb.as_secs_f64(),
                    count as f64 / tc.as_secs_f64(),
                );
                base_rates.push(rb);
                changed_rates.push(rc);
                ratios.push(rc / rb);
            }
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            println!(
                "| {variant} | {} | {:.1} k | {:.1} k | {:.0} % | {:.0} – {:.0} % |",
                if sync { "batch" } else { "none" },
                median(&mut base_rates) / 1e3,
                median(&mut changed_rates) / 1e3,
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
