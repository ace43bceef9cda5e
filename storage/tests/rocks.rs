//! RocksLog-only behaviour that the in-memory model has no counterpart for:
//! column-family layout on disk and compaction-time expiry of idempotency
//! entries.

use confab_storage::{
    cf, AppendRequest, ChannelId, DeviceId, LogConfig, ManualClock, MessageLog, RocksLog, Seq,
    SyncPolicy, UserId,
};
use std::sync::Arc;

fn request(client_msg_id: u64) -> AppendRequest {
    AppendRequest {
        channel: ChannelId(1),
        sender: UserId(1),
        device: DeviceId(1),
        client_msg_id,
        recipients: vec![UserId(1)],
        text: "x".into(),
        push_to: Vec::new(),
    }
}

#[test]
fn every_named_column_family_exists_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    drop(RocksLog::open(dir.path(), LogConfig::default()).unwrap());
    let mut on_disk = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    on_disk.sort();
    let mut expected: Vec<String> = cf::ALL.iter().map(|s| s.to_string()).collect();
    expected.push("default".into());
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[test]
fn compaction_drops_expired_idempotency_entries_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LogConfig {
        sync_policy: SyncPolicy::None,
        idempotency_window_ms: 60_000,
        clock: clock.clone(),
    };
    let log = RocksLog::open(dir.path(), config).unwrap();
    let batch: Vec<_> = (0..100).map(request).collect();
    log.append(&batch).unwrap();
    clock.advance(30_000);
    let fresh: Vec<_> = (100..150).map(request).collect();
    log.append(&fresh).unwrap();

    log.compact().unwrap();
    assert_eq!(
        log.estimate_keys(cf::IDEMPOTENCY).unwrap(),
        150,
        "nothing expired yet"
    );

    clock.advance(30_000); // first 100 now exactly at the window edge: expired
    log.compact().unwrap();
    assert_eq!(log.estimate_keys(cf::IDEMPOTENCY).unwrap(), 50);
    assert_eq!(
        log.estimate_keys(cf::MESSAGES).unwrap(),
        150,
        "history is kept for ever"
    );
    assert_eq!(log.estimate_keys(cf::INBOX).unwrap(), 150);
    // The survivors still deduplicate; the dropped ids are free again.
    assert!(log.append(&[request(120)]).unwrap()[0].duplicate);
    assert!(!log.append(&[request(5)]).unwrap()[0].duplicate);
}

#[test]
fn interval_policy_acks_without_waiting_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        sync_policy: "interval:5".parse().unwrap(),
        ..LogConfig::default()
    };
    let log = RocksLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.sync_policy(), SyncPolicy::Interval(5));
    log.append(&[request(1), request(2)]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    drop(log);
    let log = RocksLog::open(dir.path(), config).unwrap();
    assert_eq!(log.last_channel_seq(ChannelId(1)).unwrap(), Seq(2));
}
