//! Column families of [`crate::RocksLog`], named once here, and the tuning of
//! each (the reasoning is in `docs/storage.md`, "Column families").
//!
//! Public so tools and benchmarks can open a raw RocksDB with byte-identical
//! options and compare like with like.

use crate::codec::{expired, IdempotencyRecord, PREFIX_LEN};
use crate::log::LogConfig;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode,
    MergeOperands, Options, SliceTransform,
};
use tracing::warn;

/// Channel log: `channel | seq` → message record.
pub const MESSAGES: &str = "messages";
/// Per-user message sync queue: `user | inbox_seq` → `channel | seq`.
pub const INBOX: &str = "inbox";
/// Retry detection: `sender | device | client_msg_id` → `channel | seq | ts`.
pub const IDEMPOTENCY: &str = "idempotency";
/// Per-device cursors: `user | device` → `delivered | read`.
pub const CURSORS: &str = "cursors";
/// Presence: `user` → last-seen ms.
pub const PRESENCE: &str = "presence";
/// Read receipts: `channel | user` → highest channel seq the user read.
pub const RECEIPTS: &str = "receipts";

/// Push jobs: `user | channel | seq` → `inbox_seq | sender | timestamp_ms`,
/// written in the message's batch, deleted once the push is settled.
pub const OUTBOX: &str = "outbox";

/// Every column family the log opens (RocksDB's mandatory `default` is left
/// empty).
pub const ALL: [&str; 7] = [
    MESSAGES,
    INBOX,
    IDEMPOTENCY,
    CURSORS,
    PRESENCE,
    RECEIPTS,
    OUTBOX,
];

const MIB: usize = 1 << 20;

/// Block cache shared by all column families, so hot history and hot inboxes
/// compete for one budget instead of five fixed slices.
const BLOCK_CACHE_BYTES: usize = 256 * MIB;

/// Database-wide options.
pub fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // A torn WAL tail after kill -9 or power loss is dropped and everything
    // before it recovered: exactly the "prefix of what was written" property
    // the gapless-sequence argument relies on.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as i32;
    opts.increase_parallelism(cores.max(2));
    opts.set_max_background_jobs(cores.clamp(2, 8));
    // Several shard writers commit concurrently; pipelining lets one group's
    // memtable insert overlap the next group's WAL append.
    opts.set_enable_pipelined_write(true);
    // Cursors and presence are written rarely; without a cap their memtables
    // would pin old WAL files for ever.
    opts.set_max_total_wal_size(1 << 30);
    // Smooth write-back of SSTs instead of one large fsync per file.
    opts.set_bytes_per_sync(MIB as u64);
    opts
}

/// Options of column family `name` (one of [`ALL`]); `None` for an unknown name.
pub fn column_family_options(name: &str, config: &LogConfig) -> Option<Options> {
    column_family_options_with_cache(name, config, &Cache::new_lru_cache(BLOCK_CACHE_BYTES))
}

pub(crate) fn descriptors(config: &LogConfig) -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    ALL.iter()
        .filter_map(|name| {
            column_family_options_with_cache(name, config, &cache)
                .map(|opts| ColumnFamilyDescriptor::new(*name, opts))
        })
        .collect()
}

fn table(cache: &Cache, whole_key_filtering: bool, block_size: usize) -> BlockBasedOptions {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(whole_key_filtering);
    table.set_block_size(block_size);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_format_version(5);
    table
}

/// Prefix bloom on the 8-byte channel/user id: history and inbox reads seek
/// within one prefix, so SSTs without it are skipped.
fn prefixed(opts: &mut Options) {
    opts.set_prefix_extractor(SliceTransform::create_fixed_prefix(PREFIX_LEN));
}

/// A bloom filter in the memtable too, for column families read more than
/// they are written. The write-heavy ones (`messages`, `inbox`,
/// `idempotency`) go without: every insert would set bits at random in a
/// filter of a tenth of the write buffer. With them, raw RocksDB wrote
/// their keys at 85-95 % of the rate without (`benches/benches/cf_options.rs`,
/// docs/benchmarks.md). What one saves is a memtable seek per read, and
/// reads there are rare next to writes.
fn memtable_bloom(opts: &mut Options) {
    opts.set_memtable_prefix_bloom_ratio(0.1);
}

