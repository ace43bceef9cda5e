//! The values the store hands out: plain data, no database types, so that
//! the API and the gateway never depend on which backend is in use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user account as others may see it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// Unique login name, `[a-z0-9_.-]{3,32}`.
    pub username: String,
    /// Free-form name shown to others.
    pub display_name: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// Where a device's push notifications are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Firebase Cloud Messaging (Android, web).
    Fcm,
    /// Apple Push Notification service.
    Apns,
    /// An HTTP endpoint of a self-hosted relay; the push token is its URL.
    Webhook,
}

/// A device registered for push notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device's id (the `device_id` a client sends in `Hello`).
    pub id: u64,
    /// Its owner.
    pub user_id: u64,
    /// Push provider.
    pub platform: Platform,
    /// The provider's token (a URL for webhooks).
    pub push_token: String,
    /// Unix seconds.
    pub created_at: u64,
    /// When the provider reported the token dead (Unix seconds); such a
    /// device gets no pushes until it registers a token again.
    pub push_invalid_at: Option<u64>,
}

/// What a member may do in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Created the group (or inherited it); exactly one per group while it
    /// has members. May do everything, including naming admins.
    Owner,
    /// May rename the group and add or remove plain members.
    Admin,
    /// May read, send and leave.
    Member,
}

impl Role {
    /// Whether this role may rename the group and add or remove members.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// Whether a channel is a conversation of two or a named group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// The one channel of an unordered pair of users; its members never
    /// change.
    Dm,
    /// A named group of up to [`MAX_GROUP_MEMBERS`](super::MAX_GROUP_MEMBERS).
    Group,
}

/// A channel's own attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The channel id (shared id space for DMs and groups; the message log's
    /// channel id).
    pub id: u64,
    /// DM or group.
    pub kind: ChannelKind,
    /// The group's name; `None` for DMs.
    pub name: Option<String>,
    /// The group's owner; `None` for DMs and for a group everyone left.
    pub owner_id: Option<u64>,
    /// Unix seconds.
    pub created_at: u64,
}

/// One member of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The member.
    pub user_id: u64,
    /// What they may do.
    pub role: Role,
    /// Unix seconds.
    pub joined_at: u64,
}

/// A channel as listed for one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    /// The channel.
    pub channel: Channel,
    /// The listing user's role in it.
    pub role: Role,
    /// How many members it has.
    pub member_count: u64,
    /// For a DM, the other user.
    pub peer_id: Option<u64>,
}

/// Where a user stands with respect to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// No channel has this id.
    NoChannel,
    /// The channel exists and the user is not (or no longer) a member.
    Outsider(Channel),
    /// The user is a member with this role.
    Member(Channel, Role),
}

/// The relation between two users after a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendState {
    /// The request waits for the other user's answer.
    RequestSent,
    /// The two are friends (the other user had asked too, or already were).
    Accepted,
}

/// A user's friends and pending requests, each sorted by username.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FriendList {
    /// Accepted friendships.
    pub friends: Vec<User>,
    /// Requests others sent to this user.
    pub incoming: Vec<User>,
    /// Requests this user sent.
    pub outgoing: Vec<User>,
}

/// The result of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is replaced by the new one.
    Rotated {
        /// The session.
        session_id: u64,
        /// Its user.
        user_id: u64,
    },
    /// The token had already been rotated away: it leaked or was replayed,
    /// so the whole session has just been revoked.
    Reused {
        /// The session, now revoked.
        session_id: u64,
        /// Its user.
        user_id: u64,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// A revoked session, for the token verifiers' in-memory revocation sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// The session.
    pub session_id: u64,
    /// Its user.
    pub user_id: u64,
    /// Unix seconds.
    pub revoked_at: u64,
}

/// A stored enum value that is not one of ours (a database edited by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

macro_rules! text_enum {
    ($ty:ident, $what:literal, $($variant:ident = $text:literal),+) => {
        impl $ty {
            /// The value as stored and as written in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    Platform,
    "platform",
    Fcm = "fcm",
    Apns = "apns",
    Webhook = "webhook"
);
text_enum!(
    Role,
    "role",
    Owner = "owner",
    Admin = "admin",
    Member = "member"
);
text_enum!(ChannelKind, "channel kind", Dm = "dm", Group = "group");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip_and_match_serde() {
        for p in [Platform::Fcm, Platform::Apns, Platform::Webhook] {
            assert_eq!(p.as_str().parse::<Platform>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        for r in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        for k in [ChannelKind::Dm, ChannelKind::Group] {
            assert_eq!(k.as_str().parse::<ChannelKind>().unwrap(), k);
        }
        assert!("sms".parse::<Platform>().is_err());
        assert!(Role::Admin.can_manage() && !Role::Member.can_manage());
    }
}
