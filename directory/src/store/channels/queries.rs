//! Read-only lookups of channels and their members, through the pool
//! without a transaction: the checks every channel endpoint makes and the
//! listings clients ask for.

use super::{channel, member, ChannelRow, MemberRow};
use crate::store::{db, un, Channel, ChannelSummary, Member, Membership, Result, Store};

impl Store {
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
}
