//! The relational store: users, sessions, devices, friendships, channels and
//! their members, through `sqlx` on either of two backends.
//!
//! * **SQLite** (default): one file `confab.sqlite3` in the data directory,
//!   WAL mode, so a single node needs no database server.
//! * **PostgreSQL** when the configured URL starts with `postgres://` (or
//!   `postgresql://`), so that several stateless API nodes share one
//!   directory.
//!
//! Each backend has its own migrations (`directory/migrations/<backend>/`),
//! applied in order when the store opens. Every query is written once with
//! `$N` placeholders (which both drivers accept) and compiled once per
//! backend by the `with_pool!`/`with_tx!` macros below, so the compiler
//! checks each against both drivers' types and the one test suite runs it on
//! both.
//!
//! The store is the source of truth for the directory and publishes a
//! [`DirectoryEvent`](crate::events::DirectoryEvent) on its
//! [`EventBus`] after each committed change, so that caches (the gateway's)
//! hear of every change whoever made it.
//!
//! Runtime note: PostgreSQL connections are sockets registered with the
//! tokio runtime that opened them; call the store from that runtime (the
//! API's), e.g. through `Handle::spawn`, not from another runtime. SQLite
//! connections run on their own threads and have no such restriction.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::events::EventBus;

/// Runs `$body` with `$pool` bound to the backend's concrete pool. The body
/// is compiled once per backend.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx` (use `&mut *$tx`
/// as the executor) and commits it when the body yields a value; an early
/// return (`?`) drops the transaction, which rolls it back. `$dialect`
/// names the backend for the few statements that differ.
///
/// SQLite transactions start with `BEGIN IMMEDIATE`: a deferred transaction
/// that reads and then writes fails with `SQLITE_BUSY` (no retry) when
/// another connection committed in between, whereas an immediate one waits
/// for the write lock up front (bounded by the busy timeout).
macro_rules! with_tx {
    ($store:expr, |$tx:ident, $dialect:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                #[allow(unused_variables)]
                let $dialect = $crate::store::Dialect::Sqlite;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                #[allow(unused_variables)]
                let $dialect = $crate::store::Dialect::Postgres;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

mod channels;
mod devices;
mod friends;
mod migrate;
mod model;
mod mute;
mod scratch;
mod sessions;
mod users;

pub use model::{
    Channel, ChannelKind, ChannelSummary, Device, FriendList, FriendState, Member, Membership,
    Platform, RefreshOutcome, Revocation, Role, UnknownValue, User,
};
pub use scratch::scratch_schema;

/// Largest group, its owner included: the message log fans a message out
/// to at most this many recipients.
pub const MAX_GROUP_MEMBERS: usize = confab_types::MAX_GROUP_MEMBERS;

/// The SQLite file's name inside the data directory.
pub const SQLITE_FILE: &str = "confab.sqlite3";

/// Why a store operation failed. The variants after `SchemaTooNew` are
/// refusals of the request itself, which the API maps to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed; the database is left at the previous version.
    #[error("migration {version} ({name}): {source}")]
    Migration {
        /// The migration's version.
        version: i64,
        /// Its file name.
        name: &'static str,
        /// What the database said.
        source: sqlx::Error,
    },
    /// The database was migrated by a newer confab.
    #[error("database schema version {found} is newer than this binary's {known}")]
    SchemaTooNew {
        /// The database's version.
        found: i64,
        /// The newest version this binary knows.
        known: i64,
    },
    /// The URL names no supported backend.
    #[error("unsupported database URL (expected sqlite:… or postgres://…): {0}")]
    UnsupportedUrl(String),
    /// A stored enum value is not one of ours.
    #[error("corrupt row: {0}")]
    Corrupt(#[from] UnknownValue),
    /// The username belongs to another account.
    #[error("username is taken")]
    UsernameTaken,
    /// No user has this id.
    #[error("unknown user {0}")]
    UnknownUser(u64),
    /// No channel has this id.
    #[error("unknown channel {0}")]
    UnknownChannel(u64),
    /// The acting user is not a member of the channel.
    #[error("not a member of channel {0}")]
    NotMember(u64),
    /// The target user is not a member of the channel.
    #[error("user {user} is not a member of channel {channel}")]
    UnknownMember {
        /// The channel.
        channel: u64,
        /// The user.
        user: u64,
    },
    /// The acting member's role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The operation only applies to groups.
    #[error("channel {0} is a DM, not a group")]
    NotAGroup(u64),
    /// The group would exceed [`MAX_GROUP_MEMBERS`].
    #[error("a group has at most {max} members (owner included); this would make {would_have}")]
    GroupFull {
        /// The limit.
        max: usize,
        /// The size the request asked for.
        would_have: usize,
    },
    /// An argument the store refuses whatever the data (e.g. a DM with
    /// oneself).
    #[error("{0}")]
    InvalidArgument(&'static str),
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The backend, for the few statements whose SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The relational store; cheap to clone (a connection pool handle).
#[derive(Clone)]
pub struct Store {
    db: Db,
    events: EventBus,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// How long a connection waits for SQLite's write lock, or for a free
/// pooled connection, before the operation fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens the node's store: `database_url` when given, else the SQLite
    /// file [`SQLITE_FILE`] in `data_dir` (created when missing). Runs the
    /// migrations.
    pub async fn open(
        data_dir: &Path,
        database_url: Option<&str>,
        events: EventBus,
    ) -> Result<Store> {
        match database_url {
            Some(url) => Store::connect(url, events).await,
            None => {
                let options = SqliteConnectOptions::new().filename(data_dir.join(SQLITE_FILE));
                Store::open_sqlite(options, events).await
            }
        }
    }

    /// Connects to `sqlite:PATH` / `sqlite://PATH` or `postgres://…` /
    /// `postgresql://…` and runs the migrations.
    pub async fn connect(url: &str, events: EventBus) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(BUSY_TIMEOUT)
                .connect_with(options)
                .await?;
            let store = Store {
                db: Db::Postgres(pool),
                events,
            };
            store.migrate().await?;
            Ok(store)
        } else if url.starts_with("sqlite:") {
            Store::open_sqlite(SqliteConnectOptions::from_str(url)?, events).await
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    async fn open_sqlite(options: SqliteConnectOptions, events: EventBus) -> Result<Store> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged signup or membership change survives a
            // power loss; directory writes are rare enough not to mind the
            // extra fsync.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(BUSY_TIMEOUT)
            // A connection here is a file in this process, not a socket
            // that can go stale: sqlx's ping before every acquire would be
            // one more round trip to the connection's worker thread per
            // query, for nothing.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let store = Store {
            db: Db::Sqlite(pool),
            events,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The bus on which this store publishes every committed change.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Writes a consistent copy of an SQLite store into the new file
    /// `path` while the store keeps serving (`VACUUM INTO`: one read
    /// transaction, so the copy is the database at one instant), and
    /// returns true. A PostgreSQL store is not copied (false): its own
    /// tools (`pg_dump`) back it up.
    pub async fn snapshot_into(&self, path: &Path) -> Result<bool> {
        match &self.db {
            Db::Sqlite(pool) => {
                let path = path
                    .to_str()
                    .ok_or(StoreError::InvalidArgument("the backup path is not UTF-8"))?;
                sqlx::query("VACUUM INTO ?")
                    .bind(path)
                    .execute(pool)
                    .await?;
                Ok(true)
            }
            Db::Postgres(_) => Ok(false),
        }
    }

    /// Closes every pooled connection (waits for those in use).
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}://{}:***{}",
                    &url[..scheme],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Now in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `count` numbered SQL parameters from `$first` on, comma-separated, for
/// an `IN (...)` list (both backends number their parameters so).
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An id or time as stored (BIGINT). Ids are handed out by the database and
/// are positive; a caller's id above `i64::MAX` wraps to a negative value,
/// which matches no row, so it reads as unknown.
pub(crate) fn db(v: u64) -> i64 {
    v as i64
}

/// A stored id or time back to the API's unsigned type.
pub(crate) fn un(v: i64) -> u64 {
    v.max(0) as u64
}

/// The two users of an unordered pair, smaller id first.
pub(crate) fn pair(a: u64, b: u64) -> (i64, i64) {
    if a < b {
        (db(a), db(b))
    } else {
        (db(b), db(a))
    }
}

/// Whether a failed statement broke a unique constraint.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("mysql://u:secret@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact("nonsense"), "nonsense");
    }

    #[test]
    fn pairs_are_unordered_and_ids_round_trip() {
        assert_eq!(pair(7, 3), pair(3, 7));
        assert_eq!(pair(7, 3), (3, 7));
        assert_eq!(un(db(42)), 42);
        assert!(db(u64::MAX) < 0);
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused_without_the_password() {
        let e = Store::connect("mysql://u:pw@localhost/x", EventBus::default())
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::UnsupportedUrl(ref u) if !u.contains("pw")),
            "{e}"
        );
    }
}
