//! `GET`/`PUT /v1/channels/{channel_id}/mute`: whether the caller's phones
//! are woken for this channel. Members only; muting never hides messages
//! from connected devices or history.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::channels::require_member;
use super::{ApiError, ApiResult, ApiState, Auth, Ids, JsonBody};

/// `PUT` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMute {
    muted: bool,
}

/// The caller's mute state of a channel.
#[derive(Debug, Serialize)]
pub struct MuteState {
    channel_id: u64,
    muted: bool,
}

/// The caller's mute state.
pub async fn get_mute(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
) -> ApiResult<Json<MuteState>> {
    require_member(&state, channel_id, auth.user_id).await?;
    let muted = state.store().is_muted(channel_id, auth.user_id).await?;
    Ok(Json(MuteState { channel_id, muted }))
}

/// Mutes or unmutes the channel for the caller.
pub async fn set_mute(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
    JsonBody(req): JsonBody<SetMute>,
) -> ApiResult<Json<MuteState>> {
    require_member(&state, channel_id, auth.user_id).await?;
    if !state
        .store()
        .set_muted(channel_id, auth.user_id, req.muted)
        .await?
    {
        // Left the channel between the check and the update.
        return Err(ApiError::NotMember(channel_id));
    }
    Ok(Json(MuteState {
        channel_id,
        muted: req.muted,
    }))
}
