//! FCM HTTP v1: OAuth access tokens from a service account, data-only
//! messages, the documented errors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use confab_directory::store::Platform;
use confab_push::config::FcmConfig;
use confab_push::fcm::{Fcm, SCOPE};
use confab_push::jwt::{self, Algorithm, SigningKey};
use confab_push::provider::{Outcome, Preview, Provider};
use hyper::http::request::Parts;
use serde_json::{json, Value};

use crate::fake::*;

// ---- FCM ----------------------------------------------------------------

pub const SERVICE_ACCOUNT: &str = include_str!("../fixtures/fcm-test-service-account.json");
pub const PROJECT: &str = "confab-test";
pub const FCM_TOKEN: &str = "fcm-device-token-0123456789:APA91bHun4MxP5egoKMwt2KZFBaFUH";

#[derive(Clone, Copy, Debug)]
pub enum FcmReply {
    Ok,
    Unregistered,
    RateLimited,
    Unavailable,
    Unauthenticated,
    InvalidArgument,
    SenderIdMismatch,
}

#[derive(Clone, Copy, Debug)]
pub enum TokenReply {
    Ok,
    Unavailable,
    InvalidGrant,
}

#[derive(Default)]
pub struct Google {
    pub token_calls: AtomicUsize,
    pub send_calls: AtomicUsize,
    /// The access tokens issued, oldest first.
    pub issued: Mutex<Vec<String>>,
    /// The bearer token each send carried.
    pub bearers: Mutex<Vec<String>>,
    pub token_script: Mutex<VecDeque<TokenReply>>,
    pub send_script: Mutex<VecDeque<FcmReply>>,
    /// What the next message must carry as its preview.
    pub expect_preview: Mutex<Option<Preview>>,
    /// The fake's own token endpoint URL (the assertion's audience).
    pub token_uri: Mutex<String>,
}

pub fn form_decode(text: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |s: &str| -> Result<String, String> {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = s.get(i + 1..i + 3).ok_or("bad % escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    };
    text.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or("form pair without =")?;
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

pub fn google_error(code: u16, status: &str, message: &str, fcm_code: Option<&str>) -> String {
    let mut error = json!({"code": code, "message": message, "status": status});
    if let Some(c) = fcm_code {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": c,
        }]);
    }
    json!({ "error": error }).to_string()
}

impl Google {
    fn handle(
        &self,
        parts: &Parts,
        body: &Bytes,
        sa: &Value,
        public_key: &[u8],
    ) -> Result<Reply, String> {
        check(parts.method == "POST", || {
            format!("method {}", parts.method)
        })?;
        match parts.uri.path() {
            "/token" => self.token(parts, body, sa, public_key),
            p if p == format!("/v1/projects/{PROJECT}/messages:send") => self.send(parts, body),
            p => Err(format!("unexpected path {p}")),
        }
    }

