//! Apple Push Notification service, token-based authentication over
//! HTTP/2 (the only protocol APNs speaks). One ES256 provider token, signed
//! with the team's `.p8` key, authenticates every request; Apple refuses
//! tokens older than an hour and answers `TooManyProviderTokenUpdates` when
//! a token is replaced more than once per 20 minutes, so it is cached and
//! renewed after 40 minutes.
//!
//! Every notification is a visible alert (`apns-push-type: alert`,
//! priority 10), not a background push: iOS throttles background pushes and
//! may never deliver them, and the point is to tell someone who is offline.
//! Without a preview the alert carries no text of the message: a localized
//! key ([`LOC_KEY`], with the count as its argument) that the app's
//! `Localizable.strings` turns into "3 new messages", and `mutable-content`
//! so the app's notification service extension may fetch and show the real
//! text on the device.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use serde_json::{json, Value};

use super::config::ApnsConfig;
use super::error::PushError;
use super::http::{status_label, unix_now, Answer, HttpClient};
use super::jwt::SigningKey;
use super::provider::{Notification, Outcome, Provider, SendFuture};
use confab_directory::store::Platform;

/// The alert's localization key when there is no preview; its one
/// argument is the count.
pub const LOC_KEY: &str = "CONFAB_NEW_MESSAGES";

/// Renew the provider token after this long (Apple: at most once per 20
/// minutes, at least once an hour).
const REFRESH_AFTER: Duration = Duration::from_secs(40 * 60);

/// No forced renewal (after `ExpiredProviderToken`) sooner than this after
/// the previous one: a clock far off would otherwise renew on every send.
const MIN_FORCED_REFRESH: Duration = Duration::from_secs(20 * 60);

/// APNs drops a notification it could not deliver within a day (as
/// `push.max_age_secs`).
const EXPIRATION_SECS: u64 = 24 * 3600;

/// Apple's limit on `apns-collapse-id`.
const MAX_COLLAPSE_ID: usize = 64;

struct ProviderToken {
    jwt: String,
    issued: Instant,
}

#[derive(Default)]
struct TokenState {
    current: Option<ProviderToken>,
    last_forced: Option<Instant>,
}

/// The APNs provider.
pub struct Apns {
    http: HttpClient,
    key: SigningKey,
    key_id: String,
    team_id: String,
    topic: String,
    endpoint: String,
    /// Signing is cheap and never awaits: a plain mutex.
    token: Mutex<TokenState>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Whether `token` looks like an APNs device token: hex, 32 bytes today
/// (Apple reserves the right to lengthen it, so up to 100 bytes pass).
pub fn valid_device_token(token: &str) -> bool {
    (64..=200).contains(&token.len())
        && token.len() & 1 == 0
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Apns {
    /// Reads the `.p8` key named by `cfg`.
    pub fn new(cfg: &ApnsConfig, http: HttpClient) -> Result<Apns, PushError> {
        let path = &cfg.key_file;
        let pem = std::fs::read(path).map_err(|e| PushError::file(path, e))?;
        let key = SigningKey::es256_from_pem(&pem).map_err(|e| PushError::file(path, e))?;
        let endpoint = cfg.endpoint.trim_end_matches('/').to_owned();
        match endpoint.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => {
                return Err(PushError::Config(format!(
                    "push.apns.endpoint `{endpoint}` is not an http(s) URL"
                )))
            }
        }
        if cfg.key_id.is_empty() || cfg.team_id.is_empty() || cfg.topic.is_empty() {
            return Err(PushError::Config(
                "push.apns needs key_id, team_id and topic".into(),
            ));
        }
        Ok(Apns {
            http,
            key,
            key_id: cfg.key_id.clone(),
            team_id: cfg.team_id.clone(),
            topic: cfg.topic.clone(),
            endpoint,
            token: Mutex::new(TokenState::default()),
        })
    }

    /// The provider token to send with: the cached one while younger than
    /// 40 minutes, unless it is `rejected` (APNs answered
    /// `ExpiredProviderToken`), in which case a new one is signed, at most
    /// once per 20 minutes.
    fn provider_token(&self, rejected: Option<&str>) -> Result<String, Outcome> {
        let mut state = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(t) = &state.current {
            match rejected {
                // Another send renewed it already.
                Some(r) if r != t.jwt => return Ok(t.jwt.clone()),
                Some(_)
                    if state
                        .last_forced
                        .is_some_and(|f| now - f < MIN_FORCED_REFRESH) =>
                {
                    tracing::error!("APNs: provider token expired again soon after renewal; is the clock right?");
                    return Err(Outcome::Rejected {
                        reason: "auth",
                        detail: "ExpiredProviderToken".into(),
                    });
                }
                Some(_) => {}
                None if now - t.issued < REFRESH_AFTER => return Ok(t.jwt.clone()),
                None => {}
            }
        }
        if rejected.is_some() {
            tracing::info!("APNs: provider token expired, signing a new one");
            state.last_forced = Some(now);
        }
        let claims = json!({"iss": self.team_id, "iat": unix_now()});
        let jwt = self
            .key
            .sign(&self.key_id, None, &claims)
            .map_err(|e| Outcome::Rejected {
                reason: "auth",
                detail: e.to_string(),
            })?;
        state.current = Some(ProviderToken {
            jwt: jwt.clone(),
            issued: now,
        });
        Ok(jwt)
    }

    async fn post(
        &self,
        uri: &Uri,
        jwt: &str,
        n: &Notification,
        body: Bytes,
    ) -> Result<Answer, Outcome> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header(
                "apns-expiration",
                (unix_now() + EXPIRATION_SECS).to_string(),
            )
            .header(CONTENT_TYPE, "application/json");
        // Too long a collapse id is refused outright; better uncollapsed
        // than undelivered.
        if n.collapse_id.len() <= MAX_COLLAPSE_ID {
            req = req.header("apns-collapse-id", &n.collapse_id);
        }
        let req = req.body(body).map_err(|e| Outcome::Rejected {
            reason: "bad_request",
            detail: e.to_string(),
        })?;
        self.http.send_h2(req).await.map_err(|e| {
            tracing::debug!(error = %e, "APNs send failed");
            e.retry()
        })
    }

