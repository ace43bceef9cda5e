//! `confab`: the server binary. `confab serve` starts every role of a node
//! on embedded defaults; `confab check-config FILE` validates a config
//! file; `confab chat` is the terminal client (crate confab-chat). A bad
//! flag or config value is a one-line error and exit code 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use confab_storage::SyncPolicy;

use confab::config::{self, Config};
use confab::Node;

/// Exit code for a refused command line or configuration.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "confab",
    version,
    about = "confab chat server",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every role of a node (API, gateway, push, metrics).
    Serve(Box<ServeArgs>),
    /// Validate a config file and print the effective configuration.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Write a backup of a node's data: the running node's, through its
    /// admin socket, or a stopped node's data directory.
    Backup(BackupArgs),
    /// Restore a backup into an empty data directory (no node running on it).
    Restore(RestoreArgs),
    /// Chat in the terminal: log in, list channels, read and send.
    Chat(ChatArgs),
}

/// `confab chat`. The password comes from the login screen or from an
/// environment variable, never from a flag (flags show in `ps`).
#[derive(Debug, Args)]
struct ChatArgs {
    /// The username (prefilled on the login screen).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Read the password from this environment variable and log in at once
    /// (with --user, whose password it is).
    #[arg(long, value_name = "VAR", requires = "user")]
    password_env: Option<String>,
    /// The HTTP API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// How to reach the gateway: quic, ws or wss.
    #[arg(long, value_name = "TRANSPORT", default_value = "quic")]
    transport: confab_chat::TransportChoice,
    /// A PEM certificate to trust for quic and wss (default: the data
    /// dir's generated tls/self-signed.crt when it exists).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The node's data directory, for its generated certificate.
    #[arg(
        long,
        env = "CONFAB_DATA_DIR",
        value_name = "DIR",
        default_value = "./confab-data"
    )]
    data_dir: PathBuf,
    /// Create the account (start on the signup form).
    #[arg(long)]
    signup: bool,
    /// Where the per-user state (device id, inbox cursor) is kept
    /// (default: $XDG_STATE_HOME/confab or ~/.local/state/confab).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl ChatArgs {
    fn options(self) -> anyhow::Result<confab_chat::Options> {
        let mut o = confab_chat::Options::new();
        if let Some(var) = &self.password_env {
            let password = std::env::var(var)
                .map_err(|_| anyhow::anyhow!("--password-env: {var} is not set"))?;
            o.password = Some(password);
        }
        o.user = self.user;
        o.api = self.api;
        o.transport = self.transport;
        o.ca = self.ca;
        o.data_dir = self.data_dir;
        o.signup = self.signup;
        if let Some(dir) = self.state_dir {
            o.state_dir = dir;
        }
        Ok(o)
    }
}

/// Which node's data: its config file and data directory.
#[derive(Debug, Args)]
struct DataArgs {
    /// The node's TOML config file (for its data directory and, with a
    /// stopped node on PostgreSQL, its database URL).
    #[arg(long, env = "CONFAB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The node's data directory (overrides the config file's).
    #[arg(long, env = "CONFAB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    fn config(&self) -> Result<Config, config::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            c.data_dir = dir.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Where the backup goes: a directory that does not exist or is empty.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The backup (a directory written by `confab backup`).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

/// Flags override `CONFAB_*` environment variables, which override the file.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "CONFAB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (RocksDB log, SQLite, generated keys).
    #[arg(long, env = "CONFAB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API listen address.
    #[arg(long, env = "CONFAB_API_ADDR", value_name = "ADDR")]
    api_addr: Option<SocketAddr>,
    /// WebSocket listen address.
    #[arg(long, env = "CONFAB_WS_ADDR", value_name = "ADDR")]
    ws_addr: Option<SocketAddr>,
    /// QUIC listen address (UDP).
    #[arg(long, env = "CONFAB_QUIC_ADDR", value_name = "ADDR")]
    quic_addr: Option<SocketAddr>,
    /// Prometheus metrics listen address.
    #[arg(long, env = "CONFAB_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Storage durability: batch, interval:<ms> or none.
    #[arg(long, env = "CONFAB_STORAGE_SYNC", value_name = "POLICY")]
    storage_sync: Option<SyncPolicy>,
    /// Storage writer threads.
    #[arg(long, env = "CONFAB_STORAGE_WRITERS", value_name = "N")]
    storage_writers: Option<usize>,
    /// TLS certificate chain (PEM) for wss:// and QUIC; unset, a
    /// self-signed one is generated into the data dir.
    #[arg(long, env = "CONFAB_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert.
    #[arg(long, env = "CONFAB_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Relational store: postgres://… or sqlite:PATH (default: SQLite in the
    /// data dir).
    #[arg(
        long,
        env = "CONFAB_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Run the push service (true/false); providers are configured in the
    /// file's `[push]` section.
    #[arg(long, env = "CONFAB_PUSH_ENABLED", value_name = "BOOL")]
    push_enabled: Option<bool>,
    /// Join the cluster on these NATS servers (repeat the flag, or
    /// comma-separate); docs/cluster.md.
    #[arg(
        long,
        env = "CONFAB_CLUSTER",
        value_name = "NATS_URL",
        value_delimiter = ','
    )]
    cluster: Vec<String>,
}

