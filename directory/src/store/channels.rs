//! Channels (DMs and groups) and their members.
//!
//! Every change of a member list runs in one transaction that first locks
//! the channel (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's
//! `BEGIN IMMEDIATE` already holds the write lock), so two concurrent
//! additions cannot together push a group past [`MAX_GROUP_MEMBERS`], and
//! publishes the new member list after the commit.

use super::{
    db, pair, un, unix_now, Channel, ChannelKind, ChannelSummary, Dialect, Member, Membership,
    Result, Role, Store, StoreError, MAX_GROUP_MEMBERS,
};
use crate::events::DirectoryEvent;

type ChannelRow = (i64, String, Option<String>, Option<i64>, i64);
type MemberRow = (i64, String, i64);

fn channel((id, kind, name, owner_id, created_at): ChannelRow) -> Result<Channel> {
    Ok(Channel {
        id: un(id),
        kind: kind.parse()?,
        name,
        owner_id: owner_id.map(un),
        created_at: un(created_at),
    })
}

fn member((user_id, role, joined_at): MemberRow) -> Result<Member> {
    Ok(Member {
        user_id: un(user_id),
        role: role.parse()?,
        joined_at: un(joined_at),
    })
}

/// `INSERT` of `n` members with role `$2`, joined at `$3`, into channel
/// `$1`; the user ids are `$4…`.
fn insert_members_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("($1, ${}, $2, $3)", i + 4))
        .collect();
    format!(
        "INSERT INTO channel_members (channel_id, user_id, role, joined_at) VALUES {}",
        rows.join(", ")
    )
}

/// Reads a channel inside a transaction, locking its row on PostgreSQL.
macro_rules! lock_channel {
    ($tx:ident, $dialect:ident, $id:expr) => {{
        let sql = match $dialect {
            Dialect::Sqlite => {
                "SELECT id, kind, name, owner_id, created_at FROM channels WHERE id = $1"
            }
            Dialect::Postgres => {
                "SELECT id, kind, name, owner_id, created_at FROM channels WHERE id = $1 FOR UPDATE"
            }
        };
        let row: Option<ChannelRow> = sqlx::query_as(sql)
            .bind(db($id))
            .fetch_optional(&mut *$tx)
            .await?;
        row.map(channel).transpose()?
    }};
}

/// A user's role in a channel, `None` for a non-member.
macro_rules! role_of {
    ($conn:expr, $channel:expr, $user:expr) => {{
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT role FROM channel_members WHERE channel_id = $1 AND user_id = $2",
        )
        .bind(db($channel))
        .bind(db($user))
        .fetch_optional($conn)
        .await?;
        row.map(|(r,)| r.parse::<Role>()).transpose()?
    }};
}

/// The ids of a channel's members, ascending.
macro_rules! member_ids {
    ($conn:expr, $channel:expr) => {{
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM channel_members WHERE channel_id = $1 ORDER BY user_id",
        )
        .bind(db($channel))
        .fetch_all($conn)
        .await?;
        ids.into_iter().map(un).collect::<Vec<u64>>()
    }};
}

/// A channel's members with their roles, by user id.
macro_rules! members_of {
    ($conn:expr, $channel:expr) => {{
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT user_id, role, joined_at FROM channel_members WHERE channel_id = $1
             ORDER BY user_id",
        )
        .bind(db($channel))
        .fetch_all($conn)
        .await?;
        rows.into_iter()
            .map(member)
            .collect::<Result<Vec<Member>>>()?
    }};
}

