//! Per-member mute of a channel: a muted channel's messages still arrive
//! on connected devices, but never wake a phone.

use super::{db, Result, Store};

impl Store {
    /// Mutes or unmutes `channel_id` for `user`; false when `user` is not a
    /// member (nothing changes then).
    pub async fn set_muted(&self, channel_id: u64, user: u64, muted: bool) -> Result<bool> {
        let changed = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE channel_members SET muted = $3 WHERE channel_id = $1 AND user_id = $2",
            )
            .bind(db(channel_id))
            .bind(db(user))
            .bind(i64::from(muted))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed > 0)
    }

    /// Whether `user` muted `channel_id` (false for a non-member).
    pub async fn is_muted(&self, channel_id: u64, user: u64) -> Result<bool> {
        let row: Option<(i64,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT muted FROM channel_members WHERE channel_id = $1 AND user_id = $2",
            )
            .bind(db(channel_id))
            .bind(db(user))
            .fetch_optional(pool)
            .await?
        });
        Ok(row.is_some_and(|(m,)| m != 0))
    }
}
