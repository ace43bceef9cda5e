//! What the storage benches share, so that they measure the same traffic:
//! the direct-message model the log is fed, the raw RocksDB it is compared
//! with (the log's own column-family options), and the raw writer of the
//! same four keys per message that the log writes. The comparisons in
//! docs/benchmarks.md are only fair while every bench uses these.

// Each bench uses part of this module.
#![allow(dead_code)]

use confab_storage::{
    cf, AppendRequest, ChannelId, DeviceId, LogConfig, RocksLog, SyncPolicy, UserId,
};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, DB};

/// A typical short chat line.
pub const TEXT_BYTES: usize = 100;
/// Bytes of the stored record: 33-byte header + text.
pub const RECORD_BYTES: usize = 33 + TEXT_BYTES;
/// Bytes of an idempotency entry's value, as the log stores it.
pub const IDEMPOTENCY_VALUE_BYTES: usize = 32;
/// Direct-message channels the traffic is spread over.
pub const DM_CHANNELS: u64 = 4096;

/// Direct-message traffic: `DM_CHANNELS` channels, two members each (the
/// sender included), senders alternating.
pub fn dm_batch(n: usize, next_id: &mut u64) -> Vec<AppendRequest> {
    (0..n)
        .map(|_| {
            let id = *next_id;
            *next_id += 1;
            let channel = id % DM_CHANNELS;
            AppendRequest {
                channel: ChannelId(channel),
                sender: UserId(channel * 2 + id % 2),
                device: DeviceId(1),
                client_msg_id: id,
                recipients: vec![UserId(channel * 2), UserId(channel * 2 + 1)],
                text: "x".repeat(TEXT_BYTES).into(),
                push_to: Vec::new(),
            }
        })
        .collect()
}

/// The log under `policy` in a fresh directory.
pub fn open_log(policy: SyncPolicy) -> (tempfile::TempDir, RocksLog) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        sync_policy: policy,
        ..LogConfig::default()
    };
    let log = RocksLog::open(dir.path(), config).unwrap();
    (dir, log)
}

/// Raw RocksDB with the log's DB options and the column families the log
/// writes on append, each with the log's options after `tweak` (name,
/// options) has changed them; the identity tweak gives the log's own.
pub fn open_raw_with(
    tweak: impl Fn(&str, &mut Options),
    db_tweak: impl FnOnce(&mut Options),
) -> (tempfile::TempDir, DB) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let cfs = [cf::MESSAGES, cf::INBOX, cf::IDEMPOTENCY].map(|name| {
        let mut opts = cf::column_family_options(name, &config).unwrap();
        tweak(name, &mut opts);
        ColumnFamilyDescriptor::new(name, opts)
    });
    let mut db_opts = cf::db_options();
    db_tweak(&mut db_opts);
    let db = DB::open_cf_descriptors(&db_opts, dir.path(), cfs).unwrap();
    (dir, db)
}

/// Raw RocksDB with exactly the log's options.
pub fn open_raw() -> (tempfile::TempDir, DB) {
    open_raw_with(|_, _| {}, |_| {})
}

/// `a ‖ b`, big-endian, as the log's keys are.
pub fn key(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

/// Writes the four keys the log writes for one direct message: the
/// record, the two members' inbox pointers and the idempotency entry, with
/// values of the log's sizes. No sequence assignment, no idempotency check,
/// no locking: what is left of the log's cost when those are taken away.
pub struct DmKeys<'a> {
    messages: &'a ColumnFamily,
    inbox: &'a ColumnFamily,
    idem: &'a ColumnFamily,
}

impl<'a> DmKeys<'a> {
    /// The column-family handles, looked up once.
    pub fn new(db: &'a DB) -> Self {
        Self {
            messages: db.cf_handle(cf::MESSAGES).unwrap(),
            inbox: db.cf_handle(cf::INBOX).unwrap(),
            idem: db.cf_handle(cf::IDEMPOTENCY).unwrap(),
        }
    }

    /// Adds message number `seq` of `channel` to `wb`.
    pub fn put(&self, wb: &mut WriteBatch, channel: u64, seq: u64, record: &[u8]) {
        wb.put_cf(self.messages, key(channel, seq), record);
        wb.put_cf(self.inbox, key(channel * 2, seq), key(channel, seq));
        wb.put_cf(self.inbox, key(channel * 2 + 1, seq), key(channel, seq));
        let mut idem_key = [0u8; 24];
        idem_key[..16].copy_from_slice(&key(channel * 2, 1));
        idem_key[16..].copy_from_slice(&seq.to_be_bytes());
        wb.put_cf(self.idem, idem_key, [0u8; IDEMPOTENCY_VALUE_BYTES]);
    }
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