    async fn try_deliver(&self, token: &str, n: &Notification) -> Result<Outcome, Outcome> {
        if !valid_device_token(token) {
            return Err(Outcome::Rejected {
                reason: "bad_token",
                detail: "an APNs device token is 64 or more hex digits".into(),
            });
        }
        let uri = format!("{}/3/device/{token}", self.endpoint)
            .parse::<Uri>()
            .map_err(|e| Outcome::Rejected {
                reason: "bad_token",
                detail: e.to_string(),
            })?;
        let body = Bytes::from(payload(n).to_string());
        let jwt = self.provider_token(None)?;
        let mut answer = self.post(&uri, &jwt, n, body.clone()).await?;
        if answer.status == StatusCode::FORBIDDEN && reason(&answer) == "ExpiredProviderToken" {
            let jwt = self.provider_token(Some(&jwt))?;
            answer = self.post(&uri, &jwt, n, body).await?;
        }
        Ok(outcome(&answer))
    }

    async fn deliver(&self, token: &str, n: &Notification) -> Outcome {
        self.try_deliver(token, n).await.unwrap_or_else(|o| o)
    }
}

/// The JSON payload.
fn payload(n: &Notification) -> Value {
    let alert = match &n.preview {
        Some(p) => json!({"title": p.title, "body": p.body}),
        None => json!({"loc-key": LOC_KEY, "loc-args": [n.count.to_string()]}),
    };
    json!({
        "aps": {
            "alert": alert,
            "badge": n.count,
            "sound": "default",
            "thread-id": n.channel.to_string(),
            "mutable-content": 1,
        },
        "confab": {
            "channel": n.channel,
            "seq": n.seq,
            "count": n.count,
            "sender": n.sender,
        },
    })
}

/// Apple's `{"reason": ...}`, or "" without one.
fn reason(answer: &Answer) -> String {
    serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Maps APNs' answer per its documented status codes and reasons.
fn outcome(answer: &Answer) -> Outcome {
    let status = answer.status;
    if status.is_success() {
        if let Some(id) = answer.headers.get("apns-id") {
            tracing::trace!(apns_id = ?id, "APNs accepted");
        }
        return Outcome::Sent;
    }
    let reason = reason(answer);
    tracing::debug!(%status, %reason, "APNs refused a notification");
    match status {
        // Unregistered / ExpiredToken: the app is gone from the device.
        StatusCode::GONE => Outcome::Unregistered,
        StatusCode::BAD_REQUEST
            if reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic" =>
        {
            Outcome::Unregistered
        }
        StatusCode::BAD_REQUEST => Outcome::Rejected {
            reason: "bad_request",
            detail: reason,
        },
        StatusCode::FORBIDDEN => Outcome::Rejected {
            reason: "auth",
            detail: reason,
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
            detail: reason,
        },
    }
}

impl Provider for Apns {
    fn platform(&self) -> Platform {
        Platform::Apns
    }

    fn name(&self) -> &'static str {
        "apns"
    }

    fn send<'a>(&'a self, token: &'a str, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.deliver(token, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Preview;

    #[test]
    fn device_tokens_are_hex_of_a_sane_length() {
        assert!(valid_device_token(&"ab".repeat(32)));
        assert!(valid_device_token(&"AB".repeat(50)));
        assert!(!valid_device_token(&"ab".repeat(31)));
        assert!(!valid_device_token(&"ab".repeat(101)));
        assert!(!valid_device_token(&format!("{}g", "a".repeat(63))));
        assert!(!valid_device_token(&format!("{}/x", "a".repeat(64))));
    }

    #[test]
    fn without_preview_the_alert_has_no_text() {
        let mut n = Notification {
            user: 1,
            channel: 42,
            seq: 5,
            count: 3,
            sender: 2,
            timestamp_ms: 0,
            collapse_id: "c42".into(),
            preview: None,
        };
        let p = payload(&n);
        assert_eq!(
            p["aps"]["alert"],
            json!({"loc-key": LOC_KEY, "loc-args": ["3"]})
        );
        assert_eq!(p["aps"]["thread-id"], "42");
        n.preview = Some(Preview {
            title: "Ann".into(),
            body: "hi".into(),
        });
        assert_eq!(
            payload(&n)["aps"]["alert"],
            json!({"title": "Ann", "body": "hi"})
        );
    }
}
