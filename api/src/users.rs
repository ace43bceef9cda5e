//! Other users' profiles: `GET /v1/users/{user_id}` and search by username
//! prefix, `GET /v1/users?prefix=&limit=`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{validate, ApiError, ApiResult, ApiState, Auth, Ids, QueryParams};
use confab_directory::store::User;

/// A user as the API shows it.
#[derive(Debug, Serialize)]
pub struct UserView {
    user_id: u64,
    username: String,
    display_name: String,
    created_at: u64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            user_id: u.id,
            username: u.username,
            display_name: u.display_name,
            created_at: u.created_at,
        }
    }
}

/// A list of users.
#[derive(Debug, Serialize)]
pub struct UserList {
    users: Vec<UserView>,
}

/// Default and largest page of search results.
const SEARCH_DEFAULT: u32 = 20;
const SEARCH_MAX: u32 = 100;

/// `GET /v1/users` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    prefix: String,
    #[serde(default)]
    limit: Option<u32>,
}

/// One user's profile.
pub async fn get_user(
    State(state): State<ApiState>,
    _auth: Auth,
    Ids(user_id): Ids<u64>,
) -> ApiResult<Json<UserView>> {
    match state.store().user(user_id).await? {
        Some(u) => Ok(Json(u.into())),
        None => Err(ApiError::not_found(
            "UNKNOWN_USER",
            format!("no user {user_id}"),
        )),
    }
}

/// Users whose username starts with `prefix`, in username order.
pub async fn search(
    State(state): State<ApiState>,
    _auth: Auth,
    QueryParams(q): QueryParams<SearchQuery>,
) -> ApiResult<Json<UserList>> {
    validate::prefix(&q.prefix)?;
    let limit = q.limit.unwrap_or(SEARCH_DEFAULT);
    if !(1..=SEARCH_MAX).contains(&limit) {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be 1 to {SEARCH_MAX}"
        )));
    }
    let users = state.store().search_users(&q.prefix, limit).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(UserView::from).collect(),
    }))
}
