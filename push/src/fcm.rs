//! Firebase Cloud Messaging, HTTP v1 API: Android devices (and iOS/web apps
//! that register through Firebase). Authenticates as a service account with
//! the OAuth2 JWT-bearer grant (RFC 7523): an RS256-signed assertion is
//! traded at the account's `token_uri` for an hour-long access token, which
//! is cached and shared by all sends so the token endpoint sees one request
//! an hour, not one per notification.
//!
//! Without a preview the message is data-only: the app is woken with ids
//! and a count and fetches (and renders) the text itself, so no message
//! text leaves the node.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::FcmConfig;
use super::error::PushError;
use super::http::{status_label, unix_now, Answer, HttpClient};
use super::jwt::SigningKey;
use super::provider::{Notification, Outcome, Provider, SendFuture};
use confab_directory::store::Platform;

/// The OAuth scope for sending with FCM HTTP v1.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Form-encoded `urn:ietf:params:oauth:grant-type:jwt-bearer`.
const GRANT_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_SECS: u64 = 3600;

/// A notification undelivered after this long is dropped by FCM: a day-old
/// "new messages" wakes nobody usefully (as `push.max_age_secs`).
const TTL: &str = "86400s";

/// Longest FCM registration token accepted (they are ~160–200 chars).
const MAX_TOKEN_LEN: usize = 4096;

/// The fields of the service-account JSON that are used.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type")]
    kind: String,
    project_id: String,
    private_key_id: String,
    private_key: String,
    client_email: String,
    token_uri: String,
}

struct AccessToken {
    value: String,
    /// A little before it expires, so a send never carries one that lapses
    /// on the way.
    refresh_at: Instant,
}

/// The FCM provider.
pub struct Fcm {
    http: HttpClient,
    key: SigningKey,
    key_id: String,
    client_email: String,
    token_uri: Uri,
    /// `token_uri` as the service account spells it: the assertion's `aud`.
    audience: String,
    send_uri: Uri,
    /// Held while a new token is fetched, so concurrent sends wait for that
    /// one request instead of each asking the token endpoint.
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("client_email", &self.client_email)
            .field("send_uri", &self.send_uri)
            .finish_non_exhaustive()
    }
}

fn uri(what: &str, text: &str) -> Result<Uri, PushError> {
    match text.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(u),
        _ => Err(PushError::Config(format!(
            "{what} `{text}` is not an http(s) URL"
        ))),
    }
}

