//! Running one load step against a server and searching for the highest
//! rate that stays within a scenario's limits, keeping every step's report
//! for the section's table.

use std::time::Duration;

use anyhow::Result;

use super::BenchOptions;
use crate::profile::Profile;
use crate::report::Report;
use crate::run::{self, RunOptions, TransportChoice};
use crate::server::Server;

/// Ack p99 a rate must keep to count as sustained (the mission's 1:1
/// target is stated at p99 ≤ 10 ms).
const ACK_P99_LIMIT_US: u64 = 10_000;
/// Delivery p99 a group rate must keep to count as sustained.
const GROUP_DELIVERY_P99_LIMIT_US: u64 = 100_000;

/// One scenario step's outcome.
pub(super) struct Step {
    pub(super) label: String,
    pub(super) report: Report,
}

pub(super) struct Bench<'a> {
    pub(super) opts: &'a BenchOptions,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) steps: Vec<Step>,
}

impl Bench<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &mut self,
        server: &Server,
        label: &str,
        profile: &Profile,
        transport: TransportChoice,
        scale: f64,
        rate: Option<f64>,
        seconds: f64,
    ) -> Result<&Report> {
        let opts = RunOptions {
            api: format!("http://127.0.0.1:{}", server.api),
            metrics: format!("http://127.0.0.1:{}/metrics", server.metrics),
            pids: Vec::new(),
            profile: profile.clone(),
            transport,
            scale,
            duration: Duration::from_secs_f64(seconds),
            warmup: Duration::from_secs(2),
            rate,
            ca: server.cert(),
            drain: Duration::from_secs(15),
            sync_users: 5,
            source_ips: None,
            quiet: true,
            seed: 1,
            reconnects_per_device_hour: None,
            check_history: false,
            storm_every: None,
        };
        let report = self.runtime.block_on(run::run(opts))?;
        let file = self.opts.reports.join(format!(
            "{}.json",
            label.replace(|c: char| !c.is_alphanumeric(), "_")
        ));
        std::fs::write(&file, serde_json::to_vec_pretty(&report)?)?;
        eprintln!(
            "{label}: offered {:.0} msgs/s, {:.0} msgs/s, {:.0} deliveries/s, ack p50/p99 {}/{} µs, \
             delivery p50/p99 {}/{} µs, {} connections, {}",
            report.offered_msgs_per_s,
            report.msgs_per_s,
            report.deliveries_per_s,
            report.ack_p50_us,
            report.ack_p99_us,
            report.delivery_p50_us,
            report.delivery_p99_us,
            report.connections,
            if report.passed { "ledger clean" } else { "LEDGER FAILED" }
        );
        self.steps.push(Step {
            label: label.to_owned(),
            report,
        });
        Ok(&self.steps.last().unwrap().report)
    }

    /// Doubles the rate from `start` until a step misses `ok`, then
    /// bisects twice between the last good and the first bad rate. Returns
    /// the index of the best good step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search(
        &mut self,
        server: &Server,
        label: &str,
        profile: &Profile,
        scale: f64,
        start: f64,
        max: f64,
        ok: impl Fn(&Report) -> bool,
    ) -> Result<Option<usize>> {
        let seconds = self.opts.seconds;
        let (mut good, mut bad): (Option<(f64, usize)>, Option<f64>) = (None, None);
        let mut rate = start;
        while rate <= max {
            let pass = ok(self.run(
                server,
                &format!("{label} {rate:.0}"),
                profile,
                TransportChoice::Ws,
                scale,
                Some(rate),
                seconds,
            )?);
            if pass {
                good = Some((rate, self.steps.len() - 1));
                rate *= 2.0;
            } else {
                bad = Some(rate);
                break;
            }
        }
        if let (Some((lo, _)), Some(hi)) = (good, bad) {
            let (mut lo, mut hi) = (lo, hi);
            for _ in 0..2 {
                let mid = (lo + hi) / 2.0;
                let pass = ok(self.run(
                    server,
                    &format!("{label} {mid:.0}"),
                    profile,
                    TransportChoice::Ws,
                    scale,
                    Some(mid),
                    seconds,
                )?);
                if pass {
                    good = Some((mid, self.steps.len() - 1));
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        Ok(good.map(|g| g.1))
    }
}

pub(super) fn sustained(r: &Report) -> bool {
    r.passed && r.ack_p99_us <= ACK_P99_LIMIT_US && r.msgs_per_s >= 0.95 * r.offered_msgs_per_s
}

/// The tighter latency the efficiency targets ask of 1:1 traffic: with
/// `sync = batch` an ack may wait for its fsync and 2 ms more; with
/// `sync = none`, 2 ms in all. Without a measured fsync p99 a `batch` step
/// cannot be judged, and does not count.
pub(super) fn within_ack_target(sync: &str, ack_p99_us: u64, fsync_p99_us: Option<u64>) -> bool {
    match sync {
        "batch" => fsync_p99_us.is_some_and(|f| ack_p99_us <= f + 2_000),
        _ => ack_p99_us <= 2_000,
    }
}

/// A 1:1 step that met [`within_ack_target`] with a clean ledger and
/// kept up with the offered rate.
pub(super) fn sustained_at_target(sync: &str, r: &Report) -> bool {
    r.passed
        && r.msgs_per_s >= 0.95 * r.offered_msgs_per_s
        && within_ack_target(sync, r.ack_p99_us, r.server_fsync_p99_us)
}

pub(super) fn sustained_group(r: &Report) -> bool {
    r.passed
        && r.delivery_p99_us <= GROUP_DELIVERY_P99_LIMIT_US
        && r.msgs_per_s >= 0.95 * r.offered_msgs_per_s
}
