//! Crash test: a child process appends through the writer pool under
//! `sync=batch` and prints every acknowledged message; the parent SIGKILLs it
//! at random points, reopens the store and checks that every acknowledged
//! message survived, sequences and inboxes are gapless, and retries of
//! acknowledged client ids are still recognised.
//!
//! `harness = false`: the same binary is the child when `CONFAB_CRASH_DIR` is
//! set, which avoids shipping a helper binary in the library crate.

#[path = "common/mod.rs"]
mod common;

use common::{full_history, full_inbox};
use confab_storage::writer::{Waker, WriterConfig, WriterPool};
use confab_storage::{
    AppendRequest, ChannelId, DeviceId, LogConfig, MessageLog, RocksLog, SyncPolicy, UserId,
};
use rand::Rng;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHANNELS: u64 = 4;
const ITERATIONS: usize = 20;

/// Deterministic from the client id, so the parent can rebuild any request
/// the child sent (to retry it) from an ack line alone.
fn request_for(client_msg_id: u64) -> AppendRequest {
    let channel = 1 + client_msg_id % CHANNELS;
    let sender = 1 + client_msg_id % 3;
    AppendRequest {
        channel: ChannelId(channel),
        sender: UserId(sender),
        device: DeviceId(1),
        client_msg_id,
        // Users 1..=3 are in every channel; 10+c only in channel c.
        recipients: vec![UserId(1), UserId(2), UserId(3), UserId(10 + channel)],
        text: format!("message {client_msg_id}").into(),
        push_to: Vec::new(),
    }
}

fn main() {
    match std::env::var("CONFAB_CRASH_DIR") {
        Ok(dir) => child(&dir),
        Err(_) => parent(),
    }
}

/// Appends until killed. Every 5th submission re-sends an earlier client id,
/// as a client retrying after a lost ack would.
fn child(dir: &str) {
    let first_id: u64 = std::env::var("CONFAB_CRASH_FIRST_ID")
        .unwrap()
        .parse()
        .unwrap();
    let log = Arc::new(RocksLog::open(dir, LogConfig::default()).unwrap());
    assert_eq!(log.sync_policy(), SyncPolicy::Batch);
    let main = std::thread::current();
    let waker: Waker = Arc::new(move || main.unpark());
    let config = WriterConfig {
        writers: 2,
        queue_capacity: 256,
        max_in_flight: 512,
        max_group: 256,
    };
    let (_pool, mut producers) = WriterPool::start(log, config, vec![waker]).unwrap();
    let p = &mut producers[0];
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut next_id = first_id;
    let mut token = 0u64;
    let mut pending: HashMap<u64, u64> = HashMap::new();
    loop {
        while p.outstanding() < 512 {
            let id = if token % 5 == 4 && next_id > first_id {
                next_id.saturating_sub(1 + (token / 5) % 3).max(first_id)
            } else {
                next_id
            };
            match p.submit(token, request_for(id)) {
                Ok(()) => {
                    pending.insert(token, id);
                    token += 1;
                    if id == next_id {
                        next_id += 1;
                    }
                }
                Err(_) => break,
            }
        }
        let mut any = false;
        while let Some(done) = p.poll() {
            let id = pending.remove(&done.token).unwrap();
            let o = done.result.expect("append failed in child");
            writeln!(
                out,
                "ack {id} {} {} {}",
                o.channel,
                o.seq,
                u8::from(o.duplicate)
            )
            .unwrap();
            any = true;
        }
        if any {
            out.flush().unwrap();
        } else {
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }
}

struct Ack {
    client_msg_id: u64,
    channel: u64,
    seq: u64,
    duplicate: bool,
}

fn parse(line: &str) -> Ack {
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    Ack {
        client_msg_id: f[0],
        channel: f[1],
        seq: f[2],
        duplicate: f[3] == 1,
    }
}

fn parent() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    // client id -> (channel, seq) of every acknowledged message.
    let mut acked: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut kills_with_acks = 0;
    for iteration in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .env("CONFAB_CRASH_DIR", dir.path())
            .env(
                "CONFAB_CRASH_FIRST_ID",
                (iteration as u64 * 1_000_000).to_string(),
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // The kill can land in the middle of a flush: a last
                    // line cut short was never a whole ack.
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(_) => {}
                }
                if tx.send(line.trim_end().to_string()).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acks or a random time, whichever
        // first; some iterations die while the store is still opening.
        let want_acks = rng.random_range(0..4_000usize);
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(0..600));
        let mut seen = 0;
        let mut record = |line: String| {
            let ack = parse(&line);
            let at = (ack.channel, ack.seq);
            if let Some(first) = acked.insert(ack.client_msg_id, at) {
                assert!(
                    ack.duplicate,
                    "client id {} acked twice as new",
                    ack.client_msg_id
                );
                assert_eq!(
                    first, at,
                    "client id {} acked at two places",
                    ack.client_msg_id
                );
            }
        };
        while seen < want_acks && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => {
                    record(line);
                    seen += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("child exited on its own"),
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines already in the pipe were printed after their completion
        // arrived, so they are acks too.
        for line in rx.try_iter() {
            record(line);
            seen += 1;
        }
        if seen > 0 {
            kills_with_acks += 1;
        }
        verify(dir.path(), &acked, &mut rng);
    }
    assert!(
        kills_with_acks >= ITERATIONS / 2,
        "too few iterations got far enough to ack"
    );
    println!(
        "crash test: {ITERATIONS} kills, {} acked messages verified, {:.1}s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}

fn verify(dir: &std::path::Path, acked: &HashMap<u64, (u64, u64)>, rng: &mut impl Rng) {
    let log = RocksLog::open(dir, LogConfig::default()).unwrap();
    let mut stored: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut total = 0;
    for c in 1..=CHANNELS {
        // full_history asserts seqs are exactly 1..=last.
        let history = full_history(&log, c);
        for m in &history {
            let expected = request_for(m.client_msg_id);
            assert_eq!(
                (m.channel, m.sender, &m.text),
                (expected.channel, expected.sender, &expected.text)
            );
            let previous = stored.insert(m.client_msg_id, (c, m.seq.into()));
            assert!(
                previous.is_none(),
                "client id {} stored twice",
                m.client_msg_id
            );
        }
        // full_inbox asserts inbox seqs are exactly 1..=last, no repeats.
        assert_eq!(
            full_inbox(&log, 10 + c).len(),
            history.len(),
            "channel-only member of {c}"
        );
        total += history.len();
    }
    for user in 1..=3 {
        assert_eq!(
            full_inbox(&log, user).len(),
            total,
            "member of every channel: user {user}"
        );
    }
    for (id, at) in acked {
        assert_eq!(
            stored.get(id),
            Some(at),
            "acknowledged message {id} lost or moved"
        );
    }
    // Retries of acknowledged ids after the crash: the original answer, and
    // nothing new stored.
    let ids: Vec<u64> = acked.keys().copied().collect();
    for _ in 0..ids.len().min(25) {
        let id = ids[rng.random_range(0..ids.len())];
        let outcome = log.append(&[request_for(id)]).unwrap().remove(0);
        assert!(outcome.duplicate, "retry of {id} after crash stored again");
        assert_eq!((outcome.channel.0, outcome.seq.0), acked[&id]);
    }
    let after: usize = (1..=CHANNELS)
        .map(|c| log.last_channel_seq(ChannelId(c)).unwrap().0 as usize)
        .sum();
    assert_eq!(after, total);
}
