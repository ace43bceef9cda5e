//! Channels (DMs and groups) and their members.
//!
//! Every change of a member list runs in one transaction that first locks
//! the channel (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's
//! `BEGIN IMMEDIATE` already holds the write lock), so two concurrent
//! additions cannot together push a group past
//! [`MAX_GROUP_MEMBERS`](super::MAX_GROUP_MEMBERS), and
//! publishes the new member list after the commit.
//!
//! The statements and macros the files below share live here; creating
//! channels (`create`), changing a group (`members`) and read-only lookups
//! (`queries`) each have their own file.

use super::{un, Channel, Member, Result, Store};
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

// Declared after the macros above so that they are in scope in each file.
mod create;
mod members;
mod queries;

impl Store {
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