    /// Google's OAuth2 token endpoint, JWT-bearer grant (RFC 7523).
    fn token(
        &self,
        parts: &Parts,
        body: &Bytes,
        sa: &Value,
        public_key: &[u8],
    ) -> Result<Reply, String> {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let ct = header(parts, "content-type")?;
        check(ct == "application/x-www-form-urlencoded", || {
            format!("content-type {ct}")
        })?;
        let form = form_decode(std::str::from_utf8(body).map_err(|e| e.to_string())?)?;
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("no {name} in the form"))
        };
        let grant = field("grant_type")?;
        check(
            grant == "urn:ietf:params:oauth:grant-type:jwt-bearer",
            || format!("grant_type {grant}"),
        )?;
        let assertion = field("assertion")?;
        let (h, c) = jwt::verify(&assertion, Algorithm::Rs256, public_key)
            .map_err(|e| format!("assertion: {e}"))?;
        check(
            h["typ"] == "JWT" && h["kid"] == sa["private_key_id"],
            || format!("header {h}"),
        )?;
        check(c["iss"] == sa["client_email"], || {
            format!("iss {}", c["iss"])
        })?;
        check(c["scope"] == SCOPE, || format!("scope {}", c["scope"]))?;
        let aud = self.token_uri.lock().unwrap().clone();
        check(c["aud"] == aud.as_str(), || {
            format!("aud {} (want {aud})", c["aud"])
        })?;
        let (iat, exp) = (
            c["iat"].as_u64().unwrap_or(0),
            c["exp"].as_u64().unwrap_or(0),
        );
        check(now().abs_diff(iat) < 60 && exp == iat + 3600, || {
            format!("iat {iat} exp {exp}")
        })?;
        let reply = self
            .token_script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(TokenReply::Ok);
        Ok(match reply {
            TokenReply::Ok => {
                let mut issued = self.issued.lock().unwrap();
                let token = format!("ya29.fake-access-token-{}", issued.len() + 1);
                issued.push(token.clone());
                let body =
                    json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"});
                (
                    200,
                    vec![("content-type", "application/json".into())],
                    body.to_string(),
                )
            }
            TokenReply::Unavailable => (503, vec![], "Service Unavailable".into()),
            TokenReply::InvalidGrant => (
                400,
                vec![("content-type", "application/json".into())],
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                    .to_string(),
            ),
        })
    }

    /// FCM HTTP v1 `messages:send`.
    fn send(&self, parts: &Parts, body: &Bytes) -> Result<Reply, String> {
        self.send_calls.fetch_add(1, Ordering::SeqCst);
        let auth = header(parts, "authorization")?;
        let bearer = auth
            .strip_prefix("Bearer ")
            .ok_or_else(|| format!("authorization {auth}"))?;
        self.bearers.lock().unwrap().push(bearer.to_owned());
        let latest = self.issued.lock().unwrap().last().cloned();
        check(latest.as_deref() == Some(bearer), || {
            format!("bearer {bearer}, issued {latest:?}")
        })?;
        let ct = header(parts, "content-type")?;
        check(ct.starts_with("application/json"), || {
            format!("content-type {ct}")
        })?;
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let m = &v["message"];
        check(m["token"] == FCM_TOKEN, || format!("token {}", m["token"]))?;
        let data = m["data"].as_object().ok_or("no data")?;
        check(data.values().all(Value::is_string), || {
            format!("data values must be strings: {data:?}")
        })?;
        let want = json!({"type": "message", "channel": "42", "seq": "1001", "count": "3", "sender": "9", "ts": "1700000000123"});
        check(m["data"] == want, || format!("data {}", m["data"]))?;
        check(
            m["android"]["priority"] == "high" && m["android"]["collapse_key"] == "ch-42",
            || format!("android {}", m["android"]),
        )?;
        match self.expect_preview.lock().unwrap().clone() {
            None => {
                check(m.get("notification").is_none(), || {
                    "a notification without preview".into()
                })?;
                check(!has_key(m, "title") && !has_key(m, "body"), || {
                    format!("text without preview: {m}")
                })?;
            }
            Some(p) => {
                check(
                    m["notification"] == json!({"title": p.title, "body": p.body}),
                    || format!("notification {}", m["notification"]),
                )?;
                check(m["android"]["notification"]["tag"] == "ch-42", || {
                    format!("android {}", m["android"])
                })?;
            }
        }
        let json_ct = vec![(
            "content-type",
            "application/json; charset=UTF-8".to_string(),
        )];
        let reply = self
            .send_script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(FcmReply::Ok);
        Ok(match reply {
            FcmReply::Ok => (
                200,
                json_ct,
                json!({"name": format!("projects/{PROJECT}/messages/0:1700000000000000")})
                    .to_string(),
            ),
            FcmReply::Unregistered => (
                404,
                json_ct,
                google_error(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    Some("UNREGISTERED"),
                ),
            ),
            FcmReply::RateLimited => {
                let mut h = json_ct;
                h.push(("retry-after", "30".into()));
                let msg = "Quota exceeded for quota metric 'Send requests'";
                (
                    429,
                    h,
                    google_error(429, "RESOURCE_EXHAUSTED", msg, Some("QUOTA_EXCEEDED")),
                )
            }
            FcmReply::Unavailable => (
                503,
                json_ct,
                google_error(
                    503,
                    "UNAVAILABLE",
                    "The service is currently unavailable.",
                    Some("UNAVAILABLE"),
                ),
            ),
            FcmReply::Unauthenticated => (
                401,
                json_ct,
                google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    None,
                ),
            ),
            FcmReply::InvalidArgument => (
                400,
                json_ct,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received.",
                    Some("INVALID_ARGUMENT"),
                ),
            ),
            FcmReply::SenderIdMismatch => (
                403,
                json_ct,
                google_error(
                    403,
                    "PERMISSION_DENIED",
                    "SenderId mismatch",
                    Some("SENDER_ID_MISMATCH"),
                ),
            ),
        })
    }
}

pub struct FcmSetup {
    pub google: Arc<Google>,
    pub fake: Fake,
    pub fcm: Fcm,
}

