//! The soak: a long run of its own `confab serve` at a steady rate with
//! churn and periodic reconnect storms, sampling the server's resident
//! memory, open descriptors and queue depths as it goes. A leak shows as a
//! level that keeps rising: the run fails when the last quarter's levels
//! stand clearly above the second quarter's (the first quarter is the
//! warm-up of caches and memtables), or when the run's own ledger is not
//! clean.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::api::Api;
use crate::profile::Profile;
use crate::prom;
use crate::report::Report;
use crate::run::{self, RunOptions, TransportChoice};
use crate::server::Server;

/// What `confab-loadgen soak` runs.
pub struct SoakOptions {
    /// The `confab` binary.
    pub confab: PathBuf,
    /// How long the traffic runs.
    pub duration: Duration,
    /// The traffic.
    pub profile: Profile,
    /// Share of the profile's population.
    pub scale: f64,
    /// Messages per second.
    pub rate: f64,
    /// Forced reconnects per device per hour.
    pub churn_per_device_hour: f64,
    /// Every device reconnects at once this often.
    pub storm_every: Duration,
    /// The server's metrics are read this often.
    pub sample_every: Duration,
    /// Seed of the traffic.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
}

/// One reading of the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the traffic began.
    pub at_s: f64,
    pub rss_bytes: f64,
    pub open_fds: f64,
    /// Sessions open.
    pub connections: f64,
    /// Cores' mailboxes at their last drain, summed.
    pub mailbox: f64,
    /// Sends in flight to storage, summed over cores.
    pub storage_in_flight: f64,
    /// Bytes waiting in connections' outbound queues.
    pub outbound_bytes: f64,
}

/// A level over a stretch of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Levels {
    pub rss_bytes: f64,
    pub open_fds: f64,
    pub queued: f64,
}

/// The soak's verdict and readings.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub rate: f64,
    pub storms: u64,
    /// Levels over the second quarter of the samples (means; the queues'
    /// median).
    pub second_quarter: Levels,
    /// Levels over the last quarter.
    pub last_quarter: Levels,
    /// Last quarter over second quarter, for memory and descriptors.
    pub rss_growth: f64,
    pub fds_growth: f64,
    pub samples: Vec<Sample>,
    pub run: Report,
    /// Levels flat and the ledger clean.
    pub passed: bool,
}

/// Memory may grow this much between the second and the last quarter
/// (allocator and cache noise); a leak over an hour grows far more.
const RSS_GROWTH_LIMIT: f64 = 1.10;
/// Descriptors: a few more (a compaction's files) but no trend.
const FDS_SLACK: f64 = 16.0;
/// Queues must drain: the last quarter's median within the second
/// quarter's plus this many items or bytes.
const QUEUE_SLACK: f64 = 65_536.0;

impl SoakReport {
    /// The text summary, ending with the markdown rows docs/benchmarks.md
    /// keeps.
    pub fn render(&self) -> String {
        let mib = |b: f64| b / 1_048_576.0;
        format!(
            "soak: {:.0} s at {:.0} msgs/s, {} reconnect storms, {} samples\n\
             | stretch | server RSS | open fds | queued, median (mailbox + storage + outbound bytes) |\n\
             |---|---|---|---|\n\
             | second quarter | {:.1} MiB | {:.0} | {:.0} |\n\
             | last quarter | {:.1} MiB | {:.0} | {:.0} |\n\
             RSS ×{:.3}, fds ×{:.3}; ledger {}; {}\n",
            self.duration_s,
            self.rate,
            self.storms,
            self.samples.len(),
            mib(self.second_quarter.rss_bytes),
            self.second_quarter.open_fds,
            self.second_quarter.queued,
            mib(self.last_quarter.rss_bytes),
            self.last_quarter.open_fds,
            self.last_quarter.queued,
            self.rss_growth,
            self.fds_growth,
            if self.run.passed {
                "clean"
            } else {
                "NOT clean"
            },
            if self.passed { "PASSED" } else { "FAILED" }
        )
    }
}

/// Memory and descriptors by their mean; queues by their median. A queue
/// absorbs bursts by design (a reconnect storm's replays, a reader that
/// fell behind for a second), so a few samples caught mid-burst say
/// nothing, yet they dominate a mean. A queue that stops draining raises
/// its floor, and the median with it.
fn levels_of(samples: &[Sample]) -> Levels {
    let n = samples.len().max(1) as f64;
    let mut queued: Vec<f64> = samples
        .iter()
        .map(|s| s.mailbox + s.storage_in_flight + s.outbound_bytes)
        .collect();
    queued.sort_by(f64::total_cmp);
    Levels {
        rss_bytes: samples.iter().map(|s| s.rss_bytes).sum::<f64>() / n,
        open_fds: samples.iter().map(|s| s.open_fds).sum::<f64>() / n,
        queued: queued.get(queued.len() / 2).copied().unwrap_or(0.0),
    }
}

/// Whether the levels stayed flat: (verdict, RSS growth, fds growth).
pub fn flat(second: &Levels, last: &Levels) -> (bool, f64, f64) {
    let rss = last.rss_bytes / second.rss_bytes.max(1.0);
    let fds = last.open_fds / second.open_fds.max(1.0);
    let ok = rss <= RSS_GROWTH_LIMIT
        && last.open_fds <= second.open_fds + FDS_SLACK
        && last.queued <= second.queued + QUEUE_SLACK;
    (ok, rss, fds)
}

