//! `bench`: the fixed load scenarios of `make bench`, each against a
//! freshly started release server, and the rewrite of the load
//! generator's section of docs/benchmarks.md with what they measured.
//!
//! The scenarios are the ones the mission's targets are stated in: the
//! highest 1:1 message rate whose ack p99 stays within 10 ms (with
//! `sync = batch` and with `sync = none`), latency at half that rate,
//! deliveries per second in 100-member groups, the transports side by side
//! and server memory per idle connection. Server and load generator share
//! the machine, so the figures are what one box does, not what a node does
//! behind a separate load fleet.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::profile::Profile;
use crate::report::Report;
use crate::run::{self, RunOptions, TransportChoice};

/// Start of the section `bench` rewrites.
pub const BEGIN: &str =
    "<!-- loadgen:begin: rewritten by `make bench`; edit outside these markers -->";
/// End of that section.
pub const END: &str = "<!-- loadgen:end -->";

/// Ack p99 a rate must keep to count as sustained (the mission's 1:1
/// target is stated at p99 ≤ 10 ms).
const ACK_P99_LIMIT_US: u64 = 10_000;
/// Delivery p99 a group rate must keep to count as sustained.
const GROUP_DELIVERY_P99_LIMIT_US: u64 = 100_000;

/// What `bench` was asked to do.
pub struct BenchOptions {
    /// The `confab` binary to start.
    pub confab: PathBuf,
    /// Where each run's JSON report goes.
    pub reports: PathBuf,
    /// Measured seconds per step.
    pub seconds: f64,
    /// Idle connections to hold.
    pub idle_connections: u64,
}

