//! The node's admin socket: a Unix socket in the data directory, mode
//! 0600, through which `confab backup` asks the running node for a
//! backup (only the node can checkpoint its own log while it writes).
//! Being a file beside the data it guards, it is reachable by exactly
//! those who may read that data, and never from the network.
//!
//! One request per connection, one line each way:
//! `backup <absolute directory>` is answered `ok <what the backup holds>`
//! or `error <why>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use confab_directory::store::Store;
use confab_storage::RocksLog;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::backup;
use crate::service::{stopped, Service, ServiceFuture, ShutdownWatch};

/// The socket's file name in the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";
/// A request line is a command and a path.
const MAX_REQUEST: u64 = 8 * 1024;
/// What is read past a refused request before the connection is closed.
const MAX_DRAIN: u64 = 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The admin socket's service.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
    state: Arc<Admin>,
}

struct Admin {
    log: Arc<RocksLog>,
    store: Store,
    data_dir: PathBuf,
    /// One backup at a time.
    busy: Mutex<()>,
}

impl AdminSocket {
    /// Binds `<data_dir>/admin.sock`, replacing a stale one (this node
    /// holds the log's lock, so no other node uses the directory).
    pub fn bind(data_dir: &Path, log: Arc<RocksLog>, store: Store) -> anyhow::Result<AdminSocket> {
        let path = data_dir.join(ADMIN_SOCKET);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        Ok(AdminSocket {
            listener,
            path,
            state: Arc::new(Admin {
                log,
                store,
                data_dir: data_dir.to_owned(),
                busy: Mutex::new(()),
            }),
        })
    }
}

impl Service for AdminSocket {
    fn name(&self) -> &'static str {
        "admin"
    }

    fn run(self: Box<Self>, shutdown: ShutdownWatch) -> ServiceFuture {
        Box::pin(async move {
            let AdminSocket {
                listener,
                path,
                state,
            } = *self;
            let accept = async {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(serve(stream, state.clone()));
                        }
                        Err(e) => warn!("admin socket: {e}"),
                    }
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stopped(shutdown) => {}
            }
            let _ = std::fs::remove_file(&path);
            Ok(())
        })
    }
}

async fn serve(stream: UnixStream, admin: Arc<Admin>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut request = BufReader::new(read.take(MAX_REQUEST));
    let answer = match request.read_line(&mut line).await {
        Ok(_) if !line.ends_with('\n') => "error the request must be one line\n".to_owned(),
        Ok(_) => answer(&admin, line.trim_end()).await,
        Err(e) => format!("error reading the request: {e}\n"),
    };
    let _ = write.write_all(answer.as_bytes()).await;
    let _ = write.shutdown().await;
    // A Unix socket closed with bytes still unread resets its peer, whose
    // read of the answer would then fail: read what the asker still sends
    // (an oversized request's tail) until it closes, within bounds.
    let mut rest = request.into_inner().into_inner().take(MAX_DRAIN);
    let _ = tokio::time::timeout(
        DRAIN_TIME,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}

async fn answer(admin: &Admin, request: &str) -> String {
    let Some(to) = request.strip_prefix("backup ") else {
        return format!("error unknown request {request:?} (expected: backup <directory>)\n");
    };
    let to = Path::new(to);
    if !to.is_absolute() {
        return "error the backup directory must be an absolute path\n".to_owned();
    }
    let Ok(_one) = admin.busy.try_lock() else {
        return "error a backup is already running\n".to_owned();
    };
    match backup::create(admin.log.clone(), &admin.store, &admin.data_dir, to).await {
        Ok(m) => {
            info!(to = %to.display(), directory = m.directory.is_some(), "backup written");
            format!("ok {}\n", summary(&m))
        }
        Err(e) => {
            warn!(to = %to.display(), "backup failed: {e:#}");
            format!("error {e:#}\n")
        }
    }
}

/// One line saying what a backup holds.
pub fn summary(m: &backup::Manifest) -> String {
    let directory = match &m.directory {
        Some(file) => file.as_str(),
        None => "not included (PostgreSQL: back it up with pg_dump now)",
    };
    format!(
        "log {}, directory store {}, token key {}, TLS pair {}",
        m.log,
        directory,
        if m.token_key.is_some() {
            "copied"
        } else {
            "none (configured outside the data directory)"
        },
        if m.tls.is_some() {
            "copied"
        } else {
            "none generated"
        }
    )
}

/// Asks the node running on `data_dir` for a backup into `to` (absolute).
/// `Ok(None)` when no node answers there (none runs); otherwise the
/// node's answer: what the backup holds, or why it failed.
pub fn request_backup(
    data_dir: &Path,
    to: &Path,
) -> anyhow::Result<Option<Result<String, String>>> {
    use std::io::{Read, Write};
    let path = data_dir.join(ADMIN_SOCKET);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    // A path too long for a socket: the node has none.
                    | std::io::ErrorKind::InvalidInput
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    let to = to
        .to_str()
        .context("the backup directory's path is not UTF-8")?;
    stream.write_all(format!("backup {to}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .context("reading the node's answer")?;
    let reply = reply.trim_end();
    Ok(Some(match reply.strip_prefix("ok ") {
        Some(done) => Ok(done.to_owned()),
        None => Err(reply.strip_prefix("error ").unwrap_or(reply).to_owned()),
    }))
}