fn column_family_options_with_cache(
    name: &str,
    config: &LogConfig,
    cache: &Cache,
) -> Option<Options> {
    let mut opts = Options::default();
    opts.set_level_compaction_dynamic_level_bytes(true);
    match name {
        MESSAGES => {
            prefixed(&mut opts);
            // Inbox resolution gets existing keys only, where a whole-key
            // filter never saves a read; prefix filters alone halve filter size.
            opts.set_block_based_table_factory(&table(cache, false, 16 * 1024));
            // Write-heavy and append-only: big memtables mean fewer, larger
            // L0 files and less write amplification.
            opts.set_write_buffer_size(128 * MIB);
            opts.set_max_write_buffer_number(4);
            opts.set_target_file_size_base(128 * MIB as u64);
            // Recent history is read and rewritten by compaction; LZ4 is cheap
            // there. The bottommost level holds nearly all data and is cold:
            // ZSTD's better ratio pays off.
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        }
        INBOX => {
            prefixed(&mut opts);
            opts.set_block_based_table_factory(&table(cache, false, 4 * 1024));
            opts.set_write_buffer_size(64 * MIB);
            opts.set_max_write_buffer_number(4);
            opts.set_compression_type(DBCompressionType::Lz4);
        }
        IDEMPOTENCY => {
            // Point lookups (retries, ids that arrive out of order) that
            // almost always miss: a whole-key bloom filter answers them
            // without touching blocks.
            opts.set_block_based_table_factory(&table(cache, true, 4 * 1024));
            opts.set_write_buffer_size(32 * MIB);
            opts.set_compression_type(DBCompressionType::Lz4);
            let window = config.idempotency_window_ms;
            let clock = config.clock.clone();
            // Entries past the window are garbage; dropping them at compaction
            // is what keeps this column family bounded by the send rate times
            // the window. Lookups check the same expiry, so whether compaction
            // has run yet never changes an answer.
            opts.set_compaction_filter("confab.idempotency_expiry", move |_, _, value: &[u8]| {
                match IdempotencyRecord::decode(value) {
                    Ok(rec) if expired(rec.timestamp_ms, clock.now_ms(), window) => {
                        rocksdb::CompactionDecision::Remove
                    }
                    Ok(_) => rocksdb::CompactionDecision::Keep,
                    Err(err) => {
                        warn!(%err, "keeping undecodable idempotency entry");
                        rocksdb::CompactionDecision::Keep
                    }
                }
            });
        }
        CURSORS => {
            prefixed(&mut opts);
            memtable_bloom(&mut opts);
            opts.set_block_based_table_factory(&table(cache, true, 4 * 1024));
            opts.set_write_buffer_size(16 * MIB);
            opts.set_compression_type(DBCompressionType::Lz4);
            // Field-wise max as a merge: concurrent or reordered updates from
            // several gateway cores never rewind a cursor, with no read before
            // the write.
            opts.set_merge_operator_associative("confab.cursor_max", merge_cursor_max);
        }
        PRESENCE => {
            opts.set_block_based_table_factory(&table(cache, true, 4 * 1024));
            opts.set_write_buffer_size(16 * MIB);
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_merge_operator_associative("confab.u64_max", merge_u64_max);
        }
        RECEIPTS => {
            // Read per channel (one prefix, at most 100 members); written as
            // a max-merge so a late receipt never moves a mark back, with
            // no read before the write.
            prefixed(&mut opts);
            memtable_bloom(&mut opts);
            opts.set_block_based_table_factory(&table(cache, true, 4 * 1024));
            opts.set_write_buffer_size(16 * MIB);
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_merge_operator_associative("confab.receipt_max", merge_u64_max);
        }
        OUTBOX => {
            // A queue: written and deleted once each, read in full only when
            // the push worker starts. Small memtables keep its tombstones
            // from pinning WAL files; deletes of keys still in the memtable
            // cancel out before they ever reach an SST.
            opts.set_block_based_table_factory(&table(cache, false, 4 * 1024));
            opts.set_write_buffer_size(8 * MIB);
            opts.set_compression_type(DBCompressionType::Lz4);
        }
        _ => return None,
    }
    Some(opts)
}

fn merge_cursor_max(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut best = [0u64; 2];
    for value in existing.into_iter().chain(operands.iter()) {
        // A malformed operand cannot come from this crate; skipping it beats
        // failing every future read of the key.
        if let Ok(c) = crate::codec::decode_cursor(value) {
            best[0] = best[0].max(c.delivered.into());
            best[1] = best[1].max(c.read.into());
        }
    }
    Some(crate::codec::pair_key(best[0], best[1]).to_vec())
}

fn merge_u64_max(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let best = existing
        .into_iter()
        .chain(operands.iter())
        .filter_map(|v| crate::codec::decode_u64(v, "presence").ok())
        .max()
        .unwrap_or(0);
    Some(best.to_be_bytes().to_vec())
}
