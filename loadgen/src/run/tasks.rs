//! The run's tasks besides set-up: the open-loop sender, the churn that
//! drops connections, each device's event reader, and the final sync check
//! of fresh devices.

use futures_util::stream::FuturesUnordered;
use futures_util::FutureExt;

use super::*;

/// The open-loop sender: Poisson arrivals at `rate` (times the burst
/// factor inside a burst), each a random user's random device sending to
/// one of its channels.
#[allow(clippy::too_many_arguments)]
pub(super) async fn schedule(
    shared: Arc<Shared>,
    users: Arc<Vec<User>>,
    chans: Arc<Vec<Chan>>,
    devices: Arc<Vec<Arc<Device>>>,
    profile: Profile,
    rate: f64,
    start: tokio::time::Instant,
    total: Duration,
    measure_from_ns: u64,
    mut rng: StdRng,
) {
    let senders: Vec<usize> = (0..users.len())
        .filter(|&u| !users[u].dms.is_empty() || !users[u].groups.is_empty())
        .collect();
    if rate <= 0.0 || senders.is_empty() {
        tokio::time::sleep_until(start + total).await;
        return;
    }
    let burst = profile.run.burst;
    let share = profile.traffic.one_to_one_share;
    let offset_ns =
        shared.since_start_ns() - (tokio::time::Instant::now() - start).as_nanos() as u64;
    let mut at = 0.0f64; // seconds since start
    let mut id = 0u64;
    // Acks are awaited here rather than in a task per send: one task polls
    // them all between sends, which costs no spawn and no cross-thread
    // wake-up per message.
    let mut acks = FuturesUnordered::new();
    let sleep = tokio::time::sleep_until(start);
    tokio::pin!(sleep);
    loop {
        let r = match burst {
            Some(b) if at % b.every_s < b.length_s => rate * b.factor,
            _ => rate,
        };
        // Exponential gap: the Poisson process's inter-arrival time.
        at += -(1.0 - rng.random::<f64>()).ln() / r;
        if at >= total.as_secs_f64() {
            break;
        }
        let due = start + Duration::from_secs_f64(at);
        if due > tokio::time::Instant::now() {
            sleep.as_mut().reset(due);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut sleep => break,
                    Some(()) = acks.next() => {}
                }
            }
        }
        let u = senders[rng.random_range(0..senders.len())];
        let user = &users[u];
        let device = user.devices[rng.random_range(0..user.devices.len())];
        let use_dm =
            !user.dms.is_empty() && (user.groups.is_empty() || rng.random::<f64>() < share);
        let list = if use_dm { &user.dms } else { &user.groups };
        let chan = list[rng.random_range(0..list.len())];
        let c = &chans[chan];
        let chars = pick_bucket(&mut rng, &profile.traffic.message_chars);
        let scheduled_ns = offset_ns + (at * 1e9) as u64;
        let measured = scheduled_ns >= measure_from_ns;
        shared.ledger.register(
            id,
            device as u32,
            scheduled_ns,
            c.devices - 1,
            chars.max(tag_len(id)),
            measured,
        );
        let text = ledger::message_text(id, chars);
        let dev = &devices[device];
        if rng.random::<f64>() < profile.traffic.typing_per_message {
            let _ = dev.client.typing(ChannelId(c.id));
        }
        let fut = dev.client.send(Target::Channel(ChannelId(c.id)), text);
        shared.counters.sent.fetch_add(1, Ordering::Relaxed);
        acks.push(await_ack(
            fut,
            shared.clone(),
            dev.clone(),
            chans.clone(),
            chan,
            id,
            scheduled_ns,
            measured,
        ));
        // Keep the set small under load: take what has completed.
        while let Some(Some(())) = acks.next().now_or_never() {}
        id += 1;
    }
    // What is still unanswered is awaited in the background; the run's
    // drain waits for the ledger, with its deadline.
    if !acks.is_empty() {
        tokio::spawn(async move { while acks.next().await.is_some() {} });
    }
}

/// Books one send's outcome.
#[allow(clippy::too_many_arguments)]
async fn await_ack(
    fut: SendFuture,
    shared: Arc<Shared>,
    dev: Arc<Device>,
    chans: Arc<Vec<Chan>>,
    chan: usize,
    id: u64,
    scheduled_ns: u64,
    measured: bool,
) {
    match fut.await {
        Ok(ack) => {
            let now = shared.since_start_ns();
            shared.ledger.acked(id, now);
            dev.own
                .lock()
                .unwrap()
                .push((ack.channel_id.into(), ack.seq.into()));
            for &m in &chans[chan].members {
                shared.inbox[m].fetch_add(1, Ordering::Relaxed);
            }
            shared.counters.acked.fetch_add(1, Ordering::Relaxed);
            if measured {
                shared.measured_acked.fetch_add(1, Ordering::Relaxed);
                shared
                    .ack
                    .record_us(now.saturating_sub(scheduled_ns) / 1000);
            }
        }
        Err(e) => {
            shared.ledger.failed(id);
            shared.error(error_name(&e));
        }
    }
}