/// Locks a group for a change by `$actor`: unknown channel, non-member
/// and DM are refused in that order (a non-member learns nothing about the
/// channel). Yields the channel and the actor's role.
macro_rules! group_for_change {
    ($tx:ident, $dialect:ident, $channel:expr, $actor:expr) => {{
        let ch =
            lock_channel!($tx, $dialect, $channel).ok_or(StoreError::UnknownChannel($channel))?;
        let role = role_of!(&mut *$tx, $channel, $actor).ok_or(StoreError::NotMember($channel))?;
        if ch.kind != ChannelKind::Group {
            return Err(StoreError::NotAGroup($channel));
        }
        (ch, role)
    }};
}

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
                Err(StoreError::Database(e)) if super::is_unique_violation(&e) && attempts < 3 => {
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

    /// Renames a group; the actor must be its owner or an admin.
    pub async fn rename_group(&self, channel_id: u64, actor: u64, name: &str) -> Result<Channel> {
        let ch = with_tx!(self, |tx, dialect| {
            let (ch, role) = group_for_change!(tx, dialect, channel_id, actor);
            if !role.can_manage() {
                return Err(StoreError::Forbidden(
                    "only the owner or an admin can rename the group",
                ));
            }
            sqlx::query("UPDATE channels SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(db(channel_id))
                .execute(&mut *tx)
                .await?;
            Channel {
                name: Some(name.to_owned()),
                ..ch
            }
        });
        Ok(ch)
    }

    /// Adds users to a group (those already in it are ignored); the actor
    /// must be its owner or an admin. Returns the members after the change.
    pub async fn add_members(
        &self,
        channel_id: u64,
        actor: u64,
        users: &[u64],
    ) -> Result<Vec<Member>> {
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        if users.len() > MAX_GROUP_MEMBERS {
            return Err(StoreError::GroupFull {
                max: MAX_GROUP_MEMBERS,
                would_have: users.len(),
            });
        }
        // Users are never deleted, so checking before the transaction is as
        // good as inside it, and keeps the write lock short.
        if let Some(&missing) = self.missing_users(&users).await?.first() {
            return Err(StoreError::UnknownUser(missing));
        }
        let now = db(unix_now());
        let (members, changed) = with_tx!(self, |tx, dialect| {
            let (_, role) = group_for_change!(tx, dialect, channel_id, actor);
            if !role.can_manage() {
                return Err(StoreError::Forbidden(
                    "only the owner or an admin can add members",
                ));
            }
            let current = member_ids!(&mut *tx, channel_id);
            let new: Vec<u64> = users
                .iter()
                .copied()
                .filter(|u| !current.contains(u))
                .collect();
            if current.len() + new.len() > MAX_GROUP_MEMBERS {
                return Err(StoreError::GroupFull {
                    max: MAX_GROUP_MEMBERS,
                    would_have: current.len() + new.len(),
                });
            }
            if !new.is_empty() {
                let sql = insert_members_sql(new.len());
                let mut q = sqlx::query(&sql)
                    .bind(db(channel_id))
                    .bind(Role::Member.as_str())
                    .bind(now);
                for u in &new {
                    q = q.bind(db(*u));
                }
                q.execute(&mut *tx).await?;
            }
            (members_of!(&mut *tx, channel_id), !new.is_empty())
        });
        if changed {
            self.publish_members(channel_id, &members);
        }
        Ok(members)
    }

    /// Removes `target` from a group. The owner may remove anyone, an admin
    /// only plain members; removing oneself is [`leave`](Self::leave).
    /// Returns the members after the change.
    pub async fn remove_member(
        &self,
        channel_id: u64,
        actor: u64,
        target: u64,
    ) -> Result<Vec<Member>> {
        if actor == target {
            return self.leave(channel_id, actor).await;
        }
        let members = with_tx!(self, |tx, dialect| {
            let (_, role) = group_for_change!(tx, dialect, channel_id, actor);
            if !role.can_manage() {
                return Err(StoreError::Forbidden(
                    "only the owner or an admin can remove members",
                ));
            }
            let target_role =
                role_of!(&mut *tx, channel_id, target).ok_or(StoreError::UnknownMember {
                    channel: channel_id,
                    user: target,
                })?;
            if role == Role::Admin && target_role != Role::Member {
                return Err(StoreError::Forbidden(
                    "an admin can only remove plain members",
                ));
            }
            sqlx::query("DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2")
                .bind(db(channel_id))
                .bind(db(target))
                .execute(&mut *tx)
                .await?;
            members_of!(&mut *tx, channel_id)
        });
        self.publish_members(channel_id, &members);
        Ok(members)
    }

    /// Changes a member's role; only the owner may. Making someone `owner`
    /// hands the group over: the previous owner becomes an admin. Returns
    /// the members after the change.
    pub async fn set_member_role(
        &self,
        channel_id: u64,
        actor: u64,
        target: u64,
        new_role: Role,
    ) -> Result<Vec<Member>> {
        let members = with_tx!(self, |tx, dialect| {
            let (_, role) = group_for_change!(tx, dialect, channel_id, actor);
            if role != Role::Owner {
                return Err(StoreError::Forbidden("only the owner can change roles"));
            }
            role_of!(&mut *tx, channel_id, target).ok_or(StoreError::UnknownMember {
                channel: channel_id,
                user: target,
            })?;
            if target == actor {
                return Err(StoreError::InvalidArgument(
                    "the owner keeps their role until they hand the group to another member",
                ));
            }
            let set_role =
                "UPDATE channel_members SET role = $1 WHERE channel_id = $2 AND user_id = $3";
            sqlx::query(set_role)
                .bind(new_role.as_str())
                .bind(db(channel_id))
                .bind(db(target))
                .execute(&mut *tx)
                .await?;
            if new_role == Role::Owner {
                sqlx::query(set_role)
                    .bind(Role::Admin.as_str())
                    .bind(db(channel_id))
                    .bind(db(actor))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE channels SET owner_id = $1 WHERE id = $2")
                    .bind(db(target))
                    .bind(db(channel_id))
                    .execute(&mut *tx)
                    .await?;
            }
            members_of!(&mut *tx, channel_id)
        });
        Ok(members)
    }

    /// `user` leaves a group. When the owner leaves, the longest-standing
    /// admin (else member) becomes owner; a group everyone left keeps its
    /// history and has no owner. Returns the members after the change.
    pub async fn leave(&self, channel_id: u64, user: u64) -> Result<Vec<Member>> {
        let members = with_tx!(self, |tx, dialect| {
            let (_, role) = group_for_change!(tx, dialect, channel_id, user);
            sqlx::query("DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2")
                .bind(db(channel_id))
                .bind(db(user))
                .execute(&mut *tx)
                .await?;
            if role == Role::Owner {
                let successor: Option<(i64,)> = sqlx::query_as(
                    "SELECT user_id FROM channel_members WHERE channel_id = $1
                     ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id
                     LIMIT 1",
                )
                .bind(db(channel_id))
                .fetch_optional(&mut *tx)
                .await?;
                let successor = successor.map(|(id,)| id);
                if let Some(s) = successor {
                    sqlx::query(
                        "UPDATE channel_members SET role = 'owner' WHERE channel_id = $1 AND user_id = $2",
                    )
                    .bind(db(channel_id))
                    .bind(s)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE channels SET owner_id = $1 WHERE id = $2")
                    .bind(successor)
                    .bind(db(channel_id))
                    .execute(&mut *tx)
                    .await?;
            }
            members_of!(&mut *tx, channel_id)
        });
        self.publish_members(channel_id, &members);
        Ok(members)
    }

    /// A channel's attributes.
    pub async fn channel(&self, channel_id: u64) -> Result<Option<Channel>> {
        let row: Option<ChannelRow> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, kind, name, owner_id, created_at FROM channels WHERE id = $1",
            )
            .bind(db(channel_id))
            .fetch_optional(pool)
            .await?
        });
        row.map(channel).transpose()
    }

    /// Where `user` stands with respect to a channel: one query for the
    /// check every channel endpoint makes.
    pub async fn membership(&self, channel_id: u64, user: u64) -> Result<Membership> {
        type Row = (
            i64,
            String,
            Option<String>,
            Option<i64>,
            i64,
            Option<String>,
        );
        let row: Option<Row> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.kind, c.name, c.owner_id, c.created_at, m.role
                 FROM channels c
                 LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = $2
                 WHERE c.id = $1",
            )
            .bind(db(channel_id))
            .bind(db(user))
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            None => Membership::NoChannel,
            Some((id, kind, name, owner_id, created_at, role)) => {
                let ch = channel((id, kind, name, owner_id, created_at))?;
                match role {
                    None => Membership::Outsider(ch),
                    Some(r) => Membership::Member(ch, r.parse()?),
                }
            }
        })
    }

    /// The ids of a channel's members, ascending; `None` when no channel has
    /// this id.
    pub async fn channel_members(&self, channel_id: u64) -> Result<Option<Vec<u64>>> {
        let rows: Vec<(i64, Option<i64>)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, m.user_id FROM channels c
                 LEFT JOIN channel_members m ON m.channel_id = c.id
                 WHERE c.id = $1 ORDER BY m.user_id",
            )
            .bind(db(channel_id))
            .fetch_all(pool)
            .await?
        });
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter().filter_map(|(_, m)| m.map(un)).collect(),
        ))
    }

    /// A channel's members with their roles; `None` when no channel has this
    /// id.
    pub async fn members(&self, channel_id: u64) -> Result<Option<Vec<Member>>> {
        if self.channel(channel_id).await?.is_none() {
            return Ok(None);
        }
        let members = with_pool!(self, |pool| members_of!(pool, channel_id));
        Ok(Some(members))
    }

    /// Every channel `user` is a member of, by id.
    pub async fn user_channels(&self, user: u64) -> Result<Vec<ChannelSummary>> {
        type Row = (
            i64,
            String,
            Option<String>,
            Option<i64>,
            i64,
            String,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.kind, c.name, c.owner_id, c.created_at, m.role,
                        (SELECT COUNT(*) FROM channel_members x WHERE x.channel_id = c.id),
                        d.user_low, d.user_high
                 FROM channel_members m
                 JOIN channels c ON c.id = m.channel_id
                 LEFT JOIN dm_pairs d ON d.channel_id = c.id
                 WHERE m.user_id = $1
                 ORDER BY c.id",
            )
            .bind(db(user))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(id, kind, name, owner_id, created_at, role, count, low, high)| {
                    let peer_id = match (low.map(un), high.map(un)) {
                        (Some(l), Some(h)) => Some(if l == user { h } else { l }),
                        _ => None,
                    };
                    Ok(ChannelSummary {
                        channel: channel((id, kind, name, owner_id, created_at))?,
                        role: role.parse()?,
                        member_count: un(count),
                        peer_id,
                    })
                },
            )
            .collect()
    }

    fn publish_members(&self, channel_id: u64, members: &[Member]) {
        let mut ids: Vec<u64> = members.iter().map(|m| m.user_id).collect();
        ids.sort_unstable();
        self.events.publish(DirectoryEvent::MembershipChanged {
            channel_id,
            members: ids,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_inserts_number_their_placeholders() {
        assert_eq!(
            insert_members_sql(2),
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at) \
             VALUES ($1, $4, $2, $3), ($1, $5, $2, $3)"
        );
    }
}
