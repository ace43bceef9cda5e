//! Accounts and tokens: `POST /v1/signup`, `POST /v1/login`,
//! `POST /v1/token/refresh`, `POST /v1/logout`.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::validate::{self, PASSWORD_MAX, USERNAME_MAX};
use super::{now, ApiError, ApiResult, ApiState, Auth, ClientIp, JsonBody};
use confab_directory::auth::{hash_refresh_token, new_refresh_token, MAX_REFRESH_TOKEN_LEN};
use confab_directory::store::RefreshOutcome;

/// `POST /v1/signup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    username: String,
    password: String,
    /// Defaults to the username.
    #[serde(default)]
    display_name: Option<String>,
}

/// `POST /v1/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /v1/token/refresh`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// The answer to signup, login and refresh.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    user_id: u64,
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

/// Opens a session for `user_id`: a refresh token stored hashed, and an
/// access token carrying the session id.
async fn open_session(state: &ApiState, user_id: u64) -> ApiResult<TokenResponse> {
    let settings = state.settings();
    let now = now();
    let refresh_token = new_refresh_token();
    let session_id = state
        .store()
        .create_session(
            user_id,
            &hash_refresh_token(&refresh_token),
            now + settings.refresh_token_ttl_secs,
        )
        .await?;
    Ok(TokenResponse {
        user_id,
        access_token: state.signer().issue(
            user_id,
            session_id,
            now,
            settings.access_token_ttl_secs,
        ),
        refresh_token,
        token_type: "Bearer",
        expires_in: settings.access_token_ttl_secs,
    })
}

/// Creates an account and logs it in (201). Rate-limited per client IP:
/// each signup costs a password hash.
pub async fn signup(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<SignupRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let exempt = state.settings().exempt_loopback && ip.is_loopback();
    if !exempt {
        if let Err(wait) = state.signup_limiter().check(ip, Instant::now()) {
            return Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
    }
    validate::username(&req.username)?;
    validate::password(&req.password)?;
    let display_name = match &req.display_name {
        Some(d) => validate::display_name(d)?,
        None => req.username.clone(),
    };
    // Saves an argon2 hash for the common conflict; the unique index is
    // what actually decides a race.
    if state.store().credentials(&req.username).await?.is_some() {
        return Err(ApiError::UsernameTaken);
    }
    let hash = state.passwords().hash(req.password).await?;
    let user = state
        .store()
        .create_user(&req.username, &display_name, &hash)
        .await?;
    tracing::info!(user_id = user.id, username = %user.username, "signup");
    Ok((
        StatusCode::CREATED,
        Json(open_session(&state, user.id).await?),
    ))
}

/// Logs in. Rate-limited per username and per IP; a wrong password and an
/// unknown username cost the same argon2 verification and get the same
/// answer.
pub async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    // Bucket keys are bounded: a username longer than any real one is cut.
    let key: String = req.username.chars().take(USERNAME_MAX + 1).collect();
    if let Err(wait) = state.limiter().check(&key, ip, Instant::now()) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    // A username that cannot exist is not looked up, but still costs a
    // verification below, like any unknown one.
    let plausible = validate::username(&req.username).is_ok() && req.password.len() <= PASSWORD_MAX;
    let stored = if plausible {
        state.store().credentials(&req.username).await?
    } else {
        None
    };
    let (user_id, hash) = match stored {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let matched = state.passwords().verify(req.password, hash).await?;
    match (matched, user_id) {
        (true, Some(user_id)) => Ok(Json(open_session(&state, user_id).await?)),
        _ => {
            tracing::info!(username = %key, %ip, "failed login");
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// Exchanges a refresh token for a new access token and a new refresh
/// token (the old one stops working). Presenting an already exchanged
/// refresh token revokes the session.
pub async fn refresh(
    State(state): State<ApiState>,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    if req.refresh_token.is_empty() || req.refresh_token.len() > MAX_REFRESH_TOKEN_LEN {
        return Err(ApiError::InvalidRefreshToken("not a refresh token"));
    }
    let settings = state.settings();
    let now = now();
    let replacement = new_refresh_token();
    let outcome = state
        .store()
        .rotate_refresh(
            &hash_refresh_token(&req.refresh_token),
            &hash_refresh_token(&replacement),
            now,
            now + settings.refresh_token_ttl_secs,
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated {
            session_id,
            user_id,
        } => Ok(Json(TokenResponse {
            user_id,
            access_token: state.signer().issue(
                user_id,
                session_id,
                now,
                settings.access_token_ttl_secs,
            ),
            refresh_token: replacement,
            token_type: "Bearer",
            expires_in: settings.access_token_ttl_secs,
        })),
        RefreshOutcome::Reused { session_id, .. } => {
            state.forget_session_tokens(session_id, now);
            Err(ApiError::InvalidRefreshToken(
                "refresh token was already used; the session has been revoked",
            ))
        }
        RefreshOutcome::Invalid => Err(ApiError::InvalidRefreshToken(
            "unknown, expired or revoked refresh token",
        )),
    }
}

/// Revokes the caller's session: its refresh token and every access token
/// of it stop working at once on this node (other nodes within
/// `api.revocation_poll_secs`).
pub async fn logout(State(state): State<ApiState>, auth: Auth) -> ApiResult<StatusCode> {
    state.store().revoke_session(auth.session_id).await?;
    state.forget_session_tokens(auth.session_id, now());
    tracing::info!(
        user_id = auth.user_id,
        session_id = auth.session_id,
        "logout"
    );
    Ok(StatusCode::NO_CONTENT)
}
