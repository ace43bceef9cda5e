//! Direct messages: `POST /v1/dms {"user_id": …}` → the pair's channel,
//! created on first use and the same ever after.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiResult, ApiState, Auth, JsonBody};

/// `POST /v1/dms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenDm {
    user_id: u64,
}

/// The DM channel of the caller and `user_id`.
#[derive(Debug, Serialize)]
pub struct DmView {
    channel_id: u64,
    user_id: u64,
    /// Whether this request created the channel.
    created: bool,
}

/// Gets or creates the DM channel with `user_id`: 201 when created, 200
/// when it existed.
pub async fn open(
    State(state): State<ApiState>,
    auth: Auth,
    JsonBody(req): JsonBody<OpenDm>,
) -> ApiResult<(StatusCode, Json<DmView>)> {
    let (channel_id, created) = state.store().open_dm(auth.user_id, req.user_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DmView {
            channel_id,
            user_id: req.user_id,
            created,
        }),
    ))
}
