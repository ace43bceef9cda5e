//! Friends: `GET /v1/friends`, `POST /v1/friends/{user_id}` (request),
//! `POST /v1/friends/{user_id}/accept`, `POST /v1/friends/{user_id}/decline`,
//! `DELETE /v1/friends/{user_id}` (unfriend or withdraw a request).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::users::UserView;
use super::{ApiError, ApiResult, ApiState, Auth, Ids};
use confab_directory::store::FriendState;

/// The caller's friends and pending requests.
#[derive(Debug, Serialize)]
pub struct FriendListView {
    friends: Vec<UserView>,
    incoming: Vec<UserView>,
    outgoing: Vec<UserView>,
}

/// Where the caller stands with a user after a request or an accept.
#[derive(Debug, Serialize)]
pub struct FriendStateView {
    user_id: u64,
    state: FriendState,
}

/// Lists friends, incoming and outgoing requests.
pub async fn list(State(state): State<ApiState>, auth: Auth) -> ApiResult<Json<FriendListView>> {
    let l = state.store().friend_list(auth.user_id).await?;
    let view = |v: Vec<confab_directory::store::User>| v.into_iter().map(UserView::from).collect();
    Ok(Json(FriendListView {
        friends: view(l.friends),
        incoming: view(l.incoming),
        outgoing: view(l.outgoing),
    }))
}

/// Sends a friend request; accepts theirs when they asked first.
pub async fn request(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(user_id): Ids<u64>,
) -> ApiResult<Json<FriendStateView>> {
    let s = state.store().request_friend(auth.user_id, user_id).await?;
    Ok(Json(FriendStateView { user_id, state: s }))
}

/// Accepts `user_id`'s pending request.
pub async fn accept(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(user_id): Ids<u64>,
) -> ApiResult<Json<FriendStateView>> {
    if state.store().accept_friend(auth.user_id, user_id).await? {
        Ok(Json(FriendStateView {
            user_id,
            state: FriendState::Accepted,
        }))
    } else {
        Err(no_request(user_id))
    }
}

/// Declines `user_id`'s pending request.
pub async fn decline(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(user_id): Ids<u64>,
) -> ApiResult<StatusCode> {
    if state.store().decline_friend(auth.user_id, user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_request(user_id))
    }
}

/// Ends a friendship, or withdraws the caller's own request.
pub async fn remove(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(user_id): Ids<u64>,
) -> ApiResult<StatusCode> {
    if state.store().remove_friend(auth.user_id, user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "NOT_FRIENDS",
            format!("no friendship or outgoing request with user {user_id}"),
        ))
    }
}

fn no_request(user_id: u64) -> ApiError {
    ApiError::not_found(
        "NO_FRIEND_REQUEST",
        format!("no pending request from user {user_id}"),
    )
}
