//! Request extractors that answer in our error format instead of axum's
//! plain-text rejections: the authenticated caller, the client IP, JSON
//! bodies, path ids and query strings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, Path, Query, RawPathParams, Request,
};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;

use super::{now, ApiError, ApiState};

/// The caller, from a valid `Authorization: Bearer <access token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth {
    /// The user.
    pub user_id: u64,
    /// The session the token belongs to.
    pub session_id: u64,
}

impl FromRequestParts<ApiState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let value = value.to_str().map_err(|_| ApiError::MissingToken)?;
        // The scheme is case-insensitive (RFC 9110).
        let (scheme, token) = value.split_once(' ').ok_or(ApiError::MissingToken)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::MissingToken);
        }
        let claims = state.verifier().verify(token.trim(), now())?;
        Ok(Auth {
            user_id: claims.user_id,
            session_id: claims.session_id,
        })
    }
}

/// The client's IP for rate limiting: the peer address, or with
/// `api.trust_forwarded_for` the last `X-Forwarded-For` entry (the one our
/// own proxy appended; earlier entries are the client's to forge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.settings().trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip.to_canonical()));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        // Without connect info (a router served without it) every client
        // shares one bucket: stricter, never looser.
        let ip = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientIp(ip.to_canonical()))
    }
}

/// A JSON body; malformed JSON, a wrong shape, a missing content type and
/// an oversized body become our errors (400, 400, 415, 413).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(r) => Err(ApiError::from_json_rejection(
                r,
                state.settings().max_body_bytes,
            )),
        }
    }
}

/// Path parameters (ids); anything but an id written in canonical decimal
/// is a 400: `+5`, `05` or ` 5` would otherwise name id 5 under a second
/// spelling, which caches, logs and rate limits keyed on the path do not
/// expect.
#[derive(Debug, Clone, Copy)]
pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The parameters below are percent-decoded: `%31` would pass as 1.
        if parts.uri.path().contains('%') {
            return Err(ApiError::InvalidParameter(
                "ids are decimal digits, not percent-encoded".into(),
            ));
        }
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::InvalidParameter(r.body_text()))?;
        for (name, value) in &raw {
            if !is_canonical_decimal(value) {
                return Err(ApiError::InvalidParameter(format!(
                    "{name} must be an id in decimal digits, without sign or leading zeros"
                )));
            }
        }
        let Path(v) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Ids(v))
    }
}

/// `0`, or digits without a leading zero.
fn is_canonical_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// A query string; a bad value is a 400.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(QueryParams(v))
    }
}