impl Fcm {
    /// Reads the service account named by `cfg`.
    pub fn new(cfg: &FcmConfig, http: HttpClient) -> Result<Fcm, PushError> {
        let path = &cfg.service_account_file;
        let text = std::fs::read_to_string(path).map_err(|e| PushError::file(path, e))?;
        let sa: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| PushError::file(path, format!("not a service-account JSON: {e}")))?;
        if sa.kind != "service_account" {
            return Err(PushError::file(
                path,
                format!("type is `{}`, not `service_account`", sa.kind),
            ));
        }
        let key = SigningKey::rs256_from_pem(sa.private_key.as_bytes())
            .map_err(|e| PushError::file(path, e))?;
        let endpoint = cfg.endpoint.trim_end_matches('/');
        let send_uri = uri(
            "push.fcm.endpoint",
            &format!("{endpoint}/v1/projects/{}/messages:send", sa.project_id),
        )?;
        Ok(Fcm {
            http,
            key,
            key_id: sa.private_key_id,
            client_email: sa.client_email,
            token_uri: uri("token_uri", &sa.token_uri)?,
            audience: sa.token_uri,
            send_uri,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one unless it is near expiry or is
    /// `rejected` (FCM answered 401 to it), in which case a new one is
    /// fetched. A token already replaced by another send is not fetched
    /// again.
    async fn access_token(&self, rejected: Option<&str>) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.refresh_at && rejected != Some(t.value.as_str()) {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<AccessToken, Outcome> {
        let now = unix_now();
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.audience,
            "iat": now,
            "exp": now + ASSERTION_SECS,
        });
        let assertion = self
            .key
            .sign(&self.key_id, Some("JWT"), &claims)
            .map_err(|e| Outcome::Rejected {
                reason: "auth",
                detail: e.to_string(),
            })?;
        // The assertion is base64url and dots: nothing to escape.
        let form = format!("grant_type={GRANT_TYPE}&assertion={assertion}");
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.token_uri.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from(form))
            .map_err(|e| Outcome::Rejected {
                reason: "auth",
                detail: e.to_string(),
            })?;
        let answer = self.http.send(req).await.map_err(|e| {
            tracing::warn!(error = %e, "FCM: no answer from the OAuth token endpoint");
            e.retry()
        })?;
        let status = answer.status;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Outcome::Retry {
                after: answer.retry_after(),
                reason: "rate_limited",
            });
        }
        if status.is_server_error() {
            tracing::warn!(%status, "FCM: the OAuth token endpoint failed");
            return Err(Outcome::Retry {
                after: answer.retry_after(),
                reason: "token_unavailable",
            });
        }
        if !status.is_success() {
            // invalid_grant and the like: a revoked key, a clock far off.
            tracing::error!(%status, body = %answer.body_text(), "FCM: the service account was refused a token");
            return Err(Outcome::Rejected {
                reason: "auth",
                detail: format!("token endpoint: {status} {}", answer.body_text()),
            });
        }
        #[derive(Deserialize)]
        struct Grant {
            access_token: String,
            #[serde(default = "default_expiry")]
            expires_in: u64,
        }
        fn default_expiry() -> u64 {
            ASSERTION_SECS
        }
        let grant: Grant = serde_json::from_slice(&answer.body).map_err(|e| {
            tracing::warn!(error = %e, "FCM: unreadable token endpoint answer");
            Outcome::Retry {
                after: None,
                reason: "token_unavailable",
            }
        })?;
        // Refresh five minutes early (or halfway, for short-lived tokens).
        let margin = (grant.expires_in / 2).min(300);
        tracing::debug!(expires_in = grant.expires_in, "FCM: new access token");
        Ok(AccessToken {
            value: grant.access_token,
            refresh_at: Instant::now() + Duration::from_secs(grant.expires_in - margin),
        })
    }

    async fn post(&self, access_token: &str, body: Bytes) -> Result<Answer, Outcome> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.send_uri.clone())
            .header(AUTHORIZATION, format!("Bearer {access_token}"))
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .body(body)
            .map_err(|e| Outcome::Rejected {
                reason: "bad_request",
                detail: e.to_string(),
            })?;
        self.http.send(req).await.map_err(|e| {
            tracing::debug!(error = %e, "FCM send failed");
            e.retry()
        })
    }

    async fn try_deliver(&self, token: &str, n: &Notification) -> Result<Outcome, Outcome> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(Outcome::Rejected {
                reason: "bad_token",
                detail: format!("an FCM token of {} bytes", token.len()),
            });
        }
        let body = Bytes::from(message(token, n).to_string());
        let access = self.access_token(None).await?;
        let mut answer = self.post(&access, body.clone()).await?;
        if answer.status == StatusCode::UNAUTHORIZED
            && error_code(&answer) != Some("THIRD_PARTY_AUTH_ERROR")
        {
            // Revoked or expired early: one new token, one more try.
            tracing::info!("FCM: access token refused, fetching a new one");
            let access = self.access_token(Some(&access)).await?;
            answer = self.post(&access, body).await?;
        }
        Ok(outcome(&answer))
    }

    async fn deliver(&self, token: &str, n: &Notification) -> Outcome {
        self.try_deliver(token, n).await.unwrap_or_else(|o| o)
    }
}

/// The `messages:send` body.
fn message(token: &str, n: &Notification) -> Value {
    let channel = n.channel.to_string();
    let mut android = json!({
        "priority": "high",
        "collapse_key": n.collapse_id,
        "ttl": TTL,
    });
    let mut message = json!({
        "token": token,
        // FCM wants every data value a string.
        "data": {
            "type": "message",
            "channel": channel,
            "seq": n.seq.to_string(),
            "count": n.count.to_string(),
            "sender": n.sender.to_string(),
            "ts": n.timestamp_ms.to_string(),
        },
    });
    match &n.preview {
        Some(p) => {
            message["notification"] = json!({"title": p.title, "body": p.body});
            android["notification"] = json!({
                "tag": n.collapse_id,
                "notification_count": n.count,
            });
            message["apns"] = json!({
                "headers": {"apns-collapse-id": n.collapse_id},
                "payload": {"aps": {"badge": n.count, "thread-id": channel}},
            });
        }
        None => {
            // iOS apps on FCM: a background (silent) push that wakes the
            // app, which then shows what it fetched itself.
            message["apns"] = json!({
                "headers": {
                    "apns-push-type": "background",
                    "apns-priority": "5",
                    "apns-collapse-id": n.collapse_id,
                },
                "payload": {"aps": {"content-available": 1}},
            });
        }
    }
    message["android"] = android;
    json!({ "message": message })
}

/// Google's error JSON: `{"error": {"code", "message", "status",
/// "details": [{"@type": "...FcmError", "errorCode"}]}}`.
fn error_json(answer: &Answer) -> Option<Value> {
    let v: Value = serde_json::from_slice(&answer.body).ok()?;
    v.get("error").filter(|e| e.is_object()).cloned()
}

