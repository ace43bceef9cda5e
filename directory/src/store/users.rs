//! Accounts: creation, credentials lookup, profiles and search.

use super::{db, is_unique_violation, placeholders, un, unix_now, Result, Store, StoreError, User};

type UserRow = (i64, String, String, i64);

fn user((id, username, display_name, created_at): UserRow) -> User {
    User {
        id: un(id),
        username,
        display_name,
        created_at: un(created_at),
    }
}

/// Sorts after every character a username may contain, so that
/// `[prefix, prefix + PREFIX_END)` is exactly the usernames with that prefix.
const PREFIX_END: char = '\u{7f}';

impl Store {
    /// Creates an account. The username must be unused
    /// ([`StoreError::UsernameTaken`] otherwise); the caller validates it
    /// and hashes the password.
    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
    ) -> Result<User> {
        let now = db(unix_now());
        let row: std::result::Result<(i64,), sqlx::Error> = with_pool!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO users (username, display_name, password_hash, created_at)
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(username)
            .bind(display_name)
            .bind(password_hash)
            .bind(now)
            .fetch_one(pool)
            .await
        });
        match row {
            Ok((id,)) => Ok(User {
                id: un(id),
                username: username.to_owned(),
                display_name: display_name.to_owned(),
                created_at: un(now),
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// The id and password hash of the account with this username.
    pub async fn credentials(&self, username: &str) -> Result<Option<(u64, String)>> {
        let row: Option<(i64, String)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT id, password_hash FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id, hash)| (un(id), hash)))
    }

    /// A user's profile.
    pub async fn user(&self, id: u64) -> Result<Option<User>> {
        let row: Option<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT id, username, display_name, created_at FROM users WHERE id = $1")
                .bind(db(id))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(user))
    }

    /// Whether a user with this id exists.
    pub async fn user_exists(&self, id: u64) -> Result<bool> {
        let row: Option<(i64,)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT id FROM users WHERE id = $1")
                .bind(db(id))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some())
    }

    /// Changes a user's display name; `None` when the user does not exist.
    pub async fn set_display_name(&self, id: u64, display_name: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE users SET display_name = $1 WHERE id = $2
                 RETURNING id, username, display_name, created_at",
            )
            .bind(display_name)
            .bind(db(id))
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(user))
    }

    /// Users whose username starts with `prefix`, in username order, at most
    /// `limit`. The prefix must use the username alphabet (the API checks),
    /// which makes this a range scan of the username index.
    pub async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>> {
        let end = format!("{prefix}{PREFIX_END}");
        let rows: Vec<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, username, display_name, created_at FROM users
                 WHERE username >= $1 AND username < $2 ORDER BY username LIMIT $3",
            )
            .bind(prefix)
            .bind(&end)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(user).collect())
    }

    /// Of `ids`, those that name no user (in the order given).
    pub(super) async fn missing_users(&self, ids: &[u64]) -> Result<Vec<u64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM users WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let found: Vec<i64> = with_pool!(self, |pool| {
            let mut q = sqlx::query_scalar(&sql);
            for id in ids {
                q = q.bind(db(*id));
            }
            q.fetch_all(pool).await?
        });
        let found: std::collections::HashSet<u64> = found.into_iter().map(un).collect();
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !found.contains(id))
            .collect())
    }
}
