//! Read receipts over HTTP: `GET /v1/channels/{channel_id}/receipts`, each
//! member's read mark (the highest channel sequence they marked read with a
//! `Read` frame), for members only. A client opening a channel shows "read
//! by" from this, then follows live `Receipt` frames.

use axum::extract::State;
use axum::Json;
use confab_storage::ChannelId;
use serde::Serialize;

use super::channels::require_member;
use super::{ApiError, ApiResult, ApiState, Auth, Ids};

/// One member's mark.
#[derive(Debug, Serialize)]
pub struct ReadMark {
    user_id: u64,
    read_up_to: u64,
}

/// The channel's marks, by user id; members who never read are absent.
#[derive(Debug, Serialize)]
pub struct Receipts {
    receipts: Vec<ReadMark>,
}

/// Every member's read mark in a channel.
pub async fn receipts(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
) -> ApiResult<Json<Receipts>> {
    require_member(&state, channel_id, auth.user_id).await?;
    let log = state.log().clone();
    // RocksDB reads block; keep them off the async runtime's thread.
    let marks = tokio::task::spawn_blocking(move || log.read_marks(ChannelId(channel_id)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(Receipts {
        receipts: marks
            .into_iter()
            .map(|(user, seq)| ReadMark {
                user_id: user.0,
                read_up_to: seq.0,
            })
            .collect(),
    }))
}