impl ServeArgs {
    fn config(&self) -> Result<Config, config::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = self.api_addr {
            c.api.addr = v;
        }
        if let Some(v) = self.ws_addr {
            c.gateway.ws_addr = v;
        }
        if let Some(v) = self.quic_addr {
            c.gateway.quic_addr = v;
        }
        if let Some(v) = self.metrics_addr {
            c.metrics.addr = v;
        }
        if let Some(v) = self.storage_sync {
            c.storage.sync = v;
        }
        if let Some(v) = self.storage_writers {
            c.storage.writers = v;
        }
        if let Some(v) = &self.database_url {
            c.api.database_url = Some(v.clone());
        }
        if !self.cluster.is_empty() {
            c.cluster.nats = self.cluster.clone();
        }
        if let Some(v) = &self.tls_cert {
            c.tls.cert_path = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            c.tls.key_path = Some(v.clone());
        }
        // The token key comes from the file or the environment only, never
        // a flag, so that it does not show in the process list.
        if let Ok(v) = std::env::var("CONFAB_TOKEN_SECRET") {
            if !v.is_empty() {
                c.api.token_secret = Some(v);
            }
        }
        if let Some(v) = self.push_enabled {
            c.push.enabled = v;
        }
        // Likewise the webhook signing key (it completes a `[push.webhook]`
        // section of the file).
        if let Ok(v) = std::env::var("CONFAB_PUSH_WEBHOOK_SECRET") {
            if let (Some(hook), false) = (c.push.webhook.as_mut(), v.is_empty()) {
                hook.secret = v;
            }
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            eprintln!("{first}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig { file } => match Config::from_file(&file).and_then(|c| {
            c.validate()?;
            Ok(c)
        }) {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => refused(e),
        },
        Command::Backup(args) => match args.data.config() {
            Ok(config) => report(backup(&config, &args.to)),
            Err(e) => refused(e),
        },
        Command::Restore(args) => match args.data.config() {
            Ok(config) => report(restore(&config, &args.from)),
            Err(e) => refused(e),
        },
        Command::Chat(args) => match args.options() {
            Ok(options) => match confab_chat::run(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => refused(e),
        },
        Command::Serve(args) => {
            let config = match args.config() {
                Ok(c) => c,
                Err(e) => return refused(e),
            };
            init_tracing();
            match Node::start(config).and_then(Node::run_until_signal) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A backup by the node running on the data directory, or of the data
/// directory itself when none runs.
fn backup(config: &Config, to: &Path) -> anyhow::Result<String> {
    let to = std::path::absolute(to)?;
    match confab::admin::request_backup(&config.data_dir, &to)? {
        Some(Ok(done)) => Ok(format!(
            "backup of the running node in {}: {done}",
            to.display()
        )),
        Some(Err(why)) => Err(anyhow::anyhow!("the node refused: {why}")),
        None => {
            let m = confab::backup::offline(config, &to)?;
            Ok(format!(
                "backup of the stopped node's data in {}: {}",
                to.display(),
                confab::admin::summary(&m)
            ))
        }
    }
}

/// The backup in `from` restored into the configured data directory.
fn restore(config: &Config, from: &Path) -> anyhow::Result<String> {
    let m = confab::backup::restore(from, &config.data_dir)?;
    Ok(format!(
        "restored into {}: {}",
        config.data_dir.display(),
        confab::admin::summary(&m)
    ))
}

/// A refused command line or configuration: one line, exit code 2.
fn refused(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_USAGE)
}

/// Prints what a command did, or why it failed (exit code 1).
fn report(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONFAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