/// A `confab serve` process on free loopback ports, killed on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    api: u16,
    metrics: u16,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    fn start(confab: &Path, sync: &str) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let (api, ws, quic, metrics) = (free_port()?, free_port()?, free_udp_port()?, free_port()?);
        // Cheap password hashing so that signing up thousands of virtual
        // users measures the API and not argon2; a send limit far above
        // any one virtual user's rate, so that only the server's capacity
        // limits the run.
        let config = format!(
            r#"data_dir = "{dir}"
[api]
addr = "127.0.0.1:{api}"
password_memory_kib = 64
password_iterations = 1
[gateway]
ws_addr = "127.0.0.1:{ws}"
quic_addr = "127.0.0.1:{quic}"
send_rate_per_s = 1000000
send_burst = 1000000
[metrics]
addr = "127.0.0.1:{metrics}"
[storage]
sync = "{sync}"
"#,
            dir = dir.path().display()
        );
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(confab)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("CONFAB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", confab.display()))?;
        let mut server = Server {
            child,
            dir: dir.path().to_owned(),
            _dir: dir,
            api,
            metrics,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = ([127, 0, 0, 1], self.api).into();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                bail!("the server exited ({status}):\n{log}");
            }
            if Instant::now() > deadline {
                bail!("the server did not become ready in 60 s");
            }
            if let Ok(mut s) = TcpStream::connect(addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cert(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("tls"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "crt"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scenario step's outcome.
struct Step {
    label: String,
    report: Report,
}

struct Bench<'a> {
    opts: &'a BenchOptions,
    runtime: tokio::runtime::Runtime,
    steps: Vec<Step>,
}

impl Bench<'_> {
    #[allow(clippy::too_many_arguments)]
    fn run(
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
    fn search(
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

fn sustained(r: &Report) -> bool {
    r.passed && r.ack_p99_us <= ACK_P99_LIMIT_US && r.msgs_per_s >= 0.95 * r.offered_msgs_per_s
}

fn sustained_group(r: &Report) -> bool {
    r.passed
        && r.delivery_p99_us <= GROUP_DELIVERY_P99_LIMIT_US
        && r.msgs_per_s >= 0.95 * r.offered_msgs_per_s
}

/// Runs every scenario and returns the markdown section.
pub fn bench(opts: &BenchOptions) -> Result<String> {
    std::fs::create_dir_all(&opts.reports)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut b = Bench {
        opts,
        runtime,
        steps: Vec::new(),
    };
    let mut one_to_one = Profile::load("dau50m")?;
    one_to_one.traffic.one_to_one_share = 1.0;
    one_to_one.name = "dau50m-1:1".into();
    // 1,000 users of the 50M-DAU model.
    let scale =
        1000.0 / (one_to_one.population.dau as f64 * one_to_one.population.peak_concurrent_ratio);

    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut max_batch = None;
    for sync in ["batch", "none"] {
        let server = Server::start(&opts.confab, sync)?;
        let best = b.search(
            &server,
            &format!("1:1 sync={sync}"),
            &one_to_one,
            scale,
            1000.0,
            1_024_000.0,
            sustained,
        )?;
        match best {
            Some(i) => {
                let r = &b.steps[i].report;
                let max = r.offered_msgs_per_s;
                if sync == "batch" {
                    max_batch = Some(max);
                }
                rows.push((
                    format!("max 1:1 msgs/s, `sync = {sync}`, ack p99 ≤ 10 ms (ws, 1,000 users)"),
                    format!(
                        "**{:.0} msgs/s** (ack p50/p99 {}/{} µs, {:.0} deliveries/s)",
                        r.msgs_per_s, r.ack_p50_us, r.ack_p99_us, r.deliveries_per_s
                    ),
                    if sync == "batch" {
                        "≥ 100,000".into()
                    } else {
                        String::new()
                    },
                ));
                let half = b.run(
                    &server,
                    &format!("1:1 sync={sync} half"),
                    &one_to_one,
                    TransportChoice::Ws,
                    scale,
                    Some(max / 2.0),
                    opts.seconds,
                )?;
                rows.push((
                    format!(
                        "1:1 at half of that ({:.0} msgs/s), `sync = {sync}`",
                        max / 2.0
                    ),
                    format!(
                        "ack p50/p99 {}/{} µs, delivery p50/p99/p99.9 {}/{}/{} µs{}",
                        half.ack_p50_us,
                        half.ack_p99_us,
                        half.delivery_p50_us,
                        half.delivery_p99_us,
                        half.delivery_p999_us,
                        if half.passed { "" } else { " (ledger FAILED)" }
                    ),
                    if sync == "batch" {
                        "delivery p99 ≤ fsync p99 + 2 ms".into()
                    } else {
                        "delivery p99 ≤ 1 ms".into()
                    },
                ));
            }
            None => rows.push((
                format!("max 1:1 msgs/s, `sync = {sync}`"),
                "not sustained even at 1,000 msgs/s".into(),
                String::new(),
            )),
        }
    }

    let server = Server::start(&opts.confab, "batch")?;
    let fanout = Profile::load("fanout")?;
    let best = b.search(
        &server,
        "fanout",
        &fanout,
        fanout.run.scale,
        100.0,
        1_024_000.0,
        sustained_group,
    )?;
    rows.push(match best {
        Some(i) => {
            let r = &b.steps[i].report;
            (
                "100-member groups, `sync = batch`, delivery p99 ≤ 100 ms".into(),
                format!(
                    "**{:.0} deliveries/s** ({:.0} msgs/s, delivery p50/p99 {}/{} µs)",
                    r.deliveries_per_s, r.msgs_per_s, r.delivery_p50_us, r.delivery_p99_us
                ),
                "≥ 1,000,000 deliveries/s".into(),
            )
        }
        None => (
            "100-member groups".into(),
            "not sustained even at 100 msgs/s".into(),
            String::new(),
        ),
    });

    // Transports side by side at one rate: half the batch maximum.
    let rate = max_batch.map(|m| m / 2.0).unwrap_or(500.0);
    for (name, t) in [
        ("ws", TransportChoice::Ws),
        ("wss", TransportChoice::Wss),
        ("quic", TransportChoice::Quic),
    ] {
        let r = b.run(
            &server,
            &format!("transport {name}"),
            &one_to_one,
            t,
            scale,
            Some(rate),
            opts.seconds,
        )?;
        rows.push((
            format!("{name} at {rate:.0} msgs/s, `sync = batch`"),
            format!(
                "{:.0} msgs/s, ack p50/p99 {}/{} µs, delivery p50/p99 {}/{} µs{}",
                r.msgs_per_s,
                r.ack_p50_us,
                r.ack_p99_us,
                r.delivery_p50_us,
                r.delivery_p99_us,
                if r.passed { "" } else { " (ledger FAILED)" }
            ),
            String::new(),
        ));
    }
    drop(server);

    // Idle connections on a fresh server, so its memory is theirs.
    let server = Server::start(&opts.confab, "batch")?;
    let idle = Profile::load("idle")?;
    // The server and the load generator each hold one descriptor per
    // connection: stay below the hard limit, with room for the log's files.
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(u64::MAX);
    let target = opts.idle_connections.min(hard.saturating_sub(2_000));
    if target < opts.idle_connections {
        eprintln!(
            "idle: {target} connections, not {}: the open-file hard limit is {hard}",
            opts.idle_connections
        );
    }
    let users = (target as f64 / idle.mean_devices()).ceil();
    let scale = users / (idle.population.dau as f64 * idle.population.peak_concurrent_ratio);
    let r = b.run(
        &server,
        "idle",
        &idle,
        TransportChoice::Ws,
        scale.min(1.0),
        None,
        opts.seconds,
    )?;
    rows.push((
        format!("idle ws connections (open-file hard limit {hard})"),
        format!(
            "{} connections, server RSS {:.0} MiB, **{} bytes per connection**",
            r.connections,
            r.server_rss_bytes.unwrap_or(0) as f64 / (1u64 << 20) as f64,
            r.server_bytes_per_connection
                .map(|b| b.to_string())
                .unwrap_or_else(|| "not read".into())
        ),
        "≤ 4 KiB per idle connection".into(),
    ));
    drop(server);

    Ok(section(opts, &rows, &b.steps))
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "unknown memory".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem}, Linux {kernel}")
}

fn section(opts: &BenchOptions, rows: &[(String, String, String)], steps: &[Step]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{BEGIN}");
    let _ = writeln!(o, "## Load generator (`make bench`)\n");
    let _ = writeln!(
        o,
        "Measured {} on {}. The server (release build, `{}`) and the load generator \
         (2 threads) share the machine, over loopback.\n",
        today(),
        machine(),
        opts.confab.display()
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        o,
        "```sh\nconfab-loadgen {}   # `make bench` runs it with the defaults\n```\n",
        args.join(" ")
    );
    let _ = writeln!(
        o,
        "Each step runs {:.0} s after a 2 s warm-up. A rate counts as sustained when the ledger is clean, \
         the acked rate is at least 95% of the offered rate, and the ack p99 (1:1) or delivery p99 \
         (groups) is within the limit. Rates double until one is not sustained, then two bisection steps follow. \
         Every step's JSON report is in `{}`.\n",
        opts.seconds,
        opts.reports.display()
    );
    let _ = writeln!(o, "| Scenario | Result | Target |\n|---|---|---|");
    for (a, b, c) in rows {
        let _ = writeln!(o, "| {a} | {b} | {c} |");
    }
    let _ = writeln!(o, "\nAll steps:\n");
    let _ = writeln!(
        o,
        "| Step | Offered msgs/s | Acked msgs/s | Deliveries/s | Ack p50 / p99 µs | Delivery p50 / p99 µs | Connections | Ledger |\n|---|---|---|---|---|---|---|---|"
    );
    for s in steps {
        let r = &s.report;
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:.0} | {} / {} | {} / {} | {} | {} |",
            s.label,
            r.offered_msgs_per_s,
            r.msgs_per_s,
            r.deliveries_per_s,
            r.ack_p50_us,
            r.ack_p99_us,
            r.delivery_p50_us,
            r.delivery_p99_us,
            r.connections,
            if r.passed {
                "clean".to_owned()
            } else {
                format!(
                    "lost {} dup {} gaps {} errors {:?}",
                    r.lost, r.duplicated, r.gaps, r.errors
                )
            }
        );
    }
    let _ = write!(o, "{END}");
    o
}

pub fn today() -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm),
    // to avoid a date crate for one line.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let z = secs / 86_400 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `text` with the section between the markers replaced by `section`
