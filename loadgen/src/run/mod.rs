//! `run`: drives a profile's traffic against a live server and keeps the
//! books.
//!
//! Set-up goes through the HTTP API as an app would (signup, friends, DMs,
//! groups, discovery); traffic goes through the client SDK over the chosen
//! transports. Sends are open-loop: a Poisson process decides when each one
//! is due, the scheduler never waits for an answer, and latencies count
//! from the due time, so a server that stalls shows up as latency and not
//! as a politely lower send rate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use confab_client::{
    ChannelId, Client, ClientConfig, ClientError, ClientEvent, DeviceId, Events, SendFuture,
    Target, TlsOptions,
};
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api::{Account, Api, Discovery};
use crate::cpu::{own_cpu_seconds, CpuCost, CpuMark};
use crate::ledger::{self, DeviceBook, ErrorCounts, Ledger};
use crate::plan::Plan;
use crate::profile::{Bucket, Profile};
use crate::prom;
use crate::report::{HistoryCheck, Report, SyncCheck};
use crate::stats::{Counters, Latency, Timeline};
use crate::tokens::Tokens;

/// Connections per loopback source address before the run spreads them
/// over more: one address reaches one server port through ~28,000
/// ephemeral ports (Linux's default range), less what TIME_WAIT holds.
mod helpers;
mod tasks;

use helpers::{
    current, error_name, fallbacks, pick_bucket, pick_devices, progress, transport_urls,
};
pub(crate) use helpers::{raise_fd_limit, run_tag};
use tasks::{churn, device_events, schedule, storms, sync_check};

/// Connections per loopback source address: within the ~28,000 ephemeral
/// ports one address reaches a server port with, and within the gateway's
/// default cap per client address (10,000) should loopback not be exempt.
const CONNECTIONS_PER_SOURCE: f64 = 10_000.0;

/// Which transports the devices use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// WebSocket over TCP (loopback servers only, by default).
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// QUIC.
    Quic,
    /// Devices take ws, wss and quic in turn.
    Mix,
}

/// Everything `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The API's base URL.
    pub api: String,
    /// The server's Prometheus endpoint; a cluster's, comma-separated.
    pub metrics: String,
    /// Other processes charged to the deployment (a cluster's NATS servers).
    pub pids: Vec<u32>,
    /// The profile (already loaded).
    pub profile: Profile,
    /// Transports.
    pub transport: TransportChoice,
    /// Share of the peak population to drive.
    pub scale: f64,
    /// Measured seconds.
    pub duration: Duration,
    /// Seconds of traffic before measuring.
    pub warmup: Duration,
    /// Messages per second replacing the model's.
    pub rate: Option<f64>,
    /// CA certificate to trust for wss and QUIC (the server's own
    /// self-signed one in development).
    pub ca: Option<PathBuf>,
    /// How long to wait after the last send for acks and deliveries.
    pub drain: Duration,
    /// Users whose complete inbox a fresh device syncs at the end.
    pub sync_users: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1 up
    /// to 127.0.0.N); `None` picks one per 10,000 connections when the
    /// server is on loopback.
    pub source_ips: Option<u32>,
    /// No progress bar.
    pub quiet: bool,
    /// Seed of the run's random choices (targets, lengths, arrivals).
    pub seed: u64,
    /// Forced reconnects per device per hour, replacing the profile's
    /// `traffic.reconnects_per_device_hour`.
    pub reconnects_per_device_hour: Option<f64>,
    /// Read every channel's history back at the end and check that each
    /// acknowledged message is stored exactly once, under gapless
    /// sequences.
    pub check_history: bool,
    /// Every this often, every connected device drops its connection at
    /// once and reconnects (a reconnect storm).
    pub storm_every: Option<Duration>,
}

/// A channel the run created.
struct Chan {
    id: u64,
    members: Vec<usize>,
    /// Devices of all members.
    devices: u32,
}

/// A virtual user.
struct User {
    account: Account,
    devices: Vec<usize>,
    dms: Vec<usize>,
    groups: Vec<usize>,
}

/// A connected device.
struct Device {
    client: Client,
    /// Sequences of its own acknowledged sends: (channel, seq).
    own: Mutex<Vec<(u64, u64)>>,
}

/// What every task of the run shares.
struct Shared {
    start: Instant,
    ledger: Ledger,
    counters: Counters,
    ack: Latency,
    delivery: Latency,
    connect: Latency,
    errors: Mutex<ErrorCounts>,
    corrupted: AtomicU64,
    measured_acked: AtomicU64,
    measured_delivered: AtomicU64,
    /// Messages acknowledged in each user's channels (what a new device of
    /// theirs must sync).
    inbox: Vec<AtomicU64>,
    read_receipts: f64,
    /// Connections the churn task dropped.
    forced_reconnects: AtomicU64,
}

