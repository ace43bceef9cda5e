//! Schema migrations, applied in order when the store opens.
//!
//! Each backend has its own files under `directory/migrations/<backend>/`,
//! compiled into the binary (a deployed node needs no migration files). A
//! table `confab_schema_migrations` records what has run; each migration runs
//! in its own transaction together with its record, so a failure leaves the
//! database at the previous version. On PostgreSQL an advisory lock
//! serialises nodes that start at the same time. A database migrated by a
//! newer binary is refused rather than run with a schema this one does not
//! know.
//!
//! (sqlx's own migrator needs its proc-macro crate to embed files; this is
//! the small part of it we need, without the extra compile.)

use super::{Db, Result, Store, StoreError};

/// One schema change.
pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// SQLite's migrations, oldest first.
pub(super) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_directory.sql",
        sql: include_str!("../../migrations/sqlite/0001_directory.sql"),
    },
    Migration {
        version: 2,
        name: "0002_push.sql",
        sql: include_str!("../../migrations/sqlite/0002_push.sql"),
    },
];

/// PostgreSQL's migrations, oldest first.
pub(super) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_directory.sql",
        sql: include_str!("../../migrations/postgres/0001_directory.sql"),
    },
    Migration {
        version: 2,
        name: "0002_push.sql",
        sql: include_str!("../../migrations/postgres/0002_push.sql"),
    },
];

/// Arbitrary constant naming confab's migration lock among a database's
/// advisory locks.
const PG_LOCK_KEY: i64 = 0x636f_6e66_6162; // "confab"

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS confab_schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)";

impl Store {
    /// Applies every migration the database has not seen yet; returns how
    /// many ran.
    pub(super) async fn migrate(&self) -> Result<usize> {
        let migrations = match self.db {
            Db::Sqlite(_) => SQLITE,
            Db::Postgres(_) => POSTGRES,
        };
        let known = migrations.last().map_or(0, |m| m.version);
        let mut applied = 0;
        for m in migrations {
            let ran = with_tx!(self, |tx, dialect| {
                if dialect == super::Dialect::Postgres {
                    // Held until this transaction ends: a second node
                    // starting now waits here, then sees the version recorded.
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(PG_LOCK_KEY)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::raw_sql(CREATE_TABLE).execute(&mut *tx).await?;
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM confab_schema_migrations")
                        .fetch_one(&mut *tx)
                        .await?;
                let newest = newest.unwrap_or(0);
                if newest > known {
                    return Err(StoreError::SchemaTooNew {
                        found: newest,
                        known,
                    });
                }
                if newest >= m.version {
                    false
                } else {
                    sqlx::raw_sql(m.sql)
                        .execute(&mut *tx)
                        .await
                        .map_err(|source| StoreError::Migration {
                            version: m.version,
                            name: m.name,
                            source,
                        })?;
                    sqlx::query(
                        "INSERT INTO confab_schema_migrations (version, name, applied_at)
                         VALUES ($1, $2, $3)",
                    )
                    .bind(m.version)
                    .bind(m.name)
                    .bind(super::db(super::unix_now()))
                    .execute(&mut *tx)
                    .await?;
                    true
                }
            });
            if ran {
                tracing::info!(backend = ?self.backend(), version = m.version, name = m.name,
                               "applied migration");
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// The newest migration version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT MAX(version) FROM confab_schema_migrations")
                .fetch_one(pool)
                .await?
        });
        Ok(v.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every file in a backend's migration folder is compiled in, in order,
    /// so adding a file without listing it here fails the build's tests.
    fn check(dir: &str, list: &[Migration]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let files: BTreeSet<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        let listed: BTreeSet<String> = list.iter().map(|m| m.name.to_owned()).collect();
        assert_eq!(
            files, listed,
            "{dir}: migration files and the compiled-in list differ"
        );
        for (i, m) in list.iter().enumerate() {
            assert_eq!(
                m.version,
                i as i64 + 1,
                "{}: versions are 1, 2, 3, …",
                m.name
            );
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn every_migration_file_is_compiled_in() {
        check("sqlite", SQLITE);
        check("postgres", POSTGRES);
        assert_eq!(
            SQLITE.len(),
            POSTGRES.len(),
            "both backends are at the same version"
        );
    }

    #[tokio::test]
    async fn migrations_run_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let events = crate::events::EventBus::default();
        let store = Store::open(dir.path(), None, events.clone()).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SQLITE.len() as i64);
        assert_eq!(
            store.migrate().await.unwrap(),
            0,
            "a second run applies nothing"
        );
        with_pool!(store, |pool| {
            sqlx::query("INSERT INTO confab_schema_migrations VALUES (999, 'future', 0)")
                .execute(pool)
                .await
                .unwrap();
        });
        store.close().await;
        let e = Store::open(dir.path(), None, events).await.unwrap_err();
        assert!(
            matches!(e, StoreError::SchemaTooNew { found: 999, .. }),
            "{e}"
        );
    }
}
