//! Changes to an existing group: its name, its member list and its members'
//! roles, each in one transaction that locks the channel first (see the
//! parent module) and refuses what the actor's role does not allow.

use super::{channel, insert_members_sql, member, ChannelRow, MemberRow};
use crate::store::{
    db, un, unix_now, Channel, ChannelKind, Dialect, Member, Result, Role, Store, StoreError,
    MAX_GROUP_MEMBERS,
};

impl Store {
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
}