/// Drops random devices' connections, Poisson-timed like the sends, at
/// `per_device_hour` per device: a phone that changes networks or loses
/// signal. Each device reconnects after the SDK's backoff, resumes its
/// inbox from its cursor and sends its unacknowledged messages again;
/// the ledger then proves that nothing was lost or repeated meanwhile.
pub(super) async fn churn(
    shared: Arc<Shared>,
    devices: Arc<Vec<Arc<Device>>>,
    per_device_hour: f64,
    start: tokio::time::Instant,
    total: Duration,
    mut rng: StdRng,
) {
    let rate = devices.len() as f64 * per_device_hour / 3600.0;
    if rate <= 0.0 || devices.is_empty() {
        return;
    }
    let mut at = 0.0f64;
    loop {
        at += -(1.0 - rng.random::<f64>()).ln() / rate;
        if at >= total.as_secs_f64() {
            return;
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        let device = &devices[rng.random_range(0..devices.len())];
        if device.client.state() == confab_client::ConnectionState::Connected
            && device.client.reconnect().is_ok()
        {
            shared.forced_reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every `every`, drops every connected device's connection at once: each
/// reconnects after its backoff and resumes from its cursor, as after a
/// node restart.
pub(super) async fn storms(
    shared: Arc<Shared>,
    devices: Arc<Vec<Arc<Device>>>,
    every: Duration,
    start: tokio::time::Instant,
    total: Duration,
) {
    let mut at = every;
    while at < total {
        tokio::time::sleep_until(start + at).await;
        for device in devices.iter() {
            if device.client.state() == confab_client::ConnectionState::Connected
                && device.client.reconnect().is_ok()
            {
                shared.forced_reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        at += every;
    }
}

pub(super) fn tag_len(id: u64) -> u32 {
    format!("lg{id:x} ").len() as u32
}

/// Reads one device's events until its client closes.
pub(super) async fn device_events(
    mut events: Events,
    device: Arc<Device>,
    shared: Arc<Shared>,
    created: Instant,
    seed: u64,
) -> DeviceBook {
    let mut book = DeviceBook::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut connected = false;
    let mut first = true;
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Message(m) => {
                let now = shared.since_start_ns();
                book.seen
                    .entry(m.channel_id.into())
                    .or_default()
                    .push(m.seq.into());
                match ledger::parse_id(&m.text).and_then(|id| shared.ledger.delivered(id, &m.text))
                {
                    Some(d) => {
                        shared.counters.delivered.fetch_add(1, Ordering::Relaxed);
                        if d.measured {
                            shared.measured_delivered.fetch_add(1, Ordering::Relaxed);
                            shared
                                .delivery
                                .record_us(now.saturating_sub(d.scheduled_ns) / 1000);
                        }
                    }
                    None => {
                        shared.corrupted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if rng.random::<f64>() < shared.read_receipts {
                    let _ = device.client.read(m.channel_id, m.seq);
                }
            }
            ClientEvent::Connected(_) => {
                if first {
                    shared
                        .connect
                        .record_us(created.elapsed().as_micros() as u64);
                    first = false;
                }
                if !connected {
                    connected = true;
                    shared.counters.connected.fetch_add(1, Ordering::Relaxed);
                }
                shared.counters.connects.fetch_add(1, Ordering::Relaxed);
            }
            ClientEvent::Disconnected { .. } if connected => {
                connected = false;
                shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
                shared.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            ClientEvent::Refused { code, .. } => shared.error(format!("REFUSED_{}", code.name())),
            ClientEvent::ServerError(e) => {
                tracing::warn!(code = e.code.name(), message = %e.message, "server error");
                shared.error(e.code.name());
            }
            ClientEvent::SendFailed { error, .. } => shared.error(error_name(&error)),
            ClientEvent::Closed => break,
            _ => {}
        }
    }
    book
}

/// Connects a new device (cursor 0) for up to `n` users and times how long
/// it takes to receive their whole inbox; every message must arrive once.
pub(super) async fn sync_check(
    shared: &Arc<Shared>,
    tokens: &Tokens,
    users: &Arc<Vec<User>>,
    urls: &[String],
    tls: &TlsOptions,
    n: usize,
    settled: bool,
) -> SyncCheck {
    let mut out = SyncCheck::default();
    if !settled {
        // Some send's fate is unknown, so the expected inbox is too.
        return out;
    }
    let sync = Latency::default();
    for u in 0..users.len().min(n) {
        let expected = shared.inbox[u].load(Ordering::Relaxed);
        let url = &urls[u % urls.len()];
        let mut config = ClientConfig::new(url, tokens.access(u), DeviceId(1_000_000));
        config.fallback_urls = super::helpers::fallbacks(urls, url);
        config.tls = tls.clone();
        let started = Instant::now();
        let Ok((client, mut events)) = Client::connect(config) else {
            out.missing += expected;
            continue;
        };
        let mut book = DeviceBook::default();
        let mut got = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got < expected {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ClientEvent::Message(m))) => {
                    book.seen
                        .entry(m.channel_id.into())
                        .or_default()
                        .push(m.seq.into());
                    if ledger::parse_id(&m.text).is_none() {
                        shared.corrupted.fetch_add(1, Ordering::Relaxed);
                    }
                    got += 1;
                }
                Ok(Some(ClientEvent::Closed)) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => {}
            }
        }
        sync.record_us(started.elapsed().as_micros() as u64);
        let c = book.check();
        out.users += 1;
        out.messages += got;
        out.missing += expected.saturating_sub(got);
        out.duplicated += c.duplicated;
        out.gaps += c.gaps;
        client.close().await;
    }
    out.latency = sync.summary();
    out
}
