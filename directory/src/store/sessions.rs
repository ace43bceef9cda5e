//! Login sessions: the refresh token of each (stored as a hash) and its
//! revocation. Access tokens are not stored at all; they carry the session
//! id and are refused once the session is revoked.

use super::{db, un, unix_now, RefreshOutcome, Result, Revocation, Store};
use crate::events::DirectoryEvent;

/// Marks a session revoked inside a transaction.
macro_rules! revoke_in_tx {
    ($tx:ident, $id:expr, $now:expr) => {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(db($now))
            .bind($id)
            .execute(&mut *$tx)
            .await?
    };
}

impl Store {
    /// Records a new session for `user_id` whose refresh token hashes to
    /// `refresh_hash` and expires at `expires_at` (Unix seconds); returns the
    /// session id.
    pub async fn create_session(
        &self,
        user_id: u64,
        refresh_hash: &str,
        expires_at: u64,
    ) -> Result<u64> {
        let now = db(unix_now());
        let (id,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO sessions (user_id, refresh_hash, created_at, refreshed_at, expires_at)
                 VALUES ($1, $2, $3, $3, $4) RETURNING id",
            )
            .bind(db(user_id))
            .bind(refresh_hash)
            .bind(now)
            .bind(db(expires_at))
            .fetch_one(pool)
            .await?
        });
        Ok(un(id))
    }

    /// Exchanges the refresh token hashing to `presented` for the one
    /// hashing to `replacement`, valid until `expires_at`.
    ///
    /// A token that was already exchanged (presented again after rotation,
    /// or twice at once) means that two parties hold it: the session is
    /// revoked and [`RefreshOutcome::Reused`] returned.
    pub async fn rotate_refresh(
        &self,
        presented: &str,
        replacement: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<RefreshOutcome> {
        let outcome = with_tx!(self, |tx, _dialect| {
            let current: Option<(i64, i64, i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, user_id, expires_at, revoked_at FROM sessions WHERE refresh_hash = $1",
            )
            .bind(presented)
            .fetch_optional(&mut *tx)
            .await?;
            match current {
                Some((id, user_id, expires, revoked)) => {
                    if revoked.is_some() || un(expires) <= now {
                        RefreshOutcome::Invalid
                    } else {
                        // Conditional on the hash, so that of two concurrent
                        // exchanges of one token exactly one wins.
                        let swapped = sqlx::query(
                            "UPDATE sessions SET previous_refresh_hash = refresh_hash,
                                 refresh_hash = $1, refreshed_at = $2, expires_at = $3
                             WHERE id = $4 AND refresh_hash = $5 AND revoked_at IS NULL",
                        )
                        .bind(replacement)
                        .bind(db(now))
                        .bind(db(expires_at))
                        .bind(id)
                        .bind(presented)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if swapped == 1 {
                            RefreshOutcome::Rotated {
                                session_id: un(id),
                                user_id: un(user_id),
                            }
                        } else {
                            revoke_in_tx!(tx, id, now);
                            RefreshOutcome::Reused {
                                session_id: un(id),
                                user_id: un(user_id),
                            }
                        }
                    }
                }
                None => {
                    let previous: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
                        "SELECT id, user_id, revoked_at FROM sessions
                         WHERE previous_refresh_hash = $1",
                    )
                    .bind(presented)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match previous {
                        Some((id, user_id, None)) => {
                            revoke_in_tx!(tx, id, now);
                            RefreshOutcome::Reused {
                                session_id: un(id),
                                user_id: un(user_id),
                            }
                        }
                        _ => RefreshOutcome::Invalid,
                    }
                }
            }
        });
        if let RefreshOutcome::Reused {
            session_id,
            user_id,
        } = outcome
        {
            tracing::warn!(session_id, user_id, "refresh token reused: session revoked");
            self.events.publish(DirectoryEvent::SessionRevoked {
                user_id,
                session_id,
            });
        }
        Ok(outcome)
    }

    /// Revokes a session (logout). Returns its user when this call revoked
    /// it, `None` when it was unknown or already revoked.
    pub async fn revoke_session(&self, session_id: u64) -> Result<Option<u64>> {
        let row: Option<(i64,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL
                 RETURNING user_id",
            )
            .bind(db(unix_now()))
            .bind(db(session_id))
            .fetch_optional(pool)
            .await?
        });
        let user = row.map(|(u,)| un(u));
        if let Some(user_id) = user {
            self.events.publish(DirectoryEvent::SessionRevoked {
                user_id,
                session_id,
            });
        }
        Ok(user)
    }

    /// Sessions revoked at or after `since` (Unix seconds), oldest first:
    /// how a node learns of revocations made by other nodes.
    pub async fn revocations_since(&self, since: u64) -> Result<Vec<Revocation>> {
        let rows: Vec<(i64, i64, i64)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, user_id, revoked_at FROM sessions
                 WHERE revoked_at IS NOT NULL AND revoked_at >= $1 ORDER BY revoked_at, id",
            )
            .bind(db(since))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, user_id, at)| Revocation {
                session_id: un(id),
                user_id: un(user_id),
                revoked_at: un(at),
            })
            .collect())
    }

    /// Whether a session exists and is neither revoked nor past its refresh
    /// expiry.
    pub async fn session_active(&self, session_id: u64, now: u64) -> Result<bool> {
        let row: Option<(i64, Option<i64>)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT expires_at, revoked_at FROM sessions WHERE id = $1")
                .bind(db(session_id))
                .fetch_optional(pool)
                .await?
        });
        Ok(matches!(row, Some((expires, None)) if un(expires) > now))
    }
}
