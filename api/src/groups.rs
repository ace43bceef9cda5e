//! Groups: `POST /v1/groups` (create with members), `PATCH
//! /v1/groups/{channel_id}` (rename), `POST /v1/groups/{channel_id}/members`
//! (add), `DELETE /v1/groups/{channel_id}/members/{user_id}` (remove),
//! `PATCH /v1/groups/{channel_id}/members/{user_id}` (role),
//! `POST /v1/groups/{channel_id}/leave`.
//!
//! A group holds at most 100 members, its owner included (`GROUP_FULL`
//! beyond). Renaming and adding or removing members take the owner or an
//! admin; roles are the owner's to give. The rules are checked inside the
//! store's transaction, so concurrent changes cannot slip past them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::channels::MemberList;
use super::{validate, ApiResult, ApiState, Auth, Ids, JsonBody};
use confab_directory::store::Role;

/// `POST /v1/groups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    name: String,
    /// Other members (the creator is added as owner).
    #[serde(default)]
    members: Vec<u64>,
}

/// `PATCH /v1/groups/{channel_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameGroup {
    name: String,
}

/// `POST /v1/groups/{channel_id}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    user_ids: Vec<u64>,
}

/// `PATCH /v1/groups/{channel_id}/members/{user_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    role: Role,
}

/// A group's attributes.
#[derive(Debug, Serialize)]
pub struct GroupView {
    channel_id: u64,
    name: String,
    owner_id: Option<u64>,
    created_at: u64,
}

/// Creates a group owned by the caller (201).
pub async fn create(
    State(state): State<ApiState>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateGroup>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    let name = validate::group_name(&req.name)?;
    let ch = state
        .store()
        .create_group(auth.user_id, &name, &req.members)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(GroupView {
            channel_id: ch.id,
            name,
            owner_id: ch.owner_id,
            created_at: ch.created_at,
        }),
    ))
}

/// Renames a group (owner or admin).
pub async fn rename(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
    JsonBody(req): JsonBody<RenameGroup>,
) -> ApiResult<Json<GroupView>> {
    let name = validate::group_name(&req.name)?;
    let ch = state
        .store()
        .rename_group(channel_id, auth.user_id, &name)
        .await?;
    Ok(Json(GroupView {
        channel_id,
        name,
        owner_id: ch.owner_id,
        created_at: ch.created_at,
    }))
}

/// Adds members (owner or admin); returns the member list.
pub async fn add_members(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
    JsonBody(req): JsonBody<AddMembers>,
) -> ApiResult<Json<MemberList>> {
    let members = state
        .store()
        .add_members(channel_id, auth.user_id, &req.user_ids)
        .await?;
    Ok(Json(MemberList::new(channel_id, members)))
}

/// Removes a member (the owner anyone, an admin plain members; oneself is
/// leaving).
pub async fn remove_member(
    State(state): State<ApiState>,
    auth: Auth,
    Ids((channel_id, user_id)): Ids<(u64, u64)>,
) -> ApiResult<StatusCode> {
    state
        .store()
        .remove_member(channel_id, auth.user_id, user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a member's role (owner only; `owner` hands the group over).
pub async fn set_role(
    State(state): State<ApiState>,
    auth: Auth,
    Ids((channel_id, user_id)): Ids<(u64, u64)>,
    JsonBody(req): JsonBody<SetRole>,
) -> ApiResult<Json<MemberList>> {
    let members = state
        .store()
        .set_member_role(channel_id, auth.user_id, user_id, req.role)
        .await?;
    Ok(Json(MemberList::new(channel_id, members)))
}

/// The caller leaves the group.
pub async fn leave(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(channel_id): Ids<u64>,
) -> ApiResult<StatusCode> {
    state.store().leave(channel_id, auth.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