pub async fn fcm_setup() -> FcmSetup {
    let sa: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    let key = SigningKey::rs256_from_pem(sa["private_key"].as_str().unwrap().as_bytes()).unwrap();
    let public_key = key.public_key().to_vec();
    let google = Arc::new(Google::default());
    let g = google.clone();
    let sa_for_fake = sa.clone();
    let fake = serve(
        Transport::Tls,
        Arc::new(move |parts: &Parts, body: &Bytes| {
            g.handle(parts, body, &sa_for_fake, &public_key)
        }),
    )
    .await;
    let token_uri = format!("{}/token", fake.url("https"));
    *google.token_uri.lock().unwrap() = token_uri.clone();
    let mut sa = sa;
    sa["token_uri"] = token_uri.into();
    let sa_file = fake.dir.path().join("service-account.json");
    std::fs::write(&sa_file, sa.to_string()).unwrap();
    let cfg = FcmConfig {
        service_account_file: sa_file,
        endpoint: fake.url("https"),
    };
    let fcm = Fcm::new(&cfg, client(Some(&fake.ca_file))).unwrap();
    FcmSetup { google, fake, fcm }
}

#[tokio::test]
async fn fcm_sends_data_only_without_preview_and_caches_the_access_token() {
    let s = fcm_setup().await;
    assert_eq!(s.fcm.platform(), Platform::Fcm);
    assert_eq!(s.fcm.name(), "fcm");
    for _ in 0..3 {
        assert_eq!(s.fcm.send(FCM_TOKEN, &note(42, false)).await, Outcome::Sent);
    }
    *s.google.expect_preview.lock().unwrap() = note(42, true).preview;
    assert_eq!(s.fcm.send(FCM_TOKEN, &note(42, true)).await, Outcome::Sent);
    s.fake.assert_clean();
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        s.google.token_calls.load(Ordering::SeqCst),
        1,
        "the access token is cached"
    );
}

#[tokio::test]
async fn fcm_concurrent_sends_share_one_token_request() {
    let s = fcm_setup().await;
    let n = note(42, false);
    let sends = (0..8).map(|_| s.fcm.send(FCM_TOKEN, &n));
    let outcomes = futures_util::future::join_all(sends).await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Sent), "{outcomes:?}");
    s.fake.assert_clean();
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 8);
    assert_eq!(
        s.google.token_calls.load(Ordering::SeqCst),
        1,
        "no stampede on the token endpoint"
    );
}

#[tokio::test]
async fn fcm_maps_its_documented_errors() {
    let s = fcm_setup().await;
    s.google.send_script.lock().unwrap().extend([
        FcmReply::Unregistered,
        FcmReply::RateLimited,
        FcmReply::Unavailable,
        FcmReply::InvalidArgument,
        FcmReply::SenderIdMismatch,
    ]);
    let n = note(42, false);
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, Outcome::Unregistered);
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        retry(Some(30), "rate_limited")
    );
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, retry(None, "status_503"));
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        Outcome::Rejected {
            reason: "bad_request",
            detail: "Invalid JSON payload received.".into()
        }
    );
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        Outcome::Rejected {
            reason: "sender_id_mismatch",
            detail: "SenderId mismatch".into()
        }
    );
    s.fake.assert_clean();
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 5);
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fcm_refreshes_the_access_token_once_on_401() {
    let s = fcm_setup().await;
    let n = note(42, false);
    s.google
        .send_script
        .lock()
        .unwrap()
        .extend([FcmReply::Unauthenticated, FcmReply::Ok]);
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, Outcome::Sent);
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *s.google.bearers.lock().unwrap(),
        ["ya29.fake-access-token-1", "ya29.fake-access-token-2"],
        "the retry carried the new token"
    );

    // Refused again with the new token: a permanent auth failure.
    s.google
        .send_script
        .lock()
        .unwrap()
        .extend([FcmReply::Unauthenticated, FcmReply::Unauthenticated]);
    assert_eq!(rejected(&s.fcm.send(FCM_TOKEN, &n).await), "auth");
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 3);
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 4);
    s.fake.assert_clean();
}

#[tokio::test]
async fn fcm_token_endpoint_failures_are_retried_or_rejected() {
    let s = fcm_setup().await;
    let n = note(42, false);
    s.google
        .token_script
        .lock()
        .unwrap()
        .extend([TokenReply::Unavailable, TokenReply::InvalidGrant]);
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        retry(None, "token_unavailable")
    );
    assert_eq!(rejected(&s.fcm.send(FCM_TOKEN, &n).await), "auth");
    assert_eq!(
        s.google.send_calls.load(Ordering::SeqCst),
        0,
        "nothing sent without a token"
    );
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, Outcome::Sent);
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 3);
    s.fake.assert_clean();
}

#[tokio::test]
async fn fcm_setup_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sa.json");
    let cfg = FcmConfig {
        service_account_file: path.clone(),
        endpoint: "https://fcm.googleapis.com".into(),
    };
    let err = Fcm::new(&cfg, client(None)).unwrap_err();
    assert!(err.to_string().contains("sa.json"), "{err}");
    let mut sa: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    sa["private_key"] =
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".into();
    std::fs::write(&path, sa.to_string()).unwrap();
    let err = Fcm::new(&cfg, client(None)).unwrap_err();
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
}