/// The FCM-specific `errorCode`, when the answer has one.
fn error_code(answer: &Answer) -> Option<&'static str> {
    let error = error_json(answer)?;
    let code = error["details"].as_array()?.iter().find_map(|d| {
        let fcm = d["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"));
        fcm.then(|| d["errorCode"].as_str()).flatten()
    })?;
    // Interned so callers can match and label with it.
    [
        "UNREGISTERED",
        "INVALID_ARGUMENT",
        "SENDER_ID_MISMATCH",
        "QUOTA_EXCEEDED",
        "UNAVAILABLE",
        "INTERNAL",
        "THIRD_PARTY_AUTH_ERROR",
    ]
    .into_iter()
    .find(|known| *known == code)
}

/// Maps FCM's answer per its documented error codes.
fn outcome(answer: &Answer) -> Outcome {
    let status = answer.status;
    if status.is_success() {
        return Outcome::Sent;
    }
    let code = error_code(answer);
    let google = error_json(answer);
    let detail = google
        .as_ref()
        .and_then(|e| e["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| answer.body_text());
    tracing::debug!(%status, ?code, %detail, "FCM refused a message");
    if code == Some("UNREGISTERED") {
        return Outcome::Unregistered;
    }
    match status {
        // A Google NOT_FOUND without an FcmError is the token too; a bare
        // 404 (no Google error JSON) is a wrong endpoint, and must not
        // unregister every device.
        StatusCode::NOT_FOUND if google.as_ref().is_some_and(|e| e["status"] == "NOT_FOUND") => {
            Outcome::Unregistered
        }
        StatusCode::BAD_REQUEST => Outcome::Rejected {
            reason: "bad_request",
            detail,
        },
        StatusCode::UNAUTHORIZED => Outcome::Rejected {
            reason: "auth",
            detail,
        },
        StatusCode::FORBIDDEN if code == Some("SENDER_ID_MISMATCH") => Outcome::Rejected {
            reason: "sender_id_mismatch",
            detail,
        },
        StatusCode::FORBIDDEN => Outcome::Rejected {
            reason: "auth",
            detail,
        },
        StatusCode::TOO_MANY_REQUESTS => Outcome::Retry {
            after: answer.retry_after(),
            reason: "rate_limited",
        },
        s if s.is_server_error() => Outcome::Retry {
            after: answer.retry_after(),
            reason: status_label(s),
        },
        s => Outcome::Rejected {
            reason: status_label(s),
            detail,
        },
    }
}

impl Provider for Fcm {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    fn name(&self) -> &'static str {
        "fcm"
    }

    fn send<'a>(&'a self, token: &'a str, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.deliver(token, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Preview;
    use hyper::header::HeaderMap;

    fn note(preview: bool) -> Notification {
        Notification {
            user: 7,
            channel: 42,
            seq: 1001,
            count: 3,
            sender: 9,
            timestamp_ms: 1_700_000_000_123,
            collapse_id: "c42".into(),
            preview: preview.then(|| Preview {
                title: "Ann".into(),
                body: "hello".into(),
            }),
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn without_preview_the_message_is_data_only() {
        let m = message("tok", &note(false));
        let text = m.to_string();
        assert!(m["message"].get("notification").is_none(), "{m}");
        assert!(m["message"]["android"].get("notification").is_none());
        assert!(!text.contains("hello") && !text.contains("Ann"));
        for (_, v) in m["message"]["data"].as_object().unwrap() {
            assert!(v.is_string(), "{v}");
        }
        assert_eq!(m["message"]["data"]["seq"], "1001");
        let m = message("tok", &note(true));
        assert_eq!(m["message"]["notification"]["body"], "hello");
        assert_eq!(m["message"]["android"]["notification"]["tag"], "c42");
    }

    #[test]
    fn documented_errors_map_to_outcomes() {
        let unregistered = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(outcome(&answer(404, unregistered)), Outcome::Unregistered);
        assert_eq!(
            outcome(&answer(404, "<html>not found</html>")),
            Outcome::Rejected {
                reason: "status_404",
                detail: "<html>not found</html>".into()
            }
        );
        let mismatch = r#"{"error":{"code":403,"message":"SenderId mismatch","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"SENDER_ID_MISMATCH"}]}}"#;
        assert_eq!(
            outcome(&answer(403, mismatch)),
            Outcome::Rejected {
                reason: "sender_id_mismatch",
                detail: "SenderId mismatch".into()
            }
        );
        assert!(matches!(
            outcome(&answer(
                400,
                r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#
            )),
            Outcome::Rejected {
                reason: "bad_request",
                ..
            }
        ));
        assert_eq!(
            outcome(&answer(500, "")),
            Outcome::Retry {
                after: None,
                reason: "status_500"
            }
        );
    }
}
