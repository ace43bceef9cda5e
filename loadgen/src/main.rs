//! `confab-loadgen`: realistic chat traffic against a confab server, with
//! honest latency (open loop, measured from the scheduled send time) and
//! a ledger that proves nothing was lost, repeated or reordered while it
//! measured. See docs/loadgen.md.
//!
//! ```text
//! confab-loadgen plan --profile dau50m
//! confab-loadgen run --profile smoke --transport mix --json out.json --html out.html
//! ```

mod api;
mod bench;
mod cluster_plan;
mod cpu;
mod crash;
mod criterion;
mod idle;
mod ledger;
mod node_size;
mod plan;
mod profile;
mod prom;
mod report;
mod run;
mod server;
mod soak;
mod stats;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::plan::Plan;
use crate::profile::Profile;
use crate::run::{RunOptions, TransportChoice};

/// Load generator for confab.
#[derive(Debug, Parser)]
#[command(name = "confab-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A node's size for `plan`, and what one idle connection costs it (by
/// default the transport bench's measured figures for the transport).
#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// Memory of one node.
    #[arg(long, default_value_t = 64.0)]
    node_memory_gib: f64,
    /// Cores of one node.
    #[arg(long, default_value_t = 16.0)]
    node_cores: f64,
    /// Memory kept for everything but connections (storage caches, the
    /// process itself).
    #[arg(long, default_value_t = 8.0)]
    node_reserved_gib: f64,
    /// Share of the cores that holding idle connections may take.
    #[arg(long, default_value_t = 0.25)]
    heartbeat_cpu_share: f64,
    /// The node's open-file limit (docs/operations.md).
    #[arg(long, default_value_t = 2_000_000.0)]
    open_files: f64,
    /// Whose measured costs to use.
    #[arg(long, value_enum, default_value = "ws")]
    conn_transport: node_size::Transport,
    /// Server user memory per idle connection, instead of the measured one.
    #[arg(long)]
    conn_user_bytes: Option<f64>,
    /// Kernel memory per idle connection, instead of the measured one.
    #[arg(long)]
    conn_kernel_bytes: Option<f64>,
    /// Server CPU per heartbeat in µs, instead of the measured one.
    #[arg(long)]
    heartbeat_cpu_us: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints what a profile means for a deployment: peak rates,
    /// connections, storage per day and nodes needed. Sends nothing.
    Plan {
        /// A built-in profile (dau50m, smoke, fanout, idle, burst) or a
        /// TOML file.
        #[arg(long, default_value = "dau50m")]
        profile: String,
        /// Share of the peak population one machine would drive.
        #[arg(long)]
        scale: Option<f64>,
        /// Prints the plan as JSON.
        #[arg(long)]
        json: bool,
        /// The node's size and the connection costs that decide how many
        /// connections it holds.
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Opens many idle ws connections cheaply (no SDK per device: a bare
    /// WebSocket that says Hello, heartbeats and discards what arrives),
    /// holds them, and reports what they cost the server and this process
    /// per connection, and how fast they opened.
    Idle {
        /// The server's HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// The server's Prometheus endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9090/metrics")]
        metrics: String,
        /// Connections to open (a user and a device each).
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them open while measuring CPU.
        #[arg(long, default_value_t = 35.0)]
        hold: f64,
        /// Seconds between a device's heartbeats.
        #[arg(long, default_value_t = 30.0)]
        heartbeat: f64,
        /// Connections per loopback source address (127.0.0.1, .2, ...).
        /// Far below the ephemeral ports one address has: `connect` searches
        /// that range for a free port, and the search slows as the range
        /// fills (docs/benchmarks.md, "Opening: what the kernel charges").
        #[arg(long, default_value_t = 1_000)]
        per_source_ip: usize,
        /// Handshakes in flight at once (the number of connections opens
        /// every one at once, as a reconnect storm does).
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
        in_flight: u64,
        /// Also writes the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Prints a built-in profile's TOML, to copy and edit.
    Profile {
        /// The built-in profile.
        name: String,
    },
    /// Drives the profile's traffic against a running server and reports.
    /// Exits with status 2 if anything was lost, duplicated, out of order
    /// or refused.
    Run(RunArgs),
    /// The fixed scenarios of `make bench`: starts a fresh `confab serve`
    /// for each group of runs, searches for the highest sustained rates,
    /// and rewrites the load generator's section of docs/benchmarks.md.
    Bench {
        /// The `confab` binary (a release build).
        #[arg(long, default_value = "target/release/confab")]
        confab: PathBuf,
        /// The markdown file whose load-generator section is rewritten;
        /// without it the section is printed.
        #[arg(long)]
        write: Option<PathBuf>,
        /// Directory for every step's JSON report.
        #[arg(long, default_value = "target/loadgen-bench")]
        reports: PathBuf,
        /// Measured seconds per step.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Idle connections to hold for the memory figure.
        #[arg(long, default_value_t = 30_000)]
        idle_connections: u64,
    },
    /// Crash cycles under load: starts its own `confab serve`, keeps 1:1
    /// and group traffic going while killing the server with SIGKILL at
    /// random moments and restarting it on the same data, then checks that
    /// every acknowledged message is stored and delivered exactly once.
    /// Exits 2 when a message was lost or duplicated.
    Crash {
        /// The `confab` binary.
        #[arg(long, default_value = "target/release/confab")]
        confab: PathBuf,
        /// Kills (each followed by a restart).
        #[arg(long, default_value_t = 5)]
        cycles: u32,
        /// A built-in profile or a TOML file (the traffic).
        #[arg(long, default_value = "smoke")]
        profile: String,
        /// Share of the profile's peak population.
        #[arg(long)]
        scale: Option<f64>,
        /// Messages per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// The server's `storage.sync`: `batch`, `interval:<ms>` or `none`.
        #[arg(long, default_value = "batch")]
        sync: String,
        /// Makes every kill a power cut too: the server's data directory is
        /// a FUSE filesystem that forgets each write not yet fsynced (needs
        /// /dev/fuse and root). Under `batch` nothing acknowledged may be
        /// lost; under `interval:<ms>` only what was acknowledged within the
        /// interval before a cut; the log must reopen whole every time.
        #[arg(long)]
        power_cut: bool,
        /// Least seconds the server runs between kills.
        #[arg(long, default_value_t = 1.0)]
        min_up: f64,
        /// Most seconds the server runs between kills.
        #[arg(long, default_value_t = 4.0)]
        max_up: f64,
        /// Seed of the kill moments and the traffic.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Writes the report as one JSON object.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// A long run against its own `confab serve` at a steady rate with
    /// churn and reconnect storms, sampling the server's memory, open
    /// descriptors and queue depths: they must stay flat, and the ledger
    /// clean. Exits 2 otherwise.
    Soak {
        /// The `confab` binary.
        #[arg(long, default_value = "target/release/confab")]
        confab: PathBuf,
        /// Minutes of traffic.
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
        /// A built-in profile or a TOML file (the traffic).
        #[arg(long, default_value = "dau50m")]
        profile: String,
        /// Share of the profile's peak population (default 1,000 users).
        #[arg(long, default_value_t = 0.0002)]
        scale: f64,
        /// Messages per second (with the dau50m mix of 1:1 and groups,
        /// about twenty deliveries each).
        #[arg(long, default_value_t = 400.0)]
        rate: f64,
        /// Forced reconnects per device per hour.
        #[arg(long, default_value_t = 6.0)]
        churn: f64,
        /// Minutes between reconnect storms (every device at once).
        #[arg(long, default_value_t = 10.0)]
        storm_minutes: f64,
        /// Seconds between readings of the server's metrics.
        #[arg(long, default_value_t = 10.0)]
        sample_seconds: f64,
        /// Seed of the traffic.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Writes the report (with every sample) as one JSON object.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Rewrites the criterion section of docs/benchmarks.md from the
    /// latest `cargo bench -p confab-benches` results.
    Criterion {
        /// criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        dir: PathBuf,
        /// The markdown file whose criterion section is rewritten; without
        /// it the section is printed.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The server's HTTP API; the gateway addresses come from its
    /// `/v1/gateway`.
    #[arg(
        long,
        env = "CONFAB_LOADGEN_API",
        default_value = "http://127.0.0.1:8080"
    )]
    api: String,
    /// The server's Prometheus endpoint (for its memory and CPU); for a
    /// cluster, every node's, comma-separated: their CPU is summed, the
    /// memory is the first's.
    #[arg(
        long,
        env = "CONFAB_LOADGEN_METRICS",
        default_value = "http://127.0.0.1:9090/metrics"
    )]
    metrics: String,
    /// Other local processes whose CPU the deployment spends too (a
    /// cluster's NATS servers), comma-separated pids, read from /proc over
    /// the same window as the server's.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// A built-in profile (dau50m, smoke, fanout, idle, burst) or a TOML
    /// file.
    #[arg(long, default_value = "smoke")]
    profile: String,
    /// Transport of the devices (`mix`: ws, wss and quic in turn).
    #[arg(long, value_enum, default_value = "ws")]
    transport: TransportChoice,
    /// Share of the profile's peak population to drive (default: the
    /// profile's `run.scale`).
    #[arg(long)]
    scale: Option<f64>,
    /// Measured seconds (default: the profile's).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of traffic before measuring (default: the profile's).
    #[arg(long)]
    warmup: Option<f64>,
    /// Messages per second, replacing the scaled model's rate.
    #[arg(long)]
    rate: Option<f64>,
    /// PEM certificate to trust for wss and quic (a development server's
    /// self-signed `<data_dir>/tls/*.crt`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Seconds to wait after the last send for outstanding acks and
    /// deliveries.
    #[arg(long, default_value_t = 15.0)]
    drain: f64,
    /// Users whose whole inbox a fresh device syncs at the end.
    #[arg(long, default_value_t = 10)]
    sync_users: usize,
    /// Seed of the run's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connections dropped per device per hour (churn), replacing the
    /// profile's `traffic.reconnects_per_device_hour`.
    #[arg(long)]
    reconnects_per_device_hour: Option<f64>,
    /// Reads every channel's history back at the end: each acknowledged
    /// message stored exactly once, sequences without holes.
    #[arg(long)]
    check_history: bool,
    /// Writes the report as one JSON object.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Writes a self-contained HTML report with plots.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Loopback source addresses to spread connections over (127.0.0.1
    /// to 127.0.0.N; default: one per 10,000 connections when the server
    /// is on loopback).
    #[arg(long)]
    source_ips: Option<u32>,
    /// No progress bar and no plan on stderr.
    #[arg(long)]
    quiet: bool,
    /// Threads of the client runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // fuser (the power-cut filesystem) reports each reply to a
                // request of a process the crash cycles killed as an error;
                // the kernel dropped those requests, nothing failed.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match main_result() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("confab-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main_result() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Plan {
            profile,
            scale,
            json,
            node,
        } => {
            let profile = Profile::load(&profile)?;
            if !(node.node_memory_gib > node.node_reserved_gib && node.node_reserved_gib >= 0.0) {
                bail!("--node-memory-gib must exceed --node-reserved-gib (and the reserve must not be negative)");
            }
            if !(node.node_cores > 0.0 && node.open_files > 0.0) {
                bail!("--node-cores and --open-files must be positive");
            }
            if !(node.heartbeat_cpu_share > 0.0 && node.heartbeat_cpu_share <= 1.0) {
                bail!("--heartbeat-cpu-share must be in (0, 1]");
            }
            let mut cost = node_size::ConnectionCost::measured(node.conn_transport);
            cost.user_bytes = node.conn_user_bytes.unwrap_or(cost.user_bytes);
            cost.kernel_bytes = node.conn_kernel_bytes.unwrap_or(cost.kernel_bytes);
            cost.heartbeat_cpu_us = node.heartbeat_cpu_us.unwrap_or(cost.heartbeat_cpu_us);
            let holds = node_size::NodeConnections::new(
                node_size::NodeSize {
                    memory_gib: node.node_memory_gib,
                    cores: node.node_cores,
                    reserved_gib: node.node_reserved_gib,
                    heartbeat_cpu_share: node.heartbeat_cpu_share,
                    open_files: node.open_files,
                    heartbeat_interval_s: profile.traffic.heartbeat_interval_s as f64,
                },
                cost,
            );
            // Connections per node from the measured model; messages and
            // deliveries per node from the profile's capacity section.
            let c = profile.capacity;
            let plan = Plan::new(&profile).with_capacity(
                c.node_messages_per_s,
                c.node_deliveries_per_s,
                holds.holds,
                c.target_utilisation,
            );
            let slice = plan.slice(
                &profile,
                scale.unwrap_or(profile.run.scale),
                profile.run.rate,
            );
            let cluster = cluster_plan::ClusterPlan::new(
                &plan,
                profile.mean_message_chars(),
                node.node_cores,
            );
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"plan": plan, "slice": slice, "node_connections": holds, "cluster": cluster})
                    )?
                );
            } else {
                print!("{}", holds.render(node.conn_transport));
                print!("{}", plan.render(&profile, Some(&slice)));
                print!("{}", cluster.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Idle {
            api,
            metrics,
            connections,
            hold,
            heartbeat,
            per_source_ip,
            in_flight,
            json,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let report = rt.block_on(idle::run(idle::IdleOptions {
                api,
                metrics,
                connections,
                hold: Duration::from_secs_f64(hold),
                heartbeat: Duration::from_secs_f64(heartbeat),
                per_source_ip,
                in_flight: in_flight as usize,
            }))?;
            print!("{}", report.render());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Profile { name } => {
            let (_, text) = profile::BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .with_context(|| format!("no built-in profile {name:?}"))?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_command(args),
        Command::Soak {
            confab,
            minutes,
            profile,
            scale,
            rate,
            churn,
            storm_minutes,
            sample_seconds,
            seed,
            json,
            quiet,
        } => {
            let profile = Profile::load(&profile)?;
            anyhow::ensure!(scale > 0.0 && scale <= 1.0, "--scale must be in (0, 1]");
            anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be > 0");
            let duration = seconds("--minutes", minutes * 60.0)?;
            let storm_every = seconds("--storm-minutes", storm_minutes * 60.0)?;
            let sample_every = seconds("--sample-seconds", sample_seconds)?;
            anyhow::ensure!(
                !duration.is_zero() && !storm_every.is_zero() && !sample_every.is_zero(),
                "--minutes, --storm-minutes and --sample-seconds must be > 0"
            );
            anyhow::ensure!(
                churn.is_finite() && (0.0..=36_000.0).contains(&churn),
                "--churn must be in 0..=36000"
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let report = runtime.block_on(soak::soak(soak::SoakOptions {
                confab,
                duration,
                profile,
                scale,
                rate,
                churn_per_device_hour: churn,
                storm_every,
                sample_every,
                seed,
                quiet,
            }))?;
            let text = format!("{}{}", report.run.summary(), report.render());
            finish(runtime, &text, &report, json.as_deref(), report.passed)
        }
        Command::Crash {
            confab,
            cycles,
            profile,
            scale,
            rate,
            sync,
            power_cut,
            min_up,
            max_up,
            seed,
            json,
            quiet,
        } => {
            let profile = Profile::load(&profile)?;
            let scale = scale.unwrap_or(profile.run.scale);
            anyhow::ensure!(scale > 0.0 && scale <= 1.0, "--scale must be in (0, 1]");
            anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be > 0");
            anyhow::ensure!(cycles >= 1, "--cycles must be at least 1");
            let (min_up, max_up) = (seconds("--min-up", min_up)?, seconds("--max-up", max_up)?);
            anyhow::ensure!(min_up <= max_up, "--min-up must not exceed --max-up");
            let interval_ok = sync
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .is_some_and(|ms| ms > 0);
            anyhow::ensure!(
                sync == "batch" || sync == "none" || interval_ok,
                "--sync must be batch, interval:<ms> or none"
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let report = runtime.block_on(crash::crash(crash::CrashOptions {
                confab,
                cycles,
                profile,
                scale,
                rate,
                sync,
                power_cut,
                up: (min_up, max_up),
                seed,
                quiet,
            }))?;
            let text = format!("{}{}", report.run.summary(), report.render());
            finish(runtime, &text, &report, json.as_deref(), report.passed)
        }
        Command::Criterion { dir, write } => {
            let rows = criterion::collect(&dir)?;
            let section = criterion::section(&rows, &bench::machine(), &bench::today());
            match write {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let text =
                        bench::replace_marked(&text, criterion::BEGIN, criterion::END, &section)?;
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "rewrote the criterion section of {} ({} benchmarks)",
                        path.display(),
                        rows.len()
                    );
                }
                None => println!("{section}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            confab,
            write,
            reports,
            seconds,
            idle_connections,
        } => {
            anyhow::ensure!(seconds > 0.0, "--seconds must be > 0");
            let opts = bench::BenchOptions {
                confab,
                reports,
                seconds,
                idle_connections,
            };
            let section = bench::bench(&opts)?;
            match write {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    std::fs::write(&path, bench::replace_section(&text, &section)?)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("rewrote the load generator's section of {}", path.display());
                }
                None => println!("{section}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v >= 0.0,
        "{name} must be a number of seconds ≥ 0"
    );
    Ok(Duration::from_secs_f64(v))
}

/// The end of a command that ran its own node: prints `text`, writes the
/// JSON report when asked, lets the runtime go without waiting for client
/// tasks, and exits 2 unless the run passed.
fn finish(
    runtime: tokio::runtime::Runtime,
    text: &str,
    report: &impl serde::Serialize,
    json: Option<&std::path::Path>,
    passed: bool,
) -> Result<ExitCode> {
    print!("{text}");
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn run_command(args: RunArgs) -> Result<ExitCode> {
    let profile = Profile::load(&args.profile)?;
    let scale = args.scale.unwrap_or(profile.run.scale);
    anyhow::ensure!(scale > 0.0 && scale <= 1.0, "--scale must be in (0, 1]");
    if let Some(r) = args.rate {
        anyhow::ensure!(r.is_finite() && r >= 0.0, "--rate must be ≥ 0");
    }
    if let Some(r) = args.reconnects_per_device_hour {
        anyhow::ensure!(
            r.is_finite() && (0.0..=36_000.0).contains(&r),
            "--reconnects-per-device-hour must be in 0..=36000"
        );
    }
    let duration = seconds(
        "--duration",
        args.duration.unwrap_or(profile.run.duration_s),
    )?;
    anyhow::ensure!(!duration.is_zero(), "--duration must be > 0");
    let opts = RunOptions {
        api: args.api,
        metrics: args.metrics,
        pids: args.pids,
        transport: args.transport,
        scale,
        duration,
        warmup: seconds("--warmup", args.warmup.unwrap_or(profile.run.warmup_s))?,
        rate: args.rate,
        ca: args.ca,
        drain: seconds("--drain", args.drain)?,
        sync_users: args.sync_users,
        source_ips: args.source_ips,
        quiet: args.quiet,
        seed: args.seed,
        reconnects_per_device_hour: args.reconnects_per_device_hour,
        check_history: args.check_history,
        storm_every: None,
        profile,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run::run(opts))?;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // Clients' background tasks may still hold sockets; don't wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
