//! Crash cycles under load: a `confab serve` of its own keeps 1:1 and
//! group traffic going while it is killed with SIGKILL at random moments
//! and started again on the same data directory and ports, `cycles` times.
//! The devices (the client SDK) reconnect and send their unacknowledged
//! messages again with the same ids. At the end the run's ledger, the
//! fresh-device inbox sync and every channel's history read back must all
//! agree: each acknowledged message stored and delivered exactly once,
//! under gapless sequences.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::profile::Profile;
use crate::report::Report;
use crate::run::{self, RunOptions, TransportChoice};
use crate::server::Server;

/// What `confab-loadgen crash` runs.
pub struct CrashOptions {
    /// The `confab` binary.
    pub confab: PathBuf,
    /// Kills and restarts.
    pub cycles: u32,
    /// The traffic (with groups for group fan-out).
    pub profile: Profile,
    /// Share of the profile's population.
    pub scale: f64,
    /// Messages per second.
    pub rate: f64,
    /// The server's `storage.sync`.
    pub sync: String,
    /// How long the server runs between kills: uniform in this range.
    pub up: (Duration, Duration),
    /// Seed of the kill moments and the traffic.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
}

/// What the cycles did to the messages.
#[derive(Debug, Clone, Serialize)]
pub struct CrashReport {
    /// Kills done (each followed by a restart).
    pub cycles: u32,
    /// The server's `storage.sync`.
    pub sync: String,
    /// Time from each restart to the server answering `/readyz`, ms.
    pub restart_ms: Vec<u64>,
    /// Messages acknowledged over the whole run.
    pub acknowledged: u64,
    /// Acknowledged messages missing from a device, an inbox or a history.
    pub lost: u64,
    /// Messages stored or delivered more than once.
    pub duplicated: u64,
    /// Holes in a channel's sequence, seen by a device or in a history.
    pub gaps: u64,
    /// The run's own report (errors, reconnects, latencies).
    pub run: Report,
    /// Every cycle done and the books clean.
    pub passed: bool,
}

impl CrashReport {
    /// The text summary.
    pub fn render(&self) -> String {
        let mut restart = self.restart_ms.clone();
        restart.sort_unstable();
        let median = restart.get(restart.len() / 2).copied().unwrap_or(0);
        let max = restart.last().copied().unwrap_or(0);
        format!(
            "crash cycles: {} kills (SIGKILL) with sync = {}, restart to ready p50 {} ms, max {} ms\n\
             messages acknowledged {}  lost {}  duplicated {}  gaps {}  reconnects {}  errors {} {:?}\n\
             {}\n",
            self.cycles,
            self.sync,
            median,
            max,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.gaps,
            self.run.reconnects,
            self.run.errors_total,
            self.run.errors,
            if self.passed { "PASSED" } else { "FAILED" }
        )
    }
}

/// Waits until the server has stored a message (the run's set-up is over
/// and its traffic has begun), reading its metrics.
fn wait_for_traffic(metrics_port: u16, over: &AtomicBool) -> Result<()> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::time::Instant::now() < deadline && !over.load(Ordering::Acquire) {
        let mut body = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) {
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut body);
        }
        if crate::prom::sum(&body, "confab_messages_stored_total", "") > 0.0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(anyhow!("no message was stored within 300 s"))
}

/// Starts the server, runs the traffic and the kills side by side, and
/// checks the books.
pub async fn crash(opts: CrashOptions) -> Result<CrashReport> {
    let server = Server::start(&opts.confab, &opts.sync)?;
    let (api, metrics) = (server.api, server.metrics);
    let warmup = Duration::from_secs(2);
    // Room for every cycle at its longest (with a slow restart), then
    // quiet traffic before the drain.
    let per_cycle = opts.up.1 + Duration::from_secs(5);
    let duration = per_cycle * opts.cycles + Duration::from_secs(3);
    let done = Arc::new(AtomicBool::new(false));
    // Set when the run ends, early or not: no kill after it.
    let over = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (done, over) = (done.clone(), over.clone());
        let (cycles, up, seed) = (opts.cycles, opts.up, opts.seed);
        std::thread::spawn(move || -> Result<(Server, Vec<u64>)> {
            let mut server = server;
            let mut rng = StdRng::seed_from_u64(seed ^ 0xc4a5);
            let mut restarts = Vec::new();
            // Kills start once the traffic runs.
            wait_for_traffic(metrics, &over)?;
            // Every kill lands inside the traffic, never in the drain or
            // the checks after it.
            let traffic_end = std::time::Instant::now() + duration;
            for _ in 0..cycles {
                let wait = rng.random_range(up.0.as_secs_f64()..=up.1.as_secs_f64());
                let at = std::time::Instant::now() + Duration::from_secs_f64(wait);
                while std::time::Instant::now() < at {
                    if over.load(Ordering::Acquire) {
                        return Ok((server, restarts));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if std::time::Instant::now() + Duration::from_secs(2) > traffic_end {
                    break;
                }
                restarts.push(server.crash_and_restart()?.as_millis() as u64);
            }
            done.store(restarts.len() as u32 == cycles, Ordering::Release);
            Ok((server, restarts))
        })
    };
    let report = run::run(RunOptions {
        api: format!("http://127.0.0.1:{api}"),
        metrics: format!("http://127.0.0.1:{metrics}/metrics"),
        profile: opts.profile,
        transport: TransportChoice::Ws,
        scale: opts.scale,
        duration,
        warmup,
        rate: Some(opts.rate),
        ca: None,
        drain: Duration::from_secs(60),
        sync_users: 10,
        source_ips: None,
        quiet: opts.quiet,
        seed: opts.seed,
        reconnects_per_device_hour: Some(0.0),
        check_history: true,
        storm_every: None,
    })
    .await;
    over.store(true, Ordering::Release);
    let chaos = chaos
        .join()
        .map_err(|_| anyhow!("the kill thread panicked"))?;
    // The run's own failure says more than the kill thread's.
    let run = report?;
    let (server, restart_ms) = chaos?;
    drop(server);
    let cycles = restart_ms.len() as u32;
    let passed = run.passed && cycles == opts.cycles && done.load(Ordering::Acquire);
    Ok(CrashReport {
        cycles,
        sync: opts.sync,
        restart_ms,
        acknowledged: run.acked,
        lost: run.lost,
        duplicated: run.duplicated,
        gaps: run.gaps,
        run,
        passed,
    })
}
