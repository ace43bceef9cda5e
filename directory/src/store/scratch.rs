//! Scratch schemas on a shared PostgreSQL server: each test (or each
//! short-lived node of a demo) gets an empty schema of its own on one
//! server, selected through the connection URL, so that runs never see
//! each other's rows. Schemas older than an hour are swept when the first
//! one of a process is made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

use super::StoreError;

static SEQ: AtomicU64 = AtomicU64::new(0);
static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Creates a fresh, empty schema on the server at `base` and returns the
/// URL that selects it.
pub async fn scratch_schema(base: &str) -> Result<String, StoreError> {
    let mut admin = sqlx::PgConnection::connect(base).await?;
    SWEPT
        .get_or_try_init(|| async {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'confab_t%'",
            )
            .fetch_all(&mut admin)
            .await?;
            let cutoff = now().saturating_sub(3600);
            for name in names {
                let born: Option<u64> = name.split('_').nth(2).and_then(|t| t.parse().ok());
                if born.is_some_and(|b| b < cutoff) {
                    let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut admin)
                        .await;
                }
            }
            Ok::<(), sqlx::Error>(())
        })
        .await?;
    let schema = format!(
        "confab_t_{}_{}_{}",
        now(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}
