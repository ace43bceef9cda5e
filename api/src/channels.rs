//! Reading channels, DMs and groups alike: `GET /v1/channels` (mine),
//! `GET /v1/channels/{channel_id}`, `GET /v1/channels/{channel_id}/members`.
//! Also the membership check every channel endpoint makes.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiResult, ApiState, Auth, Ids};
use confab_directory::store::{Channel, ChannelKind, Member, Membership, Role};

/// A channel as listed for one of its members.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    channel_id: u64,
    kind: ChannelKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<u64>,
    /// The other user of a DM.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_id: Option<u64>,
    /// The caller's role.
    role: Role,
    member_count: u64,
    created_at: u64,
}

/// A member as the API shows it.
#[derive(Debug, Serialize)]
pub struct MemberView {
    user_id: u64,
    role: Role,
    joined_at: u64,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        MemberView {
            user_id: m.user_id,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

/// A channel's members.
#[derive(Debug, Serialize)]
pub struct MemberList {
    channel_id: u64,
    members: Vec<MemberView>,
}

impl MemberList {
    /// The list of `members` of `channel_id`.
    pub fn new(channel_id: u64, members: Vec<Member>) -> Self {
        MemberList {
            channel_id,
            members: members.into_iter().map(MemberView::from).collect(),
        }
    }
}

/// The caller's channels.
#[derive(Debug, Serialize)]
pub struct ChannelList {
    channels: Vec<ChannelView>,
}

/// The channel and the caller's role in it; 403 `NOT_A_MEMBER` for a
/// non-member (including a removed member) and for an unknown channel
/// alike, before anything else is read: an outsider cannot tell whether a
/// channel exists (the gateway's rule too).
pub(crate) async fn require_member(
    state: &ApiState,
    channel_id: u64,
    user_id: u64,
) -> ApiResult<(Channel, Role)> {
    match state.store().membership(channel_id, user_id).await? {
        Membership::NoChannel | Membership::Outsider(_) => Err(ApiError::NotMember(channel_id)),
        Membership::Member(channel, role) => Ok((channel, role)),
    }
}

/// Every channel the caller is a member of.
pub async fn list(State(state): State<ApiState>, auth: Auth) -> ApiResult<Json<ChannelList>> {
    let channels = state.store().user_channels(auth.user_id).await?;
    Ok(Json(ChannelList {
        channels: channels
            .into_iter()
            .map(|s| ChannelView {
                channel_id: s.channel.id,
                kind: s.channel.kind,
                name: s.channel.name,
                owner_id: s.channel.owner_id,
                peer_id: s.peer_id,
                role: s.role,
                member_count: s.member_count,
                created_at: s.channel.created_at,
            })
            .collect(),
    }))
}

/// One channel (members only).
pub async fn get_channel(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
) -> ApiResult<Json<ChannelView>> {
    let (channel, role) = require_member(&state, channel_id, auth.user_id).await?;
    let members = state.store().members(channel_id).await?.unwrap_or_default();
    let peer_id = match channel.kind {
        ChannelKind::Dm => members
            .iter()
            .map(|m| m.user_id)
            .find(|&u| u != auth.user_id),
        ChannelKind::Group => None,
    };
    Ok(Json(ChannelView {
        channel_id,
        kind: channel.kind,
        name: channel.name,
        owner_id: channel.owner_id,
        peer_id,
        role,
        member_count: members.len() as u64,
        created_at: channel.created_at,
    }))
}

/// A channel's members with their roles (members only).
pub async fn members(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
) -> ApiResult<Json<MemberList>> {
    require_member(&state, channel_id, auth.user_id).await?;
    let members = state.store().members(channel_id).await?.unwrap_or_default();
    Ok(Json(MemberList::new(channel_id, members)))
}
