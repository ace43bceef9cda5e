//! The API's one error type and its JSON form,
//! `{"error": {"code": "GROUP_FULL", "message": "..."}}`, with the HTTP
//! status each code maps to. Clients branch on `code` (stable, documented
//! in docs/api.md); `message` is for people.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use confab_directory::auth::AuthError;
use confab_directory::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (400 `MALFORMED_JSON`).
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON of the wrong shape: missing or unknown field, wrong
    /// type (400 `INVALID_REQUEST`).
    #[error("{0}")]
    InvalidRequest(String),
    /// A path segment or query parameter does not parse (400
    /// `INVALID_PARAMETER`).
    #[error("{0}")]
    InvalidParameter(String),
    /// A field breaks a rule (400); `code` names the field's rule, e.g.
    /// `INVALID_USERNAME`.
    #[error("{message}")]
    Validation {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The operation applies to groups only (400 `NOT_A_GROUP`).
    #[error("channel {0} is a DM; this applies to groups only")]
    NotAGroup(u64),
    /// No `Authorization: Bearer` header (401 `UNAUTHENTICATED`).
    #[error("missing Authorization: Bearer <access token>")]
    MissingToken,
    /// The access token was refused (401 `INVALID_TOKEN`, `TOKEN_EXPIRED` or
    /// `TOKEN_REVOKED`).
    #[error("{0}")]
    Token(AuthError),
    /// Wrong username or password; deliberately the same for both (401
    /// `INVALID_CREDENTIALS`).
    #[error("wrong username or password")]
    InvalidCredentials,
    /// The refresh token is unknown, expired, revoked or was reused (401
    /// `INVALID_REFRESH_TOKEN`).
    #[error("{0}")]
    InvalidRefreshToken(&'static str),
    /// Not a member of the channel (403 `NOT_A_MEMBER`).
    #[error("not a member of channel {0}")]
    NotMember(u64),
    /// A member whose role does not allow this (403 `FORBIDDEN`).
    #[error("{0}")]
    Forbidden(String),
    /// 404 with a code saying what is unknown (`UNKNOWN_USER`,
    /// `UNKNOWN_DEVICE`, `UNKNOWN_MEMBER`,
    /// `NO_FRIEND_REQUEST`, `NOT_FOUND`).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// No such method on this path (405 `METHOD_NOT_ALLOWED`).
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The username belongs to someone else (409 `USERNAME_TAKEN`).
    #[error("username is taken")]
    UsernameTaken,
    /// The group would have more than 100 members (409 `GROUP_FULL`).
    #[error("{0}")]
    GroupFull(String),
    /// The body is larger than `api.max_body_bytes` (413
    /// `PAYLOAD_TOO_LARGE`).
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body must be `application/json` (415 `UNSUPPORTED_MEDIA_TYPE`).
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// Too many attempts (429 `RATE_LIMITED`, with `Retry-After`).
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until an attempt is allowed again.
        retry_after_secs: u64,
    },
    /// The node is at its limit for this kind of work (password hashing):
    /// retry shortly (503 `UNAVAILABLE`, with `Retry-After`).
    #[error("the server is busy; retry shortly")]
    Busy,
    /// The request's body did not arrive in time (408 `REQUEST_TIMEOUT`).
    #[error("the request body did not arrive within {0} s")]
    RequestTimeout(u64),
    /// A failure of ours, logged with its detail (500 `INTERNAL`).
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A validation error of one field.
    pub fn validation(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            code,
            message: message.into(),
        }
    }

    /// A 404 of the given code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedJson(_)
            | InvalidRequest(_)
            | InvalidParameter(_)
            | Validation { .. }
            | NotAGroup(_) => StatusCode::BAD_REQUEST,
            MissingToken | Token(_) | InvalidCredentials | InvalidRefreshToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            NotMember(_) | Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound { .. } => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UsernameTaken | GroupFull(_) => StatusCode::CONFLICT,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Busy => StatusCode::SERVICE_UNAVAILABLE,
            RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MalformedJson(_) => "MALFORMED_JSON",
            InvalidRequest(_) => "INVALID_REQUEST",
            InvalidParameter(_) => "INVALID_PARAMETER",
            Validation { code, .. } => code,
            NotAGroup(_) => "NOT_A_GROUP",
            MissingToken => "UNAUTHENTICATED",
            Token(AuthError::Expired) => "TOKEN_EXPIRED",
            Token(AuthError::Revoked) => "TOKEN_REVOKED",
            Token(AuthError::Malformed | AuthError::BadSignature) => "INVALID_TOKEN",
            InvalidCredentials => "INVALID_CREDENTIALS",
            InvalidRefreshToken(_) => "INVALID_REFRESH_TOKEN",
            NotMember(_) => "NOT_A_MEMBER",
            Forbidden(_) => "FORBIDDEN",
            NotFound { code, .. } => code,
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            UsernameTaken => "USERNAME_TAKEN",
            GroupFull(_) => "GROUP_FULL",
            PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            RateLimited { .. } => "RATE_LIMITED",
            Busy => "UNAVAILABLE",
            RequestTimeout(_) => "REQUEST_TIMEOUT",
            Internal(_) => "INTERNAL",
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let body = Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            ApiError::RequestTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::MissingToken | ApiError::Token(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"confab\""),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Token(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => ApiError::UsernameTaken,
            StoreError::UnknownUser(id) => {
                ApiError::not_found("UNKNOWN_USER", format!("no user {id}"))
            }
            // As for a channel the caller is not in: existence is not
            // revealed to outsiders.
            StoreError::UnknownChannel(id) => ApiError::NotMember(id),
            StoreError::UnknownMember { channel, user } => ApiError::not_found(
                "UNKNOWN_MEMBER",
                format!("user {user} is not a member of channel {channel}"),
            ),
            StoreError::NotMember(id) => ApiError::NotMember(id),
            StoreError::Forbidden(why) => ApiError::Forbidden(why.to_owned()),
            StoreError::NotAGroup(id) => ApiError::NotAGroup(id),
            e @ StoreError::GroupFull { .. } => ApiError::GroupFull(e.to_string()),
            StoreError::InvalidArgument(why) => ApiError::validation("INVALID_ARGUMENT", why),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// Maps a JSON body rejection; `limit` is the body size limit in force.
    pub(crate) fn from_json_rejection(r: JsonRejection, limit: usize) -> Self {
        // A body that did not arrive in time (the server's body deadline).
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&r);
        while let Some(e) = source {
            if let Some(t) = e.downcast_ref::<crate::serve::BodyTimedOut>() {
                return ApiError::RequestTimeout(t.secs);
            }
            source = e.source();
        }
        match r {
            JsonRejection::JsonSyntaxError(_) => ApiError::MalformedJson(r.body_text()),
            JsonRejection::JsonDataError(_) => ApiError::InvalidRequest(r.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(limit)
            }
            other => ApiError::MalformedJson(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::InvalidParameter(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::InvalidParameter(r.body_text())
    }
}

impl From<confab_directory::auth::PasswordError> for ApiError {
    fn from(e: confab_directory::auth::PasswordError) -> Self {
        match e {
            confab_directory::auth::PasswordError::Busy => ApiError::Busy,
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// Result of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::MalformedJson("x".into()), 400, "MALFORMED_JSON"),
            (
                ApiError::validation("INVALID_USERNAME", "x"),
                400,
                "INVALID_USERNAME",
            ),
            (ApiError::Token(AuthError::Expired), 401, "TOKEN_EXPIRED"),
            (ApiError::Token(AuthError::Revoked), 401, "TOKEN_REVOKED"),
            (
                ApiError::Token(AuthError::BadSignature),
                401,
                "INVALID_TOKEN",
            ),
            (ApiError::NotMember(1), 403, "NOT_A_MEMBER"),
            (StoreError::UnknownChannel(7).into(), 403, "NOT_A_MEMBER"),
            (
                confab_directory::auth::PasswordError::Busy.into(),
                503,
                "UNAVAILABLE",
            ),
            (ApiError::RequestTimeout(30), 408, "REQUEST_TIMEOUT"),
            (StoreError::UnknownUser(9).into(), 404, "UNKNOWN_USER"),
            (StoreError::UsernameTaken.into(), 409, "USERNAME_TAKEN"),
            (
                StoreError::GroupFull {
                    max: 100,
                    would_have: 101,
                }
                .into(),
                409,
                "GROUP_FULL",
            ),
            (ApiError::PayloadTooLarge(1), 413, "PAYLOAD_TOO_LARGE"),
            (
                ApiError::RateLimited {
                    retry_after_secs: 3,
                },
                429,
                "RATE_LIMITED",
            ),
            (ApiError::Internal("db down".into()), 500, "INTERNAL"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let e = ApiError::Internal("password=hunter2".into());
        assert_eq!(e.to_string(), "internal error");
    }
}