/// (which carries the markers), or with `section` appended when there are
/// none yet.
pub fn replace_section(text: &str, section: &str) -> Result<String> {
    replace_marked(text, BEGIN, END, section)
}

/// `text` with the section between `begin` and `end` replaced by
/// `section` (which carries the markers), or with `section` appended when
/// there are none yet.
pub fn replace_marked(text: &str, begin: &str, end: &str, section: &str) -> Result<String> {
    match (text.find(begin), text.find(end)) {
        (Some(a), Some(b)) if a < b => {
            Ok(format!("{}{section}{}", &text[..a], &text[b + end.len()..]))
        }
        (None, None) => Ok(format!("{}\n\n{section}\n", text.trim_end())),
        _ => bail!("the markers {begin:?} and {end:?} are broken (one missing, or out of order)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_and_the_rest_kept() {
        let new = format!("{BEGIN}\nnew\n{END}");
        let first = replace_section("# Benchmarks\n\nkeep me\n", &new).unwrap();
        assert_eq!(first, format!("# Benchmarks\n\nkeep me\n\n{new}\n"));
        let newer = format!("{BEGIN}\nnewer\n{END}");
        let second = replace_section(&(first.clone() + "after\n"), &newer).unwrap();
        assert_eq!(
            second,
            format!("# Benchmarks\n\nkeep me\n\n{newer}\nafter\n")
        );
        assert!(replace_section(&format!("x {END} y {BEGIN}"), &new).is_err());
        assert!(replace_section(&format!("x {BEGIN} y"), &new).is_err());
    }

    #[test]
    fn civil_date() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"), "{d}");
    }
}