impl Shared {
    fn error(&self, name: impl Into<String>) {
        self.error_n(name, 1);
    }

    fn error_n(&self, name: impl Into<String>, n: u64) {
        *self.errors.lock().unwrap().entry(name.into()).or_insert(0) += n;
    }

    fn since_start_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Runs the profile and returns the report.
pub async fn run(opts: RunOptions) -> Result<Report> {
    let profile = &opts.profile;
    let plan = Plan::new(profile);
    let slice = plan.slice(profile, opts.scale, opts.rate.or(profile.run.rate));
    if !opts.quiet {
        eprint!("{}", plan.render(profile, Some(&slice)));
    }
    raise_fd_limit((slice.connections * 1.2) as u64 + 1024);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let api = Api::new(&opts.api)?;
    let discovery = api
        .discovery()
        .await
        .with_context(|| format!("is a confab server listening at {}?", opts.api))?;

    // Accounts.
    let setup_started = Instant::now();
    let n_users = slice.users as usize;
    // Fresh names per run (not from the seed: a repeated run against the
    // same server must not collide with the users of the last one).
    let tag = run_tag();
    let password = format!("loadgen password {tag}");
    let accounts: Vec<Account> = api
        .signup_many(n_users, &format!("lg{tag}u"), &password)
        .await
        .context("signing up the virtual users")?;
    // Refreshed from now on: setting up a large run can take longer than
    // a short token lifetime, and so can the run itself.
    let tokens = Tokens::new(&accounts);
    let refresher = tokio::spawn(tokens.clone().keep_fresh(
        api.clone(),
        accounts.iter().map(|a| a.expires_in).collect(),
        tokio::time::Instant::now(),
        opts.seed ^ 0x7f4a_7c15,
    ));

    // Channels: DMs with the next `dm_partners` users (so every user has
    // partners), then groups of sampled sizes with random members.
    let mut users: Vec<User> = accounts
        .into_iter()
        .map(|account| User {
            account,
            devices: Vec::new(),
            dms: Vec::new(),
            groups: Vec::new(),
        })
        .collect();
    let mut chans: Vec<Chan> = Vec::new();
    let mut pairs = Vec::new();
    let partners = (profile.population.dm_partners as usize).min(n_users - 1);
    for i in 0..n_users {
        for k in 1..=partners {
            let j = (i + k) % n_users;
            let pair = (i.min(j), i.max(j));
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
    }
    let dm_ids: Vec<u64> = stream::iter(pairs.iter().copied())
        .map(|(a, b)| {
            let api = api.clone();
            let (a, b) = (current(&users, &tokens, a), current(&users, &tokens, b));
            async move {
                api.befriend(&a, &b).await?;
                api.dm(&a, &b).await
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()
        .context("making friends and DMs")?;
    for (&(a, b), id) in pairs.iter().zip(dm_ids) {
        users[a].dms.push(chans.len());
        users[b].dms.push(chans.len());
        chans.push(Chan {
            id,
            members: vec![a, b],
            devices: 0,
        });
    }
    let mut groups = Vec::new();
    if profile.traffic.one_to_one_share < 1.0 && n_users >= 3 {
        let count = (n_users as f64 * profile.population.groups_per_user
            / profile.mean_group_size())
        .ceil() as usize;
        for g in 0..count {
            let size = (pick_bucket(&mut rng, &profile.traffic.group_sizes) as usize).min(n_users);
            let mut members: Vec<usize> = rand::seq::index::sample(&mut rng, n_users, size)
                .into_iter()
                .collect();
            members.sort_unstable();
            groups.push((format!("loadgen {tag} {g}"), members));
        }
    }
    let group_ids: Vec<u64> = stream::iter(groups.iter())
        .map(|(name, members)| {
            let api = api.clone();
            let owner = current(&users, &tokens, members[0]);
            let ids: Vec<u64> = members[1..]
                .iter()
                .map(|&m| users[m].account.user_id)
                .collect();
            async move { api.group(&owner, name, &ids).await }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()
        .context("creating the groups")?;
    for ((_, members), id) in groups.into_iter().zip(group_ids) {
        for &m in &members {
            users[m].groups.push(chans.len());
        }
        chans.push(Chan {
            id,
            members,
            devices: 0,
        });
    }
    let setup_s = setup_started.elapsed().as_secs_f64();

    // Devices.
    let urls = transport_urls(&discovery, opts.transport)?;
    let tls = match &opts.ca {
        Some(ca) => TlsOptions::new().add_root_pem_file(ca),
        None => TlsOptions::new(),
    };
    let rss_before = server_rss(&api, &opts.metrics).await;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ledger: Ledger::default(),
        counters: Counters::default(),
        ack: Latency::default(),
        delivery: Latency::default(),
        connect: Latency::default(),
        errors: Mutex::new(ErrorCounts::new()),
        corrupted: AtomicU64::new(0),
        measured_acked: AtomicU64::new(0),
        measured_delivered: AtomicU64::new(0),
        inbox: (0..n_users).map(|_| AtomicU64::new(0)).collect(),
        read_receipts: profile.traffic.read_receipts_per_message,
        forced_reconnects: AtomicU64::new(0),
    });
    let loopback = urls
        .iter()
        .all(|u| u.contains("://127.") || u.contains("://localhost"));
    let sources = match opts.source_ips {
        Some(n) => n.clamp(1, 254),
        None if loopback => {
            ((slice.connections / CONNECTIONS_PER_SOURCE).ceil() as u32).clamp(1, 254)
        }
        None => 1,
    };
    let mut devices: Vec<Arc<Device>> = Vec::new();
    let mut books = Vec::new();
    let mut transports_used = Vec::new();
    for (u, user) in users.iter_mut().enumerate() {
        let n = pick_devices(&mut rng, &profile.population.devices);
        for d in 1..=u64::from(n) {
            let index = devices.len();
            let url = &urls[index % urls.len()];
            transports_used.push(url.clone());
            let mut config = ClientConfig::new(url, tokens.access(u), DeviceId(d));
            config.fallback_urls = fallbacks(&urls, url);
            config.tls = tls.clone();
            config.max_pending_sends = 1 << 20;
            if sources > 1 {
                config.local_ip = Some([127, 0, 0, 1 + (index as u32 % sources) as u8].into());
            }
            let (client, events) = Client::connect(config)?;
            tokens.add_client(u, client.clone());
            let device = Arc::new(Device {
                client,
                own: Mutex::new(Vec::new()),
            });
            books.push(tokio::spawn(device_events(
                events,
                device.clone(),
                shared.clone(),
                Instant::now(),
                opts.seed ^ index as u64,
            )));
            user.devices.push(index);
            devices.push(device);
        }
    }
    for chan in &mut chans {
        chan.devices = chan
            .members
            .iter()
            .map(|&m| users[m].devices.len() as u32)
            .sum();
    }
    // Every device online before traffic: a device that is still
    // connecting would get its messages by sync, not live.
    let deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(devices.len() as u64);
    while shared.counters.connected.load(Ordering::Relaxed) < devices.len() as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} devices connected within the deadline; errors so far: {:?}",
                shared.counters.connected.load(Ordering::Relaxed),
                devices.len(),
                shared.errors.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected_at = Instant::now();
    let rss_connected = server_rss(&api, &opts.metrics).await;

    // Traffic.
    let users = Arc::new(users);
    let chans = Arc::new(chans);
    let devices = Arc::new(devices);
    let total = opts.warmup + opts.duration;
    let bar = progress(opts.quiet, total);
    let traffic_start = tokio::time::Instant::now();
    let measure_from = shared.since_start_ns() + opts.warmup.as_nanos() as u64;
    let sender = tokio::spawn(schedule(
        shared.clone(),
        users.clone(),
        chans.clone(),
        devices.clone(),
        profile.clone(),
        slice.messages_per_s,
        traffic_start,
        total,
        measure_from,
        StdRng::seed_from_u64(opts.seed.wrapping_add(1)),
    ));
    let churn_rate = opts
        .reconnects_per_device_hour
        .unwrap_or(profile.traffic.reconnects_per_device_hour);
    let churner = tokio::spawn(churn(
        shared.clone(),
        devices.clone(),
        churn_rate,
        traffic_start,
        total,
        StdRng::seed_from_u64(opts.seed.wrapping_add(2)),
    ));
    let stormer = opts.storm_every.map(|every| {
        tokio::spawn(storms(
            shared.clone(),
            devices.clone(),
            every,
            traffic_start,
            total,
        ))
    });
    let mut timeline = Timeline::new(&shared.counters);
    let mut warm_timeline = 0;
    let mut cpu_from = if opts.warmup.is_zero() {
        Some(cpu_mark(&api, &opts.metrics, &opts.pids).await)
    } else {
        None
    };
    let mut tick = tokio::time::interval_at(
        traffic_start + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    for s in 1..=total.as_secs_f64().ceil() as u64 {
        tick.tick().await;
        let second = timeline.tick(&shared.counters);
        if Duration::from_secs(s) <= opts.warmup {
            warm_timeline += 1;
        }
        // The measured window starts at the tick that ends the warm-up.
        if cpu_from.is_none() && Duration::from_secs(s) >= opts.warmup {
            cpu_from = Some(cpu_mark(&api, &opts.metrics, &opts.pids).await);
        }
        bar.set_position(s);
        bar.set_message(format!(
            "{} msgs/s  {} deliveries/s  ack p99 {} µs  delivery p99 {} µs  {} connected",
            second.acked,
            second.delivered,
            shared.ack.summary().p99_us,
            shared.delivery.summary().p99_us,
            second.connections
        ));
    }
    let cpu_to = cpu_mark(&api, &opts.metrics, &opts.pids).await;
    let cpu_from = cpu_from.unwrap_or_else(|| cpu_to.clone());
    sender.await?;
    churner.await?;
    if let Some(s) = stormer {
        s.await?;
    }

    // Drain: every ack and every delivery, or the deadline.
    let drain_deadline = Instant::now() + opts.drain;
    loop {
        let (owed, unacked) = shared.ledger.outstanding();
        if owed == 0 && unacked == 0 {
            break;
        }
        if Instant::now() > drain_deadline {
            break;
        }
        bar.set_message(format!(
            "draining: {owed} deliveries and {unacked} acks outstanding"
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let (owed, unacked) = shared.ledger.outstanding();
    for (id, device, chars) in shared.ledger.unanswered(10) {
        tracing::warn!(
            id,
            device,
            chars,
            url = %transports_used[device as usize],
            "send never answered"
        );
    }
    if unacked > 0 {
        *shared
            .errors
            .lock()
            .unwrap()
            .entry("UNACKED_AT_END".into())
            .or_insert(0) += unacked;
    }
    let server_rss_bytes = server_rss(&api, &opts.metrics).await;

    // A fresh device per sampled user syncs that user's whole inbox.
    let sync = sync_check(
        &shared,
        &tokens,
        &users,
        &urls,
        &tls,
        opts.sync_users,
        unacked == 0,
    )
    .await;
    let (history, lost_acked_unix_ms) = if opts.check_history {
        let (check, missing) = history_check(&api, &shared, &users, &tokens, &chans).await?;
        (Some(check), missing)
    } else {
        (None, Vec::new())
    };
    refresher.abort();
    tokens.clear_clients();
    let refresh_failures = tokens.failures.load(Ordering::Relaxed);
    if refresh_failures > 0 {
        shared.error_n("TOKEN_REFRESH_FAILED", refresh_failures);
    }

    // Close, and read each device's books.
    for d in devices.iter() {
        d.client.close().await;
    }
    let mut check = ledger::BookCheck::default();
    for (i, handle) in books.into_iter().enumerate() {
        let mut book = handle.await?;
        for (channel, seq) in devices[i].own.lock().unwrap().drain(..) {
            book.own.entry(channel).or_default().push(seq);
        }
        let c = book.check();
        check.duplicated += c.duplicated;
        check.gaps += c.gaps;
        check.out_of_order += c.out_of_order;
    }
    let measured_s = opts.duration.as_secs_f64();
    let seconds: Vec<_> = timeline
        .seconds
        .split_off(warm_timeline.min(timeline.seconds.len()));
    let c = &shared.counters;
    let errors = shared.errors.lock().unwrap().clone();
    let report = Report::build(crate::report::Inputs {
        profile: profile.clone(),
        plan,
        slice,
        transport: opts.transport,
        urls,
        duration_s: measured_s,
        warmup_s: opts.warmup.as_secs_f64(),
        setup_s,
        connect_s: (connected_at - shared.start).as_secs_f64(),
        users: n_users as u64,
        channels: chans.len() as u64,
        connections: devices.len() as u64,
        sent: c.sent.load(Ordering::Relaxed),
        acked: c.acked.load(Ordering::Relaxed),
        delivered: c.delivered.load(Ordering::Relaxed),
        expected_deliveries: shared.ledger.expected_deliveries(),
        measured_acked: shared.measured_acked.load(Ordering::Relaxed),
        measured_delivered: shared.measured_delivered.load(Ordering::Relaxed),
        lost: owed + sync.missing + history.map_or(0, |h| h.missing),
        duplicated: check.duplicated + sync.duplicated + history.map_or(0, |h| h.duplicated),
        gaps: check.gaps + sync.gaps + history.map_or(0, |h| h.gaps),
        out_of_order: check.out_of_order,
        corrupted: shared.corrupted.load(Ordering::Relaxed),
        errors,
        reconnects: c.disconnects.load(Ordering::Relaxed),
        forced_reconnects: shared.forced_reconnects.load(Ordering::Relaxed),
        token_refreshes: tokens.refreshes.load(Ordering::Relaxed),
        ack: shared.ack.summary(),
        delivery: shared.delivery.summary(),
        connect: shared.connect.summary(),
        ack_cdf: shared.ack.cdf(200),
        delivery_cdf: shared.delivery.cdf(200),
        timeline: seconds,
        sync,
        history,
        lost_acked_unix_ms,
        server_rss_bytes,
        server_rss_before_connect: rss_before,
        server_rss_connected: rss_connected,
        cpu: CpuCost::between(
            &cpu_from,
            &cpu_to,
            shared.measured_acked.load(Ordering::Relaxed),
            shared.measured_delivered.load(Ordering::Relaxed),
        ),
        server_fsync_p99_us: prom::quantile_between(
            &cpu_from.fsync_buckets,
            &cpu_to.fsync_buckets,
            0.99,
        )
        .map(|s| (s * 1e6) as u64),
    });
    Ok(report)
}

/// Reads every channel's whole history (as its first member) and checks it
/// against the ledger: each acknowledged message once, sequences from 1
/// without a hole. Also returns when each acknowledged message it did not
/// find was acknowledged (ms since the Unix epoch).
async fn history_check(
    api: &Api,
    shared: &Shared,
    users: &[User],
    tokens: &Tokens,
    chans: &[Chan],
) -> Result<(HistoryCheck, Vec<u64>)> {
    let mut out = HistoryCheck::default();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for chan in chans {
        let reader = current(users, tokens, chan.members[0]);
        let mut seqs = Vec::new();
        let mut before = None;
        loop {
            // A node just restarted may refuse a moment: a few tries.
            let mut tries = 0;
            let (page, more) = loop {
                match api.history_page(&reader, chan.id, before).await {
                    Ok(page) => break page,
                    Err(_) if tries < 5 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("reading channel {}'s history", chan.id))
                    }
                }
            };
            before = page.first().map(|(seq, _)| *seq);
            for (seq, text) in page {
                seqs.push(seq);
                if let Some(id) = ledger::parse_id(&text) {
                    *seen.entry(id).or_insert(0) += 1;
                }
            }
            if !more || before.is_none() {
                break;
            }
        }
        seqs.sort_unstable();
        let distinct = {
            let mut d = seqs.clone();
            d.dedup();
            d
        };
        out.duplicated += (seqs.len() - distinct.len()) as u64;
        out.gaps += distinct
            .last()
            .map_or(0, |last| last - distinct.len() as u64);
        out.channels += 1;
        out.messages += seqs.len() as u64;
    }
    out.duplicated += seen
        .values()
        .map(|&n| u64::from(n.saturating_sub(1)))
        .sum::<u64>();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(shared.start.elapsed())
        .as_millis() as u64;
    let missing: Vec<u64> = shared
        .ledger
        .acked_ids()
        .into_iter()
        .filter(|id| !seen.contains_key(id))
        .map(|id| started_unix_ms + shared.ledger.acked_at(id).unwrap_or(0) / 1_000_000)
        .collect();
    out.missing = missing.len() as u64;
    Ok((out, missing))
}

async fn server_rss(api: &Api, metrics: &str) -> Option<u64> {
    let first = metrics.split(',').next().unwrap_or(metrics);
    api.server_process(first).await.ok().map(|p| p.rss_bytes)
}

/// Both sides' CPU now. The server's is read over HTTP, which costs it a
/// scrape: two per run. A cluster's nodes are summed (none counts if one
/// cannot be read), and so are the other processes charged to it.
async fn cpu_mark(api: &Api, metrics: &str, pids: &[u32]) -> CpuMark {
    let mut server_s = Some(0.0);
    let mut fsync_buckets = Vec::new();
    for (i, endpoint) in metrics.split(',').enumerate() {
        match api.server_process(endpoint.trim()).await {
            Ok(p) => {
                server_s = server_s.map(|s| s + p.cpu_seconds);
                if i == 0 {
                    fsync_buckets = p.fsync_buckets;
                }
            }
            Err(_) => server_s = None,
        }
    }
    let others_s = if pids.is_empty() {
        None
    } else {
        pids.iter()
            .map(|&pid| crate::cpu::process_cpu_seconds(pid))
            .sum::<Option<f64>>()
    };
    CpuMark {
        at: Instant::now(),
        server_s,
        loadgen_s: own_cpu_seconds(),
        others_s,
        fsync_buckets,
    }
}
