//! Creating channels: the DM of a pair of users, made on first use and
//! safe against two first messages at once, and new groups with their
//! initial members.

use super::insert_members_sql;
use crate::events::DirectoryEvent;
use crate::store::{
    db, pair, un, unix_now, Channel, ChannelKind, Result, Role, Store, StoreError,
    MAX_GROUP_MEMBERS,
};

impl Store {
    /// The DM channel of two users, created on first use (idempotent, one
    /// channel per unordered pair). Both users must exist.
    pub async fn dm_channel(&self, a: u64, b: u64) -> Result<u64> {
        Ok(self.open_dm(a, b).await?.0)
    }

    /// Like [`dm_channel`](Self::dm_channel), also saying whether this call
    /// created the channel.
    pub async fn open_dm(&self, a: u64, b: u64) -> Result<(u64, bool)> {
        if a == b {
            return Err(StoreError::InvalidArgument(
                "a DM needs two different users",
            ));
        }
        let (low, high) = pair(a, b);
        // Nearly always the channel exists: one read, no write lock.
        if let Some(id) = self.dm_pair(low, high).await? {
            return Ok((id, false));
        }
        if let Some(&missing) = self.missing_users(&[a, b]).await?.first() {
            return Err(StoreError::UnknownUser(missing));
        }
        // Two first messages at once on PostgreSQL: one insert of the pair
        // wins, the other fails on the primary key and finds it on retry.
        let mut attempts = 0;
        loop {
            match self.create_dm(low, high).await {
                Err(StoreError::Database(e))
                    if crate::store::is_unique_violation(&e) && attempts < 3 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    async fn dm_pair(&self, low: i64, high: i64) -> Result<Option<u64>> {
        let row: Option<(i64,)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT channel_id FROM dm_pairs WHERE user_low = $1 AND user_high = $2")
                .bind(low)
                .bind(high)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id,)| un(id)))
    }

    async fn create_dm(&self, low: i64, high: i64) -> Result<(u64, bool)> {
        let now = db(unix_now());
        let (id, created) = with_tx!(self, |tx, _dialect| {
            let existing: Option<(i64,)> = sqlx::query_as(
                "SELECT channel_id FROM dm_pairs WHERE user_low = $1 AND user_high = $2",
            )
            .bind(low)
            .bind(high)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some((id,)) => (id, false),
                None => {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO channels (kind, created_at) VALUES ('dm', $1) RETURNING id",
                    )
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO dm_pairs (user_low, user_high, channel_id) VALUES ($1, $2, $3)",
                    )
                    .bind(low)
                    .bind(high)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(&insert_members_sql(2))
                        .bind(id)
                        .bind(Role::Member.as_str())
                        .bind(now)
                        .bind(low)
                        .bind(high)
                        .execute(&mut *tx)
                        .await?;
                    (id, true)
                }
            }
        });
        if created {
            self.events.publish(DirectoryEvent::MembershipChanged {
                channel_id: un(id),
                members: vec![un(low), un(high)],
            });
        }
        Ok((un(id), created))
    }

    /// Creates a group owned by `owner` with `members` (repeats and the owner
    /// ignored). At most [`MAX_GROUP_MEMBERS`] including the owner; every
    /// member must exist.
    pub async fn create_group(&self, owner: u64, name: &str, members: &[u64]) -> Result<Channel> {
        let mut ids: Vec<u64> = members.iter().copied().filter(|&m| m != owner).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(StoreError::GroupFull {
                max: MAX_GROUP_MEMBERS,
                would_have: ids.len() + 1,
            });
        }
        let mut check = ids.clone();
        check.push(owner);
        if let Some(&missing) = self.missing_users(&check).await?.first() {
            return Err(StoreError::UnknownUser(missing));
        }
        let now = db(unix_now());
        let id = with_tx!(self, |tx, _dialect| {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO channels (kind, name, owner_id, created_at)
                 VALUES ('group', $1, $2, $3) RETURNING id",
            )
            .bind(name)
            .bind(db(owner))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(&insert_members_sql(1))
                .bind(id)
                .bind(Role::Owner.as_str())
                .bind(now)
                .bind(db(owner))
                .execute(&mut *tx)
                .await?;
            if !ids.is_empty() {
                let sql = insert_members_sql(ids.len());
                let mut q = sqlx::query(&sql)
                    .bind(id)
                    .bind(Role::Member.as_str())
                    .bind(now);
                for m in &ids {
                    q = q.bind(db(*m));
                }
                q.execute(&mut *tx).await?;
            }
            id
        });
        let mut all = check;
        all.sort_unstable();
        self.events.publish(DirectoryEvent::MembershipChanged {
            channel_id: un(id),
            members: all,
        });
        Ok(Channel {
            id: un(id),
            kind: ChannelKind::Group,
            name: Some(name.to_owned()),
            owner_id: Some(owner),
            created_at: un(now),
        })
    }
}
