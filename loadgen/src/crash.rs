//! Crash cycles under load: a `confab serve` of its own keeps 1:1 and
//! group traffic going while it is killed with SIGKILL at random moments
//! and started again on the same data directory and ports, `cycles` times.
//! The devices (the client SDK) reconnect and send their unacknowledged
//! messages again with the same ids. At the end the run's ledger, the
//! fresh-device inbox sync and every channel's history read back must all
//! agree: each acknowledged message stored and delivered exactly once,
//! under gapless sequences.
//!
//! With `power_cut`, the node's data directory is a [`confab_powercut`]
//! filesystem and every kill is also a power cut: whatever the node wrote
//! and did not fsync is forgotten before it restarts. Under `sync = batch`
//! the books must still be clean. Under `interval:<ms>` an acknowledged
//! message may be lost, but only one acknowledged within the interval (plus
//! [`FSYNC_SLACK`]) before a cut; under `none` any unsynced one may be.
//! Either way the log must reopen every time and each channel's history
//! must hold no duplicate and no hole. (Devices are not held to exactly
//! once there: a lost message's sequence is given again to the next one,
//! so a device that saw the lost one has a cursor past its replacement.)

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

/// Beyond the interval: the fsync that ends it (on a loaded machine, and
/// through FUSE) and the kill itself take time too.
pub const FSYNC_SLACK: Duration = Duration::from_millis(250);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The loss window `sync` documents for a power cut: none for `batch`,
/// the interval (plus [`FSYNC_SLACK`]) for `interval:<ms>`, unbounded
/// (`None`) for `none`.
fn loss_window(sync: &str) -> Option<Duration> {
    match sync.strip_prefix("interval:") {
        Some(ms) => Some(Duration::from_millis(ms.parse().unwrap_or(0)) + FSYNC_SLACK),
        None if sync == "none" => None,
        None => Some(Duration::ZERO),
    }
}

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
    /// Each kill is also a power cut (the data directory forgets what was
    /// not fsynced).
    pub power_cut: bool,
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
    /// Each kill was also a power cut.
    pub power_cuts: bool,
    /// Time from each restart to the server answering `/readyz`, ms.
    pub restart_ms: Vec<u64>,
    /// Unsynced bytes each power cut took back.
    pub cut_bytes: Vec<u64>,
    /// The loss a power cut may cause under this `sync`: acknowledged
    /// messages within this many ms before a cut (`None`: unbounded).
    pub loss_window_ms: Option<u64>,
    /// Acknowledged messages lost longer than the window before any cut
    /// (or lost with no cut at all).
    pub lost_outside_window: u64,
    /// The oldest lost message's age at the cut that took it, ms.
    pub lost_max_age_ms: Option<u64>,
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
        let power = if self.power_cuts {
            let bytes: u64 = self.cut_bytes.iter().sum();
            let window = self
                .loss_window_ms
                .map_or("unbounded".to_string(), |ms| format!("{ms} ms"));
            let age = self.lost_max_age_ms.map_or(String::new(), |ms| {
                format!(", oldest lost {ms} ms before its cut")
            });
            let held = if self.loss_window_ms == Some(0) {
                ""
            } else {
                "judged on the histories: a lost message's sequence is given again, \
                 so devices are not held to exactly once under this sync\n"
            };
            format!(
                "power cuts: {bytes} unsynced bytes forgotten; loss window {window}; \
                 lost outside it {}{age}\n{held}",
                self.lost_outside_window
            )
        } else {
            String::new()
        };
        format!(
            "crash cycles: {} kills ({}) with sync = {}, restart to ready p50 {} ms, max {} ms\n\
             messages acknowledged {}  lost {}  duplicated {}  gaps {}  reconnects {}  errors {} {:?}\n\
             {power}{}\n",
            self.cycles,
            if self.power_cuts { "SIGKILL + power cut" } else { "SIGKILL" },
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

/// What the kill thread did.
#[derive(Default)]
struct Kills {
    /// When each kill came (ms since the Unix epoch).
    at_unix_ms: Vec<u64>,
    restart_ms: Vec<u64>,
    cut_bytes: Vec<u64>,
}

/// Holds each lost message's acknowledgement against the kills: lost
/// within `window` before the first kill after it is the documented loss
/// (`None`: any age is). Returns how many were lost outside it and the
/// oldest age at its kill.
fn against_cuts(lost_acked: &[u64], kills: &[u64], window: Option<Duration>) -> (u64, Option<u64>) {
    let mut outside = 0;
    let mut oldest = None;
    for &acked in lost_acked {
        // An acknowledgement may be read a moment after the kill it
        // raced: the kill closes the socket after the ack was queued.
        let cut = kills.iter().find(|&&k| k + 50 >= acked);
        let Some(&cut) = cut else {
            outside += 1;
            continue;
        };
        let age = cut.saturating_sub(acked);
        oldest = oldest.max(Some(age));
        if window.is_some_and(|w| age > w.as_millis() as u64) {
            outside += 1;
        }
    }
    (outside, oldest)
}

/// Starts the server, runs the traffic and the kills side by side, and
/// checks the books.
pub async fn crash(opts: CrashOptions) -> Result<CrashReport> {
    let server = Server::start_on(&opts.confab, &opts.sync, opts.power_cut)?;
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
        std::thread::spawn(move || -> Result<(Server, Kills)> {
            let mut server = server;
            let mut rng = StdRng::seed_from_u64(seed ^ 0xc4a5);
            let mut restarts = Kills::default();
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
                restarts.at_unix_ms.push(unix_ms());
                let (took, cut) = server.crash_and_restart()?;
                restarts.restart_ms.push(took.as_millis() as u64);
                restarts.cut_bytes.extend(cut.map(|c| c.bytes));
            }
            done.store(
                restarts.restart_ms.len() as u32 == cycles,
                Ordering::Release,
            );
            Ok((server, restarts))
        })
    };
    // Where a cut may lose acknowledged messages, deliveries and inboxes
    // owed for them never come: waiting for them (the drain, a fresh
    // device's sync of each sampled inbox) would only spend the deadlines.
    let lossy = opts.power_cut && loss_window(&opts.sync) != Some(Duration::ZERO);
    let report = run::run(RunOptions {
        api: format!("http://127.0.0.1:{api}"),
        metrics: format!("http://127.0.0.1:{metrics}/metrics"),
        pids: Vec::new(),
        profile: opts.profile,
        transport: TransportChoice::Ws,
        scale: opts.scale,
        duration,
        warmup,
        rate: Some(opts.rate),
        ca: None,
        drain: Duration::from_secs(if lossy { 10 } else { 60 }),
        sync_users: if lossy { 0 } else { 10 },
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
    // When both failed, both say something: a restart that failed (the
    // node's log) explains why the run could not read its books.
    let (run, (server, kills)) = match (report, chaos) {
        (Ok(run), Ok(chaos)) => (run, chaos),
        (Err(run), Ok(_)) => return Err(run),
        (Ok(_), Err(kill)) => return Err(kill.context("the kill thread")),
        (Err(run), Err(kill)) => return Err(anyhow!("{run:#}\nand the kill thread: {kill:#}")),
    };
    drop(server);
    let cycles = kills.restart_ms.len() as u32;
    let all_done = cycles == opts.cycles && done.load(Ordering::Acquire);
    let window = if opts.power_cut {
        loss_window(&opts.sync)
    } else {
        Some(Duration::ZERO)
    };
    let (lost_outside_window, lost_max_age_ms) =
        against_cuts(&run.lost_acked_unix_ms, &kills.at_unix_ms, window);
    let passed = match window {
        // Nothing may be lost: the books must be clean.
        Some(w) if w.is_zero() => run.passed && all_done,
        // A bounded or unbounded loss: the store must stay whole.
        _ => {
            let history = run.history.unwrap_or_default();
            all_done
                && lost_outside_window == 0
                && history.duplicated == 0
                && history.gaps == 0
                && run.corrupted == 0
        }
    };
    Ok(CrashReport {
        cycles,
        sync: opts.sync,
        power_cuts: opts.power_cut,
        restart_ms: kills.restart_ms,
        cut_bytes: kills.cut_bytes,
        loss_window_ms: window.map(|w| w.as_millis() as u64),
        lost_outside_window,
        lost_max_age_ms,
        acknowledged: run.acked,
        lost: run.lost,
        duplicated: run.duplicated,
        gaps: run.gaps,
        run,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_count_against_the_first_cut_after_their_ack() {
        let kills = [10_000, 20_000];
        let w = Some(Duration::from_millis(350));
        // Acked 100 ms and 300 ms before the second kill: inside.
        assert_eq!(against_cuts(&[19_900, 19_700], &kills, w), (0, Some(300)));
        // 500 ms before the first kill, or after the last: outside.
        assert_eq!(against_cuts(&[9_500], &kills, w), (1, Some(500)));
        assert_eq!(against_cuts(&[30_000], &kills, w).0, 1);
        // Unbounded: only a loss with no cut after it counts.
        assert_eq!(
            against_cuts(&[1_000, 30_000], &kills, None),
            (1, Some(9_000))
        );
        // Batch: any loss is outside.
        assert_eq!(against_cuts(&[19_999], &kills, Some(Duration::ZERO)).0, 1);
    }

    #[test]
    fn windows_follow_the_sync_policy() {
        assert_eq!(loss_window("batch"), Some(Duration::ZERO));
        assert_eq!(
            loss_window("interval:100"),
            Some(Duration::from_millis(100) + FSYNC_SLACK)
        );
        assert_eq!(loss_window("none"), None);
    }
}
