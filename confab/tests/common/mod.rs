//! A whole node for the end-to-end tests: `confab::Node`, started exactly
//! as `confab serve` starts it (real RocksDB log and storage writers, the
//! real SQLite directory, real tokens, real sockets on loopback), on a
//! temporary data directory, with the gateway's limits a test may need
//! changed and push jobs recorded instead of sent.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab::config::Config;
use confab::Node;
use confab_gateway::ports::{Found, PushJob, PushSink};
use confab_gateway::{IoMode, Settings};
use confab_storage::writer::WriterConfig;
use confab_types::{ChannelId, UserId};

/// A node on a temporary directory; stopping it (drop) closes every
/// session with GOING_AWAY and flushes storage.
pub struct TestNode {
    /// The node (declared first: it stops before its directory goes).
    pub node: Node,
    /// Push jobs the gateway raised.
    pub push: Arc<RecordedPushes>,
    /// The node's data directory.
    pub data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The config of a test node: everything on loopback port 0, two cores.
pub fn test_config(dir: &std::path::Path, io: IoMode) -> Config {
    let mut c = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    c.api.addr = ([127, 0, 0, 1], 0).into();
    c.metrics.addr = ([127, 0, 0, 1], 0).into();
    c.gateway.ws_addr = ([127, 0, 0, 1], 0).into();
    c.gateway.quic_addr = ([127, 0, 0, 1], 0).into();
    c.gateway.cores = 2;
    c.gateway.io = io;
    c.gateway.pin_cores = false;
    c.gateway.presence_grace_ms = 300;
    c.push.enabled = false;
    c
}

impl TestNode {
    /// A node on `io`, with `tweak` applied to the gateway's settings.
    pub fn start(io: IoMode, tweak: impl FnOnce(&mut Settings) + Send + 'static) -> TestNode {
        TestNode::start_with_writers(io, tweak, WriterConfig::default())
    }

    /// The same, with the storage writers' queues sized by `writers`.
    pub fn start_with_writers(
        io: IoMode,
        tweak: impl FnOnce(&mut Settings) + Send + 'static,
        writers: WriterConfig,
    ) -> TestNode {
        TestNode::start_configured(io, |_| {}, tweak, writers)
    }

    /// A node whose [`test_config`] is edited by `edit` first.
    pub fn start_configured(
        io: IoMode,
        edit: impl FnOnce(&mut Config),
        tweak: impl FnOnce(&mut Settings) + Send + 'static,
        writers: WriterConfig,
    ) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let push = Arc::new(RecordedPushes::default());
        let mut config = test_config(dir.path(), io);
        edit(&mut config);
        let data_dir = config.data_dir.clone();
        let node = Node::builder(config)
            .gateway(tweak)
            .push_sink(push.clone())
            .writers(writers)
            .start()
            .unwrap();
        // The uring runs really run on io_uring wherever the kernel allows it.
        if io == IoMode::Uring && confab_gateway::transport::runtime::uring_available().is_ok() {
            assert_eq!(node.io, IoMode::Uring);
        }
        TestNode {
            node,
            push,
            data_dir,
            _dir: dir,
        }
    }

    /// Runs `f` on the node's runtime (where the directory's pool lives).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.node.runtime().block_on(f)
    }

    /// The `ws://` URL of the gateway.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.node.ws_addr)
    }

    /// A new user.
    pub fn user(&self, name: &str) -> UserId {
        let (s, name) = (self.node.store().clone(), name.to_owned());
        let user = self
            .block_on(async move { s.create_user(&name, &name, "not-a-real-hash").await })
            .unwrap();
        UserId(user.id)
    }

    /// An access token of `user` (login session `user * 1000`).
    pub fn token(&self, user: UserId) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.node.signer().issue(user.0, user.0 * 1000, now, 3600)
    }

    /// A group of `owner` and `members`.
    pub fn group(&self, owner: UserId, members: &[UserId]) -> ChannelId {
        let s = self.node.store().clone();
        let members: Vec<u64> = members.iter().map(|m| m.0).collect();
        let group = self
            .block_on(async move { s.create_group(owner.0, "group", &members).await })
            .unwrap();
        ChannelId(group.id)
    }

    /// Makes `a` and `b` friends.
    pub fn befriend(&self, a: UserId, b: UserId) {
        let s = self.node.store().clone();
        let accepted = self.block_on(async move {
            s.request_friend(a.0, b.0).await.unwrap();
            s.accept_friend(b.0, a.0).await.unwrap()
        });
        assert!(accepted);
    }

    /// The sum of a metric's series whose labels include `labels` (e.g.
    /// `type="send"`), as `/metrics` shows them.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric(&self.node.metrics_text(), name, labels)
    }
}

/// The sum of the series of `name` in `text` carrying every label of
/// `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Push jobs raised by the gateway, as the push service would get them,
/// with the presence it was told.
#[derive(Default)]
pub struct RecordedPushes {
    jobs: Mutex<Vec<(PushJob, Found)>>,
    online: Mutex<std::collections::HashMap<UserId, i64>>,
}

impl PushSink for RecordedPushes {
    fn wants_job(&self, user: UserId) -> bool {
        self.online.lock().unwrap().get(&user).copied().unwrap_or(0) == 0
    }
    fn presence(&self, user: UserId, online: bool) {
        *self.online.lock().unwrap().entry(user).or_default() += if online { 1 } else { -1 };
    }
    fn delivered(&self, job: PushJob, found: Found) {
        self.jobs.lock().unwrap().push((job, found));
    }
}

impl RecordedPushes {
    /// Jobs for a member found with no device connected.
    pub fn for_user(&self, user: UserId) -> Vec<PushJob> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, f)| j.user == user && matches!(f, Found::Offline { .. }))
            .map(|(j, _)| *j)
            .collect()
    }

    /// What was found for every job of `user`.
    pub fn found(&self, user: UserId) -> Vec<Found> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, _)| j.user == user)
            .map(|(_, f)| *f)
            .collect()
    }
}

/// Runs `f` on a fresh current-thread runtime (the test's client side).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Both IO backends, epoll then io_uring (epoll where io_uring is off).
pub fn both_backends(test: impl Fn(IoMode)) {
    for io in [IoMode::Epoll, IoMode::Uring] {
        test(io);
    }
}

/// A loopback port that was free a moment ago, for a process that must be
/// told its port (chromedriver, a second node).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long a test waits for any one thing.
pub const PATIENCE: Duration = Duration::from_secs(20);
