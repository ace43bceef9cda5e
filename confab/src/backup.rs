//! Backups of a node's data directory, taken while it serves, and their
//! restore into a fresh one.
//!
//! A backup is a directory: the message log as a RocksDB checkpoint
//! (`log/`), the directory store as one consistent SQLite file, the
//! token-signing key, the generated TLS pair and the QUIC reset key, and a
//! manifest written last (a directory without one is not a backup). The
//! log is copied first and the directory store after it, so everything the
//! copied log names (users, channels, members) is in the copied store: a
//! message never refers to a channel the restored node does not know. The
//! store may hold a little more (a user who signed up meanwhile), which is
//! harmless. With PostgreSQL as the directory store only the log and the
//! keys are copied; `pg_dump` after the backup keeps the same order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use confab_directory::auth::TOKEN_KEY_FILE;
use confab_directory::store::{Store, SQLITE_FILE};
use confab_gateway::transport::quic::reset_key::RESET_KEY_FILE;
use confab_storage::RocksLog;
use serde::{Deserialize, Serialize};

/// The manifest's file name in a backup.
pub const MANIFEST: &str = "confab-backup.toml";
/// The log's directory, in a data directory and in a backup.
pub const LOG_DIR: &str = "log";
/// The generated TLS pair's directory.
const TLS_DIR: &str = "tls";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The confab that wrote it.
    pub confab_version: String,
    /// When the log was copied, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// The log's checkpoint, relative to the backup.
    pub log: String,
    /// The directory store's SQLite file, when it was copied (not with
    /// PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// The token-signing key, when the node had generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key: Option<String>,
    /// The generated TLS pair, when the node had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The QUIC stateless reset key: a node restored on the same address
    /// resets the connections of the process it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_reset_key: Option<String>,
}

/// Writes a backup of the node whose log, store and data directory these
/// are into `to`, which must be absent or empty.
pub async fn create(
    log: Arc<RocksLog>,
    store: &Store,
    data_dir: &Path,
    to: &Path,
) -> anyhow::Result<Manifest> {
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        bail!("the backup directory {} is not empty", to.display());
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let checkpoint = to.join(LOG_DIR);
    tokio::task::spawn_blocking(move || log.checkpoint(&checkpoint))
        .await
        .context("the checkpoint task")?
        .context("checkpointing the message log")?;
    let directory = store
        .snapshot_into(&to.join(SQLITE_FILE))
        .await
        .context("copying the directory store")?
        .then(|| SQLITE_FILE.to_owned());
    let token_key = copy_if_present(&data_dir.join(TOKEN_KEY_FILE), &to.join(TOKEN_KEY_FILE))?
        .then(|| TOKEN_KEY_FILE.to_owned());
    let tls =
        copy_if_present(&data_dir.join(TLS_DIR), &to.join(TLS_DIR))?.then(|| TLS_DIR.to_owned());
    let quic_reset_key = copy_if_present(&data_dir.join(RESET_KEY_FILE), &to.join(RESET_KEY_FILE))?
        .then(|| RESET_KEY_FILE.to_owned());
    let manifest = Manifest {
        confab_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_unix_ms,
        log: LOG_DIR.to_owned(),
        directory,
        token_key,
        tls,
        quic_reset_key,
    };
    write_manifest(to, &manifest)?;
    Ok(manifest)
}

/// Reads the manifest of the backup in `from`.
pub fn read_manifest(from: &Path) -> anyhow::Result<Manifest> {
    let path = from.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a confab backup (no readable {MANIFEST})",
            from.display()
        )
    })?;
    toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

/// Restores the backup in `from` into `data_dir`, which must not hold a
/// node's data yet. The node must not be running on `data_dir`.
pub fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(from)?;
    for name in [LOG_DIR, SQLITE_FILE, TOKEN_KEY_FILE] {
        if data_dir.join(name).exists() {
            bail!(
                "{} already holds a node's data ({name}); restore into an empty data directory",
                data_dir.display()
            );
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let parts = [
        Some(&manifest.log),
        manifest.directory.as_ref(),
        manifest.token_key.as_ref(),
        manifest.tls.as_ref(),
        manifest.quic_reset_key.as_ref(),
    ];
    for part in parts.into_iter().flatten() {
        let (src, dst) = (from.join(part), data_dir.join(part));
        if !src.exists() {
            bail!("the backup lacks {part}, which its manifest lists");
        }
        copy_tree(&src, &dst).with_context(|| format!("restoring {part}"))?;
    }
    Ok(manifest)
}

fn write_manifest(to: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let text = toml::to_string(manifest).context("encoding the manifest")?;
    let tmp = to.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, to.join(MANIFEST))?;
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// Copies `src` (a file or a directory tree) to `dst` when it exists.
fn copy_if_present(src: &Path, dst: &Path) -> anyhow::Result<bool> {
    if !src.exists() {
        return Ok(false);
    }
    copy_tree(src, dst).with_context(|| format!("copying {}", src.display()))?;
    Ok(true)
}

/// Copies a file (keeping its permissions: the key stays 0600) or a
/// directory tree, syncing what it wrote.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst)?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(src)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            let name = entry.file_name().expect("a directory entry has a name");
            copy_tree(&entry, &dst.join(name))?;
        }
        std::fs::File::open(dst)?.sync_all()
    } else {
        std::fs::copy(src, dst)?;
        std::fs::File::open(dst)?.sync_all()
    }
}

/// A backup of a stopped node's data: the log and the directory store
/// opened here, as the node would open them.
pub fn offline(config: &crate::config::Config, to: &Path) -> anyhow::Result<Manifest> {
    let log_dir = config.data_dir.join(LOG_DIR);
    if !log_dir.exists() {
        bail!("{} holds no message log", config.data_dir.display());
    }
    let log =
        RocksLog::open(&log_dir, confab_storage::LogConfig::default()).with_context(|| {
            format!(
                "opening {} (is a node running there without its admin socket?)",
                log_dir.display()
            )
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(
            &config.data_dir,
            config.api.database_url.as_deref(),
            confab_directory::events::EventBus::default(),
        )
        .await
        .context("opening the directory store")?;
        let manifest = create(Arc::new(log), &store, &config.data_dir, to).await;
        store.close().await;
        manifest
    })
}
