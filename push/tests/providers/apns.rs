//! APNs over HTTP/2: ES256 provider tokens, the documented answers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use confab_directory::store::Platform;
use confab_push::apns::Apns;
use confab_push::config::ApnsConfig;
use confab_push::jwt::{self, Algorithm, SigningKey};
use confab_push::provider::{Outcome, Preview, Provider};
use hyper::http::request::Parts;
use hyper::Version;
use serde_json::{json, Value};

use crate::fake::*;
use crate::fcm::SERVICE_ACCOUNT;

// ---- APNs ---------------------------------------------------------------

pub const TEAM: &str = "TEAM123456";
pub const KEY_ID: &str = "KEY1234567";
pub const TOPIC: &str = "chat.confab.app";

#[derive(Clone, Copy, Debug)]
enum ApnsReply {
    Ok,
    Unregistered,
    BadDeviceToken,
    ExpiredProviderToken,
    InvalidProviderToken,
    TooManyRequests,
    ServiceUnavailable,
    BadTopic,
}

#[derive(Default)]
pub struct Apple {
    calls: AtomicUsize,
    /// The provider tokens seen, in order.
    jwts: Mutex<Vec<String>>,
    script: Mutex<VecDeque<ApnsReply>>,
    expect_preview: Mutex<Option<Preview>>,
}

impl Apple {
    fn handle(&self, parts: &Parts, body: &Bytes, public_key: &[u8]) -> Result<Reply, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        check(parts.version == Version::HTTP_2, || {
            format!("APNs is HTTP/2 only, got {:?}", parts.version)
        })?;
        check(parts.method == "POST", || {
            format!("method {}", parts.method)
        })?;
        let path = parts.uri.path();
        let token = path
            .strip_prefix("/3/device/")
            .ok_or_else(|| format!("path {path}"))?;
        check(
            token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            || format!("token {token}"),
        )?;
        let auth = header(parts, "authorization")?;
        let jwt = auth
            .strip_prefix("bearer ")
            .ok_or_else(|| format!("authorization {auth}"))?;
        let (h, c) = jwt::verify(jwt, Algorithm::Es256, public_key)
            .map_err(|e| format!("provider token: {e}"))?;
        check(h == json!({"alg": "ES256", "kid": KEY_ID}), || {
            format!("header {h}")
        })?;
        check(c["iss"] == TEAM, || format!("iss {}", c["iss"]))?;
        check(now().abs_diff(c["iat"].as_u64().unwrap_or(0)) < 60, || {
            format!("iat {}", c["iat"])
        })?;
        self.jwts.lock().unwrap().push(jwt.to_owned());
        check(header(parts, "apns-topic")? == TOPIC, || {
            "apns-topic".into()
        })?;
        check(header(parts, "apns-push-type")? == "alert", || {
            "apns-push-type".into()
        })?;
        check(header(parts, "apns-priority")? == "10", || {
            "apns-priority".into()
        })?;
        check(header(parts, "apns-collapse-id")? == "ch-42", || {
            "apns-collapse-id".into()
        })?;
        let expiration: u64 = header(parts, "apns-expiration")?
            .parse()
            .map_err(|_| "apns-expiration")?;
        check(expiration > now(), || {
            format!("apns-expiration {expiration}")
        })?;
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let aps = &v["aps"];
        check(
            aps["badge"] == 3 && aps["thread-id"] == "42" && aps["mutable-content"] == 1,
            || format!("aps {aps}"),
        )?;
        check(
            v["confab"] == json!({"channel": 42, "seq": 1001, "count": 3, "sender": 9}),
            || format!("confab {}", v["confab"]),
        )?;
        match self.expect_preview.lock().unwrap().clone() {
            None => {
                check(aps["alert"]["loc-key"].is_string(), || {
                    format!("alert {}", aps["alert"])
                })?;
                check(!has_key(&v, "title") && !has_key(&v, "body"), || {
                    format!("text without preview: {v}")
                })?;
            }
            Some(p) => check(
                aps["alert"] == json!({"title": p.title, "body": p.body}),
                || format!("alert {}", aps["alert"]),
            )?,
        }
        let reason = |status: u16, reason: &str| {
            (
                status,
                vec![(
                    "apns-id",
                    "EC1BF194-B3B2-424A-89A9-5A918A6E6B5F".to_string(),
                )],
                json!({"reason": reason}).to_string(),
            )
        };
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(ApnsReply::Ok);
        Ok(match reply {
            ApnsReply::Ok => (
                200,
                vec![("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5F".into())],
                String::new(),
            ),
            ApnsReply::Unregistered => (
                410,
                vec![],
                json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64}).to_string(),
            ),
            ApnsReply::BadDeviceToken => reason(400, "BadDeviceToken"),
            ApnsReply::ExpiredProviderToken => reason(403, "ExpiredProviderToken"),
            ApnsReply::InvalidProviderToken => reason(403, "InvalidProviderToken"),
            ApnsReply::TooManyRequests => reason(429, "TooManyRequests"),
            ApnsReply::ServiceUnavailable => reason(503, "ServiceUnavailable"),
            ApnsReply::BadTopic => reason(400, "BadTopic"),
        })
    }
}

