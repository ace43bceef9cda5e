//! Devices and their push tokens, for the push service and for the
//! `device_id` a client presents to the gateway.

use super::{db, un, unix_now, Device, Platform, Result, Store};
use crate::events::DirectoryEvent;

type DeviceRow = (i64, i64, String, String, i64, Option<i64>);

fn device(
    (id, user_id, platform, push_token, created_at, push_invalid_at): DeviceRow,
) -> Result<Device> {
    Ok(Device {
        id: un(id),
        user_id: un(user_id),
        platform: platform.parse()?,
        push_token,
        created_at: un(created_at),
        push_invalid_at: push_invalid_at.map(un),
    })
}

const COLUMNS: &str = "id, user_id, platform, push_token, created_at, push_invalid_at";

impl Store {
    /// Registers a device of `user_id` with its push token; idempotent for
    /// the same user and token. A token is one app installation, so a token
    /// registered by another user (someone else logged in on that phone)
    /// moves to this user under a new device id.
    pub async fn register_device(
        &self,
        user_id: u64,
        platform: Platform,
        push_token: &str,
    ) -> Result<Device> {
        let now = db(unix_now());
        let (dev, previous_owner) = with_tx!(self, |tx, _dialect| {
            let existing: Option<DeviceRow> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM devices WHERE platform = $1 AND push_token = $2"
            ))
            .bind(platform.as_str())
            .bind(push_token)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                // Registered again by its owner: the app has a working token
                // again, even if the provider once reported it dead.
                Some(row) if un(row.1) == user_id && row.5.is_some() => {
                    let row: DeviceRow = sqlx::query_as(&format!(
                        "UPDATE devices SET push_invalid_at = NULL WHERE id = $1 RETURNING {COLUMNS}"
                    ))
                    .bind(row.0)
                    .fetch_one(&mut *tx)
                    .await?;
                    (device(row)?, None)
                }
                Some(row) if un(row.1) == user_id => (device(row)?, None),
                other => {
                    let previous_owner = other.map(|row| un(row.1));
                    if previous_owner.is_some() {
                        sqlx::query("DELETE FROM devices WHERE platform = $1 AND push_token = $2")
                            .bind(platform.as_str())
                            .bind(push_token)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let row: DeviceRow = sqlx::query_as(&format!(
                        "INSERT INTO devices (user_id, platform, push_token, created_at)
                         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
                    ))
                    .bind(db(user_id))
                    .bind(platform.as_str())
                    .bind(push_token)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    (device(row)?, Some(previous_owner))
                }
            }
        });
        if let Some(previous_owner) = previous_owner {
            self.events
                .publish(DirectoryEvent::DevicesChanged { user_id });
            if let Some(other) = previous_owner {
                self.events
                    .publish(DirectoryEvent::DevicesChanged { user_id: other });
            }
        }
        Ok(dev)
    }

    /// Removes one of `user_id`'s devices; false when the user has no
    /// device with this id.
    pub async fn unregister_device(&self, user_id: u64, device_id: u64) -> Result<bool> {
        let removed = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
                .bind(db(device_id))
                .bind(db(user_id))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed > 0 {
            self.events
                .publish(DirectoryEvent::DevicesChanged { user_id });
        }
        Ok(removed > 0)
    }

    /// Marks a push token the provider reported dead (app uninstalled,
    /// token rotated): the device stays, but gets no pushes until its app
    /// registers a token again. Returns the user it belongs to, if any
    /// device holds the token and it was not marked already.
    pub async fn mark_push_token_dead(
        &self,
        platform: Platform,
        push_token: &str,
    ) -> Result<Option<u64>> {
        let now = db(unix_now());
        let row: Option<(i64,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE devices SET push_invalid_at = $3
                 WHERE platform = $1 AND push_token = $2 AND push_invalid_at IS NULL
                 RETURNING user_id",
            )
            .bind(platform.as_str())
            .bind(push_token)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let user = row.map(|(u,)| un(u));
        if let Some(user_id) = user {
            self.events
                .publish(DirectoryEvent::DevicesChanged { user_id });
        }
        Ok(user)
    }

    /// A user's registered devices, oldest first.
    pub async fn devices(&self, user_id: u64) -> Result<Vec<Device>> {
        let rows: Vec<DeviceRow> = with_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM devices WHERE user_id = $1 ORDER BY id"
            ))
            .bind(db(user_id))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(device).collect()
    }

    /// One device of a user; `None` when the user has no device with this id.
    pub async fn device(&self, user_id: u64, device_id: u64) -> Result<Option<Device>> {
        let row: Option<DeviceRow> = with_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM devices WHERE id = $1 AND user_id = $2"
            ))
            .bind(db(device_id))
            .bind(db(user_id))
            .fetch_optional(pool)
            .await?
        });
        row.map(device).transpose()
    }
}