async fn sample(api: &Api, metrics: &str, at: Instant, start: Instant) -> Option<Sample> {
    let text = api.metrics_text(metrics).await.ok()?;
    Some(Sample {
        at_s: at.duration_since(start).as_secs_f64(),
        rss_bytes: prom::value(&text, "process_resident_memory_bytes")?,
        open_fds: prom::value(&text, "process_open_fds")?,
        connections: prom::sum(&text, "confab_connections", ""),
        mailbox: prom::sum(&text, "confab_queue_depth", "queue=\"mailbox\""),
        storage_in_flight: prom::sum(&text, "confab_queue_depth", "queue=\"storage_in_flight\""),
        outbound_bytes: prom::sum(&text, "confab_queue_depth", "queue=\"outbound_bytes\""),
    })
}

/// Starts the server, runs the traffic with the sampler beside it, and
/// judges the levels.
pub async fn soak(opts: SoakOptions) -> Result<SoakReport> {
    let server = Server::start(&opts.confab, "batch")?;
    let api_url = format!("http://127.0.0.1:{}", server.api);
    let metrics = format!("http://127.0.0.1:{}/metrics", server.metrics);
    let api = Api::new(&api_url)?;
    let warmup = Duration::from_secs(5);
    let run = run::run(RunOptions {
        api: api_url,
        metrics: metrics.clone(),
        pids: Vec::new(),
        profile: opts.profile,
        transport: TransportChoice::Ws,
        scale: opts.scale,
        duration: opts.duration,
        warmup,
        rate: Some(opts.rate),
        ca: None,
        drain: Duration::from_secs(60),
        sync_users: 10,
        source_ips: None,
        quiet: opts.quiet,
        seed: opts.seed,
        reconnects_per_device_hour: Some(opts.churn_per_device_hour),
        check_history: false,
        storm_every: Some(opts.storm_every),
    });
    let start = Instant::now();
    let total = warmup + opts.duration;
    // Samples until the run ends (early too); the window kept is the
    // traffic's, from the first reading with sessions open.
    let mut run = std::pin::pin!(run);
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(opts.sample_every);
    let run = loop {
        tokio::select! {
            done = &mut run => break done,
            _ = tick.tick() => {
                if let Some(s) = sample(&api, &metrics, Instant::now(), start).await {
                    samples.push(s);
                }
            }
        }
    };
    let run = run?;
    drop(server);
    let first = samples.iter().find(|s| s.connections > 0.0).map(|s| s.at_s);
    let busy: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| first.is_some_and(|f| s.at_s >= f && s.at_s <= f + total.as_secs_f64()))
        .collect();
    let q = busy.len() / 4;
    let second = levels_of(&busy[q..(2 * q).max(q + 1).min(busy.len())]);
    let last = levels_of(&busy[busy.len().saturating_sub(q.max(1))..]);
    let (levels_flat, rss_growth, fds_growth) = flat(&second, &last);
    let storms = (opts.duration.as_secs_f64() / opts.storm_every.as_secs_f64()) as u64;
    Ok(SoakReport {
        duration_s: opts.duration.as_secs_f64(),
        rate: opts.rate,
        storms,
        second_quarter: second,
        last_quarter: last,
        rss_growth,
        fds_growth,
        passed: levels_flat && run.passed && busy.len() >= 8,
        samples: busy,
        run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(rss_mib: f64, fds: f64, queued: f64) -> Levels {
        Levels {
            rss_bytes: rss_mib * 1_048_576.0,
            open_fds: fds,
            queued,
        }
    }

    #[test]
    fn flat_levels_pass_and_rising_ones_fail() {
        let base = levels(100.0, 2000.0, 1000.0);
        assert!(flat(&base, &levels(105.0, 2010.0, 5000.0)).0);
        // Memory up 20 %: a leak.
        assert!(!flat(&base, &levels(120.0, 2000.0, 1000.0)).0);
        // Descriptors creeping up.
        assert!(!flat(&base, &levels(100.0, 2100.0, 1000.0)).0);
        // Queues that no longer drain.
        assert!(!flat(&base, &levels(100.0, 2000.0, 500_000.0)).0);
        assert!((flat(&base, &levels(110.0, 2000.0, 0.0)).1 - 1.1).abs() < 1e-9);
    }

    fn sample(rss: f64, queued: f64) -> Sample {
        Sample {
            at_s: 0.0,
            rss_bytes: rss,
            open_fds: 100.0,
            connections: 10.0,
            mailbox: 0.0,
            storage_in_flight: 0.0,
            outbound_bytes: queued,
        }
    }

    #[test]
    fn queue_bursts_pass_and_a_rising_floor_fails() {
        let quiet: Vec<Sample> = (0..20)
            .map(|i| sample(1e8, f64::from(i % 3) * 1000.0))
            .collect();
        let second = levels_of(&quiet);
        // Two samples caught mid-storm, megabytes each: the queue drained after.
        let mut bursty = quiet.clone();
        bursty[5].outbound_bytes = 2_600_000.0;
        bursty[12].outbound_bytes = 3_100_000.0;
        let last = levels_of(&bursty);
        assert!(flat(&second, &last).0, "{second:?} {last:?}");
        // Every sample a little higher than the last: nothing drains.
        let rising: Vec<Sample> = (0..20)
            .map(|i| sample(1e8, f64::from(i) * 20_000.0))
            .collect();
        assert!(!flat(&second, &levels_of(&rising)).0);
        // Memory stays a mean: a level, not a median.
        let mem: Vec<Sample> = [1e8, 1e8, 4e8].iter().map(|&r| sample(r, 0.0)).collect();
        assert!((levels_of(&mem).rss_bytes - 2e8).abs() < 1.0);
    }
}