pub struct ApnsSetup {
    apple: Arc<Apple>,
    fake: Fake,
    apns: Apns,
}

pub const DEVICE: &str = "8f3a1c0e5b7d9f2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a";

pub async fn apns_setup() -> ApnsSetup {
    let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let public_key = SigningKey::es256_from_pem(pem.as_bytes())
        .unwrap()
        .public_key()
        .to_vec();
    let apple = Arc::new(Apple::default());
    let a = apple.clone();
    let fake = serve(
        Transport::TlsH2,
        Arc::new(move |parts: &Parts, body: &Bytes| a.handle(parts, body, &public_key)),
    )
    .await;
    let key_file = fake.dir.path().join("AuthKey_KEY1234567.p8");
    std::fs::write(&key_file, pem).unwrap();
    let cfg = ApnsConfig {
        key_file,
        key_id: KEY_ID.into(),
        team_id: TEAM.into(),
        topic: TOPIC.into(),
        endpoint: fake.url("https"),
    };
    let apns = Apns::new(&cfg, client(Some(&fake.ca_file))).unwrap();
    ApnsSetup { apple, fake, apns }
}

#[tokio::test]
async fn apns_sends_over_http2_with_one_cached_provider_token() {
    let s = apns_setup().await;
    assert_eq!(s.apns.platform(), Platform::Apns);
    assert_eq!(s.apns.name(), "apns");
    assert_eq!(s.apns.send(DEVICE, &note(42, false)).await, Outcome::Sent);
    assert_eq!(s.apns.send(DEVICE, &note(42, false)).await, Outcome::Sent);
    *s.apple.expect_preview.lock().unwrap() = note(42, true).preview;
    assert_eq!(s.apns.send(DEVICE, &note(42, true)).await, Outcome::Sent);
    s.fake.assert_clean();
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 3);
    let jwts = s.apple.jwts.lock().unwrap();
    assert!(
        jwts.iter().all(|j| *j == jwts[0]),
        "the provider token is reused"
    );
}

#[tokio::test]
async fn apns_maps_its_documented_answers() {
    let s = apns_setup().await;
    s.apple.script.lock().unwrap().extend([
        ApnsReply::Unregistered,
        ApnsReply::BadDeviceToken,
        ApnsReply::TooManyRequests,
        ApnsReply::ServiceUnavailable,
        ApnsReply::BadTopic,
        ApnsReply::InvalidProviderToken,
    ]);
    let n = note(42, false);
    assert_eq!(s.apns.send(DEVICE, &n).await, Outcome::Unregistered);
    assert_eq!(s.apns.send(DEVICE, &n).await, Outcome::Unregistered);
    assert_eq!(s.apns.send(DEVICE, &n).await, retry(None, "rate_limited"));
    assert_eq!(s.apns.send(DEVICE, &n).await, retry(None, "status_503"));
    assert_eq!(
        s.apns.send(DEVICE, &n).await,
        Outcome::Rejected {
            reason: "bad_request",
            detail: "BadTopic".into()
        }
    );
    assert_eq!(
        s.apns.send(DEVICE, &n).await,
        Outcome::Rejected {
            reason: "auth",
            detail: "InvalidProviderToken".into()
        }
    );
    s.fake.assert_clean();
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn apns_renews_an_expired_provider_token_once() {
    let s = apns_setup().await;
    let n = note(42, false);
    s.apple
        .script
        .lock()
        .unwrap()
        .extend([ApnsReply::ExpiredProviderToken, ApnsReply::Ok]);
    assert_eq!(s.apns.send(DEVICE, &n).await, Outcome::Sent);
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 2);
    {
        let jwts = s.apple.jwts.lock().unwrap();
        assert_ne!(jwts[0], jwts[1], "the retry carried a new provider token");
    }
    // Expired again right after a renewal: Apple would refuse another
    // renewal this soon (and the clock is the likelier culprit).
    s.apple
        .script
        .lock()
        .unwrap()
        .push_back(ApnsReply::ExpiredProviderToken);
    assert_eq!(
        s.apns.send(DEVICE, &n).await,
        Outcome::Rejected {
            reason: "auth",
            detail: "ExpiredProviderToken".into()
        }
    );
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 3);
    s.fake.assert_clean();
}

#[tokio::test]
async fn apns_rejects_a_malformed_device_token_without_sending() {
    let s = apns_setup().await;
    let n = note(42, false);
    for bad in ["", "not-hex", &"zz".repeat(32), &format!("{DEVICE}/../x")] {
        assert_eq!(
            rejected(&s.apns.send(bad, &n).await),
            "bad_token",
            "{bad:?}"
        );
    }
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn apns_setup_refuses_a_key_that_is_not_p256() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("AuthKey.p8");
    let sa: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    std::fs::write(&key_file, sa["private_key"].as_str().unwrap()).unwrap();
    let cfg = ApnsConfig {
        key_file,
        key_id: KEY_ID.into(),
        team_id: TEAM.into(),
        topic: TOPIC.into(),
        endpoint: "https://api.sandbox.push.apple.com".into(),
    };
    let err = Apns::new(&cfg, client(None)).unwrap_err();
    assert!(err.to_string().contains("AuthKey.p8"), "{err}");
}
