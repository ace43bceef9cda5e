//! The caller's own profile: `GET /v1/me`, `PATCH /v1/me`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::users::UserView;
use super::{validate, ApiError, ApiResult, ApiState, Auth, JsonBody};

/// `PATCH /v1/me`: the fields to change; absent ones are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchMe {
    #[serde(default)]
    display_name: Option<String>,
}

fn gone(user_id: u64) -> ApiError {
    ApiError::not_found("UNKNOWN_USER", format!("no user {user_id}"))
}

/// The caller's profile.
pub async fn get_me(State(state): State<ApiState>, auth: Auth) -> ApiResult<Json<UserView>> {
    let user = state
        .store()
        .user(auth.user_id)
        .await?
        .ok_or_else(|| gone(auth.user_id))?;
    Ok(Json(user.into()))
}

/// Changes the caller's display name; returns the profile.
pub async fn patch_me(
    State(state): State<ApiState>,
    auth: Auth,
    JsonBody(req): JsonBody<PatchMe>,
) -> ApiResult<Json<UserView>> {
    let user = match &req.display_name {
        Some(name) => {
            let name = validate::display_name(name)?;
            state.store().set_display_name(auth.user_id, &name).await?
        }
        None => state.store().user(auth.user_id).await?,
    };
    Ok(Json(user.ok_or_else(|| gone(auth.user_id))?.into()))
}
