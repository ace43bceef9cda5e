//! Friendships: one row per unordered pair, a pending request or an
//! accepted friendship. A request to someone who already asked you accepts
//! theirs, so two crossing requests end as friends instead of deadlocking.

use std::collections::HashMap;

use super::{
    db, pair, placeholders, un, unix_now, FriendList, FriendState, Result, Store, StoreError, User,
};
use crate::events::DirectoryEvent;

/// Users per batched friends query: two parameters each, well within
/// SQLite's and PostgreSQL's limits.
const FRIENDS_PER_QUERY: usize = 400;

impl Store {
    /// `from` asks `to` to be friends.
    pub async fn request_friend(&self, from: u64, to: u64) -> Result<FriendState> {
        if from == to {
            return Err(StoreError::InvalidArgument("cannot befriend yourself"));
        }
        if !self.user_exists(to).await? {
            return Err(StoreError::UnknownUser(to));
        }
        let (low, high) = pair(from, to);
        let now = db(unix_now());
        let (state, became_friends) = with_tx!(self, |tx, _dialect| {
            let row: Option<(i64, String)> = sqlx::query_as(
                "SELECT requester, state FROM friendships WHERE user_low = $1 AND user_high = $2",
            )
            .bind(low)
            .bind(high)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => {
                    sqlx::query(
                        "INSERT INTO friendships
                             (user_low, user_high, requester, state, created_at, updated_at)
                         VALUES ($1, $2, $3, 'pending', $4, $4)",
                    )
                    .bind(low)
                    .bind(high)
                    .bind(db(from))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    (FriendState::RequestSent, false)
                }
                Some((_, state)) if state == "accepted" => (FriendState::Accepted, false),
                Some((requester, _)) if un(requester) == from => (FriendState::RequestSent, false),
                Some(_) => {
                    sqlx::query(
                        "UPDATE friendships SET state = 'accepted', updated_at = $3
                         WHERE user_low = $1 AND user_high = $2",
                    )
                    .bind(low)
                    .bind(high)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    (FriendState::Accepted, true)
                }
            }
        });
        if became_friends {
            self.publish_friendship(from, to, true);
        }
        Ok(state)
    }

    /// `me` accepts the pending request of `requester`; false when there is
    /// no such request.
    pub async fn accept_friend(&self, me: u64, requester: u64) -> Result<bool> {
        if me == requester {
            return Ok(false);
        }
        let (low, high) = pair(me, requester);
        let changed = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE friendships SET state = 'accepted', updated_at = $4
                 WHERE user_low = $1 AND user_high = $2 AND state = 'pending' AND requester = $3",
            )
            .bind(low)
            .bind(high)
            .bind(db(requester))
            .bind(db(unix_now()))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed > 0 {
            self.publish_friendship(me, requester, true);
        }
        Ok(changed > 0)
    }

    /// `me` declines the pending request of `requester`; false when there is
    /// no such request.
    pub async fn decline_friend(&self, me: u64, requester: u64) -> Result<bool> {
        if me == requester {
            return Ok(false);
        }
        let (low, high) = pair(me, requester);
        let removed = with_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM friendships
                 WHERE user_low = $1 AND user_high = $2 AND state = 'pending' AND requester = $3",
            )
            .bind(low)
            .bind(high)
            .bind(db(requester))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(removed > 0)
    }

    /// `me` ends the friendship with `other`, or withdraws the request `me`
    /// sent them; false when there was neither.
    pub async fn remove_friend(&self, me: u64, other: u64) -> Result<bool> {
        if me == other {
            return Ok(false);
        }
        let (low, high) = pair(me, other);
        let row: Option<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "DELETE FROM friendships
                 WHERE user_low = $1 AND user_high = $2
                   AND (state = 'accepted' OR requester = $3)
                 RETURNING state",
            )
            .bind(low)
            .bind(high)
            .bind(db(me))
            .fetch_optional(pool)
            .await?
        });
        if matches!(&row, Some((state,)) if state == "accepted") {
            self.publish_friendship(me, other, false);
        }
        Ok(row.is_some())
    }

    /// The ids of a user's friends, ascending.
    pub async fn friends(&self, user_id: u64) -> Result<Vec<u64>> {
        let me = db(user_id);
        let mut ids: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT user_high FROM friendships WHERE user_low = $1 AND state = 'accepted'
                 UNION ALL
                 SELECT user_low FROM friendships WHERE user_high = $1 AND state = 'accepted'",
            )
            .bind(me)
            .fetch_all(pool)
            .await?
        });
        ids.sort_unstable();
        Ok(ids.into_iter().map(un).collect())
    }

    /// The accepted friends of each of `users`, in as few queries as the
    /// backends' parameter limits allow (one per 400 users): every user
    /// asked for has an entry, empty when they have no friends. For the
    /// gateway, which looks up the friends of every session that opens.
    pub async fn friends_of_many(&self, users: &[u64]) -> Result<HashMap<u64, Vec<u64>>> {
        let mut out: HashMap<u64, Vec<u64>> = users.iter().map(|&u| (u, Vec::new())).collect();
        for chunk in users.chunks(FRIENDS_PER_QUERY) {
            let sql = format!(
                "SELECT user_low, user_high FROM friendships
                 WHERE state = 'accepted' AND user_low IN ({})
                 UNION ALL
                 SELECT user_low, user_high FROM friendships
                 WHERE state = 'accepted' AND user_high IN ({})",
                placeholders(1, chunk.len()),
                placeholders(chunk.len() + 1, chunk.len())
            );
            let rows: Vec<(i64, i64)> = with_pool!(self, |pool| {
                // Not kept in the connection's statement cache: every batch
                // size is its own statement, and a cached statement with
                // hundreds of parameters is a large compiled program.
                let mut q = sqlx::query_as(&sql).persistent(false);
                for id in chunk.iter().chain(chunk) {
                    q = q.bind(db(*id));
                }
                q.fetch_all(pool).await?
            });
            for (low, high) in rows {
                let (low, high) = (un(low), un(high));
                if let Some(friends) = out.get_mut(&low) {
                    friends.push(high);
                }
                if let Some(friends) = out.get_mut(&high) {
                    friends.push(low);
                }
            }
        }
        // A pair with both users asked for comes back from both halves of
        // the query.
        for friends in out.values_mut() {
            friends.sort_unstable();
            friends.dedup();
        }
        Ok(out)
    }

    /// Whether two users are friends.
    pub async fn are_friends(&self, a: u64, b: u64) -> Result<bool> {
        let (low, high) = pair(a, b);
        let row: Option<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT state FROM friendships WHERE user_low = $1 AND user_high = $2")
                .bind(low)
                .bind(high)
                .fetch_optional(pool)
                .await?
        });
        Ok(a != b && matches!(row, Some((state,)) if state == "accepted"))
    }

    /// A user's friends and pending requests with their profiles.
    pub async fn friend_list(&self, user_id: u64) -> Result<FriendList> {
        let me = db(user_id);
        let rows: Vec<(i64, String, String, i64, String, i64)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT u.id, u.username, u.display_name, u.created_at, f.state, f.requester
                 FROM friendships f JOIN users u ON u.id = f.user_high
                 WHERE f.user_low = $1
                 UNION ALL
                 SELECT u.id, u.username, u.display_name, u.created_at, f.state, f.requester
                 FROM friendships f JOIN users u ON u.id = f.user_low
                 WHERE f.user_high = $1",
            )
            .bind(me)
            .fetch_all(pool)
            .await?
        });
        let mut list = FriendList::default();
        for (id, username, display_name, created_at, state, requester) in rows {
            let user = User {
                id: un(id),
                username,
                display_name,
                created_at: un(created_at),
            };
            if state == "accepted" {
                list.friends.push(user);
            } else if requester == me {
                list.outgoing.push(user);
            } else {
                list.incoming.push(user);
            }
        }
        for v in [&mut list.friends, &mut list.incoming, &mut list.outgoing] {
            v.sort_by(|a, b| a.username.cmp(&b.username));
        }
        Ok(list)
    }

    fn publish_friendship(&self, a: u64, b: u64, friends: bool) {
        let (a, b) = (a.min(b), a.max(b));
        self.events
            .publish(DirectoryEvent::FriendshipChanged { a, b, friends });
    }
}
