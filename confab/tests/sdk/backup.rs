//! Backups as an operator takes them: `confab backup` against a node that
//! keeps serving (through its admin socket) or against a stopped node's
//! data directory, `confab restore` into a fresh one, and a node started
//! there that has every message the backup saw, for the same users with
//! the same keys, its sequences going on without a gap.

use std::path::Path;
use std::process::{Command, Output};

use confab_client::{ChannelId, Client, HistoryAnchor, Seq, Target, Transport};
use confab_gateway::IoMode;
use confab_storage::writer::WriterConfig;

use crate::common::*;
use crate::harness::*;

fn confab(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CONFAB_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).output().expect("running confab")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "confab failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: Output) -> String {
    assert!(!out.status.success(), "confab should have refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `confab backup --data-dir DATA --to TO`.
fn run_backup(data: &Path, to: &Path) -> Output {
    confab(&["backup", "--data-dir", path(data), "--to", path(to)])
}

/// `confab restore --from FROM --data-dir DATA`.
fn run_restore(from: &Path, data: &Path) -> Output {
    confab(&["restore", "--from", path(from), "--data-dir", path(data)])
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A node on `data_dir` (which outlives it), for SDK clients over ws.
fn node_on(data_dir: &Path) -> SdkNode {
    let dir = data_dir.to_owned();
    SdkNode {
        node: TestNode::start_configured(
            IoMode::Epoll,
            move |c| c.data_dir = dir,
            |_| {},
            WriterConfig::default(),
        ),
        transport: Transport::Ws,
    }
}

/// Every message of `channel`, oldest first, as (seq, text).
async fn all_of(client: &Client, channel: ChannelId) -> Vec<(u64, String)> {
    let page = client
        .history(channel, HistoryAnchor::After(Seq(0)), 1000)
        .await
        .unwrap();
    assert!(!page.has_more);
    page.messages
        .iter()
        .map(|m| (m.seq.0, m.text.to_string()))
        .collect()
}

#[test]
fn a_backup_of_a_serving_node_restores_into_a_fresh_node_with_every_message() {
    let work = tempfile::tempdir().unwrap();
    let (data, backup, restored) = (
        work.path().join("data"),
        work.path().join("backup"),
        work.path().join("restored"),
    );
    let node = node_on(&data);
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    let (dm, before) = block_on(async {
        let (a, _events) = start(node.config(alice, 1)).await;
        let mut before = Vec::new();
        for i in 1..=40 {
            let text = format!("before the backup {i} {}", "x".repeat(i * 50));
            let ack = a.send(Target::Channel(group), text.clone()).await.unwrap();
            before.push((ack.seq.0, text));
        }
        let dm = a.send(Target::User(bob), "a direct message").await.unwrap();
        (dm.channel_id, before)
    });

    // The node keeps serving while it writes the backup.
    let said = ok(run_backup(&data, &backup));
    assert!(said.contains("running node"), "{said}");
    assert!(said.contains("confab.sqlite3"), "{said}");
    block_on(async {
        let (a, _events) = start(node.config(alice, 2)).await;
        for i in 1..=5 {
            a.send(Target::Channel(group), format!("after the backup {i}"))
                .await
                .unwrap();
        }
    });
    // A backup never overwrites one: the node refuses, with the reason.
    let why = refused(run_backup(&data, &backup));
    assert!(why.contains("not empty"), "{why}");
    drop(node);

    let said = ok(run_restore(&backup, &restored));
    assert!(said.contains("restored"), "{said}");
    // A data directory that holds a node's data is never restored over.
    let why = refused(run_restore(&backup, &restored));
    assert!(why.contains("already holds"), "{why}");
    let why = refused(run_restore(work.path(), &work.path().join("elsewhere")));
    assert!(why.contains("not a confab backup"), "{why}");

    // The QUIC reset key too: the restored node resets the connections of
    // the process it replaces.
    let key = "quic-reset.key";
    assert_eq!(
        std::fs::read(restored.join(key)).unwrap(),
        std::fs::read(data.join(key)).unwrap()
    );
    let node = node_on(&restored);
    block_on(async {
        // The same users, signed in with the restored token key.
        let (b, _events) = start(node.config(bob, 1)).await;
        assert_eq!(all_of(&b, group).await, before, "the group's history");
        let direct = all_of(&b, dm).await;
        assert_eq!(direct, vec![(1, "a direct message".to_owned())]);
        // The group's sequence goes on from where the backup left it.
        let (a, _events) = start(node.config(alice, 3)).await;
        let next = a
            .send(Target::Channel(group), "after the restore")
            .await
            .unwrap();
        assert_eq!(next.seq, Seq(41));
    });
}

#[test]
fn a_stopped_nodes_data_directory_is_backed_up_without_it() {
    let work = tempfile::tempdir().unwrap();
    let (data, backup, restored) = (
        work.path().join("data"),
        work.path().join("backup"),
        work.path().join("restored"),
    );
    let node = node_on(&data);
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    let group = node.group(alice, &[bob]);
    let sent = block_on(async {
        let (a, _events) = start(node.config(alice, 1)).await;
        let mut sent = Vec::new();
        for i in 1..=3 {
            let text = format!("message {i}");
            let ack = a.send(Target::Channel(group), text.clone()).await.unwrap();
            sent.push((ack.seq.0, text));
        }
        sent
    });
    drop(node);

    let said = ok(run_backup(&data, &backup));
    assert!(said.contains("stopped node"), "{said}");
    ok(run_restore(&backup, &restored));
    let node = node_on(&restored);
    block_on(async {
        let (b, _events) = start(node.config(bob, 1)).await;
        assert_eq!(all_of(&b, group).await, sent);
    });
}

/// One request on the node's admin socket, and its answer.
fn ask(data: &Path, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(data.join("admin.sock")).unwrap();
    s.write_all(request).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_admin_socket_refuses_bad_requests_and_keeps_serving() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let node = node_on(&data);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("admin.sock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the data directory's owner may ask"
    );

    let refusals = [
        (&b"restore /tmp/x\n"[..], "unknown request"),
        (b"backup relative/dir\n", "absolute path"),
        (b"backup /tmp/no-newline", "one line"),
        (&[b'x'; 100_000][..], "one line"),
    ];
    for (request, why) in refusals {
        let answer = ask(&data, request);
        assert!(
            answer.starts_with("error ") && answer.contains(why),
            "{answer:?}"
        );
    }
    // Nothing was written, and a good request is still served.
    assert!(!Path::new("relative/dir").exists());
    let to = work.path().join("backup");
    let answer = ask(&data, format!("backup {}\n", path(&to)).as_bytes());
    assert!(answer.starts_with("ok "), "{answer:?}");
    assert!(to.join("confab-backup.toml").is_file());
    drop(node);
}
